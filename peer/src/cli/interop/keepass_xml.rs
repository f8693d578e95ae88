//! KeePass 2 XML: what KeePass and KeePassXC export as "XML" and take back as an import
//! (`keepassxc-cli import FILE.xml NEW.kdbx`). Read with quick-xml (no DTDs or external
//! entities are ever expanded); written by hand, since it is a handful of elements.
//!
//! Reading keeps every entry's strings (Title becomes the item's name, UserName, Password,
//! URL and Notes become Hearth's `username`, `password`, `url` and `notes`, other keys stay
//! as they are), skips entry history and the recycle bin, and records a nested group's path
//! as a `group` field.

use base64::Engine;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;

use super::{hearth_key, InteropError, Record};
use crate::cli::secret_fields::is_secret;

/// What the parser is inside of.
#[derive(Default)]
struct Entry {
    /// (key, value, protected in memory).
    fields: Vec<(String, String, bool)>,
    key: Option<String>,
    value: Option<String>,
    /// The `<Value>` being read is marked ProtectInMemory.
    protect: bool,
}

fn err(msg: impl Into<String>) -> InteropError {
    InteropError::Xml(msg.into())
}

fn name_of(e: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(e.name().as_ref()).into_owned()
}

/// Whether a `<Value>` is marked ProtectInMemory (a secret); refuses a value encrypted with
/// the database's inner stream key (a KDBX file's inner XML, not an export).
fn value_attrs(e: &BytesStart<'_>) -> Result<bool, InteropError> {
    let mut protect = false;
    for a in e.attributes() {
        let a = a.map_err(|x| err(x.to_string()))?;
        let yes = a.value.as_ref().eq_ignore_ascii_case(b"true");
        if a.key.as_ref() == b"Protected" && yes {
            return Err(InteropError::Unsupported(
                "this XML holds encrypted values (a database's inner XML): export the database from KeePass or KeePassXC as XML".into(),
            ));
        }
        protect |= a.key.as_ref() == b"ProtectInMemory" && yes;
    }
    Ok(protect)
}

