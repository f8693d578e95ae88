//! The pairing exchange: a sans-IO state machine for one inviter and one joiner, fed the
//! other side's messages (relayed by the rendezvous, or over a LAN WebSocket) and returning
//! what to send and what happened.
//!
//! ```text
//! joiner                                    inviter
//!   Pake(X)  ─────────────────────────────►   K = SPAKE2(code)           (one guess)
//!            ◄─────────────────────────────   Pake(Y), Confirm(inviter)
//!   K, check Confirm(inviter); show SAS
//!   Confirm(joiner) ──────────────────────►   check it (a wrong code voids the invite);
//!                                             show SAS, the person confirms
//!            ◄─────────────────────────────   Sealed(Grant: vault secret, membership, …)
//!   enrol, Sealed(Joined) ────────────────►   done
//! ```
//! SPAKE2 (RustCrypto `spake2`, Ed25519 group, asymmetric roles so a message cannot be
//! reflected) turns the low-entropy code into a strong key that an eavesdropper (the server
//! included) cannot test offline; an active guesser gets one try per invite, because the
//! inviter answers one `Pake` only. Every other key comes from K by HKDF-SHA256.

use hkdf::Hkdf;
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use spake2::{Ed25519Group, Identity, Password, Spake2};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::code::InviteCode;
use crate::ids::DeviceId;
use crate::vault::VersionVector;
use hearth_proto::membership::MembershipRecord;

/// Largest pairing message accepted (a grant with a large membership fits well below).
pub const MAX_MESSAGE: usize = 48 * 1024;
/// First byte of every pairing message: its format.
const FORMAT: u8 = 1;

/// What the inviter hands over: everything a new device needs to enrol and sync.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Grant {
    /// The vault secret (the phrase's entropy).
    pub secret: [u8; 32],
    /// The inviting device.
    #[zeroize(skip)]
    pub inviter: DeviceId,
    /// The rendezvous the vault's devices meet at, if any.
    #[zeroize(skip)]
    pub rendezvous: Option<String>,
    /// The inviter's sync (WebSocket) port while it serves the joiner, if it listens.
    #[zeroize(skip)]
    pub sync_port: Option<u16>,
    /// What the inviter holds: the joiner is synced once its log covers this.
    #[zeroize(skip)]
    pub version: VersionVector,
    /// Entries the inviter holds (for a progress bar).
    #[zeroize(skip)]
    pub entries: u64,
    /// The vault's membership records (enrolments and revocations), so the new device knows
    /// who is revoked before its first sync.
    #[zeroize(skip)]
    pub membership: Vec<MembershipRecord>,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant").field("inviter", &self.inviter).field("entries", &self.entries).finish_non_exhaustive()
    }
}

/// What the joiner says back once enrolled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    /// The new device.
    pub device: DeviceId,
    /// Its name, if the person gave one.
    pub name: Option<String>,
}

/// Why one side gave up, as told to the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Abort {
    /// The joiner found the inviter's confirmation wrong: the codes differ.
    WrongCode,
    /// The person at the inviter refused the SAS.
    Declined,
}

#[derive(Serialize, Deserialize)]
enum Msg {
    Pake(Vec<u8>),
    Confirm([u8; 32]),
    Sealed { nonce: [u8; 24], ct: Vec<u8> },
    Abort(Abort),
}

/// Why pairing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PairError {
    /// The other side knows a different code (or is a guesser, or replays an old exchange).
    #[error("the codes do not match: someone tried a wrong code, so this invite is void")]
    WrongCode,
    /// A message that does not decode, or one this side did not expect now.
    #[error("the other device sent a malformed or unexpected pairing message")]
    Protocol,
    /// The person at the inviter refused the SAS.
    #[error("pairing declined: the security codes were not confirmed")]
    Declined,
    /// The exchange already ended (done or failed): nothing more is taken.
    #[error("this invite has already been used or voided")]
    Ended,
}

/// Which side this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Shows the code; hands over the grant.
    Inviter,
    /// Types or scans the code; receives the grant.
    Joiner,
}

/// What the driver must do.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// Send these bytes to the other side.
    Send(Vec<u8>),
    /// Show the short authentication string (both sides); the inviter then calls
    /// [`Exchange::approve`] or [`Exchange::decline`].
    Sas(String),
    /// (joiner) The grant arrived: enrol, then call [`Exchange::enrolled`].
    Granted(Box<Grant>),
    /// (inviter) The new device enrolled: pairing is complete.
    Joined(Joined),
}

#[derive(Zeroize, ZeroizeOnDrop)]
struct Keys {
    confirm_inviter: [u8; 32],
    confirm_joiner: [u8; 32],
    seal_to_joiner: [u8; 32],
    seal_to_inviter: [u8; 32],
    sas: [u8; 4],
}

