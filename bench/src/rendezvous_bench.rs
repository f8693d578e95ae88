//! `hearth-rendezvous-bench`: hearth-rendezvous vs the PeerJS server, side by side.
//!
//! 1. Idle capacity: a fresh server process, N admitted (Hearth) / registered (PeerJS)
//!    WebSocket connections, server RSS growth per connection.
//! 2. Relay: P sender→receiver pairs, each with a bounded window of messages in flight:
//!    messages/s at saturation, then p50/p99 latency at one fixed rate for both servers.
//!
//! Everything runs on loopback; every phase is bounded in count and time.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use ed25519_dalek::SigningKey;
use futures_util::{SinkExt, StreamExt};
use hearth_peer::ids::DeviceId;
use hearth_proto::membership::{Enrollment, MembershipBody, MembershipRecord};
use hearth_rendezvous::client::{self, Identity, Join};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

/// hearth-rendezvous vs PeerJS server: idle memory per connection and relay throughput.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Idle connections to hold open (the open-files limit here is 20,000 per process).
    #[arg(long, default_value_t = 15_000)]
    connections: usize,
    /// Sender→receiver pairs in the relay phase.
    #[arg(long, default_value_t = 50)]
    pairs: usize,
    /// Messages per pair at saturation.
    #[arg(long, default_value_t = 2_000)]
    messages: usize,
    /// Messages in flight per pair.
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Total messages/s of the fixed-load latency phase (both servers).
    #[arg(long, default_value_t = 5_000.0)]
    fixed_rate: f64,
    /// Profiling aid: only open --connections admitted connections to this running server
    /// and hold them for 10 s.
    #[arg(long, hide = true)]
    hold_against: Option<SocketAddr>,
    /// Directory holding node_modules/peer (npm install peer@1.0.2); empty skips PeerJS.
    #[arg(long, default_value = "")]
    peerjs_dir: String,
}

