//! The hostile-LAN run, short (its own test binary, so nothing else runs beside it): a guest
//! replaying 50 mDNS tags onto fake services, pinging without reading and flooding idle
//! half-requests, and a revoked device redialling, while two honest daemons sync an edit
//! every quarter second and a new honest device joins now and then. The 10-minute version
//! is `hearth-lan-bench --hostile 600` (docs/BENCHMARKS.md).

use std::process::Command;

use hearth_e2e::{bin, netns};
use serde_json::Value;

#[test]
fn a_daemon_under_a_hostile_lan_stays_small_and_keeps_serving_its_peers() {
    if !netns::available() {
        return;
    }
    let out = Command::new(bin("hearth-lan-bench"))
        .args(["--hostile", "30", "--idle-secs", "8", "--rate", "4"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let n = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {r}"));
    assert!(r["guest"]["tags_replayed"].as_u64() > Some(0), "the guest replayed real tags: {r}");
    // The ping floods are closed after a few pings each, so the guest keeps reconnecting.
    assert!(r["guest"]["ping_reconnects"].as_u64() > Some(20) && r["guest"]["halfs"].as_u64() > Some(100), "{r}");
    assert_eq!((n("fake_dials_by_a"), r["guest"]["fake_dials"].as_u64()), (0.0, Some(0)), "no fake was dialled: {r}");
    assert!(n("rss_max_kib") < 64.0 * 1024.0, "A's memory stays under 64 MiB: {r}");
    assert!(n("fds_end") <= n("fds_idle") + 4.0, "A's descriptors come back: {r}");
    assert!(n("revoked_dials") <= 1.0, "the revoked device dialled once, then knew: {r}");
    assert!(n("joins") >= 2.0 && n("join_max_ms") < 5_000.0, "a new honest device gets in within 5 s: {r}");
    // The goal is 2x the idle p99; a debug build on two shared cores gets a floor for noise.
    assert!(n("attacked_p99_ms") <= (2.0 * n("idle_p99_ms")).max(150.0), "honest edits stay fast: {r}");
}
