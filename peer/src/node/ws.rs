//! The LAN transport: sync sessions over WebSocket binary messages (`ws://HOST:PORT/v1/sync`).
//!
//! Each connection becomes a pipe: its binary messages go to the core as they arrive, and the
//! core's outgoing messages are written in order, batched into one flush. The WebSocket layer
//! adds no security of its own; the Noise session inside it authenticates both ends.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::core::{Output, PipeId, PipeInfo};
use super::dialer::TargetId;
use super::limits::{Limits, PerSource};
use super::Input;
use crate::sync::frame::NOISE_MAX;

/// The URL path of the sync endpoint.
pub const PATH: &str = "/v1/sync";
/// A WebSocket upgrade must complete within this.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(5);
/// A ping is sent after this long without traffic from the peer...
pub(crate) const PING_AFTER: Duration = Duration::from_secs(15);
/// ...and the connection is dropped after this long without traffic in all.
pub(crate) const DEAD_AFTER: Duration = Duration::from_secs(45);
/// A pipe the core asked to prove itself (a second session with its device appeared: this
/// one may be a zombie whose peer vanished without a FIN) is dropped without a pong by then.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pings and pongs a peer may send within one [`PING_AFTER`] window: a real peer sends one
/// every 15 s of silence; more is a flood that only costs us CPU, and closes the pipe.
pub(crate) const MAX_CONTROL_FRAMES: u32 = 16;
/// Our close frame gets this long to leave; then the socket is dropped all the same.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Allocates pipe ids shared by the listener and the dialler.
#[derive(Debug, Clone, Default)]
pub(crate) struct PipeIds(Arc<AtomicU64>);

impl PipeIds {
    pub(crate) fn next(&self) -> PipeId {
        PipeId(self.0.fetch_add(1, Ordering::Relaxed))
    }
}

/// The WebSocket settings of every pipe: `write_buffer` bytes queued at most (tungstenite's
/// default is unbounded, so a peer that pings and never reads would grow its pong queue).
pub(crate) fn ws_config(write_buffer: usize) -> WebSocketConfig {
    // A Noise message is at most 64 KiB: nothing bigger is ever legitimate, and the buffer
    // must hold at least one of them.
    WebSocketConfig::default()
        .max_message_size(Some(NOISE_MAX + 1024))
        .max_frame_size(Some(NOISE_MAX + 1024))
        .read_buffer_size(16 << 10)
        .write_buffer_size(0)
        .max_write_buffer_size(write_buffer.max(2 * (NOISE_MAX + 1024)))
}

/// Accepts connections until the node's channel closes: `limits.inbound` at once in all,
/// `limits.inbound_per_source` from one source; one over either is closed at once.
pub(crate) async fn accept_loop(listener: TcpListener, ids: PipeIds, limits: Limits, to_node: mpsc::Sender<Input>) {
    let slots = Arc::new(Semaphore::new(limits.inbound));
    let per_source = PerSource::new(limits.inbound_per_source);
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(source) = per_source.try_take(addr.ip()) else {
            tracing::debug!(%addr, "too many connections from one source; closing one");
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%addr, "too many inbound connections; closing one");
            continue;
        };
        let ids = ids.clone();
        let to_node = to_node.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let upgrade = tokio_tungstenite::accept_async_with_config(stream, Some(ws_config(limits.write_buffer)));
            match timeout(UPGRADE_TIMEOUT, upgrade).await {
                Ok(Ok(ws)) => {
                    let info = PipeInfo { path: "lan", addr: addr.to_string(), dialled: false, target: None };
                    run_pipe(ws, ids.next(), info, limits, to_node).await;
                }
                Ok(Err(e)) => tracing::debug!(%addr, "not a WebSocket upgrade: {e}"),
                Err(_) => tracing::debug!(%addr, "WebSocket upgrade timed out"),
            }
            drop((permit, source));
        });
    }
}

/// The dialler's shared state: pipe ids, limits, and the permits of dials in flight.
#[derive(Debug, Clone)]
pub(crate) struct Dialling {
    /// Pipe ids (shared with the listener).
    pub(crate) ids: PipeIds,
    /// The node's limits.
    pub(crate) limits: Limits,
    /// One permit per dial in flight (connect and upgrade; released once a pipe runs).
    pub(crate) slots: Arc<Semaphore>,
}

impl Dialling {
    /// Dials within `limits`.
    pub(crate) fn new(ids: PipeIds, limits: Limits) -> Self {
        Self { ids, limits, slots: Arc::new(Semaphore::new(limits.dials_in_flight.max(1))) }
    }
}

