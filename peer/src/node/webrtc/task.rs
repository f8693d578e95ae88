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
use super::gather::{local_ips, Sockets};
use super::relay::Relay;
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

/// Binds the sockets and gathers every candidate: host, server-reflexive and, with TURN
/// credentials, relayed.
async fn gather(ctx: &Ctx, turn: Option<&TurnCredentials>) -> (Sockets, Vec<Candidate>, Option<Relay>) {
    let mut socks = Sockets::bind(&local_ips()).await;
    let (candidates, relay) = socks.gather(ctx.stun, turn).await;
    (socks, candidates, relay)
}

/// Dials `device` (this side offers and runs the Noise initiator).
pub(crate) async fn offer(ctx: Arc<Ctx>, target: TargetId, device: DeviceId, turn: Option<TurnCredentials>) {
    let failed = || ctx.to_node.send(Input::DialFailed { target });
    let (socks, candidates, mut relay) = gather(&ctx, turn.as_ref()).await;
    let (mut conn, sdp) = match Conn::offer(Instant::now(), &ctx.cert, candidates) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!("WebRTC offer: {e}");
            let _ = failed().await;
            return;
        }
    };
    let (answer_tx, answer_rx) = oneshot::channel();
    let ev = TaskEvent::Offer { target, device, sdp, answer: answer_tx };
    if ctx.to_node.send(Input::WebRtc(ev)).await.is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    let answer = match tokio::time::timeout_at(deadline, answer_rx).await {
        Ok(Ok(a)) => a,
        _ => {
            tracing::info!(device = %device, "no WebRTC answer");
            let _ = failed().await;
            return;
        }
    };
    if let Err(e) = conn.accept_answer(Instant::now(), &answer) {
        tracing::info!(device = %device, "WebRTC answer: {e}");
        let _ = failed().await;
        return;
    }
    permit(&mut relay, &answer);
    if !serve(&ctx, conn, socks, relay, deadline, Peer { device, target: Some(target), dialled: true, hold: false })
        .await
    {
        let _ = failed().await;
    }
}

/// A manual offer (`hearth connect --offer`): its SDP goes to the hub, which seals it as
/// text for the person; the answer comes back when they paste the reply. This side is the
/// Noise initiator, as the offering side always is.
pub(crate) async fn manual_offer(ctx: Arc<Ctx>, turn: Option<TurnCredentials>, reply: ManualReply) {
    let (socks, candidates, mut relay) = gather(&ctx, turn.as_ref()).await;
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
    permit(&mut relay, &answer);
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    serve(&ctx, conn, socks, relay, deadline, Peer { device, target: None, dialled: true, hold: false }).await;
}

/// Where a manual offer's or answer's text and the other device (known for an answer), or
/// why there is none, go.
pub(crate) type ManualReply = oneshot::Sender<Result<(String, Option<DeviceId>), String>>;

/// Answers `device`'s offer in `session`; gives up when the channel is not open
/// [`CONNECT_TIMEOUT`] after, or [`MANUAL_TIMEOUT`] for a `manual` answer (a person
/// carries it back), which also holds its checks until the offering side starts.
pub(crate) async fn answer(
    ctx: Arc<Ctx>,
    (device, session): (DeviceId, [u8; 16]),
    offer: String,
    turn: Option<TurnCredentials>,
    manual: bool,
) {
    let wait = if manual { MANUAL_TIMEOUT } else { CONNECT_TIMEOUT };
    let deadline = tokio::time::Instant::now() + wait;
    let (socks, candidates, mut relay) = gather(&ctx, turn.as_ref()).await;
    let (conn, sdp) = match Conn::answer(Instant::now(), &ctx.cert, candidates, &offer) {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(device = %device, "WebRTC offer refused: {e}");
            return;
        }
    };
    permit(&mut relay, &offer);
    if ctx.to_node.send(Input::WebRtc(TaskEvent::Answer { to: device, session, sdp })).await.is_err() {
        return;
    }
    serve(&ctx, conn, socks, relay, deadline, Peer { device, target: None, dialled: false, hold: manual }).await;
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
    mut socks: Sockets,
    mut relay: Option<Relay>,
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
        if let Ok(Some(d)) = tokio::time::timeout_at(open_by, socks.rx.recv()).await {
            via_relay = deliver(&mut conn, &mut relay, d).unwrap_or(false);
        }
    }
    loop {
        // Act on everything the connection has to say before waiting again.
        while let Some(ev) = conn.poll_event() {
            match ev {
                ConnEvent::Transmit { source, destination, contents } => match &mut relay {
                    // From the relayed address: through the TURN server.
                    Some(r) if r.relayed == Some(source) => {
                        if let Some(d) = r.send(destination, &contents, Instant::now()) {
                            socks.send(r.local, r.server, &d).await;
                        }
                    }
                    _ => socks.send(source, destination, &contents).await,
                },
                ConnEvent::Open => {
                    open = true;
                    let mut addr = conn.remote().map_or_else(|| "webrtc".to_owned(), |a| a.to_string());
                    if let Some(r) = relay.as_ref().and_then(|r| r.relayed).filter(|_| via_relay) {
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
                    } else {
                        // Given up before its deadline (ICE or DTLS failed): as unreached.
                        let _ = ctx.to_node.send(Input::WebRtc(TaskEvent::Outcome { device, opened: false })).await;
                    }
                    return open;
                }
            }
        }
        if !open && tokio::time::Instant::now() >= open_by {
            tracing::info!(device = %device, "WebRTC channel did not open in time");
            let _ = ctx.to_node.send(Input::WebRtc(TaskEvent::Outcome { device, opened: false })).await;
            conn.close(Instant::now());
            return false;
        }
        if let Some(r) = &mut relay {
            for d in r.poll_transmit(Instant::now()) {
                socks.send(r.local, r.server, &d).await;
            }
        }
        let mut wake = conn.deadline();
        if let Some(r) = &mut relay {
            wake = wake.min(r.deadline(Instant::now()));
        }
        let wake = tokio::time::Instant::from_std(wake);
        let wake = if open { wake } else { wake.min(open_by) };
        tokio::select! {
            d = socks.rx.recv() => match d {
                Some(d) => via_relay = deliver(&mut conn, &mut relay, d).unwrap_or(via_relay),
                None => conn.close(Instant::now()),
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
