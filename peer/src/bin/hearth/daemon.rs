//! `hearth daemon`: runs the node until SIGINT or SIGTERM.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::Context;
use hearth_peer::home::HomeError;
use hearth_peer::node::control::{Reply, Rotation};
use hearth_peer::node::{locked, Node, NodeConfig, NodeError, RunEnd};

/// How long start-up waits for a CLI command that holds the writer lock to finish.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// The async runtime of a command that runs a node (two workers: the machines are small).
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// How long a sealed home's daemon whose passphrase was typed stays unlocked without a
/// command, unless `--lock-after` says otherwise.
const DEFAULT_LOCK_AFTER: Duration = Duration::from_secs(3600);

/// Runs the daemon; `lock_after_given`: `--lock-after` was set (else the default applies).
pub(crate) fn run(mut config: NodeConfig, lock_after_given: bool) -> anyhow::Result<()> {
    let sealed = config.home.is_sealed();
    // The passphrase will be typed: here, or (started locked) by the first command.
    if sealed && config.passphrase.is_none() {
        if std::io::stdin().is_terminal() {
            config.passphrase = Some(crate::commands::read_secret("passphrase: ")?);
        }
        if !lock_after_given {
            config.lock_after = Some(DEFAULT_LOCK_AFTER);
        }
    }
    let rt = runtime()?;
    rt.block_on(async move {
        let shutdown = shutdown_signal();
        tokio::pin!(shutdown);
        let mut restart = false;
        let mut forked = false;
        let mut locked = sealed && config.passphrase.is_none();
        loop {
            let mut unlocked = None;
            if locked {
                // Said once the socket is bound: a command run on this line reaches it.
                let ready = || {
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(
                        out,
                        "locked: the first command that needs the vault asks for its passphrase and unlocks it"
                    );
                    let _ = out.flush();
                };
                match locked::serve(&config.home, &mut shutdown, ready).await? {
                    None => return Ok(()),
                    Some(u) => {
                        config.passphrase = Some(u.passphrase);
                        unlocked = Some(u.reply);
                    }
                }
                locked = false;
            }
            let deadline = Instant::now() + LOCK_WAIT;
            let started = loop {
                match start(&config, forked).await {
                    Err(NodeError::Home(HomeError::Busy(..))) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    // The previous run's listener may take a moment to close.
                    Err(NodeError::Listen { .. }) if restart && Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    other => break other,
                }
            };
            let node = match (started, unlocked) {
                (Ok(node), unlocked) => {
                    if let Some(reply) = unlocked {
                        let _ = reply.send(Reply::Unlocked { unlocked: true });
                    }
                    node
                }
                (Err(e), Some(reply)) => {
                    let _ = reply.send(Reply::Error { message: e.to_string(), lookup: false });
                    return Err(e.into());
                }
                (Err(e), None) => return Err(e.into()),
            };
            restart = true;
            // A restart (after re-enrolling) listens where the first start did.
            config.listen = node.local_addr();
            let mut out = std::io::stdout().lock();
            writeln!(out, "listening ws {}", node.local_addr())?;
            out.flush()?;
            drop(out);
            // A forked device starts again under its new id (`start` re-enrols it first); a
            // retired vault ends the daemon with the reason (`start` refuses it).
            match node.run(&mut shutdown).await {
                RunEnd::Shutdown => return Ok(()),
                RunEnd::Forked => forked = true,
                RunEnd::Retired => return Err(retired(&config)),
                RunEnd::Rotate(reply) => {
                    let _ = reply.send(rotate(&config));
                    forked = false;
                }
                // The node (its replica, keys and plaintext) is gone; the passphrase goes too.
                RunEnd::Locked(reply) => {
                    config.passphrase = None;
                    tracing::info!("locked: the vault's secret is forgotten until a command unlocks it");
                    if let Some(reply) = reply {
                        let _ = reply.send(Reply::Unlocked { unlocked: false });
                    }
                    locked = true;
                }
            }
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

/// `hearth rotate` asked through the control socket: the node has stopped (its writer lock
/// released); rotate the home, then the loop starts the node on the new vault.
fn rotate(config: &NodeConfig) -> Reply {
    let pass = config.passphrase.as_deref().map(String::as_str);
    let done = config.home.lock_writer().and_then(|_lock| config.home.rotate(pass, super::commands::now_ms()));
    match done {
        Ok(done) => {
            tracing::warn!(vault = %done.vault, retired = %done.old_vault, "rotated the vault");
            Reply::Rotated(Box::new(Rotation::of(&done)))
        }
        Err(e) => Reply::Error { message: e.to_string(), lookup: false },
    }
}

/// Why the daemon ends after a peer said the vault was rotated: the retirement, in words.
fn retired(config: &NodeConfig) -> anyhow::Error {
    let pass = config.passphrase.as_deref().map(String::as_str);
    match config.home.open(pass).map(|r| r.retirement().cloned()) {
        Ok(Some(r)) => hearth_peer::vault::ReplicaError::Retired(Box::new(r)).into(),
        Ok(None) => anyhow::anyhow!("the vault was retired"),
        Err(e) => e.into(),
    }
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

/// The daemon's own TURN relay from `--turn-url`, `--turn-user` and the password from
/// `--turn-password-file` or `HEARTH_TURN_PASSWORD` (never argv: other users can read it).
pub(crate) fn turn_override(
    url: Option<String>,
    user: Option<String>,
    password_file: Option<std::path::PathBuf>,
) -> anyhow::Result<Option<hearth_rendezvous::protocol::TurnCredentials>> {
    use anyhow::{bail, Context};
    let (Some(url), Some(username)) = (url, user) else { return Ok(None) };
    if !url.starts_with("turn:") {
        bail!("--turn-url {url:?}: expected turn:HOST:PORT");
    }
    let credential = match (password_file, std::env::var("HEARTH_TURN_PASSWORD")) {
        (Some(f), _) => std::fs::read_to_string(&f)
            .with_context(|| format!("reading the TURN password from {}", f.display()))?
            .trim_end_matches(['\n', '\r'])
            .to_owned(),
        (None, Ok(p)) => p,
        (None, Err(_)) => bail!("--turn-url needs a password: --turn-password-file FILE or HEARTH_TURN_PASSWORD"),
    };
    // Static credentials: they do not expire on our side.
    Ok(Some(hearth_rendezvous::protocol::TurnCredentials { urls: vec![url], username, credential, expires: u64::MAX }))
}
