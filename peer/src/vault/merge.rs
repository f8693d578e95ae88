//! The merged view of a vault: every item field is a multi-value register.
//!
//! Applying an op from entry (author, seq) with causal context `ctx` removes the register
//! values that `ctx` covers (the writer saw them: they are superseded) and adds the new one.
//! Values the writer had not seen are concurrent and stay. The value shown is the maximum by
//! (HLC, device id), identical on every device; the others are listed as conflicts until a
//! later write, whose context covers them all, settles the field. Entries are applied in a
//! causal order (the op log guarantees it), which makes the state a function of the *set*
//! of entries: merge is commutative, associative and idempotent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use super::clock::{Dot, Hlc, VersionVector};
use super::field_map::FieldMap;
use super::name_index::NameIndex;
use super::op::Op;
use crate::ids::{DeviceId, ItemId};

/// One value of a register and the event that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned<T> {
    /// The value.
    pub value: T,
    /// Who wrote it, where in their log.
    pub dot: Dot,
    /// When.
    pub hlc: Hlc,
}

/// A multi-value register: all concurrent values, kept sorted by dot for determinism.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MvReg<T> {
    values: Vec<Versioned<T>>,
}

impl<T> Default for MvReg<T> {
    fn default() -> Self {
        Self { values: Vec::new() }
    }
}

impl<T: Clone + Zeroize> MvReg<T> {
    /// Writes `value` by event `dot` whose writer had seen `ctx`.
    fn write(&mut self, value: T, dot: Dot, hlc: Hlc, ctx: &Context<'_>) {
        if self.values.iter().any(|v| v.dot == dot) {
            return; // idempotent: this event was applied already
        }
        // A superseded value (an old password) is wiped, not just freed.
        self.values.retain_mut(|v| {
            let keep = !ctx.covers(v.dot);
            if !keep {
                v.value.zeroize();
            }
            keep
        });
        let at = self.values.partition_point(|v| v.dot < dot);
        // Room for exactly one more: a register holds one value almost always, and the
        // default growth (four at once) made every register of a 100k vault four times its size.
        self.values.reserve_exact(1);
        self.values.insert(at, Versioned { value, dot, hlc });
    }

    /// The displayed value: the maximum by (HLC, device id).
    pub fn winner(&self) -> Option<&Versioned<T>> {
        self.values.iter().max_by_key(|v| (v.hlc, v.dot.device))
    }

    /// Every value that is not the winner, newest first.
    pub fn losers(&self) -> Vec<&Versioned<T>> {
        let w = self.winner().map(|w| w.dot);
        let mut l: Vec<_> = self.values.iter().filter(|v| Some(v.dot) != w).collect();
        l.sort_by_key(|v| std::cmp::Reverse((v.hlc, v.dot.device)));
        l
    }

    /// All current values.
    pub fn values(&self) -> &[Versioned<T>] {
        &self.values
    }

    /// True when concurrent values exist.
    pub fn is_conflicted(&self) -> bool {
        self.values.len() > 1
    }
}

/// The causal context of one event: the writer's earlier entries plus what it had seen.
struct Context<'a> {
    author: DeviceId,
    seq: u64,
    deps: &'a VersionVector,
}

impl Context<'_> {
    fn covers(&self, d: Dot) -> bool {
        if d.device == self.author {
            d.seq < self.seq
        } else {
            self.deps.covers(d)
        }
    }
}

/// One item's registers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemState {
    /// The item's name.
    pub name: MvReg<String>,
    /// Named fields; a `None` value means removed.
    pub fields: FieldMap,
    /// Existence: puts write `true`, deletes `false`.
    pub exists: MvReg<bool>,
}

impl ItemState {
    /// Shown unless every current existence value is a delete. A delete concurrent with an
    /// edit keeps the item (and is reported as a conflict).
    pub fn is_visible(&self) -> bool {
        self.exists.values().iter().any(|v| v.value)
    }

    /// True when a delete is concurrent with a write that keeps the item.
    pub fn delete_conflict(&self) -> bool {
        let v = self.exists.values();
        v.iter().any(|x| x.value) && v.iter().any(|x| !x.value)
    }

    /// The displayed name.
    pub fn name(&self) -> &str {
        self.name.winner().map_or("", |v| v.value.as_str())
    }

    /// Displayed field values (removed fields and the reserved ones left out).
    pub fn field_values(&self) -> BTreeMap<&str, &str> {
        self.fields
            .iter()
            .filter(|(k, _)| !k.starts_with(char::is_control))
            .filter_map(|(k, r)| r.winner().and_then(|w| w.value.as_deref()).map(|v| (k.as_str(), v)))
            .collect()
    }

    /// The fields marked secret when written (`--secret`), whatever their names.
    pub fn marked_secret(&self) -> std::collections::BTreeSet<&str> {
        let marks = self.fields.get(SECRET_FIELDS).and_then(|r| r.winner()).and_then(|w| w.value.as_deref());
        marks.map(|m| m.lines().filter(|l| !l.is_empty()).collect()).unwrap_or_default()
    }
}

