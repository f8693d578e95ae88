//! Refusing signals seen before: the rendezvous keeps undelivered signals for 30 s and a
//! Redis retry may deliver one twice, and a hostile server may replay, reorder or hold any of
//! them. Each sender numbers its signals within a session, so a signal is acted on only when
//! its counter is above every counter accepted before in that session, and only when it was
//! sealed recently (which bounds what must be remembered).

use std::collections::BTreeMap;

use super::envelope::Header;
use crate::ids::DeviceId;

/// Signals sealed longer ago than this (or this far in the future: clocks drift) are refused.
pub const MAX_AGE_MS: u64 = 5 * 60 * 1000;
/// Sessions remembered at most; the least recently used is forgotten first. Only devices of
/// the vault can start sessions (the envelope is signed), so honest traffic alone fills this.
pub const MAX_SESSIONS: usize = 1024;

/// Why a signal was refused as not new.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Stale {
    /// Sealed too long ago (or too far ahead of this device's clock).
    #[error("signal sealed {0} ms away from now")]
    Age(i64),
    /// Its counter is not above one already accepted in its session.
    #[error("signal #{counter} of a session that already reached #{seen}")]
    Replayed {
        /// The signal's counter.
        counter: u32,
        /// The highest counter accepted before.
        seen: u32,
    },
}

/// Remembers the highest counter accepted per (sender, session).
#[derive(Debug, Default)]
pub struct ReplayGuard {
    seen: BTreeMap<(DeviceId, [u8; 16]), (u32, u64)>,
}

impl ReplayGuard {
    /// Accepts `h` (and remembers it) if it is new; `now_ms` is this device's clock.
    pub fn check(&mut self, h: &Header, now_ms: u64) -> Result<(), Stale> {
        let age = now_ms as i64 - h.at_ms as i64;
        if age.unsigned_abs() > MAX_AGE_MS {
            return Err(Stale::Age(age));
        }
        let key = (h.from, h.session);
        if let Some(&(seen, _)) = self.seen.get(&key) {
            if h.counter <= seen {
                return Err(Stale::Replayed { counter: h.counter, seen });
            }
        } else if self.seen.len() >= MAX_SESSIONS {
            self.forget_oldest();
        }
        self.seen.insert(key, (h.counter, now_ms));
        Ok(())
    }

    fn forget_oldest(&mut self) {
        if let Some(k) = self.seen.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| *k) {
            self.seen.remove(&k);
        }
    }

    /// Sessions remembered (for tests).
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::VaultId;

    const NOW: u64 = 1_800_000_000_000;

    fn h(from: u8, session: u8, counter: u32, at_ms: u64) -> Header {
        Header {
            vault: VaultId([1; 16]),
            from: DeviceId([from; 16]),
            to: DeviceId([0; 16]),
            session: [session; 16],
            counter,
            at_ms,
        }
    }

    #[test]
    fn each_signal_is_accepted_once_and_never_after_a_later_one() {
        let mut g = ReplayGuard::default();
        assert_eq!(g.check(&h(1, 1, 0, NOW), NOW), Ok(()));
        assert_eq!(g.check(&h(1, 1, 0, NOW), NOW), Err(Stale::Replayed { counter: 0, seen: 0 }), "a duplicate");
        assert_eq!(g.check(&h(1, 1, 2, NOW), NOW), Ok(()));
        assert_eq!(g.check(&h(1, 1, 1, NOW), NOW), Err(Stale::Replayed { counter: 1, seen: 2 }), "reordered");
        assert_eq!(g.check(&h(2, 1, 0, NOW), NOW), Ok(()), "another sender's session of the same id");
        assert_eq!(g.check(&h(1, 2, 0, NOW), NOW), Ok(()), "another session");
    }

    #[test]
    fn old_or_far_future_signals_are_refused_at_the_bound() {
        let mut g = ReplayGuard::default();
        assert!(g.check(&h(1, 1, 0, NOW - MAX_AGE_MS), NOW).is_ok());
        assert_eq!(g.check(&h(1, 2, 0, NOW - MAX_AGE_MS - 1), NOW), Err(Stale::Age(MAX_AGE_MS as i64 + 1)));
        assert!(g.check(&h(1, 3, 0, NOW + MAX_AGE_MS), NOW).is_ok());
        assert_eq!(g.check(&h(1, 4, 0, NOW + MAX_AGE_MS + 1), NOW), Err(Stale::Age(-(MAX_AGE_MS as i64) - 1)));
    }

    #[test]
    fn memory_is_bounded_and_the_least_recently_used_session_goes_first() {
        let mut g = ReplayGuard::default();
        for i in 0..MAX_SESSIONS as u64 {
            let mut hd = h(1, 0, 0, NOW);
            hd.session[..8].copy_from_slice(&i.to_be_bytes());
            g.check(&hd, NOW + i).unwrap();
        }
        assert_eq!(g.len(), MAX_SESSIONS);
        let mut first = h(1, 0, 1, NOW);
        first.session[..8].copy_from_slice(&0u64.to_be_bytes());
        g.check(&first, NOW + 5_000).unwrap();
        g.check(&h(2, 9, 0, NOW), NOW + 5_001).unwrap();
        assert_eq!(g.len(), MAX_SESSIONS);
        let mut second = h(1, 0, 0, NOW);
        second.session[..8].copy_from_slice(&1u64.to_be_bytes());
        assert!(g.check(&second, NOW + 5_002).is_ok(), "session 1 was the least recently used: forgotten");
        first.counter = 1;
        assert!(g.check(&first, NOW + 5_003).is_err(), "session 0 was used recently: remembered");
    }
}
