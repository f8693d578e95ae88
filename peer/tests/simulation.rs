//! Deterministic partition simulation: N devices, random edits (including concurrent edits
//! of one field and edit-vs-delete), partitions and heals, pipe faults (loss, duplication,
//! reordering — each kills the Noise session, which then reconnects), crash-restarts,
//! clock skew of hours, line topologies where changes only travel through intermediates, and
//! revocations (devices 0 and 1 revoke others, sometimes the same one with different
//! cut-offs, while the revoked device may still be writing and syncing), and, on odd seeds
//! instead of revocations, homes restored from an older copy of themselves: the device
//! loses what no one else held, may catch up from peers, or writes again and forks its log;
//! the fork is settled where the branches part and the device re-enrols under a new id,
//! re-writing what it typed on its branch.
//!
//! After the final heal every device must hold the same state (digest), and that state must
//! equal an independent oracle computed from every acknowledged write: each write is the
//! current value, a listed conflict, or causally superseded — never lost — except the writes
//! of a revoked device beyond the lowest cut-off, which are void on every active device, the
//! writes of a forked device beyond the last entry its branches share (void too; the oracle
//! finds that entry from the writes' hashes and checks every device settled exactly there),
//! and writes a restore destroyed before any other device held them.
//!
//! One seed in eight (as many revoking as restoring) runs on real SQLite stores, where a
//! crash is the process dying: the replica is leaked without closing its connection (no
//! checkpoint, no clean close), and a new one opens the same file. The oracle's causality
//! comes from the entries each device's *store* holds at the time of a write, not from the
//! replica's own version vector (which is checked against it).
//!
//! `HEARTH_SIM_SEEDS=N` sets how many seeds run (default 2000); `HEARTH_SIM_SEED=S` runs
//! exactly one, reproducing a failure printed by a previous run.

use crate::common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

use hearth_peer::identity::VaultSecret;
use hearth_peer::ids::{DeviceId, ItemId};
use hearth_peer::sync::{Role, Session, SessionConfig};
use hearth_peer::vault::{Dot, LogStore, MemStore, Op, Replica, ReplicaError, SqliteStore, VersionVector};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One acknowledged local write, as the oracle sees it.
#[derive(Debug, Clone)]
struct Write {
    dot: Dot,
    deps: VersionVector,
    op: Op,
    /// The entry's hash: two writes at one dot (a forked device) differ here.
    hash: [u8; 32],
    /// Destroyed by a restore before any other device held it.
    lost: bool,
}

struct Link {
    ends: [usize; 2],
    sessions: [Session; 2],
    /// queues[0]: from ends[0] to ends[1]; queues[1]: the reverse.
    queues: [VecDeque<Vec<u8>>; 2],
}

/// How a simulated device's storage is made and how it survives a crash.
trait SimStore: LogStore + Sized {
    /// A vault of `n` enrolled devices (files, if any, in `dir`).
    fn vault(n: usize, dir: &Path) -> (VaultSecret, Vec<Replica<Self>>);
    /// Device `d`'s process dies; a new one opens what its storage kept.
    fn crash(r: Replica<Self>, secret: &VaultSecret, dir: &Path, d: usize) -> Replica<Self>;
    /// A copy of the storage to restore later (a backup), where the store can make one.
    fn backup(r: &mut Replica<Self>) -> Option<Self>;
}

impl SimStore for MemStore {
    fn vault(n: usize, _: &Path) -> (VaultSecret, Vec<Replica<Self>>) {
        common::vault(n)
    }

    fn crash(mut r: Replica<Self>, secret: &VaultSecret, _: &Path, _: usize) -> Replica<Self> {
        let store = r.store_mut().clone();
        Replica::open(secret, r.device_id(), store).expect("reopen after crash")
    }

    fn backup(r: &mut Replica<Self>) -> Option<Self> {
        Some(r.store_mut().clone())
    }
}

fn db(dir: &Path, d: usize) -> std::path::PathBuf {
    dir.join(format!("device{d}.db"))
}

