//! `hearth-stun`: the standalone STUN binding server.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use hearth_stun::metrics_http::MetricsEndpoint;
use hearth_stun::{RateLimit, Server, ServerConfig, StunMetrics};

/// RFC 8489 STUN binding server with RFC 5780 NAT behaviour discovery.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on (repeatable). Default: 0.0.0.0:3478 and [::]:3478.
    #[arg(long = "bind", env = "HEARTH_STUN_BIND", value_delimiter = ',')]
    bind: Vec<SocketAddr>,
    /// Alternate address (different IP and port) enabling RFC 5780 CHANGE-REQUEST,
    /// RESPONSE-ORIGIN and OTHER-ADDRESS. Pairs with the first --bind of its IP family.
    #[arg(long, env = "HEARTH_STUN_ALTERNATE")]
    alternate: Option<SocketAddr>,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, env = "HEARTH_STUN_METRICS_BIND")]
    metrics_bind: Option<SocketAddr>,
    /// Requests per second allowed per source IP (IPv6: per /64); 0 disables the limit.
    #[arg(long, env = "HEARTH_STUN_RATE_LIMIT", default_value_t = 100)]
    rate_limit: u32,
    /// Burst allowed per source IP (default: twice --rate-limit).
    #[arg(long, env = "HEARTH_STUN_RATE_BURST")]
    rate_burst: Option<u32>,
    /// Most source IPs tracked by the rate limiter (bounds its memory).
    #[arg(long, env = "HEARTH_STUN_RATE_SOURCES", default_value_t = 100_000)]
    rate_sources: usize,
    /// Sockets/threads per address (SO_REUSEPORT). Default: one per CPU.
    #[arg(long, env = "HEARTH_STUN_THREADS")]
    threads: Option<usize>,
    /// Leave out the SOFTWARE attribute.
    #[arg(long, env = "HEARTH_STUN_NO_SOFTWARE")]
    no_software: bool,
    /// Log as JSON lines.
    #[arg(long, env = "HEARTH_LOG_JSON")]
    log_json: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_tracing(args.log_json);
    let defaults = ServerConfig::default();
    let tolerate = args.bind.is_empty();
    let binds = if tolerate { vec![SocketAddr::from(([0, 0, 0, 0], 3478)), "[::]:3478".parse()?] } else { args.bind };
    let config = ServerConfig {
        binds,
        alternate: args.alternate,
        threads: args.threads.unwrap_or(defaults.threads),
        rate_limit: (args.rate_limit > 0).then(|| RateLimit {
            per_second: args.rate_limit,
            burst: args.rate_burst.unwrap_or(args.rate_limit.saturating_mul(2)),
            max_sources: args.rate_sources,
        }),
        software: if args.no_software { None } else { defaults.software },
        tolerate_missing_family: tolerate,
    };
    let registry = prometheus::Registry::new();
    let metrics = StunMetrics::register(&registry)?;
    let server = Server::start(&config, metrics).context("starting the STUN server")?;
    let _endpoint = match args.metrics_bind {
        Some(addr) => {
            let ep = MetricsEndpoint::start(addr, registry).with_context(|| format!("binding metrics on {addr}"))?;
            tracing::info!(addr = %ep.local_addr(), "metrics at /metrics");
            Some(ep)
        }
        None => None,
    };
    for a in server.local_addrs() {
        println!("listening udp {a}");
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&stop))?;
    }
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    tracing::info!("shutting down");
    server.shutdown();
    Ok(())
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}
