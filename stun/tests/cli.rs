//! The `hearth-stun` binary: flags, env vars, and a clean exit on SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use hearth_stun::client::query;

#[test]
fn binary_serves_and_exits_cleanly_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth-stun"))
        .env("HEARTH_STUN_BIND", "127.0.0.1:0")
        .args(["--rate-limit", "0", "--threads", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.next().unwrap().unwrap();
    let addr: SocketAddr = line.strip_prefix("listening udp ").unwrap().parse().unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (resp, _) = query(&sock, addr, None, Duration::from_secs(2)).unwrap();
    assert_eq!(resp.mapped, sock.local_addr().unwrap());
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
}

#[test]
fn bad_alternate_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth-stun"))
        .args(["--bind", "127.0.0.1:0", "--alternate", "[::1]:3479"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("same IP family"), "{err}");
}
