//! The sealed signaling envelope: what one device's WebRTC offer, answer or candidates look
//! like on the rendezvous (PROTOCOL.md §6.5).
//!
//! ```text
//! envelope = 0x01 ‖ ephemeral x25519 pk (32) ‖ nonce (24) ‖ XChaCha20-Poly1305(key, nonce, inner, aad)
//! key      = HKDF-SHA256(salt "hearth/v1/signal", ikm DH(ephemeral, recipient dh_pk),
//!                        info ephemeral pk ‖ recipient dh_pk)
//! aad      = 0x01 ‖ ephemeral pk
//! inner    = postcard(Header, body) ‖ ed25519(sender device key,
//!                        "hearth/v1/signal-sig" ‖ ephemeral pk ‖ postcard(Header, body))
//! ```
//! An introduction (a device's own root-signed enrolment, sent to a device that does not
//! know it yet, so the two can then seal to each other) is sealed to the vault instead:
//! ```text
//! intro    = 0x02 ‖ nonce (24) ‖ XChaCha20-Poly1305(vault signal key, nonce, record, aad 0x02)
//! ```
//! Sealing to the recipient's enrolled key keeps SDP (addresses, DTLS fingerprints) from the
//! server; the sender's signature over the ephemeral key binds this sealing to the sender, so
//! a recipient cannot re-seal a signed signal to a third device, and a server (or anyone who
//! knows only public keys) can neither forge nor alter one. The header names vault, sender,
//! recipient, a session id and a per-session counter, which the recipient checks
//! ([`super::replay`]) so nothing is acted on twice.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use hkdf::Hkdf;
use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::ids::{DeviceId, VaultId};

/// The envelope format this build writes and reads.
pub const VERSION: u8 = 1;
/// The format of an introduction sealed to the vault.
pub const INTRO: u8 = 2;
/// First byte of a manual offer or answer (carried by a person, PROTOCOL §6.6).
pub const MANUAL: u8 = 3;
/// First byte of a retirement notice: a vault's `Retire` records, sealed to the vault, sent
/// through its rendezvous room by a device that rotated it (PROTOCOL §2.1).
pub const RETIRED: u8 = 4;
/// Most records a retirement notice carries (one per device that rotated the vault).
const MAX_NOTICE_RECORDS: usize = 16;
/// Largest envelope accepted (the rendezvous relays at most 64 KiB of base64 JSON).
pub const MAX_LEN: usize = 40 * 1024;
const KEY_SALT: &[u8] = b"hearth/v1/signal";
const SIG_LABEL: &[u8] = b"hearth/v1/signal-sig";
const OVERHEAD: usize = 1 + 32 + 24 + 16;
const SIG: usize = 64;

/// What an envelope says about itself (all of it signed and sealed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The vault both devices belong to.
    pub vault: VaultId,
    /// The sending device.
    pub from: DeviceId,
    /// The receiving device.
    pub to: DeviceId,
    /// The WebRTC session this signal belongs to (chosen by the offerer).
    pub session: [u8; 16],
    /// This sender's count of signals in the session, from 0.
    pub counter: u32,
    /// When it was sealed (ms since the Unix epoch), to refuse signals from long ago.
    pub at_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct Inner<'a> {
    header: Header,
    #[serde(borrow)]
    body: &'a [u8],
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Shorter than the fixed overhead, or larger than [`MAX_LEN`].
    #[error("signal of {0} bytes is not an envelope")]
    Length(usize),
    /// A format this build does not read.
    #[error("signal envelope version {0} is not supported")]
    Version(u8),
    /// The AEAD failed: not sealed to this device, or altered on the way.
    #[error("signal envelope does not open with this device's key (altered, or sealed to another device)")]
    Open,
    /// The opened bytes are not a header and body.
    #[error("signal envelope's contents are malformed")]
    Malformed,
    /// The header names another vault or recipient.
    #[error("signal envelope is addressed to another vault or device")]
    Misaddressed,
    /// The sender is not an active member of the vault.
    #[error("signal from {0}, which is not an active device of this vault")]
    UnknownSender(DeviceId),
    /// The signature does not verify with the sender's enrolled key.
    #[error("signal envelope's signature does not verify")]
    Signature,
}

