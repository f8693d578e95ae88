//! Local writes that do not replay the log (PROTOCOL.md §1.2).
//!
//! What a write needs of the log, beyond the items it changes, is small: this device's chain
//! head, the version vector (the new entry's deps), the newest timestamps (its clock) and the
//! membership (may this device write?). The view keeps the first three beside its rows as a
//! [`WriteBase`], written in the same transaction as its position; an [`Appender`] reads
//! them, the membership and the rows of the items a request names, and appends entries
//! exactly as [`Replica::write_all`](super::Replica::write_all) would have. Whenever the view
//! cannot vouch for all of that (behind the log, no base, a clock it cannot place, a device
//! that is not plainly active), it declines and the caller opens the whole log.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::clock::{Hlc, VersionVector};
use super::entry::{Entry, EntryHeader, SignedHead, GENESIS};
use super::merge::VaultState;
use super::op::Op;
use super::replica::{clock_limit, restored_verdict, verified_membership, ReplicaError};
use super::store::{LogStore, SqliteStore, StoredEntry};
use super::view::{self, ViewUpdate};
use crate::identity::{DeviceKeys, Membership, VaultKeys, VaultSecret};
use crate::ids::{DeviceId, ItemId};

/// How many of the newest timestamps a [`WriteBase`] keeps: a write's clock is the newest
/// timestamp no more than an hour ahead, so only peers writing from the future need more.
pub const NEWEST: usize = 16;

/// What a local write needs of the log besides the items it changes, as of the view's
/// position (public header data, like the log's own rows).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteBase {
    /// Highest contiguous seq held per author.
    pub vv: VersionVector,
    /// The newest timestamps held, at most [`NEWEST`], oldest first.
    pub newest: Vec<Hlc>,
    /// True when `newest` holds every timestamp of the log.
    pub whole: bool,
}

impl WriteBase {
    /// The base of a log with version `vv` and timestamps `hlcs`.
    pub fn of(vv: &VersionVector, hlcs: &BTreeSet<Hlc>) -> Self {
        let mut newest: Vec<Hlc> = hlcs.iter().rev().take(NEWEST).copied().collect();
        newest.reverse();
        Self { vv: vv.clone(), whole: hlcs.len() <= NEWEST, newest }
    }

    /// The clock a write at `now_ms` starts from, as the log's replay would pick it (the
    /// newest timestamp at most an hour ahead); `None` when every timestamp kept is further
    /// ahead and older ones were left out.
    pub fn clock_base(&self, now_ms: u64) -> Option<Hlc> {
        let limit = clock_limit(now_ms);
        match self.newest.iter().rev().find(|h| **h <= limit) {
            Some(h) => Some(*h),
            None if self.whole => Some(Hlc::default()),
            None => None,
        }
    }

    /// `author` wrote entry `seq` at `hlc`.
    fn wrote(&mut self, author: DeviceId, seq: u64, hlc: Hlc) {
        self.vv.set(author, seq);
        let mut all: BTreeSet<Hlc> = self.newest.iter().copied().collect();
        all.insert(hlc);
        // The newest of (the newest kept, plus one) are the newest of the whole log, plus one.
        let whole = self.whole && all.len() <= NEWEST;
        *self = Self { whole, ..Self::of(&self.vv, &all) };
    }
}

/// Seals and signs `ops` as `device`'s next entries in a log at version `vv`, after the
/// entry whose hash is `prev`, with the rest of `vv` as their context, each timestamp one
/// tick after the last from `clock`.
#[allow(clippy::too_many_arguments)]
pub(super) fn seal_run(
    keys: &VaultKeys,
    device: &DeviceKeys,
    membership: &Membership,
    ops: &[Op],
    vv: &VersionVector,
    mut clock: Hlc,
    mut prev: [u8; 32],
    now_ms: u64,
) -> Result<Vec<StoredEntry>, ReplicaError> {
    let me = device.device_id;
    let mut deps = vv.clone();
    deps.set(me, 0);
    let deps = &deps;
    let mut sealed = Vec::with_capacity(ops.len());
    for (seq, op) in (vv.get(me) + 1..).zip(ops) {
        membership.author(me, seq).map_err(|_| ReplicaError::NotActive)?;
        clock = Hlc::tick(clock, now_ms);
        let header = EntryHeader { vault: keys.vault_id, author: me, seq, hlc: clock, deps: deps.clone(), prev };
        let entry = Entry::seal(header, op, &keys.content)?;
        let hash = entry.hash();
        let head = SignedHead::sign(&device.sign, keys.vault_id, me, seq, hash);
        prev = hash;
        sealed.push(StoredEntry { entry, hash, head: Some(head.sig) });
    }
    Ok(sealed)
}

