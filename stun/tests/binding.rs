//! Black-box tests of the sans-IO Binding handler: bytes in, bytes out, no sockets.

use std::net::SocketAddr;

use hearth_stun::attr;
use hearth_stun::binding::{AlternatePair, BindingConfig, BindingHandler, DropReason, Outcome, ReplyKind};
use hearth_stun::client::{binding_request, parse_response, ResponseError};
use hearth_stun::message::{Message, MessageType, TransactionId};
use hearth_stun::writer::MessageWriter;
use hearth_stun::MAX_RESPONSE_LEN;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn handler(alternate: Option<AlternatePair>) -> BindingHandler {
    BindingHandler::new(BindingConfig { software: Some("hearth-test".into()), alternate })
}

fn request(change: Option<u32>) -> (TransactionId, Vec<u8>) {
    let txid = TransactionId::new([7; 12]);
    let mut buf = [0u8; 64];
    let n = binding_request(&mut buf, &txid, change).unwrap();
    (txid, buf[..n].to_vec())
}

fn reply(o: Outcome) -> (usize, SocketAddr, ReplyKind) {
    match o {
        Outcome::Reply { len, from, kind } => (len, from, kind),
        Outcome::Drop(r) => panic!("dropped: {r:?}"),
    }
}

#[test]
fn binding_success_v4_and_v6() {
    let h = handler(None);
    for (client, local) in [("198.51.100.7:40000", "0.0.0.0:3478"), ("[2001:db8::9]:5555", "[::]:3478")] {
        let (txid, req) = request(None);
        let mut out = [0u8; MAX_RESPONSE_LEN];
        let (len, from, kind) = reply(h.handle(addr(client), addr(local), &req, &mut out));
        assert_eq!((from, kind), (addr(local), ReplyKind::Success));
        let r = parse_response(&out[..len], &txid).unwrap();
        assert_eq!(r.mapped, addr(client));
        assert_eq!(r.other_address, None);
        let m = Message::parse(&out[..len]).unwrap();
        assert_eq!(m.attribute(attr::SOFTWARE), Some(&b"hearth-test"[..]));
        assert!(m.attribute(attr::FINGERPRINT).is_some(), "modern clients get FINGERPRINT");
        assert!(m.attribute(attr::MAPPED_ADDRESS).is_none(), "modern clients get only XOR-MAPPED-ADDRESS");
    }
}

#[test]
fn classic_rfc3489_client_gets_mapped_address() {
    let h = handler(None);
    // No magic cookie: bytes 4..20 are a 128-bit transaction id.
    let mut req = vec![0x00, 0x01, 0x00, 0x00];
    req.extend_from_slice(&[0xAB; 16]);
    let mut out = [0u8; MAX_RESPONSE_LEN];
    let (len, _, _) = reply(h.handle(addr("192.0.2.5:1234"), addr("0.0.0.0:3478"), &req, &mut out));
    let m = Message::parse(&out[..len]).unwrap();
    assert!(m.is_classic());
    assert_eq!(m.transaction_id().0, [0xAB; 16]);
    assert_eq!(m.address(attr::MAPPED_ADDRESS).unwrap(), Some(addr("192.0.2.5:1234")));
    assert!(m.attribute(attr::XOR_MAPPED_ADDRESS).is_none());
    assert!(m.attribute(attr::FINGERPRINT).is_none());
    // Every attribute is 4-byte aligned in length, as naive RFC 3489 parsers assume.
    assert!(m.attributes().all(|a| a.value.len() % 4 == 0));
}

#[test]
fn unknown_comprehension_required_attribute_gets_420() {
    let h = handler(None);
    let txid = TransactionId::new([9; 12]);
    let mut buf = [0u8; 128];
    let mut w = MessageWriter::new(&mut buf, MessageType::BINDING_REQUEST, &txid).unwrap();
    w.raw(0x7777, b"what").unwrap();
    w.raw(0x8888, b"optional is fine").unwrap();
    w.raw(attr::RESPONSE_ADDRESS, &[0, 1, 0, 1, 1, 2, 3, 4]).unwrap();
    let n = w.finish_with_fingerprint().unwrap();
    let mut out = [0u8; MAX_RESPONSE_LEN];
    let (len, _, kind) = reply(h.handle(addr("192.0.2.5:1234"), addr("0.0.0.0:3478"), &buf[..n], &mut out));
    assert_eq!(kind, ReplyKind::Error);
    let m = Message::parse(&out[..len]).unwrap();
    assert_eq!(m.message_type(), MessageType::BINDING_ERROR);
    assert_eq!(m.error_code().unwrap().map(|e| e.0), Some(420));
    assert_eq!(m.attribute(attr::UNKNOWN_ATTRIBUTES), Some(&[0x77, 0x77, 0x00, 0x02][..]));
    match parse_response(&out[..len], &txid) {
        Err(ResponseError::ServerError { code: 420, .. }) => {}
        other => panic!("{other:?}"),
    }
}

