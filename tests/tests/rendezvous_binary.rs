//! The `hearth-rendezvous` binary: endpoints, embedded STUN, relay without leaking payloads
//! into logs or metrics, 10,000 half-open connections, and a clean SIGTERM drain.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use hearth_e2e::rendezvous::Rv;
use hearth_e2e::rendezvous_identity;
use hearth_rendezvous::client::{self, Event, Join};

fn start(extra: &[&str]) -> Rv {
    Rv::start(extra, None)
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn endpoints_stun_relay_and_no_payload_leaks() {
    let rv = start(&[]);
    assert!(get(rv.http, "/healthz").starts_with("HTTP/1.1 200"));
    assert!(get(rv.http, "/readyz").starts_with("HTTP/1.1 200"));
    let page = get(rv.http, "/");
    assert!(page.contains("Hearth rendezvous"), "{page}");
    // The public page and port give an attacker no counts: metrics live on --metrics-bind.
    let body = page.split("\r\n\r\n").nth(1).unwrap_or_default();
    assert!(!body.contains("connection") && !body.contains("version"), "{page}");
    assert!(get(rv.http, "/metrics").starts_with("HTTP/1.1 404"), "no metrics on the public port");
    // STUN in the same process.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (resp, _) = hearth_stun::client::query(&udp, rv.stun.unwrap(), None, Duration::from_secs(2)).unwrap();
    assert_eq!(resp.mapped, udp.local_addr().unwrap());

    let canary = b"PAYLOAD-CANARY-7f3a9";
    let url = format!("ws://{}/v1/signal", rv.http);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut a = client::connect(&url, &Join::Vault(Box::new(rendezvous_identity(1, 0)))).await.unwrap();
        let mut b = client::connect(&url, &Join::Vault(Box::new(rendezvous_identity(1, 1)))).await.unwrap();
        a.signal(b.device, canary).await.unwrap();
        loop {
            if let Event::Signal { payload, .. } = b.next().await.unwrap() {
                assert_eq!(payload, canary);
                break;
            }
        }
    });
    let metrics = get(rv.metrics, "/metrics");
    assert!(metrics.contains("hearth_rv_signals_relayed_total 1"), "{metrics}");
    assert!(metrics.contains("hearth_stun_responses_total"), "STUN metrics share the registry");
    let b64 = hearth_rendezvous::protocol::to_b64(canary);
    // Stop the server (SIGTERM) and wait for it to exit and for its stderr to close, so
    // every line it logged, disconnects and shutdown included, is read before the check.
    let mut rv = rv;
    assert!(Command::new("kill").args(["-TERM", &rv.child.id().to_string()]).status().unwrap().success());
    let exited = rv.child.wait().unwrap();
    assert!(exited.success(), "{exited:?}");
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while Arc::strong_count(&rv.stderr) > 1 && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(Arc::strong_count(&rv.stderr), 1, "stderr reader still running");
    let logs = rv.stderr.lock().unwrap().clone();
    assert!(logs.contains("admitted"), "trace logs are on: {logs}");
    for hay in [&metrics, &logs] {
        assert!(!hay.contains("PAYLOAD-CANARY") && !hay.contains(&b64), "payload leaked");
    }
}

#[test]
fn survives_ten_thousand_half_open_connections() {
    // Every connection counts against its address from accept on, so this one source gets
    // caps above the flood: the point here is the server's own footing.
    let rv = start(&["--no-stun", "--max-connections-per-ip", "20000", "--handshakes-per-ip", "100000"]);
    // Bounded: 10,000 TCP connections that never send a byte, opened within 20 s at most
    // (a deep accept queue: a burst of connects must not cost one-second SYN retransmits).
    let mut idle = Vec::with_capacity(10_000);
    let t0 = std::time::Instant::now();
    let until = t0 + Duration::from_secs(20);
    while idle.len() < 10_000 && std::time::Instant::now() < until {
        match TcpStream::connect_timeout(&rv.http, Duration::from_secs(2)) {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connect {} failed: {e}", idle.len()),
        }
    }
    assert_eq!(idle.len(), 10_000);
    // A real client still gets in and relays.
    let url = format!("ws://{}/v1/signal", rv.http);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut a = client::connect(&url, &Join::Vault(Box::new(rendezvous_identity(2, 0)))).await.unwrap();
        let mut b = client::connect(&url, &Join::Vault(Box::new(rendezvous_identity(2, 1)))).await.unwrap();
        a.signal(b.device, b"through").await.unwrap();
        loop {
            if let Event::Signal { payload, .. } =
                tokio::time::timeout(Duration::from_secs(10), b.next()).await.unwrap().unwrap()
            {
                assert_eq!(payload, b"through");
                break;
            }
        }
    });
    // Slow-loris bound: the server closes connections that sent no request within 10 s.
    let mut first = idle.swap_remove(0);
    std::thread::sleep(Duration::from_secs(10).saturating_sub(t0.elapsed()) + Duration::from_secs(2));
    first.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut byte = [0u8; 1];
    match first.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("a silent connection must be closed by the header timeout, got {other:?}"),
    }
    drop(idle);
    assert!(get(rv.http, "/healthz").starts_with("HTTP/1.1 200"));
}

