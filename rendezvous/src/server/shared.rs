//! The hub's side of the Redis backplane: routing to devices on other replicas, revocations
//! kept until Redis has stored them, presence pushed whenever the shared view changes, and
//! catching up after a Redis fault (down, restarted empty, refusing writes).

use std::time::Instant;

use hearth_proto::ids::{DeviceId, VaultId};

use super::backplane::{Backplane, BackplaneError, BpResult, Hold, Relayed, RoomEvent};
use super::hub::{lock, offer_presence, push_held, Hub, RoomKey, RouteError, Routed};
use super::revocations::{RevokeRefusal, REVOKED_IDLE, REVOKED_PER_VAULT};
use crate::protocol::{ErrorCode, ServerMsg};
use crate::ws;

/// A signal to a device on another replica: what the connection's queue for it holds.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The room.
    pub key: RoomKey,
    /// The recipient.
    pub to: DeviceId,
    /// The sender (hex).
    pub from: String,
    /// The sender's id for this signal, echoed in any error about it.
    pub id: Option<String>,
    /// The JSON text the recipient gets.
    pub text: String,
}

impl Hub {
    /// Delivers to a member connected to this replica, charging a pairing room's budget;
    /// `None` when `to` is not here (then [`Hub::route_elsewhere`], off the read loop).
    pub fn route_here(&self, key: RoomKey, to: DeviceId, text: &str) -> Option<Result<Routed, RouteError>> {
        if let Err(e) = self.charge(key, text.len()) {
            return Some(Err(e));
        }
        self.try_local(key, to, ws::text_frame(text))
    }

    /// Routes `s` through Redis: to the replica holding its recipient, or to the recipient's
    /// shared mailbox. Never retried after a failed write (it may have been applied: a
    /// signal is delivered once or refused, not twice).
    pub async fn route_elsewhere(&self, s: &Outgoing) -> Result<Routed, RouteError> {
        // It may have joined here while the signal waited in its queue.
        if let Some(done) = self.try_local(s.key, s.to, ws::text_frame(&s.text)) {
            return done;
        }
        let Some(bp) = &self.backplane else { return Err(RouteError::UnknownRecipient) };
        let (name, dev) = (s.key.name(), s.to.to_hex());
        let r = Relayed { room: &name, to: &dev, from: &s.from, id: s.id.as_deref(), text: &s.text };
        match self.route_remote(bp, &r).await {
            Ok(routed) => routed,
            Err(e) => {
                tracing::debug!(error = %e, "signal not routed: redis unavailable");
                Err(RouteError::Unavailable)
            }
        }
    }

    /// Routes through the backplane: to the recipient's replica, or its shared mailbox.
    async fn route_remote(&self, bp: &Backplane, s: &Relayed<'_>) -> BpResult<Result<Routed, RouteError>> {
        if bp.is_online(s.room, s.to).await? {
            match bp.location(s.room, s.to).await? {
                // Straight into the inbox of the replica holding the recipient.
                Some(r) if r != bp.replica() => {
                    bp.send_to(r, s).await?;
                    return Ok(Ok(Routed::Delivered));
                }
                // Location unknown: every replica hears it, the right one delivers.
                None => {
                    let ev = RoomEvent::Signal { to: s.to.to_owned(), text: s.text.to_owned() };
                    bp.publish(s.room, &ev).await?;
                    return Ok(Ok(Routed::Delivered));
                }
                // Here, but not connected: it has just left; its mailbox decides.
                Some(_) => {}
            }
        }
        // Replicas share mailboxes too: the device may come back through any of them.
        let budget = lock(&self.mail).budget();
        Ok(match bp.hold(s.room, s.to, s.text, &budget).await? {
            Hold::Held => Ok(Routed::Held),
            Hold::Full => Err(RouteError::MailboxFull),
            Hold::NoMailbox => Err(RouteError::UnknownRecipient),
        })
    }

