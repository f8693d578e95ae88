//! The soak (`hearth-rendezvous-bench --soak-secs N`): one `hearth-rendezvous` on a real
//! `redis-server`, for N seconds at a steady rate, with
//! - honest pairs signalling each other (their relay latency is the measure),
//! - churn: devices leaving and rejoining, signals held in their mailboxes meanwhile,
//!   pairing rooms opened and left to expire, revocations published,
//! - hostile clients at the same time: idle (slow-loris) connections, a flooding device,
//!   garbage and forged hellos, a pairing-room spammer.
//!
//! It prints server RSS and Redis memory after warm-up and at the end, honest p99 latency
//! before the churn starts ("idle") and during it, and after everything stops, the Redis
//! keys and rooms still held once their TTLs have passed. Every loop is bounded by the soak's
//! end; all traffic stays on loopback.

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use ed25519_dalek::SigningKey;
use hearth_e2e::rendezvous::Redis;
use hearth_peer::ids::DeviceId;
use hearth_proto::membership::{MembershipBody, MembershipRecord, Revocation};
use hearth_rendezvous::client::{self, Event, Identity, Join};
use tokio::io::AsyncWriteExt;

/// Pairing rooms live this long in the soak (short, so many expire during it).
const INVITE_TTL_SECS: u64 = 10;
/// Mailboxes live this long.
const MAILBOX_TTL_SECS: u64 = 5;
/// Honest pairs; each sends one signal every [`HONEST_PERIOD`].
const HONEST_PAIRS: usize = 50;
const HONEST_PERIOD: Duration = Duration::from_millis(200);
/// Vaults whose devices churn (three devices each).
const CHURN_VAULTS: usize = 20;

/// A device of vault `vault` (index `i`) with its root key.
fn device(vault: u32, i: u32) -> (SigningKey, Identity) {
    let mut rb = [0u8; 32];
    rb[..4].copy_from_slice(&vault.to_be_bytes());
    rb[31] = 7;
    let root = SigningKey::from_bytes(&rb);
    let mut db = [0u8; 32];
    db[..4].copy_from_slice(&vault.to_be_bytes());
    db[4..8].copy_from_slice(&i.to_be_bytes());
    db[31] = 8;
    let device_key = SigningKey::from_bytes(&db);
    let mut id = [0u8; 16];
    id[..4].copy_from_slice(&vault.to_be_bytes());
    id[4..8].copy_from_slice(&i.to_be_bytes());
    let ident = crate::enrolled_identity(&root, device_key, DeviceId(id));
    (root, ident)
}

/// The device an identity's enrolment names.
fn enrolled(id: &Identity) -> DeviceId {
    match &id.record.body {
        MembershipBody::Enroll(e) => e.device_id,
        MembershipBody::Revoke(r) | MembershipBody::Fork(r) => r.device_id,
        MembershipBody::Retire(r) => r.by,
    }
}

/// A loopback source address for client `n` (spreads clients over per-address caps).
fn source(n: usize) -> IpAddr {
    IpAddr::from([127, 0, 1 + (n / 200) as u8, 1 + (n % 200) as u8])
}

