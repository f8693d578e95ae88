//! Rooms, presence and routing: local members in memory, plus (with `--redis-url`) the
//! Redis backplane so several replicas share presence and relay.
//!
//! Every member has a bounded outbound queue. Routing never waits: a full queue means the
//! recipient reads too slowly, and it is disconnected rather than buffered without bound.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use hearth_proto::ids::{DeviceId, VaultId};

use super::backplane::{Backplane, Joined, RoomEvent};
use super::invites::{InviteRefusal, Invites};
use super::mailbox::{Mailboxes, NotHeld};
use super::outbox::{Full, Outbox};
use super::revocations::{Revocations, REVOKED_IDLE, REVOKED_PER_VAULT, REVOKED_TOTAL};
use crate::protocol::ServerMsg;
use crate::ws;
use hearth_stun::rate_limit::SourceKey;

/// A room: a vault's devices, or the two ends of a pairing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoomKey {
    /// A vault's room.
    Vault(VaultId),
    /// A pairing room, keyed by SHA-256 of the invite secret.
    Invite([u8; 32]),
}

/// A connection's handle in a room.
#[derive(Debug, Clone)]
pub struct Member {
    /// Connection id (a device may reconnect; the newest connection wins).
    pub conn: u64,
    /// What the connection must send or do next.
    pub outbox: Arc<Outbox>,
}

pub(super) struct Room {
    pub(super) members: BTreeMap<DeviceId, Member>,
    /// Invite rooms die at this time.
    expires: Option<Instant>,
    /// The backplane's presence last pushed to the members (all online, sorted); `None`
    /// when the members were last told something else (Redis was down at a join).
    pub(super) shown: Option<Vec<String>>,
}

/// Why a join failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The room has its maximum number of members.
    #[error("room is full")]
    Full,
    /// The pairing room has expired.
    #[error("invite has expired")]
    Expired,
    /// The device was revoked from this vault.
    #[error("device has been revoked")]
    Revoked,
    /// The client, or the server, has as many pairing rooms open as it may.
    #[error("too many pairing rooms open; try again later")]
    TooManyInvites,
}

/// Why a signal was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// Recipient not online in the room.
    #[error("recipient is not online")]
    UnknownRecipient,
    /// Recipient's queue was full: it has been disconnected.
    #[error("recipient reads too slowly and was disconnected")]
    SlowConsumer,
    /// Recipient is briefly offline and its mailbox is full.
    #[error("recipient is offline and its mailbox is full")]
    MailboxFull,
    /// The pairing room has relayed all it may, or its time is up.
    #[error("pairing room relay budget used up")]
    InviteBudget,
    /// The recipient is not connected here and Redis, which knows where it is, could not
    /// be asked (down, too slow, refusing writes).
    #[error("the server's shared state is unavailable")]
    Unavailable,
}

/// How a signal was routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// Queued for the recipient's connection (here or on another replica).
    Delivered,
    /// Held in the mailbox of a recipient that just went offline.
    Held,
}

/// All rooms.
pub struct Hub {
    pub(super) rooms: Mutex<HashMap<RoomKey, Room>>,
    pub(super) revoked: Mutex<Revocations>,
    pub(super) mail: Mutex<Mailboxes>,
    invites: Mutex<Invites>,
    pub(super) backplane: Option<Backplane>,
    /// Revocations known here but not (yet) stored in Redis: retried until they are.
    pub(super) unsynced: Mutex<HashSet<(VaultId, DeviceId)>>,
    /// Members whose held mail could not be fetched at their join: fetched again later.
    pub(super) mail_pending: Mutex<HashSet<(RoomKey, DeviceId)>>,
}

impl RoomKey {
    /// The room's name on the backplane.
    pub fn name(&self) -> String {
        match self {
            RoomKey::Vault(v) => format!("v{}", v.to_hex()),
            RoomKey::Invite(r) => format!("i{}", hex::encode(r)),
        }
    }

