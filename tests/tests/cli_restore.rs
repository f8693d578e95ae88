//! A home restored from an older copy never signs a seq twice: its writes are refused with
//! a clear message until `hearth repair` re-enrols it under a new device id, after which it
//! syncs with devices that hold the newer log without any fork.

use hearth_e2e::device::vault;

#[test]
fn a_restored_database_refuses_writes_until_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let devs = vault(dir.path(), &["a", "b"]);
    let (a, b) = (&devs[0], &devs[1]);
    a.ok(&["add", "one", "--field", "k=1"]);
    let backup = dir.path().join("vault.db.bak");
    std::fs::copy(a.home.join("vault.db"), &backup).unwrap();
    a.ok(&["add", "two", "--field", "k=2"]);
    a.ok(&["add", "three", "--field", "k=3"]);
    let bundle = dir.path().join("bundle");
    a.ok(&["export", bundle.to_str().unwrap()]);
    b.ok(&["import", bundle.to_str().unwrap()]);
    let old_id = a.id();

    // The database goes back to the older copy (the head file beside it stays).
    restore_db(a, &backup);
    assert_eq!(a.names(), ["one"], "reads still work");
    // ...and say what happened (the older copy's own view does not answer in its place).
    for read in [&["get", "one"][..], &["list"]] {
        let o = a.run(read);
        assert!(o.status.success());
        assert!(String::from_utf8_lossy(&o.stderr).contains("older copy"), "{read:?}: {o:?}");
    }
    let o = a.run(&["add", "four", "--field", "k=4"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("restored from an older copy") && err.contains("hearth repair"), "{err}");

    let out = a.json(&["repair"]);
    assert_eq!(out["old_device_id"], old_id.as_str());
    assert_ne!(a.id(), old_id);
    a.ok(&["add", "four", "--field", "k=4"]);
    // Both ways, no fork: a gets its old id's later entries back from b.
    a.ok(&["export", bundle.to_str().unwrap()]);
    b.ok(&["import", bundle.to_str().unwrap()]);
    b.ok(&["export", bundle.to_str().unwrap()]);
    a.ok(&["import", bundle.to_str().unwrap()]);
    assert_eq!(a.names(), ["four", "one", "three", "two"]);
    assert_eq!(a.json(&["list"]), b.json(&["list"]));
}

/// A restored database that gets its own newer entries back (here from b's bundle) is whole
/// again: writes resume under the same id without `hearth repair`, and nothing forks.
#[test]
fn a_restored_database_that_catches_up_writes_again() {
    let dir = tempfile::tempdir().unwrap();
    let devs = vault(dir.path(), &["a", "b"]);
    let (a, b) = (&devs[0], &devs[1]);
    a.ok(&["add", "one", "--field", "k=1"]);
    let backup = dir.path().join("vault.db.bak");
    std::fs::copy(a.home.join("vault.db"), &backup).unwrap();
    a.ok(&["add", "two", "--field", "k=2"]);
    let bundle = dir.path().join("bundle");
    let bundle = bundle.to_str().unwrap();
    carry(a, b, bundle);
    let id = a.id();
    restore_db(a, &backup);
    assert!(!a.run(&["add", "three", "--field", "k=3"]).status.success());
    carry(b, a, bundle);
    a.ok(&["add", "three", "--field", "k=3"]);
    assert_eq!(a.id(), id);
    carry(a, b, bundle);
    assert_eq!(b.names(), ["one", "three", "two"]);
    assert_eq!(a.json(&["list"]), b.json(&["list"]));
}

/// The same fork met only through bundles (no network): importing a bundle whose log of a
/// device parts from the one held settles it; the forked home, importing the settlement,
/// re-enrols at once and says so, and its re-written edit reaches the other device.
#[test]
fn a_fork_met_through_bundles_settles_too() {
    let dir = tempfile::tempdir().unwrap();
    let devs = vault(dir.path(), &["a", "b"]);
    let (a, b) = (&devs[0], &devs[1]);
    let bundle = dir.path().join("bundle");
    let bundle = bundle.to_str().unwrap();
    a.ok(&["add", "one", "--field", "k=1"]);
    let backup = dir.path().join("a-backup");
    copy_dir(&a.home, &backup);
    a.ok(&["add", "lost", "--field", "k=2"]);
    carry(a, b, bundle);
    let old_id = a.id();
    std::fs::remove_dir_all(&a.home).unwrap();
    copy_dir(&backup, &a.home);
    a.ok(&["add", "typed", "--field", "k=3"]);
    carry(a, b, bundle);
    assert_eq!(b.names(), ["one"], "both branches beyond #1 are void on b");
    b.ok(&["export", bundle]);
    let o = a.run(&["import", bundle]);
    assert!(o.status.success(), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("log had forked") && err.contains(&old_id), "{err}");
    assert_ne!(a.id(), old_id);
    assert_eq!(a.names(), ["one", "typed"]);
    carry(a, b, bundle);
    assert_eq!(b.names(), ["one", "typed"]);
    assert_eq!(a.json(&["list"]), b.json(&["list"]));
}

