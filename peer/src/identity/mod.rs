//! Identity: the vault secret and its phrase, key derivation, and signed membership.

pub mod keys;
pub mod membership;
pub mod phrase;

pub use keys::{DeviceKeys, SymmetricKey, VaultKeys};
pub use membership::{Enrollment, Membership, MembershipBody, MembershipError, MembershipRecord, Revocation};
pub use phrase::{PhraseError, VaultSecret};
