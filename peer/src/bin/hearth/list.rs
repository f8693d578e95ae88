//! `hearth list [QUERY]`: every item by name, or those matching QUERY (name, username,
//! email or URL; substring or fuzzy), best first.

use hearth_peer::reads::{ReadRequest, View};
use serde_json::{json, Value};

use crate::commands::Ctx;

pub(crate) fn run(ctx: &Ctx, query: Option<&str>) -> anyhow::Result<()> {
    let View::List { items } = ctx.read(ReadRequest::List { query: query.map(str::to_owned) })? else {
        anyhow::bail!("asked for a list, got another view");
    };
    let rows: Vec<Value> = items
        .iter()
        .map(|r| json!({"id": r.id, "name": r.name, "fields": r.fields, "conflicted": r.conflicted}))
        .collect();
    ctx.print(Value::Array(rows), || {
        items
            .iter()
            .map(|r| format!("{}{}", r.name, if r.conflicted { "  (conflict)" } else { "" }))
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}
