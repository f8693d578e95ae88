//! The node's core: one replica, one sync [`Session`] per pipe, the dial plan, control requests.
//!
//! Everything here is synchronous and owns no socket: transports hand it pipes (an id, what is
//! known of the remote end, and a channel for outgoing messages) and the messages they read;
//! the core answers by queueing messages on those channels. The data path is the one the
//! design names: a control write → the op log → every session's `poll_transmit` → the wire;
//! a received batch → the op log → every *other* session (the mesh forward).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::sync::{mpsc, oneshot};

use super::control::{Reply, Request};
use super::dialer::{Dialer, Ended, Source, TargetId};
use super::rendezvous::LinkEvent;
use super::status::{DaemonStatus, PeerStatus, RendezvousStatus, WebRtcStatus};
use crate::actions;
use crate::ids::DeviceId;
use crate::sync::{Event, Role, Session, SessionConfig, SyncError};
use crate::vault::{LogStore, Replica};

/// A session that is not live this long after its pipe opened is closed (strangers, stalls).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long entries received from one peer wait before they are forwarded to the others:
/// long enough for peers that got them directly from their author to say so (`Have`), so
/// in a full mesh each entry crosses about once; on a line it is what each hop adds.
pub const RELAY_HOLD: Duration = Duration::from_millis(40);

/// A pipe's id, unique for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PipeId(pub u64);

/// What a transport knows about a new pipe.
#[derive(Debug, Clone)]
pub struct PipeInfo {
    /// `lan` for WebSocket on the local network.
    pub path: &'static str,
    /// The remote address, for people.
    pub addr: String,
    /// True when this node dialled (it runs the Noise initiator).
    pub dialled: bool,
    /// The dial target that produced it.
    pub target: Option<TargetId>,
}

/// A message for a transport.
#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    /// Send these bytes as one message.
    Data(Vec<u8>),
    /// Close the pipe.
    Close,
    /// Prove the pipe alive soon (a keepalive round trip) or close it: another session with
    /// its device appeared, so this one may be a zombie whose peer vanished without a FIN.
    Probe,
}

struct Pipe {
    info: PipeInfo,
    session: Session,
    tx: mpsc::UnboundedSender<Output>,
    opened: Instant,
    /// Relayed entries held back on this pipe: from which log position, and until when
    /// (each receive holds its own entries for the whole hold).
    holds: VecDeque<(Instant, usize)>,
    /// Relayed entries go to this peer at once: the last hold ended with entries it still
    /// lacked (it reaches them only through us), and it has not said since that it got
    /// entries elsewhere.
    relay_direct: bool,
    connected_ms: u64,
    last_sync_ms: Option<u64>,
}

struct Waiter {
    author: DeviceId,
    seq: u64,
    reply: oneshot::Sender<Reply>,
}

/// The node's state.
pub struct Core<S: LogStore> {
    replica: Replica<S>,
    config: SessionConfig,
    pipes: BTreeMap<PipeId, Pipe>,
    dialer: Dialer,
    waiters: Vec<Waiter>,
    rng: StdRng,
    listen: Vec<String>,
    rendezvous: Option<RendezvousStatus>,
    /// What WebRTC knows, when a rendezvous is set.
    webrtc: Option<WebRtcStatus>,
    /// The "this device was revoked" warning was logged.
    told_revoked: bool,
    /// Services the mDNS browser ignored, when it runs.
    mdns_ignored: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    /// When each device last synced fully with this node (unix ms), kept after its pipes close.
    synced: BTreeMap<DeviceId, u64>,
    /// Since when the home's materialized view has changes to write.
    view_since: Option<Instant>,
}

