//! `hearth-pair-bench`: adding a device by its invite code through a real `hearth-rendezvous`
//! on loopback, timed from the moment the code is entered on the new device (`hearth join`
//! starts) until it is enrolled and until it holds the whole vault (`--items`, 1,000 by
//! default; the data channel is WebRTC through the rendezvous, as between two homes). Side by
//! side in the same run: magic-wormhole (PyPI `magic-wormhole`) sending a secret of the same
//! kind through a local `magic-wormhole-mailbox-server`, from `wormhole receive CODE` starting
//! until the secret is printed. Both sides are fresh processes each time (what a person runs).

mod vault_home;
mod workload;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use hearth_e2e::device::Device;
use hearth_e2e::rendezvous::{free_port, Rv};
use hearth_e2e::Proc;
use hearth_peer::identity::VaultSecret;
use serde_json::Value;

/// Pairing: `hearth invite` / `hearth join` vs magic-wormhole, on loopback.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Items in the inviter's vault.
    #[arg(long, default_value_t = 1_000)]
    items: usize,
    /// Pairings timed on each side (the median is reported, with min and max).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Skip the magic-wormhole side.
    #[arg(long)]
    no_wormhole: bool,
}

/// What one pairing took, from the code entered.
struct Pairing {
    enrolled: Duration,
    synced: Duration,
}

