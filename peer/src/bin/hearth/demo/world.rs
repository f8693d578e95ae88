//! The demo's world: a rendezvous and STUN server embedded in this process on loopback, and
//! devices as real `hearth` processes (this same binary) on homes in one directory.
//!
//! The server is embedded rather than run as `hearth-rendezvous` beside us: `cargo run --bin
//! hearth` builds only this binary, and an installed `hearth` alone can show the whole path.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hearth_rendezvous::server;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// How long one condition may take before the demo gives up on its step.
pub(crate) const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The pids of the long-lived processes the demo started, for Ctrl-C to stop.
#[derive(Clone, Default)]
pub(crate) struct Pids(Arc<Mutex<Vec<u32>>>);

impl Pids {
    fn add(&self, pid: u32) {
        if let Ok(mut v) = self.0.lock() {
            v.push(pid);
        }
    }

    fn remove(&self, pid: u32) {
        if let Ok(mut v) = self.0.lock() {
            v.retain(|p| *p != pid);
        }
    }

    /// Asks every process still running to stop (SIGTERM: daemons close their sessions).
    pub(crate) fn terminate_all(&self) {
        let pids = self.0.lock().map(|v| v.clone()).unwrap_or_default();
        for pid in pids {
            if let Ok(p) = i32::try_from(pid) {
                let _ = kill(Pid::from_raw(p), Signal::SIGTERM);
            }
        }
    }
}

/// The rendezvous (with its STUN) serving on loopback inside this process.
pub(crate) struct Embedded {
    /// The URL devices are given (`http://127.0.0.1:PORT`).
    pub(crate) url: String,
    /// The STUN server's address.
    pub(crate) stun: SocketAddr,
    _stun_server: hearth_stun::Server,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Embedded {
    /// Starts both on free loopback ports; they run on `rt` until this is dropped.
    pub(crate) fn start(rt: &tokio::runtime::Runtime) -> anyhow::Result<Self> {
        let registry = prometheus::Registry::new();
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let cfg = hearth_stun::ServerConfig { binds: vec![loopback], threads: 1, ..Default::default() };
        let metrics = hearth_stun::StunMetrics::register(&registry).context("STUN metrics")?;
        let stun_server = hearth_stun::Server::start(&cfg, metrics).context("starting the embedded STUN server")?;
        let stun = *stun_server.local_addrs().first().context("the STUN server bound no address")?;
        let listener = rt.block_on(async { server::bind(loopback) }).context("binding the embedded rendezvous")?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        // The name devices dial it by, as a self-hoster's --public-host would say.
        let config = server::Config { public_hosts: vec![addr.to_string()], ..server::Config::default() };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(server::run(listener, config, registry, async move {
            let _ = stopped.await;
        }));
        Ok(Self { url, stun, _stun_server: stun_server, _stop: stop })
    }
}

/// One device: a name and a home under the demo's directory.
pub(crate) struct Dev {
    /// Its name (also the home's directory name and the device name it enrols with).
    pub(crate) name: &'static str,
    /// Its home.
    pub(crate) home: PathBuf,
    exe: PathBuf,
    logs: PathBuf,
    pids: Pids,
}

impl Dev {
    /// A device whose home will be `dir/name`.
    pub(crate) fn new(dir: &Path, name: &'static str, pids: &Pids) -> anyhow::Result<Self> {
        Ok(Self {
            name,
            home: dir.join(name),
            exe: std::env::current_exe().context("finding this hearth binary")?,
            logs: dir.join("logs"),
            pids: pids.clone(),
        })
    }

