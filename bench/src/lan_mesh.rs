//! `hearth-lan-bench --mesh N`: how entries cross a mesh of real `hearth daemon` processes on
//! loopback (static peers, no mDNS), for a line and a full mesh of 2..=N devices. Per
//! topology: entry sends per delivery and bytes per delivery (summed over every daemon's
//! `status`), one edit until every device holds it (p50/p99), and the writer's latency (the
//! control-socket write, p50/p99). `--hearth PATH` measures another build of the binary (an
//! older one, for a before/after in one run).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hearth_e2e::Proc;
use hearth_peer::actions::WriteRequest;
use hearth_peer::identity::VaultSecret;
use hearth_peer::ids::DeviceId;
use hearth_peer::node::control::{Reply, Request};

use crate::lan_hearth::{self, control};
use crate::pct;

/// One topology's numbers.
pub(crate) struct MeshResult {
    pub(crate) topology: &'static str,
    pub(crate) devices: usize,
    pub(crate) sends_per_delivery: f64,
    pub(crate) bytes_per_delivery: f64,
    pub(crate) dup_per_delivery: f64,
    pub(crate) to_all: Vec<Duration>,
    pub(crate) write: Vec<Duration>,
}

struct Node {
    home: PathBuf,
    id: DeviceId,
    _proc: Proc,
    addr: String,
}

fn request(home: &Path, req: &Request) -> anyhow::Result<Reply> {
    control(home, req, Duration::from_secs(30))
}

/// Live peers of a daemon, and its summed entry sends, bytes sent and duplicates received.
fn counters(home: &Path) -> anyhow::Result<(usize, u64, u64, u64)> {
    match request(home, &Request::Status)? {
        Reply::Status(s) => Ok((
            s.peers.len(),
            s.peers.iter().map(|p| p.sent).sum(),
            s.peers.iter().map(|p| p.bytes_sent).sum(),
            s.peers.iter().map(|p| p.dup_received).sum(),
        )),
        other => bail!("status: {other:?}"),
    }
}

fn start(hearth: &Path, dir: &Path, i: usize, secret: &VaultSecret, peers: &[String]) -> anyhow::Result<Node> {
    let id = DeviceId([i as u8 + 1; 16]);
    let home = lan_hearth::home(dir, &format!("d{i}"), secret, id)?.dir().to_owned();
    let mut cmd = Command::new(hearth);
    cmd.arg("--home").arg(&home).args(["daemon", "--listen", "127.0.0.1:0", "--no-mdns"]);
    // Every daemon dials from 127.0.0.1: the per-source cap must not count them as one host.
    cmd.env("HEARTH_MAX_INBOUND_PER_SOURCE", "256").env("RUST_LOG", "warn").stderr(Stdio::null());
    for p in peers {
        cmd.args(["--peer", p]);
    }
    let mut proc = Proc::spawn(&mut cmd);
    let line = proc.stdout.next().context("daemon exited before listening")??;
    let addr = line.strip_prefix("listening ws ").context("unexpected first line")?.to_owned();
    Ok(Node { home, id, _proc: proc, addr })
}

