//! Rendezvous replicas under Redis faults, with a real `redis-server` and recording devices:
//! Redis killed, restarted empty, put to sleep (`DEBUG SLEEP`), refusing writes
//! (`maxmemory` with `noeviction`), and a replica drained by SIGTERM behind a round-robin
//! forwarder. Each scenario's checker asserts on what the devices recorded: no device revoked
//! before a fault is admitted after it, every accepted signal is delivered once or its
//! sender is told (by id), presence matches the truth within one refresh of recovery, and
//! same-replica relay keeps its pace while Redis sleeps.

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use hearth_e2e::faults::{check_signals, Device, Forwarder, Seen};
use hearth_e2e::rendezvous::{http_get, Redis, Rv};
use hearth_e2e::rendezvous_identity;
use hearth_proto::ids::DeviceId;
use hearth_proto::membership::{MembershipBody, MembershipRecord, Revocation};
use hearth_rendezvous::client::{Event, Join};
use hearth_rendezvous::protocol::ErrorCode;

/// Presence TTL of the replicas here (seconds): a refresh every 2/3 s.
const TTL: &str = "2";

fn replica(redis: &Redis, extra: &[&str]) -> Rv {
    let mut args = vec!["--redis-url", &redis.url, "--presence-ttl", TTL];
    args.extend_from_slice(extra);
    Rv::start_logging(&args, None, "info")
}

fn vault(seed: u8, i: u8) -> Join {
    Join::Vault(Box::new(rendezvous_identity(seed, i)))
}

fn revocation(seed: u8, device: DeviceId) -> MembershipRecord {
    let root = SigningKey::from_bytes(&[seed; 32]);
    let vault_id = hearth_proto::vault_id_of(&root.verifying_key());
    MembershipRecord::sign(
        &root,
        MembershipBody::Revoke(Revocation { vault_id, device_id: device, last_seq: 0, last_hash: [0; 32], at_ms: 0 }),
    )
}

fn closed_as_revoked(h: &[(Instant, Seen)]) -> bool {
    h.iter().any(|(_, s)| matches!(s, Seen::Closed { code: 1008, reason } if reason.contains("revoked")))
}

fn joined(h: &[(Instant, Seen)]) -> bool {
    h.iter().any(|(_, s)| matches!(s, Seen::Joined(_)))
}

fn refused_as_revoked(h: &[(Instant, Seen)]) -> bool {
    h.iter().any(|(_, s)| *s == Seen::Refused(ErrorCode::Revoked))
}

fn sorted(mut v: Vec<DeviceId>) -> Vec<DeviceId> {
    v.sort();
    v
}

