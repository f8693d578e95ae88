//! The rendezvous server: HTTP routes, connection admission control, graceful drain.
//!
//! `run(listener, config, shutdown)` serves until `shutdown` resolves, then tells every
//! connection to close (1001) and waits for them, like mini-redis's server.

mod accept;
pub mod backplane;
pub mod conn;
pub mod healthcheck;
pub mod hub;
pub mod invites;
pub mod limits;
mod link;
pub mod mailbox;
pub mod metrics;
pub mod outbox;
pub mod proxy;
pub mod redis_health;
mod remote;
pub mod revocations;
pub mod shared;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hearth_stun::rate_limit::RateLimiter;
use prometheus::Registry;
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
    /// Share presence and relay with other replicas through this Redis.
    pub redis_url: Option<String>,
    /// How long a replica's devices stay in shared presence without a refresh.
    pub presence_ttl: std::time::Duration,
    /// Peers whose forwarding headers and PROXY protocol header are believed
    /// (`--trusted-proxy`): limits then apply per client behind them.
    pub trusted_proxies: Vec<proxy::Cidr>,
    /// The names clients dial this server by (`--public-host`, normalised by
    /// [`crate::protocol::public_name`]); hellos must be signed for one of them. Empty: only
    /// the loopback names with the listen port.
    pub public_hosts: Vec<String>,
    /// A TURN relay whose credentials admitted vault devices get in `welcome`.
    pub turn: Option<Turn>,
}

/// A TURN relay sharing a secret with this server (`--turn-url`, `--turn-secret-file`).
#[derive(Clone)]
pub struct Turn {
    /// Its `turn:HOST:PORT` URLs.
    pub urls: Vec<String>,
    /// The shared secret (coturn's `static-auth-secret`).
    pub secret: Vec<u8>,
    /// How long issued credentials last.
    pub ttl: std::time::Duration,
}

impl std::fmt::Debug for Turn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn").field("urls", &self.urls).field("ttl", &self.ttl).finish_non_exhaustive()
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.secret.iter_mut().for_each(|b| *b = 0);
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            redis_url: None,
            presence_ttl: std::time::Duration::from_secs(15),
            public_hosts: Vec::new(),
            trusted_proxies: Vec::new(),
            turn: None,
        }
    }
}

/// State shared by every request and connection.
pub(crate) struct App {
    limits: Limits,
    /// Names a hello may be signed for.
    names: Vec<String>,
    /// The TURN relay, if any.
    pub(crate) turn: Option<Turn>,
    hub: Hub,
    metrics: Metrics,
    per_ip: Mutex<limits::IpSlots>,
    handshakes: Mutex<RateLimiter>,
    /// Open TCP connections (HTTP and WebSocket, admitted or not).
    open: AtomicU64,
    /// Most open connections: the configured cap, lowered by the open-files limit.
    max_open: u64,
    trusted: proxy::Trusted,
    next_conn: AtomicU64,
    shutdown: watch::Receiver<bool>,
    draining: AtomicBool,
    /// Signals from the inbox waiting to be routed again (a drain waits for none).
    rerouting: AtomicU64,
}

/// A running server's handle for tests and the binary.
pub struct Running {
    /// The address served.
    pub addr: SocketAddr,
    /// The metrics registry (the binary adds STUN metrics to it).
    pub registry: Registry,
}

