//! The `hearth` binary end to end: two device homes syncing by sealed bundles with no
//! network, conflicts and their resolution, clear errors, and no plaintext on disk.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use hearth_e2e::bin;
use serde_json::Value;

struct Dev {
    home: PathBuf,
}

impl Dev {
    fn new(dir: &Path, name: &str) -> Self {
        Self { home: dir.join(name) }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("hearth"));
        c.arg("--home").arg(&self.home).args(args).env_remove("HEARTH_PASSPHRASE").env_remove("HEARTH_HOME");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "hearth {args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    fn fails(&self, args: &[&str]) -> (i32, String) {
        let o = self.run(args);
        assert!(!o.status.success(), "hearth {args:?} should fail");
        (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

/// `a` exports, `b` imports.
fn carry(a: &Dev, b: &Dev, dir: &Path) {
    let f = dir.join("bundle");
    a.ok(&["export", f.to_str().unwrap()]);
    b.ok(&["import", f.to_str().unwrap()]);
}

fn pair(dir: &Path) -> (Dev, Dev) {
    let a = Dev::new(dir, "a");
    let init = a.json(&["init", "--no-passphrase", "--name", "laptop"]);
    let phrase = init["phrase"].as_str().unwrap().to_owned();
    assert_eq!(phrase.split(' ').count(), 24);
    assert_eq!(init["vault_id"].as_str().unwrap().len(), 32);
    let b = Dev::new(dir, "b");
    let mut child = b
        .cmd(&["--json", "init", "--no-passphrase", "--phrase", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(format!("{phrase}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let joined: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(joined["vault_id"], init["vault_id"]);
    assert_ne!(joined["device_id"], init["device_id"]);
    (a, b)
}

#[test]
fn two_homes_sync_by_bundle_and_settle_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path());
    a.ok(&["add", "gmail", "--field", "username=alice", "--field", "password=s3cret"]);
    carry(&a, &b, dir.path());
    let got = b.json(&["get", "gmail", "--show"]);
    assert_eq!(got["name"], "gmail");
    assert_eq!(got["fields"]["username"], "alice");
    assert_eq!(got["fields"]["password"], "s3cret");
    // Human output masks the password unless asked.
    assert!(!b.ok(&["get", "gmail"]).contains("s3cret"));
    assert!(b.ok(&["get", "gmail", "--show"]).contains("s3cret"));

    a.ok(&["edit", "gmail", "--field", "password=from-a"]);
    b.ok(&["edit", "gmail", "--field", "password=from-b"]);
    carry(&a, &b, dir.path());
    carry(&b, &a, dir.path());
    let ca = a.json(&["conflicts", "--show"]);
    let cb = b.json(&["conflicts", "--show"]);
    assert_eq!(ca, cb, "both devices show the same conflict");
    let c = &ca[0];
    assert_eq!((c["name"].as_str(), c["field"].as_str()), (Some("gmail"), Some("password")));
    let kept = c["kept"].as_str().unwrap();
    let losing = c["losing"][0].as_str().unwrap();
    let mut both = [kept, losing];
    both.sort();
    assert_eq!(both, ["from-a", "from-b"], "the losing value is kept visible");
    b.ok(&["resolve", "gmail", "password", "--value", "settled"]);
    carry(&b, &a, dir.path());
    assert_eq!(a.json(&["conflicts"]), Value::Array(vec![]));
    assert_eq!(a.json(&["get", "gmail", "--show"])["fields"]["password"], "settled");
    // Importing the same bundle again changes nothing.
    let f = dir.path().join("bundle");
    assert_eq!(a.json(&["import", f.to_str().unwrap()])["new"], 0);
    // Removal travels too.
    a.ok(&["rm", "gmail"]);
    carry(&a, &b, dir.path());
    assert_eq!(b.json(&["list"]), Value::Array(vec![]));
    assert_eq!(b.json(&["status"])["devices"], 2);
}

#[test]
fn clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = pair(dir.path());
    a.ok(&["add", "bank", "--field", "pin=1234"]);
    let (code, err) = a.fails(&["get", "bnak"]);
    assert_eq!(code, 3);
    assert!(err.contains("no item named 'bnak'; did you mean 'bank'?"), "{err}");
    let (_, err) = a.fails(&["add", "bank"]);
    assert!(err.contains("exists already"), "{err}");
    let (_, err) = a.fails(&["add", "x", "--field", "novalue"]);
    assert!(err.contains("KEY=VALUE"), "{err}");
    // A bundle from another vault is refused.
    let other = Dev::new(dir.path(), "other");
    other.ok(&["init", "--no-passphrase"]);
    let f = dir.path().join("foreign");
    other.ok(&["export", f.to_str().unwrap()]);
    let (_, err) = a.fails(&["import", f.to_str().unwrap()]);
    assert!(err.contains("belongs to vault"), "{err}");
    std::fs::write(&f, b"not a bundle at all").unwrap();
    let (_, err) = a.fails(&["import", f.to_str().unwrap()]);
    assert!(err.contains("not a Hearth bundle"), "{err}");
    // A mistyped phrase names the word.
    let c = Dev::new(dir.path(), "c");
    let bad = "abandon abandon abandon abandon hearthx abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon art";
    let (code, err) = c.fails(&["init", "--no-passphrase", "--phrase", bad]);
    assert_eq!(code, 4);
    assert!(err.contains("word 5 is not a BIP39 word") && !err.contains("hearthx"), "{err}");
    let (_, err) = Dev::new(dir.path(), "nowhere").fails(&["list"]);
    assert!(err.contains("run `hearth init` first"), "{err}");
}

#[test]
fn passphrase_sealed_secret() {
    let dir = tempfile::tempdir().unwrap();
    let d = Dev::new(dir.path(), "p");
    let (_, err) = d.fails(&["init"]);
    assert!(err.contains("HEARTH_PASSPHRASE"), "{err}");
    let init = d.cmd(&["--json", "init"]).env("HEARTH_PASSPHRASE", "correct horse").output().unwrap();
    assert!(init.status.success());
    let phrase = serde_json::from_slice::<Value>(&init.stdout).unwrap()["phrase"].as_str().unwrap().to_owned();
    let raw = *hearth_peer::identity::VaultSecret::from_phrase(&phrase).unwrap().as_bytes();
    let (code, err) = d.fails(&["list"]);
    assert_eq!(code, 4);
    assert!(err.contains("vault is locked: run with --passphrase-file FILE or set HEARTH_PASSPHRASE"), "{err}");
    let o = d.cmd(&["list"]).env("HEARTH_PASSPHRASE", "wrong").output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("wrong passphrase"));
    let pf = dir.path().join("pass");
    std::fs::write(&pf, "correct horse\n").unwrap();
    d.ok(&["--passphrase-file", pf.to_str().unwrap(), "add", "x", "--generate", "password"]);
    let secret = std::fs::read(d.home.join("secret")).unwrap();
    assert!(secret.len() > 48);
    assert!(!contains(&secret, &raw), "the sealed secret file holds the raw vault secret");
    assert!(!contains(&secret, b"correct horse"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(d.home.join("secret")).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn no_plaintext_reaches_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path());
    let canary = format!("CANARY{}", std::process::id());
    a.ok(&[
        "add",
        &format!("{canary}-name"),
        "--field",
        &format!("password={canary}-pw"),
        "--field",
        &format!("notes={canary}-notes"),
        "--field",
        &format!("{canary}-fieldname=plain"),
    ]);
    a.ok(&["edit", &format!("{canary}-name"), "--field", &format!("url=https://{canary}.example")]);
    carry(&a, &b, dir.path());
    assert_eq!(b.json(&["list"])[0]["name"], format!("{canary}-name"));
    // Both homes hold a materialized view of the item (scanned below with the rest).
    for d in [&a, &b] {
        let o = d.cmd(&["get", &format!("{canary}-name")]).env("RUST_LOG", "hearth=debug").output().unwrap();
        assert!(String::from_utf8_lossy(&o.stderr).contains("answered from the materialized view"));
    }
    // Every file under the test directory: both homes (recursively) and the bundle.
    let mut checked = Vec::new();
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let bytes = std::fs::read(&p).unwrap();
            assert!(!contains(&bytes, canary.as_bytes()), "plaintext found in {}", p.display());
            checked.push(p.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    for want in ["secret", "vault.db", "bundle", "head"] {
        assert!(checked.iter().any(|c| c == want), "{want} not checked: {checked:?}");
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// `export -` writes the bundle to stdout and `import -` reads it from stdin (they used to
/// make and read a file named `-`): a pipe carries a vault between two homes.
#[test]
fn a_bundle_travels_through_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = pair(dir.path());
    a.ok(&["add", "wifi", "--field", "password=pw"]);
    let mut export = a.cmd(&["export", "-"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let import = b.cmd(&["--json", "import", "-"]).stdin(export.stdout.take().unwrap()).output().unwrap();
    assert!(export.wait().unwrap().success());
    assert!(import.status.success(), "{}", String::from_utf8_lossy(&import.stderr));
    let got: Value = serde_json::from_slice(&import.stdout).unwrap();
    assert!(got["new"].as_u64().unwrap() >= 1, "{got}");
    assert_eq!(b.json(&["get", "wifi", "--show"])["fields"]["password"], "pw");
    assert!(!a.home.parent().unwrap().join("-").exists() && !std::path::Path::new("-").exists());
}

/// A rename onto another item's name is refused like `add` (it used to succeed, and then
/// `get`/`rm` of either failed with "2 items are named"); an item can always be picked by id.
#[test]
fn a_rename_onto_an_existing_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _) = pair(dir.path());
    a.ok(&["add", "mail", "--field", "user=al"]);
    a.ok(&["add", "bank", "--field", "user=bo"]);
    let (code, err) = a.fails(&["edit", "mail", "--rename", "bank"]);
    assert!(err.contains("'bank' exists already"), "{code} {err}");
    assert_eq!(a.json(&["get", "bank", "--show"])["fields"]["user"], "bo");
    let id = a.json(&["get", "mail", "--show"])["id"].as_str().unwrap().to_owned();
    a.ok(&["edit", &id, "--rename", "email"]);
    assert_eq!(a.json(&["get", "email", "--show"])["id"], id.as_str());
}