/// Reads a KeePass 2 XML export.
pub fn parse(text: &str) -> Result<Vec<Record>, InteropError> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<String> = Vec::new();
    let mut text_buf = String::new();
    // Per open group: its name, and whether it is (inside) the recycle bin.
    let mut groups: Vec<(String, bool)> = Vec::new();
    let mut recycle_uuid: Option<String> = None;
    let mut entry: Option<Entry> = None;
    let mut out = Vec::new();
    let mut saw_root = false;
    loop {
        let ev = reader.read_event().map_err(|e| err(format!("at byte {}: {e}", reader.error_position())))?;
        let in_history = stack.iter().any(|s| s == "History");
        match ev {
            Event::Start(e) => {
                let name = name_of(&e);
                if stack.is_empty() {
                    if name != "KeePassFile" {
                        return Err(err(format!("the document is <{name}>, not <KeePassFile>")));
                    }
                    saw_root = true;
                }
                if !in_history {
                    match name.as_str() {
                        "Group" => {
                            let inside_bin = groups.last().is_some_and(|g| g.1);
                            groups.push((String::new(), inside_bin));
                        }
                        "Entry" if stack.last().is_some_and(|p| p == "Group") => entry = Some(Entry::default()),
                        "Value" => {
                            let protect = value_attrs(&e)?;
                            if let Some(en) = entry.as_mut() {
                                en.protect = protect;
                            }
                        }
                        _ => {}
                    }
                }
                stack.push(name);
                text_buf.clear();
            }
            // `<Value/>`: an empty string.
            Event::Empty(e) if name_of(&e) == "Value" && !in_history => {
                value_attrs(&e)?;
                if let Some(en) = entry.as_mut() {
                    en.value = Some(String::new());
                }
            }
            Event::Text(t) => {
                let s = t.unescape().map_err(|e| err(format!("at byte {}: {e}", reader.buffer_position())))?;
                text_buf.push_str(&s);
            }
            Event::CData(c) => text_buf.push_str(&String::from_utf8_lossy(&c.into_inner())),
            Event::End(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if stack.pop().as_deref() != Some(name.as_str()) {
                    return Err(err(format!("</{name}> closes nothing open")));
                }
                let parent = stack.last().map(String::as_str);
                // (Whatever is inside a <History> was inside it before this element closed.)
                if in_history {
                    text_buf.clear();
                    continue;
                }
                match (name.as_str(), parent) {
                    ("RecycleBinUUID", Some("Meta")) => recycle_uuid = Some(text_buf.trim().to_owned()),
                    ("Name", Some("Group")) => {
                        if let Some(g) = groups.last_mut() {
                            g.0 = text_buf.trim().to_owned();
                        }
                    }
                    ("UUID", Some("Group")) => {
                        let id = text_buf.trim();
                        if recycle_uuid.as_deref().is_some_and(|r| !r.is_empty() && r == id) {
                            if let Some(g) = groups.last_mut() {
                                g.1 = true;
                            }
                        }
                    }
                    ("Key", Some("String")) => {
                        if let Some(en) = entry.as_mut() {
                            en.key = Some(std::mem::take(&mut text_buf));
                        }
                    }
                    ("Value", Some("String")) => {
                        if let Some(en) = entry.as_mut() {
                            en.value = Some(std::mem::take(&mut text_buf));
                        }
                    }
                    ("String", Some("Entry")) => {
                        if let Some(en) = entry.as_mut() {
                            let (k, v) = (en.key.take(), en.value.take());
                            let k = k.ok_or_else(|| err("a <String> without a <Key>"))?;
                            en.fields.push((k, v.unwrap_or_default(), std::mem::take(&mut en.protect)));
                        }
                    }
                    ("Entry", _) => {
                        if let Some(en) = entry.take() {
                            if !groups.last().is_some_and(|g| g.1) {
                                out.push(record(en, &groups));
                            }
                        }
                    }
                    ("Group", _) => {
                        groups.pop();
                    }
                    _ => {}
                }
                text_buf.clear();
            }
            Event::Eof => break,
            // Declarations, comments, processing instructions and DOCTYPEs carry no data
            // (a DOCTYPE's entities are never expanded).
            _ => {}
        }
    }
    if !saw_root {
        return Err(err("no <KeePassFile> element"));
    }
    if !stack.is_empty() {
        return Err(err(format!("the file ends inside <{}>", stack.join("><"))));
    }
    Ok(out)
}

/// An entry's strings as a record: Title is the name; the group path (below the root group)
/// becomes `group` unless the entry has that field itself.
fn record(en: Entry, groups: &[(String, bool)]) -> Record {
    let mut title = String::new();
    let mut fields = Vec::new();
    for (k, v, protect) in en.fields {
        if k == "Title" {
            title = v;
        } else {
            fields.push((hearth_key(&k), v, protect));
        }
    }
    let path: Vec<&str> = groups.iter().skip(1).map(|g| g.0.as_str()).filter(|n| !n.is_empty()).collect();
    if !path.is_empty() && !fields.iter().any(|(k, _, _)| k == "group") {
        fields.push(("group".to_owned(), path.join("/"), false));
    }
    Record::marked(&title, fields)
}

/// The KeePass key for a Hearth field (the standard ones capitalised as KeePass has them).
fn keepass_key(k: &str) -> &str {
    match k {
        "username" => "UserName",
        "password" => "Password",
        "url" => "URL",
        "notes" => "Notes",
        other => other,
    }
}

/// Escapes text for an element's content. Characters XML 1.0 cannot carry at all are an
/// error; a carriage return is written as a reference so no parser normalises it away.
fn escape(s: &str, out: &mut String) -> Result<(), char> {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => return Err(c),
            c => out.push(c),
        }
    }
    Ok(())
}

