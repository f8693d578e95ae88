//! The rendezvous server: HTTP routes, connection admission control, graceful drain.
//!
//! `run(listener, config, shutdown)` serves until `shutdown` resolves, then tells every
//! connection to close (1001) and waits for them, like mini-redis's server.

pub mod backplane;
pub mod conn;
pub mod hub;
pub mod limits;
pub mod metrics;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hearth_stun::rate_limit::{RateLimiter, SourceKey};
use prometheus::{Encoder, Registry, TextEncoder};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use hub::Hub;
pub use limits::Limits;
pub use metrics::Metrics;

/// Server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Limits.
    pub limits: Limits,
    /// Serve `/metrics` on the main listener (false when a separate metrics address is used).
    pub metrics_on_main: bool,
    /// Share presence and relay with other replicas through this Redis.
    pub redis_url: Option<String>,
    /// How long a replica's devices stay in shared presence without a refresh.
    pub presence_ttl: std::time::Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            metrics_on_main: true,
            redis_url: None,
            presence_ttl: std::time::Duration::from_secs(15),
        }
    }
}

/// State shared by every request and connection.
pub(crate) struct App {
    limits: Limits,
    hub: Hub,
    metrics: Metrics,
    registry: Registry,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    handshakes: Mutex<RateLimiter>,
    open: AtomicU64,
    next_conn: AtomicU64,
    shutdown: watch::Receiver<bool>,
    draining: AtomicBool,
    started: Instant,
}