/// Dials `addrs` in turn (`host:port`, names resolved); the first that upgrades becomes a pipe.
/// At most `limits.dials_in_flight` connects run at once; the others wait for a permit.
pub(crate) async fn dial(target: TargetId, addrs: Vec<String>, d: Dialling, to_node: mpsc::Sender<Input>) {
    for addr in addrs {
        let Ok(permit) = d.slots.clone().acquire_owned().await else { return };
        let url = format!("ws://{addr}{PATH}");
        let connect = tokio_tungstenite::connect_async_with_config(url, Some(ws_config(d.limits.write_buffer)), true);
        let res = timeout(UPGRADE_TIMEOUT, connect).await;
        drop(permit);
        match res {
            Ok(Ok((ws, _))) => {
                let shown = match ws.get_ref() {
                    tokio_tungstenite::MaybeTlsStream::Plain(s) => s.peer_addr().map_or(addr, |a| a.to_string()),
                    _ => addr,
                };
                let info = PipeInfo { path: "lan", addr: shown, dialled: true, target: Some(target) };
                run_pipe(ws, d.ids.next(), info, d.limits, to_node).await;
                return;
            }
            Ok(Err(e)) => tracing::debug!(%addr, "dial failed: {e}"),
            Err(_) => tracing::debug!(%addr, "dial timed out"),
        }
    }
    let _ = to_node.send(Input::DialFailed { target }).await;
}

/// Binds the listener (printing nothing: the caller reports the address).
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Moves messages between one WebSocket and the core until either side closes. Every write
/// has a deadline (`limits.write_timeout`; the close [`CLOSE_TIMEOUT`]), so a peer that stops
/// reading ends its pipe instead of holding the task, its socket and its slot. Keepalive: a
/// ping after [`PING_AFTER`] of silence, the pipe dropped after [`DEAD_AFTER`] of silence in
/// all, or [`PROBE_TIMEOUT`] after a probe the core asked for.
pub(crate) async fn run_pipe<S>(
    mut ws: WebSocketStream<S>,
    id: PipeId,
    info: PipeInfo,
    limits: Limits,
    to_node: mpsc::Sender<Input>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::unbounded_channel();
    if to_node.send(Input::Opened { pipe: id, info, tx }).await.is_err() {
        return;
    }
    let mut last_heard = tokio::time::Instant::now();
    // When the pipe is dropped for silence, and whether a ping is out.
    let mut dead_at = last_heard + DEAD_AFTER;
    let mut pinged = false;
    // Control frames received in the current window.
    let (mut control, mut window) = (0u32, last_heard);
    loop {
        let deadline = if pinged { dead_at } else { (last_heard + PING_AFTER).min(dead_at) };
        tokio::select! {
            out = rx.recv() => {
                let first = match out {
                    Some(Output::Data(first)) => first,
                    Some(Output::Probe) => {
                        if !pinged && !ping(&mut ws, limits).await {
                            break;
                        }
                        pinged = true;
                        dead_at = dead_at.min(tokio::time::Instant::now() + PROBE_TIMEOUT);
                        continue;
                    }
                    Some(Output::Close) | None => break,
                };
                // Everything queued goes out with one flush; `Ok(true)`: the core closed it.
                let sent = timeout(limits.write_timeout, async {
                    ws.feed(Message::Binary(first.into())).await?;
                    loop {
                        match rx.try_recv() {
                            Ok(Output::Data(m)) => ws.feed(Message::Binary(m.into())).await?,
                            Ok(Output::Probe) => {}
                            Ok(Output::Close) => {
                                ws.flush().await?;
                                return Ok(true);
                            }
                            Err(_) => break,
                        }
                    }
                    ws.flush().await.map(|()| false)
                })
                .await;
                match sent {
                    Ok(Ok(false)) => {}
                    Ok(Ok(true)) => break,
                    Ok(Err(e)) => { tracing::debug!("write failed: {e}"); break; }
                    Err(_) => { tracing::debug!("peer read nothing for {:?}; closing", limits.write_timeout); break; }
                }
            }
            msg = ws.next() => {
                let data = match msg {
                    Some(Ok(Message::Binary(b))) => Some(b),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        let now = tokio::time::Instant::now();
                        if now.duration_since(window) >= PING_AFTER {
                            (control, window) = (0, now);
                        }
                        control += 1;
                        if control > MAX_CONTROL_FRAMES {
                            tracing::debug!("more than {MAX_CONTROL_FRAMES} pings in {PING_AFTER:?}; closing");
                            break;
                        }
                        None
                    }
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => { tracing::debug!("read failed: {e}"); break; }
                    // Text or raw frames are not part of the protocol.
                    Some(Ok(_)) => break,
                };
                last_heard = tokio::time::Instant::now();
                dead_at = last_heard + DEAD_AFTER;
                pinged = false;
                if let Some(data) = data {
                    if to_node.send(Input::Message { pipe: id, data: data.to_vec() }).await.is_err() {
                        break;
                    }
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                if pinged {
                    tracing::debug!("peer silent since {:?} ago; closing", last_heard.elapsed());
                    break;
                }
                if !ping(&mut ws, limits).await {
                    break;
                }
                pinged = true;
            }
        }
    }
    let _ = timeout(CLOSE_TIMEOUT, ws.close(None)).await;
    let _ = to_node.send(Input::Closed { pipe: id }).await;
}

