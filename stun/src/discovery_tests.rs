use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use super::*;

const LOCAL: &str = "192.168.1.20:5000";
const PRIMARY: &str = "198.51.100.1:3478";
const ALTERNATE: &str = "198.51.100.2:3479";
const PUBLIC_IP: [u8; 4] = [203, 0, 113, 7];

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A simulated NAT in front of one socket, and an RFC 5780 server behind it.
struct World {
    mapping: Mapping,
    filtering: Filtering,
    /// The server's OTHER-ADDRESS, if it has one.
    other: Option<SocketAddr>,
    /// (public address, destination) pairs the NAT has sent through.
    sent: HashSet<(SocketAddr, SocketAddr)>,
    /// Transactions run.
    log: Vec<(SocketAddr, Option<u32>)>,
}

impl World {
    fn new(mapping: Mapping, filtering: Filtering) -> Self {
        Self { mapping, filtering, other: Some(a(ALTERNATE)), sent: HashSet::new(), log: Vec::new() }
    }

    fn public_for(&self, dest: SocketAddr) -> SocketAddr {
        let port = match self.mapping {
            Mapping::None => return a(LOCAL),
            Mapping::EndpointIndependent | Mapping::Unknown => 40_000,
            Mapping::AddressDependent => 40_000 + u16::from(octet(dest.ip())),
            Mapping::AddressAndPortDependent => 40_000 + u16::from(octet(dest.ip())) + dest.port() % 100,
        };
        SocketAddr::new(IpAddr::from(PUBLIC_IP), port)
    }

    fn transact(&mut self, dest: SocketAddr, change: Option<u32>) -> Result<Option<BindingResponse>, ResponseError> {
        self.log.push((dest, change));
        let public = self.public_for(dest);
        self.sent.insert((public, dest));
        let flags = change.unwrap_or(0);
        let Some(other) = self.other else {
            if flags != 0 {
                return Err(ResponseError::ServerError { code: 420, reason: "Unknown Attribute".into() });
            }
            return Ok(Some(BindingResponse { mapped: public, response_origin: Some(dest), other_address: None }));
        };
        let ip = if flags & 0x4 != 0 {
            if dest.ip() == other.ip() {
                a(PRIMARY).ip()
            } else {
                other.ip()
            }
        } else {
            dest.ip()
        };
        let port = if flags & 0x2 != 0 {
            if dest.port() == other.port() {
                a(PRIMARY).port()
            } else {
                other.port()
            }
        } else {
            dest.port()
        };
        let from = SocketAddr::new(ip, port);
        let through = match self.filtering {
            _ if self.mapping == Mapping::None => true,
            Filtering::EndpointIndependent | Filtering::Unknown => true,
            Filtering::AddressDependent => self.sent.iter().any(|(p, d)| *p == public && d.ip() == from.ip()),
            Filtering::AddressAndPortDependent => self.sent.contains(&(public, from)),
        };
        Ok(through.then_some(BindingResponse {
            mapped: public,
            response_origin: Some(from),
            other_address: Some(other),
        }))
    }

    fn discover(&mut self) -> Result<Behaviour, DiscoveryError> {
        discover(a(PRIMARY), a(LOCAL), |d, c| self.transact(d, c))
    }
}

fn octet(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(v4) => v4.octets()[3],
        IpAddr::V6(v6) => v6.octets()[15],
    }
}

#[test]
fn every_nat_of_the_matrix_is_told_apart() {
    let mappings = [Mapping::EndpointIndependent, Mapping::AddressDependent, Mapping::AddressAndPortDependent];
    let filterings = [Filtering::EndpointIndependent, Filtering::AddressDependent, Filtering::AddressAndPortDependent];
    for m in mappings {
        for f in filterings {
            let b = World::new(m, f).discover().unwrap();
            assert_eq!((b.mapping, b.filtering), (m, f), "{m:?} {f:?}");
            assert_eq!(b.mapped.ip(), IpAddr::from(PUBLIC_IP));
            assert_eq!(b.alternate, Some(a(ALTERNATE)));
            let direct = m == Mapping::EndpointIndependent;
            assert_eq!((b.direct_possible(), b.needs_turn()), (Some(direct), Some(!direct)), "{m:?} {f:?}");
        }
    }
}

