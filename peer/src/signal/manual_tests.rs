//! Manual offers and answers as a person carries them, and what a damaged, foreign, stale,
//! replayed or revoked text gets.

use super::*;
use crate::identity::{DeviceKeys, MembershipBody, MembershipRecord, Revocation};
use crate::signal::tests::{device, enrolment, id, vault, vault_of, NOW};
use crate::signal::Body;
use crate::signal::{Incoming, SignalError};
use base64::Engine;

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

/// A text of `w` as device 1 would seal it (its signature as given).
fn reseal(v: &crate::signal::tests::Vault, w: &Wire) -> String {
    let bytes = postcard::to_allocvec(w).unwrap();
    let mut sealed =
        envelope::seal_to_vault(envelope::MANUAL, &bytes, &key(v.keys.signal.as_bytes()), &mut rand::thread_rng());
    let check = checksum(&sealed);
    sealed.extend_from_slice(&check);
    let prefix = if w.answer { ANSWER_PREFIX } else { OFFER_PREFIX };
    format!("{prefix}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed))
}

#[test]
fn the_signature_covers_every_field() {
    let v = vault(2);
    let d1 = DeviceKeys::derive(&v.secret, id(1));
    let record = enrolment(&v.keys, &v.secret, id(1));
    let mut w = Wire { record, session: [1; 16], at_ms: NOW, answer: false, sdp: "sdp".into(), sig: Vec::new() };
    w.sig = d1.sign.sign(&signed(v.keys.vault_id, &w)).to_bytes().to_vec();
    let mut b = device(&v, 2);
    assert!(b.manual_receive(&v.m, &reseal(&v, &w), false, NOW).is_ok(), "the honest text");
    // Each field changed under the same signature (by someone holding the vault key).
    let changes: [fn(&mut Wire); 4] =
        [|w| w.session = [2; 16], |w| w.at_ms += 1, |w| w.sdp.push('x'), |w| w.answer = true];
    for (i, change) in changes.iter().enumerate() {
        let mut x = w.clone();
        change(&mut x);
        let mut b = device(&v, 2);
        let r = b.manual_receive(&v.m, &reseal(&v, &x), x.answer, NOW);
        assert!(
            matches!(r, Err(SignalError::Manual(ManualError::Forged(_))) | Err(SignalError::Unexpected)),
            "{i}: {r:?}"
        );
    }
}

#[test]
fn the_age_and_size_bounds_are_exact() {
    let v = vault(2);
    let (mut a, mut b) = (device(&v, 1), device(&v, 2));
    let (_, offer) = a.manual_offer(&v.m, "sdp", NOW).unwrap();
    assert!(b.manual_receive(&v.m, &offer, false, NOW + MAX_AGE_MS).is_ok(), "exactly ten minutes old");
    let (_, big) = a.manual_offer(&v.m, &"x".repeat(crate::signal::MAX_SDP), NOW).unwrap();
    assert!(b.manual_receive(&v.m, &big, false, NOW).is_ok(), "the largest SDP");
    let (_, over) = a.manual_offer(&v.m, &"x".repeat(crate::signal::MAX_SDP + 1), NOW).unwrap();
    assert!(matches!(b.manual_receive(&v.m, &over, false, NOW), Err(SignalError::Manual(ManualError::Damaged))));
}

#[test]
fn several_offers_wait_at_once_and_each_is_answered_once() {
    let v = vault(2);
    let (mut a, mut b) = (device(&v, 1), device(&v, 2));
    let (s1, o1) = a.manual_offer(&v.m, "one", NOW).unwrap();
    let (s2, o2) = a.manual_offer(&v.m, "two", NOW).unwrap();
    b.manual_receive(&v.m, &o1, false, NOW).unwrap();
    b.manual_receive(&v.m, &o2, false, NOW).unwrap();
    assert_eq!(b.manual_receive(&v.m, &o1, false, NOW), Err(SignalError::Unexpected), "o1 replayed after o2");
    let r2 = b.manual_answer(&v.m, s2, "a2", NOW).unwrap();
    let r1 = b.manual_answer(&v.m, s1, "a1", NOW).unwrap();
    assert_eq!(a.manual_receive(&v.m, &r2, true, NOW).unwrap().body, Body::Answer("a2".into()));
    assert_eq!(a.manual_receive(&v.m, &r1, true, NOW).unwrap().body, Body::Answer("a1".into()));
    // Past the cap the oldest offer stops waiting.
    let first = a.manual_offer(&v.m, "0", NOW).unwrap().0;
    let second = a.manual_offer(&v.m, "1", NOW).unwrap().0;
    for i in 2..=crate::signal::MAX_PENDING {
        a.manual_offer(&v.m, &i.to_string(), NOW).unwrap();
    }
    let late = b.manual_answer(&v.m, first, "late", NOW).unwrap();
    assert_eq!(a.manual_receive(&v.m, &late, true, NOW), Err(SignalError::Unexpected));
    let kept = b.manual_answer(&v.m, second, "kept", NOW).unwrap();
    assert!(a.manual_receive(&v.m, &kept, true, NOW).is_ok());
}