/// Sends a ping within the write deadline; false when it could not go out.
async fn ping<S>(ws: &mut WebSocketStream<S>, limits: Limits) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    matches!(timeout(limits.write_timeout, ws.send(Message::Ping(Default::default()))).await, Ok(Ok(())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, DuplexStream};
    use tokio::time::Instant;
    use tokio_tungstenite::tungstenite::protocol::Role;

    /// A pipe over an in-memory stream; returns the node's inputs, the pipe's sender and the
    /// other end of the stream.
    async fn pipe() -> (mpsc::Receiver<Input>, mpsc::UnboundedSender<Output>, DuplexStream) {
        let (a, b) = tokio::io::duplex(1 << 16);
        let ws = WebSocketStream::from_raw_socket(a, Role::Server, Some(ws_config(1 << 20))).await;
        let (to_node, mut inputs) = mpsc::channel(16);
        let info = PipeInfo { path: "lan", addr: "test".into(), dialled: false, target: None };
        tokio::spawn(run_pipe(ws, PipeId(1), info, Limits::default(), to_node));
        let Some(Input::Opened { tx, .. }) = inputs.recv().await else { panic!("no Opened") };
        (inputs, tx, b)
    }

    async fn closed_after(inputs: &mut mpsc::Receiver<Input>, start: Instant) -> Duration {
        loop {
            match inputs.recv().await {
                Some(Input::Closed { .. }) | None => return start.elapsed(),
                Some(_) => {}
            }
        }
    }

    /// A peer that answers nothing (gone without a FIN) is pinged after 15 s of silence and
    /// dropped after 45 s of silence in all.
    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_is_pinged_then_dropped() {
        let start = Instant::now();
        let (mut inputs, _tx, mut raw) = pipe().await;
        let mut buf = [0u8; 64];
        let n = raw.read(&mut buf).await.unwrap();
        assert_eq!(buf[0], 0x89, "a ping: {:?}", &buf[..n]);
        assert_eq!(start.elapsed().as_secs(), PING_AFTER.as_secs());
        let closed = closed_after(&mut inputs, start).await;
        assert_eq!(closed.as_secs(), DEAD_AFTER.as_secs(), "{closed:?}");
    }

    /// A probe the core asks for drops a silent pipe within seconds, not 45 s.
    #[tokio::test(start_paused = true)]
    async fn a_probed_zombie_is_dropped_within_the_probe_timeout() {
        let start = Instant::now();
        let (mut inputs, tx, _raw) = pipe().await;
        tx.send(Output::Probe).unwrap();
        let closed = closed_after(&mut inputs, start).await;
        assert_eq!(closed.as_secs(), PROBE_TIMEOUT.as_secs(), "{closed:?}");
    }

    /// A ping flood closes the pipe after the allowance, long before any memory matters.
    #[tokio::test(start_paused = true)]
    async fn a_ping_flood_closes_the_pipe() {
        let (mut inputs, _tx, raw) = pipe().await;
        let mut client = WebSocketStream::from_raw_socket(raw, Role::Client, None).await;
        for _ in 0..MAX_CONTROL_FRAMES {
            client.send(Message::Ping(Default::default())).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(inputs.try_recv().is_err(), "within the allowance: still open");
        client.send(Message::Ping(Default::default())).await.unwrap();
        let start = Instant::now();
        assert!(closed_after(&mut inputs, start).await < Duration::from_secs(3), "closed at once");
    }

    /// A peer that answers pings keeps its pipe through idle minutes and probes.
    #[tokio::test(start_paused = true)]
    async fn a_peer_that_answers_keeps_its_pipe() {
        let (mut inputs, tx, raw) = pipe().await;
        let mut client = WebSocketStream::from_raw_socket(raw, Role::Client, None).await;
        tokio::spawn(async move { while let Some(Ok(_)) = client.next().await {} });
        tx.send(Output::Probe).unwrap();
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert!(inputs.try_recv().is_err(), "still open, nothing else happened");
        tx.send(Output::Data(vec![1, 2, 3])).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(inputs.try_recv().is_err());
    }
}
