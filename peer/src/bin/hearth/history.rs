//! `hearth history ITEM [FIELD]`: every change to an item (or one field), oldest first:
//! when, by which device, what it set; secret values masked unless `--show`.

use hearth_peer::cli::secret_fields::is_secret;
use serde_json::{json, Value};

use crate::commands::{Ctx, MASK};

pub(crate) fn run(ctx: &Ctx, name: &str, field: Option<&str>, show: bool) -> anyhow::Result<()> {
    let r = ctx.open()?;
    let id = r.state().find(name)?;
    let shown = |k: &str, v: &Option<String>| -> Value {
        match v {
            None => Value::Null,
            Some(_) if !show && is_secret(k) => Value::from(MASK),
            Some(v) => Value::from(v.as_str()),
        }
    };
    let mut rows = Vec::new();
    for c in r.history(id)? {
        let fields: serde_json::Map<String, Value> = c
            .fields
            .iter()
            .filter(|(k, _)| field.is_none_or(|f| f == k))
            .map(|(k, v)| (k.clone(), shown(k, v)))
            .collect();
        // With a field asked for, only the changes that touched it (or deleted the item).
        if field.is_some() && fields.is_empty() && !c.deleted {
            continue;
        }
        rows.push(json!({
            "at_ms": c.hlc.ms,
            "device": c.author.to_hex(),
            "seq": c.seq,
            "name": c.name,
            "fields": fields,
            "deleted": c.deleted,
        }));
    }
    ctx.print(Value::Array(rows.clone()), || {
        rows.iter()
            .map(|r| {
                let when = r["at_ms"].as_u64().map_or_else(String::new, utc);
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

/// `ms` since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC` (civil-from-days, no time crate).
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(super::utc(1_796_325_248_019), "2026-12-03 19:14:08 UTC");
    }
}
