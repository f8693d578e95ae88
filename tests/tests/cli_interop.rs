//! Moving between password managers: `hearth export --format keepass-xml` read by the real
//! KeePassXC (Debian `keepassxc`: `keepassxc-cli import`, `show`, `export`) and its export
//! read back by `hearth import --format keepass-xml` unchanged; a database made by
//! KeePassXC itself imported; KeePass/1Password CSV, Bitwarden JSON and plain JSON; bad or
//! partial files refused with nothing imported; an import through a running daemon.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use hearth_e2e::device::{wait_until, Device};
use serde_json::Value;

const DB_PASS: &str = "kp-pass-5678";

fn keepassxc(args: &[&str], stdin: &str) -> Output {
    let mut c = Command::new("keepassxc-cli")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("keepassxc-cli (scripts/test installs keepassxc)");
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let o = c.wait_with_output().unwrap();
    assert!(o.status.success(), "keepassxc-cli {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o
}

fn fresh(dir: &Path, name: &str) -> Device {
    let d = Device::new(dir, name);
    d.ok(&["init", "--no-passphrase"]);
    d
}

fn fields(d: &Device, item: &str) -> Value {
    d.json(&["get", item, "--show"])["fields"].clone()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn an_item_survives_hearth_to_keepassxc_and_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let a = fresh(dir.path(), "a");
    // A multi-line key with a carriage return, XML's special characters, non-ASCII text and
    // a one-time-code secret.
    let key = dir.path().join("key");
    std::fs::write(&key, "-----BEGIN KEY-----\r\nAAAA<&>\"'\r\n-----END KEY-----\n").unwrap();
    a.ok(&["add", "ssh & co", "--field", "username=zoë", "--field-file", &format!("password={}", s(&key))]);
    a.ok(&[
        "add",
        "gmail",
        "--field",
        "username=al@example.org",
        "--field",
        "url=https://mail.example.org",
        "--field",
        "password=pä55<word>",
        "--field",
        "otp=otpauth://totp/x?secret=JBSWY3DPEHPK3PXP",
        "--field",
        "recovery=one two three",
        // Secret by the user's word only: the mark travels as KeePass's ProtectInMemory.
        "--secret",
        "door=4711",
    ]);
    let xml = dir.path().join("out.xml");
    let o = a.run(&["export", "--format", "keepass-xml", s(&xml)]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("in the clear"), "a plain export warns");
    assert_eq!(std::fs::metadata(&xml).unwrap().permissions().mode() & 0o777, 0o600);

    // KeePassXC makes a database of it and reads each value back as written.
    let db = dir.path().join("db.kdbx");
    keepassxc(&["import", "-p", s(&xml), s(&db)], &format!("{DB_PASS}\n{DB_PASS}\n"));
    let show = |entry: &str, attr: &str| {
        let o = keepassxc(&["show", "-q", "-s", "-a", attr, s(&db), entry], &format!("{DB_PASS}\n"));
        let mut v = String::from_utf8(o.stdout).unwrap();
        v.pop(); // its newline
        v
    };
    assert_eq!(show("ssh & co", "Password"), "-----BEGIN KEY-----\r\nAAAA<&>\"'\r\n-----END KEY-----\n");
    assert_eq!(show("ssh & co", "UserName"), "zoë");
    assert_eq!(show("gmail", "URL"), "https://mail.example.org");
    assert_eq!(show("gmail", "recovery"), "one two three");

    // Its XML export, imported into another home, gives the same fields.
    let back = dir.path().join("back.xml");
    let o = keepassxc(&["export", "-q", "-f", "xml", s(&db)], &format!("{DB_PASS}\n"));
    std::fs::write(&back, o.stdout).unwrap();
    let b = fresh(dir.path(), "b");
    let got = b.json(&["import", "--format", "keepass-xml", s(&back)]);
    assert_eq!((got["new"].as_u64(), got["duplicates"].as_u64()), (Some(2), Some(0)), "{got}");
    for item in ["ssh & co", "gmail"] {
        assert_eq!(fields(&b, item), fields(&a, item), "{item}");
    }
    let masked = b.json(&["get", "gmail"])["masked"].clone();
    assert_eq!(masked, serde_json::json!(["door", "otp", "password", "recovery"]), "marked again on the way back");
    // Importing the same file again adds nothing; into the first home, nothing either.
    assert_eq!(b.json(&["import", "--format", "keepass-xml", s(&back)])["new"], 0);
    assert_eq!(a.json(&["import", "--format", "keepass-xml", s(&back)])["duplicates"], 2);
}

#[test]
fn a_keepassxc_database_with_groups_imports() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("made.kdbx");
    let p = format!("{DB_PASS}\n");
    keepassxc(&["db-create", "-q", "-p", s(&db)], &format!("{DB_PASS}\n{DB_PASS}\n"));
    keepassxc(&["mkdir", "-q", s(&db), "Work"], &p);
    keepassxc(
        &["add", "-q", "-u", "alice", "--url", "https://vpn.example", "-p", s(&db), "Work/vpn"],
        &format!("{DB_PASS}\nvpn-secret-1\n"),
    );
    keepassxc(&["add", "-q", "-u", "bob", "-p", s(&db), "home"], &format!("{DB_PASS}\nhome-secret-2\n"));
    let o = keepassxc(&["export", "-q", "-f", "xml", s(&db)], &p);
    let xml = dir.path().join("made.xml");
    std::fs::write(&xml, o.stdout).unwrap();
    let h = fresh(dir.path(), "h");
    h.ok(&["import", "--format", "keepass-xml", s(&xml)]);
    assert_eq!(
        fields(&h, "vpn"),
        serde_json::json!({"username": "alice", "password": "vpn-secret-1", "url": "https://vpn.example", "group": "Work"})
    );
    assert_eq!(fields(&h, "home"), serde_json::json!({"username": "bob", "password": "home-secret-2"}));
    // No value in the clear in the home.
    for f in walk(&h.home) {
        let bytes = std::fs::read(&f).unwrap();
        for v in ["vpn-secret-1", "home-secret-2"] {
            assert!(!bytes.windows(v.len()).any(|w| w == v.as_bytes()), "{} holds {v}", f.display());
        }
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Every format Hearth writes reads back into a fresh home with the same items and fields;
/// the formats that can say so (KeePass XML, Bitwarden JSON) keep a secret mark too.
#[test]
fn every_export_format_reads_back_into_a_fresh_home() {
    let dir = tempfile::tempdir().unwrap();
    let a = fresh(dir.path(), "a");
    a.ok(&["add", "vpn", "--field", "username=alice", "--field", "url=https://vpn", "--secret", "door=4711"]);
    a.ok(&["add", "notes only", "--field", "notes=line 1\nline 2", "--field", "group=Family"]);
    for (i, (format, marks)) in [
        ("keepass-xml", true),
        ("keepass-csv", false),
        ("1password-csv", false),
        ("bitwarden-json", true),
        ("json", false),
    ]
    .into_iter()
    .enumerate()
    {
        let file = dir.path().join(format!("out.{format}"));
        a.ok(&["export", "--format", format, s(&file)]);
        let b = fresh(dir.path(), &format!("b{i}"));
        let got = b.json(&["import", "--format", format, s(&file)]);
        assert_eq!(got["new"], 2, "{format}: {got}");
        for item in ["vpn", "notes only"] {
            assert_eq!(fields(&b, item), fields(&a, item), "{format}: {item}");
        }
        let masked = b.json(&["get", "vpn"])["masked"].clone();
        assert_eq!(masked == serde_json::json!(["door"]), marks, "{format}: {masked}");
    }
}

#[test]
fn csv_and_bitwarden_exports_import_and_bad_files_import_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let h = fresh(dir.path(), "h");
    h.ok(&["add", "bank", "--field", "password=old"]);
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let kp = write("kp.csv", "\"Group\",\"Title\",\"Username\",\"Password\",\"URL\",\"Notes\",\"TOTP\",\"Icon\",\"Last Modified\",\"Created\"\n\"Root\",\"bank\",\"al\",\"p,1\",\"https://b\",\"two\nlines\",\"\",\"0\",\"x\",\"y\"\n");
    let got = h.json(&["import", "--format", "keepass-csv", s(&kp)]);
    assert_eq!(got["renamed"][0], serde_json::json!({"from": "bank", "to": "bank (2)"}), "a taken name: {got}");
    assert_eq!(fields(&h, "bank (2)")["notes"], "two\nlines");
    assert_eq!(fields(&h, "bank")["password"], "old", "the existing item is untouched");

    let op = write(
        "op.csv",
        "Title,Url,Username,Password,OTPAuth,Favorite,Archived,Tags,Notes\nmail,https://m,al,pw1,,false,false,,\n",
    );
    h.ok(&["import", "--format", "1password-csv", s(&op)]);
    assert_eq!(fields(&h, "mail"), serde_json::json!({"url": "https://m", "username": "al", "password": "pw1"}));

    let bw = write(
        "bw.json",
        r#"{"encrypted":false,"folders":[],"items":[{"type":1,"name":"forum","login":{"username":"u","password":"pw2","uris":[{"uri":"https://f"}]}}]}"#,
    );
    h.ok(&["import", "--format", "bitwarden-json", s(&bw)]);
    assert_eq!(fields(&h, "forum")["password"], "pw2");

    // Bad files: a clear error naming the problem, exit non-zero, and nothing imported — not
    // even the good rows before the bad one.
    let before = h.names();
    let bad_csv = write("bad.csv", "Title,Password\ngood,1\nbad\n");
    let truncated = write("cut.xml", "<KeePassFile><Root><Group><Entry><String><Key>Title</Key><Value>half");
    let enc = write("enc.json", r#"{"encrypted":true,"items":[]}"#);
    for (fmt, file, says) in [
        ("keepass-csv", &bad_csv, "line 3"),
        ("keepass-xml", &truncated, "ends inside"),
        ("bitwarden-json", &enc, "encrypted Bitwarden export"),
        ("keepass-xml", &bw, "not a KeePass XML export"),
    ] {
        let o = h.run(&["import", "--format", fmt, s(file)]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(says) && err.contains("nothing was imported"), "{fmt}: {err}");
    }
    assert_eq!(h.names(), before);
    let o = h.run(&["import", "--format", "lastpass", s(&bw)]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown format \"lastpass\""));
}

#[test]
fn plain_json_goes_through_a_pipe_and_imports_through_a_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let a = fresh(dir.path(), "a");
    a.ok(&["add", "wifi", "--field", "psk=tr0ub4dor-x"]);
    let o = a.cmd(&["export", "--format", "json", "-"]).stderr(Stdio::piped()).output().unwrap();
    assert!(o.status.success());
    let plain: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(plain["items"][0]["fields"][0], serde_json::json!(["psk", "tr0ub4dor-x"]));

    let b = fresh(dir.path(), "b");
    let _d = b.daemon_on_loopback(&[], &[]);
    let mut c = b
        .cmd(&["--json", "import", "--format", "json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(&o.stdout).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success());
    wait_until(std::time::Duration::from_secs(10), "the import", || b.names() == ["wifi"]);
    assert_eq!(fields(&b, "wifi")["psk"], "tr0ub4dor-x");
}
