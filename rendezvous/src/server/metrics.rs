//! The server's Prometheus metrics (`hearth_rv_*`), one struct, registered once.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Every metric the rendezvous exports. Labels are fixed reasons; never payloads or ids.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Open TCP connections: WebSockets (admitted or not) and plain HTTP.
    pub connections: IntGauge,
    /// Rooms with at least one member.
    pub rooms: IntGauge,
    /// Connections refused before or after upgrade, by reason.
    pub rejected: IntCounterVec,
    /// Hellos refused, by reason.
    pub admission_failures: IntCounterVec,
    /// Signals relayed.
    pub relayed: IntCounter,
    /// Signals held for a recipient that just went offline.
    pub held: IntCounter,
    /// Payload bytes relayed.
    pub relayed_bytes: IntCounter,
    /// Messages dropped, by reason.
    pub dropped: IntCounterVec,
    /// Time from receiving a signal to queueing it for the recipient.
    pub relay_seconds: Histogram,
}

impl Metrics {
    /// Creates and registers the metrics.
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            connections: IntGauge::new("hearth_rv_connections", "Open connections (WebSocket and HTTP)")?,
            rooms: IntGauge::new("hearth_rv_rooms", "Rooms with members")?,
            rejected: IntCounterVec::new(
                Opts::new("hearth_rv_connections_rejected_total", "Connections refused, by reason"),
                &["reason"],
            )?,
            admission_failures: IntCounterVec::new(
                Opts::new("hearth_rv_admission_failures_total", "Hellos refused, by reason"),
                &["reason"],
            )?,
            relayed: IntCounter::new("hearth_rv_signals_relayed_total", "Signals relayed")?,
            held: IntCounter::new(
                "hearth_rv_signals_held_total",
                "Signals held in a mailbox for a device briefly offline",
            )?,
            relayed_bytes: IntCounter::new("hearth_rv_signal_bytes_total", "Signal payload bytes relayed")?,
            dropped: IntCounterVec::new(
                Opts::new("hearth_rv_messages_dropped_total", "Messages dropped, by reason"),
                &["reason"],
            )?,
            relay_seconds: Histogram::with_opts(
                HistogramOpts::new("hearth_rv_relay_seconds", "Signal relay latency inside the server")
                    .buckets(vec![0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05]),
            )?,
        };
        r.register(Box::new(m.connections.clone()))?;
        r.register(Box::new(m.rooms.clone()))?;
        r.register(Box::new(m.rejected.clone()))?;
        r.register(Box::new(m.admission_failures.clone()))?;
        r.register(Box::new(m.relayed.clone()))?;
        r.register(Box::new(m.held.clone()))?;
        r.register(Box::new(m.relayed_bytes.clone()))?;
        r.register(Box::new(m.dropped.clone()))?;
        r.register(Box::new(m.relay_seconds.clone()))?;
        Ok(m)
    }
}

/// Most metrics requests served at once; more wait in the kernel's accept queue.
const METRICS_CONCURRENCY: usize = 16;
/// A metrics connection's whole life: a scraper sends one request and reads the answer.
const METRICS_CONN_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Serves `GET /metrics` on its own listener (`--metrics-bind`): each connection in its own
/// task with a deadline, so one slow or silent client delays no scrape.
pub async fn serve(listener: tokio::net::TcpListener, registry: Registry) {
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(METRICS_CONCURRENCY));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let Ok(permit) = std::sync::Arc::clone(&permits).try_acquire_owned() else { continue };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let answer = answer(&req, &registry);
                async move { Ok::<_, std::convert::Infallible>(answer) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(2))
                .keep_alive(false)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(METRICS_CONN_LIMIT, conn).await;
            drop(permit);
        });
    }
}

fn answer<B>(req: &hyper::Request<B>, registry: &Registry) -> hyper::Response<String> {
    use prometheus::Encoder;
    let mut resp = hyper::Response::new(String::new());
    if req.uri().path() != "/metrics" {
        *resp.status_mut() = hyper::StatusCode::NOT_FOUND;
        return resp;
    }
    let mut body = Vec::new();
    if prometheus::TextEncoder::new().encode(&registry.gather(), &mut body).is_err() {
        *resp.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        return resp;
    }
    *resp.body_mut() = String::from_utf8(body).unwrap_or_default();
    resp.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"));
    resp
}
