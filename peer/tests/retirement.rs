//! Retirement (a rotated vault) in sync sessions: whoever knows of it says only that, the
//! other side stores it and stops; a device that rotated away answers the old vault's
//! handshakes with it; a holder of the old phrase learns nothing of the new vault.

use crate::common::{put, vault};
use hearth_peer::identity::{MembershipRecord, VaultSecret};
use hearth_peer::ids::{DeviceId, ItemId};
use hearth_peer::sync::{run_until_quiet, Role, Session, SessionConfig, SyncError};
use hearth_peer::vault::{MemStore, Predecessor, Replica};

const ITEM: ItemId = ItemId([7; 16]);

/// Runs a session between `a` (dialling when `a_dials`) and `b` to the end; the error of
/// whichever side failed first.
fn session(
    a: &mut Replica<MemStore>,
    b: &mut Replica<MemStore>,
    a_dials: bool,
) -> (Result<(), SyncError>, Session, Session) {
    let cfg = SessionConfig::default();
    let (ra, rb) = if a_dials { (Role::Initiator, Role::Responder) } else { (Role::Responder, Role::Initiator) };
    let (mut sa, mut sb) = (Session::new(ra, a, cfg).unwrap(), Session::new(rb, b, cfg).unwrap());
    let r = run_until_quiet(&mut sa, a, &mut sb, b).map(|_| ());
    (r, sa, sb)
}

fn records(r: &Replica<MemStore>) -> Vec<MembershipRecord> {
    r.membership().records().to_vec()
}

#[test]
fn a_retired_device_says_only_that_whoever_dialled() {
    for a_dials in [true, false] {
        let (_, mut r) = vault(2);
        let (mut a, mut b) = (r.remove(0), r.remove(0));
        a.write(&put(ITEM, "late", &[("password", "never-sent")]), 4_000).unwrap();
        let rec = a.retire(5_000).unwrap();
        let before = records(&a);
        b.write(&put(ItemId([8; 16]), "b-only", &[("pin", "1")]), 4_500).unwrap();
        let (res, sa, sb) = session(&mut a, &mut b, a_dials);
        assert!(matches!(res, Err(SyncError::Retired(_))), "a_dials {a_dials}: {res:?}");
        assert_eq!(b.retirement().map(|r| r.by), Some(a.device_id()), "b stored the retirement");
        assert!(records(&b).contains(&rec));
        assert_eq!(b.state().visible().count(), 1, "no entry of a reached b");
        assert_eq!(b.uncarried(), 1, "b's own unsynced edit is counted as not carried");
        assert_eq!(records(&a), before, "nothing of b reached a");
        assert_eq!(a.len(), 1);
        assert!(sa.is_closed() && sb.is_closed());
        // Once told, b says it too: a third device learns it from b.
        let (_, mut r) = vault(3);
        let mut c = r.remove(2);
        let (res, _, _) = session(&mut b, &mut c, a_dials);
        assert!(matches!(res, Err(SyncError::Retired(_))), "{res:?}");
        assert_eq!(c.retirement().map(|r| r.by), Some(a.device_id()));
    }
}

#[test]
fn retiring_during_a_live_session_tells_the_peer_and_closes() {
    let (_, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    let (mut sa, mut sb) = crate::common::live_sessions(&mut a, &mut b);
    a.retire(6_000).unwrap();
    let m = sa.poll_transmit(&a).expect("the retirement goes out");
    assert!(sa.is_closed(), "a closes after telling");
    assert!(sa.poll_transmit(&a).is_none());
    assert!(matches!(sb.handle_message(&m, &mut b), Err(SyncError::Retired(_))));
    assert!(b.retirement().is_some());
}

/// The old vault (phrase 0x11) has a (which rotates) and b (left behind) and a thief t
/// holding the old phrase; the new vault (phrase 0x22) has a under a new id, and c.
#[test]
fn a_device_that_rotated_away_answers_the_old_vault_and_nothing_of_the_new_one_leaks() {
    let (old_secret, mut r) = vault(2);
    let (mut a_old, mut b) = (r.remove(0), r.remove(0));
    let notice = vec![a_old.retire(7_000).unwrap()];
    let new_secret = VaultSecret::from_bytes([0x22; 32]);
    let mut a_new = Replica::open(&new_secret, DeviceId([0xA2; 16]), MemStore::default()).unwrap();
    a_new.enroll_self(7_000).unwrap();
    a_new.write(&put(ITEM, "after-rotation", &[("password", "new-secret-value")]), 8_000).unwrap();
    let pred = Predecessor::derive(&old_secret, a_old.device_id(), a_old.membership());
    assert_eq!(pred.notice, notice);
    assert!(pred.enrollment.is_some());
    a_new.set_predecessors(vec![pred]);
    let a_records = records(&a_new);
    // b dials the rotated device with the old vault's keys: it learns the retirement.
    let (res, _, _) = session(&mut b, &mut a_new, true);
    assert!(matches!(res, Err(SyncError::Retired(_))), "{res:?}");
    assert_eq!(b.retirement().map(|r| r.by), Some(a_old.device_id()));
    assert_eq!(b.state().visible().count(), 0, "nothing of the new vault reached b");
    assert_eq!(records(&a_new), a_records, "nothing of the old vault reached a");
    // A thief with the old phrase enrols a device of its own and dials: the same, no more.
    let mut t = Replica::open(&old_secret, DeviceId([0x77; 16]), MemStore::default()).unwrap();
    t.enroll_self(9_000).unwrap();
    let (res, _, _) = session(&mut t, &mut a_new, true);
    assert!(matches!(res, Err(SyncError::Retired(_))), "{res:?}");
    assert_eq!(t.state().visible().count(), 0);
    assert_eq!(t.len(), 0);
    // A device of the new vault still syncs with it (the predecessor is only a fallback).
    let mut c = Replica::open(&new_secret, DeviceId([0xC2; 16]), MemStore::default()).unwrap();
    c.enroll_self(7_500).unwrap();
    a_new.add_membership(records(&c)).unwrap();
    c.add_membership(records(&a_new)).unwrap();
    let (res, _, _) = session(&mut c, &mut a_new, true);
    assert!(res.is_ok(), "{res:?}");
    assert_eq!(c.state().digest(), a_new.state().digest());
    // The rotated device answers only as a responder: dialling out it speaks the new vault,
    // which the old one cannot open.
    let (res, _, _) = session(&mut a_new, &mut t, true);
    assert!(matches!(res, Err(SyncError::Handshake(_))), "{res:?}");
    // A device of neither vault is refused as before.
    let stranger_secret = VaultSecret::from_bytes([0x33; 32]);
    let mut s = Replica::open(&stranger_secret, DeviceId([0x55; 16]), MemStore::default()).unwrap();
    s.enroll_self(1).unwrap();
    let (res, _, _) = session(&mut s, &mut a_new, true);
    assert!(matches!(res, Err(SyncError::Handshake(_))), "{res:?}");
}
