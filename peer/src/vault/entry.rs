//! Log entries: a header in the clear, a sealed payload, a hash chain per author, and signed
//! heads (Hypercore-style: one signature authenticates everything up to it).

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::clock::{Hlc, VersionVector};
use super::op::{Op, MAX_OP_BYTES};
use crate::identity::SymmetricKey;
use crate::ids::{DeviceId, VaultId};

/// Hash of the (non-existent) entry before seq 1.
pub const GENESIS: [u8; 32] = [0; 32];
pub(crate) const NONCE_LEN: usize = 24;
/// Largest sealed payload an entry can have: nonce, the largest op, the AEAD tag.
pub const MAX_SEALED: usize = NONCE_LEN + MAX_OP_BYTES + 16;
const ENTRY_DOMAIN: &[u8] = b"hearth/v1/entry\0";
const HEAD_DOMAIN: &[u8] = b"hearth/v1/head\0";

/// Everything about an entry except its payload. Authenticated (AEAD associated data and the
/// hash chain) but not secret: the server-free sync peers route by it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryHeader {
    /// The vault.
    pub vault: VaultId,
    /// The author device.
    pub author: DeviceId,
    /// Position in the author's log, contiguous from 1.
    pub seq: u64,
    /// When it was written (hybrid logical clock).
    pub hlc: Hlc,
    /// What the author had seen of *other* devices when writing (its causal context).
    pub deps: VersionVector,
    /// Hash of the author's previous entry ([`GENESIS`] for seq 1).
    pub prev: [u8; 32],
}

/// An entry as stored and forwarded: header plus `nonce || ciphertext` of the op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The header.
    pub header: EntryHeader,
    /// XChaCha20-Poly1305 nonce followed by the sealed postcard op.
    #[serde(with = "raw_bytes")]
    pub sealed: Vec<u8>,
}

/// An author's signature over its log at `seq`, whose last entry hashes to `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHead {
    /// The author.
    pub author: DeviceId,
    /// Length of the log covered.
    pub seq: u64,
    /// Hash of entry `seq`.
    pub hash: [u8; 32],
    /// ed25519 signature by the author's device key.
    pub sig: Signature,
}

/// Why an entry or head was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntryError {
    /// The payload does not decrypt under the vault content key (tampered, or another vault).
    #[error("entry {0:?} does not unseal: tampered or from another vault")]
    Unseal((DeviceId, u64)),
    /// The payload decrypts but is not a valid op.
    #[error("entry {0:?} holds a malformed op")]
    BadOp((DeviceId, u64)),
    /// The op is larger than [`MAX_OP_BYTES`].
    #[error("op of {0} bytes exceeds the {MAX_OP_BYTES}-byte limit")]
    TooLarge(usize),
    /// Head signature does not verify.
    #[error("signed head of {0} at seq {1} has a bad signature")]
    BadHeadSignature(DeviceId, u64),
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    // postcard only fails on types it cannot represent (none here) or writer errors (Vec).
    postcard::to_stdvec(v).unwrap_or_default()
}

/// `nonce ‖ XChaCha20-Poly1305(key, nonce, plain, aad)` under a fresh random nonce: how an
/// entry's op (and a row of a home's view) is sealed. `None` only past 256 GiB of input.
pub(crate) fn seal_bytes(key: &SymmetricKey, plain: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let cipher = XChaCha20Poly1305::new(key.as_bytes().into());
    let ct = cipher.encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad }).ok()?;
    let mut sealed = Vec::with_capacity(NONCE_LEN + ct.len());
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&ct);
    Some(sealed)
}

/// Opens what [`seal_bytes`] sealed under `key` with `aad`; `None` when it does not open.
pub(crate) fn open_bytes(key: &SymmetricKey, sealed: &[u8], aad: &[u8]) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    let (nonce, ct) = sealed.split_at_checked(NONCE_LEN)?;
    let cipher = XChaCha20Poly1305::new(key.as_bytes().into());
    cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad }).ok().map(zeroize::Zeroizing::new)
}

impl Entry {
    /// Seals `op` under `key` with a fresh random nonce, bound to `header`.
    pub fn seal(header: EntryHeader, op: &Op, key: &SymmetricKey) -> Result<Self, EntryError> {
        let plain = zeroize::Zeroizing::new(encode(op));
        if plain.len() > MAX_OP_BYTES {
            return Err(EntryError::TooLarge(plain.len()));
        }
        let aad = encode(&header);
        let sealed = seal_bytes(key, &plain, &aad).ok_or(EntryError::Unseal((header.author, header.seq)))?;
        Ok(Self { header, sealed })
    }

    /// Decrypts and decodes the op.
    pub fn unseal(&self, key: &SymmetricKey) -> Result<Op, EntryError> {
        let id = (self.header.author, self.header.seq);
        let plain = open_bytes(key, &self.sealed, &encode(&self.header)).ok_or(EntryError::Unseal(id))?;
        postcard::from_bytes(&plain).map_err(|_| EntryError::BadOp(id))
    }

    /// The chain hash: SHA-256 over a domain tag, the encoded header and the sealed bytes.
    pub fn hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(ENTRY_DOMAIN);
        h.update(encode(&self.header));
        h.update(&self.sealed);
        h.finalize().into()
    }
}

impl SignedHead {
    fn signed_bytes(vault: VaultId, author: DeviceId, seq: u64, hash: &[u8; 32]) -> Vec<u8> {
        let mut v = Vec::with_capacity(HEAD_DOMAIN.len() + 16 + 16 + 8 + 32);
        v.extend_from_slice(HEAD_DOMAIN);
        v.extend_from_slice(&vault.0);
        v.extend_from_slice(&author.0);
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(hash);
        v
    }

