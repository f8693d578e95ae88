//! The STUN benchmark runs end to end (tiny load): every server answers every request
//! correctly and the report carries the ratios. Numbers are not judged here; see
//! docs/BENCHMARKS.md for real runs.

use std::process::Command;

use hearth_e2e::bin;

#[test]
fn bench_runs_and_prints_ratios() {
    let coturn = Command::new("turnserver").arg("--help").output().is_ok();
    let mut cmd = Command::new(bin("hearth-stun-bench"));
    cmd.args([
        "--requests",
        "4000",
        "--rounds",
        "1",
        "--clients",
        "8",
        "--max-seconds",
        "10",
        "--latency-seconds",
        "0.5",
    ]);
    if !coturn {
        eprintln!("turnserver not installed: smoke-testing without coturn (scripts/test installs it)");
        cmd.arg("--no-coturn");
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("hearth / echo"), "{stdout}");
    if coturn {
        assert!(stdout.contains("hearth / coturn"), "{stdout}");
    }
    for line in stdout.lines().filter(|l| l.contains("round 1")) {
        assert!(line.contains("bad 0"), "wrong responses: {line}");
    }
}
