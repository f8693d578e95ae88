//! One WebSocket connection: challenge, admission, then relay until it closes.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use hearth_proto::ids::DeviceId;
use rand::RngCore;

use super::hub::{JoinError, Member, Out, Outbox, RoomKey, RouteError};
use super::limits::Bucket;
use super::App;
use crate::protocol::{self, ClientMsg, ErrorCode, ServerMsg};

/// WebSocket close codes used by the server.
pub mod close {
    /// Server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// Text expected, binary received.
    pub const UNSUPPORTED: u16 = 1003;
    /// Admission failed, revoked, misbehaviour.
    pub const POLICY: u16 = 1008;
    /// Message over the size limit.
    pub const TOO_BIG: u16 = 1009;
    /// Server at capacity / room full.
    pub const TRY_LATER: u16 = 1013;
}

fn json(msg: &ServerMsg) -> String {
    serde_json::to_string(msg).unwrap_or_default()
}

async fn send(ws: &mut WebSocket, msg: &ServerMsg) -> bool {
    ws.send(Message::Text(Utf8Bytes::from(json(msg)))).await.is_ok()
}

async fn error(ws: &mut WebSocket, code: ErrorCode, message: impl Into<String>) -> bool {
    send(ws, &ServerMsg::Error { code, message: message.into() }).await
}

/// Sends a close frame and waits (briefly) for the peer's reply before dropping the socket:
/// closing with unread bytes makes the kernel send RST, which can destroy our close frame in
/// the peer's receive queue before it reads the reason.
async fn close_with(ws: &mut WebSocket, code: u16, reason: &str) {
    let _ = ws.send(Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from(reason.to_owned()) }))).await;
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(m)) = ws.next().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
    let _ = ws.close().await;
}

