//! WebRTC with no server at all (`hearth connect`): two daemons with no rendezvous, no mDNS
//! and no LAN peer; a person carries an offer from one to the other and the reply back, and
//! the vault syncs over the data channel. Bad, swapped or replayed text gets a clear error.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use hearth_e2e::device::{vault, wait_until, Device};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

fn path_to(d: &Device, other: &Device) -> Option<String> {
    let id = other.id();
    let s = d.json(&["status"]);
    s["peers"]
        .as_array()?
        .iter()
        .find(|p| p["device"] == id.as_str())
        .and_then(|p| p["path"].as_str().map(str::to_owned))
}

#[test]
fn an_offer_and_its_reply_carried_by_hand_connect_two_devices_with_no_server() {
    let dir = tempfile::tempdir().unwrap();
    let devs = vault(dir.path(), &["a", "b"]);
    let (a, b) = (&devs[0], &devs[1]);
    let args = ["--listen", "127.0.0.1:0", "--no-mdns"];
    let _da = a.daemon(&args);
    let _db = b.daemon(&args);

    // a prints its offer (and writes it as a QR code) and waits for the reply on stdin.
    let (offer_png, reply_png) = (dir.path().join("offer.png"), dir.path().join("reply.png"));
    let mut offerer = a
        .cmd(&["connect", "--offer", "--png", offer_png.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(offerer.stdout.take().unwrap());
    let mut offer = String::new();
    out.read_line(&mut offer).unwrap();
    assert!(offer.starts_with("hearth-offer:"), "{offer}");
    assert_eq!(hearth_e2e::qr::read_png(&offer_png), offer.trim(), "an independent decoder reads the offer's QR code");
    // b answers it (a person pasted it, or scanned it) and prints the reply.
    let mut answerer = b
        .cmd(&["connect", "--answer", offer.trim(), "--png", reply_png.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reply = String::new();
    BufReader::new(answerer.stdout.take().unwrap()).read_line(&mut reply).unwrap();
    assert!(reply.starts_with("hearth-answer:"), "{reply}");
    assert_eq!(hearth_e2e::qr::read_png(&reply_png), reply.trim());
    // The reply pasted on a, wrapped as a terminal would show it.
    let wrapped: String =
        reply.trim().as_bytes().chunks(70).map(|c| format!("{}\n", std::str::from_utf8(c).unwrap())).collect();
    // A person takes a while to carry it back: longer than a rendezvous dial waits (15 s),
    // so the answering side must hold its checks until the offering side starts.
    let carry = std::env::var("HEARTH_TEST_CARRY_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(16);
    std::thread::sleep(Duration::from_secs(carry));
    offerer.stdin.take().unwrap().write_all(format!("{wrapped}\n").as_bytes()).unwrap();
    assert!(offerer.wait().unwrap().success(), "a's connect ends once the channel is open");
    assert!(answerer.wait().unwrap().success(), "so does b's");

    wait_until(T, "a WebRTC session both ways", || {
        path_to(a, b).as_deref() == Some("webrtc") && path_to(b, a).as_deref() == Some("webrtc")
    });
    a.ok(&["add", "carried", "--field", "password=by-hand-1"]);
    wait_until(T, "b gets it", || b.names() == ["carried"]);

    // The same offer pasted again is not acted on twice.
    let again = b.run(&["connect", "--answer", offer.trim()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not waiting"), "{again:?}");
}

#[test]
fn bad_text_gets_a_clear_error_and_no_daemon_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let devs = vault(dir.path(), &["a", "b"]);
    let (a, b) = (&devs[0], &devs[1]);
    let err = |o: std::process::Output| {
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    assert!(err(a.run(&["connect", "--offer"])).contains("needs this device's daemon running"));
    let _da = a.daemon(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    let _db = b.daemon(&["--listen", "127.0.0.1:0", "--no-mdns"]);
    assert!(err(b.run(&["connect", "--answer", "hello"])).contains("not a Hearth offer"));
    // An offer cut short, as a bad copy would.
    let mut offerer =
        a.cmd(&["--json", "connect", "--offer"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(offerer.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let offer = serde_json::from_str::<Value>(&line).unwrap()["offer"].as_str().unwrap().to_owned();
    let cut = &offer[..offer.len() - 20];
    assert!(err(b.run(&["connect", "--answer", cut])).contains("damaged or cut short"));
    // An offer pasted where a reply belongs.
    assert!(err(a.run(&["connect", "--accept", &offer])).contains("but an answer is needed"));
    // The vault's plaintext never went into the texts: they are sealed.
    assert!(!offer.contains("v=0") && !offer.contains("candidate"));
    // The offerer, given no reply (stdin closed), says so and ends.
    drop(offerer.stdin.take());
    assert!(!offerer.wait().unwrap().success());
}