impl SimStore for SqliteStore {
    fn vault(n: usize, dir: &Path) -> (VaultSecret, Vec<Replica<Self>>) {
        let secret = VaultSecret::from_bytes([0x11; 32]);
        let mut reps: Vec<Replica<Self>> = (0..n)
            .map(|i| {
                let store = SqliteStore::open(&db(dir, i)).expect("sqlite store");
                let mut r = Replica::open(&secret, DeviceId([i as u8 + 1; 16]), store).expect("open");
                r.enroll_self(1_000).expect("enrol");
                r
            })
            .collect();
        let all: Vec<_> = reps.iter().flat_map(|r| r.membership().records().to_vec()).collect();
        for r in &mut reps {
            r.add_membership(all.clone()).expect("membership");
        }
        (secret, reps)
    }

    fn crash(r: Replica<Self>, secret: &VaultSecret, dir: &Path, d: usize) -> Replica<Self> {
        let id = r.device_id();
        // Like kill -9: the connection is never closed (no checkpoint, no clean shutdown).
        std::mem::forget(r);
        let store = SqliteStore::open(&db(dir, d)).expect("reopen the database after a crash");
        Replica::open(secret, id, store).expect("reopen after crash")
    }

    fn backup(_: &mut Replica<Self>) -> Option<Self> {
        None
    }
}

/// The version vector of what `r`'s store holds (what was delivered and committed).
fn stored_version<S: LogStore>(r: &mut Replica<S>) -> VersionVector {
    let mut vv = VersionVector::default();
    for e in r.store_mut().load_entries().expect("load entries") {
        let h = &e.entry.header;
        if vv.get(h.author) < h.seq {
            vv.set(h.author, h.seq);
        }
    }
    vv
}

struct Sim<S: SimStore> {
    rng: StdRng,
    secret: VaultSecret,
    devices: Vec<Replica<S>>,
    dir: tempfile::TempDir,
    skew_ms: Vec<i64>,
    links: Vec<Link>,
    group: Vec<u8>,
    line: bool,
    now_ms: u64,
    writes: Vec<Write>,
    items: Vec<ItemId>,
    faults: bool,
    /// Revoked device index → the lowest cut-off any revocation of it gave.
    revoked: BTreeMap<usize, u64>,
    /// Odd seeds: homes get restored from backups (and nobody is revoked).
    restores: bool,
    /// Per device: a backup of its store and the device id it was taken for.
    backups: Vec<Option<(DeviceId, S)>>,
    stats: Stats,
}

/// What a run exercised, summed over seeds so the test can show it is not vacuous.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    writes: usize,
    sessions_killed_by_faults: usize,
    crashes: usize,
    partitions: usize,
    conflicts_at_end: usize,
    line_topologies: usize,
    revocations: usize,
    void_writes: usize,
    /// Crashes of devices on SQLite stores (the connection leaked, the file reopened).
    sqlite_crashes: usize,
    /// Homes restored from an older copy.
    restores: usize,
    /// Writes a restore destroyed before anyone else held them.
    lost_writes: usize,
    /// Devices whose log forked and was settled.
    forks: usize,
    /// Writes a re-enrolled device made again (its voided branch).
    rewritten: usize,
}

const FIELDS: [&str; 3] = ["username", "password", "url"];

impl<S: SimStore> Sim<S> {
    fn new(seed: u64) -> Self {
        let restores = seed % 2 == 1;
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.gen_range(3..=8);
        let dir = tempfile::tempdir().expect("temp dir");
        let (secret, devices) = S::vault(n, dir.path());
        let skew_ms = (0..n).map(|_| rng.gen_range(-3 * 3_600_000i64..=3 * 3_600_000)).collect();
        let line = rng.gen_bool(0.3);
        Sim {
            rng,
            secret,
            devices,
            dir,
            skew_ms,
            links: Vec::new(),
            group: vec![0; n],
            line,
            now_ms: 1_700_000_000_000,
            writes: Vec::new(),
            items: Vec::new(),
            faults: true,
            revoked: BTreeMap::new(),
            restores,
            backups: (0..n).map(|_| None).collect(),
            stats: Stats::default(),
        }
    }

    fn wall(&self, d: usize) -> u64 {
        (self.now_ms as i64 + self.skew_ms[d]) as u64
    }

    fn allowed(&self, a: usize, b: usize) -> bool {
        a != b && self.group[a] == self.group[b] && (!self.line || a.abs_diff(b) == 1)
    }

