//! The async rendezvous client a peer uses: admission, presence, signals, and reconnect
//! with exponential backoff.

use std::time::Duration;

use ed25519_dalek::{SigningKey, VerifyingKey};
use futures_util::{SinkExt, StreamExt};
use hearth_proto::ids::DeviceId;
use hearth_proto::membership::MembershipRecord;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::protocol::{self, ClientMsg, ErrorCode, ServerMsg};

/// What a device proves at admission.
#[derive(Clone)]
pub struct Identity {
    /// The vault root public key.
    pub root: VerifyingKey,
    /// This device's root-signed enrolment.
    pub record: MembershipRecord,
    /// This device's signing key.
    pub device_key: SigningKey,
    /// Root-signed revocations this device knows: presented at every join, so a server that
    /// restarted or forgot an idle vault re-learns them from the vault's own devices.
    pub revocations: Vec<MembershipRecord>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

/// How to join.
#[derive(Debug, Clone)]
pub enum Join {
    /// The vault's room, as an enrolled device.
    Vault(Box<Identity>),
    /// A pairing room, by its 32-byte id (the inviter and joiner derive it from the invite's
    /// public nameplate: PROTOCOL §6.7).
    Invite([u8; 32]),
}

/// Client failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// WebSocket or network failure.
    #[error("connection failed: {0}")]
    Ws(#[from] tungstenite::Error),
    /// The URL has no host.
    #[error("bad rendezvous URL: {0}")]
    BadUrl(String),
    /// The server refused us.
    #[error("server refused: {code:?}: {message}")]
    Refused {
        /// Error code.
        code: ErrorCode,
        /// Server's explanation.
        message: String,
    },
    /// The server closed the connection.
    #[error("server closed the connection ({code}): {reason}")]
    Closed {
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// The server broke the protocol.
    #[error("unexpected message from server")]
    Protocol,
    /// TLS could not be set up (the certificate checks themselves fail as [`ClientError::Ws`]).
    #[error("TLS: {0}")]
    Tls(String),
}

/// `authority` with `port` added when it names none (`host`, `[v6]`), for a name lookup.
fn with_port(authority: &str, port: u16) -> String {
    let has_port = match authority.rfind(':') {
        Some(i) if authority.starts_with('[') => authority[..i].ends_with(']'),
        Some(_) => authority.matches(':').count() == 1,
        None => false,
    };
    if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:{port}")
    }
}

/// Something that arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Devices of the room online now (this one excluded).
    Presence(Vec<DeviceId>),
    /// A signal from `from`.
    Signal {
        /// Sender, authenticated by the server.
        from: DeviceId,
        /// The payload bytes.
        payload: Vec<u8>,
    },
    /// A non-fatal error from the server (unknown recipient, rate limited, ...).
    Error {
        /// Code.
        code: ErrorCode,
        /// Explanation.
        message: String,
        /// The id of the signal it is about ([`Connection::signal_with_id`]).
        id: Option<String>,
    },
}

/// An admitted connection.
pub struct Connection {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// This connection's device id in the room.
    pub device: DeviceId,
    /// Who was online when we joined.
    pub online: Vec<DeviceId>,
    /// The server's TURN relay credentials, if it offers a relay.
    pub turn: Option<protocol::TurnCredentials>,
    /// When the last frame of any kind (pings and pongs too) came from the server.
    heard: std::time::Instant,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("device", &self.device).finish_non_exhaustive()
    }
}

fn ids(v: &[String]) -> Vec<DeviceId> {
    v.iter().filter_map(|s| DeviceId::from_hex(s)).collect()
}

async fn next_server_msg(ws: &mut WebSocketStream<MaybeTlsStream<TcpStream>>) -> Result<ServerMsg, ClientError> {
    next_server_msg_heard(ws, &mut std::time::Instant::now()).await
}

/// The next message; `heard` is set at every frame read on the way.
async fn next_server_msg_heard(
    ws: &mut WebSocketStream<MaybeTlsStream<TcpStream>>,
    heard: &mut std::time::Instant,
) -> Result<ServerMsg, ClientError> {
    loop {
        let frame = ws.next().await;
        *heard = std::time::Instant::now();
        match frame {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).map_err(|_| ClientError::Protocol),
            Some(Ok(Message::Close(f))) => {
                let (code, reason) =
                    f.map_or((1005, String::new()), |f: CloseFrame| (u16::from(f.code), f.reason.to_string()));
                return Err(ClientError::Closed { code, reason });
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => return Err(ClientError::Closed { code: 1006, reason: "connection dropped".into() }),
        }
    }
}