/// RESPONSE-PORT (0x0027) and PADDING (0x0026) of RFC 5780 would let a third party aim
/// responses at another port or inflate them: each alone is refused with 420, naming it.
#[test]
fn response_port_and_padding_are_refused_with_420() {
    let h = handler(None);
    for (code, value) in [(0x0027u16, &[0x13, 0x88, 0, 0][..]), (0x0026, &[0u8; 64][..])] {
        let txid = TransactionId::new([3; 12]);
        let mut buf = [0u8; 160];
        let mut w = MessageWriter::new(&mut buf, MessageType::BINDING_REQUEST, &txid).unwrap();
        w.raw(code, value).unwrap();
        let n = w.finish_with_fingerprint().unwrap();
        let mut out = [0u8; MAX_RESPONSE_LEN];
        let (len, _, kind) = reply(h.handle(addr("192.0.2.5:1234"), addr("0.0.0.0:3478"), &buf[..n], &mut out));
        assert_eq!(kind, ReplyKind::Error, "attribute {code:#06x}");
        let m = Message::parse(&out[..len]).unwrap();
        assert_eq!(m.error_code().unwrap().map(|e| e.0), Some(420), "attribute {code:#06x}");
        assert_eq!(m.attribute(attr::UNKNOWN_ATTRIBUTES), Some(&code.to_be_bytes()[..]));
        assert!(len < n + 64, "the refusal is not inflated: {len} bytes for a {n}-byte request");
    }
}

/// Requests of other methods are not answered at all: a 400 to a forged source was a
/// reflection of nearly 5× the request.
#[test]
fn other_methods_are_dropped() {
    let h = handler(None);
    let txid = TransactionId::new([1; 12]);
    let mut buf = [0u8; 64];
    // Allocate (0x003) is a TURN method this server does not serve.
    let w = MessageWriter::new(&mut buf, MessageType::from_bits(0x0003), &txid).unwrap();
    let n = w.finish_with_fingerprint().unwrap();
    let mut out = [0u8; MAX_RESPONSE_LEN];
    let o = h.handle(addr("192.0.2.5:1234"), addr("0.0.0.0:3478"), &buf[..n], &mut out);
    assert!(matches!(o, Outcome::Drop(DropReason::OtherMethod)), "{o:?}");
}

