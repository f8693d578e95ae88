//! The LAN benchmark runs end to end on a small vault, Syncthing included (numbers are not
//! judged here; see docs/BENCHMARKS.md): every row is printed with a number on both sides.

use std::process::Command;

use hearth_e2e::{bin, netns};

#[test]
fn lan_bench_runs_and_prints_every_row() {
    if !netns::available() {
        return;
    }
    let out =
        Command::new(bin("hearth-lan-bench")).args(["--items", "200", "--edits", "5", "--reps", "1"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for row in [
        "visible on B, p50",
        "visible on B, p99",
        "visible on C via B, p99",
        "`hearth edit` process",
        "initial sync of 200 items",
    ] {
        let line = stdout.lines().find(|l| l.contains(row)).unwrap_or_else(|| panic!("missing {row:?}:\n{stdout}"));
        assert!(line.contains("ms"), "{line}");
    }
    let b50 = stdout.lines().find(|l| l.contains("visible on B, p50")).unwrap();
    assert_eq!(b50.matches("ms").count(), 2, "Syncthing measured side by side: {b50}");
    assert_eq!(
        Command::new("pgrep").args(["-f", "syncthing serve"]).output().unwrap().stdout,
        b"",
        "no syncthing left running"
    );
}

/// The mesh benchmark runs end to end on a small mesh and meets its goal there: in a full
/// mesh each entry crosses once (the old code sent each ~n times).
#[test]
fn mesh_bench_runs_and_a_full_mesh_sends_each_entry_about_once() {
    let out = Command::new(bin("hearth-lan-bench")).args(["--mesh", "5", "--edits", "4"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for topology in ["line", "full"] {
        let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with(topology)).collect();
        assert_eq!(rows.len(), 3, "{topology}: 2, 4 and 5 devices:\n{stdout}");
    }
    let full5 = stdout.lines().find(|l| l.starts_with("full") && l.split_whitespace().nth(1) == Some("5")).unwrap();
    let sends: f64 = full5.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(sends <= 1.25, "{full5}");
}

/// The WebRTC NAT benchmark runs end to end, one run per NAT pair, and prints a time each.
#[test]
fn webrtc_nat_bench_runs_and_prints_every_pair() {
    if !netns::available() {
        return;
    }
    let out = Command::new(bin("hearth-lan-bench")).args(["--webrtc", "--nat", "--opens", "1"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for pair in ["port-restricted ↔ port-restricted", "symmetric ↔ full cone", "symmetric ↔ symmetric"] {
        let line = stdout.lines().find(|l| l.contains(pair)).unwrap_or_else(|| panic!("missing {pair:?}:\n{stdout}"));
        assert!(line.contains("p50") && line.contains("ms"), "{line}");
    }
}
