//! Carrying a vault's merged state into a new vault (a rotation): every visible item with
//! its id, name and fields, and every kept conflict still a conflict.
//!
//! The new vault's log starts empty, and one device's own writes always supersede each other,
//! so concurrent values cannot come from the rotating device alone. Each rank of losing
//! values is written by a *carrier*: a device id enrolled in the new vault only to write
//! them, before and without seeing the rotating device's writes (so the values stay
//! concurrent), with earlier timestamps (so the same value wins), then revoked at its last
//! entry (its entries stay valid; nobody can write as it again). Its keys are never stored.
//! A delete that lost to an edit is carried the same way.

use std::collections::BTreeMap;

use super::{LogStore, MemStore, Op, Replica, ReplicaError, VersionVector};
use crate::identity::VaultSecret;
use crate::ids::{DeviceId, ItemId};

/// Field bytes per carried op, well inside [`super::op::MAX_OP_BYTES`] with its framing.
const OP_BUDGET: usize = 24 * 1024;

/// What a carry wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Carried {
    /// Visible items carried.
    pub items: usize,
    /// Conflicts carried (each still listed by `hearth conflicts`).
    pub conflicts: usize,
    /// Carrier device ids enrolled (and revoked) to write them.
    pub carriers: usize,
}

/// One rank of losing values per item: (name, fields, a lost delete).
type Rank = BTreeMap<ItemId, (Option<String>, Vec<(String, Option<String>)>, bool)>;

/// Writes `old`'s visible state into `new` (a fresh replica of the new vault, `secret`, its
/// device enrolled), conflicts included, at wall time `now_ms`.
pub fn carry<S: LogStore, T: LogStore>(
    old: &Replica<S>,
    new: &mut Replica<T>,
    secret: &VaultSecret,
    now_ms: u64,
) -> Result<Carried, ReplicaError> {
    let mut out = Carried::default();
    let mut ranks: Vec<Rank> = Vec::new();
    let mut winners: Vec<Op> = Vec::new();
    for (id, it) in old.state().visible() {
        out.items += 1;
        let name = it.name.winner().map(|w| w.value.clone());
        let mut fields = Vec::new();
        for (k, reg) in &it.fields {
            let Some(w) = reg.winner() else { continue };
            // A removed field stays removed unless a value is in conflict with the removal.
            if w.value.is_some() || reg.is_conflicted() {
                fields.push((k.clone(), w.value.clone()));
            }
            for (i, l) in reg.losers().into_iter().enumerate() {
                grow(&mut ranks, i).entry(*id).or_default().1.push((k.clone(), l.value.clone()));
            }
            out.conflicts += usize::from(reg.is_conflicted());
        }
        for (i, l) in it.name.losers().into_iter().enumerate() {
            grow(&mut ranks, i).entry(*id).or_default().0 = Some(l.value.clone());
        }
        out.conflicts += usize::from(it.name.is_conflicted());
        if it.delete_conflict() {
            grow(&mut ranks, 0).entry(*id).or_default().2 = true;
            out.conflicts += 1;
        }
        winners.extend(puts(*id, name, fields));
    }
    // Carriers write first, each alone (it sees nothing else), each rank a little older.
    let mut carriers = Vec::new();
    for (i, rank) in ranks.iter().enumerate() {
        let id = DeviceId::random();
        let mut c = Replica::open(secret, id, MemStore::default())?;
        let at = now_ms.saturating_sub(1_000 + i as u64);
        c.enroll_self(at)?;
        for (item, (name, fields, deleted)) in rank {
            if name.is_some() || !fields.is_empty() {
                for op in puts(*item, name.clone(), fields.clone()) {
                    c.write(&op, at)?;
                }
            }
            // After the carrier's own put of the item (which it supersedes), so the item's
            // existence holds the rotating device's "yes" and this "no", concurrent.
            if *deleted {
                c.write(&Op::Delete { item: *item }, at)?;
            }
        }
        carriers.push(c);
    }
    for op in &winners {
        new.write(op, now_ms)?;
    }
    for c in &carriers {
        new.add_membership(c.membership().records().to_vec())?;
        let mut cursor = 0;
        loop {
            let b = c.batch_for(&VersionVector::default(), &mut cursor, 1 << 20)?;
            if b.is_empty() {
                break;
            }
            new.receive(&b)?;
        }
        new.revoke(c.device_id(), now_ms)?;
    }
    out.carriers = carriers.len();
    Ok(out)
}

fn grow(ranks: &mut Vec<Rank>, i: usize) -> &mut Rank {
    while ranks.len() <= i {
        ranks.push(Rank::new());
    }
    &mut ranks[i]
}

/// Puts that write `name` and `fields` on `item`, split so each op stays under the budget
/// (an item gathers fields over many edits; one op of them all could exceed the limit).
fn puts(item: ItemId, mut name: Option<String>, fields: Vec<(String, Option<String>)>) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut cur: Vec<(String, Option<String>)> = Vec::new();
    let mut size = name.as_ref().map_or(0, String::len);
    for (k, v) in fields {
        let n = k.len() + v.as_ref().map_or(0, String::len) + 8;
        if !cur.is_empty() && size + n > OP_BUDGET {
            ops.push(Op::Put { item, name: name.take(), fields: std::mem::take(&mut cur) });
            size = 0;
        }
        size += n;
        cur.push((k, v));
    }
    if !cur.is_empty() || name.is_some() || ops.is_empty() {
        ops.push(Op::Put { item, name, fields: cur });
    }
    ops
}
