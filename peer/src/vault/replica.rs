//! A device's copy of the vault: its verified op log, membership and merged state.
//!
//! Local writes append a sealed entry and a signed head. Remote entries arrive as a
//! [`Batch`]; [`Replica::receive`] verifies all of it (membership, contiguity, causal
//! order, hash chain up to a signed head, seal) before one atomic commit, so a bad batch
//! stores nothing. Any replica can forward any author's entries unchanged: that is the mesh.
//!
//! Revocation converges: entries of a revoked device beyond the lowest cut-off are *void* on
//! every replica. Learning a revocation moves them out of the log (kept sealed in the store's
//! void list, so the user can still see what they said) and recomputes the state; void
//! entries arriving later are verified and dropped without refusing the rest of the batch;
//! a dependency on a void entry counts as satisfied. The revocation carries the hash of the
//! kept prefix's last entry, signed by the root, which authenticates that prefix wherever the
//! device's own head signature covered only entries that are now void.

use std::collections::{BTreeMap, HashMap};

use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};

use super::append::seal_run;
use super::clock::{Hlc, VersionVector};
use super::entry::{Entry, EntryError, EntryHeader, SignedHead, GENESIS, MAX_SEALED};

use super::merge::VaultState;
use super::op::Op;
use super::store::{LogStore, StoreError, StoredEntry};
use crate::identity::{
    DeviceKeys, Enrollment, Membership, MembershipBody, MembershipError, MembershipRecord, Revocation, VaultKeys,
    VaultSecret,
};
use crate::ids::{DeviceId, VaultId};

mod batch;
mod clocks;
mod fork;
mod history;
mod materialize;
mod retire;
mod void;

use batch::Held;
pub(crate) use clocks::clock_limit;
pub use clocks::MAX_CLOCK_AHEAD_MS;
pub use fork::DENSE_HASHES;
pub use history::Change;
pub use retire::{explain as explain_retirement, Predecessor};
pub use void::VoidValue;

/// One entry on the wire: the header fields a receiver cannot recompute, plus the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireEntry {
    /// Index into [`Batch::authors`].
    pub author: u16,
    /// Position in the author's log.
    pub seq: u64,
    /// Timestamp.
    pub hlc: Hlc,
    /// Causal context.
    pub deps: VersionVector,
    /// Sealed payload.
    #[serde(with = "super::entry::raw_bytes")]
    pub sealed: Vec<u8>,
}

/// A run of entries in causal order, with one signed head per author covering its last one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Authors referenced by index.
    pub authors: Vec<DeviceId>,
    /// Entries in the sender's commit order.
    pub entries: Vec<WireEntry>,
    /// (author index, signature over that author's log at its last entry in this batch).
    pub heads: Vec<(u16, Signature)>,
}

impl WireEntry {
    /// The entry this is, as `author`'s in `vault` after the entry whose hash is `prev`
    /// (the receiver supplies what the wire leaves out).
    pub fn to_entry(&self, vault: VaultId, author: DeviceId, prev: [u8; 32]) -> Entry {
        let header = EntryHeader { vault, author, seq: self.seq, hlc: self.hlc, deps: self.deps.clone(), prev };
        Entry { header, sealed: self.sealed.clone() }
    }
}

