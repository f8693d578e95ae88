//! Visible items by displayed name, kept beside the merged state so a lookup by name costs
//! O(log n) instead of a scan of every item (a 100k vault is looked up on every command).

use std::collections::BTreeMap;

use super::merge::ItemState;
use crate::ids::ItemId;

/// Displayed name → the visible, non-reserved items shown under it, in id order (several
/// after concurrent creations or renames on two devices; a sorted `Vec` because it is one
/// item almost always, where a set's node takes room for eleven).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct NameIndex(BTreeMap<String, Vec<ItemId>>);

impl NameIndex {
    /// The name `item` is found under, if it is found by name at all.
    pub(super) fn key(item: &ItemState) -> Option<String> {
        (item.is_visible() && !item.is_reserved()).then(|| item.name().to_owned())
    }

    /// Moves `id` from the name it was found under to the one it is found under now.
    pub(super) fn update(&mut self, id: ItemId, before: Option<String>, after: Option<String>) {
        if before == after {
            return;
        }
        if let Some(old) = before {
            if let Some(ids) = self.0.get_mut(&old) {
                ids.retain(|i| *i != id);
                if ids.is_empty() {
                    self.0.remove(&old);
                }
            }
        }
        if let Some(new) = after {
            let ids = self.0.entry(new).or_default();
            if let Err(at) = ids.binary_search(&id) {
                ids.reserve_exact(1);
                ids.insert(at, id);
            }
        }
    }

    /// The items shown under `name`, in id order.
    pub(super) fn ids(&self, name: &str) -> impl Iterator<Item = ItemId> + '_ {
        self.0.get(name).into_iter().flatten().copied()
    }

    /// Every name with at least one item, in order.
    pub(super) fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::ids::{DeviceId, ItemId};
    use crate::vault::clock::{Hlc, VersionVector};
    use crate::vault::device_names::name_op;
    use crate::vault::{Op, VaultState};

    /// (device, item, what): 0–2 put under one of three names, 3 deletes, 4 edits a field
    /// only, 5 writes a device name; a device sees its own earlier writes and, when `sees`,
    /// everyone's (otherwise its write is concurrent with the others').
    fn op(item: u8, what: u8) -> Op {
        let item = ItemId([item; 16]);
        match what {
            0..=2 => Op::Put { item, name: Some(["a", "b", "c"][usize::from(what)].into()), fields: vec![] },
            3 => Op::Delete { item },
            4 => Op::Put { item, name: None, fields: vec![("k".into(), Some("v".into()))] },
            _ => name_op(DeviceId([item.0[0]; 16]), "laptop"),
        }
    }

    proptest! {
        /// Whatever the writes and their concurrency, a lookup by name through the index
        /// finds exactly the visible items a scan finds, and a decoded copy agrees.
        #[test]
        fn the_index_agrees_with_a_scan(writes in prop::collection::vec((1u8..4, 1u8..5, 0u8..6, any::<bool>()), 0..40)) {
            let mut st = VaultState::default();
            let mut seen = VersionVector::default();
            let mut own = std::collections::BTreeMap::new();
            for (i, (dev, item, what, sees)) in writes.into_iter().enumerate() {
                let device = DeviceId([dev; 16]);
                let seq = own.get(&dev).copied().unwrap_or(0) + 1;
                own.insert(dev, seq);
                let mut deps = if sees { seen.clone() } else { VersionVector::default() };
                deps.set(device, seq - 1);
                st.apply(device, seq, Hlc { ms: i as u64, counter: 0 }, &deps, &op(item, what));
                seen.set(device, seq);
            }
            for name in ["a", "b", "c", "", "\u{1}device:"] {
                let scan: Vec<ItemId> = st.visible().filter(|(_, s)| s.name() == name).map(|(id, _)| *id).collect();
                prop_assert_eq!(st.named(name), scan);
            }
            let names: Vec<&str> = st.names().collect();
            let mut scan: Vec<&str> = st.visible().map(|(_, s)| s.name()).collect();
            scan.sort_unstable();
            scan.dedup();
            prop_assert_eq!(names, scan);
            let copy: VaultState = postcard::from_bytes(&postcard::to_stdvec(&st).unwrap()).unwrap();
            prop_assert_eq!(copy, st);
        }
    }
}
