//! From `accept` to the HTTP layer: every TCP connection is counted against the total and its
//! client's caps from the moment it is accepted (plain HTTP keep-alives too), the client is
//! found behind trusted proxies, and refusals cost one non-blocking write.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::Router;
use hearth_stun::rate_limit::SourceKey;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::proxy::{self, Header};
use super::App;

/// How long a client may take to send its HTTP request headers (slow-loris bound); also the
/// bound for a trusted proxy's PROXY header.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// File descriptors kept free of connections: listeners, STUN sockets, Redis, the metrics
/// listener and its clients, logs. Without this margin a flood reaches EMFILE and `accept`
/// fails for everyone, admitted devices' reconnects included.
pub(crate) const FD_RESERVE: u64 = 100;

/// Why a connection is refused: metric label, HTTP status, message.
pub(crate) type Refusal = (&'static str, StatusCode, &'static str);

/// One TCP connection's place in the total, and (once its client is known) in that client's
/// per-source count; released when dropped.
pub(crate) struct Slot {
    app: Arc<App>,
    source: Option<SourceKey>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.app.open.fetch_sub(1, Ordering::Relaxed);
        self.app.metrics.connections.dec();
        if let Some(s) = self.source {
            super::hub::lock(&self.app.per_ip).release(s);
        }
    }
}

impl Slot {
    /// The connection's client is `ip`: apply its handshake rate and connection cap.
    pub(crate) fn bind_client(&mut self, ip: IpAddr) -> Result<(), Refusal> {
        if self.source.is_some() {
            return Ok(());
        }
        let source = SourceKey::from(ip);
        self.app.check_rate(source)?;
        let mut per_ip = super::hub::lock(&self.app.per_ip);
        if !per_ip.has_room(source) {
            return Err(("per_ip", StatusCode::TOO_MANY_REQUESTS, "too many connections from your address"));
        }
        per_ip.take(source);
        self.source = Some(source);
        Ok(())
    }
}

impl App {
    fn check_rate(&self, source: SourceKey) -> Result<(), Refusal> {
        if super::hub::lock(&self.handshakes).allow(source, Instant::now()) {
            Ok(())
        } else {
            Err((
                "handshake_rate",
                StatusCode::TOO_MANY_REQUESTS,
                "too many new connections from your address; slow down",
            ))
        }
    }

    /// A slot for a new connection; `client` is `None` for a trusted proxy's connection,
    /// whose client is learnt later.
    pub(crate) fn take_slot(self: &Arc<Self>, client: Option<IpAddr>) -> Result<Slot, Refusal> {
        if self.draining.load(Ordering::Relaxed) {
            return Err(("draining", StatusCode::SERVICE_UNAVAILABLE, "server is shutting down"));
        }
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.max_open {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err((
                "capacity",
                StatusCode::SERVICE_UNAVAILABLE,
                "server is at its connection limit; try again later",
            ));
        }
        self.metrics.connections.inc();
        let mut slot = Slot { app: Arc::clone(self), source: None };
        if let Some(ip) = client {
            slot.bind_client(ip)?;
        }
        Ok(slot)
    }
}

/// What the HTTP layer knows about a connection (a request extension).
#[derive(Clone)]
pub(crate) struct Accepted {
    /// The client address is final (a direct peer, or from a PROXY header); otherwise the
    /// peer is a trusted proxy and the request's forwarding headers name the client.
    pub(crate) resolved: bool,
    /// The connection's slot, until an upgrade takes it along.
    pub(crate) slot: Arc<Mutex<Option<Slot>>>,
}

/// The soft limit on open files (`RLIMIT_NOFILE`), read from `/proc/self/limits`.
pub(crate) fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.trim_start_matches("Max open files").split_whitespace().next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

/// The connection cap: `configured`, lowered to keep [`FD_RESERVE`] descriptors free.
pub(crate) fn connection_cap(configured: usize) -> u64 {
    let limit = open_files_limit();
    let cap = match limit {
        Some(l) => (configured as u64).min(l.saturating_sub(FD_RESERVE)),
        None => configured as u64,
    };
    match limit {
        Some(l) if cap < configured as u64 => {
            tracing::warn!(open_files = l, max_connections = cap, "the open-files limit lowers the connection cap")
        }
        Some(l) => tracing::info!(open_files = l, max_connections = cap, "connection cap"),
        None => tracing::info!(max_connections = cap, "connection cap (open-files limit unknown)"),
    }
    cap
}

/// Counts a refused connection and answers it without reading it: one non-blocking write,
/// then close.
fn refuse_raw(app: &App, stream: &TcpStream, (label, status, msg): Refusal) {
    app.metrics.rejected.with_label_values(&[label]).inc();
    let reason = status.canonical_reason().unwrap_or("");
    let text = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{msg}\n",
        status.as_u16(),
        msg.len() + 1
    );
    let _ = stream.try_write(text.as_bytes());
}

/// Reads a trusted proxy's PROXY header if the connection starts with one, consuming exactly
/// its bytes; `None` if there is none or it names no client.
async fn read_proxy_header(stream: &mut TcpStream) -> std::io::Result<Option<SocketAddr>> {
    let mut buf = vec![0u8; proxy::V2_MAX];
    let mut seen = 0;
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        match proxy::parse_header(&buf[..n]) {
            Ok(Header::Absent) => return Ok(None),
            Ok(Header::Proxy { len, source }) => {
                stream.read_exact(&mut buf[..len]).await?;
                return Ok(source);
            }
            Ok(Header::NeedMore) => {
                // `peek` returns at once while any byte waits: pause until more arrive.
                if n == seen {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                seen = n;
            }
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        }
    }
}

/// Accepts TCP connections and serves HTTP/1.1 on each until `stop` turns true; then asks
/// open HTTP connections to finish their request and close. Upgraded WebSockets are not
/// HTTP connections any more: the hub drains them.
pub(crate) async fn accept_loop(listener: TcpListener, router: Router, app: Arc<App>, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let trusted = app.trusted.contains(peer.ip());
        let slot = match app.take_slot((!trusted).then_some(peer.ip())) {
            Ok(s) => s,
            Err(r) => {
                refuse_raw(&app, &stream, r);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(stream, peer, trusted, slot, router.clone(), app.clone(), stop.clone()));
    }
}

/// Serves one accepted connection.
async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    trusted: bool,
    mut slot: Slot,
    router: Router,
    app: Arc<App>,
    mut stop: watch::Receiver<bool>,
) {
    let mut client = peer;
    let mut resolved = !trusted;
    if trusted {
        match tokio::time::timeout(HEADER_TIMEOUT, read_proxy_header(&mut stream)).await {
            Ok(Ok(Some(source))) => {
                if let Err(r) = slot.bind_client(source.ip()) {
                    return refuse_raw(&app, &stream, r);
                }
                (client, resolved) = (source, true);
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "bad PROXY header from a trusted proxy");
                app.metrics.rejected.with_label_values(&["bad_proxy_header"]).inc();
                return;
            }
            Err(_) => return,
        }
    }
    let accepted = Accepted { resolved, slot: Arc::new(Mutex::new(Some(slot))) };
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(client));
        req.extensions_mut().insert(accepted.clone());
        tower_service::Service::call(&mut router.clone(), req)
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_open_files_limit() {
        let l = open_files_limit().expect("Linux has /proc/self/limits");
        assert!(l >= 64, "{l}");
    }
}
