//! The rendezvous crate's integration tests, linked as one test binary: one link per build
//! instead of one per file, and the files' tests run side by side (most of their time is
//! spent waiting on timers), which shortens each mutant in `scripts/mutants` and CI. Each
//! module is a file of its own (`tests/NAME.rs`).

mod common;

mod hardening;
mod server;
