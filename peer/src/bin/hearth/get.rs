//! `hearth get`: one item, its secret fields masked (in JSON too) unless `--show`;
//! `--field F --raw` prints that one value and a newline, for scripts.

use std::collections::BTreeMap;
use std::io::Write;

use hearth_peer::cli::secret_fields::is_secret_in;
use serde_json::{json, Value};

use crate::commands::{conflicts_json, Ctx, NotFound, MASK};

/// What `get` was asked for.
pub(crate) struct Get<'a> {
    pub(crate) name: &'a str,
    pub(crate) show: bool,
    pub(crate) field: Option<&'a str>,
    pub(crate) raw: bool,
}

pub(crate) fn run(ctx: &Ctx, g: &Get<'_>) -> anyhow::Result<()> {
    let r = ctx.open()?;
    let id = r.state().find(g.name)?;
    let it = &r.state().items[&id];
    let fields: BTreeMap<&str, &str> = it.field_values();
    if let Some(f) = g.field {
        let Some(value) = fields.get(f) else {
            let has: Vec<&str> = fields.keys().copied().collect();
            return Err(
                NotFound(format!("item '{}' has no field '{f}' (it has: {})", it.name(), has.join(", "))).into()
            );
        };
        if g.raw {
            // Asked for by name, for a script: the value itself, then a newline.
            let mut out = std::io::stdout().lock();
            out.write_all(value.as_bytes())?;
            out.write_all(b"\n")?;
            return Ok(out.flush()?);
        }
        let shown = if g.show || !is_secret_in(it, f) { *value } else { MASK };
        ctx.print(json!({"id": id.to_hex(), "name": it.name(), "field": f, "value": shown}), || {
            format!("{f}: {shown}")
        });
        return Ok(());
    }
    let masked: Vec<&str> = fields.keys().copied().filter(|k| !g.show && is_secret_in(it, k)).collect();
    let shown: BTreeMap<&str, &str> =
        fields.iter().map(|(k, v)| (*k, if masked.contains(k) { MASK } else { *v })).collect();
    let conflicts: Vec<_> = r.state().conflicts().into_iter().filter(|c| c.item == id).collect();
    let mut out = json!({"id": id.to_hex(), "name": it.name(), "fields": shown, "conflicts": conflicts_json(&conflicts, |c| !g.show && is_secret_in(it, &c.field))});
    if !masked.is_empty() {
        out["masked"] = Value::from(masked.clone());
    }
    ctx.print(out, || {
        let mut text = format!("{}\n", it.name());
        for (k, v) in &shown {
            let hint = if masked.contains(k) { " (--show to reveal)" } else { "" };
            text += &format!("  {k}: {v}{hint}\n");
        }
        if !conflicts.is_empty() {
            text += &format!("  ({} conflict(s): see `hearth conflicts`)\n", conflicts.len());
        }
        text.trim_end().to_owned()
    });
    Ok(())
}
