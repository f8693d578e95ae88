//! The UDP server: SO_REUSEPORT socket groups, one blocking thread per socket, shared
//! per-source rate limiting, metrics, and graceful shutdown.
//!
//! All protocol decisions are made by a [`DatagramService`] (the sans-IO
//! [`BindingHandler`], or [`Echo`] for the benchmark's baseline), so the raw echo and the
//! STUN server measure exactly the same socket path.

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::binding::{AlternatePair, BindingConfig, BindingHandler, DropReason, Outcome, ReplyKind, MAX_RESPONSE_LEN};
use crate::metrics::{LocalCounts, StunMetrics};
use crate::mmsg::{RecvBatch, SendBatch};
use crate::rate_limit::{RateLimiter, SourceKey};

/// How often an idle thread wakes to check for shutdown and flush counters.
const IDLE_TICK: Duration = Duration::from_millis(100);
/// Counters are flushed to Prometheus after this many datagrams.
const FLUSH_EVERY: u64 = 256;
/// Rate-limiter shards (a power of two), so threads rarely contend on one lock.
const LIMITER_SHARDS: usize = 16;

/// Decides what to answer to one datagram. Implemented by the STUN handler and by [`Echo`].
pub trait DatagramService: Send + Sync + 'static {
    /// Handles `datagram` from `from` received on `local`, writing any reply into `out`.
    fn serve(&self, from: SocketAddr, local: SocketAddr, datagram: &[u8], out: &mut [u8]) -> Outcome;
}

impl DatagramService for BindingHandler {
    fn serve(&self, from: SocketAddr, local: SocketAddr, datagram: &[u8], out: &mut [u8]) -> Outcome {
        self.handle(from, local, datagram, out)
    }
}

/// Sends every datagram back unchanged: the benchmark's physical limit of the socket path.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

impl DatagramService for Echo {
    fn serve(&self, _from: SocketAddr, local: SocketAddr, datagram: &[u8], out: &mut [u8]) -> Outcome {
        let len = datagram.len().min(out.len());
        out[..len].copy_from_slice(&datagram[..len]);
        Outcome::Reply { len, from: local, kind: ReplyKind::Success }
    }
}

/// Per-source rate limit settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second per source IP (IPv6: per /64).
    pub per_second: u32,
    /// Burst size.
    pub burst: u32,
    /// Most sources tracked at once.
    pub max_sources: usize,
}

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Addresses to listen on (port 0 picks a free port).
    pub binds: Vec<SocketAddr>,
    /// RFC 5780 alternate address; pairs with the first bind of the same family.
    pub alternate: Option<SocketAddr>,
    /// Sockets (and threads) per address, sharing it with SO_REUSEPORT.
    pub threads: usize,
    /// Per-source limit; `None` disables it.
    pub rate_limit: Option<RateLimit>,
    /// SOFTWARE attribute text.
    pub software: Option<String>,
    /// Ignore bind failures of addresses whose family the host lacks (for the v4+v6 defaults).
    pub tolerate_missing_family: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            binds: vec![SocketAddr::from(([0, 0, 0, 0], 3478))],
            alternate: None,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            rate_limit: Some(RateLimit { per_second: 100, burst: 200, max_sources: 100_000 }),
            software: Some(concat!("hearth-stun/", env!("CARGO_PKG_VERSION")).to_owned()),
            tolerate_missing_family: false,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A socket could not be created or bound.
    #[error("cannot bind {addr}: {error}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error (in the message, not a `source`: a chain printed whole shows it once).
        error: io::Error,
    },
    /// The alternate address is unusable.
    #[error(transparent)]
    Alternate(#[from] crate::binding::AlternateError),
    /// `--alternate` was given but no bind address has its address family.
    #[error("--alternate {0} needs a --bind address of the same IP family")]
    NoPrimaryForAlternate(SocketAddr),
    /// Nothing could be bound.
    #[error("no address to listen on")]
    NothingBound,
    /// A thread could not be spawned.
    #[error("cannot spawn server thread: {0}")]
    Spawn(io::Error),
}

/// Rate limiter shards shared by all threads (the sans-IO limiter behind locks).
struct SharedLimiter {
    shards: Vec<Mutex<RateLimiter>>,
}

impl SharedLimiter {
    fn new(cfg: RateLimit) -> Self {
        let now = Instant::now();
        let per_shard = (cfg.max_sources / LIMITER_SHARDS).max(1);
        let shards = (0..LIMITER_SHARDS)
            .map(|_| Mutex::new(RateLimiter::new(cfg.per_second, cfg.burst, per_shard, now)))
            .collect();
        Self { shards }
    }

