//! CSV exports with a header row: KeePassXC's (`Group, Title, Username, Password, URL, Notes,
//! TOTP, …`), KeePass's (`Account, Login Name, Password, Web Site, Comments`) and 1Password's
//! (`Title, Url, Username, Password, OTPAuth, Favorite, Archived, Tags, Notes`). Columns are
//! matched by name ([`hearth_key`]); bookkeeping columns (icons, dates, favourites) are
//! dropped, unknown ones kept as fields; archived 1Password items are kept, marked.
//! Written back ([`write`]) in KeePassXC's or 1Password's columns, other fields as columns
//! of their own after them (CSV has no way to say a field is secret: the marks are lost).

use super::{hearth_key, InteropError, Record};

/// Columns that name the item.
const NAME_COLUMNS: [&str; 4] = ["title", "account", "name", "item"];
/// Columns with nothing worth keeping.
const DROPPED: [&str; 6] = ["icon", "last modified", "created", "favorite", "favourite", "type"];

/// Reads a CSV export with a header row.
pub fn parse(text: &str) -> Result<Vec<Record>, InteropError> {
    let mut r = ::csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(text.as_bytes());
    let bad = |e: ::csv::Error| {
        let line = e.position().map_or(0, |p| p.line());
        let msg = match e.kind() {
            ::csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                format!("{len} columns where the header has {expected_len}")
            }
            _ => e.to_string(),
        };
        InteropError::Csv { line, msg }
    };
    let headers: Vec<String> = r.headers().map_err(bad)?.iter().map(str::to_owned).collect();
    let lower: Vec<String> = headers.iter().map(|h| h.trim().to_ascii_lowercase()).collect();
    let Some(name_col) = lower.iter().position(|h| NAME_COLUMNS.contains(&h.as_str())) else {
        return Err(InteropError::Csv {
            line: 1,
            msg: format!("no Title (or Account, Name) column in the header: {}", headers.join(", ")),
        });
    };
    let mut out = Vec::new();
    for row in r.records() {
        let row = row.map_err(bad)?;
        let mut fields = Vec::new();
        for (i, v) in row.iter().enumerate() {
            if i == name_col || DROPPED.contains(&lower[i].as_str()) {
                continue;
            }
            if lower[i] == "archived" {
                if v.eq_ignore_ascii_case("true") || v == "1" {
                    fields.push(("archived".to_owned(), "yes".to_owned()));
                }
                continue;
            }
            fields.push((hearth_key(&headers[i]), v.to_owned()));
        }
        out.push(Record::new(row.get(name_col).unwrap_or_default(), fields));
    }
    Ok(out)
}

/// Which columns a CSV export has: the header and the Hearth field (or the name) under each.
#[derive(Debug, Clone, Copy)]
pub enum Columns {
    /// KeePassXC's.
    KeePass,
    /// 1Password's.
    OnePassword,
}

/// The column that holds the item's name.
const NAME: &str = "\u{0}name";

impl Columns {
    fn standard(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Columns::KeePass => &[
                ("Group", "group"),
                ("Title", NAME),
                ("Username", "username"),
                ("Password", "password"),
                ("URL", "url"),
                ("Notes", "notes"),
                ("TOTP", "otp"),
            ],
            Columns::OnePassword => &[
                ("Title", NAME),
                ("Url", "url"),
                ("Username", "username"),
                ("Password", "password"),
                ("OTPAuth", "otp"),
                ("Archived", "archived"),
                ("Notes", "notes"),
            ],
        }
    }
}