#[test]
fn the_tests_go_where_rfc_5780_says() {
    let mut w = World::new(Mapping::AddressAndPortDependent, Filtering::AddressAndPortDependent);
    w.discover().unwrap();
    let (p, alt) = (a(PRIMARY), a(ALTERNATE));
    assert_eq!(
        w.log,
        vec![(p, None), (p, Some(0x6)), (p, Some(0x2)), (SocketAddr::new(alt.ip(), p.port()), None), (alt, None),]
    );
    // A cone NAT needs no third mapping test; full-cone filtering no third filtering test.
    let mut w = World::new(Mapping::EndpointIndependent, Filtering::EndpointIndependent);
    w.discover().unwrap();
    assert_eq!(w.log.len(), 3);
}

#[test]
fn no_nat_is_said_plainly() {
    let b = World::new(Mapping::None, Filtering::EndpointIndependent).discover().unwrap();
    assert_eq!(b.mapping, Mapping::None);
    assert_eq!(b.direct_possible(), Some(true));
    let mut w = World::new(Mapping::None, Filtering::EndpointIndependent);
    w.other = None;
    let b = w.discover().unwrap();
    assert_eq!((b.mapping, b.filtering, b.alternate), (Mapping::None, Filtering::Unknown, None));
}

#[test]
fn a_server_without_an_alternate_address_leaves_the_behaviour_unknown() {
    let mut w = World::new(Mapping::AddressAndPortDependent, Filtering::AddressAndPortDependent);
    w.other = None;
    let b = w.discover().unwrap();
    assert_eq!((b.mapping, b.filtering), (Mapping::Unknown, Filtering::Unknown));
    assert_eq!((b.direct_possible(), b.needs_turn()), (None, None));
    assert_eq!(w.log.len(), 1, "no CHANGE-REQUEST sent to a server that cannot honour it");
    // An OTHER-ADDRESS that shares the primary's IP or port cannot run the tests either.
    for other in ["198.51.100.1:3479", "198.51.100.2:3478"] {
        let mut w = World::new(Mapping::EndpointIndependent, Filtering::EndpointIndependent);
        w.other = Some(a(other));
        assert_eq!(w.discover().unwrap().mapping, Mapping::Unknown, "{other}");
    }
}

#[test]
fn no_answer_and_refusals_are_errors_not_guesses() {
    let e = discover(a(PRIMARY), a(LOCAL), |_, _| Ok(None)).unwrap_err();
    assert_eq!(e, DiscoveryError::NoAnswer(a(PRIMARY)));
    assert!(e.to_string().contains("UDP is blocked"), "{e}");
    let e = discover(a(PRIMARY), a(LOCAL), |_, _| Err(ResponseError::NoMappedAddress)).unwrap_err();
    assert!(matches!(e, DiscoveryError::Server { .. }), "{e}");
    // A mapping test that goes unanswered leaves the mapping unknown, not guessed.
    let mut n = 0;
    let b = discover(a(PRIMARY), a(LOCAL), |d, c| {
        n += 1;
        let r = BindingResponse {
            mapped: a("203.0.113.7:40000"),
            response_origin: None,
            other_address: Some(a(ALTERNATE)),
        };
        Ok((n == 1 || (c.is_none() && d == a(ALTERNATE))).then_some(r))
    })
    .unwrap();
    assert_eq!(b.mapping, Mapping::Unknown);
    assert_eq!(b.filtering, Filtering::AddressAndPortDependent);
}

