//! `hearth export` and `hearth import`: a sealed bundle (the default: every entry, history
//! and conflicts included, readable only with the vault's secret), or with `--format` another
//! manager's file (KeePass XML, KeePass/1Password CSV, Bitwarden JSON) or a plain JSON.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;

use anyhow::{bail, Context};
use hearth_peer::actions::WriteRequest;
use hearth_peer::cli::interop::{self, Format, Record};
use hearth_peer::vault::bundle;
use serde_json::json;

use crate::commands::Ctx;

/// `--format`'s values: the sealed bundle, or one of [`Format::NAMES`].
fn format(name: &str) -> anyhow::Result<Option<Format>> {
    if name == "bundle" {
        return Ok(None);
    }
    Format::from_name(name)
        .map(Some)
        .ok_or_else(|| anyhow::anyhow!("unknown format {name:?}: bundle, {}", Format::NAMES.join(", ")))
}

/// Writes `bytes` to `file`, or to stdout for "-" (never a terminal: it is a whole vault).
fn write_out(file: &Path, bytes: &[u8], what: &str) -> anyhow::Result<bool> {
    if file.as_os_str() != "-" {
        hearth_peer::home::write_private(file, bytes).with_context(|| format!("writing {}", file.display()))?;
        return Ok(false);
    }
    let mut out = std::io::stdout().lock();
    if out.is_terminal() {
        bail!("`export -` writes {what} to stdout: redirect it to a file or a pipe");
    }
    out.write_all(bytes).and_then(|()| out.flush()).with_context(|| format!("writing {what} to stdout"))?;
    Ok(true)
}

/// `hearth export [--format F] FILE`.
pub(crate) fn export(ctx: &Ctx, file: &Path, fmt: &str) -> anyhow::Result<()> {
    let fmt = format(fmt)?;
    let r = ctx.open()?;
    let (bytes, summary, human) = match fmt {
        None => {
            let bytes = bundle::export(&r)?;
            let n = r.len();
            let summary = json!({"ok": true, "entries": n, "bytes": bytes.len()});
            (bytes, summary, format!("exported {n} entries"))
        }
        Some(f) => {
            let s = r.state();
            let records: Vec<Record> = s
                .visible()
                .map(|(_, it)| {
                    let marked = it.marked_secret();
                    let fields = it.field_values().into_iter();
                    Record::marked(it.name(), fields.map(|(k, v)| (k.to_owned(), v.to_owned(), marked.contains(k))))
                })
                .collect();
            // Written before the warnings: a format Hearth only reads is refused without them.
            let bytes = interop::write(f, &records)?;
            let conflicts = s.conflicts().len();
            if conflicts > 0 {
                eprintln!(
                    "hearth: warning: {conflicts} conflict(s): only the kept value of each is exported (`hearth {}conflicts`)",
                    ctx.home_arg
                );
            }
            eprintln!(
                "hearth: warning: this file holds every secret in the clear; delete it once it is imported \
                 (to move a vault between Hearth devices, a sealed bundle: `hearth export FILE`)"
            );
            let n = records.len();
            let summary = json!({"ok": true, "items": n, "bytes": bytes.len()});
            (bytes, summary, format!("exported {n} items"))
        }
    };
    if write_out(file, &bytes, "the export")? {
        // stdout is the file's: the summary goes to stderr.
        eprintln!("{}", if ctx.json { summary.to_string() } else { human });
        return Ok(());
    }
    ctx.print(summary, || format!("{human} to {}", file.display()));
    Ok(())
}

/// Reads `file` whole ("-": stdin), at most `limit` bytes.
fn read_in(file: &Path, limit: usize) -> anyhow::Result<Vec<u8>> {
    let mut b = Vec::new();
    let what = if file.as_os_str() == "-" { "stdin".to_owned() } else { file.display().to_string() };
    let src: Box<dyn Read> = if file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(file).with_context(|| format!("reading {what}"))?)
    };
    src.take(limit as u64 + 1).read_to_end(&mut b).with_context(|| format!("reading {what}"))?;
    if b.len() > limit {
        bail!("{what} is larger than {} MiB", limit >> 20);
    }
    Ok(b)
}

/// `hearth import [--format F] FILE`.
pub(crate) fn import(ctx: &Ctx, file: &Path, fmt: &str) -> anyhow::Result<()> {
    let Some(f) = format(fmt)? else {
        let bundle = read_in(file, bundle::MAX_BUNDLE)?;
        let got = ctx.write(WriteRequest::Import { bundle })?;
        ctx.print(json!({"ok": true, "new": got.new, "duplicates": got.duplicates}), || {
            format!("imported {} new entries ({} already held)", got.new, got.duplicates)
        });
        return Ok(());
    };
    let bytes = read_in(file, interop::MAX_FILE)?;
    let items = interop::parse(f, &bytes).with_context(|| format!("nothing was imported from {}", file.display()))?;
    let read = items.len();
    let got = ctx.write(WriteRequest::AddMany { items })?;
    let renamed: Vec<_> = got.renamed.iter().map(|(from, to)| json!({"from": from, "to": to})).collect();
    ctx.print(
        json!({"ok": true, "read": read, "new": got.new, "duplicates": got.duplicates, "renamed": renamed}),
        || {
            let mut s = format!("imported {} items ({} already held)", got.new, got.duplicates);
            for (from, to) in &got.renamed {
                s += &format!("\n  '{from}' is named '{to}' (the name was taken)");
            }
            s
        },
    );
    Ok(())
}
