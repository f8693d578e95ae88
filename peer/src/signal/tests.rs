//! Signaling between devices of one vault, and what a hostile relay can do to it.

use super::*;
use crate::identity::{DeviceKeys, MembershipBody, MembershipRecord, Revocation, VaultKeys, VaultSecret};

pub(super) const NOW: u64 = 1_800_000_000_000;

pub(super) struct Vault {
    pub(super) keys: VaultKeys,
    pub(super) secret: VaultSecret,
    pub(super) m: Membership,
}

/// The root-signed enrolment of device `id`.
pub(super) fn enrolment(keys: &VaultKeys, secret: &VaultSecret, id: DeviceId) -> MembershipRecord {
    let d = DeviceKeys::derive(secret, id);
    let e =
        Enrollment { vault_id: keys.vault_id, device_id: id, sign_pk: d.sign_public(), dh_pk: d.dh_public(), at_ms: 0 };
    MembershipRecord::sign(&keys.root, MembershipBody::Enroll(e))
}

pub(super) fn vault(n: u8) -> Vault {
    vault_of([0x42; 32], n)
}

/// The vault of `secret` with devices 1..=n enrolled.
pub(super) fn vault_of(secret: [u8; 32], n: u8) -> Vault {
    let secret = VaultSecret::from_bytes(secret);
    let keys = VaultKeys::derive(&secret);
    let mut m = Membership::new(keys.root_public());
    for i in 1..=n {
        m.insert(enrolment(&keys, &secret, DeviceId([i; 16]))).unwrap();
    }
    Vault { keys, secret, m }
}

pub(super) fn device(v: &Vault, i: u8) -> Signaling {
    let d = DeviceKeys::derive(&v.secret, DeviceId([i; 16]));
    Signaling::new(&v.keys, d.device_id, d.sign, d.dh)
}

pub(super) fn id(i: u8) -> DeviceId {
    DeviceId([i; 16])
}

#[test]
fn an_offer_and_its_answer_go_through_once() {
    let v = vault(2);
    let (mut a, mut b) = (device(&v, 1), device(&v, 2));
    let (s, offer) = a.offer(&v.m, id(2), "offer-sdp".into(), NOW).unwrap();
    let got = b.receive(&v.m, id(1), &offer, NOW).unwrap();
    assert_eq!(got, Incoming { from: id(1), session: s, body: Body::Offer("offer-sdp".into()) });
    // A replayed offer: its session is under way already (and its counter was seen).
    assert_eq!(b.receive(&v.m, id(1), &offer, NOW), Err(SignalError::Unexpected), "a replayed offer");
    let answer = b.reply(&v.m, id(1), s, &Body::Answer("answer-sdp".into()), NOW).unwrap();
    let got = a.receive(&v.m, id(2), &answer, NOW).unwrap();
    assert_eq!(got.body, Body::Answer("answer-sdp".into()));
    assert_eq!(a.receive(&v.m, id(2), &answer, NOW), Err(SignalError::Unexpected), "answered already");
}

#[test]
fn answers_nobody_asked_for_are_refused() {
    let v = vault(3);
    let (mut a, mut b, mut c) = (device(&v, 1), device(&v, 2), device(&v, 3));
    let (s, _) = a.offer(&v.m, id(2), "o".into(), NOW).unwrap();
    // c answers a's offer to b (it learnt the session id somehow): not the device asked.
    let env = c.reply(&v.m, id(1), s, &Body::Answer("x".into()), NOW).unwrap();
    assert_eq!(a.receive(&v.m, id(3), &env, NOW), Err(SignalError::Unexpected));
    let env = c.reply(&v.m, id(1), s, &Body::Bye, NOW).unwrap();
    assert_eq!(a.receive(&v.m, id(3), &env, NOW), Err(SignalError::Unexpected), "nor may it cancel it");
    // An answer in a session a never offered.
    let env = b.reply(&v.m, id(1), [9; 16], &Body::Answer("x".into()), NOW).unwrap();
    assert_eq!(a.receive(&v.m, id(2), &env, NOW), Err(SignalError::Unexpected));
    // An offer reusing a's own pending session id (a reflection).
    let env = b.reply(&v.m, id(1), s, &Body::Offer("x".into()), NOW).unwrap();
    assert_eq!(a.receive(&v.m, id(2), &env, NOW), Err(SignalError::Unexpected));
    // After a gives up, b's late answer is refused too.
    a.forget(s);
    let env = b.reply(&v.m, id(1), s, &Body::Answer("x".into()), NOW).unwrap();
    assert_eq!(a.receive(&v.m, id(2), &env, NOW), Err(SignalError::Unexpected));
}

