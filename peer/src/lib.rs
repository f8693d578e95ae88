//! Hearth's peer kit: everything a device needs to hold and sync an encrypted vault.
//!
//! # Layout
//! - [`identity`]: BIP39 phrase → vault secret → HKDF-derived keys; root-signed membership.
//! - [`vault`]: sealed entries in per-device hash-chained logs with signed heads; the
//!   conflict-keeping merge; the [`vault::Replica`] that verifies and applies batches; SQLite.
//! - [`home`]: a device's directory: sealed secret + SQLite op log.
//! - [`sync`]: the sans-IO Noise session that moves batches between replicas.
//! - [`actions`]: the user's writes as requests, applied by the CLI or by the daemon.
//! - [`reads`]: what commands show, as requests answered by the CLI or by the daemon.
//! - [`node`]: the daemon: one replica, a session per connected peer, LAN discovery and
//!   the WebSocket transport, WebRTC through the rendezvous, the local control socket.
//! - [`nat`]: this network's NAT behaviour (RFC 5780) and what it means for direct connections.
//! - [`signal`]: sans-IO sealed signaling (envelopes, introductions, replay checks).
//! - [`utc`]: times as people read them.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod actions;
pub mod cli;
mod fsutil;
pub mod home;
pub mod identity;
pub mod nat;
pub mod node;
pub mod pairing;
pub mod reads;
pub mod signal;
pub use hearth_proto::ids;
pub mod sync;
pub mod utc;
pub mod vault;