    /// Parses [`RoomKey::name`].
    pub fn parse(name: &str) -> Option<Self> {
        match name.split_at_checked(1)? {
            ("v", h) => VaultId::from_hex(h).map(RoomKey::Vault),
            ("i", h) => crate::protocol::parse_invite_room(h).map(RoomKey::Invite),
            _ => None,
        }
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic elsewhere mid-update; the maps are still consistent
    // enough to serve (worst case a stale member), so keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn presence(room: &Room, except: DeviceId) -> Vec<String> {
    room.members.keys().filter(|d| **d != except).map(|d| d.to_hex()).collect()
}

/// Tells every member (but `skip`, who learns it from its welcome) who is online.
fn send_presence(room: &Room, skip: Option<DeviceId>) {
    for (d, m) in room.members.iter().filter(|(d, _)| Some(**d) != skip) {
        offer_presence(m, presence(room, *d));
    }
}

/// Queues signals held in the shared mailbox for the member's new connection, oldest first,
/// until its outbox is full.
pub(super) fn push_held(outbox: &Outbox, held: Vec<String>) {
    for text in held {
        if outbox.push(ws::text_frame(&text)).is_err() {
            break;
        }
    }
}

/// Leaves `online` (the member itself excluded) as the member's pending presence update.
pub(super) fn offer_presence(m: &Member, online: Vec<String>) {
    if let Ok(text) = serde_json::to_string(&ServerMsg::Presence { online }) {
        m.outbox.set_presence(ws::text_frame(&text));
    }
}

impl Hub {
    /// A hub, shared across replicas through `backplane` when given.
    pub fn new(backplane: Option<Backplane>, mail: Mailboxes, invites: Invites) -> Self {
        Self {
            rooms: Mutex::default(),
            revoked: Mutex::new(Revocations::new(REVOKED_PER_VAULT, REVOKED_TOTAL, REVOKED_IDLE)),
            mail: Mutex::new(mail),
            invites: Mutex::new(invites),
            backplane,
            unsynced: Mutex::default(),
            mail_pending: Mutex::default(),
        }
    }

    /// Removes the members of pairing rooms whose window has ended, and forgets rooms
    /// remembered long enough.
    pub fn sweep_invites(&self, now: Instant) {
        let ended = lock(&self.invites).sweep(now);
        if ended.is_empty() {
            return;
        }
        // Only told to close: each connection then leaves through `leave`, which also
        // clears its shared presence and location.
        let rooms = lock(&self.rooms);
        for r in ended {
            if let Some(room) = rooms.get(&RoomKey::Invite(r)) {
                for m in room.members.values() {
                    m.outbox.kick("pairing room expired");
                }
            }
        }
    }

    /// Opens or checks the window of pairing room `room` for a join from `source`; `opened`
    /// is when the window opened on the backplane, if shared.
    fn admit_invite(
        &self,
        room: [u8; 32],
        source: SourceKey,
        opened: Option<Instant>,
        now: Instant,
    ) -> Result<Instant, JoinError> {
        lock(&self.invites).admit(room, source, opened.unwrap_or(now), now).map_err(|e| match e {
            InviteRefusal::Expired => JoinError::Expired,
            InviteRefusal::TooMany => JoinError::TooManyInvites,
        })
    }

    /// Charges a signal of `len` bytes to pairing room `key`'s budget (vault rooms: free).
    pub(super) fn charge(&self, key: RoomKey, len: usize) -> Result<(), RouteError> {
        match key {
            RoomKey::Invite(r) if !lock(&self.invites).relay(r, len, Instant::now()) => Err(RouteError::InviteBudget),
            _ => Ok(()),
        }
    }

    /// Hands `device`'s held messages (if any) to its new connection.
    fn hand_over_mail(&self, key: RoomKey, device: DeviceId, member: &Member, now: Instant) {
        for frame in lock(&self.mail).take(key, device, now) {
            if member.outbox.push(frame).is_err() {
                break;
            }
        }
    }

    /// Drops expired mailboxes.
    pub fn sweep_mail(&self, now: Instant) {
        lock(&self.mail).sweep(now);
    }

    /// The backplane, if any.
    pub fn backplane(&self) -> Option<&Backplane> {
        self.backplane.as_ref()
    }

