//! Pairing a new device with `hearth invite` / `hearth join`, as real processes: through the
//! family's rendezvous on loopback (the QR code read back by an independent decoder, Debian's
//! `zbarimg`) and across namespaced NATs, on an air-gapped LAN with no server anywhere, and
//! the hostile cases: a wrong code voids the invite, a squatter in the invite room is reported
//! and learns nothing, the server sees no code and no vault secret.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use hearth_e2e::device::{wait_until, Daemon, Device};
use hearth_e2e::netns::{self, Internet, Lab, Nat, SERVER};
use hearth_e2e::rendezvous::Rv;
use hearth_e2e::Proc;
use serde_json::Value;

const T: Duration = Duration::from_secs(40);

/// A new vault on `name` with one item; its phrase.
fn first_device(dir: &Path, name: &str) -> (Device, String) {
    let d = Device::new(dir, name);
    let init = d.json(&["init", "--no-passphrase", "--name", name]);
    let phrase = init["phrase"].as_str().expect("phrase").to_owned();
    d.ok(&["add", "bank", "--field", "user=al", "--field", "password=correct-horse-7"]);
    (d, phrase)
}

/// A running `hearth --json invite ARGS --yes` and its first line.
struct Invite {
    proc: Proc,
    url: String,
    code: String,
}

impl Invite {
    fn start(d: &Device, args: &[&str]) -> Self {
        let mut a = vec!["--json", "invite", "--yes"];
        a.extend_from_slice(args);
        let mut proc = Proc::spawn(d.cmd(&a).stderr(std::process::Stdio::piped()));
        let line = proc.stdout.next().expect("invite exited before its first line").expect("stdout");
        let v: Value = serde_json::from_str(&line).expect("first line is JSON");
        let url = v["url"].as_str().expect("url").to_owned();
        let code = v["code"].as_str().expect("code").to_owned();
        assert!(v["expires_at"].as_u64().is_some(), "{v}");
        Self { proc, url, code }
    }

    /// Waits for it to exit: its remaining stdout lines (parsed), stderr and success.
    fn finish(mut self) -> (Vec<Value>, String, bool) {
        let lines: Vec<Value> =
            self.proc.stdout.by_ref().map_while(Result::ok).map(|l| serde_json::from_str(&l).expect("json")).collect();
        let status = self.proc.child.wait().expect("wait invite");
        let mut err = String::new();
        if let Some(mut e) = self.proc.child.stderr.take() {
            std::io::Read::read_to_string(&mut e, &mut err).expect("stderr");
        }
        (lines, err, status.success())
    }
}

/// `hearth --json join ARGS` on `d`.
fn join(d: &Device, args: &[&str]) -> Output {
    let mut a = vec!["--json", "join"];
    a.extend_from_slice(args);
    d.run(&a)
}

