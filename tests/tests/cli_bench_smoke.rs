//! The CLI benchmark runs end to end on a small vault with pass and keepassxc-cli side by side
//! (numbers are not judged here; see docs/BENCHMARKS.md): every column has a number.

use std::process::Command;

use hearth_e2e::bin;

#[test]
fn cli_bench_runs_with_both_anchors() {
    let out = Command::new(bin("hearth-cli-bench")).args(["--sizes", "60", "--reps", "2"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let row =
        stdout.lines().find(|l| l.trim_start().starts_with("60 |")).unwrap_or_else(|| panic!("no row:\n{stdout}"));
    let numbers: Vec<f64> =
        row.split(['|', ' ']).filter(|s| !s.is_empty()).skip(1).map(|s| s.parse().unwrap_or(f64::NAN)).collect();
    assert_eq!(numbers.len(), 14, "{row}");
    assert!(
        numbers.iter().all(|n| n.is_finite() && *n > 0.0),
        "every column measured (pass and keepassxc included): {row}"
    );
    assert!(stdout.contains("get vs pass"), "{stdout}");
}
