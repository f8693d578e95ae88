//! The rendezvous benchmark runs end to end at a small scale (numbers are judged in
//! docs/BENCHMARKS.md, not here).

use std::process::Command;

use hearth_e2e::bin;

#[test]
fn rendezvous_bench_runs() {
    let out = Command::new(bin("hearth-rendezvous-bench"))
        .args(["--connections", "200", "--pairs", "4", "--messages", "50", "--fixed-rate", "200", "--soak-secs", "15"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("hearth idle RSS per connection"), "{stdout}");
    assert!(stdout.contains("saturation"), "{stdout}");
    assert!(stdout.contains("honest relay p99") && stdout.contains("keys without an expiry: none"), "{stdout}");
}
