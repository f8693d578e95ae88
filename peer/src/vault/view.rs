//! A home's materialized view: each item's merged state sealed in a row of its own, and a
//! keyed index of the visible items' names, so that reading one item needs neither the log
//! nor the rest of the vault (PROTOCOL.md §1.1).
//!
//! The log stays the source of truth. The view records the log position it reflects, and a
//! reader uses it only when that is the log's position now; otherwise (a crash between the
//! log's commit and the view's, a home written by an older build) it replays the log as
//! before, and the next writer writes the view again in full.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::append::WriteBase;
use super::entry::{open_bytes, seal_bytes};
use super::merge::{ItemState, VaultState};
use super::store::{SqliteStore, StoreError, ViewRows};
use crate::identity::VaultKeys;
use crate::ids::{ItemId, VaultId};

/// A view row that does not open: damaged, edited, or moved from another item or vault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a row of the materialized view does not open (item {0})")]
pub struct ViewError(pub String);

/// The key under which a visible item's name is indexed: equal names, equal keys; 128 bits
/// of HMAC-SHA256, so a name is found by an indexed lookup and never stored.
pub fn name_key(keys: &VaultKeys, name: &str) -> [u8; 16] {
    // HMAC takes a key of any length: `new_from_slice` cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(keys.view_names.as_bytes()).unwrap_or_else(|_| unreachable!());
    mac.update(name.as_bytes());
    let full = mac.finalize().into_bytes();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

fn aad(vault: VaultId, id: ItemId) -> Vec<u8> {
    let mut aad = b"hearth/v1/view-item".to_vec();
    aad.extend_from_slice(&vault.0);
    aad.extend_from_slice(&id.0);
    aad
}

/// Item `id`'s state sealed as its row (XChaCha20-Poly1305 under the view key, a fresh
/// nonce, bound to the vault and the item).
pub fn seal_item(keys: &VaultKeys, id: ItemId, it: &ItemState) -> Vec<u8> {
    // Encoding a state into a Vec cannot fail.
    let plain = Zeroizing::new(postcard::to_allocvec(it).unwrap_or_default());
    seal_bytes(&keys.view, &plain, &aad(keys.vault_id, id)).unwrap_or_default()
}

/// Opens item `id`'s row.
pub fn open_item(keys: &VaultKeys, id: ItemId, row: &[u8]) -> Result<ItemState, ViewError> {
    let bad = || ViewError(id.to_hex());
    let plain = open_bytes(&keys.view, row, &aad(keys.vault_id, id)).ok_or_else(bad)?;
    postcard::from_bytes(&plain).map_err(|_| bad())
}

/// One row of the view: an item's sealed state and its indexed name (`None`: hidden,
/// deleted or reserved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewRow {
    /// The item.
    pub id: ItemId,
    /// Its sealed state.
    pub body: Vec<u8>,
    /// The key its shown name is indexed under.
    pub name: Option<[u8; 16]>,
}

/// What a writer puts in the view: the rows of the items it changed (or of every item,
/// `full`), each sealed only as the store takes it, so a whole view is never held at once,
/// and the log's [`WriteBase`] at the view's new position.
pub struct ViewUpdate<'a> {
    /// Every row is rewritten: the view is emptied first.
    pub full: bool,
    /// What a write needs of the log, as of the position the rows reflect.
    pub base: WriteBase,
    rows: Box<dyn Iterator<Item = ViewRow> + 'a>,
}

impl std::fmt::Debug for ViewUpdate<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewUpdate").field("full", &self.full).finish_non_exhaustive()
    }
}

impl<'a> ViewUpdate<'a> {
    /// The rows of `ids` (or, `full`, of every item) as they are in `state`, the log's
    /// being `base`.
    pub fn of(
        keys: &'a VaultKeys,
        state: &'a VaultState,
        ids: impl IntoIterator<Item = ItemId> + 'a,
        full: bool,
        base: WriteBase,
    ) -> Self {
        let row = move |id: ItemId, it: &ItemState| {
            let shown = it.is_visible() && !it.is_reserved();
            ViewRow { id, body: seal_item(keys, id, it), name: shown.then(|| name_key(keys, it.name())) }
        };
        let rows: Box<dyn Iterator<Item = ViewRow> + 'a> = if full {
            Box::new(state.items.iter().map(move |(id, it)| row(*id, it)))
        } else {
            Box::new(ids.into_iter().filter_map(move |id| state.items.get(&id).map(|it| row(id, it))))
        };
        Self { full, base, rows }
    }
}

impl Iterator for ViewUpdate<'_> {
    type Item = ViewRow;

    fn next(&mut self) -> Option<ViewRow> {
        self.rows.next()
    }
}

/// A state holding only `items` (what one item's view needs: its lookup, fields and
/// conflicts come from its own registers).
pub fn state_of(items: impl IntoIterator<Item = (ItemId, ItemState)>) -> VaultState {
    VaultState::from_items(items.into_iter().collect())
}

/// The view's rows of every item `name` (a name or an id) can resolve to: the item whose id
/// it is and every item shown under it; `None` when the view is not the log's now.
pub fn rows_named(store: &SqliteStore, keys: &VaultKeys, name: &str) -> Result<Option<ViewRows>, StoreError> {
    let ids: Vec<ItemId> = ItemId::from_hex(name).into_iter().collect();
    store.view_rows(&ids, Some(&name_key(keys, name)))
}

/// The state of the view's `rows`; `None` when one does not open (a warning says so, and
/// the caller reads the log instead).
pub fn state_of_rows(keys: &VaultKeys, rows: ViewRows) -> Option<VaultState> {
    let mut items = Vec::with_capacity(rows.len());
    for (id, row) in rows {
        match open_item(keys, id, &row) {
            Ok(it) => items.push((id, it)),
            Err(e) => {
                tracing::warn!("{e}: reading the log instead");
                return None;
            }
        }
    }
    Some(state_of(items))
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
