//! Syncthing's side of the LAN benchmark: two `syncthing serve` instances in namespaces A and
//! B, introduced to each other through their REST API (served on a Unix socket, so the
//! benchmark reaches it from outside the namespaces). Announcements, relays, NAT, STUN, usage
//! and crash reporting are switched off in their config before they start; the namespaces
//! have no route anywhere else in any case.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::workload::records;
use crate::Hosts;

const FOLDER: &str = "vault";
const KEY: &str = "hearth-bench";

/// What Syncthing measured.
pub(crate) struct SyncthingResult {
    /// Version string.
    pub(crate) version: String,
    /// Folder shared with B until B holds every file.
    pub(crate) initial: Duration,
    /// A one-line change on A (plus a scan request) until B's copy has it.
    pub(crate) to_b: Vec<Duration>,
}

struct Instance {
    child: Child,
    sock: PathBuf,
    folder: PathBuf,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on the instance's Unix socket; the JSON reply (or null).
fn api(sock: &Path, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
    let mut s = UnixStream::connect(sock).with_context(|| format!("connect {}", sock.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nX-API-Key: {KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status)?;
    if !status.contains(" 200") {
        bail!("{method} {path}: {}", status.trim());
    }
    let mut chunked = false;
    loop {
        let mut h = String::new();
        r.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        chunked |= h.to_ascii_lowercase().starts_with("transfer-encoding: chunked");
    }
    let mut raw = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            raw.extend_from_slice(&chunk[..n]);
        }
    } else {
        r.read_to_end(&mut raw)?;
    }
    Ok(if raw.is_empty() { Value::Null } else { serde_json::from_slice(&raw).unwrap_or(Value::Null) })
}

fn quiet_config(home: &Path, listen: &str) -> anyhow::Result<()> {
    let path = home.join("config.xml");
    let mut xml = std::fs::read_to_string(&path)?;
    for (from, to) in [
        ("<globalAnnounceEnabled>true", "<globalAnnounceEnabled>false"),
        ("<localAnnounceEnabled>true", "<localAnnounceEnabled>false"),
        ("<relaysEnabled>true", "<relaysEnabled>false"),
        ("<natEnabled>true", "<natEnabled>false"),
        ("<crashReportingEnabled>true", "<crashReportingEnabled>false"),
        ("<autoUpgradeIntervalH>12", "<autoUpgradeIntervalH>0"),
        ("<urAccepted>0", "<urAccepted>-1"),
        ("<stunKeepaliveStartS>180", "<stunKeepaliveStartS>0"),
        ("<listenAddress>default</listenAddress>", &format!("<listenAddress>tcp://{listen}:22000</listenAddress>")),
    ] {
        xml = xml.replace(from, to);
    }
    std::fs::write(&path, xml)?;
    Ok(())
}

fn start(dir: &Path, name: &str, ns: &str, ip: &str) -> anyhow::Result<(Instance, String)> {
    let home = dir.join(name);
    let out =
        Command::new("syncthing").args(["generate", "--home"]).arg(&home).output().context("syncthing generate")?;
    if !out.status.success() {
        bail!("syncthing generate: {}", String::from_utf8_lossy(&out.stderr));
    }
    quiet_config(&home, ip)?;
    let sock = dir.join(format!("{name}.sock"));
    let folder = dir.join(format!("{name}-folder"));
    std::fs::create_dir_all(&folder)?;
    let child = Command::new("ip")
        .args(["netns", "exec", ns, "syncthing", "serve", "--no-browser", "--no-restart", "--no-default-folder"])
        .arg(format!("--home={}", home.display()))
        .arg(format!("--gui-address=unix://{}", sock.display()))
        .arg(format!("--gui-apikey={KEY}"))
        .env("STNOUPGRADE", "1")
        // Run syncthing itself, not its monitor process (which would outlive a kill of the child).
        .env("STMONITORED", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start syncthing")?;
    let inst = Instance { child, sock, folder };
    let end = Instant::now() + Duration::from_secs(30);
    let id = loop {
        if let Ok(v) = api(&inst.sock, "GET", "/rest/system/status", None) {
            break v["myID"].as_str().unwrap_or_default().to_owned();
        }
        if Instant::now() > end {
            bail!("syncthing {name} did not start");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Ok((inst, id))
}

fn share(inst: &Instance, peer_id: &str, peer_ip: &str, own_id: &str) -> anyhow::Result<()> {
    api(
        &inst.sock,
        "POST",
        "/rest/config/devices",
        Some(&json!({"deviceID": peer_id, "addresses": [format!("tcp://{peer_ip}:22000")]})),
    )?;
    let folder = json!({
        "id": FOLDER, "label": FOLDER, "path": inst.folder, "type": "sendreceive",
        "devices": [{"deviceID": own_id}, {"deviceID": peer_id}],
        // The watcher's delay is not counted: the benchmark asks for a rescan of the changed file.
        "fsWatcherEnabled": false, "rescanIntervalS": 3600,
    });
    api(&inst.sock, "POST", "/rest/config/folders", Some(&folder))?;
    Ok(())
}

fn local_files(inst: &Instance) -> u64 {
    api(&inst.sock, "GET", &format!("/rest/db/status?folder={FOLDER}"), None)
        .ok()
        .and_then(|v| (v["needTotalItems"].as_u64() == Some(0)).then(|| v["localFiles"].as_u64()).flatten())
        .unwrap_or(0)
}

fn wait(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> anyhow::Result<()> {
    let end = Instant::now() + timeout;
    while !f() {
        if Instant::now() > end {
            bail!("syncthing: timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

fn record_text(i: usize, title: &str, fields: &[(&str, String)]) -> String {
    let mut s = format!("{title}\n");
    for (k, v) in fields {
        s += &format!("{k}: {v}\n");
    }
    s += &format!("# record {i}\n");
    s
}

/// Runs the Syncthing measurements on the lab's A and B.
pub(crate) fn run(hosts: &Hosts, n: usize, edits: usize) -> anyhow::Result<SyncthingResult> {
    let version = String::from_utf8_lossy(&Command::new("syncthing").arg("--version").output()?.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap_or("?")
        .to_owned();
    let dir = tempfile::tempdir()?;
    let (a, a_id) = start(dir.path(), "a", &hosts.a, &hosts.a_ip)?;
    let (b, b_id) = start(dir.path(), "b", &hosts.b, &hosts.b_ip)?;
    for (i, r) in records(n).iter().enumerate() {
        std::fs::write(a.folder.join(format!("record-{i:05}.txt")), record_text(i, &r.title, &r.fields))?;
    }
    // A indexes its folder first (as Hearth's A has its log before B appears).
    share(&a, &b_id, &hosts.b_ip, &a_id)?;
    wait("A's initial scan", Duration::from_secs(300), || local_files(&a) == n as u64)?;
    let t0 = Instant::now();
    share(&b, &a_id, &hosts.a_ip, &b_id)?;
    wait("B's initial transfer", Duration::from_secs(300), || local_files(&b) == n as u64)?;
    let initial = t0.elapsed();

    let file = "record-00000.txt";
    let mut to_b = Vec::new();
    for i in 0..edits {
        let text = format!("{}password: v{i}\n", std::fs::read_to_string(a.folder.join(file))?);
        let t = Instant::now();
        std::fs::write(a.folder.join(file), &text)?;
        api(&a.sock, "POST", &format!("/rest/db/scan?folder={FOLDER}&sub={file}"), None)?;
        let target = b.folder.join(file);
        wait("the change on B", Duration::from_secs(30), || std::fs::read_to_string(&target).is_ok_and(|t| t == text))?;
        to_b.push(t.elapsed());
    }
    Ok(SyncthingResult { version, initial, to_b })
}
