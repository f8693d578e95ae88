//! `hearth demo`, the README's first command, as a newcomer runs it: every step completes
//! with nothing else running, well under a minute; `--keep` leaves homes that hold the synced
//! vault sealed (no value in the clear in any file it wrote, logs included); Ctrl-C stops
//! every process it started and removes what it made.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hearth_e2e::{bin, Proc};
use serde_json::Value;

/// Values the demo writes: none may be in any file in the clear.
const VALUES: [&str; 4] = ["correct-horse-7", "tr0ub4dor-8", "alice-picked-this", "carol-picked-this"];

fn demo(args: &[&str]) -> Command {
    let mut c = Command::new(bin("hearth"));
    c.args(["--json", "demo"]).args(args).env_remove("HEARTH_HOME").env_remove("RUST_LOG");
    c
}

/// Every JSON line of a finished demo; asserts each step and the summary.
fn check_run(out: &str) -> Vec<Value> {
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect();
    assert_eq!(lines.len(), 9, "8 steps and a summary: {out}");
    for (i, step) in lines[..8].iter().enumerate() {
        assert_eq!(step["step"], i + 1, "{step}");
        assert_eq!(step["ok"], true, "{step}");
    }
    assert_eq!(lines[3]["detail"]["path"], "lan", "alice and bob sync over the LAN");
    assert_eq!(lines[4]["detail"]["path"], "webrtc", "carol syncs with bob by WebRTC");
    let conflict = &lines[6]["detail"]["conflicts"][0];
    let mut seen = vec![conflict["kept"].as_str().unwrap_or_default().to_owned()];
    seen.extend(conflict["losing"].as_array().into_iter().flatten().map(|v| v.as_str().unwrap_or_default().to_owned()));
    seen.sort();
    assert_eq!(seen, ["alice-picked-this", "carol-picked-this"], "both values kept: {conflict}");
    let summary = &lines[8];
    assert_eq!(summary["ok"], true, "{summary}");
    let total = summary["total_ms"].as_u64().unwrap_or(u64::MAX);
    assert!(total < 60_000, "the demo took {total} ms");
    lines
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn the_demo_runs_every_step_and_removes_what_it_made() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let o = demo(&["--dir", dir.to_str().unwrap()]).output().expect("run the demo");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "demo failed: {out}{}", String::from_utf8_lossy(&o.stderr));
    let lines = check_run(&out);
    assert_eq!(lines[8]["dir"], Value::Null);
    assert!(!dir.exists(), "the demo's homes were left behind");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.trim().is_empty(), "the demo printed warnings: {err}");
}

#[test]
fn keep_leaves_sealed_homes_that_hold_the_synced_vault() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let o = demo(&["--keep", "--dir", dir.to_str().unwrap()]).output().expect("run the demo");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "demo failed: {out}{}", String::from_utf8_lossy(&o.stderr));
    let lines = check_run(&out);
    assert_eq!(lines[8]["dir"], dir.to_str().unwrap());
    for name in ["alice", "bob", "carol"] {
        let o = Command::new(bin("hearth"))
            .arg("--home")
            .arg(dir.join(name))
            .args(["--json", "get", "wifi", "--show"])
            .output()
            .expect("hearth get");
        let v: Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(v["fields"]["password"], "carol-picked-this", "{name}: {v}");
    }
    let mut all = Vec::new();
    files(&dir, &mut all);
    assert!(all.iter().any(|p| p.ends_with("logs/carol-daemon.log")), "the daemons' logs are kept: {all:?}");
    for p in all {
        let bytes = std::fs::read(&p).unwrap();
        for v in VALUES {
            assert!(!bytes.windows(v.len()).any(|w| w == v.as_bytes()), "{} holds {v:?} in the clear", p.display());
        }
    }
}

/// True when a process runs with `needle` in its command line.
fn running_with(needle: &str) -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle)))
}

#[test]
fn ctrl_c_stops_every_process_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo-interrupted");
    let mut cmd = demo(&["--dir", dir.to_str().unwrap()]);
    let mut p = Proc::spawn(cmd.stderr(Stdio::piped()));
    // Interrupt once carol's daemon runs: three homes, two daemons, the embedded server.
    for line in p.stdout.by_ref() {
        let v: Value = serde_json::from_str(&line.expect("read")).expect("json");
        if v["step"] == 5 {
            break;
        }
    }
    assert!(running_with(dir.to_str().unwrap()), "the demo's daemons run");
    let pid = p.child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().expect("kill").success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = p.child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "the demo did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(p.child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("demo interrupted; cleaned up"), "{err}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while running_with(dir.to_str().unwrap()) {
        assert!(Instant::now() < deadline, "a process of the demo outlived it");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!dir.exists(), "the interrupted demo left {}", dir.display());
}
