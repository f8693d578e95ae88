//! WebRTC pipes: data channels to devices on other networks, set up through sealed signals on
//! the vault's rendezvous ([`crate::signal`]).
//!
//! ```text
//!  dial plan ── Source::Rendezvous(device) ──► task::offer ─ SDP ─► Hub ─ sealed ─► link ─► server
//!  server ─► link ─► Input::Signal ─► Hub ─ offer ─► task::answer ─ SDP ─► Hub ─ sealed ─► link
//!                                         └ answer ─► the waiting task::offer
//!  task (open channel) ── Input::Opened { path: "webrtc" } ──► Core, like any pipe
//! ```
//! The lower device id of a pair offers (and so runs the Noise initiator); the session on
//! the channel is the LAN one, unchanged, so a relay that altered a signal could at worst
//! make a connection fail, never read or inject sync traffic.

pub mod conn;
mod dtls;
pub mod gather;
mod reach;
mod relay;
pub(crate) mod task;
mod trickle;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hearth_proto::membership::Membership;
use tokio::sync::{mpsc, oneshot};

use self::task::Ctx;
use super::dialer::TargetId;
use crate::ids::DeviceId;
use crate::signal::envelope::EnvelopeError;
use crate::signal::{Body, SignalError, Signaling};

/// A device is introduced to another at most this often.
const INTRO_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
/// How long a signal from a device not known yet waits for its sender's introduction.
const HOLD_FOR_INTRO: std::time::Duration = std::time::Duration::from_secs(30);
/// Senders whose signal waits for their introduction at once (one signal each, the latest).
const MAX_HELD: usize = 16;

/// A connection task's request to the node.
#[derive(Debug)]
pub enum TaskEvent {
    /// Seal and send this offer; the answer's SDP goes to `answer`.
    Offer {
        /// The dial target.
        target: TargetId,
        /// The device dialled.
        device: DeviceId,
        /// The offer.
        sdp: String,
        /// Where the session id, then the answer and the peer's trickled candidates go.
        remote: mpsc::Sender<trickle::Remote>,
    },
    /// Seal and send candidates found after the offer or answer left (trickle ICE).
    Candidates {
        /// The other device.
        to: DeviceId,
        /// The session.
        session: [u8; 16],
        /// The candidates' lines.
        lines: Vec<String>,
    },
    /// Seal and send this answer.
    Answer {
        /// The offering device.
        to: DeviceId,
        /// Its session.
        session: [u8; 16],
        /// The answer.
        sdp: String,
    },
    /// Offer and answer were exchanged with `device`; the channel opened or never did.
    Outcome {
        /// The other device.
        device: DeviceId,
        /// The channel opened.
        opened: bool,
    },
    /// This network's NAT check ended (`None`: it could not run).
    Nat(Option<hearth_stun::discovery::Behaviour>),
    /// Seal this manual offer as text for `reply`; the answer pasted later goes to `answer`.
    ManualOffer {
        /// The offer.
        sdp: String,
        /// Where the text goes.
        reply: task::ManualReply,
        /// Where the answering device and its SDP go.
        answer: oneshot::Sender<(DeviceId, String)>,
    },
}