/// A server process killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    name: &'static str,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// CPU seconds (user + system) the server process has used, from /proc (100 ticks/s).
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<u64> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        // After the state letter: fields 14 and 15 of the full line are utime and stime.
        (f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0)) as f64 / 100.0
    }

    fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn wait_listening(addr: SocketAddr) -> anyhow::Result<()> {
    let until = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if Instant::now() > until {
            bail!("server on {addr} did not start");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn start_hearth() -> anyhow::Result<Server> {
    let port = free_port()?;
    let exe = std::env::current_exe()?.with_file_name("hearth-rendezvous");
    let child = Command::new(&exe)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--no-stun"])
        .args(["--max-connections", "19000", "--max-connections-per-ip", "19000", "--handshakes-per-ip", "1000000"])
        .args(["--messages-per-sec", "1000000", "--max-room-size", "64", "--idle-timeout", "600"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env("RUST_LOG", "warn")
        .spawn()
        .with_context(|| format!("starting {} (cargo build --release -p hearth-rendezvous)", exe.display()))?;
    let s = Server { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), name: "hearth" };
    wait_listening(s.addr).await?;
    Ok(s)
}

async fn start_peerjs(dir: &str) -> anyhow::Result<Server> {
    let port = free_port()?;
    let child = Command::new("node")
        .arg(format!("{dir}/node_modules/peer/dist/bin/peerjs.js"))
        .args(["--port", &port.to_string(), "--host", "127.0.0.1", "-c", "20000", "--alive_timeout", "600000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting the PeerJS server (npm install peer@1.0.2)")?;
    let s = Server { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), name: "peerjs" };
    wait_listening(s.addr).await?;
    Ok(s)
}

/// Identities for `n` devices spread over vaults of 50 (the room limit is 64).
fn identities(n: usize) -> Vec<Identity> {
    (0..n)
        .map(|i| {
            let vault = (i / 50) as u32;
            let mut rb = [0u8; 32];
            rb[..4].copy_from_slice(&vault.to_be_bytes());
            rb[31] = 1;
            let root = SigningKey::from_bytes(&rb);
            let mut db = [0u8; 32];
            db[..8].copy_from_slice(&(i as u64).to_be_bytes());
            db[31] = 2;
            let device_key = SigningKey::from_bytes(&db);
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let record = MembershipRecord::sign(
                &root,
                MembershipBody::Enroll(Enrollment {
                    vault_id: hearth_proto::vault_id_of(&root.verifying_key()),
                    device_id: DeviceId(id),
                    sign_pk: device_key.verifying_key().to_bytes(),
                    dh_pk: [0; 32],
                    at_ms: 0,
                }),
            );
            Identity { root: root.verifying_key(), record, device_key }
        })
        .collect()
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a PeerJS connection as `id` and waits for OPEN.
async fn peerjs_connect(addr: SocketAddr, id: &str) -> anyhow::Result<Ws> {
    let url = format!("ws://{addr}/peerjs?key=peerjs&id={id}&token=t{id}");
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.contains("\"OPEN\"") => Ok(ws),
        other => bail!("PeerJS did not open: {other:?}"),
    }
}

/// Phase 1: server RSS growth per idle admitted connection.
async fn idle_capacity(server: &Server, n: usize) -> anyhow::Result<f64> {
    let before = server.rss_kib();
    let url = format!("ws://{}/v1/signal", server.addr);
    let gate = Arc::new(Semaphore::new(128));
    let ids = Arc::new(identities(if server.name == "hearth" { n } else { 0 }));
    let mut tasks = Vec::with_capacity(n);
    let t0 = Instant::now();
    for i in 0..n {
        let (gate, url, ids, addr, name) = (Arc::clone(&gate), url.clone(), Arc::clone(&ids), server.addr, server.name);
        tasks.push(tokio::spawn(async move {
            let _p = gate.acquire_owned().await?;
            if name == "hearth" {
                let c = client::connect(&url, &Join::Vault(Box::new(ids[i].clone()))).await?;
                Ok::<_, anyhow::Error>(Conn::Hearth(Box::new(c)))
            } else {
                Ok(Conn::PeerJs(Box::new(peerjs_connect(addr, &format!("p{i}")).await?)))
            }
        }));
    }
    let mut held = Vec::with_capacity(n);
    for t in tasks {
        // A real client keeps reading (presence updates); so do these.
        held.push(tokio::spawn(drain(t.await??)));
    }
    let opened = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await; // let the server settle
    let after = server.rss_kib();
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / n as f64;
    println!(
        "  {:<7} {n} connections open in {:.1} s; RSS {:.1} MiB -> {:.1} MiB: {:.2} KiB per connection",
        server.name,
        opened.as_secs_f64(),
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        per / 1024.0
    );
    for h in held {
        h.abort();
    }
    Ok(per)
}

/// Reads and discards everything a held connection receives.
async fn drain(c: Conn) {
    match c {
        Conn::Hearth(mut c) => while c.next().await.is_ok() {},
        Conn::PeerJs(mut ws) => while let Some(Ok(_)) = ws.next().await {},
    }
}

enum Conn {
    Hearth(Box<client::Connection>),
    PeerJs(Box<Ws>),
}

/// Relay results.
struct Relay {
    rate: f64,
    p50_us: u64,
    p99_us: u64,
}

/// Phase 2: P pairs; each sender keeps `window` messages in flight (released when its
/// receiver gets one), `per_pair` messages each, optionally paced to `rate` msgs/s in total.
async fn relay(
    server: &Server,
    pairs: usize,
    per_pair: usize,
    window: usize,
    rate: Option<f64>,
) -> anyhow::Result<Relay> {
    let url = format!("ws://{}/v1/signal", server.addr);
    let ids = identities(pairs * 2);
    let start = Instant::now() + Duration::from_millis(500);
    let mut tasks = Vec::new();
    for p in 0..pairs {
        let credit = Arc::new(Semaphore::new(window));
        let (url, addr, name) = (url.clone(), server.addr, server.name);
        let (sid, rid) = (ids[2 * p].clone(), ids[2 * p + 1].clone());
        // Pairs within one vault: vaults hold 50 devices, so 2p and 2p+1 share one.
        let (mut tx, mut rx, rx_dev) = if name == "hearth" {
            let s = client::connect(&url, &Join::Vault(Box::new(sid))).await?;
            let r = client::connect(&url, &Join::Vault(Box::new(rid))).await?;
            let dev = r.device;
            (Conn::Hearth(Box::new(s)), Conn::Hearth(Box::new(r)), dev.to_hex())
        } else {
            let s = peerjs_connect(addr, &format!("s{p}")).await?;
            let r = peerjs_connect(addr, &format!("r{p}")).await?;
            (Conn::PeerJs(Box::new(s)), Conn::PeerJs(Box::new(r)), format!("r{p}"))
        };
        let credit_rx = Arc::clone(&credit);
        let receiver = tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_pair);
            while lat.len() < per_pair {
                let stamp = match &mut rx {
                    Conn::Hearth(c) => match tokio::time::timeout(Duration::from_secs(10), c.next()).await?? {
                        client::Event::Signal { payload, .. } => {
                            u64::from_be_bytes(payload.get(..8).context("short payload")?.try_into()?)
                        }
                        _ => continue,
                    },
                    Conn::PeerJs(ws) => match tokio::time::timeout(Duration::from_secs(10), ws.next()).await? {
                        Some(Ok(Message::Text(t))) if t.contains("\"OFFER\"") => {
                            let v: serde_json::Value = serde_json::from_str(&t)?;
                            v["payload"]["t"].as_u64().unwrap_or(0)
                        }
                        Some(Ok(_)) => continue,
                        other => bail!("PeerJS receiver: {other:?}"),
                    },
                };
                lat.push(now_us().saturating_sub(stamp));
                credit_rx.add_permits(1);
            }
            Ok::<_, anyhow::Error>(lat)
        });
        let sender = tokio::spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            let interval = rate.map(|r| Duration::from_secs_f64(pairs as f64 / r));
            let filler = "x".repeat(180);
            for i in 0..per_pair {
                if let Some(iv) = interval {
                    tokio::time::sleep_until((start + iv * i as u32).into()).await;
                }
                credit.acquire().await?.forget();
                let t = now_us();
                match &mut tx {
                    Conn::Hearth(c) => {
                        let mut payload = t.to_be_bytes().to_vec();
                        payload.extend_from_slice(filler.as_bytes());
                        let to = DeviceId::from_hex(&rx_dev).context("device")?;
                        c.signal(to, &payload).await?;
                    }
                    Conn::PeerJs(ws) => {
                        let m = serde_json::json!({"type": "OFFER", "dst": rx_dev, "payload": {"t": t, "sdp": filler}});
                        ws.send(Message::Text(m.to_string().into())).await?;
                    }
                }
            }
            Ok::<_, anyhow::Error>(tx)
        });
        tasks.push((sender, receiver));
    }
    let mut lat = Vec::new();
    let mut keep = Vec::new();
    for (s, r) in tasks {
        lat.extend(r.await??);
        keep.push(s.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let q = |x: f64| lat.get(((lat.len().max(1) - 1) as f64 * x) as usize).copied().unwrap_or(0);
    Ok(Relay { rate: lat.len() as f64 / elapsed, p50_us: q(0.5), p99_us: q(0.99) })
}

fn now_us() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let peerjs = !a.peerjs_dir.is_empty();
    if let Some(addr) = a.hold_against {
        let url = format!("ws://{addr}/v1/signal");
        let mut held = Vec::new();
        for id in identities(a.connections) {
            held.push(client::connect(&url, &Join::Vault(Box::new(id))).await?);
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        return Ok(());
    }
    println!(
        "hearth-rendezvous-bench: {} idle connections; relay {} pairs x {} msgs, window {}",
        a.connections, a.pairs, a.messages, a.window
    );
    println!("\nidle capacity (fresh server process each):");
    let h = {
        let s = start_hearth().await?;
        idle_capacity(&s, a.connections).await?
    };
    let p = if peerjs {
        let s = start_peerjs(&a.peerjs_dir).await?;
        Some(idle_capacity(&s, a.connections).await?)
    } else {
        None
    };
    println!("\nrelay at saturation, then at a fixed {} msgs/s:", a.fixed_rate);
    let mut results = Vec::new();
    for name in ["hearth", "peerjs"] {
        if name == "peerjs" && !peerjs {
            continue;
        }
        let s = if name == "hearth" { start_hearth().await? } else { start_peerjs(&a.peerjs_dir).await? };
        let cpu0 = s.cpu_seconds();
        let sat = relay(&s, a.pairs, a.messages, a.window, None).await?;
        let per_cpu = (a.pairs * a.messages) as f64 / (s.cpu_seconds() - cpu0).max(0.01);
        let per_pair = ((a.fixed_rate * 3.0) as usize / a.pairs).max(1);
        let fixed = relay(&s, a.pairs, per_pair, a.window, Some(a.fixed_rate)).await?;
        println!(
            "  {name:<7} saturation {:>9.0} msgs/s, {:>9.0} msgs per server CPU-second (p50 {} us, p99 {} us); fixed load: achieved {:.0} msgs/s, p50 {} us, p99 {} us",
            sat.rate, per_cpu, sat.p50_us, sat.p99_us, fixed.rate, fixed.p50_us, fixed.p99_us
        );
        results.push((name, sat, fixed, per_cpu));
    }
    println!("\nsummary:");
    println!("  hearth idle RSS per connection: {:.2} KiB", h / 1024.0);
    if let Some(p) = p {
        println!(
            "  peerjs idle RSS per connection: {:.2} KiB  -> hearth / peerjs = {:.2} (target < 1)",
            p / 1024.0,
            h / p
        );
    }
    if let [(_, hs, hf, hc), (_, ps, pf, pc)] = &results[..] {
        println!("  relay msgs/s hearth / peerjs = {:.2} (target >= 5)", hs.rate / ps.rate);
        println!("  relay msgs per server CPU-second hearth / peerjs = {:.2}", hc / pc);
        println!("  p99 at fixed load: hearth {} us, peerjs {} us (target: hearth <= peerjs)", hf.p99_us, pf.p99_us);
    }
    Ok(())
}
