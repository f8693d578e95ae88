//! The vault's reads, as requests: what `get`, `list`, `conflicts`, `totp`, `clip`,
//! `history`, `devices` and `status` show.
//!
//! Like [`crate::actions`] for writes, the CLI answers a [`ReadRequest`] from a replica it
//! opened itself when no daemon runs, and sends it over the daemon's control socket when one
//! does (the daemon holds the unlocked vault, so a sealed home asks for its passphrase once,
//! not at every command); either way [`answer`] builds the same [`View`]. Views carry values
//! in the clear (the socket is the user's alone) and say which are secret: the CLI masks.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::cli::search::{score, SEARCHED_FIELDS};
use crate::cli::secret_fields::{is_secret, is_secret_in};
use crate::identity::Membership;
use crate::identity::VaultKeys;
use crate::ids::{DeviceId, ItemId};
use crate::vault::{
    device_names, view, Conflict, LogStore, LookupError, Replica, ReplicaError, SqliteStore, StoreError, VaultState,
    VersionVector,
};

/// What a command wants to see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "read", rename_all = "snake_case")]
pub enum ReadRequest {
    /// One item by name or id, with its conflicts.
    Item {
        /// Item name or id.
        name: String,
    },
    /// Every item, or those matching `query` (best first).
    List {
        /// A search over names, usernames and URLs.
        #[serde(default)]
        query: Option<String>,
    },
    /// Every kept conflict.
    Conflicts,
    /// Counts and ids for `hearth status`.
    Summary,
    /// Every enrolled device, with its name.
    Devices,
    /// Every change to one item (or one field), oldest first.
    History {
        /// Item name or id.
        name: String,
        /// Only the changes that touched this field (or deleted the item).
        #[serde(default)]
        field: Option<String>,
    },
}

/// The answer to a [`ReadRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "view", rename_all = "snake_case")]
pub enum View {
    /// For [`ReadRequest::Item`].
    Item(ItemView),
    /// For [`ReadRequest::List`].
    List {
        /// The rows, in the order to show them.
        items: Vec<ListRow>,
    },
    /// For [`ReadRequest::Conflicts`].
    Conflicts {
        /// The conflicts, item by item.
        conflicts: Vec<ConflictView>,
    },
    /// For [`ReadRequest::Summary`].
    Summary(Summary),
    /// For [`ReadRequest::Devices`].
    Devices {
        /// In enrolment order.
        devices: Vec<DeviceRow>,
    },
    /// For [`ReadRequest::History`].
    History {
        /// The item's fields that are secrets (now, or marked so by a change shown).
        secret: BTreeSet<String>,
        /// The changes, oldest first.
        changes: Vec<ChangeRow>,
    },
}

/// What `hearth status` shows of the vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The vault (hex).
    pub vault_id: String,
    /// This device (hex).
    pub device_id: String,
    /// Visible items.
    pub items: usize,
    /// Entries held.
    pub entries: usize,
    /// Enrolled devices (revoked ones included).
    pub devices: usize,
    /// Kept conflicts.
    pub conflicts: usize,
    /// Devices whose newest entry carries a clock too far ahead: (device hex, its ms).
    pub clock_ahead: Vec<(String, u64)>,
    /// Device (hex) → its name.
    pub device_names: BTreeMap<String, String>,
}

/// One row of `hearth devices`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRow {
    /// The device (hex).
    pub device_id: String,
    /// Its name, once it set one.
    pub name: Option<String>,
    /// True for the device answering.
    pub this_device: bool,
    /// True once revoked.
    pub revoked: bool,
    /// Its entries held here.
    pub entries: u64,
}

/// One change of `hearth history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRow {
    /// When (the writer's clock, unix ms).
    pub at_ms: u64,
    /// The writer (hex).
    pub device: String,
    /// Its seq.
    pub seq: u64,
    /// The name it set, if any.
    pub name: Option<String>,
    /// The fields it set (`None`: removed), reserved ones left out.
    pub fields: Vec<(String, Option<String>)>,
    /// True when it deleted the item.
    pub deleted: bool,
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// A name did not resolve (CLI exit status 3).
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The log could not be read.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
}

