//! A connection's UDP sockets and its ICE candidates: one socket per local address (str0m
//! needs to know on which address each datagram arrived, and refuses 0.0.0.0), a host
//! candidate for each, and a server-reflexive candidate from a STUN Binding sent on the same
//! socket the connection then uses, so the NAT mapping it reports is the one peers reach.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_rendezvous::protocol::TurnCredentials;
use hearth_stun::client::{binding_request, parse_response};
use hearth_stun::TransactionId;
use rand::RngCore;
use str0m::Candidate;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::relay::Relay;

/// How long gathering waits for STUN answers.
const STUN_WAIT: Duration = Duration::from_millis(400);
/// A lost STUN request is sent again after this.
const STUN_RESEND: Duration = Duration::from_millis(120);
/// How long gathering waits for a TURN allocation (two round trips: the server's 401 with its
/// nonce, then the authenticated request).
const TURN_WAIT: Duration = Duration::from_millis(1500);
/// Socket buffers: the kernel's defaults (~200 KiB) drop datagrams under a bulk transfer,
/// and every drop costs SCTP a retransmission timeout.
const SOCKET_BUFFER: usize = 4 << 20;
/// Datagrams waiting for the connection's task at most (more are dropped, as UDP would).
const QUEUE: usize = 1024;

/// A datagram read from one of the sockets.
#[derive(Debug)]
pub(crate) struct Datagram {
    /// The local address it arrived on.
    pub(crate) local: SocketAddr,
    /// Its sender.
    pub(crate) from: SocketAddr,
    /// Its bytes.
    pub(crate) bytes: Vec<u8>,
}

/// The local addresses a connection binds: every interface address except link-local and
/// unspecified ones (str0m refuses those as candidates). Loopback is bound too (a STUN or
/// TURN server there is reached from it); [`host_addrs`] says which are offered.
pub(crate) fn local_ips() -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = match nix::ifaddrs::getifaddrs() {
        Ok(addrs) => addrs
            .filter_map(|a| {
                let s = a.address?;
                if let Some(v4) = s.as_sockaddr_in() {
                    Some(IpAddr::V4(v4.ip()))
                } else {
                    s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
                }
            })
            .filter(usable)
            .collect(),
        Err(e) => {
            tracing::warn!("listing interfaces: {e}");
            Vec::new()
        }
    };
    ips.sort();
    ips.dedup();
    ips
}

/// The addresses to offer as host candidates: loopback ones only when there is nothing else.
///
/// Why: a loopback candidate reaches nothing outside this host, yet ICE pairs it with every
/// remote candidate of its family and checks each pair, one check per 50 ms pacing slot in
/// priority order, host pairs first. Across NATs the pair that works (host → the peer's
/// public mapping) comes last; with `127.0.0.1` and `::1` offered it waited behind ten pairs
/// (about half a second) instead of three. Two devices on one host still meet on its
/// interface addresses. The loopback sockets stay bound: a STUN or TURN server on loopback
/// is reached from them.
pub(crate) fn host_addrs(addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let outside = addrs.iter().any(|a| !a.ip().is_loopback());
    addrs.iter().copied().filter(|a| !(outside && a.ip().is_loopback())).collect()
}

fn usable(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => !v.is_unspecified() && !v.is_link_local() && !v.is_multicast() && !v.is_broadcast(),
        // fe80::/10 needs a scope id str0m does not carry.
        IpAddr::V6(v) => !v.is_unspecified() && !v.is_multicast() && (v.segments()[0] & 0xffc0) != 0xfe80,
    }
}

/// A connection's sockets and the task-side end of their readers.
pub(crate) struct Sockets {
    socks: Vec<Arc<UdpSocket>>,
    /// Datagrams from every socket.
    pub(crate) rx: mpsc::Receiver<Datagram>,
    readers: Vec<tokio::task::AbortHandle>,
}

