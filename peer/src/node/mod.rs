//! The node: the long-running process (`hearth daemon`) that owns a home's replica and syncs it
//! with every peer it can reach.
//!
//! ```text
//!  control socket ─┐                         ┌─ ws listener / dialler (LAN)
//!  mDNS browser ───┤                         ├─ WebRTC data channels (webrtc)
//!  rendezvous link ┼─► Input channel ─► Core ┤
//!  timers ─────────┘     (one task)          └─ Output channel per pipe
//! ```
//! [`core::Core`] is synchronous and socket-free; this module wires it to tokio. A transport
//! only has to turn a connection into a *pipe*: ordered binary messages in both directions
//! plus [`core::PipeInfo`]; the WebRTC path ([`webrtc`]) plugs in the same way.

pub mod control;
pub mod core;
#[cfg(test)]
mod core_tests;
pub mod dialer;
pub mod lan_tag;
pub mod limits;
pub mod locked;
pub mod mdns;
pub mod rendezvous;
pub mod status;
pub mod webrtc;
pub mod ws;

use std::net::SocketAddr;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

use self::core::{Core, Output, PipeId, PipeInfo};
use self::dialer::TargetId;
use crate::home::{Home, HomeError, WriterLock};
use crate::identity::SymmetricKey;

/// The default WebSocket port of `hearth daemon`.
pub const DEFAULT_PORT: u16 = 7475;

/// Everything the core is told.
#[derive(Debug)]
pub enum Input {
    /// A transport opened a pipe.
    Opened {
        /// Its id.
        pipe: PipeId,
        /// What is known of the remote end.
        info: PipeInfo,
        /// Where the core sends outgoing messages.
        tx: mpsc::UnboundedSender<Output>,
    },
    /// A message arrived on a pipe.
    Message {
        /// The pipe.
        pipe: PipeId,
        /// The message.
        data: Vec<u8>,
    },
    /// A pipe closed.
    Closed {
        /// The pipe.
        pipe: PipeId,
    },
    /// A dial produced no pipe.
    DialFailed {
        /// The target dialled.
        target: TargetId,
    },
    /// mDNS found a service of this vault.
    Discovered {
        /// The service instance's full name.
        name: String,
        /// Its addresses as `host:port`.
        addrs: Vec<String>,
    },
    /// mDNS saw a service leave.
    Lost {
        /// The service instance's full name.
        name: String,
    },
    /// The rendezvous link's state changed.
    Rendezvous(rendezvous::LinkEvent),
    /// The rendezvous relayed a (sealed) signal.
    Signal {
        /// The sender, as the server names it.
        from: crate::ids::DeviceId,
        /// The envelope.
        payload: Vec<u8>,
    },
    /// A WebRTC connection task needs a signal sent.
    WebRtc(webrtc::TaskEvent),
    /// A control-socket request.
    Control {
        /// The request.
        req: control::Request,
        /// Where the answer goes.
        reply: oneshot::Sender<control::Reply>,
    },
}

