//! Sealed signaling: the WebRTC offers and answers two devices of a vault exchange through
//! their rendezvous, which sees only sizes and timing (PROTOCOL.md §6.5).
//!
//! [`Signaling`] is sans-IO: it seals what this device sends and opens, checks and classifies
//! what it receives, given the vault's membership and the time. The node moves the bytes.

pub mod envelope;
pub mod manual;
pub mod replay;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod trickle_tests;

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use hearth_proto::membership::{Enrollment, Membership, MembershipBody, MembershipRecord};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use x25519_dalek::StaticSecret;
use zeroize::Zeroizing;

use self::envelope::{EnvelopeError, Header};
use self::replay::{ReplayGuard, Stale};
use crate::identity::VaultKeys;
use crate::ids::{DeviceId, VaultId};

/// Largest SDP accepted in a signal.
pub const MAX_SDP: usize = 32 * 1024;
/// Candidates in one trickled batch, at most (a device has a few addresses, a relay, and
/// one server-reflexive mapping per socket).
pub const MAX_BATCH: usize = 32;
/// Longest candidate line accepted (`candidate:… typ relay raddr … rport …` is ~100 bytes).
pub const MAX_CANDIDATE: usize = 256;
/// Sessions under way (offered and answered, or answered here) that may still trickle
/// candidates, at most (twice the offers waited on); the oldest is forgotten first.
const MAX_LIVE: usize = 128;
/// Enrolments learnt from introductions, at most (a room holds 64 devices by default).
const MAX_INTRODUCED: usize = 256;
/// Offers this device waits on at most (each is one WebRTC dial in flight).
pub(crate) const MAX_PENDING: usize = 64;

/// What a signal carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// An SDP offer, with every candidate the offerer gathered.
    Offer(String),
    /// The SDP answer to the session's offer.
    Answer(String),
    /// The sender gave the session up (it will not answer, or it failed).
    Bye,
    /// The sender introduced itself (its enrolment is now known here); no session.
    Intro,
    /// Candidates the sender found after its offer or answer went out (trickle ICE), as
    /// `candidate:` lines. Builds before trickling refuse this body as malformed (it is the
    /// last variant), so it is only sent to a device whose SDP says it reads them.
    Candidates(Vec<String>),
}

/// A checked signal from another device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// The sender.
    pub from: DeviceId,
    /// The session.
    pub session: [u8; 16],
    /// What it says.
    pub body: Body,
}

/// Why a received signal was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignalError {
    /// The envelope did not open or verify.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// Seen before, or too old.
    #[error(transparent)]
    Stale(#[from] Stale),
    /// The server's sender differs from the signed one.
    #[error("signal relayed as from {relayed} but signed by {signed}")]
    Spoofed {
        /// The sender the server named.
        relayed: DeviceId,
        /// The sender that signed.
        signed: DeviceId,
    },
    /// The body is not one this build reads, or its SDP is too large.
    #[error("signal body is malformed")]
    Body,
    /// An answer (or bye) for a session this device did not offer to that sender, or one
    /// already answered.
    #[error("signal for a session this device is not waiting on")]
    Unexpected,
    /// The recipient is not an active device of the vault.
    #[error("device {0} is not an active device of this vault")]
    UnknownPeer(DeviceId),
    /// An introduction that is not a root-signed enrolment of this vault, or that names
    /// another device than its sender.
    #[error("introduction refused: {0}")]
    Intro(String),
    /// A manual offer or answer did not open or verify.
    #[error(transparent)]
    Manual(#[from] manual::ManualError),
}

/// One device's signaling state: counters of the sessions it sends in, offers awaiting an
/// answer, and the replay guard.
pub struct Signaling {
    vault: VaultId,
    root: ed25519_dalek::VerifyingKey,
    vault_key: Zeroizing<[u8; 32]>,
    /// Enrolments learnt from introductions (devices this one has not synced with yet).
    introduced: BTreeMap<DeviceId, Enrollment>,
    me: DeviceId,
    sign: SigningKey,
    dh: StaticSecret,
    guard: ReplayGuard,
    /// Next counter per session this device sends in.
    counters: BTreeMap<[u8; 16], u32>,
    /// Offers sent and not yet answered: session → recipient.
    pending: BTreeMap<[u8; 16], (DeviceId, u64)>,
    /// Offers made so far (orders `pending`, oldest first).
    offers: u64,
    /// Sessions under way with a device, which may trickle candidates in them: offers this
    /// device answered, and this device's offers once answered. Oldest first.
    live: std::collections::VecDeque<([u8; 16], DeviceId)>,
    /// The key manual texts are sealed with.
    manual_key: Zeroizing<[u8; 32]>,
    /// Manual offers waiting for a pasted answer, oldest first.
    manual_pending: std::collections::VecDeque<[u8; 16]>,
    /// Sessions of manual offers already answered here, newest last.
    manual_seen: std::collections::VecDeque<[u8; 16]>,
    rng: StdRng,
}

impl std::fmt::Debug for Signaling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signaling").field("me", &self.me).field("pending", &self.pending.len()).finish_non_exhaustive()
    }
}