    fn write(&mut self, d: usize) {
        let op = if self.items.is_empty() || self.rng.gen_bool(0.2) {
            let item = ItemId(self.rng.gen());
            self.items.push(item);
            Op::Put {
                item,
                name: Some(format!("item{}", self.items.len())),
                fields: vec![("password".into(), Some("init".into()))],
            }
        } else {
            let item = self.items[self.rng.gen_range(0..self.items.len())];
            match self.rng.gen_range(0..10) {
                0 => Op::Delete { item },
                1 => Op::Put { item, name: Some(format!("renamed{}", self.rng.gen::<u8>())), fields: vec![] },
                2 => Op::Put { item, name: None, fields: vec![(FIELDS[self.rng.gen_range(0..3)].into(), None)] },
                _ => {
                    let f = FIELDS[self.rng.gen_range(0..3)];
                    Op::Put { item, name: None, fields: vec![(f.into(), Some(format!("v{}", self.rng.gen::<u16>())))] }
                }
            }
        };
        let me = self.devices[d].device_id();
        // Causality from what the store holds, independently of the replica's bookkeeping.
        let mut deps = stored_version(&mut self.devices[d]);
        deps.set(me, 0);
        let mut claimed = self.devices[d].version().clone();
        claimed.set(me, 0);
        assert_eq!(deps, claimed, "device {d}'s version vector disagrees with its stored log");
        let wall = self.wall(d);
        match self.devices[d].write(&op, wall) {
            Ok(seq) => {
                let hash = self.devices[d].hash_at(me, seq).expect("own entry held");
                self.writes.push(Write { dot: Dot { device: me, seq }, deps, op, hash, lost: false })
            }
            // A revoked device that has learnt so cannot write any more.
            Err(ReplicaError::NotActive) if self.revoked.contains_key(&d) => {}
            // A restored home that a peer showed to be behind its own log waits to catch up.
            Err(ReplicaError::Restored { .. }) if self.restores => {}
            Err(e) => panic!("local write: {e}"),
        }
    }

    /// Takes a backup of device `d`'s home.
    fn backup(&mut self, d: usize) {
        let id = self.devices[d].device_id();
        self.backups[d] = S::backup(&mut self.devices[d]).map(|s| (id, s));
    }

    /// Device `d`'s home is replaced by its backup (taken for its current id). Its writes
    /// since then that no other device holds are gone for good.
    fn restore(&mut self, d: usize) {
        let id = self.devices[d].device_id();
        let Some((bid, backup)) = self.backups[d].take() else { return };
        if bid != id {
            return;
        }
        self.links.retain(|l| !l.ends.contains(&d));
        let mut restored = Replica::open(&self.secret, id, backup).expect("open the backup");
        // The same backup may be restored again later.
        self.backups[d] = S::backup(&mut restored).map(|s| (id, s));
        self.devices[d] = restored;
        self.stats.restores += 1;
        // What no device holds any more (in its log or its void list) is gone for good:
        // this device's writes since the backup, or others' writes it alone held.
        let mut held: BTreeSet<(DeviceId, u64, [u8; 32])> = BTreeSet::new();
        for r in &mut self.devices {
            for se in r
                .store_mut()
                .load_entries()
                .expect("entries")
                .into_iter()
                .chain(r.store_mut().load_voided().expect("void"))
            {
                held.insert((se.entry.header.author, se.entry.header.seq, se.hash));
            }
        }
        for w in self.writes.iter_mut().filter(|w| !w.lost) {
            if !held.contains(&(w.dot.device, w.dot.seq, w.hash)) {
                w.lost = true;
                self.stats.lost_writes += 1;
            }
        }
    }

    /// Every device that learnt its own log forked re-enrols under a new id (what the
    /// daemon does) and re-writes its voided edits, which become writes of the new id.
    fn reenrol_forked(&mut self) {
        for d in 0..self.devices.len() {
            if !self.devices[d].forked_self() {
                continue;
            }
            self.links.retain(|l| !l.ends.contains(&d));
            self.backups[d] = None;
            let old = self.devices[d].device_id();
            let new = DeviceId(self.rng.gen());
            let wall = self.wall(d);
            let r = self.devices.remove(d);
            let mut r = Replica::open(&self.secret, new, r.into_store()).expect("reopen under the new id");
            r.enroll_self(wall).expect("enrol the new id");
            let mut deps = stored_version(&mut r);
            deps.set(new, 0);
            let ops = r.rewrite_forked(old, wall).expect("re-write the voided branch");
            for (i, op) in ops.into_iter().enumerate() {
                let seq = i as u64 + 1;
                let hash = r.hash_at(new, seq).expect("own entry held");
                self.writes.push(Write { dot: Dot { device: new, seq }, deps: deps.clone(), op, hash, lost: false });
                self.stats.rewritten += 1;
            }
            self.devices.insert(d, r);
        }
    }