/// A child killed (and reaped) when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits up to `limit` for `child` to exit; true when it exited successfully.
fn wait_exit(child: &mut Child, limit: Duration) -> anyhow::Result<bool> {
    let end = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(s.success());
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            bail!("a process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One `hearth invite` on `a` and one `hearth join` on a fresh home `b`.
fn hearth_pairing(a: &Device, b: &Device, rv: &str, stun: &str, items: usize) -> anyhow::Result<Pairing> {
    let mut invite = a.cmd(&["--json", "invite", "--yes", "--rendezvous", rv, "--no-mdns", "--stun", stun]);
    let mut invite = Proc::spawn(invite.stderr(Stdio::null()));
    let first = invite.stdout.next().context("invite printed nothing")??;
    let first: Value = serde_json::from_str(&first).context("invite's first line")?;
    let url = first["url"].as_str().context("invite's url")?.to_owned();

    let start = Instant::now();
    let mut join = b.cmd(&["--json", "join", &url, "--no-passphrase", "--name", "bench", "--no-mdns", "--stun", stun]);
    let mut join = Proc::spawn(join.stderr(Stdio::null()));
    let (mut enrolled, mut last) = (None, Value::Null);
    for line in join.stdout.by_ref() {
        let v: Value = serde_json::from_str(&line?).context("join's output")?;
        if v["event"] == "enrolled" {
            enrolled = Some(start.elapsed());
        }
        last = v;
    }
    if !wait_exit(&mut join.child, Duration::from_secs(60))? {
        bail!("join failed: {last}");
    }
    let synced = start.elapsed();
    let held = last["entries"].as_u64().unwrap_or(0);
    if last["ok"] != true || held < items as u64 {
        bail!("join ended with {held} entries of at least {items}: {last}");
    }
    if !wait_exit(&mut invite.child, Duration::from_secs(60))? {
        bail!("invite failed");
    }
    Ok(Pairing { enrolled: enrolled.context("join never said it enrolled")?, synced })
}

/// A local mailbox server; its relay URL.
fn mailbox() -> anyhow::Result<(Killed, String)> {
    let port = free_port();
    let child = Command::new("python3")
        .args([
            "-m",
            "twisted",
            "wormhole-mailbox",
            "--port",
            &format!("tcp:{port}:interface=127.0.0.1"),
            "--channel-db",
            ":memory:",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("python3 -m twisted wormhole-mailbox (pip install magic-wormhole-mailbox-server)")?;
    let guard = Killed(child);
    let end = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > end {
            bail!("the mailbox server did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((guard, format!("ws://127.0.0.1:{port}/v1")))
}

fn wormhole(relay: &str) -> Command {
    let mut c = Command::new("python3");
    c.args(["-m", "wormhole"]);
    // No transit: a text message goes through the mailbox; the helper address is a dead end
    // on loopback so nothing is dialled outside.
    c.args(["--relay-url", relay, "--transit-helper", "tcp:127.0.0.1:9"]);
    c
}

/// One `wormhole send --text` and one `wormhole receive CODE`: code entered → secret printed.
fn wormhole_pairing(relay: &str, code: &str, secret: &str) -> anyhow::Result<Duration> {
    let sender = wormhole(relay)
        .args(["send", "--text", secret, "--code", code, "--hide-progress", "--no-qr"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("wormhole (pip install magic-wormhole)")?;
    let mut sender = Killed(sender);
    // The sender has claimed its nameplate once it prints the code.
    let err = sender.0.stderr.take().context("sender stderr")?;
    let mut lines = BufReader::new(err).lines();
    loop {
        let l = lines.next().context("wormhole send exited before its code")??;
        if l.contains("Wormhole code is") {
            break;
        }
    }
    let start = Instant::now();
    let out = wormhole(relay).args(["receive", "--only-text", "--hide-progress", code]).output()?;
    let took = start.elapsed();
    let got = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || got.trim() != secret {
        bail!("wormhole receive: {out:?}");
    }
    std::thread::spawn(move || lines.for_each(drop));
    wait_exit(&mut sender.0, Duration::from_secs(30))?;
    Ok(took)
}

/// Median, min and max in ms.
fn stats(v: &[Duration]) -> (f64, f64, f64) {
    let mut ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    match (ms.first(), ms.last()) {
        (Some(lo), Some(hi)) => (ms[ms.len() / 2], *lo, *hi),
        _ => (f64::NAN, f64::NAN, f64::NAN),
    }
}

fn row(what: &str, v: &[Duration]) -> f64 {
    let (m, lo, hi) = stats(v);
    println!("  {what:<52} {m:>8.0} ms  [{lo:.0}–{hi:.0}]");
    m
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let reps = args.reps.clamp(1, 50);
    let dir = tempfile::tempdir()?;
    let secret = VaultSecret::from_bytes([7; 32]);
    vault_home::source(dir.path(), &secret, args.items)?;
    let a = Device::new(dir.path(), "a");
    // One client address opens every invite here: lift the per-address cap on open
    // pairing rooms (8, each held for its 10-minute window).
    let rv = Rv::start_logging(&["--invite-rooms-per-ip", "1000"], None, "warn");
    let url = format!("http://{}", rv.http);
    let stun = rv.stun.context("the rendezvous's STUN")?.to_string();

    let mut enrolled = Vec::new();
    let mut synced = Vec::new();
    for rep in 0..reps {
        let b = Device::new(dir.path(), &format!("b{rep}"));
        let p = hearth_pairing(&a, &b, &url, &stun, args.items)?;
        enrolled.push(p.enrolled);
        synced.push(p.synced);
    }
    let mut received = Vec::new();
    let _mailbox = if args.no_wormhole {
        None
    } else {
        let (guard, relay) = mailbox()?;
        // A secret like the one Hearth hands over: a 24-word phrase.
        let phrase = "abandon ability able about above absent absorb abstract absurd abuse access accident \
                      account accuse achieve acid acoustic acquire across act action actor actress actual";
        for rep in 0..reps {
            received.push(wormhole_pairing(&relay, &format!("{}-guitarist-revenge", 100 + rep), phrase)?);
        }
        Some(guard)
    };

    println!("hearth-pair-bench: adding a device through a rendezvous on loopback, {reps} runs each, median [min–max]");
    let e = row("hearth join: code entered → enrolled", &enrolled);
    let s = row(&format!("hearth join: code entered → {} items synced", args.items), &synced);
    let mut json = serde_json::json!({"items": args.items, "reps": reps, "enrolled_ms": e, "synced_ms": s});
    if !received.is_empty() {
        let w = row("magic-wormhole receive: code entered → secret", &received);
        println!("  ratio magic-wormhole / hearth (code → enrolled): {:.2}", w / e);
        println!("  ratio magic-wormhole / hearth (code → whole vault synced): {:.2}", w / s);
        json["wormhole_ms"] = w.into();
    }
    println!("{json}");
    Ok(())
}
