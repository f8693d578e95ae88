//! What the `hearth` command line needs beyond the vault itself, kept in the library so it
//! is unit-tested like the rest: which fields are secrets, one-time codes, generated
//! passwords and search.

pub mod generate;
pub mod interop;
pub mod search;
pub mod secret_fields;
pub mod totp;