    /// Per forked author, where device 0 settled its fork (checked against the writes'
    /// history by [`Sim::check_forks`]).
    fn fork_cuts(&self) -> BTreeMap<DeviceId, u64> {
        self.fork_cuts_of(&self.devices[0])
    }

    /// Every device settled every fork alike, each settlement sits where two writes of
    /// that device really differ (two different entries at the seq after the cut), and no
    /// surviving writes differ at or below it (an unsettled fork).
    fn check_forks(&self, forks: &BTreeMap<DeviceId, u64>) -> Result<(), String> {
        for dev in self.active() {
            if self.fork_cuts_of(dev) != *forks {
                return Err(format!("devices settled forks differently: {forks:?} vs {:?}", self.fork_cuts_of(dev)));
            }
        }
        let mut hashes: BTreeMap<(DeviceId, u64), BTreeSet<[u8; 32]>> = BTreeMap::new();
        for w in &self.writes {
            hashes.entry((w.dot.device, w.dot.seq)).or_default().insert(w.hash);
        }
        for (author, cut) in forks {
            if hashes.get(&(*author, cut + 1)).map_or(0, BTreeSet::len) < 2 {
                return Err(format!(
                    "{author:?} was settled as forked at #{cut}, but its log never parted at #{}",
                    cut + 1
                ));
            }
        }
        let mut surviving: BTreeMap<(DeviceId, u64), BTreeSet<[u8; 32]>> = BTreeMap::new();
        for w in self.writes.iter().filter(|w| !self.is_void(w, forks)) {
            surviving.entry((w.dot.device, w.dot.seq)).or_default().insert(w.hash);
        }
        if let Some(((a, seq), _)) = surviving.iter().find(|(_, h)| h.len() > 1) {
            return Err(format!("{a:?} forked at #{seq} and it was never settled"));
        }
        Ok(())
    }

    /// The forks `dev` settled: device → cut.
    fn fork_cuts_of(&self, dev: &Replica<S>) -> BTreeMap<DeviceId, u64> {
        let m = dev.membership();
        m.devices()
            .filter(|(e, _)| m.is_forked(e.device_id))
            .filter_map(|(e, r)| Some((e.device_id, r?.last_seq)))
            .collect()
    }

    /// Device 0 or 1 revokes a device of index ≥ 2 (at least two devices stay active).
    fn revoke(&mut self) {
        if self.restores {
            return;
        }
        let n = self.devices.len();
        let v = self.rng.gen_range(2..n);
        if !self.revoked.contains_key(&v) && n - self.revoked.len() <= 2 {
            return;
        }
        let r = self.rng.gen_range(0..2);
        let victim = self.devices[v].device_id();
        let cut = self.devices[r].version().get(victim);
        let wall = self.wall(r);
        self.devices[r].revoke(victim, wall).expect("revoke");
        let e = self.revoked.entry(v).or_insert(cut);
        *e = (*e).min(cut);
        self.stats.revocations += 1;
    }

    fn active(&self) -> impl Iterator<Item = &Replica<S>> {
        self.devices.iter().enumerate().filter(|(i, _)| !self.revoked.contains_key(i)).map(|(_, d)| d)
    }

    /// True when `w` is not in the final state: its author is revoked or forked with a
    /// lower cut-off (`forks` from [`Sim::fork_cuts`]), or a restore destroyed it.
    fn is_void(&self, w: &Write, forks: &BTreeMap<DeviceId, u64>) -> bool {
        let i = self.devices.iter().position(|d| d.device_id() == w.dot.device);
        let revoked = i.and_then(|i| self.revoked.get(&i)).is_some_and(|cut| w.dot.seq > *cut);
        w.lost || revoked || forks.get(&w.dot.device).is_some_and(|cut| w.dot.seq > *cut)
    }