#[test]
fn a_refused_signal_does_not_use_up_its_counter() {
    let v = vault(2);
    let (mut a, mut b) = (device(&v, 1), device(&v, 2));
    let (s, _) = a.offer(&v.m, id(2), "o".into(), NOW).unwrap();
    let answer = b.reply(&v.m, id(1), s, &Body::Answer("x".into()), NOW).unwrap();
    // Relayed under the wrong sender first (a server swapping senders): refused...
    assert_eq!(a.receive(&v.m, id(3), &answer, NOW), Err(SignalError::Spoofed { relayed: id(3), signed: id(2) }));
    // ...and the honest delivery still works.
    assert!(a.receive(&v.m, id(2), &answer, NOW).is_ok());
}

#[test]
fn signals_swapped_between_sessions_or_reordered_are_refused() {
    let v = vault(2);
    let (mut a, mut b) = (device(&v, 1), device(&v, 2));
    let (s1, o1) = a.offer(&v.m, id(2), "one".into(), NOW).unwrap();
    let (s2, o2) = a.offer(&v.m, id(2), "two".into(), NOW).unwrap();
    assert_ne!(s1, s2);
    assert!(b.receive(&v.m, id(1), &o2, NOW).is_ok());
    assert!(b.receive(&v.m, id(1), &o1, NOW).is_ok(), "sessions are independent");
    let ans1 = b.reply(&v.m, id(1), s1, &Body::Answer("a1".into()), NOW).unwrap();
    let bye1 = b.reply(&v.m, id(1), s1, &Body::Bye, NOW).unwrap();
    // The server delivers the later bye first, then the answer: the answer is stale.
    assert_eq!(a.receive(&v.m, id(2), &bye1, NOW).map(|i| i.body), Ok(Body::Bye));
    assert!(a.receive(&v.m, id(2), &ans1, NOW).is_err());
}

#[test]
fn revoked_devices_and_strangers_can_neither_send_nor_receive() {
    let mut v = vault(3);
    let (mut a, mut c) = (device(&v, 1), device(&v, 3));
    let (_, offer) = c.offer(&v.m, id(1), "o".into(), NOW).unwrap();
    let rev = Revocation { vault_id: v.keys.vault_id, device_id: id(3), last_seq: 0, last_hash: [0; 32], at_ms: 1 };
    v.m.insert(MembershipRecord::sign(&v.keys.root, MembershipBody::Revoke(rev))).unwrap();
    assert!(matches!(
        a.receive(&v.m, id(3), &offer, NOW),
        Err(SignalError::Envelope(EnvelopeError::UnknownSender(d))) if d == id(3)
    ));
    assert_eq!(a.offer(&v.m, id(3), "o".into(), NOW).err(), Some(SignalError::UnknownPeer(id(3))));
    assert_eq!(a.offer(&v.m, id(7), "o".into(), NOW).err(), Some(SignalError::UnknownPeer(id(7))));
}

#[test]
fn old_signals_are_refused() {
    let v = vault(2);
    let (mut a, mut b) = (device(&v, 1), device(&v, 2));
    let (_, offer) = a.offer(&v.m, id(2), "o".into(), NOW).unwrap();
    assert!(matches!(b.receive(&v.m, id(1), &offer, NOW + replay::MAX_AGE_MS + 1), Err(SignalError::Stale(_))));
}

