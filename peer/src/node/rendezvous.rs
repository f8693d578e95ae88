//! The daemon's link to a rendezvous server (`hearth daemon --rendezvous URL`): joins the
//! vault's room as this device, stays joined (reconnecting with backoff), and presents every
//! root-signed revocation the vault holds, at each join and whenever a new one arrives, so
//! the server refuses revoked devices even after a restart. It carries the sealed WebRTC
//! signals both ways: those the node sends through `signals`, those relayed to it as
//! [`Input::Signal`]; the room's presence feeds the dial plan.

use std::time::Duration;

use hearth_proto::membership::{MembershipBody, MembershipRecord};
use hearth_rendezvous::client::{self, ClientError, Event, Identity, Join};
use hearth_rendezvous::protocol::ErrorCode;
use rand::Rng;
use tokio::sync::{mpsc, watch};

use super::dialer::{doubled, jittered};
use super::Input;

/// What the link reports to the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// Joined (or presence changed): these other devices of the vault are in the room.
    Joined {
        /// Other devices online.
        online: Vec<hearth_proto::ids::DeviceId>,
    },
    /// The server's TURN relay credentials (with every join; `None`: it has no relay).
    Relay(Option<hearth_rendezvous::protocol::TurnCredentials>),
    /// Not joined; `error` says why.
    Down {
        /// Why.
        error: String,
    },
}

/// The device's identity for the room, from its replica's membership; `None` if the
/// membership holds no enrolment of `device`.
pub fn identity(
    membership: &hearth_proto::membership::Membership,
    device: hearth_proto::ids::DeviceId,
    device_key: ed25519_dalek::SigningKey,
) -> Option<Identity> {
    let record = membership
        .records()
        .iter()
        .find(|r| matches!(&r.body, MembershipBody::Enroll(e) if e.device_id == device))?
        .clone();
    Some(Identity { root: *membership.root(), record, device_key, revocations: revocations(membership) })
}

/// The vault's revocation and fork-settlement records, in the order they were learnt.
pub fn revocations(membership: &hearth_proto::membership::Membership) -> Vec<MembershipRecord> {
    membership.records().iter().filter(|r| r.body.cut().is_some()).cloned().collect()
}

/// The WebSocket URL of `/v1/signal` for what a user typed: `https://HOST[:PORT][/]` or
/// `http://…` (`wss://`/`ws://` with `/v1/signal`), or `wss://`/`ws://HOST[:PORT][/PATH]`
/// (`/v1/signal` when no path is given). `None` for anything else.
pub fn signal_url(url: &str) -> Option<String> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let (scheme, rest) = [("wss://", "wss"), ("https://", "wss"), ("ws://", "ws"), ("http://", "ws")]
        .iter()
        .find_map(|(prefix, scheme)| lower.starts_with(prefix).then(|| (*scheme, &url[prefix.len()..])))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains(['@', '?', '#', ' ']) {
        return None;
    }
    let path = if path.is_empty() || path == "/" { "/v1/signal" } else { path };
    Some(format!("{scheme}://{authority}{path}"))
}

/// The rendezvous's own STUN server as `HOST:3478` (the server's default port), for a URL
/// [`signal_url`] made.
pub fn stun_host(signal_url: &str) -> Option<String> {
    let rest = signal_url.strip_prefix("ws://").or_else(|| signal_url.strip_prefix("wss://"))?;
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => format!("[{}]", v6.split(']').next()?),
        None => authority.split(':').next()?.to_owned(),
    };
    (!host.is_empty() && host != "[]").then(|| format!("{host}:3478"))
}

