//! Hearth's side of the LAN benchmark: real `hearth daemon` processes in the lab's namespaces.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hearth_e2e::device::{Daemon, Device};
use hearth_peer::actions::WriteRequest;
use hearth_peer::identity::VaultSecret;
use hearth_peer::ids::DeviceId;
use hearth_peer::node::control::{Client, Reply, Request};

use crate::workload::records;
use crate::Hosts;

/// What Hearth measured.
pub(crate) struct HearthResult {
    /// Daemon start on an empty device until it holds every entry, one per rep.
    pub(crate) initial: Vec<Duration>,
    /// Control-socket edit on A until B holds it.
    pub(crate) to_b: Vec<Duration>,
    /// The same until C (reached only through B) holds it.
    pub(crate) to_c: Vec<Duration>,
    /// `hearth edit` as a process on A until B holds it.
    pub(crate) cli_to_b: Vec<Duration>,
}

pub(crate) use crate::vault_home::{home, source};

/// One control-socket request to the daemon of `home`.
pub(crate) fn control(home: &Path, req: &Request, timeout: Duration) -> anyhow::Result<Reply> {
    let mut c = Client::connect(home).with_context(|| format!("no daemon at {}", home.display()))?;
    Ok(c.request(req, timeout)?)
}

pub(crate) fn wait_for(home: &Path, author: DeviceId, seq: u64, timeout: Duration) -> anyhow::Result<()> {
    let end = Instant::now() + timeout;
    let mut client = loop {
        match Client::connect(home) {
            Some(c) => break c,
            None if Instant::now() < end => std::thread::sleep(Duration::from_millis(1)),
            None => bail!("no daemon at {}", home.display()),
        }
    };
    let req = Request::WaitFor { author: author.to_hex(), seq, timeout_ms: timeout.as_millis() as u64 };
    match client.request(&req, timeout + Duration::from_secs(1))? {
        Reply::Reached => Ok(()),
        other => bail!("waiting for {author}#{seq}: {other:?}"),
    }
}

/// A daemon with static peers only (discovery time is not what is measured); its log goes to
/// a file beside its home.
fn daemon(dev: &Device, peer: Option<&str>) -> Daemon {
    let mut args = vec!["--no-mdns"];
    if let Some(p) = peer {
        args.extend(["--peer", p]);
    }
    dev.daemon_logged(&args, &dev.home.with_extension("log"))
}

/// Runs every Hearth measurement.
pub(crate) fn run(hosts: &Hosts, n: usize, reps: usize, edits: usize) -> anyhow::Result<HearthResult> {
    let dir = tempfile::tempdir()?;
    let secret = VaultSecret::from_bytes([7; 32]);
    let a_id = source(dir.path(), &secret, n)?;
    let a = Device { home: dir.path().join("a"), netns: Some(hosts.a.clone()) };
    let a_addr = format!("{}:{}", hosts.a_ip, hearth_peer::node::DEFAULT_PORT);
    let b_addr = format!("{}:{}", hosts.b_ip_lan2, hearth_peer::node::DEFAULT_PORT);
    let _da = daemon(&a, None);

    let mut initial = Vec::new();
    for rep in 0..reps {
        let name = format!("b{rep}");
        home(dir.path(), &name, &secret, DeviceId([10 + rep as u8; 16]))?;
        let b = Device { home: dir.path().join(&name), netns: Some(hosts.b.clone()) };
        let t0 = Instant::now();
        let db = daemon(&b, Some(&a_addr));
        wait_for(&b.home, a_id, n as u64, Duration::from_secs(120))?;
        initial.push(t0.elapsed());
        if rep + 1 < reps {
            drop(db);
            continue;
        }
        // The last B stays up, with C behind it on the second LAN, for the latency runs.
        home(dir.path(), "c", &secret, DeviceId([3; 16]))?;
        let c = Device { home: dir.path().join("c"), netns: Some(hosts.c.clone()) };
        let _dc = daemon(&c, Some(&b_addr));
        wait_for(&c.home, a_id, n as u64, Duration::from_secs(120))?;
        let mut seq = n as u64;
        let mut control = Client::connect(&a.home).context("a's daemon")?;
        let mut edit = |i: usize| -> anyhow::Result<()> {
            let write = WriteRequest::Edit {
                name: records(1).remove(0).title,
                fields: vec![("password".into(), Some(format!("v{i}")))],
                rename: None,
                secret: vec![],
            };
            match control.request(&Request::Write { write }, Duration::from_secs(10))? {
                Reply::Written(_) => Ok(()),
                other => bail!("edit: {other:?}"),
            }
        };
        let (mut to_b, mut to_c, mut cli_to_b) = (Vec::new(), Vec::new(), Vec::new());
        for (target, out) in [(&b, &mut to_b), (&c, &mut to_c)] {
            for i in 0..edits {
                let t = Instant::now();
                edit(i)?;
                seq += 1;
                wait_for(&target.home, a_id, seq, Duration::from_secs(10))?;
                out.push(t.elapsed());
            }
        }
        // The same through the CLI: a process per edit (the control socket is a file, so the
        // CLI needs no namespace).
        let cli = Device { home: a.home.clone(), netns: None };
        let item = records(1).remove(0).title;
        for i in 0..edits.min(50) {
            let t = Instant::now();
            cli.ok(&["edit", &item, "--field", &format!("password=cli{i}")]);
            seq += 1;
            wait_for(&b.home, a_id, seq, Duration::from_secs(10))?;
            cli_to_b.push(t.elapsed());
        }
        return Ok(HearthResult { initial, to_b, to_c, cli_to_b });
    }
    bail!("no repetitions")
}