/// Every reply is less than 3× its request, whatever the request's shape (minimal, classic,
/// IPv6, unknown or malformed attributes, CHANGE-REQUEST with and without a pair).
#[test]
fn no_reply_is_three_times_its_request() {
    use hearth_stun::binding::MAX_AMPLIFICATION;
    let pair = AlternatePair::new(addr("203.0.113.1:3478"), addr("203.0.113.2:3479")).unwrap();
    let long_sw = BindingConfig { software: Some("x".repeat(128)), alternate: Some(pair) };
    for h in [handler(None), handler(Some(pair)), BindingHandler::new(long_sw)] {
        let txid = TransactionId::new([4; 12]);
        let mut shapes: Vec<Vec<u8>> = Vec::new();
        for fp in [false, true] {
            for attrs in [
                vec![],
                vec![(0x7777u16, vec![])],
                vec![(attr::CHANGE_REQUEST, vec![0, 0, 0, 6])],
                vec![(attr::CHANGE_REQUEST, vec![])],
                vec![(attr::CHANGE_REQUEST, vec![1])],
                (0..20u16).map(|i| (0x7000 + i, vec![])).collect(),
            ] {
                let mut buf = [0u8; 512];
                let mut w = MessageWriter::new(&mut buf, MessageType::BINDING_REQUEST, &txid).unwrap();
                for (t, v) in &attrs {
                    w.raw(*t, v).unwrap();
                }
                let n = if fp { w.finish_with_fingerprint().unwrap() } else { w.finish() };
                shapes.push(buf[..n].to_vec());
            }
        }
        let mut classic = vec![0x00, 0x01, 0x00, 0x00];
        classic.extend_from_slice(&[0xAB; 16]);
        shapes.push(classic);
        for req in &shapes {
            for (from, local) in
                [("198.51.100.7:40000", "203.0.113.1:3478"), ("[2001:db8::9]:5555", "[2001:db8::1]:3478")]
            {
                let mut out = [0u8; MAX_RESPONSE_LEN];
                match h.handle(addr(from), addr(local), req, &mut out) {
                    Outcome::Reply { len, .. } => {
                        assert!(
                            len < MAX_AMPLIFICATION * req.len(),
                            "{len}-byte reply to a {}-byte request",
                            req.len()
                        );
                    }
                    Outcome::Drop(r) => panic!("a well-formed Binding request was dropped: {r:?}"),
                }
            }
        }
    }
    // SOFTWARE still goes out when there is room for it.
    let h = handler(None);
    let (txid, req) = request(Some(0));
    let mut out = [0u8; MAX_RESPONSE_LEN];
    let (len, _, _) = reply(h.handle(addr("198.51.100.7:40000"), addr("0.0.0.0:3478"), &req, &mut out));
    let m = Message::parse(&out[..len]).unwrap();
    assert_eq!(m.transaction_id(), txid);
    assert_eq!(m.attribute(attr::SOFTWARE), Some(&b"hearth-test"[..]));
}

#[test]
fn indications_responses_and_garbage_are_dropped_silently() {
    let h = handler(None);
    let mut out = [0u8; MAX_RESPONSE_LEN];
    let from = addr("192.0.2.5:1234");
    let local = addr("0.0.0.0:3478");
    let txid = TransactionId::new([2; 12]);
    for (bits, reason) in
        [(0x0011, DropReason::Indication), (0x0101, DropReason::Response), (0x0111, DropReason::Response)]
    {
        let mut buf = [0u8; 64];
        let n = MessageWriter::new(&mut buf, MessageType::from_bits(bits), &txid).unwrap().finish();
        assert_eq!(h.handle(from, local, &buf[..n], &mut out), Outcome::Drop(reason));
    }
    assert_eq!(h.handle(from, local, b"GET / HTTP/1.1\r\n\r\n", &mut out), Outcome::Drop(DropReason::NotStun));
    assert_eq!(h.handle(from, local, &[], &mut out), Outcome::Drop(DropReason::NotStun));
    let (_, mut req) = request(None);
    let last = req.len() - 1;
    req[last] ^= 0xff;
    assert_eq!(h.handle(from, local, &req, &mut out), Outcome::Drop(DropReason::BadFingerprint));
}

#[test]
fn rfc5780_change_request_picks_the_right_origin() {
    let pair = AlternatePair::new(addr("203.0.113.1:3478"), addr("203.0.113.2:3479")).unwrap();
    let h = handler(Some(pair));
    let client = addr("198.51.100.7:40000");
    let local = addr("203.0.113.1:3478");
    let cases = [
        (None, "203.0.113.1:3478"),
        (Some(0x0), "203.0.113.1:3478"),
        (Some(0x2), "203.0.113.1:3479"),
        (Some(0x4), "203.0.113.2:3478"),
        (Some(0x6), "203.0.113.2:3479"),
    ];
    for (change, origin) in cases {
        let (txid, req) = request(change);
        let mut out = [0u8; MAX_RESPONSE_LEN];
        let (len, from, _) = reply(h.handle(client, local, &req, &mut out));
        assert_eq!(from, addr(origin), "change {change:?}");
        let r = parse_response(&out[..len], &txid).unwrap();
        assert_eq!(r.response_origin, Some(addr(origin)));
        assert_eq!(r.other_address, Some(addr("203.0.113.2:3479")));
        assert_eq!(r.mapped, client);
    }
    // Arriving on the alternate address, OTHER-ADDRESS points back at the primary.
    let (txid, req) = request(None);
    let mut out = [0u8; MAX_RESPONSE_LEN];
    let (len, _, _) = reply(h.handle(client, addr("203.0.113.2:3479"), &req, &mut out));
    assert_eq!(parse_response(&out[..len], &txid).unwrap().other_address, Some(addr("203.0.113.1:3478")));
}

