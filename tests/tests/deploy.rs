//! The shipped deployment (`deploy/`) as a self-hoster runs it. Docker can neither build nor
//! pull images here, so the test runs what `compose.yaml` runs, as processes: the real Caddy
//! with the repository's own Caddyfile in front of `hearth-rendezvous` with the environment
//! compose gives it (only the container-network addresses become loopback ones), and two
//! `hearth daemon`s that sync through it over `wss://` with Caddy's local CA. The compose
//! file's hardening, the Dockerfile's build command and HEALTHCHECK, and the systemd unit are
//! checked from the files themselves.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hearth_e2e::bin;
use hearth_e2e::compose::{compose, deploy_dir, env_file, environment, rendezvous_with_env};
use hearth_e2e::device::{wait_until, Device};
use hearth_e2e::rendezvous::free_port;
use serde_json::Value;

const T: Duration = Duration::from_secs(30);

/// The addresses compose puts on its own networks (they only exist inside containers).
const NETWORK_SPECIFIC: [&str; 4] =
    ["HEARTH_LISTEN", "HEARTH_STUN_BIND", "HEARTH_METRICS_BIND", "HEARTH_TRUSTED_PROXY"];

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The rendezvous service's environment as compose would give it: its env file, then its
/// `environment` interpolated with `vars`.
fn rendezvous_env(c: &Value, service: &str, vars: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let s = &c["services"][service];
    let file = s["env_file"].as_str().expect("env_file");
    let mut env = env_file(&deploy_dir().join(file));
    env.extend(environment(s, vars));
    env
}

fn max_connections(env: &BTreeMap<String, String>) -> u64 {
    env.get("HEARTH_MAX_CONNECTIONS").map_or(15_000, |v| v.parse().expect("a number"))
}

fn seconds(v: &Value) -> u64 {
    let s = v.as_str().expect("a duration");
    s.strip_suffix('s').and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("duration {s:?}"))
}

#[test]
fn compose_wires_the_servers_hardening() {
    let c = compose();
    let vars: BTreeMap<String, String> = [("HEARTH_DOMAIN".to_owned(), "vault.example.org".to_owned())].into();
    let networks = &c["networks"];
    assert_eq!(networks["internal"]["internal"], true, "the internal network has no way out");
    let edge_subnet = networks["edge"]["ipam"]["config"][0]["subnet"].as_str().expect("edge subnet");
    for name in ["rendezvous", "rendezvous-2"] {
        let s = &c["services"][name];
        let env = rendezvous_env(&c, name, &vars);
        // The domain is the public host; Caddy's network is the only trusted proxy.
        assert_eq!(env["HEARTH_PUBLIC_HOST"], "vault.example.org", "{name}");
        assert_eq!(env["HEARTH_TRUSTED_PROXY"], edge_subnet, "{name}");
        // Metrics on the service's own internal address, and that port never published.
        let internal_ip = s["networks"]["internal"]["ipv4_address"].as_str().expect("internal address");
        let metrics: SocketAddr = env["HEARTH_METRICS_BIND"].parse().expect("metrics address");
        assert_eq!(metrics.ip().to_string(), internal_ip, "{name}: metrics on the internal network");
        for p in s["ports"].as_array().into_iter().flatten() {
            let p = p.as_str().unwrap_or_default();
            assert!(!p.contains(&metrics.port().to_string()), "{name} publishes its metrics port: {p}");
            assert!(p.ends_with("/udp"), "{name} publishes {p}: only STUN goes around Caddy");
        }
        // Open files above the connection cap + 100; stop grace above the 10 s drain.
        let nofile = s["ulimits"]["nofile"]["soft"].as_u64().expect("nofile");
        assert!(nofile >= max_connections(&env) + 100, "{name}: nofile {nofile}");
        assert!(seconds(&s["stop_grace_period"]) > 10, "{name}");
        assert_eq!(s["read_only"], true, "{name}");
        assert_eq!(s["cap_drop"][0], "ALL", "{name}");
        assert!(s["security_opt"].to_string().contains("no-new-privileges:true"), "{name}");
        // Optional settings stay unset (empty) unless .env gives them.
        for k in ["HEARTH_REDIS_URL", "HEARTH_TURN_URL", "HEARTH_TURN_SECRET_FILE"] {
            assert_eq!(env[k], "", "{name}: {k}");
        }
    }
    assert_eq!(c["services"]["rendezvous-2"]["profiles"][0], "replicas");
    assert_eq!(c["services"]["redis"]["profiles"][0], "replicas");
    assert_eq!(c["services"]["coturn"]["profiles"][0], "turn");
    // With the profiles' settings: Redis for both replicas, and the TURN secret the rendezvous
    // reads is the file coturn is given.
    let mut on = vars.clone();
    on.insert("HEARTH_REDIS_URL".into(), "redis://redis:6379".into());
    on.insert("HEARTH_TURN_URL".into(), "turn:vault.example.org:3479".into());
    let env = rendezvous_env(&c, "rendezvous", &on);
    assert_eq!(env["HEARTH_REDIS_URL"], "redis://redis:6379");
    let secret = &env["HEARTH_TURN_SECRET_FILE"];
    let coturn = c["services"]["coturn"].to_string();
    assert!(coturn.contains(&format!(":{secret}:ro")), "coturn mounts {secret}: {coturn}");
    assert!(coturn.contains("--use-auth-secret") && coturn.contains(&format!("cat {secret}")), "{coturn}");
    assert_eq!(rendezvous_env(&c, "rendezvous-2", &on)["HEARTH_NO_STUN"], "true");
    // Caddy: the domain, and the replicas as upstreams when asked.
    let caddy = environment(&c["services"]["caddy"], &vars);
    assert_eq!(caddy["HEARTH_DOMAIN"], "vault.example.org");
    assert_eq!(caddy["HEARTH_UPSTREAMS"], "rendezvous:8080");
}

