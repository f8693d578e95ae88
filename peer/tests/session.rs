//! The Noise sync session between two replicas over an in-memory pipe: full sync, live
//! push, mesh forwarding, and refusal of strangers, revoked devices and garbage.

use crate::common;

use crate::common::{put, vault};
use hearth_peer::identity::VaultSecret;
use hearth_peer::ids::{DeviceId, ItemId};
use hearth_peer::sync::{run_until_quiet, Event, Role, Session, SessionConfig, SessionCounts, SyncError};
use hearth_peer::vault::{MemStore, Replica};

fn item(i: u32) -> ItemId {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&i.to_be_bytes());
    ItemId(b)
}

fn pair(a: &Replica<MemStore>, b: &Replica<MemStore>) -> (Session, Session) {
    let cfg = SessionConfig { batch_bytes: 8 * 1024, ..SessionConfig::default() };
    (Session::new(Role::Initiator, a, cfg).unwrap(), Session::new(Role::Responder, b, cfg).unwrap())
}

#[test]
fn full_sync_then_live_push() {
    let (_, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    for i in 0..500 {
        a.write(&put(item(i), &format!("n{i}"), &[("password", "hunter2")]), 1_000 + u64::from(i)).unwrap();
    }
    b.write(&put(item(9_999), "from-b", &[]), 5_000).unwrap();
    let (mut sa, mut sb) = pair(&a, &b);
    let stats = run_until_quiet(&mut sa, &mut a, &mut sb, &mut b).unwrap();
    // 500 entries of about 90 bytes went one way; acks and one entry the other.
    assert!(stats.bytes_a_to_b > 40_000 && stats.bytes_b_to_a > 100, "{stats:?}");
    assert!(stats.bytes_b_to_a < stats.bytes_a_to_b / 10, "{stats:?}");
    assert!(format!("{sa:?}").starts_with("Session { role: Initiator, remote: Some("), "{sa:?}");
    // One `Acked` when everything sent was acknowledged, carrying b's version then.
    let acked: Vec<_> =
        stats.events_a.iter().filter_map(|e| if let Event::Acked(v) = e { Some(v) } else { None }).collect();
    assert_eq!(acked.last().copied(), Some(b.version()), "{acked:?}");
    assert!(stats.events_a.contains(&Event::Connected { device: b.device_id() }));
    assert!(stats.events_b.contains(&Event::Connected { device: a.device_id() }));
    assert_eq!(a.state().digest(), b.state().digest());
    assert!(sa.is_caught_up(&a) && sb.is_caught_up(&b));
    for ev in &stats.events_b {
        if let Event::Received(got) = ev {
            assert_eq!(got.duplicates, 0, "a echoed b's entry back");
        }
    }
    // Live: a new local write is pushed on the next poll.
    a.write(&put(item(10_000), "live", &[]), 9_000).unwrap();
    let live = run_until_quiet(&mut sa, &mut a, &mut sb, &mut b).unwrap();
    assert_eq!(b.state().visible().count(), 502);
    // Nothing is echoed back: b sends only acks, never a batch of a's own entries (which a
    // would count as duplicates).
    assert_eq!(a.len(), b.len());
    for ev in stats.events_a.iter().chain(&live.events_a) {
        if let Event::Received(got) = ev {
            assert_eq!(got.duplicates, 0, "b echoed entries back to a");
        }
    }
}

/// What the node reads off a session: one handshake hash on both ends (unique per session,
/// to pick between duplicate sessions alike), what moved, what is pending, and when one
/// sync round is complete.
#[test]
fn both_ends_see_one_handshake_hash_and_count_what_moved() {
    let (_, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    for i in 0..3 {
        a.write(&put(item(i), "x", &[]), 1_000).unwrap();
    }
    let (mut sa, mut sb) = pair(&a, &b);
    assert_eq!(sa.handshake_hash(), None);
    assert!(!sa.is_caught_up(&a) && !sb.is_caught_up(&b), "nothing is caught up before hello");
    assert_eq!(sa.pending(&a), 3);
    let stats = run_until_quiet(&mut sa, &mut a, &mut sb, &mut b).unwrap();
    let h = sa.handshake_hash().unwrap();
    assert_eq!(sb.handshake_hash(), Some(h));
    assert!(h != [0; 32] && h != [1; 32]);
    let (ab, ba) = (stats.bytes_a_to_b as u64, stats.bytes_b_to_a as u64);
    assert_eq!(
        sa.counts(),
        SessionCounts { sent: 3, received: 0, dup_received: 0, bytes_sent: ab, bytes_received: ba }
    );
    assert_eq!(
        sb.counts(),
        SessionCounts { sent: 0, received: 3, dup_received: 0, bytes_sent: ba, bytes_received: ab }
    );
    assert_eq!((sa.pending(&a), sb.pending(&b)), (0, 0));
    assert!(sa.is_caught_up(&a) && sb.is_caught_up(&b));
    // Each condition of "caught up" on its own: a new write (unsent, then unacknowledged).
    a.write(&put(item(9), "y", &[]), 2_000).unwrap();
    assert!(!sa.is_caught_up(&a), "an entry not yet offered");
    assert_eq!(sa.pending(&a), 1);
    let m = sa.poll_transmit(&a).unwrap();
    assert!(!sa.is_caught_up(&a), "a batch not yet acknowledged");
    sb.handle_message(&m, &mut b).unwrap();
    assert!(!sb.is_caught_up(&b) || b.version() == a.version());
    run_until_quiet(&mut sa, &mut a, &mut sb, &mut b).unwrap();
    assert!(sa.is_caught_up(&a));
    // b learns of an entry a holds (its hello version) only once it has it.
    let (_, mut r) = vault(3);
    let (mut x, mut y, mut z) = (r.remove(0), r.remove(0), r.remove(0));
    z.write(&put(item(1), "z", &[]), 1_000).unwrap();
    common::sync_pair(&mut z, &mut x);
    let (mut sx, mut sy) = pair(&x, &y);
    'hello: loop {
        while let Some(m) = sx.poll_transmit(&x) {
            sy.handle_message(&m, &mut y).unwrap();
            if sy.is_live() {
                break 'hello;
            }
        }
        while let Some(m) = sy.poll_transmit(&y) {
            sx.handle_message(&m, &mut x).unwrap();
        }
    }
    assert!(!sy.is_caught_up(&y), "y has not received what x's hello announced");
    run_until_quiet(&mut sx, &mut x, &mut sy, &mut y).unwrap();
    assert!(sy.is_caught_up(&y));
}

/// Flow control: with acknowledgements withheld, a sender has exactly `window` batches out.
#[test]
fn no_more_than_window_batches_go_unacknowledged() {
    let (_, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    for i in 0..50 {
        a.write(&put(item(i), "entry", &[]), 1_000).unwrap();
    }
    let cfg = SessionConfig { batch_bytes: 300, window: 2, ..SessionConfig::default() };
    let mut sa = Session::new(Role::Initiator, &a, cfg).unwrap();
    let mut sb = Session::new(Role::Responder, &b, cfg).unwrap();
    let mut batches = 0;
    for _ in 0..20 {
        while let Some(m) = sa.poll_transmit(&a) {
            sb.handle_message(&m, &mut b).unwrap();
        }
        while let Some(e) = sb.poll_event() {
            batches += usize::from(matches!(e, Event::Received(_)));
        }
        // b's answers reach a until a is live; from then on its acks are withheld.
        if !sa.is_live() {
            while let Some(m) = sb.poll_transmit(&b) {
                sa.handle_message(&m, &mut a).unwrap();
            }
        }
    }
    assert_eq!(batches, 2);
}

#[test]
fn entries_are_forwarded_between_live_sessions() {
    let (_, mut r) = vault(3);
    let (mut a, mut b, mut c) = (r.remove(0), r.remove(0), r.remove(0));
    let (mut ab_a, mut ab_b) = pair(&a, &b);
    let (mut bc_b, mut bc_c) = pair(&b, &c);
    run_until_quiet(&mut ab_a, &mut a, &mut ab_b, &mut b).unwrap();
    run_until_quiet(&mut bc_b, &mut b, &mut bc_c, &mut c).unwrap();
    a.write(&put(item(1), "via-b", &[]), 1_000).unwrap();
    run_until_quiet(&mut ab_a, &mut a, &mut ab_b, &mut b).unwrap();
    // b's session with c pushes what b just received from a.
    run_until_quiet(&mut bc_b, &mut b, &mut bc_c, &mut c).unwrap();
    assert_eq!(c.state().digest(), a.state().digest());
    assert_eq!(c.state().visible().count(), 1);
}

#[test]
fn a_different_vault_cannot_complete_the_handshake() {
    let (_, mut r) = vault(1);
    let mut a = r.remove(0);
    let mut stranger =
        Replica::open(&VaultSecret::from_bytes([0x99; 32]), DeviceId([5; 16]), MemStore::default()).unwrap();
    stranger.enroll_self(1).unwrap();
    let (mut sa, mut ss) = pair(&a, &stranger);
    let err = run_until_quiet(&mut sa, &mut a, &mut ss, &mut stranger).unwrap_err();
    assert!(matches!(err, SyncError::Handshake(_)), "{err}");
    assert!(stranger.is_empty() && a.is_empty());
}

/// A party without the phrase, speaking Noise itself, as initiator and as responder: it never
/// gets a device's static key out of the handshake (the PSK is mixed in before any static).
#[test]
fn a_stranger_learns_no_static_key() {
    use hearth_peer::sync::session::NOISE_PARAMS;
    let (_, mut r) = vault(1);
    let mut a = r.remove(0);
    let stranger = |initiator: bool| {
        let b = snow::Builder::new(NOISE_PARAMS.parse().unwrap())
            .local_private_key(&[7u8; 32])
            .unwrap()
            .psk(0, &[3u8; 32])
            .unwrap();
        if initiator { b.build_initiator() } else { b.build_responder() }.unwrap()
    };
    let mut buf = vec![0u8; 65_535];
    // The stranger dials: the device refuses message 1 and sends nothing back.
    let mut s = stranger(true);
    let n = s.write_message(&[], &mut buf).unwrap();
    let mut sa = Session::new(Role::Responder, &a, SessionConfig::default()).unwrap();
    assert!(matches!(sa.handle_message(&buf[..n], &mut a), Err(SyncError::Handshake(_))));
    assert!(sa.poll_transmit(&a).is_none());
    assert!(s.get_remote_static().is_none());
    // The device dials the stranger: message 1 does not even decrypt for it.
    let mut s = stranger(false);
    let mut sa = Session::new(Role::Initiator, &a, SessionConfig::default()).unwrap();
    let m1 = sa.poll_transmit(&a).unwrap();
    assert!(s.read_message(&m1, &mut buf).is_err());
    assert!(s.get_remote_static().is_none());
    // A Noise message carries the static only encrypted: it never appears in the clear.
    let dh = a.device_keys().dh_public();
    assert!(!m1.windows(32).any(|w| w == dh));
}

#[test]
fn a_revoked_device_is_refused() {
    let (_, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    a.revoke(b.device_id(), 1_000).unwrap();
    a.write(&put(item(1), "secret", &[("password", "p")]), 2_000).unwrap();
    let (mut sa, mut sb) = pair(&a, &b);
    // a refuses quietly: its only word is the record that revokes b.
    run_until_quiet(&mut sa, &mut a, &mut sb, &mut b).unwrap();
    assert!(sa.is_closed() && sa.remote().is_none());
    assert!(b.is_empty(), "the revoked device received nothing");
    assert!(b.membership().revoked_by_user(b.device_id()));
}

/// A record revoking the peer that the peer itself forwards (it learnt it elsewhere) ends
/// the session as `NotMember` on the receiving side at once.
#[test]
fn a_peer_forwarding_its_own_revocation_is_refused_at_once() {
    let (_, mut r) = vault(3);
    let (mut a, mut b, mut c) = (r.remove(0), r.remove(0), r.remove(0));
    let (mut sa, mut sb) = pair(&a, &b);
    run_until_quiet(&mut sa, &mut a, &mut sb, &mut b).unwrap();
    c.revoke(b.device_id(), 1_000).unwrap();
    b.add_membership(c.membership().records().to_vec()).unwrap();
    let err = run_until_quiet(&mut sa, &mut a, &mut sb, &mut b).unwrap_err();
    assert!(matches!(err, SyncError::NotMember(_)), "{err}");
    assert!(a.membership().revoked_by_user(b.device_id()));
}

#[test]
fn garbage_truncated_and_oversized_messages_end_the_session_cleanly() {
    let (_, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    a.write(&put(item(1), "x", &[]), 1_000).unwrap();
    let (mut sa, mut sb) = pair(&a, &b);
    run_until_quiet(&mut sa, &mut a, &mut sb, &mut b).unwrap();
    a.write(&put(item(2), "y", &[]), 2_000).unwrap();
    let msg = sa.poll_transmit(&a).unwrap();
    // Truncated ciphertext.
    let mut sb2 = sb;
    let err = sb2.handle_message(&msg[..msg.len() - 3], &mut b).unwrap_err();
    assert!(matches!(err, SyncError::Decrypt(_)), "{err}");
    assert!(matches!(sb2.handle_message(&msg, &mut b), Err(SyncError::Closed)), "a failed session stays dead");
    assert_eq!(b.len(), 1, "nothing of the bad message was stored");
    // Oversized and garbage input on a fresh responder.
    let mut fresh = Session::new(Role::Responder, &b, SessionConfig::default()).unwrap();
    assert!(fresh.handle_message(&vec![0u8; 70_000], &mut b).is_err());
    let mut fresh = Session::new(Role::Responder, &b, SessionConfig::default()).unwrap();
    assert!(matches!(fresh.handle_message(b"hello?", &mut b), Err(SyncError::Handshake(_))));
}

#[test]
fn reassembled_messages_over_the_cap_are_refused() {
    let (_, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    for i in 0..200 {
        a.write(&put(item(i), &"n".repeat(2_000), &[]), 1_000).unwrap();
    }
    let big = SessionConfig { batch_bytes: 1 << 20, ..SessionConfig::default() };
    let small = SessionConfig { max_message: 100_000, ..SessionConfig::default() };
    let mut sa = Session::new(Role::Initiator, &a, big).unwrap();
    let mut sb = Session::new(Role::Responder, &b, small).unwrap();
    let err = run_until_quiet(&mut sa, &mut a, &mut sb, &mut b).unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");
    assert!(b.is_empty());
}

/// A device restored from an old backup wrote different entries at seqs it had already
/// used: the session (not only `check_heads` called by hand) settles the fork where the logs
/// part, tells the forked device, and sends nothing of either branch beyond that.
#[test]
fn a_session_with_a_forked_device_settles_the_fork() {
    let (secret, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    a.write(&put(item(1), "one", &[]), 1_000).unwrap();
    let backup = a.store_mut().clone();
    a.write(&put(item(2), "two", &[]), 1_001).unwrap();
    let (mut sa, mut sb) = pair(&a, &b);
    run_until_quiet(&mut sa, &mut a, &mut sb, &mut b).unwrap();
    let mut forked = Replica::open(&secret, a.device_id(), backup).unwrap();
    forked.write(&put(item(8), "other-2", &[]), 5_000).unwrap();
    forked.write(&put(item(9), "other-3", &[]), 5_001).unwrap();
    let (mut sf, mut sb) = pair(&forked, &b);
    // b sees the fork (it holds #2), settles it from the forked device's hashes, sends it the
    // settlement and ends the session (the forked id is no longer active).
    let stats = run_until_quiet(&mut sf, &mut forked, &mut sb, &mut b).unwrap();
    assert!(stats.events_b.iter().any(|e| matches!(e, Event::ForkSettled { kept: 1, .. })), "{stats:?}");
    assert!(sb.is_closed(), "b closed the session after telling the forked device");
    let id = a.device_id();
    for r in [&b, &forked] {
        let cut = r.membership().revocation(id).unwrap();
        assert_eq!((cut.last_seq, cut.last_hash), (1, a.hash_at(id, 1).unwrap()), "kept up to the shared #1");
        assert_eq!(r.version().get(id), 1);
    }
    assert!(forked.forked_self());
    let names = |r: &Replica<MemStore>| {
        r.state().visible().map(|(_, it)| it.name.winner().map(|v| v.value.clone())).collect::<Vec<_>>()
    };
    assert_eq!(names(&b), vec![Some("one".to_owned())], "nothing of either branch beyond #1 was taken");
    assert_eq!(b.voided_values().unwrap().iter().map(|v| v.name.clone()).collect::<Vec<_>>(), vec![Some("two".into())]);
    // The forked home re-enrols under a new id and re-writes what it typed on its branch.
    let mut again = Replica::open(&secret, DeviceId([0x77; 16]), forked.into_store()).unwrap();
    again.enroll_self(6_000).unwrap();
    assert_eq!(again.rewrite_forked(id, 6_001).unwrap().len(), 2);
    assert_eq!(again.rewrite_forked(id, 6_002).unwrap().len(), 0, "once");
    let (mut sn, mut sb) = pair(&again, &b);
    run_until_quiet(&mut sn, &mut again, &mut sb, &mut b).unwrap();
    assert_eq!(again.state().digest(), b.state().digest());
    let mut seen = names(&b);
    seen.sort();
    assert_eq!(seen, vec![Some("one".to_owned()), Some("other-2".into()), Some("other-3".into())]);
}

/// The forked device holds the shorter branch: only the peer sees the fork, and the forked
/// device settles its own log from the peer's hashes and sends the record, which the peer
/// takes (quietly closing: its remote is the device it just learnt is forked).
#[test]
fn a_forked_device_with_the_shorter_branch_settles_its_own_fork() {
    let (secret, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    a.write(&put(item(1), "one", &[]), 1_000).unwrap();
    let backup = a.store_mut().clone();
    a.write(&put(item(2), "two", &[]), 1_001).unwrap();
    a.write(&put(item(3), "three", &[]), 1_002).unwrap();
    let (mut sa, mut sb) = pair(&a, &b);
    run_until_quiet(&mut sa, &mut a, &mut sb, &mut b).unwrap();
    let mut forked = Replica::open(&secret, a.device_id(), backup).unwrap();
    forked.write(&put(item(8), "other-2", &[]), 5_000).unwrap();
    let (mut sf, mut sb) = pair(&forked, &b);
    let stats = run_until_quiet(&mut sf, &mut forked, &mut sb, &mut b).unwrap();
    assert!(stats.events_a.iter().any(|e| matches!(e, Event::ForkSettled { kept: 1, .. })), "{stats:?}");
    assert!(forked.forked_self() && sb.is_closed());
    assert_eq!(b.membership().revocation(a.device_id()).map(|r| r.last_seq), Some(1));
}

/// An entry that reaches a device over two sessions before either is acknowledged is taken
/// once and counted once as a duplicate, on the session that brought it second.
#[test]
fn an_entry_received_twice_is_counted_as_a_duplicate() {
    let (_, mut r) = vault(3);
    let (mut a, mut b, mut c) = (r.remove(0), r.remove(0), r.remove(0));
    let (mut sab, mut sba) = pair(&a, &b);
    let (mut scb, mut sbc) = pair(&c, &b);
    run_until_quiet(&mut sab, &mut a, &mut sba, &mut b).unwrap();
    run_until_quiet(&mut scb, &mut c, &mut sbc, &mut b).unwrap();
    a.write(&put(item(1), "x", &[]), 1_000).unwrap();
    common::sync_pair(&mut a, &mut c);
    // a and c both offer the entry to b before b acknowledges either.
    let from_a = sab.poll_transmit(&a).unwrap();
    let from_c = scb.poll_transmit(&c).unwrap();
    sba.handle_message(&from_a, &mut b).unwrap();
    sbc.handle_message(&from_c, &mut b).unwrap();
    assert_eq!((sba.counts().received, sba.counts().dup_received), (1, 0));
    assert_eq!((sbc.counts().received, sbc.counts().dup_received), (0, 1));
    assert_eq!(b.len(), a.len());
}

/// What a relay does in a mesh: entries another peer brought are held back from a session
/// until released, and a `Have` from its peer (it got them directly) makes the forward
/// unnecessary; entries stored before the hold still go at once.
#[test]
fn held_entries_wait_for_release_and_a_have_makes_the_forward_unnecessary() {
    let (_, mut r) = vault(3);
    let (mut a, mut b, mut c) = (r.remove(0), r.remove(0), r.remove(0));
    let (mut sab, mut sba) = pair(&a, &b);
    let (mut sbc, mut scb) = pair(&b, &c);
    run_until_quiet(&mut sab, &mut a, &mut sba, &mut b).unwrap();
    run_until_quiet(&mut sbc, &mut b, &mut scb, &mut c).unwrap();
    b.write(&put(item(1), "own-before", &[]), 1_000).unwrap();
    let end = b.log_end();
    a.write(&put(item(2), "relayed", &[]), 1_001).unwrap();
    // b takes a's entry; its session with c holds entries from `end` on.
    let m = sab.poll_transmit(&a).unwrap();
    sba.handle_message(&m, &mut b).unwrap();
    sbc.hold_from(end + 5);
    sbc.hold_from(end);
    let sent_before = sbc.counts().sent;
    run_until_quiet(&mut sbc, &mut b, &mut scb, &mut c).unwrap();
    assert_eq!(sbc.counts().sent - sent_before, 1, "only the entry stored before the hold went (the lower hold wins)");
    assert_eq!(c.len(), b.len() - 1);
    sbc.release();
    run_until_quiet(&mut sbc, &mut b, &mut scb, &mut c).unwrap();
    assert_eq!(c.len(), b.len(), "released: the relayed entry followed");

    // Now c gets a's next entry directly and says so: b's release then sends nothing.
    let (mut sac, mut sca) = pair(&a, &c);
    run_until_quiet(&mut sac, &mut a, &mut sca, &mut c).unwrap();
    a.write(&put(item(3), "direct", &[]), 1_002).unwrap();
    let end = b.log_end();
    let m = sab.poll_transmit(&a).unwrap();
    sba.handle_message(&m, &mut b).unwrap();
    sbc.hold_from(end);
    sbc.announce(&b);
    let m = sac.poll_transmit(&a).unwrap();
    sca.handle_message(&m, &mut c).unwrap();
    scb.announce(&c);
    scb.announce(&c);
    let sent = (sbc.counts().sent, scb.counts().sent);
    let bytes = scb.counts().bytes_sent;
    run_until_quiet(&mut sbc, &mut b, &mut scb, &mut c).unwrap();
    assert!(scb.counts().bytes_sent > bytes, "c's Have went out");
    sbc.release();
    let stats = run_until_quiet(&mut sbc, &mut b, &mut scb, &mut c).unwrap();
    assert_eq!((sbc.counts().sent, scb.counts().sent), sent, "neither forwarded what the other holds");
    assert_eq!(stats.bytes_a_to_b + stats.bytes_b_to_a, 0, "nothing more to say");
    assert_eq!((scb.counts().dup_received, sbc.counts().dup_received), (0, 0));
    assert_eq!(b.version(), c.version());
}

/// A `Have` names only authors the peer was not told of yet, and only on a live session.
#[test]
fn a_have_names_only_what_the_peer_was_not_told() {
    let (_, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    let (mut sa, mut sb) = pair(&a, &b);
    a.write(&put(item(1), "x", &[]), 1_000).unwrap();
    sa.announce(&a);
    assert_eq!(sa.counts().bytes_sent, 0);
    let first = sa.poll_transmit(&a).unwrap();
    assert!(sa.poll_transmit(&a).is_none(), "not live: the handshake's first message only");
    sb.handle_message(&first, &mut b).unwrap();
    run_until_quiet(&mut sa, &mut a, &mut sb, &mut b).unwrap();
    sa.announce(&a);
    sb.announce(&b);
    assert!(sa.poll_transmit(&a).is_none() && sb.poll_transmit(&b).is_none(), "all told at hello and by acks");
    // An entry b did not get over this session: announced once, with that author only.
    b.write(&put(item(2), "y", &[]), 1_001).unwrap();
    sb.hold_from(0);
    sb.announce(&b);
    let have = sb.poll_transmit(&b).expect("a Have");
    assert!(have.len() < 120, "one author's seq, not the whole vector: {} bytes", have.len());
    sb.announce(&b);
    assert!(sb.poll_transmit(&b).is_none(), "told once");
    sa.handle_message(&have, &mut a).unwrap();
    assert_eq!(sa.pending(&a), 0);
    assert_eq!(sb.pending(&b), 1, "a still lacks b's entry, held back");
}

/// A `Have` that tells of entries the peer was not known to hold is reported once; one that
/// tells nothing new is not.
#[test]
fn a_have_with_news_is_reported_once() {
    let (_, mut r) = vault(3);
    let (mut a, mut b, mut c) = (r.remove(0), r.remove(0), r.remove(0));
    let (mut sab, mut sba) = pair(&a, &b);
    run_until_quiet(&mut sab, &mut a, &mut sba, &mut b).unwrap();
    assert!(!sab.take_heard_have());
    c.write(&put(item(1), "from-c", &[]), 1_000).unwrap();
    common::sync_pair(&mut c, &mut b);
    sba.announce(&b);
    let have = sba.poll_transmit(&b).unwrap();
    sab.handle_message(&have, &mut a).unwrap();
    assert!(sab.take_heard_have(), "b holds entries a did not know it had");
    assert!(!sab.take_heard_have(), "reported once");
    // b's own entry reaches a in a batch; a `Have` naming it afterwards tells a nothing new.
    b.write(&put(item(2), "from-b", &[]), 1_001).unwrap();
    let batch = sba.poll_transmit(&b).unwrap();
    sab.handle_message(&batch, &mut a).unwrap();
    sba.announce(&b);
    let have = sba.poll_transmit(&b).expect("b had not announced its own entry");
    sab.handle_message(&have, &mut a).unwrap();
    assert!(!sab.take_heard_have(), "nothing a did not know b holds");
}

/// A store that no longer holds what its replica holds in memory (damage since the replica
/// opened): no batch can be built from it, so the session ends instead of sending entries
/// it cannot read back, and nothing was taken from the log.
#[test]
fn a_store_that_lost_entries_ends_the_session() {
    use hearth_peer::vault::{LogStore, ReplicaError};
    let (_, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    for i in 0..3 {
        a.write(&put(item(i), &format!("n{i}"), &[]), 1_000 + u64::from(i)).unwrap();
    }
    let me = a.device_id();
    a.store_mut().void(me, 1).unwrap();
    let mut cursor = 0;
    let e = a.batch_for(&Default::default(), &mut cursor, usize::MAX).unwrap_err();
    assert!(matches!(e, ReplicaError::Damaged(d, 2) if d == me), "{e}");
    assert_eq!(cursor, 0, "the cursor stays where it was");
    let (mut sa, mut sb) = pair(&a, &b);
    let _ = run_until_quiet(&mut sa, &mut a, &mut sb, &mut b);
    assert!(!sa.is_live(), "the session ended");
    assert_eq!(b.version().get(me), 0, "nothing reached b");
}
