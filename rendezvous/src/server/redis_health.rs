//! Whether this replica's Redis answers, as a circuit breaker every backplane call goes
//! through: while Redis is known to be down, calls fail at once instead of each waiting out
//! a reconnect (which held a connection's whole read loop for seconds), and one prober
//! decides when it is back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

/// Longest one Redis call may take before it counts as failed: Redis answers in well under a
/// millisecond when healthy, and a signal must not wait seconds to learn it cannot pass.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(750);

/// A probe answered within this closes the breaker.
const PROMPT: Duration = Duration::from_millis(100);

/// Why a backplane call did not succeed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackplaneError {
    /// Redis is known to be unreachable (the breaker is open): not even tried.
    #[error("redis is unreachable")]
    Down,
    /// No answer within [`CALL_TIMEOUT`].
    #[error("redis did not answer in time")]
    Timeout,
    /// Redis answered with an error: refused a write (`maxmemory`), aborted a transaction.
    #[error("redis refused: {0}")]
    Refused(String),
    /// The connection failed.
    #[error("redis connection failed: {0}")]
    Failed(String),
}

impl BackplaneError {
    /// The metric label of this failure.
    fn label(&self) -> &'static str {
        match self {
            BackplaneError::Down => "skipped",
            BackplaneError::Timeout => "timeout",
            BackplaneError::Refused(_) => "refused",
            BackplaneError::Failed(_) => "failed",
        }
    }

    /// Sorts a client error: a failure to reach the server, or its answer (it is up, but
    /// said no: `OOM` under `maxmemory`, an aborted transaction, inside a pipeline or not).
    pub fn from_redis(e: &redis::RedisError) -> Self {
        if e.is_timeout() {
            BackplaneError::Timeout
        } else if e.is_io_error() || e.is_connection_dropped() || e.kind() == redis::ErrorKind::Io {
            BackplaneError::Failed(e.to_string())
        } else {
            BackplaneError::Refused(e.to_string())
        }
    }
}

/// The Redis metrics.
#[derive(Debug, Clone)]
pub struct RedisMetrics {
    /// 1 while Redis answers, 0 while it does not.
    pub up: IntGauge,
    /// Calls that did not succeed, by kind (failed, timeout, refused, skipped).
    pub errors: IntCounterVec,
    /// Revocations known here but not yet stored in Redis (retried until they are).
    pub revocations_pending: IntGauge,
    /// Joins admitted without Redis's revocation list (only this replica's was checked).
    pub unchecked_joins: prometheus::IntCounter,
}

impl RedisMetrics {
    /// Creates and registers them.
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            up: IntGauge::new("hearth_rv_redis_up", "1 while the replica's Redis answers")?,
            errors: IntCounterVec::new(
                Opts::new("hearth_rv_redis_errors_total", "Redis calls that did not succeed, by kind"),
                &["kind"],
            )?,
            revocations_pending: IntGauge::new(
                "hearth_rv_revocations_pending",
                "Revocations known to this replica but not yet stored in Redis",
            )?,
            unchecked_joins: prometheus::IntCounter::new(
                "hearth_rv_redis_unchecked_joins_total",
                "Devices admitted while Redis could not be asked (only this replica's revocations applied)",
            )?,
        };
        r.register(Box::new(m.up.clone()))?;
        r.register(Box::new(m.errors.clone()))?;
        r.register(Box::new(m.revocations_pending.clone()))?;
        r.register(Box::new(m.unchecked_joins.clone()))?;
        Ok(m)
    }
}

/// The breaker: shared by every clone of the backplane.
#[derive(Debug, Clone)]
pub struct Health {
    up: Arc<AtomicBool>,
    metrics: Option<RedisMetrics>,
    /// When a refusal was last logged: at most one line per [`REFUSAL_LOG_EVERY`].
    refusal_logged: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

/// Refusals (`maxmemory`) come in bursts, one per write: log them this often at most.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

impl Health {
    /// Starts closed (calls allowed): the first failure opens it.
    pub fn new(metrics: Option<RedisMetrics>) -> Self {
        if let Some(m) = &metrics {
            m.up.set(1);
        }
        Self { up: Arc::new(AtomicBool::new(true)), metrics, refusal_logged: Arc::default() }
    }

    /// True while calls are let through.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// The metrics, if registered.
    pub fn metrics(&self) -> Option<&RedisMetrics> {
        self.metrics.as_ref()
    }

