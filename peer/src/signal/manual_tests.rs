//! Manual offers and answers as a person carries them, and what a damaged, foreign, stale,
//! replayed or revoked text gets.

use super::*;
use crate::identity::{DeviceKeys, MembershipBody, MembershipRecord, Revocation};
use crate::signal::tests::{device, enrolment, id, vault, vault_of, NOW};
use crate::signal::Body;
use crate::signal::{Incoming, SignalError};

#[test]
fn an_offer_carried_by_hand_is_answered_and_accepted_once() {
    // Device 3 is not in device 1's membership: the texts carry each side's enrolment.
    let v = vault(3);
    let small = vault(2).m;
    let (mut a, mut c) = (device(&v, 1), device(&v, 3));
    let (s, offer) = a.manual_offer(&small, "offer-sdp", NOW).unwrap();
    assert!(offer.starts_with(OFFER_PREFIX) && !offer.contains("offer-sdp"), "sealed: {offer}");
    // A terminal wraps long lines; spaces and line breaks do not matter.
    let wrapped: String =
        offer.chars().collect::<Vec<_>>().chunks(60).map(|c| c.iter().collect::<String>() + "\n").collect();
    let got = c.manual_receive(&v.m, &wrapped, false, NOW + 60_000).unwrap();
    assert_eq!(got, Incoming { from: id(1), session: s, body: Body::Offer("offer-sdp".into()) });
    assert_eq!(c.manual_receive(&v.m, &offer, false, NOW), Err(SignalError::Unexpected), "an offer is answered once");
    let answer = c.manual_answer(&v.m, s, "answer-sdp", NOW + 60_000).unwrap();
    assert!(answer.starts_with(ANSWER_PREFIX));
    let got = a.manual_receive(&small, &answer, true, NOW + 120_000).unwrap();
    assert_eq!(got, Incoming { from: id(3), session: s, body: Body::Answer("answer-sdp".into()) });
    assert!(a.knows(&small, id(3)), "the answer introduced its sender");
    assert_eq!(a.manual_receive(&small, &answer, true, NOW), Err(SignalError::Unexpected), "accepted once");
}

#[test]
fn bad_text_gets_a_clear_error() {
    let v = vault(2);
    let (mut a, mut b) = (device(&v, 1), device(&v, 2));
    let (_, offer) = a.manual_offer(&v.m, "sdp", NOW).unwrap();
    let manual = |r: Result<Incoming, SignalError>| match r {
        Err(SignalError::Manual(e)) => e,
        other => panic!("expected a manual-text error, got {other:?}"),
    };
    assert!(matches!(manual(b.manual_receive(&v.m, "hello", false, NOW)), ManualError::NotText(..)));
    assert!(matches!(manual(b.manual_receive(&v.m, &offer, true, NOW)), ManualError::WrongKind { .. }));
    // Cut short anywhere, or one character changed: refused, never a panic.
    assert!(is_complete(&offer));
    for cut in [OFFER_PREFIX.len(), OFFER_PREFIX.len() + 10, offer.len() / 2, offer.len() - 1] {
        assert_eq!(manual(b.manual_receive(&v.m, &offer[..cut], false, NOW)), ManualError::Damaged, "{cut}");
        assert!(!is_complete(&offer[..cut]));
    }
    for i in (OFFER_PREFIX.len()..offer.len()).step_by(7) {
        let mut t = offer.clone().into_bytes();
        t[i] = if t[i] == b'A' { b'B' } else { b'A' };
        let t = String::from_utf8(t).unwrap();
        assert_eq!(manual(b.manual_receive(&v.m, &t, false, NOW)), ManualError::Damaged, "mistyped at {i}");
    }
    // Another vault's offer does not open here.
    let other = vault_of([0x43; 32], 2);
    let mut x = device(&other, 1);
    let (_, foreign) = x.manual_offer(&other.m, "sdp", NOW).unwrap();
    assert_eq!(manual(b.manual_receive(&v.m, &foreign, false, NOW)), ManualError::Foreign);
    // Stale, either way.
    assert!(matches!(
        manual(b.manual_receive(&v.m, &offer, false, NOW + MAX_AGE_MS + 60_000)),
        ManualError::Expired(11)
    ));
    assert!(matches!(manual(b.manual_receive(&v.m, &offer, false, NOW - MAX_AGE_MS - 1)), ManualError::Expired(_)));
    // Its own offer pasted back: not acted on.
    assert_eq!(a.manual_receive(&v.m, &offer, false, NOW), Err(SignalError::Unexpected));
    // An answer to an offer this device never made.
    let answer = b.manual_answer(&v.m, [7; 16], "sdp", NOW).unwrap();
    assert_eq!(a.manual_receive(&v.m, &answer, true, NOW), Err(SignalError::Unexpected));
}

#[test]
fn a_revoked_device_s_text_is_refused() {
    let v = vault(2);
    let (mut a, mut b) = (device(&v, 1), device(&v, 2));
    let (_, offer) = a.manual_offer(&v.m, "sdp", NOW).unwrap();
    let mut revoked = v.m.clone();
    let rev = Revocation { vault_id: v.keys.vault_id, device_id: id(1), last_seq: 0, last_hash: [0; 32], at_ms: 1 };
    revoked.insert(MembershipRecord::sign(&v.keys.root, MembershipBody::Revoke(rev))).unwrap();
    assert_eq!(b.manual_receive(&revoked, &offer, false, NOW), Err(SignalError::UnknownPeer(id(1))));
}

#[test]
fn a_signature_made_by_another_device_does_not_verify() {
    // Device 2 seals a text naming device 1's enrolment: the signature is 2's, the key 1's.
    let v = vault(2);
    let d2 = DeviceKeys::derive(&v.secret, id(2));
    let record1 = enrolment(&v.keys, &v.secret, id(1));
    let key = key(v.keys.signal.as_bytes());
    let mut rng = rand::thread_rng();
    let draft = Draft { session: [5; 16], answer: false, sdp: "sdp", at_ms: NOW };
    let forged = seal(&key, v.keys.vault_id, &record1, &d2.sign, &draft, &mut rng);
    let mut c = device(&v, 2);
    assert!(matches!(c.manual_receive(&v.m, &forged, false, NOW), Err(SignalError::Manual(ManualError::Forged(_)))));
}

#[test]
fn the_manual_key_is_pinned() {
    // PROTOCOL §1's vector (secret 0x42 × 32), cross-checked with Python's hmac.
    let v = vault(1);
    assert_eq!(
        hex::encode(*key(v.keys.signal.as_bytes())),
        "c6d3d4390f6b6d4fc5a6e797c26e3052fe46257d287259ac496550d1b658b59c"
    );
}
