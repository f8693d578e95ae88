//! One WebSocket connection: challenge, admission, then relay until it closes.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use hearth_proto::ids::DeviceId;
use rand::RngCore;
use tokio::net::TcpStream;

use super::hub::{JoinError, Member, RoomKey, RouteError, Routed};
use super::limits::Bucket;
use super::link::{End, Link};
use super::outbox::{Out, Outbox};
use super::remote::{Job, Refused, Remote};
use super::shared::Outgoing;
use super::App;
use crate::protocol::{self, ClientMsg, ErrorCode, ServerMsg, SignalIn};
use crate::ws::{self, opcode, Event, FrameError};

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

/// Most unsent bytes a connection may have before it is treated as not reading.
const MAX_UNSENT: usize = 1 << 20;

fn json(msg: &ServerMsg) -> String {
    serde_json::to_string(msg).unwrap_or_default()
}

/// Appends an error message frame to `out`.
fn error(out: &mut Vec<u8>, code: ErrorCode, message: impl Into<String>) {
    error_for(out, code, message, None);
}

/// Appends an error frame about the signal the sender named `id` to `out`.
fn error_for(out: &mut Vec<u8>, code: ErrorCode, message: impl Into<String>, id: Option<&str>) {
    let msg = ServerMsg::Error { code, message: message.into(), id: id.map(str::to_owned) };
    ws::encode(opcode::TEXT, json(&msg).as_bytes(), out);
}

/// The first message of a connection.
enum First {
    Text(String),
    Binary,
}

