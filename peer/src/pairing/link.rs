//! Carries pairing messages between the two devices: through a rendezvous pairing room (the
//! server relays opaque signals between its two members) or, with no server anywhere, over a
//! WebSocket to the inviter's LAN pairing endpoint, found by its own mDNS advertisement.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hearth_rendezvous::client::{self, ClientError, Connection, Event, Join};
use hearth_rendezvous::protocol::ErrorCode;
use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::code::InviteCode;
use super::exchange::MAX_MESSAGE;
use crate::ids::DeviceId;

/// The DNS-SD type of a LAN pairing endpoint (not the vault's `_hearth._tcp`: the joiner
/// has no vault key yet, so it cannot check that service's tag).
pub const PAIR_SERVICE: &str = "_hearth-pair._tcp.local.";
/// The format of the pairing advertisement's TXT record.
const PAIR_TXT_VERSION: &str = "1";

/// Why the pairing link failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The rendezvous could not be reached or refused us.
    #[error("rendezvous: {0}")]
    Rendezvous(ClientError),
    /// (inviter) Someone already waits in this nameplate's room: try another nameplate.
    #[error("the invite room is taken")]
    Taken,
    /// (joiner) Nobody waits under this code's number.
    #[error("no invite is waiting under number {0}: it expired, was used or cancelled, or the number is mistyped (or it was made for another rendezvous)")]
    NoInvite(u16),
    /// (joiner) Two others are already in the room.
    #[error("the invite room already has two members (someone may be squatting it): ask for a new invite")]
    Squatted,
    /// The server ended the room (its window closed).
    #[error("the invite expired on the server")]
    Expired,
    /// (joiner, LAN) No inviter with this code's number answered on the LAN.
    #[error("no device on this network is inviting under number {0} (is `hearth invite --lan` running, on the same network?)")]
    NotOnLan(u16),
    /// LAN sockets or mDNS failed.
    #[error("LAN pairing: {0}")]
    Lan(String),
    /// A message over the size limit, or not binary.
    #[error("the other device sent an oversized or malformed message")]
    Malformed,
}

// Not `#[from]`: that would make the client error this one's source too, and a report of
// the chain would say it twice.
impl From<ClientError> for LinkError {
    fn from(e: ClientError) -> Self {
        LinkError::Rendezvous(e)
    }
}

/// What arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A pairing message.
    Message(Vec<u8>),
    /// The other side went away.
    Left,
}

type Ws<S> = WebSocketStream<S>;

/// A channel to the other device.
pub enum Link {
    /// Through a rendezvous pairing room.
    Rendezvous {
        /// The connection.
        conn: Connection,
        /// The other member, once known.
        peer: Option<DeviceId>,
        /// A message that arrived before the member's presence did (the joiner speaks as
        /// soon as it is in: its signal may overtake the server's presence update).
        early: Option<Vec<u8>>,
    },
    /// A WebSocket accepted at the inviter's LAN endpoint.
    LanServer(Ws<TcpStream>),
    /// A WebSocket dialled to the inviter's LAN endpoint.
    LanClient(Ws<MaybeTlsStream<TcpStream>>),
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Link::Rendezvous { .. } => "Link::Rendezvous",
            Link::LanServer(_) => "Link::LanServer",
            Link::LanClient(_) => "Link::LanClient",
        })
    }
}

/// (inviter) Opens the code's room; [`LinkError::Taken`] when anyone is already there, or the
/// room's name is still closed from an earlier window.
pub async fn open_room(url: &str, code: &InviteCode, opts: &client::Options) -> Result<Link, LinkError> {
    match client::connect_with(url, &Join::Invite(code.room()), opts).await {
        Ok(conn) if conn.online.is_empty() => Ok(Link::Rendezvous { conn, peer: None, early: None }),
        Ok(conn) => {
            conn.close().await;
            Err(LinkError::Taken)
        }
        Err(ClientError::Refused { code: ErrorCode::RoomFull | ErrorCode::AdmissionFailed, .. }) => {
            Err(LinkError::Taken)
        }
        Err(e) => Err(e.into()),
    }
}

/// (joiner) Joins the code's room, where the inviter must be waiting.
pub async fn join_room(url: &str, code: &InviteCode, opts: &client::Options) -> Result<Link, LinkError> {
    match client::connect_with(url, &Join::Invite(code.room()), opts).await {
        Ok(conn) => match conn.online.first().copied() {
            Some(peer) => Ok(Link::Rendezvous { conn, peer: Some(peer), early: None }),
            None => {
                conn.close().await;
                Err(LinkError::NoInvite(code.nameplate()))
            }
        },
        Err(ClientError::Refused { code: ErrorCode::RoomFull, .. }) => Err(LinkError::Squatted),
        Err(ClientError::Refused { code: ErrorCode::AdmissionFailed, .. }) => {
            Err(LinkError::NoInvite(code.nameplate()))
        }
        Err(e) => Err(e.into()),
    }
}

