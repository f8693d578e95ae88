//! The `hearth-rendezvous` binary as a test process: started on loopback ports, its stderr
//! collected for log checks, killed when dropped.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bin;

/// A free TCP port on loopback (free a moment ago: another process may take it first).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A `redis-server` of its own on a free loopback port, without persistence (nothing reaches
/// a disk), killed when dropped.
pub struct Redis {
    child: std::process::Child,
    /// Its port.
    pub port: u16,
    /// `redis://127.0.0.1:PORT`.
    pub url: String,
    /// Extra flags it was started with (kept for a restart).
    extra: Vec<String>,
}

impl Redis {
    /// Starts it and waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts it with `extra` flags (e.g. `--enable-debug-command local`).
    pub fn start_with(extra: &[&str]) -> Self {
        let port = free_port();
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        let child = Self::spawn(port, &extra);
        Self { child, port, url: format!("redis://127.0.0.1:{port}"), extra }
    }

    fn spawn(port: u16, extra: &[String]) -> std::process::Child {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test installs it)");
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < until, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        child
    }

    /// SIGKILL: it dies with everything it held (no persistence).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again, empty, on the same port (after [`Redis::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        self.child = Self::spawn(self.port, &self.extra);
    }

    /// Runs `redis-cli ARGS` against it; its output, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out =
            Command::new("redis-cli").args(["-p", &self.port.to_string()]).args(args).output().expect("redis-cli");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running rendezvous.
pub struct Rv {
    /// The process.
    pub child: std::process::Child,
    /// The HTTP/WebSocket listener.
    pub http: SocketAddr,
    /// The metrics listener.
    pub metrics: SocketAddr,
    /// The STUN socket, unless `--no-stun`.
    pub stun: Option<SocketAddr>,
    /// Everything it logged so far.
    pub stderr: Arc<Mutex<String>>,
}

impl Drop for Rv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Rv {
    /// Starts the binary on loopback with `extra` flags (trace logs on; `--listen` defaults
    /// to a free loopback port); with `nofile`, under that open-files limit.
    pub fn start(extra: &[&str], nofile: Option<u32>) -> Self {
        Self::start_logging(extra, nofile, "trace")
    }

    /// [`Rv::start`] with log filter `filter` (`RUST_LOG`): timing tests keep the server's
    /// own logging from skewing what they measure.
    pub fn start_logging(extra: &[&str], nofile: Option<u32>, filter: &str) -> Self {
        let cmd = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(bin("hearth-rendezvous"));
                c
            }
            None => Command::new(bin("hearth-rendezvous")),
        };
        Self::spawn(cmd, extra, filter)
    }

    /// Starts the binary inside network namespace `ns` (give `--listen` and `--stun-bind`).
    pub fn start_in(ns: &str, extra: &[&str]) -> Self {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(bin("hearth-rendezvous"));
        Self::spawn(cmd, extra, "trace")
    }

    fn spawn(mut cmd: Command, extra: &[&str], filter: &str) -> Self {
        if !extra.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        if !extra.contains(&"--stun-bind") {
            cmd.args(["--stun-bind", "127.0.0.1:0"]);
        }
        let mut child = cmd
            .args(["--metrics-bind", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", filter)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn hearth-rendezvous");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let mut err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap_or_else(|p| p.into_inner()).push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let want_stun = !extra.contains(&"--no-stun");
        let (mut http, mut metrics, mut stun) = (None, None, None);
        while http.is_none() || metrics.is_none() || (want_stun && stun.is_none()) {
            let l = lines.next().expect("server exited").expect("stdout");
            if let Some(a) = l.strip_prefix("listening http ") {
                http = a.parse().ok();
            } else if let Some(a) = l.strip_prefix("listening metrics ") {
                metrics = a.parse().ok();
            } else if let Some(a) = l.strip_prefix("listening udp ") {
                stun = a.parse().ok();
            }
        }
        let (Some(http), Some(metrics)) = (http, metrics) else { unreachable!("loop ends with both") };
        Self { child, http, metrics, stun, stderr }
    }

    /// The signaling URL.
    pub fn url(&self) -> String {
        format!("ws://{}/v1/signal", self.http)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sends it SIGTERM (a graceful drain).
    pub fn terminate(&self) {
        let ok = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().is_ok_and(|s| s.success());
        assert!(ok, "kill -TERM");
    }

    /// The value of metric `name` (with its labels, e.g. `x_total{kind="refused"}`), 0 if absent.
    pub fn metric(&self, name: &str) -> f64 {
        let text = http_get(self.metrics, "/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

/// A plain `GET path` on `addr`: the whole response, or empty if the connection failed.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::Write;
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return String::new() };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}