/// Pending connections the kernel queues before `accept`: with the default (128), a burst
/// of reconnecting devices overflows the queue and each dropped handshake costs its client a
/// one-second retransmit. The kernel caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds the main listener (address reuse, a deep accept queue).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
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
            let m = redis_health::RedisMetrics::register(&registry).map_err(std::io::Error::other)?;
            Some(backplane::Backplane::connect(url, config.presence_ttl, Some(m)).map_err(std::io::Error::other)?)
        }
        None => None,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let names = hello_names(&config.public_hosts, listener.local_addr()?.port());
    let l = &config.limits;
    let app = Arc::new(App {
        handshakes: Mutex::new(RateLimiter::new(
            l.handshakes_per_ip_per_sec,
            l.handshakes_per_ip_per_sec.saturating_mul(2),
            100_000,
            Instant::now(),
        )),
        limits: config.limits.clone(),
        names,
        turn: config.turn.clone(),
        hub: Hub::new(
            backplane,
            mailbox::Mailboxes::new(l.mailbox_ttl, l.mailbox_len, l.mailbox_room_bytes, l.mailbox_bytes),
            invites::Invites::new(l.invite_ttl, l.max_invite_rooms, l.invite_rooms_per_ip, l.invite_relay_bytes),
        ),
        metrics,
        per_ip: Mutex::new(limits::IpSlots::new(l.max_connections_per_ip)),
        open: AtomicU64::new(0),
        max_open: accept::connection_cap(l.max_connections),
        trusted: proxy::Trusted::new(config.trusted_proxies.clone()),
        next_conn: AtomicU64::new(1),
        shutdown: stop_rx,
        draining: AtomicBool::new(false),
        rerouting: AtomicU64::new(0),
    });
    let router = Router::new()
        .route("/", get(status_page))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/v1/signal", get(signal));
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
            ping_app.hub.sweep_mail(Instant::now());
            ping_app.hub.sweep_revocations(Instant::now());
        }
    }));
    let sweep_app = Arc::clone(&app);
    background.push(tokio::spawn(async move {
        // Pairing rooms end to the second: their members are removed at the TTL.
        let mut tick = tokio::time::interval(INVITE_SWEEP);
        loop {
            tick.tick().await;
            sweep_app.hub.sweep_invites(Instant::now());
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
    let (http_stop, http_stopped) = watch::channel(false);
    if !config.trusted_proxies.is_empty() {
        tracing::info!(proxies = ?config.trusted_proxies, "client addresses from these proxies are taken from their headers");
    }
    let acceptor = tokio::spawn(accept::accept_loop(listener, router, Arc::clone(&app), http_stopped));
    graceful.await;
    // The listener stays open while the WebSockets close, so a load balancer asking
    // `/readyz` hears 503 (draining) instead of a refused connection.
    let until = Instant::now() + DRAIN_LIMIT;
    while app.hub.room_count() > 0 && Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let _ = http_stop.send(true);
    let _ = acceptor.await;
    // Upgraded WebSockets are detached from hyper's graceful shutdown: wait for their slots
    // to be released (each has been told to close with 1001), for at most DRAIN_LIMIT.
    while app.open.load(Ordering::Relaxed) > 0 && Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    hand_over_inbox(&app).await;
    for t in &background {
        t.abort();
    }
    Ok(())
}

/// How long a draining replica keeps routing what reaches its inbox after its devices left
/// (senders elsewhere may still have it as their recipient's replica for a moment).
const INBOX_HANDOVER: std::time::Duration = std::time::Duration::from_secs(3);
/// An inbox empty this long is done.
const INBOX_QUIET: std::time::Duration = std::time::Duration::from_millis(500);

/// A draining replica's last duty: signals still arriving in its inbox are routed to their
/// devices' new replicas or mailboxes (by the inbox and reroute tasks, still running) until
/// the inbox has stayed empty, with nothing left to route, for [`INBOX_QUIET`], at most
/// [`INBOX_HANDOVER`].
async fn hand_over_inbox(app: &App) {
    let Some(bp) = app.hub.backplane() else { return };
    let until = Instant::now() + INBOX_HANDOVER;
    let mut quiet_since = Instant::now();
    while Instant::now() < until {
        let busy = app.rerouting.load(Ordering::Relaxed) > 0;
        match bp.inbox_len().await {
            Ok(0) if !busy => {
                if quiet_since.elapsed() >= INBOX_QUIET {
                    return;
                }
            }
            // Redis cannot say, and nothing is left here to route.
            Err(_) if !busy => return,
            _ => quiet_since = Instant::now(),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tracing::warn!("drain ended with signals still in this replica's inbox");
}

/// The names hellos are checked against: the configured public names, or without any, the
/// loopback names with the listen port (a server reachable from elsewhere needs
/// `--public-host`, and the log says so).
fn hello_names(public: &[String], port: u16) -> Vec<String> {
    if !public.is_empty() {
        tracing::info!(names = ?public, "devices must sign their hello for one of these names");
        return public.to_vec();
    }
    let names = vec![format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("[::1]:{port}")];
    tracing::warn!(
        names = ?names,
        "no --public-host given: only devices dialling a loopback name are admitted"
    );
    names
}

/// How often ended pairing rooms are looked for.
const INVITE_SWEEP: std::time::Duration = std::time::Duration::from_secs(1);

/// Longest a drain waits for WebSocket connections to finish closing.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// With a backplane: the subscriber applying other replicas' events, and the presence
/// refresher. Both stop when the server does.
fn spawn_backplane_tasks(app: &Arc<App>) -> Vec<tokio::task::JoinHandle<()>> {
    let Some(bp) = app.hub.backplane().cloned() else { return Vec::new() };
    let sub_app = Arc::clone(app);
    let sub_bp = bp.clone();
    let subscriber = tokio::spawn(async move {
        let inner = Arc::clone(&sub_app);
        let on_event = move |room: String, ev| {
            if let Some(key) = inner.hub.on_event(&room, ev) {
                let a = Arc::clone(&inner);
                tokio::spawn(async move {
                    a.hub.push_presence(key, false).await;
                });
            }
            true
        };
        let on_resubscribed = move || {
            let a = Arc::clone(&sub_app);
            tokio::spawn(async move { a.hub.resync().await });
        };
        sub_bp.subscribe(on_event, on_resubscribed).await;
    });
    // Signals whose device left this replica after they were sent here: routed again, in
    // order, by one task (a handful at most, unless this replica is draining).
    let (again_tx, mut again_rx) = tokio::sync::mpsc::channel::<shared::Outgoing>(REROUTE_QUEUE);
    let inbox_app = Arc::clone(app);
    let inbox_bp = bp.clone();
    let inbox = tokio::spawn(async move {
        inbox_bp
            .read_inbox(|s| {
                if let Some(again) = inbox_app.hub.deliver_inbox(s) {
                    inbox_app.rerouting.fetch_add(1, Ordering::Relaxed);
                    if again_tx.try_send(again).is_err() {
                        inbox_app.rerouting.fetch_sub(1, Ordering::Relaxed);
                        tracing::warn!("too many signals to route again; one was dropped");
                    }
                }
            })
            .await;
    });
    let again_app = Arc::clone(app);
    let rerouter = tokio::spawn(async move {
        while let Some(s) = again_rx.recv().await {
            again_app.hub.reroute(s).await;
            again_app.rerouting.fetch_sub(1, Ordering::Relaxed);
        }
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
    let health = tokio::spawn(watch_redis(Arc::clone(app), bp));
    vec![subscriber, inbox, rerouter, refresher, health]
}

/// Signals waiting to be routed again (see `spawn_backplane_tasks`).
const REROUTE_QUEUE: usize = 4096;
/// How often Redis is asked whether it is up: often while it is down (the breaker stays open
/// until it answers), less while it is up.
const PROBE_DOWN: std::time::Duration = std::time::Duration::from_millis(250);
const PROBE_UP: std::time::Duration = std::time::Duration::from_secs(1);

/// Watches Redis: closes the breaker when it answers again, notices it lost its data (a
/// restart without persistence), and then writes back what this replica holds; meanwhile
/// retries revocations not yet stored.
async fn watch_redis(app: Arc<App>, bp: backplane::Backplane) {
    let mut first = true;
    let mut period = std::time::Duration::ZERO;
    loop {
        tokio::time::sleep(period).await;
        let was_up = bp.health().is_up();
        let answer = bp.probe().await;
        period = if bp.health().is_up() { PROBE_UP } else { PROBE_DOWN };
        let Ok(lost) = answer else { continue };
        // The first answer only tells which epoch this replica starts in, unless Redis was
        // down before it: then what was learnt meanwhile must be written anyway.
        let lost = lost && (!std::mem::take(&mut first) || !was_up);
        if lost {
            tracing::warn!(
                "redis lost its data (restarted without persistence?): writing back this replica's \
                 revocations and presence"
            );
        }
        if lost || !was_up {
            app.hub.recover(lost).await;
        } else {
            app.hub.retry_unsynced().await;
        }
    }
}

/// The `Sec-WebSocket-Accept` for a valid upgrade request (RFC 6455 §4.2.1), or why not.
fn websocket_accept(headers: &HeaderMap) -> Result<HeaderValue, &'static str> {
    let has = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has(header::UPGRADE, "websocket") || !has(header::CONNECTION, "upgrade") {
        return Err("expected a WebSocket upgrade");
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return Err("unsupported WebSocket version (need 13)");
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY).ok_or("missing Sec-WebSocket-Key")?;
    // RFC 6455 §4.2.1: the key is 16 random bytes, base64-encoded.
    use base64::Engine as _;
    match base64::engine::general_purpose::STANDARD.decode(key.as_bytes()) {
        Ok(k) if k.len() == 16 => {}
        _ => return Err("Sec-WebSocket-Key must be 16 bytes in base64"),
    }
    HeaderValue::from_str(&tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes()))
        .map_err(|_| "bad Sec-WebSocket-Key")
}

async fn signal(State(app): State<Arc<App>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, mut req: Request) -> Response {
    let accept = match websocket_accept(req.headers()) {
        Ok(a) => a,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return (StatusCode::BAD_REQUEST, "connection cannot be upgraded").into_response();
    };
    let Some(accepted) = req.extensions_mut().remove::<accept::Accepted>() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if app.draining.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "server is shutting down").into_response();
    }
    let Some(mut slot) = hub::lock(&accepted.slot).take() else {
        return (StatusCode::BAD_REQUEST, "connection already upgraded").into_response();
    };
    // Behind a trusted proxy that sent no PROXY header, the client is in the headers.
    let client =
        if accepted.resolved { peer } else { SocketAddr::new(app.trusted.client(req.headers(), peer.ip()), 0) };
    if let Err((label, status, msg)) = slot.bind_client(client.ip()) {
        *hub::lock(&accepted.slot) = Some(slot);
        app.metrics.rejected.with_label_values(&[label]).inc();
        return (status, msg).into_response();
    }
    tokio::spawn(async move {
        // The connection leaves hyper here: the server runs its own framing on the bare
        // socket (see `crate::ws` for why).
        let parts = match on_upgrade.await.map(|u| u.downcast::<hyper_util::rt::TokioIo<tokio::net::TcpStream>>()) {
            Ok(Ok(parts)) => parts,
            Ok(Err(_)) | Err(_) => return,
        };
        conn::run(parts.io.into_inner(), parts.read_buf, client, Arc::clone(&app)).await;
        drop(slot);
    });
    (
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (header::UPGRADE, HeaderValue::from_static("websocket")),
            (header::CONNECTION, HeaderValue::from_static("Upgrade")),
            (header::SEC_WEBSOCKET_ACCEPT, accept),
        ],
    )
        .into_response()
}

/// 503 while draining; 200 otherwise, saying when Redis is down. A replica whose Redis is
/// down still serves its own devices, and every replica shares that Redis: answering 503
/// then would take the whole service out instead of degrading it (alert on
/// `hearth_rv_redis_up` instead; docs/OPERATIONS.md).
async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.draining.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    match app.hub.backplane() {
        Some(bp) if !bp.health().is_up() => {
            "ready, degraded: redis is unreachable (presence and relay are local to this replica)\n".into_response()
        }
        _ => "ready\n".into_response(),
    }
}

/// The public page says what this server is, nothing that helps an attacker (no counts,
/// no version, no uptime): operators read `/metrics` on the metrics listener.
async fn status_page() -> Html<&'static str> {
    Html(
        "<!doctype html><html><head><meta charset=utf-8><title>Hearth rendezvous</title></head><body>\
         <h1>Hearth rendezvous</h1><p>This server relays sealed, signed messages between the devices of \
         Hearth vaults. It cannot read them.</p></body></html>",
    )
}
