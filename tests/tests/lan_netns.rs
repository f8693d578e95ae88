//! LAN sync between real `hearth daemon` processes, each in a network namespace of its own,
//! with mDNS discovery and no server anywhere: one LAN, two LANs bridged only by a device,
//! partition and heal, a stranger on the LAN, blocked multicast, and an independent mDNS
//! browser (python-zeroconf) looking at what is advertised.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hearth_e2e::device::{vault, wait_until, Daemon, Device};
use hearth_e2e::netns::{self, Lab};
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

/// A temporary directory and an empty lab, or nothing where namespaces cannot be made.
fn setup() -> Option<(tempfile::TempDir, Lab)> {
    netns::available().then(|| (tempfile::tempdir().unwrap(), Lab::new()))
}

fn peers(d: &Device) -> usize {
    d.json(&["status"])["peers"].as_array().map_or(0, Vec::len)
}

/// The daemon with its defaults (mDNS on, the fixed port on every address).
fn start(d: &Device) -> Daemon {
    d.daemon(&[])
}

/// Two daemons on one machine (two homes, loopback only) find each other by mDNS and sync,
/// CLI edits made meanwhile included.
#[test]
fn two_daemons_on_one_machine_discover_each_other_over_loopback() {
    let Some((dir, mut lab)) = setup() else { return };
    let host = lab.host("m");
    lab.loopback_multicast(&host);
    let devs: Vec<Device> = vault(dir.path(), &["a", "b"]).into_iter().map(|d| d.in_netns(&host)).collect();
    let _d: Vec<Daemon> = devs.iter().map(|d| d.daemon(&["--listen", "127.0.0.1:0"])).collect();
    for d in &devs {
        wait_until(T, "each finds the other on loopback", || peers(d) == 1);
    }
    devs[0].ok(&["add", "from-a", "--field", "k=1"]);
    wait_until(T, "a's edit reaches b", || devs[1].names() == ["from-a"]);
    devs[1].ok(&["edit", "from-a", "--field", "k=2"]);
    wait_until(T, "b's edit reaches a", || devs[0].json(&["get", "from-a", "--show"])["fields"]["k"] == "2");
}

#[test]
fn three_devices_on_one_lan_sync_with_no_server() {
    let Some((dir, mut lab)) = setup() else { return };
    let lan = lab.lan(1);
    let names = ["a", "b", "c"];
    let devs: Vec<Device> = vault(dir.path(), &names)
        .into_iter()
        .zip(names)
        .enumerate()
        .map(|(i, (d, n))| {
            let ns = lab.host(n);
            lab.plug(&ns, &lan, 10 + i as u8);
            d.in_netns(&ns)
        })
        .collect();
    let _daemons: Vec<Daemon> = devs.iter().map(start).collect();
    for d in &devs {
        wait_until(T, "every device finds the two others", || peers(d) == 2);
    }
    let st = devs[1].json(&["status"]);
    for p in st["peers"].as_array().unwrap() {
        assert_eq!(p["path"], "lan");
        assert!(
            p["addr"].as_str().unwrap().contains("10.77.1.") || p["addr"].as_str().unwrap().contains("fd77"),
            "{p}"
        );
    }
    devs[0].ok(&["add", "wifi", "--field", "password=correct horse"]);
    for d in &devs[1..] {
        wait_until(T, "the edit reaches b and c", || d.names() == ["wifi"]);
    }
}

#[test]
fn an_edit_crosses_two_lans_through_the_one_device_on_both() {
    let Some((dir, mut lab)) = setup() else { return };
    let (lan1, lan2) = (lab.lan(1), lab.lan(2));
    let devs = vault(dir.path(), &["a", "b", "c"]);
    let (na, nb, nc) = (lab.host("a"), lab.host("b"), lab.host("c"));
    lab.plug(&na, &lan1, 10);
    lab.plug(&nb, &lan1, 11);
    lab.plug(&nb, &lan2, 11);
    lab.plug(&nc, &lan2, 12);
    let a = devs[0].clone().in_netns(&na);
    let b = devs[1].clone().in_netns(&nb);
    let c = devs[2].clone().in_netns(&nc);
    let _d: Vec<Daemon> = [&a, &b, &c].into_iter().map(start).collect();
    wait_until(T, "b connects to both sides", || peers(&b) == 2);
    assert_eq!(peers(&a), 1, "a cannot reach c");
    a.ok(&["add", "from-a", "--field", "k=1"]);
    wait_until(T, "a's edit reaches c through b", || c.names() == ["from-a"]);
    c.ok(&["edit", "from-a", "--field", "k=2"]);
    wait_until(T, "c's reply reaches a", || a.json(&["get", "from-a", "--show"])["fields"]["k"] == "2");
}

