//! WebRTC pipes: data channels to devices on other networks, set up through sealed signals on
//! the vault's rendezvous ([`crate::signal`]).

pub mod conn;