/// The rendezvous's own STUN server: its host at port 3478 (the server's default).
pub async fn default_stun(signal_url: &str) -> Option<std::net::SocketAddr> {
    tokio::net::lookup_host(stun_host(signal_url)?).await.ok()?.next()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// How long until credentials expiring at `expires` should be renewed: a tenth of what is
/// left, at least a minute, before they expire (at once if that is past).
fn refresh_at(expires: u64, now: u64) -> Duration {
    let left = expires.saturating_sub(now);
    let margin = (left / 10).max(60);
    Duration::from_secs(left.saturating_sub(margin))
}

/// First pause after a failed or lost connection; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest pause between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Pause after the server said this device is revoked (nothing will change soon).
const REVOKED_BACKOFF: Duration = Duration::from_secs(600);

/// How often the link looks at this device's addresses and the server's silence.
const WATCH_EVERY: Duration = Duration::from_secs(2);
/// How often the link pings the server (it answers with a pong; it also pings every 30 s).
const PING_EVERY: Duration = Duration::from_secs(15);
/// A server silent this long (two pings unanswered) is gone: rejoin.
const SILENT_LIMIT: Duration = Duration::from_secs(35);

/// This device's addresses other than loopback ones, sorted.
fn outside_addrs() -> Vec<std::net::IpAddr> {
    let mut v: Vec<_> = super::webrtc::gather::local_ips().into_iter().filter(|ip| !ip.is_loopback()).collect();
    v.sort();
    v
}

/// The pause before attempt `n` (0-based) of a series of failures, ±25 % jitter.
fn backoff(n: u32, rng: &mut impl Rng) -> Duration {
    jittered(doubled(FIRST_BACKOFF, n, MAX_BACKOFF), rng)
}

/// Keeps this device joined to `url` until `to_node` closes. `known` carries the vault's
/// revocation records (it only grows); new ones are sent as they appear.
pub async fn run(
    url: String,
    options: client::Options,
    identity: Identity,
    mut known: watch::Receiver<Vec<MembershipRecord>>,
    mut signals: mpsc::Receiver<(hearth_proto::ids::DeviceId, Vec<u8>)>,
    to_node: mpsc::Sender<Input>,
) {
    let mut failures = 0u32;
    loop {
        let mut id = identity.clone();
        id.revocations = known.borrow_and_update().clone();
        let mut sent = id.revocations.len();
        let report = |ev| to_node.send(Input::Rendezvous(ev));
        let pause = match client::connect_with(&url, &Join::Vault(Box::new(id)), &options).await {
            Ok(mut conn) => {
                failures = 0;
                tracing::info!(%url, "joined the rendezvous");
                if report(LinkEvent::Relay(conn.turn.clone())).await.is_err()
                    || report(LinkEvent::Joined { online: conn.online.clone() }).await.is_err()
                {
                    return;
                }
                // Rejoin before the TURN credentials expire (a daemon stays joined for days).
                let refresh = conn.turn.as_ref().map(|t| refresh_at(t.expires, unix_now()));
                let refresh = async move {
                    match refresh {
                        Some(d) => tokio::time::sleep(d).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::pin!(refresh);
                let mut watch = tokio::time::interval(WATCH_EVERY);
                watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let (addrs, mut last_ping) = (outside_addrs(), tokio::time::Instant::now());
                let why = loop {
                    tokio::select! {
                        () = &mut refresh => break "rejoining for fresh TURN credentials".to_owned(),
                        _ = watch.tick() => {
                            // A laptop that changed networks: the old connection may hang
                            // for minutes (its address is gone, nothing says so). Rejoining
                            // at once also makes every WebRTC session prove itself.
                            if outside_addrs() != addrs {
                                break "this device's network changed".to_owned();
                            }
                            if conn.silent_for() > SILENT_LIMIT {
                                break format!("the server sent nothing for {} s", SILENT_LIMIT.as_secs());
                            }
                            if last_ping.elapsed() >= PING_EVERY {
                                last_ping = tokio::time::Instant::now();
                                // A send into a dead connection may wait on a full buffer.
                                match tokio::time::timeout(WATCH_EVERY, conn.ping()).await {
                                    Ok(Ok(())) => {}
                                    Ok(Err(e)) => break e.to_string(),
                                    Err(_) => break "the server stopped reading".to_owned(),
                                }
                            }
                        }
                        ev = conn.next() => match ev {
                            Ok(Event::Presence(p)) => {
                                if report(LinkEvent::Joined { online: p }).await.is_err() {
                                    return;
                                }
                            }
                            Ok(Event::Signal { from, payload }) => {
                                if to_node.send(Input::Signal { from, payload }).await.is_err() {
                                    return;
                                }
                            }
                            Ok(Event::Error { code, message, .. }) => tracing::warn!(?code, %message, "rendezvous"),
                            Err(e) => break e.to_string(),
                        },
                        out = signals.recv() => match out {
                            Some((to, payload)) => {
                                if let Err(e) = conn.signal(to, &payload).await {
                                    break e.to_string();
                                }
                            }
                            None => return,
                        },
                        changed = known.changed() => {
                            if changed.is_err() {
                                return;
                            }
                            let all = known.borrow_and_update().clone();
                            for r in all.iter().skip(sent) {
                                if let Err(e) = conn.revoke(r).await {
                                    tracing::debug!(error = %e, "sending a revocation");
                                }
                            }
                            sent = all.len();
                        }
                    }
                };
                tracing::info!(%url, error = %why, "left the rendezvous");
                if report(LinkEvent::Down { error: why }).await.is_err() {
                    return;
                }
                backoff(0, &mut rand::thread_rng())
            }
            Err(e) => {
                let revoked = matches!(e, ClientError::Refused { code: ErrorCode::Revoked, .. });
                tracing::warn!(%url, error = %e, "cannot join the rendezvous");
                if report(LinkEvent::Down { error: e.to_string() }).await.is_err() {
                    return;
                }
                failures = failures.saturating_add(1);
                if revoked {
                    REVOKED_BACKOFF
                } else {
                    backoff(failures - 1, &mut rand::thread_rng())
                }
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = to_node.closed() => return,
        }
    }
}

/// Keeps a vault this device retired (rotated away from) told, in its room on the same
/// server: joins as this device's old identity and sends `notice` (the sealed `Retire`
/// records, PROTOCOL §2.1) to every device in the room, and to each that joins later, until
/// the node stops it. Nothing else is sent, and what the room relays to it is ignored.
pub async fn tell_retired(url: String, options: client::Options, identity: Identity, notice: Vec<u8>) {
    let mut failures = 0u32;
    loop {
        let pause = match client::connect_with(&url, &Join::Vault(Box::new(identity.clone())), &options).await {
            Ok(mut conn) => {
                failures = 0;
                let mut told = std::collections::BTreeSet::new();
                let mut online = conn.online.clone();
                let why = loop {
                    for d in online.drain(..) {
                        if told.insert(d) {
                            if let Err(e) = conn.signal(d, &notice).await {
                                tracing::debug!(error = %e, "telling a device of the old vault");
                            }
                        }
                    }
                    match conn.next().await {
                        Ok(Event::Presence(p)) => online = p,
                        Ok(_) => {}
                        Err(e) => break e.to_string(),
                    }
                };
                tracing::debug!(%url, error = %why, "left the retired vault's room");
                backoff(0, &mut rand::thread_rng())
            }
            Err(e) => {
                tracing::debug!(%url, error = %e, "cannot join the retired vault's room");
                failures = failures.saturating_add(1);
                backoff(failures - 1, &mut rand::thread_rng()).max(Duration::from_secs(5))
            }
        };
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_urls_take_the_forms_people_type() {
        for (typed, url) in [
            ("http://vps.example:8080", "ws://vps.example:8080/v1/signal"),
            ("http://vps.example:8080/", "ws://vps.example:8080/v1/signal"),
            ("ws://127.0.0.1:9", "ws://127.0.0.1:9/v1/signal"),
            ("ws://127.0.0.1:9/v1/signal", "ws://127.0.0.1:9/v1/signal"),
            ("ws://[::1]:9/custom", "ws://[::1]:9/custom"),
            ("https://vps.example", "wss://vps.example/v1/signal"),
            ("HTTPS://vps.example:8443/", "wss://vps.example:8443/v1/signal"),
            ("wss://vps.example/v1/signal", "wss://vps.example/v1/signal"),
            ("wss://vps.example", "wss://vps.example/v1/signal"),
        ] {
            assert_eq!(signal_url(typed).as_deref(), Some(url), "{typed}");
        }
        for bad in [
            "",
            "vps.example",
            "ftp://x",
            "http://",
            "ws:///v1/signal",
            "http://u@h/",
            "https://",
            "wss://u@h",
            "httpss://h",
            "wsss://h",
        ] {
            assert_eq!(signal_url(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn the_default_stun_server_is_the_rendezvous_host_on_3478() {
        assert_eq!(default_stun("ws://127.0.0.1:8080/v1/signal").await, Some("127.0.0.1:3478".parse().unwrap()));
        assert_eq!(default_stun("ws://[::1]:8080/v1/signal").await, Some("[::1]:3478".parse().unwrap()));
        assert_eq!(default_stun("ws://localhost/v1/signal").await.map(|a| a.port()), Some(3478));
        assert_eq!(default_stun("wss://127.0.0.1/v1/signal").await, Some("127.0.0.1:3478".parse().unwrap()));
    }

    #[test]
    fn the_stun_host_is_the_rendezvous_host_on_3478() {
        assert_eq!(stun_host("wss://vps.example/v1/signal").as_deref(), Some("vps.example:3478"));
        assert_eq!(stun_host("ws://[::1]:8080/v1/signal").as_deref(), Some("[::1]:3478"));
        assert_eq!(stun_host("ws://10.0.0.1:8080/x").as_deref(), Some("10.0.0.1:3478"));
        assert_eq!(stun_host("http://vps.example"), None, "takes signal URLs only");
    }

    #[test]
    fn turn_credentials_are_renewed_before_they_expire() {
        assert_eq!(refresh_at(1_000 + 86_400, 1_000), Duration::from_secs(86_400 - 8_640));
        assert_eq!(refresh_at(1_000 + 300, 1_000), Duration::from_secs(240), "at least a minute early");
        assert_eq!(refresh_at(1_000 + 30, 1_000), Duration::ZERO, "nearly expired: now");
        assert_eq!(refresh_at(500, 1_000), Duration::ZERO, "expired: now");
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter() {
        let mut rng = rand::thread_rng();
        for n in 0..20 {
            let d = backoff(n, &mut rng);
            let base = FIRST_BACKOFF.saturating_mul(1 << n.min(8)).min(MAX_BACKOFF);
            assert!(d >= base.mul_f64(0.75) && d <= base.mul_f64(1.25), "{n}: {d:?}");
        }
        assert!(backoff(30, &mut rng) <= MAX_BACKOFF.mul_f64(1.25));
    }
}
