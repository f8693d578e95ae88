//! Revocation converges: entries of a revoked device beyond the lowest cut-off are void on
//! every device, whatever each had accepted before the revocation reached it; other devices'
//! later edits that depend on void entries are accepted everywhere; the void values stay
//! listed; a live session with a revoked device sends it nothing more.

use crate::common;

use crate::common::{put, set, sync_one_way, sync_pair, vault};
use hearth_peer::identity::{MembershipBody, MembershipRecord, Revocation, VaultKeys, VaultSecret};
use hearth_peer::ids::{DeviceId, ItemId};
use hearth_peer::sync::{Role, Session, SessionConfig};
use hearth_peer::vault::Replica;

const ITEM: ItemId = ItemId([7; 16]);

fn records<S: hearth_peer::vault::LogStore>(r: &Replica<S>) -> Vec<MembershipRecord> {
    r.membership().records().to_vec()
}

/// A revocation of `device` at `last_seq` whose hash names an entry nobody holds (another
/// branch of its log, as a revoker that held it would have signed).
fn revocation_of_another_branch(device: DeviceId, last_seq: u64) -> MembershipRecord {
    let keys = VaultKeys::derive(&VaultSecret::from_bytes([0x11; 32]));
    let body = Revocation { vault_id: keys.vault_id, device_id: device, last_seq, last_hash: [0xEE; 32], at_ms: 5 };
    MembershipRecord::sign(&keys.root, MembershipBody::Revoke(body))
}

/// The review's scenario: d writes and syncs to b; a revokes d knowing none of its entries;
/// b learns the revocation and writes. Everyone must converge without d's item.
#[test]
fn a_revocation_with_a_lower_cut_off_voids_what_others_had_accepted() {
    let (_, mut r) = vault(3);
    let (mut a, mut b, mut d) = (r.remove(0), r.remove(0), r.remove(0));
    d.write(&put(ITEM, "from-d", &[("password", "d-secret")]), 1_000).unwrap();
    sync_one_way(&d, &mut b);
    assert_eq!(b.state().visible().count(), 1);
    a.revoke(d.device_id(), 2_000).unwrap();
    b.add_membership(records(&a)).unwrap();
    // b voided d's entry: gone from its state and log, listed as a void value.
    assert_eq!(b.state().visible().count(), 0);
    assert_eq!(b.version().get(d.device_id()), 0);
    let void = b.voided_values().unwrap();
    assert_eq!(void.len(), 1);
    assert_eq!(void[0].author, d.device_id());
    assert_eq!(void[0].name.as_deref(), Some("from-d"));
    assert_eq!(void[0].fields, vec![("password".to_owned(), Some("d-secret".to_owned()))]);
    // b writes (its deps still name d's void entry) and a accepts it.
    b.write(&put(ItemId([8; 16]), "from-b", &[]), 3_000).unwrap();
    sync_pair(&mut a, &mut b);
    assert_eq!(a.state().digest(), b.state().digest());
    assert_eq!(a.len(), b.len());
    // d's entries are refused (void) on receipt, without refusing the batch.
    let mut cursor = 0;
    let batch = d.batch_for(a.version(), &mut cursor, usize::MAX).unwrap();
    let got = a.receive(&batch).unwrap();
    assert_eq!((got.new, got.void), (0, 1));
    assert_eq!(a.state().digest(), b.state().digest());
}

/// Two parents revoke one device with different cut-offs; the revocations reach three
/// devices in different orders; everyone ends with the same log and state.
#[test]
fn two_revocations_converge_in_either_order() {
    let (_, mut r) = vault(4);
    let (mut a, mut b, mut c, mut d) = (r.remove(0), r.remove(0), r.remove(0), r.remove(0));
    for i in 0..5u64 {
        d.write(&set(ITEM, "k", &format!("d{i}")), 1_000 + i).unwrap();
        if i == 1 {
            sync_one_way(&d, &mut a);
        }
    }
    sync_one_way(&d, &mut b);
    sync_one_way(&d, &mut c);
    a.revoke(d.device_id(), 10_000).unwrap(); // cut-off 2
    b.revoke(d.device_id(), 10_001).unwrap(); // cut-off 5
    c.write(&set(ITEM, "k", "c-after-d"), 11_000).unwrap();
    // c learns b's revocation first, then a's; b the other way round.
    c.add_membership(records(&b)).unwrap();
    c.add_membership(records(&a)).unwrap();
    b.add_membership(records(&a)).unwrap();
    a.add_membership(records(&b)).unwrap();
    for _ in 0..2 {
        sync_pair(&mut a, &mut b);
        sync_pair(&mut b, &mut c);
        sync_pair(&mut a, &mut c);
    }
    for r in [&a, &b, &c] {
        assert_eq!(r.version().get(d.device_id()), 2, "the lowest cut-off wins everywhere");
    }
    assert_eq!(a.state().digest(), b.state().digest());
    assert_eq!(a.state().digest(), c.state().digest());
    assert_eq!(a.version(), c.version());
    // c's edit depended on d's now-void entries 3..5 and was accepted everywhere.
    assert_eq!(a.state().items[&ITEM].field_values()["k"], "c-after-d");
    assert_eq!(b.voided_values().unwrap().len(), 3, "b lists the three values it had");
}

