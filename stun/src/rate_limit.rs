//! Per-source token buckets with a bounded table (sans-IO: time is passed in).
//!
//! Keys are IPv4 addresses or IPv6 /64 prefixes (one subscriber usually owns a whole /64,
//! so limiting single v6 addresses would be trivially bypassed). The table never grows past
//! its capacity: idle sources are swept out, and while it is still full a new source evicts
//! the stalest tracked one (a second-chance queue: O(1) per new source). A spoofed flood of
//! fresh addresses thus costs bounded memory and cannot starve a new honest client, as one
//! overflow bucket shared by every newcomer would; each spoofed address gets no more than
//! an unlimited table would give it.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The identity a rate limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKey {
    /// A whole IPv4 address.
    V4(u32),
    /// The upper 64 bits of an IPv6 address.
    V6Prefix(u64),
}

impl From<IpAddr> for SourceKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => SourceKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceKey::V4(u32::from(v4)),
                None => SourceKey::V6Prefix((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// One token bucket; rate and burst are passed in so a table of them stays small.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A bucket holding `burst` tokens at `now`.
    pub fn full(burst: f64, now: Instant) -> Self {
        Self { tokens: burst, last: now }
    }

    /// Refills for the time since the last call, then takes one token if there is one.
    pub fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Token-bucket limits per [`SourceKey`].
#[derive(Debug)]
pub struct RateLimiter {
    /// Tokens added per second.
    rate: f64,
    /// Bucket capacity: how many requests a quiet source may send at once.
    burst: f64,
    /// Most sources tracked at once; bounds memory under spoofed floods.
    capacity: usize,
    /// The tracked sources.
    buckets: HashMap<SourceKey, Bucket>,
    /// Tracked sources, oldest first (may hold keys swept since: skipped when met).
    order: VecDeque<SourceKey>,
    /// When the table was last swept, so a full table is swept at most once a second.
    last_sweep: Instant,
}

/// Recently active sources skipped before the oldest is evicted regardless.
const SECOND_CHANCES: usize = 8;

impl RateLimiter {
    /// `rate` requests/s per source with bursts of `burst`, tracking at most `capacity` sources.
    pub fn new(rate: u32, burst: u32, capacity: usize, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: f64::from(rate),
            burst,
            capacity: capacity.max(1),
            buckets: HashMap::with_capacity(capacity.clamp(1, 4096)),
            order: VecDeque::with_capacity(capacity.clamp(1, 4096)),
            last_sweep: now,
        }
    }

    /// Takes one token for `key`; false means the request must be dropped.
    pub fn allow(&mut self, key: SourceKey, now: Instant) -> bool {
        let (rate, burst) = (self.rate, self.burst);
        if let Some(b) = self.buckets.get_mut(&key) {
            return b.take(now, rate, burst);
        }
        if self.buckets.len() >= self.capacity {
            self.sweep(now);
        }
        if self.buckets.len() >= self.capacity {
            self.evict_stalest(now);
        }
        let mut b = Bucket { tokens: burst, last: now };
        let ok = b.take(now, rate, burst);
        self.buckets.insert(key, b);
        self.order.push_back(key);
        ok
    }

    /// Removes one tracked source: the oldest that has been quiet for a refill period, or
    /// after a few second chances the oldest of all.
    fn evict_stalest(&mut self, now: Instant) {
        let refill = self.refill();
        let mut chances = SECOND_CHANCES;
        while let Some(k) = self.order.pop_front() {
            let Some(b) = self.buckets.get(&k) else { continue };
            if chances > 0 && now.saturating_duration_since(b.last) < refill {
                chances -= 1;
                self.order.push_back(k);
                continue;
            }
            self.buckets.remove(&k);
            return;
        }
    }

    fn refill(&self) -> Duration {
        Duration::from_secs_f64(self.burst / self.rate.max(f64::MIN_POSITIVE))
    }

    /// Sources currently tracked.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
    }

    /// Forgets sources whose bucket has refilled (they are indistinguishable from new ones).
    fn sweep(&mut self, now: Instant) {
        if now.saturating_duration_since(self.last_sweep) < Duration::from_secs(1) {
            return;
        }
        self.last_sweep = now;
        let refill = self.refill();
        self.buckets.retain(|_, b| now.saturating_duration_since(b.last) < refill);
        let buckets = &self.buckets;
        self.order.retain(|k| buckets.contains_key(k));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> SourceKey {
        SourceKey::V4(i)
    }

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(10, 5, 100, t0);
        assert_eq!((0..10).filter(|_| rl.allow(key(1), t0)).count(), 5);
        assert!(rl.allow(key(2), t0), "another source is unaffected");
        assert!(!rl.allow(key(1), t0 + Duration::from_millis(50)));
        assert!(rl.allow(key(1), t0 + Duration::from_millis(150)));
    }

    #[test]
    fn table_stays_bounded_and_sweeps_idle_sources() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(10, 5, 50, t0);
        for i in 0..10_000 {
            rl.allow(key(i), t0);
        }
        assert_eq!(rl.tracked(), 50);
        // After the buckets have refilled, the next new source triggers a sweep.
        assert!(rl.allow(key(99_999), t0 + Duration::from_secs(2)));
        assert_eq!(rl.tracked(), 1);
    }

    #[test]
    fn a_flood_of_fresh_sources_does_not_starve_a_new_client() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(10, 5, 50, t0);
        // A spoofed flood: 10,000 fresh addresses within the refill period.
        for i in 0..10_000 {
            rl.allow(key(i), t0 + Duration::from_micros(u64::from(i)));
        }
        assert_eq!(rl.tracked(), 50, "memory stays bounded");
        // A new honest client still gets its own full burst, not a shared, drained bucket.
        let t1 = t0 + Duration::from_millis(20);
        assert_eq!((0..10).filter(|_| rl.allow(key(1_000_000), t1)).count(), 5);
        assert!(rl.order.len() <= 50 + SECOND_CHANCES, "{}", rl.order.len());
    }

    #[test]
    fn eviction_prefers_quiet_sources() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(10, 5, 3, t0);
        rl.allow(key(1), t0);
        rl.allow(key(2), t0);
        rl.allow(key(3), t0);
        // Source 1 stays active; 2 and 3 go quiet for longer than a refill (0.5 s).
        let t1 = t0 + Duration::from_millis(900);
        rl.allow(key(1), t1 - Duration::from_millis(100));
        // The sweep would clear 2 and 3 here; turn it off to exercise eviction alone.
        rl.last_sweep = t1;
        rl.allow(key(4), t1);
        assert!(rl.buckets.contains_key(&key(1)), "the active source is kept");
        assert!(!rl.buckets.contains_key(&key(2)), "the stalest quiet one goes");
        assert_eq!(rl.tracked(), 3);
    }

    #[test]
    fn ipv6_is_limited_per_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(SourceKey::from(a), SourceKey::from(b));
        assert_ne!(SourceKey::from(a), SourceKey::from(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(SourceKey::from(mapped), SourceKey::from("10.0.0.1".parse::<IpAddr>().unwrap()));
    }
}
