//! CSV exports with a header row: KeePassXC's (`Group, Title, Username, Password, URL, Notes,
//! TOTP, …`), KeePass's (`Account, Login Name, Password, Web Site, Comments`) and 1Password's
//! (`Title, Url, Username, Password, OTPAuth, Favorite, Archived, Tags, Notes`). Columns are
//! matched by name ([`hearth_key`]); bookkeeping columns (icons, dates, favourites) are
//! dropped, unknown ones kept as fields; archived 1Password items are kept, marked.

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
}
