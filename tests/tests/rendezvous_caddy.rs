//! The rendezvous behind the real Caddy (Debian package), as docs/OPERATIONS.md recommends:
//! with `--trusted-proxy` each client behind Caddy has its own connection budget, a client
//! cannot claim another address with its own `X-Forwarded-For`, and hellos are signed for
//! Caddy's public name. Without `--trusted-proxy` (the control) one client locks out the rest.

use std::net::SocketAddr;
use std::time::Duration;

use hearth_e2e::caddy::behind_caddy;
use hearth_e2e::rendezvous_identity;
use hearth_rendezvous::client::{self, ClientError, Connection, Event, Join};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn join_from(url: &str, id: u8, from: &str) -> Result<Connection, ClientError> {
    let j = Join::Vault(Box::new(rendezvous_identity(60, id)));
    client::connect_from(url, &j, Some(from.parse().unwrap())).await
}

/// A raw upgrade through Caddy from `from` with a forged `X-Forwarded-For`; its status.
async fn forged_upgrade(from: &str, to: SocketAddr, claim: &str) -> (u16, tokio::net::TcpStream) {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(from.parse().unwrap(), 0)).unwrap();
    let mut s = s.connect(to).await.unwrap();
    let req = format!(
        "GET /v1/signal HTTP/1.1\r\nHost: {to}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Forwarded-For: {claim}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf)).await.unwrap().unwrap();
    (std::str::from_utf8(&buf[9..12]).unwrap().parse().unwrap(), s)
}

#[test]
fn behind_caddy_limits_apply_per_client() {
    let (rv, cd) = behind_caddy(
        &[
            "--no-stun",
            "--trusted-proxy",
            "127.0.0.1/32",
            "--max-connections-per-ip",
            "2",
            "--handshakes-per-ip",
            "1000",
        ],
        false,
    );
    let url = format!("ws://{}/v1/signal", cd.addr);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Client 127.0.0.2: two devices fill its budget, a third is refused.
        let mut a0 = join_from(&url, 0, "127.0.0.2").await.unwrap();
        let _a1 = join_from(&url, 1, "127.0.0.2").await.unwrap();
        let a2 = join_from(&url, 2, "127.0.0.2").await;
        assert!(matches!(&a2, Err(ClientError::Ws(_))), "{a2:?}");
        // Its own X-Forwarded-For does not buy it another budget.
        let (status, _s) = forged_upgrade("127.0.0.2", cd.addr, "127.0.0.77").await;
        assert_eq!(status, 429, "a forged header is not believed");
        // Client 127.0.0.3 is not affected, and devices relay through Caddy.
        let mut b = join_from(&url, 3, "127.0.0.3").await.unwrap();
        a0.signal(b.device, b"via caddy").await.unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(5), b.next()).await.unwrap().unwrap() {
                Event::Signal { payload, .. } => break assert_eq!(payload, b"via caddy"),
                _ => continue,
            }
        }
        // The device dialled Caddy's name; dialling the rendezvous directly is another name.
        let direct = client::connect(&rv.url(), &Join::Vault(Box::new(rendezvous_identity(60, 5)))).await;
        assert!(matches!(&direct, Err(ClientError::Refused { .. })), "{direct:?}");
    });
}

#[test]
fn without_trusted_proxy_one_client_behind_caddy_locks_out_the_rest() {
    // The control: the same setup without --trusted-proxy counts everyone as Caddy.
    let (_rv, cd) = behind_caddy(&["--no-stun", "--max-connections-per-ip", "2", "--handshakes-per-ip", "1000"], false);
    let url = format!("ws://{}/v1/signal", cd.addr);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let _a0 = join_from(&url, 0, "127.0.0.2").await.unwrap();
        let _a1 = join_from(&url, 1, "127.0.0.2").await.unwrap();
        let b = join_from(&url, 3, "127.0.0.3").await;
        assert!(b.is_err(), "everyone shares Caddy's budget: {b:?}");
    });
}

#[test]
fn devices_join_through_caddy_over_tls_with_its_private_ca() {
    // A VPS behind Caddy offers only TLS: the client verifies the certificate (here from
    // Caddy's local CA, trusted as a private CA) and signs its hello for Caddy's name.
    let (_rv, cd) = behind_caddy(&["--no-stun", "--trusted-proxy", "127.0.0.1/32"], true);
    let root = cd.root.clone().expect("caddy's root");
    let url = format!("wss://{}/v1/signal", cd.public);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let tls = hearth_rendezvous::tls::client_config(Some(&root)).unwrap();
        let opts = client::Options { from: None, tls: Some(tls) };
        let join = |id| Join::Vault(Box::new(rendezvous_identity(61, id)));
        // Caddy issues its certificate a moment after it listens: retry briefly.
        let mut a = None;
        for _ in 0..50 {
            match client::connect_with(&url, &join(0), &opts).await {
                Ok(c) => {
                    a = Some(c);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let mut a = a.expect("joined over TLS");
        let mut b = client::connect_with(&url, &join(1), &opts).await.unwrap();
        a.signal(b.device, b"over tls").await.unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(5), b.next()).await.unwrap().unwrap() {
                Event::Signal { payload, .. } => break assert_eq!(payload, b"over tls"),
                _ => continue,
            }
        }
        // Without the private CA the certificate is refused: the public roots do not vouch for it.
        let refused = client::connect(&url, &join(2)).await;
        let e = refused.expect_err("an untrusted certificate is refused").to_string();
        assert!(e.contains("certificate"), "{e}");
    });
}