    fn connect(&mut self, a: usize, b: usize) {
        if self.links.iter().any(|l| l.ends.contains(&a) && l.ends.contains(&b)) {
            return;
        }
        let cfg = SessionConfig {
            batch_bytes: self.rng.gen_range(200..4000),
            window: self.rng.gen_range(1..4),
            ..SessionConfig::default()
        };
        let sa = Session::new(Role::Initiator, &self.devices[a], cfg).expect("session");
        let sb = Session::new(Role::Responder, &self.devices[b], cfg).expect("session");
        self.links.push(Link { ends: [a, b], sessions: [sa, sb], queues: [VecDeque::new(), VecDeque::new()] });
    }

    /// Moves outgoing messages into the queues.
    fn collect(&mut self, li: usize) {
        let link = &mut self.links[li];
        for side in 0..2 {
            let dev = &self.devices[link.ends[side]];
            while let Some(m) = link.sessions[side].poll_transmit(dev) {
                link.queues[side].push_back(m);
            }
            while link.sessions[side].poll_event().is_some() {}
        }
    }

    /// Delivers up to `max` queued messages on link `li`, with faults when enabled. Returns
    /// false when the session died (the link is then dropped).
    fn deliver(&mut self, li: usize, max: usize) -> bool {
        for _ in 0..max {
            self.collect(li);
            let side = if self.rng.gen_bool(0.5) { 0 } else { 1 };
            let side = if self.links[li].queues[side].is_empty() { 1 - side } else { side };
            let Some(mut msg) = self.links[li].queues[side].pop_front() else { return true };
            let mut dup = false;
            if self.faults {
                let roll = self.rng.gen_range(0..1000);
                if roll < 4 {
                    continue; // lost
                } else if roll < 7 {
                    dup = true;
                } else if roll < 10 {
                    if let Some(next) = self.links[li].queues[side].pop_front() {
                        self.links[li].queues[side].push_front(msg);
                        msg = next;
                    }
                }
            }
            let to = 1 - side;
            let dev = self.links[li].ends[to];
            let (len, end) = (self.devices[dev].len(), self.devices[dev].log_end());
            let link = &mut self.links[li];
            let mut ok = link.sessions[to].handle_message(&msg, &mut self.devices[dev]).is_ok();
            if ok && dup {
                ok = link.sessions[to].handle_message(&msg, &mut self.devices[dev]).is_ok();
            }
            if !ok {
                return false;
            }
            if self.devices[dev].len() != len {
                self.relay(dev, li, end);
            }
        }
        true
    }

    /// What the node does when `dev` stored entries that link `from` brought: its other
    /// sessions announce them (`Have`) and hold them back until released (`release`, at a
    /// random later step here), so forwards happen late or not at all.
    fn relay(&mut self, dev: usize, from: usize, end: usize) {
        for (li, link) in self.links.iter_mut().enumerate() {
            if li == from {
                continue;
            }
            for side in 0..2 {
                if link.ends[side] == dev {
                    link.sessions[side].announce(&self.devices[dev]);
                    link.sessions[side].hold_from(end);
                }
            }
        }
    }

    /// A hold ends on link `li` (both ways).
    fn release(&mut self, li: usize) {
        for s in &mut self.links[li].sessions {
            s.release();
        }
    }

    fn crash(&mut self, d: usize) {
        self.links.retain(|l| !l.ends.contains(&d));
        let crashed = self.devices.remove(d);
        let back = S::crash(crashed, &self.secret, self.dir.path(), d);
        self.devices.insert(d, back);
    }

