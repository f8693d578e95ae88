//! `hearth daemon --rendezvous URL` against the real `hearth-rendezvous` binary: daemons stay
//! joined to their vault's room, a revocation made on one device reaches the server through
//! its daemon and shuts the revoked device out, and a restarted server (which keeps nothing
//! on disk) re-learns the revocation from the devices as they rejoin.

use std::time::Duration;

use hearth_e2e::device::{vault, wait_until, Daemon, Device};
use hearth_e2e::rendezvous::Rv;
use serde_json::Value;

const T: Duration = Duration::from_secs(20);

fn daemon(d: &Device, url: &str, peers: &[&Daemon]) -> Daemon {
    let mut args = vec!["--listen", "127.0.0.1:0", "--no-mdns", "--rendezvous", url];
    let addrs: Vec<String> = peers.iter().map(|p| p.addr.to_string()).collect();
    for a in &addrs {
        args.extend(["--peer", a.as_str()]);
    }
    d.daemon(&args)
}

fn link(d: &Device) -> Value {
    d.json(&["status"])["rendezvous"].clone()
}

fn joined_with(d: &Device, online: u64) -> bool {
    let l = link(d);
    l["connected"] == true && l["online"] == online
}

#[test]
fn daemons_join_the_rendezvous_and_feed_it_revocations() {
    let dir = tempfile::tempdir().unwrap();
    let devs = vault(dir.path(), &["a", "b", "c"]);
    let (a, b, c) = (&devs[0], &devs[1], &devs[2]);
    // c's home as it is before any revocation: started again after the server restart, it
    // presents nothing that revokes it, so only what a and b re-present can keep it out.
    let c_copy = Device::new(dir.path(), "c-copy");
    copy_home(&c.home, &c_copy.home);
    let rv = Rv::start(&["--no-stun"], None);
    let url = rv.url();
    let da = daemon(a, &url, &[]);
    let _db = daemon(b, &url, &[&da]);
    let dc = daemon(c, &url, &[&da]);
    wait_until(T, "three devices in the room", || joined_with(a, 2) && joined_with(b, 2) && joined_with(c, 2));
    // a learns c's enrolment over the LAN session before it can revoke it.
    wait_until(T, "a syncs with b and c", || a.json(&["status"])["peers"].as_array().is_some_and(|p| p.len() == 2));
    assert_eq!(link(a)["url"].as_str(), Some(url.as_str()));
    assert!(a.ok(&["status"]).contains("joined, 2 other devices there"), "{}", a.ok(&["status"]));

    // c is lost: a revokes it through its daemon, which tells the rendezvous at once.
    a.ok(&["revoke", &c.id(), "--yes"]);
    wait_until(T, "c shut out of the room", || {
        let l = link(c);
        l["connected"] == false && l["error"].as_str().is_some_and(|e| e.contains("revoked"))
    });
    wait_until(T, "a and b see only each other", || joined_with(a, 1) && joined_with(b, 1));

    // The server restarts on the same address, knowing nothing; a and b rejoin and present
    // the revocation; c, restarted from its home as it was before the revocation (it knows
    // nothing of it) and with no LAN path, is refused all the same.
    let port = rv.http.port();
    drop(rv);
    drop(dc);
    let listen = format!("127.0.0.1:{port}");
    let _rv2 = Rv::start(&["--no-stun", "--listen", &listen], None);
    wait_until(T, "a and b back in the room", || joined_with(a, 1) && joined_with(b, 1));
    let _dc = daemon(&c_copy, &url, &[]);
    wait_until(T, "c refused by the restarted server", || {
        link(&c_copy)["error"].as_str().is_some_and(|e| e.contains("revoked"))
    });
    assert!(joined_with(a, 1), "c never got in: {}", link(a));
    assert_eq!(c_copy.json(&["status"])["peers"].as_array().map(Vec::len), Some(0));
}

/// Copies a home's files (not a running daemon's socket or lock), keeping its 0700 mode.
fn copy_home(from: &std::path::Path, to: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn a_url_or_ca_file_the_daemon_cannot_use_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let devs = vault(dir.path(), &["a"]);
    let daemon = |extra: &[&str]| {
        let mut args = vec!["daemon", "--listen", "127.0.0.1:0", "--no-mdns"];
        args.extend(extra);
        let o = devs[0].run(&args);
        assert!(!o.status.success(), "{extra:?}");
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    // Anything that is not a rendezvous URL at all (https:// and wss:// are: see
    // rendezvous_caddy.rs and webrtc_rendezvous.rs, behind the real Caddy).
    for bad in ["rv.example", "ftp://rv.example", "https://"] {
        let err = daemon(&["--rendezvous", bad]);
        assert!(err.contains("expected https://HOST[:PORT]"), "{bad}: {err}");
    }
    // A private CA that is missing, or not a certificate, is refused before anything starts.
    let missing = dir.path().join("missing.pem");
    let err = daemon(&["--rendezvous", "https://rv.example", "--rendezvous-ca", missing.to_str().unwrap()]);
    assert!(err.contains("--rendezvous-ca") && err.contains("missing.pem"), "{err}");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let err = daemon(&["--rendezvous", "https://rv.example", "--rendezvous-ca", garbage.to_str().unwrap()]);
    assert!(err.contains("no PEM certificate"), "{err}");
    // A TURN relay of its own needs a user and a password kept off the command line.
    let err = daemon(&["--turn-url", "turn:relay.example:3478", "--turn-user", "u"]);
    assert!(err.contains("--turn-password-file FILE or HEARTH_TURN_PASSWORD"), "{err}");
    let err = daemon(&["--turn-url", "turn:relay.example:3478"]);
    assert!(err.contains("--turn-user"), "{err}");
    let err =
        daemon(&["--turn-url", "stun:relay.example:3478", "--turn-user", "u", "--turn-password-file", "/dev/null"]);
    assert!(err.contains("expected turn:HOST:PORT"), "{err}");
}