#[test]
fn sigterm_drains_and_exits_cleanly() {
    let mut rv = start(&["--no-stun"]);
    let url = format!("ws://{}/v1/signal", rv.http);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let code = rt.block_on(async {
        let mut a = client::connect(&url, &Join::Vault(Box::new(rendezvous_identity(3, 0)))).await.unwrap();
        let pid = rv.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        loop {
            match tokio::time::timeout(Duration::from_secs(10), a.next()).await.unwrap() {
                Err(client::ClientError::Closed { code, .. }) => break code,
                Ok(_) => continue,
                Err(e) => panic!("{e}\nserver log:\n{}", rv.stderr.lock().unwrap()),
            }
        }
    });
    assert_eq!(code, 1001);
    let status = rv.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_silent_metrics_client_holds_up_no_scrape() {
    let rv = start(&["--no-stun"]);
    // Answered once the server runs (the listener is bound before): metrics are registered.
    assert!(get(rv.http, "/healthz").starts_with("HTTP/1.1 200"));
    // Clients connect to the metrics listener and never finish a request.
    let silent: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(rv.metrics).unwrap()).collect();
    let mut half = TcpStream::connect(rv.metrics).unwrap();
    half.write_all(b"GET /metr").unwrap();
    // Scrapes are answered at once all the same: each connection has its own task.
    for _ in 0..3 {
        let t0 = std::time::Instant::now();
        let mut s = TcpStream::connect(rv.metrics).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 200") && out.contains("hearth_rv_"), "{out}");
        assert!(t0.elapsed() < Duration::from_secs(1), "scrape waited {:?}", t0.elapsed());
    }
    drop((silent, half));
}

/// TCP connections to `to` from `from`.
async fn tcp_from(from: &str, to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(from.parse().unwrap(), 0))?;
    s.connect(to).await
}

#[test]
fn a_flood_under_a_low_open_files_limit_never_starves_accept() {
    // 300 descriptors: the server keeps 100 for itself and says so.
    let rv = Rv::start(&["--no-stun"], Some(300));
    let url = rv.url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut a = client::connect(&url, &Join::Vault(Box::new(rendezvous_identity(4, 0)))).await.unwrap();
        let mut b = client::connect(&url, &Join::Vault(Box::new(rendezvous_identity(4, 1)))).await.unwrap();
        // Bounded flood: 300 idle connections from ten addresses, 30 each (under the
        // per-address caps), more than the connection cap of 200.
        let mut flood = Vec::new();
        for i in 0..300 {
            flood.push(tcp_from(&format!("127.0.0.{}", 2 + i % 10), rv.http).await.unwrap());
        }
        // Give the server time to take each one: a refused connection is answered 503 at
        // once and closed; a held one stays silent.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (mut idle, mut refused) = (Vec::new(), 0);
        for s in flood {
            let mut buf = [0u8; 12];
            match s.try_read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => idle.push(s),
                Ok(n) => {
                    assert!(
                        n == 0 || buf[..n].starts_with(b"HTTP/1.1 503"),
                        "{:?}",
                        String::from_utf8_lossy(&buf[..n])
                    );
                    refused += 1;
                }
                Err(_) => refused += 1,
            }
        }
        assert_eq!(idle.len(), 198, "the cap (200, two taken by devices) holds");
        assert_eq!(refused, 102);
        // Admitted devices keep relaying through the flood.
        a.signal(b.device, b"through the flood").await.unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), b.next()).await.unwrap().unwrap() {
                Event::Signal { payload, .. } => break assert_eq!(payload, b"through the flood"),
                _ => continue,
            }
        }
        // When the flood ends, new devices get in again.
        drop(idle);
        let until = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match client::connect(&url, &Join::Vault(Box::new(rendezvous_identity(4, 2)))).await {
                Ok(_) => break,
                Err(e) => assert!(std::time::Instant::now() < until, "{e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let log = rv.log();
    assert!(log.contains("open-files limit lowers the connection cap"), "the log says why the cap is lower: {log}");
    assert!(!log.contains("accept failed"), "accept never ran out of descriptors: {log}");
}
