//! What this network's NAT means for direct connections (`hearth nat-check`, and the
//! daemon's hint for a peer it cannot reach): RFC 5780 discovery against the family's STUN
//! server ([`hearth_stun::discovery`]), in words a person can act on.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use hearth_stun::discovery::{self, Behaviour, DiscoveryError, Filtering, Mapping};

/// Tries per test and the wait after each: an unanswered filtering test costs 3 × 400 ms.
const TRIES: u32 = 3;
const WAIT: Duration = Duration::from_millis(400);

/// Runs the tests against `server` from a fresh UDP socket (blocking; a few seconds at most).
pub fn check(server: SocketAddr) -> Result<Behaviour, CheckError> {
    let any = if server.is_ipv4() { SocketAddr::from(([0, 0, 0, 0], 0)) } else { SocketAddr::from(([0u16; 8], 0)) };
    let sock = UdpSocket::bind(any).map_err(CheckError::Socket)?;
    Ok(discovery::discover_udp(&sock, server, TRIES, WAIT)?)
}

/// Why the check could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// No UDP socket.
    #[error("cannot open a UDP socket: {0}")]
    Socket(std::io::Error),
    /// The tests could not run.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
}

/// The behaviour as `hearth nat-check --json` and `hearth status` (`webrtc.nat`) show it.
pub fn status(b: &Behaviour) -> crate::node::status::NatStatus {
    crate::node::status::NatStatus {
        mapping: b.mapping.as_str().to_owned(),
        filtering: b.filtering.as_str().to_owned(),
        direct_possible: b.direct_possible(),
        needs_turn: b.needs_turn(),
        public_address: b.mapped.to_string(),
    }
}

/// What the mapping means, in a few words.
pub fn mapping_words(m: Mapping) -> &'static str {
    match m {
        Mapping::None => "no NAT: this device's own address is its public one",
        Mapping::EndpointIndependent => "one public address per socket, whoever it talks to",
        Mapping::AddressDependent => "a new public address for each destination host (symmetric)",
        Mapping::AddressAndPortDependent => "a new public address for each destination (symmetric)",
        Mapping::Unknown => "not known",
    }
}

/// What the filtering means, in a few words.
pub fn filtering_words(f: Filtering) -> &'static str {
    match f {
        Filtering::EndpointIndependent => "anyone may answer: full cone",
        Filtering::AddressDependent => "only hosts this device sent to may answer",
        Filtering::AddressAndPortDependent => "only the exact addresses this device sent to may answer",
        Filtering::Unknown => "not known",
    }
}

/// The plain answer: are direct connections expected from here, and when is TURN needed.
pub fn advice(b: &Behaviour, server: SocketAddr) -> String {
    match b.mapping {
        Mapping::None | Mapping::EndpointIndependent => {
            let mut s = "Direct connections are expected to work from this network.".to_owned();
            if b.filtering == Filtering::AddressAndPortDependent {
                s += " A device behind a symmetric NAT can reach this one only through a TURN relay.";
            }
            s
        }
        Mapping::AddressDependent | Mapping::AddressAndPortDependent => {
            "Direct connections are not expected from this network: its NAT is symmetric, so only \
             peers whose NAT lets anyone (or any port of a host) answer are reached directly. \
             Devices here need a TURN relay: run coturn beside your rendezvous and start it with \
             --turn-url and --turn-secret-file (docs/OPERATIONS.md)."
                .to_owned()
        }
        Mapping::Unknown if b.alternate.is_none() => format!(
            "The STUN server {server} has no alternate address, so this network's NAT cannot be \
             told apart (start hearth-rendezvous with --stun-alternate ADDR:PORT on a second IP)."
        ),
        Mapping::Unknown => "The NAT's mapping could not be told: the alternate address did not answer.".to_owned(),
    }
}

/// The hint `hearth status` gives for a device WebRTC could not reach, from this side's
/// NAT (if known) and whether the rendezvous offers a relay.
pub fn unreachable_hint(mine: Option<&Behaviour>, relay: bool) -> String {
    let symmetric = mine.and_then(Behaviour::direct_possible) == Some(false);
    match (symmetric, relay) {
        (true, false) => "direct connection impossible from these networks (this one's NAT is symmetric); \
                          add a TURN server on your rendezvous (--turn-url, --turn-secret-file)"
            .to_owned(),
        (false, false) => "no direct path found (the other device may be behind a symmetric NAT: `hearth nat-check` \
                           there tells); add a TURN server on your rendezvous (--turn-url, --turn-secret-file)"
            .to_owned(),
        (_, true) => "not reached, directly or through the rendezvous's TURN relay: check that the relay \
                      is reachable (UDP) from both networks"
            .to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(mapping: Mapping, filtering: Filtering, alternate: bool) -> Behaviour {
        Behaviour {
            mapped: "203.0.113.7:40000".parse().unwrap(),
            alternate: alternate.then(|| "198.51.100.2:3479".parse().unwrap()),
            mapping,
            filtering,
        }
    }

    #[test]
    fn the_advice_says_plainly_when_turn_is_needed() {
        let s: SocketAddr = "198.51.100.1:3478".parse().unwrap();
        let cone = advice(&b(Mapping::EndpointIndependent, Filtering::AddressAndPortDependent, true), s);
        assert!(cone.starts_with("Direct connections are expected") && cone.contains("symmetric NAT"), "{cone}");
        let full = advice(&b(Mapping::EndpointIndependent, Filtering::EndpointIndependent, true), s);
        assert!(!full.contains("TURN"), "{full}");
        let sym = advice(&b(Mapping::AddressAndPortDependent, Filtering::AddressAndPortDependent, true), s);
        assert!(sym.contains("not expected") && sym.contains("--turn-url"), "{sym}");
        let unknown = advice(&b(Mapping::Unknown, Filtering::Unknown, false), s);
        assert!(unknown.contains("--stun-alternate") && unknown.contains("198.51.100.1:3478"), "{unknown}");
    }

    #[test]
    fn the_status_hint_names_the_fix() {
        let sym = b(Mapping::AddressAndPortDependent, Filtering::AddressAndPortDependent, true);
        assert!(unreachable_hint(Some(&sym), false).starts_with("direct connection impossible from these networks"));
        assert!(unreachable_hint(None, false).contains("add a TURN server"));
        assert!(unreachable_hint(Some(&sym), true).contains("TURN relay"));
    }
}