impl Drop for Sockets {
    fn drop(&mut self) {
        for r in &self.readers {
            r.abort();
        }
    }
}

impl Sockets {
    /// Binds an ephemeral port on each of `ips` (those that fail are skipped).
    pub(crate) async fn bind(ips: &[IpAddr]) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let mut socks = Vec::new();
        let mut readers = Vec::new();
        for ip in ips {
            let s = match udp_socket(SocketAddr::new(*ip, 0)) {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    tracing::debug!(%ip, "binding a WebRTC socket: {e}");
                    continue;
                }
            };
            let Ok(local) = s.local_addr() else { continue };
            readers.push(tokio::spawn(read(s.clone(), local, tx.clone())).abort_handle());
            socks.push(s);
        }
        Self { socks, rx, readers }
    }

    /// The sockets' local addresses.
    pub(crate) fn addrs(&self) -> Vec<SocketAddr> {
        self.socks.iter().filter_map(|s| s.local_addr().ok()).collect()
    }

    /// Sends `bytes` from the socket bound to `from`.
    pub(crate) async fn send(&self, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        let sock = self.socks.iter().find(|s| s.local_addr().is_ok_and(|a| a == from));
        if let Some(s) = sock {
            if let Err(e) = s.send_to(bytes, to).await {
                tracing::debug!(%from, %to, "WebRTC send: {e}");
            }
        }
    }

    /// Host candidates of these sockets (see [`host_addrs`]).
    pub(crate) fn host_candidates(&self) -> Vec<Candidate> {
        host_addrs(&self.addrs()).into_iter().filter_map(|a| Candidate::host(a, "udp").ok()).collect()
    }

    /// Host candidates, plus server-reflexive ones learnt from `stun` and, with `turn`, a
    /// relayed one: the STUN answers and the TURN allocation (two round trips) are awaited
    /// together, so gathering costs the slower of the two, not their sum. (A trickling
    /// connection offers its host candidates at once and runs [`StunAsks`] and the relay in
    /// its own loop instead.)
    pub(crate) async fn gather(
        &mut self,
        stun: Option<SocketAddr>,
        turn: Option<&TurnCredentials>,
    ) -> (Vec<Candidate>, Option<Relay>) {
        let mut out = self.host_candidates();
        let start = Instant::now();
        let mut asks = stun.map(|server| StunAsks::new(server, &self.addrs(), start));
        let mut relay = match turn {
            Some(creds) => self.allocate(creds).await,
            None => None,
        };
        let turn_end = start + TURN_WAIT;
        loop {
            let now = Instant::now();
            let stun_done = asks.as_ref().is_none_or(|a| a.done(now));
            let turn_done = relay.as_ref().is_none_or(|r| r.relayed.is_some() || r.failed) || now >= turn_end;
            if stun_done && turn_done {
                break;
            }
            let mut wake = turn_end.max(start + STUN_WAIT);
            if let (false, Some(a)) = (stun_done, asks.as_mut()) {
                for (from, to, bytes) in a.poll_transmit(now) {
                    self.send(from, to, &bytes).await;
                }
                wake = wake.min(a.deadline());
            }
            if let (false, Some(r)) = (turn_done, relay.as_mut()) {
                for d in r.poll_transmit(now) {
                    self.send(r.local, r.server, &d).await;
                }
                wake = wake.min(r.deadline(now)).min(turn_end);
            }
            let d = tokio::select! {
                d = self.rx.recv() => match d { Some(d) => d, None => break },
                () = tokio::time::sleep_until(wake.into()) => continue,
            };
            if let Some(r) = relay.as_mut().filter(|r| r.owns(d.local, d.from)) {
                r.receive(&d.bytes, Instant::now());
            } else if let Some(found) = asks.as_mut().and_then(|a| a.receive(&d)) {
                out.extend(found);
            }
        }
        let relay = relay.and_then(|r| match r.relayed {
            Some(addr) => {
                tracing::info!(server = %r.server, relayed = %addr, "TURN relay allocated");
                out.extend(Candidate::relayed(addr, r.local, "udp").ok());
                Some(r)
            }
            None => {
                let why = if r.failed { "TURN allocation refused" } else { "no TURN allocation in time" };
                tracing::info!(server = %r.server, "{why}");
                None
            }
        });
        (out, relay)
    }
}