/// The reserved field listing an item's fields marked secret at write time, one per line.
/// Field names starting with a control character are never shown, exported or conflicted.
pub const SECRET_FIELDS: &str = "\u{1}secret";

/// The whole merged vault.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Items")]
pub struct VaultState {
    /// Items by id, including deleted ones (their registers still take part in merges).
    /// Change it only through [`VaultState::apply`], which keeps the name index in step.
    pub items: BTreeMap<ItemId, ItemState>,
    /// Visible items by name: derived from `items`, so neither encoded nor digested.
    #[serde(skip)]
    names: NameIndex,
}

impl Drop for VaultState {
    /// The plaintext leaves memory with the state: a daemon that locks keeps none of it.
    fn drop(&mut self) {
        for it in self.items.values_mut() {
            for v in &mut it.name.values {
                v.value.zeroize();
            }
            for (mut k, mut r) in std::mem::take(&mut it.fields) {
                k.zeroize();
                for v in &mut r.values {
                    v.value.zeroize();
                }
            }
        }
    }
}

/// What a [`VaultState`] is encoded as (its index is rebuilt on decoding).
#[derive(Deserialize)]
struct Items {
    items: BTreeMap<ItemId, ItemState>,
}

impl From<Items> for VaultState {
    fn from(i: Items) -> Self {
        let mut names = NameIndex::default();
        for (id, it) in &i.items {
            names.update(*id, None, NameIndex::key(it));
        }
        Self { items: i.items, names }
    }
}

/// One field (or the name, or the item's existence) with concurrent values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    /// Item id.
    pub item: ItemId,
    /// Item's displayed name.
    pub name: String,
    /// Field name; `"(name)"` for the item name, `"(deleted)"` for edit-vs-delete.
    pub field: String,
    /// The displayed value.
    pub kept: Option<String>,
    /// The other concurrent values.
    pub losing: Vec<Option<String>>,
}

impl VaultState {
    /// A state of these items (a part of a vault: one item's view, say), indexed.
    pub fn from_items(items: BTreeMap<ItemId, ItemState>) -> Self {
        Items { items }.into()
    }

    /// Applies the op of entry (author, seq) written at `hlc` with context `deps`.
    pub fn apply(&mut self, author: DeviceId, seq: u64, hlc: Hlc, deps: &VersionVector, op: &Op) {
        let ctx = Context { author, seq, deps };
        let dot = Dot { device: author, seq };
        let item = self.items.entry(op.item()).or_default();
        let before = NameIndex::key(item);
        match op {
            Op::Put { name, fields, .. } => {
                item.exists.write(true, dot, hlc, &ctx);
                if let Some(n) = name {
                    item.name.write(n.clone(), dot, hlc, &ctx);
                }
                for (k, v) in fields {
                    item.fields.get_or_default(k).write(v.clone(), dot, hlc, &ctx);
                }
            }
            Op::Delete { .. } => item.exists.write(false, dot, hlc, &ctx),
        }
        let after = NameIndex::key(item);
        self.names.update(op.item(), before, after);
    }

    /// The visible items shown under exactly `name`, in id order (O(log n)).
    pub fn named(&self, name: &str) -> Vec<ItemId> {
        self.names.ids(name).collect()
    }

    /// Every displayed name of a visible item, each once, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.names()
    }

    /// Visible items (device names are not items: [`VaultState::device_names`]).
    pub fn visible(&self) -> impl Iterator<Item = (&ItemId, &ItemState)> {
        self.items.iter().filter(|(_, s)| s.is_visible() && !s.is_reserved())
    }

    /// Every conflict in visible items.
    pub fn conflicts(&self) -> Vec<Conflict> {
        self.visible().flat_map(|(id, it)| item_conflicts(*id, it)).collect()
    }

    /// The conflicts of one visible item (O(log n), for commands about one item).
    pub fn conflicts_of(&self, id: ItemId) -> Vec<Conflict> {
        let item = self.items.get(&id).filter(|it| it.is_visible() && !it.is_reserved());
        item.map(|it| item_conflicts(id, it)).unwrap_or_default()
    }

    /// SHA-256 of the canonical encoding: equal on two devices iff their states are equal.
    pub fn digest(&self) -> [u8; 32] {
        // Streamed into the hash: a 100k vault's encoding is tens of MB of plaintext, never
        // held whole (writing into a hasher cannot fail).
        let mut h = Sha256::new();
        let _ = postcard::to_io(self, &mut h);
        h.finalize().into()
    }
}