    /// Runs `call` unless the breaker is open, bounded by [`CALL_TIMEOUT`]; a failure to
    /// reach Redis opens the breaker, a refusal does not (Redis is up, it said no).
    pub async fn call<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BackplaneError> {
        if !self.is_up() {
            return Err(self.count(BackplaneError::Down));
        }
        self.run(call).await
    }

    /// Runs `call` whatever the breaker says (the prober), and closes it when Redis
    /// answers promptly (a refusal is an answer: Redis is up). A slow answer leaves it
    /// open: a Redis busy in a long command (or a `DEBUG SLEEP` loop) answers the probe at
    /// the end of one stall, just before the next.
    pub async fn probe<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BackplaneError> {
        let t0 = std::time::Instant::now();
        let r = self.run(call).await;
        if matches!(r, Ok(_) | Err(BackplaneError::Refused(_))) && t0.elapsed() <= PROMPT {
            self.set_up(true);
        }
        r
    }

    async fn run<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, BackplaneError> {
        let e = match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => BackplaneError::from_redis(&e),
            Err(_) => BackplaneError::Timeout,
        };
        if matches!(e, BackplaneError::Timeout | BackplaneError::Failed(_)) {
            self.set_up(false);
        }
        Err(self.count(e))
    }

    fn count(&self, e: BackplaneError) -> BackplaneError {
        if let Some(m) = &self.metrics {
            m.errors.with_label_values(&[e.label()]).inc();
        }
        if let BackplaneError::Refused(why) = &e {
            let mut last = super::hub::lock(&self.refusal_logged);
            if last.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY) {
                *last = Some(std::time::Instant::now());
                tracing::warn!(error = %why, "redis refused a command (is it out of memory?): what it refused is retried or reported to the sender");
            }
        }
        e
    }

    /// Records a transition, logged once each way.
    fn set_up(&self, up: bool) {
        if self.up.swap(up, Ordering::Relaxed) == up {
            return;
        }
        if let Some(m) = &self.metrics {
            m.up.set(i64::from(up));
        }
        if up {
            tracing::info!("redis is back: shared presence and relay resume");
        } else {
            tracing::warn!(
                "redis is unreachable: presence and relay are local to this replica, joins are checked \
                 against this replica's revocations only, until it answers again"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_error() -> redis::RedisError {
        std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused").into()
    }

    #[tokio::test]
    async fn a_failure_to_reach_redis_opens_the_breaker_and_a_probe_closes_it() {
        let registry = Registry::new();
        let h = Health::new(Some(RedisMetrics::register(&registry).unwrap()));
        assert!(h.call(async { Ok::<_, redis::RedisError>(1) }).await.is_ok());
        let e = h.call(async { Err::<u8, _>(io_error()) }).await.unwrap_err();
        assert!(matches!(e, BackplaneError::Failed(_)), "{e:?}");
        assert!(!h.is_up());
        assert_eq!(h.metrics().unwrap().up.get(), 0);
        // Open: calls are not even made.
        let mut made = false;
        let e = h
            .call(async {
                made = true;
                Ok::<_, redis::RedisError>(1)
            })
            .await
            .unwrap_err();
        assert!(matches!(e, BackplaneError::Down) && !made, "{e:?}");
        // The prober gets through and closes it.
        assert_eq!(h.probe(async { Ok::<_, redis::RedisError>(7) }).await.unwrap(), 7);
        assert!(h.is_up());
        let errors = &h.metrics().unwrap().errors;
        assert_eq!(errors.with_label_values(&["failed"]).get(), 1);
        assert_eq!(errors.with_label_values(&["skipped"]).get(), 1);
    }

    #[tokio::test]
    async fn a_refusal_leaves_it_closed_and_a_silent_redis_times_out() {
        let h = Health::new(None);
        let oom: redis::RedisError = redis::RedisError::from((
            redis::ErrorKind::Server(redis::ServerErrorKind::ResponseError),
            "OOM command not allowed when used memory > 'maxmemory'",
        ));
        let e = h.call(async { Err::<u8, _>(oom) }).await.unwrap_err();
        assert!(matches!(e, BackplaneError::Refused(_)), "{e:?}");
        assert!(h.is_up(), "Redis answered: it is up");
        // The same refusal inside a pipeline's answer.
        let in_pipeline = redis::RedisError::from((redis::ErrorKind::Extension, "OOM command not allowed"));
        assert!(matches!(BackplaneError::from_redis(&in_pipeline), BackplaneError::Refused(_)));
        let e = h.call(std::future::pending::<redis::RedisResult<u8>>()).await.unwrap_err();
        assert!(matches!(e, BackplaneError::Timeout), "{e:?}");
        assert!(!h.is_up());
    }
}