    /// Signs the author's log head.
    pub fn sign(key: &SigningKey, vault: VaultId, author: DeviceId, seq: u64, hash: [u8; 32]) -> Self {
        let sig = key.sign(&Self::signed_bytes(vault, author, seq, &hash));
        Self { author, seq, hash, sig }
    }

    /// Verifies the signature with the author's public key.
    pub fn verify(&self, vault: VaultId, author_pk: &[u8; 32]) -> Result<(), EntryError> {
        let bad = EntryError::BadHeadSignature(self.author, self.seq);
        let pk = VerifyingKey::from_bytes(author_pk).map_err(|_| bad.clone())?;
        pk.verify(&Self::signed_bytes(vault, self.author, self.seq, &self.hash), &self.sig).map_err(|_| bad)
    }
}

/// A payload as bytes to serde: the same postcard encoding as a `Vec<u8>` (a varint length,
/// then the bytes), but decoded as one copy instead of byte by byte (a fifth of the time of
/// reading a batch back from the store went to that loop).
pub(crate) mod raw_bytes {
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(Bytes)
    }

    struct Bytes;

    impl<'de> Visitor<'de> for Bytes {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        /// Formats that write bytes as a list of numbers (JSON).
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
            while let Some(b) = seq.next_element()? {
                out.push(b);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ItemId;

    fn header() -> EntryHeader {
        EntryHeader {
            vault: VaultId([1; 16]),
            author: DeviceId([2; 16]),
            seq: 1,
            hlc: Hlc::default(),
            deps: VersionVector::default(),
            prev: GENESIS,
        }
    }

    /// An op whose encoding is exactly `len` bytes (one field, its value padded).
    fn op_of(len: usize) -> Op {
        let with =
            |n: usize| Op::Put { item: ItemId([3; 16]), name: None, fields: vec![("v".into(), Some("x".repeat(n)))] };
        let mut n = len;
        for _ in 0..4 {
            let got = encode(&with(n)).len();
            n = (n + len).saturating_sub(got);
        }
        let op = with(n);
        assert_eq!(encode(&op).len(), len);
        op
    }

    #[test]
    fn the_op_limit_is_exact_and_the_sealed_size_follows() {
        let key = SymmetricKey([9; 32]);
        let max = Entry::seal(header(), &op_of(MAX_OP_BYTES), &key).unwrap();
        assert_eq!(max.sealed.len(), MAX_SEALED);
        assert_eq!(MAX_SEALED, 24 + 32 * 1024 + 16);
        assert_eq!(max.unseal(&key).unwrap(), op_of(MAX_OP_BYTES));
        let over = Entry::seal(header(), &op_of(MAX_OP_BYTES + 1), &key).unwrap_err();
        assert!(matches!(over, EntryError::TooLarge(n) if n == MAX_OP_BYTES + 1), "{over}");
    }

    /// Sealing the same op under the same header twice (what a home restored from a backup
    /// does when it writes a seq again) never repeats a nonce under the content key.
    #[test]
    fn every_seal_draws_a_fresh_nonce() {
        let key = SymmetricKey([9; 32]);
        let seals: Vec<Entry> = (0..64).map(|_| Entry::seal(header(), &op_of(100), &key).unwrap()).collect();
        let nonces: std::collections::HashSet<&[u8]> = seals.iter().map(|e| &e.sealed[..NONCE_LEN]).collect();
        assert_eq!(nonces.len(), seals.len());
        assert!(seals.iter().all(|e| e.unseal(&key).unwrap() == op_of(100)));
    }

    #[test]
    fn a_sealed_payload_shorter_than_its_nonce_is_refused_not_a_panic() {
        let key = SymmetricKey([9; 32]);
        let mut e = Entry::seal(header(), &op_of(100), &key).unwrap();
        for len in [0, 10, NONCE_LEN, NONCE_LEN + 15] {
            e.sealed.truncate(len);
            assert!(matches!(e.unseal(&key), Err(EntryError::Unseal(_))), "{len} bytes");
        }
    }
    /// The payload's encoding is what a plain `Vec<u8>` gave (stored logs, bundles and peers
    /// of earlier builds read and write it), and JSON's list of numbers still reads.
    #[test]
    fn payload_bytes_encode_as_before() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Plain {
            header: EntryHeader,
            sealed: Vec<u8>,
        }
        let header = EntryHeader {
            vault: VaultId([1; 16]),
            author: DeviceId([2; 16]),
            seq: 3,
            hlc: Hlc { ms: 4, counter: 5 },
            deps: VersionVector::default(),
            prev: [6; 32],
        };
        let plain_of = |header: &EntryHeader| Plain { header: header.clone(), sealed: vec![1] };
        for sealed in [vec![], vec![0, 255, 7], vec![9; 300]] {
            let e = Entry { header: header.clone(), sealed: sealed.clone() };
            let plain = Plain { header: header.clone(), sealed };
            let bytes = postcard::to_stdvec(&e).unwrap();
            assert_eq!(bytes, postcard::to_stdvec(&plain).unwrap());
            assert_eq!(postcard::from_bytes::<Entry>(&bytes).unwrap(), e);
            let json = serde_json::to_string(&plain).unwrap();
            assert_eq!(serde_json::from_str::<Entry>(&json).unwrap(), e);
        }
        assert!(postcard::from_bytes::<Entry>(&[0; 10]).is_err(), "a cut encoding is refused");
        let mut json: serde_json::Value = serde_json::to_value(plain_of(&header)).unwrap();
        json["sealed"] = "not bytes".into();
        let e = serde_json::from_value::<Entry>(json).unwrap_err().to_string();
        assert!(e.contains("expected bytes"), "{e}");
    }
}
