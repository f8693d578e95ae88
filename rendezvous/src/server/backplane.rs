//! Redis backplane: lets several replicas behind a load balancer share presence and relay.
//!
//! - Presence: one sorted set per room (`hearth:presence:<room>`), member = device, score =
//!   expiry in ms. Each replica re-scores its own devices every TTL/3, so the devices of a
//!   replica that dies vanish within the TTL. `hearth:where:<room>` maps each device to the
//!   replica holding its connection.
//! - Signals: appended to the recipient replica's inbox stream (`hearth:inbox:<replica>`),
//!   which that replica reads from its last position, so nothing is lost while its Redis
//!   connection reconnects, and a replica only receives signals for its own devices.
//! - Room events (presence changed, joined, revoked): pub/sub channels `hearth:room:<room>`
//!   that every replica pattern-subscribes to. After a pub/sub reconnect the replica
//!   re-checks its local rooms (`Hub::resync`), since events sent meanwhile are gone.
//! - Mailboxes: `hearth:left:<room>:<device>` (expiring) and `hearth:mail:<room>:<device>`.
//! - `hearth:epoch`: a random value the first replica to see an empty Redis sets; a replica
//!   that finds another value than the one it saw knows Redis lost its data (a restart
//!   without persistence) and writes back what it holds (see `Hub::recover`).
//!
//! Every call goes through [`Health`]: bounded by a timeout, and failing at once while Redis
//! is known to be down.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

pub use super::redis_health::BackplaneError;
use super::redis_health::{Health, RedisMetrics, CALL_TIMEOUT};

/// The result of a backplane call.
pub type BpResult<T> = Result<T, BackplaneError>;

/// An event published to a room's channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RoomEvent {
    /// Deliver `text` (a server JSON message) to device `to`.
    Signal {
        /// Recipient (hex).
        to: String,
        /// The JSON text to send it.
        text: String,
    },
    /// Membership of the room changed: recompute and push presence.
    Presence,
    /// `device` joined through replica `replica`: any other replica holding an older
    /// connection of it closes that one (the device reconnected elsewhere).
    Joined {
        /// Device (hex).
        device: String,
        /// The replica it joined through.
        replica: u64,
    },
    /// Disconnect device `device` (revoked).
    Kick {
        /// Device (hex).
        device: String,
        /// Close reason.
        reason: String,
    },
}

/// A replica's handle on Redis.
#[derive(Clone)]
pub struct Backplane {
    conn: ConnectionManager,
    client: redis::Client,
    ttl: Duration,
    replica: u64,
    health: Health,
    /// The `hearth:epoch` value this replica last saw.
    epoch: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl std::fmt::Debug for Backplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backplane").field("ttl", &self.ttl).field("replica", &self.replica).finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn presence_key(room: &str) -> String {
    format!("hearth:presence:{room}")
}

fn where_key(room: &str) -> String {
    format!("hearth:where:{room}")
}

fn inbox_key(replica: u64) -> String {
    format!("hearth:inbox:{replica:016x}")
}

/// Where replicas leave the value that tells them Redis kept its data (see the module docs).
const EPOCH_KEY: &str = "hearth:epoch";
/// How long `hearth:epoch` outlives the last replica's probe.
const EPOCH_LIFETIME_MS: i64 = 3_600_000;

/// Signals kept in a replica's inbox (older ones are trimmed): enough to ride out a Redis
/// reconnect under heavy load without holding memory forever.
const INBOX_MAXLEN: usize = 10_000;

fn left_key(room: &str, device: &str) -> String {
    format!("hearth:left:{room}:{device}")
}

fn mail_key(room: &str, device: &str) -> String {
    format!("hearth:mail:{room}:{device}")
}

/// A signal on its way through a replica's inbox.
#[derive(Debug, Clone, Copy)]
pub struct Relayed<'a> {
    /// The room's backplane name.
    pub room: &'a str,
    /// Recipient (hex).
    pub to: &'a str,
    /// Sender (hex): told if the signal cannot be delivered after all.
    pub from: &'a str,
    /// The sender's id for the signal, if it gave one.
    pub id: Option<&'a str>,
    /// The JSON text to send the recipient.
    pub text: &'a str,
}

/// Why the backplane did not hold a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Held.
    Held,
    /// The device did not leave recently.
    NoMailbox,
    /// Its mailbox is full.
    Full,
}

