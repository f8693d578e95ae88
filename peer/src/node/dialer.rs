//! Which peers to dial and when: static peers and discovered services, with backoff and jitter.
//!
//! A plain state machine fed the time: the node asks [`Dialer::due`] for dials to start and
//! reports how each ended. A target whose device is already connected (through another
//! address, or because it dialled us) is not dialled; a target that answered but never
//! became a live session (another vault, a revoked device, a fake that upgrades and stays
//! silent) waits minutes, not milliseconds, and a new address does not shorten that wait.
//! Discovered targets are capped, so advertisements cannot grow the plan without bound.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::Rng;

use super::status::DialStatus;
use crate::ids::DeviceId;

/// First retry delay after a failed dial.
const BASE: Duration = Duration::from_millis(500);
/// Longest delay between dials of an unreachable target.
const MAX: Duration = Duration::from_secs(30);
/// Delay after a peer refused us (or we refused it): wrong vault, revoked, not a Hearth peer,
/// or a connection that never became a live session.
pub const REFUSED: Duration = Duration::from_secs(300);

/// A dial target's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetId(pub u64);

/// Where a target came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `--peer` or the home's peers file.
    Static,
    /// An mDNS service instance (its full name).
    Mdns(String),
    /// A device the rendezvous shows online: dialled through WebRTC.
    Rendezvous(DeviceId),
}

/// How a dialled connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The TCP/WebSocket connect failed.
    Unreachable,
    /// The connection closed (or timed out) before the session was live, without a local
    /// verdict. An honest device of this vault always completes the handshake and hello, so
    /// this waits as long as a refusal: the other end refused us without saying so, or is
    /// not a Hearth device of this vault at all.
    Early,
    /// One side refused the other: different vault, not a member, revoked.
    Refused,
    /// A live session ended (network drop, peer shut down).
    AfterLive,
    /// Closed as the losing one of two sessions with the same device.
    Duplicate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Dialing,
    Connected,
}

#[derive(Debug)]
struct Target {
    source: Source,
    addrs: Vec<String>,
    state: State,
    failures: u32,
    /// The last attempt was refused (or never went live): its wait is not cut short.
    refused: bool,
    next_at: Instant,
    /// The device behind this target, once a session through it went live.
    device: Option<DeviceId>,
    /// Its service went away while a dial or session was running: drop it when that ends.
    gone: bool,
    /// How the last attempt ended, and when that kind of ending was last reported in the log.
    last: Option<Ended>,
    reported: Option<Instant>,
}

/// How often the same kind of failure of one target is logged again.
const REPORT_EVERY: Duration = Duration::from_secs(600);

/// `base`·2^`doublings`, at most `cap` (exponential backoff).
pub(crate) fn doubled(base: Duration, doublings: u32, cap: Duration) -> Duration {
    base.saturating_mul(1 << doublings.min(16)).min(cap)
}

/// `d` ±25 %, so peers that lost each other at once do not retry in lockstep.
pub(crate) fn jittered(d: Duration, rng: &mut impl Rng) -> Duration {
    d.mul_f64(rng.gen_range(0.75..1.25))
}

/// The dial plan.
#[derive(Debug)]
pub struct Dialer {
    targets: BTreeMap<TargetId, Target>,
    next_id: u64,
    /// Discovered targets held at most.
    max_mdns: usize,
}

impl Default for Dialer {
    fn default() -> Self {
        Self { targets: BTreeMap::new(), next_id: 0, max_mdns: 64 }
    }
}

impl Dialer {
    /// Adds a target to dial now.
    pub fn add(&mut self, source: Source, addrs: Vec<String>, now: Instant) -> TargetId {
        let id = TargetId(self.next_id);
        self.next_id += 1;
        let t = Target {
            source,
            addrs,
            state: State::Waiting,
            failures: 0,
            refused: false,
            next_at: now,
            device: None,
            gone: false,
            last: None,
            reported: None,
        };
        self.targets.insert(id, t);
        id
    }

    /// At most `max` discovered targets at once (more are ignored until some leave).
    pub fn set_max_mdns(&mut self, max: usize) {
        self.max_mdns = max;
    }

