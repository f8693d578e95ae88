//! Reading the shipped deployment files (`deploy/`) as their tools would: the compose file
//! parsed (PyYAML, as JSON) with compose's `${VAR…}` interpolation, and `KEY=VALUE` env files.
//! The deployment tests run what these files say; there is no second copy of them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The repository's `deploy/` directory.
pub fn deploy_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    dir.canonicalize().unwrap_or(dir)
}

/// `deploy/compose.yaml` as JSON (YAML anchors and merge keys resolved).
pub fn compose() -> Value {
    let path = deploy_dir().join("compose.yaml");
    let o = Command::new("python3")
        .args(["-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"])
        .arg(&path)
        .output()
        .expect("python3 (scripts/test installs PyYAML)");
    assert!(o.status.success(), "parsing {}: {}", path.display(), String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("json")
}

/// Every document of a multi-document YAML text (a `helm template` rendering), as JSON;
/// empty documents dropped.
pub fn yaml_all(text: &str) -> Vec<Value> {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args(["-c", "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 (scripts/test installs PyYAML)");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write yaml");
    let o = child.wait_with_output().expect("python3");
    assert!(o.status.success(), "parsing YAML: {}", String::from_utf8_lossy(&o.stderr));
    match serde_json::from_slice(&o.stdout).expect("json") {
        Value::Array(v) => v,
        other => panic!("expected documents, got {other}"),
    }
}

/// `hearth-rendezvous` run with exactly `env` (none of the caller's `HEARTH_*` variables),
/// stderr to `stderr`: the process and whether it printed `listening http` (false: it exited
/// first). The deployment tests run the server as compose or the chart would configure it.
pub fn rendezvous_with_env(env: &BTreeMap<String, String>, stderr: std::process::Stdio) -> (std::process::Child, bool) {
    use std::io::BufRead;
    let mut cmd = Command::new(crate::bin("hearth-rendezvous"));
    for (k, _) in std::env::vars() {
        if k.starts_with("HEARTH_") {
            cmd.env_remove(k);
        }
    }
    let mut child =
        cmd.envs(env).stdout(std::process::Stdio::piped()).stderr(stderr).spawn().expect("hearth-rendezvous");
    let out = child.stdout.take().expect("stdout");
    let started = std::io::BufReader::new(out).lines().any(|l| l.is_ok_and(|l| l.starts_with("listening http")));
    (child, started)
}

/// `KEY=VALUE` lines of an env file (comments and blank lines skipped).
pub fn env_file(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("{}: not KEY=VALUE: {l:?}", path.display()));
            (k.trim().to_owned(), v.trim().to_owned())
        })
        .collect()
}

/// Compose's interpolation of `s` with `vars`: `$$`, `${V}`, `${V:-default}`, `${V-default}`,
/// `${V:+replacement}`, `${V:?error}` (an error here is a panic naming it).
pub fn interpolate(s: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        let Some(r) = rest.strip_prefix('{') else {
            out.push('$');
            continue;
        };
        let end = r.find('}').unwrap_or_else(|| panic!("unclosed ${{ in {s:?}"));
        let expr = &r[..end];
        rest = &r[end + 1..];
        let name_len = expr.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(expr.len());
        let (name, op) = expr.split_at(name_len);
        let val = vars.get(name).map(String::as_str);
        let set = val.is_some_and(|v| !v.is_empty());
        out.push_str(&match op {
            "" => val.unwrap_or_default().to_owned(),
            o if o.starts_with(":-") => {
                if set {
                    val.unwrap_or_default().to_owned()
                } else {
                    o[2..].to_owned()
                }
            }
            o if o.starts_with('-') => val.map_or_else(|| o[1..].to_owned(), str::to_owned),
            o if o.starts_with(":+") => {
                if set {
                    o[2..].to_owned()
                } else {
                    String::new()
                }
            }
            o if o.starts_with(":?") => {
                assert!(set, "compose would stop: {name}: {}", &o[2..]);
                val.unwrap_or_default().to_owned()
            }
            o => panic!("unknown interpolation {o:?} in {s:?}"),
        });
    }
    out.push_str(rest);
    out
}

/// A service's `environment` mapping, interpolated with `vars`.
pub fn environment(service: &Value, vars: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    service["environment"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let raw = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), interpolate(&raw, vars))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_follows_compose() {
        let vars: BTreeMap<String, String> =
            [("A", "x"), ("E", "")].iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        assert_eq!(interpolate("${A}-${B}-$$-${A:-d}-${E:-d}-${E-d}-${B-d}", &vars), "x--$-x-d--d");
        assert_eq!(interpolate("${A:+on}|${E:+on}|${B:+on}", &vars), "on||");
        assert_eq!(interpolate("${A:?need A}", &vars), "x");
    }

    #[test]
    #[should_panic(expected = "need B")]
    fn a_required_variable_stops_compose() {
        interpolate("${B:?need B}", &BTreeMap::new());
    }
}
