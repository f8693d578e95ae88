//! Property tests: the decoder and handler never panic and never misjudge valid messages.

use std::net::{IpAddr, SocketAddr};

use hearth_stun::binding::{BindingConfig, BindingHandler, Outcome};
use hearth_stun::client::{binding_request, parse_response};
use hearth_stun::message::{Message, MessageType, TransactionId, HEADER_LEN};
use hearth_stun::writer::MessageWriter;
use hearth_stun::MAX_RESPONSE_LEN;
use proptest::prelude::*;

fn any_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(IpAddr::from(ip), p)),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::new(IpAddr::from(ip), p)),
    ]
}

fn handler() -> BindingHandler {
    BindingHandler::new(BindingConfig { software: Some("prop".into()), alternate: None })
}

/// A well-formed header whose declared length matches `body`, so the attribute walker runs.
fn framed(bits: u16, cookie: bool, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEADER_LEN + body.len());
    m.extend_from_slice(&(bits & 0x3fff).to_be_bytes());
    m.extend_from_slice(&(body.len() as u16).to_be_bytes());
    m.extend_from_slice(if cookie { &[0x21, 0x12, 0xa4, 0x42] } else { &[1, 2, 3, 4] });
    m.extend_from_slice(&[5; 12]);
    m.extend_from_slice(body);
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), from in any_addr()) {
        let _ = Message::parse(&bytes);
        let mut out = [0u8; MAX_RESPONSE_LEN];
        if let Outcome::Reply { len, .. } = handler().handle(from, "0.0.0.0:3478".parse().unwrap(), &bytes, &mut out) {
            // Whatever we send back is itself valid STUN.
            prop_assert!(Message::parse(&out[..len]).is_ok());
        }
    }

    #[test]
    fn framed_random_attributes_never_panic(
        bits in any::<u16>(),
        cookie in any::<bool>(),
        words in proptest::collection::vec(any::<u32>(), 0..150),
        from in any_addr(),
    ) {
        let body: Vec<u8> = words.iter().flat_map(|w| w.to_be_bytes()).collect();
        let msg = framed(bits, cookie, &body);
        if let Ok(m) = Message::parse(&msg) {
            prop_assert!(m.attributes().count() <= hearth_stun::message::MAX_ATTRIBUTES);
            for a in m.attributes() {
                let _ = hearth_stun::message::decode_address(a.typ, a.value);
            }
            let _ = m.error_code();
            let _ = m.xor_mapped_address();
        }
        let mut out = [0u8; MAX_RESPONSE_LEN];
        if let Outcome::Reply { len, .. } = handler().handle(from, "[::]:3478".parse().unwrap(), &msg, &mut out) {
            prop_assert!(Message::parse(&out[..len]).is_ok());
        }
    }

    #[test]
    fn truncations_of_valid_requests_are_rejected(id in any::<[u8; 12]>(), cut in 1usize..28) {
        let txid = TransactionId::new(id);
        let mut buf = [0u8; 64];
        let n = binding_request(&mut buf, &txid, None).unwrap();
        let cut = cut.min(n);
        prop_assert!(Message::parse(&buf[..n - cut]).is_err());
    }

    #[test]
    fn any_request_from_any_address_maps_back(id in any::<[u8; 12]>(), from in any_addr(), change in proptest::option::of(0u32..8)) {
        let txid = TransactionId::new(id);
        let mut req = [0u8; 64];
        let n = binding_request(&mut req, &txid, change.filter(|c| c & 6 == 0)).unwrap();
        let mut out = [0u8; MAX_RESPONSE_LEN];
        match handler().handle(from, "0.0.0.0:3478".parse().unwrap(), &req[..n], &mut out) {
            Outcome::Reply { len, .. } => prop_assert_eq!(parse_response(&out[..len], &txid).unwrap().mapped, from),
            Outcome::Drop(r) => prop_assert!(false, "dropped {:?}", r),
        }
    }

    #[test]
    fn writer_output_always_parses(values in proptest::collection::vec((0u16..0x7fff, proptest::collection::vec(any::<u8>(), 0..40)), 0..10)) {
        let txid = TransactionId::new([3; 12]);
        let mut buf = [0u8; 1024];
        let mut w = MessageWriter::new(&mut buf, MessageType::BINDING_REQUEST, &txid).unwrap();
        for (t, v) in &values {
            // Skip FINGERPRINT's own type so it can't land mid-message.
            w.raw(*t, v).unwrap();
        }
        let n = w.finish_with_fingerprint().unwrap();
        let m = Message::parse(&buf[..n]).unwrap();
        prop_assert_eq!(m.attributes().count(), values.len() + 1);
    }
}

