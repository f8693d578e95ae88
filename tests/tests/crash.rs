//! kill -9 at random moments during `hearth import`, `hearth add` and `hearth rotate`: the
//! home always reopens, every committed batch is whole, and finishing the work converges
//! exactly.

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

/// One visible item as shown: id, name, fields.
type Shown = (ItemId, String, Vec<(String, String)>);

/// What a home shows: every visible item.
fn view(home: &Home) -> Vec<Shown> {
    let r = home.open(None).expect("home must reopen after kill -9");
    r.state()
        .visible()
        .map(|(id, it)| {
            let f = it.field_values().into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
            (*id, it.name().to_owned(), f)
        })
        .collect()
}

/// kill -9 at moments spread over a whole `hearth rotate`: the home always opens, holding
/// either the old vault whole (and `rotate` then finishes) or the new vault with every item,
/// the old one whole beside it.
#[test]
fn kill_9_during_rotate_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let template = Home::new(dir.path().join("template"));
    let secret = VaultSecret::generate();
    template.create(&secret, DeviceId::random(), &Protection::KeyFile).unwrap();
    let mut a = template.open(None).unwrap();
    a.enroll_self(1).unwrap();
    for i in 0..2_000u32 {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&i.to_be_bytes());
        let fields = vec![("notes".into(), Some("x".repeat(200))), ("password".into(), Some(format!("pw{i}")))];
        a.write(&Op::Put { item: ItemId(id), name: Some(format!("item {i}")), fields }, 1_000 + u64::from(i)).unwrap();
    }
    let old_vault = a.vault_id();
    drop(a);
    let want = view(&template);
    let copy = |n: u32| {
        let to = dir.path().join(format!("h{n}"));
        assert!(Command::new("cp").arg("-a").arg(template.dir()).arg(&to).status().unwrap().success());
        Home::new(to)
    };
    let rotate = |home: &Home| {
        Command::new(bin("hearth"))
            .arg("--home")
            .arg(home.dir())
            .args(["--json", "rotate", "--yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // How long a whole rotation takes here, to spread the kills over it.
    let t0 = std::time::Instant::now();
    assert!(rotate(&copy(99)).wait().unwrap().success());
    let whole = t0.elapsed();
    let (mut old_kept, mut new_done) = (0, 0);
    for k in 0..11u32 {
        let home = copy(k);
        let mut child = rotate(&home);
        if k < 8 {
            std::thread::sleep(whole.mul_f64(f64::from(k) / 8.0));
        } else {
            // At the commit: as soon as the marker exists (the moves take microseconds, so
            // this lands in them or just after).
            let ready = home.dir().join("rotating").join("ready");
            let end = std::time::Instant::now() + Duration::from_secs(20);
            while !ready.exists() && child.try_wait().unwrap().is_none() && std::time::Instant::now() < end {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        let r = home.open(None).expect("home must reopen after kill -9");
        if r.vault_id() == old_vault {
            old_kept += 1;
            drop(r);
            assert_eq!(view(&home), want, "kill {k}: the old vault whole");
            // Rotating again finishes the job (a vault this device retired may be).
            assert!(rotate(&home).wait().unwrap().success(), "kill {k}: rotate again");
        } else {
            new_done += 1;
        }
        let r = home.open(None).unwrap();
        assert_ne!(r.vault_id(), old_vault);
        drop(r);
        assert_eq!(view(&home), want, "kill {k}: the new vault holds every item");
        let retired = Home::new(home.dir().join("retired").join(old_vault.to_hex()));
        assert_eq!(view(&retired), want, "kill {k}: the old vault whole beside it");
    }
    eprintln!("rotation of 2,000 items: {whole:?}; killed before the commit {old_kept}, after {new_done}");
    assert!(old_kept > 0, "no kill landed before the commit");
}