/// A writer of this device's log that starts from the view instead of the log's replay.
pub struct Appender {
    keys: VaultKeys,
    device: DeviceKeys,
    membership: Membership,
    base: WriteBase,
    /// The clock the next write starts from.
    clock: Hlc,
    /// The hash of this device's newest entry.
    prev: [u8; 32],
    /// The items the request named (every item it can resolve to), as the view holds them.
    state: VaultState,
    store: SqliteStore,
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appender").field("device", &self.device.device_id).field("vv", &self.base.vv).finish()
    }
}

impl Appender {
    /// A writer of device `device_id` over `store` holding the items each of `names` (a
    /// name or an id) can resolve to; `None` when the view cannot vouch for a write at
    /// `now_ms`: open the log instead (its replay then reports what is wrong, if anything).
    pub fn open(
        secret: &VaultSecret,
        device_id: DeviceId,
        store: SqliteStore,
        names: &[&str],
        now_ms: u64,
    ) -> Result<Option<Self>, ReplicaError> {
        let keys = VaultKeys::derive(secret);
        let device = DeviceKeys::derive(secret, device_id);
        let Some(base) = store.write_base()? else { return Ok(None) };
        let Some(clock) = base.clock_base(now_ms) else { return Ok(None) };
        let membership = verified_membership(&keys, store.load_membership()?)?;
        // A retired vault, a device to re-enrol, a home that is an older copy of itself:
        // the log's open says why on every command, and settles what it can.
        if membership.retirement().is_some()
            || membership.may_reenrol(device_id)
            || restored_verdict(&store, device_id)?
        {
            return Ok(None);
        }
        let Some(prev) = own_head(&store, &keys, &device, &membership, base.vv.get(device_id))? else {
            return Ok(None);
        };
        let mut rows = Vec::new();
        for name in names {
            let Some(named) = view::rows_named(&store, &keys, name)? else { return Ok(None) };
            rows.extend(named);
        }
        let Some(state) = view::state_of_rows(&keys, rows) else { return Ok(None) };
        Ok(Some(Self { keys, device, membership, base, clock, prev, state, store }))
    }

    /// The items the request named, merged as the log holds them.
    pub fn state(&self) -> &VaultState {
        &self.state
    }

    /// Appends `ops` in one commit (all or none), as [`Replica::write_all`] would, then
    /// writes their items' rows into the view; returns the last one's seq.
    ///
    /// [`Replica::write_all`]: super::Replica::write_all
    pub fn write_all(&mut self, ops: &[Op], now_ms: u64) -> Result<u64, ReplicaError> {
        let me = self.device.device_id;
        let (m, vv) = (&self.membership, &self.base.vv);
        let sealed = seal_run(&self.keys, &self.device, m, ops, vv, self.clock, self.prev, now_ms)?;
        let Some(last) = sealed.last().map(|se| (se.entry.header.seq, se.entry.header.hlc, se.hash)) else {
            return Ok(vv.get(me));
        };
        self.store.commit(&sealed, &[])?;
        for (se, op) in sealed.iter().zip(ops) {
            let h = &se.entry.header;
            self.state.apply(me, h.seq, h.hlc, &h.deps, op);
            self.base.wrote(me, h.seq, h.hlc);
        }
        (self.clock, self.prev) = (last.1, last.2);
        let changed: BTreeSet<ItemId> = ops.iter().map(Op::item).collect();
        let mut up = ViewUpdate::of(&self.keys, &self.state, changed, false, self.base.clone());
        match self.store.put_view(&mut up) {
            Ok(true) => {}
            Ok(false) => tracing::debug!("the view moved on under this writer: readers replay the log"),
            Err(e) => tracing::warn!("the materialized view could not be written (reads replay the log): {e}"),
        }
        Ok(last.0)
    }
}

