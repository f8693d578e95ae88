//! Device names as vault data: each device's name ("laptop", "grandma's tablet") is an item
//! of its own, sealed and synced like any other, so every device shows every device's name
//! and a rename converges like any edit. The item's id derives from the device id and its
//! name starts with a control character no one types, so it never appears among the items
//! (`visible`, `find`, `conflicts`, exports) and a name cannot be claimed for another id.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::merge::{ItemState, VaultState};
use super::op::Op;
use crate::ids::{DeviceId, ItemId};

/// How a device-name item's name begins (a control character: never typed, never shown).
pub const RESERVED_PREFIX: &str = "\u{1}device:";

/// The field holding the name.
const FIELD: &str = "name";

/// The item that holds `device`'s name.
pub fn item_id(device: DeviceId) -> ItemId {
    let h = Sha256::new().chain_update(b"hearth/v1/device-name\0").chain_update(device.0).finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&h[..16]);
    ItemId(id)
}

/// The op that names `device` `name`.
pub fn name_op(device: DeviceId, name: &str) -> Op {
    Op::Put {
        item: item_id(device),
        name: Some(format!("{RESERVED_PREFIX}{}", device.to_hex())),
        fields: vec![(FIELD.to_owned(), Some(name.to_owned()))],
    }
}

impl ItemState {
    /// True for the items that hold device names (never shown among items).
    pub fn is_reserved(&self) -> bool {
        self.name().starts_with(RESERVED_PREFIX)
    }
}

impl VaultState {
    /// Every device's name, as the devices set them.
    pub fn device_names(&self) -> BTreeMap<DeviceId, String> {
        let mut out = BTreeMap::new();
        for (id, it) in &self.items {
            let Some(hex) = it.name().strip_prefix(RESERVED_PREFIX) else { continue };
            let Some(device) = DeviceId::from_hex(hex) else { continue };
            // Only the item whose id derives from that device speaks for it.
            if *id != item_id(device) || !it.is_visible() {
                continue;
            }
            if let Some(name) = it.field_values().get(FIELD).filter(|n| !n.is_empty()) {
                out.insert(device, (*name).to_owned());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::{Hlc, VersionVector};

    fn put(state: &mut VaultState, author: u8, seq: u64, op: &Op) {
        state.apply(DeviceId([author; 16]), seq, Hlc { ms: seq, counter: 0 }, &VersionVector::default(), op);
    }

    #[test]
    fn names_are_kept_apart_from_items_and_a_rename_wins_by_time() {
        let (a, b) = (DeviceId([1; 16]), DeviceId([2; 16]));
        let mut s = VaultState::default();
        put(&mut s, 1, 1, &name_op(a, "laptop"));
        put(&mut s, 2, 2, &name_op(b, "phone"));
        put(&mut s, 1, 3, &Op::Put { item: ItemId([9; 16]), name: Some("bank".into()), fields: vec![] });
        assert_eq!(s.device_names(), BTreeMap::from([(a, "laptop".to_owned()), (b, "phone".to_owned())]));
        let shown: Vec<&str> = s.visible().map(|(_, it)| it.name()).collect();
        assert_eq!(shown, ["bank"], "names are not items");
        assert!(s.find(&item_id(a).to_hex()).is_err(), "nor found by id");
        assert!(s.conflicts().is_empty());
        // A later rename (by any device) wins.
        let mut deps = VersionVector::default();
        deps.set(DeviceId([1; 16]), 3);
        s.apply(DeviceId([2; 16]), 4, Hlc { ms: 9, counter: 0 }, &deps, &name_op(a, "old laptop"));
        assert_eq!(s.device_names()[&a], "old laptop");
    }

    #[test]
    fn a_name_item_under_another_id_speaks_for_no_one() {
        let a = DeviceId([1; 16]);
        let mut s = VaultState::default();
        let forged = Op::Put {
            item: ItemId([7; 16]),
            name: Some(format!("{RESERVED_PREFIX}{}", a.to_hex())),
            fields: vec![("name".into(), Some("evil".into()))],
        };
        put(&mut s, 2, 1, &forged);
        assert!(s.device_names().is_empty());
        put(&mut s, 2, 2, &Op::Delete { item: item_id(a) });
        assert!(s.device_names().is_empty());
    }

    #[test]
    fn ids_differ_per_device_and_are_stable() {
        assert_ne!(item_id(DeviceId([1; 16])), item_id(DeviceId([2; 16])));
        assert_eq!(item_id(DeviceId([1; 16])), item_id(DeviceId([1; 16])));
        assert_eq!(item_id(DeviceId([0; 16])).to_hex().len(), 32);
    }
}
