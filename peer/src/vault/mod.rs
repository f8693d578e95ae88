//! The vault: per-device signed op logs of sealed entries, merged into items with named
//! fields, stored durably.

pub mod append;
pub mod bundle;
pub mod carry;
pub mod clock;
pub mod device_names;
pub mod entry;
pub mod field_map;
pub mod lookup;
pub mod merge;
mod name_index;
pub mod op;
pub mod replica;
pub mod store;
pub mod view;

pub use append::{Appender, WriteBase};
pub use bundle::BundleError;
pub use clock::{Dot, Hlc, VersionVector};
pub use entry::{Entry, EntryError, EntryHeader, SignedHead};
pub use lookup::{closest, generate_password, LookupError};
pub use merge::{Conflict, ItemState, VaultState};
pub use op::Op;
pub use replica::{
    explain_retirement, Batch, Change, Predecessor, Received, Replica, ReplicaError, VoidValue, WireEntry, DENSE_HASHES,
};
pub use store::{LogStore, MemStore, SqliteStore, StoreError, StoredEntry};