    /// A signal from this replica's inbox: delivered to the member here, or, when it has left
    /// (moved to another replica, or this one is draining), returned to route again.
    pub fn deliver_inbox(&self, s: Relayed<'_>) -> Option<Outgoing> {
        let (key, to) = (RoomKey::parse(s.room)?, DeviceId::from_hex(s.to)?);
        match self.try_local(key, to, ws::text_frame(s.text)) {
            Some(_) => None,
            None => Some(Outgoing {
                key,
                to,
                from: s.from.to_owned(),
                id: s.id.map(str::to_owned),
                text: s.text.to_owned(),
            }),
        }
    }

    /// Routes again a signal whose recipient left this replica after it was sent here; if
    /// that fails, its sender is told, naming the signal (wherever the sender is connected).
    pub async fn reroute(&self, s: Outgoing) {
        let Err(e) = self.route_elsewhere(&s).await else { return };
        let Some(from) = DeviceId::from_hex(&s.from) else { return };
        let code = match e {
            RouteError::Unavailable => ErrorCode::Unavailable,
            _ => ErrorCode::UnknownRecipient,
        };
        let msg = ServerMsg::Error {
            code,
            message: format!("device {} left before the signal reached it: {e}", s.to),
            id: s.id.clone(),
        };
        let text = serde_json::to_string(&msg).unwrap_or_default();
        let back = Outgoing { key: s.key, to: from, from: String::new(), id: None, text };
        // Errors about errors are not reported: the sender may have gone too.
        let _ = self.route_elsewhere(&back).await;
    }

