//! `hearth-rendezvous healthcheck`: asks a running server's `/healthz` over loopback, for a
//! container's HEALTHCHECK (the runtime image has no shell and no curl).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Where a server listening on `listen` answers from this host: its own address, or loopback
/// in place of an unspecified one (`0.0.0.0`, `[::]`).
pub fn local_target(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::from((Ipv4Addr::LOCALHOST, listen.port())),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::from((Ipv6Addr::LOCALHOST, listen.port())),
        _ => listen,
    }
}

/// Why a health check failed.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The server could not be reached or did not answer in time.
    #[error("{0}: {1}")]
    Io(SocketAddr, std::io::Error),
    /// It answered something other than 200.
    #[error("{0} answered {1:?}")]
    Status(SocketAddr, String),
}

/// GETs `/healthz` from `addr` within `timeout`: Ok when the server answers 200.
pub fn check(addr: SocketAddr, timeout: Duration) -> Result<(), HealthError> {
    let io = |e| HealthError::Io(addr, e);
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.set_write_timeout(Some(timeout)).map_err(io)?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").map_err(io)?;
    let mut head = Vec::new();
    // The status line is all that matters; a server never sends more than a few bytes here.
    s.take(256).read_to_end(&mut head).map_err(io)?;
    let text = String::from_utf8_lossy(&head);
    let status = text.lines().next().unwrap_or_default().to_owned();
    if status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        Err(HealthError::Status(addr, status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listen_addresses_are_checked_on_loopback() {
        assert_eq!(local_target("0.0.0.0:8080".parse().unwrap()), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(local_target("[::]:8080".parse().unwrap()), "[::1]:8080".parse().unwrap());
        assert_eq!(local_target("10.0.0.5:81".parse().unwrap()), "10.0.0.5:81".parse().unwrap());
    }

    fn serve_once(reply: &'static [u8]) -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf);
                let _ = s.write_all(reply);
            }
        });
        addr
    }

    #[test]
    fn only_a_200_is_healthy() {
        let ok = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n");
        assert!(check(ok, Duration::from_secs(2)).is_ok());
        let bad = serve_once(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert!(matches!(check(bad, Duration::from_secs(2)), Err(HealthError::Status(_, s)) if s.contains("503")));
        let garbage = serve_once(b"\xff\xfe");
        assert!(matches!(check(garbage, Duration::from_secs(2)), Err(HealthError::Status(..))));
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        assert!(matches!(check(closed, Duration::from_secs(2)), Err(HealthError::Io(..))));
    }
}
