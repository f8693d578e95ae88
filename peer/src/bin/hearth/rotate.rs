//! `hearth rotate`: a new vault secret and phrase for this device, the current state carried
//! into it, the old vault retired (see `hearth_peer::home` for how it stays crash-safe).
//! With a daemon running, the daemon does it (it stops serving, rotates, serves the new vault).

use std::time::Duration;

use anyhow::bail;
use hearth_peer::home::HomeError;
use hearth_peer::node::control::{Client, Reply, Request, Rotation};
use hearth_peer::vault::{Replica, ReplicaError, SqliteStore};
use serde_json::json;

use crate::commands::{confirm, now_ms, Ctx};

/// Arguments of `hearth rotate`.
#[derive(Debug, clap::Args)]
pub(crate) struct RotateArgs {
    /// Do not ask to confirm (needed when stdin is not a terminal).
    #[arg(long)]
    yes: bool,
    /// Rotate even a vault another device retired: anyone holding the old words can retire
    /// it, so a thief may do it first to keep you from making a new vault.
    #[arg(long)]
    force: bool,
}

pub(crate) fn run(ctx: &Ctx, args: RotateArgs) -> anyhow::Result<()> {
    if let Some(mut daemon) = Client::connect(ctx.home.dir()) {
        if !args.yes {
            let known = ctx.home.open(ctx.passphrase.as_deref().map(String::as_str)).ok().map(|r| others(&r));
            confirm(&question(known))?;
        }
        return match daemon.request(&Request::Rotate, Duration::from_secs(600))? {
            Reply::Rotated(done) => {
                print(ctx, &done);
                Ok(())
            }
            Reply::Error { message, .. } => bail!("{message}"),
            other => bail!("the daemon answered a rotation with {other:?}"),
        };
    }
    let _lock = match ctx.home.lock_writer() {
        Ok(l) => l,
        // A daemon starting up (its control socket is not there yet), or another command.
        Err(HomeError::Busy(..)) => {
            bail!("another hearth process is writing to {}: try again in a moment", ctx.home.dir().display())
        }
        Err(e) => return Err(e.into()),
    };
    let pass = ctx.home_passphrase()?;
    let pass = pass.as_deref().map(String::as_str);
    let before = ctx.home.open(pass)?;
    if let Some(r) = before.retirement().filter(|r| r.by != before.device_id() && !args.force) {
        let why = ReplicaError::Retired(Box::new(r.clone()));
        bail!(
            "{why}; if that device is not one of yours (whoever holds the old words can retire the vault), \
             rotate anyway with `hearth {}rotate --force`",
            ctx.home_arg
        );
    }
    let n = others(&before);
    drop(before);
    if !args.yes {
        confirm(&question(Some(n)))?;
    }
    let done = if args.force { ctx.home.rotate_retired(pass, now_ms())? } else { ctx.home.rotate(pass, now_ms())? };
    print(ctx, &Rotation::of(&done));
    Ok(())
}

/// Other active devices of the vault `r` holds.
fn others(r: &Replica<SqliteStore>) -> usize {
    r.membership().devices().filter(|(e, rev)| rev.is_none() && e.device_id != r.device_id()).count()
}

/// The confirmation question, with the number of other active devices when known.
fn question(others: Option<usize>) -> String {
    let who = others.map_or_else(|| "other".to_owned(), |n| format!("{n} other active"));
    format!(
        "Rotate this vault? A new vault with new 24 words takes its place here, with every item; \
         the {who} device(s) must each pair again (`hearth invite` here), and the old words open \
         nothing written from now on. [y/N] "
    )
}

/// What a rotation made, and what to do next; the new words shown this once.
fn print(ctx: &Ctx, done: &Rotation) {
    let home = &ctx.home_arg;
    ctx.print(
        json!({
            "ok": true,
            "vault_id": done.vault_id,
            "device_id": done.device_id,
            "retired_vault_id": done.retired_vault_id,
            "phrase": done.phrase,
            "items": done.items,
            "conflicts": done.conflicts,
        }),
        || {
            format!(
                "Rotated: vault {old} is retired, and this device is now {dev} in the new vault {new}, \
                 with {items} item(s) and {conflicts} kept conflict(s) carried over.\n\n\
                 Write down the new vault's 24 words and keep them safe (the old words open nothing \
                 written from now on). They are shown only this once:\n\n  {words}\n\n\
                 Next, pair each of the vault's other devices again: run `hearth {home}invite` here and \
                 `hearth join CODE` there (in its own home). A device left on the old vault is told of \
                 the rotation when it next reaches this device; a lost one cannot follow.",
                old = done.retired_vault_id,
                dev = done.device_id,
                new = done.vault_id,
                items = done.items,
                conflicts = done.conflicts,
                words = done.phrase,
            )
        },
    );
}
