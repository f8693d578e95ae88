//! A rendezvous that tampers with, replays and re-addresses signals cannot get anything into
//! a vault or make a device act on a signal twice; once it relays honestly again, the devices
//! connect. Device b reaches the real `hearth-rendezvous` only through a hostile relay
//! (`hearth_e2e::mitm`), a through an honest one.

use std::path::Path;
use std::time::Duration;

use hearth_e2e::device::{vault, wait_until, Daemon, Device};
use hearth_e2e::mitm::{Mitm, Mode};
use hearth_e2e::rendezvous::Rv;

const T: Duration = Duration::from_secs(40);

fn live(d: &Device) -> bool {
    d.json(&["status"])["peers"].as_array().is_some_and(|p| p.iter().any(|p| p["path"] == "webrtc"))
}

/// Signals b dropped for one of `why` so far.
fn drops(log: &Path, why: &[&str]) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().filter(|l| l.contains("signal dropped") && why.iter().any(|w| l.contains(w))).count()
}

#[test]
fn a_hostile_relay_gets_nothing_in_and_the_honest_path_works_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let devs = vault(dir.path(), &["a", "b"]);
    let (a, b) = (&devs[0], &devs[1]);
    let (la, addr_a) = Mitm::bind();
    let (lb, addr_b) = Mitm::bind();
    let (ha, hb) = (addr_a.to_string(), addr_b.to_string());
    let rv = Rv::start(&["--public-host", &ha, "--public-host", &hb], None);
    let honest = Mitm::run(la, rv.url());
    let hostile = Mitm::run(lb, rv.url());
    let stun = rv.stun.expect("STUN").to_string();
    let start_a = || {
        let url = format!("ws://{}", honest.addr);
        a.daemon(&["--listen", "127.0.0.1:0", "--no-mdns", "--rendezvous", &url, "--stun", &stun])
    };
    let log = dir.path().join("b.log");
    let url_b = format!("ws://{}", hostile.addr);
    let _db = b.daemon_logged(&["--listen", "127.0.0.1:0", "--no-mdns", "--rendezvous", &url_b, "--stun", &stun], &log);

    // Honest at first: the relay keeps a copy of every signal b gets.
    let mut da: Daemon = start_a();
    wait_until(T, "a WebRTC session", || live(a) && live(b));
    a.ok(&["add", "first", "--field", "k=1"]);
    wait_until(T, "b gets the first item", || b.names() == ["first"]);
    assert!(hostile.kept() >= 1, "offers reached b through the relay");

    // Each phase starts with a's daemon restarted, so a new offer and answer pass. Which of
    // the two offers depends on their random ids: b refuses a replayed offer as seen before,
    // a replayed answer as one it is not waiting on.
    let phases: [(Mode, &[&str]); 3] = [
        (Mode::Tamper, &["does not open", "not supported", "malformed", "signature", "not an envelope"]),
        (Mode::Replay, &["already reached", "not waiting on"]),
        (Mode::Swap, &["relayed as from"]),
    ];
    for (mode, refusal) in phases {
        drop(da);
        wait_until(T, "the session ends", || !live(b));
        hostile.set(mode);
        let before = drops(&log, refusal);
        da = start_a();
        wait_until(T, &format!("b refuses what the relay changed ({mode:?})"), || drops(&log, refusal) > before);
        std::thread::sleep(Duration::from_secs(1));
        assert!(!live(b), "{mode:?}: no session from altered signals");
    }
    assert_eq!(b.names(), ["first"], "nothing entered b's vault meanwhile");

    // Honest again: a's next offer goes through.
    hostile.set(Mode::Honest);
    drop(da);
    let _da = start_a();
    wait_until(T, "a session through the honest relay", || live(a) && live(b));
    a.ok(&["add", "second", "--field", "k=2"]);
    wait_until(T, "b gets the second item", || b.names() == ["first", "second"]);
}
