//! `hearth get`, `list`, `conflicts` and `devices` without a daemon read the home's materialized view
//! instead of replaying the log; what they print is exactly what the daemon (which holds the
//! replayed log) prints: fields, masking, conflicts, lookups by id, searches, and the errors
//! of names that do not resolve.

use std::process::Output;

use hearth_e2e::device::{carry, vault, Device};

/// `hearth --json ARGS` with debug logs: (status, stdout, stderr).
fn get(d: &Device, args: &[&str]) -> (Option<i32>, String, String) {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let o: Output = d.cmd(&a).env("RUST_LOG", "hearth=debug").output().unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

const FROM_VIEW: &str = "answered from the materialized view";

#[test]
fn get_reads_the_view_and_prints_what_the_log_shows() {
    let dir = tempfile::tempdir().unwrap();
    let devs = vault(dir.path(), &["a", "b"]);
    let (a, b) = (&devs[0], &devs[1]);
    a.ok(&["add", "gmail", "--field", "username=alice", "--field", "password=s3cret"]);
    a.ok(&["add", "bank", "--field", "pin=1234"]);
    carry(a, b, dir.path());
    // Two items named alike (added on both devices apart), and a conflict.
    a.ok(&["add", "twin"]);
    a.ok(&["edit", "gmail", "--field", "password=from-a"]);
    b.ok(&["edit", "gmail", "--field", "password=from-b"]);
    b.ok(&["add", "twin"]);
    carry(a, b, dir.path());
    let bank_id = b.json(&["get", "bank"])["id"].as_str().unwrap().to_owned();

    let asks: Vec<Vec<&str>> = vec![
        vec!["get", "gmail"],
        vec!["get", "gmail", "--show"],
        vec!["get", "bank", "--field", "pin", "--show"],
        vec!["get", &bank_id],
        vec!["list"],
        vec!["list", "gm"],
        vec!["conflicts", "--show"],
        vec!["devices"],
        vec!["get", "twin"],
        vec!["get", "gmial"],
        vec!["get", "nothing-like-it"],
    ];
    let here: Vec<_> = asks.iter().map(|args| get(b, args)).collect();
    for (args, (code, out, err)) in asks.iter().zip(&here) {
        let resolves = !matches!(args.get(1).copied(), Some("twin" | "gmial" | "nothing-like-it"));
        assert_eq!(*code == Some(0), resolves, "{args:?}: {out} {err}");
        assert_eq!(err.contains(FROM_VIEW), resolves, "{args:?}: the view answers what resolves: {err}");
    }
    assert!(here[0].1.contains("\"conflicts\":[{"), "the conflict reads from the view: {}", here[0].1);
    assert!(here[4].1.contains("\"twin\"") && here[6].1.contains("from-b"), "{} {}", here[4].1, here[6].1);
    assert!(!here[0].1.contains("from-a") && here[1].1.contains("from-a"), "masked unless --show");

    // The daemon answers from the replayed log: the same, byte for byte.
    let mut daemon = b.daemon(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    for (args, (code, out, err)) in asks.iter().zip(&here) {
        let (c, o, e) = get(b, args);
        assert!(!e.contains(FROM_VIEW));
        assert_eq!((c, &o), (*code, out), "{args:?}");
        if *code != Some(0) {
            let last = |s: &str| s.lines().rfind(|l| !l.contains("DEBUG")).unwrap_or_default().to_owned();
            assert_eq!(last(&e), last(err), "{args:?}: the same error");
        }
    }

    // The daemon writes the view as it stops: a command after it reads its last edit there.
    b.ok(&["edit", "bank", "--field", "pin=5678"]);
    let pid = daemon.proc.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    daemon.proc.child.wait().unwrap();
    let (code, out, err) = get(b, &["get", "bank", "--field", "pin", "--show"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("5678") && err.contains(FROM_VIEW), "{out} {err}");
    // Killed before it could write the view: the log answers, and nothing is lost.
    let daemon = b.daemon(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    b.ok(&["edit", "bank", "--field", "pin=9999"]);
    drop(daemon);
    let (code, out, err) = get(b, &["get", "bank", "--field", "pin", "--show"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("9999"), "{out} {err}");
}

const WRITTEN: &str = "write taken from the materialized view";

/// `add`, `edit`, `rm` and `resolve` without a daemon start from the view (one row, not the
/// log's replay); the log they leave verifies whole (a daemon's start replays it) and shows
/// what the view shows, here and on the device it is carried to.
#[test]
fn writes_without_a_daemon_start_from_the_view_and_the_log_verifies_them() {
    let dir = tempfile::tempdir().unwrap();
    let devs = vault(dir.path(), &["a", "b"]);
    let (a, b) = (&devs[0], &devs[1]);
    a.ok(&["add", "gmail", "--field", "password=one"]);
    a.ok(&["add", "bank", "--field", "pin=1"]);
    carry(a, b, dir.path());
    b.ok(&["edit", "gmail", "--field", "password=from-b"]);
    let writes: Vec<Vec<&str>> = vec![
        vec!["edit", "gmail", "--field", "password=from-a"],
        vec!["add", "desk", "--field", "k=v"],
        vec!["edit", "desk", "--rename", "office", "--field", "k=w"],
        vec!["rm", "bank"],
    ];
    for args in &writes {
        let (code, out, err) = get(a, args);
        assert_eq!(code, Some(0), "{args:?}: {out} {err}");
        assert!(err.contains(WRITTEN), "{args:?}: {err}");
    }
    carry(b, a, dir.path());
    let (code, _, err) = get(a, &["resolve", "gmail", "password", "--value", "kept"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains(WRITTEN), "{err}");
    // A name that resolves to nothing: the log answers, with its "did you mean" (status 3).
    let (code, _, err) = get(a, &["rm", "gmial"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(!err.contains(WRITTEN) && err.contains("did you mean 'gmail'"), "{err}");
    let (code, _, err) = get(a, &["add", "office"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(WRITTEN) && err.contains("exists already"), "the view says so: {err}");

    let asks: Vec<Vec<&str>> =
        vec![vec!["list"], vec!["get", "gmail", "--show"], vec!["get", "office", "--show"], vec!["conflicts"]];
    let here: Vec<_> = asks.iter().map(|args| get(a, args)).collect();
    for (args, (code, out, err)) in asks.iter().zip(&here) {
        assert_eq!(*code, Some(0), "{args:?}: {err}");
        assert!(err.contains(FROM_VIEW), "{args:?}: {err}");
        assert!(!out.contains("bank") && !out.contains("from-b") || args[0] == "get", "{args:?}: {out}");
    }
    assert!(here[1].1.contains("kept") && here[2].1.contains("\"k\":\"w\""), "{} {}", here[1].1, here[2].1);
    // A daemon's start replays and verifies the whole log: it answers the same.
    let daemon = a.daemon(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    for (args, (_, out, _)) in asks.iter().zip(&here) {
        assert_eq!(&get(a, args).1, out, "{args:?}");
    }
    drop(daemon);
    carry(a, b, dir.path());
    for (args, (_, out, _)) in asks.iter().zip(&here) {
        let theirs = get(b, args).1;
        if args[0] == "list" {
            assert_eq!(theirs, *out, "{args:?}");
        } else {
            assert_eq!(b.json(args)["fields"], a.json(args)["fields"], "{args:?}");
        }
    }
}
