//! Sync through WebRTC with nothing but a rendezvous URL: two daemons with no LAN path
//! between them (no mDNS, no `--peer`) find each other in their vault's room, introduce
//! themselves (each enrolled alone and never synced), exchange sealed offers and answers
//! through the real `hearth-rendezvous`, and sync over a data channel; the server never sees
//! a value or an SDP. Then a LAN path appears and the session moves to it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use hearth_e2e::device::{vault, wait_until, Device};
use hearth_e2e::rendezvous::Rv;
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

fn peers(d: &Device) -> Vec<Value> {
    d.json(&["status"])["peers"].as_array().cloned().unwrap_or_default()
}

fn path_to(d: &Device, other: &Device) -> Option<String> {
    let id = other.id();
    peers(d).iter().find(|p| p["device"] == id.as_str()).and_then(|p| p["path"].as_str().map(str::to_owned))
}

#[test]
fn two_devices_sync_through_webrtc_with_only_a_rendezvous_url() {
    let dir = tempfile::tempdir().unwrap();
    let devs = vault(dir.path(), &["a", "b"]);
    let (a, b) = (&devs[0], &devs[1]);
    let rv = Rv::start(&[], None);
    let stun = rv.stun.expect("STUN address").to_string();
    // The form a person types: http://HOST:PORT.
    let url = format!("http://{}", rv.http);
    let args = ["--listen", "127.0.0.1:0", "--no-mdns", "--rendezvous", url.as_str(), "--stun", stun.as_str()];
    let _da = a.daemon(&args);
    let _db = b.daemon(&args);
    wait_until(T, "a WebRTC session", || path_to(a, b).as_deref() == Some("webrtc"));
    wait_until(T, "b sees it too", || path_to(b, a).as_deref() == Some("webrtc"));

    a.ok(&["add", "bank", "--field", "user=al", "--field", "password=correct-horse-7"]);
    wait_until(T, "b gets a's item over WebRTC", || b.names() == ["bank"]);
    assert_eq!(b.json(&["get", "bank", "--show"])["fields"]["password"], "correct-horse-7");
    b.ok(&["edit", "bank", "--field", "password=battery-staple-8"]);
    wait_until(T, "a gets b's edit", || a.json(&["get", "bank", "--show"])["fields"]["password"] == "battery-staple-8");

    // The server relayed offers and answers (it logs each relay at trace level) and saw
    // neither a value nor any SDP: addresses and fingerprints travel sealed.
    let log = rv.log();
    for secret in ["correct-horse", "battery-staple", "bank", "a=fingerprint", "a=candidate", "v=0"] {
        assert!(!log.contains(secret), "the rendezvous saw {secret:?}");
    }
}

#[test]
fn a_lan_path_that_appears_takes_over_from_webrtc() {
    let dir = tempfile::tempdir().unwrap();
    let devs = vault(dir.path(), &["a", "b"]);
    // The device with the lower id offers; the LAN dial comes from whichever has `--peer`.
    let (a, b) = (&devs[0], &devs[1]);
    let rv = Rv::start(&[], None);
    let stun = rv.stun.expect("STUN address").to_string();
    let url = rv.url();
    let db = b.daemon(&["--listen", "127.0.0.1:0", "--no-mdns", "--rendezvous", &url, "--stun", &stun]);
    // a's LAN peer address leads nowhere until the test opens it (a port forward to b).
    let gate = TcpListener::bind("127.0.0.1:0").unwrap();
    let gate_addr = gate.local_addr().unwrap();
    drop(gate);
    let gate_s = gate_addr.to_string();
    let _da =
        a.daemon(&["--listen", "127.0.0.1:0", "--no-mdns", "--rendezvous", &url, "--stun", &stun, "--peer", &gate_s]);
    wait_until(T, "a WebRTC session first", || path_to(a, b).as_deref() == Some("webrtc"));
    let _fwd = forward(gate_addr, db.addr);
    wait_until(T, "the session moves to the LAN", || {
        path_to(a, b).as_deref() == Some("lan") && path_to(b, a).as_deref() == Some("lan")
    });
    assert_eq!(peers(a).len(), 1, "one session per device pair");
    a.ok(&["add", "wifi", "--field", "psk=x"]);
    wait_until(T, "b gets it over the LAN", || b.names() == ["wifi"]);
}

