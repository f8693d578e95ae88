//! Which devices WebRTC could not reach, and this network's NAT: what `hearth status` says
//! instead of retrying silently ("direct connection impossible from these networks; add a
//! TURN server on your rendezvous").

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hearth_stun::discovery::Behaviour;

use crate::ids::DeviceId;
use crate::nat;
use crate::node::status::{UnreachableStatus, WebRtcStatus};

/// This network's NAT is checked again after a failure once the last check is this old (a
/// laptop moves between networks).
const RECHECK_AFTER: Duration = Duration::from_secs(600);

/// Failed and successful channel openings per device, and the last NAT check.
#[derive(Debug, Default)]
pub(crate) struct Reach {
    /// Channels that never opened since the last one that did, per device.
    failures: BTreeMap<DeviceId, u32>,
    /// The last NAT check's result (`None` inside: it could not run) and when it ended.
    nat: Option<(Option<Behaviour>, Instant)>,
    /// A check is running.
    checking: bool,
}

impl Reach {
    /// A channel with `device` opened.
    pub(crate) fn reached(&mut self, device: DeviceId) {
        self.failures.remove(&device);
    }

    /// A channel with `device` never opened (ICE or DTLS did not complete in time).
    pub(crate) fn unreached(&mut self, device: DeviceId) {
        let n = self.failures.entry(device).or_default();
        *n = n.saturating_add(1);
    }

    /// Whether a NAT check should start now (none ran, or the last is stale and a channel
    /// failed since); marks it running.
    pub(crate) fn should_check(&mut self, now: Instant) -> bool {
        let stale = match &self.nat {
            None => true,
            Some((_, at)) => now.duration_since(*at) >= RECHECK_AFTER && !self.failures.is_empty(),
        };
        if stale && !self.checking {
            self.checking = true;
            return true;
        }
        false
    }

    /// A NAT check ended.
    pub(crate) fn checked(&mut self, result: Option<Behaviour>, now: Instant) {
        self.nat = Some((result, now));
        self.checking = false;
    }

    /// The status: this network's NAT, each device not reached with the hint for it, and
    /// the TURN relay in use (its URLs), if any.
    pub(crate) fn status(&self, relay: Option<String>) -> WebRtcStatus {
        let mine = self.nat.as_ref().and_then(|(b, _)| b.as_ref());
        WebRtcStatus {
            nat: mine.map(nat::status),
            unreachable: self
                .failures
                .iter()
                .map(|(d, n)| UnreachableStatus {
                    device: d.to_hex(),
                    attempts: *n,
                    hint: nat::unreachable_hint(mine, relay.is_some()),
                })
                .collect(),
            relay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_stun::discovery::{Filtering, Mapping};

    fn symmetric() -> Behaviour {
        Behaviour {
            mapped: "203.0.113.7:40000".parse().unwrap(),
            alternate: Some("198.51.100.2:3479".parse().unwrap()),
            mapping: Mapping::AddressAndPortDependent,
            filtering: Filtering::AddressAndPortDependent,
        }
    }

    #[test]
    fn failures_are_listed_until_a_channel_opens() {
        let (a, b) = (DeviceId([1; 16]), DeviceId([2; 16]));
        let mut r = Reach::default();
        r.unreached(a);
        r.unreached(a);
        r.unreached(b);
        r.checked(Some(symmetric()), Instant::now());
        let s = r.status(None);
        assert_eq!(s.unreachable.len(), 2);
        assert_eq!(s.unreachable[0].attempts, 2);
        assert!(s.unreachable[0].hint.starts_with("direct connection impossible from these networks"));
        assert_eq!(s.nat.as_ref().map(|n| n.needs_turn), Some(Some(true)));
        r.reached(a);
        assert_eq!(r.status(None).unreachable.len(), 1);
        assert!(r.status(Some("turn:relay:3478".into())).unreachable[0].hint.contains("TURN relay"));
    }

    #[test]
    fn the_nat_is_checked_once_then_again_only_when_stale_and_failing() {
        let mut r = Reach::default();
        let t0 = Instant::now();
        assert!(r.should_check(t0));
        assert!(!r.should_check(t0), "one check at a time");
        r.checked(None, t0);
        assert!(!r.should_check(t0 + RECHECK_AFTER), "stale but nothing failed");
        r.unreached(DeviceId([3; 16]));
        assert!(!r.should_check(t0 + RECHECK_AFTER / 2), "fresh enough");
        assert!(r.should_check(t0 + RECHECK_AFTER));
    }
}
