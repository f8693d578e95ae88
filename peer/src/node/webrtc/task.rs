//! The tokio side of one WebRTC connection: gathers candidates, hands its SDP to the node
//! (which seals it into a signal), waits for the channel to open, then serves it as a pipe
//! like `node::ws` does for a WebSocket: `Input::Opened`, `Input::Message`, `Input::Closed`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_rendezvous::protocol::TurnCredentials;
use str0m::config::DtlsCert;
use str0m::Candidate;
use tokio::sync::{mpsc, oneshot};

use super::conn::{Conn, ConnEvent};
use super::gather::{local_ips, Sockets, StunAsks};
use super::relay::Relay;
use super::trickle::{self, Remote};
use super::TaskEvent;
use crate::ids::DeviceId;
use crate::node::core::{Output, PipeInfo};
use crate::node::dialer::TargetId;
use crate::node::ws::PipeIds;
use crate::node::Input;

/// A connection whose channel is not open this long after its offer is given up (ICE never
/// reports failure by itself).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// A manual offer waits this long for a person to bring back its answer (the texts expire
/// then too).
pub(crate) const MANUAL_TIMEOUT: Duration = Duration::from_millis(crate::signal::manual::MAX_AGE_MS);

/// What every connection task shares.
pub(crate) struct Ctx {
    /// The DTLS certificate, made once at start (making one costs tens of milliseconds).
    pub(crate) cert: DtlsCert,
    /// The STUN server asked for server-reflexive candidates.
    pub(crate) stun: Option<SocketAddr>,
    pub(crate) ids: PipeIds,
    pub(crate) to_node: mpsc::Sender<Input>,
}

/// A connection's sockets and what is still being gathered on them.
struct Net {
    socks: Sockets,
    relay: Option<Relay>,
    /// Server-reflexive candidates still being learnt (a trickling connection).
    stun: Option<StunAsks>,
    /// The relayed candidate is still to be trickled (a trickling connection).
    relay_pending: bool,
}

/// Binds the sockets and gathers: every candidate before returning, or (`trickle`) the
/// host candidates only, the rest being learnt in the connection's loop.
async fn gather(ctx: &Ctx, turn: Option<&TurnCredentials>, trickle: bool) -> (Net, Vec<Candidate>) {
    let mut socks = Sockets::bind(&local_ips()).await;
    if !trickle {
        let (candidates, relay) = socks.gather(ctx.stun, turn).await;
        return (Net { socks, relay, stun: None, relay_pending: false }, candidates);
    }
    let stun = ctx.stun.map(|s| StunAsks::new(s, &socks.addrs(), Instant::now()));
    let relay = match turn {
        Some(creds) => socks.allocate(creds).await,
        None => None,
    };
    let host = socks.host_candidates();
    (Net { socks, relay_pending: relay.is_some(), relay, stun }, host)
}

/// The signals of one connection's session: what the peer sends through the hub, and the
/// candidates this side found after its SDP left.
struct Session {
    /// The session id (the offering side learns it once its offer is sealed).
    id: Option<[u8; 16]>,
    /// The peer reads trickled candidates (the offering side assumes so until the answer).
    peer_reads: bool,
    /// Found and not sent yet.
    unsent: Vec<Candidate>,
    /// The peer's candidate lines so far (in its SDP, and trickled), for relay permissions.
    peer_lines: String,
    /// Candidates the peer trickled so far.
    trickled: usize,
}

/// How many messages from the hub wait for a connection task at most (an answer and a few
/// candidate batches).
pub(crate) const REMOTE_QUEUE: usize = 8;

/// Dials `device` (this side offers and runs the Noise initiator). With `trickle` the offer
/// leaves with host candidates only and the others follow as they are found; a device that
/// does not read them gets every candidate in the offer.
pub(crate) async fn offer(
    ctx: Arc<Ctx>,
    target: TargetId,
    device: DeviceId,
    turn: Option<TurnCredentials>,
    trickle: bool,
) {
    let failed = || ctx.to_node.send(Input::DialFailed { target });
    let (net, candidates) = gather(&ctx, turn.as_ref(), trickle).await;
    let (conn, sdp) = match Conn::offer(Instant::now(), &ctx.cert, candidates) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("WebRTC offer: {e}");
            let _ = failed().await;
            return;
        }
    };
    let (remote_tx, remote) = mpsc::channel(REMOTE_QUEUE);
    let ev = TaskEvent::Offer { target, device, sdp: trickle::mark(&sdp), remote: remote_tx };
    if ctx.to_node.send(Input::WebRtc(ev)).await.is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    let session = Session { id: None, peer_reads: true, unsent: Vec::new(), peer_lines: String::new(), trickled: 0 };
    let peer = Peer { device, target: Some(target), dialled: true, hold: false };
    if !serve(&ctx, conn, net, (Some(remote), session), deadline, peer).await {
        let _ = failed().await;
    }
}

