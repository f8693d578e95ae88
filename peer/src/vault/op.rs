//! The payload of an entry: one user action, sealed before it is stored or sent.

use serde::{Deserialize, Serialize};

use crate::ids::ItemId;

/// Largest encoded op accepted (keeps one entry inside one sync frame).
pub const MAX_OP_BYTES: usize = 32 * 1024;

/// One user action on the vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Create an item or change it: sets the name (if given) and each listed field
    /// (`None` removes the field). Every put also marks the item as existing.
    Put {
        /// The item.
        item: ItemId,
        /// New name, if it changes.
        name: Option<String>,
        /// Fields written by this action.
        fields: Vec<(String, Option<String>)>,
    },
    /// Delete an item. A concurrent put keeps it alive and flags the conflict.
    Delete {
        /// The item.
        item: ItemId,
    },
}

impl Op {
    /// The item touched.
    pub fn item(&self) -> ItemId {
        match self {
            Op::Put { item, .. } | Op::Delete { item } => *item,
        }
    }
}
