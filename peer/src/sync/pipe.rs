//! An in-memory pipe between two sessions: the transport for tests, benchmarks and the
//! deterministic simulation (which adds loss and reordering around it).

use super::session::{Event, Session, SyncError};
use crate::vault::{LogStore, Replica};

/// Moves messages between two sessions until neither has anything to send. Returns the
/// events each side produced and the bytes that crossed the pipe.
pub fn run_until_quiet<A: LogStore, B: LogStore>(
    a: &mut Session,
    ra: &mut Replica<A>,
    b: &mut Session,
    rb: &mut Replica<B>,
) -> Result<PipeStats, SyncError> {
    let mut stats = PipeStats::default();
    loop {
        let mut moved = false;
        while let Some(m) = a.poll_transmit(ra) {
            stats.bytes_a_to_b += m.len();
            b.handle_message(&m, rb)?;
            moved = true;
        }
        while let Some(m) = b.poll_transmit(rb) {
            stats.bytes_b_to_a += m.len();
            a.handle_message(&m, ra)?;
            moved = true;
        }
        while let Some(e) = a.poll_event() {
            stats.events_a.push(e);
        }
        while let Some(e) = b.poll_event() {
            stats.events_b.push(e);
        }
        if !moved {
            return Ok(stats);
        }
    }
}

/// What crossed an in-memory pipe.
#[derive(Debug, Default, Clone)]
pub struct PipeStats {
    /// Bytes sent by the first session.
    pub bytes_a_to_b: usize,
    /// Bytes sent by the second session.
    pub bytes_b_to_a: usize,
    /// Events of the first session.
    pub events_a: Vec<Event>,
    /// Events of the second session.
    pub events_b: Vec<Event>,
}