/// How long a closing connection waits for the peer's close reply.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs a connection to completion. `host` is the `Host` header the client connected to.
pub(crate) async fn run(socket: WebSocket, peer: SocketAddr, host: String, app: Arc<App>) {
    let mut ws = socket;
    let mut shutdown = app.shutdown.clone();
    let mut nonce = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    if !send(&mut ws, &ServerMsg::Challenge { version: protocol::VERSION, nonce: protocol::to_b64(&nonce) }).await {
        return;
    }
    // Admission: exactly one hello within the timeout.
    let first = tokio::select! {
        r = tokio::time::timeout(app.limits.admission_timeout, ws.next()) => r,
        _ = shutdown.changed() => return close_with(&mut ws, close::GOING_AWAY, "server shutting down").await,
    };
    let text = match first {
        Ok(Some(Ok(Message::Text(t)))) => t,
        Ok(Some(Ok(Message::Binary(_)))) => {
            app.metrics.admission_failures.with_label_values(&["binary"]).inc();
            return close_with(&mut ws, close::UNSUPPORTED, "text messages only").await;
        }
        Err(_) => {
            app.metrics.admission_failures.with_label_values(&["timeout"]).inc();
            return close_with(&mut ws, close::POLICY, "no hello before the admission timeout").await;
        }
        Ok(Some(Err(e))) if is_too_big(&e) => {
            app.metrics.admission_failures.with_label_values(&["too_big"]).inc();
            return close_with(&mut ws, close::TOO_BIG, "message too large").await;
        }
        _ => return,
    };
    let (key, device, root_key) = match serde_json::from_str::<ClientMsg>(&text) {
        Ok(ClientMsg::Hello { root_key, record, sig }) => {
            match protocol::verify_hello(&root_key, &record, &sig, &nonce, &host) {
                Ok(a) => (RoomKey::Vault(a.vault), a.device, Some(root_key)),
                Err(e) => {
                    app.metrics.admission_failures.with_label_values(&["bad_hello"]).inc();
                    let _ = error(&mut ws, ErrorCode::AdmissionFailed, e.to_string()).await;
                    return close_with(&mut ws, close::POLICY, "admission failed").await;
                }
            }
        }
        Ok(ClientMsg::HelloInvite { room }) => match protocol::parse_invite_room(&room) {
            Some(r) => {
                let mut id = [0u8; 16];
                rand::rngs::OsRng.fill_bytes(&mut id);
                (RoomKey::Invite(r), DeviceId(id), None)
            }
            None => {
                app.metrics.admission_failures.with_label_values(&["bad_hello"]).inc();
                let _ = error(&mut ws, ErrorCode::AdmissionFailed, "room must be 64 hex characters").await;
                return close_with(&mut ws, close::POLICY, "admission failed").await;
            }
        },
        Ok(_) => {
            app.metrics.admission_failures.with_label_values(&["not_admitted"]).inc();
            let _ = error(&mut ws, ErrorCode::NotAdmitted, "send hello first").await;
            return close_with(&mut ws, close::POLICY, "not admitted").await;
        }
        Err(_) => {
            app.metrics.admission_failures.with_label_values(&["bad_message"]).inc();
            let _ = error(&mut ws, ErrorCode::BadMessage, "expected a hello message").await;
            return close_with(&mut ws, close::POLICY, "bad message").await;
        }
    };
    let outbox = Arc::new(Outbox::new(app.limits.queue_len));
    let conn = app.next_conn.fetch_add(1, Ordering::Relaxed);
    let now = Instant::now();
    let (max, expires) = match key {
        RoomKey::Vault(_) => (app.limits.max_room_size, None),
        RoomKey::Invite(_) => (2, Some(now + app.limits.invite_ttl)),
    };
    let online = match app.hub.join(key, device, Member { conn, outbox: Arc::clone(&outbox) }, max, expires, now).await
    {
        Ok(o) => o,
        Err(e) => {
            let (code, close_code, label) = match e {
                JoinError::Full => (ErrorCode::RoomFull, close::TRY_LATER, "room_full"),
                JoinError::Expired => (ErrorCode::AdmissionFailed, close::POLICY, "expired"),
                JoinError::Revoked => (ErrorCode::Revoked, close::POLICY, "revoked"),
            };
            app.metrics.admission_failures.with_label_values(&[label]).inc();
            let _ = error(&mut ws, code, e.to_string()).await;
            return close_with(&mut ws, close_code, &e.to_string()).await;
        }
    };
    app.metrics.rooms.set(app.hub.room_count() as i64);
    tracing::debug!(%peer, device = %device, "admitted");
    if send(&mut ws, &ServerMsg::Welcome { device: device.to_hex(), online }).await {
        relay(&mut ws, &outbox, key, device, root_key.as_deref(), &app).await;
    }
    app.hub.leave(key, device, conn).await;
    app.metrics.rooms.set(app.hub.room_count() as i64);
}

fn is_too_big(e: &axum::Error) -> bool {
    let s = e.to_string();
    s.contains("too long") || s.contains("too big") || s.contains("Space limit")
}