    /// A discovered service appeared or changed address: add it, or update its addresses.
    /// `None` when the plan already holds the most discovered targets it may.
    pub fn upsert_mdns(&mut self, name: &str, addrs: Vec<String>, now: Instant) -> Option<TargetId> {
        let full = self.mdns_len() >= self.max_mdns;
        let found = self.targets.iter_mut().find(|(_, t)| matches!(&t.source, Source::Mdns(n) if n == name));
        match found {
            Some((id, t)) => {
                t.gone = false;
                if t.addrs != addrs {
                    t.addrs = addrs;
                    // New addresses deserve a prompt try, unless the peer refused us.
                    if t.state == State::Waiting && t.failures > 0 && !t.refused && t.next_at > now + BASE {
                        t.next_at = now;
                        t.failures = 0;
                    }
                }
                Some(*id)
            }
            None if full => None,
            None => Some(self.add(Source::Mdns(name.to_owned()), addrs, now)),
        }
    }

    /// The devices the rendezvous shows online (and that this device should dial): adds a
    /// target for each new one, drops those that left (a running dial or session finishes).
    pub fn set_rendezvous(&mut self, devices: &[DeviceId], now: Instant) {
        let has = |t: &Target, d: &DeviceId| matches!(t.source, Source::Rendezvous(x) if x == *d);
        self.targets.retain(|_, t| {
            !(matches!(t.source, Source::Rendezvous(d) if !devices.contains(&d)) && t.state == State::Waiting)
        });
        for t in self.targets.values_mut() {
            if let Source::Rendezvous(d) = t.source {
                t.gone = !devices.contains(&d);
            }
        }
        for d in devices {
            if !self.targets.values().any(|t| has(t, d)) {
                let id = self.add(Source::Rendezvous(*d), vec![d.to_hex()], now);
                if let Some(t) = self.targets.get_mut(&id) {
                    // Known from the start: not dialled while it is connected some other way.
                    t.device = Some(*d);
                }
            }
        }
    }

    /// The waiting target from `source` is due now, unless it waits out a refusal.
    pub fn retry_now(&mut self, source: &Source, now: Instant) {
        for t in self.targets.values_mut() {
            if t.source == *source && t.state == State::Waiting && !t.refused && t.next_at > now {
                t.next_at = now;
            }
        }
    }

    /// Where a target came from.
    pub fn source(&self, id: TargetId) -> Option<&Source> {
        self.targets.get(&id).map(|t| &t.source)
    }

    fn mdns_len(&self) -> usize {
        self.targets.values().filter(|t| matches!(t.source, Source::Mdns(_))).count()
    }

    /// A discovered service went away: stop dialling it (a live session stays up, and the
    /// target goes when it ends).
    pub fn remove_mdns(&mut self, name: &str) {
        self.targets.retain(|_, t| !(matches!(&t.source, Source::Mdns(n) if n == name) && t.state == State::Waiting));
        for t in self.targets.values_mut() {
            if matches!(&t.source, Source::Mdns(n) if n == name) {
                t.gone = true;
            }
        }
    }

    /// Targets to dial now, marked as dialling. `connected` says whether a device already has
    /// a live session that a dial through this source would not improve on (such targets are
    /// skipped until it ends).
    pub fn due(&mut self, now: Instant, connected: impl Fn(DeviceId, &Source) -> bool) -> Vec<(TargetId, Vec<String>)> {
        let mut out = Vec::new();
        for (id, t) in &mut self.targets {
            if t.state != State::Waiting || t.next_at > now || t.addrs.is_empty() {
                continue;
            }
            if t.device.is_some_and(|d| connected(d, &t.source)) {
                continue;
            }
            t.state = State::Dialing;
            out.push((*id, t.addrs.clone()));
        }
        out
    }

    /// A dial produced a connection.
    pub fn opened(&mut self, id: TargetId) {
        if let Some(t) = self.targets.get_mut(&id) {
            t.state = State::Connected;
        }
    }

    /// A session through this target went live with `device`.
    pub fn live(&mut self, id: TargetId, device: DeviceId) {
        if let Some(t) = self.targets.get_mut(&id) {
            t.device = Some(device);
            t.failures = 0;
            t.refused = false;
        }
    }

