//! The vault's write actions, as requests: the one place a user's change becomes an op.
//!
//! The CLI applies a [`WriteRequest`] to the replica itself when no daemon runs, and sends the
//! same request over the daemon's control socket when one does; either way [`apply`] is what
//! runs, so there is exactly one writer of the device's log and one code path to it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::cli::interop::{already_held, unique_names, Record};
use crate::ids::{DeviceId, ItemId};
use crate::vault::merge::SECRET_FIELDS;
use crate::vault::{bundle, Appender, BundleError, LogStore, LookupError, Op, Replica, ReplicaError, VaultState};

/// One change a user asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum WriteRequest {
    /// Create an item with these fields.
    Add {
        /// The new item's name (must not be taken).
        name: String,
        /// Fields to set.
        fields: Vec<(String, Option<String>)>,
        /// Fields to mark secret (masked unless shown), beyond those secret by name.
        #[serde(default)]
        secret: Vec<String>,
    },
    /// Change an item: set or remove fields, and/or rename it.
    Edit {
        /// Item name or id.
        name: String,
        /// Fields to set (`None` removes).
        fields: Vec<(String, Option<String>)>,
        /// New name.
        rename: Option<String>,
        /// Fields to mark secret (a mark stays until the field is removed).
        #[serde(default)]
        secret: Vec<String>,
    },
    /// Delete an item.
    Rm {
        /// Item name or id.
        name: String,
    },
    /// Settle a conflict by writing the value to keep.
    Resolve {
        /// Item name or id.
        name: String,
        /// Field, `(name)` or `(deleted)`.
        field: String,
        /// The value to keep (`keep`/`delete` for `(deleted)`).
        value: String,
    },
    /// Name this device (shown on every device: `hearth devices`, `status`, `revoke NAME`).
    NameDevice {
        /// The name.
        name: String,
    },
    /// Revoke another device.
    Revoke {
        /// The device.
        device: DeviceId,
    },
    /// Create items read from another manager's file, in one commit: each item already in
    /// the vault exactly (same name and fields) is skipped, a name in use gets " (2)", ….
    AddMany {
        /// The items.
        items: Vec<Record>,
    },
    /// Merge a sealed bundle.
    Import {
        /// The bundle's bytes.
        #[serde(with = "hex_bytes")]
        bundle: Vec<u8>,
    },
}

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteOutcome {
    /// The item written, for item actions.
    pub item: Option<ItemId>,
    /// New entries (1 for an item action; a bundle's new entries for an import).
    pub new: usize,
    /// Entries already held (imports), or items already held (`AddMany`).
    pub duplicates: usize,
    /// Items that `AddMany` named differently, as (name in the file, name given).
    #[serde(default)]
    pub renamed: Vec<(String, String)>,
}

/// Why a write was refused. Nothing was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActionError {
    /// The name did not resolve.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// `add` with a name already in use.
    #[error("an item named '{0}' exists already; use `hearth edit`")]
    Exists(String),
    /// A device name that is empty, too long or holds control characters.
    #[error("a device name is 1 to 64 characters, none of them control characters")]
    BadDeviceName,
    /// A name starting with a control character (those name devices and mark secrets).
    #[error("names of items and fields cannot start with a control character")]
    ReservedName,
    /// `edit` with nothing to change.
    #[error("nothing to change: give --field, --remove-field, --generate or --rename")]
    NothingToChange,
    /// A bad value for `(deleted)`.
    #[error("for (deleted) the value is 'keep' or 'delete'")]
    BadDeletedValue,
    /// `resolve` named a field that has no conflict (a typo would otherwise write a field).
    #[error("'{name}' has no conflict on '{field}'{}; {}",
        .suggestion.as_ref().map(|s| format!(" (did you mean '{s}'?)")).unwrap_or_default(),
        if .conflicts.is_empty() {
            format!("it has no conflicts at all (to change a field: `hearth edit '{name}' --field KEY=-`)")
        } else {
            format!("its conflicts are on: {}", .conflicts.join(", "))
        })]
    NoConflict {
        /// The item as named.
        name: String,
        /// The field asked for.
        field: String,
        /// The fields of that item in conflict.
        conflicts: Vec<String>,
        /// The closest of them, when one is close.
        suggestion: Option<String>,
    },
    /// Revoking the device doing the revoking.
    #[error("this is the current device; revoke it from another device")]
    RevokeSelf,
    /// The replica refused the write.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// The bundle was refused.
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