/// The outcome of [`Backplane::join`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// The device is revoked from this vault.
    Revoked,
    /// The room is full.
    Full,
    /// Joined; these are online (the device included).
    Online(Vec<String>),
}

/// KEYS: presence, where, revoked. ARGV: device, now (ms), expiry score, max, replica,
/// key lifetime (ms), 1 if revocations apply. Returns {"revoked"} | {"full"} | {"ok", online...}.
const JOIN_SCRIPT: &str = r"
if ARGV[7] == '1' and redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then return {'revoked'} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return {'full'}
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
local online = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[2], '+inf')
table.insert(online, 1, 'ok')
return online
";

/// KEYS: presence, where, left marker. ARGV: device, replica, mailbox lifetime (ms; 0: none).
/// A device that has already joined through another replica (it reconnected faster than
/// this one noticed it left) is left alone: no presence removed, no mailbox opened, which
/// would hide it from senders and hold their signals where nobody fetches them.
const LEAVE_SCRIPT: &str = r"
local at = redis.call('HGET', KEYS[2], ARGV[1])
if at and at ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
if tonumber(ARGV[3]) > 0 then redis.call('PSETEX', KEYS[3], ARGV[3], 1) end
return 1
";

/// KEYS: revoked set. ARGV: device, cap, lifetime (ms). Returns 0 recorded, 1 full.
const REVOKE_SCRIPT: &str = r"
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 and redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 1
end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 0
";

fn revoked_key(room: &str) -> String {
    format!("hearth:revoked:{room}")
}

/// The bounds of shared mailboxes.
#[derive(Debug, Clone, Copy)]
pub struct MailBudget {
    /// How long a mailbox lives.
    pub ttl: Duration,
    /// Messages per mailbox.
    pub len: usize,
    /// Bytes per room.
    pub room_bytes: usize,
    /// Bytes in all.
    pub total_bytes: usize,
}

/// KEYS: left marker, mailbox list, room bytes (this period, the last), all bytes (this
/// period, the last). ARGV: text, length cap, room budget, total budget, counter lifetime (ms).
/// Returns 0 held, 1 no mailbox, 2 full.
const HOLD_SCRIPT: &str = r"
local ttl = redis.call('PTTL', KEYS[1])
if ttl <= 0 then return 1 end
if redis.call('LLEN', KEYS[2]) >= tonumber(ARGV[2]) then return 2 end
local n = string.len(ARGV[1])
local room = tonumber(redis.call('GET', KEYS[3]) or '0') + tonumber(redis.call('GET', KEYS[4]) or '0')
if room + n > tonumber(ARGV[3]) then return 2 end
local all = tonumber(redis.call('GET', KEYS[5]) or '0') + tonumber(redis.call('GET', KEYS[6]) or '0')
if all + n > tonumber(ARGV[4]) then return 2 end
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('INCRBY', KEYS[3], n)
redis.call('PEXPIRE', KEYS[3], ARGV[5])
redis.call('INCRBY', KEYS[5], n)
redis.call('PEXPIRE', KEYS[5], ARGV[5])
return 0
";

fn channel(room: &str) -> String {
    format!("hearth:room:{room}")
}

impl Backplane {
    /// A handle on the Redis at `url`, connected lazily: a replica starts (serving its own
    /// devices) while Redis is down, and joins the others when it answers.
    pub fn connect(url: &str, ttl: Duration, metrics: Option<RedisMetrics>) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        // Short timeouts and few reconnect retries: the breaker, not the connection manager,
        // decides how long to wait for a Redis that is down.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CALL_TIMEOUT))
            .set_response_timeout(Some(CALL_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Self {
            conn,
            client,
            ttl,
            replica: rand::random(),
            health: Health::new(metrics),
            epoch: std::sync::Arc::default(),
        })
    }

