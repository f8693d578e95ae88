//! Pairing (invite) rooms' lifetimes and budgets. A room name is any 64-hex string, so without
//! these bounds it would be an open relay: each room opened here gets one TTL window from its
//! first join (members are removed when it ends), is remembered for a second TTL so it cannot
//! be reopened at once, may relay a few KiB (pairing needs that much), and the rooms one
//! source and the server may hold open are capped.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hearth_stun::rate_limit::SourceKey;

/// Why an invite room could not be joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteRefusal {
    /// Its window has ended (it is remembered until a second TTL has passed).
    Expired,
    /// The source, or the server, has as many invite rooms as it may.
    TooMany,
}

struct Window {
    opened: Instant,
    source: SourceKey,
    relayed: usize,
}

/// The invite rooms of this server, live or remembered.
pub struct Invites {
    ttl: Duration,
    max_total: usize,
    max_per_source: usize,
    relay_budget: usize,
    windows: HashMap<[u8; 32], Window>,
    per_source: HashMap<SourceKey, usize>,
}

impl Invites {
    /// Rooms living `ttl`, at most `max_total` and `max_per_source` remembered at once, each
    /// relaying at most `relay_budget` payload bytes.
    pub fn new(ttl: Duration, max_total: usize, max_per_source: usize, relay_budget: usize) -> Self {
        Self { ttl, max_total, max_per_source, relay_budget, windows: HashMap::new(), per_source: HashMap::new() }
    }

    /// A join of `room` by `source` at `now`: when its window ends, or why it may not be
    /// joined. The first join here opens the window (at `opened`: `now`, or earlier when
    /// another replica opened it) and counts against `source`.
    pub fn admit(
        &mut self,
        room: [u8; 32],
        source: SourceKey,
        opened: Instant,
        now: Instant,
    ) -> Result<Instant, InviteRefusal> {
        if let Some(w) = self.windows.get(&room) {
            let ends = w.opened + self.ttl;
            return if now < ends { Ok(ends) } else { Err(InviteRefusal::Expired) };
        }
        if self.windows.len() >= self.max_total
            || self.per_source.get(&source).copied().unwrap_or(0) >= self.max_per_source
        {
            return Err(InviteRefusal::TooMany);
        }
        if now >= opened + self.ttl {
            return Err(InviteRefusal::Expired);
        }
        self.windows.insert(room, Window { opened, source, relayed: 0 });
        *self.per_source.entry(source).or_insert(0) += 1;
        Ok(opened + self.ttl)
    }

    /// How long a window lasts.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Counts `bytes` relayed in `room`; false (nothing counted) if its window has ended or
    /// the room's budget would be exceeded.
    pub fn relay(&mut self, room: [u8; 32], bytes: usize, now: Instant) -> bool {
        let ttl = self.ttl;
        let budget = self.relay_budget;
        match self.windows.get_mut(&room) {
            Some(w) if now < w.opened + ttl && w.relayed + bytes <= budget => {
                w.relayed += bytes;
                true
            }
            _ => false,
        }
    }

    /// Forgets rooms remembered for two TTLs; returns the rooms whose window has ended (their
    /// members must be removed).
    pub fn sweep(&mut self, now: Instant) -> Vec<[u8; 32]> {
        let (ttl, per_source) = (self.ttl, &mut self.per_source);
        let mut ended = Vec::new();
        self.windows.retain(|room, w| {
            if now >= w.opened + ttl {
                ended.push(*room);
            }
            let keep = now < w.opened + ttl * 2;
            if !keep {
                if let Some(n) = per_source.get_mut(&w.source) {
                    *n -= 1;
                    if *n == 0 {
                        per_source.remove(&w.source);
                    }
                }
            }
            keep
        });
        ended
    }

    /// Rooms remembered (live or ended).
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// None remembered.
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: SourceKey = SourceKey::V4(1);
    const B: SourceKey = SourceKey::V4(2);
    const TTL: Duration = Duration::from_secs(10);

    #[test]
    fn a_window_ends_and_cannot_be_reopened_within_its_ttl() {
        let t0 = Instant::now();
        let mut inv = Invites::new(TTL, 100, 4, 1000);
        assert_eq!(inv.admit([1; 32], A, t0, t0), Ok(t0 + TTL));
        // The second member joins later: same end.
        assert_eq!(inv.admit([1; 32], B, t0, t0 + Duration::from_secs(3)), Ok(t0 + TTL));
        assert_eq!(inv.ttl(), TTL);
        assert!(!inv.is_empty());
        assert_eq!(inv.sweep(t0 + Duration::from_secs(9)), Vec::<[u8; 32]>::new());
        assert_eq!(
            inv.admit([1; 32], B, t0, t0 + TTL),
            Err(InviteRefusal::Expired),
            "the window ends at the TTL exactly"
        );
        assert_eq!(inv.sweep(t0 + TTL), vec![[1; 32]], "members are removed at the TTL");
        // Ended but remembered: it still counts against the source that opened it.
        assert_eq!(inv.per_source.get(&A), Some(&1));
        // Emptied and ended, it stays closed for another TTL ...
        assert_eq!(inv.admit([1; 32], A, t0, t0 + TTL + Duration::from_secs(5)), Err(InviteRefusal::Expired));
        assert!(!inv.relay([1; 32], 1, t0 + TTL));
        // ... then is forgotten with its count.
        inv.sweep(t0 + TTL * 2);
        assert!(inv.is_empty());
        assert_eq!(inv.per_source.len(), 0);
        // A window another replica opened long ago is expired on arrival here.
        assert_eq!(inv.admit([2; 32], A, t0, t0 + TTL * 3), Err(InviteRefusal::Expired));
        assert!(inv.is_empty());
    }

    #[test]
    fn rooms_per_source_and_in_total_are_capped() {
        let t0 = Instant::now();
        let mut inv = Invites::new(TTL, 5, 2, 1000);
        assert!(inv.admit([1; 32], A, t0, t0).is_ok());
        assert!(inv.admit([2; 32], A, t0, t0).is_ok());
        assert_eq!(inv.admit([3; 32], A, t0, t0), Err(InviteRefusal::TooMany), "per source");
        // Joining a room someone else opened does not count against the joiner.
        assert!(inv.admit([1; 32], B, t0, t0).is_ok());
        for r in 4..7u8 {
            let src = SourceKey::V4(100 + u32::from(r));
            assert!(inv.admit([r; 32], src, t0, t0).is_ok(), "{r}");
        }
        assert_eq!(inv.len(), 5);
        assert_eq!(inv.admit([9; 32], SourceKey::V4(999), t0, t0), Err(InviteRefusal::TooMany), "in total");
    }

    #[test]
    fn relay_volume_is_capped_per_room() {
        let t0 = Instant::now();
        let mut inv = Invites::new(TTL, 10, 10, 100);
        inv.admit([1; 32], A, t0, t0).unwrap();
        assert!(inv.relay([1; 32], 60, t0));
        assert!(!inv.relay([1; 32], 41, t0), "over the budget: refused, not counted");
        assert!(inv.relay([1; 32], 40, t0));
        assert!(!inv.relay([1; 32], 1, t0));
        assert!(!inv.relay([2; 32], 1, t0), "an unknown room relays nothing");
    }
}
