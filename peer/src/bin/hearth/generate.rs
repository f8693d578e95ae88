//! `hearth generate`: a random password or an EFF-wordlist passphrase, without storing it.
//! Only the secret goes to stdout (for a pipe); the entropy goes to stderr, or into --json.

use std::io::IsTerminal;

use hearth_peer::cli::generate;
use serde_json::json;

use crate::commands::Ctx;

pub(crate) fn run(
    ctx: &Ctx,
    length: usize,
    words: Option<usize>,
    charset: &str,
    separator: &str,
) -> anyhow::Result<()> {
    let (secret, bits) = match words {
        Some(n) => generate::passphrase(n, separator)?,
        None => generate::password(length, charset)?,
    };
    let bits = (bits * 10.0).round() / 10.0;
    ctx.print(json!({"password": secret, "entropy_bits": bits}), || {
        if std::io::stderr().is_terminal() {
            eprintln!("entropy: {bits} bits");
        }
        secret.clone()
    });
    Ok(())
}
