//! The vault's reads, as requests: what `get`, `list`, `conflicts`, `totp` and `clip` show.
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
use crate::ids::ItemId;
use crate::vault::{Conflict, LookupError, VaultState};

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

/// Answers `req` from the merged state (O(log n) for one item; a list is O(n) by nature).
pub fn answer(state: &VaultState, req: &ReadRequest) -> Result<View, LookupError> {
    Ok(match req {
        ReadRequest::Item { name } => {
            let id = state.find(name)?;
            let Some(it) = state.items.get(&id) else {
                return Err(LookupError::NotFound { name: name.clone(), suggestion: None });
            };
            let fields: BTreeMap<String, String> =
                it.field_values().into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
            let secret = fields.keys().filter(|k| is_secret_in(it, k)).cloned().collect();
            let conflicts = state.conflicts_of(id).into_iter().map(|c| conflict_view(state, c)).collect();
            View::Item(ItemView { id: id.to_hex(), name: it.name().to_owned(), fields, secret, conflicts })
        }
        ReadRequest::List { query } => View::List { items: list(state, query.as_deref()) },
        ReadRequest::Conflicts => {
            View::Conflicts { conflicts: state.conflicts().into_iter().map(|c| conflict_view(state, c)).collect() }
        }
    })
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
        let View::Item(v) = answer(&st, &ReadRequest::Item { name: "bank".into() }).unwrap() else { panic!() };
        assert_eq!(v.name, "bank");
        assert_eq!(v.fields.keys().collect::<Vec<_>>(), ["note", "pin", "user"], "the marks are not a field");
        assert_eq!(v.secret.iter().collect::<Vec<_>>(), ["note", "pin"], "marked, and secret by name");
        assert!(v.conflicts.is_empty(), "the other item's conflict is not this one's");
        let View::Item(m) = answer(&st, &ReadRequest::Item { name: "mail".into() }).unwrap() else { panic!() };
        assert_eq!(m.conflicts.len(), 1);
        assert!(m.conflicts[0].secret && m.conflicts[0].conflict.field == "password");
        let err = answer(&st, &ReadRequest::Item { name: "mial".into() }).unwrap_err();
        assert!(matches!(err, LookupError::NotFound { suggestion: Some(ref s), .. } if s == "mail"), "{err:?}");
        let View::Conflicts { conflicts } = answer(&st, &ReadRequest::Conflicts).unwrap() else { panic!() };
        assert_eq!(conflicts, m.conflicts);
    }

    #[test]
    fn a_list_puts_the_best_match_first_and_marks_conflicts() {
        let mut st = VaultState::default();
        put(&mut st, 1, 1, 1, "zeta", &[("url", "https://mail.example")]);
        put(&mut st, 1, 2, 2, "mail", &[("user", "x")]);
        put(&mut st, 2, 1, 2, "", &[("user", "y")]);
        put(&mut st, 1, 3, 3, "alpha", &[]);
        let View::List { items } = answer(&st, &ReadRequest::List { query: None }).unwrap() else { panic!() };
        let names: Vec<&str> = items.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["alpha", "mail", "zeta"]);
        assert_eq!(items.iter().map(|r| r.conflicted).collect::<Vec<_>>(), [false, true, false]);
        let q = ReadRequest::List { query: Some("mail".into()) };
        let View::List { items } = answer(&st, &q).unwrap() else { panic!() };
        assert_eq!(items.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["mail", "zeta"]);
        // The JSON a daemon sends reads back the same.
        let json = serde_json::to_string(&View::List { items: items.clone() }).unwrap();
        assert_eq!(serde_json::from_str::<View>(&json).unwrap(), View::List { items });
    }
}