#[test]
fn change_request_without_alternate_is_420() {
    let h = handler(None);
    let (txid, req) = request(Some(0x6));
    let mut out = [0u8; MAX_RESPONSE_LEN];
    let (len, _, kind) = reply(h.handle(addr("192.0.2.5:1234"), addr("0.0.0.0:3478"), &req, &mut out));
    assert_eq!(kind, ReplyKind::Error);
    let m = Message::parse(&out[..len]).unwrap();
    assert_eq!(m.attribute(attr::UNKNOWN_ATTRIBUTES), Some(&[0x00, 0x03][..]));
    assert!(parse_response(&out[..len], &txid).is_err());
}

#[test]
fn alternate_pair_validation() {
    assert!(AlternatePair::new(addr("1.1.1.1:1"), addr("1.1.1.1:2")).is_err());
    assert!(AlternatePair::new(addr("1.1.1.1:1"), addr("1.1.1.2:1")).is_err());
    assert!(AlternatePair::new(addr("0.0.0.0:1"), addr("1.1.1.2:2")).is_err());
    assert!(AlternatePair::new(addr("1.1.1.1:1"), addr("[::1]:2")).is_err());
    assert!(AlternatePair::new(addr("1.1.1.1:1"), addr("1.1.1.2:2")).is_ok());
}

/// Sends a Binding request carrying `attrs` (type, value) and returns the reply.
fn with_attrs(h: &BindingHandler, local: &str, from: &str, attrs: &[(u16, Vec<u8>)]) -> (Vec<u8>, ReplyKind) {
    let txid = TransactionId::new([5; 12]);
    let mut buf = [0u8; 1024];
    let mut w = MessageWriter::new(&mut buf, MessageType::BINDING_REQUEST, &txid).unwrap();
    for (t, v) in attrs {
        w.raw(*t, v).unwrap();
    }
    let n = w.finish_with_fingerprint().unwrap();
    let mut out = [0u8; MAX_RESPONSE_LEN];
    let (len, _, kind) = reply(h.handle(addr(from), addr(local), &buf[..n], &mut out));
    (out[..len].to_vec(), kind)
}

/// RFC 8489 §6.3: a server without credentials ignores USERNAME, MESSAGE-INTEGRITY(-SHA256)
/// and friends instead of refusing them; 0x8000 is the first comprehension-optional type.
#[test]
fn understood_and_optional_attributes_do_not_refuse_a_request() {
    let h = handler(None);
    let attrs = vec![
        (attr::USERNAME, b"alice".to_vec()),
        (0x8000, b"optional".to_vec()),
        (attr::MESSAGE_INTEGRITY, vec![0; 20]),
    ];
    let (_, kind) = with_attrs(&h, "0.0.0.0:3478", "198.51.100.7:40000", &attrs);
    assert_eq!(kind, ReplyKind::Success);
    let (out, kind) = with_attrs(&h, "0.0.0.0:3478", "198.51.100.7:40000", &[(0x7fff, vec![1, 2, 3, 4])]);
    assert_eq!(kind, ReplyKind::Error, "0x7fff is comprehension-required and unknown");
    assert_eq!(Message::parse(&out).unwrap().attribute(attr::UNKNOWN_ATTRIBUTES), Some(&[0x7f, 0xff][..]));
}

/// Many unknown attributes: UNKNOWN-ATTRIBUTES lists at most 16 and nothing overflows, also
/// when CHANGE-REQUEST (unknown without an alternate address) comes on top.
#[test]
fn unknown_attribute_lists_are_capped_at_sixteen() {
    let h = handler(None);
    for extra in [15usize, 16, 17, 30] {
        let mut attrs: Vec<(u16, Vec<u8>)> = (0..extra as u16).map(|i| (0x7000 + i, vec![0; 4])).collect();
        attrs.push((attr::CHANGE_REQUEST, vec![0, 0, 0, 4]));
        let (out, kind) = with_attrs(&h, "0.0.0.0:3478", "198.51.100.7:40000", &attrs);
        assert_eq!(kind, ReplyKind::Error);
        let m = Message::parse(&out).unwrap();
        let listed = m.attribute(attr::UNKNOWN_ATTRIBUTES).unwrap();
        assert_eq!(listed.len(), 2 * (extra + 1).min(16), "{extra} unknown + CHANGE-REQUEST");
        assert_eq!(&listed[..2], &[0x70, 0x00]);
        if extra < 16 {
            assert_eq!(&listed[listed.len() - 2..], &attr::CHANGE_REQUEST.to_be_bytes());
        }
    }
}

