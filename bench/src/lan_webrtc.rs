//! `hearth-lan-bench --webrtc`: Hearth's WebRTC path on loopback.
//!
//! - In process, two `node::webrtc::conn::Conn` over real UDP loopback sockets, signaling
//!   handed over directly: the time from the offer (the first signal sent) to both channels
//!   open, and bulk throughput with Noise (ChaCha20-Poly1305, as the sync session) on top.
//! - Real processes: `hearth-rendezvous` and two `hearth daemon`s with only its URL (no mDNS,
//!   no LAN peer): the initial sync of the vault to a new device, and one edit A → B.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hearth_e2e::device::{Daemon, Device};
use hearth_e2e::rendezvous::Rv;
use hearth_peer::actions::WriteRequest;
use hearth_peer::identity::VaultSecret;
use hearth_peer::ids::DeviceId;
use hearth_peer::node::control::{Client, Reply, Request};
use hearth_peer::node::webrtc::conn::{certificate, Conn, ConnEvent};
use str0m::Candidate;
use tokio::net::UdpSocket;

use crate::lan_hearth::{home, source, wait_for};
use crate::lan_webrtc_bulk::{self as bulk_side, WINDOW};
use crate::pct;
use crate::workload::records;

/// One side of an in-process pair.
struct Side {
    conn: Conn,
    sock: UdpSocket,
    local: SocketAddr,
    got: Vec<Vec<u8>>,
    open: bool,
}

async fn bind() -> anyhow::Result<(UdpSocket, SocketAddr)> {
    let s = hearth_peer::node::webrtc::gather::udp_socket("127.0.0.1:0".parse()?)?;
    let a = s.local_addr()?;
    Ok((s, a))
}

impl Side {
    /// Sends what the connection has; true if anything went out.
    async fn flush(&mut self) -> anyhow::Result<bool> {
        let mut sent = false;
        while let Some(e) = self.conn.poll_event() {
            match e {
                ConnEvent::Transmit { destination, contents, .. } => {
                    self.sock.send_to(&contents, destination).await?;
                    sent = true;
                }
                ConnEvent::Open => self.open = true,
                ConnEvent::Message(m) => self.got.push(m),
                ConnEvent::Closed => bail!("connection closed"),
            }
        }
        Ok(sent)
    }
}

/// Drives both sides until `done` (or 20 s).
async fn drive(a: &mut Side, b: &mut Side, mut done: impl FnMut(&Side, &Side) -> bool) -> anyhow::Result<()> {
    let end = Instant::now() + Duration::from_secs(20);
    let (mut ba, mut bb) = (vec![0u8; 2048], vec![0u8; 2048]);
    while !done(a, b) {
        if Instant::now() > end {
            bail!("timed out");
        }
        a.flush().await?;
        b.flush().await?;
        if done(a, b) {
            break;
        }
        let wake = tokio::time::Instant::from_std(a.conn.deadline().min(b.conn.deadline()));
        tokio::select! {
            r = a.sock.recv_from(&mut ba) => {
                let (n, from) = r?;
                a.conn.receive(Instant::now(), from, a.local, &ba[..n]);
            }
            r = b.sock.recv_from(&mut bb) => {
                let (n, from) = r?;
                b.conn.receive(Instant::now(), from, b.local, &bb[..n]);
            }
            () = tokio::time::sleep_until(wake) => {
                a.conn.timeout(Instant::now());
                b.conn.timeout(Instant::now());
            }
        }
    }
    Ok(())
}

/// A pair set up and opened; returns it and the time from the offer to both channels open.
async fn open_pair(cert: &str0m::config::DtlsCert) -> anyhow::Result<(Side, Side, Duration)> {
    let (sa, la) = bind().await?;
    let (sb, lb) = bind().await?;
    let t0 = Instant::now();
    let (mut ca, offer) = Conn::offer(Instant::now(), cert, vec![Candidate::host(la, "udp")?])?;
    let (cb, answer) = Conn::answer(Instant::now(), cert, vec![Candidate::host(lb, "udp")?], &offer)?;
    ca.accept_answer(Instant::now(), &answer)?;
    let mut a = Side { conn: ca, sock: sa, local: la, got: Vec::new(), open: false };
    let mut b = Side { conn: cb, sock: sb, local: lb, got: Vec::new(), open: false };
    drive(&mut a, &mut b, |a, b| a.open && b.open).await?;
    Ok((a, b, t0.elapsed()))
}

/// Runs of each side in the bulk comparison (interleaved, so both meet the same noise).
const BULK_RUNS: usize = 5;

