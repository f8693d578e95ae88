//! Identity: the vault secret and its phrase, key derivation, and signed membership.

pub mod keys;
pub mod phrase;

pub use hearth_proto::membership::{
    self, Enrollment, Membership, MembershipBody, MembershipError, MembershipRecord, Retirement, Revocation,
};
pub use keys::{DeviceKeys, SymmetricKey, VaultKeys};
pub use phrase::{PhraseError, VaultSecret};