impl ActionError {
    /// True when the error is about a name that did not resolve (CLI exit status 3).
    pub fn is_lookup(&self) -> bool {
        matches!(self, ActionError::Lookup(_))
    }
}

/// True when a field name starts with a control character (reserved: the secret marks).
fn reserved_field(fields: &[(String, Option<String>)]) -> bool {
    fields.iter().any(|(k, _)| k.starts_with(char::is_control))
}

/// The write of the item's secret marks, when they change: `current` plus `secret`, less the
/// fields `fields` removes.
fn marks(
    current: &BTreeSet<String>,
    secret: &[String],
    fields: &[(String, Option<String>)],
) -> Option<(String, Option<String>)> {
    let mut next = current.clone();
    next.extend(secret.iter().cloned());
    for (k, v) in fields {
        if v.is_none() {
            next.remove(k);
        }
    }
    if &next == current {
        return None;
    }
    let value = (!next.is_empty()).then(|| next.into_iter().collect::<Vec<_>>().join("\n"));
    Some((SECRET_FIELDS.to_owned(), value))
}

/// What an item action needs of a replica: the merged state of (at least) the items the
/// request names, and this device's log to append to.
pub trait ItemWriter {
    /// The merged state.
    fn state(&self) -> &VaultState;
    /// Appends `ops` in one commit; returns the last one's seq.
    fn write_all(&mut self, ops: &[Op], now_ms: u64) -> Result<u64, ReplicaError>;
}

impl<S: LogStore> ItemWriter for Replica<S> {
    fn state(&self) -> &VaultState {
        Replica::state(self)
    }
    fn write_all(&mut self, ops: &[Op], now_ms: u64) -> Result<u64, ReplicaError> {
        Replica::write_all(self, ops, now_ms)
    }
}

impl ItemWriter for Appender {
    fn state(&self) -> &VaultState {
        Appender::state(self)
    }
    fn write_all(&mut self, ops: &[Op], now_ms: u64) -> Result<u64, ReplicaError> {
        Appender::write_all(self, ops, now_ms)
    }
}

impl WriteRequest {
    /// The names (or ids) an item action looks up: the items it can touch are those these
    /// resolve to. `None` for the other actions, which need the whole vault.
    pub fn names(&self) -> Option<Vec<&str>> {
        match self {
            WriteRequest::Add { name, .. } | WriteRequest::Rm { name } | WriteRequest::Resolve { name, .. } => {
                Some(vec![name])
            }
            WriteRequest::Edit { name, rename, .. } => {
                Some([Some(name), rename.as_ref()].into_iter().flatten().map(String::as_str).collect())
            }
            _ => None,
        }
    }
}

/// Applies the item action `req` through an [`Appender`] holding the items it names:
/// `None` when `req` is another action, or names no item (the whole vault's answer carries
/// the "did you mean"): apply it to the opened replica instead.
pub fn apply_from_view(w: &mut Appender, req: &WriteRequest, now_ms: u64) -> Option<Result<WriteOutcome, ActionError>> {
    match item_action(w, req, now_ms)? {
        Err(ActionError::Lookup(LookupError::NotFound { .. })) => None,
        other => Some(other),
    }
}

