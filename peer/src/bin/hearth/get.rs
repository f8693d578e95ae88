//! `hearth get`: one item, its secret fields masked (in JSON too) unless `--show`;
//! `--field F --raw` prints that one value and a newline, for scripts.

use std::collections::BTreeMap;
use std::io::Write;

use hearth_peer::reads::{ItemView, ReadRequest, View};
use serde_json::{json, Value};

use crate::commands::{conflicts_json, Ctx, NotFound, MASK};

/// What `get` was asked for.
pub(crate) struct Get<'a> {
    pub(crate) name: &'a str,
    pub(crate) show: bool,
    pub(crate) field: Option<&'a str>,
    pub(crate) raw: bool,
}

/// One item's view, through the daemon when one runs.
pub(crate) fn item(ctx: &Ctx, name: &str) -> anyhow::Result<ItemView> {
    match ctx.read(ReadRequest::Item { name: name.to_owned() })? {
        View::Item(it) => Ok(it),
        other => anyhow::bail!("asked for an item, got {other:?}"),
    }
}

pub(crate) fn run(ctx: &Ctx, g: &Get<'_>) -> anyhow::Result<()> {
    let it = item(ctx, g.name)?;
    if let Some(f) = g.field {
        let Some(value) = it.fields.get(f) else {
            let has: Vec<&str> = it.fields.keys().map(String::as_str).collect();
            return Err(NotFound(format!("item '{}' has no field '{f}' (it has: {})", it.name, has.join(", "))).into());
        };
        if g.raw {
            // Asked for by name, for a script: the value itself, then a newline.
            let mut out = std::io::stdout().lock();
            out.write_all(value.as_bytes())?;
            out.write_all(b"\n")?;
            return Ok(out.flush()?);
        }
        let shown = if g.show || !it.secret.contains(f) { value.as_str() } else { MASK };
        ctx.print(json!({"id": it.id, "name": it.name, "field": f, "value": shown}), || format!("{f}: {shown}"));
        return Ok(());
    }
    let masked: Vec<&str> =
        it.fields.keys().map(String::as_str).filter(|k| !g.show && it.secret.contains(*k)).collect();
    let shown: BTreeMap<&str, &str> = it
        .fields
        .iter()
        .map(|(k, v)| (k.as_str(), if masked.contains(&k.as_str()) { MASK } else { v.as_str() }))
        .collect();
    let mut out =
        json!({"id": it.id, "name": it.name, "fields": shown, "conflicts": conflicts_json(&it.conflicts, g.show)});
    if !masked.is_empty() {
        out["masked"] = Value::from(masked.clone());
    }
    ctx.print(out, || {
        let mut text = format!("{}\n", it.name);
        for (k, v) in &shown {
            let hint = if masked.contains(k) { " (--show to reveal)" } else { "" };
            text += &format!("  {k}: {v}{hint}\n");
        }
        if !it.conflicts.is_empty() {
            text += &format!("  ({} conflict(s): see `hearth conflicts`)\n", it.conflicts.len());
        }
        text.trim_end().to_owned()
    });
    Ok(())
}