fn redis_used_memory(redis: &Redis) -> u64 {
    let info = redis.cli(&["INFO", "memory"]);
    info.lines().find_map(|l| l.strip_prefix("used_memory:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// Shared between the load tasks.
#[derive(Default)]
struct Stats {
    /// Honest relay latencies (µs) before the churn starts.
    idle: Mutex<Vec<u32>>,
    /// Honest relay latencies (µs) during the soak.
    soak: Mutex<Vec<u32>>,
    /// Set when the churn and hostile load run.
    loaded: AtomicBool,
    /// Set when every loop must stop.
    done: AtomicBool,
    rejoins: AtomicU64,
    invites: AtomicU64,
    revocations: AtomicU64,
    hostile: AtomicU64,
}

fn p99(v: &Mutex<Vec<u32>>) -> (usize, u32) {
    let mut v = v.lock().map(|g| g.clone()).unwrap_or_default();
    v.sort_unstable();
    (v.len(), v.get((v.len().max(1) - 1) * 99 / 100).copied().unwrap_or(0))
}

/// Runs the soak for `secs` seconds; prints its figures.
pub(crate) async fn run(secs: u64) -> anyhow::Result<()> {
    let redis = Redis::start();
    let addr = SocketAddr::from(([127, 0, 0, 1], crate::free_port()?));
    let exe = std::env::current_exe()?.with_file_name("hearth-rendezvous");
    let child = Command::new(&exe)
        .args(["--listen", &addr.to_string(), "--no-stun", "--metrics-bind", "127.0.0.1:0"])
        .args(["--redis-url", &redis.url])
        .args(["--invite-ttl", &INVITE_TTL_SECS.to_string(), "--mailbox-ttl", &MAILBOX_TTL_SECS.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env("RUST_LOG", "warn")
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let server = crate::Server { child, addr, name: "hearth" };
    crate::wait_listening(addr).await?;
    let url = format!("ws://{addr}/v1/signal");
    let stats = Arc::new(Stats::default());
    let keys_before = redis.cli(&["DBSIZE"]);

    // Honest pairs run from the start; the first 30 s (at most a third of the soak) are the
    // idle figure.
    let mut tasks = Vec::new();
    for p in 0..HONEST_PAIRS {
        tasks.push(tokio::spawn(honest_pair(url.clone(), p, Arc::clone(&stats))));
    }
    let warm = Duration::from_secs((secs / 3).min(30));
    tokio::time::sleep(warm).await;
    stats.loaded.store(true, Ordering::Relaxed);
    let rss0 = server.rss_kib();
    let redis0 = redis_used_memory(&redis);
    println!(
        "\nsoak: {secs} s on hearth-rendezvous + redis-server, churn and hostile clients after {} s",
        warm.as_secs()
    );
    for v in 0..CHURN_VAULTS {
        tasks.push(tokio::spawn(churn_vault(url.clone(), v, Arc::clone(&stats))));
    }
    tasks.push(tokio::spawn(invites(url.clone(), Arc::clone(&stats))));
    tasks.push(tokio::spawn(hostile(addr, url.clone(), Arc::clone(&stats))));
    // Memory after the load has warmed up, then at the end.
    let settle = Duration::from_secs(secs.saturating_sub(warm.as_secs()) / 4);
    tokio::time::sleep(settle).await;
    let rss1 = server.rss_kib();
    let redis1 = redis_used_memory(&redis);
    tokio::time::sleep(Duration::from_secs(secs).saturating_sub(warm + settle)).await;
    let rss2 = server.rss_kib();
    let redis2 = redis_used_memory(&redis);
    stats.done.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
    }
    // Everything has left; after every TTL has passed nothing may be held.
    tokio::time::sleep(Duration::from_secs(INVITE_TTL_SECS * 2 + 17)).await;
    let keys_after = redis.cli(&["DBSIZE"]);
    let leftover = redis.cli(&["--scan", "--pattern", "hearth:*"]);
    let rss3 = server.rss_kib();
    let (ni, pi) = p99(&stats.idle);
    let (ns, ps) = p99(&stats.soak);
    println!(
        "  load: {} rejoins, {} pairing rooms, {} revocations, {} hostile attempts",
        stats.rejoins.load(Ordering::Relaxed),
        stats.invites.load(Ordering::Relaxed),
        stats.revocations.load(Ordering::Relaxed),
        stats.hostile.load(Ordering::Relaxed)
    );
    println!(
        "  server RSS: {:.1} MiB at load start, {:.1} MiB warmed up, {:.1} MiB at the end ({:+.1} %), {:.1} MiB after all left",
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0,
        rss2 as f64 / 1024.0,
        (rss2 as f64 / rss1.max(1) as f64 - 1.0) * 100.0,
        rss3 as f64 / 1024.0
    );
    println!(
        "  redis used_memory: {:.2} MiB at load start, {:.2} MiB warmed up, {:.2} MiB at the end ({:+.1} %)",
        redis0 as f64 / 1048576.0,
        redis1 as f64 / 1048576.0,
        redis2 as f64 / 1048576.0,
        (redis2 as f64 / redis1.max(1) as f64 - 1.0) * 100.0
    );
    println!(
        "  honest relay p99: idle {pi} us ({ni} signals), under churn and attack {ps} us ({ns} signals): {:.2}x (target <= 2)",
        ps as f64 / pi.max(1) as f64
    );
    // What is still there must be on its way out: every key has an expiry within its bound
    // (revocation sets outlive their room by 10 minutes, by design).
    let mut kinds: std::collections::BTreeMap<String, (usize, i64)> = std::collections::BTreeMap::new();
    let mut no_expiry = Vec::new();
    for k in leftover.lines().filter(|k| !k.is_empty()) {
        let ttl: i64 = redis.cli(&["PTTL", k]).parse().unwrap_or(-1);
        if ttl < 0 {
            no_expiry.push(k.to_owned());
        }
        let kind = k.split(':').take(2).collect::<Vec<_>>().join(":");
        let e = kinds.entry(kind).or_insert((0, 0));
        e.0 += 1;
        e.1 = e.1.max(ttl);
    }
    let summary: Vec<String> =
        kinds.iter().map(|(k, (n, ttl))| format!("{n} {k} (expire within {:.0} s)", *ttl as f64 / 1000.0)).collect();
    println!(
        "  {} s after the load stopped: redis keys {keys_before} before the soak, {keys_after} now: {}; keys without an expiry: {}",
        INVITE_TTL_SECS * 2 + 17,
        if summary.is_empty() { "none".to_owned() } else { summary.join(", ") },
        if no_expiry.is_empty() { "none".to_owned() } else { no_expiry.join(" ") }
    );
    Ok(())
}

/// One honest pair: `a` sends `b` a timestamped signal every period until the soak ends.
async fn honest_pair(url: String, p: usize, stats: Arc<Stats>) -> anyhow::Result<()> {
    let (_, ia) = device(1000 + p as u32, 0);
    let (_, ib) = device(1000 + p as u32, 1);
    let mut a = client::connect_from(&url, &Join::Vault(Box::new(ia)), Some(source(2 * p))).await?;
    let mut b = client::connect_from(&url, &Join::Vault(Box::new(ib)), Some(source(2 * p + 1))).await?;
    let origin = Instant::now();
    let mut tick = tokio::time::interval(HONEST_PERIOD);
    while !stats.done.load(Ordering::Relaxed) {
        tokio::select! {
            _ = tick.tick() => {
                let t = origin.elapsed().as_micros() as u64;
                a.signal(b.device, &t.to_le_bytes()).await?;
            }
            ev = b.next() => {
                if let Event::Signal { payload, .. } = ev? {
                    let sent = u64::from_le_bytes(payload.get(..8).and_then(|s| s.try_into().ok()).unwrap_or([0; 8]));
                    let us = (origin.elapsed().as_micros() as u64).saturating_sub(sent) as u32;
                    let sink = if stats.loaded.load(Ordering::Relaxed) { &stats.soak } else { &stats.idle };
                    if let Ok(mut v) = sink.lock() {
                        v.push(us);
                    }
                }
            }
            ev = a.next() => { ev?; }
        }
    }
    Ok(())
}

/// A churning vault: device 0 stays; devices 1 and 2 leave and rejoin in turn while device 0
/// signals them (held in their mailboxes); each round the vault publishes a revocation (a
/// lost phone's record), which the server must keep bounded.
async fn churn_vault(url: String, v: usize, stats: Arc<Stats>) -> anyhow::Result<()> {
    let vault = 2000 + v as u32;
    let (root, i0) = device(vault, 0);
    let vault_id = hearth_proto::vault_id_of(&root.verifying_key());
    let src = 1000 + 4 * v;
    let mut home = client::connect_from(&url, &Join::Vault(Box::new(i0)), Some(source(src))).await?;
    let mut round = 0u32;
    while !stats.done.load(Ordering::Relaxed) {
        let who = 1 + round % 2;
        let (_, id) = device(vault, who);
        let target = enrolled(&id);
        let c =
            client::connect_from(&url, &Join::Vault(Box::new(id.clone())), Some(source(src + who as usize))).await?;
        c.close().await;
        // Held for the device while it is away.
        home.signal(target, b"held while away").await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut back = client::connect_from(&url, &Join::Vault(Box::new(id)), Some(source(src + who as usize))).await?;
        let _ = tokio::time::timeout(Duration::from_millis(500), back.next()).await;
        back.close().await;
        stats.rejoins.fetch_add(1, Ordering::Relaxed);
        // Every round the home device publishes a revocation, cycling over 16 lost devices:
        // new ones at first, then the re-presentations every device makes at each join.
        {
            let lost = DeviceId({
                let mut d = [0xEE; 16];
                d[..4].copy_from_slice(&(round % 16).to_be_bytes());
                d
            });
            let rec = MembershipRecord::sign(
                &root,
                MembershipBody::Revoke(Revocation {
                    vault_id,
                    device_id: lost,
                    last_seq: 0,
                    last_hash: [0; 32],
                    at_ms: 0,
                }),
            );
            home.revoke(&rec).await?;
            stats.revocations.fetch_add(1, Ordering::Relaxed);
        }
        // Drain whatever the home device was told (presence, errors).
        while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(1), home.next()).await {}
        round += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// Pairing rooms: a new one every 250 ms; both ends exchange a signal, one leaves, the
/// other stays until the room's window ends and the server removes it.
async fn invites(url: String, stats: Arc<Stats>) -> anyhow::Result<()> {
    let mut n = 0u64;
    let mut waiting = Vec::new();
    while !stats.done.load(Ordering::Relaxed) {
        let mut room = [0u8; 32];
        room[..8].copy_from_slice(&n.to_be_bytes());
        room[31] = 0x1F;
        let from = source(3000 + (n % 400) as usize);
        let mut a = client::connect_from(&url, &Join::Invite(room), Some(from)).await?;
        let b = client::connect_from(&url, &Join::Invite(room), Some(from)).await?;
        a.signal(b.device, b"pairing offer").await?;
        b.close().await;
        // Kept open until the server closes it at the TTL (bounded: the window is 10 s).
        waiting.push(tokio::spawn(async move { while a.next().await.is_ok() {} }));
        stats.invites.fetch_add(1, Ordering::Relaxed);
        n += 1;
        waiting.retain(|t| !t.is_finished());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for t in waiting {
        let _ = tokio::time::timeout(Duration::from_secs(INVITE_TTL_SECS + 5), t).await;
    }
    Ok(())
}

/// Hostile clients, all at once, until the soak ends.
async fn hostile(addr: SocketAddr, url: String, stats: Arc<Stats>) -> anyhow::Result<()> {
    let mut idle: Vec<tokio::net::TcpStream> = Vec::new();
    let mut round = 0u64;
    let (_, flooder) = device(9000, 0);
    let mut flood: Option<client::Connection> = None;
    while !stats.done.load(Ordering::Relaxed) {
        // Slow-loris: keep 64 silent connections from one address (its cap) open.
        idle.retain(|s| {
            s.try_read(&mut [0u8; 1]).map_or_else(|e| e.kind() == std::io::ErrorKind::WouldBlock, |_| false)
        });
        while idle.len() < 64 {
            let s = tokio::net::TcpSocket::new_v4()?;
            s.bind(SocketAddr::from(([127, 0, 9, 9], 0)))?;
            match s.connect(addr).await {
                Ok(c) => idle.push(c),
                Err(_) => break,
            }
            stats.hostile.fetch_add(1, Ordering::Relaxed);
        }
        // A flooding device: far over its message rate, to nobody.
        if flood.is_none() {
            flood = client::connect_from(&url, &Join::Vault(Box::new(flooder.clone())), Some(source(5000))).await.ok();
        }
        if let Some(f) = &mut flood {
            let mut broke = false;
            for _ in 0..50 {
                if f.signal(DeviceId([0xAB; 16]), b"flood").await.is_err() {
                    broke = true;
                    break;
                }
            }
            while let Ok(r) = tokio::time::timeout(Duration::from_millis(1), f.next()).await {
                if r.is_err() {
                    broke = true;
                    break;
                }
            }
            if broke {
                flood = None;
            }
            stats.hostile.fetch_add(50, Ordering::Relaxed);
        }
        // Garbage and forged hellos on fresh connections.
        if round.is_multiple_of(5) {
            if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                let _ = s
                    .write_all(b"GET /v1/signal HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n\x00\xff garbage")
                    .await;
            }
            let (_, mut forged) = device(9001, 0);
            forged.device_key = SigningKey::from_bytes(&[0x66; 32]);
            let _ = client::connect_from(&url, &Join::Vault(Box::new(forged)), Some(source(5001))).await;
            stats.hostile.fetch_add(2, Ordering::Relaxed);
        }
        // A pairing-room spammer: random rooms from one address, far over its cap.
        for _ in 0..4 {
            let room: [u8; 32] = rand::random();
            let _ = client::connect_from(&url, &Join::Invite(room), Some(source(5002))).await;
            stats.hostile.fetch_add(1, Ordering::Relaxed);
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
