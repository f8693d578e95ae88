//! `hearth rotate` as real processes: a family vault with a lost (revoked) device rotates;
//! the new vault holds every item and kept conflict; a device left on the old vault is told
//! when it reaches the rotating device (its daemon stops, reads still work, writes are
//! refused with the reason) and pairs again; the lost device and a thief home holding the
//! old phrase cannot follow and receive nothing written after the rotation.

use std::path::Path;
use std::time::{Duration, Instant};

use hearth_e2e::device::{carry, join, wait_until, Daemon, Device};
use hearth_e2e::rendezvous::Rv;
use hearth_e2e::Proc;
use serde_json::Value;

const T: Duration = Duration::from_secs(40);
const AFTER: &str = "only-in-the-new-vault-9";

/// `hearth daemon` of `d` on loopback, dialling `peer`, its stderr in `log`.
fn daemon_dialling(d: &Device, peer: &Daemon, log: &Path) -> Daemon {
    let addr = peer.addr.to_string();
    d.daemon_logged(&["--listen", "127.0.0.1:0", "--no-mdns", "--peer", &addr], log)
}

/// Waits for a daemon to exit by itself; its exit status.
fn exits(d: &mut Daemon) -> std::process::ExitStatus {
    let end = Instant::now() + T;
    loop {
        if let Some(s) = d.proc.child.try_wait().expect("try_wait") {
            return s;
        }
        assert!(Instant::now() < end, "the daemon did not stop after learning of the rotation");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn files_hold(dir: &Path, needle: &str) -> bool {
    std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            files_hold(&p, needle)
        } else {
            std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
        }
    })
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_rotation_leaves_the_lost_device_and_the_old_phrase_behind() {
    let dir = tempfile::tempdir().unwrap();
    let a = &Device::new(dir.path(), "a");
    // The old phrase, as a thief who read it off the lost device would hold it.
    let phrase = a.json(&["init", "--no-passphrase", "--name", "a"])["phrase"].as_str().unwrap().to_owned();
    let (b, lost) = (&join(dir.path(), "b", &phrase), &join(dir.path(), "lost", &phrase));
    a.ok(&["add", "bank", "--field", "user=al", "--field", "password=correct-horse-7"]);
    carry(a, b, dir.path());
    carry(a, lost, dir.path());
    carry(lost, a, dir.path());
    // A kept conflict: a and b change the password apart, then exchange.
    a.ok(&["edit", "bank", "--field", "password=from-a-1"]);
    b.ok(&["edit", "bank", "--field", "password=from-b-2"]);
    carry(a, b, dir.path());
    carry(b, a, dir.path());
    let conflicts = a.json(&["conflicts", "--show"]);
    assert_eq!(conflicts.as_array().map(Vec::len), Some(1), "{conflicts}");
    let old_a = a.id();
    let old_vault = a.json(&["status"])["vault_id"].clone();
    a.ok(&["revoke", &lost.id(), "--yes"]);

    let rot = a.json(&["rotate", "--yes"]);
    assert_eq!(rot["ok"], true, "{rot}");
    assert_eq!(rot["retired_vault_id"], old_vault);
    assert_ne!(rot["vault_id"], old_vault);
    assert_eq!((rot["items"].as_u64(), rot["conflicts"].as_u64()), (Some(1), Some(1)), "{rot}");
    let new_phrase = rot["phrase"].as_str().expect("the new phrase is shown").to_owned();
    assert_eq!(new_phrase.split_whitespace().count(), 24);
    assert_eq!(a.json(&["status"])["vault_id"], rot["vault_id"]);
    assert_eq!(a.json(&["conflicts", "--show"]), conflicts, "the same conflict, the same values");
    assert_eq!(a.names(), ["bank"]);
    a.ok(&["add", "after", "--field", &format!("secret={AFTER}")]);

    // a's daemon serves the new vault (on the LAN and through the family's rendezvous) and
    // answers the old one with its retirement.
    let rv = Rv::start(&[], None);
    let url = format!("http://{}", rv.http);
    let stun = rv.stun.expect("STUN").to_string();
    let da = a.daemon(&["--listen", "127.0.0.1:0", "--no-mdns", "--rendezvous", &url, "--stun", &stun]);

    // b, left on the old vault, writes once more (it has not heard), then reaches a: it is
    // told, and its daemon ends saying so.
    b.ok(&["add", "late", "--field", "note=typed-after-the-rotation"]);
    let blog = dir.path().join("b.log");
    let mut db = daemon_dialling(b, &da, &blog);
    assert!(!exits(&mut db).success());
    let said = std::fs::read_to_string(&blog).unwrap();
    assert!(said.contains("this vault was rotated on") && said.contains(&old_a), "{said}");
    assert!(said.contains("pair this device again"), "{said}");
    // Its reads still work (nothing it held is lost), with the reason; writes are refused.
    let o = b.run(&["--json", "get", "bank", "--show"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("this vault was rotated on"), "{}", stderr(&o));
    assert!(stderr(&o).contains("1 edit(s) held here came after the rotation"), "{}", stderr(&o));
    let o = b.run(&["add", "late", "--field", "k=v"]);
    assert!(!o.status.success() && stderr(&o).contains("rotated"), "{}", stderr(&o));
    let o = b.run(&["daemon", "--listen", "127.0.0.1:0", "--no-mdns"]);
    assert!(!o.status.success() && stderr(&o).contains("rotated"), "a retired vault's daemon does not start");
    // Rotating it again would split the family; the refusal says how to insist (a thief
    // holding the old words could have retired it).
    let o = b.run(&["rotate", "--yes"]);
    assert!(!o.status.success() && stderr(&o).contains("rotate --force"), "{}", stderr(&o));

    // The lost device (revoked) and a thief home holding the old phrase dial a: each learns
    // only that the vault was retired, and nothing written since.
    let thief = join(dir.path(), "thief", &phrase);
    for (name, d) in [("lost", lost), ("thief", &thief)] {
        let log = dir.path().join(format!("{name}.log"));
        let mut dd = daemon_dialling(d, &da, &log);
        assert!(!exits(&mut dd).success(), "{name}");
        let said = std::fs::read_to_string(&log).unwrap();
        assert!(said.contains("this vault was rotated on"), "{name}: {said}");
        assert!(!d.names().contains(&"after".to_owned()), "{name} holds nothing of the new vault");
        assert!(!files_hold(&d.home, AFTER));
    }

    // b pairs again in its own home (through the family's rendezvous) and gets everything;
    // the old vault, with what it wrote late, stays readable beside it.
    let mut inv = Proc::spawn(&mut a.cmd(&["--json", "invite", "--yes", "--rendezvous", &url, "--no-mdns"]));
    let first: Value = serde_json::from_str(&inv.stdout.next().unwrap().unwrap()).unwrap();
    let invite_url = first["url"].as_str().unwrap();
    let o = b.run(&["--json", "join", invite_url, "--name", "b", "--no-mdns", "--stun", &stun]);
    assert!(o.status.success(), "join: {}", stderr(&o));
    assert!(inv.child.wait().unwrap().success());
    wait_until(T, "b holds the new vault", || b.names() == ["after", "bank"]);
    assert_eq!(b.json(&["status"])["vault_id"], rot["vault_id"]);
    assert_eq!(b.json(&["conflicts", "--show"]), conflicts, "b sees the carried conflict");
    assert_eq!(b.json(&["get", "after", "--show"])["fields"]["secret"], AFTER);
    let old_b = Device::new(&b.home.join("retired"), old_vault.as_str().unwrap());
    assert_eq!(old_b.names(), ["bank", "late"], "the old vault, as b left it");
    // A home that was never retired is not joined over.
    let o = a.run(&["join", invite_url, "--no-mdns"]);
    assert!(!o.status.success() && stderr(&o).contains("already holds a vault"), "{}", stderr(&o));
    assert!(!files_hold(&b.home, &phrase) && !files_hold(&b.home, &new_phrase));
    drop(da);
}

/// With mDNS alone (no static peer, no server): the rotated device still advertises under
/// the old vault's tag, so a device left on the old vault finds it and is told.
#[test]
fn a_device_left_behind_finds_the_rotated_one_by_mdns_and_is_told() {
    if !hearth_e2e::netns::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut lab = hearth_e2e::netns::Lab::new();
    let host = lab.host("m");
    lab.loopback_multicast(&host);
    let devs: Vec<Device> =
        hearth_e2e::device::vault(dir.path(), &["a", "b"]).into_iter().map(|d| d.in_netns(&host)).collect();
    let (a, b) = (&devs[0], &devs[1]);
    carry(b, a, dir.path());
    a.ok(&["add", "bank", "--field", "password=correct-horse-7"]);
    let old_a = a.id();
    a.json(&["rotate", "--yes"]);
    a.ok(&["add", "after", "--field", &format!("secret={AFTER}")]);
    let _da = a.daemon(&["--listen", "127.0.0.1:0"]);
    let log = dir.path().join("b.log");
    let mut db = b.daemon_logged(&["--listen", "127.0.0.1:0"], &log);
    assert!(!exits(&mut db).success());
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("this vault was rotated on") && said.contains(&old_a), "{said}");
    assert!(b.names().is_empty() && !files_hold(&b.home, AFTER));
}