/// The whole home (head file included) restored from an older copy and written again: the
/// device signs a second log. Daemons settle the fork: b (which holds the lost entry) and c
/// (which took the restored copy's branch) keep the shared prefix and converge, and the
/// restored device re-enrols by itself, says so in one line, and re-writes what it typed
/// after the restore. The lost entry stays listed on b.
#[test]
fn daemons_settle_a_fork_and_the_forked_device_re_enrols_by_itself() {
    use hearth_e2e::device::wait_until;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let devs = vault(dir.path(), &["a", "b", "c"]);
    let (a, b, c) = (&devs[0], &devs[1], &devs[2]);
    let bundle = dir.path().join("bundle");
    let bundle = bundle.to_str().unwrap();
    a.ok(&["add", "one", "--field", "k=1"]);
    carry(a, b, bundle);
    c.ok(&["import", bundle]);
    let backup = dir.path().join("a-backup");
    copy_dir(&a.home, &backup);
    a.ok(&["add", "lost", "--field", "k=2"]);
    carry(a, b, bundle);
    let old_id = a.id();
    std::fs::remove_dir_all(&a.home).unwrap();
    copy_dir(&backup, &a.home);
    a.ok(&["add", "typed-after-restore", "--field", "k=3"]);
    carry(a, c, bundle);
    assert_eq!(c.names(), ["one", "typed-after-restore"], "c took the restored branch");

    let log = dir.path().join("a.log");
    let args = |peer: &str| {
        vec!["--listen".to_owned(), "127.0.0.1:0".into(), "--no-mdns".into(), "--peer".into(), peer.into()]
    };
    let db = b.daemon(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    let c_args = args(&db.addr.to_string());
    let dc = c.daemon(&c_args.iter().map(String::as_str).collect::<Vec<_>>());
    let t = Duration::from_secs(30);
    wait_until(t, "b and c settle and converge", || b.names() == ["one"] && c.names() == ["one"]);
    let a_args = args(&dc.addr.to_string());
    let _da = a.daemon_logged(&a_args.iter().map(String::as_str).collect::<Vec<_>>(), &log);
    wait_until(t, "a re-enrols", || a.id() != old_id);
    wait_until(t, "the re-written edit reaches b and c", || {
        b.names() == ["one", "typed-after-restore"] && c.names() == ["one", "typed-after-restore"]
    });
    assert_eq!(a.json(&["list"]), b.json(&["list"]));
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("log had forked")).collect();
    assert!(!lines.is_empty() && lines[0].contains(&a.id()) && lines[0].contains(&old_id), "{text}");
    // Nothing typed disappears: the lost entry is listed on b, the restored branch's on a.
    let listed = b.json(&["conflicts", "--void"]);
    let row = listed.as_array().unwrap().iter().find(|r| r["name"] == "lost").cloned();
    assert_eq!(row.map(|r| r["fields"][0]["value"].clone()), Some("2".into()), "{listed}");
    assert!(b.ok(&["conflicts", "--void"]).contains("on a forked branch"));
    // The old id is out everywhere; a writes as its new id and keeps syncing.
    a.ok(&["add", "after", "--field", "k=4"]);
    wait_until(t, "a's new edits sync", || b.names().contains(&"after".to_owned()));
    drop(dc);
    drop(db);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).unwrap();
    // As `cp -a` would: the home's mode comes along (a daemon refuses a home open to others).
    std::fs::set_permissions(to, std::fs::metadata(from).unwrap().permissions()).unwrap();
    assert_eq!(std::fs::metadata(to).unwrap().permissions().mode() & 0o777, 0o700);
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        // Sockets and locks belong to a running process, not to a backup.
        if name == "daemon.sock" || e.file_type().unwrap().is_dir() {
            continue;
        }
        std::fs::copy(e.path(), to.join(name)).unwrap();
    }
}

/// Puts `backup` back as `d`'s database (its WAL and shared memory go; the head file stays).
fn restore_db(d: &hearth_e2e::device::Device, backup: &std::path::Path) {
    for f in ["vault.db-wal", "vault.db-shm"] {
        let _ = std::fs::remove_file(d.home.join(f));
    }
    std::fs::copy(backup, d.home.join("vault.db")).unwrap();
}

/// Carries everything `from` holds to `to` in a bundle file (sneakernet).
fn carry(from: &hearth_e2e::device::Device, to: &hearth_e2e::device::Device, bundle: &str) {
    from.ok(&["export", bundle]);
    to.ok(&["import", bundle]);
}