fn active(m: &Membership, id: DeviceId) -> Option<&Enrollment> {
    m.devices().find(|(e, r)| e.device_id == id && r.is_none()).map(|(e, _)| e)
}

/// An active device's enrolment: from the membership, or introduced and not revoked since.
fn known<'a>(
    m: &'a Membership,
    introduced: &'a BTreeMap<DeviceId, Enrollment>,
    id: DeviceId,
) -> Option<&'a Enrollment> {
    active(m, id).or_else(|| introduced.get(&id).filter(|_| !m.is_revoked(id)))
}

impl Signaling {
    /// Signaling for device `me` (its signing and x25519 keys) of the vault with `keys`.
    pub fn new(keys: &VaultKeys, me: DeviceId, sign: SigningKey, dh: StaticSecret) -> Self {
        Self {
            vault: keys.vault_id,
            root: keys.root_public(),
            vault_key: Zeroizing::new(*keys.signal.as_bytes()),
            introduced: BTreeMap::new(),
            me,
            sign,
            dh,
            guard: ReplayGuard::default(),
            counters: BTreeMap::new(),
            pending: BTreeMap::new(),
            offers: 0,
            live: std::collections::VecDeque::new(),
            manual_key: manual::key(keys.signal.as_bytes()),
            manual_pending: std::collections::VecDeque::new(),
            manual_seen: std::collections::VecDeque::new(),
            rng: StdRng::from_entropy(),
        }
    }

    /// Seals an offer to `to` in a new session; returns the session and the envelope.
    pub fn offer(
        &mut self,
        m: &Membership,
        to: DeviceId,
        sdp: String,
        now_ms: u64,
    ) -> Result<([u8; 16], Vec<u8>), SignalError> {
        let mut session = [0u8; 16];
        self.rng.fill_bytes(&mut session);
        let env = self.reply(m, to, session, &Body::Offer(sdp), now_ms)?;
        if self.pending.len() >= MAX_PENDING {
            // The oldest dial gave up long ago (dials time out); forget it.
            let first = self.pending.iter().min_by_key(|(_, (_, n))| *n).map(|(s, _)| *s);
            if let Some(k) = first {
                self.forget(k);
            }
        }
        self.offers += 1;
        self.pending.insert(session, (to, self.offers));
        Ok((session, env))
    }

    /// The dial of `session` ended: an answer arriving for it now is unexpected.
    pub fn forget(&mut self, session: [u8; 16]) {
        self.pending.remove(&session);
        self.counters.remove(&session);
        self.live.retain(|(s, _)| *s != session);
    }

    /// Remembers `session` with `peer` as under way (see `live`).
    fn go_live(&mut self, session: [u8; 16], peer: DeviceId) {
        if self.live.len() >= MAX_LIVE {
            self.live.pop_front();
        }
        self.live.push_back((session, peer));
    }

    fn is_live(&self, session: [u8; 16]) -> bool {
        self.live.iter().any(|(s, _)| *s == session)
    }