impl Link {
    /// The other member of a rendezvous room, once it is there.
    pub fn peer(&self) -> Option<DeviceId> {
        match self {
            Link::Rendezvous { peer, .. } => *peer,
            _ => None,
        }
    }

    /// (inviter, rendezvous) Waits until someone joins the room.
    pub async fn wait_for_peer(&mut self) -> Result<(), LinkError> {
        let Link::Rendezvous { conn, peer, early } = self else { return Ok(()) };
        while peer.is_none() {
            match conn.next().await {
                Ok(Event::Presence(online)) => *peer = online.first().copied(),
                // A signal only comes from a member: it is the one, and its words are kept.
                Ok(Event::Signal { from, payload }) => {
                    *peer = Some(from);
                    *early = Some(payload);
                }
                Ok(Event::Error { .. }) => {}
                Err(ClientError::Closed { .. }) => return Err(LinkError::Expired),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Sends one message.
    pub async fn send(&mut self, bytes: Vec<u8>) -> Result<(), LinkError> {
        match self {
            Link::Rendezvous { conn, peer, .. } => {
                let to = peer.ok_or(LinkError::Malformed)?;
                conn.signal(to, &bytes).await?;
            }
            Link::LanServer(ws) => {
                ws.send(Message::Binary(bytes.into())).await.map_err(|e| LinkError::Lan(e.to_string()))?
            }
            Link::LanClient(ws) => {
                ws.send(Message::Binary(bytes.into())).await.map_err(|e| LinkError::Lan(e.to_string()))?
            }
        }
        Ok(())
    }

    /// The next message from the other side, or [`Received::Left`].
    pub async fn recv(&mut self) -> Result<Received, LinkError> {
        match self {
            Link::Rendezvous { conn, peer, early } => loop {
                if let Some(m) = early.take() {
                    return Ok(Received::Message(m));
                }
                match conn.next().await {
                    Ok(Event::Signal { from, payload }) if Some(from) == *peer => {
                        return Ok(Received::Message(payload));
                    }
                    Ok(Event::Signal { .. }) => {}
                    Ok(Event::Presence(online)) => {
                        if peer.is_some_and(|p| !online.contains(&p)) {
                            return Ok(Received::Left);
                        }
                    }
                    Ok(Event::Error { code: ErrorCode::UnknownRecipient, .. }) => return Ok(Received::Left),
                    Ok(Event::Error { code: ErrorCode::RateLimited, .. }) => return Err(LinkError::Malformed),
                    Ok(Event::Error { .. }) => {}
                    Err(ClientError::Closed { .. }) => return Err(LinkError::Expired),
                    Err(e) => return Err(e.into()),
                }
            },
            Link::LanServer(ws) => ws_recv(ws).await,
            Link::LanClient(ws) => ws_recv(ws).await,
        }
    }

    /// Closes politely.
    pub async fn close(self) {
        match self {
            Link::Rendezvous { conn, .. } => conn.close().await,
            Link::LanServer(mut ws) => {
                let _ = ws.close(None).await;
            }
            Link::LanClient(mut ws) => {
                let _ = ws.close(None).await;
            }
        }
    }
}

async fn ws_recv<S>(ws: &mut Ws<S>) -> Result<Received, LinkError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) if b.len() <= MAX_MESSAGE => return Ok(Received::Message(b.to_vec())),
            Some(Ok(Message::Binary(_) | Message::Text(_))) => return Err(LinkError::Malformed),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(Received::Left),
            Some(Ok(_)) => {}
        }
    }
}

fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// (inviter) A LAN pairing endpoint: a listener and its mDNS advertisement. It takes one
/// connection only (the invite's one guess); dropping it withdraws the advertisement.
pub struct LanInvite {
    listener: TcpListener,
    mdns: ServiceDaemon,
}

impl std::fmt::Debug for LanInvite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LanInvite").finish_non_exhaustive()
    }
}

impl Drop for LanInvite {
    fn drop(&mut self) {
        let _ = self.mdns.shutdown();
    }
}

