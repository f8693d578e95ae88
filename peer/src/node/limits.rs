//! What one daemon spends on others: inbound connections in all and per source, discovered
//! targets, dials in flight, and each connection's write buffer.
//!
//! The defaults suit a home or office LAN (tens of devices); each is a `hearth daemon` flag
//! with an environment variable. A connection over a limit costs one accept and a close.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The daemon's resource limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Inbound connections served at once.
    pub inbound: usize,
    /// Inbound connections served at once from one source (an IPv4 address or an IPv6 /64).
    pub inbound_per_source: usize,
    /// Discovered (mDNS) dial targets remembered at once; more are ignored until some leave.
    pub mdns_targets: usize,
    /// Outbound dials (connect + upgrade) in flight at once.
    pub dials_in_flight: usize,
    /// Bytes queued for one connection's socket at most; a peer that does not read is closed.
    pub write_buffer: usize,
    /// A write (or close) that makes no progress for this long ends the connection.
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            inbound: 128,
            inbound_per_source: 16,
            mdns_targets: 64,
            dials_in_flight: 16,
            // Four 256 KiB batches in flight plus their Noise framing, and room for acks.
            write_buffer: 2 << 20,
            write_timeout: Duration::from_secs(20),
        }
    }
}

/// The key a per-source limit counts under: the address, or the /64 of an IPv6 address (a
/// single host is usually handed a whole /64).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Counts connections per source; a [`SourceSlot`] gives its place back when dropped.
#[derive(Debug, Clone)]
pub struct PerSource {
    max: usize,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerSource {
    /// At most `max` at once per source.
    pub fn new(max: usize) -> Self {
        Self { max, counts: Arc::default() }
    }

    /// A slot for one more connection from `ip`, unless that source holds `max` already.
    pub fn try_take(&self, ip: IpAddr) -> Option<SourceSlot> {
        let key = source_key(ip);
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let n = counts.entry(key).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(SourceSlot { key, counts: self.counts.clone() })
    }

    /// Sources holding at least one slot (the map never outgrows the connections served).
    pub fn sources(&self) -> usize {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// One connection's place in its source's count.
#[derive(Debug)]
pub struct SourceSlot {
    key: IpAddr,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = counts.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_gets_its_share_and_gives_it_back() {
        let p = PerSource::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let s1 = p.try_take(a).unwrap();
        let _s2 = p.try_take(a).unwrap();
        assert!(p.try_take(a).is_none(), "a third from one source is refused");
        let _s3 = p.try_take(b).expect("another source is not affected");
        drop(s1);
        assert!(p.try_take(a).is_some(), "a closed connection frees its place");
        assert_eq!(p.sources(), 2);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let x: IpAddr = "2001:db8:1:2::5".parse().unwrap();
        let y: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert_eq!(source_key(x), source_key(y));
        assert_ne!(source_key(x), source_key("2001:db8:1:3::5".parse().unwrap()));
        assert_eq!(source_key("::ffff:10.0.0.1".parse().unwrap()), "10.0.0.1".parse::<IpAddr>().unwrap());
        let p = PerSource::new(1);
        let _k = p.try_take(x).unwrap();
        assert!(p.try_take(y).is_none());
        drop(_k);
        assert_eq!(p.sources(), 0, "an empty source leaves the map");
    }
}