/// With no LAN path at all (no mDNS, no static peer), rotated by the running daemon: it
/// serves the new vault, also joins the old vault's room on the family's rendezvous, and
/// tells the devices there.
#[test]
fn a_device_reached_only_through_the_rendezvous_is_told_there() {
    let dir = tempfile::tempdir().unwrap();
    let a = Device::new(dir.path(), "a");
    let phrase = a.json(&["init", "--no-passphrase", "--name", "a"])["phrase"].as_str().unwrap().to_owned();
    let b = join(dir.path(), "b", &phrase);
    carry(&b, &a, dir.path());
    a.ok(&["add", "bank", "--field", "password=correct-horse-7"]);
    let rv = Rv::start(&[], None);
    let url = format!("http://{}", rv.http);
    let stun = rv.stun.expect("STUN").to_string();
    let flags = ["--listen", "127.0.0.1:0", "--no-mdns", "--rendezvous", &url, "--stun", &stun];
    // Both on the old vault, through the rendezvous only: they sync.
    let log = dir.path().join("b.log");
    let mut db = b.daemon_logged(&flags, &log);
    let _da = a.daemon(&flags);
    wait_until(T, "a's item reaches b through the rendezvous", || b.names() == ["bank"]);
    let old_a = a.id();
    // Rotated by the running daemon: it stops, rotates its home and serves the new vault.
    let rot = a.json(&["rotate", "--yes"]);
    assert_eq!(rot["items"], 1, "{rot}");
    wait_until(T, "a's daemon serves the new vault", || a.json(&["status"])["vault_id"] == rot["vault_id"]);
    assert_ne!(a.id(), old_a);
    assert!(!exits(&mut db).success());
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("this vault was rotated on") && said.contains(&old_a), "{said}");
    assert!(said.contains("told through the rendezvous"), "{said}");
}
