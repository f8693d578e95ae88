use super::*;
use axum::http::HeaderValue;
use proptest::prelude::*;

fn trusted(blocks: &[&str]) -> Trusted {
    Trusted::new(blocks.iter().map(|b| b.parse().unwrap()).collect())
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

#[test]
fn cidr_blocks() {
    let c: Cidr = "10.1.0.0/16".parse().unwrap();
    assert!(c.contains(ip("10.1.200.3")));
    assert!(!c.contains(ip("10.2.0.1")));
    assert!(c.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped counts as IPv4");
    let one: Cidr = "127.0.0.1".parse().unwrap();
    assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
    let v6: Cidr = "2001:db8::/32".parse().unwrap();
    assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
    assert!(!v6.contains(ip("10.1.0.1")));
    let all: Cidr = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains(ip("192.0.2.1")));
    for bad in ["10.0.0.0/33", "::/129", "10.0.0/8", "x", "10.0.0.0/", "/8"] {
        assert!(bad.parse::<Cidr>().is_err(), "{bad}");
    }
}

#[test]
fn xff_rightmost_untrusted_hop() {
    let t = trusted(&["127.0.0.1", "10.0.0.0/8"]);
    // The client wrote a fake first hop; the proxy appended the real address.
    let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7")]);
    assert_eq!(t.client(&h, ip("127.0.0.1")), ip("203.0.113.7"));
    // Two proxies in a row, both trusted: walk past both.
    let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.5")]);
    assert_eq!(t.client(&h, ip("127.0.0.1")), ip("203.0.113.7"));
    // Several header lines are one list.
    let h = headers(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "203.0.113.8:5555")]);
    assert_eq!(t.client(&h, ip("127.0.0.1")), ip("203.0.113.8"));
    // From a peer that is not trusted, the headers mean nothing.
    let h = headers(&[("x-forwarded-for", "203.0.113.7")]);
    assert_eq!(t.client(&h, ip("198.51.100.1")), ip("198.51.100.1"));
    // No header: the proxy itself.
    assert_eq!(t.client(&HeaderMap::new(), ip("127.0.0.1")), ip("127.0.0.1"));
    // An unreadable hop stops at the proxy that reported it.
    let h = headers(&[("x-forwarded-for", "203.0.113.7, garbage")]);
    assert_eq!(t.client(&h, ip("127.0.0.1")), ip("127.0.0.1"));
}