/// `hearth --json join ARGS` on `d`, which must fail: what it said on stderr.
fn join_fails(d: &Device, args: &[&str]) -> String {
    let o = join(d, args);
    assert!(!o.status.success(), "join {args:?} succeeded");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A vault on device `a` (one item), a rendezvous on loopback, and an invite through it
/// waiting: the directory, `a`, the server, its URL and the invite.
fn invited() -> (tempfile::TempDir, Device, Rv, String, Invite) {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = first_device(dir.path(), "a");
    let rv = Rv::start(&[], None);
    let url = format!("http://{}", rv.http);
    let inv = Invite::start(&a, &["--rendezvous", &url, "--no-mdns"]);
    (dir, a, rv, url, inv)
}

fn last_json(o: &Output) -> Value {
    let out = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(out.lines().last().unwrap_or("null")).expect("json line")
}

/// Every file under `dir`, read whole.
fn files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if let Ok(b) = std::fs::read(&p) {
            out.push((p, b));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The joined device's home holds neither the phrase nor a vault value in the clear.
fn home_keeps_secrets_sealed(home: &Path, phrase: &str) {
    for (p, bytes) in files(home) {
        for s in [phrase, "correct-horse-7"] {
            assert!(!contains(&bytes, s), "{} holds {s:?} in the clear", p.display());
        }
    }
}

/// A device on a fresh home joins `a`'s vault by the QR code of an invite through the real
/// rendezvous; both daemons then sync edits made after pairing, the new one with no
/// rendezvous flag (its home kept the URL it paired through).
#[test]
fn a_new_device_joins_by_the_qr_code_through_the_rendezvous() {
    let dir = tempfile::tempdir().unwrap();
    let (a, phrase) = first_device(dir.path(), "a");
    let rv = Rv::start(&[], None);
    let stun = rv.stun.expect("STUN").to_string();
    let url = format!("http://{}", rv.http);
    let png = dir.path().join("invite.png");
    let inv = Invite::start(&a, &["--rendezvous", &url, "--no-mdns", "--stun", &stun, "--png", png.to_str().unwrap()]);
    assert!(inv.url.starts_with("hearth://join?v=1&rv="), "{}", inv.url);

    // An independent decoder reads the image as the same URL.
    let read = hearth_e2e::qr::read_png(&png);
    assert_eq!(read, inv.url);

    let b = Device::new(dir.path(), "b");
    let o = join(&b, &[&read, "--no-passphrase", "--name", "phone", "--no-mdns", "--stun", &stun]);
    assert!(o.status.success(), "join failed: {}", String::from_utf8_lossy(&o.stderr));
    let done = last_json(&o);
    assert_eq!(done["ok"], true, "{done}");
    // The item, and the two devices' names (vault data like any entry).
    assert_eq!(done["entries"], 3, "{done}");
    let code = inv.code.clone();
    let (events, err, ok) = inv.finish();
    assert!(ok, "invite failed: {err}");
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(kinds, ["sas", "joined", "synced"], "{events:?}");
    assert_eq!(events[1]["name"], "phone");
    assert_eq!(events[1]["device"], b.id());
    assert_eq!(b.names(), ["bank"]);
    assert_eq!(b.json(&["get", "bank", "--show"])["fields"]["password"], "correct-horse-7");
    let stored = std::fs::read_to_string(b.home.join("rendezvous")).expect("the home keeps the rendezvous URL");
    assert_eq!(stored.trim(), url);

    // After pairing: both daemons, b with no --rendezvous at all.
    let _da = a.daemon(&["--listen", "127.0.0.1:0", "--no-mdns", "--rendezvous", &url, "--stun", &stun]);
    let _db = b.daemon(&["--listen", "127.0.0.1:0", "--no-mdns", "--stun", &stun]);
    b.ok(&["edit", "bank", "--field", "password=battery-staple-8"]);
    wait_until(T, "b's edit reaches a", || {
        a.json(&["get", "bank", "--show"])["fields"]["password"] == "battery-staple-8"
    });
    a.ok(&["add", "wifi", "--field", "psk=tr0ub4dor"]);
    wait_until(T, "a's new item reaches b", || b.names() == ["bank", "wifi"]);

    // The server saw neither the code nor anything of the vault; the new home keeps the
    // phrase and the values sealed; neither command printed the phrase.
    let log = rv.log();
    let words = code.split_once('-').map(|(_, w)| w).unwrap_or_default();
    for s in [code.as_str(), words, phrase.as_str(), "correct-horse", "battery-staple", "tr0ub4dor"] {
        assert!(!log.contains(s), "the rendezvous saw {s:?}");
    }
    home_keeps_secrets_sealed(&b.home, &phrase);
    let printed =
        format!("{}{}{events:?}{err}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(!printed.contains(&phrase), "a command printed the phrase");
}

/// A wrong code: the joiner is told, the inviter says the invite is void and exits non-zero,
/// the right code no longer works, and the joiner's home was never created.
#[test]
fn a_wrong_code_voids_the_invite_after_one_try() {
    let (dir, _a, _rv, url, inv) = invited();
    // The same nameplate, another last word.
    let (head, last) = inv.code.rsplit_once('-').unwrap();
    let wrong = format!("{head}-{}", if last == "zoo" { "able" } else { "zoo" });
    let b = Device::new(dir.path(), "b");
    let err = join_fails(&b, &[&wrong, "--rendezvous", &url, "--no-passphrase", "--no-mdns"]);
    assert!(err.contains("code"), "the joiner is told its code was wrong: {err}");
    assert!(!b.home.join("vault").exists() && files(&b.home).is_empty(), "a failed join changes nothing");

    let code = inv.code.clone();
    let (_, err, ok) = inv.finish();
    assert!(!ok);
    assert!(err.contains("someone tried a wrong code; this invite is void"), "{err}");
    // A void invite cannot be used.
    let err = join_fails(&b, &[&code, "--rendezvous", &url, "--no-passphrase", "--no-mdns"]);
    assert!(err.contains("no invite is waiting under number"), "{err}");
    assert!(files(&b.home).is_empty());
}

/// Someone who takes the invite room's second seat (the room id derives from the public
/// nameplate alone) hears nothing from the inviter; the real joiner is told the room is
/// squatted; once the squatter leaves without a word, the invite still works.
#[test]
fn a_squatter_in_the_room_is_reported_and_learns_nothing() {
    use hearth_rendezvous::client::{connect, Join};
    let (dir, _a, rv, url, inv) = invited();
    let nameplate: u16 = inv.code.split('-').next().unwrap().parse().unwrap();
    let room = hearth_peer::pairing::code::room_of(nameplate);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let squatter = rt.block_on(connect(&rv.url(), &Join::Invite(room))).expect("the squatter gets in");
    assert_eq!(squatter.online.len(), 1, "the inviter waits there");

    let b = Device::new(dir.path(), "b");
    let err = join_fails(&b, &[&inv.code, "--rendezvous", &url, "--no-passphrase", "--no-mdns"]);
    assert!(err.contains("two members") && err.contains("new invite"), "{err}");

    let mut squatter = squatter;
    let heard = rt.block_on(async { tokio::time::timeout(Duration::from_secs(2), squatter.next()).await });
    match heard {
        Err(_) => {}
        Ok(Ok(hearth_rendezvous::client::Event::Presence(_))) => {}
        Ok(other) => panic!("the squatter heard something: {other:?}"),
    }
    rt.block_on(squatter.close());
    let o = join(&b, &[&inv.code, "--rendezvous", &url, "--no-passphrase", "--no-mdns"]);
    assert!(o.status.success(), "join after the squatter left: {}", String::from_utf8_lossy(&o.stderr));
    let (_, err, ok) = inv.finish();
    assert!(ok, "{err}");
    assert_eq!(b.names(), ["bank"]);
}

/// Malformed input is refused up front with a clear error: a QR of something else, a code
/// that is not one, a URL made for another server, and a code with no server to meet at.
#[test]
fn bad_targets_are_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let b = Device::new(dir.path(), "b");
    let cases: [(&[&str], &str); 4] = [
        (&["https://example.org/not-an-invite"], "hearth://join"),
        (&["12-horse-battery"], "code"),
        (
            &["hearth://join?v=1&rv=http%3A%2F%2F127.0.0.1%3A1#7-able-acid-zoo", "--rendezvous", "http://127.0.0.1:2"],
            "this invite is for the rendezvous",
        ),
        (&["7-able-acid-zoo"], "--rendezvous URL"),
    ];
    for (args, says) in cases {
        let mut a = args.to_vec();
        a.extend(["--no-passphrase", "--no-mdns"]);
        let err = join_fails(&b, &a);
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(files(&b.home).is_empty(), "{args:?} changed the home");
    }
}

/// Air-gapped: two namespaces on one bridge, no server anywhere. `invite --lan` advertises a
/// pairing endpoint by mDNS; `join CODE` finds it, enrols and syncs; then both daemons
/// (mDNS discovery) carry an edit made after pairing.
#[test]
fn an_air_gapped_lan_pairs_with_no_server() {
    if !netns::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut lab = Lab::new();
    let lan = lab.lan(1);
    let (a, _) = first_device(dir.path(), "a");
    let hosts: Vec<String> = ["a", "b"].iter().map(|n| lab.host(n)).collect();
    for (i, h) in hosts.iter().enumerate() {
        lab.plug(h, &lan, 10 + i as u8);
    }
    let a = a.in_netns(&hosts[0]);
    let b = Device::new(dir.path(), "b").in_netns(&hosts[1]);
    let inv = Invite::start(&a, &["--lan"]);
    assert!(inv.url.contains("lan=1"), "{}", inv.url);
    let o = join(&b, &[&inv.code, "--no-passphrase", "--name", "tablet"]);
    assert!(o.status.success(), "join failed: {}", String::from_utf8_lossy(&o.stderr));
    let (events, err, ok) = inv.finish();
    assert!(ok, "invite failed: {err}");
    assert!(events.iter().any(|e| e["event"] == "synced"), "{events:?}");
    assert_eq!(b.names(), ["bank"]);
    assert!(!b.home.join("rendezvous").exists(), "no server was involved");

    let _d: Vec<Daemon> = [&a, &b].iter().map(|d| d.daemon(&[])).collect();
    a.ok(&["edit", "bank", "--field", "password=on-the-lan-9"]);
    wait_until(T, "a's edit reaches b", || b.json(&["get", "bank", "--show"])["fields"]["password"] == "on-the-lan-9");
}

/// Across NATs: the inviter's daemon in one home, the new device in another, the family's
/// rendezvous on the "public" network; pairing and the first sync go through it (WebRTC
/// through port-restricted NATs), and an edit made after pairing reaches both.
#[test]
fn pairing_works_across_namespaced_nats() {
    if !netns::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut lab = Lab::new();
    let Internet { server, homes } = lab.internet(&[Nat::PortRestricted, Nat::PortRestricted]);
    let listen = format!("{SERVER}:8080");
    let stun_bind = format!("{SERVER}:3478");
    let rv = Rv::start_in(&server, &["--listen", &listen, "--stun-bind", &stun_bind, "--public-host", &listen]);
    let url = format!("http://{listen}");
    let (a, phrase) = first_device(dir.path(), "a");
    let a = a.in_netns(&homes[0]);
    let b = Device::new(dir.path(), "b").in_netns(&homes[1]);
    let _da = a.daemon(&["--listen", "0.0.0.0:0", "--no-mdns", "--rendezvous", &url]);
    // The daemon serves the pairing's sync: invite uses it.
    let inv = Invite::start(&a, &["--rendezvous", &url]);
    let o = join(&b, &[&inv.url, "--no-passphrase", "--name", "phone", "--no-mdns"]);
    assert!(o.status.success(), "join failed: {}", String::from_utf8_lossy(&o.stderr));
    let (events, err, ok) = inv.finish();
    assert!(ok, "invite failed: {err}");
    assert!(events.iter().any(|e| e["event"] == "synced"), "{events:?}");
    let _db = b.daemon(&["--listen", "0.0.0.0:0", "--no-mdns"]);
    b.ok(&["add", "router", "--field", "password=p1"]);
    wait_until(T, "b's new item reaches a across the NATs", || a.names() == ["bank", "router"]);
    let log = rv.log();
    assert!(!log.contains(&phrase) && !log.contains("correct-horse"));
}
