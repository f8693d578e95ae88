//! `hearth demo`: three devices, one vault, no cloud — every path Hearth has, shown step by
//! step with real processes on this machine and nothing to set up.
//!
//! alice makes the vault; bob pairs by invite through a rendezvous embedded in this process;
//! alice and bob sync over the LAN (static peers: loopback has no multicast); carol pairs
//! through bob and, with no LAN path to anyone, syncs with bob by WebRTC; alice never talks
//! to carol, so alice's edits reach her through bob. With bob away, alice and carol edit the
//! same field: the conflict is kept on every device, then resolved.

#[cfg(feature = "demo")]
mod steps;
#[cfg(feature = "demo")]
mod world;

use std::path::PathBuf;

/// `hearth demo`'s flags.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Keep the three homes and the daemons' logs afterwards, and print commands to explore them.
    #[arg(long)]
    pub(super) keep: bool,
    /// Make the homes in this new directory instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub(super) dir: Option<PathBuf>,
}

/// Runs the demo (or says this build has none).
pub(crate) fn run(json: bool, a: DemoArgs) -> anyhow::Result<()> {
    #[cfg(feature = "demo")]
    return steps::run(json, a);
    #[cfg(not(feature = "demo"))]
    {
        let _ = (json, a);
        anyhow::bail!("this hearth was built without its demo (the cargo feature `demo`)")
    }
}
