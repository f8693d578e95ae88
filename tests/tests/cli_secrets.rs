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
    let o = with_stdin(a, &["add", "bank", "--field", "user=al", "--field", "password=-"], "from-stdin\n");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(a.json(&["get", "bank"])["fields"]["password"], "from-stdin");
    let o = with_stdin(a, &["resolve", "bank", "password"], "resolved-via-stdin\n");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(a.json(&["get", "bank"])["fields"]["password"], "resolved-via-stdin");
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
