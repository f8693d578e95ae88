//! A locked daemon: no secret in memory and nothing syncing, only the control socket, which
//! answers [`Reply::Locked`] until a [`Request::Unlock`] brings the right passphrase.
//!
//! It keeps the home's writer lock meanwhile, so the CLI keeps sending its commands here
//! (and learns it must unlock) instead of writing beside a daemon that comes back.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

use super::control::{self, Reply, Request};
use super::NodeError;
use crate::home::{Home, HomeError};

/// What a locked daemon says to every command.
pub const LOCKED: &str = "the vault is locked: give its passphrase (at the prompt, with --passphrase-file FILE or HEARTH_PASSPHRASE) to unlock the daemon";

/// An accepted unlock: start the node with `passphrase`, then answer `reply`.
#[derive(Debug)]
pub struct Unlocking {
    /// The checked passphrase.
    pub passphrase: Zeroizing<String>,
    /// Where [`Reply::Unlocked`] goes once the node runs (or the error if it cannot start).
    pub reply: oneshot::Sender<Reply>,
}

/// Serves the control socket of `home`, locked, until an unlock (`Some`) or `shutdown`
/// (`None`); `ready` runs once the socket takes connections (to say so).
pub async fn serve(
    home: &Home,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(),
) -> Result<Option<Unlocking>, NodeError> {
    // A command that found no socket while the node stopped may be writing for a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let _writer = loop {
        match home.lock_writer() {
            Err(HomeError::Busy(..)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            other => break other?,
        }
    };
    let listen_err = |error| NodeError::Listen { addr: control::socket_path(home.dir()).display().to_string(), error };
    let listener = control::bind(home.dir()).map_err(listen_err)?;
    let uid = control::owner(home.dir()).map_err(listen_err)?;
    ready();
    let (unlocks, mut unlocked) = mpsc::channel::<Unlocking>(1);
    let mut tasks = Vec::new();
    tokio::pin!(shutdown);
    let outcome = loop {
        tokio::select! {
            () = &mut shutdown => break None,
            u = unlocked.recv() => break u,
            stream = control::accept(&listener, uid) => {
                let (home, unlocks) = (home.clone(), unlocks.clone());
                tasks.push(tokio::spawn(async move {
                    let answer = |req| answer(home.clone(), unlocks.clone(), req);
                    if let Err(e) = control::lines(stream, answer).await {
                        tracing::debug!("control connection: {e}");
                    }
                }).abort_handle());
            }
        }
    };
    // On an unlock, the connection that asked still waits for its reply (sent once the node
    // runs); the client then connects again, to the node.
    if outcome.is_none() {
        tasks.iter().for_each(tokio::task::AbortHandle::abort);
    }
    drop(listener);
    let _ = std::fs::remove_file(control::socket_path(home.dir()));
    Ok(outcome)
}

async fn answer(home: Home, unlocks: mpsc::Sender<Unlocking>, req: Request) -> Reply {
    match req {
        Request::Unlock { passphrase } => {
            let passphrase = Zeroizing::new(passphrase);
            let pass = passphrase.clone();
            // Argon2 takes a moment: off the async workers.
            let checked = tokio::task::spawn_blocking(move || home.unlock(Some(&pass)).map(|_| ())).await;
            match checked {
                Ok(Ok(())) => {
                    let (reply, answer) = oneshot::channel();
                    if unlocks.send(Unlocking { passphrase, reply }).await.is_err() {
                        return Reply::Error { message: "the daemon is shutting down".into(), lookup: false };
                    }
                    answer.await.unwrap_or_else(|_| Reply::Error {
                        message: "the daemon is shutting down".into(),
                        lookup: false,
                    })
                }
                Ok(Err(HomeError::WrongPassphrase)) => Reply::Locked { message: "wrong passphrase".into() },
                Ok(Err(e)) => Reply::Error { message: e.to_string(), lookup: false },
                Err(e) => Reply::Error { message: e.to_string(), lookup: false },
            }
        }
        Request::Lock => Reply::Unlocked { unlocked: false },
        _ => Reply::Locked { message: LOCKED.into() },
    }
}