/// The hash of `device`'s newest entry, when it is the one the base counts (`seq`; none
/// at 0) and it verifies: its hash recomputes and its own signature covers it.
fn own_head(
    store: &SqliteStore,
    keys: &VaultKeys,
    device: &DeviceKeys,
    membership: &Membership,
    seq: u64,
) -> Result<Option<[u8; 32]>, ReplicaError> {
    let me = device.device_id;
    let Some(se) = store.own_last(me)? else { return Ok((seq == 0).then_some(GENESIS)) };
    let h = &se.entry.header;
    if h.seq != seq || se.entry.hash() != se.hash {
        return Ok(None);
    }
    let Some(sig) = se.head else { return Ok(None) };
    let Ok(enrolled) = membership.author(me, 0) else { return Ok(None) };
    let head = SignedHead { author: me, seq, hash: se.hash, sig };
    Ok(head.verify(keys.vault_id, &enrolled.sign_pk).is_ok().then_some(se.hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::replica::MAX_CLOCK_AHEAD_MS;

    /// The timestamp `s` seconds into the test's time (far from 0, so an hour fits before it).
    fn at(s: u64) -> Hlc {
        Hlc { ms: (10_000 + s) * 1_000, counter: 0 }
    }

    /// The wall clock at which a write may start from timestamps up to `at(s)`.
    fn now_for(s: u64) -> u64 {
        at(s).ms - MAX_CLOCK_AHEAD_MS
    }

    fn log(secs: impl IntoIterator<Item = u64>) -> BTreeSet<Hlc> {
        secs.into_iter().map(at).collect()
    }

    #[test]
    fn a_base_keeps_the_newest_timestamps_and_places_a_clock_as_the_replay_would() {
        let all = log(1..=20);
        let b = WriteBase::of(&VersionVector::default(), &all);
        assert_eq!(b.newest, log(5..=20).into_iter().collect::<Vec<_>>(), "the 16 newest, oldest first");
        assert!(!b.whole);
        assert!(WriteBase::of(&VersionVector::default(), &log(1..=16)).whole);
        assert!(!WriteBase::of(&VersionVector::default(), &log(1..=17)).whole);
        // Wherever the base places a clock, it is the replay's; it declines only where the
        // replay's answer is older than everything kept.
        for s in [0, 1, 4, 5, 6, 19, 20, 21, 1_000] {
            let replay = all.range(..=clock_limit(now_for(s))).next_back().copied().unwrap_or_default();
            assert_eq!(b.clock_base(now_for(s)), (s >= 5).then_some(replay), "{s}");
        }
        let whole = WriteBase::of(&VersionVector::default(), &log(10..=12));
        assert_eq!(whole.clock_base(now_for(0)), Some(Hlc::default()), "all ahead: the replay starts from zero");
        assert_eq!(whole.clock_base(now_for(11)), Some(at(11)));
    }

    #[test]
    fn a_write_moves_the_base_as_the_log_moves() {
        let me = DeviceId([1; 16]);
        let mut b = WriteBase::of(&VersionVector::default(), &log(1..=15));
        b.wrote(me, 1, at(30));
        assert_eq!((b.vv.get(me), b.newest.len(), b.whole), (1, 16, true));
        b.wrote(me, 2, at(31));
        assert_eq!((b.vv.get(me), b.newest.len(), b.whole), (2, 16, false), "the oldest is left out now");
        assert_eq!((b.newest[0], b.newest[15]), (at(2), at(31)));
        b.wrote(me, 3, at(32));
        assert_eq!(b, WriteBase::of(&b.vv, &log((3..=15).chain(30..=32))).tap_whole(false));
        // A base that left older timestamps out never becomes whole by a write.
        let mut b = WriteBase::of(&VersionVector::default(), &log(1..=3)).tap_whole(false);
        b.wrote(me, 1, at(4));
        assert_eq!((b.newest.len(), b.whole), (4, false));
    }

    impl WriteBase {
        fn tap_whole(mut self, whole: bool) -> Self {
            self.whole = whole;
            self
        }
    }
}
