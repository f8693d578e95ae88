//! The node core driven by hand over in-memory pipes: duplicate sessions, self-connections,
//! strangers, the mesh forward, revocation and control requests, all deterministic.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::control::{Reply, Request};
use super::core::{Core, Output, PipeId, PipeInfo, HANDSHAKE_TIMEOUT, RELAY_HOLD};
use super::dialer::{TargetId, REFUSED};
use crate::actions::WriteRequest;
use crate::identity::VaultSecret;
use crate::ids::DeviceId;
use crate::vault::{MemStore, Replica};

struct End {
    node: usize,
    pipe: PipeId,
    rx: mpsc::UnboundedReceiver<Output>,
}

struct Net {
    cores: Vec<Core<MemStore>>,
    links: Vec<(End, End)>,
    next_pipe: u64,
    now: Instant,
    /// Probes the cores sent: (link, side that sent it).
    probes: Vec<(usize, usize)>,
}

fn core(secret: [u8; 32], id: u8) -> Core<MemStore> {
    let mut r = Replica::open(&VaultSecret::from_bytes(secret), DeviceId([id; 16]), MemStore::default()).unwrap();
    r.enroll_self(1).unwrap();
    Core::new(r, vec![])
}

impl Net {
    /// `n` devices of one vault, device ids 1..=n.
    fn new(n: u8) -> Self {
        Self {
            cores: (1..=n).map(|i| core([9; 32], i)).collect(),
            links: vec![],
            next_pipe: 0,
            now: Instant::now(),
            probes: vec![],
        }
    }

    /// `n` devices, node 0 dialling each of the others, sessions live.
    fn star(n: u8) -> Self {
        let mut net = Net::new(n);
        for b in 1..usize::from(n) {
            net.connect(0, b);
        }
        net.run();
        assert_eq!(net.peers(0).len(), usize::from(n) - 1);
        net
    }

    /// `n` devices on a line, each dialling the next, sessions live.
    fn line(n: u8) -> Self {
        let mut net = Net::new(n);
        for a in 0..usize::from(n) - 1 {
            net.connect(a, a + 1);
        }
        net.run();
        net
    }

    /// Opens a pipe from `a` (dialler) to `b`.
    fn connect(&mut self, a: usize, b: usize) -> usize {
        self.connect_via(a, b, None)
    }

    /// Opens a pipe from `a` to `b` as the dial of `a`'s `target`.
    fn connect_via(&mut self, a: usize, b: usize, target: Option<TargetId>) -> usize {
        self.connect_path(a, b, target, "lan")
    }

    /// Opens a pipe of `path` from `a` to `b` as the dial of `a`'s `target`.
    fn connect_path(&mut self, a: usize, b: usize, target: Option<TargetId>, path: &'static str) -> usize {
        let end = |net: &mut Net, node: usize, dialled: bool| {
            let (tx, rx) = mpsc::unbounded_channel();
            let pipe = PipeId(net.next_pipe);
            net.next_pipe += 1;
            let target = if dialled { target } else { None };
            let info = PipeInfo { path, addr: format!("node{node}"), dialled, target };
            (End { node, pipe, rx }, info, tx)
        };
        let (ea, ia, ta) = end(self, a, true);
        let (eb, ib, tb) = end(self, b, false);
        let (pa, pb) = (ea.pipe, eb.pipe);
        self.links.push((ea, eb));
        self.cores[a].opened(pa, ia, ta, self.now);
        self.cores[b].opened(pb, ib, tb, self.now);
        self.links.len() - 1
    }

    /// Delivers messages, one per pipe end in turn, until every pipe is quiet; then lets
    /// held forwards come due (time moves on by the hold) and goes on until nothing is held.
    fn run(&mut self) {
        for _ in 0..1_000 {
            self.deliver();
            let t = self.now + RELAY_HOLD;
            let due: Vec<usize> =
                (0..self.cores.len()).filter(|&i| self.cores[i].next_wakeup().is_some_and(|w| w <= t)).collect();
            if due.is_empty() {
                return;
            }
            self.now = t;
            for i in due {
                self.cores[i].tick(t);
            }
        }
        panic!("holds never ended");
    }