/// Applies `req` to `replica` at wall-clock time `now_ms`.
pub fn apply<S: LogStore>(
    replica: &mut Replica<S>,
    req: &WriteRequest,
    now_ms: u64,
) -> Result<WriteOutcome, ActionError> {
    match req {
        WriteRequest::Add { .. }
        | WriteRequest::Edit { .. }
        | WriteRequest::Rm { .. }
        | WriteRequest::Resolve { .. } => {
            item_action(replica, req, now_ms).unwrap_or_else(|| unreachable!("an item action"))
        }
        WriteRequest::NameDevice { name } => {
            let name = name.trim();
            if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
                return Err(ActionError::BadDeviceName);
            }
            let me = replica.device_id();
            if replica.state().device_names().get(&me).is_some_and(|n| n == name) {
                return Ok(WriteOutcome::default());
            }
            replica.write(&crate::vault::device_names::name_op(me, name), now_ms)?;
            Ok(WriteOutcome { new: 1, ..WriteOutcome::default() })
        }
        WriteRequest::Revoke { device } => {
            if *device == replica.device_id() {
                return Err(ActionError::RevokeSelf);
            }
            replica.revoke(*device, now_ms)?;
            Ok(WriteOutcome::default())
        }
        WriteRequest::Import { bundle } => {
            let got = bundle::import(replica, bundle)?;
            Ok(WriteOutcome { item: None, new: got.new, duplicates: got.duplicates, renamed: Vec::new() })
        }
        WriteRequest::AddMany { items } => {
            // Records made by `Record::new` never start so; a raw control request might.
            let reserved = |s: &str| s.starts_with(char::is_control);
            if items.iter().any(|r| reserved(&r.name) || r.fields.iter().any(|(k, _)| reserved(k))) {
                return Err(ActionError::ReservedName);
            }
            let held: BTreeMap<String, BTreeMap<String, String>> = replica
                .state()
                .visible()
                .map(|(_, it)| {
                    let f = it.field_values().into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
                    (it.name().to_owned(), f)
                })
                .collect();
            let (fresh, dup): (Vec<Record>, Vec<Record>) = items.iter().cloned().partition(|r| !already_held(r, &held));
            let taken: BTreeSet<String> = held.keys().cloned().collect();
            let (fresh, renamed) = unique_names(fresh, &taken);
            let ops: Vec<Op> = fresh
                .into_iter()
                .map(|r| {
                    let mut fields: Vec<(String, Option<String>)> =
                        r.fields.into_iter().map(|(k, v)| (k, Some(v))).collect();
                    // The file's own secret marks become Hearth's (masked unless shown).
                    let secret: Vec<String> =
                        r.secret.into_iter().filter(|k| !k.starts_with(char::is_control)).collect();
                    fields.extend(marks(&BTreeSet::new(), &secret, &fields));
                    Op::Put { item: ItemId::random(), name: Some(r.name), fields }
                })
                .collect();
            replica.write_all(&ops, now_ms)?;
            Ok(WriteOutcome { item: None, new: ops.len(), duplicates: dup.len(), renamed })
        }
    }
}

/// An item action (add, edit, rm, resolve) on `w`; `None` for the other actions.
fn item_action<W: ItemWriter>(w: &mut W, req: &WriteRequest, now_ms: u64) -> Option<Result<WriteOutcome, ActionError>> {
    let item = match req {
        WriteRequest::Add { name, fields, secret } => add(w, name, fields, secret, now_ms),
        WriteRequest::Edit { name, fields, rename, secret } => edit(w, name, fields, rename.as_ref(), secret, now_ms),
        WriteRequest::Rm { name } => w.state().find(name).map_err(Into::into).and_then(|item| {
            w.write_all(&[Op::Delete { item }], now_ms)?;
            Ok(item)
        }),
        WriteRequest::Resolve { name, field, value } => resolve(w, name, field, value, now_ms),
        _ => return None,
    };
    Some(item.map(|item| WriteOutcome { item: Some(item), new: 1, ..WriteOutcome::default() }))
}

