//! The peer crate's integration tests, linked as one test binary: one link per build instead
//! of one per file, which halves what each mutant costs in `scripts/mutants` and shortens CI.
//! Each module is a file of its own (`tests/NAME.rs`); run one with `cargo test -p
//! hearth-peer --test integration NAME::`.

mod common;

mod append;
mod bundle;
mod carry;
mod fork;
mod hostile;
mod merge_laws;
mod replica;
mod retirement;
mod revocation;
mod session;
mod simulation;
mod store;
mod view;
