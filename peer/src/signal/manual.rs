//! Manual signaling, with no server at all (`hearth connect`): an offer or answer a person
//! carries from one device to the other as text (PROTOCOL.md §6.6).
//!
//! At offer time the recipient is unknown, so both texts are sealed to a key every device of
//! the vault derives (HKDF of the vault's signal key, label `hearth/v1/signal-manual`), and
//! each carries its sender's root-signed enrolment and a signature by its device key over
//! vault, session, time, direction and SDP. A text opens only for the vault, verifies only
//! for an enrolled, unrevoked device, is acted on once, and expires after ten minutes.

use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use hearth_proto::membership::{Enrollment, MembershipBody, MembershipRecord};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::envelope::{self, EnvelopeError};
use crate::ids::VaultId;

/// How an offer text starts.
pub const OFFER_PREFIX: &str = "hearth-offer:";
/// How an answer text starts.
pub const ANSWER_PREFIX: &str = "hearth-answer:";
/// A text older than this (or this far in the future) is refused: a person carries it in
/// minutes, and an old one must not open a connection later.
pub const MAX_AGE_MS: u64 = 10 * 60 * 1000;
const KEY_LABEL: &[u8] = b"hearth/v1/signal-manual";
const SIG_LABEL: &[u8] = b"hearth/v1/signal-manual-sig";

/// The key manual texts are sealed with, from the vault's signal key.
pub fn key(vault_signal_key: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(None, vault_signal_key);
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's output limit: expand cannot fail.
    let _ = hk.expand(KEY_LABEL, out.as_mut());
    out
}

/// What a manual text carries (postcard, then sealed).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Wire {
    record: MembershipRecord,
    session: [u8; 16],
    at_ms: u64,
    answer: bool,
    sdp: String,
    sig: Vec<u8>,
}

/// An opened and verified manual text.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The sender's enrolment (root-signed, checked by the caller against revocations).
    pub enrollment: Enrollment,
    /// The session the offer opened.
    pub session: [u8; 16],
    /// An answer (else an offer).
    pub answer: bool,
    /// The SDP.
    pub sdp: String,
}

/// Why a manual text was refused, in words a person pasting it can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManualError {
    /// Not text `hearth connect` printed.
    #[error("not a Hearth {0} (it starts with {1})")]
    NotText(&'static str, &'static str),
    /// An offer where an answer belongs, or the other way round.
    #[error("this is an {got}, but an {expected} is needed here")]
    WrongKind {
        /// What was needed.
        expected: &'static str,
        /// What was pasted.
        got: &'static str,
    },
    /// Cut short or altered while carried.
    #[error("the text is damaged or cut short: copy all of it again")]
    Damaged,
    /// Another vault's, or altered.
    #[error("the text does not open with this vault's keys (another vault's, or altered)")]
    Foreign,
    /// Its signature or enrolment does not verify.
    #[error("the text's signature does not verify: {0}")]
    Forged(String),
    /// Too old (or from a device whose clock is far ahead).
    #[error("the text is {0} minutes old: make a new one")]
    Expired(u64),
}

fn signed(vault: VaultId, w: &Wire) -> Vec<u8> {
    let mut v = Vec::with_capacity(SIG_LABEL.len() + 16 + 16 + 9 + w.sdp.len());
    v.extend_from_slice(SIG_LABEL);
    v.extend_from_slice(&vault.0);
    v.extend_from_slice(&w.session);
    v.extend_from_slice(&w.at_ms.to_be_bytes());
    v.push(u8::from(w.answer));
    v.extend_from_slice(w.sdp.as_bytes());
    v
}

/// What a manual text says, before sealing.
#[derive(Debug, Clone, Copy)]
pub struct Draft<'a> {
    /// The session (the offer's, for an answer).
    pub session: [u8; 16],
    /// An answer (else an offer).
    pub answer: bool,
    /// The SDP.
    pub sdp: &'a str,
    /// When it is made (unix ms).
    pub at_ms: u64,
}