/// After a revocation reaches it, a session sends the revoked peer nothing more.
#[test]
fn a_live_session_with_a_revoked_device_stops_at_once() {
    let (_, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    let (mut sa, _sb) = common::live_sessions(&mut a, &mut b);
    a.revoke(b.device_id(), 5_000).unwrap();
    a.write(&put(ITEM, "after-revoke", &[("password", "not-for-b")]), 6_000).unwrap();
    assert!(sa.poll_transmit(&a).is_none(), "nothing at all goes to a revoked device");
    assert!(!sa.is_live());
    assert_eq!(b.state().visible().count(), 0);
}

/// A device known to be revoked learns nothing once its static key is known: our hello is
/// only the record that revokes it (no other membership, no heads), whoever dialled, then
/// the session closes and nothing it sends is stored.
#[test]
fn a_known_revoked_device_gets_only_its_revocation() {
    for a_dials in [false, true] {
        let (_, mut r) = vault(3);
        let (mut a, mut b, c) = (r.remove(0), r.remove(0), r.remove(0));
        a.write(&put(ITEM, "not-for-b", &[("password", "x")]), 4_000).unwrap();
        a.revoke(b.device_id(), 5_000).unwrap();
        // A record only b holds: it must not reach a through this session.
        b.revoke(c.device_id(), 5_100).unwrap();
        let (a_before, b_before) = (records(&a), records(&b).len());
        let cfg = SessionConfig::default();
        let (role_a, role_b) =
            if a_dials { (Role::Initiator, Role::Responder) } else { (Role::Responder, Role::Initiator) };
        let (mut sa, mut sb) = (Session::new(role_a, &a, cfg).unwrap(), Session::new(role_b, &b, cfg).unwrap());
        for _ in 0..6 {
            while let Some(m) = sb.poll_transmit(&b) {
                let _ = sa.handle_message(&m, &mut a);
            }
            while let Some(m) = sa.poll_transmit(&a) {
                let _ = sb.handle_message(&m, &mut b);
            }
        }
        assert!(sa.is_closed() && sa.remote().is_none(), "a closed the session (a_dials: {a_dials})");
        assert_eq!(records(&a), a_before, "nothing b holds reached a");
        assert!(b.membership().revoked_by_user(b.device_id()), "b learnt why");
        assert_eq!(records(&b).len(), b_before + 1, "b learnt its revocation and nothing else");
        assert!(sb.is_caught_up(&b), "no head was sent to b");
        assert_eq!(b.state().visible().count(), 0);
    }
}

/// The void values survive a reopen (they are stored sealed, beside the log).
#[test]
fn void_values_survive_a_reopen_of_a_sqlite_home() {
    use hearth_peer::home::{Home, Protection};
    let dir = tempfile::tempdir().unwrap();
    let secret = VaultSecret::from_bytes([0x11; 32]);
    let (_, mut r) = vault(2);
    let (mut a, mut d) = (r.remove(0), r.remove(0));
    let home = Home::new(dir.path().join("b"));
    home.create(&secret, DeviceId([9; 16]), &Protection::KeyFile).unwrap();
    let mut b = home.open(None).unwrap();
    b.enroll_self(1).unwrap();
    b.add_membership(records(&a)).unwrap();
    b.add_membership(records(&d)).unwrap();
    d.write(&put(ITEM, "d-item", &[("pin", "4321")]), 1_000).unwrap();
    sync_one_way(&d, &mut b);
    a.add_membership(records(&b)).unwrap();
    a.revoke(d.device_id(), 2_000).unwrap();
    b.add_membership(records(&a)).unwrap();
    drop(b);
    let b = home.open(None).unwrap();
    assert_eq!(b.state().visible().count(), 0);
    assert_eq!(b.voided_values().unwrap()[0].fields, vec![("pin".to_owned(), Some("4321".to_owned()))]);
    let raw = std::fs::read(home.db_path()).unwrap();
    assert!(!raw.windows(4).any(|w| w == b"4321"), "void values are stored sealed");
}

/// A revocation whose vouched hash at the cut-off is not this device's entry there (the
/// revoker held another branch): the device settles the fork one seq lower with its own
/// hash there, so its database keeps reopening and the lower cut wins everywhere; a batch
/// that would store the unverifiable branch is refused as a fork until that settlement
/// arrives.
#[test]
fn a_revocation_vouching_for_another_branch_never_bricks_the_log() {
    let (_, mut r) = vault(2);
    let (mut b, mut d) = (r.remove(0), r.remove(0));
    for i in 0..3u64 {
        d.write(&set(ITEM, "k", &format!("d{i}")), 1_000 + i).unwrap();
    }
    let batch = d.batch_for(&Default::default(), &mut 0, usize::MAX).unwrap();
    b.receive(&batch).unwrap();
    let other_branch = revocation_of_another_branch(d.device_id(), 2);
    b.add_membership(vec![other_branch.clone()]).unwrap();
    assert_eq!(b.version().get(d.device_id()), 1, "settled one below the disputed entry");
    let cut = b.membership().revocation(d.device_id()).unwrap().clone();
    assert_eq!((cut.last_seq, Some(cut.last_hash)), (1, b.hash_at(d.device_id(), 1)));
    assert!(b.membership().is_forked(d.device_id()));
    assert_eq!(b.voided_values().unwrap().len(), 2);
    let again = Replica::open(&VaultSecret::from_bytes([0x11; 32]), b.device_id(), b.store_mut().clone()).unwrap();
    assert_eq!(again.state().digest(), b.state().digest());
    // A device that learns the revocation first refuses d's run rather than keep its first
    // two entries unverifiable; with b's settlement it keeps d#1 and voids the rest.
    let (_, mut r2) = vault(2);
    let mut c = r2.remove(0);
    c.add_membership(vec![other_branch]).unwrap();
    let err = c.receive(&batch).unwrap_err();
    assert!(matches!(err, hearth_peer::vault::ReplicaError::Fork { seq: 2, .. }), "{err}");
    assert!(c.is_empty());
    c.add_membership(records(&b)).unwrap();
    assert_eq!(c.receive(&batch).unwrap(), hearth_peer::vault::Received { new: 1, void: 2, ..Default::default() });
    assert_eq!(c.state().digest(), b.state().digest());
}

/// A signed run of a revoked device that ends exactly at the cut-off, on another branch than
/// the one the revocation vouches for, is authentic: it is taken, and the fork it shows is
/// settled one seq lower at once, with the same record the devices that held the entry
/// before the revocation signed, so all agree without waiting for another membership change.
#[test]
fn a_signed_run_of_another_branch_ending_at_the_cut_is_settled_on_receipt() {
    let (_, mut r) = vault(3);
    let (mut b, mut c, mut d) = (r.remove(0), r.remove(0), r.remove(0));
    d.write(&set(ITEM, "k", "d1"), 1_000).unwrap();
    d.write(&set(ITEM, "k", "d2"), 1_001).unwrap();
    let batch = d.batch_for(&Default::default(), &mut 0, usize::MAX).unwrap();
    assert_eq!(batch.heads.len(), 1, "signed at d#2");
    b.receive(&batch).unwrap();
    let other_branch = revocation_of_another_branch(d.device_id(), 2);
    b.add_membership(vec![other_branch.clone()]).unwrap();
    c.add_membership(vec![other_branch]).unwrap();
    let got = c.receive(&batch).unwrap();
    assert_eq!(got, hearth_peer::vault::Received { new: 1, void: 1, ..Default::default() });
    assert_eq!(c.version().get(d.device_id()), 1);
    let fork = |r: &Replica<_>| records(r).into_iter().find(|x| matches!(x.body, MembershipBody::Fork(_)));
    assert!(fork(&c).is_some());
    assert_eq!(fork(&c), fork(&b), "the same settlement, signed by each");
    assert_eq!(c.state().digest(), b.state().digest());
    assert_eq!(c.voided_values().unwrap().len(), 1);
}

/// A relay whose kept prefix of a revoked device ends at an entry without a head signature
/// (vouched by the revocation's hash) after an earlier signed one: it forwards that prefix
/// without the earlier signature, which would not cover the run's end, and a device that
/// knows the revocation keeps the entry at the cut-off itself.
#[test]
fn a_kept_prefix_ending_at_the_vouched_entry_is_forwarded_whole() {
    let (_, mut r) = vault(4);
    let (mut a, mut b, mut c, mut d) = (r.remove(0), r.remove(0), r.remove(0), r.remove(0));
    d.write(&set(ITEM, "k", "d1"), 1_000).unwrap();
    sync_one_way(&d, &mut b); // b: d#1, signed
    d.write(&set(ITEM, "k", "d2"), 1_001).unwrap();
    sync_one_way(&d, &mut a); // a: d#1..2
    d.write(&set(ITEM, "k", "d3"), 1_002).unwrap();
    sync_one_way(&d, &mut b); // b: d#2..3 in one batch, signed at #3 only
    a.revoke(d.device_id(), 2_000).unwrap();
    b.add_membership(records(&a)).unwrap();
    assert_eq!(b.version().get(d.device_id()), 2);
    c.add_membership(records(&a)).unwrap();
    sync_one_way(&b, &mut c);
    assert_eq!(c.version().get(d.device_id()), 2, "the entry at the cut-off is kept");
    assert_eq!(c.state().digest(), b.state().digest());
}

/// Without a head signature, a run of a revoked device is taken only when it ends exactly
/// at the cut-off with the hash the revocation vouches for: an unsigned run ending
/// elsewhere, or a forged entry at the cut, is refused as unsigned.
#[test]
fn an_unsigned_run_is_taken_only_up_to_the_vouched_entry() {
    use hearth_peer::vault::ReplicaError;
    let (secret, mut r) = vault(3);
    let (mut a, mut c, mut d) = (r.remove(0), r.remove(0), r.remove(0));
    d.write(&set(ITEM, "k", "d1"), 1_000).unwrap();
    d.write(&set(ITEM, "k", "d2"), 1_001).unwrap();
    sync_one_way(&d, &mut a);
    a.revoke(d.device_id(), 2_000).unwrap();
    c.add_membership(records(&a)).unwrap();
    let mut unsigned = d.batch_for(&Default::default(), &mut 0, usize::MAX).unwrap();
    unsigned.heads.clear();
    let mut short = unsigned.clone();
    short.entries.truncate(1);
    let err = c.receive(&short).unwrap_err();
    assert!(matches!(err, ReplicaError::MissingHead(x) if x == d.device_id()), "{err}");
    let mut forged = unsigned.clone();
    let header = hearth_peer::vault::EntryHeader {
        vault: a.vault_id(),
        author: d.device_id(),
        seq: 2,
        hlc: forged.entries[1].hlc,
        deps: forged.entries[1].deps.clone(),
        prev: d.hash_at(d.device_id(), 1).unwrap(),
    };
    forged.entries[1].sealed = common::seal_raw(&secret, header, &set(ITEM, "k", "forged")).sealed;
    let err = c.receive(&forged).unwrap_err();
    assert!(matches!(err, ReplicaError::MissingHead(_)), "{err}");
    assert!(c.is_empty());
    assert_eq!(c.receive(&unsigned).unwrap().new, 2, "the vouched run itself is taken");
}

/// The check that a kept run ends at the vouched entry looks at that author's entry at the
/// cut-off, not at another author's entry of the same seq earlier in the batch.
#[test]
fn the_vouched_entry_is_found_among_other_authors_entries() {
    let (_, mut r) = vault(4);
    let (mut a, mut b, mut c, mut d) = (r.remove(0), r.remove(0), r.remove(0), r.remove(0));
    a.write(&set(ItemId([1; 16]), "k", "a1"), 900).unwrap();
    a.write(&set(ItemId([1; 16]), "k", "a2"), 901).unwrap();
    d.write(&set(ITEM, "k", "d1"), 1_001).unwrap();
    d.write(&set(ITEM, "k", "d2"), 1_002).unwrap();
    sync_one_way(&d, &mut a);
    d.write(&set(ITEM, "k", "d3"), 1_003).unwrap();
    a.revoke(d.device_id(), 2_000).unwrap();
    // b's log, in commit order: a#1, a#2, d#1, d#2, d#3 (it has not heard of the revocation).
    sync_one_way(&a, &mut b);
    sync_one_way(&d, &mut b);
    c.add_membership(records(&a)).unwrap();
    sync_one_way(&b, &mut c);
    assert_eq!((c.version().get(a.device_id()), c.version().get(d.device_id())), (2, 2));
    assert_eq!(c.state().items[&ITEM].field_values()["k"], "d2");
}