impl Batch {
    /// True when the batch carries no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Why a replica refused something.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A membership problem (unknown or revoked author, bad root signature, ...).
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// An entry problem (bad seal, bad head signature, ...).
    #[error(transparent)]
    Entry(#[from] EntryError),
    /// An author index outside the batch's author table.
    #[error("batch references author index {0} it does not define")]
    BadAuthorIndex(u16),
    /// Entries of an author skip a seq.
    #[error("entries of {author} jump from seq {have} to {got}")]
    Gap {
        /// The author.
        author: DeviceId,
        /// Highest seq held.
        have: u64,
        /// Seq received.
        got: u64,
    },
    /// An entry depends on entries the batch did not bring first.
    #[error("entry {author}#{seq} depends on entries not yet received")]
    CausalGap {
        /// The author.
        author: DeviceId,
        /// The seq.
        seq: u64,
    },
    /// No signed head covers an author's new entries.
    #[error("no signed head covers the entries of {0}")]
    MissingHead(DeviceId),
    /// Two validly signed, different logs for one author: a restored old backup.
    #[error(
        "device {author} has forked at seq {seq} (two different signed logs); it must re-enrol under a new device id"
    )]
    Fork {
        /// The author.
        author: DeviceId,
        /// Where the logs differ.
        seq: u64,
    },
    /// The stored log does not verify.
    #[error("local log is damaged at {0}#{1}")]
    Damaged(DeviceId, u64),
    /// This device is not enrolled (or was revoked) and cannot write.
    #[error("this device is not an active member of the vault")]
    NotActive,
    /// This device's own log was found forked; it writes again once re-enrolled.
    #[error("this device's log forked (its home was restored from an older copy and written again): it re-enrols under a new device id when `hearth daemon` starts or on the next write without a daemon")]
    Forked,
    /// This device's own log here is behind what it had already written: the home was
    /// restored from an older copy, and writing would sign a seq twice (a fork).
    #[error("this home was restored from an older copy (its own log ends at #{have}, but this device had written #{wrote}): run `hearth repair`")]
    Restored {
        /// The own seq held here.
        have: u64,
        /// The own seq known to have been written.
        wrote: u64,
    },
    /// The vault was rotated: it takes no more entries, here or anywhere.
    #[error("{}", retire::explain(.0))]
    Retired(Box<crate::identity::Retirement>),
}

/// What a [`Replica::receive`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    /// New entries committed.
    pub new: usize,
    /// Entries skipped because they were already held.
    pub duplicates: usize,
    /// Entries of a revoked device beyond its cut-off: verified, then dropped.
    pub void: usize,
    /// Entries dropped unverified because an entry of their author in this batch is over
    /// the size limit (the rest of the batch is still taken).
    pub refused: usize,
}

/// A device's replica of the vault over a [`LogStore`].
pub struct Replica<S: LogStore> {
    keys: VaultKeys,
    device: DeviceKeys,
    membership: Membership,
    store: S,
    /// Entries in commit order (a causal order): what this replica can forward. Positions
    /// never move (sessions keep cursors into it); voided entries are only marked in `dead`.
    /// Only each entry's small part is held: payloads and deps are read back from the store.
    log: Vec<Held>,
    /// `dead[i]`: `log[i]` was voided by a revocation.
    dead: Vec<bool>,
    /// Number of `true`s in `dead`.
    n_dead: usize,
    /// (author, seq) → index in `log`.
    index: HashMap<(DeviceId, u64), usize>,
    /// Highest contiguous seq per author.
    vv: VersionVector,
    state: VaultState,
    /// Every entry's timestamp, so a local write sorts after everything known that is not
    /// implausibly far in the future.
    hlcs: std::collections::BTreeSet<Hlc>,
    /// Per author, the lowest seq of an entry over the size limit held (only a database
    /// from before the limit was enforced on receipt can hold one): that author's entries
    /// from there on are never sent, so a session never carries a gap or an unsendable frame.
    stuck: HashMap<DeviceId, u64>,
    /// Set when this home turned out to be restored from an older copy: no more writes.
    restored: Option<(u64, u64)>,
    /// Vaults this device's home retired (rotated away from): sessions of their devices are
    /// answered with the retirement.
    predecessors: Vec<Predecessor>,
    /// What of the materialized view is still to be written.
    view: materialize::Pending,
}

impl<S: LogStore> std::fmt::Debug for Replica<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica").field("device", &self.device.device_id).field("vv", &self.vv).finish_non_exhaustive()
    }
}

/// The store's meta key holding a restored-copy verdict against `device` (per device id: a
/// repaired home writes under a new id, which the old verdict does not bind).
pub(crate) fn restored_key(device: DeviceId) -> String {
    format!("restored/{}", device.to_hex())
}

/// True when `store` holds a restored-copy verdict against `device` (an empty value is one
/// that was cleared).
pub(crate) fn restored_verdict(store: &impl LogStore, device: DeviceId) -> Result<bool, StoreError> {
    Ok(store.get_meta(&restored_key(device))?.is_some_and(|v| !v.is_empty()))
}

/// The membership of `records`, each verified against the vault's root key.
pub(crate) fn verified_membership(
    keys: &VaultKeys,
    records: Vec<MembershipRecord>,
) -> Result<Membership, MembershipError> {
    let mut membership = Membership::new(keys.root_public());
    for rec in records {
        membership.insert(rec)?;
    }
    Ok(membership)
}

