//! Hearth's plain JSON: every item's name and fields in the clear, for moving to a tool that
//! reads JSON (the CLI warns before writing it; a sealed bundle is the safe way to move a
//! vault). `{"format": "hearth-plain", "version": 1, "items": [{"name": …, "fields": [[key, value], …]}]}`.

use serde::{Deserialize, Serialize};

use super::{InteropError, Record};

const FORMAT: &str = "hearth-plain";

#[derive(Serialize, Deserialize)]
struct File {
    format: String,
    version: u32,
    items: Vec<Item>,
}

#[derive(Serialize, Deserialize)]
struct Item {
    name: String,
    /// `[key, value]` pairs in the item's order (a list, so no JSON library reorders them).
    fields: Vec<(String, String)>,
}

/// Reads a plain JSON export.
pub fn parse(json: &str) -> Result<Vec<Record>, InteropError> {
    let f: File = serde_json::from_str(json).map_err(|e| {
        InteropError::Json(format!("not a Hearth plain export (line {}, column {}): {e}", e.line(), e.column()))
    })?;
    if f.format != FORMAT || f.version != 1 {
        return Err(InteropError::Json(format!(
            "a {:?} file of version {}, not {FORMAT} version 1",
            f.format, f.version
        )));
    }
    Ok(f.items.into_iter().map(|i| Record::new(&i.name, i.fields)).collect())
}

/// Writes records as plain JSON.
pub fn write(records: &[Record]) -> String {
    let f = File {
        format: FORMAT.to_owned(),
        version: 1,
        items: records.iter().map(|r| Item { name: r.name.clone(), fields: r.fields.clone() }).collect(),
    };
    serde_json::to_string_pretty(&f).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let recs = vec![Record::new("a", [("k".into(), "v\n\"x\"".into()), ("p".into(), "ü".into())])];
        assert_eq!(parse(&write(&recs)).unwrap(), recs);
        assert!(parse(r#"{"format":"other","version":1,"items":[]}"#)
            .unwrap_err()
            .to_string()
            .contains("not hearth-plain"));
        assert!(parse("{}").unwrap_err().to_string().contains("not a Hearth plain export"));
    }
}