/// Waits until every device's last presence is the truth (the others of `all`); the time.
async fn until_presence_is_true(all: &[&Device], within: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        let ok = all.iter().all(|d| {
            let truth = sorted(all.iter().map(|o| o.id).filter(|o| *o != d.id).collect());
            d.presence().as_ref() == Some(&truth)
        });
        if ok {
            return t0.elapsed();
        }
        let shown: Vec<_> = all.iter().map(|d| d.presence()).collect();
        assert!(t0.elapsed() < within, "presence still not the truth after {within:?}: {shown:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Finding 1: a revocation sent while Redis is down is kept and stored once it is back, its
/// device is closed on the other replica, and after Redis restarts empty no replica (a fresh
/// one included) admits a device revoked before or during the fault.
#[test]
fn revocations_survive_redis_down_and_an_empty_restart() {
    let mut redis = Redis::start();
    let (r1, r2) = (replica(&redis, &[]), replica(&redis, &[]));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let admin = Device::start(r1.url(), vault(60, 1));
        let early = Device::start(r2.url(), vault(60, 2));
        let late = Device::start(r2.url(), vault(60, 3));
        until_presence_is_true(&[&admin, &early, &late], Duration::from_secs(10)).await;
        admin.revoke(revocation(60, early.id));
        early.until(Duration::from_secs(5), closed_as_revoked).await.expect("revoked before the fault: closed");

        // Redis dies; a revocation sent meanwhile is accepted, kept and counted as pending.
        redis.kill();
        admin.revoke(revocation(60, late.id));
        let pending = Instant::now();
        while r1.metric("hearth_rv_revocations_pending") < 1.0 {
            assert!(pending.elapsed() < Duration::from_secs(5), "revocation not pending: {}", r1.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(r1.metric("hearth_rv_redis_up"), 0.0);
        assert!(
            !admin.history().iter().any(|(_, s)| matches!(s, Seen::Event(Event::Error { .. }))),
            "no error to the revoker"
        );

        // Redis comes back empty: the revocation reaches the other replica, which closes
        // the device; nothing stays pending.
        redis.restart();
        let t = late.until(Duration::from_secs(10), closed_as_revoked).await;
        let t = t.expect("the device revoked while Redis was down is closed once it is back");
        eprintln!("revoked-while-down device closed {t:?} after the empty restart");
        while r1.metric("hearth_rv_revocations_pending") > 0.0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(r1.metric("hearth_rv_redis_up"), 1.0);

        // A replica started after the fault knows nothing locally: Redis, written back by the
        // others, refuses both devices.
        let r3 = replica(&redis, &[]);
        for (i, d) in [(2, &early), (3, &late)] {
            let again = Device::start(r3.url(), vault(60, i));
            let refused = again.until(Duration::from_secs(5), refused_as_revoked).await;
            let notes = |r: &Rv| {
                r.log().lines().filter(|l| l.contains("WARN") || l.contains("INFO")).collect::<Vec<_>>().join("\n")
            };
            assert!(
                refused.is_some(),
                "device {} admitted again: {:?}\nr1:\n{}\nr3:\n{}",
                d.id,
                again.history(),
                notes(&r1),
                notes(&r3)
            );
        }
        for (i, r) in [(2, &r1), (3, &r2)] {
            let again = Device::start(r.url(), vault(60, i));
            assert!(again.until(Duration::from_secs(5), refused_as_revoked).await.is_some());
        }
        let log = r1.log();
        assert!(log.contains("redis is unreachable") && log.contains("redis is back"), "{log}");
        assert!(log.contains("redis lost its data"), "{log}");
    });
}

/// Finding 2: after a quick kill + restart (0.3 s apart) and after a memory-full spell,
/// every device's presence is the truth again within about one refresh; finding 4's
/// memory-full case: a signal Redis refuses to hold is reported as such, by id, not as
/// "not online", and a revocation it refused is stored once memory frees.
#[test]
fn presence_converges_after_a_quick_restart_and_a_memory_full_spell() {
    let mut redis = Redis::start();
    let (r1, r2) = (replica(&redis, &[]), replica(&redis, &[]));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let a = Device::start(r1.url(), vault(61, 1));
        let b = Device::start(r2.url(), vault(61, 2));
        let c = Device::start(r1.url(), vault(61, 3));
        until_presence_is_true(&[&a, &b, &c], Duration::from_secs(10)).await;

        // While Redis is down, a device leaving is still seen by the devices of its own
        // replica (c is on r1 with a).
        redis.kill();
        let leaver = Device::start(r1.url(), vault(61, 5));
        assert!(leaver.until(Duration::from_secs(5), joined).await.is_some());
        let leaver_id = leaver.id;
        let seen_here = |d: &Device| d.presence().is_some_and(|p| p.contains(&leaver_id));
        assert!(a.until(Duration::from_secs(3), |_| seen_here(&a)).await.is_some(), "a sees it join: {:?}", a.presence());
        drop(leaver);
        let gone = a.until(Duration::from_secs(3), |_| !seen_here(&a)).await;
        assert!(gone.is_some(), "a still lists the device that left while Redis was down: {:?}", a.presence());
        std::thread::sleep(Duration::from_millis(300));
        let restarted = Instant::now();
        redis.restart();
        // Two refreshes later, every device's last word is the truth, whatever it was told
        // while Redis was empty.
        tokio::time::sleep(Duration::from_secs(2)).await;
        until_presence_is_true(&[&a, &b, &c], Duration::from_millis(1)).await;
        eprintln!("after a kill + restart 0.3 s apart: {}", settled(&[&a, &b, &c], restarted));

        // A device leaves (its mailbox opens), then Redis refuses every write for longer
        // than the presence TTL.
        let gone = Device::start(r2.url(), vault(61, 4));
        until_presence_is_true(&[&a, &b, &c, &gone], Duration::from_secs(5)).await;
        let gone_id = gone.id;
        drop(gone);
        until_presence_is_true(&[&a, &b, &c], Duration::from_secs(5)).await;
        redis.cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
        redis.cli(&["CONFIG", "SET", "maxmemory", "1"]);
        a.signal(gone_id, "held-while-full");
        a.revoke(revocation(61, DeviceId([9; 16])));
        let told = a
            .until(Duration::from_secs(5), |h| {
                h.iter().any(|(_, s)| {
                    matches!(s, Seen::Event(Event::Error { code: ErrorCode::Unavailable, id: Some(i), .. }) if i == "held-while-full")
                })
            })
            .await;
        assert!(told.is_some(), "a refused hold is named: {:?}", a.history());
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(r1.metric("hearth_rv_redis_errors_total{kind=\"refused\"}") > 0.0);
        assert_eq!(r1.metric("hearth_rv_revocations_pending"), 1.0);
        let wrong = a.presence() != Some(sorted(vec![b.id, c.id]));
        redis.cli(&["CONFIG", "SET", "maxmemory", "0"]);
        let freed = Instant::now();
        let t = until_presence_is_true(&[&a, &b, &c], Duration::from_secs(5)).await;
        eprintln!("memory-full spell (a's presence wrong during it: {wrong}): true again {t:?} after memory freed");
        tokio::time::sleep(Duration::from_secs(2)).await;
        until_presence_is_true(&[&a, &b, &c], Duration::from_millis(1)).await;
        eprintln!("after the memory-full spell: {}", settled(&[&a, &b, &c], freed));
        let stored = Instant::now();
        while r1.metric("hearth_rv_revocations_pending") > 0.0 {
            assert!(stored.elapsed() < Duration::from_secs(5), "revocation refused by a full Redis never stored");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            redis.cli(&["SISMEMBER", &format!("hearth:revoked:v{}", revoked_vault(61)), &DeviceId([9; 16]).to_hex()]),
            "1"
        );
    });
}