impl<S: LogStore> Replica<S> {
    /// Opens the replica of device `device_id` over `store`, re-verifying the stored log.
    pub fn open(secret: &VaultSecret, device_id: DeviceId, store: S) -> Result<Self, ReplicaError> {
        let keys = VaultKeys::derive(secret);
        let device = DeviceKeys::derive(secret, device_id);
        let (records, stored) = store.load_snapshot()?;
        let membership = verified_membership(&keys, records)?;
        let n = stored.len();
        let mut r = Self {
            keys,
            device,
            membership,
            store,
            log: Vec::with_capacity(n),
            dead: Vec::with_capacity(n),
            n_dead: 0,
            index: HashMap::with_capacity(n),
            vv: VersionVector::default(),
            state: VaultState::default(),
            hlcs: std::collections::BTreeSet::new(),
            stuck: HashMap::new(),
            restored: None,
            predecessors: Vec::new(),
            view: materialize::Pending::default(),
        };
        // Each author's last entry, by position in the log.
        let mut last_head: BTreeMap<DeviceId, usize> = BTreeMap::new();
        // Each loaded entry is checked, counted, and then only its small part kept (its
        // sealed payload is freed as the next one is read).
        for se in stored {
            let h = &se.entry.header;
            let prev = r.last_hash(h.author);
            if h.seq != r.vv.get(h.author) + 1 || h.prev != prev || se.entry.hash() != se.hash {
                return Err(ReplicaError::Damaged(h.author, h.seq));
            }
            let op = se.entry.unseal(&r.keys.content)?;
            last_head.insert(h.author, r.log.len());
            r.record(&se, &op);
        }
        // One signature per author authenticates the whole stored chain (or, for a revoked
        // author's kept prefix, the root-signed hash in its revocation).
        for (author, at) in last_head {
            let se = &r.log[at];
            if r.vouched(se) {
                continue;
            }
            let head = r.signed_head(se).ok_or(ReplicaError::Damaged(author, se.seq))?;
            let pk = r.membership.author(author, 0).map(|e| e.sign_pk).map_err(|_| ReplicaError::Damaged(author, 0))?;
            head.verify(r.keys.vault_id, &pk)?;
        }
        // A crash between storing a revocation and voiding is finished here (and a cut that
        // names another entry than the one held is settled, though a commit never stores one).
        let signed = r.settle_mismatched_cuts()?;
        if !signed.is_empty() {
            r.store.commit(&[], &signed)?;
        }
        r.void_revoked()?;
        // A verdict from an earlier run (a peer showed more of this device's log) stands,
        // unless the log has caught up since (as a session that brings it back clears it):
        // a reader that raced a writer's commit could have stored one for a log that was
        // never behind.
        if let Some(v) = r.store.get_meta(&restored_key(device_id))? {
            let text = String::from_utf8_lossy(&v);
            let mut it = text.split(' ').map(str::parse::<u64>);
            if let (Some(Ok(have)), Some(Ok(wrote))) = (it.next(), it.next()) {
                let own = r.vv.get(device_id);
                if !(own > have && own >= wrote) {
                    r.restored = Some((have, wrote));
                }
            }
        }
        r.view.track(&r.store);
        Ok(r)
    }

    /// The signed head at exactly `e`, when its signature is held.
    fn signed_head(&self, e: &Held) -> Option<SignedHead> {
        e.head.map(|sig| SignedHead { author: e.author, seq: e.seq, hash: e.hash, sig })
    }

    fn last_hash(&self, author: DeviceId) -> [u8; 32] {
        self.hash_at(author, self.vv.get(author)).unwrap_or(GENESIS)
    }

    /// Appends the verified entry `se` to the log held in memory (its small part: the
    /// store keeps the rest), indexes it and applies its op.
    fn record(&mut self, se: &StoredEntry, op: &Op) {
        let h = &se.entry.header;
        self.state.apply(h.author, h.seq, h.hlc, &h.deps, op);
        self.view.changed(op.item());
        self.hlcs.insert(h.hlc);
        if se.entry.sealed.len() > MAX_SEALED {
            let s = self.stuck.entry(h.author).or_insert(h.seq);
            *s = (*s).min(h.seq);
        }
        self.vv.set(h.author, h.seq);
        self.index.insert((h.author, h.seq), self.log.len());
        self.log.push(Held::of(se));
        self.dead.push(false);
    }