    /// True when `device`'s enrolment is known here (signals to it can be sealed).
    pub fn knows(&self, m: &Membership, device: DeviceId) -> bool {
        known(m, &self.introduced, device).is_some()
    }

    /// This device's introduction of itself (its enrolment record, sealed to the vault), for a
    /// device that may not know it yet; `None` if the membership lacks this device.
    pub fn intro(&mut self, m: &Membership) -> Option<Vec<u8>> {
        let bytes = postcard::to_allocvec(&self.own_record(m)?).ok()?;
        Some(envelope::seal_intro(&bytes, &self.vault_key, &mut self.rng))
    }

    /// Seals `body` (an answer or a bye) to `to` in `session`.
    pub fn reply(
        &mut self,
        m: &Membership,
        to: DeviceId,
        session: [u8; 16],
        body: &Body,
        now_ms: u64,
    ) -> Result<Vec<u8>, SignalError> {
        let peer = known(m, &self.introduced, to).ok_or(SignalError::UnknownPeer(to))?;
        let counter = self.counters.entry(session).or_insert(0);
        let header = Header { vault: self.vault, from: self.me, to, session, counter: *counter, at_ms: now_ms };
        *counter = counter.saturating_add(1);
        // Serializing an enum of strings into a Vec cannot fail.
        let bytes = postcard::to_allocvec(body).unwrap_or_default();
        Ok(envelope::seal(&header, &bytes, &self.sign, &peer.dh_pk, &mut self.rng))
    }

    /// Opens and checks a signal the server relayed as from `relayed`.
    pub fn receive(
        &mut self,
        m: &Membership,
        relayed: DeviceId,
        payload: &[u8],
        now_ms: u64,
    ) -> Result<Incoming, SignalError> {
        if payload.first() == Some(&envelope::INTRO) {
            return self.receive_intro(m, relayed, payload);
        }
        let introduced = &self.introduced;
        let (header, body) =
            envelope::open(payload, self.vault, self.me, &self.dh, |id| known(m, introduced, id).map(|e| e.sign_pk))?;
        if header.from != relayed {
            return Err(SignalError::Spoofed { relayed, signed: header.from });
        }
        let body: Body = postcard::from_bytes(&body).map_err(|_| SignalError::Body)?;
        if let Body::Offer(sdp) | Body::Answer(sdp) = &body {
            if sdp.len() > MAX_SDP {
                return Err(SignalError::Body);
            }
        }
        if let Body::Candidates(c) = &body {
            if c.is_empty() || c.len() > MAX_BATCH || c.iter().any(|l| l.len() > MAX_CANDIDATE) {
                return Err(SignalError::Body);
            }
        }
        if body == Body::Intro {
            // Introductions travel sealed to the vault, never inside a device's envelope.
            return Err(SignalError::Body);
        }
        let pending_to = self.pending.get(&header.session).map(|(d, _)| *d);
        let fits = match &body {
            Body::Answer(_) => pending_to == Some(header.from),
            Body::Bye => pending_to.is_none_or(|d| d == header.from),
            // Our own session id coming back as an offer: a reflection.
            Body::Offer(_) => pending_to.is_none() && !self.is_live(header.session),
            // Only in a session under way with its sender: before the answer it would use
            // up the counter the answer needs (the answerer sends its answer first).
            Body::Candidates(_) => self.live.contains(&(header.session, header.from)),
            Body::Intro => false,
        };
        if !fits {
            return Err(SignalError::Unexpected);
        }
        // Checked last: a signal refused above must not use up its counter.
        self.guard.check(&header, now_ms)?;
        match body {
            Body::Offer(_) => self.go_live(header.session, header.from),
            Body::Answer(_) => {
                self.pending.remove(&header.session);
                self.go_live(header.session, header.from);
            }
            Body::Bye => {
                self.pending.remove(&header.session);
                self.live.retain(|(s, _)| *s != header.session);
            }
            Body::Candidates(_) | Body::Intro => {}
        }
        Ok(Incoming { from: header.from, session: header.session, body })
    }