impl Keys {
    fn derive(k: &[u8]) -> Self {
        let hk = Hkdf::<Sha256>::new(Some(b"hearth/v1/pair"), k);
        let mut out = Keys {
            confirm_inviter: [0; 32],
            confirm_joiner: [0; 32],
            seal_to_joiner: [0; 32],
            seal_to_inviter: [0; 32],
            sas: [0; 4],
        };
        // Lengths are fixed and far below HKDF's limit: expand cannot fail.
        let _ = hk.expand(b"confirm inviter", &mut out.confirm_inviter);
        let _ = hk.expand(b"confirm joiner", &mut out.confirm_joiner);
        let _ = hk.expand(b"seal to joiner", &mut out.seal_to_joiner);
        let _ = hk.expand(b"seal to inviter", &mut out.seal_to_inviter);
        let _ = hk.expand(b"sas", &mut out.sas);
        out
    }

    /// Six digits both screens show, e.g. `482 913`.
    fn sas(&self) -> String {
        let n = u32::from_be_bytes(self.sas) % 1_000_000;
        format!("{:03} {:03}", n / 1000, n % 1000)
    }
}

enum State {
    /// Inviter: waiting for the joiner's `Pake`. Joiner: not started.
    Start,
    /// Joiner: sent its `Pake`, waiting for the inviter's.
    SentPake(Spake2<Ed25519Group>),
    /// Joiner: has K; waiting for the inviter's `Confirm`.
    Confirming(Keys),
    /// Inviter: answered; waiting for the joiner's `Confirm`.
    AwaitConfirm(Keys),
    /// Inviter: the SAS is shown; waiting for the person.
    AwaitApproval(Keys),
    /// Joiner: confirmed; waiting for the grant.
    AwaitGrant(Keys),
    /// Joiner: granted; enrolling.
    Enrolling(Keys),
    /// Inviter: granted; waiting for `Joined`.
    AwaitJoined(Keys),
    Done,
    Failed,
}

/// One side of one pairing.
pub struct Exchange {
    role: Role,
    password: Zeroizing<Vec<u8>>,
    state: State,
    /// A `Pake` was answered (inviter): the invite's one guess is spent.
    guessed: bool,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange").field("role", &self.role).finish_non_exhaustive()
    }
}

fn ids() -> (Identity, Identity) {
    (Identity::new(b"hearth/v1/pair/joiner"), Identity::new(b"hearth/v1/pair/inviter"))
}

fn encode(m: &Msg) -> Vec<u8> {
    let mut v = vec![FORMAT];
    // Serializing these plain types into a Vec cannot fail.
    v.extend(postcard::to_stdvec(m).unwrap_or_default());
    v
}

fn decode(b: &[u8]) -> Result<Msg, PairError> {
    match b.split_first() {
        Some((&FORMAT, rest)) if b.len() <= MAX_MESSAGE => postcard::from_bytes(rest).map_err(|_| PairError::Protocol),
        _ => Err(PairError::Protocol),
    }
}

fn seal(key: &[u8; 32], plain: &[u8], rng: &mut (impl RngCore + CryptoRng)) -> Msg {
    use chacha20poly1305::aead::{Aead, KeyInit};
    let mut nonce = [0u8; 24];
    rng.fill_bytes(&mut nonce);
    let ct = chacha20poly1305::XChaCha20Poly1305::new(key.into())
        .encrypt(chacha20poly1305::XNonce::from_slice(&nonce), plain)
        .unwrap_or_default();
    Msg::Sealed { nonce, ct }
}

fn open(key: &[u8; 32], nonce: &[u8; 24], ct: &[u8]) -> Result<Zeroizing<Vec<u8>>, PairError> {
    use chacha20poly1305::aead::{Aead, KeyInit};
    chacha20poly1305::XChaCha20Poly1305::new(key.into())
        .decrypt(chacha20poly1305::XNonce::from_slice(nonce), ct)
        .map(Zeroizing::new)
        .map_err(|_| PairError::Protocol)
}

impl Exchange {
    /// The inviter's side of `code`.
    pub fn inviter(code: &InviteCode) -> Self {
        Self { role: Role::Inviter, password: code.password(), state: State::Start, guessed: false }
    }

    /// The joiner's side of `code`.
    pub fn joiner(code: &InviteCode) -> Self {
        Self { role: Role::Joiner, password: code.password(), state: State::Start, guessed: false }
    }

    /// This side's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// True once the exchange ended well.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// True when the invite's one guess was spent (inviter): if the other side goes away
    /// now, the invite is void.
    pub fn guess_spent(&self) -> bool {
        self.guessed
    }

    /// (joiner) The first message, once the inviter is known to be there.
    pub fn start(&mut self, rng: &mut (impl RngCore + CryptoRng)) -> Result<Vec<u8>, PairError> {
        if self.role != Role::Joiner || !matches!(self.state, State::Start) {
            return Err(PairError::Ended);
        }
        let (a, b) = ids();
        let (s, msg) = Spake2::<Ed25519Group>::start_a_with_rng(&Password::new(&self.password), &a, &b, rng);
        self.state = State::SentPake(s);
        Ok(encode(&Msg::Pake(msg)))
    }

