//! The sync session: a sans-IO state machine over any message pipe.
//!
//! Phases: Noise `XXpsk0` handshake (device x25519 statics, the vault's session PSK) →
//! `Hello` exchange (membership, signed heads; the remote static must belong to an active
//! device) → transfer and live push of entries in bounded batches, each acknowledged after
//! the receiver's commit. A signed head that differs from the entry held at its seq is a
//! fork: the side that sees it sends its hashes of that log (`Hashes`), the other settles
//! the fork where the logs part (a root-signed `Fork` record sent like any membership), and
//! neither sends entries of that author on that session.
//!
//! A retired vault (rotated: PROTOCOL.md §2.1) syncs nothing: either side that knows of the
//! retirement sends only its record as the hello and closes; the side that learns it stores
//! it and ends with [`SyncError::Retired`]. A device that rotated away answers the old
//! vault's handshakes too (a responder tries its [`Predecessor`] keys when the current PSK
//! does not open the first message), so a device left behind learns where everyone went.
//!
//! Use: feed every message from the pipe to [`Session::handle_message`], then drain
//! [`Session::poll_transmit`] (send each returned message on the pipe) and
//! [`Session::poll_event`]. Call `poll_transmit` again after local writes or after another
//! session committed entries: new entries are pushed (and forwarded) from there. The session
//! never blocks, sleeps or reads a clock.

use std::collections::VecDeque;

use snow::{HandshakeState, TransportState};

use super::frame::{self, FrameError, Msg, Reassembler, NOISE_MAX};
use crate::identity::MembershipError;
use crate::identity::{MembershipRecord, Retirement};
use crate::ids::DeviceId;
use crate::vault::{LogStore, Predecessor, Received, Replica, ReplicaError, VersionVector, DENSE_HASHES};

/// The Noise pattern: mutual static keys, the PSK mixed in *first*, so a party without the
/// phrase cannot read even message 2 (which carries the responder's static key): a stranger
/// on the LAN learns no device key (with `psk3` it would learn the responder's).
pub const NOISE_PARAMS: &str = "Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s";

/// Tunables.
#[derive(Debug, Clone, Copy)]
pub struct SessionConfig {
    /// Largest reassembled message accepted.
    pub max_message: usize,
    /// Target size of one batch.
    pub batch_bytes: usize,
    /// Batches sent but not yet acknowledged, at most.
    pub window: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self { max_message: 4 << 20, batch_bytes: 256 << 10, window: 4 }
    }
}

/// Which side opened the pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends the first handshake message.
    Initiator,
    /// Answers it.
    Responder,
}

/// Why a session ended. Every variant means the session is dead; nothing of the offending
/// message was stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The handshake failed: wrong vault phrase, or not a Hearth peer.
    #[error("handshake failed (different vault or not a Hearth peer): {0}")]
    Handshake(snow::Error),
    /// A transport message did not decrypt.
    #[error("message failed to decrypt: {0}")]
    Decrypt(snow::Error),
    /// Framing or decoding failed.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The peer's key is not an active device of this vault.
    #[error("peer is not an active device of this vault: {0}")]
    NotMember(#[from] MembershipError),
    /// The peer sent entries this replica refused.
    #[error("peer sent entries that were refused: {0}")]
    Refused(#[from] ReplicaError),
    /// The peer broke the protocol's message order.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    /// The session already failed or closed.
    #[error("session is closed")]
    Closed,
    /// The vault was rotated (this side knew, or the peer just said so): nothing syncs.
    #[error("{}", crate::vault::explain_retirement(.0))]
    Retired(Box<Retirement>),
}

/// Something the application may want to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Handshake and hello done: the peer is device `device`.
    Connected {
        /// The peer.
        device: DeviceId,
    },
    /// A batch from the peer was committed.
    Received(Received),
    /// This side settled a fork of `author`'s log: it is kept up to `kept`, the rest void.
    ForkSettled {
        /// The forked device.
        author: DeviceId,
        /// The last seq both branches share.
        kept: u64,
    },
    /// The peer acknowledged everything sent so far.
    Acked(VersionVector),
}

enum Phase {
    Handshake(Box<HandshakeState>),
    AwaitHello(Box<TransportState>),
    Live(Box<TransportState>),
    Dead,
}

