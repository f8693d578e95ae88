//! The UDP server on real loopback sockets: answers, RFC 5780 origins, rate limiting under a
//! flood, metrics, shutdown.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use hearth_stun::client::{binding_request, query};
use hearth_stun::metrics_http::MetricsEndpoint;
use hearth_stun::{DropReason, RateLimit, ReplyKind, Server, ServerConfig, StunMetrics, TransactionId};

fn config(binds: &[&str]) -> ServerConfig {
    ServerConfig {
        binds: binds.iter().map(|b| b.parse().unwrap()).collect(),
        threads: 2,
        rate_limit: None,
        ..ServerConfig::default()
    }
}

fn start(cfg: &ServerConfig) -> (Server, StunMetrics, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    let metrics = StunMetrics::register(&registry).unwrap();
    (Server::start(cfg, metrics.clone()).unwrap(), metrics, registry)
}

#[test]
fn answers_with_the_clients_address() {
    let (server, metrics, _) = start(&config(&["127.0.0.1:0"]));
    let target = server.local_addrs()[0];
    for _ in 0..20 {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let (resp, src) = query(&sock, target, None, Duration::from_secs(2)).unwrap();
        assert_eq!(resp.mapped, sock.local_addr().unwrap());
        assert_eq!(src, target);
    }
    server.shutdown();
    assert_eq!(metrics.responses_for(ReplyKind::Success), 20);
}

#[test]
fn answers_over_ipv6_when_available() {
    let Ok(sock) = UdpSocket::bind("[::1]:0") else {
        eprintln!("no IPv6 loopback here; skipping");
        return;
    };
    let (server, _, _) = start(&config(&["[::1]:0"]));
    let (resp, _) = query(&sock, server.local_addrs()[0], None, Duration::from_secs(2)).unwrap();
    assert_eq!(resp.mapped, sock.local_addr().unwrap());
}

#[test]
fn rfc5780_responses_leave_from_the_requested_address() {
    let mut cfg = config(&["127.0.0.1:0"]);
    cfg.alternate = Some("127.0.0.2:0".parse().unwrap());
    // Binding the cross ports can collide with another test's port; retry a few times.
    let (server, _, _) = (0..5)
        .find_map(|_| {
            let registry = prometheus::Registry::new();
            let m = StunMetrics::register(&registry).unwrap();
            Server::start(&cfg, m.clone()).ok().map(|s| (s, m, registry))
        })
        .expect("bind the RFC 5780 quad");
    let addrs = server.local_addrs().to_vec();
    assert_eq!(addrs.len(), 4);
    let (primary, other) = (addrs[0], addrs[3]);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    for (change, ip, port) in [
        (0, primary.ip(), primary.port()),
        (2, primary.ip(), other.port()),
        (4, other.ip(), primary.port()),
        (6, other.ip(), other.port()),
    ] {
        let (resp, src) = query(&sock, primary, Some(change), Duration::from_secs(2)).unwrap();
        let want = SocketAddr::new(ip, port);
        assert_eq!(src, want, "change {change}");
        assert_eq!(resp.response_origin, Some(want));
        assert_eq!(resp.other_address, Some(other));
    }
}

#[test]
fn a_flood_from_one_source_does_not_starve_others() {
    let mut cfg = config(&["127.0.0.1:0"]);
    cfg.rate_limit = Some(RateLimit { per_second: 50, burst: 50, max_sources: 1000 });
    let (server, metrics, _) = start(&cfg);
    let target = server.local_addrs()[0];
    let flooder = std::thread::spawn(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut buf = [0u8; 64];
        let n = binding_request(&mut buf, &TransactionId::new([1; 12]), None).unwrap();
        // Bounded: 20,000 datagrams or 3 seconds, whichever comes first.
        let until = Instant::now() + Duration::from_secs(3);
        let mut sent = 0;
        while sent < 20_000 && Instant::now() < until {
            let _ = sock.send_to(&buf[..n], target);
            sent += 1;
        }
        sent
    });
    // A different source IP (127.0.0.3) keeps getting answers during the flood.
    let victim = UdpSocket::bind("127.0.0.3:0").unwrap();
    let mut answered = 0;
    for _ in 0..20 {
        if query(&victim, target, None, Duration::from_millis(500)).is_ok() {
            answered += 1;
        }
    }
    let sent = flooder.join().unwrap();
    server.shutdown();
    assert!(answered >= 19, "only {answered}/20 answered during the flood");
    let limited = metrics.dropped_for(DropReason::RateLimited);
    assert!(limited > 0, "the flood was not limited");
    let served = metrics.responses_for(ReplyKind::Success);
    // The flooder got at most its burst plus ~3 s of refill, and the victim its 20.
    assert!(served <= 50 + 3 * 50 + 20 + 10, "served {served} of {sent} flooded");
}

#[test]
fn metrics_endpoint_reports_counters() {
    let (server, _, registry) = start(&config(&["127.0.0.1:0"]));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    query(&sock, server.local_addrs()[0], None, Duration::from_secs(2)).unwrap();
    sock.send_to(b"definitely not stun", server.local_addrs()[0]).unwrap();
    let ep = MetricsEndpoint::start("127.0.0.1:0".parse().unwrap(), registry).unwrap();
    let scrape = || {
        let mut tcp = TcpStream::connect(ep.local_addr()).unwrap();
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut body = String::new();
        tcp.read_to_string(&mut body).unwrap();
        body
    };
    // Threads flush their counters on an idle tick: wait for the flush itself, not a guess.
    let end = Instant::now() + Duration::from_secs(10);
    let mut body = scrape();
    while !body.contains("hearth_stun_dropped_total{reason=\"not_stun\"} 1") && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
        body = scrape();
    }
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(body.contains("hearth_stun_responses_total{kind=\"success\"} 1"), "{body}");
    assert!(body.contains("hearth_stun_dropped_total{reason=\"not_stun\"} 1"), "{body}");
    let mut tcp = TcpStream::connect(ep.local_addr()).unwrap();
    tcp.write_all(b"GET /secret HTTP/1.1\r\n\r\n").unwrap();
    let mut body = String::new();
    tcp.read_to_string(&mut body).unwrap();
    assert!(body.starts_with("HTTP/1.1 404"));
    // Silent and trickling clients hold up no scrape (each request has its own thread).
    let silent: Vec<TcpStream> = (0..3).map(|_| TcpStream::connect(ep.local_addr()).unwrap()).collect();
    let mut trickle = TcpStream::connect(ep.local_addr()).unwrap();
    trickle.write_all(b"GET /met").unwrap();
    let t0 = Instant::now();
    assert!(scrape().starts_with("HTTP/1.1 200 OK"));
    assert!(t0.elapsed() < Duration::from_secs(1), "scrape waited {:?}", t0.elapsed());
    drop(silent);
}

#[test]
fn shutdown_is_prompt() {
    let (server, _, _) = start(&config(&["127.0.0.1:0", "127.0.0.1:0"]));
    let t = Instant::now();
    server.shutdown();
    assert!(t.elapsed() < Duration::from_secs(2));
}
