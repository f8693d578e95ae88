//! The pairing benchmark runs end to end on a small vault with magic-wormhole side by side
//! (numbers are not judged here; see docs/BENCHMARKS.md): every row has a number.

use std::process::Command;

use hearth_e2e::bin;

#[test]
fn pair_bench_runs_and_prints_both_sides() {
    let out = Command::new(bin("hearth-pair-bench")).args(["--items", "50", "--reps", "1"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for row in ["code entered → enrolled", "code entered → 50 items synced", "magic-wormhole receive"] {
        let line = stdout.lines().find(|l| l.contains(row)).unwrap_or_else(|| panic!("missing {row:?}:\n{stdout}"));
        assert!(line.contains(" ms"), "{line}");
    }
    let json: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
    for k in ["enrolled_ms", "synced_ms", "wormhole_ms"] {
        assert!(json[k].as_f64().is_some_and(|v| v > 0.0), "{json}");
    }
    assert_eq!(Command::new("pgrep").args(["-f", "wormhole-mailbox"]).output().unwrap().stdout, b"", "no mailbox left");
}
