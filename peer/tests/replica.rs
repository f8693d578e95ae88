//! Replica behaviour: sync, conflicts, mesh forwarding, and refusal of hostile batches
//! (nothing from a bad batch is stored).

use crate::common;

use crate::common::{put, set, sync_one_way, sync_pair, vault};
use hearth_peer::identity::VaultSecret;
use hearth_peer::ids::{DeviceId, ItemId};
use hearth_peer::vault::{Batch, EntryError, LogStore, MemStore, Op, Received, Replica, ReplicaError, VersionVector};

/// The secret of `common::vault`.
fn secret() -> VaultSecret {
    VaultSecret::from_bytes([0x11; 32])
}

#[test]
fn two_devices_converge() {
    let (_, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    for i in 0..300u16 {
        let mut id = [0u8; 16];
        id[..2].copy_from_slice(&i.to_be_bytes());
        a.write(&put(ItemId(id), &format!("item{i}"), &[("password", "pw")]), 10_000 + u64::from(i)).unwrap();
    }
    let batches = sync_one_way(&a, &mut b);
    assert!(batches > 1, "16 KiB budget should split 100 entries");
    assert_eq!(a.state().digest(), b.state().digest());
    assert_eq!(b.state().visible().count(), 300);
    // A second round sends nothing.
    assert_eq!(sync_one_way(&a, &mut b), 0);
}

#[test]
fn concurrent_edits_are_kept_as_conflicts_and_resolved() {
    let (_, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    let item = ItemId([7; 16]);
    a.write(&put(item, "mail", &[("password", "one")]), 1_000).unwrap();
    sync_pair(&mut a, &mut b);
    a.write(&set(item, "password", "from-a"), 2_000).unwrap();
    b.write(&set(item, "password", "from-b"), 3_000).unwrap();
    sync_pair(&mut a, &mut b);
    assert_eq!(a.state().digest(), b.state().digest());
    let c = a.state().conflicts();
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].field, "password");
    assert_eq!(c[0].kept.as_deref(), Some("from-b"), "later HLC wins the display");
    assert_eq!(c[0].losing, vec![Some("from-a".to_owned())], "the loser is kept, not dropped");
    // A write that has seen both settles it everywhere.
    a.write(&set(item, "password", "settled"), 4_000).unwrap();
    sync_pair(&mut a, &mut b);
    assert!(b.state().conflicts().is_empty());
    assert_eq!(b.state().items[&item].field_values()["password"], "settled");
}

