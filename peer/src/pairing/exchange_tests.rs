use super::*;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;

fn code(s: &str) -> InviteCode {
    InviteCode::parse(s).unwrap()
}

fn grant() -> Grant {
    Grant {
        secret: [7; 32],
        inviter: DeviceId([1; 16]),
        rendezvous: Some("https://rv.example".into()),
        sync_port: Some(7475),
        version: VersionVector::default(),
        entries: 3,
        membership: Vec::new(),
    }
}

fn sends(out: Vec<Output>) -> Vec<Vec<u8>> {
    out.into_iter().filter_map(|o| if let Output::Send(b) = o { Some(b) } else { None }).collect()
}

fn sas(out: &[Output]) -> Option<String> {
    out.iter().find_map(|o| if let Output::Sas(s) = o { Some(s.clone()) } else { None })
}

/// Runs a joiner with `jcode` against an inviter with `icode` up to the inviter's SAS (or
/// the first error), returning both and what the joiner saw.
struct Run {
    joiner: Exchange,
    inviter: Exchange,
    joiner_sas: Option<String>,
    inviter_sas: Result<Option<String>, PairError>,
    joiner_sent: Vec<Vec<u8>>,
}

fn run(jcode: &str, icode: &str, rng: &mut StdRng) -> Run {
    let (mut joiner, mut inviter) = (Exchange::joiner(&code(jcode)), Exchange::inviter(&code(icode)));
    let pake = joiner.start(rng).unwrap();
    let answer = sends(inviter.handle(&pake, rng).unwrap());
    assert_eq!(answer.len(), 2, "Pake and Confirm");
    let mut joiner_sas = None;
    let mut joiner_sent = vec![pake];
    for m in &answer {
        match joiner.handle(m, rng) {
            Ok(out) => {
                joiner_sas = joiner_sas.or(sas(&out));
                joiner_sent.extend(sends(out));
            }
            Err(e) => {
                assert_eq!(e, PairError::WrongCode);
                joiner_sent.push(Exchange::wrong_code_notice());
            }
        }
    }
    let inviter_sas = inviter.handle(joiner_sent.last().unwrap(), rng).map(|o| sas(&o));
    Run { joiner, inviter, joiner_sas, inviter_sas, joiner_sent }
}

#[test]
fn the_same_code_pairs_both_sides_see_one_sas_and_the_grant_arrives_sealed() {
    let mut rng = StdRng::seed_from_u64(1);
    let mut r = run("12-apple-river-stone", "12-apple-river-stone", &mut rng);
    let sas = r.inviter_sas.unwrap().unwrap();
    assert_eq!(r.joiner_sas.as_deref(), Some(sas.as_str()));
    assert_eq!(sas.len(), 7);
    assert!(!r.joiner.is_done() && !r.inviter.is_done(), "not before the grant and the answer");
    let sealed = r.inviter.approve(&grant(), &mut rng).unwrap();
    // The secret never travels in the clear.
    assert!(!sealed.windows(32).any(|w| w == [7; 32]));
    let out = r.joiner.handle(&sealed, &mut rng).unwrap();
    assert_eq!(out, vec![Output::Granted(Box::new(grant()))]);
    let joined = Joined { device: DeviceId([9; 16]), name: Some("phone".into()) };
    let last = r.joiner.enrolled(&joined, &mut rng).unwrap();
    assert!(r.joiner.is_done());
    assert_eq!(r.inviter.handle(&last, &mut rng).unwrap(), vec![Output::Joined(joined)]);
    assert!(r.inviter.is_done());
    // Nothing more is taken once done.
    assert_eq!(r.inviter.handle(&last, &mut rng), Err(PairError::Ended));
}

#[test]
fn a_wrong_code_fails_on_both_sides_and_voids_the_invite() {
    let mut rng = StdRng::seed_from_u64(2);
    let r = run("12-apple-river-stone", "12-apple-river-wolf", &mut rng);
    assert_eq!(r.joiner_sas, None, "no SAS for a wrong code");
    assert_eq!(r.inviter_sas, Err(PairError::WrongCode));
    assert!(r.inviter.guess_spent());
}

