//! `hearth-lan-bench --hostile SECS`: a daemon under a hostile LAN, in network namespaces.
//!
//! One LAN: daemon A (mDNS on, the one attacked), its honest peer B (mDNS on, and A as a
//! static peer), a device R that A's vault revoked (A as a static peer), a new honest device
//! C started now and then, and a guest X running `tests/py/hostile_lan.py`: 50 fake services
//! carrying replayed tags (pointing at an endpoint that upgrades and then stays silent),
//! WebSocket connections that send pings and never read, and idle half-requests at ~26 a
//! second. Meanwhile A writes an edit at a steady rate and B's receipt is timed, first with
//! the LAN quiet (the idle figure), then under attack. Sampled every second: A's resident
//! memory and open file descriptors. Counted: dials of the fakes, R's dials, C's time to a
//! live session with A.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hearth_e2e::device::{Daemon, Device};
use hearth_e2e::netns::Lab;
use hearth_peer::actions::WriteRequest;
use hearth_peer::home::Home;
use hearth_peer::identity::VaultSecret;
use hearth_peer::ids::DeviceId;
use hearth_peer::node::control::{Reply, Request};
use serde_json::{json, Value};

use crate::lan_hearth::{self, control};
use crate::pct;
use crate::procfs::status_kib;

fn home(dir: &Path, name: &str, secret: &VaultSecret, id: u8) -> anyhow::Result<Device> {
    lan_hearth::home(dir, name, secret, DeviceId([id; 16]))?;
    Ok(Device::new(dir, name))
}

