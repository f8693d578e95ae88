//! NAT behaviour discovery (RFC 5780 §4.3–4.4) against a server with an alternate address:
//! how this network's NAT maps (does one socket keep one public address for every
//! destination?) and filters (who may send back?), and what that means for direct
//! connections. The logic is pure: it asks a `transact` function to run each Binding
//! transaction, so it is tested against simulated NATs and run over real sockets by
//! [`discover_udp`].

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use crate::client::{BindingResponse, ResponseError};

/// CHANGE-REQUEST: answer from the alternate IP and port.
const CHANGE_IP_AND_PORT: u32 = 0x6;
/// CHANGE-REQUEST: answer from the alternate port.
const CHANGE_PORT: u32 = 0x2;

/// How the NAT maps one local socket to public addresses (RFC 4787 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// No NAT: the server saw this socket's own address.
    None,
    /// One public address per socket, whatever the destination ("cone").
    EndpointIndependent,
    /// A new public address per destination IP.
    AddressDependent,
    /// A new public address per destination IP and port ("symmetric").
    AddressAndPortDependent,
    /// The server has no alternate address to tell.
    Unknown,
}

/// Which outside senders the NAT lets through to a mapping (RFC 4787 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtering {
    /// Anyone ("full cone").
    EndpointIndependent,
    /// Only IPs this socket sent to ("restricted cone").
    AddressDependent,
    /// Only IP and port pairs this socket sent to ("port-restricted").
    AddressAndPortDependent,
    /// The server has no alternate address to tell.
    Unknown,
}

impl Mapping {
    /// The RFC 4787 term, as `hearth nat-check --json` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Mapping::None => "none",
            Mapping::EndpointIndependent => "endpoint-independent",
            Mapping::AddressDependent => "address-dependent",
            Mapping::AddressAndPortDependent => "address-and-port-dependent",
            Mapping::Unknown => "unknown",
        }
    }
}

impl Filtering {
    /// The RFC 4787 term, as `hearth nat-check --json` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Filtering::EndpointIndependent => "endpoint-independent",
            Filtering::AddressDependent => "address-dependent",
            Filtering::AddressAndPortDependent => "address-and-port-dependent",
            Filtering::Unknown => "unknown",
        }
    }
}

/// What the tests found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Behaviour {
    /// The public address the server saw for the first request.
    pub mapped: SocketAddr,
    /// The server's alternate address (RFC 5780 OTHER-ADDRESS), if it has one.
    pub alternate: Option<SocketAddr>,
    /// How the NAT maps.
    pub mapping: Mapping,
    /// How the NAT filters.
    pub filtering: Filtering,
}

impl Behaviour {
    /// Whether a direct connection is expected with a typical peer (one behind a home
    /// router: endpoint-independent mapping, port-restricted filtering). ICE reaches such a
    /// peer when this side keeps one public address per socket; a symmetric NAT here only
    /// reaches peers that filter by address alone or not at all. `None`: not known.
    pub fn direct_possible(&self) -> Option<bool> {
        match self.mapping {
            Mapping::None | Mapping::EndpointIndependent => Some(true),
            Mapping::AddressDependent | Mapping::AddressAndPortDependent => Some(false),
            Mapping::Unknown => None,
        }
    }

    /// Whether devices here need a TURN relay to reach typical peers.
    pub fn needs_turn(&self) -> Option<bool> {
        self.direct_possible().map(|d| !d)
    }
}

/// Why discovery could not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// No answer to the first request: UDP is blocked here, or no server is there.
    #[error("no answer from the STUN server {0}: UDP is blocked on this network, or no STUN server runs there")]
    NoAnswer(SocketAddr),
    /// The server answered with something other than a Binding success.
    #[error("STUN server {server}: {error}")]
    Server {
        /// The server.
        server: SocketAddr,
        /// Its answer.
        error: ResponseError,
    },
}

