//! A TURN allocation (RFC 8656) on one of a connection's sockets, for a relay candidate when
//! neither side can reach the other directly (both behind symmetric NATs).
//!
//! The protocol is `turn-client-proto`'s sans-IO client (allocation with long-term
//! credentials, refresh, permissions, channel bindings); this wraps it in the same shape as
//! `conn`: datagrams and time in, datagrams for the server out, the peer's data back. str0m
//! sees the relayed address as one more local candidate: what it sends *from* that address
//! goes to the TURN server wrapped, and what the server relays arrives as if *to* it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use turn_client_proto::api::{TurnConfig, TurnEvent, TurnPollRet, TurnRecvRet};
use turn_client_proto::prelude::*;
use turn_client_proto::stun::agent::Transmit;
use turn_client_proto::types::{TransportType, TurnCredentials};
use turn_client_proto::udp::TurnClientUdp;

/// One allocation.
#[derive(Debug)]
pub(crate) struct Relay {
    client: TurnClientUdp,
    /// The clock `turn-client-proto` counts from.
    base: Instant,
    /// The local socket the allocation was made from.
    pub(crate) local: SocketAddr,
    /// The TURN server.
    pub(crate) server: SocketAddr,
    /// The relayed address, once allocated.
    pub(crate) relayed: Option<SocketAddr>,
    /// The allocation failed or was closed.
    pub(crate) failed: bool,
    /// Peers a channel was asked for (bound or pending), at most [`MAX_CHANNELS`].
    channels: Vec<SocketAddr>,
}

/// Channels one allocation binds at most (one per remote candidate ICE reaches through it).
const MAX_CHANNELS: usize = 8;

/// A datagram for the TURN server, from the relay's local socket.
pub(crate) type ToServer = Vec<u8>;

impl Relay {
    /// Starts allocating from `local` at `server`.
    pub(crate) fn allocate(
        local: SocketAddr,
        server: SocketAddr,
        username: &str,
        password: &str,
        now: Instant,
    ) -> Self {
        let config = TurnConfig::new(TurnCredentials::new(username, password));
        Self {
            client: TurnClientUdp::allocate(local, server, config),
            base: now,
            local,
            server,
            relayed: None,
            failed: false,
            channels: Vec::new(),
        }
    }

    fn at(&self, now: Instant) -> turn_client_proto::stun::Instant {
        let nanos = now.saturating_duration_since(self.base).as_nanos();
        turn_client_proto::stun::Instant::from_nanos(i64::try_from(nanos).unwrap_or(i64::MAX))
    }

    /// True when a datagram from `from` on `local` is for this relay.
    pub(crate) fn owns(&self, local: SocketAddr, from: SocketAddr) -> bool {
        local == self.local && from == self.server
    }

    /// A datagram from the server: the peer's data (and its address), if it carried any.
    pub(crate) fn receive(&mut self, bytes: &[u8], now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        let t = Transmit { data: bytes, transport: TransportType::Udp, from: self.server, to: self.local };
        let at = self.at(now);
        let out = match self.client.recv(t, at) {
            TurnRecvRet::PeerData(d) => {
                tracing::trace!(peer = %d.peer, len = d.data().len(), "TURN data in");
                Some((d.peer, d.data().to_vec()))
            }
            other => {
                tracing::trace!(?other, "TURN datagram");
                None
            }
        };
        self.events();
        out
    }

    /// Wraps `data` for `peer`; installs a permission first if needed, in which case this
    /// datagram is dropped (ICE sends its checks again). With the permission, a channel is
    /// bound to `peer` (RFC 8656 §12): until it is, data goes as Send indications (36 bytes
    /// of header), then as ChannelData (4 bytes), both ways; the client refreshes it.
    pub(crate) fn send(&mut self, peer: SocketAddr, data: &[u8], now: Instant) -> Option<ToServer> {
        tracing::trace!(%peer, len = data.len(), "TURN data out");
        let at = self.at(now);
        if !self.permit(peer.ip(), at) {
            return None;
        }
        if !self.channels.contains(&peer) && self.channels.len() < MAX_CHANNELS {
            self.channels.push(peer);
            if let Err(e) = self.client.bind_channel(TransportType::Udp, peer, at) {
                tracing::debug!(%peer, "TURN channel: {e}");
            }
        }
        match self.client.send_to(TransportType::Udp, peer, data, at) {
            Ok(Some(t)) => Some(t.build().data),
            Ok(None) => {
                tracing::trace!(%peer, "TURN send: nothing to transmit");
                None
            }
            Err(e) => {
                tracing::debug!(%peer, "TURN send: {e}");
                None
            }
        }
    }