#[test]
fn the_json_names_are_rfc_4787_terms() {
    assert_eq!(Mapping::AddressAndPortDependent.as_str(), "address-and-port-dependent");
    assert_eq!(Mapping::None.as_str(), "none");
    assert_eq!(Filtering::AddressDependent.as_str(), "address-dependent");
    assert_eq!(Filtering::Unknown.as_str(), "unknown");
}

#[cfg(feature = "server")]
#[test]
fn over_a_real_socket_against_the_server_with_an_alternate_address() {
    // The project's own server on loopback: 127.0.0.1 and 127.0.0.2, no NAT in between.
    let primary = SocketAddr::from(([127, 0, 0, 1], 0));
    let alternate = SocketAddr::from(([127, 0, 0, 2], 0));
    let config = crate::server::ServerConfig {
        binds: vec![primary],
        alternate: Some(alternate),
        threads: 1,
        ..Default::default()
    };
    let server = crate::server::Server::start(
        &config,
        crate::metrics::StunMetrics::register(&prometheus::Registry::new()).unwrap(),
    )
    .unwrap();
    let addr = server.local_addrs()[0];
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = discover_udp(&sock, addr, 2, Duration::from_millis(500)).unwrap();
    assert_eq!(b.mapping, Mapping::None);
    assert_eq!(b.filtering, Filtering::EndpointIndependent);
    assert_eq!(b.mapped, sock.local_addr().unwrap());
    // Nobody there: a clear error after the retries.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let e = discover_udp(&sock, silent.local_addr().unwrap(), 2, Duration::from_millis(100)).unwrap_err();
    assert!(matches!(e, DiscoveryError::NoAnswer(_)), "{e}");
}

/// A STUN server on loopback that ignores the first `drop_first` requests, then answers each
/// with a success (or, with `refuse`, a 500 error).
fn flaky_server(drop_first: usize, refuse: bool) -> SocketAddr {
    use crate::message::{Message, MessageType};
    use crate::writer::MessageWriter;
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let addr = sock.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        for n in 0.. {
            let Ok((len, from)) = sock.recv_from(&mut buf) else { return };
            if n < drop_first {
                continue;
            }
            let txid = Message::parse(&buf[..len]).unwrap().transaction_id();
            let mut out = [0u8; 256];
            let len = if refuse {
                let mut w = MessageWriter::new(&mut out, MessageType::BINDING_ERROR, &txid).unwrap();
                w.error_code(500, "Server Error").unwrap();
                w.finish_with_fingerprint().unwrap()
            } else {
                let mut w = MessageWriter::new(&mut out, MessageType::BINDING_SUCCESS, &txid).unwrap();
                w.xor_address(crate::attr::XOR_MAPPED_ADDRESS, from).unwrap();
                w.finish_with_fingerprint().unwrap()
            };
            let _ = sock.send_to(&out[..len], from);
        }
    });
    addr
}

#[test]
fn a_lost_request_is_sent_again_and_a_refusal_is_not() {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let wait = Duration::from_millis(200);
    let b = discover_udp(&sock, flaky_server(1, false), 3, wait).unwrap();
    assert_eq!((b.mapping, b.filtering), (Mapping::None, Filtering::Unknown));
    assert!(matches!(discover_udp(&sock, flaky_server(3, false), 3, wait), Err(DiscoveryError::NoAnswer(_))));
    let e = discover_udp(&sock, flaky_server(0, true), 3, wait).unwrap_err();
    assert!(matches!(&e, DiscoveryError::Server { error: ResponseError::ServerError { code: 500, .. }, .. }), "{e}");
}

#[test]
fn a_wildcard_socket_learns_its_own_address_on_the_route() {
    // nat::check binds 0.0.0.0: its own address is the route's, so no NAT reads as none.
    let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
    let b = discover_udp(&sock, flaky_server(0, false), 2, Duration::from_millis(500)).unwrap();
    assert_eq!(b.mapping, Mapping::None);
    assert_eq!(b.mapped.port(), sock.local_addr().unwrap().port());
}