/// One item as commands show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemView {
    /// Its id (hex).
    pub id: String,
    /// Its displayed name.
    pub name: String,
    /// Displayed field values by name.
    pub fields: BTreeMap<String, String>,
    /// The fields (among `fields`) that are secrets: marked so, or secret by name.
    pub secret: BTreeSet<String>,
    /// Its kept conflicts.
    pub conflicts: Vec<ConflictView>,
}

/// One row of `hearth list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRow {
    /// The item's id (hex).
    pub id: String,
    /// Its displayed name.
    pub name: String,
    /// Its field names.
    pub fields: Vec<String>,
    /// True when it holds a kept conflict.
    pub conflicted: bool,
}

/// A kept conflict, and whether its values are secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictView {
    /// The conflict.
    #[serde(flatten)]
    pub conflict: ConflictValues,
    /// True when the field holds a secret (its values are masked unless shown).
    pub secret: bool,
}

/// A [`Conflict`] with the item id as hex (what crosses the socket).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictValues {
    /// Item id (hex).
    pub item: String,
    /// Item's displayed name.
    pub name: String,
    /// Field name; `(name)` or `(deleted)`.
    pub field: String,
    /// The displayed value.
    pub kept: Option<String>,
    /// The other concurrent values.
    pub losing: Vec<Option<String>>,
}

/// Answers `req` from the replica (O(log n) for one item; a list, the status counts and an
/// item's history are O(n) by nature).
pub fn answer<S: LogStore>(replica: &Replica<S>, req: &ReadRequest) -> Result<View, ReadError> {
    let state = replica.state();
    Ok(match req {
        ReadRequest::Item { name } => View::Item(item(state, name)?),
        ReadRequest::List { query } => View::List { items: list(state, query.as_deref()) },
        ReadRequest::Conflicts => View::Conflicts { conflicts: conflicts(state) },
        ReadRequest::Summary => View::Summary(summary(replica)),
        ReadRequest::Devices => devices(replica.membership(), state, replica.device_id(), replica.version()),
        ReadRequest::History { name, field } => history(replica, name, field.as_deref())?,
    })
}

/// One item's view from the home's materialized view, without the log (O(log n) rows, one
/// in the common case). `None` sends the caller to the log: the view does not reflect the
/// log now, a row does not open (a warning says so), or the name does not resolve to
/// exactly one item (the log's answer then carries the did-you-mean or the ids).
pub fn item_from_view(keys: &VaultKeys, store: &SqliteStore, name: &str) -> Result<Option<ItemView>, StoreError> {
    let Some(rows) = view::rows_named(store, keys, name)? else { return Ok(None) };
    // The rows hold every item that `name` can resolve to: the item of that id, and every
    // item shown under that name. So this small state resolves it as the whole one would.
    Ok(view::state_of_rows(keys, rows).and_then(|state| item(&state, name).ok()))
}

/// The whole merged state from the home's materialized view, without the log: `None` when
/// the view does not reflect the log now or a row does not open (a warning says so).
pub fn state_from_view(keys: &VaultKeys, store: &SqliteStore) -> Result<Option<VaultState>, StoreError> {
    let mut items = std::collections::BTreeMap::new();
    let mut bad = None;
    let whole = store.view_items(|id, row| match view::open_item(keys, id, row) {
        Ok(it) => {
            items.insert(id, it);
            true
        }
        Err(e) => {
            bad = Some(e);
            false
        }
    })?;
    if let Some(e) = bad {
        tracing::warn!("{e}: reading the log instead");
    }
    Ok(whole.then(|| VaultState::from_items(items)))
}

/// `hearth devices`: every enrolled device, its name (from `state`, which holds at least the
/// devices' name items), whether it is `me` and the entries of it held (`vv`).
fn devices(membership: &Membership, state: &VaultState, me: DeviceId, vv: &VersionVector) -> View {
    let names = state.device_names();
    let devices = membership
        .devices()
        .map(|(e, rev)| DeviceRow {
            device_id: e.device_id.to_hex(),
            name: names.get(&e.device_id).cloned(),
            this_device: e.device_id == me,
            revoked: rev.is_some(),
            entries: vv.get(e.device_id),
        })
        .collect();
    View::Devices { devices }
}

