//! The config file and the environment. Every flag of consequence reads an environment
//! variable (clap's `env`); the config file is a list of such variables (`HEARTH_HOME=…`
//! lines), applied where the environment does not set them, so one list documents both.
//! `hearth --help` ends with that list, the files and the exit statuses, generated from the
//! command line's own definition.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::{bail, Context};

/// Variables read directly rather than through a flag.
const DIRECT: [(&str, &str); 4] = [
    (
        "HEARTH_PASSPHRASE",
        "the passphrase that seals the home (prefer HEARTH_PASSPHRASE_FILE; never in the config file)",
    ),
    ("HEARTH_TURN_PASSWORD", "the password for --turn-url (instead of --turn-password-file)"),
    ("HEARTH_CONFIG", "the config file (default: $XDG_CONFIG_HOME/hearth/config or ~/.config/hearth/config)"),
    ("RUST_LOG", "what is logged to stderr (default: warn)"),
];

/// The exit statuses, documented once here and in the README.
pub(crate) const EXIT_STATUSES: [(u8, &str); 6] = [
    (0, "done"),
    (1, "failed (the message says why)"),
    (2, "the command line (or the config file) is wrong"),
    (3, "not found: no such item, field or device"),
    (4, "locked: the passphrase or the phrase is missing or wrong"),
    (5, "the daemon took a write but sent no reply: it may have been applied (check before retrying)"),
];

/// The config file's path: `HEARTH_CONFIG`, else the XDG default.
fn path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HEARTH_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|p| !p.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".config"),
    };
    Some(base.join("hearth/config"))
}

/// Every environment variable the command line reads, with what it sets.
pub(crate) fn variables(cmd: &clap::Command) -> BTreeMap<String, String> {
    fn walk(cmd: &clap::Command, out: &mut BTreeMap<String, String>) {
        for a in cmd.get_arguments() {
            if let Some(env) = a.get_env() {
                let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                let flag = a.get_long().map(|l| format!("--{l}: ")).unwrap_or_default();
                let text = format!("{flag}{help}");
                // A variable several commands read is described as the daemon's flag.
                let key = env.to_string_lossy().into_owned();
                if cmd.get_name() == "daemon" {
                    out.insert(key, text);
                } else {
                    out.entry(key).or_insert(text);
                }
            }
        }
        for s in cmd.get_subcommands() {
            walk(s, out);
        }
    }
    let mut out = BTreeMap::new();
    walk(cmd, &mut out);
    for (k, v) in DIRECT {
        out.insert(k.to_owned(), v.to_owned());
    }
    out
}

/// Reads the config file, if there is one, into the environment (where not set already).
/// Returns its path. `cmd` builds the command line, to check the names against: only when a
/// file exists (every command starts here).
pub(crate) fn load(cmd: impl FnOnce() -> clap::Command) -> anyhow::Result<Option<PathBuf>> {
    let Some(path) = path() else { return Ok(None) };
    let named = std::env::var_os("HEARTH_CONFIG").is_some_and(|p| !p.is_empty());
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading the config file {}", path.display())),
    };
    let mode = std::fs::metadata(&path)?.permissions().mode();
    if mode & 0o022 != 0 {
        bail!(
            "{}: others may write it (mode {:o}); `chmod go-w` it (it can name the home and the passphrase file)",
            path.display(),
            mode & 0o777
        );
    }
    let known = variables(&cmd());
    let mut set = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{} line {}", path.display(), i + 1);
        let Some((k, v)) = line.split_once('=') else { bail!("{at}: expected NAME=value, like HEARTH_HOME=~/vault") };
        let (k, v) = (k.trim(), v.trim());
        if k == "HEARTH_PASSPHRASE" {
            bail!("{at}: no passphrase in the config file; put it in a 0600 file and set HEARTH_PASSPHRASE_FILE to it");
        }
        if !known.contains_key(k) || k == "HEARTH_CONFIG" {
            let hint = hearth_peer::vault::closest(k, known.keys().map(String::as_str))
                .map(|c| format!(" (did you mean {c}?)"))
                .unwrap_or_default();
            bail!("{at}: {k} is not a setting{hint}; `hearth --help` lists them");
        }
        // A leading ~/ is the home directory, as a shell would expand it.
        let v = match (v.strip_prefix("~/"), std::env::var_os("HOME")) {
            (Some(rest), Some(h)) => PathBuf::from(h).join(rest).to_string_lossy().into_owned(),
            _ => v.to_owned(),
        };
        set.push((k.to_owned(), v));
    }
    for (k, v) in set {
        if std::env::var_os(&k).is_none() {
            std::env::set_var(k, v);
        }
    }
    Ok(Some(path))
}

/// The end of `hearth --help`: files, every variable, exit statuses.
pub(crate) fn footer(cmd: &clap::Command) -> String {
    let mut s = String::from(
        "Files:\n  home     $XDG_DATA_HOME/hearth, or ~/.local/share/hearth (--home, HEARTH_HOME)\n  \
         config   $XDG_CONFIG_HOME/hearth/config, or ~/.config/hearth/config (HEARTH_CONFIG): NAME=value\n           \
         lines of the variables below; the environment and flags win over it\n\nEnvironment:\n",
    );
    for (k, v) in variables(cmd) {
        s += &format!("  {k:<30} {v}\n");
    }
    s += "\nExit status:\n";
    for (code, what) in EXIT_STATUSES {
        s += &format!("  {code}  {what}\n");
    }
    s
}
