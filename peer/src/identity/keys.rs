//! Key derivation: every vault key is HKDF-SHA256 of the vault secret with a
//! `hearth/v1/<purpose>` label, so a phrase alone recreates a vault and its devices.

use ed25519_dalek::{SigningKey, VerifyingKey};
use hkdf::Hkdf;
use sha2::Sha256;
use x25519_dalek::{PublicKey as DhPublic, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::phrase::VaultSecret;
use crate::ids::{DeviceId, VaultId};

/// HKDF salt: fixes the domain so the same secret used elsewhere yields unrelated keys.
const SALT: &[u8] = b"hearth/v1";

/// 32 bytes of HKDF-SHA256 output for `label`.
fn derive(secret: &VaultSecret, label: &str) -> Zeroizing<[u8; 32]> {
    let hk = Hkdf::<Sha256>::new(Some(SALT), secret.as_bytes());
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit: expand cannot fail.
    let _ = hk.expand(label.as_bytes(), out.as_mut());
    out
}

/// A 32-byte symmetric key, zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SymmetricKey(pub(crate) [u8; 32]);

impl SymmetricKey {
    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for SymmetricKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SymmetricKey(..)")
    }
}

/// The keys shared by every device of a vault.
#[derive(Clone)]
pub struct VaultKeys {
    /// Signs membership records (enrolments, revocations).
    pub root: SigningKey,
    /// Public, opaque vault identifier: SHA-256(root public key)[..16].
    pub vault_id: VaultId,
    /// Seals every op payload (XChaCha20-Poly1305).
    pub content: SymmetricKey,
    /// The Noise PSK: only phrase holders complete a sync handshake.
    pub session_psk: SymmetricKey,
    /// HMAC key for the rotating LAN discovery tag.
    pub lan_tag: SymmetricKey,
    /// Seals signals addressed to the vault rather than to one device: a device's
    /// introduction of itself on the rendezvous (PROTOCOL.md §6.5).
    pub signal: SymmetricKey,
    /// Seals the rows of a home's materialized view (one item each, PROTOCOL.md §1.1).
    pub view: SymmetricKey,
    /// HMAC key of the view's name index: equal names give equal keys, and nothing else.
    pub view_names: SymmetricKey,
}

impl std::fmt::Debug for VaultKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultKeys").field("vault_id", &self.vault_id).finish_non_exhaustive()
    }
}

impl VaultKeys {
    /// Derives the vault keys from the secret.
    pub fn derive(secret: &VaultSecret) -> Self {
        let root = SigningKey::from_bytes(&derive(secret, "hearth/v1/vault-root"));
        let vault_id = vault_id_of(&root.verifying_key());
        Self {
            root,
            vault_id,
            content: SymmetricKey(*derive(secret, "hearth/v1/content")),
            session_psk: SymmetricKey(*derive(secret, "hearth/v1/session-psk")),
            lan_tag: SymmetricKey(*derive(secret, "hearth/v1/lan-tag")),
            signal: SymmetricKey(*derive(secret, "hearth/v1/signal-vault")),
            view: SymmetricKey(*derive(secret, "hearth/v1/view")),
            view_names: SymmetricKey(*derive(secret, "hearth/v1/view-names")),
        }
    }

    /// The root public key that membership records are checked against.
    pub fn root_public(&self) -> VerifyingKey {
        self.root.verifying_key()
    }
}

pub use hearth_proto::vault_id_of;

/// One device's keys, recoverable from the phrase plus its device id.
#[derive(Clone)]
pub struct DeviceKeys {
    /// The device id chosen at enrolment.
    pub device_id: DeviceId,
    /// Signs the device's log heads.
    pub sign: SigningKey,
    /// Noise static key and sealed-envelope key.
    pub dh: StaticSecret,
}

impl std::fmt::Debug for DeviceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceKeys").field("device_id", &self.device_id).finish_non_exhaustive()
    }
}

impl DeviceKeys {
    /// Derives device `id`'s keys: labels `hearth/v1/device/<hex id>/ed25519` and `/x25519`.
    pub fn derive(secret: &VaultSecret, device_id: DeviceId) -> Self {
        let base = format!("hearth/v1/device/{}", hex::encode(device_id.0));
        let sign = SigningKey::from_bytes(&derive(secret, &format!("{base}/ed25519")));
        let dh = StaticSecret::from(*derive(secret, &format!("{base}/x25519")));
        Self { device_id, sign, dh }
    }

    /// The x25519 public key.
    pub fn dh_public(&self) -> [u8; 32] {
        DhPublic::from(&self.dh).to_bytes()
    }

    /// The ed25519 public key.
    pub fn sign_public(&self) -> [u8; 32] {
        self.sign.verifying_key().to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debug output (which ends up in logs and panic messages) names the value and never
    /// shows key material.
    #[test]
    fn debug_output_shows_no_key_material() {
        let secret = VaultSecret::from_bytes([0x42; 32]);
        let v = VaultKeys::derive(&secret);
        let d = DeviceKeys::derive(&secret, DeviceId([0x01; 16]));
        assert_eq!(format!("{secret:?}"), "VaultSecret(..)");
        assert_eq!(format!("{:?}", v.content), "SymmetricKey(..)");
        assert_eq!(format!("{v:?}"), format!("VaultKeys {{ vault_id: {:?}, .. }}", v.vault_id));
        assert_eq!(format!("{d:?}"), format!("DeviceKeys {{ device_id: {:?}, .. }}", d.device_id));
        for text in [format!("{v:#?}"), format!("{d:#?}")] {
            assert!(!text.contains(&hex::encode(v.content.as_bytes())) && !text.contains("42, 42"), "{text}");
        }
    }

    /// Known-answer vectors: these values are part of the protocol (docs/PROTOCOL.md) and
    /// must never change, or every existing vault would stop opening.
    #[test]
    fn derivations_are_pinned() {
        let secret = VaultSecret::from_bytes([0x42; 32]);
        let v = VaultKeys::derive(&secret);
        let d = DeviceKeys::derive(&secret, DeviceId([0x01; 16]));
        let got = [
            hex::encode(v.root_public().as_bytes()),
            hex::encode(v.vault_id.0),
            hex::encode(v.content.as_bytes()),
            hex::encode(v.session_psk.as_bytes()),
            hex::encode(v.lan_tag.as_bytes()),
            hex::encode(d.sign_public()),
            hex::encode(d.dh_public()),
            hex::encode(v.signal.as_bytes()),
            hex::encode(v.view.as_bytes()),
            hex::encode(v.view_names.as_bytes()),
        ];
        let want = include_str!("kat.txt").lines().map(str::trim).collect::<Vec<_>>();
        assert_eq!(got.iter().map(String::as_str).collect::<Vec<_>>(), want, "derivation vectors changed");
    }

    #[test]
    fn phrase_alone_recreates_everything() {
        let a = VaultSecret::generate();
        let b = VaultSecret::from_phrase(&a.phrase()).unwrap();
        assert_eq!(VaultKeys::derive(&a).vault_id, VaultKeys::derive(&b).vault_id);
        let id = DeviceId([9; 16]);
        assert_eq!(DeviceKeys::derive(&a, id).dh_public(), DeviceKeys::derive(&b, id).dh_public());
        assert_ne!(DeviceKeys::derive(&a, id).dh_public(), DeviceKeys::derive(&a, DeviceId([8; 16])).dh_public());
    }
}