/// The materialized view is written once changes have settled this long (a sync of many
/// batches writes each changed row once; commands without a daemon see it a second later).
const VIEW_DELAY: Duration = Duration::from_secs(1);

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl<S: LogStore> Core<S> {
    /// A core over `replica`; `listen` is shown in status.
    pub fn new(replica: Replica<S>, listen: Vec<String>) -> Self {
        Self {
            replica,
            config: SessionConfig::default(),
            pipes: BTreeMap::new(),
            dialer: Dialer::default(),
            waiters: Vec::new(),
            rng: StdRng::from_entropy(),
            listen,
            rendezvous: None,
            webrtc: None,
            told_revoked: false,
            mdns_ignored: None,
            synced: BTreeMap::new(),
            view_since: None,
        }
    }

    /// Writes the home's materialized view once its changes have settled ([`VIEW_DELAY`]);
    /// `now: None` writes it now (the node stops).
    pub fn settle_view(&mut self, now: Option<Instant>) {
        if !self.replica.view_pending() {
            self.view_since = None;
            return;
        }
        let since = *self.view_since.get_or_insert(now.unwrap_or_else(Instant::now));
        if now.is_none_or(|now| now >= since + VIEW_DELAY) {
            self.replica.refresh_view();
            self.view_since = None;
        }
    }

    /// The replica (read-only: every write goes through [`Core::control`]).
    pub fn replica(&self) -> &Replica<S> {
        &self.replica
    }

    /// Adds membership records learnt outside a session (a retirement notice relayed by the
    /// rendezvous); each is verified against the vault root, a bad one is only logged.
    pub fn learn(&mut self, records: Vec<crate::identity::MembershipRecord>) {
        if let Err(e) = self.replica.add_membership(records) {
            tracing::warn!(error = %e, "refused membership records");
        }
    }

    /// Where the mDNS browser counts the services it ignored (shown in status).
    pub fn set_mdns_ignored(&mut self, counter: std::sync::Arc<std::sync::atomic::AtomicU64>) {
        self.mdns_ignored = Some(counter);
    }

    /// Holds at most `max` discovered (mDNS) dial targets.
    pub fn set_mdns_limit(&mut self, max: usize) {
        self.dialer.set_max_mdns(max);
    }

    /// Adds a static peer (`host:port`).
    pub fn add_static_peer(&mut self, addr: String, now: Instant) {
        self.dialer.add(Source::Static, vec![addr], now);
    }

    /// An mDNS service of this vault appeared (or changed address).
    pub fn discovered(&mut self, name: &str, addrs: Vec<String>, now: Instant) {
        if self.dialer.upsert_mdns(name, addrs, now).is_none() {
            tracing::debug!(name, "too many discovered services; ignoring one");
        }
    }

    /// An mDNS service went away.
    pub fn lost(&mut self, name: &str) {
        self.dialer.remove_mdns(name);
    }

    /// A dial produced no pipe.
    pub fn dial_failed(&mut self, target: TargetId, now: Instant) {
        self.dial_ended(target, Ended::Unreachable, now);
    }

    /// Tells the dial plan how a dial ended, and says so in the log at the default level for
    /// a new kind of failure of that target (then at most every ten minutes).
    fn dial_ended(&mut self, target: TargetId, how: Ended, now: Instant) {
        let said = self.dialer.describe(target);
        if self.dialer.ended(target, how, now, &mut self.rng) {
            let what = match how {
                Ended::Unreachable => "unreachable: nothing answers there (dialled again with backoff)",
                _ => "refused: another vault, a revoked device, or not a Hearth device (dialled again in 5 min)",
            };
            tracing::warn!("dial {} {what}", said.unwrap_or_default());
        }
    }

    /// A transport opened a pipe.
    pub fn opened(&mut self, id: PipeId, info: PipeInfo, tx: mpsc::UnboundedSender<Output>, now: Instant) {
        let role = if info.dialled { Role::Initiator } else { Role::Responder };
        if let Some(t) = info.target {
            self.dialer.opened(t);
        }
        let session = match Session::new(role, &self.replica, self.config) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot start a session: {e}");
                let _ = tx.send(Output::Close);
                if let Some(t) = info.target {
                    self.dial_ended(t, Ended::Early, now);
                }
                return;
            }
        };
        let pipe = Pipe {
            info,
            session,
            tx,
            opened: now,
            holds: VecDeque::new(),
            relay_direct: false,
            connected_ms: 0,
            last_sync_ms: None,
        };
        self.pipes.insert(id, pipe);
        self.pump(id);
    }

    /// A message arrived on a pipe.
    pub fn message(&mut self, id: PipeId, data: &[u8], now: Instant) {
        let Some(pipe) = self.pipes.get_mut(&id) else { return };
        let members = self.replica.membership().records().len();
        let before = self.replica.len();
        let end = self.replica.log_end();
        if let Err(e) = pipe.session.handle_message(data, &mut self.replica) {
            let how = match e {
                SyncError::Handshake(_) | SyncError::NotMember(_) | SyncError::Refused(_) => Ended::Refused,
                _ => Ended::Early,
            };
            tracing::info!(peer = %pipe.info.addr, "session ended: {e}");
            self.drop_pipe(id, how, now);
            return;
        }
        if pipe.session.take_heard_have() {
            // It got entries through another path: hold what we relay to it again.
            pipe.relay_direct = false;
        }
        if self.replica.membership().records().len() != members {
            self.drop_revoked();
        }
        if self.replica.len() != before {
            // New entries: every other peer hears at once that we hold them, and gets them
            // from us only after the hold, if it has not said meanwhile that it holds them
            // too (the mesh forward, about once per entry).
            for (other, p) in &mut self.pipes {
                if *other != id && p.session.is_live() {
                    p.session.announce(&self.replica);
                    if !p.relay_direct {
                        p.session.hold_from(end);
                        p.holds.push_back((now + RELAY_HOLD, end));
                    }
                }
            }
            self.pump_all();
            self.wake_waiters();
        } else {
            self.pump(id);
        }
    }

    /// A transport closed a pipe.
    pub fn closed(&mut self, id: PipeId, now: Instant) {
        let how = match self.pipes.get(&id) {
            Some(p) if p.session.is_live() => Ended::AfterLive,
            Some(_) => Ended::Early,
            None => return,
        };
        self.drop_pipe(id, how, now);
    }

    /// Handles a control request; `reply` is answered now or, for a wait, once it is met.
    pub fn control(&mut self, req: Request, reply: oneshot::Sender<Reply>, now: Instant) {
        let answer = match req {
            Request::Status => Reply::Status(Box::new(self.status(now))),
            Request::Write { write } => {
                let members = self.replica.membership().records().len();
                match actions::apply(&mut self.replica, &write, unix_ms()) {
                    Ok(out) => {
                        // The writer answers first (its latency does not grow with its peers),
                        // then pushes its own entries to every peer at once, with anything held.
                        let _ = reply.send(Reply::Written(out));
                        if self.replica.membership().records().len() != members {
                            self.drop_revoked();
                        }
                        self.release_all();
                        self.wake_waiters();
                        return;
                    }
                    Err(e) => Reply::Error { message: e.to_string(), lookup: e.is_lookup() },
                }
            }
            // The node hands these to its WebRTC hub; a core alone has none.
            Request::ConnectOffer | Request::ConnectAnswer { .. } | Request::ConnectAccept { .. } => {
                Reply::Error { message: "WebRTC is not running in this node".into(), lookup: false }
            }
            // The node stops for these; a core alone cannot rotate or lock its home.
            Request::Rotate => Reply::Error { message: "only a running daemon rotates".into(), lookup: false },
            Request::Lock | Request::Unlock { .. } => {
                Reply::Error { message: "only a running daemon locks".into(), lookup: false }
            }
            Request::Read { read } => match crate::reads::answer(&self.replica, &read) {
                Ok(view) => Reply::Read(Box::new(view)),
                Err(e) => {
                    let lookup = matches!(e, crate::reads::ReadError::Lookup(_));
                    Reply::Error { message: e.to_string(), lookup }
                }
            },
            Request::WaitFor { author, seq, .. } => match DeviceId::from_hex(&author) {
                None => Reply::Error { message: "author is a 32-digit hex device id".into(), lookup: false },
                Some(author) if self.replica.version().get(author) >= seq => Reply::Reached,
                Some(author) => {
                    self.waiters.push(Waiter { author, seq, reply });
                    return;
                }
            },
        };
        let _ = reply.send(answer);
    }

    /// Time-driven work: handshake timeouts, held forwards now due, and the dials due now.
    pub fn tick(&mut self, now: Instant) -> Vec<(TargetId, Vec<String>)> {
        let due: Vec<PipeId> = self
            .pipes
            .iter()
            .filter(|(_, p)| p.holds.front().is_some_and(|(t, _)| *t <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(p) = self.pipes.get_mut(&id) else { continue };
            while p.holds.front().is_some_and(|(t, _)| *t <= now) {
                p.holds.pop_front();
            }
            // Entries of later receives still wait for their own hold to end.
            p.session.release();
            if let Some((_, from)) = p.holds.front() {
                p.session.hold_from(*from);
            }
            let sent = p.session.counts().sent;
            self.pump(id);
            // It still lacked what we held: no one else brings it these, so the next ones
            // go at once (a line; a `Have` from it turns this off again).
            if let Some(p) = self.pipes.get_mut(&id) {
                if p.session.counts().sent > sent {
                    p.relay_direct = true;
                }
            }
        }
        let stale: Vec<PipeId> = self
            .pipes
            .iter()
            .filter(|(_, p)| !p.session.is_live() && now.duration_since(p.opened) >= HANDSHAKE_TIMEOUT)
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            self.drop_pipe(id, Ended::Early, now);
        }
        self.waiters.retain(|w| !w.reply.is_closed());
        if self.revoked_self() {
            // Every peer refuses this device: dialling them only costs them a handshake.
            if !std::mem::replace(&mut self.told_revoked, true) {
                tracing::warn!("this device was revoked: it dials no peer any more (enrol it again with the vault's phrase, as a new device, if it should sync)");
            }
            return Vec::new();
        }
        let me = self.replica.device_id();
        let live: Vec<(DeviceId, &str)> =
            self.pipes.values().filter_map(|p| Some((p.session.remote()?, p.info.path))).collect();
        // A LAN address is still worth dialling while the device is live only over WebRTC:
        // the LAN session replaces it (see `keeps`).
        self.dialer.due(now, |d, source| {
            d == me
                || live.iter().any(|(l, path)| *l == d && (matches!(source, Source::Rendezvous(_)) || *path == "lan"))
        })
    }

    /// When [`Core::tick`] next has work.
    pub fn next_wakeup(&self) -> Option<Instant> {
        let handshake =
            self.pipes.values().filter(|p| !p.session.is_live()).map(|p| p.opened + HANDSHAKE_TIMEOUT).min();
        let dial = if self.revoked_self() { None } else { self.dialer.next_due() };
        let release = self.pipes.values().filter_map(|p| p.holds.front().map(|(t, _)| *t)).min();
        let view = self.view_since.map(|t| t + VIEW_DELAY);
        [handshake, dial, release, view].into_iter().flatten().min()
    }

    /// True when a user revoked this device (a forked one re-enrols instead).
    fn revoked_self(&self) -> bool {
        self.replica.membership().revoked_by_user(self.replica.device_id())
    }

    /// Closes every pipe (shutdown).
    pub fn close_all(&mut self) {
        for (_, p) in std::mem::take(&mut self.pipes) {
            let _ = p.tx.send(Output::Close);
        }
    }

    /// The status shown by `hearth status`.
    pub fn status(&self, now: Instant) -> DaemonStatus {
        let peers = self
            .pipes
            .values()
            .filter_map(|p| {
                let device = p.session.remote()?;
                let counts = p.session.counts();
                Some(PeerStatus {
                    device: device.to_hex(),
                    path: p.info.path.to_owned(),
                    addr: p.info.addr.clone(),
                    direction: if p.info.dialled { "out" } else { "in" }.to_owned(),
                    connected_ms: p.connected_ms,
                    last_sync_ms: p.last_sync_ms,
                    sent: counts.sent,
                    received: counts.received,
                    dup_received: counts.dup_received,
                    bytes_sent: counts.bytes_sent,
                    bytes_received: counts.bytes_received,
                    pending: p.session.pending(&self.replica),
                })
            })
            .collect::<Vec<PeerStatus>>();
        let webrtc = self.webrtc.as_ref().map(|w| {
            // A device live on any path now is not unreachable, whatever WebRTC said.
            let mut w = w.clone();
            w.unreachable.retain(|u| !peers.iter().any(|p| p.device == u.device));
            w
        });
        DaemonStatus {
            device: self.replica.device_id().to_hex(),
            listen: self.listen.clone(),
            peers,
            last_synced: self.synced.iter().map(|(d, t)| (d.to_hex(), *t)).collect(),
            entries: self.replica.len(),
            mdns_ignored: self.mdns_ignored.as_ref().map(|c| c.load(std::sync::atomic::Ordering::Relaxed)),
            rendezvous: self.rendezvous.clone(),
            webrtc,
            dials: self.dialer.view(now),
        }
    }

    /// What WebRTC knows (this network's NAT, devices not reached), for the status.
    pub fn set_webrtc(&mut self, status: WebRtcStatus) {
        self.webrtc = Some(status);
    }

    /// The daemon keeps joined to the rendezvous at `url`.
    pub fn set_rendezvous(&mut self, url: String) {
        self.rendezvous = Some(RendezvousStatus { url, error: Some("connecting".into()), ..Default::default() });
    }

    /// The rendezvous link reported `ev`. Of the devices online, this one dials those with a
    /// higher device id (one side offers; the other answers).
    pub fn rendezvous_event(&mut self, ev: LinkEvent, now: Instant) {
        let Some(s) = &mut self.rendezvous else { return };
        match ev {
            LinkEvent::Joined { online } => {
                (s.connected, s.online, s.error) = (true, online.len(), None);
                let me = self.replica.device_id();
                let m = self.replica.membership();
                let dial: Vec<DeviceId> = online.into_iter().filter(|d| *d > me && !m.is_revoked(*d)).collect();
                self.dialer.set_rendezvous(&dial, now);
                // The room says this on every join, this device's own included: a device that
                // came back after its network changed, or this one after its own did, holds
                // WebRTC sessions the other end may have lost. Each proves itself (a live
                // peer is heard within seconds) or ends, and the dial plan dials again.
                for p in self.pipes.values().filter(|p| p.info.path == "webrtc") {
                    let _ = p.tx.send(Output::Probe);
                }
            }
            LinkEvent::Down { error } => (s.connected, s.online, s.error) = (false, 0, Some(error)),
            LinkEvent::Relay(t) => s.relay = t.map(|t| t.urls.join(" ")),
        }
    }

    /// `device` can be dialled through WebRTC now (it just introduced itself): a wait for
    /// that ends (not a refusal's).
    pub fn dial_soon(&mut self, device: DeviceId, now: Instant) {
        self.dialer.retry_now(&Source::Rendezvous(device), now);
    }

    /// The device a dial target reaches through WebRTC (`None`: a LAN address).
    pub fn dial_device(&self, target: TargetId) -> Option<DeviceId> {
        match self.dialer.source(target)? {
            Source::Rendezvous(d) => Some(*d),
            _ => None,
        }
    }

    /// Lifts every hold and sends what each peer lacks (after a local write).
    fn release_all(&mut self) {
        for p in self.pipes.values_mut() {
            p.holds.clear();
            p.session.release();
        }
        self.pump_all();
    }

    fn pump_all(&mut self) {
        let ids: Vec<PipeId> = self.pipes.keys().copied().collect();
        for id in ids {
            self.pump(id);
        }
    }

    /// Sends what the session has for the wire and handles its events.
    fn pump(&mut self, id: PipeId) {
        let Some(pipe) = self.pipes.get_mut(&id) else { return };
        while let Some(m) = pipe.session.poll_transmit(&self.replica) {
            let _ = pipe.tx.send(Output::Data(m));
        }
        let mut connected = None;
        let mut progressed = false;
        while let Some(ev) = pipe.session.poll_event() {
            match ev {
                Event::Connected { device } => connected = Some(device),
                Event::Received(_) | Event::Acked(_) => progressed = true,
                Event::ForkSettled { author, kept } => {
                    tracing::warn!(device = %author, kept, "settled a fork of that device's log (its home was restored from an older copy): its entries after #{kept} are void; their values stay listed by `hearth conflicts --void`");
                }
            }
        }
        if (progressed || connected.is_some()) && pipe.session.is_caught_up(&self.replica) {
            let now = unix_ms();
            pipe.last_sync_ms = Some(now);
            if let Some(device) = pipe.session.remote() {
                self.synced.insert(device, now);
            }
        }
        if pipe.session.is_closed() {
            // Closed by this side after its last words (a forked peer told of its
            // settlement): everything queued went to the transport before the close.
            self.drop_pipe(id, Ended::Refused, Instant::now());
            return;
        }
        if let Some(device) = connected {
            pipe.connected_ms = unix_ms();
            self.on_connected(id, device);
        }
    }

    /// A session went live: drop it if it is ourselves or the loser of a duplicate pair.
    fn on_connected(&mut self, id: PipeId, device: DeviceId) {
        let now = Instant::now();
        let Some(pipe) = self.pipes.get(&id) else { return };
        if let Some(t) = pipe.info.target {
            self.dialer.live(t, device);
        }
        tracing::info!(peer = %pipe.info.addr, device = %device, "session live");
        if device == self.replica.device_id() {
            self.drop_pipe(id, Ended::Duplicate, now);
            return;
        }
        let other =
            self.pipes.iter().find(|(oid, p)| **oid != id && p.session.remote() == Some(device)).map(|(oid, _)| *oid);
        if let Some(other) = other {
            let (winner, loser) = if self.keeps(id, other, device) { (id, other) } else { (other, id) };
            self.drop_pipe(loser, Ended::Duplicate, now);
            // Both ends keep the same one of two sessions they both see; but when the peer
            // came back after vanishing without a FIN, it sees only the new session, and an
            // old winner here is a zombie: make it prove itself (the peer's redial succeeds
            // once it is gone).
            if winner == other {
                if let Some(p) = self.pipes.get(&other) {
                    let _ = p.tx.send(Output::Probe);
                }
            }
        }
    }

    /// Of two live pipes to `device`, true when `a` is the one both ends keep: a LAN one over
    /// any other (faster, and free of any relay); then the one dialled by the lower device
    /// id; between two dialled by the same side, the lower handshake hash.
    fn keeps(&self, a: PipeId, b: PipeId, device: DeviceId) -> bool {
        let me = self.replica.device_id();
        let key = |id: PipeId| {
            let p = &self.pipes[&id];
            let dialer = if p.info.dialled { me } else { device };
            (p.info.path != "lan", dialer, p.session.handshake_hash().unwrap_or([0xff; 32]))
        };
        key(a) < key(b)
    }

    /// Closes the sessions of devices that are no longer members.
    fn drop_revoked(&mut self) {
        let gone: Vec<PipeId> = self
            .pipes
            .iter()
            .filter(|(_, p)| p.session.remote().is_some_and(|d| self.replica.membership().is_revoked(d)))
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            // The session decides what a revoked peer may still get (a forked one: its
            // settlement) and closes itself; `pump` flushes that and drops the pipe.
            self.pump(id);
        }
    }

    fn drop_pipe(&mut self, id: PipeId, how: Ended, now: Instant) {
        if let Some(p) = self.pipes.remove(&id) {
            let _ = p.tx.send(Output::Close);
            if let Some(t) = p.info.target {
                self.dial_ended(t, how, now);
            }
        }
    }

    fn wake_waiters(&mut self) {
        let vv = self.replica.version();
        let (done, wait): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.waiters).into_iter().partition(|w| vv.get(w.author) >= w.seq);
        self.waiters = wait;
        for w in done {
            let _ = w.reply.send(Reply::Reached);
        }
    }
}
