//! kill -9 at random moments during `hearth import` and `hearth add`: the home always
//! reopens, every committed batch is whole, and finishing the work converges exactly.

use std::process::{Command, Stdio};
use std::time::Duration;

use hearth_e2e::bin;
use hearth_peer::home::{Home, Protection};
use hearth_peer::identity::VaultSecret;
use hearth_peer::ids::{DeviceId, ItemId};
use hearth_peer::vault::{bundle, Op};

#[test]
fn kill_9_during_import_loses_nothing_committed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = VaultSecret::generate();
    let src = Home::new(dir.path().join("src"));
    src.create(&secret, DeviceId::random(), &Protection::KeyFile).unwrap();
    let mut a = src.open(None).unwrap();
    a.enroll_self(1).unwrap();
    for i in 0..6_000u32 {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&i.to_be_bytes());
        let op = Op::Put {
            item: ItemId(id),
            name: Some(format!("item {i}")),
            fields: vec![("notes".into(), Some("x".repeat(300))), ("password".into(), Some(format!("pw{i}")))],
        };
        a.write(&op, 1_000 + u64::from(i)).unwrap();
    }
    let bundle_path = dir.path().join("bundle");
    std::fs::write(&bundle_path, bundle::export(&a).unwrap()).unwrap();
    let want = a.state().digest();

    let dst = Home::new(dir.path().join("dst"));
    dst.create(&secret, DeviceId::random(), &Protection::KeyFile).unwrap();
    dst.open(None).unwrap().enroll_self(2).unwrap();
    let mut killed_midway = 0;
    let wal = dst.db_path().with_extension("db-wal");
    for attempt in 0..7u64 {
        let mut child = Command::new(bin("hearth"))
            .arg("--home")
            .arg(dst.dir())
            .arg("import")
            .arg(&bundle_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill at a point in the import that moves on each attempt: its WAL grows while a
        // batch (~1 MiB) is written and at its commit, so thresholds from 0 to ~2.5 MiB land
        // inside the first transaction, between commits, and inside later ones.
        let before = std::fs::metadata(&wal).map_or(0, |m| m.len());
        let end = std::time::Instant::now() + Duration::from_secs(20);
        while std::fs::metadata(&wal).map_or(0, |m| m.len()) <= before + attempt * (400 << 10)
            && std::time::Instant::now() < end
            && child.try_wait().unwrap().is_none()
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // Whatever happened, the home opens and verifies (hash chains, head signatures), and
        // its state is exactly the first n entries of the source: item i for entry i.
        let r = dst.open(None).expect("home must reopen after kill -9");
        let n = r.version().get(a.device_id());
        let ids: std::collections::BTreeSet<u32> =
            r.state().visible().map(|(id, _)| u32::from_be_bytes([id.0[0], id.0[1], id.0[2], id.0[3]])).collect();
        assert_eq!(ids, (0..n as u32).collect(), "state = the committed prefix");
        eprintln!("kill {attempt}: {n} entries committed");
        if n > 0 && n < 6_000 {
            killed_midway += 1;
        }
    }
    assert!(killed_midway > 0, "no kill landed mid-import");
    // Finish the import: the result is exactly the source's state.
    let out =
        Command::new(bin("hearth")).arg("--home").arg(dst.dir()).arg("import").arg(&bundle_path).output().unwrap();
    assert!(out.status.success());
    let r = dst.open(None).unwrap();
    assert_eq!(r.state().digest(), want);
    eprintln!("{killed_midway} of 7 kills landed mid-import");
}

#[test]
fn kill_9_during_writes_keeps_every_acknowledged_edit() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("h");
    let hearth = |args: &[&str]| Command::new(bin("hearth")).arg("--home").arg(&home).args(args).output().unwrap();
    assert!(hearth(&["init", "--no-passphrase"]).status.success());
    let mut acknowledged = Vec::new();
    for i in 0..40 {
        let name = format!("item{i}");
        if i % 4 == 3 {
            // Kill an add in flight: it either fully happened or not at all.
            let mut child = Command::new(bin("hearth"))
                .arg("--home")
                .arg(&home)
                .args(["add", &name, "--field", "k=v"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(i as u64));
            let _ = child.kill();
            let _ = child.wait();
        } else if hearth(&["add", &name, "--field", "k=v"]).status.success() {
            acknowledged.push(name);
        }
    }
    let list = hearth(&["--json", "list"]);
    assert!(list.status.success(), "{}", String::from_utf8_lossy(&list.stderr));
    let items: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let names: Vec<&str> = items.as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    for a in &acknowledged {
        assert!(names.contains(&a.as_str()), "acknowledged {a} was lost");
    }
}
