//! `hearth-stun-bench`: Hearth's STUN server vs coturn vs a raw UDP echo, side by side.
//!
//! Starts each server as its own process on loopback, drives all three with the same
//! load generator (interleaved rounds, so drift on a noisy machine hits all alike), then
//! measures latency at 50 % of each server's peak, and prints the ratios. Every load run is
//! bounded in requests and seconds; nothing leaves 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use hearth_stun::loadgen::{self, Expect, LoadReport, LoadSpec};
use hearth_stun::server::Echo;
use hearth_stun::{Server, ServerConfig, StunMetrics};

mod procfs;

/// Benchmark the STUN server against coturn and a raw UDP echo server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Requests per peak-load run.
    #[arg(long, default_value_t = 300_000)]
    requests: u64,
    /// Client sockets (source ports).
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Load generator threads the client sockets are spread over.
    #[arg(long, default_value_t = 2)]
    gen_threads: usize,
    /// Requests in flight per client socket.
    #[arg(long, default_value_t = 8)]
    window: usize,
    /// Interleaved rounds per server; the best round counts.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Server threads for Hearth and the echo (coturn uses one per CPU by itself).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Wall-clock cap per load run, in seconds.
    #[arg(long, default_value_t = 20)]
    max_seconds: u64,
    /// Seconds of paced load in the latency phase.
    #[arg(long, default_value_t = 3.0)]
    latency_seconds: f64,
    /// Skip coturn (e.g. where it is not installed).
    #[arg(long)]
    no_coturn: bool,
    /// Internal: run as the echo server on this address.
    #[arg(long, hide = true)]
    echo_server: Option<SocketAddr>,
}

/// A server process that is killed when dropped.
struct Proc {
    name: &'static str,
    addr: SocketAddr,
    expect: Expect,
    child: Child,
}

impl Proc {
    /// CPU seconds (user + system) the server process has used so far, from /proc.
    fn cpu_seconds(&self) -> anyhow::Result<f64> {
        procfs::cpu_seconds(self.child.id()).context("reading /proc stat")
    }
}

/// One peak-load measurement: the generator's report plus the server's CPU use.
#[derive(Clone)]
struct Peak {
    report: LoadReport,
    server_cpu: f64,
}

