//! `hearth join`: meets the inviting device (rendezvous room or LAN), runs the pairing
//! exchange, enrols this new home with the vault secret it receives sealed, and syncs the
//! whole vault through a short-lived node, with a progress bar.

use std::io::IsTerminal;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::bail;
use hearth_peer::home::{HomeError, Protection};
use hearth_peer::identity::{VaultKeys, VaultSecret};
use hearth_peer::ids::DeviceId;
use hearth_peer::node::{rendezvous::signal_url, Node};
use hearth_peer::pairing::link::{self, Link, LinkError, Received};
use hearth_peer::pairing::{Exchange, Grant, JoinTarget, Joined, Output, PairError};
use rand::rngs::OsRng;
use serde_json::json;
use zeroize::Zeroizing;

use crate::commands::{new_protection, now_ms, read_secret, Ctx};

/// `hearth join`'s flags.
#[derive(Debug, clap::Args)]
pub(crate) struct JoinArgs {
    /// The invite: its URL (hearth://join?…, what the QR code holds) or its short code
    /// (4821-apple-river-stone); "-" reads it from stdin (or asks, hidden, at a terminal).
    #[arg(value_name = "URL|CODE")]
    invite: String,
    /// Where a bare code meets the inviter: the vault's rendezvous (a URL names its own;
    /// without either, the code is looked for on this LAN).
    #[arg(long, env = "HEARTH_RENDEZVOUS", value_name = "URL")]
    rendezvous: Option<String>,
    /// A name for this device (kept on this device only).
    #[arg(long)]
    name: Option<String>,
    /// Keep the vault secret in a 0600 key file instead of sealing it with a passphrase (a
    /// home that pairs again after a rotation keeps the protection it has).
    #[arg(long)]
    no_passphrase: bool,
    #[command(flatten)]
    net: crate::follow::SyncFlags,
    /// How long to wait for the whole vault after enrolling (90s, 5m, ...).
    #[arg(long, default_value = "5m", value_parser = crate::invite::parse_duration, value_name = "DURATION")]
    sync_timeout: Duration,
}

pub(crate) fn run(ctx: &Ctx, a: JoinArgs) -> anyhow::Result<()> {
    // A home whose vault another device rotated pairs again in place; any other is refused.
    let retired = if ctx.home.exists() { Some(retired_home(ctx)?) } else { None };
    let text = if a.invite == "-" { read_secret("invite URL or code: ")? } else { Zeroizing::new(a.invite.clone()) };
    let target = JoinTarget::parse(&text, a.rendezvous.as_deref())?;
    if let (Some(from_url), Some(given)) = (&target.rendezvous, &a.rendezvous) {
        if signal_url(from_url) != signal_url(given) {
            bail!("this invite is for the rendezvous {from_url}, not {given}: join with the invite alone");
        }
    }
    if target.rendezvous.is_none() && a.net.no_mdns {
        bail!("a bare code meets its inviter on this network by mDNS, which --no-mdns turns off: for an invite made through a rendezvous, give --rendezvous URL (or HEARTH_RENDEZVOUS)");
    }
    let in_place = retired.is_some();
    let protection = match retired {
        Some(p) => p,
        None => new_protection(ctx, a.no_passphrase)?,
    };
    let rt = crate::daemon::runtime()?;
    rt.block_on(join(ctx, &a, target, protection, in_place))
}

/// The protection of a home told its vault was rotated (the new vault's secret is kept the
/// same way, and the retired one's stays openable); an error for any other existing home.
fn retired_home(ctx: &Ctx) -> anyhow::Result<Protection> {
    let pass = ctx.home_passphrase()?;
    let r = ctx.home.open(pass.as_deref().map(String::as_str))?;
    match r.retirement() {
        Some(ret) if ret.by != r.device_id() => Ok(ctx.home.protection(pass.as_deref().map(String::as_str))?),
        _ => Err(HomeError::AlreadyInitialized(ctx.home.dir().to_owned()).into()),
    }
}

async fn meet(a: &JoinArgs, target: &JoinTarget) -> anyhow::Result<(Link, Option<IpAddr>)> {
    match &target.rendezvous {
        Some(url) => {
            let signal = signal_url(url)
                .ok_or_else(|| anyhow::anyhow!("the invite's rendezvous {url:?} is not a URL this hearth can dial"))?;
            let opts = a.net.client_options()?;
            Ok((link::join_room(&signal, &target.code, &opts).await?, None))
        }
        None => match link::find_on_lan(&target.code, &a.net.mdns_interfaces, Duration::from_secs(15)).await {
            Ok((l, ip)) => Ok((l, Some(ip))),
            Err(e @ LinkError::NotOnLan(_)) => Err(anyhow::anyhow!(
                "{e}; if the invite was made through a rendezvous, give --rendezvous URL (or HEARTH_RENDEZVOUS)"
            )),
            Err(e) => Err(e.into()),
        },
    }
}