/// Server-reflexive candidates being learnt (sans-IO): a STUN Binding request from every
/// socket that can reach the server, resent until answered or [`STUN_WAIT`] has passed.
#[derive(Debug)]
pub(crate) struct StunAsks {
    server: SocketAddr,
    asks: Vec<(SocketAddr, TransactionId)>,
    answered: Vec<SocketAddr>,
    resend: Instant,
    end: Instant,
}

impl StunAsks {
    /// Requests from each of `addrs` that reaches `server`, the first ones due at `now`.
    pub(crate) fn new(server: SocketAddr, addrs: &[SocketAddr], now: Instant) -> Self {
        let asks = addrs
            .iter()
            .filter(|a| reaches(**a, server))
            .map(|a| {
                let mut id = [0u8; 12];
                rand::thread_rng().fill_bytes(&mut id);
                (*a, TransactionId::new(id))
            })
            .collect();
        Self { server, asks, answered: Vec::new(), resend: now, end: now + STUN_WAIT }
    }

    /// True once every request is answered, or the rest are given up.
    pub(crate) fn done(&self, now: Instant) -> bool {
        self.answered.len() == self.asks.len() || now >= self.end
    }

    /// The requests due at `now`: (from, to, datagram).
    pub(crate) fn poll_transmit(&mut self, now: Instant) -> Vec<(SocketAddr, SocketAddr, Vec<u8>)> {
        if self.done(now) || now < self.resend {
            return Vec::new();
        }
        self.resend = now + STUN_RESEND;
        let mut buf = [0u8; 64];
        let unanswered = self.asks.iter().filter(|(l, _)| !self.answered.contains(l));
        unanswered
            .filter_map(|(local, txid)| {
                let n = binding_request(&mut buf, txid, None).ok()?;
                Some((*local, self.server, buf[..n].to_vec()))
            })
            .collect()
    }

    /// When to poll again: the next resend, or the end.
    pub(crate) fn deadline(&self) -> Instant {
        self.resend.min(self.end)
    }

    /// A datagram from a socket: `None` unless it answers one of these requests, else the
    /// server-reflexive candidate it reports (none behind no NAT: the mapping is the host
    /// address). A STUN answer is known by its transaction id (96 random bits), not its
    /// source.
    pub(crate) fn receive(&mut self, d: &Datagram) -> Option<Option<Candidate>> {
        let (local, txid) = self.asks.iter().find(|(l, _)| *l == d.local)?;
        if self.answered.contains(local) {
            return None;
        }
        let r = parse_response(&d.bytes, txid).ok()?;
        self.answered.push(*local);
        if r.mapped == *local {
            return Some(None);
        }
        Some(Candidate::server_reflexive(r.mapped, *local, "udp").ok())
    }
}

/// True when a socket on `local` can send to `server` (same family, and loopback only to
/// loopback).
fn reaches(local: SocketAddr, server: SocketAddr) -> bool {
    local.is_ipv4() == server.is_ipv4() && local.ip().is_loopback() == server.ip().is_loopback()
}

/// A UDP socket bound to `addr` with large buffers (best effort: the kernel caps them at
/// `net.core.rmem_max`).
pub fn udp_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let domain = if addr.is_ipv4() { socket2::Domain::IPV4 } else { socket2::Domain::IPV6 };
    let s = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

/// The first `turn:HOST:PORT` URL's address.
async fn turn_addr(creds: &TurnCredentials) -> Option<SocketAddr> {
    for url in &creds.urls {
        let Some(rest) = url.strip_prefix("turn:") else { continue };
        let hostport = rest.split('?').next().unwrap_or(rest);
        if let Ok(mut addrs) = tokio::net::lookup_host(hostport).await {
            if let Some(a) = addrs.next() {
                return Some(a);
            }
        }
    }
    None
}

