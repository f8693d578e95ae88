//! No secret outside the seal: values and phrases can stay off the command line, no error
//! repeats one, conflicts are masked like `get`, and every file the CLI writes is private.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Output, Stdio};

use hearth_e2e::device::{vault, Device};

/// Runs `hearth ARGS` with `input` on stdin (a pipe, so no terminal prompt).
fn with_stdin(d: &Device, args: &[&str], input: &str) -> Output {
    let mut child = d.cmd(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn values_can_come_from_stdin_instead_of_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let a = &vault(dir.path(), &["a"])[0];
    let o = with_stdin(a, &["add", "bank", "--field", "user=al", "--field", "password=-"], "from-stdin");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(a.json(&["get", "bank", "--show"])["fields"]["password"], "from-stdin");
    // `resolve` with no conflict on that field writes nothing (a typo used to create a field,
    // or overwrite a PIN) and says what the conflicts are.
    let o = with_stdin(a, &["resolve", "bank", "password"], "overwritten");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("no conflict") && err.contains("no conflicts at all"), "{err}");
    assert_eq!(a.json(&["get", "bank", "--show"])["fields"]["password"], "from-stdin");
}

/// A secret of several lines (an SSH key, recovery codes) piped in or read from a file is
/// kept byte for byte; it used to be cut after its first line, with exit status 0.
#[test]
fn a_multi_line_secret_round_trips_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let a = &vault(dir.path(), &["a"])[0];
    let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n  indented line\r\n\n\
               -----END OPENSSH PRIVATE KEY-----\n";
    let o = with_stdin(a, &["add", "ssh", "--field", "user=git", "--field", "key=-"], key);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(a.json(&["get", "ssh", "--show"])["fields"]["key"], key);
    let file = dir.path().join("id_ed25519");
    std::fs::write(&file, key).unwrap();
    a.ok(&["add", "ssh2", "--field-file", &format!("key={}", file.display())]);
    assert_eq!(a.json(&["get", "ssh2", "--show"])["fields"]["key"], key);
    let o = a.cmd(&["edit", "ssh2", "--field", "key=-"]).stdin(std::fs::File::open(&file).unwrap()).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(a.json(&["get", "ssh2", "--show"])["fields"]["key"], key);
    // Two values cannot share one pipe: refused, nothing written.
    let o = with_stdin(a, &["add", "two", "--field", "a=-", "--field", "b=-"], "x\ny\n");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--field-file"));
    assert!(a.run(&["get", "two"]).status.code() == Some(3));
}

#[test]
fn no_error_repeats_a_value_or_a_phrase_word() {
    let dir = tempfile::tempdir().unwrap();
    let a = &vault(dir.path(), &["a"])[0];
    let canary = format!("CANARY{}", std::process::id());
    let attempts: Vec<Vec<String>> = vec![
        vec!["add".into(), "x".into(), "--field".into(), canary.clone()],
        vec!["add".into(), "x".into(), "--field".into(), format!("={canary}")],
        vec!["edit".into(), "missing".into(), "--field".into(), format!("password={canary}")],
        vec!["resolve".into(), "missing".into(), "password".into(), "--value".into(), canary.clone()],
    ];
    for args in &attempts {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = a.run(&args);
        assert!(!o.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!err.contains(&canary), "{args:?} printed the value: {err}");
        assert!(!err.is_empty());
    }
    // A mistyped phrase word is named by position only (a near miss is part of the secret).
    let near_miss = "abandonx";
    let phrase = format!("abandon abandon abandon abandon {near_miss} {}", ["abandon"; 17].join(" ") + " abandon art");
    let o = with_stdin(
        &Device::new(dir.path(), "b"),
        &["init", "--no-passphrase", "--phrase", "-"],
        &format!("{phrase}\n"),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("word 5 is not a BIP39 word"), "{err}");
    assert!(!err.contains(near_miss), "{err}");
    let o = Device::new(dir.path(), "c").run(&["init", "--no-passphrase", "--phrase", &phrase]);
    assert!(!String::from_utf8_lossy(&o.stderr).contains(near_miss));
}