/// Runs the exchange up to the grant.
async fn receive_grant(ctx: &Ctx, link: &mut Link, ex: &mut Exchange) -> anyhow::Result<Box<Grant>> {
    let first = ex.start(&mut OsRng)?;
    link.send(first).await?;
    loop {
        let bytes = match link.recv().await? {
            Received::Message(b) => b,
            Received::Left => {
                bail!("the inviting device went away (the invite was cancelled, expired or already used)")
            }
        };
        let outputs = match ex.handle(&bytes, &mut OsRng) {
            Ok(o) => o,
            Err(PairError::WrongCode) => {
                let _ = link.send(Exchange::wrong_code_notice()).await;
                bail!("wrong code: it is not the one the inviting device shows (that invite is now void: ask for a new one)");
            }
            Err(e) => return Err(e.into()),
        };
        for out in outputs {
            match out {
                Output::Send(m) => link.send(m).await?,
                Output::Sas(sas) => ctx.print(json!({"event": "sas", "sas": sas}), || {
                    format!("Security code: {sas}\nConfirm on the inviting device that it shows the same.")
                }),
                Output::Granted(g) => return Ok(g),
                Output::Joined(_) => return Err(PairError::Protocol.into()),
            }
        }
    }
}

async fn join(
    ctx: &Ctx,
    a: &JoinArgs,
    target: JoinTarget,
    protection: Protection,
    in_place: bool,
) -> anyhow::Result<()> {
    let (mut link, lan_ip) = meet(a, &target).await?;
    let mut ex = Exchange::joiner(&target.code);
    let grant = receive_grant(ctx, &mut link, &mut ex).await?;
    let secret = VaultSecret::from_bytes(grant.secret);
    let device = DeviceId::random();
    if in_place {
        ctx.home.replace_retired(&secret, device, &protection, now_ms())?;
    } else {
        ctx.home.create_enrolled(&secret, device, &protection, now_ms())?;
    }
    let own = {
        let mut r = ctx.home.open(protection.passphrase())?;
        // Revocations are known before the first sync: a revoked device is never trusted here.
        r.add_membership(grant.membership.clone())?;
        if let Some(n) = &a.name {
            crate::commands::name_device(&mut r, n)?;
        }
        r.len() as u64
    };
    if let Some(rv) = &grant.rendezvous {
        ctx.home.store_rendezvous(rv)?;
    }
    let done = ex.enrolled(&Joined { device, name: a.name.clone() }, &mut OsRng)?;
    link.send(done).await?;
    link.close().await;
    let vault = VaultKeys::derive(&secret).vault_id;
    drop(secret);
    ctx.print(json!({"event": "enrolled", "device_id": device.to_hex(), "vault_id": vault.to_hex()}), || {
        format!("This device ({device}) is enrolled in vault {vault}; syncing the vault…")
    });
    let peers = match (lan_ip, grant.sync_port) {
        (Some(ip), Some(port)) => vec![SocketAddr::new(ip, port).to_string()],
        _ => Vec::new(),
    };
    let passphrase = protection.passphrase().map(|p| Zeroizing::new(p.to_owned()));
    let node = Node::start(a.net.node_config(&ctx.home, passphrase, peers, grant.rendezvous.clone())).await?;
    let total = own + grant.entries;
    let mut progress = Progress::new(total, !ctx.json);
    let home = ctx.home.dir();
    let mut entries = 0;
    // Synced once this log covers what the inviter held when it granted (whoever sends it).
    let synced = crate::follow::with_node(Some(node), async {
        let covered = crate::follow::wait_for_version(home, &grant.version, a.sync_timeout);
        tokio::pin!(covered);
        loop {
            tokio::select! {
                done = &mut covered => {
                    // Counted while the node still runs.
                    if let Some(s) = crate::follow::status(home).await {
                        entries = s.entries as u64;
                    }
                    break done;
                }
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    if let Some(s) = crate::follow::status(home).await {
                        entries = s.entries as u64;
                        progress.show(entries);
                    }
                }
            }
        }
    })
    .await;
    progress.finish(entries);
    if !synced {
        bail!(
            "this device is enrolled, but the vault did not finish syncing within {} s: run `hearth {}daemon` here (and keep a vault device running) to finish",
            a.sync_timeout.as_secs(),
            ctx.home_arg
        );
    }
    ctx.print(
        json!({"ok": true, "device_id": device.to_hex(), "vault_id": vault.to_hex(), "entries": entries}),
        || format!("Synced: this device holds the vault ({entries} entries)."),
    );
    Ok(())
}

/// The sync's progress: a bar on a terminal, a line a second otherwise (none with --json).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    total: u64,
    last_line: Option<Instant>,
    last_shown: Option<u64>,
}

impl Progress {
    fn new(total: u64, human: bool) -> Self {
        let tty = human && std::io::stderr().is_terminal();
        let bar = tty.then(|| {
            let b = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} entries") {
                b.set_style(style);
            }
            b
        });
        Self { bar, plain: human && !tty, total, last_line: None, last_shown: None }
    }

    fn show(&mut self, n: u64) {
        if let Some(b) = &self.bar {
            b.set_position(n.min(self.total));
        } else if self.plain
            && self.last_shown != Some(n)
            && self.last_line.is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            eprintln!("synced {} of {} entries", n.min(self.total), self.total);
            (self.last_line, self.last_shown) = (Some(Instant::now()), Some(n));
        }
    }

    fn finish(&mut self, n: u64) {
        if let Some(b) = self.bar.take() {
            b.set_position(n.min(self.total));
            b.finish();
        }
    }
}