#[test]
#[should_panic(expected = "HEARTH_DOMAIN")]
fn compose_refuses_to_start_without_a_domain() {
    rendezvous_env(&compose(), "rendezvous", &BTreeMap::new());
}

/// `curl` with Caddy's root: the HTTP status and body of `url`.
fn curl(url: &str, ca: &std::path::Path) -> (u16, String) {
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "5", "-w", "\n%{http_code}", "--cacert"])
        .arg(ca)
        .arg(url)
        .output()
        .expect("curl (scripts/test installs it)");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = out.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// The Dockerfile's exec-form HEALTHCHECK command, its binaries found in this build.
fn healthcheck_command() -> Vec<String> {
    let text = std::fs::read_to_string(deploy_dir().join("Dockerfile")).expect("Dockerfile");
    let joined = text.replace("\\\n", " ");
    let line = joined.lines().find(|l| l.starts_with("HEALTHCHECK")).expect("a HEALTHCHECK");
    let array = &line[line.find('[').expect("exec form")..];
    let argv: Vec<String> = serde_json::from_str(array.trim()).expect("a JSON array");
    argv
}

#[test]
fn the_shipped_files_serve_two_devices_through_caddy_over_tls() {
    let c = compose();
    let dir = tempfile::tempdir().unwrap();
    let https = free_port();
    let domain = format!("localhost:{https}");
    let vars: BTreeMap<String, String> = [("HEARTH_DOMAIN".to_owned(), domain.clone())].into();

    // The rendezvous with compose's environment; network addresses on loopback.
    let mut env = rendezvous_env(&c, "rendezvous", &vars);
    let (listen, stun, metrics) = (free_port(), free_port(), free_port());
    let loopback = [
        format!("127.0.0.1:{listen}"),
        format!("127.0.0.1:{stun}"),
        format!("127.0.0.1:{metrics}"),
        "127.0.0.1/32".into(),
    ];
    for (k, v) in NETWORK_SPECIFIC.iter().zip(loopback) {
        let given = env.insert((*k).to_owned(), v);
        assert!(given.is_some(), "compose sets {k}");
    }
    let log = dir.path().join("rendezvous.log");
    let (rv, started) = rendezvous_with_env(&env, std::fs::File::create(&log).unwrap().into());
    let _rv = Killed(rv);
    assert!(started, "the rendezvous did not start");

    // Caddy with the shipped Caddyfile and compose's environment for it.
    let mut caddy_env = environment(&c["services"]["caddy"], &vars);
    caddy_env.insert("HEARTH_UPSTREAMS".into(), format!("127.0.0.1:{listen}"));
    caddy_env.insert("CADDY_HTTPS_PORT".into(), https.to_string());
    caddy_env.insert("CADDY_HTTP_PORT".into(), free_port().to_string());
    let caddy = Killed(
        Command::new("caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(deploy_dir().join("Caddyfile"))
            .envs(&caddy_env)
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("caddy.log")).unwrap())
            .spawn()
            .expect("caddy (scripts/test installs it)"),
    );
    let ca = dir.path().join("caddy/pki/authorities/local/root.crt");
    let start = Instant::now();
    let health = loop {
        let h = if ca.is_file() { curl(&format!("https://{domain}/healthz"), &ca) } else { (0, String::new()) };
        if h.0 == 200 || start.elapsed() > T {
            break h;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let caddy_log = || std::fs::read_to_string(dir.path().join("caddy.log")).unwrap_or_default();
    assert_eq!(health, (200, "ok\n".to_owned()), "/healthz through TLS; caddy said: {}", caddy_log());
    // Metrics answer on the internal listener only.
    assert_eq!(curl(&format!("https://{domain}/metrics"), &ca).0, 404);
    let (code, body) = curl(&format!("http://127.0.0.1:{metrics}/metrics"), &ca);
    assert!(code == 200 && body.contains("hearth_"), "{code}");

    // The image's HEALTHCHECK, run with the container's environment, passes.
    let argv = healthcheck_command();
    let exe = std::path::Path::new(&argv[0]).file_name().unwrap().to_str().unwrap().to_owned();
    let hc = Command::new(bin(&exe)).args(&argv[1..]).envs(&env).output().expect("healthcheck");
    assert!(hc.status.success(), "HEALTHCHECK {argv:?}: {}", String::from_utf8_lossy(&hc.stderr));

    // Two devices admitted through Caddy over wss:// sync an edit.
    // The README's "Add your first devices", through this deployment: the first device makes
    // the vault (a sealed home) and runs its daemon; it invites; the new device joins by the
    // short code and runs its daemon with no rendezvous flag; an edit syncs.
    let url = format!("https://{domain}");
    let ca_s = ca.to_string_lossy().into_owned();
    let stun_s = format!("127.0.0.1:{stun}");
    let pass = dir.path().join("passphrase");
    std::fs::write(&pass, "a long family passphrase\n").unwrap();
    let pass_s = pass.to_string_lossy().into_owned();
    let a = Device::new(dir.path(), "a");
    let b = Device::new(dir.path(), "b");
    let sealed = |d: &Device, args: &[&str]| {
        let mut v = vec!["--passphrase-file", pass_s.as_str()];
        v.extend_from_slice(args);
        d.ok(&v)
    };
    sealed(&a, &["init", "--name", "laptop"]);
    let net = ["--rendezvous", url.as_str(), "--rendezvous-ca", ca_s.as_str(), "--stun", stun_s.as_str()];
    let local = ["--passphrase-file", pass_s.as_str(), "--listen", "127.0.0.1:0", "--no-mdns"];
    let _da = a.daemon(&[&local[..], &net[..]].concat());
    sealed(&a, &["add", "deployed", "--field", "password=through-caddy-9"]);
    let inv = [&["--passphrase-file", pass_s.as_str(), "--json", "invite", "--yes"][..], &net[..]].concat();
    let mut invite = hearth_e2e::Proc::spawn(a.cmd(&inv).stderr(Stdio::null()));
    let first: Value = serde_json::from_str(&invite.stdout.next().expect("invite's code").unwrap()).unwrap();
    let code = first["code"].as_str().expect("a short code").to_owned();
    let join =
        [&["--passphrase-file", pass_s.as_str(), "join", code.as_str(), "--name", "phone"][..], &net[..]].concat();
    let out = b.ok(&[&["--json"][..], &join[..]].concat());
    let joined: Value = serde_json::from_str(out.lines().last().unwrap_or_default()).expect("join's last line");
    assert_eq!(joined["ok"], true, "{joined}");
    assert!(invite.child.wait().unwrap().success(), "the invite ended with an error");
    // The new device remembers the rendezvous it paired through.
    let _db = b.daemon(&[&local[..], &["--rendezvous-ca", ca_s.as_str(), "--stun", stun_s.as_str()][..]].concat());
    sealed(&a, &["edit", "deployed", "--field", "password=after-pairing-10"]);
    wait_until(T, "the edit reaching the new device through the deployed rendezvous", || {
        b.run(&["--passphrase-file", &pass_s, "--json", "get", "deployed", "--show"])
            .stdout
            .windows(b"after-pairing-10".len())
            .any(|w| w == b"after-pairing-10")
    });
    for d in [&a, &b] {
        let s = d.json(&["--passphrase-file", &pass_s, "status"]);
        assert_eq!(s["rendezvous"]["connected"], true, "{s}");
    }
    let rv_log = std::fs::read_to_string(&log).unwrap();
    for v in ["through-caddy-9", "after-pairing-10", code.as_str()] {
        assert!(!rv_log.contains(v), "the server saw {v:?}");
    }
    // JSON logs, as rendezvous.env asks.
    assert!(rv_log.lines().next().is_some_and(|l| l.starts_with('{')), "{rv_log}");
    drop(caddy);
}

#[test]
fn the_dockerfile_builds_what_it_copies() {
    // The build stage's cargo command, run here as written but for the profile (a release
    // build would double CI's compile time; the packages, binaries, features and --locked are
    // what this checks), then every binary the runtime stage copies exists. After scripts/test's
    // workspace build it has nothing left to do unless it asks for something that build lacks.
    let text = std::fs::read_to_string(deploy_dir().join("Dockerfile")).expect("Dockerfile");
    let run = text.lines().find(|l| l.starts_with("RUN cargo build")).expect("a cargo build step");
    let argv: Vec<&str> = run["RUN ".len()..].split_whitespace().filter(|a| *a != "--release").collect();
    let root = deploy_dir().join("..");
    let o = Command::new(argv[0]).args(&argv[1..]).current_dir(&root).output().expect("cargo");
    assert!(o.status.success(), "{run}: {}", String::from_utf8_lossy(&o.stderr));
    let mut copied = 0;
    for l in text.lines().filter(|l| l.starts_with("COPY --from=build")) {
        let src = l.split_whitespace().nth(2).expect("a source path");
        let rel = src.strip_prefix("/src/").expect("under the build's /src").replace("/release/", "/debug/");
        assert!(root.join(&rel).is_file(), "{l}: the build made no {rel}");
        copied += 1;
    }
    assert_eq!(copied, 2, "hearth-rendezvous and hearth");
}

#[test]
fn the_systemd_unit_verifies() {
    let Ok(o) = Command::new("systemd-analyze").arg("--version").output() else {
        return eprintln!("systemd-analyze is not installed: skipped");
    };
    assert!(o.status.success());
    // `verify` checks that ExecStart exists: point it (and the env file) at this build.
    let unit = std::fs::read_to_string(deploy_dir().join("hearth-rendezvous.service")).unwrap();
    assert!(
        unit.contains("DynamicUser=yes")
            && unit.contains("ProtectSystem=strict")
            && unit.contains("NoNewPrivileges=yes")
    );
    assert!(unit.contains("\nCapabilityBoundingSet=\n"), "no capabilities");
    let env = env_file(&deploy_dir().join("hearth-rendezvous.env"));
    let nofile: u64 = unit.lines().find_map(|l| l.strip_prefix("LimitNOFILE=")).expect("LimitNOFILE").parse().unwrap();
    assert!(nofile >= max_connections(&env) + 100);
    let stop = unit.lines().find_map(|l| l.strip_prefix("TimeoutStopSec=")).expect("TimeoutStopSec");
    assert!(stop.trim_end_matches('s').parse::<u64>().unwrap() > 10);
    let dir = tempfile::tempdir().unwrap();
    let local = unit
        .replace("/usr/local/bin/hearth-rendezvous", bin("hearth-rendezvous").to_str().unwrap())
        .replace("/etc/hearth/rendezvous.env", deploy_dir().join("hearth-rendezvous.env").to_str().unwrap());
    let path = dir.path().join("hearth-rendezvous.service");
    std::fs::write(&path, local).unwrap();
    let v = Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("systemd-analyze");
    let said = format!("{}{}", String::from_utf8_lossy(&v.stdout), String::from_utf8_lossy(&v.stderr));
    assert!(v.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
}

/// Every `hearth_*` name in `text`, a histogram's `_bucket`/`_sum`/`_count` series by its
/// family's name.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("hearth_") {
        let start = i + at;
        let mut end = start;
        while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
            end += 1;
        }
        let name = &text[start..end];
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        out.insert(family.to_owned());
        i = end;
    }
    out
}