    /// The breaker (and the Redis metrics).
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Asks Redis whether it is up, whatever the breaker says, and whether it lost its data
    /// since this replica last asked: `Ok(true)` when its `hearth:epoch` is not the one seen
    /// before (it restarted empty, or this is the first probe).
    pub async fn probe(&self) -> BpResult<bool> {
        let mut c = self.conn.clone();
        // A read first (a Redis refusing writes under `maxmemory` still answers it), and the
        // key's lifetime renewed: it outlives its last replica by an hour, like everything
        // else here it does not stay forever.
        let mut p = redis::pipe();
        p.get(EPOCH_KEY).pexpire(EPOCH_KEY, EPOCH_LIFETIME_MS).ignore();
        let (mut now,): (Option<String>,) = self.health.probe(p.query_async(&mut c)).await?;
        if now.is_none() {
            let mine = format!("{:016x}", rand::random::<u64>());
            let mut p = redis::pipe();
            p.cmd("SET").arg(EPOCH_KEY).arg(&mine).arg("NX").arg("PX").arg(EPOCH_LIFETIME_MS).ignore().get(EPOCH_KEY);
            let (set,): (Option<String>,) = self.health.probe(p.query_async(&mut c)).await?;
            now = set;
        }
        let mut seen = super::hub::lock(&self.epoch);
        let lost = *seen != now;
        *seen = now;
        Ok(lost)
    }

    /// Signals waiting in this replica's inbox (a draining replica waits for none).
    pub async fn inbox_len(&self) -> BpResult<usize> {
        let mut c = self.conn.clone();
        self.health.call(c.xlen(inbox_key(self.replica))).await
    }

    /// This replica's id (random per process).
    pub fn replica(&self) -> u64 {
        self.replica
    }

    /// The replica holding `device`'s connection in `room`, if known.
    pub async fn location(&self, room: &str, device: &str) -> BpResult<Option<u64>> {
        let mut c = self.conn.clone();
        self.health.call(c.hget(where_key(room), device)).await
    }

    /// Appends signal `s` to replica `replica`'s inbox.
    pub async fn send_to(&self, replica: u64, s: &Relayed<'_>) -> BpResult<()> {
        let mut c = self.conn.clone();
        let key = inbox_key(replica);
        let fields =
            [("room", s.room), ("to", s.to), ("text", s.text), ("from", s.from), ("id", s.id.unwrap_or_default())];
        // One round trip, applied together; a dead replica's inbox disappears on its own.
        self.health
            .call(
                redis::pipe()
                    .atomic()
                    .xadd_maxlen(&key, redis::streams::StreamMaxlen::Approx(INBOX_MAXLEN), "*", &fields)
                    .ignore()
                    .pexpire(&key, (self.ttl.as_millis() as i64).saturating_mul(4))
                    .ignore()
                    .query_async::<()>(&mut c),
            )
            .await
    }