/// One sync session with one peer.
pub struct Session {
    role: Role,
    config: SessionConfig,
    phase: Phase,
    reasm: Reassembler,
    /// Messages ready for the pipe.
    outbox: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    remote: Option<DeviceId>,
    /// What the peer is known to hold (hello, acks, and what it sent us).
    remote_vv: VersionVector,
    /// The peer's version at hello: we are caught up once we hold all of it.
    remote_hello_vv: VersionVector,
    /// Position in our log up to which entries have been offered to the peer.
    cursor: usize,
    /// Batches sent and not yet acknowledged.
    unacked: usize,
    /// Membership records already sent.
    membership_sent: usize,
    /// Authors whose log forked from the peer's (seen at hello): none of their entries are
    /// sent on this session.
    forks: Vec<DeviceId>,
    /// The peer was revoked: only what is queued (a forked peer's settlement) goes out.
    closing: bool,
    /// Decryption buffer, reused for every incoming message.
    plain: Vec<u8>,
    /// The Noise handshake hash: the same on both ends, unique per session.
    handshake_hash: Option<[u8; 32]>,
    /// Entries sent and received (new) over this session.
    counts: SessionCounts,
    /// What the peer has been told this replica holds (hello, acks, `Have`).
    announced: VersionVector,
    /// Batches carry only entries at log positions below this (the node holds relayed
    /// entries back for a moment: see [`Session::hold_from`]).
    limit: usize,
    /// A `Have` told of entries the peer was not known to hold (it has another path).
    heard_have: bool,
    /// A responder's retired vaults, tried when the current PSK does not open the first
    /// handshake message (emptied after it).
    predecessors: Vec<Predecessor>,
    /// Set when the handshake ran under a predecessor's keys: the hello is its retirement.
    notice: Option<Vec<MembershipRecord>>,
}

/// Entries moved over one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCounts {
    /// Entries sent in batches.
    pub sent: u64,
    /// New entries received and committed.
    pub received: u64,
    /// Entries received that this replica already held (the mesh's waste).
    pub dup_received: u64,
    /// Bytes of every message handed to the pipe.
    pub bytes_sent: u64,
    /// Bytes of every message fed from the pipe.
    pub bytes_received: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("role", &self.role).field("remote", &self.remote).finish_non_exhaustive()
    }
}

impl Session {
    /// Starts a session for `replica`; the initiator's first message is queued at once.
    pub fn new<S: LogStore>(role: Role, replica: &Replica<S>, config: SessionConfig) -> Result<Self, SyncError> {
        let dh = zeroize::Zeroizing::new(replica.device_keys().dh.to_bytes());
        let hs = handshake(role, &dh, replica.vault_keys().session_psk.as_bytes())?;
        let predecessors = if role == Role::Responder { replica.predecessors().to_vec() } else { Vec::new() };
        let mut s = Self {
            role,
            config,
            phase: Phase::Handshake(Box::new(hs)),
            reasm: Reassembler::new(config.max_message),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            remote: None,
            remote_vv: VersionVector::default(),
            remote_hello_vv: VersionVector::default(),
            cursor: 0,
            unacked: 0,
            membership_sent: 0,
            forks: Vec::new(),
            closing: false,
            plain: Vec::new(),
            handshake_hash: None,
            counts: SessionCounts::default(),
            announced: VersionVector::default(),
            limit: usize::MAX,
            heard_have: false,
            predecessors,
            notice: None,
        };
        if role == Role::Initiator {
            s.write_handshake()?;
        }
        Ok(s)
    }

    /// The peer's device, once connected.
    pub fn remote(&self) -> Option<DeviceId> {
        self.remote
    }

    /// The Noise handshake hash once the handshake is done: both ends see the same value,
    /// and no other session has it, so two nodes can pick between duplicate sessions alike.
    pub fn handshake_hash(&self) -> Option<[u8; 32]> {
        self.handshake_hash
    }

    /// Entries sent and received so far.
    pub fn counts(&self) -> SessionCounts {
        self.counts
    }

    /// Entries this replica holds that the peer is not known to hold.
    pub fn pending<S: LogStore>(&self, replica: &Replica<S>) -> u64 {
        replica.version().0.iter().map(|(d, s)| s.saturating_sub(self.remote_vv.get(*d))).sum()
    }

