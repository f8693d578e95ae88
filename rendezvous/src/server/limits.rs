//! Limits: every knob of the server in one place, and the per-connection message bucket.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hearth_stun::rate_limit::SourceKey;

/// All configurable limits (each has a flag and a `HEARTH_*` env var in the binary).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest WebSocket message accepted; bigger ones close the connection (1009).
    pub max_message_bytes: usize,
    /// Total concurrent connections.
    pub max_connections: usize,
    /// Concurrent connections from one IP address.
    pub max_connections_per_ip: usize,
    /// New connections per second from one IP (burst: twice this).
    pub handshakes_per_ip_per_sec: u32,
    /// Members of one vault room.
    pub max_room_size: usize,
    /// Messages per second per connection (burst: twice this); excess is dropped.
    pub messages_per_sec: u32,
    /// Time allowed between upgrade and a valid hello.
    pub admission_timeout: Duration,
    /// A connection silent (no frame, no pong) this long is closed; pings go out at half.
    pub idle_timeout: Duration,
    /// Outbound messages queued per connection before it counts as a slow reader.
    pub queue_len: usize,
    /// How long a pairing room lives (from its first join; members are removed then).
    pub invite_ttl: Duration,
    /// Pairing rooms opened and remembered at once, in total.
    pub max_invite_rooms: usize,
    /// Pairing rooms one source (IPv4 address, IPv6 /64) may have opened at once.
    pub invite_rooms_per_ip: usize,
    /// Signal bytes one pairing room may relay (a pairing needs a few KiB).
    pub invite_relay_bytes: usize,
    /// How long signals for a device that just disconnected are held (zero: not at all).
    pub mailbox_ttl: Duration,
    /// Signals held per offline device.
    pub mailbox_len: usize,
    /// Bytes held in the mailboxes of one room (vault) together.
    pub mailbox_room_bytes: usize,
    /// Bytes held in all mailboxes together.
    pub mailbox_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 64 * 1024,
            max_connections: 15_000,
            max_connections_per_ip: 64,
            handshakes_per_ip_per_sec: 20,
            max_room_size: 64,
            messages_per_sec: 50,
            admission_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            queue_len: 64,
            invite_ttl: Duration::from_secs(600),
            max_invite_rooms: 10_000,
            invite_rooms_per_ip: 8,
            invite_relay_bytes: 64 * 1024,
            mailbox_ttl: Duration::from_secs(30),
            mailbox_len: 32,
            mailbox_room_bytes: 1 << 20,
            mailbox_bytes: 16 << 20,
        }
    }
}

/// A token bucket for one connection's messages (the STUN server's bucket, own rate).
#[derive(Debug)]
pub(crate) struct Bucket {
    inner: hearth_stun::rate_limit::Bucket,
    rate: f64,
    burst: f64,
}

impl Bucket {
    pub(crate) fn new(per_sec: u32, now: Instant) -> Self {
        let burst = f64::from(per_sec.max(1)) * 2.0;
        Self { inner: hearth_stun::rate_limit::Bucket::full(burst, now), rate: f64::from(per_sec), burst }
    }

    pub(crate) fn take(&mut self, now: Instant) -> bool {
        self.inner.take(now, self.rate, self.burst)
    }
}

/// Open connections per source: an IPv4 address or an IPv6 /64 (one subscriber's prefix, as
/// the handshake limiter counts it). Only sources with an open connection have an entry.
#[derive(Debug)]
pub(crate) struct IpSlots {
    counts: HashMap<SourceKey, usize>,
    per_source: usize,
}

impl IpSlots {
    pub(crate) fn new(per_source: usize) -> Self {
        Self { counts: HashMap::new(), per_source }
    }

    /// True when `key` may open one more connection.
    pub(crate) fn has_room(&self, key: SourceKey) -> bool {
        self.counts.get(&key).copied().unwrap_or(0) < self.per_source
    }

    /// Counts a connection of `key` (after every other check passed, so a refusal leaves
    /// no entry behind).
    pub(crate) fn take(&mut self, key: SourceKey) {
        *self.counts.entry(key).or_insert(0) += 1;
    }

    /// A connection of `key` closed.
    pub(crate) fn release(&mut self, key: SourceKey) {
        if let Some(n) = self.counts.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.counts.remove(&key);
            }
        }
    }

    /// Sources with an open connection.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.counts.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn key(s: &str) -> SourceKey {
        SourceKey::from(s.parse::<IpAddr>().unwrap())
    }

    #[test]
    fn ipv6_counts_per_64_like_the_handshake_limiter() {
        let mut s = IpSlots::new(2);
        s.take(key("2001:db8:1:2::1"));
        s.take(key("2001:db8:1:2::ffff"));
        assert!(!s.has_room(key("2001:db8:1:2:abcd::9")), "one /64 is one source");
        assert!(s.has_room(key("2001:db8:1:3::1")));
        assert!(s.has_room(key("192.0.2.1")));
        assert_eq!(s.tracked(), 1);
    }

    #[test]
    fn entries_leave_with_their_last_connection_and_refusals_leave_none() {
        let mut s = IpSlots::new(1);
        // Many sources refused elsewhere (capacity) only ever asked has_room: no entries.
        for i in 0..1000u32 {
            assert!(s.has_room(SourceKey::V4(i)));
        }
        assert_eq!(s.tracked(), 0);
        s.take(key("192.0.2.1"));
        assert!(!s.has_room(key("192.0.2.1")));
        s.release(key("192.0.2.1"));
        s.release(key("192.0.2.1"));
        assert_eq!(s.tracked(), 0);
        assert!(s.has_room(key("192.0.2.1")));
    }
}
