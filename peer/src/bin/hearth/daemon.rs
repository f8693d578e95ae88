//! `hearth daemon`: runs the node until SIGINT or SIGTERM.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use hearth_peer::home::HomeError;
use hearth_peer::node::{Node, NodeConfig, NodeError};

/// How long start-up waits for a CLI command that holds the writer lock to finish.
const LOCK_WAIT: Duration = Duration::from_secs(5);

pub(crate) fn run(config: NodeConfig) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let deadline = Instant::now() + LOCK_WAIT;
        let node = loop {
            match Node::start(config.clone()).await {
                Err(NodeError::Home(HomeError::Busy(_))) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => break other?,
            }
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening ws {}", node.local_addr())?;
        out.flush()?;
        drop(out);
        node.run(shutdown_signal()).await;
        Ok(())
    })
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
