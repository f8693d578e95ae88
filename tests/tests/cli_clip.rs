//! `hearth clip` under a real X server (Debian `xvfb`), read back by an independent client
//! (`xclip`): the value arrives byte for byte, is cleared when the time is up, is left alone
//! when another program took the clipboard meanwhile, and never appears in a command line.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hearth_e2e::device::Device;

/// A private X server, killed when dropped.
struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    fn start() -> Self {
        // Xvfb picks a free display itself and writes its number to stdout.
        let mut child = Command::new("Xvfb")
            .args(["-displayfd", "1", "-nolisten", "tcp"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb (scripts/test installs xvfb)");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        let num: u32 = line.trim().parse().unwrap_or_else(|_| panic!("Xvfb said {line:?}"));
        Self { child, display: format!(":{num}") }
    }

    /// What the clipboard holds now (None: nothing).
    fn clipboard(&self) -> Option<Vec<u8>> {
        let o = Command::new("xclip")
            .args(["-o", "-selection", "clipboard"])
            .env("DISPLAY", &self.display)
            .output()
            .expect("xclip (scripts/test installs it)");
        o.status.success().then_some(o.stdout)
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clip(d: &Device, x: &Xvfb, args: &[&str]) -> std::process::Output {
    let mut a = vec!["clip"];
    a.extend_from_slice(args);
    d.cmd(&a).env("DISPLAY", &x.display).output().unwrap()
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < until, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn clip_copies_exactly_and_clears_when_the_time_is_up() {
    let x = Xvfb::start();
    let dir = tempfile::tempdir().unwrap();
    let d = Device::new(dir.path(), "h");
    d.ok(&["init", "--no-passphrase"]);
    let key = dir.path().join("k");
    std::fs::write(&key, "line one\r\nline two\n").unwrap();
    d.ok(&[
        "add",
        "gmail",
        "--field",
        "username=al",
        "--field",
        "password=clip-s3cret-1",
        "--field-file",
        &format!("recovery_key={}", key.display()),
    ]);

    let o = clip(&d, &x, &["gmail", "--clear-after", "2"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("copied password of 'gmail'"));
    assert_eq!(x.clipboard().as_deref(), Some(&b"clip-s3cret-1"[..]));
    // The value is in no process's command line.
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            assert!(!c.windows(13).any(|w| w == b"clip-s3cret-1"), "a command line holds the value");
        }
    }
    wait_for("the clipboard cleared after 2 s", 10, || x.clipboard().is_none_or(|c| c.is_empty()));

    // A multi-line value, byte for byte, by --field.
    assert!(clip(&d, &x, &["gmail", "--field", "recovery_key", "--clear-after", "30"]).status.success());
    assert_eq!(x.clipboard().as_deref(), Some(&b"line one\r\nline two\n"[..]));
}

#[test]
fn a_clipboard_another_program_took_is_left_alone() {
    let x = Xvfb::start();
    let dir = tempfile::tempdir().unwrap();
    let d = Device::new(dir.path(), "h");
    d.ok(&["init", "--no-passphrase"]);
    d.ok(&["add", "bank", "--field", "pin=4242-clip"]);
    // No password field: its only secret is copied.
    assert!(clip(&d, &x, &["bank", "--clear-after", "2"]).status.success());
    assert_eq!(x.clipboard().as_deref(), Some(&b"4242-clip"[..]));
    let mut other = Command::new("xclip")
        .args(["-i", "-selection", "clipboard"])
        .env("DISPLAY", &x.display)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut other.stdin.take().unwrap(), b"copied elsewhere").unwrap();
    other.wait().unwrap();
    wait_for("the other program's text", 5, || x.clipboard().as_deref() == Some(&b"copied elsewhere"[..]));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(x.clipboard().as_deref(), Some(&b"copied elsewhere"[..]), "cleared what it did not set");
    let _ = Command::new("pkill").args(["-f", "xclip -i -selection clipboard"]).status();
}

#[test]
fn without_a_display_clip_says_what_to_do_instead() {
    let dir = tempfile::tempdir().unwrap();
    let d = Device::new(dir.path(), "h");
    d.ok(&["init", "--no-passphrase"]);
    d.ok(&["add", "bank", "--field", "password=x", "--field", "pin=y"]);
    let o = d.cmd(&["clip", "bank"]).env_remove("DISPLAY").env_remove("WAYLAND_DISPLAY").output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("DISPLAY is not set") && err.contains("--raw"), "{err}");
    let o = d.cmd(&["clip", "bank", "--field", "nope"]).env("DISPLAY", ":0").output().unwrap();
    assert_eq!(o.status.code(), Some(3), "an unknown field is a lookup error");
}
