//! `hearth-lan-bench --webrtc --nat` (root): WebRTC set-up time across NATs made of network
//! namespaces and nftables, as `tests/tests/webrtc_nat_netns.rs` builds them: a public LAN
//! with `hearth-rendezvous` (+ STUN, + coturn for the TURN case), two homes behind their own
//! NAT routers. Each run starts both daemons afresh; the time is the dialling daemon's, from
//! "dialling through WebRTC" (candidates not gathered yet) to "WebRTC channel open", read
//! from its log.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use hearth_e2e::device::{vault, wait_until, Device};
use hearth_e2e::netns::{self, Coturn, Internet, Lab, Nat, SERVER};
use hearth_e2e::rendezvous::Rv;

use crate::pct;

const TURN_SECRET: &str = "bench-turn-secret";

/// Seconds since midnight of a log line's RFC 3339 timestamp (`…T16:47:16.302441Z …`).
fn stamp(line: &str) -> Option<f64> {
    let t = line.split_whitespace().next()?.split('T').nth(1)?.trim_end_matches('Z');
    let mut parts = t.split(':');
    let (h, m, s) =
        (parts.next()?.parse::<f64>().ok()?, parts.next()?.parse::<f64>().ok()?, parts.next()?.parse::<f64>().ok()?);
    Some(h * 3600.0 + m * 60.0 + s)
}

/// From the first "dialling through WebRTC" to the first "WebRTC channel open" in `log`.
fn set_up(log: &Path) -> Option<Duration> {
    let text = std::fs::read_to_string(log).ok()?;
    let start = text.lines().find(|l| l.contains("dialling through WebRTC")).and_then(stamp)?;
    let open = text.lines().find(|l| l.contains("WebRTC channel open")).and_then(stamp)?;
    (open >= start).then(|| Duration::from_secs_f64(open - start))
}

/// `runs` set-ups between homes behind `nat_a` and `nat_b` (through coturn with `turn`).
fn measure(nat_a: Nat, nat_b: Nat, turn: bool, runs: usize) -> anyhow::Result<Vec<Duration>> {
    let dir = tempfile::tempdir()?;
    let mut lab = Lab::new();
    let Internet { server, homes } = lab.internet(&[nat_a, nat_b]);
    let listen = format!("{SERVER}:8080");
    let stun = format!("{SERVER}:3478");
    let turn_url = format!("turn:{SERVER}:3479");
    let secret = dir.path().join("turn-secret");
    std::fs::write(&secret, TURN_SECRET)?;
    let secret = secret.to_string_lossy().into_owned();
    let mut flags = vec!["--listen", &listen, "--stun-bind", &stun, "--public-host", &listen];
    let _coturn = if turn {
        flags.extend(["--turn-url", &turn_url, "--turn-secret-file", &secret]);
        Some(Coturn::start(&server, TURN_SECRET))
    } else {
        None
    };
    let _rv = Rv::start_in(&server, &flags);
    let devs = vault(dir.path(), &["a", "b"]);
    let mut it = devs.into_iter();
    let (a, b) = (it.next().context("a")?.in_netns(&homes[0]), it.next().context("b")?.in_netns(&homes[1]));
    let url = format!("http://{listen}");
    let args = ["--listen", "0.0.0.0:0", "--no-mdns", "--rendezvous", url.as_str()];
    let mut times = Vec::new();
    for run in 0..runs {
        let (la, lb) = (dir.path().join(format!("a{run}.log")), dir.path().join(format!("b{run}.log")));
        let da = a.daemon_logged(&args, &la);
        let db = b.daemon_logged(&args, &lb);
        let b_id = b.id();
        let live = |d: &Device| {
            d.json(&["status"])["peers"].as_array().is_some_and(|p| p.iter().any(|p| p["path"] == "webrtc"))
        };
        wait_until(Duration::from_secs(40), "a WebRTC session", || live(&a) && live(&b));
        drop((da, db));
        // The side with the lower device id dials.
        let dialler = if a.id() < b_id { &la } else { &lb };
        match set_up(dialler) {
            Some(t) => times.push(t),
            None => bail!("no set-up time in {}", dialler.display()),
        }
    }
    // HEARTH_BENCH_KEEP_LOGS keeps the daemons' logs (with HEARTH_TEST_DAEMON_LOG for detail).
    if std::env::var_os("HEARTH_BENCH_KEEP_LOGS").is_some() {
        println!("  logs kept in {}", dir.keep().display());
    }
    Ok(times)
}

/// Runs the NAT part and prints its numbers.
pub(crate) fn run(runs: usize) -> anyhow::Result<()> {
    if !netns::available() {
        bail!("--nat builds network namespaces: run it as root");
    }
    println!("hearth-lan-bench --webrtc --nat: set-up across namespaced NATs ({runs} runs each; dial → channel open, gathering included)");
    for (name, a, b, turn) in [
        ("port-restricted ↔ port-restricted (direct)", Nat::PortRestricted, Nat::PortRestricted, false),
        ("symmetric ↔ full cone (direct)", Nat::Symmetric, Nat::FullCone, false),
        ("symmetric ↔ symmetric (through coturn)", Nat::Symmetric, Nat::Symmetric, true),
    ] {
        let t = measure(a, b, turn, runs)?;
        println!("  {name}: p50 {:.1} ms, p90 {:.1} ms", pct(&t, 0.5), pct(&t, 0.9));
    }
    Ok(())
}
