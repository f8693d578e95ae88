//! Other password managers' files, both ways: KeePass 2 XML (what KeePassXC and KeePass
//! import and export), KeePass and 1Password CSV, Bitwarden's unencrypted JSON export, and a
//! plain JSON of Hearth's own. Each parser turns a whole file into [`Record`]s or refuses it
//! with a typed error (never a panic, never half a file); the CLI then writes every record in
//! one commit.

pub mod bitwarden;
pub mod csv;
pub mod keepass_xml;
pub mod plain;

use std::collections::{BTreeMap, BTreeSet};

use crate::cli::secret_fields::is_secret;

/// Largest file read for an import: it travels to a running daemon as one control request
/// (at most 64 MiB of JSON).
pub const MAX_FILE: usize = 32 << 20;

/// One item: its name and text fields, in the file's order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// The item's name.
    pub name: String,
    /// Fields as (key, value), no empty values, keys unique.
    pub fields: Vec<(String, String)>,
    /// Fields the file marks secret (KeePass's ProtectInMemory, Bitwarden's hidden fields,
    /// Hearth's `--secret`) whose names alone would not make them so.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub secret: BTreeSet<String>,
}

impl Record {
    /// A record named `name` (an empty name becomes "untitled"), its fields with empty
    /// values dropped and repeated keys numbered (`url`, `url2`, …).
    pub fn new(name: &str, fields: impl IntoIterator<Item = (String, String)>) -> Self {
        Self::marked(name, fields.into_iter().map(|(k, v)| (k, v, false)))
    }

    /// [`Record::new`] from (key, value, marked secret) triples.
    pub fn marked(name: &str, fields: impl IntoIterator<Item = (String, String, bool)>) -> Self {
        // Leading control characters would make it a device name, not an item (and a name
        // read back must come out the same: whitespace and control characters go together).
        let lead = |c: char| c.is_control() || c.is_whitespace();
        let name = name.trim_start_matches(lead).trim_end();
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        let mut secret = BTreeSet::new();
        for (k, v, marked) in fields {
            let k = k.trim_start_matches(lead).trim_end().to_owned();
            if v.is_empty() || k.is_empty() {
                continue;
            }
            let key = (1..).map(|i| if i == 1 { k.clone() } else { format!("{k}{i}") }).find(|c| !seen.contains(c));
            if let Some(key) = key {
                seen.insert(key.clone());
                if marked && !is_secret(&key) {
                    secret.insert(key.clone());
                }
                out.push((key, v));
            }
        }
        let name = if name.is_empty() { "untitled".to_owned() } else { name.to_owned() };
        Self { name, fields: out, secret }
    }

    /// True when field `key` holds a secret: marked so, or secret by its name.
    pub fn is_secret(&self, key: &str) -> bool {
        self.secret.contains(key) || is_secret(key)
    }
}

/// A file format for `import --format` / `export --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// KeePass 2 XML (`keepass-xml`).
    KeepassXml,
    /// KeePass/KeePassXC CSV (`keepass-csv`).
    KeepassCsv,
    /// 1Password CSV (`1password-csv`).
    OnePasswordCsv,
    /// Bitwarden's unencrypted JSON export (`bitwarden-json`).
    BitwardenJson,
    /// Hearth's plain JSON (`json`).
    Json,
}

impl Format {
    /// Every format's name, for messages.
    pub const NAMES: [&'static str; 5] = ["keepass-xml", "keepass-csv", "1password-csv", "bitwarden-json", "json"];

    /// The format called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "keepass-xml" => Self::KeepassXml,
            "keepass-csv" => Self::KeepassCsv,
            "1password-csv" => Self::OnePasswordCsv,
            "bitwarden-json" => Self::BitwardenJson,
            "json" => Self::Json,
            _ => return None,
        })
    }
}

/// Why a file was refused. Nothing was imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InteropError {
    /// Not UTF-8 text.
    #[error("the file is not UTF-8 text")]
    NotText,
    /// Larger than [`MAX_FILE`].
    #[error("the file is larger than {} MiB", MAX_FILE >> 20)]
    TooLarge,
    /// Malformed XML, or XML that is not a KeePass export.
    #[error("not a KeePass XML export: {0}")]
    Xml(String),
    /// Malformed CSV.
    #[error("CSV line {line}: {msg}")]
    Csv {
        /// The line (1-based).
        line: u64,
        /// What is wrong.
        msg: String,
    },
    /// Malformed JSON, or JSON of another shape.
    #[error("{0}")]
    Json(String),
    /// A file this format cannot be read from as it is (say how to make one that can).
    #[error("{0}")]
    Unsupported(String),
}

/// Reads `bytes` as `format`.
pub fn parse(format: Format, bytes: &[u8]) -> Result<Vec<Record>, InteropError> {
    if bytes.len() > MAX_FILE {
        return Err(InteropError::TooLarge);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| InteropError::NotText)?;
    // A byte-order mark is common in files written on Windows.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match format {
        Format::KeepassXml => keepass_xml::parse(text),
        Format::KeepassCsv | Format::OnePasswordCsv => csv::parse(text),
        Format::BitwardenJson => bitwarden::parse(text),
        Format::Json => plain::parse(text),
    }
}