    /// Takes one message from the other side. An error ends the exchange for good.
    pub fn handle(&mut self, bytes: &[u8], rng: &mut (impl RngCore + CryptoRng)) -> Result<Vec<Output>, PairError> {
        let r = self.step(bytes, rng);
        if r.is_err() {
            self.state = State::Failed;
        }
        r
    }

    fn step(&mut self, bytes: &[u8], rng: &mut (impl RngCore + CryptoRng)) -> Result<Vec<Output>, PairError> {
        if matches!(self.state, State::Done | State::Failed) {
            return Err(PairError::Ended);
        }
        let msg = decode(bytes)?;
        if let Msg::Abort(why) = msg {
            return Err(match why {
                Abort::WrongCode => PairError::WrongCode,
                Abort::Declined => PairError::Declined,
            });
        }
        match (std::mem::replace(&mut self.state, State::Failed), msg) {
            (State::Start, Msg::Pake(x)) if self.role == Role::Inviter => {
                self.guessed = true;
                let (a, b) = ids();
                let (s, y) = Spake2::<Ed25519Group>::start_b_with_rng(&Password::new(&self.password), &a, &b, rng);
                let k = Zeroizing::new(s.finish(&x).map_err(|_| PairError::Protocol)?);
                let keys = Keys::derive(&k);
                let out = vec![
                    Output::Send(encode(&Msg::Pake(y))),
                    Output::Send(encode(&Msg::Confirm(keys.confirm_inviter))),
                ];
                self.state = State::AwaitConfirm(keys);
                Ok(out)
            }
            (State::SentPake(s), Msg::Pake(y)) => {
                let k = Zeroizing::new(s.finish(&y).map_err(|_| PairError::Protocol)?);
                self.state = State::Confirming(Keys::derive(&k));
                Ok(Vec::new())
            }
            (State::Confirming(keys), Msg::Confirm(c)) => {
                if !bool::from(c.ct_eq(&keys.confirm_inviter)) {
                    return Err(PairError::WrongCode);
                }
                let out = vec![Output::Send(encode(&Msg::Confirm(keys.confirm_joiner))), Output::Sas(keys.sas())];
                self.state = State::AwaitGrant(keys);
                Ok(out)
            }
            (State::AwaitConfirm(keys), Msg::Confirm(c)) => {
                if !bool::from(c.ct_eq(&keys.confirm_joiner)) {
                    return Err(PairError::WrongCode);
                }
                let sas = keys.sas();
                self.state = State::AwaitApproval(keys);
                Ok(vec![Output::Sas(sas)])
            }
            (State::AwaitGrant(keys), Msg::Sealed { nonce, ct }) => {
                let plain = open(&keys.seal_to_joiner, &nonce, &ct)?;
                let grant: Grant = postcard::from_bytes(&plain).map_err(|_| PairError::Protocol)?;
                self.state = State::Enrolling(keys);
                Ok(vec![Output::Granted(Box::new(grant))])
            }
            (State::AwaitJoined(keys), Msg::Sealed { nonce, ct }) => {
                let plain = open(&keys.seal_to_inviter, &nonce, &ct)?;
                let joined: Joined = postcard::from_bytes(&plain).map_err(|_| PairError::Protocol)?;
                self.state = State::Done;
                Ok(vec![Output::Joined(joined)])
            }
            _ => Err(PairError::Protocol),
        }
    }

    /// (inviter) The person confirmed the SAS: the grant to send.
    pub fn approve(&mut self, grant: &Grant, rng: &mut (impl RngCore + CryptoRng)) -> Result<Vec<u8>, PairError> {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::AwaitApproval(keys) => {
                let plain = Zeroizing::new(postcard::to_stdvec(grant).map_err(|_| PairError::Protocol)?);
                let msg = encode(&seal(&keys.seal_to_joiner, &plain, rng));
                self.state = State::AwaitJoined(keys);
                Ok(msg)
            }
            _ => Err(PairError::Ended),
        }
    }

    /// (inviter) The person refused the SAS: the message telling the joiner.
    pub fn decline(&mut self) -> Vec<u8> {
        self.state = State::Failed;
        encode(&Msg::Abort(Abort::Declined))
    }

    /// (joiner) This side found the codes differ: the message telling the inviter.
    pub fn wrong_code_notice() -> Vec<u8> {
        encode(&Msg::Abort(Abort::WrongCode))
    }

    /// (joiner) Enrolled as `joined`: the message completing the pairing.
    pub fn enrolled(&mut self, joined: &Joined, rng: &mut (impl RngCore + CryptoRng)) -> Result<Vec<u8>, PairError> {
        match std::mem::replace(&mut self.state, State::Failed) {
            State::Enrolling(keys) => {
                let plain = postcard::to_stdvec(joined).map_err(|_| PairError::Protocol)?;
                let msg = encode(&seal(&keys.seal_to_inviter, &plain, rng));
                self.state = State::Done;
                Ok(msg)
            }
            _ => Err(PairError::Ended),
        }
    }
}

#[cfg(test)]
#[path = "exchange_tests.rs"]
mod tests;