/// What the devices were told after `since`: how many presence updates, the last one when.
fn settled(all: &[&Device], since: Instant) -> String {
    let updates: Vec<(Instant, Vec<DeviceId>)> = all
        .iter()
        .flat_map(|d| d.history())
        .filter(|(t, _)| *t >= since)
        .filter_map(|(t, s)| match s {
            Seen::Event(Event::Presence(p)) | Seen::Joined(p) => Some((t, p)),
            _ => None,
        })
        .collect();
    let last = updates.iter().map(|(t, _)| t.duration_since(since)).max();
    let empty = updates.iter().filter(|(_, p)| p.is_empty()).count();
    format!("{} presence updates ({empty} saying nobody is online), the last {last:?} after", updates.len())
}

fn revoked_vault(seed: u8) -> String {
    hearth_proto::vault_id_of(&SigningKey::from_bytes(&[seed; 32]).verifying_key()).to_hex()
}

/// p99 of `v` (milliseconds).
fn p99(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 * 0.99).ceil() as usize).saturating_sub(1).min(v.len() - 1)]
}

/// When each named signal reached `d` (payload = name).
fn arrivals(d: &Device) -> std::collections::HashMap<Vec<u8>, Instant> {
    d.history()
        .into_iter()
        .filter_map(|(t, s)| match s {
            Seen::Event(Event::Signal { payload, .. }) => Some((payload, t)),
            _ => None,
        })
        .collect()
}

