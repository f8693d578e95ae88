//! Prometheus metrics of the STUN server, and per-thread counters flushed into them.
//!
//! Server threads count into a plain [`LocalCounts`] and flush it every few hundred
//! datagrams, so the hot path does no shared atomic writes per packet.

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use crate::binding::{DropReason, ReplyKind};

/// Every counter the STUN server exports (registered under `hearth_stun_*`).
#[derive(Debug, Clone)]
pub struct StunMetrics {
    /// Datagrams read from the sockets, before any check.
    pub datagrams: IntCounter,
    /// Responses sent, by `kind` (success / error).
    pub responses: IntCounterVec,
    /// Datagrams dropped without a response, by `reason`.
    pub dropped: IntCounterVec,
    /// Socket errors, by `op` (recv / send).
    pub io_errors: IntCounterVec,
}

impl StunMetrics {
    /// Creates the counters and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let datagrams = IntCounter::new("hearth_stun_datagrams_total", "UDP datagrams received by the STUN server")?;
        let responses =
            IntCounterVec::new(Opts::new("hearth_stun_responses_total", "STUN responses sent, by kind"), &["kind"])?;
        let dropped = IntCounterVec::new(
            Opts::new("hearth_stun_dropped_total", "Datagrams dropped without a response, by reason"),
            &["reason"],
        )?;
        let io_errors =
            IntCounterVec::new(Opts::new("hearth_stun_io_errors_total", "Socket errors, by operation"), &["op"])?;
        registry.register(Box::new(datagrams.clone()))?;
        registry.register(Box::new(responses.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(io_errors.clone()))?;
        // Touch every label so dashboards see zeros instead of missing series.
        for k in ["success", "error"] {
            responses.with_label_values(&[k]);
        }
        for r in DropReason::ALL {
            dropped.with_label_values(&[r.label()]);
        }
        for op in ["recv", "send"] {
            io_errors.with_label_values(&[op]);
        }
        Ok(Self { datagrams, responses, dropped, io_errors })
    }

    /// Sum of `dropped` for one reason (for tests and the bench).
    pub fn dropped_for(&self, reason: DropReason) -> u64 {
        self.dropped.with_label_values(&[reason.label()]).get()
    }

    /// Sum of `responses` for one kind.
    pub fn responses_for(&self, kind: ReplyKind) -> u64 {
        self.responses.with_label_values(&[kind_label(kind)]).get()
    }
}

fn kind_label(kind: ReplyKind) -> &'static str {
    match kind {
        ReplyKind::Success => "success",
        ReplyKind::Error => "error",
    }
}

/// Counts kept by one server thread between flushes.
#[derive(Debug, Default, Clone)]
pub struct LocalCounts {
    /// Datagrams received.
    pub datagrams: u64,
    /// Success responses sent.
    pub success: u64,
    /// Error responses sent.
    pub error: u64,
    /// Drops, indexed like [`DropReason::ALL`].
    pub dropped: [u64; DropReason::ALL.len()],
    /// Receive errors.
    pub recv_errors: u64,
    /// Send errors.
    pub send_errors: u64,
}

impl LocalCounts {
    /// Records a drop.
    pub fn drop(&mut self, reason: DropReason) {
        if let Some(i) = DropReason::ALL.iter().position(|r| *r == reason) {
            self.dropped[i] += 1;
        }
    }

    /// Records a sent reply.
    pub fn reply(&mut self, kind: ReplyKind) {
        match kind {
            ReplyKind::Success => self.success += 1,
            ReplyKind::Error => self.error += 1,
        }
    }

    /// Adds the counts to `metrics` and resets them.
    pub fn flush(&mut self, metrics: &StunMetrics) {
        metrics.datagrams.inc_by(self.datagrams);
        metrics.responses.with_label_values(&["success"]).inc_by(self.success);
        metrics.responses.with_label_values(&["error"]).inc_by(self.error);
        for (r, n) in DropReason::ALL.iter().zip(self.dropped) {
            if n > 0 {
                metrics.dropped.with_label_values(&[r.label()]).inc_by(n);
            }
        }
        metrics.io_errors.with_label_values(&["recv"]).inc_by(self.recv_errors);
        metrics.io_errors.with_label_values(&["send"]).inc_by(self.send_errors);
        *self = Self::default();
    }
}