/// Runs `edits` edits on device 0 of a `topology` of `n` daemons.
fn run_one(hearth: &Path, topology: &'static str, n: usize, edits: usize) -> anyhow::Result<MeshResult> {
    let dir = tempfile::tempdir()?;
    let secret = VaultSecret::from_bytes([9; 32]);
    let mut nodes: Vec<Node> = Vec::new();
    for i in 0..n {
        let peers: Vec<String> = match topology {
            "line" => nodes.last().map(|p| p.addr.clone()).into_iter().collect(),
            _ => nodes.iter().map(|p| p.addr.clone()).collect(),
        };
        nodes.push(start(hearth, dir.path(), i, &secret, &peers)?);
    }
    let want = |i: usize| match topology {
        "line" => usize::from(i > 0) + usize::from(i + 1 < n),
        _ => n - 1,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    for (i, node) in nodes.iter().enumerate() {
        while counters(&node.home)?.0 < want(i) {
            if Instant::now() > deadline {
                bail!("{topology} of {n}: device {i} never had its {} sessions", want(i));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // One warm-up edit (first writes open item state and prime every session).
    let author = nodes[0].id;
    let before = |nodes: &[Node]| -> anyhow::Result<(u64, u64, u64)> {
        let mut t = (0, 0, 0);
        for node in nodes {
            let (_, s, b, d) = counters(&node.home)?;
            t = (t.0 + s, t.1 + b, t.2 + d);
        }
        Ok(t)
    };
    let mut to_all = Vec::new();
    let mut write = Vec::new();
    let mut base = (0, 0, 0);
    for e in 0..=edits {
        if e == 1 {
            base = before(&nodes)?;
        }
        let req = if e == 0 {
            WriteRequest::Add {
                name: "mesh".into(),
                fields: vec![("password".into(), Some("v0".into()))],
                secret: vec![],
            }
        } else {
            WriteRequest::Edit {
                name: "mesh".into(),
                fields: vec![("password".into(), Some(format!("v{e}")))],
                rename: None,
                secret: vec![],
            }
        };
        let t = Instant::now();
        match request(&nodes[0].home, &Request::Write { write: req })? {
            Reply::Written(_) => {}
            other => bail!("write: {other:?}"),
        }
        let wrote = t.elapsed();
        let seq = e as u64 + 1;
        for node in &nodes[1..] {
            let wait = Request::WaitFor { author: author.to_hex(), seq, timeout_ms: 20_000 };
            match request(&node.home, &wait)? {
                Reply::Reached => {}
                other => bail!("{topology} of {n}: edit {e} never reached a device: {other:?}"),
            }
        }
        if e > 0 {
            to_all.push(t.elapsed());
            write.push(wrote);
        }
    }
    // Let every hold end and every ack arrive before counting.
    std::thread::sleep(Duration::from_millis(300));
    let end = before(&nodes)?;
    let deliveries = (edits * (n - 1)) as f64;
    Ok(MeshResult {
        topology,
        devices: n,
        sends_per_delivery: (end.0 - base.0) as f64 / deliveries,
        bytes_per_delivery: (end.1 - base.1) as f64 / deliveries,
        dup_per_delivery: (end.2 - base.2) as f64 / deliveries,
        to_all,
        write,
    })
}

/// The sizes measured up to `max`.
fn sizes(max: usize) -> Vec<usize> {
    let mut v: Vec<usize> = [2, 4, 8, 12, 20, 30].into_iter().filter(|n| *n < max).collect();
    v.push(max);
    v
}

/// Runs every topology and prints the table.
pub(crate) fn run(max: usize, edits: usize, hearth: Option<PathBuf>) -> anyhow::Result<Vec<MeshResult>> {
    let hearth = hearth.unwrap_or_else(|| hearth_e2e::bin("hearth"));
    println!(
        "hearth-lan-bench --mesh {max}: {} on loopback, static peers, {edits} edits on device 0",
        hearth.display()
    );
    println!(
        "{:<10} {:>7} {:>11} {:>11} {:>9} {:>12} {:>12} {:>11} {:>11}",
        "topology",
        "devices",
        "sends/deliv",
        "bytes/deliv",
        "dup/deliv",
        "to-all p50",
        "to-all p99",
        "write p50",
        "write p99"
    );
    let mut out = Vec::new();
    for topology in ["line", "full"] {
        for n in sizes(max) {
            let r = run_one(&hearth, topology, n, edits)?;
            println!(
                "{:<10} {:>7} {:>11.2} {:>11.0} {:>9.2} {:>10.2}ms {:>10.2}ms {:>9.2}ms {:>9.2}ms",
                r.topology,
                r.devices,
                r.sends_per_delivery,
                r.bytes_per_delivery,
                r.dup_per_delivery,
                pct(&r.to_all, 0.5),
                pct(&r.to_all, 0.99),
                pct(&r.write, 0.5),
                pct(&r.write, 0.99)
            );
            out.push(r);
        }
    }
    println!("goal: full mesh of 30 at most 1.25 sends per delivery");
    Ok(out)
}