#[test]
fn conflicts_mask_secret_fields_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let devs = vault(dir.path(), &["a", "b"]);
    let (a, b) = (&devs[0], &devs[1]);
    let bundle = dir.path().join("bundle");
    a.ok(&["add", "wifi", "--field", "password=base", "--field", "ssid=home"]);
    a.ok(&["export", bundle.to_str().unwrap()]);
    b.ok(&["import", bundle.to_str().unwrap()]);
    a.ok(&["edit", "wifi", "--field", "password=SECRET-A", "--field", "ssid=net-a"]);
    b.ok(&["edit", "wifi", "--field", "password=SECRET-B", "--field", "ssid=net-b"]);
    b.ok(&["export", bundle.to_str().unwrap()]);
    a.ok(&["import", bundle.to_str().unwrap()]);
    let masked = a.ok(&["conflicts"]);
    assert!(!masked.contains("SECRET-A") && !masked.contains("SECRET-B"), "{masked}");
    assert!(masked.contains("net-a") && masked.contains("net-b"), "non-secret fields stay readable: {masked}");
    let shown = a.ok(&["conflicts", "--show"]);
    assert!(shown.contains("SECRET-A") && shown.contains("SECRET-B"), "{shown}");
    // JSON masks the same way (and `get --json` lists the item's conflicts masked too).
    let json = a.ok(&["--json", "conflicts"]);
    assert!(!json.contains("SECRET-A") && !json.contains("SECRET-B") && json.contains("net-b"), "{json}");
    let json = a.ok(&["--json", "get", "wifi"]);
    assert!(!json.contains("SECRET-A") && !json.contains("SECRET-B"), "{json}");
    let json = a.ok(&["--json", "conflicts", "--show"]);
    assert!(json.contains("SECRET-A") && json.contains("SECRET-B"), "{json}");
}

/// A field is secret by its name or because it was written with --secret; the mark travels
/// with the item (sync, every command that shows values) and goes with the field.
#[test]
fn a_field_written_with_secret_is_masked_whatever_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let devs = vault(dir.path(), &["a", "b"]);
    let (a, b) = (&devs[0], &devs[1]);
    a.ok(&["add", "bank", "--secret", "backup_words=apple-orange-77", "--field", "branch=main-st"]);
    let human = a.ok(&["get", "bank"]);
    assert!(!human.contains("apple-orange-77") && human.contains("main-st"), "{human}");
    assert_eq!(a.json(&["get", "bank"])["masked"], serde_json::json!(["backup_words"]));
    assert_eq!(a.json(&["get", "bank", "--show"])["fields"]["backup_words"], "apple-orange-77");
    assert!(!a.ok(&["get", "bank", "--field", "backup_words"]).contains("apple-orange-77"));
    assert_eq!(a.ok(&["get", "bank", "--field", "backup_words", "--raw"]), "apple-orange-77\n");
    // A plain edit keeps the mark; history masks it.
    a.ok(&["edit", "bank", "--field", "backup_words=pear-plum-88"]);
    let hist = a.ok(&["history", "bank"]);
    assert!(!hist.contains("apple-orange-77") && !hist.contains("pear-plum-88"), "{hist}");
    // Another device sees the mark (through a bundle here).
    let bundle = dir.path().join("bundle");
    a.ok(&["export", bundle.to_str().unwrap()]);
    b.ok(&["import", bundle.to_str().unwrap()]);
    assert!(!b.ok(&["get", "bank"]).contains("pear-plum-88"));
    // The field removed, the mark goes with it: written again plainly, it shows.
    a.ok(&["edit", "bank", "--remove-field", "backup_words"]);
    a.ok(&["edit", "bank", "--field", "backup_words=now-public"]);
    assert!(a.ok(&["get", "bank"]).contains("now-public"));
    // A value read from stdin works with --secret too.
    let o = with_stdin(a, &["add", "vpn", "--secret", "shared=-"], "psk-from-stdin");
    assert!(o.status.success());
    assert!(!a.ok(&["get", "vpn"]).contains("psk-from-stdin"));
}

