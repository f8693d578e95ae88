//! Hearth's rendezvous: where a vault's devices on different networks meet.
//!
//! # Layout
//! - [`protocol`]: the JSON messages at `/v1/signal` and hello signing/verification (always
//!   built; the peer uses it with `default-features = false, features = ["client"]`).
//! - [`client`] (feature `client`): the async WebSocket client with reconnect and backoff.
//! - [`tls`] (feature `client`): rustls client configuration for `wss://` (public roots + a private CA).
//! - [`server`] (feature `server`): axum routes, admission, hub, limits, metrics, drain.
//! - [`ws`]: sans-IO WebSocket framing the server runs its connections on.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

#[cfg(feature = "client")]
pub mod client;
pub mod protocol;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "client")]
pub mod tls;
pub mod ws;
