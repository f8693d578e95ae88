//! The rendezvous on the open internet: hellos bound to the server's own names, every TCP
//! connection counted from accept, and clients found behind trusted proxies (PROXY protocol
//! v1/v2, `X-Forwarded-For`) while such headers from anyone else are ignored.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hearth_rendezvous::client::{self, ClientError, Join};
use hearth_rendezvous::protocol::ErrorCode;
use hearth_rendezvous::server::{Config, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::common::{limits, vault, Server};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A TCP connection to `to` from local address `from`.
async fn connect_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(from, 0))?;
    s.connect(to).await
}

/// [`connect_from`], which must succeed.
async fn tcp_from(from: IpAddr, to: SocketAddr) -> TcpStream {
    connect_from(from, to).await.unwrap()
}

/// What header a forwarder puts in front of each connection.
#[derive(Clone, Copy)]
enum Prefix {
    None,
    V1,
    V2,
}

fn proxy_header(kind: Prefix, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (SocketAddr::V4(s), SocketAddr::V4(d)) = (src, dst) else { unreachable!("IPv4 in these tests") };
    match kind {
        Prefix::None => Vec::new(),
        Prefix::V1 => format!("PROXY TCP4 {} {} {} {}\r\n", s.ip(), d.ip(), s.port(), d.port()).into_bytes(),
        Prefix::V2 => {
            let mut v = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
            v.extend_from_slice(&[0x21, 0x11, 0, 12]);
            v.extend_from_slice(&s.ip().octets());
            v.extend_from_slice(&d.ip().octets());
            v.extend_from_slice(&s.port().to_be_bytes());
            v.extend_from_slice(&d.port().to_be_bytes());
            v
        }
    }
}

/// A forwarding proxy on 127.0.0.1: pipes each connection to `upstream` unchanged, after a
/// PROXY header naming the real client when asked to.
async fn forwarder(upstream: SocketAddr, kind: Prefix) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut down, peer)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(mut up) = connect_from(ip("127.0.0.1"), upstream).await else { return };
                if up.write_all(&proxy_header(kind, peer, addr)).await.is_err() {
                    return;
                }
                let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
            });
        }
    });
    addr
}

/// Joins `id` through `url` from `from`.
async fn join_from(url: &str, id: &client::Identity, from: &str) -> Result<client::Connection, ClientError> {
    client::connect_from(url, &Join::Vault(Box::new(id.clone())), Some(ip(from))).await
}

fn refused_http(r: &Result<client::Connection, ClientError>, status: u16) -> bool {
    matches!(r, Err(ClientError::Ws(tokio_tungstenite::tungstenite::Error::Http(resp))) if resp.status().as_u16() == status)
}