#[test]
fn forwarded_header_wins_and_is_parsed() {
    let t = trusted(&["127.0.0.1"]);
    let h = headers(&[
        ("forwarded", r#"for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https"#),
        ("x-forwarded-for", "198.51.100.9"),
    ]);
    assert_eq!(t.client(&h, ip("127.0.0.1")), ip("2001:db8:cafe::17"));
    let h = headers(&[("forwarded", "For=192.0.2.60;proto=http;by=203.0.113.43")]);
    assert_eq!(t.client(&h, ip("127.0.0.1")), ip("192.0.2.60"));
    let h = headers(&[("forwarded", "for=unknown")]);
    assert_eq!(t.client(&h, ip("127.0.0.1")), ip("127.0.0.1"));
}

#[test]
fn proxy_v1() {
    let head = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n";
    let line = [head.as_slice(), b"GET / HTTP/1.1\r\n"].concat();
    assert_eq!(
        parse_header(&line),
        Ok(Header::Proxy { len: head.len(), source: Some("203.0.113.7:51234".parse().unwrap()) })
    );
    let v6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 443\r\n";
    assert_eq!(
        parse_header(v6),
        Ok(Header::Proxy { len: v6.len(), source: Some("[2001:db8::7]:4000".parse().unwrap()) })
    );
    assert_eq!(parse_header(b"PROXY UNKNOWN\r\n"), Ok(Header::Proxy { len: 15, source: None }));
    // Every prefix of a valid header asks for more.
    for n in 1..head.len() {
        assert_eq!(parse_header(&line[..n]), Ok(Header::NeedMore), "{n}");
    }
    assert_eq!(parse_header(b"GET / HTTP/1.1\r\n"), Ok(Header::Absent));
    assert_eq!(parse_header(b"PROXZ"), Ok(Header::Absent));
    assert!(parse_header(b"PROXY TCP4 203.0.113.7 10.0.0.1 51234\r\n").is_err());
    assert!(parse_header(b"PROXY TCP6 203.0.113.7 10.0.0.1 1 2\r\n").is_err(), "family mismatch");
    assert!(parse_header(b"PROXY TCP4 1.2.3.4 1.2.3.4 99999 1\r\n").is_err());
    assert!(parse_header(&[b"PROXY ".as_slice(), &[b'1'; 200]].concat()).is_err(), "no CRLF within 107 bytes");
}

fn v2(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
    let mut v = V2_SIG.to_vec();
    v.push(0x20 | cmd);
    v.push(fam);
    v.extend_from_slice(&(body.len() as u16).to_be_bytes());
    v.extend_from_slice(body);
    v
}

#[test]
fn proxy_v2() {
    let mut body = vec![203, 0, 113, 7, 10, 0, 0, 1];
    body.extend_from_slice(&51234u16.to_be_bytes());
    body.extend_from_slice(&443u16.to_be_bytes());
    body.extend_from_slice(&[0x04, 0, 1, 0]); // a TLV, skipped
    let h = v2(1, 0x11, &body);
    assert_eq!(
        parse_header(&h),
        Ok(Header::Proxy { len: h.len(), source: Some("203.0.113.7:51234".parse().unwrap()) })
    );
    for n in 1..h.len() {
        assert_eq!(parse_header(&h[..n]), Ok(Header::NeedMore), "{n}");
    }
    let mut body6 = ip6("2001:db8::7").to_vec();
    body6.extend_from_slice(&ip6("2001:db8::1"));
    body6.extend_from_slice(&4000u16.to_be_bytes());
    body6.extend_from_slice(&443u16.to_be_bytes());
    let h6 = v2(1, 0x21, &body6);
    assert_eq!(parse_header(&h6), Ok(Header::Proxy { len: 52, source: Some("[2001:db8::7]:4000".parse().unwrap()) }));
    assert_eq!(parse_header(&v2(0, 0x00, &[])), Ok(Header::Proxy { len: 16, source: None }), "LOCAL");
    assert!(parse_header(&v2(1, 0x11, &[1, 2, 3])).is_err(), "short address block");
    assert!(parse_header(&v2(1, 0x21, &[1; 20])).is_err(), "short IPv6 address block");
    // TLVs up to the cap (512 bytes after the 16-byte head) are skipped; one byte more is refused.
    let mut long = body.clone();
    long.resize(512, 0);
    assert!(matches!(parse_header(&v2(1, 0x11, &long)), Ok(Header::Proxy { len: 528, .. })));
    long.push(0);
    assert!(parse_header(&v2(1, 0x11, &long)).is_err(), "over the cap");
    assert!(parse_header(&v2(5, 0x11, &body)).is_err(), "unknown command");
    let mut bad_ver = h.clone();
    bad_ver[12] = 0x11;
    assert!(parse_header(&bad_ver).is_err());
    let mut huge = V2_SIG.to_vec();
    huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
    assert!(parse_header(&huge).is_err(), "declared length over the cap");
}

fn ip6(s: &str) -> [u8; 16] {
    s.parse::<Ipv6Addr>().unwrap().octets()
}

proptest! {
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_header(&bytes);
        let mut with_sig = V2_SIG.to_vec();
        with_sig.extend_from_slice(&bytes);
        let _ = parse_header(&with_sig);
        let mut v1 = V1_PREFIX.to_vec();
        v1.extend_from_slice(&bytes);
        let _ = parse_header(&v1);
    }

    #[test]
    fn header_text_never_panics(xff in "[0-9a-f:.\\[\\], ]{0,80}", fwd in "[a-zA-Z0-9=;:,\"\\[\\]. ]{0,80}") {
        let t = trusted(&["127.0.0.1", "::1"]);
        if let (Ok(a), Ok(b)) = (HeaderValue::from_str(&xff), HeaderValue::from_str(&fwd)) {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", a);
            let _ = t.client(&h, ip("127.0.0.1"));
            h.insert("forwarded", b);
            let _ = t.client(&h, ip("::1"));
        }
    }
}
