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
use hearth_peer::ids::DeviceId;
use hearth_proto::membership::{Enrollment, MembershipBody, MembershipRecord};
use hearth_rendezvous::client::Identity;
use tokio::sync::Semaphore;

mod procfs;
mod rendezvous_load;
mod rendezvous_soak;
use rendezvous_load as load;

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
    #[arg(long, default_value_t = 20_000)]
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
    /// After the comparison, soak hearth-rendezvous (with redis-server) for this many seconds
    /// under churn and hostile clients (0: skip).
    #[arg(long, default_value_t = 0)]
    soak_secs: u64,
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
    /// CPU seconds (user + system) the server process has used.
    fn cpu_seconds(&self) -> f64 {
        procfs::cpu_seconds(self.child.id()).unwrap_or(0.0)
    }

    fn rss_kib(&self) -> u64 {
        procfs::status_kib(&self.child.id().to_string(), "VmRSS").unwrap_or(0)
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

async fn start_hearth(cpu: Option<usize>) -> anyhow::Result<Server> {
    let port = free_port()?;
    let exe = std::env::current_exe()?.with_file_name("hearth-rendezvous");
    let child = on_cpu(&exe, cpu)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--no-stun", "--metrics-bind", "127.0.0.1:0"])
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

async fn start_peerjs(dir: &str, cpu: Option<usize>) -> anyhow::Result<Server> {
    let port = free_port()?;
    let node = std::path::Path::new("node");
    let child = on_cpu(node, cpu)
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
            enrolled_identity(&root, device_key, DeviceId(id))
        })
        .collect()
}

/// The identity of `device`, whose key is `device_key`, enrolled by the vault's `root`.
fn enrolled_identity(root: &SigningKey, device_key: SigningKey, device: DeviceId) -> Identity {
    let record = MembershipRecord::sign(
        root,
        MembershipBody::Enroll(Enrollment {
            vault_id: hearth_proto::vault_id_of(&root.verifying_key()),
            device_id: device,
            sign_pk: device_key.verifying_key().to_bytes(),
            dh_pk: [0; 32],
            at_ms: 0,
        }),
    );
    Identity { root: root.verifying_key(), record, device_key, revocations: Vec::new() }
}

/// Phase 1: server RSS growth per idle admitted connection.
async fn idle_capacity(server: &Server, n: usize) -> anyhow::Result<f64> {
    let before = server.rss_kib();
    let gate = Arc::new(Semaphore::new(128));
    let ids = Arc::new(identities(if server.name == "hearth" { n } else { 0 }));
    let mut tasks = Vec::with_capacity(n);
    let t0 = Instant::now();
    for i in 0..n {
        let (gate, ids, addr, name) = (Arc::clone(&gate), Arc::clone(&ids), server.addr, server.name);
        tasks.push(tokio::spawn(async move {
            let _p = gate.acquire_owned().await?;
            if name == "hearth" {
                Ok::<_, anyhow::Error>(load::hearth_join(addr, &ids[i]).await?.0)
            } else {
                load::peerjs_join(addr, &format!("p{i}")).await
            }
        }));
    }
    let mut held = Vec::with_capacity(n);
    for t in tasks {
        // A real client keeps reading (presence updates); so do these.
        held.push(tokio::spawn(t.await??.drain()));
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

/// Relay results.
struct Relay {
    rate: f64,
    p50_us: u32,
    p99_us: u32,
}

/// Phase 2: P pairs, each keeping `window` messages in flight, `per_pair` messages each,
/// optionally paced to `rate` msgs/s in total. Raw frames (see `load`): the generator is
/// kept far cheaper per message than the servers so that they set the pace.
async fn relay(
    server: &Server,
    pairs: usize,
    per_pair: usize,
    window: usize,
    rate: Option<f64>,
) -> anyhow::Result<Relay> {
    let ids = identities(pairs * 2);
    let mut set = Vec::with_capacity(pairs);
    for p in 0..pairs {
        let mask = (p as u32).wrapping_mul(0x9E37_79B9).to_be_bytes();
        // Pairs within one vault: vaults hold 50 devices, so 2p and 2p+1 share one.
        set.push(if server.name == "hearth" {
            let (tx, _) = load::hearth_join(server.addr, &ids[2 * p]).await?;
            let (rx, dev) = load::hearth_join(server.addr, &ids[2 * p + 1]).await?;
            load::Pair { tx, rx, template: load::Template::hearth(&dev, mask)? }
        } else {
            let tx = load::peerjs_join(server.addr, &format!("s{p}")).await?;
            let rx = load::peerjs_join(server.addr, &format!("r{p}")).await?;
            load::Pair { tx, rx, template: load::Template::peerjs(&format!("r{p}"), mask)? }
        });
    }
    let origin = Instant::now();
    let start = origin + Duration::from_millis(200);
    let pace = rate.map(|r| Duration::from_secs_f64(pairs as f64 / r));
    let tasks: Vec<_> = set
        .into_iter()
        .map(|p| tokio::spawn(load::run_pair(p, per_pair, window, pace, origin, start, Duration::from_secs(60))))
        .collect();
    let mut lat = Vec::with_capacity(pairs * per_pair);
    for t in tasks {
        lat.extend(t.await??.0);
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let q = |x: f64| lat.get(((lat.len().max(1) - 1) as f64 * x) as usize).copied().unwrap_or(0);
    Ok(Relay { rate: lat.len() as f64 / elapsed, p50_us: q(0.5), p99_us: q(0.99) })
}

/// The CPUs this process may use (from `/proc/self/status`).
fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap_or("").trim();
    let mut cpus = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
            cpus.extend(a..=b);
        }
    }
    cpus
}

/// With two or more CPUs: the CPU for the server under test, after pinning this process
/// (the load generator, one thread) to another. Side by side, each server then gets one
/// whole core and the generator its own, so neither steals from the other.
fn pin() -> Option<usize> {
    let cpus = allowed_cpus();
    let (&server, &generator) = (cpus.first()?, cpus.last()?);
    if server == generator {
        return None;
    }
    let ok = Command::new("taskset")
        .args(["-p", "-c", &generator.to_string(), &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(server)
}

/// `program` to run on `cpu` (through `taskset`) when given.
fn on_cpu(program: &std::path::Path, cpu: Option<usize>) -> Command {
    match cpu {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", &c.to_string()]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

fn main() -> anyhow::Result<()> {
    // Pinned before the runtime starts, so every thread of the generator inherits it.
    let server_cpu = pin();
    tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(run(server_cpu))
}

async fn run(server_cpu: Option<usize>) -> anyhow::Result<()> {
    let a = Args::parse();
    match server_cpu {
        Some(c) => println!("servers pinned to CPU {c}, load generator (one thread) to another"),
        None => println!("one CPU: servers and load generator share it"),
    }
    let peerjs = !a.peerjs_dir.is_empty();
    if let Some(addr) = a.hold_against {
        let mut held = Vec::new();
        for id in identities(a.connections) {
            held.push(load::hearth_join(addr, &id).await?);
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
        let s = start_hearth(server_cpu).await?;
        idle_capacity(&s, a.connections).await?
    };
    let p = if peerjs {
        let s = start_peerjs(&a.peerjs_dir, server_cpu).await?;
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
        let s = if name == "hearth" {
            start_hearth(server_cpu).await?
        } else {
            start_peerjs(&a.peerjs_dir, server_cpu).await?
        };
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
    if a.soak_secs > 0 {
        rendezvous_soak::run(a.soak_secs).await?;
    }
    Ok(())
}
