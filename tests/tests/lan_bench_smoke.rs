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