/// Reads until the first data message (answering pings on the way).
async fn first_message(link: &mut Link) -> Result<First, End> {
    loop {
        let mut pos = 0;
        let mut pongs = Vec::new();
        loop {
            match link.decode(pos) {
                Ok(Some((n, ev))) => {
                    pos += n;
                    match ev {
                        Some(Event::Text(t)) => {
                            let t = t.into_owned();
                            link.consume(pos);
                            link.out().append(&mut pongs);
                            return Ok(First::Text(t));
                        }
                        Some(Event::Binary) => return Ok(First::Binary),
                        Some(Event::Ping(p)) => ws::encode(opcode::PONG, p, &mut pongs),
                        Some(Event::Close(code)) => {
                            link.answer_close(code).await;
                            return Err(End::Closed);
                        }
                        Some(Event::Pong) | None => {}
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(End::Frame(e)),
            }
        }
        link.consume(pos);
        link.out().append(&mut pongs);
        link.wait().await?;
    }
}

/// Closes the connection as `end` calls for; `label` counts it under this metric family.
async fn finish(link: &mut Link, end: End, app: &App, admitted: bool) {
    let count = |label: &str| {
        if admitted {
            app.metrics.dropped.with_label_values(&[label]).inc();
        } else {
            app.metrics.admission_failures.with_label_values(&[label]).inc();
        }
    };
    match end {
        End::Gone | End::Closed => {}
        End::Frame(FrameError::TooBig) => {
            count("too_big");
            link.close(close::TOO_BIG, "message too large").await;
        }
        End::Frame(e) => {
            count("bad_frame");
            link.close(e.close_code(), &e.to_string()).await;
        }
        End::Backlog => {
            count("slow_consumer");
            link.close(close::POLICY, "too slow: unsent output over the limit").await;
        }
    }
}

/// Runs a connection to completion. `peer` is the client's address (behind a trusted proxy,
/// the one it forwarded); `prefix` is whatever the HTTP layer read past the upgrade request.
pub(crate) async fn run(io: TcpStream, prefix: bytes::Bytes, peer: SocketAddr, app: Arc<App>) {
    let mut link = Link::new(io, &prefix, app.limits.max_message_bytes, MAX_UNSENT);
    drop(prefix);
    // Boxed: admission's state (timers, the hello, the join) is needed once, and an idle
    // connection's task should not carry its space for hours.
    let Some((who, outbox, conn)) = Box::pin(admit(&mut link, peer, &app)).await else { return };
    if let Err(end) = relay(&mut link, &outbox, &who, &app).await {
        Box::pin(finish(&mut link, end, &app, true)).await;
    }
    Box::pin(app.hub.leave(who.key, who.device, conn)).await;
    app.metrics.rooms.set(app.hub.room_count() as i64);
}

/// Closes a connection that was not admitted.
async fn refuse<T>(link: &mut Link, code: u16, reason: &str) -> Option<T> {
    link.close(code, reason).await;
    None
}

/// Challenge, hello, join: the admitted connection's identity, outbox and connection id,
/// or `None` once the connection has been refused and closed.
async fn admit(link: &mut Link, peer: SocketAddr, app: &App) -> Option<(Who, Arc<Outbox>, u64)> {
    let mut shutdown = app.shutdown.clone();
    let mut nonce = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    link.text(&json(&ServerMsg::Challenge { version: protocol::VERSION, nonce: protocol::to_b64(&nonce) }));
    link.flush().ok()?;
    // Admission: exactly one hello within the timeout.
    let first = tokio::select! {
        r = tokio::time::timeout(app.limits.admission_timeout, first_message(link)) => r,
        _ = shutdown.changed() => return refuse(link, close::GOING_AWAY, "server shutting down").await,
    };
    let text = match first {
        Ok(Ok(First::Text(t))) => t,
        Ok(Ok(First::Binary)) => {
            app.metrics.admission_failures.with_label_values(&["binary"]).inc();
            return refuse(link, close::UNSUPPORTED, "text messages only").await;
        }
        Err(_) => {
            app.metrics.admission_failures.with_label_values(&["timeout"]).inc();
            return refuse(link, close::POLICY, "no hello before the admission timeout").await;
        }
        Ok(Err(end)) => {
            finish(link, end, app, false).await;
            return None;
        }
    };
    let (key, device, root_key) = match serde_json::from_str::<ClientMsg>(&text) {
        Ok(ClientMsg::Hello { root_key, record, sig }) => {
            match protocol::verify_hello(&root_key, &record, &sig, &nonce, &app.names) {
                Ok(a) => (RoomKey::Vault(a.vault), a.device, Some(root_key)),
                Err(e) => {
                    app.metrics.admission_failures.with_label_values(&["bad_hello"]).inc();
                    // The usual cause is a name mismatch (a URL the server does not know itself
                    // by, or a server missing --public-host): say which names it accepts.
                    let why = match e {
                        protocol::AdmitError::BadSignature => format!(
                            "{e}: it must be signed over the nonce and the name you dialled, which must be one of {}",
                            app.names.join(", ")
                        ),
                        other => other.to_string(),
                    };
                    error(link.out(), ErrorCode::AdmissionFailed, why);
                    return refuse(link, close::POLICY, "admission failed").await;
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
                error(link.out(), ErrorCode::AdmissionFailed, "room must be 64 hex characters");
                return refuse(link, close::POLICY, "admission failed").await;
            }
        },
        Ok(_) => {
            app.metrics.admission_failures.with_label_values(&["not_admitted"]).inc();
            error(link.out(), ErrorCode::NotAdmitted, "send hello first");
            return refuse(link, close::POLICY, "not admitted").await;
        }
        Err(_) => {
            app.metrics.admission_failures.with_label_values(&["bad_message"]).inc();
            error(link.out(), ErrorCode::BadMessage, "expected a hello message");
            return refuse(link, close::POLICY, "bad message").await;
        }
    };
    drop(text);
    let outbox = Arc::new(Outbox::new(app.limits.queue_len));
    let conn = app.next_conn.fetch_add(1, Ordering::Relaxed);
    let now = Instant::now();
    let max = match key {
        RoomKey::Vault(_) => app.limits.max_room_size,
        RoomKey::Invite(_) => 2,
    };
    let source = hearth_stun::rate_limit::SourceKey::from(peer.ip());
    // Boxed: the backplane calls inside are large futures.
    let member = Member { conn, outbox: Arc::clone(&outbox) };
    let online = match Box::pin(app.hub.join(key, device, member, max, source, now)).await {
        Ok(o) => o,
        Err(e) => {
            let (code, close_code, label) = match e {
                JoinError::Full => (ErrorCode::RoomFull, close::TRY_LATER, "room_full"),
                JoinError::Expired => (ErrorCode::AdmissionFailed, close::POLICY, "expired"),
                JoinError::Revoked => (ErrorCode::Revoked, close::POLICY, "revoked"),
                JoinError::TooManyInvites => (ErrorCode::Busy, close::TRY_LATER, "invite_limit"),
            };
            app.metrics.admission_failures.with_label_values(&[label]).inc();
            error(link.out(), code, e.to_string());
            return refuse(link, close_code, &e.to_string()).await;
        }
    };
    app.metrics.rooms.set(app.hub.room_count() as i64);
    tracing::debug!(%peer, device = %device, "admitted");
    let turn = match (&app.turn, key) {
        (Some(t), RoomKey::Vault(_)) => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            Some(protocol::TurnCredentials::issue(&t.urls, &t.secret, now, t.ttl.as_secs()))
        }
        _ => None,
    };
    link.text(&json(&ServerMsg::Welcome { device: device.to_hex(), online, turn }));
    Some((Who { key, device, from: device.to_hex(), root_key }, outbox, conn))
}

/// An admitted connection's identity.
struct Who {
    key: RoomKey,
    device: DeviceId,
    /// The device id in hex, as relayed messages name the sender.
    from: String,
    /// The vault root key (base64) for vault rooms: revocations are checked against it.
    root_key: Option<String>,
}

/// Messages dropped by the rate limit within the current window: a connection is closed
/// after too many in one window, not after too many over a long life of small bursts.
struct Strikes {
    window_start: Instant,
    count: u32,
}

/// How long dropped messages count against a connection.
const STRIKE_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

impl Strikes {
    fn new(now: Instant) -> Self {
        Self { window_start: now, count: 0 }
    }

    /// Counts one drop at `now`; returns the drops in the current window.
    fn add(&mut self, now: Instant) -> u32 {
        if now.saturating_duration_since(self.window_start) >= STRIKE_WINDOW {
            self.window_start = now;
            self.count = 0;
        }
        self.count += 1;
        self.count
    }
}

/// How the relay loop stops on its own terms (closing frames already decided).
enum Stop {
    /// Close with this code and reason.
    Close(u16, &'static str),
    /// The peer sent a close frame with this code.
    PeerClosed(Option<u16>),
}

/// The admitted phase: handle every whole frame read, write everything waiting, then wait
/// for the socket or the outbox. Kicks, shutdown and liveness rounds all arrive through the
/// outbox, so an idle connection waits on exactly two things and holds no buffers.
async fn relay(link: &mut Link, outbox: &Arc<Outbox>, who: &Who, app: &Arc<App>) -> Result<(), End> {
    let mut remote = Remote::new();
    let mut bucket = Bucket::new(app.limits.messages_per_sec, Instant::now());
    let mut strikes = Strikes::new(Instant::now());
    let mut last_seen = Instant::now();
    let mut replies = Vec::new();
    loop {
        let mut pos = 0;
        let mut stop = None;
        while stop.is_none() {
            let (n, ev) = match link.decode(pos) {
                Ok(Some(step)) => step,
                Ok(None) => break,
                Err(e) => return Err(End::Frame(e)),
            };
            pos += n;
            match ev {
                None | Some(Event::Pong) => {}
                Some(Event::Ping(p)) => ws::encode(opcode::PONG, p, &mut replies),
                Some(Event::Close(code)) => stop = Some(Stop::PeerClosed(code)),
                Some(Event::Binary) => stop = Some(Stop::Close(close::UNSUPPORTED, "text messages only")),
                Some(Event::Text(text)) => {
                    if bucket.take(Instant::now()) {
                        let mut to = To { out: &mut replies, who, app, outbox, remote: &mut remote };
                        match SignalIn::parse(&text) {
                            Some(sig) => to.signal(&sig.to, &sig.payload, sig.id.as_deref()),
                            None => to.other(&text),
                        }
                        continue;
                    }
                    app.metrics.dropped.with_label_values(&["rate_limited"]).inc();
                    let n = strikes.add(Instant::now());
                    if n > app.limits.messages_per_sec.saturating_mul(10) {
                        stop = Some(Stop::Close(close::POLICY, "message rate limit exceeded repeatedly"));
                    } else if n.is_power_of_two() {
                        // Not one error per drop (a flood would get its own flood back): the
                        // error names the signal that triggered it, and says others went too.
                        let id =
                            SignalIn::parse(&text).and_then(|s| s.id).filter(|i| i.len() <= protocol::MAX_SIGNAL_ID);
                        let why = "too many messages: this one was dropped, and others may have been";
                        error_for(&mut replies, ErrorCode::RateLimited, why, id.as_deref());
                    }
                }
            }
        }
        link.consume(pos);
        link.out().append(&mut replies);
        match stop {
            Some(Stop::PeerClosed(code)) => {
                Box::pin(link.answer_close(code)).await;
                return Ok(());
            }
            Some(Stop::Close(code, reason)) => {
                Box::pin(link.close(code, reason)).await;
                return Ok(());
            }
            None => {}
        }
        link.flush()?;
        tokio::select! {
            r = link.wait() => {
                if r? {
                    last_seen = Instant::now();
                }
            }
            out = outbox.next() => match out {
                Out::Frames => outbox.take(link.out()),
                Out::Kick(code, reason) => {
                    // A drain hands over everything already queued before saying goodbye
                    // (other kicks are for misbehaviour or a newer connection).
                    if code == close::GOING_AWAY {
                        outbox.take(link.out());
                    }
                    Box::pin(link.close(code, reason)).await;
                    return Ok(());
                }
                Out::Ping => {
                    if last_seen.elapsed() > app.limits.idle_timeout {
                        app.metrics.dropped.with_label_values(&["idle"]).inc();
                        Box::pin(link.close(close::POLICY, "idle timeout")).await;
                        return Ok(());
                    }
                    link.frame(opcode::PING, &[]);
                }
            },
        }
    }
}

/// What handling one admitted message needs: synchronous, so that it adds nothing to a
/// connection task's size and never waits on Redis (signals for other replicas go to
/// [`Remote`]'s queues, revocations to a task of their own).
struct To<'a> {
    out: &'a mut Vec<u8>,
    who: &'a Who,
    app: &'a Arc<App>,
    outbox: &'a Arc<Outbox>,
    remote: &'a mut Remote,
}

impl To<'_> {
    /// Relays `payload` to device `to` of the sender's room: here at once, elsewhere
    /// through the recipient's queue.
    fn signal(&mut self, to: &str, payload: &str, id: Option<&str>) {
        let t0 = Instant::now();
        if id.is_some_and(|i| i.len() > protocol::MAX_SIGNAL_ID) {
            let why = format!("`id` must be at most {} characters", protocol::MAX_SIGNAL_ID);
            return error_for(self.out, ErrorCode::BadMessage, why, None);
        }
        let Some((to, relayed)) = prepare(to, payload, id, self.out, self.who) else { return };
        let (hub, app) = (&self.app.hub, self.app);
        if hub.backplane().is_none() {
            let routed = hub.route_local(self.who.key, to, &relayed);
            return account(routed, to, id, payload.len(), t0, self.out, app);
        }
        if let Some(routed) = hub.route_here(self.who.key, to, &relayed) {
            return account(routed, to, id, payload.len(), t0, self.out, app);
        }
        let out =
            Outgoing { key: self.who.key, to, from: self.who.from.clone(), id: id.map(str::to_owned), text: relayed };
        if let Err(why) = self.remote.send(app, self.outbox, Job { out, bytes: payload.len(), t0 }) {
            app.metrics.dropped.with_label_values(&["queue_full"]).inc();
            let message = match why {
                Refused::QueueFull => format!("too many signals waiting for device {to}; this one was dropped"),
                Refused::TooManyRecipients => "too many recipients at once; this signal was dropped".to_owned(),
            };
            error_for(self.out, ErrorCode::Busy, message, id);
        }
    }

    /// Everything but signals: revocations, and clear errors for the rest.
    fn other(&mut self, text: &str) {
        match serde_json::from_str::<ClientMsg>(text) {
            Ok(ClientMsg::Revoke { record }) => {
                let (RoomKey::Vault(vault), Some(root)) = (self.who.key, self.who.root_key.as_deref()) else {
                    return error(self.out, ErrorCode::BadMessage, "revocations are for vault rooms");
                };
                match protocol::verify_revocation(root, &record, vault) {
                    Ok(revoked) => {
                        let (app, outbox) = (Arc::clone(self.app), Arc::clone(self.outbox));
                        tokio::spawn(async move {
                            if let Err(e) = app.hub.revoke(vault, revoked).await {
                                tracing::warn!(error = %e, "revocation not recorded");
                                let mut out = Vec::new();
                                error(&mut out, ErrorCode::Busy, format!("revocation not recorded: {e}"));
                                let _ = outbox.push(bytes::Bytes::from(out));
                            }
                        });
                    }
                    Err(e) => error(self.out, ErrorCode::BadMessage, format!("revocation refused: {e}")),
                }
            }
            Ok(ClientMsg::Hello { .. } | ClientMsg::HelloInvite { .. }) => {
                error(self.out, ErrorCode::BadMessage, "already admitted")
            }
            Ok(ClientMsg::Signal { to, payload, id }) => self.signal(&to, &payload, id.as_deref()),
            Err(_) => {
                self.app.metrics.dropped.with_label_values(&["bad_message"]).inc();
                error(self.out, ErrorCode::BadMessage, "not a valid message")
            }
        }
    }
}

/// The recipient and the relayed message, or an error reply for a bad `to`.
fn prepare(to: &str, payload: &str, id: Option<&str>, out: &mut Vec<u8>, who: &Who) -> Option<(DeviceId, String)> {
    let Some(to) = protocol::parse_device(to) else {
        error_for(out, ErrorCode::BadMessage, "`to` must be a 32-character hex device id", id);
        return None;
    };
    // The payload is relayed as the client's exact string; it is never decoded or logged.
    Some((to, protocol::signal_out(&who.from, payload)))
}

/// Counts a routed signal, or replies with why it was not, naming the signal's `id`.
pub(crate) fn account(
    routed: Result<Routed, RouteError>,
    to: DeviceId,
    id: Option<&str>,
    bytes: usize,
    t0: Instant,
    out: &mut Vec<u8>,
    app: &App,
) {
    match routed {
        Ok(routed) => {
            if routed == Routed::Held {
                app.metrics.held.inc();
            }
            app.metrics.relayed.inc();
            app.metrics.relayed_bytes.inc_by(bytes as u64);
            app.metrics.relay_seconds.observe(t0.elapsed().as_secs_f64());
        }
        Err(e) => {
            let (label, code, message) = match e {
                RouteError::UnknownRecipient => {
                    ("unknown_recipient", ErrorCode::UnknownRecipient, format!("device {to} is not online in this room"))
                }
                RouteError::SlowConsumer => {
                    ("slow_consumer", ErrorCode::UnknownRecipient, format!("device {to} was disconnected (too slow)"))
                }
                RouteError::InviteBudget => (
                    "invite_budget",
                    ErrorCode::RateLimited,
                    "this pairing room has relayed all it may, or has expired".to_owned(),
                ),
                RouteError::MailboxFull => (
                    "mailbox_full",
                    ErrorCode::UnknownRecipient,
                    format!("device {to} is offline and its mailbox is full"),
                ),
                RouteError::Unavailable => (
                    "unavailable",
                    ErrorCode::Unavailable,
                    format!("device {to} is not connected here and the replicas' shared state cannot be reached; try again shortly"),
                ),
            };
            app.metrics.dropped.with_label_values(&[label]).inc();
            error_for(out, code, message, id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn strikes_decay_with_their_window() {
        let t0 = Instant::now();
        let mut s = Strikes::new(t0);
        // 400 drops spread over an hour (a long-lived device's occasional bursts) never
        // reach a limit of 500 in one window.
        let most = (0..400u32).map(|i| s.add(t0 + Duration::from_secs(u64::from(i) * 9))).max();
        assert!(most.is_some_and(|m| m < 10), "{most:?}");
        // 501 drops within one window do.
        let t1 = t0 + Duration::from_secs(7200);
        let last = (0..501).map(|_| s.add(t1)).last();
        assert_eq!(last, Some(501));
    }
}