#[test]
fn huge_attribute_count_is_rejected_without_walking_forever() {
    // 4-byte empty attributes fill a 64 KiB message: 16k attributes, far over the cap.
    let body: Vec<u8> = (0..16_000u32).flat_map(|_| [0x80u8, 0x01, 0x00, 0x00]).collect();
    let msg = framed(0x0001, true, &body);
    assert_eq!(Message::parse(&msg).unwrap_err(), hearth_stun::DecodeError::TooManyAttributes);
}

#[test]
fn fingerprint_must_be_last() {
    let txid = TransactionId::new([4; 12]);
    let mut buf = [0u8; 128];
    let mut w = MessageWriter::new(&mut buf, MessageType::BINDING_REQUEST, &txid).unwrap();
    w.raw(0x8028, &[0, 0, 0, 0]).unwrap();
    w.raw(0x8022, b"after").unwrap();
    let n = w.finish();
    assert_eq!(Message::parse(&buf[..n]).unwrap_err(), hearth_stun::DecodeError::FingerprintNotLast);
}

/// Boundaries of the decoder: exactly MAX_ATTRIBUTES parse, one more does not; the raw bytes
/// are handed back unchanged; ERROR-CODE needs its 4-byte header and round-trips its reason.
#[test]
fn decoder_boundaries_and_round_trips() {
    use hearth_stun::message::{DecodeError, Message, MessageType, TransactionId, MAX_ATTRIBUTES};
    use hearth_stun::writer::MessageWriter;
    let txid = TransactionId::new([1; 12]);
    for (count, ok) in [(MAX_ATTRIBUTES, true), (MAX_ATTRIBUTES + 1, false)] {
        let mut buf = vec![0u8; 8 * count + 64];
        let mut w = MessageWriter::new(&mut buf, MessageType::BINDING_REQUEST, &txid).unwrap();
        for _ in 0..count {
            w.raw(0x8022, b"ab").unwrap();
        }
        let n = w.finish();
        let parsed = Message::parse(&buf[..n]);
        assert_eq!(parsed.is_ok(), ok, "{count} attributes: {parsed:?}");
        if let Ok(m) = parsed {
            assert_eq!(m.as_bytes(), &buf[..n]);
        } else {
            assert!(matches!(parsed, Err(DecodeError::TooManyAttributes)));
        }
    }
    // Every class of error code (3xx..6xx) keeps its class and number; 420 alone would not
    // tell `code / 100` from `code % 100 & 7` (both 4).
    for (code, reason) in
        [(420, ""), (420, "Unknown Attribute"), (400, "x"), (300, "Try Alternate"), (500, "Server Error"), (699, "?")]
    {
        let mut buf = [0u8; 256];
        let mut w = MessageWriter::new(&mut buf, MessageType::BINDING_ERROR, &txid).unwrap();
        assert!(w.is_empty(), "only the header so far");
        w.error_code(code, reason).unwrap();
        assert!(!w.is_empty());
        w.unknown_attributes(&[0x7777]).unwrap();
        let n = w.finish();
        let m = Message::parse(&buf[..n]).unwrap();
        assert_eq!(m.error_code().unwrap(), Some((code, reason)));
        assert_eq!(m.attribute(hearth_stun::attr::UNKNOWN_ATTRIBUTES), Some(&[0x77, 0x77][..]));
    }
    // An ERROR-CODE shorter than its header is malformed, not a panic.
    let mut buf = [0u8; 64];
    let mut w = MessageWriter::new(&mut buf, MessageType::BINDING_ERROR, &txid).unwrap();
    w.raw(hearth_stun::attr::ERROR_CODE, &[0, 0, 4]).unwrap();
    let n = w.finish();
    let m = Message::parse(&buf[..n]).unwrap();
    assert!(matches!(m.error_code(), Err(DecodeError::MalformedAttribute(_))));
}