    /// Signs and stores this device's enrolment (idempotent).
    pub fn enroll_self(&mut self, now_ms: u64) -> Result<(), ReplicaError> {
        let id = self.device.device_id;
        if self.membership.author(id, 0).is_ok() {
            return Ok(());
        }
        let rec = MembershipRecord::sign(
            &self.keys.root,
            MembershipBody::Enroll(Enrollment {
                vault_id: self.keys.vault_id,
                device_id: id,
                sign_pk: self.device.sign_public(),
                dh_pk: self.device.dh_public(),
                at_ms: now_ms,
            }),
        );
        self.add_membership(vec![rec])
    }

    /// Revokes `device`; entries of it already held stay valid, later ones are refused.
    pub fn revoke(&mut self, device: DeviceId, now_ms: u64) -> Result<(), ReplicaError> {
        self.membership.author(device, 0)?;
        let rec = MembershipRecord::sign(
            &self.keys.root,
            MembershipBody::Revoke(Revocation {
                vault_id: self.keys.vault_id,
                device_id: device,
                last_seq: self.vv.get(device),
                last_hash: self.last_hash(device),
                at_ms: now_ms,
            }),
        );
        self.add_membership(vec![rec])
    }

    /// Verifies and stores membership records; returns an error on the first bad one. A
    /// cut-off vouching for another entry than the one held at it settles the fork there
    /// (see [`fork`]) before anything is voided.
    pub fn add_membership(&mut self, records: Vec<MembershipRecord>) -> Result<(), ReplicaError> {
        let mut next = self.membership.clone();
        let mut new = Vec::new();
        for r in records {
            if next.insert(r.clone())? {
                new.push(r);
            }
        }
        if new.is_empty() {
            return Ok(());
        }
        let out = self.settle_and_void(next, new).map(|_| ());
        self.view_after_commit();
        out
    }

    /// Takes `next` as the membership, with `new` its records not stored yet, after settling
    /// any cut-off that names another entry than the one held ([`Self::settle_mismatched_cuts`]);
    /// stores the records, then voids what the cut-offs in force end. On a store error the
    /// membership is left as it was. Returns how many entries were voided.
    fn settle_and_void(&mut self, next: Membership, mut new: Vec<MembershipRecord>) -> Result<usize, ReplicaError> {
        let before = std::mem::replace(&mut self.membership, next);
        let stored = self.settle_mismatched_cuts().and_then(|signed| {
            new.extend(signed);
            if new.is_empty() {
                return Ok(());
            }
            Ok(self.store.commit(&[], &new)?)
        });
        if let Err(e) = stored {
            self.membership = before;
            return Err(e);
        }
        self.void_revoked()
    }

    /// Appends a local action and returns its seq.
    pub fn write(&mut self, op: &Op, now_ms: u64) -> Result<u64, ReplicaError> {
        self.write_all(std::slice::from_ref(op), now_ms)
    }

    /// Appends local actions in one commit (all of them or, on any error, none) and returns
    /// the last one's seq (an imported file lands whole or not at all).
    pub fn write_all(&mut self, ops: &[Op], now_ms: u64) -> Result<u64, ReplicaError> {
        let me = self.device.device_id;
        if let Some((have, wrote)) = self.restored {
            return Err(ReplicaError::Restored { have, wrote });
        }
        if self.forked_self() {
            return Err(ReplicaError::Forked);
        }
        self.check_not_retired()?;
        let (clock, prev) = (self.clock_base(now_ms), self.last_hash(me));
        let sealed = seal_run(&self.keys, &self.device, &self.membership, ops, &self.vv, clock, prev, now_ms)?;
        if sealed.is_empty() {
            return Ok(self.vv.get(me));
        }
        self.store.commit(&sealed, &[])?;
        for (se, op) in sealed.iter().zip(ops) {
            self.record(se, op);
        }
        self.view_after_commit();
        Ok(self.vv.get(me))
    }

