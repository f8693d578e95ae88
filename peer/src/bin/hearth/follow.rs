//! The sync that follows a pairing: through the running daemon, or a short-lived node of
//! the command's own, watched over the control socket until the new device is synced.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hearth_peer::home::Home;
use hearth_peer::node::control::{Client, Reply, Request};
use hearth_peer::node::status::DaemonStatus;
use hearth_peer::node::{limits::Limits, Node, NodeConfig};
use hearth_peer::vault::VersionVector;
use zeroize::Zeroizing;

/// The network flags of the sync that follows a pairing (`invite` and `join` alike).
#[derive(Debug, clap::Args)]
pub(crate) struct SyncFlags {
    /// Do not advertise or browse on mDNS (the sync then goes through the rendezvous).
    #[arg(long)]
    pub(crate) no_mdns: bool,
    /// Limit mDNS to this interface (repeatable; default: all).
    #[arg(long = "mdns-interface", value_name = "IFACE")]
    pub(crate) mdns_interfaces: Vec<String>,
    /// Also trust this CA (PEM file) for an https:// rendezvous.
    #[arg(long, env = "HEARTH_RENDEZVOUS_CA", value_name = "FILE")]
    pub(crate) rendezvous_ca: Option<PathBuf>,
    /// The STUN server for the sync (default: the rendezvous host, port 3478).
    #[arg(long, env = "HEARTH_STUN", value_name = "HOST:PORT")]
    pub(crate) stun: Option<SocketAddr>,
}

impl SyncFlags {
    /// A short-lived node's config: any port, `peers` as static peers, `rendezvous` if any.
    pub(crate) fn node_config(
        &self,
        home: &Home,
        passphrase: Option<Zeroizing<String>>,
        peers: Vec<String>,
        rendezvous: Option<String>,
    ) -> NodeConfig {
        NodeConfig {
            home: home.clone(),
            passphrase,
            listen: SocketAddr::from(([0, 0, 0, 0], 0)),
            peers,
            mdns: !self.no_mdns,
            mdns_interfaces: self.mdns_interfaces.clone(),
            rendezvous,
            rendezvous_ca: self.rendezvous_ca.clone(),
            stun: self.stun,
            turn: None,
            limits: Limits::default(),
            lock_after: None,
        }
    }

    /// Options for dialling the rendezvous's pairing room (its TLS roots).
    pub(crate) fn client_options(&self) -> anyhow::Result<hearth_rendezvous::client::Options> {
        let tls = match &self.rendezvous_ca {
            Some(ca) => Some(hearth_rendezvous::tls::client_config(Some(ca))?),
            None => None,
        };
        Ok(hearth_rendezvous::client::Options { from: None, tls })
    }
}

/// The running daemon's status, if one serves `home`.
pub(crate) async fn status(home: &Path) -> Option<DaemonStatus> {
    let home: PathBuf = home.to_owned();
    tokio::task::spawn_blocking(move || {
        match Client::connect(&home)?.request(&Request::Status, Duration::from_secs(5)) {
            Ok(Reply::Status(s)) => Some(*s),
            _ => None,
        }
    })
    .await
    .ok()
    .flatten()
}

/// True when a daemon serves `home`.
pub(crate) fn daemon_runs(home: &Path) -> bool {
    Client::connect(home).is_some()
}

/// A node this command runs for the sync (none when the daemon already serves the home).
pub(crate) async fn start_node(config: NodeConfig) -> anyhow::Result<Option<Node>> {
    if daemon_runs(config.home.dir()) {
        return Ok(None);
    }
    Ok(Some(Node::start(config).await?))
}

/// The sync port the running daemon or `node` listens on.
pub(crate) async fn sync_port(home: &Path, node: Option<&Node>) -> Option<u16> {
    match node {
        Some(n) => Some(n.local_addr().port()),
        None => status(home).await?.listen.first()?.rsplit(':').next()?.parse().ok(),
    }
}

/// Runs `work` while `node` (if any) serves, then stops the node.
pub(crate) async fn with_node<T>(node: Option<Node>, work: impl std::future::Future<Output = T>) -> T {
    let Some(node) = node else { return work.await };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = node.run(async move {
        let _ = stopped.await;
    });
    let work = async move {
        let out = work.await;
        let _ = stop.send(());
        out
    };
    tokio::join!(run, work).1
}

/// Polls the status of `home`'s daemon or node every 100 ms until `done` says so or
/// `timeout` passes; true when done.
pub(crate) async fn wait(home: &Path, timeout: Duration, mut done: impl FnMut(&DaemonStatus) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if status(home).await.is_some_and(|s| done(&s)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Waits until `home`'s daemon or node holds every entry `version` counts (true), or
/// `timeout` passes (false).
pub(crate) async fn wait_for_version(home: &Path, version: &VersionVector, timeout: Duration) -> bool {
    let home: PathBuf = home.to_owned();
    let dots: Vec<(String, u64)> = version.0.iter().map(|(d, s)| (d.to_hex(), *s)).collect();
    tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + timeout;
        for (author, seq) in dots {
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return false;
                }
                let req = Request::WaitFor { author: author.clone(), seq, timeout_ms: left.as_millis() as u64 };
                match Client::connect(&home).map(|mut c| c.request(&req, left)) {
                    Some(Ok(Reply::Reached)) => break,
                    // The node is still starting (no socket yet), or the wait timed out.
                    _ => std::thread::sleep(Duration::from_millis(50)),
                }
            }
        }
        true
    })
    .await
    .unwrap_or(false)
}
