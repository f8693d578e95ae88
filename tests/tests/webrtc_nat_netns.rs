//! WebRTC across NATs made of network namespaces and nftables: a "public" network with the
//! family's `hearth-rendezvous` (and its STUN), two homes each behind its own NAT router, no
//! route between the homes but through the NATs. The daemons get only the rendezvous URL.

use std::process::{Command, Stdio};
use std::time::Duration;

use hearth_e2e::device::{vault, wait_until, Daemon, Device};
use hearth_e2e::netns::{self, Lab, Nat};
use hearth_e2e::rendezvous::Rv;
use serde_json::Value;

const T: Duration = Duration::from_secs(40);
const SERVER: &str = "10.77.100.10";

struct World {
    // Dropped in this order: daemons, servers, then the namespaces.
    _daemons: Vec<Daemon>,
    rv: Rv,
    _coturn: Option<Coturn>,
    a: Device,
    b: Device,
    _lab: Lab,
    _dir: tempfile::TempDir,
}

/// coturn, killed when dropped.
struct Coturn(std::process::Child);

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const TURN_SECRET: &str = "a-secret-shared-by-the-rendezvous-and-coturn";

/// coturn in namespace `ns` on SERVER:3479, with the rendezvous's shared secret.
fn coturn(ns: &str) -> Coturn {
    let child = Command::new("ip")
        .args(["netns", "exec", ns, "turnserver", "-n", "--no-cli", "--no-tls", "--no-dtls"])
        .args(["--listening-ip", SERVER, "--relay-ip", SERVER, "--listening-port", "3479"])
        .args(["--min-port", "40000", "--max-port", "40100", "--realm", "hearth.test"])
        .args(["--use-auth-secret", "--static-auth-secret", TURN_SECRET, "--log-file", "stdout"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("turnserver (apt-get install coturn)");
    Coturn(child)
}

/// Home A behind `nat_a`, home B behind `nat_b`, the server on the public LAN; with `turn`,
/// coturn beside it and the rendezvous handing out its credentials.
fn world(nat_a: Nat, nat_b: Nat) -> Option<World> {
    world_with(nat_a, nat_b, false)
}

fn world_with(nat_a: Nat, nat_b: Nat, turn: bool) -> Option<World> {
    if !netns::available() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut lab = Lab::new();
    let public = lab.lan(100);
    let server = lab.host("srv");
    lab.plug(&server, &public, 10);
    // A server on the internet has a default route: datagrams a relay sends to a private
    // address (a peer's host candidate) leave and die. Without one, coturn's send fails with
    // "network unreachable" and it closes the whole allocation.
    lab.default_route(&server, "10.77.100.254");
    let mut homes = Vec::new();
    for (i, (name, nat)) in [("a", nat_a), ("b", nat_b)].into_iter().enumerate() {
        let lan = lab.lan(1 + i as u8);
        let host = lab.host(name);
        let port = lab.plug(&host, &lan, 10);
        lab.router(&format!("r{name}"), &lan, &public, 1 + i as u8, nat, &port.v4);
        lab.default_route(&host, &format!("10.77.{}.1", 1 + i as u8));
        homes.push(host);
    }
    let listen = format!("{SERVER}:8080");
    let stun = format!("{SERVER}:3478");
    let secret = dir.path().join("turn-secret");
    std::fs::write(&secret, format!("{TURN_SECRET}\n")).unwrap();
    let secret = secret.to_str().unwrap().to_owned();
    let mut flags = vec!["--listen", &listen, "--stun-bind", &stun, "--public-host", &listen];
    let turn_url = format!("turn:{SERVER}:3479");
    let coturn = turn.then(|| coturn(&server));
    if turn {
        flags.extend(["--turn-url", &turn_url, "--turn-secret-file", &secret]);
    }
    let rv = Rv::start_in(&server, &flags);
    let devs = vault(dir.path(), &["a", "b"]);
    let mut it = devs.into_iter();
    let (a, b) = (it.next().unwrap().in_netns(&homes[0]), it.next().unwrap().in_netns(&homes[1]));
    let url = format!("http://{listen}");
    let args = ["--listen", "0.0.0.0:0", "--no-mdns", "--rendezvous", url.as_str()];
    let daemons = vec![a.daemon(&args), b.daemon(&args)];
    Some(World { _daemons: daemons, rv, _coturn: coturn, a, b, _lab: lab, _dir: dir })
}

fn peer_of(d: &Device, other: &Device) -> Option<Value> {
    let id = other.id();
    d.json(&["status"])["peers"].as_array()?.iter().find(|p| p["device"] == id.as_str()).cloned()
}

/// Both sync through a WebRTC session whose remote address is the other home's router.
fn syncs_directly(w: &World) {
    syncs(w, &["10.77.100.2:"]);
}

/// Both sync through a WebRTC session whose remote address, seen from a, starts with or
/// contains one of `via`.
fn syncs(w: &World, via: &[&str]) {
    wait_until(T, "a WebRTC session across the NATs", || {
        peer_of(&w.a, &w.b).is_some_and(|p| p["path"] == "webrtc")
            && peer_of(&w.b, &w.a).is_some_and(|p| p["path"] == "webrtc")
    });
    let seen_by_a = peer_of(&w.a, &w.b).unwrap()["addr"].as_str().unwrap_or_default().to_owned();
    let through = via.iter().any(|v| seen_by_a.starts_with(v) || (v.starts_with("via") && seen_by_a.contains(v)));
    assert!(through, "a reaches b through one of {via:?}: {seen_by_a}");
    w.a.ok(&["add", "router", "--field", "password=p1"]);
    wait_until(T, "a's item reaches b", || w.b.names() == ["router"]);
    w.b.ok(&["edit", "router", "--field", "password=p2"]);
    wait_until(T, "b's edit reaches a", || w.a.json(&["get", "router", "--show"])["fields"]["password"] == "p2");
    assert!(!w.rv.log().contains("p1"), "the server saw no value");
}

#[test]
fn port_restricted_nats_on_both_sides_connect_directly() {
    let Some(w) = world(Nat::PortRestricted, Nat::PortRestricted) else { return };
    syncs_directly(&w);
}

#[test]
fn a_symmetric_nat_facing_a_full_cone_one_still_connects_directly() {
    let Some(w) = world(Nat::FullCone, Nat::Symmetric) else { return };
    syncs_directly(&w);
}

#[test]
fn symmetric_nats_on_both_sides_connect_through_the_rendezvous_turn_relay() {
    let Some(w) = world_with(Nat::Symmetric, Nat::Symmetric, true) else { return };
    wait_until(T, "the daemons got the relay from the rendezvous", || {
        w.a.json(&["status"])["rendezvous"]["relay"].as_str().is_some_and(|r| r.contains("3479"))
    });
    // The path goes through coturn: a reaches b's relay address, or its own relay reaches b.
    syncs(&w, &[&format!("{SERVER}:"), "via TURN"]);
}