/// `hearth devices` from the home's materialized view, without the log: the membership
/// records (verified), the devices' name rows and the view's version vector; `None` when
/// the view does not reflect the log now or a row does not open.
pub fn devices_from_view(keys: &VaultKeys, store: &SqliteStore, me: DeviceId) -> Result<Option<View>, ReplicaError> {
    let Some(base) = store.write_base()? else { return Ok(None) };
    let membership = crate::vault::replica::verified_membership(keys, store.load_membership()?)?;
    let ids: Vec<ItemId> = membership.devices().map(|(e, _)| device_names::item_id(e.device_id)).collect();
    let Some(rows) = store.view_rows(&ids, None)? else { return Ok(None) };
    Ok(view::state_of_rows(keys, rows).map(|state| devices(&membership, &state, me, &base.vv)))
}

/// Answers the reads that need only the merged state (an item, the list, the conflicts)
/// from `state`; `None` for the others (they need the log or the membership).
pub fn answer_from_state(state: &VaultState, req: &ReadRequest) -> Option<Result<View, ReadError>> {
    Some(Ok(match req {
        ReadRequest::Item { name } => match item(state, name) {
            Ok(it) => View::Item(it),
            Err(e) => return Some(Err(e.into())),
        },
        ReadRequest::List { query } => View::List { items: list(state, query.as_deref()) },
        ReadRequest::Conflicts => View::Conflicts { conflicts: conflicts(state) },
        _ => return None,
    }))
}

/// One visible item by name or id (O(log n)).
fn item(state: &VaultState, name: &str) -> Result<ItemView, LookupError> {
    let id = state.find(name)?;
    let it = state.items.get(&id).ok_or_else(|| LookupError::NotFound { name: name.to_owned(), suggestion: None })?;
    let fields: BTreeMap<String, String> =
        it.field_values().into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    let secret = fields.keys().filter(|k| is_secret_in(it, k)).cloned().collect();
    let conflicts = state.conflicts_of(id).into_iter().map(|c| conflict_view(state, c)).collect();
    Ok(ItemView { id: id.to_hex(), name: it.name().to_owned(), fields, secret, conflicts })
}

fn conflicts(state: &VaultState) -> Vec<ConflictView> {
    state.conflicts().into_iter().map(|c| conflict_view(state, c)).collect()
}

fn summary<S: LogStore>(r: &Replica<S>) -> Summary {
    let state = r.state();
    let now = crate::node::core::unix_ms();
    Summary {
        vault_id: r.vault_id().to_hex(),
        device_id: r.device_id().to_hex(),
        items: state.visible().count(),
        entries: r.len(),
        devices: r.membership().devices().count(),
        conflicts: state.conflicts().len(),
        clock_ahead: r.clocks_ahead(now).iter().map(|(d, h)| (d.to_hex(), h.ms)).collect(),
        device_names: state.device_names().into_iter().map(|(d, n)| (d.to_hex(), n)).collect(),
    }
}

fn history<S: LogStore>(r: &Replica<S>, name: &str, field: Option<&str>) -> Result<View, ReadError> {
    let id = r.state().find(name)?;
    let item = r.state().items.get(&id);
    let mut secret = BTreeSet::new();
    let mut changes = Vec::new();
    for c in r.history(id)? {
        let fields: Vec<(String, Option<String>)> = c
            .fields
            .into_iter()
            .filter(|(k, _)| field.is_none_or(|f| f == k) && !k.starts_with(char::is_control))
            .collect();
        // With a field asked for, only the changes that touched it (or deleted the item).
        if field.is_some() && fields.is_empty() && !c.deleted {
            continue;
        }
        for (k, _) in &fields {
            if item.map_or(is_secret(k), |it| is_secret_in(it, k)) {
                secret.insert(k.clone());
            }
        }
        let row = ChangeRow {
            at_ms: c.hlc.ms,
            device: c.author.to_hex(),
            seq: c.seq,
            name: c.name,
            fields,
            deleted: c.deleted,
        };
        changes.push(row);
    }
    Ok(View::History { secret, changes })
}

fn conflict_view(state: &VaultState, c: Conflict) -> ConflictView {
    let secret = state.items.get(&c.item).map_or(is_secret(&c.field), |it| is_secret_in(it, &c.field));
    let conflict =
        ConflictValues { item: c.item.to_hex(), name: c.name, field: c.field, kept: c.kept, losing: c.losing };
    ConflictView { conflict, secret }
}

