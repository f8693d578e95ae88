//! The rotating LAN tag: what an mDNS advertisement says about its vault.
//!
//! `tag = hex(HMAC-SHA256(lan-tag key, "hearth/v1/lan-tag\0" ‖ epoch as u64 big-endian)[..8])`
//! with `epoch = unix seconds / 600`. Devices of one vault compute the same tag; anyone else
//! sees 16 hex digits that change every ten minutes and link neither to the vault nor to the
//! previous tag. Receivers accept the current and the previous epoch (clocks and epoch edges).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::identity::SymmetricKey;

/// Seconds in one tag epoch.
pub const EPOCH_SECS: u64 = 600;

/// The epoch of a unix time in seconds.
pub fn epoch_of(unix_secs: u64) -> u64 {
    unix_secs / EPOCH_SECS
}

/// The tag of `epoch` (16 lowercase hex digits).
pub fn tag(key: &SymmetricKey, epoch: u64) -> String {
    // HMAC accepts keys of any length: this cannot fail for a 32-byte key.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(b"hearth/v1/lan-tag\0");
    mac.update(&epoch.to_be_bytes());
    hex::encode(&mac.finalize().into_bytes()[..8])
}

/// True when `seen` is this vault's tag for `epoch` or the one before (constant time).
pub fn accepts(key: &SymmetricKey, epoch: u64, seen: &str) -> bool {
    let now = tag(key, epoch);
    let prev = tag(key, epoch.saturating_sub(1));
    let a: bool = now.as_bytes().ct_eq(seen.as_bytes()).into();
    let b: bool = prev.as_bytes().ct_eq(seen.as_bytes()).into();
    a | b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{VaultKeys, VaultSecret};

    fn key(b: u8) -> SymmetricKey {
        VaultKeys::derive(&VaultSecret::from_bytes([b; 32])).lan_tag
    }

    #[test]
    fn known_answer() {
        // Secret 0x42…: the PROTOCOL.md vector (cross-checked with Python's hmac module).
        assert_eq!(tag(&key(0x42), 0), "0112d906d6833e82");
        assert_eq!(tag(&key(0x42), 2_950_000), "0709f98eed884871");
    }

    #[test]
    fn tags_rotate_every_epoch_and_differ_between_vaults() {
        let k = key(1);
        let tags: Vec<String> = (100..110).map(|e| tag(&k, e)).collect();
        for (i, a) in tags.iter().enumerate() {
            assert_eq!(a.len(), 16);
            for b in &tags[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_ne!(tag(&k, 100), tag(&key(2), 100));
        assert_eq!(epoch_of(1_200), 2);
        assert_eq!(epoch_of(1_199), 1);
    }

    #[test]
    fn current_and_previous_epoch_are_accepted_nothing_else() {
        let k = key(3);
        assert!(accepts(&k, 50, &tag(&k, 50)));
        assert!(accepts(&k, 50, &tag(&k, 49)));
        assert!(!accepts(&k, 50, &tag(&k, 48)));
        assert!(!accepts(&k, 50, &tag(&k, 51)));
        assert!(!accepts(&k, 50, &tag(&key(4), 50)));
        assert!(!accepts(&k, 50, ""));
    }
}