impl Peak {
    /// Requests answered per CPU-second the server itself spent.
    fn per_cpu_second(&self) -> f64 {
        self.report.ok as f64 / self.server_cpu.max(0.01)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(addr) = args.echo_server {
        return run_echo(addr, args.threads);
    }
    let mut procs = vec![
        spawn_listening(
            "echo",
            Expect::Echo,
            Command::new(std::env::current_exe()?).args([
                "--threads",
                &args.threads.to_string(),
                "--echo-server",
                "127.0.0.1:0",
            ]),
        )?,
        spawn_listening(
            "hearth",
            Expect::Stun,
            Command::new(sibling("hearth-stun")?).args([
                "--bind",
                "127.0.0.1:0",
                "--rate-limit",
                "0",
                "--threads",
                &args.threads.to_string(),
            ]),
        )?,
    ];
    if !args.no_coturn {
        procs.push(spawn_coturn()?);
    }
    println!("hearth-stun-bench: {} requests/run, {} client ports x window {} on {} generator threads, {} rounds, {} server threads, {} CPUs", args.requests, args.clients, args.window, args.gen_threads, args.rounds, args.threads, std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut best: Vec<Option<Peak>> = vec![None; procs.len()];
    for round in 0..args.rounds {
        for (i, p) in procs.iter().enumerate() {
            let spec = LoadSpec {
                target: p.addr,
                clients: args.clients,
                threads: args.gen_threads,
                window: args.window,
                total: args.requests,
                max_duration: Duration::from_secs(args.max_seconds),
                pace: None,
                expect: p.expect,
            };
            let cpu0 = p.cpu_seconds()?;
            let r = loadgen::run(&spec).with_context(|| format!("load on {}", p.name))?;
            let peak = Peak { server_cpu: p.cpu_seconds()? - cpu0, report: r };
            let r = &peak.report;
            println!(
                "  round {} {:<7} {:>9.0} req/s  {:>9.0} req/server-CPU-s  ok {} bad {} lost {}  p50 {} us  p99 {} us",
                round + 1,
                p.name,
                r.rate(),
                peak.per_cpu_second(),
                r.ok,
                r.bad,
                r.lost,
                r.quantile_us(0.5),
                r.quantile_us(0.99)
            );
            if r.bad > 0 {
                bail!("{} sent {} wrong responses", p.name, r.bad);
            }
            if best[i].as_ref().is_none_or(|b| r.rate() > b.report.rate()) {
                best[i] = Some(peak);
            }
        }
    }
    let peak =
        |name: &str| procs.iter().position(|p| p.name == name).and_then(|i| best[i].as_ref()).map(|b| b.report.rate());
    let eff =
        |name: &str| procs.iter().position(|p| p.name == name).and_then(|i| best[i].as_ref()).map(Peak::per_cpu_second);
    println!("\nlatency at 50% of each server's own peak ({} s open loop each):", args.latency_seconds);
    let mut half_p99 = Vec::new();
    for (i, p) in procs.iter().enumerate() {
        let Some(b) = &best[i] else { continue };
        let rate = b.report.rate() / 2.0;
        let total = (rate * args.latency_seconds) as u64;
        let spec = LoadSpec {
            target: p.addr,
            clients: args.clients,
            threads: args.gen_threads,
            window: args.window,
            total,
            max_duration: Duration::from_secs(10),
            pace: Some(rate),
            expect: p.expect,
        };
        let r = loadgen::run(&spec)?;
        println!(
            "  {:<7} at {:>8.0} req/s: achieved {:>8.0}  p50 {} us  p99 {} us  lost {}",
            p.name,
            rate,
            r.rate(),
            r.quantile_us(0.5),
            r.quantile_us(0.99),
            r.lost
        );
        half_p99.push((p.name, r.quantile_us(0.99)));
    }
    println!("\nsummary (best of {} rounds):", args.rounds);
    for (i, p) in procs.iter().enumerate() {
        if let Some(b) = &best[i] {
            println!(
                "  {:<7} peak {:>9.0} req/s, {:>9.0} req per server CPU-second",
                p.name,
                b.report.rate(),
                b.per_cpu_second()
            );
        }
    }
    if let (Some(h), Some(e)) = (peak("hearth"), peak("echo")) {
        println!("  hearth / echo   = {:.2}  (target >= 0.70)", h / e);
    }
    if let (Some(h), Some(c)) = (peak("hearth"), peak("coturn")) {
        println!("  hearth / coturn = {:.2}  (target >= 2.00)", h / c);
    }
    if let (Some(h), Some(c)) = (eff("hearth"), eff("coturn")) {
        println!("  hearth / coturn per server CPU-second = {:.2}", h / c);
    }
    if let Some((_, p99)) = half_p99.iter().find(|(n, _)| *n == "hearth") {
        println!("  hearth p99 at 50% load = {p99} us  (target < 1000 us)");
    }
    Ok(())
}

/// The path of another binary built next to this one.
fn sibling(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!("{} not found next to {}: build it first (cargo build --release -p hearth-stun)", name, exe.display());
    }
    Ok(path)
}

/// Spawns a process that prints `listening udp ADDR` on stdout and returns once it has.
fn spawn_listening(name: &'static str, expect: Expect, cmd: &mut Command) -> anyhow::Result<Proc> {
    let mut child =
        cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().with_context(|| format!("starting {name}"))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let addr =
        line.trim().strip_prefix("listening udp ").with_context(|| format!("{name} printed {line:?}"))?.parse()?;
    Ok(Proc { name, addr, expect, child })
}

/// A loopback port free for UDP and TCP, with the next port free as well (coturn also
/// listens on port + 1 for RFC 5780, and on TCP).
fn coturn_port() -> anyhow::Result<u16> {
    for _ in 0..50 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if port == u16::MAX {
            continue;
        }
        let free =
            |p: u16| UdpSocket::bind(("127.0.0.1", p)).is_ok() && std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 1) {
            return Ok(port);
        }
    }
    bail!("no free port pair for coturn")
}

/// Starts coturn as a plain STUN server on a free loopback port and waits until it answers
/// (three attempts on different ports: a port can be taken between the check and the bind).
fn spawn_coturn() -> anyhow::Result<Proc> {
    let mut last = None;
    for _ in 0..3 {
        let port = coturn_port()?;
        let child = Command::new("turnserver")
            .args([
                "--stun-only",
                "--listening-ip",
                "127.0.0.1",
                "--listening-port",
                &port.to_string(),
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                "-n",
                "--no-stdout-log",
                "--log-file",
                "/dev/null",
                "--pidfile",
                "/dev/null",
                "--no-software-attribute",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting turnserver (apt-get install coturn, or pass --no-coturn)")?;
        let p = Proc { name: "coturn", addr: SocketAddr::from(([127, 0, 0, 1], port)), expect: Expect::Stun, child };
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if hearth_stun::client::query(&sock, p.addr, None, Duration::from_millis(200)).is_ok() {
                return Ok(p);
            }
        }
        last = Some(p.addr);
    }
    bail!("coturn did not answer (last tried {last:?}) within 10 s, three times")
}

/// The echo baseline: the same server engine with a handler that copies the datagram back.
fn run_echo(addr: SocketAddr, threads: usize) -> anyhow::Result<()> {
    let cfg = ServerConfig { binds: vec![addr], threads, rate_limit: None, ..ServerConfig::default() };
    let metrics = StunMetrics::register(&prometheus::Registry::new())?;
    let server = Server::start_service(&cfg, Echo, metrics)?;
    println!("listening udp {}", server.local_addrs()[0]);
    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&stop))?;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    server.shutdown();
    Ok(())
}
