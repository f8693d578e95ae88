//! `hearth-sync-bench`: Hearth's full sync, concurrent-edit sync and single-edit sync
//! against the automerge crate's sync protocol on the same records, side by side.
//!
//! Each side runs in its own child process so peak RSS is measured separately. Hearth's
//! numbers include everything a real sync does: Noise XXpsk3, hash-chain and head-signature
//! verification, unsealing, merge, and a durable SQLite commit (WAL, synchronous=FULL) on
//! the receiver. Automerge's include its sync protocol and in-memory apply only.

mod automerge_side;
mod hearth_side;
mod procfs;
mod workload;

use std::process::Command;

use anyhow::Context;
use clap::Parser;
use serde_json::Value;

/// Hearth sync vs automerge sync.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Items in the vault.
    #[arg(long, default_value_t = 10_000)]
    items: usize,
    /// Concurrent edits on each of the two devices.
    #[arg(long, default_value_t = 100)]
    edits: usize,
    /// Repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Internal: run one side and print its JSON result.
    #[arg(long, hide = true)]
    side: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.side.as_deref() {
        Some("hearth") => return print(hearth_side::run(args.items, args.edits, args.reps)?),
        Some("automerge") => return print(automerge_side::run(args.items, args.edits, args.reps)?),
        Some(other) => anyhow::bail!("unknown side {other}"),
        None => {}
    }
    let h = child("hearth", &args)?;
    let a = child("automerge", &args)?;
    println!(
        "hearth-sync-bench: {} items x 5 fields, {} + {} concurrent edits, median of {}",
        args.items, args.edits, args.edits, args.reps
    );
    println!("{:<34} {:>12} {:>12} {:>8}", "", "hearth", "automerge", "ratio");
    let row = |label: &str, key: &str, unit: &str| {
        let (x, y) = (h[key].as_f64().unwrap_or(f64::NAN), a[key].as_f64().unwrap_or(f64::NAN));
        println!("{label:<34} {:>10.2}{unit} {:>10.2}{unit} {:>8.2}", x, y, x / y);
    };
    row("full sync to empty device", "full_ms", "ms");
    row("concurrent edits sync", "concurrent_ms", "ms");
    row("one edit (p50 of 21 per rep)", "one_edit_ms", "ms");
    row("bytes on the wire, full sync", "full_kib", "Ki");
    row("peak RSS", "peak_rss_mib", "Mi");
    let wire = h["full_bytes"].as_f64().unwrap_or(f64::NAN) / h["plaintext_bytes"].as_f64().unwrap_or(f64::NAN);
    println!("\nhearth wire bytes / plaintext payload bytes = {wire:.2}  (target <= 1.6)");
    println!("hearth conflicts after concurrent edits: {}", h["conflicts"]);
    println!(
        "hearth materialized view written after the full sync (as a daemon does, a second later): {:.2} ms",
        h["view_ms"].as_f64().unwrap_or(f64::NAN)
    );
    println!("targets: full < 300 ms, concurrent < 20 ms, one edit < 5 ms, RSS < 100 MiB, time within 2x automerge");
    Ok(())
}

fn print(v: Value) -> anyhow::Result<()> {
    println!("{v}");
    Ok(())
}

/// Runs one side in a fresh process and parses its JSON line.
fn child(side: &str, args: &Args) -> anyhow::Result<Value> {
    let out = Command::new(std::env::current_exe()?)
        .args([
            "--side",
            side,
            "--items",
            &args.items.to_string(),
            "--edits",
            &args.edits.to_string(),
            "--reps",
            &args.reps.to_string(),
        ])
        .output()
        .with_context(|| format!("running the {side} side"))?;
    anyhow::ensure!(out.status.success(), "{side} side failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Peak resident set size of this process in MiB (VmHWM).
pub(crate) fn peak_rss_mib() -> f64 {
    procfs::status_kib("self", "VmHWM").map_or(f64::NAN, |kb| kb as f64 / 1024.0)
}

/// Milliseconds since `t`.
pub(crate) fn ms(t: std::time::Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// The result fields both sides report: medians of the three timings, wire bytes, peak RSS.
pub(crate) fn report(full: Vec<f64>, concurrent: Vec<f64>, one_edit: Vec<f64>, bytes: usize) -> Value {
    serde_json::json!({
        "full_ms": median(full),
        "concurrent_ms": median(concurrent),
        "one_edit_ms": median(one_edit),
        "full_bytes": bytes,
        "full_kib": bytes as f64 / 1024.0,
        "peak_rss_mib": peak_rss_mib(),
    })
}

/// Single edits timed per repetition (each written, then synced): one sample would report
/// whatever one-off cost it happened to meet (a hash table growing, a WAL checkpoint).
pub(crate) const ONE_EDITS: usize = 21;

/// The median of `v` (v non-empty).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}