    fn step(&mut self) {
        self.now_ms += self.rng.gen_range(1..2_000);
        let n = self.devices.len();
        match self.rng.gen_range(0..105) {
            0..=34 => {
                let d = self.rng.gen_range(0..n);
                self.write(d);
            }
            35..=69 if !self.links.is_empty() => {
                let li = self.rng.gen_range(0..self.links.len());
                if self.rng.gen_bool(0.5) {
                    self.release(li);
                }
                let max = self.rng.gen_range(1..20);
                if !self.deliver(li, max) {
                    self.stats.sessions_killed_by_faults += 1;
                    self.links.swap_remove(li);
                }
            }
            70..=84 => {
                let (a, b) = (self.rng.gen_range(0..n), self.rng.gen_range(0..n));
                if self.allowed(a, b) {
                    self.connect(a, b);
                }
            }
            85..=89 if !self.links.is_empty() => {
                let li = self.rng.gen_range(0..self.links.len());
                self.links.swap_remove(li);
            }
            90..=94 => {
                // New partition: every device joins one of up to three groups.
                self.stats.partitions += 1;
                for g in self.group.iter_mut() {
                    *g = self.rng.gen_range(0..3);
                }
                let group = self.group.clone();
                self.links.retain(|l| group[l.ends[0]] == group[l.ends[1]]);
            }
            95..=97 => self.group.iter_mut().for_each(|g| *g = 0),
            98 => {
                let d = self.rng.gen_range(0..n);
                self.stats.crashes += 1;
                self.crash(d);
            }
            99 => self.revoke(),
            100..=102 if self.restores => {
                let d = self.rng.gen_range(0..n);
                self.backup(d);
            }
            103 | 104 if self.restores => {
                let d = self.rng.gen_range(0..n);
                self.restore(d);
            }
            _ => {} // a network step with no link to act on
        }
        self.reenrol_forked();
    }

    /// Heals everything and pumps (without faults) until all devices agree.
    fn heal(&mut self) -> Result<(), String> {
        self.faults = false;
        self.group.iter_mut().for_each(|g| *g = 0);
        let n = self.devices.len();
        for _round in 0..(3 * n + 8) {
            self.reenrol_forked();
            self.links.clear();
            // Revoked devices are cut off (active devices refuse them); in a line, their
            // neighbours are linked to each other instead.
            let active: Vec<usize> = (0..n).filter(|i| !self.revoked.contains_key(i)).collect();
            for (i, &a) in active.iter().enumerate() {
                for &b in &active[i + 1..] {
                    if !self.line || active.get(i + 1) == Some(&b) {
                        self.connect(a, b);
                    }
                }
            }
            'pump: loop {
                let mut moved = false;
                for li in 0..self.links.len() {
                    self.collect(li);
                    if self.links[li].queues.iter().any(|q| !q.is_empty()) {
                        moved = true;
                        if !self.deliver(li, usize::MAX) {
                            // The one failure without faults: a device just told its own log
                            // forked is refused; it re-enrols before the next round.
                            if self.links[li].ends.iter().any(|e| self.devices[*e].forked_self()) {
                                break 'pump;
                            }
                            return Err(format!("session on link {:?} failed without faults", self.links[li].ends));
                        }
                    }
                }
                if !moved {
                    // Quiet: the holds end (a node's timer), and what they kept goes out.
                    for li in 0..self.links.len() {
                        self.release(li);
                        self.collect(li);
                    }
                    if self.links.iter().all(|l| l.queues.iter().all(VecDeque::is_empty)) {
                        break;
                    }
                }
            }
            let d0 = self.devices[0].state().digest();
            let forks = self.fork_cuts();
            let live = self.writes.iter().filter(|w| !self.is_void(w, &forks)).count();
            if self
                .active()
                .all(|d| d.state().digest() == d0 && d.len() == live && d.version() == self.devices[0].version())
            {
                return Ok(());
            }
        }
        let forks = self.fork_cuts();
        let live = self.writes.iter().filter(|w| !self.is_void(w, &forks)).count();
        let seen: Vec<String> = self
            .active()
            .map(|d| format!("{} entries, vv {:?}", d.len(), d.version().0.values().collect::<Vec<_>>()))
            .collect();
        Err(format!(
            "devices did not converge after healing: {live} live writes, revoked {:?}, forks {forks:?}, active: {seen:?}",
            self.revoked
        ))
    }

    /// Checks every device's registers against the oracle built from all acknowledged writes.
    fn check_oracle(&self) -> Result<(), String> {
        // Register key: (item, which) where which is "name", "exists" or "f:<field>".
        let forks = self.fork_cuts();
        self.check_forks(&forks)?;
        let mut regs: BTreeMap<(ItemId, String), Vec<&Write>> = BTreeMap::new();
        for w in self.writes.iter().filter(|w| !self.is_void(w, &forks)) {
            match &w.op {
                Op::Put { item, name, fields } => {
                    regs.entry((*item, "exists".into())).or_default().push(w);
                    if name.is_some() {
                        regs.entry((*item, "name".into())).or_default().push(w);
                    }
                    for (k, _) in fields {
                        regs.entry((*item, format!("f:{k}"))).or_default().push(w);
                    }
                }
                Op::Delete { item } => regs.entry((*item, "exists".into())).or_default().push(w),
            }
        }
        let sees = |later: &Write, earlier: &Write| {
            if later.dot.device == earlier.dot.device {
                earlier.dot.seq < later.dot.seq
            } else {
                later.deps.covers(earlier.dot)
            }
        };
        for dev in self.active() {
            for ((item, which), ws) in &regs {
                let expect: BTreeSet<Dot> =
                    ws.iter().filter(|w| !ws.iter().any(|o| o.dot != w.dot && sees(o, w))).map(|w| w.dot).collect();
                let st = &dev.state().items[item];
                let got: BTreeSet<Dot> = match which.as_str() {
                    "exists" => st.exists.values().iter().map(|v| v.dot).collect(),
                    "name" => st.name.values().iter().map(|v| v.dot).collect(),
                    f => st.fields[&f[2..]].values().iter().map(|v| v.dot).collect(),
                };
                if got != expect {
                    return Err(format!("register {item:?}/{which}: expected {expect:?}, device has {got:?}"));
                }
            }
        }
        Ok(())
    }
}

