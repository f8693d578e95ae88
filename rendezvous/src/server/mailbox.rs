//! Short-lived mailboxes for devices that just went offline (a phone switching networks, an
//! app restarting): signals sent to them in the next few seconds are held and handed over
//! when they reconnect, instead of failing. Bounded four ways: a mailbox exists only for a
//! device that left within the TTL, holds at most `len` messages, the mailboxes of one room
//! hold at most `room_bytes` (so one vault cannot take everyone's budget), and all mailboxes
//! together hold at most `max_bytes`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hearth_proto::ids::DeviceId;

use super::hub::RoomKey;

/// Why a message was not held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotHeld {
    /// No device of that id left this room within the TTL.
    NoMailbox,
    /// The mailbox, its room's budget or the server-wide budget is full.
    Full,
}

struct Mailbox {
    expires: Instant,
    frames: VecDeque<Bytes>,
}

/// All mailboxes of one server.
pub struct Mailboxes {
    ttl: Duration,
    len: usize,
    room_bytes: usize,
    max_bytes: usize,
    bytes: usize,
    /// Bytes held per room (rooms holding nothing have no entry).
    per_room: HashMap<RoomKey, usize>,
    boxes: HashMap<(RoomKey, DeviceId), Mailbox>,
}

impl Mailboxes {
    /// Mailboxes living `ttl` (zero: none), each holding `len` messages, `room_bytes` per
    /// room and `max_bytes` in all.
    pub fn new(ttl: Duration, len: usize, room_bytes: usize, max_bytes: usize) -> Self {
        Self { ttl, len, room_bytes, max_bytes, bytes: 0, per_room: HashMap::new(), boxes: HashMap::new() }
    }

    /// The same bounds for mailboxes shared through the backplane.
    pub fn budget(&self) -> super::backplane::MailBudget {
        super::backplane::MailBudget {
            ttl: self.ttl,
            len: self.len,
            room_bytes: self.room_bytes,
            total_bytes: self.max_bytes,
        }
    }

    /// Releases `n` bytes held in `key`.
    fn release(&mut self, key: RoomKey, n: usize) {
        self.bytes -= n;
        if let Some(r) = self.per_room.get_mut(&key) {
            *r -= n.min(*r);
            if *r == 0 {
                self.per_room.remove(&key);
            }
        }
    }

    /// `device` left room `key`: hold its messages until `now + ttl`.
    pub fn open(&mut self, key: RoomKey, device: DeviceId, now: Instant) {
        if self.ttl.is_zero() || self.len == 0 {
            return;
        }
        let expires = now + self.ttl;
        self.boxes.entry((key, device)).or_insert_with(|| Mailbox { expires, frames: VecDeque::new() }).expires =
            expires;
    }

    /// Holds `frame` for `device` if it has a live mailbox with room.
    pub fn put(&mut self, key: RoomKey, device: DeviceId, frame: Bytes, now: Instant) -> Result<(), NotHeld> {
        let mb = self.boxes.get_mut(&(key, device)).filter(|m| m.expires > now).ok_or(NotHeld::NoMailbox)?;
        let in_room = self.per_room.get(&key).copied().unwrap_or(0);
        if mb.frames.len() >= self.len
            || self.bytes + frame.len() > self.max_bytes
            || in_room + frame.len() > self.room_bytes
        {
            return Err(NotHeld::Full);
        }
        self.bytes += frame.len();
        *self.per_room.entry(key).or_insert(0) += frame.len();
        mb.frames.push_back(frame);
        Ok(())
    }

    /// `device` is back: its held messages, oldest first (none if expired).
    pub fn take(&mut self, key: RoomKey, device: DeviceId, now: Instant) -> Vec<Bytes> {
        let Some(mb) = self.boxes.remove(&(key, device)) else { return Vec::new() };
        self.release(key, mb.frames.iter().map(Bytes::len).sum::<usize>());
        if mb.expires > now {
            mb.frames.into()
        } else {
            Vec::new()
        }
    }

    /// Drops expired mailboxes and what they held.
    pub fn sweep(&mut self, now: Instant) {
        let mut freed = Vec::new();
        self.boxes.retain(|(key, _), m| {
            let live = m.expires > now;
            if !live {
                freed.push((*key, m.frames.iter().map(Bytes::len).sum::<usize>()));
            }
            live
        });
        for (key, n) in freed {
            self.release(key, n);
        }
    }

    /// How long a mailbox lives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Bytes held now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Live and expired-but-unswept mailboxes.
    pub fn len(&self) -> usize {
        self.boxes.len()
    }

