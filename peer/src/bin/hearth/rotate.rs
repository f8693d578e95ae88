//! `hearth rotate`: a new vault secret and phrase for this device, the current state carried
//! into it, the old vault retired (see `hearth_peer::home` for how it stays crash-safe).

use anyhow::bail;
use hearth_peer::home::HomeError;
use serde_json::json;

use crate::commands::{confirm, now_ms, read_secret, Ctx};

/// Arguments of `hearth rotate`.
#[derive(Debug, clap::Args)]
pub(crate) struct RotateArgs {
    /// Do not ask to confirm (needed when stdin is not a terminal).
    #[arg(long)]
    yes: bool,
}

pub(crate) fn run(ctx: &Ctx, args: RotateArgs) -> anyhow::Result<()> {
    let _lock = match ctx.home.lock_writer() {
        Ok(l) => l,
        Err(HomeError::Busy(..)) => bail!(
            "stop the daemon first (`hearth rotate` replaces the vault it serves; start it again after): \
             another hearth process is writing to {}",
            ctx.home.dir().display()
        ),
        Err(e) => return Err(e.into()),
    };
    let pass = match &ctx.passphrase {
        Some(p) => Some(p.clone()),
        None if ctx.home.open(None).is_err_and(|e| matches!(e, HomeError::Locked)) => {
            Some(read_secret("passphrase: ")?)
        }
        None => None,
    };
    let pass = pass.as_deref().map(String::as_str);
    let before = ctx.home.open(pass)?;
    let others =
        before.membership().devices().filter(|(e, r)| r.is_none() && e.device_id != before.device_id()).count();
    if let Some(r) = before.retirement().filter(|r| r.by != before.device_id()) {
        return Err(hearth_peer::vault::ReplicaError::Retired(Box::new(r.clone())).into());
    }
    drop(before);
    if !args.yes {
        confirm(&format!(
            "Rotate this vault? A new vault with new 24 words takes its place here, with every item; \
             the {others} other active device(s) must each pair again (`hearth invite` here), and the \
             old words open nothing written from now on. [y/N] "
        ))?;
    }
    let done = ctx.home.rotate(pass, now_ms())?;
    let phrase = done.secret.phrase();
    let home = &ctx.home_arg;
    ctx.print(
        json!({
            "ok": true,
            "vault_id": done.vault.to_hex(),
            "device_id": done.device.to_hex(),
            "retired_vault_id": done.old_vault.to_hex(),
            "phrase": phrase.as_str(),
            "items": done.carried.items,
            "conflicts": done.carried.conflicts,
        }),
        || {
            format!(
                "Rotated: vault {old} is retired, and this device is now {dev} in the new vault {new}, \
                 with {items} item(s) and {conflicts} kept conflict(s) carried over.\n\n\
                 Write down the new vault's 24 words and keep them safe (the old words open nothing \
                 written from now on). They are shown only this once:\n\n  {words}\n\n\
                 Next, pair each of the vault's other devices again: run `hearth {home}invite` here and \
                 `hearth --home NEWDIR join CODE` there. A device left on the old vault is told of the \
                 rotation when it next reaches this device; a lost one cannot follow.",
                old = done.old_vault,
                dev = done.device,
                new = done.vault,
                items = done.carried.items,
                conflicts = done.carried.conflicts,
                words = phrase.as_str(),
            )
        },
    );
    Ok(())
}