/// How to reach the server beyond its URL.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Dial from this local address (a chosen interface); `None` lets the system choose.
    pub from: Option<std::net::IpAddr>,
    /// TLS configuration for `wss://` (e.g. with a private CA, [`crate::tls::client_config`]);
    /// `None`: the built-in public roots.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// Connects to `url` (e.g. `ws://host:8080/v1/signal` or `wss://host/v1/signal`) and joins.
pub async fn connect(url: &str, join: &Join) -> Result<Connection, ClientError> {
    connect_with(url, join, &Options::default()).await
}

/// [`connect`] from local address `from` (a chosen interface or source address); `None`
/// lets the system choose.
pub async fn connect_from(url: &str, join: &Join, from: Option<std::net::IpAddr>) -> Result<Connection, ClientError> {
    connect_with(url, join, &Options { from, tls: None }).await
}

/// [`connect`] with [`Options`].
pub async fn connect_with(url: &str, join: &Join, opts: &Options) -> Result<Connection, ClientError> {
    // Signaling needs no 128 KiB buffers per connection (the library default).
    let cfg = tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
    let tls = url.get(..6).is_some_and(|s| s.eq_ignore_ascii_case("wss://"));
    let connector = if tls {
        let config = match &opts.tls {
            Some(c) => c.clone(),
            None => crate::tls::default_config().map_err(|e| ClientError::Tls(e.to_string()))?,
        };
        Some(tokio_tungstenite::Connector::Rustls(config))
    } else {
        None
    };
    let mut ws = match opts.from {
        None => tokio_tungstenite::connect_async_tls_with_config(url, Some(cfg), true, connector).await?.0,
        Some(local) => {
            let authority = protocol::authority_of(url).ok_or_else(|| ClientError::BadUrl(url.into()))?;
            let port = if tls { 443 } else { 80 };
            let target = match authority.parse::<std::net::SocketAddr>() {
                Ok(a) => a,
                Err(_) => tokio::net::lookup_host(with_port(&authority, port).as_str())
                    .await
                    .map_err(|_| ClientError::BadUrl(url.into()))?
                    .find(|a| a.is_ipv4() == local.is_ipv4())
                    .ok_or_else(|| ClientError::BadUrl(url.into()))?,
            };
            let socket =
                if local.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
                    .map_err(|e| ClientError::Ws(e.into()))?;
            socket.bind(std::net::SocketAddr::new(local, 0)).map_err(|e| ClientError::Ws(e.into()))?;
            let stream = socket.connect(target).await.map_err(|e| ClientError::Ws(e.into()))?;
            let _ = stream.set_nodelay(true);
            tokio_tungstenite::client_async_tls_with_config(url, stream, Some(cfg), connector).await?.0
        }
    };
    // The hello is bound to the name this client dialled, as the server knows itself.
    let host = protocol::authority_of(url).ok_or_else(|| ClientError::BadUrl(url.into()))?;
    let ServerMsg::Challenge { nonce, .. } = next_server_msg(&mut ws).await? else { return Err(ClientError::Protocol) };
    let nonce = protocol::from_b64(&nonce).ok_or(ClientError::Protocol)?;
    let hello = match join {
        Join::Vault(id) => protocol::sign_hello(&id.root, &id.record, &id.device_key, &nonce, &host),
        Join::Invite(room) => ClientMsg::HelloInvite { room: hex::encode(room) },
    };
    ws.send(Message::Text(serde_json::to_string(&hello).unwrap_or_default().into())).await?;
    match next_server_msg(&mut ws).await? {
        ServerMsg::Welcome { device, online, turn } => {
            let device = DeviceId::from_hex(&device).ok_or(ClientError::Protocol)?;
            let mut conn = Connection { ws, device, online: ids(&online), turn, heard: std::time::Instant::now() };
            if let Join::Vault(id) = join {
                for r in &id.revocations {
                    conn.revoke(r).await?;
                }
            }
            Ok(conn)
        }
        ServerMsg::Error { code, message, .. } => Err(ClientError::Refused { code, message }),
        _ => Err(ClientError::Protocol),
    }
}

