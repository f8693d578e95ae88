//! Independent STUN implementations (Python's aioice and pystun3) against the real
//! `hearth-stun` binary on loopback.

use std::path::Path;
use std::process::Command;

use hearth_e2e::{bin, has_ipv6, Proc};

#[test]
fn aioice_and_pystun3_get_correct_answers() {
    // The RFC 5780 quad needs two loopback IPs; fixed ports keep the Python side simple.
    // Retry with other ports if something else holds them.
    let mut attempt = 0;
    let (mut server, addrs) = loop {
        attempt += 1;
        let base = 40_000 + (std::process::id() % 10_000) as u16 + attempt * 7;
        let mut cmd = Command::new(bin("hearth-stun"));
        cmd.args(["--bind", &format!("127.0.0.1:{base}"), "--alternate", &format!("127.0.0.2:{}", base + 1)]);
        if has_ipv6() {
            cmd.args(["--bind", "[::1]:0"]);
        }
        cmd.args(["--rate-limit", "0", "--threads", "1"]).stderr(std::process::Stdio::null());
        let mut p = Proc::spawn(&mut cmd);
        let n = if has_ipv6() { 5 } else { 4 };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.listening_addrs(n))) {
            Ok(addrs) => break (p, addrs),
            Err(_) if attempt < 5 => continue,
            Err(e) => std::panic::resume_unwind(e),
        }
    };
    let primary = addrs[0];
    let alternate = addrs[3];
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/stun_clients.py");
    let mut py = Command::new("python3");
    py.arg(&script)
        .arg(primary.ip().to_string())
        .arg(primary.port().to_string())
        .arg(alternate.ip().to_string())
        .arg(alternate.port().to_string());
    if let Some(v6) = addrs.get(4) {
        py.arg(v6.port().to_string());
    }
    let out = py.output().expect("python3 (scripts/test installs aioice and pystun3)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "interop script failed:\n{stdout}\n{stderr}");
    for want in ["ok aioice ipv4", "ok aioice CHANGE-REQUEST", "ok pystun3 RFC 3489 NAT test: Open Internet"] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    let _ = server.child.kill();
}