fn add<W: ItemWriter>(
    w: &mut W,
    name: &str,
    fields: &[(String, Option<String>)],
    secret: &[String],
    now_ms: u64,
) -> Result<ItemId, ActionError> {
    if name.starts_with(char::is_control) || reserved_field(fields) {
        return Err(ActionError::ReservedName);
    }
    if !w.state().resolves(name).is_empty() {
        return Err(ActionError::Exists(name.to_owned()));
    }
    let item = ItemId::random();
    let mut fields = fields.to_vec();
    fields.extend(marks(&BTreeSet::new(), secret, &fields));
    w.write_all(&[Op::Put { item, name: Some(name.to_owned()), fields }], now_ms)?;
    Ok(item)
}

fn edit<W: ItemWriter>(
    w: &mut W,
    name: &str,
    fields: &[(String, Option<String>)],
    rename: Option<&String>,
    secret: &[String],
    now_ms: u64,
) -> Result<ItemId, ActionError> {
    let item = w.state().find(name)?;
    if fields.is_empty() && rename.is_none() && secret.is_empty() {
        return Err(ActionError::NothingToChange);
    }
    if reserved_field(fields) {
        return Err(ActionError::ReservedName);
    }
    let current: BTreeSet<String> = w.state().items[&item].marked_secret().into_iter().map(str::to_owned).collect();
    let mut fields = fields.to_vec();
    fields.extend(marks(&current, secret, &fields));
    // A rename onto another item's name would make both unreachable by name.
    if let Some(new) = rename {
        if new.starts_with(char::is_control) {
            return Err(ActionError::ReservedName);
        }
        if w.state().resolves(new).iter().any(|other| *other != item) {
            return Err(ActionError::Exists(new.clone()));
        }
    }
    w.write_all(&[Op::Put { item, name: rename.cloned(), fields }], now_ms)?;
    Ok(item)
}

fn resolve<W: ItemWriter>(w: &mut W, name: &str, field: &str, value: &str, now_ms: u64) -> Result<ItemId, ActionError> {
    let item = w.state().find(name)?;
    let conflicts: Vec<String> = w.state().conflicts_of(item).into_iter().map(|c| c.field).collect();
    if !conflicts.iter().any(|c| c == field) {
        let suggestion = crate::vault::closest(field, conflicts.iter().map(String::as_str));
        return Err(ActionError::NoConflict { name: name.to_owned(), field: field.to_owned(), conflicts, suggestion });
    }
    let op = match field {
        "(deleted)" => match value {
            "keep" => Op::Put { item, name: None, fields: vec![] },
            "delete" => Op::Delete { item },
            _ => return Err(ActionError::BadDeletedValue),
        },
        "(name)" if value.starts_with(char::is_control) => return Err(ActionError::ReservedName),
        "(name)" => Op::Put { item, name: Some(value.to_owned()), fields: vec![] },
        f => Op::Put { item, name: None, fields: vec![(f.to_owned(), Some(value.to_owned()))] },
    };
    w.write_all(&[op], now_ms)?;
    Ok(item)
}

