//! Opaque identifiers: vault, device and item ids (16 random or derived bytes each).

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
        pub struct $name(pub [u8; 16]);

        impl $name {
            /// A fresh random id.
            pub fn random() -> Self {
                use rand::RngCore;
                let mut b = [0u8; 16];
                rand::rngs::OsRng.fill_bytes(&mut b);
                Self(b)
            }

            /// Lower-case hex, 32 characters.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parses 32 hex characters.
            pub fn from_hex(s: &str) -> Option<Self> {
                let mut b = [0u8; 16];
                hex::decode_to_slice(s.trim(), &mut b).ok()?;
                Some(Self(b))
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), &self.to_hex()[..8])
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.to_hex())
            }
        }
    };
}

id_type!(
    /// A vault: SHA-256 of its root public key, truncated.
    VaultId
);
id_type!(
    /// A device, chosen at random when it enrols.
    DeviceId
);
id_type!(
    /// A vault item, chosen at random when it is created.
    ItemId
);