/// The status of a raw upgrade request from `from` carrying `extra` header lines; the stream
/// stays open (an admitted connection keeps its slot).
async fn raw_upgrade(from: &str, to: SocketAddr, extra: &str) -> (u16, TcpStream) {
    let mut s = tcp_from(ip(from), to).await;
    let req = format!(
        "GET /v1/signal HTTP/1.1\r\nHost: {to}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = [0u8; 12];
    let status = match tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await {
        Ok(Ok(_)) => std::str::from_utf8(&buf[9..12]).unwrap().parse().unwrap(),
        _ => 0,
    };
    (status, s)
}

#[tokio::test]
async fn a_hello_relayed_through_another_server_is_refused() {
    let s = Server::start(limits()).await;
    let (_, ids) = vault(40, 2);
    // A malicious server at another address passes the real challenge to a device that
    // dialled it and relays the device's answer: the device signed the malicious server's
    // name, which is not one of the real server's names.
    let evil = forwarder(s.addr, Prefix::None).await;
    let relayed = join_from(&format!("ws://{evil}/v1/signal"), &ids[0], "127.0.0.1").await;
    match &relayed {
        // The refusal names the server's own names, so a misconfiguration is easy to see.
        Err(ClientError::Refused { code: ErrorCode::AdmissionFailed, message }) => {
            assert!(message.contains(&s.addr.to_string()), "{message}")
        }
        other => panic!("{other:?}"),
    }
    // Dialled directly, the same device is admitted.
    let direct = join_from(&s.url(), &ids[0], "127.0.0.1").await.unwrap();
    drop(direct);
    s.stop().await;
}

#[tokio::test]
async fn the_configured_public_name_is_what_hellos_must_sign() {
    // The server's public name is the address of the proxy in front of it (as with TLS
    // termination): hellos signed for it are admitted, hellos for the inner address are not.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let inner = l.local_addr().unwrap();
    drop(l);
    let front = forwarder(inner, Prefix::None).await;
    let cfg = Config { limits: limits(), public_hosts: vec![front.to_string()], ..Config::default() };
    let s = Server::start_on(inner, cfg).await;
    let (_, ids) = vault(41, 1);
    join_from(&format!("ws://{front}/v1/signal"), &ids[0], "127.0.0.1").await.unwrap();
    let direct = join_from(&s.url(), &ids[0], "127.0.0.1").await;
    assert!(matches!(&direct, Err(ClientError::Refused { code: ErrorCode::AdmissionFailed, .. })), "{direct:?}");
    s.stop().await;
}

#[tokio::test]
async fn plain_http_connections_count_from_accept() {
    let lim = Limits { max_connections_per_ip: 4, handshakes_per_ip_per_sec: 1000, ..limits() };
    let s = Server::start(lim).await;
    let (_, ids) = vault(42, 2);
    // Four idle keep-alive-style connections fill 127.0.0.2's budget.
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(tcp_from(ip("127.0.0.2"), s.addr).await);
    }
    // The fifth is answered 429 and closed without being read.
    let mut fifth = tcp_from(ip("127.0.0.2"), s.addr).await;
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), fifth.read_to_string(&mut answer)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer:?}");
    let device = join_from(&s.url(), &ids[0], "127.0.0.2").await;
    assert!(refused_http(&device, 429), "{device:?}");
    // Another address is unaffected.
    let _other = join_from(&s.url(), &ids[1], "127.0.0.3").await.unwrap();
    assert_eq!(s.metric("hearth_rv_connections", None), 5, "every open TCP connection is counted");
    // Closing the idle connections gives the budget back.
    drop(idle);
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match join_from(&s.url(), &ids[0], "127.0.0.2").await {
            Ok(_) => break,
            Err(e) => assert!(tokio::time::Instant::now() < until, "budget not returned: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.stop().await;
}

async fn per_client_behind(kind: Prefix) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let inner = l.local_addr().unwrap();
    drop(l);
    let proxy = forwarder(inner, kind).await;
    let lim = Limits { max_connections_per_ip: 2, handshakes_per_ip_per_sec: 1000, ..limits() };
    let cfg = Config {
        limits: lim,
        public_hosts: vec![proxy.to_string()],
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        ..Config::default()
    };
    let s = Server::start_on(inner, cfg).await;
    let url = format!("ws://{proxy}/v1/signal");
    let (_, ids) = vault(43, 4);
    // Every connection arrives from the proxy's address; each client gets its own budget.
    let _a0 = join_from(&url, &ids[0], "127.0.0.2").await.unwrap();
    let _a1 = join_from(&url, &ids[1], "127.0.0.2").await.unwrap();
    let a2 = join_from(&url, &ids[2], "127.0.0.2").await;
    assert!(a2.is_err(), "third connection of one client behind the proxy: {a2:?}");
    let _b = join_from(&url, &ids[3], "127.0.0.3").await.unwrap();
    // A client that is not a trusted proxy cannot claim an address with a header.
    let mut direct = tcp_from(ip("127.0.0.4"), inner).await;
    direct.write_all(&proxy_header(Prefix::V1, "127.0.0.9:1".parse().unwrap(), inner)).await.unwrap();
    direct.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), direct.read_to_string(&mut answer)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "a PROXY header from a stranger is not believed: {answer:?}");
    s.stop().await;
}

#[tokio::test]
async fn limits_apply_per_client_behind_a_proxy_protocol_v1_proxy() {
    per_client_behind(Prefix::V1).await;
}

#[tokio::test]
async fn limits_apply_per_client_behind_a_proxy_protocol_v2_proxy() {
    per_client_behind(Prefix::V2).await;
}

#[tokio::test]
async fn forwarded_for_is_believed_from_trusted_proxies_only() {
    let lim = Limits { max_connections_per_ip: 1, handshakes_per_ip_per_sec: 1000, ..limits() };
    let cfg = Config { limits: lim, trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()], ..Config::default() };
    let s = Server::start_with(cfg).await;
    // From the trusted proxy: each forwarded client has its own budget of one.
    let (st, _c1) = raw_upgrade("127.0.0.1", s.addr, "X-Forwarded-For: 6.6.6.6, 127.0.0.50\r\n").await;
    assert_eq!(st, 101);
    let (st, _c2) = raw_upgrade("127.0.0.1", s.addr, "X-Forwarded-For: 127.0.0.50\r\n").await;
    assert_eq!(st, 429, "same forwarded client, over its budget");
    let (st, _c3) = raw_upgrade("127.0.0.1", s.addr, "Forwarded: for=127.0.0.51\r\n").await;
    assert_eq!(st, 101, "another forwarded client");
    // From anyone else the header is ignored: 127.0.0.2 is one client whatever it claims.
    let (st, _d1) = raw_upgrade("127.0.0.2", s.addr, "X-Forwarded-For: 127.0.0.60\r\n").await;
    assert_eq!(st, 101);
    let (st, _d2) = raw_upgrade("127.0.0.2", s.addr, "X-Forwarded-For: 127.0.0.61\r\n").await;
    assert!(st == 429 || st == 0, "refused at accept, before any header is read: {st}");
    s.stop().await;
}

