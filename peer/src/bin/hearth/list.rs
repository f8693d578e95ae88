//! `hearth list [QUERY]`: every item by name, or those matching QUERY (name, username,
//! email or URL; substring or fuzzy), best first.

use std::collections::BTreeSet;

use hearth_peer::cli::search::{score, SEARCHED_FIELDS};
use hearth_peer::ids::ItemId;
use serde_json::{json, Value};

use crate::commands::Ctx;

pub(crate) fn run(ctx: &Ctx, query: Option<&str>) -> anyhow::Result<()> {
    let r = ctx.open()?;
    let conflicted: BTreeSet<ItemId> = r.state().conflicts().iter().map(|c| c.item).collect();
    let mut items: Vec<(u32, ItemId, &hearth_peer::vault::ItemState)> = r
        .state()
        .visible()
        .filter_map(|(id, s)| {
            let best = match query {
                None => Some(0),
                Some(q) => {
                    let fields = s.field_values();
                    let searched = SEARCHED_FIELDS.iter().filter_map(|f| fields.get(f).copied());
                    std::iter::once(s.name()).chain(searched).filter_map(|t| score(q, t)).max()
                }
            };
            best.map(|b| (b, *id, s))
        })
        .collect();
    // Best match first, then by name.
    items.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.2.name().cmp(b.2.name())));
    let rows: Vec<Value> = items
        .iter()
        .map(|(_, id, s)| json!({"id": id.to_hex(), "name": s.name(), "fields": s.field_values().keys().collect::<Vec<_>>(), "conflicted": conflicted.contains(id)}))
        .collect();
    ctx.print(Value::Array(rows), || {
        items
            .iter()
            .map(|(_, id, s)| format!("{}{}", s.name(), if conflicted.contains(id) { "  (conflict)" } else { "" }))
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}
