//! Daily use as people coming from pass, bw, op and keepassxc-cli expect it: one value for a
//! script (`get --field F --raw`), secrets masked by their usual names in human and JSON
//! output, generated passwords shown once, TOTP codes that agree with Debian's `oathtool`,
//! and conflict hints that keep `--home` and never ask for a secret in argv.

use std::io::Write;
use std::process::{Command, Stdio};

use hearth_e2e::device::{carry, vault, Device};

fn with_stdin(d: &Device, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = d.cmd(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn one_value_for_scripts_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let a = &vault(dir.path(), &["a"])[0];
    let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n  indented line\n-----END OPENSSH PRIVATE KEY-----\n";
    let o = with_stdin(a, &["add", "ssh", "--field", "user=git", "--field", "key=-"], key.as_bytes());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let raw = a.cmd(&["get", "ssh", "--field", "key", "--raw"]).output().unwrap();
    assert!(raw.status.success());
    assert_eq!(raw.stdout, format!("{key}\n").as_bytes(), "the value and one newline, nothing else");
    assert_eq!(a.ok(&["get", "ssh", "--field", "user", "--raw"]), "git\n");
    // Without --raw, one field is masked like the whole item.
    let one = a.json(&["get", "ssh", "--field", "key"]);
    assert_eq!((one["field"].as_str(), one["value"].as_str()), (Some("key"), Some("••••••••")));
    assert_eq!(a.json(&["get", "ssh", "--field", "key", "--show"])["value"], key);
    let (code, err) = fails(a, &["get", "ssh", "--field", "password", "--raw"]);
    assert_eq!(code, 3, "a missing field is a lookup failure: {err}");
    assert!(err.contains("has no field 'password'") && err.contains("key, user"), "{err}");
    assert!(!a.run(&["get", "ssh", "--raw"]).status.success(), "--raw needs --field");
}

fn fails(d: &Device, args: &[&str]) -> (i32, String) {
    let o = d.run(args);
    assert!(!o.status.success());
    (o.status.code().unwrap_or(-1), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn secrets_are_masked_by_their_usual_names_in_json_too() {
    let dir = tempfile::tempdir().unwrap();
    let a = &vault(dir.path(), &["a"])[0];
    let secrets = [("PIN", "4321"), ("api_token", "tok-abc"), ("wifi_password", "hunter22"), ("SSH key", "AAAAkey")];
    let mut args = vec!["add".to_owned(), "mixed".to_owned(), "--field".to_owned(), "username=alice".to_owned()];
    for (k, v) in secrets {
        args.extend(["--field".to_owned(), format!("{k}={v}")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    a.ok(&args);
    let human = a.ok(&["get", "mixed"]);
    let json = a.json(&["get", "mixed"]);
    for (k, v) in secrets {
        assert!(!human.contains(v), "{k} shown: {human}");
        assert_eq!(json["fields"][k], "••••••••", "{k}");
    }
    assert!(human.contains("alice") && json["fields"]["username"] == "alice");
    let mut masked: Vec<&str> = json["masked"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    masked.sort();
    assert_eq!(masked, ["PIN", "SSH key", "api_token", "wifi_password"]);
    let shown = a.json(&["get", "mixed", "--show"]);
    for (k, v) in secrets {
        assert_eq!(shown["fields"][k], v);
    }
    assert!(shown.get("masked").is_none());
}

#[test]
fn a_generated_password_is_shown_once_when_made() {
    let dir = tempfile::tempdir().unwrap();
    let a = &vault(dir.path(), &["a"])[0];
    let out = a.json(&["add", "forum", "--generate", "password", "--length", "20"]);
    let made = out["generated"]["password"].as_str().unwrap().to_owned();
    assert_eq!(made.chars().count(), 20);
    assert_eq!(a.ok(&["get", "forum", "--field", "password", "--raw"]), format!("{made}\n"));
    let human = a.ok(&["edit", "forum", "--generate", "password"]);
    let again = a.ok(&["get", "forum", "--field", "password", "--raw"]).trim_end().to_owned();
    assert!(human.contains(&format!("password (generated): {again}")), "{human}");
    assert!(!a.ok(&["edit", "forum", "--field", "user=x"]).contains("generated"));
}

/// `hearth totp` against `oathtool` (Debian) for the same secret at the same moment; two
/// tries, in case the first pair straddles a period boundary.
#[test]
fn totp_codes_agree_with_oathtool() {
    let dir = tempfile::tempdir().unwrap();
    let a = &vault(dir.path(), &["a"])[0];
    let b32 = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
    a.ok(&["add", "github", "--field", "user=al", "--field", &format!("totp={b32}")]);
    let uri = format!("otpauth://totp/Bank:al?secret={b32}&issuer=Bank&algorithm=SHA256&digits=8&period=60");
    a.ok(&["add", "bank", "--field", &format!("2fa={uri}")]);
    for (item, oath) in [
        ("github", vec!["--totp", "-b", b32]),
        ("bank", vec!["--totp=sha256", "--digits=8", "--time-step-size=60s", "-b", b32]),
    ] {
        let agreed = (0..2).any(|_| {
            let ours = a.ok(&["totp", item]).trim().to_owned();
            let theirs = Command::new("oathtool").args(&oath).output().expect("oathtool (scripts/test installs it)");
            let theirs = String::from_utf8_lossy(&theirs.stdout).trim().to_owned();
            ours == theirs || {
                eprintln!("{item}: {ours} vs {theirs}, trying again");
                false
            }
        });
        assert!(agreed, "{item}: hearth and oathtool disagree");
    }
    let j = a.json(&["totp", "bank"]);
    assert_eq!((j["digits"].as_u64(), j["period"].as_u64()), (Some(8), Some(60)));
    assert!(j["remaining"].as_u64().is_some_and(|r| (1..=60).contains(&r)));
    a.ok(&["add", "plain", "--field", "totp=not base32!"]);
    let (code, err) = fails(a, &["totp", "plain"]);
    assert_eq!(code, 1);
    assert!(err.contains("not a TOTP secret") && !err.contains("not base32!"), "no echo of the value: {err}");
    let (code, _) = fails(a, &["totp", "github", "--field", "user"]);
    assert_eq!(code, 1);
    let (code, _) = fails(a, &["totp", "bank", "--field", "nothing"]);
    assert_eq!(code, 3);
}

#[test]
fn conflict_hints_keep_home_and_ask_for_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let devs = vault(dir.path(), &["a", "b"]);
    let (a, b) = (&devs[0], &devs[1]);
    a.ok(&["add", "router", "--field", "password=one"]);
    carry(a, b, dir.path());
    a.ok(&["edit", "router", "--field", "password=from-a"]);
    b.ok(&["edit", "router", "--field", "password=from-b"]);
    carry(b, a, dir.path());
    let hint = a.ok(&["conflicts"]);
    assert!(!hint.contains("from-a") && !hint.contains("from-b"), "masked: {hint}");
    assert!(hint.contains("--home '") && hint.contains("resolve 'router' 'password'"), "{hint}");
    assert!(!hint.contains("--value"), "no secret on the command line: {hint}");
}

#[test]
fn list_searches_names_usernames_and_urls_best_first() {
    let dir = tempfile::tempdir().unwrap();
    let a = &vault(dir.path(), &["a"])[0];
    a.ok(&["add", "gmail", "--field", "username=alice@example.com"]);
    a.ok(&["add", "mail server", "--field", "url=https://mx.example.org"]);
    a.ok(&["add", "bank", "--field", "login=bob", "--field", "url=https://bank.example"]);
    a.ok(&["add", "forum", "--field", "notes=mail me"]);
    let names = |q: &str| -> Vec<String> {
        a.json(&["list", q]).as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(names("mail"), ["mail server", "gmail"], "a word start beats a substring; notes are not searched");
    assert_eq!(names("BOB"), ["bank"], "usernames, any case");
    assert_eq!(names("example.org"), ["mail server"], "URLs");
    assert_eq!(names("gml"), ["gmail"], "fuzzy");
    assert!(names("zzz").is_empty());
    assert_eq!(a.json(&["list"]).as_array().unwrap().len(), 4, "no query: everything");
    assert_eq!(a.ok(&["list", "bank"]), "bank\n");
}

#[test]
fn generate_prints_only_the_secret_and_says_its_entropy_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let a = &vault(dir.path(), &["a"])[0];
    let p = a.ok(&["generate", "--length", "32", "--charset", "digits,upper"]);
    let p = p.strip_suffix('\n').unwrap();
    assert_eq!(p.len(), 32);
    assert!(p.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()), "{p}");
    let j = a.json(&["generate", "--words", "6", "--separator", " "]);
    let words: Vec<&str> = j["password"].as_str().unwrap().split(' ').collect();
    assert_eq!(words.len(), 6);
    assert!(words.iter().all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c == '-')));
    assert_eq!(j["entropy_bits"], 77.5, "6 × log2(7776)");
    let (code, err) = fails(a, &["generate", "--charset", "emoji"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown character class 'emoji'"), "{err}");
    assert_eq!(a.json(&["list"]), serde_json::json!([]), "nothing stored");
}

#[test]
fn revoke_takes_a_unique_prefix_and_asks_first() {
    let dir = tempfile::tempdir().unwrap();
    let devs = vault(dir.path(), &["a", "b"]);
    let (a, b) = (&devs[0], &devs[1]);
    carry(b, a, dir.path());
    let victim = b.id();
    let (code, err) = fails(a, &["revoke", &victim[..8]]);
    assert_eq!(code, 1);
    assert!(err.contains("add --yes"), "{err}");
    let revoked = |d: &Device| d.json(&["devices"]).as_array().unwrap().iter().any(|r| r["revoked"] == true);
    assert!(!revoked(a), "nothing changed without a confirmation");
    let (_, err) = fails(a, &["revoke", "abc", "--yes"]);
    assert!(err.contains("at least its first 4 hex characters"), "{err}");
    let unknown = if victim.starts_with("ffff") { "eeee" } else { "ffff" };
    let (code, _) = fails(a, &["revoke", unknown, "--yes"]);
    assert_eq!(code, 3);
    let out = a.json(&["revoke", &victim[..8].to_uppercase(), "--yes"]);
    assert_eq!(out["revoked"], victim.as_str());
    assert!(revoked(a));
    let human = a.ok(&["revoke", &victim, "--yes"]);
    assert!(human.contains("the 24 words still enrol a new device until you run `hearth rotate`"), "{human}");
}

#[test]
fn completions_and_the_manual_come_from_the_cli_itself() {
    let dir = tempfile::tempdir().unwrap();
    let d = Device::new(dir.path(), "a");
    let script = d.ok(&["completions", "bash"]);
    assert!(script.contains("totp") && script.contains("--raw"), "every command and flag");
    let file = dir.path().join("hearth.bash");
    std::fs::write(&file, &script).unwrap();
    let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(check.status.success(), "not valid bash: {}", String::from_utf8_lossy(&check.stderr));
    for shell in ["zsh", "fish"] {
        assert!(d.ok(&["completions", shell]).contains("generate"), "{shell}");
    }
    let man = d.ok(&["man"]);
    assert!(man.contains(".TH hearth 1") && man.contains("without a cloud"), "{}", &man[..200.min(man.len())]);
}

/// Errors say what and where once: the OS error once, the holder of a busy home by pid.
#[test]
fn errors_name_the_cause_once_and_the_busy_homes_holder() {
    let dir = tempfile::tempdir().unwrap();
    let devs = vault(dir.path(), &["a", "b"]);
    let d = devs[0].daemon_on_loopback(&[], &[]);
    let (_, err) = fails(&devs[0], &["daemon", "--no-mdns", "--listen", "127.0.0.1:0"]);
    let pid = d.proc.child.id().to_string();
    assert!(err.contains(&format!("(pid {pid}, a running daemon?)")), "{err}");
    let (_, err) = fails(&devs[1], &["daemon", "--no-mdns", "--listen", &d.addr.to_string()]);
    assert_eq!(err.matches("os error").count(), 1, "{err}");
    assert!(err.contains(&format!("cannot listen on {}", d.addr)), "{err}");
}

#[test]
fn history_shows_earlier_values_masked_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let a = &vault(dir.path(), &["a"])[0];
    a.ok(&["add", "bank", "--field", "user=al", "--field", "password=first-pw"]);
    a.ok(&["edit", "bank", "--field", "password=second-pw"]);
    a.ok(&["edit", "bank", "--field", "user=bo", "--remove-field", "password"]);
    let all = a.json(&["history", "bank"]);
    let rows = all.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["name"], "bank");
    assert_eq!(rows[0]["fields"]["password"], "••••••••");
    assert_eq!(rows[2]["fields"]["password"], serde_json::Value::Null, "removed");
    assert_eq!(rows[0]["device"], a.id().as_str());
    let pw = a.json(&["history", "bank", "password", "--show"]);
    let values: Vec<&serde_json::Value> = pw.as_array().unwrap().iter().map(|r| &r["fields"]["password"]).collect();
    assert_eq!(values, [&serde_json::json!("first-pw"), &serde_json::json!("second-pw"), &serde_json::Value::Null]);
    let user = a.json(&["history", "bank", "user"]);
    assert_eq!(user.as_array().unwrap().len(), 2, "only the changes to that field");
    let human = a.ok(&["history", "bank"]);
    assert!(!human.contains("first-pw") && human.contains("password = ••••••••"), "{human}");
    assert!(human.contains("password removed") && human.contains("UTC"), "{human}");
}
