//! Pairing a new device: an invite code or join URL, a PAKE over the rendezvous or the LAN,
//! and the vault secret handed over sealed under the PAKE's key (`hearth invite` / `join`).
//!
//! [`code`] and [`exchange`] are sans-IO; [`link`] carries the exchange's messages over a
//! rendezvous pairing room or a LAN WebSocket; [`qr`] draws the join URL.

pub mod code;
pub mod exchange;
pub mod link;
pub mod qr;

pub use code::{CodeError, InviteCode, JoinTarget};
pub use exchange::{Exchange, Grant, Joined, Output, PairError, Role};
