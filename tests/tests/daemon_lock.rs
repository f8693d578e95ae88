//! Unlock once: a sealed home's daemon holds the vault unlocked, so the CLI's reads and
//! writes go through it with no passphrase; `hearth lock` and the idle timer make it forget
//! the secret and stop syncing, and the next command unlocks it again. Real processes.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use hearth_e2e::device::{join, wait_until, Daemon, Device};
use hearth_e2e::Proc;

const PASS: &str = "correct horse battery";

/// A command with no terminal on stdin, with the passphrase in the environment or not.
fn run(d: &Device, pass: Option<&str>, args: &[&str]) -> Output {
    let mut c = d.cmd(args);
    c.stdin(Stdio::null());
    if let Some(p) = pass {
        c.env("HEARTH_PASSPHRASE", p);
    }
    c.output().expect("spawn hearth")
}

fn ok(d: &Device, pass: Option<&str>, args: &[&str]) -> String {
    let o = run(d, pass, args);
    assert!(o.status.success(), "hearth {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The exit status and stderr of a command that must fail.
fn fails(d: &Device, pass: Option<&str>, args: &[&str]) -> (i32, String) {
    let o = run(d, pass, args);
    assert!(!o.status.success(), "hearth {args:?} succeeded: {}", String::from_utf8_lossy(&o.stdout));
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// A sealed home holding item `bank` (pin 1234).
fn sealed_home(dir: &Path, name: &str) -> (Device, String) {
    let d = Device::new(dir, name);
    let init: serde_json::Value = serde_json::from_str(&ok(&d, Some(PASS), &["--json", "init"])).unwrap();
    ok(&d, Some(PASS), &["add", "bank", "--field", "pin=1234", "--field", "user=ann"]);
    (d, init["phrase"].as_str().unwrap().to_owned())
}

/// `hearth daemon ARGS` with no passphrase and no terminal: it starts locked.
fn locked_daemon(d: &Device, args: &[&str]) -> Proc {
    let mut a = vec!["daemon", "--listen", "127.0.0.1:0", "--no-mdns"];
    a.extend_from_slice(args);
    let mut cmd = d.cmd(&a);
    cmd.stdin(Stdio::null()).env("RUST_LOG", "hearth_peer=info,hearth=info");
    let mut p = Proc::spawn(&mut cmd);
    let line = p.stdout.next().expect("daemon exited").expect("stdout");
    assert!(line.starts_with("locked:"), "a sealed home's daemon without a passphrase starts locked: {line:?}");
    p
}

#[test]
fn a_sealed_homes_daemon_unlocks_once_then_locks_on_request_and_stops_syncing() {
    let dir = tempfile::tempdir().unwrap();
    let (a, phrase) = sealed_home(dir.path(), "a");
    let mut daemon = locked_daemon(&a, &["--lock-after", "never"]);

    // Locked: every command needs the passphrase, and a wrong one stays locked.
    let (code, err) = fails(&a, None, &["get", "bank"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("locked"), "{err}");
    let (code, err) = fails(&a, Some("not it at all"), &["get", "bank"]);
    assert_eq!((code, err.contains("wrong passphrase")), (4, true), "{err}");
    let status: serde_json::Value = serde_json::from_str(&ok(&a, Some(PASS), &["--json", "status"])).unwrap();
    assert_eq!((status["daemon"].as_bool(), status["locked"].as_bool()), (Some(true), Some(true)), "{status}");
    assert_eq!(status["items"], 1, "with a passphrase given, the home is read here: {status}");
    // Without one, a status asks for nothing: it says the daemon is locked, counts unknown.
    let status: serde_json::Value = serde_json::from_str(&ok(&a, None, &["--json", "status"])).unwrap();
    assert_eq!((status["locked"].as_bool(), status["items"].is_null()), (Some(true), true), "{status}");
    assert!(ok(&a, None, &["status"]).contains("locked: not syncing"));

    // One command with the passphrase unlocks the daemon ...
    let shown = ok(&a, Some(PASS), &["get", "bank"]);
    assert!(shown.contains("user: ann") && !shown.contains("1234"), "{shown}");
    let line = daemon.stdout.next().unwrap().unwrap();
    assert!(line.starts_with("listening ws "), "{line}");
    let addr = line.trim_start_matches("listening ws ").to_owned();
    // ... and from then on reads and writes need none: they go through it.
    assert_eq!(ok(&a, None, &["get", "bank", "--field", "pin", "--raw"]), "1234\n");
    ok(&a, None, &["add", "mail", "--secret", "password=hunter2"]);
    let list: serde_json::Value = serde_json::from_str(&ok(&a, None, &["--json", "list"])).unwrap();
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["bank", "mail"]);
    let got: serde_json::Value = serde_json::from_str(&ok(&a, None, &["--json", "get", "mail"])).unwrap();
    assert_eq!(got["fields"]["password"], "••••••••", "a marked secret is masked through the daemon too: {got}");
    assert_eq!(ok(&a, None, &["--json", "conflicts"]).trim(), "[]");
    let (code, err) = fails(&a, None, &["get", "bnak"]);
    assert_eq!(code, 3, "a name that does not resolve is exit 3 through the daemon too: {err}");
    assert!(err.contains("did you mean 'bank'"), "{err}");

    // The unlocked daemon syncs: a second device (its own daemon) gets the vault.
    let b = join(dir.path(), "b", &phrase);
    let b_daemon: Daemon = b.daemon(&["--listen", "127.0.0.1:0", "--no-mdns", "--peer", &addr]);
    wait_until(Duration::from_secs(20), "b has a's items", || b.names() == ["bank", "mail"]);

    // Locked: no passphrase opens it, and nothing syncs.
    let locked = ok(&a, None, &["lock"]);
    assert!(locked.contains("locked"), "{locked}");
    assert_eq!(fails(&a, None, &["get", "bank"]).0, 4);
    assert_eq!(fails(&a, None, &["add", "x", "--field", "k=v"]).0, 4, "a write is refused while locked");
    b.ok(&["add", "from-b", "--field", "k=v"]);
    std::thread::sleep(Duration::from_secs(2));
    let status: serde_json::Value = serde_json::from_str(&ok(&a, Some(PASS), &["--json", "status"])).unwrap();
    assert_eq!(status["items"], 2, "a locked daemon syncs nothing: {status}");
    // The next command unlocks it, and what waited arrives.
    ok(&a, Some(PASS), &["list"]);
    wait_until(Duration::from_secs(20), "b's item reaches a", || ok(&a, None, &["--json", "list"]).contains("from-b"));
    drop(b_daemon);
}

#[test]
fn an_idle_daemon_locks_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = sealed_home(dir.path(), "a");
    let mut daemon = locked_daemon(&a, &["--lock-after", "4s"]);
    ok(&a, Some(PASS), &["get", "bank"]);
    assert!(daemon.stdout.next().unwrap().unwrap().starts_with("listening ws "));
    // Used within the idle time, it stays unlocked.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(ok(&a, None, &["get", "bank", "--field", "pin", "--raw"]), "1234\n");
    }
    // Left alone, it locks (and says so on its stdout).
    let line = daemon.stdout.next().unwrap().unwrap();
    assert!(line.starts_with("locked:"), "{line}");
    assert_eq!(fails(&a, None, &["get", "bank"]).0, 4);
}

#[test]
fn a_key_file_home_has_nothing_to_lock() {
    let dir = tempfile::tempdir().unwrap();
    let a = Device::new(dir.path(), "a");
    a.ok(&["init", "--no-passphrase"]);
    let (_, err) = fails(&a, None, &["lock"]);
    assert!(err.contains("no daemon runs"), "{err}");
    let _daemon = a.daemon(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    let (_, err) = fails(&a, None, &["lock"]);
    assert!(err.contains("nothing to lock"), "{err}");
    a.ok(&["add", "x", "--field", "k=v"]);
    assert_eq!(a.ok(&["get", "x", "--field", "k", "--raw"]), "v\n");
}

/// The socket is 0600, which root passes: the daemon itself refuses any other uid.
#[test]
fn the_daemon_serves_only_its_own_user() {
    let uid = std::process::Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        eprintln!("skipped: needs root to run a daemon as another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let a = Device::new(dir.path(), "a");
    a.ok(&["init", "--no-passphrase"]);
    a.ok(&["add", "x", "--field", "k=v"]);
    let chown = std::process::Command::new("chown").arg("-R").arg("65534:65534").arg(&a.home).status().unwrap();
    assert!(chown.success());
    let log = dir.path().join("daemon.log");
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(hearth_e2e::bin("hearth"))
        .arg("--home")
        .arg(&a.home)
        .args(["daemon", "--listen", "127.0.0.1:0", "--no-mdns"])
        .env("RUST_LOG", "hearth_peer=info")
        // Its own HOME: root's is not readable to it (the config file is looked for there).
        .env("HOME", dir.path())
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut p = Proc::spawn(&mut cmd);
    let line = p.stdout.next().expect("daemon exited").unwrap();
    assert!(line.starts_with("listening ws "), "{line}");
    // Root reaches the socket, and is turned away before a word is read.
    let o = run(&a, None, &["get", "x"]);
    assert!(!o.status.success(), "root was served: {}", String::from_utf8_lossy(&o.stdout));
    wait_until(Duration::from_secs(5), "the refusal is logged", || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("refused a control connection from another user")
    });
}