    /// Installs permissions at once for the addresses of the peer's candidates in its `sdp`
    /// (those of the relayed address's family, at most [`MAX_CHANNELS`]): otherwise the first
    /// check ICE sends through the relay to each is dropped while its permission is made,
    /// and that pair waits for ICE to check it again.
    pub(crate) fn permit_candidates(&mut self, sdp: &str, now: Instant) {
        let Some(relayed) = self.relayed else { return };
        let at = self.at(now);
        let ips = candidate_ips(sdp).into_iter().filter(|ip| ip.is_ipv4() == relayed.is_ipv4());
        for ip in ips.take(MAX_CHANNELS) {
            self.permit(ip, at);
        }
    }

    /// True when a permission for `ip` is installed; otherwise asks for one.
    fn permit(&mut self, ip: std::net::IpAddr, at: turn_client_proto::stun::Instant) -> bool {
        if self.client.have_permission(TransportType::Udp, ip) {
            return true;
        }
        if let Err(e) = self.client.create_permission(TransportType::Udp, ip, at) {
            tracing::debug!(%ip, "TURN permission: {e}");
        }
        false
    }

    /// Datagrams for the server now (allocation, refreshes, permissions).
    pub(crate) fn poll_transmit(&mut self, now: Instant) -> Vec<ToServer> {
        let at = self.at(now);
        let mut out = Vec::new();
        while let Some(t) = self.client.poll_transmit(at) {
            out.push(t.data.as_ref().to_vec());
        }
        self.events();
        out
    }

    /// When to call [`Relay::poll_transmit`] again.
    pub(crate) fn deadline(&mut self, now: Instant) -> Instant {
        let at = self.at(now);
        match self.client.poll(at) {
            TurnPollRet::WaitUntil(t) => t.to_std(self.base).max(now),
            TurnPollRet::Closed => {
                self.failed = true;
                now + Duration::from_secs(3600)
            }
            _ => now + Duration::from_millis(50),
        }
    }

    fn events(&mut self) {
        while let Some(e) = self.client.poll_event() {
            match e {
                TurnEvent::AllocationCreated(TransportType::Udp, addr) => self.relayed = Some(addr),
                TurnEvent::AllocationCreateFailed(_) => self.failed = true,
                TurnEvent::ChannelCreated(_, peer) => {
                    tracing::info!(%peer, server = %self.server, "TURN channel bound")
                }
                TurnEvent::ChannelCreateFailed(_, peer) => tracing::debug!(%peer, "TURN channel refused"),
                other => tracing::trace!(?other, "TURN"),
            }
        }
    }
}