/// A manual offer (`hearth connect --offer`): its SDP goes to the hub, which seals it as
/// text for the person; the answer comes back when they paste the reply. This side is the
/// Noise initiator, as the offering side always is. Nothing trickles: the texts a person
/// carries hold every candidate.
pub(crate) async fn manual_offer(ctx: Arc<Ctx>, turn: Option<TurnCredentials>, reply: ManualReply) {
    let (mut net, candidates) = gather(&ctx, turn.as_ref(), false).await;
    let (mut conn, sdp) = match Conn::offer(Instant::now(), &ctx.cert, candidates) {
        Ok(c) => c,
        Err(e) => {
            let _ = reply.send(Err(format!("WebRTC offer: {e}")));
            return;
        }
    };
    let (answer_tx, answer_rx) = oneshot::channel();
    let ev = TaskEvent::ManualOffer { sdp, reply, answer: answer_tx };
    if ctx.to_node.send(Input::WebRtc(ev)).await.is_err() {
        return;
    }
    let Ok(Ok((device, answer))) = tokio::time::timeout(MANUAL_TIMEOUT, answer_rx).await else {
        tracing::info!("manual offer: no answer pasted in time");
        return;
    };
    if let Err(e) = conn.accept_answer(Instant::now(), &answer) {
        tracing::info!(device = %device, "manual answer: {e}");
        return;
    }
    permit(&mut net.relay, &answer);
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    let session = Session { id: None, peer_reads: false, unsent: Vec::new(), peer_lines: answer, trickled: 0 };
    serve(&ctx, conn, net, (None, session), deadline, Peer { device, target: None, dialled: true, hold: false }).await;
}

/// Where a manual offer's or answer's text and the other device (known for an answer), or
/// why there is none, go.
pub(crate) type ManualReply = oneshot::Sender<Result<(String, Option<DeviceId>), String>>;

/// Answers `device`'s offer in `session`; gives up when the channel is not open
/// [`CONNECT_TIMEOUT`] after, or [`MANUAL_TIMEOUT`] for a `manual` answer (a person
/// carries it back), which also holds its checks until the offering side starts. An offer
/// whose sender reads trickled candidates is answered at once, the rest trickling after;
/// `remote` brings the offering side's own trickled candidates.
pub(crate) async fn answer(
    ctx: Arc<Ctx>,
    (device, session): (DeviceId, [u8; 16]),
    offer: String,
    turn: Option<TurnCredentials>,
    manual: bool,
    remote: Option<mpsc::Receiver<Remote>>,
) {
    let wait = if manual { MANUAL_TIMEOUT } else { CONNECT_TIMEOUT };
    let deadline = tokio::time::Instant::now() + wait;
    let trickle = !manual && trickle::reads(&offer);
    let (mut net, candidates) = gather(&ctx, turn.as_ref(), trickle).await;
    let (conn, sdp) = match Conn::answer(Instant::now(), &ctx.cert, candidates, &offer) {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(device = %device, "WebRTC offer refused: {e}");
            return;
        }
    };
    permit(&mut net.relay, &offer);
    let sdp = if manual { sdp } else { trickle::mark(&sdp) };
    if ctx.to_node.send(Input::WebRtc(TaskEvent::Answer { to: device, session, sdp })).await.is_err() {
        return;
    }
    let session =
        Session { id: Some(session), peer_reads: trickle, unsent: Vec::new(), peer_lines: offer, trickled: 0 };
    let peer = Peer { device, target: None, dialled: false, hold: manual };
    serve(&ctx, conn, net, (remote, session), deadline, peer).await;
}

/// The other end of a connection.
struct Peer {
    device: DeviceId,
    /// The dial target, when the dial plan started it.
    target: Option<TargetId>,
    /// This side offered (and so runs the Noise initiator).
    dialled: bool,
    /// Send nothing until the other side's first datagram (a manual answer).
    hold: bool,
}

/// With a relay, permits the peer's candidate addresses (from its `sdp`) before ICE needs them.
fn permit(relay: &mut Option<Relay>, sdp: &str) {
    if let Some(r) = relay {
        r.permit_candidates(sdp, Instant::now());
    }
}

