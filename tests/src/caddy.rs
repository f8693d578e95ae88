//! The real Caddy (Debian package) in front of a rendezvous, as docs/OPERATIONS.md
//! recommends: plain HTTP on loopback, or HTTPS with Caddy's own local CA (`tls internal`),
//! whose root the test hands to the daemons (`--rendezvous-ca`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::rendezvous::{free_port, Rv};

/// A running Caddy, killed when dropped.
pub struct Caddy {
    child: Child,
    /// Where it listens (127.0.0.1).
    pub addr: SocketAddr,
    /// The name clients dial: `127.0.0.1:PORT` over HTTP, `localhost:PORT` over HTTPS.
    pub public: String,
    /// Its local CA's root certificate (PEM), with `tls`.
    pub root: Option<PathBuf>,
    dir: tempfile::TempDir,
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Caddy {
    /// Caddy on 127.0.0.1:`port` reverse-proxying everything to `upstream`, over HTTPS with
    /// a certificate for `localhost` from its local CA when `tls`; `None` if it exits first
    /// (the port, free a moment ago, was taken meanwhile).
    pub fn start(upstream: SocketAddr, port: u16, tls: bool) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("Caddyfile");
        let site = if tls {
            // No trust-store install (tests run as root: it would touch the system's), no :80.
            format!("{{\n  admin off\n  skip_install_trust\n  auto_https disable_redirects\n}}\nhttps://localhost:{port} {{\n  tls internal\n  reverse_proxy {upstream}\n}}\n")
        } else {
            format!(
                "{{\n  admin off\n  auto_https off\n}}\nhttp://127.0.0.1:{port} {{\n  reverse_proxy {upstream}\n}}\n"
            )
        };
        std::fs::write(&conf, site).expect("Caddyfile");
        let child = Command::new("caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&conf)
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("caddy (scripts/test installs the Debian package)");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let public = if tls { format!("localhost:{port}") } else { format!("127.0.0.1:{port}") };
        let root = tls.then(|| dir.path().join("caddy/pki/authorities/local/root.crt"));
        let mut c = Caddy { child, addr, public, root, dir };
        let until = Instant::now() + Duration::from_secs(10);
        let ready =
            |c: &Caddy| std::net::TcpStream::connect(c.addr).is_ok() && c.root.as_ref().is_none_or(|r| r.is_file());
        while !ready(&c) {
            assert!(Instant::now() < until, "caddy did not start");
            if c.child.try_wait().ok().flatten().is_some() {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(c)
    }

    /// Its temporary directory (config and, with TLS, its CA).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

/// A rendezvous started with `flags` plus `--public-host` naming a Caddy in front of it
/// (HTTPS with its local CA when `tls`).
pub fn behind_caddy(flags: &[&str], tls: bool) -> (Rv, Caddy) {
    for _ in 0..5 {
        // Caddy's port is chosen first: the rendezvous must know its public name.
        let port = free_port();
        let public = if tls { format!("localhost:{port}") } else { format!("127.0.0.1:{port}") };
        let mut args = flags.to_vec();
        args.extend(["--public-host", &public]);
        let rv = Rv::start(&args, None);
        if let Some(c) = Caddy::start(rv.http, port, tls) {
            return (rv, c);
        }
    }
    panic!("no free port for caddy in five tries")
}