/// The distinct addresses of the `a=candidate:` lines of `sdp`, in order.
fn candidate_ips(sdp: &str) -> Vec<std::net::IpAddr> {
    let mut out = Vec::new();
    for line in sdp.lines() {
        // a=candidate:FOUNDATION COMPONENT TRANSPORT PRIORITY ADDRESS PORT typ TYPE ... (a
        // trickled candidate comes without the "a=").
        let line = line.trim();
        let Some(rest) = line.strip_prefix("a=").unwrap_or(line).strip_prefix("candidate:") else { continue };
        if let Some(ip) = rest.split_whitespace().nth(4).and_then(|a| a.parse().ok()) {
            if !out.contains(&ip) {
                out.push(ip);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use turn_server_proto::api::{TurnServerApi, TurnServerPollRet};
    use turn_server_proto::server::TurnServer;

    const LOCAL: &str = "10.0.0.1:5000";
    const SERVER: &str = "192.0.2.1:3478";
    const RELAYED: &str = "192.0.2.1:40000";

    fn addr(a: &str) -> SocketAddr {
        a.parse().unwrap()
    }

    /// A `Relay` and a sans-IO TURN server (the same project as the client, another
    /// implementation of the server side than coturn, which the end-to-end tests use) wired
    /// back to back; datagrams the server relays to peers are collected.
    struct Lab {
        server: TurnServer,
        relay: Relay,
        now: Instant,
        /// What reached peers: (peer, from, bytes).
        at_peers: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
        /// What the relay handed back as the peers' data.
        got: Vec<(SocketAddr, Vec<u8>)>,
    }

    impl Lab {
        fn new(password: &str) -> Self {
            let mut server = TurnServer::new(TransportType::Udp, addr(SERVER), "hearth".into());
            server.add_user("user".into(), "pass".into());
            let now = Instant::now();
            let relay = Relay::allocate(addr(LOCAL), addr(SERVER), "user", password, now);
            let mut lab = Self { server, relay, now, at_peers: Vec::new(), got: Vec::new() };
            lab.pump();
            lab
        }

        fn at(&self) -> turn_client_proto::stun::Instant {
            self.relay.at(self.now)
        }

        /// Moves datagrams between the relay and the server, and time to the relay's next
        /// deadline, until neither has anything to do within a second.
        fn pump(&mut self) {
            self.pump_within(Duration::from_secs(1));
        }

        /// [`Lab::pump`], following deadlines up to `horizon` away.
        fn pump_within(&mut self, horizon: Duration) {
            for _ in 0..1000 {
                let mut moved = false;
                for d in self.relay.poll_transmit(self.now) {
                    moved = true;
                    self.carry_to_server(d);
                }
                let at = self.at();
                while let TurnServerPollRet::AllocateSocket {
                    transport,
                    listen_addr,
                    client_addr,
                    allocation_transport,
                    family,
                } = self.server.poll(at)
                {
                    let relayed = Ok(addr(RELAYED));
                    self.server.allocated_socket(
                        transport,
                        listen_addr,
                        client_addr,
                        allocation_transport,
                        family,
                        relayed,
                        at,
                    );
                }
                while let Some(t) = self.server.poll_transmit(at) {
                    moved = true;
                    self.route(t.to, t.from, t.data);
                }
                if !moved {
                    // As the task does: sleep until the relay's deadline, if one is near.
                    let next = self.relay.deadline(self.now);
                    if next > self.now + horizon || self.relay.failed {
                        return;
                    }
                    self.now = next.max(self.now + Duration::from_millis(1));
                }
            }
        }

        /// A datagram from the relay's socket to the server.
        fn carry_to_server(&mut self, data: Vec<u8>) {
            let t = Transmit { data, transport: TransportType::Udp, from: addr(LOCAL), to: addr(SERVER) };
            if let Some(out) = self.server.recv(t, self.at()) {
                let out = out.build();
                self.route(out.to, out.from, out.data);
            }
        }

        /// A datagram from `peer` to the relayed address.
        fn peer_sends(&mut self, peer: SocketAddr, data: &[u8]) {
            let t = Transmit { data: data.to_vec(), transport: TransportType::Udp, from: peer, to: addr(RELAYED) };
            if let Some(out) = self.server.recv(t, self.at()) {
                let out = out.build();
                self.route(out.to, out.from, out.data);
            }
        }

        fn route(&mut self, to: SocketAddr, from: SocketAddr, data: Vec<u8>) {
            if to == addr(LOCAL) {
                assert!(self.relay.owns(to, from), "the server's datagrams are the relay's");
                if let Some(d) = self.relay.receive(&data, self.now) {
                    self.got.push(d);
                }
            } else {
                self.at_peers.push((to, from, data));
            }
        }

        /// The relay's send of `data` to `peer`, carried to the server when there is one.
        fn send(&mut self, peer: SocketAddr, data: &[u8]) -> Option<Vec<u8>> {
            let out = self.relay.send(peer, data, self.now)?;
            self.carry_to_server(out.clone());
            Some(out)
        }
    }

    #[test]
    fn a_relay_allocates_then_relays_both_ways_through_a_bound_channel() {
        let mut lab = Lab::new("pass");
        assert_eq!(lab.relay.relayed, Some(addr(RELAYED)));
        assert!(!lab.relay.failed);
        assert!(lab.relay.owns(addr(LOCAL), addr(SERVER)));
        assert!(!lab.relay.owns(addr(LOCAL), addr("203.0.113.9:7000")));
        assert!(!lab.relay.owns(addr("10.0.0.1:5001"), addr(SERVER)));
        let now = lab.now;
        assert!(lab.relay.deadline(now) > now + Duration::from_secs(60), "an allocation to refresh minutes later");
        let peer = addr("203.0.113.9:7000");
        // No permission yet: this datagram makes one and is dropped (ICE sends again).
        assert!(lab.send(peer, b"check 1").is_none());
        lab.pump();
        // Permitted: sent as a Send indication while the channel is being bound.
        let out = lab.send(peer, b"check 2").expect("permitted");
        assert_eq!(&out[..2], &[0x00, 0x16], "a Send indication");
        lab.pump();
        // Bound: ChannelData (channel numbers 0x4000–0x7FFF), 4 bytes of header.
        let out = lab.send(peer, b"data 3").expect("bound");
        assert_eq!(out[0] & 0xC0, 0x40, "ChannelData");
        assert_eq!(out.len(), 4 + 6, "4 bytes of header (no padding over UDP)");
        let to_peer: Vec<&[u8]> = lab.at_peers.iter().filter(|p| p.0 == peer).map(|p| p.2.as_slice()).collect();
        assert_eq!(to_peer, [&b"check 2"[..], &b"data 3"[..]]);
        assert!(lab.at_peers.iter().all(|p| p.1 == addr(RELAYED)), "relayed from the allocation");
        // And back: the peer's datagram to the relayed address comes out of `receive`.
        lab.peer_sends(peer, b"reply");
        assert_eq!(lab.got, [(peer, b"reply".to_vec())]);
        // A peer never permitted is not let in.
        lab.peer_sends(addr("198.51.100.77:9"), b"stranger");
        assert_eq!(lab.got.len(), 1);
    }

    #[test]
    fn the_peers_candidates_are_permitted_before_ice_needs_them() {
        let mut lab = Lab::new("pass");
        let sdp = "a=candidate:1 1 udp 1 203.0.113.9 7000 typ srflx\r\na=candidate:2 1 udp 1 fd00::9 7000 typ host\r\n";
        lab.relay.permit_candidates(sdp, lab.now);
        lab.pump();
        assert!(lab.send(addr("203.0.113.9:7000"), b"first check").is_some(), "not dropped: permitted already");
        assert!(lab.send(addr("198.51.100.2:7000"), b"other").is_none(), "only the candidates' addresses");
    }

    #[test]
    fn channels_are_bound_for_at_most_a_few_peers() {
        let mut lab = Lab::new("pass");
        let peers: Vec<SocketAddr> =
            (1..=MAX_CHANNELS as u16 + 3).map(|i| addr(&format!("203.0.113.9:{}", 7000 + i))).collect();
        for p in &peers {
            lab.send(*p, b"x");
            lab.pump();
            lab.send(*p, b"y");
            lab.pump();
        }
        assert_eq!(lab.relay.channels.len(), MAX_CHANNELS);
        let bound = peers.iter().filter(|p| lab.relay.send(**p, b"z", lab.now).is_some_and(|o| o[0] & 0xC0 == 0x40));
        assert_eq!(bound.count(), MAX_CHANNELS);
    }

    #[test]
    fn wrong_credentials_get_no_relayed_address() {
        let mut lab = Lab::new("not the password");
        lab.pump_within(Duration::from_secs(60));
        assert!(lab.relay.relayed.is_none(), "{:?}", lab.relay);
        assert!(lab.send("203.0.113.9:7000".parse().unwrap(), b"x").is_none(), "nothing relayed");
        // Once the client gives up (its requests unanswered: this server drops a request with
        // a bad integrity), the relay says so and asks for no more polling.
        let now = lab.now;
        assert_eq!(lab.relay.deadline(now), now + Duration::from_secs(3600));
        assert!(lab.relay.failed);
    }

    #[test]
    fn the_peers_candidate_addresses_are_read_from_its_sdp() {
        let sdp = "v=0\r\n\
            a=candidate:1 1 udp 2130706431 10.0.0.2 5000 typ host\r\n\
            a=candidate:2 1 udp 1694498815 203.0.113.7 6000 typ srflx raddr 0.0.0.0 rport 0\r\n\
            a=candidate:3 1 udp 16777215 198.51.100.1 7000 typ relay raddr 0.0.0.0 rport 0\r\n\
            a=candidate:4 1 udp 2130706431 10.0.0.2 5001 typ host\r\n\
            a=candidate:5 1 udp 2130706431 fd00::2 5002 typ host\r\n\
            a=candidate:6 1 udp 2130706431 not-an-address 5003 typ host\r\n\
            a=candidate:7 1\r\n\
            a=ice-ufrag:abcd\r\n";
        let got: Vec<String> = candidate_ips(sdp).iter().map(ToString::to_string).collect();
        assert_eq!(got, ["10.0.0.2", "203.0.113.7", "198.51.100.1", "fd00::2"]);
        assert!(candidate_ips("").is_empty() && candidate_ips("a=candidate:").is_empty());
        // Trickled candidates come as bare lines.
        let trickled =
            "candidate:2 1 udp 1694498815 203.0.113.9 6000 typ srflx\n candidate:1 1 udp 1 10.0.0.3 5 typ host";
        let got: Vec<String> = candidate_ips(trickled).iter().map(ToString::to_string).collect();
        assert_eq!(got, ["203.0.113.9", "10.0.0.3"]);
        assert!(candidate_ips("x=candidate:1 1 udp 1 10.0.0.4 5 typ host").is_empty());
    }
}
