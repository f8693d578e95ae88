//! `hearth totp ITEM [--field F]`: the current one-time code of an item's TOTP field
//! (`otpauth://totp/...` or a base32 secret), like an authenticator app.

use std::io::IsTerminal;

use anyhow::anyhow;
use hearth_peer::cli::totp::Totp;
use serde_json::json;

use crate::commands::{Ctx, NotFound};

/// Field names that hold a TOTP secret when no `--field` is given.
const TOTP_NAMES: [&str; 5] = ["totp", "otp", "2fa", "mfa", "one-time code"];

pub(crate) fn run(ctx: &Ctx, name: &str, field: Option<&str>) -> anyhow::Result<()> {
    let it = crate::get::item(ctx, name)?;
    let fields = &it.fields;
    let found = match field {
        Some(f) => fields.get_key_value(f),
        None => fields.iter().find(|(k, v)| {
            TOTP_NAMES.iter().any(|n| k.eq_ignore_ascii_case(n))
                || v.get(..15).is_some_and(|p| p.eq_ignore_ascii_case("otpauth://totp/"))
        }),
    };
    let Some((key, value)) = found else {
        let what = field
            .map_or_else(|| "a TOTP field (totp, otp, or an otpauth:// value)".to_owned(), |f| format!("field '{f}'"));
        return Err(NotFound(format!(
            "item '{}' has no {what}; add one with `hearth edit '{}' --field totp=-`",
            it.name, it.name
        ))
        .into());
    };
    // Never repeats the value: it is the secret.
    let totp = Totp::parse(value).map_err(|e| anyhow!("field '{key}' of '{}' is not a TOTP secret: {e}", it.name))?;
    let now = crate::commands::now_ms() / 1000;
    let (code, remaining) = (totp.code(now), totp.remaining(now));
    ctx.print(json!({"code": code, "remaining": remaining, "period": totp.period, "digits": totp.digits}), || {
        if std::io::stdout().is_terminal() {
            format!("{code}  (valid {remaining} s more)")
        } else {
            code.clone()
        }
    });
    Ok(())
}