    /// Checks a peer's signed heads against this log. Returns the forks found: `(author,
    /// seq)` where the peer's validly signed log differs from the entry held here (settle
    /// each with [`fork_hashes`](Self::fork_hashes) and [`settle_fork`](Self::settle_fork)).
    /// A peer holding more of this device's own log than this device does means this home
    /// is an older copy: writes stop (a new one would sign a seq twice) until the missing
    /// entries arrive from a peer, or the fork a write already made is settled.
    pub fn check_heads(&mut self, heads: &[SignedHead]) -> Result<Vec<(DeviceId, u64)>, ReplicaError> {
        let me = self.device.device_id;
        let mut forks = Vec::new();
        for h in heads {
            let Ok(e) = self.membership.author(h.author, 0) else { continue };
            h.verify(self.keys.vault_id, &e.sign_pk)?;
            let have = self.vv.get(me);
            if h.author == me && h.seq > have && !self.membership.is_revoked(me) {
                let known = self.restored.map_or(0, |(_, wrote)| wrote);
                if h.seq > known {
                    self.mark_restored(have, h.seq);
                }
            }
            if self.hash_at(h.author, h.seq).is_some_and(|held| held != h.hash) {
                forks.push((h.author, h.seq));
            }
        }
        Ok(forks)
    }

    /// The latest signed head of every author held (for the sync hello).
    pub fn heads(&self) -> Vec<SignedHead> {
        self.vv
            .0
            .iter()
            .filter_map(|(a, s)| self.index.get(&(*a, *s)).and_then(|i| self.signed_head(&self.log[*i])))
            .collect()
    }

    /// Verifies a batch completely, then commits and applies it atomically. Entries of a
    /// revoked author beyond its cut-off are verified like the rest, then dropped (void).
    pub fn receive(&mut self, batch: &Batch) -> Result<Received, ReplicaError> {
        self.check_not_retired()?;
        let vault = self.keys.vault_id;
        // Chain position per author, void entries of this batch included.
        let mut vv = self.vv.clone();
        let mut last_hash: HashMap<DeviceId, [u8; 32]> = HashMap::new();
        let mut fresh: Vec<(StoredEntry, bool)> = Vec::new();
        let mut out = Received::default();
        // An author with an entry over the size limit in this batch: none of its entries here
        // can be verified (its head covers the oversized one), so all are dropped; the rest of
        // the batch is taken, so one bad entry cannot stall everything behind it.
        let oversized: Vec<u16> =
            batch.entries.iter().filter(|we| we.sealed.len() > MAX_SEALED).map(|we| we.author).collect();
        for we in &batch.entries {
            if oversized.contains(&we.author) {
                out.refused += 1;
                continue;
            }
            let author = *batch.authors.get(usize::from(we.author)).ok_or(ReplicaError::BadAuthorIndex(we.author))?;
            self.membership.author(author, 0)?;
            let have = vv.get(author);
            if we.seq <= have {
                out.duplicates += 1;
                continue;
            }
            if we.seq != have + 1 {
                return Err(ReplicaError::Gap { author, have, got: we.seq });
            }
            if we.deps.get(author) != 0 || !self.deps_held(&we.deps, &vv) {
                return Err(ReplicaError::CausalGap { author, seq: we.seq });
            }
            let prev = match last_hash.get(&author) {
                Some(h) => *h,
                None => self.last_hash(author),
            };
            let entry = we.to_entry(vault, author, prev);
            let hash = entry.hash();
            last_hash.insert(author, hash);
            vv.set(author, we.seq);
            let void = self.membership.revocation(author).is_some_and(|r| we.seq > r.last_seq);
            fresh.push((StoredEntry { entry, hash, head: None }, void));
        }
        // One signature per author covers its whole run through the hash chain; a run that
        // ends exactly at a revocation's cut-off may instead match its root-signed hash.
        for (author, hash) in &last_hash {
            let seq = vv.get(*author);
            let idx = batch.authors.iter().position(|a| a == author).map(|i| i as u16);
            let sig = batch.heads.iter().find(|(i, _)| Some(*i) == idx).map(|(_, s)| *s);
            match sig {
                Some(sig) => {
                    let head = SignedHead { author: *author, seq, hash: *hash, sig };
                    head.verify(vault, &self.membership.author(*author, 0)?.sign_pk)?;
                    if let Some(last) = fresh.iter_mut().rev().find(|(se, _)| se.entry.header.author == *author) {
                        if !last.1 {
                            last.0.head = Some(sig);
                        }
                    }
                }
                None => match self.membership.revocation(*author) {
                    Some(r) if r.last_seq == seq && r.last_hash == *hash => {}
                    _ => return Err(ReplicaError::MissingHead(*author)),
                },
            }
        }
        // A run that continues past a revocation's cut-off is verified by its head, but the
        // kept part then ends unsigned at the cut: it must be the branch the revocation
        // vouches for, or it could never be verified again. (A run that ends at the cut is
        // signed there; if it is another branch, the fork is settled below, once stored.)
        let mut other_branch = false;
        for author in last_hash.keys() {
            let Some(r) = self.membership.revocation(*author) else { continue };
            let at_cut =
                fresh.iter().find(|(se, _)| se.entry.header.author == *author && se.entry.header.seq == r.last_seq);
            let Some((se, _)) = at_cut else { continue };
            if se.hash != r.last_hash {
                if fresh.iter().any(|(se, void)| *void && se.entry.header.author == *author) {
                    return Err(ReplicaError::Fork { author: *author, seq: r.last_seq });
                }
                other_branch = true;
            }
        }
        let mut kept = Vec::new();
        let mut ops = Vec::new();
        for (se, void) in fresh {
            if void {
                out.void += 1;
            } else {
                ops.push(se.entry.unseal(&self.keys.content)?);
                kept.push(se);
            }
        }
        self.store.commit(&kept, &[])?;
        out.new = kept.len();
        for (se, op) in kept.iter().zip(ops) {
            self.record(se, &op);
        }
        // A signed entry at a cut-off whose hash names another entry proves the author
        // forked at or below it: settle now (one seq lower), as the devices that held the
        // entry when the cut-off came did, rather than disagree with them until the next
        // membership change.
        if other_branch {
            let next = self.membership.clone();
            let voided = self.settle_and_void(next, Vec::new())?;
            out.new -= voided.min(out.new);
            out.void += voided;
        }
        // A home restored from an older copy that got its own later entries back from a
        // peer is whole again: it may write (its next seq is new).
        let me = self.device.device_id;
        if let Some((have, wrote)) = self.restored {
            if self.vv.get(me) > have && self.vv.get(me) >= wrote {
                self.restored = None;
                self.store.set_meta(&restored_key(me), b"")?;
            }
        }
        self.view_after_commit();
        Ok(out)
    }

