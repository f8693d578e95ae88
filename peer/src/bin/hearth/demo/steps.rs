//! The demo's steps, run against real `hearth` processes (see the module above).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hearth_peer::pairing::qr;
use serde_json::{json, Value};

use super::world::{Dev, Embedded, Pids};
use super::DemoArgs;

/// Titles of the steps, in order.
const STEPS: [&str; 8] = [
    "start a rendezvous server and STUN on loopback, inside this process",
    "alice creates the vault",
    "bob joins by invite through the rendezvous (QR code, link or short code)",
    "alice and bob sync over the LAN (WebSocket between their daemons)",
    "carol joins through bob and, with no LAN path, syncs with him by WebRTC",
    "an edit on alice reaches carol through bob (alice and carol never connect)",
    "bob goes away; alice and carol change the same password: the conflict is kept",
    "bob resolves the conflict; the chosen value reaches everyone",
];

/// Prints the steps as they go (human text, or one JSON line each) and keeps their times.
struct Show {
    json: bool,
    dir: PathBuf,
    step: usize,
    started: Instant,
    times: Vec<Duration>,
}

impl Show {
    fn begin(&mut self) {
        self.started = Instant::now();
        if !self.json {
            println!("\n[{}/{}] {}", self.step + 1, STEPS.len(), STEPS[self.step]);
        }
    }

    /// A line under the step (human output only).
    fn say(&self, line: impl AsRef<str>) {
        if !self.json {
            for l in line.as_ref().lines() {
                println!("      {l}");
            }
        }
    }

    /// The command a person would type for this step.
    fn cmd(&self, dev: &Dev, args: &[&str]) {
        let plain = |a: &str| a.chars().all(|c| c.is_ascii_alphanumeric() || "_./:=@,+-".contains(c));
        let args: Vec<String> =
            args.iter().map(|a| if plain(a) { (*a).to_owned() } else { format!("'{a}'") }).collect();
        self.say(format!("$ hearth --home {} {}", self.rel(dev), args.join(" ")));
    }

    fn rel(&self, dev: &Dev) -> String {
        dev.home.strip_prefix(&self.dir).map_or_else(|_| dev.home.display().to_string(), |p| p.display().to_string())
    }

    fn done(&mut self, detail: Value) {
        let took = self.started.elapsed();
        self.times.push(took);
        if self.json {
            println!(
                "{}",
                json!({"step": self.step + 1, "title": STEPS[self.step], "ok": true, "ms": took.as_millis() as u64, "detail": detail})
            );
        } else {
            println!("      ✓ {} ms", took.as_millis());
        }
        self.step += 1;
    }
}

