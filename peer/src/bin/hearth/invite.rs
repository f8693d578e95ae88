//! `hearth invite`: shows a QR code, join URL and short code, runs the pairing exchange with
//! the device that joins, hands it the vault sealed, and serves its first sync.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use hearth_peer::home::HomeError;
use hearth_peer::identity::VaultSecret;
use hearth_peer::ids::DeviceId;
use hearth_peer::node::rendezvous::signal_url;
use hearth_peer::pairing::link::{self, LanInvite, Link, LinkError, Received};
use hearth_peer::pairing::{qr, Exchange, Grant, InviteCode, JoinTarget, Joined, Output, PairError};
use rand::rngs::OsRng;
use serde_json::json;
use zeroize::Zeroizing;

use crate::commands::{read_secret, Ctx};

/// `hearth invite`'s flags.
#[derive(Debug, clap::Args)]
pub(crate) struct InviteArgs {
    /// Meet the new device through this rendezvous (default: the one this device paired
    /// through).
    #[arg(long, env = "HEARTH_RENDEZVOUS", value_name = "URL")]
    rendezvous: Option<String>,
    /// Meet on this LAN (mDNS and a pairing endpoint of its own), with no server anywhere.
    #[arg(long)]
    lan: bool,
    /// How long the invite stays open (90s, 10m, 1h); the rendezvous's --invite-ttl may end
    /// it sooner.
    #[arg(long, default_value = "10m", value_parser = parse_duration, value_name = "DURATION")]
    expires: Duration,
    /// Also write the QR code as a PNG image.
    #[arg(long, value_name = "FILE")]
    png: Option<PathBuf>,
    /// Also write the QR code as an SVG image.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Do not ask to confirm the security code (for scripts).
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    net: crate::follow::SyncFlags,
}

/// Reads `90s`, `10m`, `1h` or a number of seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit()).map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num.parse().map_err(|_| format!("{s:?}: expected a duration like 90s, 10m or 1h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("{s:?}: the unit is s, m or h")),
    };
    if !(1..=86_400).contains(&secs) {
        return Err(format!("{s:?}: between 1 second and 24 hours"));
    }
    Ok(Duration::from_secs(secs))
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Where the invite waits.
enum Place {
    Room(Box<Link>),
    Lan(LanInvite),
}

/// Unlocks the home: the secret, this device, and the passphrase that opened it.
pub(crate) fn unlock(ctx: &Ctx) -> anyhow::Result<(VaultSecret, DeviceId, Option<Zeroizing<String>>)> {
    match ctx.home.unlock(ctx.passphrase.as_deref().map(String::as_str)) {
        Ok((s, d)) => Ok((s, d, ctx.passphrase.clone())),
        Err(HomeError::Locked) if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
            let pass = read_secret("passphrase: ")?;
            let (s, d) = ctx.home.unlock(Some(&pass))?;
            Ok((s, d, Some(pass)))
        }
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn run(ctx: &Ctx, a: InviteArgs) -> anyhow::Result<()> {
    if !a.yes && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        bail!("invite asks you to confirm the security code at the terminal: run it at one, or pass --yes");
    }
    let rv = match (a.lan, a.rendezvous.clone()) {
        (true, _) => None,
        (false, Some(r)) => Some(r),
        (false, None) => Some(ctx.home.stored_rendezvous()?.ok_or_else(|| {
            anyhow::anyhow!("say where the new device meets this one: --rendezvous URL (your family's server) or --lan (this network, no server)")
        })?),
    };
    let (secret, device, passphrase) = unlock(ctx)?;
    let r = ctx.home.open(passphrase.as_deref().map(String::as_str))?;
    let mut grant = Grant {
        secret: *secret.as_bytes(),
        inviter: device,
        rendezvous: rv.clone(),
        sync_port: None,
        version: r.version().clone(),
        entries: r.len() as u64,
        membership: r.membership().records().to_vec(),
    };
    drop((r, secret));
    let config = a.net.node_config(&ctx.home, passphrase, Vec::new(), rv.clone());
    let rt = crate::daemon::runtime()?;
    rt.block_on(async move {
        let node = crate::follow::start_node(config).await?;
        grant.sync_port = crate::follow::sync_port(ctx.home.dir(), node.as_ref()).await;
        // The running daemon serves the joiner's first sync: through the rendezvous only if
        // it joined one.
        if node.is_none() && rv.is_some() {
            let joined = crate::follow::status(ctx.home.dir()).await.is_some_and(|s| s.rendezvous.is_some());
            if !joined {
                eprintln!(
                    "hearth: warning: this device's daemon runs without a rendezvous, so the new device can sync \
                     with it only on the LAN; restart it with `hearth {}daemon --rendezvous URL` (or stop it \
                     during the invite)",
                    ctx.home_arg
                );
            }
        }
        crate::follow::with_node(node, invite(ctx, &a, rv, &grant)).await
    })
}