/// The admitted phase: relay signals, answer pings, enforce limits. Kicks, shutdown and
/// liveness rounds all arrive through the outbox, so an idle connection waits on exactly
/// two things: its socket and its outbox.
#[allow(clippy::too_many_arguments)]
async fn relay(ws: &mut WebSocket, outbox: &Outbox, key: RoomKey, device: DeviceId, root_key: Option<&str>, app: &App) {
    let mut bucket = Bucket::new(app.limits.messages_per_sec, Instant::now());
    let mut strikes = 0u32;
    let mut last_seen = Instant::now();
    loop {
        tokio::select! {
            incoming = ws.next() => {
                last_seen = Instant::now();
                let text = match incoming {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(_))) => return Box::pin(close_with(ws, close::UNSUPPORTED, "text messages only")).await,
                    Some(Ok(Message::Close(_))) | None => return,
                    Some(Ok(_)) => continue, // ping/pong: liveness only
                    Some(Err(e)) if is_too_big(&e) => {
                        app.metrics.dropped.with_label_values(&["too_big"]).inc();
                        return Box::pin(close_with(ws, close::TOO_BIG, "message too large")).await;
                    }
                    Some(Err(_)) => return,
                };
                if !bucket.take(Instant::now()) {
                    app.metrics.dropped.with_label_values(&["rate_limited"]).inc();
                    strikes += 1;
                    if strikes > app.limits.messages_per_sec.saturating_mul(10) {
                        return Box::pin(close_with(ws, close::POLICY, "message rate limit exceeded repeatedly")).await;
                    }
                    if strikes.is_power_of_two() && !error(ws, ErrorCode::RateLimited, "too many messages; some were dropped").await {
                        return;
                    }
                    continue;
                }
                // Boxed: the handler's state only exists while a message is handled, so an
                // idle connection's task does not carry it.
                if !Box::pin(handle(ws, &text, key, device, root_key, app)).await {
                    return;
                }
            }
            out = outbox.next() => match out {
                Out::Send(text) => {
                    if ws.send(Message::Text(text)).await.is_err() {
                        return;
                    }
                }
                Out::Kick(code, reason) => return Box::pin(close_with(ws, code, reason)).await,
                Out::Ping => {
                    if last_seen.elapsed() > app.limits.idle_timeout {
                        app.metrics.dropped.with_label_values(&["idle"]).inc();
                        return Box::pin(close_with(ws, close::POLICY, "idle timeout")).await;
                    }
                    if ws.send(Message::Ping(Default::default())).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
}

/// Handles one admitted message; false ends the connection.
async fn handle(
    ws: &mut WebSocket,
    text: &str,
    key: RoomKey,
    device: DeviceId,
    root_key: Option<&str>,
    app: &App,
) -> bool {
    let t0 = Instant::now();
    match serde_json::from_str::<ClientMsg>(text) {
        Ok(ClientMsg::Signal { to, payload }) => {
            let Some(to) = protocol::parse_device(&to) else {
                return error(ws, ErrorCode::BadMessage, "`to` must be a 32-character hex device id").await;
            };
            // The payload is relayed as the client's exact string; it is never decoded or logged.
            let bytes = payload.len();
            let out = json(&ServerMsg::Signal { from: device.to_hex(), payload });
            match app.hub.route(key, to, Utf8Bytes::from(out)).await {
                Ok(()) => {
                    app.metrics.relayed.inc();
                    app.metrics.relayed_bytes.inc_by(bytes as u64);
                    app.metrics.relay_seconds.observe(t0.elapsed().as_secs_f64());
                    true
                }
                Err(RouteError::UnknownRecipient) => {
                    app.metrics.dropped.with_label_values(&["unknown_recipient"]).inc();
                    error(ws, ErrorCode::UnknownRecipient, format!("device {to} is not online in this room")).await
                }
                Err(RouteError::SlowConsumer) => {
                    app.metrics.dropped.with_label_values(&["slow_consumer"]).inc();
                    error(ws, ErrorCode::UnknownRecipient, format!("device {to} was disconnected (too slow)")).await
                }
            }
        }
        Ok(ClientMsg::Revoke { record }) => {
            let (RoomKey::Vault(vault), Some(root)) = (key, root_key) else {
                return error(ws, ErrorCode::BadMessage, "revocations are for vault rooms").await;
            };
            match protocol::verify_revocation(root, &record, vault) {
                Ok(revoked) => {
                    app.hub.revoke(vault, revoked).await;
                    true
                }
                Err(e) => error(ws, ErrorCode::BadMessage, format!("revocation refused: {e}")).await,
            }
        }
        Ok(ClientMsg::Hello { .. } | ClientMsg::HelloInvite { .. }) => {
            error(ws, ErrorCode::BadMessage, "already admitted").await
        }
        Err(_) => {
            app.metrics.dropped.with_label_values(&["bad_message"]).inc();
            error(ws, ErrorCode::BadMessage, "not a valid message").await
        }
    }
}
