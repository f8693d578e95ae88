//! The sync benchmark runs end to end on a small vault (numbers are not judged here; see
//! docs/BENCHMARKS.md): both sides converge and the report carries every row.

use std::process::Command;

use hearth_e2e::bin;

#[test]
fn sync_bench_runs_and_prints_every_row() {
    let out = Command::new(bin("hearth-sync-bench"))
        .args(["--items", "300", "--edits", "20", "--reps", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for row in [
        "full sync to empty device",
        "concurrent edits sync",
        "one edit",
        "bytes on the wire",
        "peak RSS",
        "plaintext payload bytes",
    ] {
        assert!(stdout.contains(row), "missing {row:?}:\n{stdout}");
    }
    assert!(stdout.contains("conflicts after concurrent edits: 20"), "{stdout}");
}