/// Runs RFC 5780's mapping and filtering tests against `server` from a socket whose own
/// address is `local`. `transact(dest, change)` runs one Binding transaction (with
/// retransmissions) and returns the response, `Ok(None)` when none came in time.
pub fn discover(
    server: SocketAddr,
    local: SocketAddr,
    mut transact: impl FnMut(SocketAddr, Option<u32>) -> Result<Option<BindingResponse>, ResponseError>,
) -> Result<Behaviour, DiscoveryError> {
    let err = |error| DiscoveryError::Server { server, error };
    // Test I: the public address, and the server's alternate address.
    let first = transact(server, None).map_err(err)?.ok_or(DiscoveryError::NoAnswer(server))?;
    let alternate = first.other_address.filter(|a| a.ip() != server.ip() && a.port() != server.port());
    let no_nat = first.mapped == local;
    let Some(alt) = alternate else {
        let mapping = if no_nat { Mapping::None } else { Mapping::Unknown };
        return Ok(Behaviour { mapped: first.mapped, alternate: None, mapping, filtering: Filtering::Unknown });
    };
    // Filtering tests II and III first, while this socket has sent to the primary address
    // only (a mapping test to the alternate IP would open an address-dependent filter for
    // it): answers from the alternate IP and port, then from the primary IP's alternate
    // port. A refusal (error response) counts as no answer.
    let answered = |r: Result<Option<BindingResponse>, ResponseError>| matches!(r, Ok(Some(_)));
    let filtering = if answered(transact(server, Some(CHANGE_IP_AND_PORT))) {
        Filtering::EndpointIndependent
    } else if answered(transact(server, Some(CHANGE_PORT))) {
        Filtering::AddressDependent
    } else {
        Filtering::AddressAndPortDependent
    };
    // Mapping tests II and III: the same socket to the alternate IP (primary port), then to
    // the alternate IP and port. An unanswered request leaves the mapping unknown.
    let mapping = if no_nat {
        Mapping::None
    } else {
        match transact(SocketAddr::new(alt.ip(), server.port()), None).map_err(err)? {
            None => Mapping::Unknown,
            Some(r2) if r2.mapped == first.mapped => Mapping::EndpointIndependent,
            Some(r2) => match transact(alt, None).map_err(err)? {
                None => Mapping::Unknown,
                Some(r3) if r3.mapped == r2.mapped => Mapping::AddressDependent,
                Some(_) => Mapping::AddressAndPortDependent,
            },
        }
    };
    Ok(Behaviour { mapped: first.mapped, alternate: Some(alt), mapping, filtering })
}

/// [`discover`] over a real UDP socket: each transaction is sent up to `tries` times,
/// waiting `wait` for an answer after each.
pub fn discover_udp(
    sock: &UdpSocket,
    server: SocketAddr,
    tries: u32,
    wait: Duration,
) -> Result<Behaviour, DiscoveryError> {
    // The socket's own address as seen on the route to the server (a wildcard bind says
    // nothing): a throwaway connected socket tells it without sending anything.
    let local = local_address_towards(sock, server);
    discover(server, local, |dest, change| {
        for _ in 0..tries.max(1) {
            match crate::client::query(sock, dest, change, wait) {
                Ok((r, _)) => return Ok(Some(r)),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => continue,
                Err(e) => match e.into_inner().and_then(|i| i.downcast::<ResponseError>().ok()) {
                    Some(r) => return Err(*r),
                    // ICMP unreachable and the like: as good as no answer.
                    None => return Ok(None),
                },
            }
        }
        Ok(None)
    })
}

fn local_address_towards(sock: &UdpSocket, server: SocketAddr) -> SocketAddr {
    let bound = sock.local_addr().unwrap_or(server);
    if !bound.ip().is_unspecified() {
        return bound;
    }
    let probe = UdpSocket::bind(SocketAddr::new(bound.ip(), 0)).and_then(|p| p.connect(server).map(|()| p));
    match probe.and_then(|p| p.local_addr()) {
        Ok(a) => SocketAddr::new(a.ip(), bound.port()),
        Err(_) => bound,
    }
}

#[cfg(test)]
#[path = "discovery_tests.rs"]
mod tests;