/// Seals `body` from the device holding `sign` to the device whose x25519 key is `to_dh`.
pub fn seal(
    header: &Header,
    body: &[u8],
    sign: &SigningKey,
    to_dh: &[u8; 32],
    rng: &mut (impl RngCore + CryptoRng),
) -> Vec<u8> {
    let eph = StaticSecret::random_from_rng(&mut *rng);
    let eph_pk = PublicKey::from(&eph).to_bytes();
    let shared = Zeroizing::new(eph.diffie_hellman(&PublicKey::from(*to_dh)).to_bytes());
    let inner = postcard_inner(header, body);
    let sig = sign.sign(&signed_bytes(&eph_pk, &inner));
    let mut plain = Zeroizing::new(inner);
    plain.extend_from_slice(&sig.to_bytes());
    let mut nonce = [0u8; 24];
    rng.fill_bytes(&mut nonce);
    let cipher = XChaCha20Poly1305::new(key(&shared, &eph_pk, to_dh).as_ref().into());
    let aad = aad(&eph_pk);
    // Encryption with a 32-byte key and a 24-byte nonce cannot fail for inputs this small.
    let sealed = cipher.encrypt(XNonce::from_slice(&nonce), Payload { msg: &plain, aad: &aad }).unwrap_or_default();
    let mut out = Vec::with_capacity(OVERHEAD + plain.len());
    out.push(VERSION);
    out.extend_from_slice(&eph_pk);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    out
}

/// Opens an envelope addressed to device `me` of `vault`, whose x25519 secret is `dh`;
/// `sender_key` gives an active member's ed25519 key. Returns the checked header and body.
pub fn open(
    bytes: &[u8],
    vault: VaultId,
    me: DeviceId,
    dh: &StaticSecret,
    sender_key: impl Fn(DeviceId) -> Option<[u8; 32]>,
) -> Result<(Header, Vec<u8>), EnvelopeError> {
    if bytes.len() < OVERHEAD + SIG || bytes.len() > MAX_LEN {
        return Err(EnvelopeError::Length(bytes.len()));
    }
    if bytes[0] != VERSION {
        return Err(EnvelopeError::Version(bytes[0]));
    }
    let mut eph_pk = [0u8; 32];
    eph_pk.copy_from_slice(&bytes[1..33]);
    let nonce = XNonce::from_slice(&bytes[33..57]);
    let my_pk = PublicKey::from(dh).to_bytes();
    let shared = Zeroizing::new(dh.diffie_hellman(&PublicKey::from(eph_pk)).to_bytes());
    let cipher = XChaCha20Poly1305::new(key(&shared, &eph_pk, &my_pk).as_ref().into());
    let plain = Zeroizing::new(
        cipher.decrypt(nonce, Payload { msg: &bytes[57..], aad: &aad(&eph_pk) }).map_err(|_| EnvelopeError::Open)?,
    );
    let Some(split) = plain.len().checked_sub(SIG) else { return Err(EnvelopeError::Malformed) };
    let (inner_bytes, sig) = plain.split_at(split);
    let inner: Inner<'_> = postcard::from_bytes(inner_bytes).map_err(|_| EnvelopeError::Malformed)?;
    let header = inner.header;
    if header.vault != vault || header.to != me {
        return Err(EnvelopeError::Misaddressed);
    }
    let pk = sender_key(header.from).ok_or(EnvelopeError::UnknownSender(header.from))?;
    let vk = VerifyingKey::from_bytes(&pk).map_err(|_| EnvelopeError::Signature)?;
    let sig = Signature::from_slice(sig).map_err(|_| EnvelopeError::Signature)?;
    vk.verify(&signed_bytes(&eph_pk, inner_bytes), &sig).map_err(|_| EnvelopeError::Signature)?;
    Ok((header, inner.body.to_vec()))
}

/// Seals `record` (postcard bytes of the sender's enrolment) with the vault's signal key.
pub fn seal_intro(record: &[u8], key: &[u8; 32], rng: &mut (impl RngCore + CryptoRng)) -> Vec<u8> {
    seal_to_vault(INTRO, record, key, rng)
}

/// Opens an introduction; the caller checks the record's root signature.
pub fn open_intro(bytes: &[u8], key: &[u8; 32]) -> Result<Vec<u8>, EnvelopeError> {
    open_from_vault(INTRO, bytes, key)
}

/// Seals a retirement notice: the vault's `Retire` records, under its signal key.
pub fn seal_notice(
    records: &[hearth_proto::membership::MembershipRecord],
    key: &[u8; 32],
    rng: &mut (impl RngCore + CryptoRng),
) -> Vec<u8> {
    // Serializing records into a Vec cannot fail.
    seal_to_vault(RETIRED, &postcard::to_allocvec(records).unwrap_or_default(), key, rng)
}