/// Bytes as one hex string in JSON (a bundle as an array of numbers would be 4× larger).
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        hex::decode(s.as_bytes()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::VaultSecret;
    use crate::vault::MemStore;

    fn replica() -> Replica<MemStore> {
        let secret = VaultSecret::from_bytes([7; 32]);
        let mut r = Replica::open(&secret, DeviceId([1; 16]), MemStore::default()).unwrap();
        r.enroll_self(1).unwrap();
        r
    }

    #[test]
    fn secret_marks_are_added_kept_and_dropped_with_their_field() {
        let mut a = replica();
        let add = |secret: &[&str]| WriteRequest::Add {
            name: "x".into(),
            fields: vec![("backup_words".into(), Some("w".into())), ("note".into(), Some("n".into()))],
            secret: secret.iter().map(|s| (*s).to_owned()).collect(),
        };
        apply(&mut a, &add(&["backup_words"]), 10).unwrap();
        let id = a.state().find("x").unwrap();
        let marks = |a: &Replica<MemStore>| -> Vec<String> {
            a.state().items[&id].marked_secret().into_iter().map(str::to_owned).collect()
        };
        assert_eq!(marks(&a), ["backup_words"]);
        assert!(
            !a.state().items[&id].field_values().keys().any(|k| k.starts_with(char::is_control)),
            "marks are not fields"
        );
        let edit = |fields: Vec<(String, Option<String>)>, secret: &[&str]| WriteRequest::Edit {
            name: "x".into(),
            fields,
            rename: None,
            secret: secret.iter().map(|s| (*s).to_owned()).collect(),
        };
        // A plain edit of a marked field keeps the mark; a new mark joins it.
        apply(&mut a, &edit(vec![("backup_words".into(), Some("v".into()))], &[]), 11).unwrap();
        apply(&mut a, &edit(vec![], &["note"]), 12).unwrap();
        assert_eq!(marks(&a), ["backup_words", "note"]);
        // Removing a field drops its mark; the last mark gone removes the list.
        apply(&mut a, &edit(vec![("note".into(), None)], &[]), 13).unwrap();
        assert_eq!(marks(&a), ["backup_words"]);
        apply(&mut a, &edit(vec![("backup_words".into(), None)], &[]), 14).unwrap();
        assert!(marks(&a).is_empty());
        assert!(a.state().items[&id].fields[SECRET_FIELDS].winner().is_some_and(|w| w.value.is_none()));
        // Nothing new: no write.
        let len = a.len();
        assert!(matches!(apply(&mut a, &edit(vec![], &[]), 15), Err(ActionError::NothingToChange)));
        assert_eq!(a.len(), len);
        // Field names starting with a control character are refused.
        let bad = WriteRequest::Add {
            name: "y".into(),
            fields: vec![(SECRET_FIELDS.into(), Some("k".into()))],
            secret: vec![],
        };
        assert!(matches!(apply(&mut a, &bad, 16), Err(ActionError::ReservedName)));
        let bad = edit(vec![("\u{2}x".into(), Some("v".into()))], &[]);
        assert!(matches!(apply(&mut a, &bad, 17), Err(ActionError::ReservedName)));
        let bad = WriteRequest::NameDevice { name: "  ".into() };
        assert!(matches!(apply(&mut a, &bad, 18), Err(ActionError::BadDeviceName)));
        let raw = Record { name: "\u{1}device:x".into(), fields: vec![], secret: Default::default() };
        assert!(matches!(
            apply(&mut a, &WriteRequest::AddMany { items: vec![raw] }, 19),
            Err(ActionError::ReservedName)
        ));
    }

    #[test]
    fn requests_round_trip_through_json() {
        let reqs = [
            WriteRequest::Add { name: "a".into(), fields: vec![("k".into(), Some("v".into()))], secret: vec![] },
            WriteRequest::Edit {
                name: "a".into(),
                fields: vec![("k".into(), None)],
                rename: Some("b".into()),
                secret: vec![],
            },
            WriteRequest::Import { bundle: vec![0, 1, 255] },
            WriteRequest::Revoke { device: DeviceId([9; 16]) },
        ];
        for r in reqs {
            let j = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<WriteRequest>(&j).unwrap(), r);
        }
    }

    #[test]
    fn actions_change_the_state_and_refuse_bad_requests() {
        let mut r = replica();
        let add =
            WriteRequest::Add { name: "mail".into(), fields: vec![("user".into(), Some("al".into()))], secret: vec![] };
        let out = apply(&mut r, &add, 10).unwrap();
        assert_eq!(out.new, 1);
        let id = out.item.unwrap();
        assert_eq!(r.state().items[&id].field_values()["user"], "al");
        assert!(matches!(apply(&mut r, &add, 11), Err(ActionError::Exists(_))));
        let edit = WriteRequest::Edit { name: "mail".into(), fields: vec![], rename: None, secret: vec![] };
        assert!(matches!(apply(&mut r, &edit, 12), Err(ActionError::NothingToChange)));
        let rm = WriteRequest::Rm { name: "nope".into() };
        assert!(apply(&mut r, &rm, 13).unwrap_err().is_lookup());
        let res = WriteRequest::Resolve { name: "mail".into(), field: "user".into(), value: "x".into() };
        let e = apply(&mut r, &res, 14).unwrap_err();
        assert!(matches!(e, ActionError::NoConflict { .. }), "{e}");
        assert!(e.to_string().contains("no conflicts at all"), "{e}");
        let me = WriteRequest::Revoke { device: r.device_id() };
        assert!(matches!(apply(&mut r, &me, 15), Err(ActionError::RevokeSelf)));
        assert_eq!(r.len(), 1, "refused requests write nothing");
        apply(&mut r, &WriteRequest::Rm { name: "mail".into() }, 16).unwrap();
        assert_eq!(r.state().visible().count(), 0);
    }

    /// Two items concurrently edited on two replicas: a conflict on `password`.
    fn conflicted() -> Replica<MemStore> {
        let secret = VaultSecret::from_bytes([7; 32]);
        let mut a = replica();
        let mut b = Replica::open(&secret, DeviceId([2; 16]), MemStore::default()).unwrap();
        b.enroll_self(1).unwrap();
        b.add_membership(a.membership().records().to_vec()).unwrap();
        a.add_membership(b.membership().records().to_vec()).unwrap();
        let fields = vec![("password".into(), Some("p0".into())), ("pin".into(), Some("1234".into()))];
        apply(&mut a, &WriteRequest::Add { name: "mail".into(), fields, secret: vec![] }, 10).unwrap();
        let mut cursor = 0;
        b.receive(&a.batch_for(&Default::default(), &mut cursor, usize::MAX).unwrap()).unwrap();
        let edit = |v: &str| WriteRequest::Edit {
            name: "mail".into(),
            fields: vec![("password".into(), Some(v.into()))],
            rename: None,
            secret: vec![],
        };
        apply(&mut a, &edit("pa"), 20).unwrap();
        apply(&mut b, &edit("pb"), 21).unwrap();
        let mut cursor = 0;
        a.receive(&b.batch_for(&Default::default(), &mut cursor, usize::MAX).unwrap()).unwrap();
        a
    }

    #[test]
    fn resolve_refuses_a_field_without_a_conflict_and_suggests_one() {
        let mut r = conflicted();
        let len = r.len();
        let typo = WriteRequest::Resolve { name: "mail".into(), field: "pasword".into(), value: "x".into() };
        let e = apply(&mut r, &typo, 30).unwrap_err().to_string();
        assert!(e.contains("did you mean 'password'") && e.contains("its conflicts are on:"), "{e}");
        // `pin` was not edited concurrently: no conflict, and the PIN is not overwritten.
        let pin = WriteRequest::Resolve { name: "mail".into(), field: "pin".into(), value: "0000".into() };
        assert!(matches!(apply(&mut r, &pin, 31), Err(ActionError::NoConflict { .. })));
        assert_eq!(r.len(), len, "nothing written");
        let ok = WriteRequest::Resolve { name: "mail".into(), field: "password".into(), value: "pz".into() };
        apply(&mut r, &ok, 32).unwrap();
        assert!(r.state().conflicts().is_empty());
    }

    #[test]
    fn a_rename_onto_another_items_name_is_refused() {
        let mut r = replica();
        for n in ["a", "b"] {
            apply(&mut r, &WriteRequest::Add { name: n.into(), fields: vec![], secret: vec![] }, 10).unwrap();
        }
        let onto_b = WriteRequest::Edit { name: "a".into(), fields: vec![], rename: Some("b".into()), secret: vec![] };
        assert!(matches!(apply(&mut r, &onto_b, 11), Err(ActionError::Exists(n)) if n == "b"));
        let same = WriteRequest::Edit { name: "a".into(), fields: vec![], rename: Some("a".into()), secret: vec![] };
        apply(&mut r, &same, 12).expect("renaming an item to its own name is no clash");
        let fresh = WriteRequest::Edit { name: "a".into(), fields: vec![], rename: Some("c".into()), secret: vec![] };
        apply(&mut r, &fresh, 13).unwrap();
        assert!(r.state().find("c").is_ok() && r.state().find("b").is_ok());
    }
}