#[test]
fn an_oversized_sdp_is_refused() {
    let v = vault(2);
    let (mut a, mut b) = (device(&v, 1), device(&v, 2));
    let (_, offer) = a.offer(&v.m, id(2), "x".repeat(MAX_SDP + 1), NOW).unwrap();
    assert_eq!(b.receive(&v.m, id(1), &offer, NOW), Err(SignalError::Body));
    let (_, offer) = a.offer(&v.m, id(2), "x".repeat(MAX_SDP), NOW).unwrap();
    assert!(b.receive(&v.m, id(1), &offer, NOW).is_ok());
}

#[test]
fn devices_that_never_synced_introduce_themselves_then_signal() {
    // a and b each enrolled alone (each membership holds only its own enrolment).
    let full = vault(2);
    let only = |i: u8| {
        let mut m = Membership::new(full.keys.root_public());
        let r = full.m.records().iter().find(|r| matches!(&r.body, MembershipBody::Enroll(e) if e.device_id == id(i)));
        m.insert(r.unwrap().clone()).unwrap();
        m
    };
    let (ma, mb) = (only(1), only(2));
    let (mut a, mut b) = (device(&full, 1), device(&full, 2));
    assert_eq!(a.offer(&ma, id(2), "o".into(), NOW).err(), Some(SignalError::UnknownPeer(id(2))));
    let intro_b = b.intro(&mb).unwrap();
    assert!(!a.knows(&ma, id(2)));
    assert_eq!(a.receive(&ma, id(3), &intro_b, NOW), Err(SignalError::Spoofed { relayed: id(3), signed: id(2) }));
    assert_eq!(a.receive(&ma, id(2), &intro_b, NOW).map(|i| i.body), Ok(Body::Intro));
    assert!(a.knows(&ma, id(2)));
    let intro_a = a.intro(&ma).unwrap();
    b.receive(&mb, id(1), &intro_a, NOW).unwrap();
    let (s, offer) = a.offer(&ma, id(2), "o".into(), NOW).unwrap();
    assert_eq!(b.receive(&mb, id(1), &offer, NOW).map(|i| i.session), Ok(s));
    // An introduction from another vault (other phrase) does not open.
    let other = VaultKeys::derive(&VaultSecret::from_bytes([7; 32]));
    let forged = envelope::seal_intro(b"junk", other.signal.as_bytes(), &mut StdRng::seed_from_u64(1));
    assert!(matches!(a.receive(&ma, id(9), &forged, NOW), Err(SignalError::Envelope(EnvelopeError::Open))));
    // A revoked device's introduction is refused.
    let mut m = ma.clone();
    let rev = Revocation { vault_id: full.keys.vault_id, device_id: id(2), last_seq: 0, last_hash: [0; 32], at_ms: 1 };
    m.insert(MembershipRecord::sign(&full.keys.root, MembershipBody::Revoke(rev))).unwrap();
    let mut a2 = device(&full, 1);
    assert_eq!(a2.receive(&m, id(2), &intro_b, NOW), Err(SignalError::UnknownPeer(id(2))));
    assert!(!a.knows(&m, id(2)), "an introduced device that is revoked later is forgotten");
}

#[test]
fn a_real_offer_with_many_candidates_fits() {
    // An offer from a host with a dozen addresses is a few KiB of SDP.
    let v = vault(2);
    let (mut a, mut b) = (device(&v, 1), device(&v, 2));
    let sdp = "a=candidate:1 1 udp 2130706431 192.168.100.200 54321 typ host\r\n".repeat(100);
    assert!(sdp.len() > 6 * 1024);
    let (_, offer) = a.offer(&v.m, id(2), sdp.clone(), NOW).unwrap();
    assert_eq!(b.receive(&v.m, id(1), &offer, NOW).map(|i| i.body), Ok(Body::Offer(sdp)));
}