/// Seals and encodes a manual offer or answer as text, signed by the device whose
/// enrolment is `record`.
pub fn seal(
    key: &[u8; 32],
    vault: VaultId,
    record: &MembershipRecord,
    sign: &SigningKey,
    d: &Draft<'_>,
    rng: &mut (impl rand::RngCore + rand::CryptoRng),
) -> String {
    let (session, answer, at_ms) = (d.session, d.answer, d.at_ms);
    let mut w = Wire { record: record.clone(), session, at_ms, answer, sdp: d.sdp.to_owned(), sig: Vec::new() };
    w.sig = sign.sign(&signed(vault, &w)).to_bytes().to_vec();
    // Serializing plain structs into a Vec cannot fail.
    let bytes = postcard::to_allocvec(&w).unwrap_or_default();
    let mut sealed = envelope::seal_to_vault(envelope::MANUAL, &bytes, key, rng);
    // A check on what a person carries: a text cut short or mistyped is told apart from
    // another vault's (which opens with no key here) before any decryption.
    let check = checksum(&sealed);
    sealed.extend_from_slice(&check);
    let prefix = if answer { ANSWER_PREFIX } else { OFFER_PREFIX };
    format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed))
}

fn checksum(bytes: &[u8]) -> [u8; 4] {
    use sha2::Digest;
    let d = Sha256::digest(bytes);
    [d[0], d[1], d[2], d[3]]
}

/// The sealed bytes of a text with its prefix stripped, if its checksum holds.
fn decode(b64: &str) -> Option<Vec<u8>> {
    let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(b64).ok()?;
    let at = bytes.len().checked_sub(4)?;
    let check: [u8; 4] = bytes[at..].try_into().ok()?;
    bytes.truncate(at);
    (checksum(&bytes) == check).then_some(bytes)
}

/// True when `text` (spaces and line breaks ignored) is a whole offer or answer: a reader of
/// pasted lines stops there.
pub fn is_complete(text: &str) -> bool {
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    [OFFER_PREFIX, ANSWER_PREFIX].iter().any(|p| text.strip_prefix(p).and_then(decode).is_some())
}

/// Decodes, opens and verifies a text that should be an answer (`answer`) or an offer, for
/// the vault with `root`. Revocation and replay are the caller's to check.
pub fn open(
    key: &[u8; 32],
    vault: VaultId,
    root: &VerifyingKey,
    text: &str,
    answer: bool,
    now_ms: u64,
) -> Result<Opened, ManualError> {
    let (want, other) = if answer { (ANSWER_PREFIX, OFFER_PREFIX) } else { (OFFER_PREFIX, ANSWER_PREFIX) };
    let what = if answer { "answer" } else { "offer" };
    // People paste with line breaks and spaces (a terminal wraps long lines).
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let Some(b64) = text.strip_prefix(want) else {
        return Err(if text.starts_with(other) {
            ManualError::WrongKind { expected: what, got: if answer { "offer" } else { "answer" } }
        } else {
            ManualError::NotText(what, want)
        });
    };
    let sealed = decode(b64).ok_or(ManualError::Damaged)?;
    let bytes = match envelope::open_from_vault(envelope::MANUAL, &sealed, key) {
        Ok(b) => Zeroizing::new(b),
        Err(EnvelopeError::Length(_) | EnvelopeError::Version(_)) => return Err(ManualError::Damaged),
        Err(_) => return Err(ManualError::Foreign),
    };
    let w: Wire = postcard::from_bytes(&bytes).map_err(|_| ManualError::Damaged)?;
    if w.answer != answer {
        return Err(ManualError::Forged("its kind differs from its prefix".into()));
    }
    w.record.verify(root, vault).map_err(|e| ManualError::Forged(e.to_string()))?;
    let MembershipBody::Enroll(e) = &w.record.body else {
        return Err(ManualError::Forged("its record is not an enrolment".into()));
    };
    let vk = VerifyingKey::from_bytes(&e.sign_pk).map_err(|_| ManualError::Forged("bad device key".into()))?;
    let sig = Signature::from_slice(&w.sig).map_err(|_| ManualError::Forged("malformed signature".into()))?;
    vk.verify(&signed(vault, &w), &sig).map_err(|_| ManualError::Forged("wrong signature".into()))?;
    let age = now_ms.abs_diff(w.at_ms);
    if age > MAX_AGE_MS {
        return Err(ManualError::Expired(age / 60_000));
    }
    if w.sdp.len() > super::MAX_SDP {
        return Err(ManualError::Damaged);
    }
    Ok(Opened { enrollment: e.clone(), session: w.session, answer, sdp: w.sdp })
}

#[cfg(test)]
#[path = "manual_tests.rs"]
mod tests;
