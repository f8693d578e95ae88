//! The config file (`NAME=value` lines of the variables `hearth --help` lists), and that the
//! help's list is complete: every variable the CLI's source reads is in it, and the exit
//! statuses it documents are the README's.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use hearth_e2e::bin;

/// `hearth ARGS` with `home` as HOME and no HEARTH_* variables but `env`.
fn hearth(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(bin("hearth"));
    for (k, _) in std::env::vars() {
        if k.starts_with("HEARTH_") || k.starts_with("XDG_") {
            c.env_remove(k);
        }
    }
    c.env("HOME", home).envs(env.iter().copied()).args(args).output().unwrap()
}

fn config(home: &Path, text: &str) -> std::path::PathBuf {
    let p = home.join(".config/hearth/config");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn the_config_file_sets_the_home_and_the_environment_wins() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    config(home, "# my vault\nHEARTH_HOME = ~/vault\n\nHEARTH_CLIP_SECONDS=20\n");
    assert!(hearth(home, &[], &["init", "--no-passphrase"]).status.success());
    assert!(home.join("vault").is_dir() && !home.join(".local/share/hearth").exists(), "init used ~/vault");
    assert!(hearth(home, &[], &["add", "a", "--field", "k=v"]).status.success());
    let list = hearth(home, &[], &["--json", "list"]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("\"a\""));
    // The environment wins: another home, empty.
    let other = home.join("other");
    let o = hearth(home, &[("HEARTH_HOME", other.to_str().unwrap())], &["list"]);
    assert!(!o.status.success(), "the environment's home has no vault");
    // HEARTH_CONFIG names another file.
    let alt = home.join("alt.conf");
    std::fs::write(&alt, format!("HEARTH_HOME={}\n", home.join("vault").display())).unwrap();
    std::fs::remove_file(home.join(".config/hearth/config")).unwrap();
    let o = hearth(home, &[("HEARTH_CONFIG", alt.to_str().unwrap())], &["--json", "list"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"a\""), "{o:?}");
}

#[test]
fn a_bad_config_file_is_refused_with_where_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    for (text, says) in [
        ("HEARTH_HOEM=~/v\n", "line 1: HEARTH_HOEM is not a setting (did you mean HEARTH_HOME?)"),
        ("\nHEARTH_PASSPHRASE=hunter22\n", "line 2: no passphrase in the config file"),
        ("just words\n", "expected NAME=value"),
    ] {
        config(home, text);
        let o = hearth(home, &[], &["list"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(says), "{text:?}: {err}");
    }
    let p = config(home, "HEARTH_HOME=~/v\n");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = String::from_utf8_lossy(&hearth(home, &[], &["list"]).stderr).into_owned();
    assert!(err.contains("others may write it"), "{err}");
    let err =
        String::from_utf8_lossy(&hearth(home, &[("HEARTH_CONFIG", "/nonexistent/hearth.conf")], &["list"]).stderr)
            .into_owned();
    assert!(err.contains("reading the config file /nonexistent/hearth.conf"), "{err}");
}

#[test]
fn help_lists_every_variable_the_cli_reads_and_the_readmes_exit_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let help = String::from_utf8(hearth(dir.path(), &[], &["--help"]).stdout).unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../peer/src/bin/hearth");
    let mut read = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        for (i, _) in text.match_indices("\"HEARTH_") {
            let name: String = text[i + 1..].chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect();
            read.insert(name);
        }
    }
    assert!(read.len() > 15, "{read:?}");
    for v in &read {
        assert!(help.contains(&format!("\n  {v} ")), "--help does not list {v}");
    }
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    for code in 0..=5 {
        let line = help.lines().find(|l| l.trim_start().starts_with(&format!("{code}  "))).expect("a status line");
        let what = line.trim_start()[3..].trim();
        assert!(readme.contains(&format!("| {code} | {what} |")), "README's status {code} is not --help's {what:?}");
    }
}
