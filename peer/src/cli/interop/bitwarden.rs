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
    /// 0 text, 1 hidden (a secret), 2 boolean, 3 linked.
    #[serde(default, rename = "type")]
    kind: Option<u64>,
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
        let mut fields: Vec<(String, String, bool)> = Vec::new();
        if let Some(l) = &it.login {
            fields.extend(l.username.clone().map(|v| ("username".to_owned(), v, false)));
            fields.extend(l.password.clone().map(|v| ("password".to_owned(), v, false)));
            fields.extend(l.totp.clone().map(|v| ("otp".to_owned(), v, false)));
            for u in l.uris.iter().flatten() {
                fields.extend(u.uri.clone().map(|v| ("url".to_owned(), v, false)));
            }
        }
        for (prefix, map) in [("card", &it.card), ("identity", &it.identity)] {
            for (k, v) in map.iter().flat_map(|m| m.iter()) {
                fields.extend(text(v).map(|v| (format!("{prefix}_{k}"), v, false)));
            }
        }
        for f in &it.fields {
            if let (Some(k), Some(v)) = (&f.name, f.value.as_ref().and_then(text)) {
                fields.push((k.clone(), v, f.kind == Some(1)));
            }
        }
        fields.extend(it.notes.clone().map(|v| ("notes".to_owned(), v, false)));
        fields.extend(folder(&it.folder_id).map(|v| ("group".to_owned(), v, false)));
        out.push(Record::marked(it.name.as_deref().unwrap_or_default(), fields));
    }
    Ok(out)
}

/// Writes records as a Bitwarden unencrypted JSON export: logins, `group` as the folder,
/// `url`, `url2`, … as the URIs, other fields as custom fields (hidden when secret).
pub fn write(records: &[Record]) -> Result<String, InteropError> {
    let mut folders: Vec<String> =
        records.iter().filter_map(|r| r.fields.iter().find(|(k, _)| k == "group").map(|(_, v)| v.clone())).collect();
    folders.sort();
    folders.dedup();
    let folder_id = |name: &str| folders.iter().position(|f| f == name).map(|i| format!("folder-{}", i + 1));
    let items: Vec<Value> = records
        .iter()
        .map(|r| {
            let get = |k: &str| r.fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.clone());
            let is_url =
                |k: &str| k.strip_prefix("url").is_some_and(|n| n.is_empty() || n.parse::<u32>().is_ok_and(|n| n > 1));
            let uris: Vec<Value> = r
                .fields
                .iter()
                .filter(|(k, _)| is_url(k))
                .map(|(_, v)| serde_json::json!({"match": null, "uri": v}))
                .collect();
            let standard = ["username", "password", "otp", "notes", "group"];
            let custom: Vec<Value> = r
                .fields
                .iter()
                .filter(|(k, _)| !standard.contains(&k.as_str()) && !is_url(k))
                .map(|(k, v)| serde_json::json!({"name": k, "value": v, "type": u8::from(r.is_secret(k))}))
                .collect();
            serde_json::json!({
                "type": 1,
                "name": r.name,
                "folderId": get("group").and_then(|g| folder_id(&g)),
                "notes": get("notes"),
                "favorite": false,
                "login": {"username": get("username"), "password": get("password"), "totp": get("otp"), "uris": uris},
                "fields": custom,
            })
        })
        .collect();
    let folders: Vec<Value> = folders
        .iter()
        .enumerate()
        .map(|(i, name)| serde_json::json!({"id": format!("folder-{}", i + 1), "name": name}))
        .collect();
    let export = serde_json::json!({"encrypted": false, "folders": folders, "items": items});
    serde_json::to_string_pretty(&export).map(|s| s + "\n").map_err(|e| InteropError::Json(e.to_string()))
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

    #[test]
    fn written_exports_read_back_with_their_secret_marks() {
        let mut rec = Record::marked(
            "mail",
            [
                ("username", "al", false),
                ("password", "pw", false),
                ("url", "https://m", false),
                ("url2", "https://m2", false),
                ("recovery words", "a b c", false),
                ("door", "4711", true),
                ("note2", "x", false),
                ("group", "Family", false),
            ]
            .map(|(k, v, m)| (k.to_owned(), v.to_owned(), m)),
        );
        let back = parse(&write(std::slice::from_ref(&rec)).unwrap()).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].secret, rec.secret, "a marked field comes back marked (hidden)");
        assert_eq!(rec.secret.iter().collect::<Vec<_>>(), ["door"]);
        let mut got = back[0].fields.clone();
        got.sort();
        rec.fields.sort();
        assert_eq!(got, rec.fields);
        let json: Value = serde_json::from_str(&write(&[rec]).unwrap()).unwrap();
        assert_eq!(json["items"][0]["fields"].as_array().unwrap().len(), 3);
        assert_eq!(json["folders"][0]["name"], "Family");
    }
}
