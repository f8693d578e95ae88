//! Forks: a home restored from an older copy and written again signs two logs for one
//! device. Holders of the two branches must settle it the same way and converge, the forked
//! device re-enrols and re-writes what it typed, and nothing typed disappears.

use crate::common::{put, set, vault};
use hearth_peer::ids::{DeviceId, ItemId};
use hearth_peer::sync::{run_until_quiet, Role, Session, SessionConfig, SyncError};
use hearth_peer::vault::{MemStore, Replica, DENSE_HASHES};

const ITEM: ItemId = ItemId([5; 16]);

/// Runs one session between `x` and `y` to quiet; a session the settlement ends is fine.
fn meet(x: &mut Replica<MemStore>, y: &mut Replica<MemStore>) -> Result<(), SyncError> {
    let cfg = SessionConfig { batch_bytes: 4 * 1024, ..SessionConfig::default() };
    let mut sx = Session::new(Role::Initiator, x, cfg)?;
    let mut sy = Session::new(Role::Responder, y, cfg)?;
    run_until_quiet(&mut sx, x, &mut sy, y).map(|_| ())
}

fn field(r: &Replica<MemStore>, k: &str) -> Vec<String> {
    let Some(it) = r.state().items.get(&ITEM) else { return Vec::new() };
    let mut v: Vec<String> =
        it.fields.get(k).map(|reg| reg.values().iter().filter_map(|v| v.value.clone()).collect()).unwrap_or_default();
    v.sort();
    v
}

/// The review's scenario: `c` holds the shorter log, accepts the restored copy's branch,
/// and from then on met `b` (which holds the other branch) only to fail with `Fork`.
#[test]
fn holders_of_two_branches_settle_and_converge() {
    let (secret, mut r) = vault(3);
    let (mut a, mut b, mut c) = (r.remove(0), r.remove(0), r.remove(0));
    let id = a.device_id();
    a.write(&put(ITEM, "bank", &[("user", "ann")]), 1_000).unwrap();
    a.write(&set(ITEM, "pin", "1111"), 1_001).unwrap();
    meet(&mut a, &mut b).unwrap();
    meet(&mut a, &mut c).unwrap();
    let backup = a.store_mut().clone();
    a.write(&set(ITEM, "pin", "lost-2222"), 1_002).unwrap();
    meet(&mut a, &mut b).unwrap();
    // The home is restored from the backup (the head file with it) and typed into again.
    let mut restored = Replica::open(&secret, id, backup).unwrap();
    restored.write(&set(ITEM, "pin", "typed-3333"), 2_000).unwrap();
    restored.write(&set(ITEM, "url", "typed-url"), 2_001).unwrap();
    meet(&mut restored, &mut c).unwrap();
    assert_eq!(field(&c, "pin"), vec!["typed-3333"], "c took the restored branch");
    // b (a#3 = lost) and c (a#3', a#4') settle at a#2 in one session and converge.
    meet(&mut b, &mut c).unwrap();
    for x in [&b, &c] {
        let cut = x.membership().revocation(id).unwrap();
        assert_eq!((cut.last_seq, cut.last_hash), (2, a.hash_at(id, 2).unwrap()));
        assert_eq!(field(x, "pin"), vec!["1111"]);
    }
    assert_eq!(b.state().digest(), c.state().digest());
    assert_eq!(b.version(), c.version());
    // Nothing typed disappears: each branch's values are listed where they were held.
    let void = |x: &Replica<MemStore>| -> Vec<String> {
        x.voided_values().unwrap().into_iter().flat_map(|v| v.fields).filter_map(|(_, v)| v).collect()
    };
    assert_eq!(void(&b), vec!["lost-2222"]);
    assert_eq!(void(&c), vec!["typed-3333", "typed-url"]);
    // Sessions between b and c keep working after the settlement, both ways.
    b.write(&set(ITEM, "note", "from-b"), 3_000).unwrap();
    c.write(&set(ITEM, "note2", "from-c"), 3_001).unwrap();
    meet(&mut c, &mut b).unwrap();
    assert_eq!(b.state().digest(), c.state().digest());
    // The restored device learns of it from c, re-enrols and re-writes what it typed.
    let _ = meet(&mut restored, &mut c);
    assert!(restored.forked_self());
    let mut again = Replica::open(&secret, DeviceId([0x44; 16]), restored.into_store()).unwrap();
    again.enroll_self(4_000).unwrap();
    assert_eq!(again.rewrite_forked(id, 4_001).unwrap().len(), 2);
    meet(&mut again, &mut c).unwrap();
    meet(&mut c, &mut b).unwrap();
    for x in [&b, &c] {
        assert_eq!(x.state().digest(), again.state().digest());
        assert_eq!(field(x, "pin"), vec!["typed-3333"]);
        assert_eq!(field(x, "url"), vec!["typed-url"]);
    }
    // The original device id stays out: it can write nothing more.
    assert!(a.write(&set(ITEM, "pin", "x"), 5_000).is_ok(), "a has not heard yet");
    let _ = meet(&mut a, &mut b);
    assert!(b.state().digest() == c.state().digest(), "a's newer branch entry is void on arrival");
}

