//! A daemon says what became of each peer it dials: `hearth status` lists every dial target
//! with its state (unreachable, refused, connected) and the next try, and the log says each
//! new kind of failure once at the default level instead of nothing (or a line per retry).

use std::time::Duration;

use hearth_e2e::device::{vault, wait_until, Device};
use hearth_e2e::rendezvous::free_port;

const T: Duration = Duration::from_secs(20);

fn dial(d: &Device) -> serde_json::Value {
    d.json(&["status"])["dials"][0].clone()
}

#[test]
fn an_unreachable_peer_is_shown_and_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let a = &vault(dir.path(), &["a"])[0];
    let closed = format!("127.0.0.1:{}", free_port());
    let log = dir.path().join("a.log");
    let _d = a.daemon_logged(&["--listen", "127.0.0.1:0", "--no-mdns", "--peer", &closed], &log);
    wait_until(T, "three failed dials", || {
        let d = dial(a);
        d["state"] == "unreachable" && d["failures"].as_u64() >= Some(3)
    });
    let d = dial(a);
    assert_eq!((d["source"].as_str(), d["target"].as_str()), (Some("static"), Some(closed.as_str())));
    assert!(d["next_retry_ms"].as_u64().is_some(), "{d}");
    let human = a.ok(&["status"]);
    assert!(human.contains(&format!("dial    {closed} (static): unreachable after")), "{human}");
    let text = std::fs::read_to_string(&log).unwrap();
    let said = text.matches(&format!("dial static {closed} unreachable")).count();
    assert_eq!(said, 1, "said once, not per retry: {text}");
    assert!(text.contains("WARN"), "at the default level: {text}");
}

#[test]
fn a_peer_of_another_vault_is_shown_refused_and_a_good_one_connected() {
    let dir = tempfile::tempdir().unwrap();
    let mine = vault(dir.path(), &["a", "b"]);
    let other = &vault(&dir.path().join("x"), &["x"])[0];
    let dx = other.daemon_on_loopback(&[], &[]);
    let db = mine[1].daemon_on_loopback(&[], &[]);
    let log = dir.path().join("a.log");
    let _da = mine[0].daemon_logged(
        &["--listen", "127.0.0.1:0", "--no-mdns", "--peer", &dx.addr.to_string(), "--peer", &db.addr.to_string()],
        &log,
    );
    wait_until(T, "one refused, one connected", || {
        let s = mine[0].json(&["status"]);
        let states: Vec<(String, String)> = s["dials"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                (
                    d["target"].as_str().unwrap_or_default().to_owned(),
                    d["state"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        states.contains(&(dx.addr.to_string(), "refused".into()))
            && states.contains(&(db.addr.to_string(), "connected".into()))
    });
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains(&format!("dial static {} refused", dx.addr)), "{text}");
    assert!(!text.contains(&format!("dial static {}", db.addr)), "the good peer is no failure: {text}");
}