#[test]
fn the_dashboard_and_alerts_name_only_metrics_the_servers_export() {
    // What the servers register (a labelled family appears on /metrics only once used, so
    // the registrations are the list).
    let root = deploy_dir().join("..");
    let mut exported = String::new();
    for f in ["rendezvous/src/server/metrics.rs", "rendezvous/src/server/redis_health.rs", "stun/src/metrics.rs"] {
        exported += &std::fs::read_to_string(root.join(f)).unwrap();
    }
    let exported: std::collections::BTreeSet<String> =
        metric_names(&exported).into_iter().filter(|n| n.len() > "hearth_rv_".len()).collect();
    let dashboard = std::fs::read_to_string(deploy_dir().join("grafana-dashboard.json")).unwrap();
    let parsed: Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(parsed["panels"].as_array().is_some_and(|p| p.len() >= 10));
    let alerts = std::fs::read_to_string(deploy_dir().join("prometheus-alerts.yaml")).unwrap();
    let rules = hearth_e2e::compose::yaml_all(&alerts);
    let rules = rules[0]["groups"][0]["rules"].as_array().expect("rules").len();
    assert!(rules >= 4);
    for (what, text) in [("grafana-dashboard.json", &dashboard), ("prometheus-alerts.yaml", &alerts)] {
        let used: std::collections::BTreeSet<String> = metric_names(text)
            .into_iter()
            .filter(|n| n.starts_with("hearth_rv_") || n.starts_with("hearth_stun_"))
            .collect();
        assert!(!used.is_empty(), "{what} uses no metric");
        for n in &used {
            assert!(exported.contains(n), "{what} uses {n}, which no server exports ({exported:?})");
        }
    }
}