/// Hands a datagram to the connection, unwrapped when it came through our TURN relay.
/// Returns whether it did (`None`: a relay datagram with nothing for the connection).
fn deliver(conn: &mut Conn, relay: &mut Option<Relay>, d: super::gather::Datagram) -> Option<bool> {
    match relay {
        Some(r) if r.owns(d.local, d.from) => {
            let relayed = r.relayed;
            let (Some((peer, data)), Some(to)) = (r.receive(&d.bytes, Instant::now()), relayed) else { return None };
            conn.receive(Instant::now(), peer, to, &data);
            Some(true)
        }
        _ => {
            conn.receive(Instant::now(), d.from, d.local, &d.bytes);
            Some(false)
        }
    }
}

/// Runs the connection; false if its channel never opened.
async fn serve(
    ctx: &Ctx,
    mut conn: Conn,
    mut net: Net,
    (mut remote, mut session): (Option<mpsc::Receiver<Remote>>, Session),
    open_by: tokio::time::Instant,
    peer: Peer,
) -> bool {
    let Peer { device, target, dialled, hold } = peer;
    let pipe = ctx.ids.next();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tx = Some(tx);
    let mut open = false;
    // The last datagram came through our TURN relay (for status: "… via TURN …").
    let mut via_relay = false;
    if hold {
        // A manual answer: the offering side starts its checks only once a person has
        // carried this answer back, minutes later maybe; checks sent before then would go
        // unanswered until ICE gave up. Start with the first datagram that comes (if none
        // comes by `open_by`, the loop below gives up as for any connection).
        if let Ok(Some(d)) = tokio::time::timeout_at(open_by, net.socks.rx.recv()).await {
            via_relay = deliver(&mut conn, &mut net.relay, d).unwrap_or(false);
        }
    }
    loop {
        // Act on everything the connection has to say before waiting again.
        while let Some(ev) = conn.poll_event() {
            match ev {
                ConnEvent::Transmit { source, destination, contents } => match &mut net.relay {
                    // From the relayed address: through the TURN server.
                    Some(r) if r.relayed == Some(source) => {
                        if let Some(d) = r.send(destination, &contents, Instant::now()) {
                            net.socks.send(r.local, r.server, &d).await;
                        }
                    }
                    _ => net.socks.send(source, destination, &contents).await,
                },
                ConnEvent::Open => {
                    open = true;
                    let mut addr = conn.remote().map_or_else(|| "webrtc".to_owned(), |a| a.to_string());
                    if let Some(r) = net.relay.as_ref().and_then(|r| r.relayed).filter(|_| via_relay) {
                        addr = format!("{addr} via TURN {r}");
                    }
                    tracing::info!(device = %device, %addr, "WebRTC channel open");
                    let _ = ctx.to_node.send(Input::WebRtc(TaskEvent::Outcome { device, opened: true })).await;
                    let info = PipeInfo { path: "webrtc", addr, dialled, target };
                    let Some(tx) = tx.take() else { continue };
                    if ctx.to_node.send(Input::Opened { pipe, info, tx }).await.is_err() {
                        return true;
                    }
                }
                ConnEvent::Message(data) => {
                    if ctx.to_node.send(Input::Message { pipe, data }).await.is_err() {
                        return true;
                    }
                }
                ConnEvent::Closed => {
                    if open {
                        let _ = ctx.to_node.send(Input::Closed { pipe }).await;
                    } else if !conn.awaits_answer() {
                        // Given up before its deadline (ICE or DTLS failed): as unreached.
                        let _ = ctx.to_node.send(Input::WebRtc(TaskEvent::Outcome { device, opened: false })).await;
                    }
                    return open;
                }
            }
        }
        if !open && tokio::time::Instant::now() >= open_by {
            if conn.awaits_answer() {
                // Offline, or an older build that lost the offer: the dial plan retries.
                tracing::info!(device = %device, "no WebRTC answer");
            } else {
                tracing::info!(device = %device, "WebRTC channel did not open in time");
                let _ = ctx.to_node.send(Input::WebRtc(TaskEvent::Outcome { device, opened: false })).await;
            }
            conn.close(Instant::now());
            return false;
        }
        gather_more(&mut conn, &mut net, &mut session).await;
        if let (Some(id), true, false) = (session.id, session.peer_reads, session.unsent.is_empty()) {
            for lines in trickle::batches(&std::mem::take(&mut session.unsent)) {
                let ev = TaskEvent::Candidates { to: device, session: id, lines };
                let _ = ctx.to_node.send(Input::WebRtc(ev)).await;
            }
        }
        if let Some(r) = &mut net.relay {
            for d in r.poll_transmit(Instant::now()) {
                net.socks.send(r.local, r.server, &d).await;
            }
        }
        let mut wake = conn.deadline();
        if let Some(r) = &mut net.relay {
            wake = wake.min(r.deadline(Instant::now()));
        }
        if let Some(a) = &net.stun {
            wake = wake.min(a.deadline());
        }
        let wake = tokio::time::Instant::from_std(wake);
        let wake = if open { wake } else { wake.min(open_by) };
        tokio::select! {
            d = net.socks.rx.recv() => match d {
                Some(d) => match net.stun.as_mut().and_then(|a| a.receive(&d)) {
                    Some(found) => found.into_iter().for_each(|c| found_local(&mut conn, &mut session, c)),
                    None => via_relay = deliver(&mut conn, &mut net.relay, d).unwrap_or(via_relay),
                },
                None => conn.close(Instant::now()),
            },
            r = async { remote.as_mut()?.recv().await }, if remote.is_some() => match r {
                Some(r) => from_peer(&mut conn, &mut net, &mut session, device, r),
                // The hub let the session go (the offer could not be sealed, or a bye came).
                None => {
                    remote = None;
                    if conn.awaits_answer() {
                        conn.close(Instant::now());
                    }
                }
            },
            out = rx.recv(), if open => match out {
                Some(Output::Data(m)) => conn.send(Instant::now(), m),
                // The core doubts this session (someone joined the room, or a new session
                // to the same device lost to it): the peer proves itself within seconds or
                // the connection ends (ICE consent alone takes about 20 s).
                Some(Output::Probe) => conn.probe(Instant::now()),
                Some(Output::Close) | None => conn.close(Instant::now()),
            },
            () = tokio::time::sleep_until(wake) => conn.timeout(Instant::now()),
        }
    }
}

