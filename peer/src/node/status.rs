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
    /// Device (hex) → when a session with it last ended with both sides holding everything
    /// (unix ms), since the daemon started; kept after the session closes, so a device that
    /// synced and left at once (a device that just joined) is still seen to have synced.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub last_synced: std::collections::BTreeMap<String, u64>,
    /// Entries in the local log.
    pub entries: usize,
    /// mDNS resolutions of services ignored (another vault's, or a tag that does not check;
    /// a service resolved again counts again), when mDNS runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mdns_ignored: Option<u64>,
    /// The rendezvous link, when the daemon runs with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendezvous: Option<RendezvousStatus>,
    /// WebRTC: this network's NAT and the devices not reached, when a rendezvous is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webrtc: Option<WebRtcStatus>,
    /// Every dial target (static peers, mDNS services, devices seen at the rendezvous) and
    /// what became of it.
    #[serde(default)]
    pub dials: Vec<DialStatus>,
}

/// One dial target of the daemon.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DialStatus {
    /// `static` (--peer, the peers file), `mdns` or `webrtc` (through the rendezvous).
    pub source: String,
    /// Its addresses, or the device (webrtc).
    pub target: String,
    /// `connected`, `connecting`, `unreachable`, `refused` (it or we said no, or it never
    /// became a session: wait minutes), or `waiting` (to dial again after a session ended).
    pub state: String,
    /// Failed attempts in a row.
    pub failures: u32,
    /// When it is dialled next (ms from now), while waiting.
    pub next_retry_ms: Option<u64>,
    /// The device it reached, once a session through it went live.
    pub device: Option<String>,
}

/// What WebRTC knows of this network and of the devices it could not reach.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebRtcStatus {
    /// This network's NAT (RFC 5780 against the STUN server), once checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<NatStatus>,
    /// Devices whose channel never opened since the last one that did, and what to do.
    #[serde(default)]
    pub unreachable: Vec<UnreachableStatus>,
    /// The TURN relay connections use (the rendezvous's, or `--turn-url`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
}

/// This network's NAT, as `hearth nat-check --json` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatStatus {
    /// `none`, `endpoint-independent`, `address-dependent`, `address-and-port-dependent`, `unknown`.
    pub mapping: String,
    /// `endpoint-independent`, `address-dependent`, `address-and-port-dependent`, `unknown`.
    pub filtering: String,
    /// Direct connections expected with a typical peer (`None`: not known).
    pub direct_possible: Option<bool>,
    /// A TURN relay needed for typical peers (`None`: not known).
    pub needs_turn: Option<bool>,
    /// The public address the STUN server saw.
    pub public_address: String,
}

/// A device WebRTC could not reach.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreachableStatus {
    /// The device (hex).
    pub device: String,
    /// Channels that never opened since the last one that did.
    pub attempts: u32,
    /// Why, and what to do about it.
    pub hint: String,
}

/// The daemon's rendezvous link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RendezvousStatus {
    /// The URL joined.
    pub url: String,
    /// Joined now.
    pub connected: bool,
    /// Other devices of the vault in the room.
    pub online: usize,
    /// Why it is not joined, if it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The TURN relay it offers (its `turn:` URLs), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay: Option<String>,
}

/// One connected peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The peer's device id (hex).
    pub device: String,
    /// The path in use: `lan` (WebSocket on the local network) or `webrtc` (a data channel,
    /// direct or through a TURN relay).
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
    /// Entries received over this session that this device already held.
    #[serde(default)]
    pub dup_received: u64,
    /// Bytes sent over this session (Noise messages).
    #[serde(default)]
    pub bytes_sent: u64,
    /// Bytes received over this session (Noise messages).
    #[serde(default)]
    pub bytes_received: u64,
    /// Entries this device holds that the peer is not known to hold.
    pub pending: u64,
}