/// Forwards TCP connections from `from` to `to` (threads end with the test process).
fn forward(from: SocketAddr, to: SocketAddr) -> std::thread::JoinHandle<()> {
    let l = TcpListener::bind(from).unwrap();
    std::thread::spawn(move || {
        for c in l.incoming().flatten() {
            let Ok(up) = TcpStream::connect(to) else { continue };
            let (c2, up2) = (c.try_clone().unwrap(), up.try_clone().unwrap());
            std::thread::spawn(move || pipe(c, up));
            std::thread::spawn(move || pipe(up2, c2));
        }
    })
}

fn pipe(mut r: TcpStream, mut w: TcpStream) {
    let _ = std::io::copy(&mut r, &mut w);
    let _ = w.shutdown(std::net::Shutdown::Both);
}

#[test]
fn a_rendezvous_restart_does_not_break_a_live_channel_and_presence_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let devs = vault(dir.path(), &["a", "b"]);
    let (a, b) = (&devs[0], &devs[1]);
    let rv = Rv::start(&[], None);
    let stun = rv.stun.expect("STUN address").to_string();
    let (listen, url) = (rv.http.to_string(), rv.url());
    let args = ["--listen", "127.0.0.1:0", "--no-mdns", "--rendezvous", url.as_str(), "--stun", stun.as_str()];
    let _da = a.daemon(&args);
    let _db = b.daemon(&args);
    wait_until(T, "a WebRTC session", || path_to(a, b).as_deref() == Some("webrtc"));

    // The server goes away: the channel is peer to peer and keeps syncing.
    drop(rv);
    wait_until(T, "a sees the rendezvous gone", || a.json(&["status"])["rendezvous"]["connected"] == false);
    a.ok(&["add", "while-down", "--field", "k=1"]);
    wait_until(T, "b gets it with no server", || b.names() == ["while-down"]);
    assert_eq!(path_to(a, b).as_deref(), Some("webrtc"));

    // Back on the same address (knowing nothing): both rejoin and see each other again.
    let _rv2 = Rv::start(&["--listen", &listen, "--stun-bind", &stun], None);
    wait_until(T, "presence comes back", || {
        [a, b].iter().all(|d| {
            let l = d.json(&["status"])["rendezvous"].clone();
            l["connected"] == true && l["online"] == 1
        })
    });
    b.ok(&["add", "after", "--field", "k=2"]);
    wait_until(T, "and sync goes on", || a.names() == ["after", "while-down"]);
}

#[test]
fn devices_sync_through_a_rendezvous_behind_caddy_over_https() {
    // A VPS behind Caddy offers only TLS: the URL a person types is https://NAME. Caddy's
    // local CA stands in for a public one (`--rendezvous-ca`); without it the daemon says why.
    let dir = tempfile::tempdir().unwrap();
    let devs = vault(dir.path(), &["a", "b", "c"]);
    let (rv, cd) = hearth_e2e::caddy::behind_caddy(&["--trusted-proxy", "127.0.0.1/32"], true);
    let stun = rv.stun.expect("STUN address").to_string();
    let url = format!("https://{}", cd.public);
    let ca = cd.root.clone().expect("caddy's root").to_string_lossy().into_owned();
    let args = ["--listen", "127.0.0.1:0", "--no-mdns", "--rendezvous", &url, "--rendezvous-ca", &ca, "--stun", &stun];
    let _da = devs[0].daemon(&args);
    let _db = devs[1].daemon(&args);
    wait_until(T, "a WebRTC session via the HTTPS rendezvous", || {
        path_to(&devs[0], &devs[1]).as_deref() == Some("webrtc")
    });
    devs[0].ok(&["add", "tls-item", "--field", "k=v"]);
    wait_until(T, "b gets it", || devs[1].names() == ["tls-item"]);

    let _dc = devs[2].daemon(&["--listen", "127.0.0.1:0", "--no-mdns", "--rendezvous", &url, "--stun", &stun]);
    wait_until(T, "c reports the untrusted certificate", || {
        let link = devs[2].json(&["status"])["rendezvous"].clone();
        link["connected"] == false && link["error"].as_str().is_some_and(|e| e.contains("certificate"))
    });
    let human = String::from_utf8_lossy(&devs[2].run(&["status"]).stdout).into_owned();
    assert!(human.contains("not joined") && human.contains("certificate"), "{human}");
}