    /// Delivers one message (the first queued on any pipe end); false when all are quiet.
    fn step(&mut self) -> bool {
        for l in 0..self.links.len() {
            for side in 0..2 {
                let from = if side == 0 { &mut self.links[l].0 } else { &mut self.links[l].1 };
                let Ok(out) = from.rx.try_recv() else { continue };
                let to = if side == 0 { &self.links[l].1 } else { &self.links[l].0 };
                let (node, pipe) = (to.node, to.pipe);
                match out {
                    Output::Data(d) => self.cores[node].message(pipe, &d, self.now),
                    Output::Close => self.cores[node].closed(pipe, self.now),
                    Output::Probe => self.probes.push((l, side)),
                }
                return true;
            }
        }
        false
    }

    /// Delivers messages until every pipe is quiet.
    fn deliver(&mut self) {
        for _ in 0..100_000 {
            let mut moved = false;
            for l in 0..self.links.len() {
                for side in 0..2 {
                    let from = if side == 0 { &mut self.links[l].0 } else { &mut self.links[l].1 };
                    let Ok(out) = from.rx.try_recv() else { continue };
                    let to = if side == 0 { &self.links[l].1 } else { &self.links[l].0 };
                    let (node, pipe) = (to.node, to.pipe);
                    moved = true;
                    match out {
                        Output::Data(d) => self.cores[node].message(pipe, &d, self.now),
                        Output::Close => self.cores[node].closed(pipe, self.now),
                        Output::Probe => self.probes.push((l, side)),
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("pipes never went quiet");
    }

    fn control(&mut self, node: usize, req: Request) -> Reply {
        let (tx, mut rx) = oneshot::channel();
        self.cores[node].control(req, tx, self.now);
        rx.try_recv().expect("answered at once")
    }

    /// Node `node` revokes device `device` (ids are `[n; 16]`).
    fn revoke(&mut self, node: usize, device: u8) {
        let revoke = Request::Write { write: WriteRequest::Revoke { device: DeviceId([device; 16]) } };
        assert!(matches!(self.control(node, revoke), Reply::Written(_)));
    }

    fn add(&mut self, node: usize, name: &str) {
        let req = Request::Write {
            write: WriteRequest::Add {
                name: name.into(),
                fields: vec![("k".into(), Some("v".into()))],
                secret: vec![],
            },
        };
        assert!(matches!(self.control(node, req), Reply::Written(_)));
    }

    fn peers(&mut self, node: usize) -> Vec<(String, String)> {
        match self.control(node, Request::Status) {
            Reply::Status(s) => s.peers.into_iter().map(|p| (p.device, p.direction)).collect(),
            other => panic!("{other:?}"),
        }
    }

    fn names(&self, node: usize) -> Vec<String> {
        let mut v: Vec<String> =
            self.cores[node].replica().state().visible().map(|(_, s)| s.name().to_owned()).collect();
        v.sort();
        v
    }
}

fn hex(i: u8) -> String {
    DeviceId([i; 16]).to_hex()
}

#[test]
fn a_write_reaches_a_connected_peer_at_once() {
    let mut net = Net::new(2);
    net.connect(0, 1);
    net.run();
    assert_eq!(net.peers(0), vec![(hex(2), "out".into())]);
    assert_eq!(net.peers(1), vec![(hex(1), "in".into())]);
    net.add(0, "mail");
    net.run();
    assert_eq!(net.names(1), vec!["mail"]);
}

#[test]
fn both_sides_dialling_at_once_leaves_exactly_one_session_the_same_on_both_ends() {
    let mut net = Net::new(2);
    net.connect(0, 1);
    net.connect(1, 0);
    net.run();
    // The session dialled by the lower device id (device 1 = node 0) survives on both ends.
    assert_eq!(net.peers(0), vec![(hex(2), "out".into())]);
    assert_eq!(net.peers(1), vec![(hex(1), "in".into())]);
    net.add(1, "x");
    net.run();
    assert_eq!(net.names(0), vec!["x"]);
}

#[test]
fn two_sessions_dialled_by_the_same_side_keep_one() {
    let mut net = Net::new(2);
    net.connect(1, 0);
    net.connect(1, 0);
    net.run();
    assert_eq!(net.peers(0).len(), 1);
    assert_eq!(net.peers(1).len(), 1);
}

#[test]
fn a_node_that_reaches_itself_drops_the_session() {
    let mut net = Net::new(1);
    net.connect(0, 0);
    // At no moment is the node listed as its own peer (the duplicate rule alone would
    // drop the pair only once both ends were live).
    while net.step() {
        assert!(net.peers(0).is_empty(), "a session with itself was live");
    }
    assert!(net.peers(0).is_empty());
}

#[test]
fn a_stranger_is_refused_and_learns_nothing() {
    let mut net = Net::new(1);
    net.cores.push(core([8; 32], 2));
    net.connect(1, 0);
    net.run();
    assert!(net.peers(0).is_empty());
    assert!(net.peers(1).is_empty());
    net.add(0, "secret-item");
    net.run();
    assert!(net.names(1).is_empty());
}

#[test]
fn entries_travel_through_an_intermediate_both_ways() {
    let mut net = Net::new(3);
    net.connect(0, 1);
    net.connect(2, 1);
    net.run();
    net.add(0, "from-a");
    net.run();
    assert_eq!(net.names(2), vec!["from-a"]);
    net.add(2, "from-c");
    net.run();
    assert_eq!(net.names(0), vec!["from-a", "from-c"]);
}

#[test]
fn revoking_a_device_ends_its_session_before_anything_else_is_sent() {
    let mut net = Net::star(3);
    net.revoke(0, 3);
    net.add(0, "after-revoke");
    net.run();
    assert_eq!(net.peers(0), vec![(hex(2), "out".into())]);
    assert_eq!(net.names(1), vec!["after-revoke"]);
    assert!(net.names(2).is_empty(), "the revoked device got nothing written after its revocation");
}

#[test]
fn a_wait_is_answered_when_the_entry_arrives() {
    let mut net = Net::new(2);
    let (tx, mut rx) = oneshot::channel();
    net.cores[1].control(Request::WaitFor { author: hex(1), seq: 1, timeout_ms: 1000 }, tx, net.now);
    assert!(rx.try_recv().is_err(), "not yet");
    net.connect(0, 1);
    net.add(0, "x");
    net.run();
    assert_eq!(rx.try_recv().unwrap(), Reply::Reached);
    let bad = net.control(1, Request::WaitFor { author: "zz".into(), seq: 1, timeout_ms: 1 });
    assert!(matches!(bad, Reply::Error { .. }));
}

#[test]
fn a_failed_write_is_reported_with_its_kind() {
    let mut net = Net::new(1);
    let rm = Request::Write { write: WriteRequest::Rm { name: "nothing".into() } };
    assert!(matches!(net.control(0, rm), Reply::Error { lookup: true, .. }));
}

#[test]
fn a_pipe_that_never_completes_the_handshake_is_closed() {
    let mut net = Net::new(1);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let info = PipeInfo { path: "lan", addr: "silent".into(), dialled: false, target: None };
    net.cores[0].opened(PipeId(99), info, tx, net.now);
    assert!(net.cores[0].next_wakeup().is_some());
    net.cores[0].tick(net.now + HANDSHAKE_TIMEOUT - Duration::from_millis(1));
    assert!(rx.try_recv().is_err());
    net.cores[0].tick(net.now + HANDSHAKE_TIMEOUT);
    assert_eq!(rx.try_recv().unwrap(), Output::Close);
}

/// The dials `node` starts at `at` (the addresses are "nodeN" names).
fn due(net: &mut Net, node: usize, at: Instant) -> Vec<(TargetId, Vec<String>)> {
    net.cores[node].tick(at)
}

/// Node `a` knows `b` as a static peer and dials it; returns the target.
fn dial(net: &mut Net, a: usize, b: usize, at: Instant) -> TargetId {
    net.cores[a].add_static_peer(format!("node{b}"), at);
    let d = due(net, a, at);
    assert_eq!(d.len(), 1, "{d:?}");
    net.connect_via(a, b, Some(d[0].0));
    d[0].0
}

#[test]
fn a_live_target_is_not_dialled_again_and_a_quiet_live_session_outlasts_the_handshake_timeout() {
    let mut net = Net::new(2);
    let now = net.now;
    dial(&mut net, 0, 1, now);
    net.run();
    assert_eq!(net.peers(0).len(), 1);
    // Nothing is due while its device is live, however long the session stays quiet.
    let later = now + HANDSHAKE_TIMEOUT * 30;
    assert!(due(&mut net, 0, later).is_empty());
    assert!(due(&mut net, 1, later).is_empty());
    assert_eq!(net.peers(0).len(), 1, "a live session is not a stalled handshake");
    assert!(net.links[0].0.rx.try_recv().is_err() && net.links[0].1.rx.try_recv().is_err(), "no close sent");
}

#[test]
fn a_revoked_device_is_told_once_and_then_dials_no_one() {
    let mut net = Net::new(2);
    let now = net.now;
    net.connect(0, 1);
    net.run();
    net.revoke(0, 2);
    net.run();
    assert!(!net.cores[1].replica().membership().is_revoked(DeviceId([2; 16])), "a live session sent it nothing");
    // The revoked device (node 1) dials node 0 and is refused with only its revocation.
    dial(&mut net, 1, 0, now);
    net.run();
    assert!(net.peers(0).is_empty() && net.peers(1).is_empty());
    assert!(net.cores[1].replica().membership().revoked_by_user(DeviceId([2; 16])));
    assert!(net.names(1).is_empty());
    // It never dials again (not even after the refusal wait), and its wake-ups do not spin.
    assert!(due(&mut net, 1, now + REFUSED * 2).is_empty());
    assert_eq!(net.cores[1].next_wakeup(), None);
}

#[test]
fn a_refused_dial_waits_minutes_on_the_side_that_dialled() {
    // A stranger (another vault) dials node 0, and node 0 dials a stranger: either dialler
    // waits the refusal delay before its next try, not the unreachable backoff.
    for stranger_dials in [true, false] {
        let mut net = Net::new(1);
        net.cores.push(core([8; 32], 2));
        let now = net.now;
        let (a, b) = if stranger_dials { (1, 0) } else { (0, 1) };
        dial(&mut net, a, b, now);
        net.run();
        assert!(net.peers(0).is_empty() && net.peers(1).is_empty());
        assert!(due(&mut net, a, now + Duration::from_secs(60)).is_empty(), "stranger_dials: {stranger_dials}");
        assert_eq!(due(&mut net, a, now + REFUSED * 2).len(), 1);
    }
}

#[test]
fn a_silent_pipe_closed_at_the_handshake_timeout_waits_like_a_refusal() {
    let mut net = Net::new(1);
    let now = net.now;
    net.cores[0].add_static_peer("fake:1".into(), now);
    let d = due(&mut net, 0, now);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let info = PipeInfo { path: "lan", addr: "fake:1".into(), dialled: true, target: Some(d[0].0) };
    net.cores[0].opened(PipeId(77), info, tx, now);
    assert!(matches!(rx.try_recv(), Ok(Output::Data(_))), "the handshake's first message");
    assert!(due(&mut net, 0, now + HANDSHAKE_TIMEOUT).is_empty());
    assert_eq!(rx.try_recv().unwrap(), Output::Close);
    assert!(due(&mut net, 0, now + HANDSHAKE_TIMEOUT + Duration::from_secs(60)).is_empty(), "not redialled soon");
    assert_eq!(due(&mut net, 0, now + REFUSED * 2).len(), 1);
}

#[test]
fn a_peer_back_after_vanishing_without_a_fin_makes_the_zombie_prove_itself() {
    let mut net = Net::new(2);
    net.connect(0, 1);
    net.run();
    // Node 1 loses its session without node 0 hearing of it (no FIN), then dials again.
    let (old_pipe_1, link) = (net.links[0].1.pipe, 0);
    net.cores[1].closed(old_pipe_1, net.now);
    while net.links[link].1.rx.try_recv().is_ok() {}
    net.links[link].1.rx.close();
    net.connect(1, 0);
    net.run();
    // Node 0 keeps the old session by the duplicate rule (dialled by the lower id) and asks
    // its transport to prove it alive: a zombie's transport then closes it within seconds.
    assert_eq!(net.probes, vec![(0, 0)]);
    assert_eq!(net.peers(0).len(), 1);
    // The zombie goes (the probe got no answer); node 1's redial is then kept.
    let zombie = net.links[0].0.pipe;
    net.cores[0].closed(zombie, net.now);
    net.connect(1, 0);
    net.run();
    assert_eq!(net.peers(0), vec![(hex(2), "in".into())]);
    assert_eq!(net.peers(1), vec![(hex(1), "out".into())]);
    net.add(0, "after");
    net.run();
    assert_eq!(net.names(1), vec!["after"]);
}

impl Net {
    /// Entries sent over every session, and entries received that were already held.
    fn sends(&mut self) -> (u64, u64) {
        let mut sent = 0;
        let mut dup = 0;
        for n in 0..self.cores.len() {
            if let Reply::Status(s) = self.control(n, Request::Status) {
                sent += s.peers.iter().map(|p| p.sent).sum::<u64>();
                dup += s.peers.iter().map(|p| p.dup_received).sum::<u64>();
            }
        }
        (sent, dup)
    }
}

#[test]
fn in_a_full_mesh_each_entry_crosses_about_once() {
    let n = 8;
    let mut net = Net::new(n as u8);
    for a in 0..n {
        for b in a + 1..n {
            net.connect(a, b);
        }
    }
    net.run();
    let (before, _) = net.sends();
    let edits = 10;
    for i in 0..edits {
        net.add(i % 3, &format!("item{i}"));
        net.run();
    }
    for node in 0..n {
        assert_eq!(net.names(node).len(), edits, "node {node}");
    }
    let (after, dup) = net.sends();
    let deliveries = (edits * (n - 1)) as u64;
    // Every peer hears from the author directly and says so before the hold ends: nothing
    // is forwarded (it used to be sent by every node to every node, ~n times per delivery).
    assert_eq!(after - before, deliveries, "sends per delivery: {}", (after - before) as f64 / deliveries as f64);
    assert_eq!(dup, 0);
}

#[test]
fn on_a_line_entries_are_forwarded_hop_by_hop_after_the_hold() {
    let mut net = Net::line(5);
    let start = net.now;
    net.add(0, "far");
    net.run();
    assert_eq!(net.names(4), vec!["far"]);
    assert_eq!(net.now - start, RELAY_HOLD * 3, "three relays, each waiting the hold once");
    net.add(4, "back");
    net.run();
    assert_eq!(net.names(0), vec!["back", "far"]);
    let (sent, dup) = net.sends();
    assert_eq!((sent, dup), (8, 0), "two entries, four hops each");
}

#[test]
fn a_local_write_releases_held_entries_at_once() {
    let mut net = Net::line(3);
    let start = net.now;
    // Node 0's entry reaches node 1 and waits there; node 1 writes before the hold ends.
    net.add(0, "relayed");
    net.deliver();
    assert!(net.names(2).is_empty(), "held at node 1");
    net.add(1, "own");
    net.deliver();
    assert_eq!(net.names(2), vec!["own", "relayed"]);
    assert_eq!(net.now, start);
}

#[test]
fn a_relay_learns_when_to_forward_at_once_and_when_to_hold_again() {
    let mut net = Net::line(3);
    let t0 = net.now;
    net.add(0, "first");
    net.run();
    assert_eq!(net.now - t0, RELAY_HOLD, "the first relayed entry waits the hold");
    let t1 = net.now;
    net.add(0, "second");
    net.run();
    assert_eq!(net.names(2), vec!["first", "second"]);
    assert_eq!(net.now, t1, "node 2 is reached only through node 1: forwarded at once");
    // Node 2 gets a direct path to the author: its `Have` makes node 1 hold again.
    net.connect(0, 2);
    net.run();
    net.add(0, "third");
    net.run();
    let (_, dup_before) = net.sends();
    net.add(0, "fourth");
    net.run();
    assert_eq!(net.names(2).len(), 4);
    let (_, dup_after) = net.sends();
    assert_eq!(dup_after, dup_before, "no more duplicates once node 1 holds again");
}

#[test]
fn a_revocation_learnt_from_a_peer_closes_the_revoked_devices_session_here() {
    let mut net = Net::star(3);
    // Node 1 revokes device 3 (node 2); node 0 learns it from node 1 and closes its own
    // session with node 2 before sending it anything more.
    net.revoke(1, 3);
    net.run();
    assert!(net.cores[0].replica().membership().is_revoked(DeviceId([3; 16])));
    assert_eq!(net.peers(0), vec![(hex(2), "out".into())]);
    net.add(0, "after");
    net.run();
    assert!(net.names(2).is_empty(), "nothing reached the revoked device through node 0");
    assert_eq!(net.names(1), vec!["after"]);
}

#[test]
fn a_device_that_synced_and_left_is_still_seen_to_have_synced() {
    let mut net = Net::new(2);
    net.add(0, "bank");
    let l = net.connect(1, 0);
    net.run();
    assert_eq!(net.names(1), ["bank"]);
    let status = |net: &mut Net| match net.control(0, Request::Status) {
        Reply::Status(s) => s,
        other => panic!("{other:?}"),
    };
    let during = status(&mut net);
    let t = *during.last_synced.get(&hex(2)).expect("synced with device 2");
    assert_eq!(during.peers[0].last_sync_ms, Some(t));
    // The new device leaves at once: the session is gone, the record of its sync is not.
    let pipe = net.links[l].1.pipe;
    net.cores[0].closed(pipe, net.now);
    let after = status(&mut net);
    assert!(after.peers.is_empty());
    assert_eq!(after.last_synced.get(&hex(2)), Some(&t));
    assert!(!after.last_synced.contains_key(&hex(1)), "not itself");
}

#[test]
fn a_join_in_the_room_makes_every_webrtc_session_prove_itself() {
    let mut net = Net::new(3);
    net.connect_path(0, 1, None, "webrtc");
    net.connect(0, 2);
    net.run();
    assert_eq!(net.peers(0).len(), 2);
    net.cores[0].set_rendezvous("http://rv".into());
    let online = vec![DeviceId([2; 16]), DeviceId([3; 16])];
    net.cores[0].rendezvous_event(super::rendezvous::LinkEvent::Joined { online }, net.now);
    net.deliver();
    // Only the WebRTC session is asked (link 0, node 0's end); the LAN one is not.
    assert_eq!(net.probes, vec![(0, 0)]);
    assert_eq!(net.peers(0).len(), 2, "a probe closes nothing by itself");
}
