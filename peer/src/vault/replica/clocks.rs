//! Timestamps of local writes, bounded against peers whose clocks run far ahead.

use super::*;
use crate::vault::append::WriteBase;

/// How far ahead of this device's clock a peer's timestamp may be and still move it.
pub const MAX_CLOCK_AHEAD_MS: u64 = 3_600_000;

/// The newest timestamp a local write at `now_ms` may start from.
pub(crate) fn clock_limit(now_ms: u64) -> Hlc {
    Hlc { ms: now_ms.saturating_add(MAX_CLOCK_AHEAD_MS), counter: u32::MAX }
}

impl<S: LogStore> Replica<S> {
    /// The newest timestamp held that is at most [`MAX_CLOCK_AHEAD_MS`] ahead of `now_ms`: a
    /// peer whose clock runs a year fast does not drag this device's clock along.
    pub(super) fn clock_base(&self, now_ms: u64) -> Hlc {
        self.hlcs.range(..=clock_limit(now_ms)).next_back().copied().unwrap_or_default()
    }

    /// What a writer that does not replay the log needs of it (kept beside the view).
    pub(super) fn write_base(&self) -> WriteBase {
        WriteBase::of(&self.vv, &self.hlcs)
    }

    /// Authors whose newest entry carries a clock more than [`MAX_CLOCK_AHEAD_MS`] ahead of
    /// `now_ms`, with that timestamp (for `hearth status`).
    pub fn clocks_ahead(&self, now_ms: u64) -> Vec<(DeviceId, Hlc)> {
        let mut newest: BTreeMap<DeviceId, Hlc> = BTreeMap::new();
        for (e, dead) in self.log.iter().zip(&self.dead) {
            if !*dead && e.hlc.ms > now_ms.saturating_add(MAX_CLOCK_AHEAD_MS) {
                let n = newest.entry(e.author).or_default();
                *n = (*n).max(e.hlc);
            }
        }
        newest.into_iter().collect()
    }
}