/// Opens a retirement notice: only `Retire` records, at most 16 (the caller verifies their
/// root signatures, by adding them to the membership).
pub fn open_notice(
    bytes: &[u8],
    key: &[u8; 32],
) -> Result<Vec<hearth_proto::membership::MembershipRecord>, EnvelopeError> {
    use hearth_proto::membership::{MembershipBody, MembershipRecord};
    let plain = open_from_vault(RETIRED, bytes, key)?;
    let records: Vec<MembershipRecord> = postcard::from_bytes(&plain).map_err(|_| EnvelopeError::Malformed)?;
    if records.is_empty()
        || records.len() > MAX_NOTICE_RECORDS
        || !records.iter().all(|r| matches!(r.body, MembershipBody::Retire(_)))
    {
        return Err(EnvelopeError::Malformed);
    }
    Ok(records)
}

/// Seals `bytes` with a key every device of the vault derives (XChaCha20-Poly1305 under a
/// random nonce; the kind byte `tag` leads and is authenticated).
pub fn seal_to_vault(tag: u8, bytes: &[u8], key: &[u8; 32], rng: &mut (impl RngCore + CryptoRng)) -> Vec<u8> {
    let mut nonce = [0u8; 24];
    rng.fill_bytes(&mut nonce);
    let cipher = XChaCha20Poly1305::new(key.into());
    // As in `seal`: cannot fail for these sizes.
    let sealed = cipher.encrypt(XNonce::from_slice(&nonce), Payload { msg: bytes, aad: &[tag] }).unwrap_or_default();
    [&[tag][..], &nonce, &sealed].concat()
}

/// Opens what [`seal_to_vault`] sealed with kind `tag`.
pub fn open_from_vault(tag: u8, bytes: &[u8], key: &[u8; 32]) -> Result<Vec<u8>, EnvelopeError> {
    if bytes.len() < 1 + 24 + 16 || bytes.len() > MAX_LEN {
        return Err(EnvelopeError::Length(bytes.len()));
    }
    if bytes[0] != tag {
        return Err(EnvelopeError::Version(bytes[0]));
    }
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .decrypt(XNonce::from_slice(&bytes[1..25]), Payload { msg: &bytes[25..], aad: &[tag] })
        .map_err(|_| EnvelopeError::Open)
}

fn postcard_inner(header: &Header, body: &[u8]) -> Vec<u8> {
    // Serializing plain structs of arrays, integers and bytes into a Vec cannot fail.
    postcard::to_allocvec(&Inner { header: *header, body }).unwrap_or_default()
}

fn signed_bytes(eph_pk: &[u8; 32], inner: &[u8]) -> Vec<u8> {
    [SIG_LABEL, eph_pk.as_slice(), inner].concat()
}

fn aad(eph_pk: &[u8; 32]) -> [u8; 33] {
    let mut a = [0u8; 33];
    a[0] = VERSION;
    a[1..].copy_from_slice(eph_pk);
    a
}

