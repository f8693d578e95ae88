//! Devices as real `hearth` processes: a home directory, optionally inside a network namespace,
//! its CLI commands and its daemon.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{bin, Proc};

/// One device: a home, and the namespace its processes run in (if any).
#[derive(Debug, Clone)]
pub struct Device {
    /// The home directory.
    pub home: PathBuf,
    /// The network namespace (`ip netns exec`), or none for the test's own.
    pub netns: Option<String>,
}

/// A running `hearth daemon`, killed when dropped.
pub struct Daemon {
    /// The process.
    pub proc: Proc,
    /// Where its WebSocket listener is bound.
    pub addr: SocketAddr,
}

impl Device {
    /// A device whose home is `dir/name` (not created yet).
    pub fn new(dir: &Path, name: &str) -> Self {
        Self { home: dir.join(name), netns: None }
    }

    /// The same device, run inside namespace `ns`.
    pub fn in_netns(mut self, ns: &str) -> Self {
        self.netns = Some(ns.to_owned());
        self
    }

    /// A `hearth --home HOME ARGS` command.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(bin("hearth"));
                c
            }
            None => Command::new(bin("hearth")),
        };
        c.arg("--home").arg(&self.home).args(args);
        c.env_remove("HEARTH_PASSPHRASE").env_remove("HEARTH_HOME").env("RUST_LOG", "warn");
        c
    }

    /// Runs a command.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("spawn hearth")
    }

    /// Runs a command that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(o.status.success(), "hearth {args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).expect("utf-8 stdout")
    }

    /// Runs a command with `--json` that must succeed; its output.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.ok(&a)).expect("json output")
    }

    /// Starts `hearth daemon ARGS` and waits for its `listening ws ADDR` line.
    pub fn daemon(&self, args: &[&str]) -> Daemon {
        self.spawn_daemon(args, Stdio::inherit())
    }

    /// `hearth daemon` on a free loopback port without mDNS, with `extra` flags and each of
    /// `peers` as a static peer.
    pub fn daemon_on_loopback(&self, extra: &[&str], peers: &[&Daemon]) -> Daemon {
        let mut args = vec!["--listen".to_owned(), "127.0.0.1:0".to_owned(), "--no-mdns".to_owned()];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        for p in peers {
            args.push("--peer".into());
            args.push(p.addr.to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.daemon(&args)
    }

    /// Like [`Device::daemon`], with the daemon's log (info level) written to `log`.
    pub fn daemon_logged(&self, args: &[&str], log: &Path) -> Daemon {
        self.spawn_daemon(args, std::fs::File::create(log).expect("create log").into())
    }

    fn spawn_daemon(&self, args: &[&str], stderr: Stdio) -> Daemon {
        let mut a = vec!["daemon"];
        a.extend_from_slice(args);
        let mut cmd = self.cmd(&a);
        // HEARTH_TEST_DAEMON_LOG widens the daemons' log when a test needs a closer look.
        let filter = std::env::var("HEARTH_TEST_DAEMON_LOG").unwrap_or_else(|_| "hearth_peer=info".into());
        cmd.env("RUST_LOG", filter).stderr(stderr);
        let mut proc = Proc::spawn(&mut cmd);
        let line = proc.stdout.next().expect("daemon exited before listening").expect("read stdout");
        let addr = line.strip_prefix("listening ws ").unwrap_or_else(|| panic!("unexpected line {line:?}"));
        Daemon { addr: addr.parse().expect("listen address"), proc }
    }

    /// Item names, sorted.
    pub fn names(&self) -> Vec<String> {
        let list = self.json(&["list"]);
        let mut v: Vec<String> =
            list.as_array().expect("array").iter().map(|i| i["name"].as_str().unwrap_or_default().to_owned()).collect();
        v.sort();
        v
    }

    /// This device's id (hex).
    pub fn id(&self) -> String {
        self.json(&["status"])["device_id"].as_str().expect("device_id").to_owned()
    }
}

/// Creates a vault on `names[0]` and enrols the others with its phrase (passed on stdin).
pub fn vault(dir: &Path, names: &[&str]) -> Vec<Device> {
    let first = Device::new(dir, names[0]);
    let init = first.json(&["init", "--no-passphrase"]);
    let phrase = init["phrase"].as_str().expect("phrase").to_owned();
    let mut out = vec![first];
    for n in &names[1..] {
        out.push(join(dir, n, &phrase));
    }
    out
}

/// Enrols device `name` with `phrase`.
pub fn join(dir: &Path, name: &str, phrase: &str) -> Device {
    let d = Device::new(dir, name);
    let mut child = d
        .cmd(&["init", "--no-passphrase", "--phrase", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn init");
    child.stdin.take().expect("stdin").write_all(format!("{phrase}\n").as_bytes()).expect("write phrase");
    assert!(child.wait().expect("wait").success(), "init --phrase failed");
    d
}

/// Carries everything `from` holds to `to` in a bundle file under `dir` (no network).
pub fn carry(from: &Device, to: &Device, dir: &Path) {
    let f = dir.join("carried.bundle");
    let f = f.to_str().expect("utf-8 path");
    from.ok(&["export", f]);
    to.ok(&["import", f]);
}

/// Polls `f` until it holds or `timeout` passes; panics with `what` on timeout.
pub fn wait_until(timeout: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < end, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}