fn list(state: &VaultState, query: Option<&str>) -> Vec<ListRow> {
    let conflicted: BTreeSet<ItemId> = state.conflicts().iter().map(|c| c.item).collect();
    let mut items: Vec<(u32, ListRow)> = state
        .visible()
        .filter_map(|(id, s)| {
            let fields = s.field_values();
            let best = match query {
                None => Some(0),
                Some(q) => {
                    let searched = SEARCHED_FIELDS.iter().filter_map(|f| fields.get(f).copied());
                    std::iter::once(s.name()).chain(searched).filter_map(|t| score(q, t)).max()
                }
            }?;
            let row = ListRow {
                id: id.to_hex(),
                name: s.name().to_owned(),
                fields: fields.keys().map(|k| (*k).to_owned()).collect(),
                conflicted: conflicted.contains(id),
            };
            Some((best, row))
        })
        .collect();
    // Best match first, then by name.
    items.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.name.cmp(&b.1.name)));
    items.into_iter().map(|(_, row)| row).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::DeviceId;
    use crate::vault::clock::{Hlc, VersionVector};
    use crate::vault::merge::SECRET_FIELDS;
    use crate::vault::Op;

    /// A write by device `dev` concurrent with every other device's (an empty name: unchanged).
    fn put(st: &mut VaultState, dev: u8, seq: u64, item: u8, name: &str, fields: &[(&str, &str)]) {
        let fields = fields.iter().map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned()))).collect();
        let name = Some(name.to_owned()).filter(|n| !n.is_empty());
        let op = Op::Put { item: ItemId([item; 16]), name, fields };
        st.apply(DeviceId([dev; 16]), seq, Hlc { ms: seq, counter: u32::from(dev) }, &VersionVector::default(), &op);
    }

    #[test]
    fn an_item_view_says_which_fields_are_secret_and_carries_only_its_conflicts() {
        let mut st = VaultState::default();
        put(&mut st, 1, 1, 1, "bank", &[("user", "ann"), ("pin", "1234"), ("note", "x"), (SECRET_FIELDS, "note")]);
        put(&mut st, 1, 2, 2, "mail", &[("password", "a")]);
        put(&mut st, 2, 1, 2, "", &[("password", "b")]);
        let v = item(&st, "bank").unwrap();
        assert_eq!(v.name, "bank");
        assert_eq!(v.fields.keys().collect::<Vec<_>>(), ["note", "pin", "user"], "the marks are not a field");
        assert_eq!(v.secret.iter().collect::<Vec<_>>(), ["note", "pin"], "marked, and secret by name");
        assert!(v.conflicts.is_empty(), "the other item's conflict is not this one's");
        let m = item(&st, "mail").unwrap();
        assert_eq!(m.conflicts.len(), 1);
        assert!(m.conflicts[0].secret && m.conflicts[0].conflict.field == "password");
        let err = item(&st, "mial").unwrap_err();
        assert!(matches!(err, LookupError::NotFound { suggestion: Some(ref s), .. } if s == "mail"), "{err:?}");
        assert_eq!(conflicts(&st), m.conflicts);
    }

    #[test]
    fn a_list_puts_the_best_match_first_and_marks_conflicts() {
        let mut st = VaultState::default();
        put(&mut st, 1, 1, 1, "zeta", &[("url", "https://mail.example")]);
        put(&mut st, 1, 2, 2, "mail", &[("user", "x")]);
        put(&mut st, 2, 1, 2, "", &[("user", "y")]);
        put(&mut st, 1, 3, 3, "alpha", &[]);
        let items = list(&st, None);
        let names: Vec<&str> = items.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["alpha", "mail", "zeta"]);
        assert_eq!(items.iter().map(|r| r.conflicted).collect::<Vec<_>>(), [false, true, false]);
        let items = list(&st, Some("mail"));
        assert_eq!(items.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["mail", "zeta"]);
        // The JSON a daemon sends reads back the same.
        let json = serde_json::to_string(&View::List { items: items.clone() }).unwrap();
        assert_eq!(serde_json::from_str::<View>(&json).unwrap(), View::List { items });
    }
}
