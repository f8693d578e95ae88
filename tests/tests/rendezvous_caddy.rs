//! The rendezvous behind the real Caddy (Debian package), as docs/OPERATIONS.md recommends:
//! with `--trusted-proxy` each client behind Caddy has its own connection budget, a client
//! cannot claim another address with its own `X-Forwarded-For`, and hellos are signed for
//! Caddy's public name. Without `--trusted-proxy` (the control) one client locks out the rest.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hearth_e2e::rendezvous::{free_port, Rv};
use hearth_e2e::rendezvous_identity;
use hearth_rendezvous::client::{self, ClientError, Connection, Event, Join};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Caddy {
    child: std::process::Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Caddy on 127.0.0.1:`port`, reverse-proxying everything to `upstream`; `None` if it
/// exits first (the port, free a moment ago, was taken meanwhile).
fn caddy(upstream: SocketAddr, port: u16) -> Option<Caddy> {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("Caddyfile");
    std::fs::write(
        &conf,
        format!("{{\n  admin off\n  auto_https off\n}}\nhttp://127.0.0.1:{port} {{\n  reverse_proxy {upstream}\n}}\n"),
    )
    .unwrap();
    let child = Command::new("caddy")
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&conf)
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path())
        .env("XDG_CONFIG_HOME", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("caddy (scripts/test installs the Debian package)");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut c = Caddy { child, addr, _dir: dir };
    let until = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < until, "caddy did not start");
        if c.child.try_wait().ok().flatten().is_some() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(c)
}

/// A rendezvous started with `flags` plus `--public-host` naming a Caddy in front of it.
fn behind_caddy(flags: &[&str]) -> (Rv, Caddy) {
    for _ in 0..5 {
        // Caddy's port is chosen first: the rendezvous must know its public name.
        let port = free_port();
        let public = format!("127.0.0.1:{port}");
        let mut args = flags.to_vec();
        args.extend(["--public-host", &public]);
        let rv = Rv::start(&args, None);
        if let Some(c) = caddy(rv.http, port) {
            return (rv, c);
        }
    }
    panic!("no free port for caddy in five tries")
}

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
    let (rv, cd) = behind_caddy(&[
        "--no-stun",
        "--trusted-proxy",
        "127.0.0.1/32",
        "--max-connections-per-ip",
        "2",
        "--handshakes-per-ip",
        "1000",
    ]);
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
    let (_rv, cd) = behind_caddy(&["--no-stun", "--max-connections-per-ip", "2", "--handshakes-per-ip", "1000"]);
    let url = format!("ws://{}/v1/signal", cd.addr);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let _a0 = join_from(&url, 0, "127.0.0.2").await.unwrap();
        let _a1 = join_from(&url, 1, "127.0.0.2").await.unwrap();
        let b = join_from(&url, 3, "127.0.0.3").await;
        assert!(b.is_err(), "everyone shares Caddy's budget: {b:?}");
    });
}