    /// Adds `device` to `key`; returns the others online. A device already present here is
    /// replaced (its old connection is kicked): reconnects must not wait for timeouts.
    pub async fn join(
        &self,
        key: RoomKey,
        device: DeviceId,
        member: Member,
        max_room: usize,
        source: SourceKey,
        now: Instant,
    ) -> Result<Vec<String>, JoinError> {
        let dev = device.to_hex();
        let room_name = key.name();
        let mut expires = None;
        if let RoomKey::Invite(r) = key {
            // With replicas the window is shared: it opened at the first join anywhere.
            // Without Redis, this replica's own window applies.
            let opened = match &self.backplane {
                Some(bp) => {
                    bp.invite_age(&room_name, self.invite_ttl()).await.ok().and_then(|age| now.checked_sub(age))
                }
                None => None,
            };
            expires = Some(self.admit_invite(r, source, opened, now)?);
        }
        if let RoomKey::Vault(v) = key {
            if lock(&self.revoked).contains(v, device) {
                return Err(JoinError::Revoked);
            }
        }
        let mut remote = None;
        if let Some(bp) = &self.backplane {
            match bp.join(&room_name, &dev, max_room, matches!(key, RoomKey::Vault(_))).await {
                Ok(Joined::Revoked) => return Err(JoinError::Revoked),
                Ok(Joined::Full) => return Err(JoinError::Full),
                Ok(Joined::Online(online)) => remote = Some(online),
                Err(e) => {
                    // Admitted on this replica's revocations alone (checked above): counted,
                    // and the health log says Redis is down once, not once per join.
                    tracing::debug!(error = %e, device = %device, "joined without redis: presence is local only");
                    if let (RoomKey::Vault(_), Some(m)) = (key, bp.health().metrics()) {
                        m.unchecked_joins.inc();
                    }
                }
            }
        }
        let outbox = Arc::clone(&member.outbox);
        {
            let mut rooms = lock(&self.rooms);
            let room = rooms.entry(key).or_insert_with(|| Room { members: BTreeMap::new(), expires, shown: None });
            if room.expires.is_some_and(|e| now >= e) {
                return Err(JoinError::Expired);
            }
            if room.expires.is_none() {
                room.expires = expires;
            }
            if remote.is_none() && !room.members.contains_key(&device) && room.members.len() >= max_room {
                return Err(JoinError::Full);
            }
            if remote.is_none() {
                self.hand_over_mail(key, device, &member, now);
            }
            if let Some(old) = room.members.insert(device, member) {
                old.outbox.kick("replaced by a newer connection of the same device");
            }
            if remote.is_none() {
                // The members now know only this replica's view: the next refresh with Redis
                // up pushes the shared one.
                room.shown = None;
                send_presence(room, Some(device));
                return Ok(presence(room, device));
            }
        }
        let Some(bp) = &self.backplane else { return Ok(Vec::new()) };
        let _ = bp.publish(&room_name, &RoomEvent::Joined { device: dev.clone(), replica: bp.replica() }).await;
        match bp.take_mail(&room_name, &dev).await {
            Ok(held) => push_held(&outbox, held),
            // Taken atomically or not at all: it stays in Redis, fetched at the next refresh.
            Err(_) => {
                lock(&self.mail_pending).insert((key, device));
            }
        }
        Ok(remote.unwrap_or_default().into_iter().filter(|d| *d != dev).collect())
    }

    /// Removes connection `conn` of `device` (a newer connection of it stays).
    pub async fn leave(&self, key: RoomKey, device: DeviceId, conn: u64) {
        let removed = {
            let mut rooms = lock(&self.rooms);
            let Some(room) = rooms.get_mut(&key) else { return };
            let removed = room.members.get(&device).is_some_and(|m| m.conn == conn);
            if removed {
                room.members.remove(&device);
                if self.backplane.is_none() && matches!(key, RoomKey::Vault(_)) {
                    lock(&self.mail).open(key, device, Instant::now());
                }
                if self.backplane.is_none() {
                    send_presence(room, None);
                }
            }
            if room.members.is_empty() {
                rooms.remove(&key);
            }
            removed
        };
        if let (true, Some(bp)) = (removed, &self.backplane) {
            let name = key.name();
            let dev = device.to_hex();
            let mailbox = if matches!(key, RoomKey::Vault(_)) { self.mail_ttl() } else { std::time::Duration::ZERO };
            if bp.leave(&name, &dev, mailbox).await.is_ok() {
                let _ = bp.publish(&name, &RoomEvent::Presence).await;
            } else if let Some(room) = lock(&self.rooms).get_mut(&key) {
                // Redis could not be told: the members here hear it from here, and the next
                // refresh with Redis back pushes the shared view again.
                room.shown = None;
                send_presence(room, None);
            }
        }
    }

    /// Queues `frame` for a local member `to` of `key`.
    fn deliver_local(&self, key: RoomKey, to: DeviceId, frame: Bytes) -> Result<(), RouteError> {
        let rooms = lock(&self.rooms);
        let m = rooms.get(&key).and_then(|r| r.members.get(&to)).ok_or(RouteError::UnknownRecipient)?;
        m.outbox.push(frame).map_err(|e| match e {
            // Closing: as if it had already gone (the caller tries its other paths).
            Full::Closing => RouteError::UnknownRecipient,
            Full::Queue => {
                m.outbox.kick("too slow: outbound queue full");
                RouteError::SlowConsumer
            }
        })
    }