/// A candidate of this side found after its SDP left: checked from now on, and trickled.
fn found_local(conn: &mut Conn, session: &mut Session, c: Candidate) {
    tracing::debug!(candidate = %c.to_sdp_string(), "candidate found");
    session.unsent.push(c.clone());
    conn.add_local_candidate(Instant::now(), c);
}

/// Drives what a trickling connection still gathers: the STUN requests, and the relayed
/// candidate once the allocation succeeds.
async fn gather_more(conn: &mut Conn, net: &mut Net, session: &mut Session) {
    let now = Instant::now();
    if let Some(a) = &mut net.stun {
        for (from, to, bytes) in a.poll_transmit(now) {
            net.socks.send(from, to, &bytes).await;
        }
        if a.done(now) {
            net.stun = None;
        }
    }
    let Some(r) = net.relay.as_mut().filter(|_| net.relay_pending) else { return };
    if let Some(addr) = r.relayed {
        net.relay_pending = false;
        tracing::info!(server = %r.server, relayed = %addr, "TURN relay allocated");
        r.permit_candidates(&session.peer_lines, now);
        if let Ok(c) = Candidate::relayed(addr, r.local, "udp") {
            found_local(conn, session, c);
        }
    } else if r.failed {
        tracing::info!(server = %r.server, "TURN allocation refused");
        net.relay = None;
        net.relay_pending = false;
    }
}

/// What the hub passed on from the peer.
fn from_peer(conn: &mut Conn, net: &mut Net, session: &mut Session, device: DeviceId, r: Remote) {
    match r {
        Remote::Session(id) => session.id = Some(id),
        Remote::Answer(sdp) => {
            if let Err(e) = conn.accept_answer(Instant::now(), &sdp) {
                tracing::info!(device = %device, "WebRTC answer: {e}");
                conn.close(Instant::now());
                return;
            }
            permit(&mut net.relay, &sdp);
            session.peer_reads = trickle::reads(&sdp);
            if !session.peer_reads {
                tracing::debug!(device = %device, "the answering device reads no trickled candidates");
            }
            session.peer_lines.push_str(&sdp);
        }
        Remote::Candidates(lines) => {
            let found = trickle::parse(&lines, session.trickled);
            session.trickled += found.len();
            let text: Vec<String> = found.iter().map(Candidate::to_sdp_string).collect();
            let text = text.join("\n");
            permit(&mut net.relay, &text);
            for c in found {
                tracing::debug!(device = %device, candidate = %c.to_sdp_string(), "candidate trickled");
                conn.add_remote_candidate(Instant::now(), c);
            }
            session.peer_lines.push('\n');
            session.peer_lines.push_str(&text);
        }
    }
}
