//! Hearth's STUN server: RFC 8489 Binding with RFC 5780 NAT behaviour discovery.
//!
//! # Layout
//! - [`message`] / [`writer`] / [`attr`]: zero-copy codec (parse once, borrow attributes;
//!   encode into caller-owned buffers).
//! - [`binding`]: the sans-IO Binding handler — datagram in, [`binding::Outcome`] out.
//! - [`rate_limit`]: per-source token buckets with a bounded table (time passed in).
//! - [`server`]: UDP sockets, SO_REUSEPORT threads, shared limiter, graceful shutdown.
//! - [`mmsg`]: batched `recvmmsg`/`sendmmsg` I/O.
//! - [`metrics`] / [`metrics_http`]: Prometheus counters and a tiny `/metrics` endpoint.
//! - [`client`]: building requests and reading responses (bench, tests, the peer).
//! - [`discovery`]: RFC 5780 NAT mapping and filtering tests (`hearth nat-check`).
//! - [`loadgen`]: the benchmark's load generator.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod attr;
pub mod binding;
pub mod client;
pub mod discovery;
#[cfg(feature = "server")]
pub mod loadgen;
pub mod message;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod metrics_http;
#[cfg(feature = "server")]
pub mod mmsg;
#[cfg(feature = "server")]
pub mod rate_limit;
#[cfg(feature = "server")]
pub mod server;
pub mod writer;

pub use binding::{AlternatePair, BindingConfig, BindingHandler, DropReason, Outcome, ReplyKind, MAX_RESPONSE_LEN};
pub use message::{DecodeError, Message, MessageType, TransactionId};
#[cfg(feature = "server")]
pub use metrics::StunMetrics;
#[cfg(feature = "server")]
pub use server::{RateLimit, Server, ServerConfig, ServerError};