fn run_seed(seed: u64) -> Result<Stats, String> {
    // One in eight seeds, as many of each parity (revoking and restoring).
    if seed % 16 < 2 {
        run::<SqliteStore>(seed).map(|st| Stats { sqlite_crashes: st.crashes, ..st })
    } else {
        run::<MemStore>(seed)
    }
}

fn run<S: SimStore>(seed: u64) -> Result<Stats, String> {
    let mut sim = Sim::<S>::new(seed);
    let steps = sim.rng.gen_range(50..250);
    for _ in 0..steps {
        sim.step();
    }
    sim.heal()?;
    sim.check_oracle()?;
    let mut st = sim.stats;
    st.writes = sim.writes.len();
    st.conflicts_at_end = sim.devices[0].state().conflicts().len();
    st.line_topologies = usize::from(sim.line);
    let forks = sim.fork_cuts();
    st.void_writes = sim.writes.iter().filter(|w| !w.lost && sim.is_void(w, &forks)).count();
    st.forks = forks.len();
    Ok(st)
}

/// Runs the seeds of one parity (of `HEARTH_SIM_SEEDS`, default 2,000, or the one
/// `HEARTH_SIM_SEED` if it has that parity) and returns how many ran and their summed stats.
/// Even seeds revoke devices, odd ones restore homes: the two halves are separate tests so
/// they run on two cores.
fn run_seeds(parity: u64) -> (usize, Stats) {
    let seeds: Vec<u64> = match std::env::var("HEARTH_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("HEARTH_SIM_SEED must be a number")],
        Err(_) => {
            let n = std::env::var("HEARTH_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(2000);
            (0..n).collect()
        }
    };
    let seeds: Vec<u64> = seeds.into_iter().filter(|s| s % 2 == parity).collect();
    let mut failures = Vec::new();
    let mut total = Stats::default();
    for seed in &seeds {
        match run_seed(*seed) {
            Ok(s) => {
                total.writes += s.writes;
                total.sessions_killed_by_faults += s.sessions_killed_by_faults;
                total.crashes += s.crashes;
                total.partitions += s.partitions;
                total.conflicts_at_end += s.conflicts_at_end;
                total.line_topologies += s.line_topologies;
                total.revocations += s.revocations;
                total.void_writes += s.void_writes;
                total.sqlite_crashes += s.sqlite_crashes;
                total.restores += s.restores;
                total.lost_writes += s.lost_writes;
                total.forks += s.forks;
                total.rewritten += s.rewritten;
            }
            Err(e) => {
                eprintln!("seed {seed} FAILED: {e}\n  reproduce: HEARTH_SIM_SEED={seed} cargo test -p hearth-peer --test integration simulation::");
                failures.push(*seed);
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} seeds failed: {:?}", failures.len(), seeds.len(), failures);
    eprintln!("{} seeds converged: {total:?}", seeds.len());
    if seeds.len() >= 50 {
        // The run must actually have exercised what it claims to.
        assert!(total.sessions_killed_by_faults > 0 && total.crashes > 0 && total.partitions > 0, "{total:?}");
        assert!(total.conflicts_at_end > 0 && total.line_topologies > 0 && total.sqlite_crashes > 0, "{total:?}");
    }
    (seeds.len(), total)
}

#[test]
fn random_partitions_with_revocations_converge_without_losing_edits() {
    let (n, total) = run_seeds(0);
    if n >= 50 {
        assert!(total.revocations > 0 && total.void_writes > 0, "{total:?}");
    }
}

#[test]
fn random_partitions_with_restored_homes_converge_without_losing_edits() {
    let (n, total) = run_seeds(1);
    if n >= 50 {
        assert!(total.restores > 0 && total.lost_writes > 0 && total.forks > 0 && total.rewritten > 0, "{total:?}");
    }
}

/// Two halves edit the same fields while split, then heal.
#[test]
fn split_brain_keeps_both_sides_edits() {
    let (_, mut d) = common::vault(4);
    let item = ItemId([1; 16]);
    d[0].write(&common::put(item, "shared", &[("password", "base")]), 1_000).unwrap();
    for i in 1..4 {
        let (a, b) = d.split_at_mut(i);
        common::sync_pair(&mut a[0], &mut b[0]);
    }
    d[0].write(&common::set(item, "password", "left"), 2_000).unwrap();
    d[2].write(&common::set(item, "password", "right"), 2_500).unwrap();
    {
        let (a, b) = d.split_at_mut(1);
        common::sync_pair(&mut a[0], &mut b[0]); // left half: 0,1
    }
    {
        let (a, b) = d.split_at_mut(3);
        common::sync_pair(&mut a[2], &mut b[0]); // right half: 2,3
    }
    {
        let (a, b) = d.split_at_mut(2);
        common::sync_pair(&mut a[1], &mut b[1]); // heal 1 <-> 3
        common::sync_pair(&mut a[0], &mut b[0]); // and 0 <-> 2
    }
    for r in &d[1..] {
        assert_eq!(r.state().digest(), d[0].state().digest());
    }
    let c = d[3].state().conflicts();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].kept.as_deref(), Some("right"));
    assert_eq!(c[0].losing, vec![Some("left".to_owned())]);
}

/// A device offline for 10,000 ops catches up in one session.
#[test]
fn a_device_offline_for_ten_thousand_ops_catches_up() {
    let (_, mut d) = common::vault(2);
    let (mut a, mut b) = (d.remove(0), d.remove(0));
    let item = ItemId([2; 16]);
    a.write(&common::put(item, "counter", &[]), 1).unwrap();
    for i in 0..10_000u64 {
        a.write(&common::set(item, "n", &i.to_string()), 2 + i).unwrap();
    }
    let mut sa = Session::new(Role::Initiator, &a, SessionConfig::default()).unwrap();
    let mut sb = Session::new(Role::Responder, &b, SessionConfig::default()).unwrap();
    hearth_peer::sync::run_until_quiet(&mut sa, &mut a, &mut sb, &mut b).unwrap();
    assert_eq!(b.len(), 10_001);
    assert_eq!(b.state().items[&item].field_values()["n"], "9999");
    assert!(sb.is_caught_up(&b));
}

/// A device that only ever meets one other still converges with everyone.
#[test]
fn a_device_that_meets_only_one_other_converges() {
    let (_, mut d) = common::vault(4);
    for (i, r) in d.iter_mut().enumerate() {
        r.write(&common::put(ItemId([i as u8 + 1; 16]), &format!("d{i}"), &[]), 1_000).unwrap();
    }
    // 3 only ever meets 2; 0, 1 and 2 meet each other.
    for _ in 0..2 {
        let (a, b) = d.split_at_mut(3);
        common::sync_pair(&mut a[2], &mut b[0]);
        let (a, b) = d.split_at_mut(1);
        common::sync_pair(&mut a[0], &mut b[0]);
        let (a, b) = d.split_at_mut(2);
        common::sync_pair(&mut a[1], &mut b[0]);
    }
    for r in &d {
        assert_eq!(r.state().digest(), d[0].state().digest());
        assert_eq!(r.state().visible().count(), 4);
    }
}
