//! `hearth clip ITEM [--field F]`: copies one value to the clipboard and clears it after 45 s
//! (`--clear-after`) if it still holds that value, like `pass -c` and `keepassxc-cli clip`.
//!
//! An X11 clipboard is served by the process that set it, so the value is handed (on a pipe,
//! never in argv) to a detached `hearth clip-serve`, which holds the clipboard until the time
//! is up or another program takes it, then clears it only if it still holds the value.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::json;
use zeroize::Zeroizing;

use crate::commands::{Ctx, NotFound};

/// `hearth clip`'s flags.
#[derive(Debug, clap::Args)]
pub(crate) struct ClipArgs {
    /// Item name or id.
    name: String,
    /// The field to copy (default: `password`, or the item's only secret field).
    #[arg(long, value_name = "FIELD")]
    field: Option<String>,
    /// Seconds until the clipboard is cleared (if it still holds the value).
    #[arg(long, env = "HEARTH_CLIP_SECONDS", default_value_t = 45, value_name = "SECS")]
    clear_after: u64,
}

/// Which field `clip` copies when none is named (`secret`: whether a field is a secret).
fn default_field<'a>(fields: &[&'a str], secret: impl Fn(&str) -> bool) -> Result<&'a str, String> {
    if let Some(f) = fields.iter().find(|f| f.eq_ignore_ascii_case("password")) {
        return Ok(f);
    }
    match fields.iter().filter(|f| secret(f)).collect::<Vec<_>>()[..] {
        [one] => Ok(one),
        _ => Err(format!("say which field to copy with --field (it has: {})", fields.join(", "))),
    }
}

pub(crate) fn run(ctx: &Ctx, a: &ClipArgs) -> anyhow::Result<()> {
    let it = crate::get::item(ctx, &a.name)?;
    let values = &it.fields;
    let keys: Vec<&str> = values.keys().map(String::as_str).collect();
    let field = match &a.field {
        Some(f) => f.as_str(),
        None => {
            default_field(&keys, |f| it.secret.contains(f)).map_err(|m| NotFound(format!("item '{}': {m}", it.name)))?
        }
    };
    let Some(value) = values.get(field) else {
        return Err(NotFound(format!("item '{}' has no field '{field}' (it has: {})", it.name, keys.join(", "))).into());
    };
    let set = |v: &str| std::env::var_os(v).is_some_and(|x| !x.is_empty());
    if !set("DISPLAY") && !set("WAYLAND_DISPLAY") {
        bail!(
            "no graphical session here (DISPLAY is not set), so no clipboard; print the value for a script instead: \
             `hearth {}get '{}' --field '{field}' --raw`",
            ctx.home_arg,
            a.name
        );
    }
    let value = Zeroizing::new(value.clone());
    let exe = std::env::current_exe().context("finding this hearth binary")?;
    let mut cmd = Command::new(exe);
    cmd.args(["clip-serve", "--clear-after", &a.clear_after.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Its own process group: a Ctrl-C or a closed terminal here does not take the clipboard away.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().context("starting the clipboard holder")?;
    child.stdin.take().context("no stdin")?.write_all(value.as_bytes())?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
    if line.trim() != "ok" {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let _ = child.wait();
        bail!(
            "could not set the clipboard ({}); print the value for a script instead: `hearth {}get '{}' --field '{field}' --raw`",
            err.trim().trim_start_matches("hearth: "),
            ctx.home_arg,
            a.name
        );
    }
    ctx.print(json!({"ok": true, "name": it.name, "field": field, "clear_after": a.clear_after}), || {
        format!("copied {field} of '{}' to the clipboard; cleared in {} s", it.name, a.clear_after)
    });
    Ok(())
}

/// The detached holder: reads the value from stdin, sets the clipboard, says "ok", serves it
/// until `clear_after` passes or another program takes the clipboard, then clears it if it
/// still holds the value.
pub(crate) fn serve(clear_after: u64) -> anyhow::Result<()> {
    use arboard::SetExtLinux;
    let mut value = Zeroizing::new(String::new());
    std::io::stdin().read_to_string(&mut value).context("reading the value")?;
    let deadline = Instant::now() + Duration::from_secs(clear_after);
    let mut board = arboard::Clipboard::new().map_err(|e| anyhow::anyhow!("{e}"))?;
    // Set it first (returns at once), so the caller hears "ok" only once the value is there.
    board.set_text(value.as_str()).map_err(|e| anyhow::anyhow!("{e}"))?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ok")?;
        out.flush()?;
    }
    // Serve it until the deadline, or until another program owns the clipboard.
    board.set().wait_until(deadline).text(value.as_str()).map_err(|e| anyhow::anyhow!("{e}"))?;
    if Instant::now() >= deadline && board.get_text().is_ok_and(|t| t == *value) {
        board.clear().map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::default_field;
    use hearth_peer::cli::secret_fields::is_secret;

    #[test]
    fn the_password_or_the_only_secret_is_copied_by_default() {
        assert_eq!(default_field(&["Password", "pin", "url"], is_secret), Ok("Password"));
        assert_eq!(default_field(&["pin", "url"], is_secret), Ok("pin"));
        assert!(default_field(&["pin", "token"], is_secret).unwrap_err().contains("--field"));
        assert!(default_field(&["url"], is_secret).unwrap_err().contains("it has: url"));
        assert_eq!(default_field(&["recovery_words", "url"], |f| f == "recovery_words"), Ok("recovery_words"));
    }
}
