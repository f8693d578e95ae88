//! Test networks made of Linux network namespaces: hosts, LANs (a bridge in a namespace of its
//! own), veth cables between them. Every namespace is removed when the [`Lab`] is dropped, also
//! when the test fails. Hosts have no route anywhere but their own LANs.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Runs `ip ARGS`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// Runs `CMD ARGS` inside namespace `ns`, panicking on failure; its stdout.
pub fn exec(ns: &str, cmd: &str, args: &[&str]) -> String {
    let out = Command::new("ip").args(["netns", "exec", ns, cmd]).args(args).output().expect("run ip netns exec");
    assert!(out.status.success(), "{cmd} {} in {ns}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// True when this process may create namespaces (root with `ip`). Tests that need them fail
/// without it, unless `HEARTH_SKIP_NETNS=1` says this machine cannot run them.
pub fn available() -> bool {
    let ok = Command::new("ip").args(["netns", "list"]).output().is_ok_and(|o| o.status.success())
        && Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    assert!(
        ok || std::env::var_os("HEARTH_SKIP_NETNS").is_some(),
        "network-namespace tests need root and iproute2 (set HEARTH_SKIP_NETNS=1 to skip them)"
    );
    ok
}

/// One test network.
pub struct Lab {
    id: String,
    namespaces: Vec<String>,
    cables: u32,
}

/// A LAN: a bridge inside its own namespace, and the subnet number `n` of its addresses
/// (`10.77.n.0/24` and `fd77:0:0:n::/64`).
#[derive(Debug, Clone)]
pub struct Lan {
    ns: String,
    n: u8,
}

/// Where a host is plugged into a LAN.
#[derive(Debug, Clone)]
pub struct Port {
    /// The switch-side interface (cut and heal act on it).
    switch_if: String,
    switch_ns: String,
    /// The host's IPv4 address on the LAN.
    pub v4: String,
    /// The host's IPv6 address on the LAN.
    pub v6: String,
    /// The host-side interface name.
    pub host_if: String,
}

impl Lab {
    /// A new, empty lab with a process-unique name prefix.
    pub fn new() -> Self {
        let id = format!("h{}x{}", std::process::id() % 100_000, NEXT.fetch_add(1, Ordering::Relaxed));
        Self { id, namespaces: Vec::new(), cables: 0 }
    }

    fn add_ns(&mut self, name: &str) -> String {
        let ns = format!("{}{name}", self.id);
        ip(&["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// A host (a namespace with only loopback so far); returns its namespace name.
    pub fn host(&mut self, name: &str) -> String {
        self.add_ns(name)
    }

    /// Lets mDNS run on the host's loopback alone (multicast flag and route on `lo`): one
    /// machine, several devices, nothing leaves it.
    pub fn loopback_multicast(&self, host: &str) {
        ip(&["-n", host, "link", "set", "lo", "multicast", "on"]);
        ip(&["-n", host, "route", "add", "224.0.0.0/4", "dev", "lo"]);
    }

    /// A LAN numbered `n` (1..=250).
    pub fn lan(&mut self, n: u8) -> Lan {
        let ns = self.add_ns(&format!("sw{n}"));
        ip(&["-n", &ns, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"]);
        ip(&["-n", &ns, "link", "set", "br0", "up"]);
        Lan { ns, n }
    }

    /// Plugs `host` into `lan` as address `.{m}`.
    pub fn plug(&mut self, host: &str, lan: &Lan, m: u8) -> Port {
        self.cables += 1;
        let (a, b) = (format!("{}c{}a", self.id, self.cables), format!("{}c{}b", self.id, self.cables));
        ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
        ip(&["link", "set", &a, "netns", host]);
        ip(&["link", "set", &b, "netns", &lan.ns]);
        let host_if = format!("eth{}", lan.n);
        let (v4, v6) = (format!("10.77.{}.{m}", lan.n), format!("fd77:0:0:{}::{m}", lan.n));
        ip(&["-n", host, "link", "set", &a, "name", &host_if]);
        ip(&["-n", host, "addr", "add", &format!("{v4}/24"), "dev", &host_if]);
        ip(&["-n", host, "addr", "add", &format!("{v6}/64"), "dev", &host_if, "nodad"]);
        ip(&["-n", host, "link", "set", &host_if, "up"]);
        // mDNS needs a multicast route; one per interface, told apart by metric.
        ip(&["-n", host, "route", "add", "224.0.0.0/4", "dev", &host_if, "metric", &lan.n.to_string()]);
        ip(&["-n", &lan.ns, "link", "set", &b, "master", "br0"]);
        ip(&["-n", &lan.ns, "link", "set", &b, "up"]);
        Port { switch_if: b, switch_ns: lan.ns.clone(), v4, v6, host_if }
    }

    /// Unplugs a port (the link goes down on the switch side; the host keeps its address).
    pub fn cut(&self, port: &Port) {
        ip(&["-n", &port.switch_ns, "link", "set", &port.switch_if, "down"]);
    }

    /// Plugs a cut port back in.
    pub fn heal(&self, port: &Port) {
        ip(&["-n", &port.switch_ns, "link", "set", &port.switch_if, "up"]);
    }
}

/// The server's address in [`Lab::internet`].
pub const SERVER: &str = "10.77.100.10";
/// The server's second address there (its STUN's RFC 5780 alternate).
pub const SERVER_ALT: &str = "10.77.100.11";

/// What [`Lab::internet`] built: namespace names.
pub struct Internet {
    /// The server host.
    pub server: String,
    /// The homes, in the order of their NATs.
    pub homes: Vec<String>,
}

/// coturn in namespace `ns` on `SERVER:3479` with `secret` (coturn's `use-auth-secret`, the
/// rendezvous's `--turn-secret-file` scheme), killed when dropped.
pub struct Coturn(std::process::Child);

impl Coturn {
    /// Starts it.
    pub fn start(ns: &str, secret: &str) -> Self {
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "turnserver", "-n", "--no-cli", "--no-tls", "--no-dtls"])
            .args(["--listening-ip", SERVER, "--relay-ip", SERVER, "--listening-port", "3479"])
            .args(["--min-port", "40000", "--max-port", "40100", "--realm", "hearth.test"])
            .args(["--use-auth-secret", "--static-auth-secret", secret, "--log-file", "stdout"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("turnserver (apt-get install coturn)");
        Coturn(child)
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How a NAT router maps and filters (RFC 4787 terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// Linux's plain masquerade: endpoint-independent mapping (the source port is kept when
    /// free), address-and-port-dependent filtering: a "port-restricted cone".
    PortRestricted,
    /// Masquerade plus every inbound UDP datagram forwarded to one inside host: endpoint-
    /// independent mapping and filtering ("full cone").
    FullCone,
    /// `masquerade random`: a new random port per destination ("symmetric").
    Symmetric,
}

impl Lab {
    /// A NAT router between `inside` (where it is `.1`, the hosts' gateway) and `outside`
    /// (where it is `.{m}`); `dmz` is the inside host a full-cone NAT forwards to.
    pub fn router(&mut self, name: &str, inside: &Lan, outside: &Lan, m: u8, nat: Nat, dmz: &str) -> String {
        let ns = self.host(name);
        self.plug(&ns, inside, 1);
        self.plug(&ns, outside, m);
        exec(&ns, "sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
        let out_if = format!("eth{}", outside.n);
        let masq = match nat {
            Nat::Symmetric => "masquerade random",
            _ => "masquerade",
        };
        let mut rules = format!(
            "table ip nat {{\n chain post {{ type nat hook postrouting priority 100; oifname \"{out_if}\" {masq}; }}\n"
        );
        if nat == Nat::FullCone {
            rules.push_str(&format!(
                " chain pre {{ type nat hook prerouting priority -100; iifname \"{out_if}\" meta l4proto udp dnat to {dmz}; }}\n"
            ));
        }
        rules.push_str("}\n");
        // Like a home router's firewall: nothing from outside is for the router itself. Without
        // this, an unsolicited datagram leaves a conntrack entry on the router's own address
        // that collides with the mapping of a hole being punched, and masquerade then moves
        // the inside host to another port (hole punching fails until the entry expires).
        rules.push_str(&format!(
            "table ip filter {{\n chain input {{ type filter hook input priority 0; iifname \"{out_if}\" meta l4proto udp drop; }}\n}}\n"
        ));
        let path = std::env::temp_dir().join(format!("{ns}.nft"));
        std::fs::write(&path, rules).expect("write nft rules");
        exec(&ns, "nft", &["-f", path.to_str().expect("utf-8 path")]);
        let _ = std::fs::remove_file(path);
        ns
    }

    /// The NAT tests' internet: a "public" LAN (`10.77.100.0/24`) with a server host at
    /// [`SERVER`] (also [`SERVER_ALT`], for an RFC 5780 alternate address), and one home per
    /// entry of `nats`: home N (from 1) is a host at `10.77.N.10` behind router N doing that
    /// NAT, with no route anywhere but through it.
    pub fn internet(&mut self, nats: &[Nat]) -> Internet {
        let public = self.lan(100);
        let server = self.host("srv");
        let port = self.plug(&server, &public, 10);
        ip(&["-n", &server, "addr", "add", &format!("{SERVER_ALT}/24"), "dev", &port.host_if]);
        // A server on the internet has a default route: datagrams a relay sends to a private
        // address (a peer's host candidate) leave and die. Without one, coturn's send fails
        // with "network unreachable" and it closes the whole allocation.
        self.default_route(&server, "10.77.100.254");
        let mut homes = Vec::new();
        for (i, nat) in nats.iter().enumerate() {
            let n = u8::try_from(i + 1).expect("fewer than 100 homes");
            let lan = self.lan(n);
            let host = self.host(&format!("h{n}"));
            let p = self.plug(&host, &lan, 10);
            self.router(&format!("r{n}"), &lan, &public, n, *nat, &p.v4);
            self.default_route(&host, &format!("10.77.{n}.1"));
            homes.push(host);
        }
        Internet { server, homes }
    }

    /// Routes everything `host` sends off its LANs through `gateway`.
    pub fn default_route(&self, host: &str, gateway: &str) {
        ip(&["-n", host, "route", "add", "default", "via", gateway]);
    }
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Processes inside are killed by their own guards first (declare the Lab before them);
        // any left (a browser's helper processes) are killed here, or the namespace would
        // outlive its name.
        for ns in self.namespaces.drain(..).rev() {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).output();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
    }
}