/// Writes `records` as `format`.
pub fn write(format: Format, records: &[Record]) -> Result<Vec<u8>, InteropError> {
    Ok(match format {
        Format::KeepassXml => keepass_xml::write(records)?.into_bytes(),
        Format::KeepassCsv => csv::write(csv::Columns::KeePass, records)?.into_bytes(),
        Format::OnePasswordCsv => csv::write(csv::Columns::OnePassword, records)?.into_bytes(),
        Format::BitwardenJson => bitwarden::write(records)?.into_bytes(),
        Format::Json => plain::write(records).into_bytes(),
    })
}

/// The field name Hearth uses for a well-known field of another manager (case-insensitive:
/// `UserName`, `Login Name` → `username`; `Web Site`, `URI` → `url`; …); others unchanged.
pub fn hearth_key(key: &str) -> String {
    let k = key.trim().to_ascii_lowercase().replace(['_', ' ', '-'], "");
    match k.as_str() {
        "username" | "loginname" | "login" | "user" | "loginusername" => "username".into(),
        "password" | "loginpassword" => "password".into(),
        "url" | "website" | "uri" | "loginuri" | "web" => "url".into(),
        "notes" | "comments" | "comment" | "note" | "extra" => "notes".into(),
        "totp" | "otp" | "otpauth" | "logintotp" => "otp".into(),
        "group" | "folder" => "group".into(),
        _ => key.trim().to_owned(),
    }
}

/// Names for `records` that clash neither with `taken` (the vault's names) nor with each
/// other: a repeated name gets " (2)", " (3)", … Returns the records renamed and the renames.
pub fn unique_names(records: Vec<Record>, taken: &BTreeSet<String>) -> (Vec<Record>, Vec<(String, String)>) {
    let mut used: BTreeSet<String> = taken.clone();
    let mut renames = Vec::new();
    let mut out = Vec::with_capacity(records.len());
    for mut r in records {
        if used.contains(&r.name) {
            let new = (2..).map(|i| format!("{} ({i})", r.name)).find(|c| !used.contains(c)).unwrap_or_default();
            renames.push((r.name.clone(), new.clone()));
            r.name = new;
        }
        used.insert(r.name.clone());
        out.push(r);
    }
    (out, renames)
}

/// Records already in the vault exactly (same name, same fields), which an import skips, so
/// importing a file twice adds nothing the second time.
pub fn already_held(r: &Record, vault: &BTreeMap<String, BTreeMap<String, String>>) -> bool {
    vault.get(&r.name).is_some_and(|f| f.len() == r.fields.len() && r.fields.iter().all(|(k, v)| f.get(k) == Some(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, f: &[(&str, &str)]) -> Record {
        Record::new(name, f.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
    }

    #[test]
    fn records_drop_empty_values_and_number_repeated_keys() {
        let r = rec(" gmail ", &[("url", "a"), ("notes", ""), ("url", "b"), ("url", "c"), ("", "x")]);
        assert_eq!(r.name, "gmail");
        assert_eq!(r.fields, [("url".into(), "a".into()), ("url2".into(), "b".into()), ("url3".into(), "c".into())]);
        assert_eq!(rec("  ", &[]).name, "untitled");
    }

    #[test]
    fn names_never_clash_with_the_vault_or_each_other() {
        let taken: BTreeSet<String> = ["bank".to_owned(), "bank (2)".to_owned()].into();
        let (out, renames) = unique_names(vec![rec("bank", &[]), rec("mail", &[]), rec("mail", &[])], &taken);
        let names: Vec<&str> = out.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["bank (3)", "mail", "mail (2)"]);
        assert_eq!(renames.len(), 2);
    }

    #[test]
    fn well_known_keys_map_to_hearths() {
        for (k, want) in [
            ("UserName", "username"),
            ("Login Name", "username"),
            ("Web Site", "url"),
            ("login_uri", "url"),
            ("Comments", "notes"),
            ("TOTP", "otp"),
            ("Folder", "group"),
            ("PIN", "PIN"),
        ] {
            assert_eq!(hearth_key(k), want, "{k}");
        }
    }

    #[test]
    fn an_identical_item_is_already_held() {
        let vault: BTreeMap<String, BTreeMap<String, String>> =
            [("a".to_owned(), [("k".to_owned(), "v".to_owned())].into())].into();
        assert!(already_held(&rec("a", &[("k", "v")]), &vault));
        assert!(!already_held(&rec("a", &[("k", "w")]), &vault));
        assert!(!already_held(&rec("a", &[("k", "v"), ("j", "v")]), &vault));
        assert!(!already_held(&rec("b", &[("k", "v")]), &vault));
    }

    #[test]
    fn oversized_and_binary_files_are_refused() {
        assert!(matches!(parse(Format::Json, &[0xff, 0xfe, 0x00]), Err(InteropError::NotText)));
        let big = vec![b' '; MAX_FILE + 1];
        assert!(matches!(parse(Format::Json, &big), Err(InteropError::TooLarge)));
    }
}