    /// A manual offer as text (`hearth connect --offer`): for whichever device of the vault
    /// the person carries it to. Returns its session and the text.
    pub fn manual_offer(&mut self, m: &Membership, sdp: &str, now_ms: u64) -> Option<([u8; 16], String)> {
        let record = self.own_record(m)?;
        let mut session = [0u8; 16];
        self.rng.fill_bytes(&mut session);
        let draft = manual::Draft { session, answer: false, sdp, at_ms: now_ms };
        let text = manual::seal(&self.manual_key, self.vault, &record, &self.sign, &draft, &mut self.rng);
        if self.manual_pending.len() >= MAX_PENDING {
            self.manual_pending.pop_front();
        }
        self.manual_pending.push_back(session);
        Some((session, text))
    }

    /// The answer text to a manual offer this device accepted (from [`Signaling::manual_receive`]).
    pub fn manual_answer(&mut self, m: &Membership, session: [u8; 16], sdp: &str, now_ms: u64) -> Option<String> {
        let record = self.own_record(m)?;
        let draft = manual::Draft { session, answer: true, sdp, at_ms: now_ms };
        Some(manual::seal(&self.manual_key, self.vault, &record, &self.sign, &draft, &mut self.rng))
    }

    /// Opens a pasted manual text: an offer (`answer` false) from any active device of the
    /// vault, acted on once; or the answer to one of this device's pending manual offers.
    pub fn manual_receive(
        &mut self,
        m: &Membership,
        text: &str,
        answer: bool,
        now_ms: u64,
    ) -> Result<Incoming, SignalError> {
        let o = manual::open(&self.manual_key, self.vault, &self.root, text, answer, now_ms)?;
        let from = o.enrollment.device_id;
        if from == self.me {
            return Err(SignalError::Unexpected);
        }
        if m.is_revoked(from) {
            return Err(SignalError::UnknownPeer(from));
        }
        if answer {
            let Some(i) = self.manual_pending.iter().position(|s| *s == o.session) else {
                return Err(SignalError::Unexpected);
            };
            self.manual_pending.remove(i);
        } else {
            if self.manual_seen.contains(&o.session) || self.manual_pending.contains(&o.session) {
                return Err(SignalError::Unexpected);
            }
            if self.manual_seen.len() >= MAX_INTRODUCED {
                self.manual_seen.pop_front();
            }
            self.manual_seen.push_back(o.session);
        }
        self.learn(m, o.enrollment);
        let body = if answer { Body::Answer(o.sdp) } else { Body::Offer(o.sdp) };
        Ok(Incoming { from, session: o.session, body })
    }

    fn own_record(&self, m: &Membership) -> Option<MembershipRecord> {
        let me = self.me;
        m.records().iter().find(|r| matches!(&r.body, MembershipBody::Enroll(e) if e.device_id == me)).cloned()
    }

    /// An introduction: the sender's root-signed enrolment. Only ever adds a public key of a
    /// device the vault's root enrolled, so replays are harmless.
    fn receive_intro(&mut self, m: &Membership, relayed: DeviceId, payload: &[u8]) -> Result<Incoming, SignalError> {
        let bytes = Zeroizing::new(envelope::open_intro(payload, &self.vault_key)?);
        let record: MembershipRecord =
            postcard::from_bytes(&bytes).map_err(|_| SignalError::Intro("malformed".into()))?;
        record.verify(&self.root, self.vault).map_err(|e| SignalError::Intro(e.to_string()))?;
        let MembershipBody::Enroll(e) = record.body else {
            return Err(SignalError::Intro("not an enrolment".into()));
        };
        if e.device_id != relayed {
            return Err(SignalError::Spoofed { relayed, signed: e.device_id });
        }
        if m.is_revoked(e.device_id) {
            return Err(SignalError::UnknownPeer(e.device_id));
        }
        self.learn(m, e);
        Ok(Incoming { from: relayed, session: [0; 16], body: Body::Intro })
    }

    /// Keeps a checked enrolment of a device the membership does not hold, up to the cap.
    fn learn(&mut self, m: &Membership, e: Enrollment) {
        if active(m, e.device_id).is_none() && self.introduced.len() < MAX_INTRODUCED {
            self.introduced.insert(e.device_id, e);
        }
    }
}
