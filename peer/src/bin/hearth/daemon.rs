//! `hearth daemon`: runs the node until SIGINT or SIGTERM.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use hearth_peer::home::HomeError;
use hearth_peer::node::{Node, NodeConfig, NodeError, RunEnd};

/// How long start-up waits for a CLI command that holds the writer lock to finish.
const LOCK_WAIT: Duration = Duration::from_secs(5);

pub(crate) fn run(mut config: NodeConfig) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        let mut restart = false;
        let mut forked = false;
        loop {
            let deadline = Instant::now() + LOCK_WAIT;
            let node = loop {
                match start(&config, forked).await {
                    Err(NodeError::Home(HomeError::Busy(_))) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    // The previous run's listener may take a moment to close.
                    Err(NodeError::Listen { .. }) if restart && Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    other => break other?,
                }
            };
            restart = true;
            // A restart (after re-enrolling) listens where the first start did.
            config.listen = node.local_addr();
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening ws {}", node.local_addr())?;
            out.flush()?;
            drop(out);
            // A forked device starts again under its new id (`start` re-enrols it first).
            if node.run(&mut shutdown).await == RunEnd::Shutdown {
                return Ok(());
            }
            forked = true;
        }
    })
}

/// Starts the node, first re-enrolling a home whose own log was found `forked` (or whose
/// re-enrolment a crash interrupted).
async fn start(config: &NodeConfig, forked: bool) -> Result<Node, NodeError> {
    if forked || config.home.fork_pending() {
        let _lock = config.home.lock_writer()?;
        let pass = config.passphrase.as_deref().map(String::as_str);
        if let Some(done) = config.home.settle_own_fork(pass, super::commands::now_ms())? {
            tracing::warn!("{}", done.explain());
            eprintln!("{}", done.explain());
        }
    }
    Node::start(config.clone()).await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
