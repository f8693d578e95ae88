//! Trickled candidates: accepted only in a session under way with their sender, each batch
//! once and in order, within the size limits.

use super::tests::{device, id, vault, NOW};
use super::*;

fn batch(lines: &[&str]) -> Body {
    Body::Candidates(lines.iter().map(|l| (*l).to_owned()).collect())
}

const SRFLX: &str = "candidate:2 1 udp 1694498815 203.0.113.7 6000 typ srflx raddr 10.0.0.2 rport 5000";

#[test]
fn both_sides_trickle_once_the_session_is_under_way() {
    let v = vault(2);
    let (mut a, mut b) = (device(&v, 1), device(&v, 2));
    let (s, offer) = a.offer(&v.m, id(2), "o".into(), NOW).unwrap();
    // a's candidates follow its offer; b reads them once it has the offer.
    let from_a = a.reply(&v.m, id(2), s, &batch(&[SRFLX]), NOW).unwrap();
    assert_eq!(b.receive(&v.m, id(1), &from_a, NOW), Err(SignalError::Unexpected), "no offer seen yet");
    b.receive(&v.m, id(1), &offer, NOW).unwrap();
    assert_eq!(b.receive(&v.m, id(1), &from_a, NOW).map(|i| (i.session, i.body)), Ok((s, batch(&[SRFLX]))));
    assert!(matches!(b.receive(&v.m, id(1), &from_a, NOW), Err(SignalError::Stale(_))), "a batch counts once");
    // b answers, then trickles: a reads them after the answer, not before.
    let answer = b.reply(&v.m, id(1), s, &Body::Answer("a".into()), NOW).unwrap();
    let from_b = b.reply(&v.m, id(1), s, &batch(&[SRFLX, SRFLX]), NOW).unwrap();
    assert_eq!(a.receive(&v.m, id(2), &from_b, NOW), Err(SignalError::Unexpected), "before the answer");
    a.receive(&v.m, id(2), &answer, NOW).expect("the answer's counter was not used up");
    assert_eq!(a.receive(&v.m, id(2), &from_b, NOW).map(|i| i.body), Ok(batch(&[SRFLX, SRFLX])));
    // A later batch of a's is still read by b; once a gives up, b's are refused.
    let more = a.reply(&v.m, id(2), s, &batch(&[SRFLX]), NOW).unwrap();
    assert!(b.receive(&v.m, id(1), &more, NOW).is_ok());
    a.forget(s);
    let late = b.reply(&v.m, id(1), s, &batch(&[SRFLX]), NOW).unwrap();
    assert_eq!(a.receive(&v.m, id(2), &late, NOW), Err(SignalError::Unexpected));
}

#[test]
fn candidates_from_another_device_or_session_or_after_a_bye_are_refused() {
    let v = vault(3);
    let (mut a, mut b, mut c) = (device(&v, 1), device(&v, 2), device(&v, 3));
    let (s, offer) = a.offer(&v.m, id(2), "o".into(), NOW).unwrap();
    b.receive(&v.m, id(1), &offer, NOW).unwrap();
    let answer = b.reply(&v.m, id(1), s, &Body::Answer("a".into()), NOW).unwrap();
    a.receive(&v.m, id(2), &answer, NOW).unwrap();
    // c learnt the session id: its candidates in it are not b's.
    let env = c.reply(&v.m, id(1), s, &batch(&[SRFLX]), NOW).unwrap();
    assert_eq!(a.receive(&v.m, id(3), &env, NOW), Err(SignalError::Unexpected));
    // b's candidates in a session a never had.
    let env = b.reply(&v.m, id(1), [7; 16], &batch(&[SRFLX]), NOW).unwrap();
    assert_eq!(a.receive(&v.m, id(2), &env, NOW), Err(SignalError::Unexpected));
    // An offer reusing the answered session (a reflection of a's own) is refused too.
    let env = b.reply(&v.m, id(1), s, &Body::Offer("x".into()), NOW).unwrap();
    assert_eq!(a.receive(&v.m, id(2), &env, NOW), Err(SignalError::Unexpected));
    // After b's bye the session is over.
    let bye = b.reply(&v.m, id(1), s, &Body::Bye, NOW).unwrap();
    assert_eq!(a.receive(&v.m, id(2), &bye, NOW).map(|i| i.body), Ok(Body::Bye));
    let env = b.reply(&v.m, id(1), s, &batch(&[SRFLX]), NOW).unwrap();
    assert_eq!(a.receive(&v.m, id(2), &env, NOW), Err(SignalError::Unexpected));
}

#[test]
fn empty_long_or_oversized_batches_are_refused() {
    let v = vault(2);
    let (mut a, mut b) = (device(&v, 1), device(&v, 2));
    let (s, offer) = a.offer(&v.m, id(2), "o".into(), NOW).unwrap();
    b.receive(&v.m, id(1), &offer, NOW).unwrap();
    let long = "x".repeat(MAX_CANDIDATE + 1);
    let fits = "x".repeat(MAX_CANDIDATE);
    let full = vec![SRFLX; MAX_BATCH];
    let over = vec![SRFLX; MAX_BATCH + 1];
    for (body, ok) in [
        (batch(&[]), false),
        (batch(&[&long]), false),
        (batch(&over), false),
        (batch(&[&fits]), true),
        (batch(&full), true),
    ] {
        let env = a.reply(&v.m, id(2), s, &body, NOW).unwrap();
        let n = match &body {
            Body::Candidates(c) => c.len(),
            _ => 0,
        };
        assert_eq!(b.receive(&v.m, id(1), &env, NOW).is_ok(), ok, "a batch of {n}");
    }
}

#[test]
fn sessions_under_way_are_kept_up_to_a_cap() {
    let v = vault(2);
    let (mut a, mut b) = (device(&v, 1), device(&v, 2));
    // Each batch sealed with its offer (a forgets its own oldest offers past its cap).
    let mut batches = Vec::new();
    for _ in 0..MAX_LIVE + 1 {
        let (s, offer) = a.offer(&v.m, id(2), "o".into(), NOW).unwrap();
        batches.push(a.reply(&v.m, id(2), s, &batch(&[SRFLX]), NOW).unwrap());
        b.receive(&v.m, id(1), &offer, NOW).unwrap();
    }
    assert_eq!(b.receive(&v.m, id(1), &batches[0], NOW), Err(SignalError::Unexpected), "forgotten past the cap");
    assert!(b.receive(&v.m, id(1), &batches[1], NOW).is_ok());
}

#[test]
fn a_build_without_trickle_refuses_the_batch_as_malformed() {
    /// The signal bodies as builds before trickle ICE knew them.
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    enum OldBody {
        Offer(String),
        Answer(String),
        Bye,
        Intro,
    }
    let bytes = postcard::to_allocvec(&batch(&[SRFLX])).unwrap();
    assert!(postcard::from_bytes::<OldBody>(&bytes).is_err());
    let bytes = postcard::to_allocvec(&Body::Answer("a".into())).unwrap();
    assert!(postcard::from_bytes::<OldBody>(&bytes).is_ok(), "older bodies still read");
}