/// Finding 3: while Redis sleeps (`DEBUG SLEEP` in a loop), signals to a device on another
/// replica are answered within a second (delivered, or refused by id) and never delay the
/// signals behind them: same-replica relay p99 stays within 2× its idle figure; no backlog
/// hits the rate limit, no connection is closed, and a new join takes well under a second.
#[test]
fn a_sleeping_redis_holds_up_no_signal_behind_it() {
    let redis = Redis::start_with(&["--enable-debug-command", "local"]);
    let r1 = replica(&redis, &["--messages-per-sec", "400"]);
    let r2 = replica(&redis, &["--messages-per-sec", "400"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let a = Device::start(r1.url(), vault(62, 1));
        let b = Device::start(r1.url(), vault(62, 2));
        let c = Device::start(r2.url(), vault(62, 3));
        until_presence_is_true(&[&a, &b, &c], Duration::from_secs(10)).await;
        // The same traffic twice, Redis awake then asleep: a sends to b (same replica) and
        // to c (the other replica) in turn; only Redis's state differs between the two.
        let traffic = |phase: &'static str| {
            let (a, b, c) = (&a, &b, &c);
            async move {
                let (mut same, mut cross) = (Vec::new(), Vec::new());
                for i in 0..120 {
                    let id = format!("{phase}-same-{i}");
                    same.push((id.clone(), Instant::now()));
                    a.signal(b.id, &id);
                    let id = format!("{phase}-cross-{i}");
                    cross.push((id.clone(), Instant::now()));
                    a.signal(c.id, &id);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                (same, cross)
            }
        };
        let latencies = |sent: &[(String, Instant)]| -> Vec<f64> {
            let got = arrivals(&b);
            sent.iter().map(|(id, t)| got[id.as_bytes()].duration_since(*t).as_secs_f64() * 1e3).collect()
        };
        let (idle_same, _) = traffic("idle").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle_p99 = p99(latencies(&idle_same));

        // Redis sleeps 4 × 1 s, longer than the traffic lasts.
        let port = redis.port.to_string();
        let sleeper = std::thread::spawn(move || {
            for _ in 0..4 {
                let _ = std::process::Command::new("redis-cli").args(["-p", &port, "DEBUG", "SLEEP", "1"]).output();
            }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let join_t0 = Instant::now();
        let late = Device::start(r1.url(), vault(62, 4));
        let (same, cross) = traffic("sleeping").await;
        let joined = late.until(Duration::from_secs(2), joined).await;
        let joined = joined.map(|_| late.history()[0].0.duration_since(join_t0));
        sleeper.join().unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let sleeping_p99 = p99(latencies(&same));
        let cross_ids: Vec<String> = cross.iter().map(|(id, _)| id.clone()).collect();
        let (delivered, told) = check_signals(&cross_ids, &a.history(), &c.history());
        // Each cross-replica signal was answered (arrived, or an error came back) in time.
        let got_c = arrivals(&c);
        let errors: std::collections::HashMap<String, Instant> = a
            .history()
            .into_iter()
            .filter_map(|(t, s)| match s {
                Seen::Event(Event::Error { id: Some(id), .. }) => Some((id, t)),
                _ => None,
            })
            .collect();
        let slowest = cross
            .iter()
            .map(|(id, t)| {
                got_c
                    .get(id.as_bytes())
                    .or_else(|| errors.get(id))
                    .map_or(f64::MAX, |a| a.duration_since(*t).as_secs_f64())
            })
            .fold(0.0, f64::max);
        eprintln!(
            "same-replica relay p99: idle {idle_p99:.2} ms, Redis sleeping {sleeping_p99:.2} ms ({:.2}x); \
             cross-replica: {delivered} delivered, {told} refused by id, slowest answer {slowest:.2} s; \
             join during the sleep: {joined:?}",
            sleeping_p99 / idle_p99
        );
        // Within 2x, or 20 ms of slack: the p99 of 120 samples through debug builds swings
        // between 1 and 11 ms from run to run on this machine with Redis idle. A signal
        // waiting behind a Redis call waits the 750 ms deadline or more, far beyond either.
        let bound = (2.0 * idle_p99).max(idle_p99 + 20.0);
        assert!(sleeping_p99 <= bound, "same-replica p99 {sleeping_p99:.2} ms vs idle {idle_p99:.2} ms");
        assert!(slowest < 2.0, "a cross-replica signal waited {slowest:.2} s for an answer");
        assert!(told > 0, "the sleeping Redis refused nothing: the fault did not happen");
        // At most one Redis deadline (750 ms) and scheduling; it took 7.4–9.5 s before.
        assert!(joined.is_some_and(|t| t < Duration::from_millis(1500)), "join during the sleep: {joined:?}");
        for d in [&a, &b, &c] {
            let h = d.history();
            assert!(!h.iter().any(|(_, s)| matches!(s, Seen::Closed { .. })), "{:?}", h);
            assert!(
                !h.iter().any(|(_, s)| matches!(s, Seen::Event(Event::Error { code: ErrorCode::RateLimited, .. }))),
                "{:?}",
                h
            );
        }
    });
}

/// Finding 4 (drain) and 5 (readiness): a replica stopped by SIGTERM behind a round-robin
/// forwarder answers `/readyz` with 503 while it drains, and the signals that reach its
/// inbox after its devices left are handed to their new replica or mailbox: every signal is
/// delivered once or its sender is told.
#[test]
fn a_draining_replica_hands_over_its_inbox() {
    let redis = Redis::start();
    let mut fwd = Forwarder::bind();
    let name = fwd.addr.to_string();
    let flags = ["--messages-per-sec", "400", "--public-host", &name];
    let (r1, r2) = (replica(&redis, &flags), replica(&redis, &flags));
    fwd.run(vec![r1.http, r2.http]);
    let url = format!("ws://{}/v1/signal", fwd.addr);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // Connections take the replicas in turn: the sender's lands on r1, the receiver's on
        // r2, and the receiver's reconnect (r2 is drained) on r1.
        let sender = Device::start(url.clone(), vault(63, 1));
        let first = sender.until(Duration::from_secs(5), joined);
        assert!(first.await.is_some());
        let receiver = Device::start(url, vault(63, 2));
        until_presence_is_true(&[&sender, &receiver], Duration::from_secs(10)).await;
        let mut sent = Vec::new();
        let watch = r2.http;
        let mut readiness = None;
        for i in 0..300 {
            let id = format!("s-{i}");
            sender.signal(receiver.id, &id);
            sent.push(id);
            if i == 100 {
                r2.terminate();
                readiness = Some(std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    let t0 = Instant::now();
                    while t0.elapsed() < Duration::from_secs(15) {
                        let r = http_get(watch, "/readyz");
                        if r.is_empty() {
                            break;
                        }
                        seen.push(r.lines().next().unwrap_or_default().to_owned());
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    seen
                }));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (delivered, told) = check_signals(&sent, &sender.history(), &receiver.history());
        let joins = receiver.history().iter().filter(|(_, s)| matches!(s, Seen::Joined(_))).count();
        let said = readiness.map(|t| t.join().unwrap()).unwrap_or_default();
        eprintln!(
            "drain: {delivered} delivered, {told} refused by id, receiver joined {joins} times; readyz said {said:?}"
        );
        assert!(joins >= 2, "the receiver moved to the other replica");
        assert!(said.iter().any(|l| l.contains("503")), "/readyz answered 503 while draining: {said:?}");
        assert!(delivered >= sent.len() * 9 / 10, "{delivered} of {} delivered", sent.len());
    });
}