    /// The outcome of delivering to a member connected here; `None` if `to` is not here.
    pub(super) fn try_local(&self, key: RoomKey, to: DeviceId, frame: Bytes) -> Option<Result<Routed, RouteError>> {
        match self.deliver_local(key, to, frame) {
            Err(RouteError::UnknownRecipient) => None,
            other => Some(other.map(|()| Routed::Delivered)),
        }
    }

    /// Routes a signal without a backplane: synchronous, so a connection's task does not
    /// carry the space of the Redis calls it never makes.
    pub fn route_local(&self, key: RoomKey, to: DeviceId, text: &str) -> Result<Routed, RouteError> {
        self.charge(key, text.len())?;
        let frame = ws::text_frame(text);
        if let Some(done) = self.try_local(key, to, frame.clone()) {
            return done;
        }
        match lock(&self.mail).put(key, to, frame, Instant::now()) {
            Ok(()) => Ok(Routed::Held),
            Err(NotHeld::NoMailbox) => Err(RouteError::UnknownRecipient),
            Err(NotHeld::Full) => Err(RouteError::MailboxFull),
        }
    }

    /// Forgets the revocations of vaults whose room has stayed empty (they are re-learnt
    /// from the devices when they come back).
    pub fn sweep_revocations(&self, now: Instant) {
        let occupied: HashSet<VaultId> = lock(&self.rooms)
            .keys()
            .filter_map(|k| match k {
                RoomKey::Vault(v) => Some(*v),
                RoomKey::Invite(_) => None,
            })
            .collect();
        lock(&self.revoked).sweep(now, |v| occupied.contains(&v));
    }

    /// Removes `device`'s local connection from `key` and closes it, without touching shared
    /// presence: the device is online through another replica now.
    pub(super) fn evict_local(&self, key: RoomKey, device: DeviceId, reason: &'static str) {
        let mut rooms = lock(&self.rooms);
        let Some(room) = rooms.get_mut(&key) else { return };
        if let Some(m) = room.members.remove(&device) {
            m.outbox.kick(reason);
        }
        if room.members.is_empty() {
            rooms.remove(&key);
        }
    }

    /// How long pairing rooms live.
    fn invite_ttl(&self) -> std::time::Duration {
        lock(&self.invites).ttl()
    }

    /// How long mailboxes live (zero: off).
    pub(super) fn mail_ttl(&self) -> std::time::Duration {
        lock(&self.mail).ttl()
    }

    pub(super) fn kick_local(&self, key: RoomKey, device: DeviceId, reason: &'static str) {
        if let Some(m) = lock(&self.rooms).get(&key).and_then(|r| r.members.get(&device)) {
            m.outbox.kick(reason);
        }
    }

    /// Applies an event from the backplane to local members. Presence needs a Redis read,
    /// so it returns the room to refresh instead of blocking here.
    pub fn on_event(&self, room: &str, ev: RoomEvent) -> Option<RoomKey> {
        let key = RoomKey::parse(room)?;
        match ev {
            RoomEvent::Signal { to, text } => {
                if let Some(to) = DeviceId::from_hex(&to) {
                    let _ = self.deliver_local(key, to, ws::text_frame(&text));
                }
                None
            }
            RoomEvent::Kick { device, .. } => {
                if let Some(d) = DeviceId::from_hex(&device) {
                    if let RoomKey::Vault(v) = key {
                        let _ = lock(&self.revoked).add(v, d, Instant::now());
                    }
                    self.kick_local(key, d, "device revoked");
                }
                None
            }
            RoomEvent::Presence => lock(&self.rooms).contains_key(&key).then_some(key),
            RoomEvent::Joined { device, replica } => {
                if self.backplane.as_ref().is_some_and(|bp| bp.replica() != replica) {
                    if let Some(d) = DeviceId::from_hex(&device) {
                        self.evict_local(key, d, "replaced by a newer connection of the same device");
                    }
                }
                lock(&self.rooms).contains_key(&key).then_some(key)
            }
        }
    }

    /// Runs `f` on every local member.
    fn each_member(&self, f: impl Fn(&Member)) {
        for room in lock(&self.rooms).values() {
            room.members.values().for_each(&f);
        }
    }

    /// Starts a liveness round on every local connection.
    pub fn ping_all(&self) {
        self.each_member(|m| m.outbox.ping());
    }

    /// Closes every local connection with `code` and `reason` (shutdown).
    pub fn kick_all(&self, code: u16, reason: &'static str) {
        self.each_member(|m| m.outbox.kick_with(code, reason));
    }

    /// Rooms with members.
    pub fn room_count(&self) -> usize {
        lock(&self.rooms).len()
    }
}
