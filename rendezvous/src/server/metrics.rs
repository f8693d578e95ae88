//! The server's Prometheus metrics (`hearth_rv_*`), one struct, registered once.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Every metric the rendezvous exports. Labels are fixed reasons; never payloads or ids.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Open WebSocket connections (admitted or not).
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
            connections: IntGauge::new("hearth_rv_connections", "Open WebSocket connections")?,
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