    /// A dial or its connection ended; schedules the next try. Returns true when this failure
    /// is worth a line in the log: a new kind of failure for this target, or the same one
    /// [`REPORT_EVERY`] after it was last said (so a dead peer is not a line every 30 s).
    pub fn ended(&mut self, id: TargetId, how: Ended, now: Instant, rng: &mut impl Rng) -> bool {
        let Some(t) = self.targets.get_mut(&id) else { return false };
        if t.gone {
            self.targets.remove(&id);
            return false;
        }
        // Refused and Early are one kind to a person: "it said no".
        let kind = |e: Option<Ended>| e.map(|e| matches!(e, Ended::Refused | Ended::Early));
        let failure = matches!(how, Ended::Unreachable | Ended::Refused | Ended::Early);
        let report = failure
            && (kind(t.last) != kind(Some(how))
                || t.reported.is_none_or(|at| now.saturating_duration_since(at) >= REPORT_EVERY));
        if report {
            t.reported = Some(now);
        }
        if !failure {
            t.reported = None;
        }
        t.last = Some(how);
        t.state = State::Waiting;
        t.refused = matches!(how, Ended::Refused | Ended::Early);
        let delay = match how {
            Ended::Refused | Ended::Early => {
                t.failures = t.failures.saturating_add(1);
                REFUSED
            }
            Ended::AfterLive | Ended::Duplicate => {
                t.failures = 0;
                BASE
            }
            Ended::Unreachable => {
                t.failures = t.failures.saturating_add(1);
                doubled(BASE, t.failures, MAX)
            }
        };
        t.next_at = now + jittered(delay, rng);
        if t.refused && !matches!(t.source, Source::Rendezvous(_)) {
            t.device = None;
        }
        report
    }

    /// "static 127.0.0.1:7475", "mdns … (name)", "webrtc DEVICE": a target as the log names it.
    pub fn describe(&self, id: TargetId) -> Option<String> {
        self.targets.get(&id).map(|t| {
            let (source, target) = Self::named(t);
            format!("{source} {target}")
        })
    }

    fn named(t: &Target) -> (&'static str, String) {
        match &t.source {
            Source::Static => ("static", t.addrs.join(", ")),
            Source::Mdns(n) => ("mdns", format!("{} ({n})", t.addrs.join(", "))),
            Source::Rendezvous(d) => ("webrtc", d.to_hex()),
        }
    }

    /// Every target's state, for `hearth status`.
    pub fn view(&self, now: Instant) -> Vec<DialStatus> {
        self.targets
            .values()
            .map(|t| {
                let (source, target) = Self::named(t);
                let state = match (t.state, t.last) {
                    (State::Connected, _) => "connected",
                    (State::Dialing, _) => "connecting",
                    (State::Waiting, Some(Ended::Unreachable)) => "unreachable",
                    (State::Waiting, Some(Ended::Refused | Ended::Early)) => "refused",
                    (State::Waiting, _) => "waiting",
                };
                let next =
                    (t.state == State::Waiting).then(|| t.next_at.saturating_duration_since(now).as_millis() as u64);
                DialStatus {
                    source: source.to_owned(),
                    target,
                    state: state.to_owned(),
                    failures: t.failures,
                    next_retry_ms: next,
                    device: t.device.map(|d| d.to_hex()),
                }
            })
            .collect()
    }

    /// When the next waiting target becomes due.
    pub fn next_due(&self) -> Option<Instant> {
        self.targets.values().filter(|t| t.state == State::Waiting && !t.addrs.is_empty()).map(|t| t.next_at).min()
    }

    /// Number of targets (for tests and status).
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// True when there is no target.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const D: DeviceId = DeviceId([5; 16]);

    #[test]
    fn failures_are_reported_once_per_kind_then_every_ten_minutes_and_shown() {
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(1);
        let mut d = Dialer::default();
        let id = d.add(Source::Static, vec!["h:1".into()], now);
        assert_eq!(d.view(now)[0].state, "waiting");
        assert_eq!(d.describe(id).as_deref(), Some("static h:1"));
        let _ = d.due(now, |_, _| false);
        assert_eq!(d.view(now)[0].state, "connecting");
        assert!(d.ended(id, Ended::Unreachable, now, &mut rng), "the first failure is said");
        let v = &d.view(now)[0];
        assert_eq!((v.state.as_str(), v.failures), ("unreachable", 1));
        assert!(v.next_retry_ms.is_some_and(|ms| (375..=1250).contains(&ms)), "{v:?}");
        assert!(!d.ended(id, Ended::Unreachable, now + Duration::from_secs(60), &mut rng), "the same again is not");
        assert!(d.ended(id, Ended::Refused, now + Duration::from_secs(61), &mut rng), "a new kind is");
        assert_eq!(d.view(now)[0].state, "refused");
        assert!(!d.ended(id, Ended::Early, now + Duration::from_secs(62), &mut rng), "never-live is a refusal too");
        assert!(d.ended(id, Ended::Early, now + Duration::from_secs(61 + 600), &mut rng), "said again after 10 min");
        assert!(
            !d.ended(id, Ended::AfterLive, now + Duration::from_secs(700), &mut rng),
            "a session that ended is no failure"
        );
        assert_eq!(d.view(now + Duration::from_secs(700))[0].state, "waiting");
        assert!(
            d.ended(id, Ended::Early, now + Duration::from_secs(701), &mut rng),
            "after a success, the next failure is new"
        );
    }

