//! Bitwarden's unencrypted JSON export (`bw export --format json`, or the web vault's "JSON"):
//! logins, secure notes, cards and identities, their custom fields, and the folder as `group`.
//! An encrypted export is refused with how to make a readable one.

use serde::Deserialize;
use serde_json::Value;

use super::{InteropError, Record};

#[derive(Deserialize)]
struct Export {
    #[serde(default)]
    encrypted: bool,
    #[serde(default)]
    folders: Vec<Folder>,
    items: Vec<Item>,
}

#[derive(Deserialize)]
struct Folder {
    id: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Item {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    notes: Option<String>,
    #[serde(default)]
    folder_id: Option<String>,
    #[serde(default)]
    fields: Vec<Field>,
    #[serde(default)]
    login: Option<Login>,
    #[serde(default)]
    card: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    identity: Option<serde_json::Map<String, Value>>,
}

#[derive(Deserialize)]
struct Field {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    value: Option<Value>,
}

#[derive(Deserialize)]
struct Login {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    totp: Option<String>,
    #[serde(default)]
    uris: Option<Vec<Uri>>,
}

#[derive(Deserialize)]
struct Uri {
    #[serde(default)]
    uri: Option<String>,
}

/// A JSON scalar as text (`null` and objects give nothing).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Reads a Bitwarden JSON export.
pub fn parse(json: &str) -> Result<Vec<Record>, InteropError> {
    let e: Export = serde_json::from_str(json).map_err(|e| {
        InteropError::Json(format!("not a Bitwarden JSON export (line {}, column {}): {e}", e.line(), e.column()))
    })?;
    if e.encrypted {
        return Err(InteropError::Unsupported(
            "an encrypted Bitwarden export: export again as \"JSON\" (not \"JSON (Encrypted)\") and delete the file after importing it".into(),
        ));
    }
    let folder = |id: &Option<String>| e.folders.iter().find(|f| Some(&f.id) == id.as_ref()).map(|f| f.name.clone());
    let mut out = Vec::new();
    for it in &e.items {
        let mut fields: Vec<(String, String)> = Vec::new();
        if let Some(l) = &it.login {
            fields.extend(l.username.clone().map(|v| ("username".to_owned(), v)));
            fields.extend(l.password.clone().map(|v| ("password".to_owned(), v)));
            fields.extend(l.totp.clone().map(|v| ("otp".to_owned(), v)));
            for u in l.uris.iter().flatten() {
                fields.extend(u.uri.clone().map(|v| ("url".to_owned(), v)));
            }
        }
        for (prefix, map) in [("card", &it.card), ("identity", &it.identity)] {
            for (k, v) in map.iter().flat_map(|m| m.iter()) {
                fields.extend(text(v).map(|v| (format!("{prefix}_{k}"), v)));
            }
        }
        for f in &it.fields {
            if let (Some(k), Some(v)) = (&f.name, f.value.as_ref().and_then(text)) {
                fields.push((k.clone(), v));
            }
        }
        fields.extend(it.notes.clone().map(|v| ("notes".to_owned(), v)));
        fields.extend(folder(&it.folder_id).map(|v| ("group".to_owned(), v)));
        out.push(Record::new(it.name.as_deref().unwrap_or_default(), fields));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_cards_notes_fields_and_folders() {
        let json = r#"{"encrypted": false,
          "folders": [{"id": "f1", "name": "Family"}],
          "items": [
            {"type": 1, "name": "mail", "folderId": "f1", "notes": null,
             "login": {"username": "al", "password": "pw", "totp": "JBSWY3DPEHPK3PXP",
                       "uris": [{"match": null, "uri": "https://m"}, {"uri": "https://m2"}]},
             "fields": [{"name": "PIN", "value": "1234", "type": 1}, {"name": "n", "value": 7, "type": 0}]},
            {"type": 3, "name": "visa", "card": {"cardholderName": "Al", "number": "4111", "code": "123", "expYear": null}},
            {"type": 2, "name": "note", "notes": "multi\nline", "secureNote": {"type": 0}}
          ]}"#;
        let r = parse(json).unwrap();
        let f = |i: usize| r[i].fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>();
        assert_eq!(
            f(0),
            [
                ("username", "al"),
                ("password", "pw"),
                ("otp", "JBSWY3DPEHPK3PXP"),
                ("url", "https://m"),
                ("url2", "https://m2"),
                ("PIN", "1234"),
                ("n", "7"),
                ("group", "Family")
            ]
        );
        assert_eq!(f(1), [("card_cardholderName", "Al"), ("card_code", "123"), ("card_number", "4111")]);
        assert_eq!((r[2].name.as_str(), f(2)), ("note", vec![("notes", "multi\nline")]));
    }

    #[test]
    fn encrypted_and_foreign_json_are_refused() {
        let e = parse(r#"{"encrypted": true, "items": []}"#).unwrap_err();
        assert!(e.to_string().contains("encrypted Bitwarden export"), "{e}");
        let e = parse(r#"{"hello": 1}"#).unwrap_err();
        assert!(e.to_string().contains("not a Bitwarden JSON export"), "{e}");
        assert!(parse("[").is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "[\\[\\]{}\":,a-z0-9 ]{0,200}") {
            let _ = parse(&s);
            let _ = parse(&format!("{{\"items\":[{s}]}}"));
        }
    }
}
