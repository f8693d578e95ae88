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
    for f in ["vault.db-wal", "vault.db-shm"] {
        let _ = std::fs::remove_file(a.home.join(f));
    }
    std::fs::copy(&backup, a.home.join("vault.db")).unwrap();
    assert_eq!(a.names(), ["one"], "reads still work");
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
