//! Sync: the sans-IO session protocol, its framing, and an in-memory pipe.

pub mod frame;
pub mod pipe;
pub mod session;

pub use frame::{FrameError, Msg, PROTOCOL_VERSION};
pub use pipe::{run_until_quiet, PipeStats};
pub use session::{Event, Role, Session, SessionConfig, SessionCounts, SyncError};