    /// `hearth --home HOME ARGS`, with none of the caller's HEARTH_* settings.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.exe);
        c.arg("--home").arg(&self.home).args(args).stdin(Stdio::null());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("HEARTH_") {
                c.env_remove(k);
            }
        }
        c.env("RUST_LOG", "warn");
        c
    }

    /// Runs a command to its end; its stdout, or an error with what it said.
    pub(crate) fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let o = self.cmd(args).output().with_context(|| format!("running hearth {}", args.join(" ")))?;
        if !o.status.success() {
            bail!("{}: `hearth {}` failed: {}", self.name, args.join(" "), String::from_utf8_lossy(&o.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// Runs `hearth --json ARGS`; its output parsed.
    pub(crate) fn json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.run(&a)?;
        let last = out.lines().last().unwrap_or_default();
        serde_json::from_str(last).with_context(|| format!("{}: `hearth {}` printed {last:?}", self.name, a.join(" ")))
    }

    /// Starts `cmd` (stdout piped, `stderr` where asked), registered for Ctrl-C: the process,
    /// its stdout and its first line (empty if it exited first).
    fn start(&self, mut cmd: Command, stderr: Stdio) -> anyhow::Result<(Proc, BufReader<ChildStdout>, String)> {
        let mut child =
            cmd.stdout(Stdio::piped()).stderr(stderr).spawn().with_context(|| format!("starting {cmd:?}"))?;
        self.pids.add(child.id());
        let mut out = BufReader::new(child.stdout.take().context("no stdout")?);
        let proc = Proc { child, pids: self.pids.clone(), _stdout: None };
        let mut first = String::new();
        out.read_line(&mut first)?;
        Ok((proc, out, first.trim().to_owned()))
    }

    /// Starts a long-running command with its stdout piped (an invite); its first line.
    pub(crate) fn spawn(&self, args: &[&str]) -> anyhow::Result<(Proc, String)> {
        let (mut proc, out, first) = self.start(self.cmd(args), Stdio::piped())?;
        if first.is_empty() {
            let err = proc.stderr();
            bail!("{}: `hearth {}` exited at once: {err}", self.name, args.join(" "));
        }
        proc._stdout = Some(out);
        Ok((proc, first))
    }

    /// Starts `hearth daemon` on a free loopback port, without mDNS (loopback has no
    /// multicast), with `extra` flags; its log goes to `logs/NAME-daemon.log`.
    pub(crate) fn daemon(&self, extra: &[&str]) -> anyhow::Result<Daemon> {
        std::fs::create_dir_all(&self.logs)?;
        let log_path = self.logs.join(format!("{}-daemon.log", self.name));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        let mut args = vec!["daemon", "--listen", "127.0.0.1:0", "--no-mdns"];
        args.extend_from_slice(extra);
        let mut cmd = self.cmd(&args);
        cmd.env("RUST_LOG", "hearth_peer=info");
        let (mut proc, out, line) = self.start(cmd, log.into())?;
        let Some(addr) = line.strip_prefix("listening ws ").and_then(|a| a.parse().ok()) else {
            drop(proc.stop());
            bail!("{}'s daemon did not start (its log: {})", self.name, log_path.display());
        };
        // Keep reading so a later line (a restart's) never blocks the daemon on a full pipe.
        std::thread::spawn(move || for _ in out.lines() {});
        Ok(Daemon { proc, addr })
    }

    /// Polls `ok` (every 50 ms) until it holds, at most [`STEP_TIMEOUT`].
    pub(crate) fn wait(&self, what: &str, mut ok: impl FnMut(&Self) -> anyhow::Result<bool>) -> anyhow::Result<()> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            if ok(self)? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("{}: {what} did not happen within {} s", self.name, STEP_TIMEOUT.as_secs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The `--json status` output.
    pub(crate) fn status(&self) -> anyhow::Result<Value> {
        self.json(&["status"])
    }

    /// The value of an item's field (unmasked), if the item has arrived and has that field.
    pub(crate) fn field(&self, item: &str, field: &str) -> anyhow::Result<Option<String>> {
        let o = self.cmd(&["--json", "get", item, "--show"]).output().context("running hearth get")?;
        // Exit status 3: no such item (yet).
        if o.status.code() == Some(3) {
            return Ok(None);
        }
        if !o.status.success() {
            bail!("{}: `hearth get {item}` failed: {}", self.name, String::from_utf8_lossy(&o.stderr).trim());
        }
        let v: Value = serde_json::from_slice(&o.stdout).context("hearth get's JSON")?;
        Ok(v["fields"][field].as_str().map(str::to_owned))
    }
}

/// A long-running child process, stopped when dropped.
pub(crate) struct Proc {
    child: Child,
    pids: Pids,
    /// Held open so its later lines never meet a closed pipe.
    _stdout: Option<BufReader<ChildStdout>>,
}

impl Proc {
    /// Waits for it to exit; whether it succeeded and what it said on stderr.
    pub(crate) fn finish(mut self) -> anyhow::Result<(bool, String)> {
        let status = self.child.wait()?;
        self.pids.remove(self.child.id());
        Ok((status.success(), self.stderr()))
    }

    fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(e) = self.child.stderr.as_mut() {
            let _ = std::io::Read::read_to_string(e, &mut s);
        }
        s.trim().to_owned()
    }

    /// SIGTERM, then up to 5 s for it to exit, then SIGKILL.
    pub(crate) fn stop(&mut self) -> std::io::Result<()> {
        if self.child.try_wait()?.is_none() {
            if let Ok(p) = i32::try_from(self.child.id()) {
                let _ = kill(Pid::from_raw(p), Signal::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.child.try_wait()?.is_none() {
                if Instant::now() >= deadline {
                    self.child.kill()?;
                    self.child.wait()?;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.pids.remove(self.child.id());
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A running `hearth daemon`.
pub(crate) struct Daemon {
    /// The process (stopped when this is dropped).
    pub(crate) proc: Proc,
    /// Its WebSocket listener.
    pub(crate) addr: SocketAddr,
}
