//! What `hearth status` shows of a running daemon.

use serde::{Deserialize, Serialize};

/// The daemon's view: where it listens and whom it syncs with.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonStatus {
    /// This device (hex).
    pub device: String,
    /// Addresses the WebSocket listener is bound to.
    pub listen: Vec<String>,
    /// Live sessions.
    pub peers: Vec<PeerStatus>,
    /// Entries in the local log.
    pub entries: usize,
}

/// One connected peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The peer's device id (hex).
    pub device: String,
    /// The path in use: `lan` (WebSocket on the local network); `webrtc` later.
    pub path: String,
    /// The peer's address.
    pub addr: String,
    /// `out` when this device dialled, `in` when the peer did.
    pub direction: String,
    /// When the session went live (unix ms).
    pub connected_ms: u64,
    /// When both sides last held everything the other had (unix ms).
    pub last_sync_ms: Option<u64>,
    /// Entries sent over this session.
    pub sent: u64,
    /// New entries received over this session.
    pub received: u64,
    /// Entries this device holds that the peer is not known to hold.
    pub pending: u64,
}