async fn invite_from(s: &Server, room: u8, from: &str) -> Result<client::Connection, ClientError> {
    client::connect_from(&s.url(), &Join::Invite([room; 32]), Some(ip(from))).await
}

#[tokio::test]
async fn pairing_rooms_end_at_their_ttl_and_stay_closed() {
    let s = Server::start(Limits { invite_ttl: Duration::from_secs(1), ..limits() }).await;
    let mut a = invite_from(&s, 1, "127.0.0.1").await.unwrap();
    let mut b = invite_from(&s, 1, "127.0.0.1").await.unwrap();
    // Both members are removed when the window ends, whatever they do.
    for c in [&mut a, &mut b] {
        let end = loop {
            match tokio::time::timeout(Duration::from_secs(5), c.next()).await.expect("removed in time") {
                Err(e) => break e,
                Ok(_) => continue,
            }
        };
        assert!(matches!(end, ClientError::Closed { .. }), "{end:?}");
    }
    // The emptied room cannot be opened again within its window.
    let again = invite_from(&s, 1, "127.0.0.1").await;
    assert!(matches!(&again, Err(ClientError::Refused { code: ErrorCode::AdmissionFailed, .. })), "{again:?}");
    s.stop().await;
}

#[tokio::test]
async fn pairing_rooms_per_client_are_capped() {
    let s = Server::start(Limits { invite_rooms_per_ip: 2, ..limits() }).await;
    let _r1 = invite_from(&s, 1, "127.0.0.2").await.unwrap();
    let _r2 = invite_from(&s, 2, "127.0.0.2").await.unwrap();
    let r3 = invite_from(&s, 3, "127.0.0.2").await;
    assert!(matches!(&r3, Err(ClientError::Refused { code: ErrorCode::Busy, .. })), "{r3:?}");
    // Joining a room another client opened is not opening one; other clients are unaffected.
    let _j = invite_from(&s, 1, "127.0.0.3").await.unwrap();
    let _o = invite_from(&s, 3, "127.0.0.3").await.unwrap();
    s.stop().await;
}

#[tokio::test]
async fn pairing_rooms_relay_a_bounded_volume() {
    let s = Server::start(Limits { invite_relay_bytes: 4096, ..limits() }).await;
    let mut a = invite_from(&s, 7, "127.0.0.1").await.unwrap();
    let mut b = invite_from(&s, 7, "127.0.0.1").await.unwrap();
    let payload = vec![0x5a; 1000];
    // Ten 1000-byte signals (about 1.4 KiB each on the wire): the first two pass.
    for _ in 0..10 {
        a.signal(b.device, &payload).await.unwrap();
    }
    let mut delivered = 0;
    while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(500), b.next()).await {
        if matches!(ev, client::Event::Signal { .. }) {
            delivered += 1;
        }
    }
    assert_eq!(delivered, 2);
    let mut refused = 0;
    while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(200), a.next()).await {
        if matches!(ev, client::Event::Error { code: ErrorCode::RateLimited, .. }) {
            refused += 1;
        }
    }
    assert_eq!(refused, 8, "each refused signal is answered");
    s.stop().await;
}

#[tokio::test]
async fn revocations_are_relearnt_from_the_devices_after_a_restart() {
    use hearth_proto::membership::{MembershipBody, MembershipRecord, Revocation};
    let (root, mut ids) = vault(50, 2);
    let vault_id = hearth_proto::vault_id_of(&root.verifying_key());
    let lost = ids[1].record.body.clone();
    let hearth_proto::membership::MembershipBody::Enroll(e) = lost else { unreachable!() };
    let rec = MembershipRecord::sign(
        &root,
        MembershipBody::Revoke(Revocation {
            vault_id,
            device_id: e.device_id,
            last_seq: 0,
            last_hash: [0; 32],
            at_ms: 0,
        }),
    );
    // The server restarted: it holds nothing, and the revoked device gets in first.
    let s = Server::start(limits()).await;
    let mut revoked = join_from(&s.url(), &ids[1], "127.0.0.1").await.unwrap();
    // An honest device joins, presenting the revocations it holds: the revoked one is closed
    // and stays out.
    ids[0].revocations = vec![rec];
    let _honest = join_from(&s.url(), &ids[0], "127.0.0.1").await.unwrap();
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(5), revoked.next()).await.expect("closed in time") {
            Err(e) => break e,
            Ok(_) => continue,
        }
    };
    assert!(matches!(&end, ClientError::Closed { code: 1008, .. }), "{end:?}");
    let again = join_from(&s.url(), &ids[1], "127.0.0.1").await;
    assert!(matches!(&again, Err(ClientError::Refused { code: ErrorCode::Revoked, .. })), "{again:?}");
    // Presenting it again (every join does) is not news: nothing changes, no error.
    let mut again_honest = join_from(&s.url(), &ids[0], "127.0.0.1").await.unwrap();
    assert!(tokio::time::timeout(Duration::from_millis(300), again_honest.next()).await.is_err(), "no error reply");
    s.stop().await;
}