pub(super) fn run(json: bool, a: DemoArgs) -> anyhow::Result<()> {
    let dir = match &a.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("hearth-demo-{}-{:08x}", std::process::id(), rand::random::<u32>())),
    };
    let mut b = std::fs::DirBuilder::new();
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(&dir).with_context(|| format!("creating {} (it must not exist yet)", dir.display()))?;
    let rt = crate::daemon::runtime()?;
    let pids = Pids::default();
    let server = Embedded::start(&rt)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (dir2, pids2) = (dir.clone(), pids.clone());
    let (url, stun) = (server.url.clone(), server.stun.to_string());
    std::thread::spawn(move || {
        let mut show = Show { json, dir: dir2.clone(), step: 0, started: Instant::now(), times: Vec::new() };
        let r = steps(&mut show, &dir2, &pids2, &url, &stun).map(|()| show);
        let _ = tx.send(r);
    });
    let result = rt.block_on(async {
        tokio::select! {
            r = rx => r.unwrap_or_else(|_| Err(anyhow::anyhow!("the demo stopped without a result"))),
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    // Whatever happened, no process of ours outlives the demo.
    pids.terminate_all();
    drop(server);
    rt.shutdown_background();
    match result {
        Ok(show) => {
            summary(&show, a.keep);
            if !a.keep {
                remove(&dir);
            }
            Ok(())
        }
        Err(e) if e.to_string() == "interrupted" => {
            if !a.keep {
                std::thread::sleep(Duration::from_millis(300));
                remove(&dir);
            }
            bail!(
                "demo interrupted{}",
                if a.keep { format!("; the homes are in {}", dir.display()) } else { "; cleaned up".into() }
            )
        }
        Err(e) => Err(e.context(format!("the demo failed; its homes and daemon logs are kept in {}", dir.display()))),
    }
}

/// Removes the demo's directory (daemons may take a moment to let go of their files).
fn remove(dir: &Path) {
    for _ in 0..10 {
        if std::fs::remove_dir_all(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The id a device enrolled with, from `init`'s or `join`'s JSON.
fn id_of(v: &Value) -> anyhow::Result<String> {
    v["device_id"].as_str().map(str::to_owned).with_context(|| format!("no device id in {v}"))
}

/// The `(device, path)` of each peer in a `status --json`.
fn peers(status: &Value) -> Vec<(String, String)> {
    status["peers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (p["device"].as_str().unwrap_or_default().to_owned(), p["path"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

/// True when `dev` has a live session with `other` over `path`.
fn linked(dev: &Dev, other: &str, path: &str) -> anyhow::Result<bool> {
    Ok(peers(&dev.status()?).iter().any(|(d, p)| d == other && p == path))
}

/// `inviter` runs `invite ARGS` (the command printed; with `qr_for`, the rendezvous URL, the
/// QR code, link and short code too), `joiner` joins by the link under `name`: the join's JSON.
fn pair(
    show: &Show,
    (inviter, args): (&Dev, &[&str]),
    (joiner, name): (&Dev, &str),
    stun: &str,
    qr_for: Option<&str>,
) -> anyhow::Result<Value> {
    show.cmd(inviter, args);
    let inv_args = [&["--json"][..], args].concat();
    let (invite, first) = inviter.spawn(&inv_args)?;
    let offer: Value = serde_json::from_str(&first).with_context(|| format!("invite printed {first:?}"))?;
    let link = offer["url"].as_str().context("no invite URL")?.to_owned();
    if let Some(url) = qr_for {
        let code = offer["code"].as_str().unwrap_or_default();
        show.say(qr::terminal(&link).unwrap_or_default());
        show.say(format!("scan it on the new device, or open {link}"));
        show.say(format!("or type there: hearth join {code} --rendezvous {url}"));
    }
    let join = ["join", &link, "--no-passphrase", "--name", name, "--no-mdns", "--stun", stun];
    show.cmd(joiner, &join);
    let joined = joiner.json(&join)?;
    let (ok, err) = invite.finish()?;
    if !ok {
        bail!("{}'s invite failed: {err}", inviter.name);
    }
    Ok(joined)
}

fn steps(show: &mut Show, dir: &Path, pids: &Pids, url: &str, stun: &str) -> anyhow::Result<()> {
    let alice = Dev::new(dir, "alice", pids)?;
    let bob = Dev::new(dir, "bob", pids)?;
    let carol = Dev::new(dir, "carol", pids)?;
    if !show.json {
        println!("Hearth demo: three devices, one vault, no cloud (homes in {}).", dir.display());
    }

    show.begin();
    show.say(format!("rendezvous {url}   STUN udp {stun}"));
    show.say("(a family runs this on a small server: `hearth-rendezvous`; it relays sealed offers only)");
    show.done(json!({"rendezvous": url, "stun": stun}));

    show.begin();
    let args = ["init", "--no-passphrase", "--name", "alice"];
    show.cmd(&alice, &args);
    let made = alice.json(&args)?;
    let alice_id = id_of(&made)?;
    let words = made["phrase"].as_str().unwrap_or_default().split(' ').count();
    show.say(format!("vault {}, device alice = {}", made["vault_id"].as_str().unwrap_or_default(), alice_id));
    show.say(format!(
        "its {words}-word phrase is shown once, to keep on paper (a real home also seals it with a passphrase)"
    ));
    for args in [
        &["add", "wifi", "--field", "ssid=hearth-home", "--field", "password=correct-horse-7"][..],
        &["add", "bank", "--field", "username=alice", "--generate", "password"][..],
    ] {
        show.cmd(&alice, args);
        alice.run(args)?;
    }
    show.done(json!({"device": alice_id, "items": 2}));

    show.begin();
    let args = ["invite", "--rendezvous", url, "--yes", "--no-mdns", "--stun", stun, "--expires", "2m"];
    let joined = pair(show, (&alice, &args), (&bob, "bob"), stun, Some(url))?;
    let bob_id = id_of(&joined)?;
    show.say(format!("both screens showed the same security code; bob = {bob_id} holds {} entries", joined["entries"]));
    show.done(json!({"device": bob_id, "entries": joined["entries"]}));

    show.begin();
    show.cmd(&alice, &["daemon", "--listen", "127.0.0.1:0", "--no-mdns"]);
    let mut alice_d = alice.daemon(&[])?;
    let alice_addr = alice_d.addr.to_string();
    let bob_args = ["--peer", alice_addr.as_str(), "--stun", stun];
    show.cmd(&bob, &["daemon", "--listen", "127.0.0.1:0", "--no-mdns", "--peer", &alice_addr]);
    show.say("(on a real LAN the daemons find each other by mDNS; bob also stays joined to the rendezvous he paired through)");
    let mut bob_d = bob.daemon(&bob_args)?;
    let args = ["edit", "wifi", "--field", "password=tr0ub4dor-8"];
    show.cmd(&alice, &args);
    alice.run(&args)?;
    bob.wait("alice's edit arriving", |d| Ok(d.field("wifi", "password")?.as_deref() == Some("tr0ub4dor-8")))?;
    bob.wait("a LAN session with alice", |d| linked(d, &alice_id, "lan"))?;
    show.say("bob has the new wifi password; `hearth status` on bob: peer alice via lan");
    show.done(json!({"path": "lan"}));

    show.begin();
    let args = ["invite", "--yes", "--no-mdns", "--stun", stun, "--expires", "2m"];
    let joined = pair(show, (&bob, &args), (&carol, "carol"), stun, None)?;
    let carol_id = id_of(&joined)?;
    show.cmd(&carol, &["daemon", "--stun", stun]);
    let _carol_d = carol.daemon(&["--stun", stun])?;
    carol.wait("a WebRTC session with bob", |d| linked(d, &bob_id, "webrtc"))?;
    show.say(format!(
        "carol = {carol_id}; `hearth status` on carol: peer bob via webrtc (ICE, DTLS, SCTP; Noise inside)"
    ));
    show.done(json!({"device": carol_id, "path": "webrtc"}));

    show.begin();
    let args = ["add", "door", "--field", "code=4711"];
    show.cmd(&alice, &args);
    alice.run(&args)?;
    carol.wait("alice's new item arriving", |d| Ok(d.field("door", "code")?.as_deref() == Some("4711")))?;
    let carol_peers: Vec<String> = peers(&carol.status()?).into_iter().map(|(d, _)| d).collect();
    if carol_peers.contains(&alice_id) {
        bail!("carol connected to alice directly, which this demo's networks do not allow");
    }
    show.say("carol has 'door': alice → bob over the LAN, bob → carol over WebRTC");
    show.done(json!({"through": bob_id}));

    show.begin();
    show.say("bob's daemon stops: alice and carol can no longer reach each other");
    bob_d.proc.stop()?;
    let alice_edit = ["edit", "wifi", "--field", "password=alice-picked-this"];
    let carol_edit = ["edit", "wifi", "--field", "password=carol-picked-this"];
    show.cmd(&alice, &alice_edit);
    alice.run(&alice_edit)?;
    show.cmd(&carol, &carol_edit);
    carol.run(&carol_edit)?;
    show.say("bob's daemon starts again");
    bob_d = bob.daemon(&bob_args)?;
    for d in [&alice, &bob, &carol] {
        d.wait("the conflict arriving", |d| Ok(d.status()?["conflicts"] == 1))?;
    }
    show.cmd(&carol, &["conflicts", "--show"]);
    let listed = carol.run(&["conflicts", "--show"])?;
    show.say(listed.lines().next().unwrap_or_default());
    let c = carol.json(&["conflicts", "--show"])?;
    show.say("every device keeps both values: the later write wins the display, the other is never dropped");
    show.done(json!({"conflicts": c}));

    show.begin();
    let args = ["resolve", "wifi", "password", "--value", "carol-picked-this"];
    show.cmd(&bob, &args);
    bob.run(&args)?;
    for d in [&alice, &bob, &carol] {
        d.wait("the resolution arriving", |d| {
            Ok(d.status()?["conflicts"] == 0 && d.field("wifi", "password")?.as_deref() == Some("carol-picked-this"))
        })?;
    }
    show.say("no conflicts left on alice, bob or carol; wifi password = carol-picked-this everywhere");
    show.done(json!({"conflicts": 0}));

    bob_d.proc.stop()?;
    alice_d.proc.stop()?;
    Ok(())
}

/// The closing table (or JSON line), and how to explore what `--keep` left.
fn summary(show: &Show, keep: bool) {
    let total: Duration = show.times.iter().sum();
    if show.json {
        let steps: Vec<Value> =
            STEPS.iter().zip(&show.times).map(|(t, d)| json!({"title": t, "ms": d.as_millis() as u64})).collect();
        let dir = keep.then(|| show.dir.display().to_string());
        println!("{}", json!({"ok": true, "steps": steps, "total_ms": total.as_millis() as u64, "dir": dir}));
        return;
    }
    println!("\nSummary");
    for (i, (t, d)) in STEPS.iter().zip(&show.times).enumerate() {
        println!("  {}. {:<76} {:>6} ms", i + 1, t, d.as_millis());
    }
    println!("  total {:>80} ms", total.as_millis());
    if keep {
        let d = show.dir.display();
        println!("\nThe homes are kept in {d} (the daemons are stopped). Try:");
        println!("  hearth --home {d}/carol list");
        println!("  hearth --home {d}/alice history wifi password --show");
        println!("  hearth --home {d}/bob devices");
        println!("  hearth --home {d}/bob daemon --listen 127.0.0.1:0 --no-mdns   # and `status` beside it");
        println!("Remove it with: rm -r {d}");
    } else {
        println!("\nEverything it made is removed (`hearth demo --keep` leaves the homes to explore).");
    }
}
