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
const PING_AFTER: Duration = Duration::from_secs(15);
/// ...and the connection is dropped when nothing arrives this long after the ping.
const DEAD_AFTER: Duration = Duration::from_secs(30);
/// Our close frame gets this long to leave; then the socket is dropped all the same.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Allocates pipe ids shared by the listener and the dialler.
#[derive(Debug, Clone, Default)]
pub(crate) struct PipeIds(Arc<AtomicU64>);

impl PipeIds {
    fn next(&self) -> PipeId {
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
/// reading ends its pipe instead of holding the task, its socket and its slot.
async fn run_pipe<S>(
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
    let mut pinged = false;
    loop {
        let deadline = last_heard + if pinged { DEAD_AFTER } else { PING_AFTER };
        tokio::select! {
            out = rx.recv() => {
                let Some(Output::Data(first)) = out else { break };
                // Everything queued goes out with one flush; `Ok(true)`: the core closed it.
                let sent = timeout(limits.write_timeout, async {
                    ws.feed(Message::Binary(first.into())).await?;
                    loop {
                        match rx.try_recv() {
                            Ok(Output::Data(m)) => ws.feed(Message::Binary(m.into())).await?,
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
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => { last_heard = tokio::time::Instant::now(); pinged = false; continue; }
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => { tracing::debug!("read failed: {e}"); break; }
                    // Text or raw frames are not part of the protocol.
                    Some(Ok(_)) => break,
                };
                last_heard = tokio::time::Instant::now();
                pinged = false;
                if to_node.send(Input::Message { pipe: id, data: data.to_vec() }).await.is_err() {
                    break;
                }
            }
            () = tokio::time::sleep_until(deadline) => {
                if pinged {
                    tracing::debug!("peer silent for {:?}; closing", PING_AFTER + DEAD_AFTER);
                    break;
                }
                pinged = true;
                if !matches!(timeout(limits.write_timeout, ws.send(Message::Ping(Default::default()))).await, Ok(Ok(()))) {
                    break;
                }
            }
        }
    }
    let _ = timeout(CLOSE_TIMEOUT, ws.close(None)).await;
    let _ = to_node.send(Input::Closed { pipe: id }).await;
}