fn peers(home: &Path) -> Vec<(String, u64)> {
    match control(home, &Request::Status, Duration::from_secs(10)) {
        Ok(Reply::Status(s)) => s.peers.into_iter().map(|p| (p.device, p.connected_ms)).collect(),
        _ => Vec::new(),
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// Memory (KiB) and descriptors of A, sampled.
#[derive(Default)]
struct Samples {
    rss: Vec<u64>,
    fds: Vec<usize>,
}

impl Samples {
    fn take(&mut self, pid: u32) {
        self.rss.push(status_kib(&pid.to_string(), "VmRSS").unwrap_or(0));
        self.fds.push(fds(pid));
    }
}

/// One edit on A; the time until B holds it.
fn edit(a: &Path, b: &Path, author: DeviceId, seq: u64) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let write = WriteRequest::Edit {
        name: "wifi".into(),
        fields: vec![("password".into(), Some(format!("v{seq}")))],
        rename: None,
        secret: vec![],
    };
    match control(a, &Request::Write { write }, Duration::from_secs(30))? {
        Reply::Written(_) => {}
        other => bail!("edit on A: {other:?}"),
    }
    let wait = Request::WaitFor { author: author.to_hex(), seq, timeout_ms: 30_000 };
    match control(b, &wait, Duration::from_secs(31))? {
        Reply::Reached => Ok(t.elapsed()),
        other => bail!("B never got edit {seq}: {other:?}"),
    }
}

/// Runs the hostile LAN for `secs` after `idle_secs` of quiet, `rate` edits a second.
pub(crate) fn run(secs: u64, idle_secs: u64, rate: f64) -> anyhow::Result<Value> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/py/hostile_lan.py");
    let mut lab = Lab::new();
    let lan = lab.lan(1);
    let (na, nb, nx, nr, nc) = (lab.host("a"), lab.host("b"), lab.host("x"), lab.host("r"), lab.host("c"));
    let pa = lab.plug(&na, &lan, 10);
    lab.plug(&nb, &lan, 11);
    let px = lab.plug(&nx, &lan, 12);
    lab.plug(&nr, &lan, 13);
    lab.plug(&nc, &lan, 14);
    let dir = tempfile::tempdir()?;
    let secret = VaultSecret::from_bytes([5; 32]);
    let a = home(dir.path(), "a", &secret, 1)?.in_netns(&na);
    let b = home(dir.path(), "b", &secret, 2)?.in_netns(&nb);
    let r = home(dir.path(), "r", &secret, 3)?.in_netns(&nr);
    let c = home(dir.path(), "c", &secret, 4)?.in_netns(&nc);
    {
        // A knows R and has revoked it; it writes the item the run edits.
        let mut ra = Home::new(&a.home).open(None)?;
        ra.add_membership(Home::new(&r.home).open(None)?.membership().records().to_vec())?;
        ra.revoke(DeviceId([3; 16]), 2)?;
        hearth_peer::actions::apply(
            &mut ra,
            &WriteRequest::Add {
                name: "wifi".into(),
                fields: vec![("password".into(), Some("v0".into()))],
                secret: vec![],
            },
            3,
        )?;
    }
    let a_addr = format!("{}:{}", pa.v4, hearth_peer::node::DEFAULT_PORT);
    let log = |n: &str| dir.path().join(format!("{n}.log"));
    let da: Daemon = a.daemon_logged(&[], &log("a"));
    let _db = b.daemon_logged(&["--peer", &a_addr], &log("b"));
    let _dr = r.daemon_logged(&["--no-mdns", "--peer", &a_addr], &log("r"));
    let pid = da.proc.child.id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !peers(&a.home).iter().any(|(d, _)| *d == DeviceId([2; 16]).to_hex()) {
        if Instant::now() > deadline {
            bail!("A and B never connected");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let author = DeviceId([1; 16]);
    // A's log holds: its enrolment is not an entry; the add above is seq 1.
    let mut seq = 1;
    let gap = Duration::from_secs_f64(1.0 / rate);
    let mut samples = Samples::default();
    let mut idle = Vec::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(idle_secs) {
        seq += 1;
        idle.push(edit(&a.home, &b.home, author, seq)?);
        samples.take(pid);
        std::thread::sleep(gap.saturating_sub(idle.last().copied().unwrap_or_default()));
    }
    let idle_samples =
        (samples.rss.len(), *samples.rss.iter().max().unwrap_or(&0), *samples.fds.iter().max().unwrap_or(&0));

    let guest = Command::new("ip")
        .args(["netns", "exec", &nx, "python3"])
        .arg(&script)
        .args([&secs.to_string(), &pa.v4, &hearth_peer::node::DEFAULT_PORT.to_string(), &px.v4, "50", "4", "26"])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the hostile guest")?;
    let mut attacked = Vec::new();
    let mut joins = Vec::new();
    let probe_every = Duration::from_secs((secs / 4).clamp(10, 60));
    let mut next_probe = Instant::now() + Duration::from_secs(5);
    let t1 = Instant::now();
    while t1.elapsed() < Duration::from_secs(secs) {
        seq += 1;
        attacked.push(edit(&a.home, &b.home, author, seq)?);
        samples.take(pid);
        if Instant::now() >= next_probe {
            // A new honest device comes along: how long until A has a live session with it?
            let since = unix_ms();
            let t = Instant::now();
            let dc = c.daemon_logged(&["--no-mdns", "--peer", &a_addr], &log("c"));
            let c_id = DeviceId([4; 16]).to_hex();
            while !peers(&a.home).iter().any(|(d, at)| *d == c_id && *at >= since) {
                if t.elapsed() > Duration::from_secs(30) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            joins.push(t.elapsed());
            drop(dc);
            next_probe = Instant::now() + probe_every;
        }
        std::thread::sleep(gap.saturating_sub(attacked.last().copied().unwrap_or_default()));
    }
    let out = guest.wait_with_output()?;
    let guest_stats: Value = serde_json::from_slice(out.stdout.trim_ascii()).unwrap_or(Value::Null);
    std::thread::sleep(Duration::from_secs(1));
    samples.take(pid);
    let text = |n: &str| std::fs::read_to_string(log(n)).unwrap_or_default();
    let r_dials = text("r").lines().filter(|l| l.contains("dialling")).count();
    let a_log = text("a");
    let fake_dials_by_a = a_log.lines().filter(|l| l.contains("dialling") && l.contains(&px.v4)).count();
    let rss_after_idle = samples.rss[idle_samples.0.saturating_sub(1)];
    let result = json!({
        "seconds": secs,
        "idle_edits": idle.len(),
        "attacked_edits": attacked.len(),
        "idle_p50_ms": pct(&idle, 0.5), "idle_p99_ms": pct(&idle, 0.99),
        "attacked_p50_ms": pct(&attacked, 0.5), "attacked_p99_ms": pct(&attacked, 0.99),
        "rss_idle_kib": rss_after_idle, "rss_max_kib": samples.rss.iter().max(), "rss_end_kib": samples.rss.last(),
        "fds_idle": idle_samples.2, "fds_max": samples.fds.iter().max(), "fds_end": samples.fds.last(),
        "join_max_ms": joins.iter().map(|d| d.as_secs_f64() * 1000.0).fold(0.0, f64::max),
        "joins": joins.len(),
        "revoked_dials": r_dials,
        "fake_dials_by_a": fake_dials_by_a,
        "guest": guest_stats,
    });
    println!("hearth-lan-bench --hostile {secs}: A under attack in network namespaces, {rate} edits/s, {idle_secs} s idle first");
    println!(
        "honest edit A -> B p50/p99: idle {:.2} / {:.2} ms, attacked {:.2} / {:.2} ms",
        pct(&idle, 0.5),
        pct(&idle, 0.99),
        pct(&attacked, 0.5),
        pct(&attacked, 0.99)
    );
    println!(
        "A's RSS: idle {} KiB, max {} KiB, end {} KiB; open fds: idle {}, max {}, end {}",
        rss_after_idle,
        result["rss_max_kib"],
        result["rss_end_kib"],
        idle_samples.2,
        result["fds_max"],
        result["fds_end"]
    );
    println!(
        "new honest device to a live session with A: {} probes, max {:.0} ms",
        joins.len(),
        result["join_max_ms"].as_f64().unwrap_or(f64::NAN)
    );
    println!("revoked device's dials: {r_dials}; A's dials of the fakes: {fake_dials_by_a}; guest: {guest_stats}");
    println!("{result}");
    Ok(result)
}
