//! Hearth's WebRTC layer against independent stacks: Python's aiortc and headless Chromium
//! (each with its own ICE, DTLS and SCTP). Neither can speak Hearth's signaling or Noise, so
//! the test carries raw SDP between `hearth-webrtc-echo` and the other peer, each in its own
//! network namespace on one LAN (neither gathers loopback candidates), and checks messages
//! both ways: each side's greeting, and the echo of the other's ping.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdout, Command, Stdio};

use hearth_e2e::netns::{self, Lab};
use serde_json::Value;

struct Peer {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Peer {
    fn spawn(ns: &str, program: &std::path::Path, args: &[&str]) -> Self {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns])
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn a peer");
        let out = BufReader::new(child.stdout.take().unwrap());
        Peer { child, out }
    }

    fn line(&mut self) -> Value {
        let mut l = String::new();
        self.out.read_line(&mut l).unwrap();
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("{e}: {l:?}"))
    }

    fn send(&mut self, v: &Value) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{v}").unwrap();
        stdin.flush().unwrap();
    }

    /// Every remaining line, once it exits.
    fn rest(mut self) -> Vec<Value> {
        let mut v = Vec::new();
        let mut l = String::new();
        while self.out.read_line(&mut l).unwrap_or(0) > 0 {
            v.extend(serde_json::from_str(&l).ok());
            l.clear();
        }
        let _ = self.child.wait();
        v
    }
}

fn aiortc_script() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/aiortc_peer.py")
}

/// Two hosts on one LAN: (lab, aiortc's namespace, Hearth's namespace, Hearth's address).
fn lan() -> Option<(Lab, String, String, String)> {
    if !netns::available() {
        return None;
    }
    let mut lab = Lab::new();
    let l = lab.lan(1);
    let py = lab.host("py");
    lab.plug(&py, &l, 10);
    let hearth = lab.host("hr");
    let port = lab.plug(&hearth, &l, 11);
    Some((lab, py, hearth, port.v4))
}

fn python() -> std::path::PathBuf {
    "python3".into()
}

fn check(hearth: Peer, py: Peer) {
    let py_out = py.rest();
    let got = py_out.iter().find_map(|v| v["got"].as_array().cloned()).expect("aiortc's report");
    let got: Vec<&str> = got.iter().filter_map(Value::as_str).collect();
    assert!(got.contains(&"hello from hearth"), "aiortc got Hearth's greeting: {got:?}");
    assert!(got.contains(&"echo:ping from aiortc"), "and the echo of its ping: {got:?}");
    let events = hearth.rest();
    let texts: Vec<&str> = events.iter().filter_map(|e| e["text"].as_str()).collect();
    assert!(events.iter().any(|e| e["event"] == "open"), "{events:?}");
    assert!(texts.contains(&"ping from aiortc"), "Hearth got aiortc's ping: {texts:?}");
}

#[test]
fn aiortc_offers_and_hearth_answers() {
    let Some((_lab, py_ns, hr_ns, hr_ip)) = lan() else { return };
    let script = aiortc_script();
    let mut py = Peer::spawn(&py_ns, &python(), &[script.to_str().unwrap(), "offer", "20"]);
    let offer = py.line();
    assert_eq!(offer["type"], "offer");
    let echo = hearth_e2e::bin("hearth-webrtc-echo");
    let mut hr = Peer::spawn(&hr_ns, &echo, &["--bind", &hr_ip, "--answer", "--secs", "8"]);
    hr.send(&offer);
    let answer = hr.line();
    assert_eq!(answer["type"], "answer");
    py.send(&answer);
    check(hr, py);
}

#[test]
fn hearth_offers_and_aiortc_answers() {
    let Some((_lab, py_ns, hr_ns, hr_ip)) = lan() else { return };
    let echo = hearth_e2e::bin("hearth-webrtc-echo");
    let mut hr = Peer::spawn(&hr_ns, &echo, &["--bind", &hr_ip, "--offer", "--secs", "8"]);
    let offer = hr.line();
    assert_eq!(offer["type"], "offer");
    let script = aiortc_script();
    let mut py = Peer::spawn(&py_ns, &python(), &[script.to_str().unwrap(), "answer", "20"]);
    py.send(&offer);
    let answer = py.line();
    assert_eq!(answer["type"], "answer");
    hr.send(&answer);
    check(hr, py);
}

#[test]
fn headless_chromium_offers_and_hearth_answers() {
    let Some((lab, py_ns, hr_ns, hr_ip)) = lan() else { return };
    // With no default route Chromium thinks it is offline and loads no page at all.
    lab.default_route(&py_ns, &hr_ip);
    let dir = tempfile::tempdir().unwrap();
    let bridge_script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/chromium_bridge.py");
    let web = "10.77.1.10";
    let mut bridge = Peer::spawn(&py_ns, &python(), &[bridge_script.to_str().unwrap(), web, "8099", "40"]);
    assert_eq!(bridge.line()["ready"], true);
    // The flags CRATES.md lists for this machine: no sandbox (root), real interface
    // addresses as candidates (no mDNS names), nothing fetched from outside.
    let profile = dir.path().to_str().unwrap().to_owned();
    let mut chromium = Command::new("ip")
        .args(["netns", "exec", &py_ns, "chromium", "--headless", "--no-sandbox", "--disable-gpu"])
        .args(["--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"])
        .arg(format!("--user-data-dir={profile}"))
        .arg("--disable-features=WebRtcHideLocalIpsWithMdns")
        .arg(format!("http://{web}:8099/"))
        .env("HOME", dir.path())
        .stdout(std::fs::File::create(dir.path().join("dom.html")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("chromium.log")).unwrap())
        // Its own process group: Chromium's helper processes go with it.
        .process_group(0)
        .spawn()
        .expect("chromium (scripts/test installs the Debian package)");
    let offer = bridge.line();
    let log = || {
        let l = std::fs::read_to_string(dir.path().join("chromium.log")).unwrap_or_default();
        let l: Vec<&str> = l.lines().filter(|l| !l.contains("dbus")).collect();
        format!("{}\n{}", l.join("\n"), std::fs::read_to_string(dir.path().join("dom.html")).unwrap_or_default())
    };
    assert_eq!(offer["type"], "offer", "{offer}; chromium said: {}", log());
    let echo = hearth_e2e::bin("hearth-webrtc-echo");
    let mut hr = Peer::spawn(&hr_ns, &echo, &["--bind", &hr_ip, "--answer", "--secs", "10"]);
    hr.send(&offer);
    let answer = hr.line();
    assert_eq!(answer["type"], "answer");
    bridge.send(&answer);
    let report = bridge.line();
    let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", chromium.id())]).status();
    let _ = chromium.wait();
    let got: Vec<&str> =
        report["got"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    assert!(got.contains(&"hello from hearth") && got.contains(&"echo:ping from chromium"), "{report}; {}", log());
    // Hearth got Chromium's ping (it answered with the echo Chromium reported, but say so).
    let mut seen = Vec::new();
    while !seen.iter().any(|e: &Value| e["text"] == "ping from chromium") {
        let e = hr.line();
        assert!(e["event"] != "timeout" && e["event"] != "closed", "{seen:?} {e}");
        seen.push(e);
    }
    let _ = hr.child.kill();
    drop(hr.rest());
    drop(bridge.rest());
}