fn uuid() -> String {
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>())
}

/// Writes records as a KeePass 2 XML export: one group, an entry per record (secret fields
/// marked to be protected in memory by whoever imports it).
pub fn write(records: &[Record]) -> Result<String, InteropError> {
    let mut x = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>\n<KeePassFile>\n\t<Meta>\n\t\t<Generator>Hearth</Generator>\n\t</Meta>\n\t<Root>\n\t\t<Group>\n",
    );
    x += &format!("\t\t\t<UUID>{}</UUID>\n\t\t\t<Name>Hearth</Name>\n", uuid());
    for r in records {
        x += &format!("\t\t\t<Entry>\n\t\t\t\t<UUID>{}</UUID>\n", uuid());
        let mut written: Vec<String> = Vec::new();
        let all = std::iter::once(("Title", r.name.as_str(), false))
            .chain(r.fields.iter().map(|(k, v)| (keepass_key(k), v.as_str(), r.is_secret(k))));
        for (k, v, secret) in all {
            // A Hearth field spelled like one of KeePass's own keys ("Title", "Password" next to
            // "password") is numbered rather than written twice.
            let k = (1..)
                .map(|i| if i == 1 { k.to_owned() } else { format!("{k} ({i})") })
                .find(|c| !written.contains(c))
                .unwrap_or_default();
            written.push(k.clone());
            let k = k.as_str();
            let protect = secret || k == "Password" || is_secret(k);
            x += "\t\t\t\t<String>\n\t\t\t\t\t<Key>";
            let bad = |c: char| {
                InteropError::Unsupported(format!(
                    "'{}' / {k} holds the character U+{:04X}, which XML cannot carry",
                    r.name, c as u32
                ))
            };
            escape(k, &mut x).map_err(bad)?;
            x += if protect {
                "</Key>\n\t\t\t\t\t<Value ProtectInMemory=\"True\">"
            } else {
                "</Key>\n\t\t\t\t\t<Value>"
            };
            escape(v, &mut x).map_err(bad)?;
            x += "</Value>\n\t\t\t\t</String>\n";
        }
        x += "\t\t\t</Entry>\n";
    }
    x += "\t\t</Group>\n\t</Root>\n</KeePassFile>\n";
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"<?xml version="1.0" encoding="utf-8" standalone="yes"?>
<!DOCTYPE x [ <!ENTITY boom "boom"> ]>
<KeePassFile>
  <Meta><Generator>KeePassXC</Generator><RecycleBinUUID>cmVjeWNsZQ==</RecycleBinUUID></Meta>
  <Root>
    <Group>
      <UUID>cm9vdA==</UUID><Name>Passwords</Name>
      <Entry>
        <UUID>ZQ==</UUID>
        <String><Key>Title</Key><Value>gmail</Value></String>
        <String><Key>UserName</Key><Value>alice@example.org</Value></String>
        <String><Key>Password</Key><Value ProtectInMemory="True">a&amp;b&lt;c&#13;
d</Value></String>
        <String><Key>Notes</Key><Value/></String>
        <String><Key>otp</Key><Value>otpauth://totp/x?secret=JBSWY3DPEHPK3PXP</Value></String>
        <History><Entry><String><Key>Title</Key><Value>old gmail</Value></String></Entry></History>
      </Entry>
      <Group>
        <UUID>d29yaw==</UUID><Name>Work</Name>
        <Entry><String><Key>Title</Key><Value>vpn</Value></String><String><Key>PIN</Key><Value><![CDATA[12<34]]></Value></String></Entry>
      </Group>
      <Group>
        <UUID>cmVjeWNsZQ==</UUID><Name>Recycle Bin</Name>
        <Entry><String><Key>Title</Key><Value>deleted</Value></String></Entry>
      </Group>
    </Group>
  </Root>
