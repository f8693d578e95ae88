//! Bundles: every entry and membership record a device holds, sealed into one file for
//! sneakernet sync between devices that never share a network.
//!
//! Layout: `HEARTHB1` ‖ vault id (16) ‖ nonce (24) ‖ XChaCha20-Poly1305(content key,
//! postcard(BundleBody)), with the magic and vault id as associated data. The vault id is in
//! the clear so a bundle from another vault is refused with a clear message.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use std::collections::{BTreeMap, BTreeSet};

use super::clock::VersionVector;
use super::entry::GENESIS;
use super::replica::{Batch, Received, Replica, ReplicaError};
use super::store::LogStore;
use crate::identity::MembershipRecord;
use crate::ids::{DeviceId, VaultId};

const MAGIC: &[u8; 8] = b"HEARTHB1";
const HEAD: usize = 8 + 16 + 24;
/// Bytes per batch inside a bundle (each batch is verified and committed on its own; the
/// size only decides how a bundle is cut, never what it holds).
const BATCH_BYTES: usize = 1_048_576;
/// Largest bundle imported (a vault of ~1,000,000 entries; a bigger file is not ours).
pub const MAX_BUNDLE: usize = 512 << 20;

#[derive(Serialize, Deserialize)]
struct BundleBody {
    membership: Vec<MembershipRecord>,
    batches: Vec<Batch>,
}

/// Why a bundle was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// Not a bundle at all.
    #[error("not a Hearth bundle")]
    NotABundle,
    /// A bundle of another vault.
    #[error("this bundle belongs to vault {0}, not this one")]
    OtherVault(VaultId),
    /// Does not decrypt or decode: damaged or tampered with.
    #[error("bundle is damaged or has been tampered with")]
    Damaged,
    /// The entries inside were refused.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// Over [`MAX_BUNDLE`].
    #[error("bundle of {0} bytes is over the {MAX_BUNDLE}-byte limit")]
    TooLarge(usize),
}

/// Seals everything `replica` holds into bundle bytes.
pub fn export<S: LogStore>(replica: &Replica<S>) -> Result<Vec<u8>, BundleError> {
    let mut batches = Vec::new();
    let mut cursor = 0;
    let none = Default::default();
    loop {
        let b = replica.batch_for(&none, &mut cursor, BATCH_BYTES)?;
        if b.is_empty() {
            break;
        }
        batches.push(b);
    }
    let body = BundleBody { membership: replica.membership().records().to_vec(), batches };
    let plain = postcard::to_stdvec(&body).map_err(|_| BundleError::Damaged)?;
    let vault = replica.vault_id();
    let mut nonce = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let mut aad = MAGIC.to_vec();
    aad.extend_from_slice(&vault.0);
    let ct = XChaCha20Poly1305::new(replica.vault_keys().content.as_bytes().into())
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: &plain, aad: &aad })
        .map_err(|_| BundleError::Damaged)?;
    let mut out = aad;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Verifies and merges a bundle into `replica` (idempotent: importing twice adds nothing).
pub fn import<S: LogStore>(replica: &mut Replica<S>, bytes: &[u8]) -> Result<Received, BundleError> {
    check_size(bytes.len())?;
    if bytes.len() < HEAD || &bytes[..8] != MAGIC {
        return Err(BundleError::NotABundle);
    }
    let mut vid = [0u8; 16];
    vid.copy_from_slice(&bytes[8..24]);
    let vault = VaultId(vid);
    if vault != replica.vault_id() {
        return Err(BundleError::OtherVault(vault));
    }
    let plain = zeroize::Zeroizing::new(
        XChaCha20Poly1305::new(replica.vault_keys().content.as_bytes().into())
            .decrypt(XNonce::from_slice(&bytes[24..HEAD]), Payload { msg: &bytes[HEAD..], aad: &bytes[..24] })
            .map_err(|_| BundleError::Damaged)?,
    );
    let body: BundleBody = postcard::from_bytes(&plain).map_err(|_| BundleError::Damaged)?;
    replica.add_membership(body.membership)?;
    // A bundle carries whole logs, so a log in it that parts from the one held here is a
    // fork this import settles, as a session would (sealed with the content key, the
    // bundle is as authentic as a session's `Hashes`).
    for (author, hashes) in log_hashes(vault, &body.batches, replica.version()) {
        replica.settle_fork(author, &hashes)?;
    }
    let mut total = Received::default();
    for b in &body.batches {
        let r = replica.receive(b)?;
        total.new += r.new;
        total.duplicates += r.duplicates;
        total.void += r.void;
        total.refused += r.refused;
    }
    Ok(total)
}

/// Refuses a file over [`MAX_BUNDLE`] before reading it further.
pub fn check_size(len: usize) -> Result<(), BundleError> {
    if len > MAX_BUNDLE {
        return Err(BundleError::TooLarge(len));
    }
    Ok(())
}

/// Per author, `(seq, hash)` of its log as the batches carry it, the chain recomputed from
/// seq 1 (an author whose run skips a seq stops there; `receive` refuses it anyway). Only
/// seqs this replica also holds (up to `held`) can show where logs part, so nothing beyond
/// is hashed here: those entries are new, and `receive` hashes them once.
fn log_hashes(vault: VaultId, batches: &[Batch], held: &VersionVector) -> BTreeMap<DeviceId, Vec<(u64, [u8; 32])>> {
    let mut out: BTreeMap<DeviceId, Vec<(u64, [u8; 32])>> = BTreeMap::new();
    let mut broken = BTreeSet::new();
    for b in batches {
        for we in &b.entries {
            let Some(author) = b.authors.get(usize::from(we.author)) else { continue };
            if we.seq > held.get(*author) {
                continue;
            }
            let log = out.entry(*author).or_default();
            let (seq, prev) = log.last().copied().unwrap_or((0, GENESIS));
            if we.seq != seq + 1 || broken.contains(author) {
                broken.insert(*author);
                continue;
            }
            log.push((we.seq, we.to_entry(vault, *author, prev).hash()));
        }
    }
    out
}