#[test]
fn a_partition_heals_into_one_state_with_the_conflict_listed_everywhere() {
    let Some((dir, mut lab)) = setup() else { return };
    let lan = lab.lan(1);
    let devs = vault(dir.path(), &["a", "b", "c"]);
    let mut ports = Vec::new();
    let devs: Vec<Device> = devs
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let ns = lab.host(&format!("n{i}"));
            ports.push(lab.plug(&ns, &lan, 10 + i as u8));
            d.in_netns(&ns)
        })
        .collect();
    let _d: Vec<Daemon> = devs.iter().map(start).collect();
    for d in &devs {
        wait_until(T, "full mesh", || peers(d) == 2);
    }
    devs[0].ok(&["add", "router", "--field", "password=one"]);
    for d in &devs {
        wait_until(T, "everyone has the item", || d.names() == ["router"]);
    }
    lab.cut(&ports[2]);
    devs[0].ok(&["edit", "router", "--field", "password=from-a"]);
    devs[2].ok(&["edit", "router", "--field", "password=from-c"]);
    wait_until(T, "b gets a's side", || devs[1].json(&["get", "router", "--show"])["fields"]["password"] == "from-a");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(devs[2].json(&["get", "router", "--show"])["fields"]["password"], "from-c", "c is cut off");
    lab.heal(&ports[2]);
    let conflicts = |d: &Device| d.json(&["conflicts", "--show"]);
    for d in &devs {
        wait_until(T, "the conflict reaches everyone", || conflicts(d).as_array().is_some_and(|c| c.len() == 1));
    }
    let c0 = conflicts(&devs[0]);
    for d in &devs[1..] {
        assert_eq!(conflicts(d), c0, "identical conflict lists");
        assert_eq!(d.json(&["list"]), devs[0].json(&["list"]));
    }
    let mut both = [c0[0]["kept"].as_str().unwrap().to_owned(), c0[0]["losing"][0].as_str().unwrap().to_owned()];
    both.sort();
    assert_eq!(both, ["from-a", "from-c"], "the losing value is kept and listed");
}

#[test]
fn a_stranger_on_the_lan_sees_the_service_but_gets_nothing() {
    let Some((dir, mut lab)) = setup() else { return };
    let lan = lab.lan(1);
    let devs = vault(dir.path(), &["a", "b"]);
    let stranger = vault(dir.path(), &["s"]).remove(0);
    let (na, nb, ns, nx) = (lab.host("a"), lab.host("b"), lab.host("s"), lab.host("x"));
    let pa = lab.plug(&na, &lan, 10);
    lab.plug(&nb, &lan, 11);
    lab.plug(&ns, &lan, 12);
    lab.plug(&nx, &lan, 13);
    let a = devs[0].clone().in_netns(&na);
    let b = devs[1].clone().in_netns(&nb);
    let s = stranger.in_netns(&ns);
    let (la, ls) = (dir.path().join("a.log"), dir.path().join("s.log"));
    let _da = a.daemon_logged(&[], &la);
    let _db = start(&b);
    let ds = s.daemon_logged(&[], &ls);
    wait_until(T, "a and b connect", || peers(&a) == 1);
    // Both advertisements are on the LAN: an independent browser sees three services.
    let seen = browse(&nx, 3);
    assert_eq!(seen.len(), 3, "{seen:?}");
    // The stranger's own browser has resolved a's and b's services and ignored them: from
    // then on its log would show any dial of them (no fixed wait: its status counts them).
    wait_until(T, "the stranger resolved and ignored both services", || {
        s.json(&["status"])["mdns_ignored"].as_u64() >= Some(2)
    });
    let slog = std::fs::read_to_string(&ls).unwrap();
    assert!(!slog.contains("dialling"), "the stranger never dials a service of another vault:\n{slog}");
    assert!(a.json(&["status"])["mdns_ignored"].as_u64() >= Some(1), "a ignored the stranger's service too");
    assert_eq!(peers(&s), 0);
    // The stranger now throws garbage at a's port, then tries a real handshake.
    let garbage = format!(
        "import socket\nfor p in [b'\\x00'*70000, b'GET /v1/sync HTTP/1.1\\r\\n\\r\\n', b'\\xff'*10]:\n  c=socket.create_connection(('{}',{}))\n  c.sendall(p)\n  c.close()",
        pa.v4,
        hearth_peer::node::DEFAULT_PORT
    );
    netns::exec(&ns, "python3", &["-c", &garbage]);
    drop(ds);
    let lp = dir.path().join("probe.log");
    let probe = s.daemon_logged(&["--no-mdns", "--listen", "127.0.0.1:0", "--peer", &format!("{}:7475", pa.v4)], &lp);
    wait_until(T, "a refuses the stranger's handshake", || {
        std::fs::read_to_string(&la).unwrap().contains("handshake failed")
    });
    drop(probe);
    assert_eq!(peers(&s), 0);
    assert!(s.names().is_empty());
    a.ok(&["add", "after", "--field", "password=pw"]);
    wait_until(T, "a and b still sync", || b.names() == ["after"]);
    let alog = std::fs::read_to_string(&la).unwrap();
    let b_id = b.id();
    let live: Vec<&str> = alog.lines().filter(|l| l.contains("session live")).collect();
    assert!(!live.is_empty() && live.iter().all(|l| l.contains(&b_id)), "a only ever went live with b:\n{alog}");
}