    fn setup() -> (Dialer, TargetId, Instant, StdRng) {
        let mut d = Dialer::default();
        let now = Instant::now();
        let id = d.add(Source::Static, vec!["h:1".into()], now);
        (d, id, now, StdRng::seed_from_u64(1))
    }

    #[test]
    fn a_new_target_is_due_at_once_and_only_once() {
        let (mut d, id, now, _) = setup();
        assert_eq!(d.due(now, |_, _| false), vec![(id, vec!["h:1".to_string()])]);
        assert!(d.due(now + MAX, |_, _| false).is_empty(), "already dialling");
    }

    #[test]
    fn failures_back_off_exponentially_with_a_cap() {
        let (mut d, id, mut now, mut rng) = setup();
        let mut delays = Vec::new();
        for _ in 0..10 {
            assert_eq!(d.due(now, |_, _| false).len(), 1);
            d.ended(id, Ended::Unreachable, now, &mut rng);
            let next = d.next_due().unwrap();
            delays.push(next - now);
            assert!(d.due(next - Duration::from_millis(1), |_, _| false).is_empty());
            now = next;
        }
        assert!(delays[0] >= BASE.mul_f64(2.0 * 0.75) && delays[0] <= BASE.mul_f64(2.0 * 1.25), "{delays:?}");
        assert!(delays[3] > delays[1]);
        assert!(delays.iter().all(|d| *d <= MAX.mul_f64(1.25)), "{delays:?}");
        assert!(delays[9] >= MAX.mul_f64(0.75));
    }

    #[test]
    fn a_refusal_waits_minutes() {
        let (mut d, id, now, mut rng) = setup();
        d.due(now, |_, _| false);
        d.ended(id, Ended::Refused, now, &mut rng);
        assert!(d.next_due().unwrap() - now >= REFUSED.mul_f64(0.75));
    }

    #[test]
    fn a_connected_device_is_not_dialled_again_until_it_leaves() {
        let (mut d, id, now, mut rng) = setup();
        d.due(now, |_, _| false);
        d.opened(id);
        d.live(id, D);
        d.ended(id, Ended::Duplicate, now, &mut rng);
        let later = now + Duration::from_secs(5);
        assert!(d.due(later, |dev, _| dev == D).is_empty(), "its device is connected through another session");
        assert_eq!(d.due(later, |_, _| false).len(), 1, "once it is gone, dial again");
    }

    #[test]
    fn mdns_targets_update_in_place_and_leave_when_removed() {
        let mut d = Dialer::default();
        let now = Instant::now();
        let a = d.upsert_mdns("x._hearth._tcp.local.", vec!["10.0.0.1:7".into()], now).unwrap();
        let b = d.upsert_mdns("x._hearth._tcp.local.", vec!["10.0.0.2:7".into()], now).unwrap();
        assert_eq!(a, b);
        assert_eq!(d.len(), 1);
        assert_eq!(d.due(now, |_, _| false)[0].1, vec!["10.0.0.2:7".to_string()]);
        d.remove_mdns("x._hearth._tcp.local.");
        assert_eq!(d.len(), 1, "a target being dialled stays until its dial ends");
        d.ended(a, Ended::Unreachable, now, &mut StdRng::seed_from_u64(2));
        assert!(d.is_empty(), "and then goes, not redialled");
        let b = d.upsert_mdns("y._hearth._tcp.local.", vec!["10.0.0.3:7".into()], now).unwrap();
        d.ended(b, Ended::Unreachable, now, &mut StdRng::seed_from_u64(2));
        d.remove_mdns("y._hearth._tcp.local.");
        assert!(d.is_empty(), "a waiting target goes at once");
    }

    #[test]
    fn a_pipe_that_never_went_live_waits_as_long_as_a_refusal() {
        let (mut d, id, now, mut rng) = setup();
        d.due(now, |_, _| false);
        d.opened(id);
        d.ended(id, Ended::Early, now, &mut rng);
        let wait = d.next_due().unwrap() - now;
        assert!(wait >= REFUSED.mul_f64(0.75), "{wait:?}");
        assert!(d.due(now + MAX.mul_f64(1.25), |_, _| false).is_empty(), "not within the unreachable cap");
    }