/// Counts a connection against the total and per-IP limits until dropped.
struct Slot {
    app: Arc<App>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.app.open.fetch_sub(1, Ordering::Relaxed);
        self.app.metrics.connections.dec();
        let mut m = self.app.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

impl App {
    /// Takes a connection slot, or says why not.
    fn admit_slot(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, (&'static str, StatusCode, &'static str)> {
        if self.draining.load(Ordering::Relaxed) {
            return Err(("draining", StatusCode::SERVICE_UNAVAILABLE, "server is shutting down"));
        }
        let allowed =
            self.handshakes.lock().unwrap_or_else(|p| p.into_inner()).allow(SourceKey::from(ip), Instant::now());
        if !allowed {
            return Err((
                "handshake_rate",
                StatusCode::TOO_MANY_REQUESTS,
                "too many new connections from your address; slow down",
            ));
        }
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= self.limits.max_connections_per_ip {
            return Err(("per_ip", StatusCode::TOO_MANY_REQUESTS, "too many connections from your address"));
        }
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.limits.max_connections as u64 {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err((
                "capacity",
                StatusCode::SERVICE_UNAVAILABLE,
                "server is at its connection limit; try again later",
            ));
        }
        *n += 1;
        self.metrics.connections.inc();
        Ok(Slot { app: Arc::clone(self), ip })
    }
}

/// A running server's handle for tests and the binary.
pub struct Running {
    /// The address served.
    pub addr: SocketAddr,
    /// The metrics registry (the binary adds STUN metrics to it).
    pub registry: Registry,
}

/// Builds the router and serves `listener` until `shutdown` completes, then drains.
pub async fn run(
    listener: TcpListener,
    config: Config,
    registry: Registry,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = Metrics::register(&registry).map_err(std::io::Error::other)?;
    let backplane = match &config.redis_url {
        Some(url) => {
            Some(backplane::Backplane::connect(url, config.presence_ttl).await.map_err(std::io::Error::other)?)
        }
        None => None,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let l = &config.limits;
    let app = Arc::new(App {
        handshakes: Mutex::new(RateLimiter::new(
            l.handshakes_per_ip_per_sec,
            l.handshakes_per_ip_per_sec.saturating_mul(2),
            100_000,
            Instant::now(),
        )),
        limits: config.limits.clone(),
        hub: Hub::new(backplane),
        metrics,
        registry,
        per_ip: Mutex::new(HashMap::new()),
        open: AtomicU64::new(0),
        next_conn: AtomicU64::new(1),
        shutdown: stop_rx,
        draining: AtomicBool::new(false),
        started: Instant::now(),
    });
    let mut router = Router::new()
        .route("/", get(status_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/v1/signal", get(signal));
    if config.metrics_on_main {
        router = router.route("/metrics", get(metrics_text));
    }
    let router = router.with_state(Arc::clone(&app));
    let mut background = spawn_backplane_tasks(&app);
    let ping_app = Arc::clone(&app);
    background.push(tokio::spawn(async move {
        // One ticker for all connections: each gets a liveness round twice per idle timeout.
        let mut tick = tokio::time::interval(ping_app.limits.idle_timeout / 2);
        tick.tick().await;
        loop {
            tick.tick().await;
            ping_app.hub.ping_all();
        }
    }));
    let drain_app = Arc::clone(&app);
    let graceful = async move {
        shutdown.await;
        drain_app.draining.store(true, Ordering::Relaxed);
        // Tell every WebSocket to close with 1001: admitted ones through their outbox,
        // those still in admission through the watch channel.
        drain_app.hub.kick_all(conn::close::GOING_AWAY, "server shutting down");
        let _ = stop_tx.send(true);
        tracing::info!("draining connections");
    };
    let served = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(graceful)
        .await;
    for t in &background {
        t.abort();
    }
    served?;
    // Upgraded WebSockets are detached from hyper's graceful shutdown: wait for their slots
    // to be released (each has been told to close with 1001), for at most DRAIN_LIMIT.
    let until = Instant::now() + DRAIN_LIMIT;
    while app.open.load(Ordering::Relaxed) > 0 && Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Bytes preallocated to read WebSocket frames into.
const WS_READ_BUFFER: usize = 512;
/// Most bytes queued for writing on one WebSocket before it is treated as dead.
const WS_MAX_WRITE_BUFFER: usize = 1 << 20;

/// Longest a drain waits for WebSocket connections to finish closing.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// With a backplane: the subscriber applying other replicas' events, and the presence
/// refresher. Both stop when the server does.
fn spawn_backplane_tasks(app: &Arc<App>) -> Vec<tokio::task::JoinHandle<()>> {
    let Some(bp) = app.hub.backplane().cloned() else { return Vec::new() };
    let sub_app = Arc::clone(app);
    let subscriber = tokio::spawn(async move {
        let inner = Arc::clone(&sub_app);
        bp.subscribe(move |room, ev| {
            if let Some(key) = inner.hub.on_event(&room, ev) {
                let a = Arc::clone(&inner);
                tokio::spawn(async move { a.hub.push_presence(key).await });
            }
            !inner.draining.load(Ordering::Relaxed)
        })
        .await;
    });
    let ref_app = Arc::clone(app);
    let refresher = tokio::spawn(async move {
        let period = ref_app.hub.backplane().map_or(std::time::Duration::from_secs(5), |b| b.ttl() / 3);
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            ref_app.hub.refresh().await;
        }
    });
    vec![subscriber, refresher]
}

async fn signal(
    ws: WebSocketUpgrade,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    State(app): State<Arc<App>>,
) -> Response {
    let slot = match app.admit_slot(peer.ip()) {
        Ok(s) => s,
        Err((label, status, msg)) => {
            app.metrics.rejected.with_label_values(&[label]).inc();
            return (status, msg).into_response();
        }
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default().to_owned();
    let max = app.limits.max_message_bytes;
    // Small buffers: the WebSocket library's defaults (128 KiB read + 128 KiB write per
    // connection) would dominate an idle connection's memory. Signaling messages are small;
    // larger ones (up to `max`) are still assembled, just not preallocated. The write buffer
    // is bounded so a peer that stops reading cannot make the server buffer without limit.
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(WS_MAX_WRITE_BUFFER)
        .on_upgrade(move |socket| async move {
            conn::run(socket, peer, host, Arc::clone(&slot.app)).await;
            drop(slot);
        })
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response()
    } else {
        "ready\n".into_response()
    }
}

async fn metrics_text(State(app): State<Arc<App>>) -> Response {
    let mut body = Vec::new();
    if TextEncoder::new().encode(&app.registry.gather(), &mut body).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

async fn status_page(State(app): State<Arc<App>>) -> Html<String> {
    let up = app.started.elapsed().as_secs();
    Html(format!(
        "<!doctype html><html><head><meta charset=utf-8><title>Hearth rendezvous</title></head><body>\
         <h1>Hearth rendezvous</h1><p>This server relays sealed, signed messages between the devices of \
         Hearth vaults. It cannot read them.</p><ul><li>version {}</li><li>up {}h {}m</li>\
         <li>{} connections</li></ul></body></html>",
        env!("CARGO_PKG_VERSION"),
        up / 3600,
        up / 60 % 60,
        app.open.load(Ordering::Relaxed)
    ))
}