/// The node's WebRTC side: signaling state, offers awaiting answers, and what tasks share.
pub(crate) struct Hub {
    signaling: Signaling,
    ctx: Arc<Ctx>,
    /// Signals for the rendezvous link: (recipient, envelope).
    out: mpsc::Sender<(DeviceId, Vec<u8>)>,
    /// Connection tasks by session: where the peer's answer and candidates go.
    sessions: BTreeMap<[u8; 16], mpsc::Sender<trickle::Remote>>,
    /// Devices whose answers said they read no trickled candidates (older builds): offers
    /// to them carry every candidate.
    no_trickle: std::collections::BTreeSet<DeviceId>,
    /// When this device last introduced itself to each device.
    introduced: BTreeMap<DeviceId, std::time::Instant>,
    /// The latest signal from each device not known yet, until its introduction arrives: a
    /// device that just joined knows this one from its grant and may offer before its own
    /// introduction (sent when this one introduces itself) gets here.
    held: BTreeMap<DeviceId, (std::time::Instant, Vec<u8>)>,
    /// The TURN relay credentials in use: the rendezvous's, or this device's own.
    turn: Option<hearth_rendezvous::protocol::TurnCredentials>,
    /// `turn` is this device's own (`--turn-url`): the rendezvous's do not replace it.
    own_turn: bool,
    /// Connection tasks, aborted when the node stops.
    tasks: Vec<tokio::task::AbortHandle>,
    /// Devices not reached, and this network's NAT.
    reach: reach::Reach,
    /// Manual offers waiting for their pasted answer, by session.
    manual_waiting: BTreeMap<[u8; 16], oneshot::Sender<(DeviceId, String)>>,
    /// Manual offers being answered: where each answer's text goes, by session.
    manual_replies: BTreeMap<[u8; 16], task::ManualReply>,
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Hub {
    pub(crate) fn new(signaling: Signaling, ctx: Ctx, out: mpsc::Sender<(DeviceId, Vec<u8>)>) -> Self {
        Self {
            signaling,
            ctx: Arc::new(ctx),
            out,
            sessions: BTreeMap::new(),
            no_trickle: std::collections::BTreeSet::new(),
            introduced: BTreeMap::new(),
            held: BTreeMap::new(),
            turn: None,
            own_turn: false,
            tasks: Vec::new(),
            reach: reach::Reach::default(),
            manual_waiting: BTreeMap::new(),
            manual_replies: BTreeMap::new(),
        }
    }

    /// `hearth connect --offer`: gathers and makes an offer; its text goes to `reply`.
    pub(crate) fn manual_offer(&mut self, reply: task::ManualReply) {
        self.spawn(task::manual_offer(self.ctx.clone(), self.turn.clone(), reply));
    }

    /// `hearth connect --answer TEXT`: opens the pasted offer and answers it; the answer's
    /// text (or why there is none) goes to `reply`.
    pub(crate) fn manual_answer(&mut self, m: &Membership, offer: &str, reply: task::ManualReply) {
        let got = match self.signaling.manual_receive(m, offer, false, unix_ms()) {
            Ok(g) => g,
            Err(e) => {
                let _ = reply.send(Err(e.to_string()));
                return;
            }
        };
        let Body::Offer(sdp) = got.body else { return };
        self.manual_replies.insert(got.session, reply);
        let ctx = self.ctx.clone();
        self.spawn(task::answer(ctx, (got.from, got.session), sdp, self.turn.clone(), true, None));
    }

    /// `hearth connect --offer`, second half: the pasted answer. Returns the answering device.
    pub(crate) fn manual_accept(&mut self, m: &Membership, answer: &str) -> Result<DeviceId, String> {
        let got = self.signaling.manual_receive(m, answer, true, unix_ms()).map_err(|e| e.to_string())?;
        let Body::Answer(sdp) = got.body else { return Err("not an answer".into()) };
        let waiting = self
            .manual_waiting
            .remove(&got.session)
            .ok_or("that offer is no longer waiting (it expired, or the daemon restarted): make a new one")?;
        waiting.send((got.from, sdp)).map_err(|_| "that offer gave up waiting: make a new one".to_owned())?;
        Ok(got.from)
    }

    /// Checks this network's NAT against the STUN server when it is due (at start, and
    /// again after a failure once the last check is stale), off the async threads.
    pub(crate) fn check_nat(&mut self) {
        let Some(stun) = self.ctx.stun else { return };
        if !self.reach.should_check(std::time::Instant::now()) {
            return;
        }
        let to_node = self.ctx.to_node.clone();
        self.spawn(async move {
            let found = tokio::task::spawn_blocking(move || crate::nat::check(stun)).await;
            let found = match found {
                Ok(Ok(b)) => Some(b),
                Ok(Err(e)) => {
                    tracing::info!(%stun, "NAT check: {e}");
                    None
                }
                Err(_) => None,
            };
            let _ = to_node.send(super::Input::WebRtc(TaskEvent::Nat(found))).await;
        });
    }

    /// What `hearth status` shows of WebRTC.
    pub(crate) fn status(&self) -> super::status::WebRtcStatus {
        self.reach.status(self.turn.as_ref().map(|t| t.urls.join(" ")))
    }

    /// Starts a connection to `device` for dial `target`.
    pub(crate) fn dial(&mut self, target: TargetId, device: DeviceId) {
        let trickle = !self.no_trickle.contains(&device);
        self.spawn(task::offer(self.ctx.clone(), target, device, self.turn.clone(), trickle));
    }

    fn spawn(&mut self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.retain(|t| !t.is_finished());
        self.tasks.push(tokio::spawn(f).abort_handle());
        // Connections that ended: a late answer or candidates for them are refused.
        let gone: Vec<[u8; 16]> = self.sessions.iter().filter(|(_, w)| w.is_closed()).map(|(s, _)| *s).collect();
        for s in gone {
            self.sessions.remove(&s);
            self.signaling.forget(s);
        }
    }

    /// A connection task asks for a signal to be sent.
    pub(crate) fn task_event(&mut self, m: &Membership, ev: TaskEvent) {
        let now = unix_ms();
        match ev {
            TaskEvent::Offer { device, sdp, remote, .. } => match self.signaling.offer(m, device, sdp, now) {
                Ok((session, env)) => {
                    let _ = remote.try_send(trickle::Remote::Session(session));
                    self.sessions.insert(session, remote);
                    self.send(device, env);
                }
                Err(e) => tracing::info!(device = %device, "not offering: {e}"),
            },
            TaskEvent::Candidates { to, session, lines } => {
                match self.signaling.reply(m, to, session, &Body::Candidates(lines), now) {
                    Ok(env) => self.send(to, env),
                    Err(e) => tracing::info!(device = %to, "not trickling: {e}"),
                }
            }
            TaskEvent::ManualOffer { sdp, reply, answer } => match self.signaling.manual_offer(m, &sdp, now) {
                Some((session, text)) => {
                    if reply.send(Ok((text, None))).is_ok() {
                        self.manual_waiting.insert(session, answer);
                    }
                }
                None => {
                    let _ = reply.send(Err("this device's enrolment is missing".into()));
                }
            },
            // A manual answer goes back to the person as text, any other through the link.
            TaskEvent::Answer { to, session, sdp } => match self.manual_replies.remove(&session) {
                Some(r) => {
                    let text = self.signaling.manual_answer(m, session, &sdp, now);
                    let _ = r.send(
                        text.map(|t| (t, Some(to))).ok_or_else(|| "this device's enrolment is missing".to_owned()),
                    );
                }
                None => match self.signaling.reply(m, to, session, &Body::Answer(sdp), now) {
                    Ok(env) => self.send(to, env),
                    Err(e) => tracing::info!(device = %to, "not answering: {e}"),
                },
            },
            TaskEvent::Outcome { device, opened: true } => self.reach.reached(device),
            TaskEvent::Outcome { device, opened: false } => {
                self.reach.unreached(device);
                self.check_nat();
            }
            TaskEvent::Nat(found) => self.reach.checked(found, std::time::Instant::now()),
        }
    }

    /// The rendezvous relayed a signal. Returns the sender when it introduced itself (a
    /// dial to it waiting for that can start now).
    pub(crate) fn signal(&mut self, m: &Membership, from: DeviceId, payload: &[u8]) -> Option<DeviceId> {
        let got = match self.signaling.receive(m, from, payload, unix_ms()) {
            Ok(g) => g,
            Err(SignalError::Envelope(EnvelopeError::UnknownSender(d))) if d == from && !m.is_revoked(from) => {
                self.hold(from, payload);
                return None;
            }
            Err(e) => {
                tracing::info!(device = %from, "signal dropped: {e}");
                return None;
            }
        };
        match got.body {
            Body::Offer(sdp) => {
                let (tx, rx) = mpsc::channel(task::REMOTE_QUEUE);
                self.sessions.insert(got.session, tx);
                let ctx = self.ctx.clone();
                self.spawn(task::answer(ctx, (got.from, got.session), sdp, self.turn.clone(), false, Some(rx)));
            }
            Body::Answer(sdp) => {
                if trickle::reads(&sdp) {
                    self.no_trickle.remove(&got.from);
                } else {
                    self.no_trickle.insert(got.from);
                }
                self.pass_on(got.session, trickle::Remote::Answer(sdp));
            }
            Body::Candidates(lines) => self.pass_on(got.session, trickle::Remote::Candidates(lines)),
            Body::Bye => {
                self.sessions.remove(&got.session);
                self.signaling.forget(got.session);
            }
            // It may not know this device either: introduce ourselves in return (at most
            // once a minute per device, so two introductions never ping-pong).
            Body::Intro => {
                self.introduce(m, got.from);
                if let Some((at, held)) = self.held.remove(&got.from) {
                    if at.elapsed() < HOLD_FOR_INTRO {
                        tracing::debug!(device = %got.from, "a signal held for this introduction goes on");
                        // Known now: this cannot be held again.
                        let _ = self.signal(m, got.from, &held);
                    }
                }
                return Some(got.from);
            }
        }
        None
    }

    /// Hands what the peer sent in `session` to its connection task.
    fn pass_on(&self, session: [u8; 16], r: trickle::Remote) {
        if let Some(task) = self.sessions.get(&session) {
            if task.try_send(r).is_err() {
                tracing::debug!("a WebRTC connection task is not listening: signal dropped");
            }
        }
    }

    /// The room's presence changed: introduce this device to those it cannot seal to yet
    /// (they enrolled elsewhere and never synced with it).
    pub(crate) fn presence(&mut self, m: &Membership, online: &[DeviceId]) {
        for d in online {
            if !self.signaling.knows(m, *d) {
                self.introduce(m, *d);
            }
        }
    }

    /// The rendezvous's TURN credentials (new ones arrive with each join); this device's
    /// own relay, when set, stays in use.
    pub(crate) fn set_turn(&mut self, turn: Option<hearth_rendezvous::protocol::TurnCredentials>) {
        if !self.own_turn {
            self.turn = turn;
        }
    }

    /// This device's own TURN relay (`hearth daemon --turn-url`), used instead of the
    /// rendezvous's.
    pub(crate) fn set_own_turn(&mut self, turn: Option<hearth_rendezvous::protocol::TurnCredentials>) {
        if turn.is_some() {
            self.turn = turn;
            self.own_turn = true;
        }
    }

    /// True when signals to `device` can be sealed.
    pub(crate) fn knows(&self, m: &Membership, device: DeviceId) -> bool {
        self.signaling.knows(m, device)
    }

    /// Keeps the latest signal of a sender not known yet, for [`HOLD_FOR_INTRO`]; at most
    /// [`MAX_HELD`] senders (the room's members only: the server admits no one else).
    fn hold(&mut self, from: DeviceId, payload: &[u8]) {
        let now = std::time::Instant::now();
        self.held.retain(|_, (at, _)| now.duration_since(*at) < HOLD_FOR_INTRO);
        if self.held.len() >= MAX_HELD && !self.held.contains_key(&from) {
            tracing::info!(device = %from, "signal dropped: from a device not known yet, and too many wait already");
            return;
        }
        tracing::debug!(device = %from, "a signal from a device not known yet waits for its introduction");
        self.held.insert(from, (now, payload.to_vec()));
    }

    fn introduce(&mut self, m: &Membership, to: DeviceId) {
        let now = std::time::Instant::now();
        if self.introduced.get(&to).is_some_and(|t| now.duration_since(*t) < INTRO_EVERY) {
            return;
        }
        if let Some(env) = self.signaling.intro(m) {
            self.introduced.insert(to, now);
            self.send(to, env);
        }
    }

    fn send(&self, to: DeviceId, env: Vec<u8>) {
        // The link holds a few signals while it reconnects; beyond that the dial times out
        // and is retried, as if the signal had been lost.
        if self.out.try_send((to, env)).is_err() {
            tracing::debug!(device = %to, "rendezvous link busy: signal dropped");
        }
    }

    /// Stops every connection task.
    pub(crate) fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