#[test]
fn edit_concurrent_with_delete_keeps_the_item_and_flags_it() {
    let (_, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    let item = ItemId([3; 16]);
    a.write(&put(item, "bank", &[("pin", "1234")]), 1_000).unwrap();
    sync_pair(&mut a, &mut b);
    a.write(&Op::Delete { item }, 2_000).unwrap();
    b.write(&set(item, "pin", "9999"), 2_000).unwrap();
    sync_pair(&mut a, &mut b);
    for s in [a.state(), b.state()] {
        assert!(s.items[&item].is_visible());
        assert!(s.conflicts().iter().any(|c| c.field == "(deleted)"));
    }
    // A delete that saw the edit removes it.
    a.write(&Op::Delete { item }, 3_000).unwrap();
    sync_pair(&mut a, &mut b);
    assert!(!b.state().items[&item].is_visible());
}

#[test]
fn entries_travel_through_an_intermediate_device() {
    let (_, mut r) = vault(3);
    let (mut a, mut b, mut c) = (r.remove(0), r.remove(0), r.remove(0));
    a.write(&put(ItemId([1; 16]), "from-a", &[]), 1_000).unwrap();
    c.write(&put(ItemId([2; 16]), "from-c", &[]), 1_000).unwrap();
    sync_pair(&mut a, &mut b);
    sync_pair(&mut b, &mut c);
    sync_pair(&mut a, &mut b);
    assert_eq!(a.state().digest(), c.state().digest());
    assert_eq!(a.state().visible().count(), 2);
}

/// A batch from `a` for an empty receiver, for the tampering tests.
fn batch_from(a: &Replica<MemStore>) -> Batch {
    let mut cursor = 0;
    a.batch_for(&Default::default(), &mut cursor, usize::MAX).unwrap()
}

fn two_with_history() -> (Replica<MemStore>, Replica<MemStore>) {
    let (_, mut r) = vault(2);
    let (mut a, b) = (r.remove(0), r.remove(0));
    for i in 0..5u8 {
        a.write(&put(ItemId([i; 16]), "x", &[("k", "v")]), 1_000).unwrap();
    }
    (a, b)
}

/// Feeds a batch that must be refused, and checks that nothing of it was kept: not in
/// memory, not in the state, not in the store, and a fresh reopen of the store agrees.
fn refused(secret: &VaultSecret, b: &mut Replica<MemStore>, batch: &Batch) -> ReplicaError {
    let (len, digest) = (b.len(), b.state().digest());
    let stored = b.store_mut().load_entries().unwrap().len();
    let err = b.receive(batch).unwrap_err();
    assert_eq!((b.len(), b.state().digest()), (len, digest), "nothing from a refused batch may be applied");
    assert_eq!(b.store_mut().load_entries().unwrap().len(), stored, "nothing from a refused batch may be stored");
    let again = Replica::open(secret, b.device_id(), b.store_mut().clone()).expect("the store still opens");
    assert_eq!(again.state().digest(), digest);
    err
}

#[test]
fn forged_head_signature_is_refused() {
    let (a, mut b) = two_with_history();
    let mut batch = batch_from(&a);
    let mut sig = batch.heads[0].1.to_bytes();
    sig[5] ^= 1;
    batch.heads[0].1 = ed25519_dalek::Signature::from_bytes(&sig);
    assert!(matches!(refused(&secret(), &mut b, &batch), ReplicaError::Entry(_)));
    batch.heads.clear();
    assert!(matches!(refused(&secret(), &mut b, &batch), ReplicaError::MissingHead(_)));
}

#[test]
fn broken_hash_chain_is_refused() {
    let (mut a, mut b) = two_with_history();
    // A forged middle entry that unseals fine (re-sealed with the content key): only the
    // hash chain ending at the signed head can catch it.
    let mut batch = batch_from(&a);
    let stored = a.store_mut().load_entries().unwrap();
    let forged = common::seal_raw(&secret(), stored[2].entry.header.clone(), &put(ItemId([77; 16]), "forged", &[]));
    batch.entries[2].sealed = forged.sealed;
    assert!(matches!(refused(&secret(), &mut b, &batch), ReplicaError::Entry(EntryError::BadHeadSignature(..))));
    let mut batch = batch_from(&a);
    batch.entries[1].hlc.ms += 1; // header fields are covered by the chain too (and the seal's AAD)
    assert!(matches!(refused(&secret(), &mut b, &batch), ReplicaError::Entry(_)));
}

#[test]
fn an_entry_whose_dependencies_did_not_come_first_is_refused() {
    let (_, mut r) = vault(3);
    let (mut a, mut b, mut c) = (r.remove(0), r.remove(0), r.remove(0));
    a.write(&put(ItemId([1; 16]), "from-a", &[]), 1_000).unwrap();
    sync_one_way(&a, &mut b);
    b.write(&set(ItemId([1; 16]), "k", "after-a"), 2_000).unwrap();
    // b's entry without a's, which it depends on.
    let mut cursor = 0;
    let batch = b.batch_for(a.version(), &mut cursor, usize::MAX).unwrap();
    assert_eq!(batch.entries.len(), 1);
    let err = refused(&secret(), &mut c, &batch);
    assert!(matches!(err, ReplicaError::CausalGap { seq: 1, .. }), "{err}");
}

#[test]
fn the_displayed_winner_is_the_later_write_even_from_the_lower_device_id() {
    let (_, mut r) = vault(2);
    let (mut low, mut high) = (r.remove(0), r.remove(0));
    assert!(low.device_id() < high.device_id());
    let item = ItemId([1; 16]);
    low.write(&put(item, "x", &[]), 1_000).unwrap();
    sync_pair(&mut low, &mut high);
    high.write(&set(item, "k", "high-earlier"), 2_000).unwrap();
    low.write(&set(item, "k", "low-later"), 3_000).unwrap();
    sync_pair(&mut low, &mut high);
    for r in [&low, &high] {
        let c = r.state().conflicts();
        assert_eq!(c[0].kept.as_deref(), Some("low-later"));
        assert_eq!(c[0].losing, vec![Some("high-earlier".to_owned())]);
    }
    // Equal timestamps: the higher device id is shown, on both devices.
    let (_, mut r) = vault(2);
    let (mut low, mut high) = (r.remove(0), r.remove(0));
    low.write(&put(item, "x", &[]), 1_000).unwrap();
    sync_pair(&mut low, &mut high);
    high.write(&set(item, "k", "from-high"), 5_000).unwrap();
    low.write(&set(item, "k", "from-low"), 5_000).unwrap();
    sync_pair(&mut low, &mut high);
    for r in [&low, &high] {
        assert_eq!(r.state().conflicts()[0].kept.as_deref(), Some("from-high"));
    }
}

#[test]
fn gaps_and_bad_indices_are_refused() {
    let (a, mut b) = two_with_history();
    let mut batch = batch_from(&a);
    batch.entries.remove(1);
    assert!(matches!(refused(&secret(), &mut b, &batch), ReplicaError::Gap { .. }));
    let mut batch = batch_from(&a);
    batch.entries[0].author = 9;
    assert!(matches!(refused(&secret(), &mut b, &batch), ReplicaError::BadAuthorIndex(9)));
}

#[test]
fn entries_from_another_vault_are_refused() {
    let (a, _) = two_with_history();
    let other = VaultSecret::from_bytes([0x22; 32]);
    let mut stranger = Replica::open(&other, DeviceId([9; 16]), MemStore::default()).unwrap();
    stranger.enroll_self(1).unwrap();
    // The author is unknown to that vault's membership...
    let err = refused(&other, &mut stranger, &batch_from(&a));
    assert!(matches!(err, ReplicaError::Membership(_)), "{err}");
    // ...and even under a colliding device id, the head signature binds the vault id.
    let mut twin = Replica::open(&other, DeviceId([1; 16]), MemStore::default()).unwrap();
    twin.enroll_self(1).unwrap();
    assert!(matches!(refused(&other, &mut twin, &batch_from(&a)), ReplicaError::Entry(_)));
    // ...and its membership records fail the root signature check.
    assert!(stranger.add_membership(a.membership().records().to_vec()).is_err());
}

#[test]
fn replayed_entries_change_nothing() {
    let (a, mut b) = two_with_history();
    let batch = batch_from(&a);
    assert_eq!(b.receive(&batch).unwrap().new, 5);
    let digest = b.state().digest();
    let again = b.receive(&batch).unwrap();
    assert_eq!((again.new, again.duplicates), (0, 5));
    assert_eq!(b.state().digest(), digest);
    assert_eq!(b.len(), 5);
}

#[test]
fn revoked_author_is_refused_after_revocation() {
    let (_, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    a.write(&put(ItemId([1; 16]), "before", &[]), 1_000).unwrap();
    sync_pair(&mut a, &mut b);
    b.revoke(a.device_id(), 2_000).unwrap();
    a.write(&put(ItemId([2; 16]), "after", &[]), 3_000).unwrap();
    let mut cursor = 0;
    let batch = a.batch_for(b.version(), &mut cursor, usize::MAX).unwrap();
    let digest = b.state().digest();
    // Entries beyond the cut-off are void: verified, counted, and never stored or applied.
    assert_eq!(b.receive(&batch).unwrap(), Received { new: 0, duplicates: 0, void: 1, refused: 0 });
    assert_eq!((b.len(), b.state().digest()), (1, digest));
    // The revocation travels: once `a` learns it, it cannot write any more either.
    let recs = b.membership().records().to_vec();
    a.add_membership(recs).unwrap();
    assert!(matches!(a.write(&put(ItemId([3; 16]), "x", &[]), 4_000), Err(ReplicaError::NotActive)));
}

#[test]
fn a_forked_device_is_detected() {
    let (secret, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    // A home restored from a backup: a second replica of device `a` with its old state.
    let backup_store = MemStore::default();
    a.write(&put(ItemId([1; 16]), "one", &[]), 1_000).unwrap();
    sync_pair(&mut a, &mut b);
    let mut restored = Replica::open(&secret, a.device_id(), backup_store).unwrap();
    restored.add_membership(a.membership().records().to_vec()).unwrap();
    restored.write(&put(ItemId([9; 16]), "diverged", &[]), 5_000).unwrap();
    assert_eq!(b.check_heads(&restored.heads()).unwrap(), vec![(a.device_id(), 1)]);
    assert_eq!(b.check_heads(&a.heads()).unwrap(), vec![], "the same log is no fork");
    // Its entries do not chain onto what b holds either.
    let mut cursor = 0;
    let batch = restored.batch_for(&Default::default(), &mut cursor, usize::MAX).unwrap();
    assert_eq!(b.receive(&batch).unwrap().new, 0, "seq 1 is held already: treated as a duplicate");
    // Settled from the restored copy's hashes: nothing is shared, so nothing of `a` is kept.
    let hashes = restored.fork_hashes(a.device_id(), 1);
    assert_eq!(hashes, vec![(1, restored.hash_at(a.device_id(), 1).unwrap())]);
    assert_eq!(b.settle_fork(a.device_id(), &hashes).unwrap(), Some(0));
    assert_eq!(b.settle_fork(a.device_id(), &hashes).unwrap(), None, "settled once");
    assert!(b.membership().is_forked(a.device_id()) && b.is_empty());
    assert_eq!(b.voided_values().unwrap()[0].name.as_deref(), Some("one"));
}

/// A home restored from an older copy that has not written since: a peer's head shows it
/// is behind its own log, so it stops writing (a write would sign a seq twice) until the
/// session brings its own later entries back; then it writes on, with no fork.
#[test]
fn a_restored_device_stops_writing_until_its_peers_return_its_log() {
    let (secret, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    a.write(&put(ItemId([1; 16]), "one", &[]), 1_000).unwrap();
    let backup = a.store_mut().clone();
    a.write(&put(ItemId([2; 16]), "two", &[]), 2_000).unwrap();
    sync_pair(&mut a, &mut b);
    let mut restored = Replica::open(&secret, a.device_id(), backup).unwrap();
    assert_eq!(restored.check_heads(&b.heads()).unwrap(), vec![], "behind is not a fork");
    assert!(matches!(
        restored.write(&put(ItemId([3; 16]), "x", &[]), 3_000),
        Err(ReplicaError::Restored { have: 1, wrote: 2 })
    ));
    // Through a session: b returns a#2 and the verdict is lifted.
    let cfg = hearth_peer::sync::SessionConfig::default();
    let mut sr = hearth_peer::sync::Session::new(hearth_peer::sync::Role::Initiator, &restored, cfg).unwrap();
    let mut sb = hearth_peer::sync::Session::new(hearth_peer::sync::Role::Responder, &b, cfg).unwrap();
    hearth_peer::sync::run_until_quiet(&mut sr, &mut restored, &mut sb, &mut b).unwrap();
    assert_eq!(restored.state().digest(), b.state().digest());
    assert_eq!(restored.write(&put(ItemId([3; 16]), "x", &[]), 3_000).unwrap(), 3);
    let mut again = Replica::open(&secret, a.device_id(), restored.into_store()).unwrap();
    assert_eq!(again.write(&put(ItemId([4; 16]), "y", &[]), 4_000).unwrap(), 4, "the lifted verdict stays lifted");
    sync_pair(&mut again, &mut b);
    assert_eq!(b.len(), again.len());
    assert!(b.membership().revocations().next().is_none(), "no fork");
}

/// Once a peer has shown that this home is an older copy, a restart does not forget it:
/// writes stay refused until `hearth repair` gives the home a new device id.
#[test]
fn a_restored_verdict_survives_a_restart() {
    let (secret, mut d) = common::vault(1);
    let mut r = d.remove(0);
    let item = ItemId([7; 16]);
    r.write(&common::put(item, "x", &[]), 2_000).unwrap();
    r.mark_restored(1, 5);
    let refused = |r: &mut Replica<MemStore>| {
        matches!(r.write(&common::set(item, "k", "v"), 3_000), Err(ReplicaError::Restored { have: 1, wrote: 5 }))
    };
    assert!(refused(&mut r));
    let store = r.store_mut().clone();
    let mut again = Replica::open(&secret, r.device_id(), store.clone()).unwrap();
    assert!(refused(&mut again), "the verdict is stored with the log");
    // Another device id on the same store (what `hearth repair` does) is not bound by it.
    let mut other = Replica::open(&secret, DeviceId([0x42; 16]), store).unwrap();
    assert!(!refused(&mut other));
}

/// A stored verdict that the log has since caught up with (a reader that raced a writer's
/// commit stored it) is dropped at open; one it has not stands.
#[test]
fn a_restored_verdict_the_log_caught_up_with_is_dropped_at_open() {
    for (have, wrote, stands) in [(0, 1, false), (0, 5, true), (1, 1, true), (1, 5, true)] {
        let (secret, mut d) = common::vault(1);
        let mut r = d.remove(0);
        r.write(&common::put(ItemId([7; 16]), "x", &[]), 2_000).unwrap();
        r.mark_restored(have, wrote);
        let store = r.store_mut().clone();
        let mut again = Replica::open(&secret, r.device_id(), store).unwrap();
        let w = again.write(&common::set(ItemId([7; 16]), "k", "v"), 3_000);
        assert_eq!(matches!(w, Err(ReplicaError::Restored { .. })), stands, "have {have}, wrote {wrote}: {w:?}");
    }
}

/// A store whose rows are rewritten (by hand, a tool, a bug) is checked row by row on open,
/// not only at each author's signed head.
mod reopened_stores {
    use super::*;
    use hearth_peer::identity::{MembershipBody, MembershipRecord, Revocation, VaultKeys};
    use hearth_peer::vault::StoredEntry;

    /// Device 1 of a one-device vault with three entries, and what its store holds.
    fn written() -> (VaultSecret, Replica<MemStore>, Vec<MembershipRecord>, Vec<StoredEntry>) {
        let (secret, mut r) = vault(1);
        let mut a = r.remove(0);
        for i in 1..=3 {
            a.write(&set(ItemId([1; 16]), "k", &format!("v{i}")), 1_000 + i).unwrap();
        }
        let (records, entries) = a.store_mut().load_snapshot().unwrap();
        (secret, a, records, entries)
    }

    fn store_of(records: &[MembershipRecord], entries: &[StoredEntry]) -> MemStore {
        let mut s = MemStore::default();
        s.commit(entries, records).unwrap();
        s
    }

    /// A middle row re-sealed with the content key (so it decrypts) under its old stored
    /// hash: the chain and the head signature, which go by stored hashes, would not see it.
    #[test]
    fn a_middle_row_resealed_under_its_old_hash_is_damaged() {
        let (secret, a, records, mut entries) = written();
        let forged = common::seal_raw(&secret, entries[1].entry.header.clone(), &set(ItemId([1; 16]), "k", "forged"));
        entries[1].entry = forged;
        let err = Replica::open(&secret, a.device_id(), store_of(&records, &entries)).unwrap_err();
        assert!(matches!(err, ReplicaError::Damaged(d, 2) if d == a.device_id()), "{err}");
        assert!(format!("{a:?}").starts_with("Replica { device: "), "{a:?}");
    }

    /// A row renumbered with its stored hash recomputed to match: the chain still links, but
    /// the seq does not follow, and that alone is damage.
    #[test]
    fn a_renumbered_row_with_a_matching_hash_is_damaged() {
        let (secret, a, records, mut entries) = written();
        entries[2].entry.header.seq = 5;
        entries[2].hash = entries[2].entry.hash();
        let err = Replica::open(&secret, a.device_id(), store_of(&records, &entries)).unwrap_err();
        assert!(matches!(err, ReplicaError::Damaged(_, 5)), "{err}");
    }

    /// A stored run that ends unsigned at a cut-off whose hash names another entry cannot be
    /// verified by anything: the store is damaged (the cut-off vouches only for its entry).
    #[test]
    fn an_unsigned_run_ending_at_a_cut_naming_another_entry_is_damaged() {
        let (secret, a, mut records, mut entries) = written();
        for se in &mut entries {
            se.head = None;
        }
        let keys = VaultKeys::derive(&secret);
        records.push(MembershipRecord::sign(
            &keys.root,
            MembershipBody::Revoke(Revocation {
                vault_id: keys.vault_id,
                device_id: a.device_id(),
                last_seq: 3,
                last_hash: [0xEE; 32],
                at_ms: 2,
            }),
        ));
        let err = Replica::open(&secret, a.device_id(), store_of(&records, &entries)).unwrap_err();
        assert!(matches!(err, ReplicaError::Damaged(_, 3)), "{err}");
    }

    /// A store holding a cut-off that names another entry than the one held (a record learnt
    /// by a build that did not settle forks) is settled on open, and the settlement stored.
    #[test]
    fn a_stored_cut_naming_another_entry_is_settled_and_kept() {
        let (secret, a, mut records, entries) = written();
        let keys = VaultKeys::derive(&secret);
        let other = MembershipRecord::sign(
            &keys.root,
            MembershipBody::Revoke(Revocation {
                vault_id: keys.vault_id,
                device_id: a.device_id(),
                last_seq: 2,
                last_hash: [0xEE; 32],
                at_ms: 2,
            }),
        );
        records.push(other);
        let mut r = Replica::open(&secret, a.device_id(), store_of(&records, &entries)).unwrap();
        let cut = r.membership().revocation(a.device_id()).unwrap().clone();
        assert_eq!((cut.last_seq, Some(cut.last_hash)), (1, a.hash_at(a.device_id(), 1)));
        let (stored, _) = r.store_mut().load_snapshot().unwrap();
        assert!(stored.iter().any(|rec| matches!(&rec.body, MembershipBody::Fork(f) if f.last_seq == 1)));
    }
}

/// A restored verdict whose own log is not behind but different at the head seq (the head
/// file named another hash) is not lifted by receiving other devices' entries: only own
/// entries beyond what was held, up to what was written, lift it.
#[test]
fn a_restored_verdict_lifts_only_when_the_own_log_grew_to_what_was_written() {
    let (_, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    a.write(&put(ItemId([1; 16]), "a1", &[]), 1_000).unwrap();
    a.write(&put(ItemId([2; 16]), "a2", &[]), 1_001).unwrap();
    a.mark_restored(2, 2);
    b.write(&put(ItemId([3; 16]), "b1", &[]), 1_002).unwrap();
    sync_one_way(&b, &mut a);
    assert!(matches!(a.write(&put(ItemId([4; 16]), "x", &[]), 2_000), Err(ReplicaError::Restored { .. })));
    // The accessors the CLI and the home file check use.
    assert_eq!(a.own_hash(2), a.hash_at(a.device_id(), 2));
    assert!(a.own_hash(2).is_some_and(|h| h != [0; 32] && h != [1; 32]));
    assert_eq!(a.own_hash(3), None);
    assert_eq!(a.own_hash(0), None, "seq 0 is no entry (hash_at gives the chain's genesis there)");
    assert_eq!(a.vault_id(), hearth_peer::identity::VaultKeys::derive(&VaultSecret::from_bytes([0x11; 32])).vault_id);
    assert!(!a.is_empty() && a.len() == 3);
}

#[test]
fn an_items_history_is_every_live_change_to_it_oldest_first() {
    let (_, mut r) = vault(3);
    let (mut a, mut b, mut d) = (r.remove(0), r.remove(0), r.remove(0));
    let (item, other) = (ItemId([5; 16]), ItemId([6; 16]));
    a.write(&put(item, "bank", &[("password", "one"), ("user", "al")]), 1_000).unwrap();
    a.write(&put(other, "else", &[("password", "not this")]), 1_500).unwrap();
    sync_pair(&mut a, &mut b);
    // b's change comes into a's log after a's own later ones: history follows the clocks.
    b.write(&set(item, "password", "b-before"), 1_800).unwrap();
    a.write(&set(item, "password", "two"), 2_000).unwrap();
    a.write(&Op::Put { item, name: None, fields: vec![("user".into(), None)] }, 2_500).unwrap();
    sync_pair(&mut a, &mut b);
    a.write(&Op::Delete { item }, 4_000).unwrap();
    let h = a.history(item).unwrap();
    type Fields<'a> = Vec<(&'a str, Option<&'a str>)>;
    let summary: Vec<(u64, Option<&str>, Fields, bool)> = h
        .iter()
        .map(|c| {
            let fields = c.fields.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
            (c.hlc.ms, c.name.as_deref(), fields, c.deleted)
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (1_000, Some("bank"), vec![("password", Some("one")), ("user", Some("al"))], false),
            (1_800, None, vec![("password", Some("b-before"))], false),
            (2_000, None, vec![("password", Some("two"))], false),
            (2_500, None, vec![("user", None)], false),
            (4_000, None, vec![], true),
        ]
    );
    assert_eq!((h[1].author, h[1].seq), (b.device_id(), 1));
    assert_eq!((h[2].author, h[2].seq), (a.device_id(), 3));
    assert_eq!(b.history(other).unwrap().len(), 1);
    assert!(a.history(ItemId([9; 16])).unwrap().is_empty());
    // A revoked device's entries past its cut-off are void, not history.
    d.write(&set(other, "password", "from-d"), 5_000).unwrap();
    sync_one_way(&d, &mut b);
    assert_eq!(b.history(other).unwrap().len(), 2);
    a.revoke(d.device_id(), 6_000).unwrap();
    b.add_membership(a.membership().records().to_vec()).unwrap();
    assert_eq!(b.history(other).unwrap().len(), 1, "d's change is void");
}

/// Several local actions in one commit: consecutive seqs, rising clocks at one wall time, a
/// hash chain another device accepts, every action applied; no actions write nothing.
#[test]
fn write_all_commits_a_chained_run_of_entries() {
    let (_, mut reps) = vault(2);
    let (mut a, mut b) = (reps.remove(0), reps.remove(0));
    a.write(&put(ItemId([1; 16]), "first", &[("k", "v")]), 5_000).unwrap();
    let ops: Vec<Op> = (2..5u8).map(|i| put(ItemId([i; 16]), &format!("item {i}"), &[("k", "v")])).collect();
    assert_eq!(a.write_all(&ops, 5_000).unwrap(), 4, "the last seq");
    assert_eq!(a.len(), 4);
    assert_eq!(a.state().visible().count(), 4);
    // Nothing to write: the current seq, and nothing stored.
    assert_eq!(a.write_all(&[], 5_000).unwrap(), 4);
    assert_eq!(a.len(), 4);
    let mut cursor = 0;
    let batch = a.batch_for(&VersionVector::default(), &mut cursor, 1 << 20).unwrap();
    let mine: Vec<_> = batch.entries.iter().filter(|e| batch.authors[e.author as usize] == a.device_id()).collect();
    let seqs: Vec<u64> = mine.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert!(mine.windows(2).all(|w| w[0].hlc < w[1].hlc), "clocks rise within one wall-clock ms");
    // Another device verifies the chain and the signatures, and holds the same items.
    sync_one_way(&a, &mut b);
    assert_eq!(b.version().get(a.device_id()), 4);
    let names = |r: &Replica<MemStore>| {
        let mut v: Vec<String> = r.state().visible().map(|(_, it)| it.name().to_owned()).collect();
        v.sort();
        v
    };
    assert_eq!(names(&b), names(&a));
    // And a later single write continues the chain.
    a.write(&put(ItemId([9; 16]), "after", &[]), 5_000).unwrap();
    sync_one_way(&a, &mut b);
    assert_eq!(b.version().get(a.device_id()), 5);
}