/// How to run a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The device's home.
    pub home: Home,
    /// The passphrase, when the secret is sealed.
    pub passphrase: Option<Zeroizing<String>>,
    /// WebSocket listen address.
    pub listen: SocketAddr,
    /// Static peers (`host:port`), in addition to the home's `peers` file.
    pub peers: Vec<String>,
    /// Advertise and browse on mDNS.
    pub mdns: bool,
    /// Interfaces for mDNS (empty: all).
    pub mdns_interfaces: Vec<String>,
    /// Stay joined to this rendezvous (any form [`rendezvous::signal_url`] takes) and sync
    /// through WebRTC with the devices it sees.
    pub rendezvous: Option<String>,
    /// A private CA (PEM) to trust for a `wss://`/`https://` rendezvous, beside the public roots.
    pub rendezvous_ca: Option<std::path::PathBuf>,
    /// The STUN server for server-reflexive candidates (default: the rendezvous host, 3478).
    pub stun: Option<SocketAddr>,
    /// This device's own TURN relay, used instead of the rendezvous's.
    pub turn: Option<hearth_rendezvous::protocol::TurnCredentials>,
    /// What the node spends on others at most.
    pub limits: limits::Limits,
    /// Lock (forget the secret, stop syncing) after this long without a command through the
    /// control socket; `None` never (a sealed home only: a key-file home has nothing to lock).
    pub lock_after: Option<std::time::Duration>,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The home could not be opened or is in use.
    #[error(transparent)]
    Home(#[from] HomeError),
    /// A socket could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        /// The address.
        addr: String,
        /// The error (in the message, not a `source`: a chain printed whole shows it once).
        error: std::io::Error,
    },
    /// The rendezvous URL is not one this build can dial.
    #[error("rendezvous URL {0:?}: expected https://HOST[:PORT] (or http://, wss://, ws://HOST[:PORT][/v1/signal])")]
    RendezvousUrl(String),
    /// The rendezvous CA file could not be used.
    #[error("--rendezvous-ca: {0}")]
    RendezvousCa(#[from] hearth_rendezvous::tls::TlsError),
    /// No DTLS certificate could be made for WebRTC.
    #[error("cannot make a DTLS certificate for WebRTC")]
    Certificate,
    /// The membership holds no enrolment of this device (needed to join a rendezvous).
    #[error("this device's enrolment is missing from the vault's membership")]
    NotEnrolled,
    /// mDNS could not start.
    #[error("mDNS: {0} (use --no-mdns with --peer on networks without multicast)")]
    Mdns(#[from] mdns_sd::Error),
}

/// A manual-signaling reply channel whose outcome becomes the control request's reply.
fn manual_reply(reply: oneshot::Sender<control::Reply>) -> webrtc::task::ManualReply {
    let (tx, rx): (webrtc::task::ManualReply, _) = oneshot::channel();
    tokio::spawn(async move {
        let r = match rx.await {
            Ok(Ok((text, device))) => control::Reply::Text { text, device: device.map(|d| d.to_hex()) },
            Ok(Err(message)) => control::Reply::Error { message, lookup: false },
            Err(_) => control::Reply::Error { message: "the connection attempt ended".into(), lookup: false },
        };
        let _ = reply.send(r);
    });
    tx
}

/// Why [`Node::run`] returned.
#[derive(Debug)]
pub enum RunEnd {
    /// The shutdown future completed (or every input source closed).
    Shutdown,
    /// A peer settled a fork of this device's own log: re-enrol the home
    /// ([`Home::settle_own_fork`]) and start again.
    Forked,
    /// A peer said the vault was rotated (it is retired here now): nothing more syncs; the
    /// device pairs again ([`crate::vault::Replica::retirement`] says by whom and when).
    Retired,
    /// `hearth rotate` asked (through the control socket): rotate the home
    /// ([`Home::rotate`]), answer, and start again on the new vault.
    Rotate(oneshot::Sender<control::Reply>),
    /// `hearth lock` asked (its reply goes out once the secret is forgotten), or the idle
    /// timer ran out (`None`): wait locked for an unlock ([`locked::serve`]).
    Locked(Option<oneshot::Sender<control::Reply>>),
}

/// A started node: its listen address is known; [`Node::run`] serves until shutdown.
pub struct Node {
    core: Core<crate::vault::SqliteStore>,
    inputs: mpsc::Receiver<Input>,
    to_node: mpsc::Sender<Input>,
    dialling: ws::Dialling,
    local_addr: SocketAddr,
    _lock: WriterLock,
    _mdns: Option<mdns::Mdns>,
    home: Home,
    /// A `hearth rotate` waiting for this node to stop.
    rotate: Option<oneshot::Sender<control::Reply>>,
    /// Set when the node must stop and lock (a `hearth lock`, or the idle timer).
    lock: Option<Option<oneshot::Sender<control::Reply>>>,
    /// The home's secret is sealed under a passphrase (so there is something to lock).
    sealed: bool,
    /// The idle time after which a sealed home locks.
    lock_after: Option<std::time::Duration>,
    /// The last command through the control socket (status polls do not count).
    last_used: Instant,
    /// The vault's revocations, for the rendezvous link (set when it runs).
    revocations: Option<tokio::sync::watch::Sender<Vec<hearth_proto::membership::MembershipRecord>>>,
    /// The listener, control socket and rendezvous link tasks.
    tasks: Vec<tokio::task::AbortHandle>,
    /// WebRTC signaling and connections, with a rendezvous.
    webrtc: Option<webrtc::Hub>,
}

impl Node {
    /// Takes the home's writer lock, opens the replica and binds every socket.
    pub async fn start(config: NodeConfig) -> Result<Self, NodeError> {
        config.home.check_private()?;
        let lock = config.home.lock_writer()?;
        let pass = config.passphrase.as_deref().map(String::as_str);
        let mut replica = config.home.open(pass)?;
        // A retired vault syncs nothing: its device pairs again (the error says how).
        if let Some(r) = replica.retirement() {
            return Err(NodeError::Home(HomeError::Replica(crate::vault::ReplicaError::Retired(Box::new(r.clone())))));
        }
        replica.set_predecessors(config.home.predecessors(pass)?);
        // Written a second after changes settle, and as the node stops (`Core::settle_view`).
        replica.defer_view();
        name_self(&mut replica);
        let retired_lan: Vec<SymmetricKey> = replica.predecessors().iter().map(|p| p.lan_tag.clone()).collect();
        let listener = ws::bind(config.listen)
            .await
            .map_err(|source| NodeError::Listen { addr: config.listen.to_string(), error: source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| NodeError::Listen { addr: config.listen.to_string(), error: source })?;
        let control_err = |source| NodeError::Listen {
            addr: control::socket_path(config.home.dir()).display().to_string(),
            error: source,
        };
        let control = control::bind(config.home.dir()).map_err(control_err)?;
        let uid = control::owner(config.home.dir()).map_err(control_err)?;
        let sealed = config.home.is_sealed();
        let (to_node, inputs) = mpsc::channel(1024);
        let ids = ws::PipeIds::default();
        let lan_key = SymmetricKey(*replica.vault_keys().lan_tag.as_bytes());
        let mut core = Core::new(replica, vec![local_addr.to_string()]);
        core.set_mdns_limit(config.limits.mdns_targets);
        let now = Instant::now();
        let mut peers = config.peers.clone();
        peers.extend(config.home.static_peers()?);
        peers.sort();
        peers.dedup();
        for p in peers {
            core.add_static_peer(p, now);
        }
        // Stopped when the node ends: a node started again in this process (after re-enrolling)
        // binds the same sockets.
        let mut tasks = vec![
            tokio::spawn(ws::accept_loop(listener, ids.clone(), config.limits, to_node.clone())).abort_handle(),
            tokio::spawn(control::serve(control, uid, to_node.clone())).abort_handle(),
        ];
        let mdns = if config.mdns {
            let m = mdns::start(&lan_key, &retired_lan, local_addr.port(), &config.mdns_interfaces, to_node.clone())?;
            core.set_mdns_ignored(m.ignored.clone());
            Some(m)
        } else {
            None
        };
        let (revocations, webrtc) = match &config.rendezvous {
            Some(url) => {
                let url = rendezvous::signal_url(url).ok_or_else(|| NodeError::RendezvousUrl(url.clone()))?;
                let tls = match &config.rendezvous_ca {
                    Some(ca) => Some(hearth_rendezvous::tls::client_config(Some(ca))?),
                    None => None,
                };
                let options = hearth_rendezvous::client::Options { from: None, tls };
                let r = core.replica();
                let id = rendezvous::identity(r.membership(), r.device_id(), r.device_keys().sign.clone())
                    .ok_or(NodeError::NotEnrolled)?;
                let keys = r.device_keys();
                let signaling =
                    crate::signal::Signaling::new(r.vault_keys(), r.device_id(), keys.sign.clone(), keys.dh.clone());
                let stun = match config.stun {
                    Some(s) => Some(s),
                    None => rendezvous::default_stun(&url).await,
                };
                let cert = webrtc::conn::certificate().ok_or(NodeError::Certificate)?;
                let ctx = webrtc::task::Ctx { cert, stun, ids: ids.clone(), to_node: to_node.clone() };
                let (signal_tx, signal_rx) = mpsc::channel(64);
                core.set_rendezvous(url.clone());
                let (tx, rx) = tokio::sync::watch::channel(id.revocations.clone());
                // Each vault this device rotated away from is told in its own room.
                for p in core.replica().predecessors() {
                    let Some(record) = p.enrollment.clone() else { continue };
                    let id = hearth_rendezvous::client::Identity {
                        root: p.root,
                        record,
                        device_key: p.sign.clone(),
                        revocations: Vec::new(),
                    };
                    let notice =
                        crate::signal::envelope::seal_notice(&p.notice, p.signal.as_bytes(), &mut rand::rngs::OsRng);
                    let tell = rendezvous::tell_retired(url.clone(), options.clone(), id, notice);
                    tasks.push(tokio::spawn(tell).abort_handle());
                }
                tasks.push(
                    tokio::spawn(rendezvous::run(url, options, id, rx, signal_rx, to_node.clone())).abort_handle(),
                );
                let mut hub = webrtc::Hub::new(signaling, ctx, signal_tx);
                hub.set_own_turn(config.turn.clone());
                hub.check_nat();
                core.set_webrtc(hub.status());
                (Some(tx), Some(hub))
            }
            // No rendezvous: WebRTC only through manual signaling (`hearth connect`).
            None => {
                let r = core.replica();
                let keys = r.device_keys();
                let signaling =
                    crate::signal::Signaling::new(r.vault_keys(), r.device_id(), keys.sign.clone(), keys.dh.clone());
                let cert = webrtc::conn::certificate().ok_or(NodeError::Certificate)?;
                let ctx = webrtc::task::Ctx { cert, stun: config.stun, ids: ids.clone(), to_node: to_node.clone() };
                // Nothing reads these signals: there is no link to send them.
                let (signal_tx, _) = mpsc::channel(1);
                let mut hub = webrtc::Hub::new(signaling, ctx, signal_tx);
                hub.set_own_turn(config.turn.clone());
                (None, Some(hub))
            }
        };
        Ok(Self {
            core,
            inputs,
            to_node,
            dialling: ws::Dialling::new(ids, config.limits),
            local_addr,
            _lock: lock,
            _mdns: mdns,
            home: config.home,
            rotate: None,
            lock: None,
            sealed,
            lock_after: config.lock_after.filter(|_| sealed),
            last_used: Instant::now(),
            revocations,
            tasks,
            webrtc,
        })
    }

    /// The WebSocket listener's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes (or this device turns out to have forked), then
    /// closes every session.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> RunEnd {
        tokio::pin!(shutdown);
        let mut end = RunEnd::Shutdown;
        // Learnt before this start (a crash before re-enrolling): re-enrol first.
        if self.core.replica().forked_self() {
            end = RunEnd::Forked;
        }
        while matches!(end, RunEnd::Shutdown) {
            let now = Instant::now();
            self.start_dials(now);
            self.core.settle_view(Some(now));
            let idle_end = self.lock_after.map(|d| self.last_used + d);
            if idle_end.is_some_and(|t| t <= now) {
                tracing::info!("locked after {:?} without a command: the secret is forgotten", self.lock_after);
                end = RunEnd::Locked(None);
                break;
            }
            let wake = [self.core.next_wakeup(), idle_end].into_iter().flatten().min();
            let wake = wake.map(tokio::time::Instant::from_std);
            tokio::select! {
                () = &mut shutdown => break,
                input = self.inputs.recv() => match input {
                    Some(i) => {
                        self.handle(i);
                        self.share_revocations();
                        // Peers refuse this device id from now on: the home must re-enrol.
                        if self.core.replica().forked_self() {
                            end = RunEnd::Forked;
                        }
                        if self.core.replica().retirement().is_some() {
                            end = RunEnd::Retired;
                        }
                        if let Some(reply) = self.rotate.take() {
                            end = RunEnd::Rotate(reply);
                        }
                        if let Some(reply) = self.lock.take() {
                            end = RunEnd::Locked(reply);
                        }
                    }
                    None => break,
                },
                () = sleep_until(wake) => {}
            }
        }
        self.core.close_all();
        self.core.settle_view(None);
        for t in &self.tasks {
            t.abort();
        }
        let _ = std::fs::remove_file(control::socket_path(self.home.dir()));
        // Give transports a moment to send their close frames (WebRTC connections their
        // goodbye: their tasks are stopped only after it).
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if let Some(w) = &mut self.webrtc {
            w.stop();
        }
        end
    }

    fn handle(&mut self, input: Input) {
        let now = Instant::now();
        match input {
            Input::Opened { pipe, info, tx } => self.core.opened(pipe, info, tx, now),
            Input::Message { pipe, data } => self.core.message(pipe, &data, now),
            Input::Closed { pipe } => self.core.closed(pipe, now),
            Input::DialFailed { target } => self.core.dial_failed(target, now),
            Input::Discovered { name, addrs } => self.core.discovered(&name, addrs, now),
            Input::Lost { name } => self.core.lost(&name),
            Input::Control { req, reply }
                if !matches!(req, control::Request::Status | control::Request::WaitFor { .. }) =>
            {
                self.last_used = now;
                self.command(req, reply, now);
            }
            Input::Control { req, reply } => self.core.control(req, reply, now),
            Input::Rendezvous(ev) => {
                match (&ev, &mut self.webrtc) {
                    (rendezvous::LinkEvent::Joined { online }, Some(w)) => {
                        w.presence(self.core.replica().membership(), online);
                    }
                    (rendezvous::LinkEvent::Relay(turn), Some(w)) => {
                        w.set_turn(turn.clone());
                        self.core.set_webrtc(w.status());
                    }
                    _ => {}
                }
                self.core.rendezvous_event(ev, now);
            }
            // A device that rotated this vault away says so through the room.
            Input::Signal { from, payload } if payload.first() == Some(&crate::signal::envelope::RETIRED) => {
                let key = self.core.replica().vault_keys().signal.as_bytes();
                match crate::signal::envelope::open_notice(&payload, key) {
                    Ok(records) => {
                        tracing::info!(%from, "told through the rendezvous that this vault was rotated");
                        self.core.learn(records);
                    }
                    Err(e) => tracing::debug!(%from, error = %e, "refused a retirement notice"),
                }
            }
            Input::Signal { from, payload } => {
                let introduced = match &mut self.webrtc {
                    Some(w) => w.signal(self.core.replica().membership(), from, &payload),
                    None => None,
                };
                if let Some(d) = introduced {
                    self.core.dial_soon(d, now);
                }
            }
            Input::WebRtc(ev) => {
                if let Some(w) = &mut self.webrtc {
                    w.task_event(self.core.replica().membership(), ev);
                    self.core.set_webrtc(w.status());
                }
            }
        }
    }

    /// A command through the control socket (anything but a status poll).
    fn command(&mut self, req: control::Request, reply: oneshot::Sender<control::Reply>, now: Instant) {
        match (req, &mut self.webrtc) {
            (control::Request::Rotate, _) => self.rotate = Some(reply),
            (control::Request::Lock, _) if self.sealed => self.lock = Some(Some(reply)),
            (control::Request::Lock, _) => {
                let message = "this home has no passphrase, so there is nothing to lock: its key is in a file (`hearth init` without --no-passphrase makes a sealed home)".into();
                let _ = reply.send(control::Reply::Error { message, lookup: false });
            }
            // Unlocked already.
            (control::Request::Unlock { passphrase }, _) => {
                drop(Zeroizing::new(passphrase));
                let _ = reply.send(control::Reply::Unlocked { unlocked: true });
            }
            (control::Request::ConnectOffer, Some(w)) => w.manual_offer(manual_reply(reply)),
            (control::Request::ConnectAnswer { offer }, Some(w)) => {
                w.manual_answer(self.core.replica().membership(), &offer, manual_reply(reply));
            }
            (control::Request::ConnectAccept { answer }, Some(w)) => {
                let r = w.manual_accept(self.core.replica().membership(), &answer);
                let _ = reply.send(match r {
                    Ok(device) => control::Reply::Text { text: String::new(), device: Some(device.to_hex()) },
                    Err(message) => control::Reply::Error { message, lookup: false },
                });
            }
            (req, _) => self.core.control(req, reply, now),
        }
    }

    /// Hands the rendezvous link any revocation learnt since it last looked.
    fn share_revocations(&mut self) {
        let Some(tx) = &self.revocations else { return };
        let m = self.core.replica().membership();
        let n = m.records().iter().filter(|r| r.body.cut().is_some()).count();
        if n != tx.borrow().len() {
            let _ = tx.send(rendezvous::revocations(m));
        }
    }

    fn start_dials(&mut self, now: Instant) {
        for (target, addrs) in self.core.tick(now) {
            match (self.core.dial_device(target), &mut self.webrtc) {
                (Some(device), Some(w)) if w.knows(self.core.replica().membership(), device) => {
                    tracing::info!(device = %device, "dialling through WebRTC");
                    w.dial(target, device);
                }
                // Not introduced yet (its introduction is on its way): try again shortly.
                (Some(_), _) => self.core.dial_failed(target, now),
                _ => {
                    tracing::info!(?addrs, "dialling");
                    tokio::spawn(ws::dial(target, addrs, self.dialling.clone(), self.to_node.clone()));
                }
            }
        }
    }
}

async fn sleep_until(when: Option<tokio::time::Instant>) {
    match when {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Writes this device's name into the vault when the home has one the vault lacks (homes
/// made before names were vault data, or a write that failed): every device then shows it.
fn name_self(replica: &mut crate::vault::Replica<crate::vault::SqliteStore>) {
    use crate::vault::LogStore;
    let me = replica.device_id();
    if replica.state().device_names().contains_key(&me) {
        return;
    }
    let Ok(Some(name)) = replica.store_mut().get_meta(crate::home::DEVICE_NAME) else { return };
    let name = String::from_utf8_lossy(&name).trim().to_owned();
    if name.is_empty() {
        return;
    }
    let req = crate::actions::WriteRequest::NameDevice { name };
    if let Err(e) = crate::actions::apply(replica, &req, core::unix_ms()) {
        tracing::debug!("this device's name is not written yet: {e}");
    }
}