    /// Records a revocation, disconnects the device wherever it is connected, and stores it
    /// in Redis: every time, even when this replica knew it already (Redis may have lost it),
    /// and, if Redis cannot take it now, again until it has.
    pub async fn revoke(&self, vault: VaultId, device: DeviceId) -> Result<(), RevokeRefusal> {
        let new = lock(&self.revoked).add(vault, device, Instant::now())?;
        if new {
            self.kick_local(RoomKey::Vault(vault), device, "device revoked");
        }
        let Some(bp) = &self.backplane else { return Ok(()) };
        match self.store_revocation(bp, vault, device, new).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(RevokeRefusal::VaultFull),
            Err(e) => {
                tracing::warn!(error = %e, "revocation not yet stored in redis: kept here and retried");
                self.mark_unsynced(vault, device);
                Ok(())
            }
        }
    }

    fn mark_unsynced(&self, vault: VaultId, device: DeviceId) {
        let mut u = lock(&self.unsynced);
        u.insert((vault, device));
        self.count_unsynced(u.len());
    }

    fn count_unsynced(&self, n: usize) {
        if let Some(m) = self.backplane.as_ref().and_then(|bp| bp.health().metrics()) {
            m.revocations_pending.set(n as i64);
        }
    }

    /// Writes one revocation to Redis and, when `announce`, tells every replica to close the
    /// device's connections. False if the vault's shared set is full.
    async fn store_revocation(
        &self,
        bp: &Backplane,
        vault: VaultId,
        device: DeviceId,
        announce: bool,
    ) -> BpResult<bool> {
        let name = RoomKey::Vault(vault).name();
        let dev = device.to_hex();
        let stored = bp.revoke(&name, &dev, REVOKED_PER_VAULT, REVOKED_IDLE).await?;
        if stored && announce {
            bp.publish(&name, &RoomEvent::Kick { device: dev, reason: "device revoked".into() }).await?;
        }
        let mut u = lock(&self.unsynced);
        u.remove(&(vault, device));
        self.count_unsynced(u.len());
        Ok(stored)
    }

    /// Stores the revocations Redis does not have yet; stops at the first failure (Redis is
    /// still unwell; the next round tries again).
    pub async fn retry_unsynced(&self) {
        let Some(bp) = &self.backplane else { return };
        let pending: Vec<(VaultId, DeviceId)> = lock(&self.unsynced).iter().copied().collect();
        for (vault, device) in pending {
            if let Err(e) = self.store_revocation(bp, vault, device, true).await {
                tracing::debug!(error = %e, "revocation still not stored in redis");
                return;
            }
        }
    }

    /// After Redis came back or lost its data: writes back every revocation this replica
    /// holds, its members' presence and locations, then catches up on missed events.
    pub async fn recover(&self, lost: bool) {
        if lost {
            let all = lock(&self.revoked).all();
            let mut u = lock(&self.unsynced);
            u.extend(all);
            self.count_unsynced(u.len());
        }
        self.retry_unsynced().await;
        self.refresh().await;
        self.resync().await;
    }

    /// Catches up after missed room events (a pub/sub reconnect, Redis back): closes local
    /// connections of devices that joined through another replica meanwhile, and those
    /// revoked meanwhile, and pushes fresh presence to every local room.
    pub async fn resync(&self) {
        let Some(bp) = &self.backplane else { return };
        let local: Vec<(RoomKey, Vec<DeviceId>)> =
            lock(&self.rooms).iter().map(|(k, r)| (*k, r.members.keys().copied().collect())).collect();
        for (key, devices) in local {
            let name = key.name();
            for d in devices {
                let dev = d.to_hex();
                if matches!(bp.location(&name, &dev).await, Ok(Some(r)) if r != bp.replica()) {
                    self.evict_local(key, d, "replaced by a newer connection of the same device");
                }
                if let RoomKey::Vault(v) = key {
                    if bp.is_revoked(&name, &dev).await.unwrap_or(false) {
                        let _ = lock(&self.revoked).add(v, d, Instant::now());
                        self.kick_local(key, d, "device revoked");
                    }
                }
            }
            self.push_presence(key, true).await;
        }
    }

    /// Pushes the backplane's presence of `key` to its local members: always when `force`,
    /// else only when it differs from what they were last shown. True if it pushed.
    pub async fn push_presence(&self, key: RoomKey, force: bool) -> bool {
        let Some(bp) = &self.backplane else { return false };
        let Ok((online, _)) = bp.online(&key.name()).await else { return false };
        self.show_presence(key, online, force)
    }

    /// [`Hub::push_presence`] with the room's online devices already read.
    fn show_presence(&self, key: RoomKey, mut online: Vec<String>, force: bool) -> bool {
        online.sort_unstable();
        let mut rooms = lock(&self.rooms);
        let Some(room) = rooms.get_mut(&key) else { return false };
        if !force && room.shown.as_ref() == Some(&online) {
            return false;
        }
        for (d, m) in &room.members {
            let me = d.to_hex();
            offer_presence(m, online.iter().filter(|o| **o != me).cloned().collect());
        }
        room.shown = Some(online);
        true
    }

    /// Re-scores this replica's members on the backplane, announces rooms where other
    /// replicas' members expired (a replica died), pushes presence where it changed (so
    /// members converge within one refresh of Redis recovering), and fetches held mail a
    /// join could not.
    pub async fn refresh(&self) {
        let Some(bp) = &self.backplane else { return };
        let local: Vec<(RoomKey, Vec<String>)> =
            lock(&self.rooms).iter().map(|(k, r)| (*k, r.members.keys().map(|d| d.to_hex()).collect())).collect();
        for (key, devices) in local {
            let name = key.name();
            if let Err(BackplaneError::Down) = bp.refresh(&name, &devices).await {
                return;
            }
            let Ok((online, purged)) = bp.online(&name).await else { continue };
            // Changed since the members were last told (devices back after a fault, others
            // expired): tell them, and have the other replicas look too, so every device
            // converges within this one refresh rather than at each replica's next.
            if self.show_presence(key, online, false) || purged > 0 {
                let _ = bp.publish(&name, &RoomEvent::Presence).await;
            }
        }
        self.fetch_pending_mail(bp).await;
    }

    /// Held mail whose fetch failed at a join: fetched now, for members still here.
    async fn fetch_pending_mail(&self, bp: &Backplane) {
        let pending: Vec<(RoomKey, DeviceId)> = lock(&self.mail_pending).iter().copied().collect();
        for (key, device) in pending {
            let outbox = lock(&self.rooms).get(&key).and_then(|r| r.members.get(&device)).map(|m| m.outbox.clone());
            let Some(outbox) = outbox else {
                // Gone again: its next join fetches it.
                lock(&self.mail_pending).remove(&(key, device));
                continue;
            };
            let Ok(held) = bp.take_mail(&key.name(), &device.to_hex()).await else { return };
            lock(&self.mail_pending).remove(&(key, device));
            push_held(&outbox, held);
        }
    }
}
