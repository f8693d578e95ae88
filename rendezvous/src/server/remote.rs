//! Signals to devices that are not connected to this replica, off the connection's read
//! loop: one bounded queue and task per recipient, so a slow or failing Redis call delays
//! only the signals to that recipient (kept in order), never the next message read.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hearth_proto::ids::DeviceId;
use tokio::sync::mpsc;

use super::outbox::Outbox;
use super::shared::Outgoing;
use super::App;

/// Signals waiting per recipient: more means the path to it is stuck, and the sender is
/// told at once rather than queued without bound.
const QUEUE_LEN: usize = 32;
/// Recipients with a queue at once per connection (a room holds at most 64 devices).
const MAX_QUEUES: usize = 64;
/// A queue's task ends after this long without a signal.
const IDLE: Duration = Duration::from_secs(30);

/// One signal in a queue.
pub(crate) struct Job {
    /// The signal.
    pub(crate) out: Outgoing,
    /// Payload bytes (for the metrics).
    pub(crate) bytes: usize,
    /// When it was read (for the relay latency).
    pub(crate) t0: Instant,
}

/// Why a signal could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its recipient's queue is full.
    QueueFull,
    /// The connection has a queue for as many recipients as it may.
    TooManyRecipients,
}

/// A connection's queues.
pub(crate) struct Remote {
    queues: HashMap<DeviceId, mpsc::Sender<Job>>,
}

impl Remote {
    pub(crate) fn new() -> Self {
        Self { queues: HashMap::new() }
    }

    /// Queues `job` for its recipient, starting the recipient's task if it has none.
    /// Errors about it are written to `outbox`, the sender's own connection.
    pub(crate) fn send(&mut self, app: &Arc<App>, outbox: &Arc<Outbox>, job: Job) -> Result<(), Refused> {
        let to = job.out.to;
        let job = match self.queues.get(&to) {
            Some(q) => match q.try_send(job) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(_)) => return Err(Refused::QueueFull),
                // Its task ended (idle): start another.
                Err(mpsc::error::TrySendError::Closed(job)) => job,
            },
            None => job,
        };
        if self.queues.len() >= MAX_QUEUES {
            self.queues.retain(|_, q| !q.is_closed());
            if self.queues.len() >= MAX_QUEUES {
                return Err(Refused::TooManyRecipients);
            }
        }
        let (tx, rx) = mpsc::channel(QUEUE_LEN);
        // A fresh channel has room for one.
        let _ = tx.try_send(job);
        self.queues.insert(to, tx);
        tokio::spawn(run(Arc::clone(app), Arc::clone(outbox), rx));
        Ok(())
    }
}

/// Routes one recipient's signals in order until its queue is dropped (the connection
/// ended) or idle.
async fn run(app: Arc<App>, outbox: Arc<Outbox>, mut rx: mpsc::Receiver<Job>) {
    loop {
        let job = match tokio::time::timeout(IDLE, rx.recv()).await {
            Ok(Some(job)) => job,
            Ok(None) => return,
            // Idle: close first, then finish what slipped in before the close (the sender
            // starts a new task once it sees the queue closed).
            Err(_) => {
                rx.close();
                match rx.recv().await {
                    Some(job) => job,
                    None => return,
                }
            }
        };
        let routed = app.hub.route_elsewhere(&job.out).await;
        let mut reply = Vec::new();
        super::conn::account(routed, job.out.to, job.out.id.as_deref(), job.bytes, job.t0, &mut reply, &app);
        if !reply.is_empty() {
            // A sender too slow to read its own errors loses them, as any other frame.
            let _ = outbox.push(bytes::Bytes::from(reply));
        }
    }
}
