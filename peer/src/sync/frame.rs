//! Sync messages and their framing: versioned postcard messages, split into chunks that
//! each fit one Noise transport message, reassembled with a hard size cap.

use serde::{Deserialize, Serialize};

use crate::identity::MembershipRecord;
use crate::ids::DeviceId;
use crate::vault::{Batch, SignedHead, VersionVector};

/// Protocol version carried by every message.
pub const PROTOCOL_VERSION: u8 = 5;
/// Largest Noise message (the Noise spec's limit).
pub const NOISE_MAX: usize = 65_535;
/// Noise AEAD tag.
const TAG: usize = 16;
/// Plaintext bytes of one chunk: the Noise limit minus the tag and our one-byte chunk header.
pub const CHUNK: usize = NOISE_MAX - TAG - 1;

/// A message of the sync protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// First message after the handshake: what the sender knows.
    Hello {
        /// Every membership record the sender holds (root-signed).
        membership: Vec<MembershipRecord>,
        /// The sender's latest signed head per author (its version vector, provably).
        heads: Vec<SignedHead>,
    },
    /// Entries the receiver lacks.
    Batch(Batch),
    /// Sent after a batch is committed: the receiver's version vector now.
    Ack(VersionVector),
    /// New membership records (a revocation made during a live session).
    Membership(Vec<MembershipRecord>),
    /// The sender's log of `author` forked from the receiver's (a signed head differed):
    /// the sender's hashes at and below the fork, for the receiver to settle it.
    Hashes {
        /// The forked author.
        author: DeviceId,
        /// (seq, entry hash), descending.
        hashes: Vec<(u64, [u8; 32])>,
    },
    /// What the sender now holds of some authors (only those it had not told yet): sent
    /// after it stored entries another peer brought, so this peer need not forward them.
    Have(VersionVector),
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    version: u8,
    msg: Msg,
}

/// Framing failures (always the peer's fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A chunk with no header byte.
    #[error("empty chunk")]
    EmptyChunk,
    /// Reassembled message over the limit.
    #[error("message exceeds the {0}-byte limit")]
    TooLarge(usize),
    /// Does not decode.
    #[error("malformed sync message")]
    Malformed,
    /// A protocol version this build does not speak.
    #[error("peer speaks sync protocol version {0}; this build speaks {PROTOCOL_VERSION}")]
    Version(u8),
}

/// Encodes `msg` and splits it into chunk plaintexts (header byte 1 = more follow, 0 = last).
pub fn encode(msg: &Msg) -> Vec<Vec<u8>> {
    let bytes = postcard::to_stdvec(&Envelope { version: PROTOCOL_VERSION, msg: msg.clone() }).unwrap_or_default();
    let mut out = Vec::with_capacity(bytes.len() / CHUNK + 1);
    let mut parts = bytes.chunks(CHUNK).peekable();
    if parts.peek().is_none() {
        out.push(vec![0]);
    }
    while let Some(p) = parts.next() {
        let mut c = Vec::with_capacity(p.len() + 1);
        c.push(u8::from(parts.peek().is_some()));
        c.extend_from_slice(p);
        out.push(c);
    }
    out
}

/// Reassembles chunks into messages.
#[derive(Debug, Default)]
pub struct Reassembler {
    buf: Vec<u8>,
    max: usize,
}

impl Reassembler {
    /// A reassembler refusing messages over `max` bytes.
    pub fn new(max: usize) -> Self {
        Self { buf: Vec::new(), max }
    }

    /// Feeds one decrypted chunk; returns a message when one is complete.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Option<Msg>, FrameError> {
        let (&more, body) = chunk.split_first().ok_or(FrameError::EmptyChunk)?;
        if self.buf.len() + body.len() > self.max {
            return Err(FrameError::TooLarge(self.max));
        }
        self.buf.extend_from_slice(body);
        if more != 0 {
            return Ok(None);
        }
        let bytes = std::mem::take(&mut self.buf);
        // Read the version first so a newer peer gets a clear "version" error, not "malformed".
        // (An empty message fails to decode below: Malformed.)
        if let Some(&v) = bytes.first().filter(|v| **v != PROTOCOL_VERSION) {
            return Err(FrameError::Version(v));
        }
        let env: Envelope = postcard::from_bytes(&bytes).map_err(|_| FrameError::Malformed)?;
        Ok(Some(env.msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_messages_split_and_reassemble() {
        let batch = Batch {
            authors: vec![],
            entries: (0..5)
                .map(|i| crate::vault::WireEntry {
                    author: 0,
                    seq: i,
                    hlc: Default::default(),
                    deps: Default::default(),
                    sealed: vec![7; 30_000],
                })
                .collect(),
            heads: vec![],
        };
        let msg = Msg::Batch(batch);
        let chunks = encode(&msg);
        assert!(chunks.len() >= 3);
        assert!(chunks.iter().all(|c| c.len() <= CHUNK + 1));
        let mut r = Reassembler::new(1 << 20);
        let mut got = None;
        for c in &chunks {
            got = r.push(c).unwrap();
        }
        assert_eq!(got, Some(msg.clone()));
        let mut small = Reassembler::new(50_000);
        let err = chunks.iter().find_map(|c| small.push(c).err());
        assert_eq!(err, Some(FrameError::TooLarge(50_000)));
        // A message of exactly the limit is taken.
        let total: usize = chunks.iter().map(|c| c.len() - 1).sum();
        let mut exact = Reassembler::new(total);
        let got = chunks.iter().map(|c| exact.push(c).unwrap()).last().flatten();
        assert_eq!(got, Some(msg));
    }

    #[test]
    fn a_full_chunk_with_its_header_and_tag_fills_one_noise_message() {
        assert_eq!(CHUNK + 1 + TAG, NOISE_MAX);
        assert_eq!(NOISE_MAX, 65_535, "the Noise protocol's message limit");
    }

    #[test]
    fn garbage_and_versions_are_typed_errors() {
        let mut r = Reassembler::new(1 << 20);
        assert_eq!(r.push(&[]), Err(FrameError::EmptyChunk));
        assert_eq!(r.push(&[0, 9, 1, 2]), Err(FrameError::Version(9)));
        assert_eq!(r.push(&[0, PROTOCOL_VERSION, 200, 200, 200]), Err(FrameError::Malformed));
    }

    /// Version 5 added the `Retire` membership record: a version-4 peer, which reads the
    /// version byte first, is told "version 5", never "malformed", by a hello that carries one.
    #[test]
    fn the_retire_record_travels_only_under_version_5() {
        use crate::identity::{MembershipBody, MembershipRecord, Retirement};
        assert_eq!(PROTOCOL_VERSION, 5);
        let root = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
        let body = Retirement { vault_id: Default::default(), at_ms: 1, by: Default::default(), carried: vec![] };
        let hello =
            Msg::Hello { membership: vec![MembershipRecord::sign(&root, MembershipBody::Retire(body))], heads: vec![] };
        let chunks = encode(&hello);
        assert_eq!(chunks.len(), 1);
        assert_eq!(&chunks[0][..2], &[0, 5], "last chunk flag, then the version");
        let mut r = Reassembler::new(1 << 20);
        assert_eq!(r.push(&chunks[0]), Ok(Some(hello)));
        let mut old = chunks[0].clone();
        old[1] = 4;
        assert_eq!(r.push(&old), Err(FrameError::Version(4)));
    }
}