#[test]
fn every_file_the_cli_writes_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let a = &vault(dir.path(), &["a"])[0];
    a.ok(&["add", "x", "--field", "k=v"]);
    let bundle = dir.path().join("out.bundle");
    a.ok(&["export", bundle.to_str().unwrap()]);
    assert_eq!(mode(&a.home), 0o700);
    for f in ["secret", "vault.db", "vault.db-wal", "vault.db-shm", "writer.lock"] {
        let p = a.home.join(f);
        if (f.ends_with("-wal") || f.ends_with("-shm")) && !p.exists() {
            continue;
        }
        assert_eq!(mode(&p), 0o600, "{f}");
    }
    assert_eq!(mode(&bundle), 0o600);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .chain(std::fs::read_dir(&a.home).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_weak_passphrase_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = Device::new(dir.path(), "p");
    let o = d.cmd(&["init"]).env("HEARTH_PASSPHRASE", "hunter2").output().unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("passphrase refused") && err.contains("shorter than 8"), "{err}");
    assert!(!err.contains("hunter2"));
    assert!(!d.home.join("secret").exists());
}

/// Runs `hearth ARGS` on a pseudo-terminal, typing `answers` at its prompts (Ctrl-D when none
/// is left).
fn at_terminal(d: &Device, args: &[&str], answers: &[&str]) -> serde_json::Value {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("py/pty_run.py");
    let mut c = std::process::Command::new("python3");
    c.arg(script).arg("30").args(answers).arg("--").arg(hearth_e2e::bin("hearth"));
    c.arg("--home").arg(&d.home).args(args).env_remove("HEARTH_PASSPHRASE").env_remove("HEARTH_HOME");
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `init` at a terminal asks the new passphrase twice and uses it: it used to ask a third
/// time to open the vault, and a typo or Ctrl-D there left a home no device could ever join,
/// its words never shown.
#[test]
fn init_at_a_terminal_asks_the_passphrase_twice_shows_the_words_and_leaves_a_whole_home() {
    let dir = tempfile::tempdir().unwrap();
    let a = Device::new(dir.path(), "a");
    let pass = "correct horse battery";
    let r = at_terminal(&a, &["init"], &[pass, pass]);
    let out = r["output"].as_str().unwrap();
    assert_eq!(r["status"], 0, "{r}");
    assert_eq!(r["prompts"].as_array().unwrap().len(), 2, "{r}");
    assert!(out.contains("Write down these 24 words"), "{out}");
    let o = a.cmd(&["--json", "devices"]).env("HEARTH_PASSPHRASE", pass).output().unwrap();
    let devices: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(devices.as_array().map(Vec::len), Some(1), "this device is enrolled: {devices}");
    // Enrolling with the phrase typed at the terminal: the same, and nothing is left behind
    // by a failure (a mistyped phrase).
    let phrase_line = out.lines().find(|l| l.split_whitespace().count() == 24).unwrap().trim().to_owned();
    let b = Device::new(dir.path(), "b");
    let r = at_terminal(&b, &["init", "--phrase", "-"], &[pass, pass, "abandon abandon nonsense"]);
    assert_ne!(r["status"], 0, "{r}");
    assert!(!b.home.exists(), "a failed init leaves no home behind");
    let r = at_terminal(&b, &["init", "--phrase", "-"], &[pass, pass, &phrase_line]);
    assert_eq!(r["status"], 0, "{r}");
    assert_eq!(r["prompts"].as_array().unwrap().len(), 3, "{r}");
    let o = b.cmd(&["--json", "devices"]).env("HEARTH_PASSPHRASE", pass).output().unwrap();
    let devices: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(devices.as_array().map(Vec::len), Some(1), "{devices}");
    let stray: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".init"))
        .collect();
    assert!(stray.is_empty(), "no staging directory is left");
}