/// Writes records as a CSV export with `columns`, every other field in a column named after
/// it (sorted), every cell quoted as KeePassXC writes them.
pub fn write(columns: Columns, records: &[Record]) -> Result<String, InteropError> {
    let standard = columns.standard();
    let extra: std::collections::BTreeSet<&str> = records
        .iter()
        .flat_map(|r| r.fields.iter().map(|(k, _)| k.as_str()))
        .filter(|k| !standard.iter().any(|(_, f)| f == k))
        .collect();
    let mut w = ::csv::WriterBuilder::new().quote_style(::csv::QuoteStyle::Always).from_writer(Vec::new());
    let bad = |e: ::csv::Error| InteropError::Csv { line: 0, msg: e.to_string() };
    let header = standard.iter().map(|(h, _)| *h).chain(extra.iter().copied());
    w.write_record(header).map_err(bad)?;
    for r in records {
        let get = |f: &str| {
            if f == NAME {
                return r.name.clone();
            }
            let v = r.fields.iter().find(|(k, _)| k == f).map_or("", |(_, v)| v.as_str());
            // 1Password says "true"; Hearth keeps an archived item marked "yes".
            if f == "archived" && v == "yes" {
                "true".to_owned()
            } else {
                v.to_owned()
            }
        };
        let row: Vec<String> = standard.iter().map(|(_, f)| get(f)).chain(extra.iter().map(|f| get(f))).collect();
        w.write_record(&row).map_err(bad)?;
    }
    let bytes = w.into_inner().map_err(|e| InteropError::Csv { line: 0, msg: e.to_string() })?;
    String::from_utf8(bytes).map_err(|_| InteropError::NotText)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(r: &Record) -> Vec<(&str, &str)> {
        r.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
    }

    #[test]
    fn keepassxc_csv() {
        let text = "\"Group\",\"Title\",\"Username\",\"Password\",\"URL\",\"Notes\",\"TOTP\",\"Icon\",\"Last Modified\",\"Created\"\n\
                    \"Root/Work\",\"vpn\",\"alice\",\"p,\"\"q\"\"\",\"https://vpn\",\"line 1\nline 2\",\"\",\"0\",\"2024-01-01\",\"2024-01-01\"\n";
        let r = parse(text).unwrap();
        assert_eq!(r[0].name, "vpn");
        assert_eq!(
            f(&r[0]),
            [
                ("group", "Root/Work"),
                ("username", "alice"),
                ("password", "p,\"q\""),
                ("url", "https://vpn"),
                ("notes", "line 1\nline 2")
            ]
        );
    }

    #[test]
    fn keepass_and_1password_csv() {
        let kp = "Account,Login Name,Password,Web Site,Comments\nbank,al,pw,https://b,\n";
        assert_eq!(f(&parse(kp).unwrap()[0]), [("username", "al"), ("password", "pw"), ("url", "https://b")]);
        let op = "Title,Url,Username,Password,OTPAuth,Favorite,Archived,Tags,Notes\n\
                  mail,https://m,al,pw,otpauth://totp/x?secret=AB,true,true,home,n\n";
        let r = parse(op).unwrap();
        assert_eq!(
            f(&r[0]),
            [
                ("url", "https://m"),
                ("username", "al"),
                ("password", "pw"),
                ("otp", "otpauth://totp/x?secret=AB"),
                ("archived", "yes"),
                ("Tags", "home"),
                ("notes", "n")
            ]
        );
    }

    #[test]
    fn bad_files_name_the_line() {
        let e = parse("Title,Password\na,b\nc\n").unwrap_err();
        assert!(e.to_string().contains("line 3") && e.to_string().contains("1 columns where the header has 2"), "{e}");
        assert!(parse("Foo,Bar\n1,2\n").unwrap_err().to_string().contains("no Title"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "[a-zA-Z,\"\\n\\r ]{0,200}") {
            let _ = parse(&format!("Title,Password\n{s}"));
            let _ = parse(&s);
        }
    }

    #[test]
    fn written_exports_read_back_the_same() {
        let recs = vec![
            Record::new(
                "vpn",
                [
                    ("group".to_owned(), "Work".to_owned()),
                    ("username".to_owned(), "alice".to_owned()),
                    ("password".to_owned(), "p,\"q\"\nline".to_owned()),
                    ("url".to_owned(), "https://vpn".to_owned()),
                    ("pin".to_owned(), "1234".to_owned()),
                ],
            ),
            Record::new("old", [("archived".to_owned(), "yes".to_owned()), ("notes".to_owned(), "a\nb".to_owned())]),
        ];
        let sorted = |rs: Vec<Record>| -> Vec<(String, Vec<(String, String)>)> {
            rs.into_iter()
                .map(|mut r| {
                    r.fields.sort();
                    (r.name, r.fields)
                })
                .collect()
        };
        for columns in [Columns::KeePass, Columns::OnePassword] {
            let text = write(columns, &recs).unwrap();
            assert_eq!(sorted(parse(&text).unwrap()), sorted(recs.clone()), "{columns:?}:\n{text}");
        }
        let kp = write(Columns::KeePass, &recs).unwrap();
        assert!(
            kp.starts_with(
                "\"Group\",\"Title\",\"Username\",\"Password\",\"URL\",\"Notes\",\"TOTP\",\"archived\",\"pin\"\n"
            ),
            "{kp}"
        );
        assert!(write(Columns::OnePassword, &recs).unwrap().contains("\"old\",\"\",\"\",\"\",\"\",\"true\""));
    }
}
