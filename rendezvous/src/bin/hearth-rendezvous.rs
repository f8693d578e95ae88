//! `hearth-rendezvous`: the self-hosted meeting point of a family's or team's devices.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use hearth_rendezvous::server::{self, Config, Limits};

/// Relays signed, sealed WebRTC signaling between the devices of Hearth vaults, and serves
/// STUN on UDP in the same process.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// HTTP/WebSocket listen address.
    #[arg(long, env = "HEARTH_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// STUN UDP address (repeatable, IPv6 too; env: comma-separated).
    #[arg(long, env = "HEARTH_STUN_BIND", default_value = "0.0.0.0:3478", value_delimiter = ',')]
    stun_bind: Vec<SocketAddr>,
    /// A second address of this host (another IP and port, also bound) from which STUN
    /// answers RFC 5780 CHANGE-REQUESTs, so devices can tell what kind of NAT they are behind
    /// (`hearth nat-check`). Without it such requests get 420.
    #[arg(long, env = "HEARTH_STUN_ALTERNATE", value_name = "ADDR:PORT")]
    stun_alternate: Option<SocketAddr>,
    /// Do not run the STUN server.
    #[arg(long, env = "HEARTH_NO_STUN")]
    no_stun: bool,
    /// Serve Prometheus `/metrics` on this address only (keep it private: loopback or an
    /// internal network); never on the public listener.
    #[arg(long, env = "HEARTH_METRICS_BIND", default_value = "127.0.0.1:9478")]
    metrics_bind: SocketAddr,
    /// A name devices dial this server by, HOST or HOST:PORT (repeatable; env: comma-separated).
    /// Hellos must be signed for one of them. Without any, only loopback names are accepted.
    #[arg(long = "public-host", env = "HEARTH_PUBLIC_HOST", value_delimiter = ',')]
    public_hosts: Vec<String>,
    /// A reverse proxy whose X-Forwarded-For / Forwarded / PROXY protocol header names the
    /// client (ADDR or ADDR/PREFIX, repeatable; env: comma-separated). Limits then apply per
    /// client. Such headers from anyone else are ignored.
    #[arg(long = "trusted-proxy", env = "HEARTH_TRUSTED_PROXY", value_delimiter = ',')]
    trusted_proxies: Vec<server::proxy::Cidr>,
    /// Largest WebSocket message, in bytes.
    #[arg(long, env = "HEARTH_MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    max_message_bytes: usize,
    /// Total concurrent connections.
    #[arg(long, env = "HEARTH_MAX_CONNECTIONS", default_value_t = 15_000)]
    max_connections: usize,
    /// Concurrent connections per client IP.
    #[arg(long, env = "HEARTH_MAX_CONNECTIONS_PER_IP", default_value_t = 64)]
    max_connections_per_ip: usize,
    /// New connections per second per client IP.
    #[arg(long, env = "HEARTH_HANDSHAKES_PER_IP", default_value_t = 20)]
    handshakes_per_ip: u32,
    /// Devices per vault room.
    #[arg(long, env = "HEARTH_MAX_ROOM_SIZE", default_value_t = 64)]
    max_room_size: usize,
    /// Messages per second per connection.
    #[arg(long, env = "HEARTH_MESSAGES_PER_SEC", default_value_t = 50)]
    messages_per_sec: u32,
    /// Seconds allowed to send a valid hello.
    #[arg(long, env = "HEARTH_ADMISSION_TIMEOUT", default_value_t = 10)]
    admission_timeout: u64,
    /// Seconds of silence before a connection is closed.
    #[arg(long, env = "HEARTH_IDLE_TIMEOUT", default_value_t = 60)]
    idle_timeout: u64,
    /// Outbound messages queued per connection before it is dropped as too slow.
    #[arg(long, env = "HEARTH_QUEUE_LEN", default_value_t = 64)]
    queue_len: usize,
    /// Seconds a pairing (invite) room lives.
    #[arg(long, env = "HEARTH_INVITE_TTL", default_value_t = 600)]
    invite_ttl: u64,
    /// Pairing rooms open at once, in total.
    #[arg(long, env = "HEARTH_MAX_INVITE_ROOMS", default_value_t = 10_000)]
    max_invite_rooms: usize,
    /// Pairing rooms one client IP (IPv6: /64) may have open at once.
    #[arg(long, env = "HEARTH_INVITE_ROOMS_PER_IP", default_value_t = 8)]
    invite_rooms_per_ip: usize,
    /// Signal bytes one pairing room may relay.
    #[arg(long, env = "HEARTH_INVITE_RELAY_BYTES", default_value_t = 64 * 1024)]
    invite_relay_bytes: usize,
    /// Seconds signals for a device that just disconnected are held for it (0: off).
    #[arg(long, env = "HEARTH_MAILBOX_TTL", default_value_t = 30)]
    mailbox_ttl: u64,
    /// Signals held per briefly-offline device.
    #[arg(long, env = "HEARTH_MAILBOX_LEN", default_value_t = 32)]
    mailbox_len: usize,
    /// Bytes held in one vault's mailboxes together.
    #[arg(long, env = "HEARTH_MAILBOX_ROOM_BYTES", default_value_t = 1 << 20)]
    mailbox_room_bytes: usize,
    /// Bytes held in all mailboxes together.
    #[arg(long, env = "HEARTH_MAILBOX_BYTES", default_value_t = 16 << 20)]
    mailbox_bytes: usize,
    /// Share presence and relay with other replicas through this Redis (redis://host:port).
    #[arg(long, env = "HEARTH_REDIS_URL")]
    redis_url: Option<String>,
    /// Seconds a replica's devices stay in shared presence without a refresh.
    #[arg(long, env = "HEARTH_PRESENCE_TTL", default_value_t = 15)]
    presence_ttl: u64,
    /// A TURN relay for devices that cannot connect directly (both behind symmetric NATs):
    /// `turn:HOST:PORT` (repeatable; env: comma-separated). Admitted devices get
    /// time-limited credentials for it, made with `--turn-secret-file`.
    #[arg(long = "turn-url", env = "HEARTH_TURN_URL", value_delimiter = ',', requires = "turn_secret_file")]
    turn_urls: Vec<String>,
    /// The secret shared with the TURN server (coturn: `use-auth-secret`,
    /// `static-auth-secret`); the file's first line. Never on the command line.
    #[arg(long, env = "HEARTH_TURN_SECRET_FILE", value_name = "FILE")]
    turn_secret_file: Option<std::path::PathBuf>,
    /// Seconds the issued TURN credentials last (devices rejoin before they expire).
    #[arg(long, env = "HEARTH_TURN_TTL", default_value_t = 24 * 3600)]
    turn_ttl: u64,
    /// Log as JSON lines.
    #[arg(long, env = "HEARTH_LOG_JSON")]
    log_json: bool,
    /// Instead of serving: a one-off command.
    #[command(subcommand)]
    command: Option<Cmd>,
}

