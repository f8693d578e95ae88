//! Shared helpers for Hearth end-to-end tests.
