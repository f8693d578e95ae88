//! The rotating LAN tag: what an mDNS advertisement says about its vault.
//!
//! `tag = hex(HMAC-SHA256(lan-tag key, "hearth/v2/lan-tag\0" ‖ u64_be(epoch) ‖ u16_be(port) ‖
//! instance)[..8])` with `epoch = unix seconds / 600`. Devices of one vault can check each
//! other's tags; anyone else sees 16 hex digits that change every ten minutes and link
//! neither to the vault nor to the previous tag. The tag covers the instance name and port,
//! so a copied tag is worth nothing on any other service: a guest replaying it can only
//! shadow the very instance it copied (version 1 covered the epoch alone, and one real tag
//! made any number of fake services look genuine). Receivers accept the current and the
//! previous epoch (clocks and epoch edges).

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::identity::SymmetricKey;

/// Seconds in one tag epoch.
pub const EPOCH_SECS: u64 = 600;

/// The TXT `v` value of this tag format.
pub const VERSION: &str = "2";

/// The epoch of a unix time in seconds.
pub fn epoch_of(unix_secs: u64) -> u64 {
    unix_secs / EPOCH_SECS
}

/// The tag of `epoch` for the service `instance` (its first DNS label) on `port`.
pub fn tag(key: &SymmetricKey, epoch: u64, instance: &str, port: u16) -> String {
    // HMAC accepts keys of any length: this cannot fail for a 32-byte key.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(b"hearth/v2/lan-tag\0");
    mac.update(&epoch.to_be_bytes());
    mac.update(&port.to_be_bytes());
    mac.update(instance.as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..8])
}

/// True when `seen` is this vault's tag of `instance` on `port` for `epoch` or the one
/// before (constant time).
pub fn accepts(key: &SymmetricKey, epoch: u64, instance: &str, port: u16, seen: &str) -> bool {
    let now = tag(key, epoch, instance, port);
    let prev = tag(key, epoch.saturating_sub(1), instance, port);
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

    const I: &str = "h0123456789abcdef";

    #[test]
    fn known_answer() {
        // Secret 0x42…: the PROTOCOL.md vector (cross-checked with Python's hmac module).
        assert_eq!(tag(&key(0x42), 0, I, 7475), "218d0d1b7caa0364");
        assert_eq!(tag(&key(0x42), 2_950_000, I, 7475), "b1ab1b48963912b5");
    }

    #[test]
    fn tags_rotate_every_epoch_and_differ_between_vaults_instances_and_ports() {
        let k = key(1);
        let tags: Vec<String> = (100..110).map(|e| tag(&k, e, I, 1)).collect();
        for (i, a) in tags.iter().enumerate() {
            assert_eq!(a.len(), 16);
            for b in &tags[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_ne!(tag(&k, 100, I, 1), tag(&key(2), 100, I, 1));
        assert_ne!(tag(&k, 100, I, 1), tag(&k, 100, "h0123456789abcdee", 1));
        assert_ne!(tag(&k, 100, I, 1), tag(&k, 100, I, 2));
        assert_eq!(epoch_of(1_200), 2);
        assert_eq!(epoch_of(1_199), 1);
    }

    #[test]
    fn current_and_previous_epoch_of_the_same_service_are_accepted_nothing_else() {
        let k = key(3);
        assert!(accepts(&k, 50, I, 7, &tag(&k, 50, I, 7)));
        assert!(accepts(&k, 50, I, 7, &tag(&k, 49, I, 7)));
        assert!(!accepts(&k, 50, I, 7, &tag(&k, 48, I, 7)));
        assert!(!accepts(&k, 50, I, 7, &tag(&k, 51, I, 7)));
        assert!(!accepts(&k, 50, I, 7, &tag(&key(4), 50, I, 7)));
        assert!(!accepts(&k, 50, "hother", 7, &tag(&k, 50, I, 7)), "a replayed tag on another instance");
        assert!(!accepts(&k, 50, I, 8, &tag(&k, 50, I, 7)), "a replayed tag on another port");
        assert!(!accepts(&k, 50, I, 7, ""));
    }
}