impl Connection {
    /// Sends `payload` to device `to`.
    pub async fn signal(&mut self, to: DeviceId, payload: &[u8]) -> Result<(), ClientError> {
        self.signal_with_id(to, payload, None).await
    }

    /// Sends `payload` to device `to`, naming it `id`: any error about it carries the id.
    pub async fn signal_with_id(&mut self, to: DeviceId, payload: &[u8], id: Option<&str>) -> Result<(), ClientError> {
        let m = ClientMsg::Signal { to: to.to_hex(), payload: protocol::to_b64(payload), id: id.map(str::to_owned) };
        self.ws.send(Message::Text(serde_json::to_string(&m).unwrap_or_default().into())).await?;
        Ok(())
    }

    /// Publishes a root-signed revocation.
    pub async fn revoke(&mut self, record: &MembershipRecord) -> Result<(), ClientError> {
        let m = ClientMsg::Revoke { record: protocol::to_b64(&postcard::to_stdvec(record).unwrap_or_default()) };
        self.ws.send(Message::Text(serde_json::to_string(&m).unwrap_or_default().into())).await?;
        Ok(())
    }

    /// Sends a raw text frame (tests of the server's input handling).
    pub async fn send_raw(&mut self, msg: Message) -> Result<(), ClientError> {
        self.ws.send(msg).await?;
        Ok(())
    }

    /// The next event; `Err(Closed)` when the server closes.
    pub async fn next(&mut self) -> Result<Event, ClientError> {
        match next_server_msg_heard(&mut self.ws, &mut self.heard).await? {
            ServerMsg::Presence { online } => Ok(Event::Presence(ids(&online))),
            ServerMsg::Signal { from, payload } => Ok(Event::Signal {
                from: DeviceId::from_hex(&from).ok_or(ClientError::Protocol)?,
                payload: protocol::from_b64(&payload).ok_or(ClientError::Protocol)?,
            }),
            ServerMsg::Error { code, message, id } => Ok(Event::Error { code, message, id }),
            _ => Err(ClientError::Protocol),
        }
    }

    /// Asks the server for a pong: with [`Connection::silent_for`], how a client notices a
    /// connection that died without a word (its network changed, a NAT forgot it).
    pub async fn ping(&mut self) -> Result<(), ClientError> {
        self.ws.send(Message::Ping(Default::default())).await?;
        Ok(())
    }

    /// How long since the server last sent anything (a pong included; read by [`Connection::next`]).
    pub fn silent_for(&self) -> Duration {
        self.heard.elapsed()
    }

    /// Closes politely.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

/// Exponential backoff with full jitter: 0.5 s doubling to a cap, reset after success.
#[derive(Debug, Clone)]
pub struct Backoff {
    attempt: u32,
    base: Duration,
    cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { attempt: 0, base: Duration::from_millis(500), cap: Duration::from_secs(30) }
    }
}

impl Backoff {
    /// The delay before the next attempt (random in [0, min(cap, base·2^n)]).
    pub fn next_delay(&mut self) -> Duration {
        use rand::Rng;
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(16)).min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        exp.mul_f64(rand::thread_rng().gen_range(0.0..=1.0))
    }

    /// Call after a successful connection.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Connects, retrying with backoff up to `attempts` times (refusals are not retried: they
/// will not change by waiting).
pub async fn connect_with_backoff(url: &str, join: &Join, attempts: u32) -> Result<Connection, ClientError> {
    let mut backoff = Backoff::default();
    let mut last = None;
    for _ in 0..attempts.max(1) {
        match connect(url, join).await {
            Ok(c) => return Ok(c),
            Err(e @ ClientError::Refused { .. }) => return Err(e),
            Err(e) => {
                tracing::debug!(error = %e, "rendezvous connect failed; retrying");
                last = Some(e);
                tokio::time::sleep(backoff.next_delay()).await;
            }
        }
    }
    Err(last.unwrap_or(ClientError::Protocol))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        for _ in 0..40 {
            assert!(b.next_delay() <= Duration::from_secs(30));
        }
        assert!(b.attempt >= 40);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(500));
    }
}
