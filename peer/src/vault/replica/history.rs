//! An item's history: what each live entry that touched it said, oldest first, for
//! `hearth history` (earlier values of a password, who changed it, when).

use super::{LogStore, Replica, ReplicaError};
use crate::ids::{DeviceId, ItemId};
use crate::vault::clock::Hlc;
use crate::vault::op::Op;

/// One change to an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Who wrote it.
    pub author: DeviceId,
    /// Its seq.
    pub seq: u64,
    /// When (the writer's clock).
    pub hlc: Hlc,
    /// The name it set, if any.
    pub name: Option<String>,
    /// The fields it set (`None` removed the field).
    pub fields: Vec<(String, Option<String>)>,
    /// True when it deleted the item.
    pub deleted: bool,
}

impl<S: LogStore> Replica<S> {
    /// Every live entry that touched `item`, oldest first (by the writers' clocks, then
    /// author): void entries (revoked devices past their cut-off, forked branches) are not
    /// history; `conflicts --void` lists them.
    pub fn history(&self, item: ItemId) -> Result<Vec<Change>, ReplicaError> {
        let mut out = Vec::new();
        for (se, dead) in self.log.iter().zip(&self.dead) {
            if *dead {
                continue;
            }
            let h = &se.entry.header;
            let (name, fields, deleted) = match se.entry.unseal(&self.keys.content)? {
                Op::Put { item: i, name, fields } if i == item => (name, fields, false),
                Op::Delete { item: i } if i == item => (None, Vec::new(), true),
                _ => continue,
            };
            out.push(Change { author: h.author, seq: h.seq, hlc: h.hlc, name, fields, deleted });
        }
        out.sort_by_key(|c| (c.hlc, c.author, c.seq));
        Ok(out)
    }
}
