//! Time and causality: hybrid logical clocks, version vectors and dots.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::DeviceId;

/// A hybrid logical timestamp: wall-clock milliseconds plus a counter for events within one
/// millisecond (or while the wall clock lags a timestamp already seen). Ordered by (ms, counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch (from the writer's view, corrected forward).
    pub ms: u64,
    /// Tie counter.
    pub counter: u32,
}

impl Hlc {
    /// The timestamp for a local event at wall time `now_ms`, after `last`.
    pub fn tick(last: Hlc, now_ms: u64) -> Hlc {
        if now_ms > last.ms {
            Hlc { ms: now_ms, counter: 0 }
        } else {
            Hlc { ms: last.ms, counter: last.counter.saturating_add(1) }
        }
    }
}

/// One event: the `seq`-th entry of `device`'s log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Dot {
    /// Author.
    pub device: DeviceId,
    /// Position in the author's log (from 1).
    pub seq: u64,
}

/// Highest contiguous seq held per device.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, Hash)]
pub struct VersionVector(pub BTreeMap<DeviceId, u64>);

impl VersionVector {
    /// The seq held for `d` (0 = nothing).
    pub fn get(&self, d: DeviceId) -> u64 {
        self.0.get(&d).copied().unwrap_or(0)
    }

    /// Sets `d` to `seq`, dropping zero entries so equal vectors compare equal.
    pub fn set(&mut self, d: DeviceId, seq: u64) {
        if seq == 0 {
            self.0.remove(&d);
        } else {
            self.0.insert(d, seq);
        }
    }

    /// True when the event `dot` is included.
    pub fn covers(&self, dot: Dot) -> bool {
        self.get(dot.device) >= dot.seq
    }

    /// True when every component is ≤ `other`'s.
    pub fn le(&self, other: &VersionVector) -> bool {
        self.0.iter().all(|(d, s)| other.get(*d) >= *s)
    }

    /// Total number of events covered.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::Hlc;

    #[test]
    fn a_tick_moves_to_the_wall_clock_or_counts_within_one_millisecond() {
        let last = Hlc { ms: 5, counter: 3 };
        assert_eq!(Hlc::tick(last, 6), Hlc { ms: 6, counter: 0 });
        assert_eq!(Hlc::tick(last, 5), Hlc { ms: 5, counter: 4 }, "same millisecond");
        assert_eq!(Hlc::tick(last, 4), Hlc { ms: 5, counter: 4 }, "wall clock behind");
        assert_eq!(Hlc::tick(Hlc { ms: 5, counter: u32::MAX }, 5).counter, u32::MAX);
    }
}