fn key(shared: &[u8; 32], eph_pk: &[u8; 32], to_pk: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(KEY_SALT), shared);
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's output limit: expand cannot fail.
    let _ = hk.expand(&[eph_pk.as_slice(), to_pk.as_slice()].concat(), out.as_mut());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    struct Dev {
        id: DeviceId,
        sign: SigningKey,
        dh: StaticSecret,
    }

    fn dev(n: u8) -> Dev {
        Dev { id: DeviceId([n; 16]), sign: SigningKey::from_bytes(&[n; 32]), dh: StaticSecret::from([n ^ 0x55; 32]) }
    }

    const VAULT: VaultId = VaultId([9; 16]);

    fn header(from: &Dev, to: &Dev) -> Header {
        Header { vault: VAULT, from: from.id, to: to.id, session: [7; 16], counter: 3, at_ms: 1_700_000_000_000 }
    }

    fn sealed(from: &Dev, to: &Dev, body: &[u8]) -> Vec<u8> {
        let to_pk = PublicKey::from(&to.dh).to_bytes();
        seal(&header(from, to), body, &from.sign, &to_pk, &mut StdRng::seed_from_u64(1))
    }

    fn keys_of<'a>(devs: &'a [&'a Dev]) -> impl Fn(DeviceId) -> Option<[u8; 32]> + 'a {
        move |id| devs.iter().find(|d| d.id == id).map(|d| d.sign.verifying_key().to_bytes())
    }

    #[test]
    fn an_envelope_opens_for_its_recipient_only() {
        let (a, b, c) = (dev(1), dev(2), dev(3));
        let env = sealed(&a, &b, b"v=0 offer");
        let (h, body) = open(&env, VAULT, b.id, &b.dh, keys_of(&[&a, &b])).unwrap();
        assert_eq!((h, body.as_slice()), (header(&a, &b), b"v=0 offer".as_slice()));
        assert_eq!(open(&env, VAULT, c.id, &c.dh, keys_of(&[&a])), Err(EnvelopeError::Open));
        assert!(!env.windows(9).any(|w| w == b"v=0 offer"), "the body is not visible on the wire");
    }

    #[test]
    fn every_altered_byte_is_refused() {
        let (a, b) = (dev(1), dev(2));
        let env = sealed(&a, &b, b"answer");
        for i in 0..env.len() {
            let mut bad = env.clone();
            bad[i] ^= 0x01;
            assert!(open(&bad, VAULT, b.id, &b.dh, keys_of(&[&a])).is_err(), "byte {i}");
        }
        for n in 0..env.len() {
            assert!(open(&env[..n], VAULT, b.id, &b.dh, keys_of(&[&a])).is_err(), "truncated to {n}");
        }
    }

    #[test]
    fn a_sender_outside_the_vault_or_a_forged_signature_is_refused() {
        let (a, b, m) = (dev(1), dev(2), dev(6));
        let env = sealed(&a, &b, b"x");
        assert_eq!(open(&env, VAULT, b.id, &b.dh, keys_of(&[])), Err(EnvelopeError::UnknownSender(a.id)));
        // A device that claims to be `a` but signs with its own key (the server knows only
        // public keys, so this is the best it can do).
        let to_pk = PublicKey::from(&b.dh).to_bytes();
        let forged = seal(&header(&a, &b), b"x", &m.sign, &to_pk, &mut StdRng::seed_from_u64(2));
        assert_eq!(open(&forged, VAULT, b.id, &b.dh, keys_of(&[&a])), Err(EnvelopeError::Signature));
    }

    #[test]
    fn another_vault_or_recipient_in_the_header_is_refused() {
        let (a, b) = (dev(1), dev(2));
        let to_pk = PublicKey::from(&b.dh).to_bytes();
        let mut h = header(&a, &b);
        h.vault = VaultId([8; 16]);
        let env = seal(&h, b"x", &a.sign, &to_pk, &mut StdRng::seed_from_u64(3));
        assert_eq!(open(&env, VAULT, b.id, &b.dh, keys_of(&[&a])), Err(EnvelopeError::Misaddressed));
        let mut h = header(&a, &b);
        h.to = DeviceId([4; 16]);
        let env = seal(&h, b"x", &a.sign, &to_pk, &mut StdRng::seed_from_u64(3));
        assert_eq!(open(&env, VAULT, b.id, &b.dh, keys_of(&[&a])), Err(EnvelopeError::Misaddressed));
    }

    #[test]
    fn a_signature_holds_only_under_the_sealing_it_was_made_for() {
        // Whoever learns a signed inner (its recipient) cannot seal it anew, even to the
        // same device: the signature covers the ephemeral key of the first sealing.
        let (a, b) = (dev(1), dev(2));
        let env = sealed(&a, &b, b"x");
        let b_pk = PublicKey::from(&b.dh).to_bytes();
        let eph_pk: [u8; 32] = env[1..33].try_into().unwrap();
        let shared = b.dh.diffie_hellman(&PublicKey::from(eph_pk)).to_bytes();
        let cipher = XChaCha20Poly1305::new(key(&shared, &eph_pk, &b_pk).as_ref().into());
        let aad1 = aad(&eph_pk);
        let plain = cipher.decrypt(XNonce::from_slice(&env[33..57]), Payload { msg: &env[57..], aad: &aad1 }).unwrap();
        let eph = StaticSecret::from([42; 32]);
        let eph2 = PublicKey::from(&eph).to_bytes();
        let shared2 = eph.diffie_hellman(&PublicKey::from(b_pk)).to_bytes();
        let cipher2 = XChaCha20Poly1305::new(key(&shared2, &eph2, &b_pk).as_ref().into());
        let ct = cipher2.encrypt(XNonce::from_slice(&[0; 24]), Payload { msg: &plain, aad: &aad(&eph2) }).unwrap();
        let resealed = [&[VERSION][..], &eph2, &[0; 24], &ct].concat();
        assert_eq!(open(&resealed, VAULT, b.id, &b.dh, keys_of(&[&a])), Err(EnvelopeError::Signature));
    }

    #[test]
    fn lengths_are_checked_at_their_exact_bounds() {
        let b = dev(2);
        let keys = keys_of(&[]);
        // Version, ephemeral key, nonce, tag and signature: 137 bytes before any content.
        assert_eq!(open(&[VERSION; 136], VAULT, b.id, &b.dh, &keys), Err(EnvelopeError::Length(136)));
        assert_eq!(open(&[VERSION; 137], VAULT, b.id, &b.dh, &keys), Err(EnvelopeError::Open));
        assert_eq!(open(&vec![VERSION; MAX_LEN], VAULT, b.id, &b.dh, &keys), Err(EnvelopeError::Open));
        let over = MAX_LEN + 1;
        assert_eq!(open(&vec![VERSION; over], VAULT, b.id, &b.dh, &keys), Err(EnvelopeError::Length(over)));
        assert_eq!(open_intro(&[INTRO; 40], &[3; 32]), Err(EnvelopeError::Length(40)));
        assert_eq!(open_intro(&[INTRO; 41], &[3; 32]), Err(EnvelopeError::Open));
        assert_eq!(open_intro(&vec![INTRO; over], &[3; 32]), Err(EnvelopeError::Length(over)));
        assert_eq!(open_intro(&vec![INTRO; MAX_LEN], &[3; 32]), Err(EnvelopeError::Open));
    }

    #[test]
    fn a_retirement_notice_carries_retire_records_only() {
        use hearth_proto::membership::{Enrollment, MembershipBody, MembershipRecord, Retirement};
        let root = SigningKey::from_bytes(&[1; 32]);
        let retire = |at_ms| {
            let body = Retirement { vault_id: VAULT, at_ms, by: DeviceId([1; 16]), carried: vec![] };
            MembershipRecord::sign(&root, MembershipBody::Retire(body))
        };
        let key = [3u8; 32];
        let rng = &mut StdRng::seed_from_u64(5);
        let env = seal_notice(&[retire(1), retire(2)], &key, rng);
        assert_eq!(env[0], RETIRED);
        assert_eq!(open_notice(&env, &key).unwrap(), vec![retire(1), retire(2)]);
        assert_eq!(open_notice(&env, &[4; 32]), Err(EnvelopeError::Open));
        assert_eq!(open_intro(&env, &key), Err(EnvelopeError::Version(RETIRED)), "not an introduction");
        let enrol = MembershipRecord::sign(
            &root,
            MembershipBody::Enroll(Enrollment {
                vault_id: VAULT,
                device_id: DeviceId([1; 16]),
                sign_pk: [1; 32],
                dh_pk: [2; 32],
                at_ms: 0,
            }),
        );
        for bad in [vec![], vec![retire(1), enrol], vec![retire(1); MAX_NOTICE_RECORDS + 1]] {
            assert_eq!(
                open_notice(&seal_notice(&bad, &key, rng), &key),
                Err(EnvelopeError::Malformed),
                "{}",
                bad.len()
            );
        }
        assert_eq!(
            open_notice(&seal_notice(&vec![retire(1); MAX_NOTICE_RECORDS], &key, rng), &key).map(|r| r.len()),
            Ok(16)
        );
        assert_eq!(open_notice(&seal_to_vault(RETIRED, b"junk", &key, rng), &key), Err(EnvelopeError::Malformed));
    }

    #[test]
    fn an_introduction_opens_with_the_vault_key_only() {
        let key = [3u8; 32];
        let env = seal_intro(b"record", &key, &mut StdRng::seed_from_u64(5));
        assert_eq!(open_intro(&env, &key).unwrap(), b"record");
        assert_eq!(open_intro(&env, &[4; 32]), Err(EnvelopeError::Open));
        for i in 0..env.len() {
            let mut bad = env.clone();
            bad[i] ^= 0x80;
            assert!(open_intro(&bad, &key).is_err(), "byte {i}");
        }
        assert_eq!(open_intro(&env[..40], &key), Err(EnvelopeError::Length(40)));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let b = dev(2);
            let a = dev(1);
            prop_assert!(open(&bytes, VAULT, b.id, &b.dh, keys_of(&[&a])).is_err());
            prop_assert!(open_intro(&bytes, &[3; 32]).is_err());
        }
    }
}