/// The conflicts of item `id`: its delete, its name, then its fields in order.
fn item_conflicts(id: ItemId, it: &ItemState) -> Vec<Conflict> {
    let mut out = Vec::new();
    let mk = |field: &str, kept: Option<String>, losing: Vec<Option<String>>| Conflict {
        item: id,
        name: it.name().to_owned(),
        field: field.to_owned(),
        kept,
        losing,
    };
    if it.delete_conflict() {
        out.push(mk("(deleted)", Some("kept".into()), vec![Some("deleted".into())]));
    }
    if it.name.is_conflicted() {
        let kept = it.name.winner().map(|w| w.value.clone());
        out.push(mk("(name)", kept, it.name.losers().into_iter().map(|v| Some(v.value.clone())).collect()));
    }
    for (k, r) in &it.fields {
        if r.is_conflicted() && !k.starts_with(char::is_control) {
            let kept = r.winner().and_then(|w| w.value.clone());
            out.push(mk(k, kept, r.losers().into_iter().map(|v| v.value.clone()).collect()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ItemId;

    fn set(v: &str) -> Op {
        Op::Put { item: ItemId([1; 16]), name: None, fields: vec![("k".into(), Some(v.into()))] }
    }

    /// Concurrent values sit sorted by dot whatever order they arrived in, so two devices
    /// hold (and digest) the same state.
    #[test]
    fn concurrent_values_are_kept_sorted_by_dot_in_any_arrival_order() {
        let none = VersionVector::default();
        let writes = [(DeviceId([3; 16]), "c"), (DeviceId([1; 16]), "a"), (DeviceId([2; 16]), "b")];
        let mut one = VaultState::default();
        for (d, v) in writes {
            one.apply(d, 1, Hlc::default(), &none, &set(v));
        }
        let mut other = VaultState::default();
        for (d, v) in writes.iter().rev() {
            other.apply(*d, 1, Hlc::default(), &none, &set(v));
        }
        let reg = &one.items[&ItemId([1; 16])].fields["k"];
        let devices: Vec<DeviceId> = reg.values().iter().map(|v| v.dot.device).collect();
        assert_eq!(devices, vec![DeviceId([1; 16]), DeviceId([2; 16]), DeviceId([3; 16])]);
        assert_eq!(one, other);
        assert_eq!(one.digest(), other.digest());
    }

    /// The secret marks are item data nobody sees as a field or a conflict, even when two
    /// devices mark fields at once; the marks are read from the winning list.
    #[test]
    fn secret_marks_are_neither_fields_nor_conflicts() {
        let none = VersionVector::default();
        let mark = |v: &str| Op::Put {
            item: ItemId([1; 16]),
            name: None,
            fields: vec![(SECRET_FIELDS.into(), Some(v.into())), ("pin".into(), Some("1".into()))],
        };
        let mut s = VaultState::default();
        s.apply(DeviceId([1; 16]), 1, Hlc { ms: 1, counter: 0 }, &none, &mark("a\nb"));
        s.apply(DeviceId([2; 16]), 1, Hlc { ms: 2, counter: 0 }, &none, &mark("c"));
        let it = &s.items[&ItemId([1; 16])];
        assert_eq!(it.field_values().keys().copied().collect::<Vec<_>>(), ["pin"]);
        assert_eq!(it.marked_secret().into_iter().collect::<Vec<_>>(), ["c"]);
        let fields: Vec<String> = s.conflicts().into_iter().map(|c| c.field).collect();
        assert_eq!(fields, ["pin"], "the pin conflicts; the marks do not show");
    }

    /// One item's conflicts are those `conflicts` lists for it: none for an item deleted by
    /// a write that saw both conflicting values (its registers still hold them).
    #[test]
    fn a_deleted_items_conflicts_are_not_listed() {
        let none = VersionVector::default();
        let mut s = VaultState::default();
        s.apply(DeviceId([1; 16]), 1, Hlc { ms: 1, counter: 0 }, &none, &set("a"));
        s.apply(DeviceId([2; 16]), 1, Hlc { ms: 2, counter: 0 }, &none, &set("b"));
        let id = ItemId([1; 16]);
        assert_eq!(s.conflicts_of(id), s.conflicts());
        assert_eq!(s.conflicts_of(id).len(), 1);
        let mut saw = VersionVector::default();
        saw.set(DeviceId([2; 16]), 1);
        s.apply(DeviceId([1; 16]), 2, Hlc { ms: 3, counter: 0 }, &saw, &Op::Delete { item: id });
        assert!(s.items[&id].fields["k"].is_conflicted(), "the field's register still holds both");
        assert!(s.conflicts().is_empty() && s.conflicts_of(id).is_empty());
        assert!(s.conflicts_of(ItemId([9; 16])).is_empty(), "an unknown item has none");
    }

    /// The digest tells states apart (a constant would make every convergence check pass).
    #[test]
    fn different_states_have_different_digests() {
        let none = VersionVector::default();
        let mut a = VaultState::default();
        let empty = a.digest();
        a.apply(DeviceId([1; 16]), 1, Hlc::default(), &none, &set("x"));
        let mut b = VaultState::default();
        b.apply(DeviceId([1; 16]), 1, Hlc::default(), &none, &set("y"));
        assert!(empty != a.digest() && a.digest() != b.digest());
        assert_ne!(a.digest(), [0; 32]);
    }
}