impl LanInvite {
    /// Listens on every interface and advertises `_hearth-pair._tcp` with TXT `v=1`,
    /// `t=<the code's LAN tag>` (from the nameplate only: anyone on the LAN sees it).
    pub async fn start(code: &InviteCode, interfaces: &[String]) -> Result<Self, LinkError> {
        let lan = |e: &dyn std::fmt::Display| LinkError::Lan(e.to_string());
        let listener = TcpListener::bind("0.0.0.0:0").await.map_err(|e| lan(&e))?;
        let port = listener.local_addr().map_err(|e| lan(&e))?.port();
        let mdns = ServiceDaemon::new().map_err(|e| lan(&e))?;
        if !interfaces.is_empty() {
            mdns.disable_interface(mdns_sd::IfKind::All).map_err(|e| lan(&e))?;
            for i in interfaces {
                mdns.enable_interface(mdns_sd::IfKind::Name(i.clone())).map_err(|e| lan(&e))?;
            }
        }
        let instance = format!("p{}", crate::fsutil::random_hex());
        let tag = code.lan_tag();
        let props = [("v", PAIR_TXT_VERSION), ("t", tag.as_str())];
        let info = ServiceInfo::new(PAIR_SERVICE, &instance, &format!("{instance}.local."), "", port, &props[..])
            .map_err(|e| lan(&e))?
            .enable_addr_auto();
        mdns.register(info).map_err(|e| lan(&e))?;
        Ok(Self { listener, mdns })
    }

    /// The listener's port.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    /// The first WebSocket connection; the listener then closes.
    pub async fn accept(self) -> Result<Link, LinkError> {
        loop {
            let (stream, from) = self.listener.accept().await.map_err(|e| LinkError::Lan(e.to_string()))?;
            let handshake = tokio_tungstenite::accept_async_with_config(stream, Some(ws_config()));
            // A connection that is not a WebSocket (a port scan) is not the joiner's guess.
            match tokio::time::timeout(Duration::from_secs(5), handshake).await {
                Ok(Ok(ws)) => {
                    tracing::info!(%from, "pairing connection on the LAN");
                    return Ok(Link::LanServer(ws));
                }
                _ => tracing::debug!(%from, "not a pairing WebSocket; still waiting"),
            }
        }
    }
}

/// (joiner) Finds the inviter's LAN endpoint for `code` by mDNS and connects: the link and
/// the inviter's address.
pub async fn find_on_lan(
    code: &InviteCode,
    interfaces: &[String],
    wait: Duration,
) -> Result<(Link, IpAddr), LinkError> {
    let lan = |e: &dyn std::fmt::Display| LinkError::Lan(e.to_string());
    let mdns = ServiceDaemon::new().map_err(|e| lan(&e))?;
    if !interfaces.is_empty() {
        mdns.disable_interface(mdns_sd::IfKind::All).map_err(|e| lan(&e))?;
        for i in interfaces {
            mdns.enable_interface(mdns_sd::IfKind::Name(i.clone())).map_err(|e| lan(&e))?;
        }
    }
    let events = mdns.browse(PAIR_SERVICE).map_err(|e| lan(&e))?;
    let tag = code.lan_tag();
    let deadline = tokio::time::Instant::now() + wait;
    let found = loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            break None;
        }
        let rx = events.clone();
        let ev = tokio::task::spawn_blocking(move || rx.recv_timeout(left.min(Duration::from_millis(500))))
            .await
            .map_err(|e| lan(&e))?;
        let Ok(ServiceEvent::ServiceResolved(s)) = ev else { continue };
        if s.get_property_val_str("v") != Some(PAIR_TXT_VERSION) || s.get_property_val_str("t") != Some(tag.as_str()) {
            continue;
        }
        let mut addrs: Vec<SocketAddr> = s
            .addresses
            .iter()
            .map(|a| a.to_ip_addr())
            .filter(IpAddr::is_ipv4)
            .map(|ip| SocketAddr::new(ip, s.port))
            .collect();
        addrs.sort();
        if !addrs.is_empty() {
            break Some(addrs);
        }
    };
    let _ = mdns.shutdown();
    let addrs = found.ok_or(LinkError::NotOnLan(code.nameplate()))?;
    let mut last = None;
    for a in addrs {
        let url = format!("ws://{a}/v1/pair");
        match tokio_tungstenite::connect_async_with_config(url.as_str(), Some(ws_config()), true).await {
            Ok((ws, _)) => return Ok((Link::LanClient(ws), a.ip())),
            Err(e) => last = Some(e.to_string()),
        }
    }
    Err(LinkError::Lan(last.unwrap_or_default()))
}