#[test]
fn a_guesser_who_sends_a_confirmation_of_its_own_gets_wrong_code() {
    let mut rng = StdRng::seed_from_u64(3);
    let mut inviter = Exchange::inviter(&code("12-apple-river-stone"));
    let mut guesser = Exchange::joiner(&code("12-zoo-zoo-zoo"));
    let pake = guesser.start(&mut rng).unwrap();
    inviter.handle(&pake, &mut rng).unwrap();
    assert!(inviter.guess_spent());
    assert_eq!(inviter.handle(&encode(&Msg::Confirm([0; 32])), &mut rng), Err(PairError::WrongCode));
}

#[test]
fn the_inviter_answers_one_pake_only() {
    let mut rng = StdRng::seed_from_u64(4);
    let mut inviter = Exchange::inviter(&code("12-apple-river-stone"));
    let first = Exchange::joiner(&code("12-zoo-zoo-zoo")).start(&mut rng).unwrap();
    let second = Exchange::joiner(&code("12-apple-river-stone")).start(&mut rng).unwrap();
    inviter.handle(&first, &mut rng).unwrap();
    assert_eq!(inviter.handle(&second, &mut rng), Err(PairError::Protocol));
    // And a failed exchange stays failed.
    assert_eq!(inviter.handle(&second, &mut rng), Err(PairError::Ended));
}

#[test]
fn a_replayed_transcript_fails_against_a_new_inviter_with_the_same_code() {
    let mut rng = StdRng::seed_from_u64(5);
    let r = run("12-apple-river-stone", "12-apple-river-stone", &mut rng);
    assert!(r.inviter_sas.is_ok());
    let mut fresh = Exchange::inviter(&code("12-apple-river-stone"));
    fresh.handle(&r.joiner_sent[0], &mut rng).unwrap();
    assert_eq!(fresh.handle(r.joiner_sent.last().unwrap(), &mut rng), Err(PairError::WrongCode));
}

#[test]
fn the_same_words_under_another_nameplate_do_not_pair() {
    let mut rng = StdRng::seed_from_u64(6);
    let r = run("12-apple-river-stone", "13-apple-river-stone", &mut rng);
    assert_eq!(r.inviter_sas, Err(PairError::WrongCode));
}

#[test]
fn out_of_order_calls_and_messages_are_refused() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut inviter = Exchange::inviter(&code("12-apple-river-stone"));
    assert_eq!(inviter.approve(&grant(), &mut rng), Err(PairError::Ended));
    assert_eq!(inviter.start(&mut rng), Err(PairError::Ended), "only a joiner starts");
    let mut joiner = Exchange::joiner(&code("12-apple-river-stone"));
    joiner.start(&mut rng).unwrap();
    assert_eq!(joiner.start(&mut rng), Err(PairError::Ended));
    assert_eq!(joiner.handle(&encode(&Msg::Confirm([1; 32])), &mut rng), Err(PairError::Protocol));
    let mut joiner = Exchange::joiner(&code("12-apple-river-stone"));
    assert_eq!(joiner.enrolled(&Joined { device: DeviceId([1; 16]), name: None }, &mut rng), Err(PairError::Ended));
    // A joiner answers no one's Pake: it only ever starts.
    let pake = Exchange::joiner(&code("12-apple-river-stone")).start(&mut rng).unwrap();
    let mut idle = Exchange::joiner(&code("12-apple-river-stone"));
    assert_eq!(idle.handle(&pake, &mut rng), Err(PairError::Protocol));
}

/// A grant with `n` membership records (each about 180 bytes sealed).
fn grant_with(n: u16) -> Grant {
    use hearth_proto::membership::{Enrollment, MembershipBody};
    let root = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let membership = (0..n)
        .map(|i| {
            let mut device = [0; 16];
            device[..2].copy_from_slice(&i.to_be_bytes());
            let e = Enrollment {
                vault_id: hearth_proto::ids::VaultId([5; 16]),
                device_id: DeviceId(device),
                sign_pk: [6; 32],
                dh_pk: [7; 32],
                at_ms: u64::MAX,
            };
            MembershipRecord::sign(&root, MembershipBody::Enroll(e))
        })
        .collect();
    let mut g = grant();
    g.membership = membership;
    g
}

