//! `hearth daemon` against a hostile LAN, on loopback: a stranger that pings and never reads
//! costs a bounded amount of memory and is closed, one source cannot take every inbound slot,
//! and an honest peer still gets in meanwhile.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hearth_e2e::device::{vault, wait_until, Daemon, Device};
use serde_json::Value;

const T: Duration = Duration::from_secs(20);

fn daemon(d: &Device, extra: &[&str], peers: &[&Daemon]) -> Daemon {
    d.daemon_on_loopback(extra, peers)
}

fn peers_of(d: &Device) -> Vec<Value> {
    d.json(&["status"])["peers"].as_array().cloned().unwrap_or_default()
}

/// The daemon's resident memory in KiB.
fn rss_kib(d: &Daemon) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.proc.child.id())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A WebSocket upgrade of `/v1/sync` on a raw socket; the 101 answer is read.
fn upgraded(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let req = format!(
        "GET /v1/sync HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    s
}

/// A masked client ping frame with a 125-byte payload (the largest a control frame may have).
fn ping_frame() -> Vec<u8> {
    let mut f = vec![0x89, 0x80 | 125, 1, 2, 3, 4];
    f.extend((0..125u8).map(|i| i ^ [1, 2, 3, 4][usize::from(i % 4)]));
    f
}

/// Reads until the peer closes (EOF or reset); the time it took, or `None` within `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

#[test]
fn a_peer_that_pings_and_never_reads_costs_bounded_memory_and_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let devs = vault(dir.path(), &["a", "b"]);
    let da = daemon(&devs[0], &[], &[]);
    let idle = rss_kib(&da);
    let mut s = upgraded(da.addr);
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    // 64 MiB of pings, never reading a pong: the daemon's pong queue used to grow by as much.
    let frames: Vec<u8> = ping_frame().repeat(1 << 12);
    let start = Instant::now();
    let mut sent = 0usize;
    let mut peak = idle;
    while sent < 64 << 20 && start.elapsed() < Duration::from_secs(30) {
        if s.write_all(&frames).is_err() {
            break; // the daemon stopped reading or closed: either way it holds no more
        }
        sent += frames.len();
        if sent % (8 << 20) < frames.len() {
            peak = peak.max(rss_kib(&da));
        }
    }
    peak = peak.max(rss_kib(&da));
    let closed = closed_within(&mut s, Duration::from_secs(30));
    peak = peak.max(rss_kib(&da));
    eprintln!("idle {idle} KiB, peak {peak} KiB, {} MiB of pings sent, closed after {closed:?}", sent >> 20);
    assert!(peak < idle + 24 * 1024, "memory grew with the pings: {idle} → {peak} KiB");
    assert!(closed.is_some(), "the connection is closed (handshake timeout, then a bounded close)");
    // An honest device still connects and syncs.
    let _db = daemon(&devs[1], &[], &[&da]);
    wait_until(T, "an honest peer connects", || peers_of(&devs[0]).len() == 1);
}

/// One idle half-request from each of `sources` (bound to that address); after a moment,
/// how many the daemon still holds open and how many it closed at once.
async fn half_requests(to: SocketAddr, sources: &[std::net::IpAddr]) -> (usize, usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socks = Vec::new();
    for ip in sources {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(*ip, 0)).unwrap();
        let mut s = sock.connect(to).await.unwrap();
        let _ = s.write_all(b"GET /v1/sync HTTP/1.1\r\nHost: x\r\n").await;
        socks.push(s);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Those over a cap were closed at once; the others wait for the upgrade timeout.
    let (mut open, mut closed) = (0, 0);
    for s in &mut socks {
        let mut b = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(50), s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            _ => open += 1,
        }
    }
    (open, closed)
}

#[test]
fn one_source_cannot_take_every_inbound_slot() {
    let dir = tempfile::tempdir().unwrap();
    let devs = vault(dir.path(), &["a", "b"]);
    // Eight inbound slots in all: without a per-source cap, one host holding eight idle
    // half-requests (each held for the 5 s upgrade timeout) would keep every peer out.
    let da = daemon(&devs[0], &["--max-inbound", "8", "--max-inbound-per-source", "3"], &[]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let attacker: std::net::IpAddr = "127.0.0.9".parse().unwrap();
    let (held, early_closed) = rt.block_on(half_requests(da.addr, &[attacker; 12]));
    assert_eq!((held, early_closed), (3, 9), "three held from one source, the rest closed at once");
    // The cap in all (the first host's sockets are closed by now; the daemon frees a slot
    // when it reads the close): three sources of three each, within the per-source cap,
    // fill the 8 slots and the ninth is closed at once.
    std::thread::sleep(Duration::from_millis(500));
    let others: Vec<std::net::IpAddr> =
        ["127.0.0.10", "127.0.0.11", "127.0.0.12"].iter().flat_map(|a| [a.parse().unwrap(); 3]).collect();
    let (held_all, closed_all) = rt.block_on(half_requests(da.addr, &others));
    assert_eq!((held_all, closed_all), (8, 1), "8 slots in all: the ninth is closed at once");
    // Meanwhile (the attacker keeps re-opening its connections), an honest peer connects.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        let addr = da.addr;
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let mut socks = Vec::new();
                let start = Instant::now();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && start.elapsed() < Duration::from_secs(30) {
                    let sock = tokio::net::TcpSocket::new_v4().unwrap();
                    sock.bind(SocketAddr::new(attacker, 0)).unwrap();
                    if let Ok(mut s) = sock.connect(addr).await {
                        use tokio::io::AsyncWriteExt;
                        let _ = s.write_all(b"GET /v1/sync HTTP/1.1\r\n").await;
                        socks.push(s);
                    }
                    if socks.len() > 200 {
                        socks.remove(0);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        })
    };
    let start = Instant::now();
    let _db = daemon(&devs[1], &[], &[&da]);
    wait_until(T, "an honest peer connects", || peers_of(&devs[0]).len() == 1);
    let took = start.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flood.join().unwrap();
    assert!(took < Duration::from_secs(5), "the honest peer took {took:?}");
}