    /// No mailboxes.
    pub fn is_empty(&self) -> bool {
        self.boxes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_proto::ids::VaultId;

    const ROOM: RoomKey = RoomKey::Vault(VaultId([1; 16]));
    const DEV: DeviceId = DeviceId([2; 16]);

    #[test]
    fn holds_for_recently_left_devices_only_within_bounds() {
        let t0 = Instant::now();
        let mut m = Mailboxes::new(Duration::from_secs(30), 2, 10, 10);
        assert_eq!(m.put(ROOM, DEV, Bytes::from_static(b"a"), t0), Err(NotHeld::NoMailbox), "never seen");
        m.open(ROOM, DEV, t0);
        m.put(ROOM, DEV, Bytes::from_static(b"one"), t0).unwrap();
        m.put(ROOM, DEV, Bytes::from_static(b"two"), t0).unwrap();
        assert_eq!(m.put(ROOM, DEV, Bytes::from_static(b"3"), t0), Err(NotHeld::Full), "per-device length");
        let other = DeviceId([3; 16]);
        m.open(ROOM, other, t0);
        assert_eq!(m.put(ROOM, other, Bytes::from_static(b"12345"), t0), Err(NotHeld::Full), "server-wide bytes");
        assert_eq!(m.take(ROOM, DEV, t0), vec![Bytes::from_static(b"one"), Bytes::from_static(b"two")]);
        assert_eq!(m.bytes(), 0);
        assert!(m.take(ROOM, DEV, t0).is_empty(), "handed over once");
    }

    /// Every bound is exact: budgets may be filled to the byte, a mailbox is dead at
    /// `left + ttl` itself (put, take and sweep agree), and a zero length turns them off.
    #[test]
    fn every_bound_is_exact() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let end = t0 + ttl;
        let other = DeviceId([3; 16]);
        let other_room = RoomKey::Vault(VaultId([9; 16]));
        let mut m = Mailboxes::new(ttl, 3, 6, 10);
        assert_eq!(m.ttl(), ttl);
        m.open(ROOM, DEV, t0);
        m.open(ROOM, other, t0);
        m.open(other_room, DEV, t0);
        assert_eq!((m.len(), m.is_empty()), (3, false));
        m.put(ROOM, DEV, Bytes::from_static(b"123456"), t0).unwrap(); // the room's 6, exactly
        m.put(other_room, DEV, Bytes::from_static(b"1234"), t0).unwrap(); // all 10, exactly
        assert_eq!(m.bytes(), 10);
        assert_eq!(m.put(other_room, DEV, Bytes::from_static(b"1"), t0), Err(NotHeld::Full));
        assert_eq!(m.put(ROOM, other, Bytes::from_static(b"x"), end), Err(NotHeld::NoMailbox), "dead at its end");
        assert!(m.take(ROOM, DEV, end).is_empty(), "nothing handed over at its end");
        m.sweep(end - Duration::from_millis(1));
        assert_eq!(m.len(), 2, "alive just before");
        m.sweep(end);
        assert_eq!((m.len(), m.bytes()), (0, 0), "swept at its end");
        // A zero length holds nothing, whatever the TTL.
        let mut off = Mailboxes::new(ttl, 0, 100, 100);
        off.open(ROOM, DEV, t0);
        assert!(off.is_empty());
    }

    #[test]
    fn expiry_drops_messages() {
        let t0 = Instant::now();
        let mut m = Mailboxes::new(Duration::from_secs(1), 4, 100, 100);
        m.open(ROOM, DEV, t0);
        m.put(ROOM, DEV, Bytes::from_static(b"x"), t0).unwrap();
        let later = t0 + Duration::from_secs(2);
        assert_eq!(m.put(ROOM, DEV, Bytes::from_static(b"y"), later), Err(NotHeld::NoMailbox));
        m.sweep(later);
        assert!(m.is_empty());
        assert_eq!(m.bytes(), 0);
        // Off: nothing is ever held.
        let mut off = Mailboxes::new(Duration::ZERO, 4, 100, 100);
        off.open(ROOM, DEV, t0);
        assert_eq!(off.put(ROOM, DEV, Bytes::from_static(b"x"), t0), Err(NotHeld::NoMailbox));
    }

    #[test]
    fn one_room_cannot_take_the_whole_budget() {
        let t0 = Instant::now();
        let other_room = RoomKey::Vault(VaultId([9; 16]));
        let mut m = Mailboxes::new(Duration::from_secs(30), 100, 10, 25);
        for d in 0..4u8 {
            m.open(ROOM, DeviceId([d; 16]), t0);
        }
        m.open(other_room, DEV, t0);
        m.put(ROOM, DeviceId([0; 16]), Bytes::from_static(b"123456"), t0).unwrap();
        m.put(ROOM, DeviceId([1; 16]), Bytes::from_static(b"1234"), t0).unwrap();
        assert_eq!(m.put(ROOM, DeviceId([2; 16]), Bytes::from_static(b"1"), t0), Err(NotHeld::Full), "room budget");
        // Another vault still has room in the server-wide budget.
        m.put(other_room, DEV, Bytes::from_static(b"1234567890"), t0).unwrap();
        // Handing over frees the room's share.
        assert_eq!(m.take(ROOM, DeviceId([0; 16]), t0).len(), 1);
        m.put(ROOM, DeviceId([2; 16]), Bytes::from_static(b"123456"), t0).unwrap();
        m.sweep(t0 + Duration::from_secs(31));
        assert_eq!((m.bytes(), m.per_room.len()), (0, 0), "expiry frees both counts");
    }
}