    fn allow(&self, from: SocketAddr, now: Instant) -> bool {
        let key = SourceKey::from(from.ip());
        let h = match key {
            SourceKey::V4(v) => u64::from(v.wrapping_mul(0x9E37_79B9)),
            SourceKey::V6Prefix(p) => p.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        };
        let shard = &self.shards[(h >> 28) as usize % LIMITER_SHARDS];
        // A poisoned shard only means another thread panicked mid-update; the bucket data is
        // still usable, so keep limiting rather than failing open or crashing.
        let mut guard = shard.lock().unwrap_or_else(|p| p.into_inner());
        guard.allow(key, now)
    }
}

/// State shared by every server thread.
struct Shared<S> {
    service: S,
    metrics: StunMetrics,
    limiter: Option<SharedLimiter>,
    /// One socket per local address, used when a reply must leave from another address.
    senders: HashMap<SocketAddr, Arc<UdpSocket>>,
    stop: AtomicBool,
}

/// A running server. Dropping it stops the threads; [`Server::shutdown`] also waits for them.
pub struct Server {
    shared: Arc<dyn StopFlag>,
    threads: Vec<JoinHandle<()>>,
    local_addrs: Vec<SocketAddr>,
}

/// Object-safe view of the stop flag so `Server` need not be generic.
trait StopFlag: Send + Sync {
    fn stop(&self);
}

impl<S: DatagramService> StopFlag for Shared<S> {
    fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("local_addrs", &self.local_addrs).finish()
    }
}

impl Server {
    /// Starts the STUN Binding server described by `config`.
    pub fn start(config: &ServerConfig, metrics: StunMetrics) -> Result<Self, ServerError> {
        let (groups, alternate) = bind_all(config)?;
        let handler = BindingHandler::new(BindingConfig { software: config.software.clone(), alternate });
        Self::spawn(groups, handler, metrics, config.rate_limit)
    }

    /// Starts `service` on `config.binds` (used for the echo baseline).
    pub fn start_service<S: DatagramService>(
        config: &ServerConfig,
        service: S,
        metrics: StunMetrics,
    ) -> Result<Self, ServerError> {
        let (groups, _) = bind_all(&ServerConfig { alternate: None, ..config.clone() })?;
        Self::spawn(groups, service, metrics, config.rate_limit)
    }

    fn spawn<S: DatagramService>(
        groups: Vec<Vec<UdpSocket>>,
        service: S,
        metrics: StunMetrics,
        rate_limit: Option<RateLimit>,
    ) -> Result<Self, ServerError> {
        let mut senders = HashMap::new();
        let mut local_addrs = Vec::new();
        for g in &groups {
            if let Some(first) = g.first() {
                let addr = first.local_addr().map_err(ServerError::Spawn)?;
                let clone = first.try_clone().map_err(ServerError::Spawn)?;
                senders.insert(addr, Arc::new(clone));
                local_addrs.push(addr);
            }
        }
        let shared = Arc::new(Shared {
            service,
            metrics,
            limiter: rate_limit.map(SharedLimiter::new),
            senders,
            stop: AtomicBool::new(false),
        });
        let mut threads = Vec::new();
        for sock in groups.into_iter().flatten() {
            let local = sock.local_addr().map_err(ServerError::Spawn)?;
            let sh = Arc::clone(&shared);
            let t = std::thread::Builder::new()
                .name(format!("stun {local}"))
                .spawn(move || serve_socket(&sh, &sock, local))
                .map_err(ServerError::Spawn)?;
            threads.push(t);
        }
        tracing::info!(addrs = ?local_addrs, threads = threads.len(), "STUN server listening");
        Ok(Self { shared, threads, local_addrs })
    }

