//! `hearth-lan-bench`: LAN sync between `hearth daemon`s in network namespaces, and what a
//! family would use instead on a LAN (Syncthing) in the same namespaces, side by side.
//!
//! Topology: A —lan1— B —lan2— C (C reaches A only through B). Measured: an edit on A until
//! B (and C) hold it; the initial sync of the sync bench's 10,000-item vault to an empty
//! device; the same two for Syncthing between A and B (a one-line file change with a rescan
//! of that file requested through its API, and the initial transfer of the same records as
//! 10,000 files). Needs root (it creates the namespaces, and removes them at the end).

mod lan_hearth;
mod lan_hostile;
mod lan_mesh;
mod lan_syncthing;
mod lan_webrtc;
mod lan_webrtc_bulk;
mod lan_webrtc_nat;
#[cfg(feature = "webrtc-rs")]
mod lan_webrtc_rs;
mod procfs;
mod vault_home;
mod workload;

use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use hearth_e2e::netns::{self, Lab};

/// LAN sync: Hearth daemons vs Syncthing, in network namespaces.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Items in the vault (files for Syncthing).
    #[arg(long, default_value_t = 10_000)]
    items: usize,
    /// Edits timed per latency measurement.
    #[arg(long, default_value_t = 200)]
    edits: usize,
    /// Initial-sync repetitions for Hearth (the median is reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Skip the Syncthing side.
    #[arg(long)]
    no_syncthing: bool,
    /// Instead: a line and a full mesh of 2..=N daemons on loopback (no root needed), edits
    /// as given by --edits.
    #[arg(long, value_name = "N")]
    mesh: Option<usize>,
    /// With --mesh: the `hearth` binary to measure (default: this build's).
    #[arg(long, value_name = "PATH")]
    hearth: Option<std::path::PathBuf>,
    /// Instead: a daemon under a hostile LAN for SECS seconds, in network namespaces (root).
    #[arg(long, value_name = "SECS")]
    hostile: Option<u64>,
    /// With --hostile: quiet seconds first (the idle figure).
    #[arg(long, default_value_t = 20)]
    idle_secs: u64,
    /// With --hostile: honest edits a second.
    #[arg(long, default_value_t = 1.0)]
    rate: f64,
    /// Instead: the WebRTC path on loopback (channel set-up, throughput, initial sync of
    /// --items and --edits edits through a real rendezvous; no root needed).
    #[arg(long)]
    webrtc: bool,
    /// With --webrtc: channel set-ups timed.
    #[arg(long, default_value_t = 50)]
    opens: usize,
    /// With --webrtc: instead, set-up time across NATs made of network namespaces
    /// (root; coturn for the TURN case), --opens runs per NAT pair.
    #[arg(long)]
    nat: bool,
}

/// The lab's hosts: namespace names and addresses.
pub(crate) struct Hosts {
    pub(crate) a: String,
    pub(crate) b: String,
    pub(crate) c: String,
    pub(crate) a_ip: String,
    pub(crate) b_ip: String,
    pub(crate) b_ip_lan2: String,
}

pub(crate) fn pct(v: &[Duration], p: f64) -> f64 {
    let mut s: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    s[((s.len() - 1) as f64 * p).round() as usize]
}

fn in_memory_full_sync_ms(items: usize) -> anyhow::Result<f64> {
    let out = Command::new(hearth_e2e::bin("hearth-sync-bench"))
        .args(["--side", "hearth", "--items", &items.to_string(), "--edits", "1", "--reps", "3"])
        .output()
        .context("running hearth-sync-bench")?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("hearth-sync-bench output")?;
    Ok(v["full_ms"].as_f64().unwrap_or(f64::NAN))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.webrtc && args.nat {
        return lan_webrtc_nat::run(args.opens.clamp(1, 100));
    }
    if args.webrtc {
        return lan_webrtc::run(args.items, args.edits, args.opens.max(1));
    }
    if let Some(n) = args.mesh {
        if !(2..=60).contains(&n) {
            anyhow::bail!("--mesh takes 2 to 60 devices");
        }
        lan_mesh::run(n, args.edits, args.hearth)?;
        return Ok(());
    }
    if let Some(secs) = args.hostile {
        if !netns::available() {
            anyhow::bail!("--hostile needs root and iproute2 (network namespaces)");
        }
        if !(1..=3_600).contains(&secs) || !(0.1..=50.0).contains(&args.rate) {
            anyhow::bail!("--hostile takes 1 to 3600 seconds and --rate 0.1 to 50 edits a second");
        }
        lan_hostile::run(secs, args.idle_secs, args.rate)?;
        return Ok(());
    }
    netns::available();
    let mut lab = Lab::new();
    let (lan1, lan2) = (lab.lan(1), lab.lan(2));
    let (a, b, c) = (lab.host("a"), lab.host("b"), lab.host("c"));
    let pa = lab.plug(&a, &lan1, 10);
    let pb = lab.plug(&b, &lan1, 11);
    let pb2 = lab.plug(&b, &lan2, 11);
    lab.plug(&c, &lan2, 12);
    let hosts = Hosts { a, b, c, a_ip: pa.v4, b_ip: pb.v4, b_ip_lan2: pb2.v4 };

    let h = lan_hearth::run(&hosts, args.items, args.reps, args.edits)?;
    let st = if args.no_syncthing { None } else { Some(lan_syncthing::run(&hosts, args.items, args.edits)?) };
    let mem = in_memory_full_sync_ms(args.items)?;

    println!(
        "hearth-lan-bench: {} items, A -lan1- B -lan2- C in network namespaces (veth + bridge), {} edits per latency row",
        args.items, args.edits
    );
    let st_name = st.as_ref().map_or("syncthing".to_owned(), |s| format!("syncthing {}", s.version));
    println!("{:<44} {:>12} {:>16} {:>9}", "", "hearth", st_name, "ratio");
    let row = |label: &str, x: f64, y: Option<f64>| match y {
        Some(y) => println!("{label:<44} {x:>10.2}ms {y:>14.2}ms {:>9.3}", x / y),
        None => println!("{label:<44} {x:>10.2}ms {:>16} {:>9}", "-", "-"),
    };
    let stb = st.as_ref().map(|s| &s.to_b);
    row("edit on A -> visible on B, p50", pct(&h.to_b, 0.5), stb.map(|v| pct(v, 0.5)));
    row("edit on A -> visible on B, p99", pct(&h.to_b, 0.99), stb.map(|v| pct(v, 0.99)));
    row("edit on A -> visible on C via B, p50", pct(&h.to_c, 0.5), None);
    row("edit on A -> visible on C via B, p99", pct(&h.to_c, 0.99), None);
    row("`hearth edit` process on A -> B, p50", pct(&h.cli_to_b, 0.5), None);
    row("`hearth edit` process on A -> B, p99", pct(&h.cli_to_b, 0.99), None);
    let init = pct(&h.initial, 0.5);
    row(
        &format!("initial sync of {} items to B", args.items),
        init,
        st.as_ref().map(|s| s.initial.as_secs_f64() * 1000.0),
    );
    row("  same, in memory (hearth-sync-bench)", mem, None);
    println!("targets: B p50 < 10 ms, p99 < 50 ms; initial sync < 500 ms");
    Ok(())
}