/// CHANGE-REQUEST is served only on the configured pair's addresses and for clients of the
/// pair's family; anywhere else it is refused as unknown.
#[test]
fn change_request_is_served_only_on_the_pair() {
    let pair = AlternatePair::new(addr("203.0.113.1:3478"), addr("203.0.113.2:3479")).unwrap();
    let h = handler(Some(pair));
    assert_eq!(h.config().alternate, Some(pair));
    assert_eq!(h.config().software.as_deref(), Some("hearth-test"));
    let change = vec![(attr::CHANGE_REQUEST, vec![0, 0, 0, 6])];
    let (_, kind) = with_attrs(&h, "203.0.113.1:3478", "198.51.100.7:40000", &change);
    assert_eq!(kind, ReplyKind::Success);
    // Another local address of the same host (not in the quad).
    let (_, kind) = with_attrs(&h, "203.0.113.9:3478", "198.51.100.7:40000", &change);
    assert_eq!(kind, ReplyKind::Error);
    // A client of the other family, on the pair's address (as a dual-stack socket sees it).
    let (_, kind) = with_attrs(&h, "203.0.113.1:3478", "[2001:db8::9]:5555", &change);
    assert_eq!(kind, ReplyKind::Error);
}

/// RFC 5780's two addresses go out only when the reply, FINGERPRINT included, stays under
/// three times the request: a bare 20-byte request (limit 60) gets neither (20 + 12 + 24 +
/// 8 = 64), one with a FINGERPRINT (28 bytes, limit 84) gets both.
#[test]
fn rfc5780_addresses_go_out_only_within_the_reflection_budget() {
    let pair = AlternatePair::new(addr("203.0.113.1:3478"), addr("203.0.113.2:3479")).unwrap();
    let h = BindingHandler::new(BindingConfig { software: None, alternate: Some(pair) });
    let txid = TransactionId::new([6; 12]);
    for (fp, want) in [(false, false), (true, true)] {
        let mut buf = [0u8; 64];
        let w = MessageWriter::new(&mut buf, MessageType::BINDING_REQUEST, &txid).unwrap();
        let n = if fp { w.finish_with_fingerprint().unwrap() } else { w.finish() };
        let mut out = [0u8; MAX_RESPONSE_LEN];
        let (len, _, _) = reply(h.handle(addr("198.51.100.7:40000"), addr("203.0.113.1:3478"), &buf[..n], &mut out));
        let m = Message::parse(&out[..len]).unwrap();
        assert_eq!(m.attribute(attr::RESPONSE_ORIGIN).is_some(), want, "{n}-byte request");
        assert_eq!(m.attribute(attr::OTHER_ADDRESS).is_some(), want, "{n}-byte request");
        assert_eq!(parse_response(&out[..len], &txid).unwrap().mapped, addr("198.51.100.7:40000"));
    }
}

/// The last check before a reply leaves: an RFC 3489 request over IPv6 to a server with an
/// IPv6 alternate pair would get MAPPED-, SOURCE- and CHANGED-ADDRESS, 92 bytes for a
/// 20-byte request, and is dropped rather than reflected 4.6 times over.
#[test]
fn a_reply_over_the_reflection_bound_is_dropped() {
    let pair = AlternatePair::new(addr("[2001:db8::1]:3478"), addr("[2001:db8::2]:3479")).unwrap();
    let h = handler(Some(pair));
    let mut classic = vec![0x00, 0x01, 0x00, 0x00];
    classic.extend_from_slice(&[0xAB; 16]);
    let mut out = [0u8; MAX_RESPONSE_LEN];
    let o = h.handle(addr("[2001:db8::9]:5555"), addr("[2001:db8::1]:3478"), &classic, &mut out);
    assert!(matches!(o, Outcome::Drop(DropReason::Amplification)), "{o:?}");
    // The same request over IPv4 to a server without a pair is answered (32 bytes).
    let (len, _, _) = reply(handler(None).handle(addr("192.0.2.5:1234"), addr("0.0.0.0:3478"), &classic, &mut out));
    assert_eq!(len, 32);
}