impl Sockets {
    /// Starts an allocation on the TURN server of `creds` from a socket that can reach it
    /// (`None` if there is no such server or socket); [`Sockets::gather`] drives it.
    pub(crate) async fn allocate(&self, creds: &TurnCredentials) -> Option<Relay> {
        let server = turn_addr(creds).await?;
        let local = self.addrs().into_iter().find(|a| reaches(*a, server))?;
        Some(Relay::allocate(local, server, &creds.username, &creds.credential, Instant::now()))
    }
}

async fn read(sock: Arc<UdpSocket>, local: SocketAddr, tx: mpsc::Sender<Datagram>) {
    let mut buf = vec![0u8; 2048];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, from)) => {
                let d = Datagram { local, from, bytes: buf[..n].to_vec() };
                match tx.try_send(d) {
                    Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
            // ICMP errors (port unreachable) surface here on Linux: not fatal.
            Err(e) => tracing::trace!(%local, "WebRTC recv: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_and_unspecified_addresses_are_not_used() {
        for bad in ["0.0.0.0", "169.254.1.2", "224.0.0.251", "::", "fe80::1", "ff02::1"] {
            assert!(!usable(&bad.parse().unwrap()), "{bad}");
        }
        for good in ["127.0.0.1", "10.0.0.2", "192.168.1.5", "::1", "2001:db8::1", "fd00::1"] {
            assert!(usable(&good.parse().unwrap()), "{good}");
        }
    }

    #[test]
    fn loopback_is_offered_only_when_there_is_nothing_else() {
        let addrs = |v: &[&str]| v.iter().map(|a| a.parse().unwrap()).collect::<Vec<SocketAddr>>();
        let mixed = addrs(&["127.0.0.1:1", "[::1]:2", "10.0.0.2:3", "[fd00::1]:4"]);
        assert_eq!(host_addrs(&mixed), addrs(&["10.0.0.2:3", "[fd00::1]:4"]));
        let only_loopback = addrs(&["127.0.0.1:1", "[::1]:2"]);
        assert_eq!(host_addrs(&only_loopback), only_loopback, "a host with no network still pairs with itself");
        assert!(host_addrs(&[]).is_empty());
    }

    #[tokio::test]
    async fn gathering_asks_the_stun_server_on_the_connections_own_socket() {
        // A STUN server on loopback that reports a made-up mapping, as a NAT would.
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server_addr = server.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            let (n, from) = server.recv_from(&mut buf).await.unwrap();
            let req = hearth_stun::Message::parse(&buf[..n]).unwrap();
            let mut out = [0u8; 128];
            let mut w = hearth_stun::writer::MessageWriter::new(
                &mut out,
                hearth_stun::MessageType::BINDING_SUCCESS,
                &req.transaction_id(),
            )
            .unwrap();
            w.xor_address(hearth_stun::attr::XOR_MAPPED_ADDRESS, "203.0.113.7:6000".parse().unwrap()).unwrap();
            let len = w.finish_with_fingerprint().unwrap();
            server.send_to(&out[..len], from).await.unwrap();
        });
        let mut socks = Sockets::bind(&["127.0.0.1".parse().unwrap()]).await;
        let local = socks.addrs()[0];
        let (cands, _) = socks.gather(Some(server_addr), None).await;
        let kinds: Vec<String> = cands.iter().map(|c| c.to_sdp_string()).collect();
        assert_eq!(cands.len(), 2, "{kinds:?}");
        assert_eq!(cands[0].addr(), local);
        assert_eq!(cands[1].addr(), "203.0.113.7:6000".parse().unwrap());
        assert_eq!(cands[1].local(), local, "the mapping is of the connection's own socket");
    }
}