/// `a` wrote one entry and synced it to `b`; a copy of `a`'s home from before that wrote
/// another first entry and met `b`. Returns (a's id, b, the restored copy).
fn forked_at_the_first_entry() -> (DeviceId, Replica<MemStore>, Replica<MemStore>) {
    let (secret, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    let id = a.device_id();
    let empty = a.store_mut().clone();
    a.write(&set(ITEM, "k", "a1"), 1_000).unwrap();
    meet(&mut a, &mut b).unwrap();
    let mut restored = Replica::open(&secret, id, empty).unwrap();
    restored.write(&set(ITEM, "k", "r1"), 2_000).unwrap();
    let _ = meet(&mut b, &mut restored);
    (id, b, restored)
}

/// A fork whose branches share nothing: the settlement keeps none of the author's log.
#[test]
fn a_fork_at_the_first_entry_keeps_nothing_of_that_author() {
    let (id, b, restored) = forked_at_the_first_entry();
    assert_eq!(b.membership().revocation(id).map(|r| r.last_seq), Some(0));
    assert_eq!(b.version().get(id), 0);
    assert!(restored.forked_self());
}

/// Deep forks: the hashes list every seq near the fork and doubling gaps below, and the
/// settlement lands on the exact last shared entry while it is within the dense part.
#[test]
fn fork_hashes_are_dense_near_the_fork_then_a_ladder() {
    let (secret, mut r) = vault(1);
    let mut a = r.remove(0);
    let id = a.device_id();
    let n = DENSE_HASHES + 40;
    for i in 0..n {
        a.write(&set(ITEM, "k", &i.to_string()), 1_000 + i).unwrap();
    }
    let hashes = a.fork_hashes(id, n);
    assert_eq!(hashes.len() as u64, DENSE_HASHES + 1 + 4, "4097 dense (down to #40), then #38, #34, #26, #10");
    assert_eq!(hashes[0].0, n);
    assert_eq!(hashes[DENSE_HASHES as usize].0, n - DENSE_HASHES);
    assert!(hashes.windows(2).all(|w| w[0].0 > w[1].0), "descending");
    assert!(hashes.iter().all(|(s, h)| a.hash_at(id, *s) == Some(*h)));
    // Branches that part 30 entries below the head: settled exactly there.
    let (_, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    let mut backup = None;
    for i in 0..n {
        if i == n - 30 {
            backup = Some(a.store_mut().clone());
        }
        a.write(&set(ITEM, "k", &i.to_string()), 1_000 + i).unwrap();
    }
    meet(&mut a, &mut b).unwrap();
    let mut restored = Replica::open(&secret, id, backup.unwrap()).unwrap();
    restored.write(&set(ITEM, "k", "other"), 9_000).unwrap();
    let hashes = restored.fork_hashes(id, n - 29);
    assert_eq!(b.settle_fork(id, &hashes).unwrap(), Some(n - 30));
    assert_eq!(b.version().get(id), n - 30);
    assert_eq!(b.voided_values().unwrap().len(), 30);
}

/// A forked device that a user has also revoked stays out: it is refused like any revoked
/// device (not told to re-enrol), and it does not re-enrol on its own either.
#[test]
fn a_forked_device_a_user_revoked_is_refused_not_told() {
    let (id, mut b, mut restored) = forked_at_the_first_entry();
    assert!(b.membership().is_forked(id) && restored.forked_self());
    b.revoke(id, 3_000).unwrap();
    assert!(b.membership().revoked_by_user(id));
    // b refuses it at the handshake: its hello is only the records that revoke it.
    meet(&mut b, &mut restored).expect("refused quietly");
    assert!(restored.membership().revoked_by_user(id), "it learnt why");
    assert!(!restored.forked_self(), "a user revocation is final");
}

/// A home that forks twice (restored from an older copy again after re-enrolling) re-writes
/// the voided edits of each old id once: the marker is per old id.
#[test]
fn a_second_fork_re_writes_its_own_edits_too() {
    let (secret, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    let id1 = a.device_id();
    a.write(&set(ITEM, "k", "a1"), 1_000).unwrap();
    let backup = a.store_mut().clone();
    a.write(&set(ITEM, "k", "a2"), 1_001).unwrap();
    meet(&mut a, &mut b).unwrap();
    let mut restored = Replica::open(&secret, id1, backup).unwrap();
    restored.write(&set(ITEM, "x", "typed-1"), 2_000).unwrap();
    let _ = meet(&mut b, &mut restored);
    let id2 = DeviceId([0x52; 16]);
    let mut again = Replica::open(&secret, id2, restored.into_store()).unwrap();
    again.enroll_self(3_000).unwrap();
    assert_eq!(again.rewrite_forked(id1, 3_001).unwrap().len(), 1);
    meet(&mut again, &mut b).unwrap();
    // The second time: a copy of the re-enrolled home from before its next edit.
    let backup = again.store_mut().clone();
    again.write(&set(ITEM, "y", "lost"), 4_000).unwrap();
    meet(&mut again, &mut b).unwrap();
    let mut restored = Replica::open(&secret, id2, backup).unwrap();
    restored.write(&set(ITEM, "y", "typed-2"), 5_000).unwrap();
    let _ = meet(&mut b, &mut restored);
    assert!(restored.forked_self());
    let mut third = Replica::open(&secret, DeviceId([0x53; 16]), restored.into_store()).unwrap();
    third.enroll_self(6_000).unwrap();
    assert_eq!(third.rewrite_forked(id2, 6_001).unwrap().len(), 1, "the second fork's edit");
    assert_eq!(third.rewrite_forked(id1, 6_002).unwrap().len(), 0, "the first one's, once");
    meet(&mut third, &mut b).unwrap();
    assert_eq!(field(&b, "y"), vec!["typed-2"]);
    assert_eq!(field(&b, "x"), vec!["typed-1"]);
}

/// Settling acts only on a real difference, and only where no lower cut-off is in force:
/// the same log settles nothing; a fork below a user's revocation still settles.
#[test]
fn settling_needs_a_difference_below_the_cut_in_force() {
    use hearth_peer::identity::{MembershipBody, MembershipRecord, Revocation, VaultKeys};
    let (secret, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    let id = a.device_id();
    a.write(&set(ITEM, "k", "a1"), 1_000).unwrap();
    let backup = a.store_mut().clone();
    for i in 2..=4 {
        a.write(&set(ITEM, "k", &format!("a{i}")), 1_000 + i).unwrap();
    }
    meet(&mut a, &mut b).unwrap();
    assert_eq!(b.settle_fork(id, &a.fork_hashes(id, 4)).unwrap(), None, "the same log");
    assert!(b.membership().revocation(id).is_none());
    let keys = VaultKeys::derive(&secret);
    let revoke = Revocation {
        vault_id: keys.vault_id,
        device_id: id,
        last_seq: 3,
        last_hash: b.hash_at(id, 3).unwrap(),
        at_ms: 5,
    };
    b.add_membership(vec![MembershipRecord::sign(&keys.root, MembershipBody::Revoke(revoke))]).unwrap();
    let mut restored = Replica::open(&secret, id, backup).unwrap();
    restored.write(&set(ITEM, "k", "r2"), 2_000).unwrap();
    assert_eq!(b.settle_fork(id, &restored.fork_hashes(id, 2)).unwrap(), Some(1));
    assert_eq!(b.membership().revocation(id).map(|r| r.last_seq), Some(1));
    assert_eq!(b.settle_fork(id, &restored.fork_hashes(id, 2)).unwrap(), None, "settled already");
}
