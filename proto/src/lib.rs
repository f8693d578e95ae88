//! Types both the peer and the rendezvous server must agree on, in one small crate so the
//! server checks membership without depending on the peer (and its SQLite, Noise, ...).
//!
//! - [`ids`]: vault, device and item ids.
//! - [`membership`]: enrolment and revocation records signed by the vault root key.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod ids;
pub mod membership;

use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

/// `vault_id` = SHA-256(root public key)[..16].
pub fn vault_id_of(root: &VerifyingKey) -> ids::VaultId {
    let h = Sha256::digest(root.as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&h[..16]);
    ids::VaultId(id)
}