    #[test]
    fn a_new_address_cuts_short_an_unreachable_wait_but_not_a_refusal() {
        let mut d = Dialer::default();
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(3);
        let name = "x._hearth._tcp.local.";
        let a = d.upsert_mdns(name, vec!["10.0.0.1:7".into()], now).unwrap();
        for _ in 0..3 {
            let t = d.next_due().unwrap();
            assert_eq!(d.due(t, |_, _| false).len(), 1);
            d.ended(a, Ended::Unreachable, t, &mut rng);
        }
        d.upsert_mdns(name, vec!["10.0.0.2:7".into()], now);
        assert_eq!(d.next_due(), Some(now), "an unreachable target is tried at its new address at once");
        d.due(now, |_, _| false);
        d.ended(a, Ended::Refused, now, &mut rng);
        d.upsert_mdns(name, vec!["10.0.0.3:7".into()], now);
        assert!(d.next_due().unwrap() - now >= REFUSED.mul_f64(0.75), "a refusal's wait stands");
        d.ended(a, Ended::Early, now, &mut rng);
        d.upsert_mdns(name, vec!["10.0.0.4:7".into()], now);
        assert!(d.next_due().unwrap() - now >= REFUSED.mul_f64(0.75), "so does a silent fake's");
    }

    #[test]
    fn rendezvous_devices_come_and_go_with_presence_and_are_known_from_the_start() {
        let mut d = Dialer::default();
        let now = Instant::now();
        let (x, y) = (DeviceId([1; 16]), DeviceId([2; 16]));
        d.set_rendezvous(&[x, y], now);
        d.set_rendezvous(&[x, y], now);
        assert_eq!(d.len(), 2, "one target per device");
        let due = d.due(now, |dev, src| dev == y && matches!(src, Source::Rendezvous(_)));
        assert_eq!(due.len(), 1, "y is connected already: only x is dialled");
        assert_eq!(d.source(due[0].0), Some(&Source::Rendezvous(x)));
        d.set_rendezvous(&[x], now);
        assert_eq!(d.len(), 1, "y left: its waiting target goes");
        d.set_rendezvous(&[], now);
        assert_eq!(d.len(), 1, "x is being dialled: its target stays until the dial ends");
        d.ended(due[0].0, Ended::Unreachable, now, &mut StdRng::seed_from_u64(4));
        assert!(d.is_empty());
    }

    #[test]
    fn an_introduction_cuts_short_an_unreachable_wait_but_not_a_refusal() {
        let mut d = Dialer::default();
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(5);
        let x = DeviceId([1; 16]);
        d.set_rendezvous(&[x], now);
        let t = d.due(now, |_, _| false)[0].0;
        d.ended(t, Ended::Unreachable, now, &mut rng);
        assert!(d.next_due().unwrap() > now);
        d.retry_now(&Source::Rendezvous(DeviceId([2; 16])), now);
        assert!(d.next_due().unwrap() > now, "another device's introduction changes nothing");
        d.retry_now(&Source::Rendezvous(x), now);
        assert_eq!(d.next_due(), Some(now), "x introduced itself: dialled at once");
        d.due(now, |_, _| false);
        d.ended(t, Ended::Refused, now, &mut rng);
        d.retry_now(&Source::Rendezvous(x), now);
        assert!(d.next_due().unwrap() > now + MAX, "a refusal's wait stands");
    }

    #[test]
    fn discovered_targets_are_capped_static_ones_are_not() {
        let mut d = Dialer::default();
        d.set_max_mdns(3);
        let now = Instant::now();
        for i in 0..3 {
            assert!(d.upsert_mdns(&format!("s{i}"), vec![format!("10.0.0.{i}:7")], now).is_some());
        }
        assert_eq!(d.upsert_mdns("s9", vec!["10.0.0.9:7".into()], now), None);
        assert!(d.upsert_mdns("s1", vec!["10.0.1.1:7".into()], now).is_some(), "a known one still updates");
        d.add(Source::Static, vec!["h:1".into()], now);
        assert_eq!(d.len(), 4);
        d.remove_mdns("s0");
        assert!(d.upsert_mdns("s9", vec!["10.0.0.9:7".into()], now).is_some(), "room again once one left");
    }
}