/// One-off commands.
#[derive(Debug, clap::Subcommand)]
enum Cmd {
    /// Exit 0 when the server on this host answers `/healthz` within 3 s, 1 otherwise (a
    /// container HEALTHCHECK: it asks --listen's port on loopback, or --addr).
    Healthcheck {
        /// Ask this address instead.
        #[arg(long, value_name = "ADDR:PORT")]
        addr: Option<SocketAddr>,
    },
}

/// The TURN relay from the flags, if one is configured.
fn turn(a: &Args) -> anyhow::Result<Option<server::Turn>> {
    let Some(file) = &a.turn_secret_file else { return Ok(None) };
    if a.turn_urls.is_empty() {
        anyhow::bail!("--turn-secret-file needs --turn-url");
    }
    for u in &a.turn_urls {
        if !u.starts_with("turn:") {
            anyhow::bail!("--turn-url {u:?}: expected turn:HOST:PORT");
        }
    }
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let secret = text.lines().next().unwrap_or_default().trim().as_bytes().to_vec();
    if secret.is_empty() {
        anyhow::bail!("{} holds no secret", file.display());
    }
    Ok(Some(server::Turn { urls: a.turn_urls.clone(), secret, ttl: Duration::from_secs(a.turn_ttl.max(600)) }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // An empty HEARTH_* variable means "not set": compose files pass optional settings as
    // `${VAR:-}`, and clap would otherwise read "" as a value (an empty TURN URL, say).
    for (k, v) in std::env::vars_os() {
        if v.is_empty() && k.to_string_lossy().starts_with("HEARTH_") {
            std::env::remove_var(k);
        }
    }
    let a = Args::parse();
    if let Some(Cmd::Healthcheck { addr }) = a.command {
        let target = addr.unwrap_or_else(|| server::healthcheck::local_target(a.listen));
        server::healthcheck::check(target, Duration::from_secs(3))?;
        println!("ok {target}");
        return Ok(());
    }
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Signal payloads must never reach the logs, whatever RUST_LOG says. The server frames
    // WebSockets itself and never logs payloads; the WebSocket library (used by the client
    // half of this crate) would log whole messages at TRACE, so it stays capped in case.
    for cap in ["tungstenite=debug", "tokio_tungstenite=debug"] {
        if let Ok(d) = cap.parse() {
            filter = filter.add_directive(d);
        }
    }
    let fmt = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if a.log_json {
        fmt.json().init();
    } else {
        fmt.init();
    }
    let turn = turn(&a)?;
    let limits = Limits {
        max_message_bytes: a.max_message_bytes,
        max_connections: a.max_connections,
        max_connections_per_ip: a.max_connections_per_ip,
        handshakes_per_ip_per_sec: a.handshakes_per_ip,
        max_room_size: a.max_room_size,
        messages_per_sec: a.messages_per_sec,
        admission_timeout: Duration::from_secs(a.admission_timeout),
        idle_timeout: Duration::from_secs(a.idle_timeout.max(2)),
        queue_len: a.queue_len,
        invite_ttl: Duration::from_secs(a.invite_ttl),
        max_invite_rooms: a.max_invite_rooms,
        invite_rooms_per_ip: a.invite_rooms_per_ip,
        invite_relay_bytes: a.invite_relay_bytes,
        mailbox_ttl: Duration::from_secs(a.mailbox_ttl),
        mailbox_len: a.mailbox_len,
        mailbox_room_bytes: a.mailbox_room_bytes,
        mailbox_bytes: a.mailbox_bytes,
    };
    let registry = prometheus::Registry::new();
    let _stun = if a.no_stun {
        None
    } else {
        let cfg = hearth_stun::ServerConfig {
            binds: a.stun_bind.clone(),
            alternate: a.stun_alternate,
            ..hearth_stun::ServerConfig::default()
        };
        let m = hearth_stun::StunMetrics::register(&registry)?;
        let s = hearth_stun::Server::start(&cfg, m).context("starting STUN")?;
        for addr in s.local_addrs() {
            println!("listening udp {addr}");
        }
        Some(s)
    };
    let metrics_listener =
        tokio::net::TcpListener::bind(a.metrics_bind).await.with_context(|| format!("binding {}", a.metrics_bind))?;
    println!("listening metrics {}", metrics_listener.local_addr()?);
    tokio::spawn(server::metrics::serve(metrics_listener, registry.clone()));
    let public_hosts = a
        .public_hosts
        .iter()
        .map(|h| hearth_rendezvous::protocol::public_name(h).with_context(|| format!("--public-host {h:?}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let listener = server::bind(a.listen).with_context(|| format!("binding {}", a.listen))?;
    println!("listening http {}", listener.local_addr()?);
    let config = Config {
        limits,
        redis_url: a.redis_url,
        presence_ttl: Duration::from_secs(a.presence_ttl.max(1)),
        public_hosts,
        trusted_proxies: a.trusted_proxies,
        turn,
    };
    server::run(listener, config, registry, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else { return std::future::pending().await };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
