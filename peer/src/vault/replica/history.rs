//! What entries said, unsealed for people: an item's history (`hearth history`: earlier
//! values, who changed them, when), and the same record for void entries.

use super::{LogStore, Replica, ReplicaError};
use crate::ids::{DeviceId, ItemId};
use crate::vault::clock::Hlc;
use crate::vault::entry::EntryHeader;
use crate::vault::op::Op;

/// What one entry said: who wrote it, when, and what it did to which item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Who wrote it.
    pub author: DeviceId,
    /// Its seq.
    pub seq: u64,
    /// When (the writer's clock).
    pub hlc: Hlc,
    /// The item it touched.
    pub item: ItemId,
    /// The name it set, if any.
    pub name: Option<String>,
    /// The fields it set (`None` removed the field).
    pub fields: Vec<(String, Option<String>)>,
    /// True when it deleted the item.
    pub deleted: bool,
}

impl Change {
    /// The change entry `header` made with `op` (its unsealed payload).
    pub(super) fn new(header: &EntryHeader, op: Op) -> Self {
        let (item, name, fields, deleted) = match op {
            Op::Put { item, name, fields } => (item, name, fields, false),
            Op::Delete { item } => (item, None, Vec::new(), true),
        };
        Self { author: header.author, seq: header.seq, hlc: header.hlc, item, name, fields, deleted }
    }
}

impl<S: LogStore> Replica<S> {
    /// Every live entry that touched `item`, oldest first (by the writers' clocks, then
    /// author): void entries (revoked devices past their cut-off, forked branches) are not
    /// history; `conflicts --void` lists them.
    pub fn history(&self, item: ItemId) -> Result<Vec<Change>, ReplicaError> {
        let mut out = Vec::new();
        // The store holds the live entries (void ones moved out), payloads included.
        for se in self.store.load_entries()? {
            let change = Change::new(&se.entry.header, se.entry.unseal(&self.keys.content)?);
            if change.item == item {
                out.push(change);
            }
        }
        out.sort_by_key(|c| (c.hlc, c.author, c.seq));
        Ok(out)
    }
}