#[test]
fn with_multicast_blocked_a_static_peer_still_syncs() {
    let Some((dir, mut lab)) = setup() else { return };
    let lan = lab.lan(1);
    let devs = vault(dir.path(), &["a", "b"]);
    let (na, nb) = (lab.host("a"), lab.host("b"));
    let pa = lab.plug(&na, &lan, 10);
    lab.plug(&nb, &lan, 11);
    for ns in [&na, &nb] {
        block_mdns(ns);
    }
    let a = devs[0].clone().in_netns(&na);
    let b = devs[1].clone().in_netns(&nb);
    let _da = start(&a);
    std::fs::write(b.home.join("peers"), format!("# a, by its IPv6 address\n[{}]:7475\n", pa.v6)).unwrap();
    let _db = start(&b);
    wait_until(T, "b reaches a through its peers file", || peers(&b) == 1);
    let addr = b.json(&["status"])["peers"][0]["addr"].as_str().unwrap().to_owned();
    assert!(addr.starts_with("[fd77"), "the session runs over IPv6: {addr}");
    a.ok(&["add", "no-multicast", "--field", "k=v"]);
    wait_until(T, "the edit arrives", || b.names() == ["no-multicast"]);
}

#[test]
fn an_independent_mdns_browser_sees_only_a_version_and_a_rotating_tag() {
    let Some((dir, mut lab)) = setup() else { return };
    let lan = lab.lan(1);
    let a = vault(dir.path(), &["grandmas-tablet"]).remove(0);
    let (na, nx) = (lab.host("a"), lab.host("x"));
    lab.plug(&na, &lan, 10);
    lab.plug(&nx, &lan, 11);
    let a = a.in_netns(&na);
    let vault_id = a.json(&["status"])["vault_id"].as_str().unwrap().to_owned();
    let device_id = a.id();
    let first = {
        let _da = start(&a);
        browse(&nx, 1)
    };
    assert_eq!(first.len(), 1, "{first:?}");
    let svc = &first[0];
    assert_eq!(svc["port"], hearth_peer::node::DEFAULT_PORT);
    assert!(svc["addresses"].as_array().unwrap().iter().any(|x| x == "10.77.1.10"), "{svc}");
    let txt = svc["txt"].as_object().unwrap();
    assert_eq!(txt.keys().collect::<Vec<_>>(), ["t", "v"]);
    assert_eq!(txt["v"], "2");
    let tag = txt["t"].as_str().unwrap();
    assert_eq!(tag.len(), 16);
    let text = svc.to_string();
    for secret in [&vault_id, &device_id, &vault_id[..8], &device_id[..8], "grandma", "tablet"] {
        assert!(!text.contains(secret), "the advertisement names {secret}: {text}");
    }
    // A restart advertises under a new random name.
    let second = {
        let _da = start(&a);
        browse(&nx, 1)
    };
    assert_eq!(second.len(), 1);
    assert_ne!(second[0]["name"], svc["name"]);
    assert_ne!(second[0]["server"], svc["server"]);
}

/// Drops mDNS (UDP 5353) both ways in namespace `ns` with nftables.
fn block_mdns(ns: &str) {
    let rules = "table inet nomdns {\n chain in { type filter hook input priority 0; udp dport 5353 drop; }\n chain out { type filter hook output priority 0; udp dport 5353 drop; }\n}\n";
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), rules).unwrap();
    netns::exec(ns, "nft", &["-f", file.path().to_str().unwrap()]);
}

/// Services seen by python-zeroconf from namespace `ns` (waits for `want` of them, 15 s at most).
fn browse(ns: &str, want: usize) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("py/mdns_browse.py");
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "python3"])
        .arg(script)
        .args(["15", &want.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "zeroconf browse: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}