#[test]
fn debug_output_names_the_device_and_shows_no_key() {
    let v = vault(1);
    let s = device(&v, 1);
    let text = format!("{s:?}");
    assert!(text.starts_with("Signaling") && text.contains("pending"), "{text}");
    let keys = DeviceKeys::derive(&v.secret, id(1));
    assert!(!text.contains(&format!("{:?}", keys.sign.to_bytes())), "{text}");
}

#[test]
fn offers_in_flight_each_get_their_answer_and_the_oldest_goes_past_the_cap() {
    let v = vault(2);
    let (mut a, mut b) = (device(&v, 1), device(&v, 2));
    let (s1, _) = a.offer(&v.m, id(2), "one".into(), NOW).unwrap();
    let (s2, _) = a.offer(&v.m, id(2), "two".into(), NOW).unwrap();
    for s in [s2, s1] {
        let answer = b.reply(&v.m, id(1), s, &Body::Answer("x".into()), NOW).unwrap();
        assert!(a.receive(&v.m, id(2), &answer, NOW).is_ok(), "both offers are waited on");
    }
    let mut sessions = Vec::new();
    for _ in 0..MAX_PENDING + 1 {
        sessions.push(a.offer(&v.m, id(2), "o".into(), NOW).unwrap().0);
    }
    let oldest = sessions[0];
    let answer = b.reply(&v.m, id(1), oldest, &Body::Answer("x".into()), NOW).unwrap();
    assert_eq!(a.receive(&v.m, id(2), &answer, NOW), Err(SignalError::Unexpected), "forgotten past the cap");
    let kept = sessions[1];
    let answer = b.reply(&v.m, id(1), kept, &Body::Answer("x".into()), NOW).unwrap();
    assert!(a.receive(&v.m, id(2), &answer, NOW).is_ok());
}

#[test]
fn introductions_are_kept_up_to_a_cap_and_members_need_none() {
    let n = MAX_INTRODUCED as u16 + 2;
    let full = {
        let secret = VaultSecret::from_bytes([0x42; 32]);
        let keys = VaultKeys::derive(&secret);
        let mut m = Membership::new(keys.root_public());
        let mut records = Vec::new();
        for i in 0..n {
            let mut raw = [0u8; 16];
            raw[..2].copy_from_slice(&(i + 1).to_be_bytes());
            let r = enrolment(&keys, &secret, DeviceId(raw));
            m.insert(r.clone()).unwrap();
            records.push((DeviceId(raw), r));
        }
        (Vault { keys, secret, m }, records)
    };
    let (v, records) = full;
    // The receiver knows only itself (the first record); everyone else introduces itself.
    let me = records[0].0;
    let mut mine = Membership::new(v.keys.root_public());
    mine.insert(records[0].1.clone()).unwrap();
    let k = DeviceKeys::derive(&v.secret, me);
    let mut s = Signaling::new(&v.keys, me, k.sign, k.dh);
    let intro_of = |i: usize| {
        let kd = DeviceKeys::derive(&v.secret, records[i].0);
        let mut other = Signaling::new(&v.keys, records[i].0, kd.sign, kd.dh);
        other.intro(&v.m).unwrap()
    };
    // A member's own introduction adds nothing (it is known from the membership).
    s.receive(&mine, me, &intro_of(0), NOW).unwrap();
    for (i, (device, _)) in records.iter().enumerate().take(MAX_INTRODUCED + 1).skip(1) {
        s.receive(&mine, *device, &intro_of(i), NOW).unwrap();
        assert!(s.knows(&mine, *device), "introduction {i} kept");
    }
    let last = MAX_INTRODUCED + 1;
    assert!(s.receive(&mine, records[last].0, &intro_of(last), NOW).is_ok());
    assert!(!s.knows(&mine, records[last].0), "past the cap an introduction is not kept");
}