/// The bulk transfer, Hearth and webrtc-rs interleaved; the lines to print.
fn bulk(rt: &tokio::runtime::Runtime, cert: &str0m::config::DtlsCert) -> String {
    let (mut ours, mut theirs, mut why) = (Vec::new(), Vec::new(), None);
    for _ in 0..BULK_RUNS {
        match rt.block_on(bulk_side::hearth(cert)) {
            Ok(m) => ours.push(m),
            Err(e) => why = Some(format!("Hearth run failed: {e:#}")),
        }
        match bulk_side::webrtc_rs() {
            Ok(m) => theirs.push(m),
            Err(e) => why = Some(format!("webrtc-rs {e}")),
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied()
    };
    let range = |v: &[f64]| match (v.first(), v.last()) {
        (Some(lo), Some(hi)) => format!(" [{lo:.0}–{hi:.0}]"),
        _ => String::new(),
    };
    let (m_ours, m_theirs) = (median(&mut ours), median(&mut theirs));
    let mut out = format!(
        "  data channel A → B, {} MiB in 64 KiB messages, ≤ {} KiB buffered at the sender, median of {BULK_RUNS}:\n",
        bulk_side::TOTAL >> 20,
        WINDOW >> 10
    );
    let fmt = |m: Option<f64>| m.map_or_else(|| "not measured".to_owned(), |m| format!("{m:.0} Mbit/s"));
    out += &format!("    Hearth (str0m, Noise on top, one task per peer): {}{}\n", fmt(m_ours), range(&ours));
    out += &format!("    webrtc-rs 0.21 (no Noise), its own peers:          {}{}", fmt(m_theirs), range(&theirs));
    if let (Some(o), Some(t)) = (m_ours, m_theirs) {
        let ok = |b: bool| if b { "✓" } else { "✗" };
        out += &format!(
            "\n    Hearth / webrtc-rs = {:.2}× (goal ≥ 1× {}); Hearth ≥ 300 Mbit/s {}",
            o / t,
            ok(o >= t),
            ok(o >= 300.0)
        );
    }
    if let Some(w) = why {
        out += &format!("\n    ({w})");
    }
    out
}

fn daemon(dev: &Device, url: &str, stun: &str) -> Daemon {
    dev.daemon_logged(
        &["--listen", "127.0.0.1:0", "--no-mdns", "--rendezvous", url, "--stun", stun],
        &dev.home.with_extension("log"),
    )
}

/// Runs the benchmark and prints its numbers.
pub(crate) fn run(items: usize, edits: usize, opens: usize) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    let cert = certificate().context("DTLS certificate")?;
    let mut open_times = Vec::new();
    for _ in 0..opens {
        let (_, _, t) = rt.block_on(open_pair(&cert)).context("opening a channel")?;
        open_times.push(t);
    }
    let bulk = bulk(&rt, &cert);

    let dir = tempfile::tempdir()?;
    let secret = VaultSecret::from_bytes([7; 32]);
    let a_id = source(dir.path(), &secret, items)?;
    let rv = Rv::start(&[], None);
    let url = rv.url();
    let stun = rv.stun.context("STUN")?.to_string();
    let a = Device::new(dir.path(), "a");
    let _da = daemon(&a, &url, &stun);
    home(dir.path(), "b", &secret, DeviceId([20; 16]))?;
    let b = Device::new(dir.path(), "b");
    let t0 = Instant::now();
    let _db = daemon(&b, &url, &stun);
    wait_for(&b.home, a_id, items as u64, Duration::from_secs(120))?;
    let initial = t0.elapsed();
    let st = b.json(&["status"]);
    let path = st["peers"][0]["path"].as_str().unwrap_or_default().to_owned();
    let bytes = st["peers"][0]["bytes_received"].as_u64().unwrap_or(0);
    if path != "webrtc" {
        bail!("B synced over {path:?}, not WebRTC");
    }
    let mut control = Client::connect(&a.home).context("a's daemon")?;
    let mut seq = items as u64;
    let mut lat = Vec::new();
    for i in 0..edits {
        let write = WriteRequest::Edit {
            name: records(1).remove(0).title,
            fields: vec![("password".into(), Some(format!("w{i}")))],
            rename: None,
            secret: vec![],
        };
        let t = Instant::now();
        match control.request(&Request::Write { write }, Duration::from_secs(10))? {
            Reply::Written(_) => {}
            other => bail!("edit: {other:?}"),
        }
        seq += 1;
        wait_for(&b.home, a_id, seq, Duration::from_secs(10))?;
        lat.push(t.elapsed());
    }

    println!("hearth-lan-bench --webrtc: loopback, release build");
    println!(
        "  offer → both channels open ({opens} runs, certificate made ahead): p50 {:.1} ms, p90 {:.1} ms",
        pct(&open_times, 0.5),
        pct(&open_times, 0.9)
    );
    println!("{bulk}");
    println!(
        "  initial sync of {items} items to a new device through the rendezvous (daemon start → all held): {:.0} ms ({:.1} MiB received, {:.0} Mbit/s over the whole time)",
        initial.as_secs_f64() * 1000.0,
        bytes as f64 / (1 << 20) as f64,
        bytes as f64 * 8.0 / initial.as_secs_f64() / 1e6
    );
    println!(
        "  one edit A → B over WebRTC ({edits} edits): p50 {:.1} ms, p90 {:.1} ms",
        pct(&lat, 0.5),
        pct(&lat, 0.9)
    );
    Ok(())
}
