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
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::core::{Output, PipeId, PipeInfo};
use super::dialer::TargetId;
use super::Input;
use crate::sync::frame::NOISE_MAX;

/// The URL path of the sync endpoint.
pub const PATH: &str = "/v1/sync";
/// Inbound connections served at once (strangers cannot exhaust the process).
const MAX_INBOUND: usize = 128;
/// A WebSocket upgrade must complete within this.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(5);
/// A ping is sent after this long without traffic from the peer...
const PING_AFTER: Duration = Duration::from_secs(15);
/// ...and the connection is dropped after this long.
const DEAD_AFTER: Duration = Duration::from_secs(45);

/// Allocates pipe ids shared by the listener and the dialler.
#[derive(Debug, Clone, Default)]
pub(crate) struct PipeIds(Arc<AtomicU64>);

impl PipeIds {
    fn next(&self) -> PipeId {
        PipeId(self.0.fetch_add(1, Ordering::Relaxed))
    }
}

fn ws_config() -> WebSocketConfig {
    // A Noise message is at most 64 KiB: nothing bigger is ever legitimate.
    WebSocketConfig::default()
        .max_message_size(Some(NOISE_MAX + 1024))
        .max_frame_size(Some(NOISE_MAX + 1024))
        .read_buffer_size(16 << 10)
        .write_buffer_size(0)
}

/// Accepts connections until the node's channel closes.
pub(crate) async fn accept_loop(listener: TcpListener, ids: PipeIds, to_node: mpsc::Sender<Input>) {
    let slots = Arc::new(Semaphore::new(MAX_INBOUND));
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
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%addr, "too many inbound connections; dropping one");
            continue;
        };
        let ids = ids.clone();
        let to_node = to_node.clone();
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            let upgrade = tokio_tungstenite::accept_async_with_config(stream, Some(ws_config()));
            match tokio::time::timeout(UPGRADE_TIMEOUT, upgrade).await {
                Ok(Ok(ws)) => {
                    let info = PipeInfo { path: "lan", addr: addr.to_string(), dialled: false, target: None };
                    run_pipe(ws, ids.next(), info, to_node).await;
                }
                Ok(Err(e)) => tracing::debug!(%addr, "not a WebSocket upgrade: {e}"),
                Err(_) => tracing::debug!(%addr, "WebSocket upgrade timed out"),
            }
            drop(permit);
        });
    }
}

/// Dials `addrs` in turn (`host:port`, names resolved); the first that upgrades becomes a pipe.
pub(crate) async fn dial(target: TargetId, addrs: Vec<String>, ids: PipeIds, to_node: mpsc::Sender<Input>) {
    for addr in addrs {
        let url = format!("ws://{addr}{PATH}");
        let connect = tokio_tungstenite::connect_async_with_config(url, Some(ws_config()), true);
        match tokio::time::timeout(UPGRADE_TIMEOUT, connect).await {
            Ok(Ok((ws, _))) => {
                let shown = match ws.get_ref() {
                    tokio_tungstenite::MaybeTlsStream::Plain(s) => s.peer_addr().map_or(addr, |a| a.to_string()),
                    _ => addr,
                };
                let info = PipeInfo { path: "lan", addr: shown, dialled: true, target: Some(target) };
                run_pipe(ws, ids.next(), info, to_node).await;
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

/// Moves messages between one WebSocket and the core until either side closes.
async fn run_pipe<S>(mut ws: WebSocketStream<S>, id: PipeId, info: PipeInfo, to_node: mpsc::Sender<Input>)
where
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
                // Everything queued goes out with one flush.
                let mut res = ws.feed(Message::Binary(first.into())).await;
                while res.is_ok() {
                    match rx.try_recv() {
                        Ok(Output::Data(m)) => res = ws.feed(Message::Binary(m.into())).await,
                        Ok(Output::Close) => { let _ = ws.close(None).await; break; }
                        Err(_) => break,
                    }
                }
                if res.is_err() || ws.flush().await.is_err() {
                    break;
                }
            }
            msg = ws.next() => {
                let data = match msg {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => { last_heard = tokio::time::Instant::now(); pinged = false; continue; }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
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
                    tracing::debug!("peer silent for {DEAD_AFTER:?}; closing");
                    break;
                }
                pinged = true;
                if ws.send(Message::Ping(Default::default())).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = ws.close(None).await;
    let _ = to_node.send(Input::Closed { pipe: id }).await;
}