#[test]
fn a_grant_up_to_the_message_limit_arrives_and_a_larger_one_is_refused() {
    let mut rng = StdRng::seed_from_u64(11);
    let mut r = run("12-apple-river-stone", "12-apple-river-stone", &mut rng);
    r.inviter_sas.unwrap();
    let big = grant_with(200);
    let sealed = r.inviter.approve(&big, &mut rng).unwrap();
    assert!(sealed.len() > 32 * 1024 && sealed.len() <= MAX_MESSAGE, "{}", sealed.len());
    assert_eq!(r.joiner.handle(&sealed, &mut rng).unwrap(), vec![Output::Granted(Box::new(big))]);

    let mut r = run("12-apple-river-stone", "12-apple-river-stone", &mut rng);
    r.inviter_sas.unwrap();
    let sealed = r.inviter.approve(&grant_with(300), &mut rng).unwrap();
    assert!(sealed.len() > MAX_MESSAGE);
    assert_eq!(r.joiner.handle(&sealed, &mut rng), Err(PairError::Protocol));
}

#[test]
fn the_sas_is_six_digits_from_the_key_and_debug_output_holds_no_secret() {
    // HKDF-SHA256(salt "hearth/v1/pair", K = 32 × 0x07, info "sas")[..4] as u32 mod 10^6,
    // cross-checked with Python's hmac.
    assert_eq!(Keys::derive(&[7; 32]).sas(), "530 125");
    let g = format!("{:?}", grant());
    assert!(g.starts_with("Grant") && g.contains("entries: 3") && !g.contains("7, 7"), "{g}");
    let e = format!("{:?}", Exchange::inviter(&code("12-apple-river-stone")));
    assert!(e.contains("Inviter") && !e.contains("apple"), "{e}");
}

#[test]
fn a_tampered_grant_is_refused() {
    let mut rng = StdRng::seed_from_u64(8);
    let mut r = run("12-apple-river-stone", "12-apple-river-stone", &mut rng);
    r.inviter_sas.unwrap();
    let mut sealed = r.inviter.approve(&grant(), &mut rng).unwrap();
    let n = sealed.len();
    sealed[n - 1] ^= 1;
    assert_eq!(r.joiner.handle(&sealed, &mut rng), Err(PairError::Protocol));
}

#[test]
fn a_declined_sas_reaches_the_joiner() {
    let mut rng = StdRng::seed_from_u64(9);
    let mut r = run("12-apple-river-stone", "12-apple-river-stone", &mut rng);
    r.inviter_sas.unwrap();
    let no = r.inviter.decline();
    assert_eq!(r.joiner.handle(&no, &mut rng), Err(PairError::Declined));
    assert_eq!(r.inviter.approve(&grant(), &mut rng), Err(PairError::Ended));
}

#[test]
fn oversized_and_unknown_formats_are_refused() {
    let mut rng = StdRng::seed_from_u64(10);
    let mut inviter = Exchange::inviter(&code("12-apple-river-stone"));
    let mut big = vec![FORMAT];
    big.resize(MAX_MESSAGE + 1, 0);
    assert_eq!(inviter.handle(&big, &mut rng), Err(PairError::Protocol));
    let mut inviter = Exchange::inviter(&code("12-apple-river-stone"));
    let mut pake = Exchange::joiner(&code("12-apple-river-stone")).start(&mut rng).unwrap();
    pake[0] = 2;
    assert_eq!(inviter.handle(&pake, &mut rng), Err(PairError::Protocol));
    assert!(!inviter.guess_spent(), "an undecodable message spends no guess");
}

proptest! {
    #[test]
    fn garbage_never_panics_either_side(bytes in proptest::collection::vec(any::<u8>(), 0..200), seed: u64) {
        let mut rng = StdRng::seed_from_u64(seed);
        let _ = Exchange::inviter(&code("1-zoo-zoo-zoo")).handle(&bytes, &mut rng);
        let mut j = Exchange::joiner(&code("1-zoo-zoo-zoo"));
        j.start(&mut rng).unwrap();
        let _ = j.handle(&bytes, &mut rng);
    }
}
