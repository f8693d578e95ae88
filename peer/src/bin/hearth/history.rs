//! `hearth history ITEM [FIELD]`: every change to an item (or one field), oldest first:
//! when, by which device, what it set; secret values masked unless `--show`.

use hearth_peer::reads::{ReadRequest, View};
use serde_json::{json, Value};

use crate::commands::{Ctx, MASK};

pub(crate) fn run(ctx: &Ctx, name: &str, field: Option<&str>, show: bool) -> anyhow::Result<()> {
    let req = ReadRequest::History { name: name.to_owned(), field: field.map(str::to_owned) };
    let View::History { secret, changes } = ctx.read(req)? else {
        anyhow::bail!("asked for a history, got another view");
    };
    let shown = |k: &str, v: &Option<String>| -> Value {
        match v {
            None => Value::Null,
            Some(_) if !show && secret.contains(k) => Value::from(MASK),
            Some(v) => Value::from(v.as_str()),
        }
    };
    let rows: Vec<Value> = changes
        .iter()
        .map(|c| {
            let fields: serde_json::Map<String, Value> =
                c.fields.iter().map(|(k, v)| (k.clone(), shown(k, v))).collect();
            json!({
                "at_ms": c.at_ms,
                "device": c.device,
                "seq": c.seq,
                "name": c.name,
                "fields": fields,
                "deleted": c.deleted,
            })
        })
        .collect();
    ctx.print(Value::Array(rows.clone()), || {
        rows.iter()
            .map(|r| {
                let when = r["at_ms"].as_u64().map_or_else(String::new, hearth_peer::utc::format);
                let who = r["device"].as_str().unwrap_or_default().get(..8).unwrap_or_default().to_owned();
                let what = if r["deleted"] == true {
                    "deleted the item".to_owned()
                } else {
                    let mut parts: Vec<String> = Vec::new();
                    if let Some(n) = r["name"].as_str() {
                        parts.push(format!("name = {n:?}"));
                    }
                    for (k, v) in r["fields"].as_object().into_iter().flatten() {
                        parts.push(match v.as_str() {
                            Some(s) if s == MASK => format!("{k} = {MASK}"),
                            Some(s) => format!("{k} = {s:?}"),
                            None => format!("{k} removed"),
                        });
                    }
                    parts.join(", ")
                };
                format!("{when}  {who}  {what}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    });
    Ok(())
}