    /// Reads this replica's inbox forever, calling `deliver` for each signal. Resumes from
    /// the last entry read after any reconnect.
    pub async fn read_inbox(&self, mut deliver: impl FnMut(Relayed<'_>)) {
        let key = inbox_key(self.replica);
        // The replica id is new with every process, so its inbox starts empty: read it all
        // (ids come from Redis's clock, so a start time from ours could skip entries).
        let mut last = String::from("0-0");
        let mut delay = Duration::from_millis(100);
        // Longer than the blocking read, so a dead connection is noticed and replaced.
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(15)));
        loop {
            let mut c = match self.client.get_multiplexed_async_connection_with_config(&config).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "redis inbox connect failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            delay = Duration::from_millis(100);
            let opts = redis::streams::StreamReadOptions::default().block(5_000).count(512);
            loop {
                let reply: redis::RedisResult<Option<redis::streams::StreamReadReply>> =
                    c.xread_options(&[&key], &[&last], &opts).await;
                let Ok(reply) = reply else { break };
                let mut read_any = false;
                for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                    if let (Some(room), Some(to), Some(text)) =
                        (entry.get::<String>("room"), entry.get::<String>("to"), entry.get::<String>("text"))
                    {
                        let from = entry.get::<String>("from").unwrap_or_default();
                        let id = entry.get::<String>("id").filter(|i| !i.is_empty());
                        deliver(Relayed { room: &room, to: &to, from: &from, id: id.as_deref(), text: &text });
                    }
                    last = entry.id;
                    read_any = true;
                }
                if read_any {
                    // Delivered signals do not stay in Redis (less to keep, less to learn
                    // from a copy of it): drop everything older than the last one read.
                    let _: redis::RedisResult<i64> =
                        redis::cmd("XTRIM").arg(&key).arg("MINID").arg(&last).query_async(&mut c).await;
                }
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// The presence TTL.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Marks `devices` of `room` online until now + TTL.
    pub async fn refresh(&self, room: &str, devices: &[String]) -> BpResult<()> {
        if devices.is_empty() {
            return Ok(());
        }
        let exp = now_ms() + self.ttl.as_millis() as u64;
        let items: Vec<(u64, &String)> = devices.iter().map(|d| (exp, d)).collect();
        let mut c = self.conn.clone();
        let keep = (self.ttl.as_millis() as i64).saturating_mul(2);
        let mut p = redis::pipe();
        // Let an abandoned room's keys expire on their own.
        p.zadd_multiple(presence_key(room), &items).ignore().pexpire(presence_key(room), keep).ignore();
        // Restore a lost location without taking over one claimed by a newer join elsewhere.
        for d in devices {
            p.hset_nx(where_key(room), d, self.replica).ignore();
        }
        p.pexpire(where_key(room), keep).ignore();
        // Revocations live as long as the room is used, then expire with it.
        p.pexpire(revoked_key(room), super::revocations::REVOKED_IDLE.as_millis() as i64).ignore();
        self.health.call(p.query_async::<()>(&mut c)).await
    }

    /// Joins `device` to `room` in one atomic script: refused if revoked (vault rooms) or if
    /// the room already has `max` other members online; else marked online, located here,
    /// and the members online returned (the device included). Replicas cannot overfill a
    /// room by checking and joining in between each other.
    pub async fn join(&self, room: &str, device: &str, max: usize, vault: bool) -> BpResult<Joined> {
        let mut c = self.conn.clone();
        let now = now_ms();
        let keep = (self.ttl.as_millis() as u64).saturating_mul(2);
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(JOIN_SCRIPT)
            .arg(3)
            .arg(presence_key(room))
            .arg(where_key(room))
            .arg(revoked_key(room))
            .arg(device)
            .arg(now)
            .arg(now + self.ttl.as_millis() as u64)
            .arg(max)
            .arg(self.replica)
            .arg(keep)
            .arg(u8::from(vault));
        let out: Vec<String> = self.health.call(cmd.query_async(&mut c)).await?;
        let mut it = out.into_iter();
        Ok(match it.next().as_deref() {
            Some("revoked") => Joined::Revoked,
            Some("full") => Joined::Full,
            _ => Joined::Online(it.collect()),
        })
    }

    /// `device` left `room` through this replica: removed from presence and its location,
    /// and (`mailbox` non-zero) signals for it held that long, unless it is connected
    /// through another replica by now.
    pub async fn leave(&self, room: &str, device: &str, mailbox: Duration) -> BpResult<()> {
        let mut c = self.conn.clone();
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(LEAVE_SCRIPT)
            .arg(3)
            .arg(presence_key(room))
            .arg(where_key(room))
            .arg(left_key(room, device))
            .arg(device)
            .arg(self.replica)
            .arg(mailbox.as_millis() as u64);
        let _: i64 = self.health.call(cmd.query_async(&mut c)).await?;
        Ok(())
    }

    /// Devices of `room` online now (expired entries are purged). Returns (online, purged).
    pub async fn online(&self, room: &str) -> BpResult<(Vec<String>, usize)> {
        let mut c = self.conn.clone();
        let key = presence_key(room);
        let now = now_ms();
        self.health
            .call(redis::pipe().zrembyscore(&key, "-inf", now).zrangebyscore(&key, now, "+inf").query_async(&mut c))
            .await
            .map(|(purged, online)| (online, purged))
    }

    /// True when `device` is online in `room`.
    pub async fn is_online(&self, room: &str, device: &str) -> BpResult<bool> {
        let mut c = self.conn.clone();
        let score: Option<u64> = self.health.call(c.zscore(presence_key(room), device)).await?;
        Ok(score.is_some_and(|s| s > now_ms()))
    }

    /// Publishes `ev` to `room`.
    pub async fn publish(&self, room: &str, ev: &RoomEvent) -> BpResult<()> {
        let mut c = self.conn.clone();
        let text = serde_json::to_string(ev).unwrap_or_default();
        let _: i64 = self.health.call(c.publish(channel(room), text)).await?;
        Ok(())
    }

    /// Holds `text` for `device` if it left `room` recently, has fewer than `b.len` held, and
    /// the room's and the server's byte budgets allow it; one atomic script, so replicas
    /// cannot overshoot together.
    pub async fn hold(&self, room: &str, device: &str, text: &str, b: &MailBudget) -> BpResult<Hold> {
        let mut c = self.conn.clone();
        // Budgets count bytes held within the current and the previous mailbox period: every
        // held message is dropped within one period, so this is never below what is held,
        // and counters expire on their own (no drift when mailboxes expire unread).
        let period = (b.ttl.as_millis() as u64).max(1);
        let epoch = now_ms() / period;
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(HOLD_SCRIPT)
            .arg(6)
            .arg(left_key(room, device))
            .arg(mail_key(room, device))
            .arg(format!("hearth:mbytes:{room}:{epoch}"))
            .arg(format!("hearth:mbytes:{room}:{}", epoch.wrapping_sub(1)))
            .arg(format!("hearth:mbytes:{epoch}"))
            .arg(format!("hearth:mbytes:{}", epoch.wrapping_sub(1)))
            .arg(text)
            .arg(b.len)
            .arg(b.room_bytes)
            .arg(b.total_bytes)
            .arg(period.saturating_mul(2));
        let r: i64 = self.health.call(cmd.query_async(&mut c)).await?;
        Ok(match r {
            0 => Hold::Held,
            1 => Hold::NoMailbox,
            _ => Hold::Full,
        })
    }

    /// `device` is back in `room`: its held messages, oldest first, taken atomically.
    pub async fn take_mail(&self, room: &str, device: &str) -> BpResult<Vec<String>> {
        let mut c = self.conn.clone();
        let key = mail_key(room, device);
        let mut p = redis::pipe();
        p.atomic().lrange(&key, 0, -1).del(&key).del(left_key(room, device));
        let (held, ..): (Vec<String>, i64, i64) = self.health.call(p.query_async(&mut c)).await?;
        Ok(held)
    }

    /// How long ago pairing room `room`'s window opened on any replica (now, if this is the
    /// first join anywhere). The record lives two TTLs, like the in-process one.
    pub async fn invite_age(&self, room: &str, ttl: Duration) -> BpResult<Duration> {
        let mut c = self.conn.clone();
        let key = format!("hearth:invite:{room}");
        let now = now_ms();
        let keep = (ttl.as_millis() as u64).saturating_mul(2).max(1);
        let mut p = redis::pipe();
        p.atomic().cmd("SET").arg(&key).arg(now).arg("NX").arg("PX").arg(keep).get(&key);
        let (_, opened): (Option<String>, Option<u64>) = self.health.call(p.query_async(&mut c)).await?;
        Ok(Duration::from_millis(now.saturating_sub(opened.unwrap_or(now))))
    }

    /// Records a revocation of `device` in vault room `room`, at most `cap` per room; the set
    /// expires `idle` after the room's last refresh. False if the room's set is full.
    pub async fn revoke(&self, room: &str, device: &str, cap: usize, idle: Duration) -> BpResult<bool> {
        let mut c = self.conn.clone();
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(REVOKE_SCRIPT).arg(1).arg(revoked_key(room)).arg(device).arg(cap).arg(idle.as_millis() as u64);
        let r: i64 = self.health.call(cmd.query_async(&mut c)).await?;
        Ok(r == 0)
    }

    /// True when `device` was revoked in `room`.
    pub async fn is_revoked(&self, room: &str, device: &str) -> BpResult<bool> {
        let mut c = self.conn.clone();
        self.health.call(c.sismember(revoked_key(room), device)).await
    }

    /// Streams (room, event) from every room channel, reconnecting and re-subscribing with
    /// backoff when the pub/sub connection drops. Runs until `on_event` returns false.
    /// `on_resubscribed` runs after every re-subscription but the first (events published
    /// in between were missed).
    pub async fn subscribe(
        &self,
        mut on_event: impl FnMut(String, RoomEvent) -> bool,
        mut on_resubscribed: impl FnMut(),
    ) {
        let mut delay = Duration::from_millis(100);
        let mut first = true;
        loop {
            match self.client.get_async_pubsub().await {
                Ok(mut ps) => {
                    if ps.psubscribe("hearth:room:*").await.is_ok() {
                        delay = Duration::from_millis(100);
                        if !std::mem::take(&mut first) {
                            on_resubscribed();
                        }
                        let mut stream = ps.into_on_message();
                        while let Some(msg) = stream.next().await {
                            let Some(room) = msg.get_channel_name().strip_prefix("hearth:room:").map(str::to_owned)
                            else {
                                continue;
                            };
                            let Ok(ev) = serde_json::from_slice::<RoomEvent>(msg.get_payload_bytes()) else { continue };
                            if !on_event(room, ev) {
                                return;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "redis pub/sub connect failed; retrying"),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}