</KeePassFile>"#;

    #[test]
    fn reads_entries_groups_and_special_characters_and_skips_history_and_the_bin() {
        let r = parse(SAMPLE).unwrap();
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[0].name, "gmail");
        assert_eq!(
            r[0].fields,
            [
                ("username".to_owned(), "alice@example.org".to_owned()),
                ("password".to_owned(), "a&b<c\r\nd".to_owned()),
                ("otp".to_owned(), "otpauth://totp/x?secret=JBSWY3DPEHPK3PXP".to_owned()),
            ]
        );
        assert_eq!(r[1].name, "vpn");
        assert_eq!(r[1].fields, [("PIN".to_owned(), "12<34".to_owned()), ("group".to_owned(), "Work".to_owned())]);
    }

    #[test]
    fn what_it_writes_it_reads_back_unchanged() {
        let recs = vec![
            Record::new("a & b", [("username".into(), "u<1>".into()), ("password".into(), "p\"w\r\n\tx".into())]),
            Record::new("ssh", [("key".into(), "-----BEGIN-----\nAAAA\n-----END-----\n".into())]),
        ];
        let xml = write(&recs).unwrap();
        assert!(xml.contains("<Key>Password</Key>\n\t\t\t\t\t<Value ProtectInMemory=\"True\">"));
        assert_eq!(parse(&xml).unwrap(), recs);
    }

    #[test]
    fn fields_spelled_like_keepass_keys_are_kept_apart() {
        let rec = Record::new(
            "x",
            [("Title".into(), "t".into()), ("password".into(), "a".into()), ("Password".into(), "b".into())],
        );
        let back = parse(&write(&[rec]).unwrap()).unwrap();
        let f: Vec<(&str, &str)> = back[0].fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            (back[0].name.as_str(), f),
            ("x", vec![("Title (2)", "t"), ("password", "a"), ("Password (2)", "b")])
        );
    }

    #[test]
    fn values_xml_cannot_carry_are_refused_on_export() {
        let e = write(&[Record::new("x", [("k".into(), "a\u{1}b".into())])]).unwrap_err();
        assert!(e.to_string().contains("U+0001"), "{e}");
    }

    #[test]
    fn garbage_and_other_documents_get_clear_errors() {
        for (doc, says) in [
            ("", "no <KeePassFile>"),
            ("<html><body/></html>", "not <KeePassFile>"),
            ("<KeePassFile><Root><Group>", "ends inside"),
            ("<KeePassFile></Root></KeePassFile>", ""),
            ("<KeePassFile><Root><Group><Entry><String><Value>v</Value></String></Entry></Group></Root></KeePassFile>", "without a <Key>"),
            ("<KeePassFile>&bogus;</KeePassFile>", ""),
        ] {
            let e = parse(doc).expect_err(doc);
            assert!(e.to_string().contains(says), "{doc}: {e}");
        }
        let inner = "<KeePassFile><Root><Group><Entry><String><Key>Password</Key><Value Protected=\"True\">AAAA</Value></String></Entry></Group></Root></KeePassFile>";
        assert!(matches!(parse(inner), Err(InteropError::Unsupported(_))));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_any_text(s in "\\PC{0,300}") {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_mangled_exports(cut in 0usize..600, junk in "[<>&/\"a-z;#]{0,8}") {
            let xml = write(&[Record::new("n", [("password".into(), "v".into())])]).unwrap();
            let at = xml.char_indices().map(|(i, _)| i).take_while(|i| *i <= cut).last().unwrap_or(0);
            let _ = parse(&format!("{}{junk}{}", &xml[..at], &xml[at..]));
        }

        #[test]
        fn any_text_values_round_trip(name in "[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\u{fffe}\\u{ffff}]{1,20}", v in "[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\u{fffe}\\u{ffff}]{1,40}") {
            let rec = Record::new(&name, [("k".into(), v)]);
            let back = parse(&write(std::slice::from_ref(&rec)).unwrap()).unwrap();
            proptest::prop_assert_eq!(back, vec![rec]);
        }
    }
}
