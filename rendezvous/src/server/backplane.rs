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

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

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

/// Signals kept in a replica's inbox (older ones are trimmed): enough to ride out a Redis
/// reconnect under heavy load without holding memory forever.
const INBOX_MAXLEN: usize = 10_000;

fn left_key(room: &str, device: &str) -> String {
    format!("hearth:left:{room}:{device}")
}

fn mail_key(room: &str, device: &str) -> String {
    format!("hearth:mail:{room}:{device}")
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

fn channel(room: &str) -> String {
    format!("hearth:room:{room}")
}

impl Backplane {
    /// Connects to `url`.
    pub async fn connect(url: &str, ttl: Duration) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        let conn = client.get_connection_manager().await?;
        Ok(Self { conn, client, ttl, replica: rand::random() })
    }

    /// This replica's id (random per process).
    pub fn replica(&self) -> u64 {
        self.replica
    }

    /// Records that `device`'s connection in `room` is on this replica (newest join wins).
    pub async fn claim(&self, room: &str, device: &str) -> redis::RedisResult<()> {
        let mut c = self.conn.clone();
        let _: () = c.hset(where_key(room), device, self.replica).await?;
        Ok(())
    }

    /// The replica holding `device`'s connection in `room`, if known.
    pub async fn location(&self, room: &str, device: &str) -> redis::RedisResult<Option<u64>> {
        let mut c = self.conn.clone();
        c.hget(where_key(room), device).await
    }

    /// Appends a signal for `device` of `room` to replica `replica`'s inbox.
    pub async fn send_to(&self, replica: u64, room: &str, device: &str, text: &str) -> redis::RedisResult<()> {
        let mut c = self.conn.clone();
        let key = inbox_key(replica);
        let fields = [("room", room), ("to", device), ("text", text)];
        // One round trip, applied together; a dead replica's inbox disappears on its own.
        let _: () = redis::pipe()
            .atomic()
            .xadd_maxlen(&key, redis::streams::StreamMaxlen::Approx(INBOX_MAXLEN), "*", &fields)
            .ignore()
            .pexpire(&key, (self.ttl.as_millis() as i64).saturating_mul(4))
            .ignore()
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    /// Reads this replica's inbox forever, calling `deliver(room, device, text)` for each
    /// signal. Resumes from the last entry read after any reconnect.
    pub async fn read_inbox(&self, mut deliver: impl FnMut(&str, &str, String)) {
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
                        deliver(&room, &to, text);
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
    pub async fn refresh(&self, room: &str, devices: &[String]) -> redis::RedisResult<()> {
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
        let _: () = p.query_async(&mut c).await?;
        Ok(())
    }

    /// Removes `device` from `room`.
    pub async fn remove(&self, room: &str, device: &str) -> redis::RedisResult<()> {
        let mut c = self.conn.clone();
        let _: () = c.zrem(presence_key(room), device).await?;
        Ok(())
    }

    /// Devices of `room` online now (expired entries are purged). Returns (online, purged).
    pub async fn online(&self, room: &str) -> redis::RedisResult<(Vec<String>, usize)> {
        let mut c = self.conn.clone();
        let key = presence_key(room);
        let now = now_ms();
        let purged: usize = c.zrembyscore(&key, "-inf", now).await?;
        let online: Vec<String> = c.zrangebyscore(&key, now, "+inf").await?;
        Ok((online, purged))
    }

    /// True when `device` is online in `room`.
    pub async fn is_online(&self, room: &str, device: &str) -> redis::RedisResult<bool> {
        let mut c = self.conn.clone();
        let score: Option<u64> = c.zscore(presence_key(room), device).await?;
        Ok(score.is_some_and(|s| s > now_ms()))
    }

    /// Publishes `ev` to `room`.
    pub async fn publish(&self, room: &str, ev: &RoomEvent) -> redis::RedisResult<()> {
        let mut c = self.conn.clone();
        let text = serde_json::to_string(ev).unwrap_or_default();
        let _: () = c.publish(channel(room), text).await?;
        Ok(())
    }

    /// `device` just left `room`: signals for it may be held for `ttl` (any replica).
    pub async fn mark_left(&self, room: &str, device: &str, ttl: Duration) -> redis::RedisResult<()> {
        let mut c = self.conn.clone();
        let _: () = c.pset_ex(left_key(room, device), 1u8, ttl.as_millis() as u64).await?;
        Ok(())
    }

    /// Holds `text` for `device` if it left `room` recently and has fewer than `len` held.
    pub async fn hold(&self, room: &str, device: &str, text: &str, len: usize) -> redis::RedisResult<Hold> {
        let mut c = self.conn.clone();
        let ttl: i64 = c.pttl(left_key(room, device)).await?;
        if ttl <= 0 {
            return Ok(Hold::NoMailbox);
        }
        let key = mail_key(room, device);
        let n: usize = c.rpush(&key, text).await?;
        if n > len {
            let _: Option<String> = c.rpop(&key, None).await?;
            return Ok(Hold::Full);
        }
        let _: () = c.pexpire(&key, ttl).await?;
        Ok(Hold::Held)
    }

    /// `device` is back in `room`: its held messages, oldest first, taken atomically.
    pub async fn take_mail(&self, room: &str, device: &str) -> redis::RedisResult<Vec<String>> {
        let mut c = self.conn.clone();
        let key = mail_key(room, device);
        let (held, ..): (Vec<String>, i64, i64) = redis::pipe()
            .atomic()
            .lrange(&key, 0, -1)
            .del(&key)
            .del(left_key(room, device))
            .query_async(&mut c)
            .await?;
        Ok(held)
    }

    /// How long ago pairing room `room`'s window opened on any replica (now, if this is the
    /// first join anywhere). The record lives two TTLs, like the in-process one.
    pub async fn invite_age(&self, room: &str, ttl: Duration) -> redis::RedisResult<Duration> {
        let mut c = self.conn.clone();
        let key = format!("hearth:invite:{room}");
        let now = now_ms();
        let keep = (ttl.as_millis() as u64).saturating_mul(2).max(1);
        let (_, opened): (Option<String>, Option<u64>) = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(&key)
            .arg(now)
            .arg("NX")
            .arg("PX")
            .arg(keep)
            .get(&key)
            .query_async(&mut c)
            .await?;
        Ok(Duration::from_millis(now.saturating_sub(opened.unwrap_or(now))))
    }

    /// Records a revocation of `device` in vault room `room`.
    pub async fn revoke(&self, room: &str, device: &str) -> redis::RedisResult<()> {
        let mut c = self.conn.clone();
        let _: () = c.sadd(format!("hearth:revoked:{room}"), device).await?;
        Ok(())
    }

    /// True when `device` was revoked in `room`.
    pub async fn is_revoked(&self, room: &str, device: &str) -> redis::RedisResult<bool> {
        let mut c = self.conn.clone();
        c.sismember(format!("hearth:revoked:{room}"), device).await
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