    /// True once the session has ended (after a failure, or closed by this side).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Dead)
    }

    /// True once the handshake and hello are done.
    pub fn is_live(&self) -> bool {
        matches!(self.phase, Phase::Live(_))
    }

    /// True when both sides hold everything the other had at hello time and all our batches
    /// are acknowledged: one sync round is complete.
    pub fn is_caught_up<S: LogStore>(&self, replica: &Replica<S>) -> bool {
        self.is_live()
            && self.unacked == 0
            && self.cursor >= replica.log_end()
            && self.remote_hello_vv.le(replica.version())
    }

    /// Feeds one message received from the pipe.
    pub fn handle_message<S: LogStore>(&mut self, data: &[u8], replica: &mut Replica<S>) -> Result<(), SyncError> {
        self.counts.bytes_received += data.len() as u64;
        let r = self.handle_inner(data, replica);
        if r.is_err() {
            self.phase = Phase::Dead;
            self.outbox.clear();
        }
        r
    }

    fn handle_inner<S: LogStore>(&mut self, data: &[u8], replica: &mut Replica<S>) -> Result<(), SyncError> {
        if data.len() > NOISE_MAX {
            return Err(FrameError::TooLarge(NOISE_MAX).into());
        }
        // One receive buffer per session, not a fresh 64 KiB per message.
        self.plain.resize(NOISE_MAX, 0);
        match &mut self.phase {
            // Closed by this side (the peer was revoked): what it still sends is ignored.
            Phase::Dead if self.closing => Ok(()),
            Phase::Dead => Err(SyncError::Closed),
            Phase::Handshake(hs) => {
                if let Err(e) = hs.read_message(data, &mut self.plain) {
                    self.open_as_predecessor(data, e)?;
                }
                self.predecessors.clear();
                let Phase::Handshake(hs) = &mut self.phase else { return Err(SyncError::Closed) };
                if !hs.is_handshake_finished() {
                    self.write_handshake()?;
                }
                self.maybe_finish_handshake(replica)
            }
            Phase::AwaitHello(ts) | Phase::Live(ts) => {
                let n = ts.read_message(data, &mut self.plain).map_err(SyncError::Decrypt)?;
                match self.reasm.push(&self.plain[..n])? {
                    Some(msg) => self.on_message(msg, replica),
                    None => Ok(()),
                }
            }
        }
    }

    /// The first message did not open under the vault's PSK: a device of a vault this one
    /// rotated away from may have sent it. Tries each predecessor's keys (fresh handshake
    /// states: a failed read leaves one unusable); fails with `first` when none opens it.
    fn open_as_predecessor(&mut self, data: &[u8], first: snow::Error) -> Result<(), SyncError> {
        for p in std::mem::take(&mut self.predecessors) {
            let mut hs = handshake(Role::Responder, &p.dh, p.session_psk.as_bytes())?;
            if hs.read_message(data, &mut self.plain).is_ok() {
                self.phase = Phase::Handshake(Box::new(hs));
                self.notice = Some(p.notice);
                return Ok(());
            }
        }
        Err(SyncError::Handshake(first))
    }

    fn write_handshake(&mut self) -> Result<(), SyncError> {
        let Phase::Handshake(hs) = &mut self.phase else { return Err(SyncError::Protocol("not in handshake")) };
        let mut buf = vec![0u8; NOISE_MAX];
        let n = hs.write_message(&[], &mut buf).map_err(SyncError::Handshake)?;
        buf.truncate(n);
        self.outbox.push_back(buf);
        Ok(())
    }

    fn maybe_finish_handshake<S: LogStore>(&mut self, replica: &Replica<S>) -> Result<(), SyncError> {
        let finished = matches!(&self.phase, Phase::Handshake(hs) if hs.is_handshake_finished());
        if !finished {
            return Ok(());
        }
        let Phase::Handshake(hs) = std::mem::replace(&mut self.phase, Phase::Dead) else {
            return Err(SyncError::Closed);
        };
        self.handshake_hash = <[u8; 32]>::try_from(hs.get_handshake_hash()).ok();
        let ts = hs.into_transport_mode().map_err(SyncError::Handshake)?;
        self.phase = Phase::AwaitHello(Box::new(ts));
        // A device this replica already knows a user revoked learns nothing of the vault, not
        // even our membership and heads: its hello is the records that revoke it, no heads,
        // then the session closes (what it sends is neither read nor stored). It learns why,
        // so its node stops dialling. (An unknown key may be a device enrolled meanwhile,
        // whose own hello carries its enrolment; a forked one is told as before.)
        // A retired vault (here, or one this device rotated away from) says only that.
        let notice = match self.notice.take() {
            Some(n) => Some(n),
            None => Some(replica.membership().retirement_records()).filter(|r| !r.is_empty()),
        };
        if let Some(membership) = notice {
            self.send(&Msg::Hello { membership, heads: Vec::new() })?;
            self.closing = true;
            self.phase = Phase::Dead;
            return Ok(());
        }
        let key = self.remote_static().ok_or(SyncError::Protocol("no remote static key"))?;
        let m = replica.membership();
        if let Err(MembershipError::Revoked(d)) = m.active_by_dh(&key) {
            if !m.may_reenrol(d) {
                let own: Vec<_> =
                    m.records().iter().filter(|r| r.body.cut().is_some_and(|c| c.device_id == d)).cloned().collect();
                self.send(&Msg::Hello { membership: own, heads: Vec::new() })?;
                self.closing = true;
                self.phase = Phase::Dead;
                return Ok(());
            }
        }
        let hello = Msg::Hello { membership: replica.membership().records().to_vec(), heads: replica.heads() };
        self.membership_sent = replica.membership().records().len();
        self.announced = replica.version().clone();
        self.send(&hello)
    }

    fn remote_static(&self) -> Option<[u8; 32]> {
        let s = match &self.phase {
            Phase::AwaitHello(ts) | Phase::Live(ts) => ts.get_remote_static()?,
            _ => return None,
        };
        <[u8; 32]>::try_from(s).ok()
    }

    fn on_message<S: LogStore>(&mut self, msg: Msg, replica: &mut Replica<S>) -> Result<(), SyncError> {
        if self.remote.is_some() && !self.is_live() {
            // Refused at hello (a peer whose fork was settled): it is being told and closed.
            return Ok(());
        }
        match (msg, self.is_live()) {
            (Msg::Hello { membership, heads }, false) => {
                replica.add_membership(membership)?;
                retired(replica)?;
                let key = self.remote_static().ok_or(SyncError::Protocol("no remote static key"))?;
                let device = match replica.membership().active_by_dh(&key) {
                    Ok(e) => e.device_id,
                    // A device whose fork was settled is told so (by `poll_transmit`), then
                    // the session ends.
                    Err(MembershipError::Revoked(d)) if replica.membership().may_reenrol(d) => {
                        self.remote = Some(d);
                        return Ok(());
                    }
                    Err(e) => return Err(e.into()),
                };
                for (author, seq) in replica.check_heads(&heads)? {
                    self.send(&Msg::Hashes { author, hashes: replica.fork_hashes(author, seq) })?;
                    self.forks.push(author);
                }
                for h in &heads {
                    self.remote_vv.set(h.author, h.seq);
                }
                self.remote_hello_vv = self.remote_vv.clone();
                self.remote = Some(device);
                let Phase::AwaitHello(ts) = std::mem::replace(&mut self.phase, Phase::Dead) else {
                    return Err(SyncError::Closed);
                };
                self.phase = Phase::Live(ts);
                self.events.push_back(Event::Connected { device });
                Ok(())
            }
            (Msg::Batch(b), true) => {
                let got = replica.receive(&b)?;
                // Whatever the peer sent, it holds: never echo it back.
                for e in &b.entries {
                    if let Some(a) = b.authors.get(usize::from(e.author)) {
                        if e.seq > self.remote_vv.get(*a) {
                            self.remote_vv.set(*a, e.seq);
                        }
                    }
                }
                self.announced = replica.version().clone();
                self.send(&Msg::Ack(self.announced.clone()))?;
                self.counts.received += got.new as u64;
                self.counts.dup_received += got.duplicates as u64;
                self.events.push_back(Event::Received(got));
                Ok(())
            }
            (Msg::Ack(vv), true) => {
                self.unacked = self.unacked.saturating_sub(1);
                self.learn_remote(&vv);
                if self.unacked == 0 {
                    self.events.push_back(Event::Acked(vv));
                }
                Ok(())
            }
            (Msg::Have(vv), true) => {
                if self.learn_remote(&vv) {
                    self.heard_have = true;
                }
                Ok(())
            }
            (Msg::Membership(recs), true) => {
                replica.add_membership(recs)?;
                retired(replica)?;
                // A revocation may have removed the peer itself (a settled fork of the peer
                // is left to `poll_transmit`, which tells it before closing).
                let key = self.remote_static().ok_or(SyncError::Protocol("no remote static key"))?;
                match replica.membership().active_by_dh(&key) {
                    Err(MembershipError::Revoked(d)) if replica.membership().may_reenrol(d) => Ok(()),
                    other => other.map(|_| ()).map_err(SyncError::from),
                }
            }
            (Msg::Hashes { author, hashes }, true) => {
                if too_many_hashes(hashes.len()) {
                    return Err(SyncError::Protocol("too many fork hashes"));
                }
                if let Some(kept) = replica.settle_fork(author, &hashes)? {
                    self.events.push_back(Event::ForkSettled { author, kept });
                }
                Ok(())
            }
            (_, false) => Err(SyncError::Protocol("message before hello")),
            (Msg::Hello { .. }, true) => Err(SyncError::Protocol("second hello")),
        }
    }

    /// Raises what the peer is known to hold to `vv` (an ack or a `Have`); true when that
    /// told of anything not known before.
    fn learn_remote(&mut self, vv: &VersionVector) -> bool {
        let mut news = false;
        for (d, s) in &vv.0 {
            if *s > self.remote_vv.get(*d) {
                self.remote_vv.set(*d, *s);
                news = true;
            }
        }
        news
    }

    fn send(&mut self, msg: &Msg) -> Result<(), SyncError> {
        let ts = match &mut self.phase {
            Phase::AwaitHello(ts) | Phase::Live(ts) => ts,
            _ => return Err(SyncError::Protocol("send before handshake")),
        };
        for chunk in frame::encode(msg) {
            let mut buf = vec![0u8; chunk.len() + 16];
            let n = ts.write_message(&chunk, &mut buf).map_err(SyncError::Decrypt)?;
            buf.truncate(n);
            self.outbox.push_back(buf);
        }
        Ok(())
    }

    /// The next message for the pipe. Once live, this also produces batches of entries the
    /// peer lacks (within the flow-control window) and new membership records.
    pub fn poll_transmit<S: LogStore>(&mut self, replica: &Replica<S>) -> Option<Vec<u8>> {
        let m = self.next_transmit(replica)?;
        self.counts.bytes_sent += m.len() as u64;
        Some(m)
    }

    fn next_transmit<S: LogStore>(&mut self, replica: &Replica<S>) -> Option<Vec<u8>> {
        // A peer revoked meanwhile (here or by a record that just arrived) gets nothing more,
        // not even what was already queued. A peer whose fork was just settled (the same
        // user's device, restored from an older copy) gets what was queued and then the
        // records, so it learns it must re-enrol. (Queued messages are never dropped before
        // later ones: Noise numbers them.)
        let m = replica.membership();
        // Retired meanwhile (rotated here, or told by another peer): tell this peer, close.
        if self.is_live() && !self.closing && m.retirement().is_some() {
            let _ = self.send(&Msg::Membership(m.records()[self.membership_sent..].to_vec()));
            self.membership_sent = m.records().len();
            self.closing = true;
            self.phase = Phase::Dead;
        }
        if let Some(d) = self.remote.filter(|d| !self.closing && m.is_revoked(*d)) {
            if m.may_reenrol(d) {
                let _ = self.send(&Msg::Membership(m.records()[self.membership_sent..].to_vec()));
                self.membership_sent = m.records().len();
            } else {
                self.outbox.clear();
            }
            self.closing = true;
            self.phase = Phase::Dead;
        }
        if self.closing {
            return self.outbox.pop_front();
        }
        if let Some(m) = self.outbox.pop_front() {
            return Some(m);
        }
        if !self.is_live() {
            return None;
        }
        let recs = replica.membership().records();
        if recs.len() > self.membership_sent {
            let new = recs[self.membership_sent..].to_vec();
            self.membership_sent = recs.len();
            if self.send(&Msg::Membership(new)).is_err() {
                return None;
            }
        }
        // Authors forked at hello stay held back for the whole session: once settled, none
        // of their entries the peer lacks is live (the cut is below the peer's head).
        let mut held_back = None;
        if !self.forks.is_empty() {
            let mut vv = self.remote_vv.clone();
            for a in &self.forks {
                vv.set(*a, u64::MAX);
            }
            held_back = Some(vv);
        }
        while self.unacked < self.config.window && self.cursor < replica.log_end().min(self.limit) {
            let remote = held_back.as_ref().unwrap_or(&self.remote_vv);
            let b = match replica.batch_until(remote, &mut self.cursor, self.limit, self.config.batch_bytes) {
                Ok(b) => b,
                // The store could not be read back (a disk error, or damage since the
                // replica opened): end the session; the next one starts from the hello.
                Err(e) => {
                    tracing::warn!("a batch could not be built, the session ends: {e}");
                    self.closing = true;
                    self.phase = Phase::Dead;
                    return self.outbox.pop_front();
                }
            };
            if b.is_empty() {
                continue;
            }
            self.counts.sent += b.entries.len() as u64;
            if self.send(&Msg::Batch(b)).is_err() {
                return None;
            }
            self.unacked += 1;
        }
        self.outbox.pop_front()
    }

    /// Tells the peer (a `Have`, queued for [`Session::poll_transmit`]) of every author of
    /// which this replica now holds more than the peer was told: after storing entries that
    /// another peer brought, so this peer does not forward them here too.
    pub fn announce<S: LogStore>(&mut self, replica: &Replica<S>) {
        if !self.is_live() {
            return;
        }
        let mut new = VersionVector::default();
        for (d, s) in &replica.version().0 {
            if *s > self.announced.get(*d) {
                new.set(*d, *s);
                self.announced.set(*d, *s);
            }
        }
        if !new.0.is_empty() {
            let _ = self.send(&Msg::Have(new));
        }
    }

    /// Holds back entries at log positions from `pos` on (entries stored before stay
    /// eligible) until [`Session::release`]: the node lets relayed entries wait a moment, so
    /// that peers which got them directly can say so first and each entry crosses the mesh
    /// about once. A hold already in force is kept (the lower position wins).
    pub fn hold_from(&mut self, pos: usize) {
        self.limit = self.limit.min(pos);
    }

    /// Lifts any hold: every entry the peer is not known to hold may be sent.
    pub fn release(&mut self) {
        self.limit = usize::MAX;
    }

    /// True (once) when a `Have` since the last call told of entries the peer was not known
    /// to hold: it gets entries through another path too.
    pub fn take_heard_have(&mut self) -> bool {
        std::mem::take(&mut self.heard_have)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

/// A Noise `XXpsk0` handshake state for `role` with static key `dh` and PSK `psk`.
fn handshake(role: Role, dh: &[u8; 32], psk: &[u8; 32]) -> Result<HandshakeState, SyncError> {
    let params = NOISE_PARAMS.parse().map_err(SyncError::Handshake)?;
    let b =
        snow::Builder::new(params).local_private_key(dh).and_then(|b| b.psk(0, psk)).map_err(SyncError::Handshake)?;
    match role {
        Role::Initiator => b.build_initiator(),
        Role::Responder => b.build_responder(),
    }
    .map_err(SyncError::Handshake)
}

/// Ends the session when the replica is (now) retired: the peer's records said so.
fn retired<S: LogStore>(replica: &Replica<S>) -> Result<(), SyncError> {
    match replica.retirement() {
        Some(r) => Err(SyncError::Retired(Box::new(r.clone()))),
        None => Ok(()),
    }
}

/// Most hashes a `Hashes` message may carry: what [`Replica::fork_hashes`] lists (the dense
/// part and a ladder of doubling gaps over any u64 seq) with room to spare.
pub const MAX_FORK_HASHES: usize = 2 * DENSE_HASHES as usize + 64;

fn too_many_hashes(n: usize) -> bool {
    n > MAX_FORK_HASHES
}

#[cfg(test)]
mod tests {
    #[test]
    fn fork_hashes_are_capped_at_the_limit_exactly() {
        use super::{too_many_hashes, MAX_FORK_HASHES};
        assert!(!too_many_hashes(MAX_FORK_HASHES));
        assert!(too_many_hashes(MAX_FORK_HASHES + 1));
        assert_eq!(MAX_FORK_HASHES, 8_256);
    }
}