    /// The addresses actually bound (ports resolved), one per configured address.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Stops every thread and waits for them (at most one idle tick).
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.shared.stop();
        for t in self.threads.drain(..) {
            if t.join().is_err() {
                tracing::error!("a STUN server thread panicked");
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// The per-socket loop: read a batch, limit, handle, queue replies, send the batch; flush
/// counters now and then.
fn serve_socket<S: DatagramService>(shared: &Shared<S>, sock: &UdpSocket, local: SocketAddr) {
    let mut rx = RecvBatch::default();
    let mut tx = SendBatch::default();
    let mut counts = LocalCounts::default();
    while !shared.stop.load(Ordering::Relaxed) {
        match rx.recv(sock) {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                counts.flush(&shared.metrics);
                continue;
            }
            // ICMP port-unreachable from an earlier reply surfaces here on Linux; harmless.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(e) => {
                counts.recv_errors += 1;
                tracing::debug!(error = %e, "recv failed");
                continue;
            }
        }
        let now = Instant::now();
        for i in 0..rx.len() {
            let Some((datagram, from)) = rx.get(i) else { break };
            counts.datagrams += 1;
            let Some(from) = from else {
                counts.drop(DropReason::NotStun);
                continue;
            };
            if let Some(limiter) = &shared.limiter {
                if !limiter.allow(from, now) {
                    counts.drop(DropReason::RateLimited);
                    continue;
                }
            }
            let Some(out) = tx.next_buf() else { break };
            match shared.service.serve(from, local, datagram, &mut out[..MAX_RESPONSE_LEN]) {
                Outcome::Reply { len, from: origin, kind } if origin == local => {
                    tx.push(len, Some(from));
                    counts.reply(kind);
                }
                Outcome::Reply { len, from: origin, kind } => {
                    // RFC 5780: this reply must leave from another of our addresses.
                    let sent = shared.senders.get(&origin).map(|s| s.send_to(&out[..len], from));
                    match sent {
                        Some(Ok(_)) => counts.reply(kind),
                        _ => counts.send_errors += 1,
                    }
                }
                Outcome::Drop(reason) => counts.drop(reason),
            }
        }
        if !tx.is_empty() {
            let (_, failed) = tx.flush(sock);
            counts.send_errors += failed as u64;
        }
        if counts.datagrams >= FLUSH_EVERY {
            counts.flush(&shared.metrics);
        }
    }
    counts.flush(&shared.metrics);
}

/// Binds every socket group: `threads` SO_REUSEPORT sockets per address, plus the RFC 5780
/// quad when an alternate is configured.
fn bind_all(config: &ServerConfig) -> Result<(Vec<Vec<UdpSocket>>, Option<AlternatePair>), ServerError> {
    let threads = config.threads.max(1);
    let mut groups = Vec::new();
    let mut alternate = None;
    let mut binds = config.binds.clone();
    if let Some(alt) = config.alternate {
        let idx =
            binds.iter().position(|b| b.is_ipv4() == alt.is_ipv4()).ok_or(ServerError::NoPrimaryForAlternate(alt))?;
        let primary = binds.remove(idx);
        // Resolve port 0 on both first, then bind the two cross combinations.
        let g1 = bind_group(primary, threads)?;
        let p1 = g1[0].local_addr().map_err(|e| ServerError::Bind { addr: primary, error: e })?;
        let g4 = bind_group(alt, threads)?;
        let p2 = g4[0].local_addr().map_err(|e| ServerError::Bind { addr: alt, error: e })?;
        let pair = AlternatePair::new(p1, p2)?;
        let [_, a1p2, a2p1, _] = pair.quad();
        groups.push(g1);
        groups.push(bind_group(a1p2, threads)?);
        groups.push(bind_group(a2p1, threads)?);
        groups.push(g4);
        alternate = Some(pair);
    }
    for addr in binds {
        match bind_group(addr, threads) {
            Ok(g) => groups.push(g),
            Err(ServerError::Bind { addr, error }) if config.tolerate_missing_family && is_family_missing(&error) => {
                tracing::warn!(%addr, error = %error, "address family unavailable; skipping");
            }
            Err(e) => return Err(e),
        }
    }
    if groups.is_empty() {
        return Err(ServerError::NothingBound);
    }
    Ok((groups, alternate))
}

fn is_family_missing(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(97) | Some(99)) // EAFNOSUPPORT, EADDRNOTAVAIL
}

/// `n` sockets on one address sharing it through SO_REUSEPORT (port 0 resolved by the first).
fn bind_group(addr: SocketAddr, n: usize) -> Result<Vec<UdpSocket>, ServerError> {
    let first = bind_one(addr)?;
    let actual = first.local_addr().map_err(|e| ServerError::Bind { addr, error: e })?;
    let mut group = vec![first];
    for _ in 1..n {
        group.push(bind_one(actual)?);
    }
    Ok(group)
}

fn bind_one(addr: SocketAddr) -> Result<UdpSocket, ServerError> {
    let err = |error| ServerError::Bind { addr, error };
    let sock = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    if addr.is_ipv6() {
        // Keep [::] from also claiming IPv4, so 0.0.0.0 and [::] can both be bound.
        sock.set_only_v6(true).map_err(err)?;
    }
    sock.set_reuse_port(true).map_err(err)?;
    // Best effort: a larger queue absorbs bursts; the kernel caps it at rmem_max.
    let _ = sock.set_recv_buffer_size(4 << 20);
    sock.bind(&addr.into()).map_err(err)?;
    let sock: UdpSocket = sock.into();
    sock.set_read_timeout(Some(IDLE_TICK)).map_err(err)?;
    Ok(sock)
}