    /// Stops all writes: this home's own log is behind what the device had written. The
    /// verdict is stored, so a restart does not forget it before a peer shows it again.
    pub fn mark_restored(&mut self, have: u64, wrote: u64) {
        tracing::warn!(have, wrote, "this home is an older copy of this device's log: no writes until peers return its newer entries (or run `hearth repair`)");
        self.restored = Some((have, wrote));
        if let Err(e) = self.store.set_meta(&restored_key(self.device.device_id), format!("{have} {wrote}").as_bytes())
        {
            tracing::warn!(error = %e, "could not store the restored-copy verdict");
        }
    }

    /// The hash of this device's own entry at `seq`, if held.
    pub fn own_hash(&self, seq: u64) -> Option<[u8; 32]> {
        self.hash_at(self.device.device_id, seq).filter(|_| seq > 0)
    }

    /// The merged state.
    pub fn state(&self) -> &VaultState {
        &self.state
    }

    /// Highest contiguous seq held per author.
    pub fn version(&self) -> &VersionVector {
        &self.vv
    }

    /// Verified membership.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// This device's id.
    pub fn device_id(&self) -> DeviceId {
        self.device.device_id
    }

    /// This device's keys.
    pub fn device_keys(&self) -> &DeviceKeys {
        &self.device
    }

    /// The vault keys.
    pub fn vault_keys(&self) -> &VaultKeys {
        &self.keys
    }

    /// The vault id.
    pub fn vault_id(&self) -> VaultId {
        self.keys.vault_id
    }

    /// Number of entries held (voided ones not counted).
    pub fn len(&self) -> usize {
        self.log.len() - self.n_dead
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One past the last log position (voided positions included): where a sync cursor that
    /// has offered everything stands.
    pub fn log_end(&self) -> usize {
        self.log.len()
    }

    /// The underlying store.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.store
    }

    /// Closes the replica, handing back its store (to reopen it under a new device id).
    pub fn into_store(self) -> S {
        self.store
    }
}