async fn open_place(a: &InviteArgs, rv: Option<&str>) -> anyhow::Result<(InviteCode, Place)> {
    let opts = a.net.client_options()?;
    // A nameplate someone else holds (another family's invite, or a squatter) is skipped.
    for _ in 0..8 {
        let code = InviteCode::generate(&mut OsRng);
        match rv {
            Some(url) => {
                let signal = signal_url(url).ok_or_else(|| {
                    anyhow::anyhow!("rendezvous URL {url:?}: expected https://HOST[:PORT] or http://HOST:PORT")
                })?;
                match link::open_room(&signal, &code, &opts).await {
                    Ok(l) => return Ok((code, Place::Room(Box::new(l)))),
                    Err(LinkError::Taken) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            None => return Ok((code.clone(), Place::Lan(LanInvite::start(&code, &a.net.mdns_interfaces).await?))),
        }
    }
    bail!("every invite number tried is taken on this rendezvous; try again in a minute")
}

/// Writes a QR image: the code in it is a one-time secret, so owner only (0600, atomic).
fn write_file(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    hearth_peer::home::write_private(path, bytes).with_context(|| format!("writing {}", path.display()))
}

async fn invite(ctx: &Ctx, a: &InviteArgs, rv: Option<String>, grant: &Grant) -> anyhow::Result<()> {
    let (code, place) = open_place(a, rv.as_deref()).await?;
    let url = JoinTarget { rendezvous: rv.clone(), code: code.clone() }.to_url();
    let text = code.to_text();
    let expires_at = unix_now() + a.expires.as_secs();
    if let Some(p) = &a.png {
        write_file(p, &qr::png(&url)?)?;
    }
    if let Some(p) = &a.svg {
        write_file(p, qr::svg(&url)?.as_bytes())?;
    }
    let join_hint = match &rv {
        Some(_) => format!("hearth join {}", text.as_str()),
        None => format!("hearth join {} (on the same network)", text.as_str()),
    };
    ctx.print(json!({"url": url.as_str(), "code": text.as_str(), "expires_at": expires_at}), || {
        format!(
            "{}\nScan this on the new device, or open:\n  {}\nor type there:\n  {join_hint}\n{}\nThis invite works once and ends in {} min (Ctrl-C cancels it).",
            qr::terminal(&url).unwrap_or_default(),
            url.as_str(),
            rv.as_deref().map_or_else(|| "(a bare code meets on this LAN)".to_owned(), |r| format!("(a bare code needs --rendezvous {r} there)")),
            a.expires.as_secs().div_ceil(60)
        )
    });
    std::io::stdout().flush()?;
    let joined = tokio::select! {
        r = pair(ctx, a.yes, place, &code, grant) => r?,
        _ = tokio::signal::ctrl_c() => bail!("invite cancelled"),
        () = tokio::time::sleep(a.expires) => bail!("the invite expired: nobody joined within {} s", a.expires.as_secs()),
    };
    let id = joined.device.to_hex();
    let name = joined.name.clone().unwrap_or_default();
    ctx.print(json!({"event": "joined", "device": id, "name": joined.name}), || {
        format!(
            "Device {id}{} joined the vault; sending it the vault…",
            if name.is_empty() { String::new() } else { format!(" ({name})") }
        )
    });
    std::io::stdout().flush()?;
    let synced = crate::follow::wait(ctx.home.dir(), Duration::from_secs(300), |s| {
        s.last_synced.contains_key(&id)
            || s.peers.iter().any(|p| p.device == id && p.last_sync_ms.is_some() && p.pending == 0)
    })
    .await;
    ctx.print(json!({"event": if synced { "synced" } else { "not_synced" }, "device": id}), || {
        if synced {
            "Done: the new device holds the whole vault.".into()
        } else {
            "The new device is enrolled but has not finished syncing: it will once both devices run `hearth daemon`."
                .into()
        }
    });
    Ok(())
}

/// Runs the exchange over the link: the device that joined.
async fn pair(ctx: &Ctx, yes: bool, place: Place, code: &InviteCode, grant: &Grant) -> anyhow::Result<Joined> {
    let mut link = match place {
        Place::Room(mut l) => {
            l.wait_for_peer().await?;
            *l
        }
        Place::Lan(inv) => inv.accept().await?,
    };
    let mut ex = Exchange::inviter(code);
    loop {
        let bytes = match link.recv().await? {
            Received::Message(b) => b,
            Received::Left if ex.guess_spent() => {
                bail!("a device took part of the pairing and went away: this invite is void (make a new one with `hearth invite`)")
            }
            Received::Left => match &mut link {
                // Gone before a word: wait for the next one.
                Link::Rendezvous { peer, .. } => {
                    *peer = None;
                    link.wait_for_peer().await?;
                    continue;
                }
                _ => bail!("the joining device went away before pairing; make a new invite"),
            },
        };
        let outputs = match ex.handle(&bytes, &mut OsRng) {
            Ok(o) => o,
            Err(PairError::WrongCode) => {
                bail!("someone tried a wrong code; this invite is void (make a new one with `hearth invite`)")
            }
            Err(e) => return Err(e.into()),
        };
        for out in outputs {
            match out {
                Output::Send(m) => link.send(m).await?,
                Output::Sas(sas) => {
                    if confirm(ctx, yes, &sas).await? {
                        let sealed = ex.approve(grant, &mut OsRng)?;
                        link.send(sealed).await?;
                    } else {
                        let no = ex.decline();
                        link.send(no).await?;
                        link.close().await;
                        return Err(PairError::Declined.into());
                    }
                }
                Output::Joined(j) => {
                    link.close().await;
                    return Ok(j);
                }
                Output::Granted(_) => return Err(PairError::Protocol.into()),
            }
        }
    }
}

/// Shows the SAS; asks the person to confirm it unless `yes`.
async fn confirm(ctx: &Ctx, yes: bool, sas: &str) -> anyhow::Result<bool> {
    ctx.print(json!({"event": "sas", "sas": sas}), || format!("Security code: {sas}"));
    std::io::stdout().flush()?;
    if yes {
        return Ok(true);
    }
    let answer = tokio::task::spawn_blocking(|| {
        eprint!("Does the new device show the same security code? [y/N] ");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await??;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}
