//! Rooms, presence and routing (in-memory; one process).
//!
//! Every member has a bounded outbound queue. Routing never waits: a full queue means the
//! recipient reads too slowly, and it is disconnected rather than buffered without bound.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use hearth_proto::ids::{DeviceId, VaultId};
use tokio::sync::{mpsc, Notify};

use crate::protocol::ServerMsg;

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
    /// Outbound JSON messages.
    pub tx: mpsc::Sender<Arc<str>>,
    /// Tells the connection to close (replaced, too slow, revoked).
    pub kick: Arc<Kick>,
}

/// Why a connection is told to close.
#[derive(Debug, Default)]
pub struct Kick {
    notify: Notify,
    reason: Mutex<Option<&'static str>>,
}

impl Kick {
    /// Asks the connection to close with `reason`.
    pub fn kick(&self, reason: &'static str) {
        *lock(&self.reason) = Some(reason);
        self.notify.notify_one();
    }

    /// Waits until kicked; returns the reason.
    pub async fn wait(&self) -> &'static str {
        self.notify.notified().await;
        lock(&self.reason).unwrap_or("closed by server")
    }
}

struct Room {
    members: BTreeMap<DeviceId, Member>,
    /// Invite rooms die at this time.
    expires: Option<Instant>,
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
}

/// All rooms.
#[derive(Default)]
pub struct Hub {
    rooms: Mutex<HashMap<RoomKey, Room>>,
    revoked: Mutex<HashMap<VaultId, HashSet<DeviceId>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
        let msg = ServerMsg::Presence { online: presence(room, *d) };
        if let Ok(text) = serde_json::to_string(&msg) {
            if m.tx.try_send(Arc::from(text)).is_err() {
                m.kick.kick("too slow");
            }
        }
    }
}

impl Hub {
    /// Adds `device` to `key`; returns the others online. A device already present is
    /// replaced (its old connection is kicked): reconnects must not wait for timeouts.
    pub fn join(
        &self,
        key: RoomKey,
        device: DeviceId,
        member: Member,
        max_room: usize,
        expires: Option<Instant>,
        now: Instant,
    ) -> Result<Vec<String>, JoinError> {
        if let RoomKey::Vault(v) = key {
            if lock(&self.revoked).get(&v).is_some_and(|s| s.contains(&device)) {
                return Err(JoinError::Revoked);
            }
        }
        let mut rooms = lock(&self.rooms);
        let room = rooms.entry(key).or_insert_with(|| Room { members: BTreeMap::new(), expires });
        if room.expires.is_some_and(|e| now >= e) {
            return Err(JoinError::Expired);
        }
        if !room.members.contains_key(&device) && room.members.len() >= max_room {
            return Err(JoinError::Full);
        }
        if let Some(old) = room.members.insert(device, member) {
            old.kick.kick("replaced by a newer connection of the same device");
        }
        let others = presence(room, device);
        send_presence(room, Some(device));
        Ok(others)
    }

    /// Removes connection `conn` of `device` (a newer connection of it stays).
    pub fn leave(&self, key: RoomKey, device: DeviceId, conn: u64) {
        let mut rooms = lock(&self.rooms);
        let Some(room) = rooms.get_mut(&key) else { return };
        if room.members.get(&device).is_some_and(|m| m.conn == conn) {
            room.members.remove(&device);
            send_presence(room, None);
        }
        if room.members.is_empty() {
            rooms.remove(&key);
        }
    }

    /// Queues `text` for `to` in room `key`.
    pub fn route(&self, key: RoomKey, to: DeviceId, text: Arc<str>) -> Result<(), RouteError> {
        let rooms = lock(&self.rooms);
        let m = rooms.get(&key).and_then(|r| r.members.get(&to)).ok_or(RouteError::UnknownRecipient)?;
        match m.tx.try_send(text) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                m.kick.kick("too slow: outbound queue full");
                Err(RouteError::SlowConsumer)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(RouteError::UnknownRecipient),
        }
    }

    /// Records a revocation and disconnects the device if it is online.
    pub fn revoke(&self, vault: VaultId, device: DeviceId) {
        lock(&self.revoked).entry(vault).or_default().insert(device);
        if let Some(m) = lock(&self.rooms).get(&RoomKey::Vault(vault)).and_then(|r| r.members.get(&device)) {
            m.kick.kick("device revoked");
        }
    }

    /// Rooms with members.
    pub fn room_count(&self) -> usize {
        lock(&self.rooms).len()
    }
}
