//! The daemon's local control socket: `<home>/daemon.sock`, mode 0600, one JSON request and
//! one JSON reply per line.
//!
//! While a daemon runs it is the only writer of the device's log: the CLI sends its writes
//! here ([`Client::request`]) instead of opening the database for writing, and its reads
//! (get, list, conflicts, totp, clip) too: the daemon holds the unlocked vault, so a sealed
//! home asks for its passphrase once, not at every command. `hearth lock` (or the idle
//! timer) makes the daemon forget the secret; a locked daemon answers [`Reply::Locked`] to
//! everything but [`Request::Unlock`]. Only the user who runs the daemon is served: the
//! socket is 0600 in a 0700 home, and a connection from another uid (root) is refused.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::status::DaemonStatus;
use super::Input;
use crate::actions::{WriteOutcome, WriteRequest};
use crate::reads::{ListRow, ReadRequest, View};

/// Rows per [`Reply::Rows`] line.
const ROWS_PER_LINE: usize = 1000;

/// Longest request line accepted (a bundle import travels hex-encoded in one line).
pub const MAX_REQUEST: usize = 64 << 20;

/// A request to the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Connected peers and counters.
    Status,
    /// Apply a write to the log.
    Write {
        /// The write.
        write: WriteRequest,
    },
    /// Reply once the log holds entry `seq` of device `author` (hex), or after `timeout_ms`.
    WaitFor {
        /// The author's device id, hex.
        author: String,
        /// The entry's seq.
        seq: u64,
        /// How long to wait at most.
        timeout_ms: u64,
    },
    /// `hearth connect --offer`: make a manual WebRTC offer; [`Reply::Text`] is its text.
    ConnectOffer,
    /// `hearth connect --answer`: answer a pasted offer; [`Reply::Text`] is the answer's text.
    ConnectAnswer {
        /// The offer text.
        offer: String,
    },
    /// `hearth connect --offer`, second half: the pasted answer; [`Reply::Text`] names the
    /// answering device (the channel opens in the background).
    ConnectAccept {
        /// The answer text.
        answer: String,
    },
    /// `hearth rotate` while the daemon runs: it stops serving, rotates the home
    /// ([`crate::home::Home::rotate`]), answers [`Reply::Rotated`] and serves the new vault.
    Rotate,
    /// Show something of the vault; answered with [`Reply::Read`].
    Read {
        /// What to show.
        read: ReadRequest,
    },
    /// `hearth lock`: stop syncing and forget the vault's secret until [`Request::Unlock`]
    /// (a sealed home only: a key-file home has nothing to forget).
    Lock,
    /// Unlock a locked daemon with the home's passphrase; answered with [`Reply::Unlocked`],
    /// or [`Reply::Locked`] when the passphrase is wrong.
    Unlock {
        /// The passphrase.
        passphrase: String,
    },
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// For [`Request::Status`].
    Status(Box<DaemonStatus>),
    /// For [`Request::Write`].
    Written(WriteOutcome),
    /// For [`Request::WaitFor`]: the entry is held.
    Reached,
    /// For the `Connect*` requests.
    Text {
        /// The offer's or answer's text (empty for an accept).
        text: String,
        /// The other device, once known (hex).
        #[serde(default)]
        device: Option<String>,
    },
    /// For [`Request::Rotate`].
    Rotated(Box<Rotation>),
    /// For [`Request::Read`].
    Read(Box<View>),
    /// A part of a long list ([`View::List`]): parts follow one another, each on its line, so
    /// the first rows are shown at once; the [`Reply::Read`] with what remains ends the list.
    Rows {
        /// The next rows, in order.
        items: Vec<ListRow>,
    },
    /// The daemon is locked (or stays locked: a wrong passphrase); nothing was done.
    Locked {
        /// Why, for a person.
        message: String,
    },
    /// For [`Request::Lock`] (the daemon is locked now) and [`Request::Unlock`].
    Unlocked {
        /// False once locked by a [`Request::Lock`].
        unlocked: bool,
    },
    /// The request failed; nothing was written.
    Error {
        /// What went wrong, for a person.
        message: String,
        /// True when a name did not resolve (CLI exit status 3).
        lookup: bool,
    },
}

/// What a rotation made (the CLI prints it; the socket is the user's alone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    /// The new vault (hex).
    pub vault_id: String,
    /// This device in it (hex).
    pub device_id: String,
    /// The retired vault (hex).
    pub retired_vault_id: String,
    /// The new vault's 24 words.
    pub phrase: String,
    /// Items carried.
    pub items: usize,
    /// Kept conflicts carried.
    pub conflicts: usize,
}

impl Rotation {
    /// The summary of what [`crate::home::Home::rotate`] did.
    pub fn of(done: &crate::home::Rotated) -> Self {
        Self {
            vault_id: done.vault.to_hex(),
            device_id: done.device.to_hex(),
            retired_vault_id: done.old_vault.to_hex(),
            phrase: done.secret.phrase().to_string(),
            items: done.carried.items,
            conflicts: done.carried.conflicts,
        }
    }
}

/// Why the control socket could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// Socket I/O failed.
    #[error("daemon control socket: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon's reply did not parse.
    #[error("daemon sent an unreadable reply: {0}")]
    Reply(#[from] serde_json::Error),
    /// The request reached the daemon but no reply came (it timed out, went away or was
    /// killed): a write may or may not have been applied.
    #[error("no reply from the daemon ({0}): the outcome is unknown")]
    OutcomeUnknown(String),
}

/// The control socket's path in `home`.
pub fn socket_path(home: &Path) -> PathBuf {
    home.join("daemon.sock")
}

/// A blocking client (the CLI has no async runtime).
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
}

impl Client {
    /// Connects to the daemon of `home`; `None` when no daemon is listening.
    pub fn connect(home: &Path) -> Option<Self> {
        let stream = UnixStream::connect(socket_path(home)).ok()?;
        Some(Self { stream })
    }

    /// Sends `req` and waits up to `timeout` for the reply. Once the request is sent, any
    /// failure is [`ControlError::OutcomeUnknown`]: the daemon may have acted on it. A list
    /// sent in parts is returned whole.
    pub fn request(&mut self, req: &Request, timeout: Duration) -> Result<Reply, ControlError> {
        let mut rows = Vec::new();
        let reply = self.request_each(req, timeout, |part| {
            rows.extend(part);
            true
        })?;
        Ok(with_rows(rows, reply))
    }

    /// [`Client::request`] handing each part of a long list to `rows` as it arrives (the
    /// final reply holds the last rows); `rows` returns false to stop reading (the
    /// connection is then useless).
    pub fn request_each(
        &mut self,
        req: &Request,
        timeout: Duration,
        mut rows: impl FnMut(Vec<ListRow>) -> bool,
    ) -> Result<Reply, ControlError> {
        self.stream.set_read_timeout(Some(timeout))?;
        let mut line = zeroize::Zeroizing::new(serde_json::to_vec(req)?);
        line.push(b'\n');
        self.stream.write_all(&line)?;
        let mut reader = BufReader::new(&self.stream);
        loop {
            let mut buf = String::new();
            let reply: Reply = match reader.read_line(&mut buf) {
                Ok(0) => return Err(ControlError::OutcomeUnknown("it closed the connection".into())),
                Ok(_) => serde_json::from_str(&buf)
                    .map_err(|e| ControlError::OutcomeUnknown(format!("unreadable reply: {e}")))?,
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    return Err(ControlError::OutcomeUnknown(format!("none within {} s", timeout.as_secs())))
                }
                Err(e) => return Err(ControlError::OutcomeUnknown(e.to_string())),
            };
            match reply {
                Reply::Rows { items } => {
                    if !rows(items) {
                        return Ok(Reply::Read(Box::new(View::List { items: Vec::new() })));
                    }
                }
                other => return Ok(other),
            }
        }
    }
}

/// `reply` with the list rows that came before it in parts put back in front.
pub fn with_rows(mut rows: Vec<ListRow>, reply: Reply) -> Reply {
    match reply {
        Reply::Read(view) => match *view {
            View::List { items } => {
                rows.extend(items);
                Reply::Read(Box::new(View::List { items: rows }))
            }
            other => Reply::Read(Box::new(other)),
        },
        other => other,
    }
}

/// Binds the control socket (replacing a stale one: the caller holds the home's writer lock,
/// so no other daemon owns it) with mode 0600. It is bound inside a fresh 0700 directory,
/// set to 0600 there and only then renamed into place, so it is never reachable with the
/// umask's mode, not even for a moment.
pub(crate) fn bind(home: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::DirBuilderExt;
    let path = socket_path(home);
    let private = crate::fsutil::fresh_sibling(&path, ".dir");
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let staged = private.join("daemon.sock");
    let bound = tokio::net::UnixListener::bind(&staged).and_then(|l| {
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600))?;
        std::fs::rename(&staged, &path)?;
        Ok(l)
    });
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&private);
    bound
}

/// The next control connection from user `uid` (others are refused and closed).
pub(crate) async fn accept(listener: &tokio::net::UnixListener, uid: u32) -> tokio::net::UnixStream {
    loop {
        match listener.accept().await {
            Ok((s, _)) if same_user(&s, uid) => return s,
            Ok(_) => tracing::warn!("refused a control connection from another user"),
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("control socket accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves control connections of user `uid` until the node's input channel closes.
pub(crate) async fn serve(listener: tokio::net::UnixListener, uid: u32, to_node: mpsc::Sender<Input>) {
    loop {
        let stream = accept(&listener, uid).await;
        let to_node = to_node.clone();
        tokio::spawn(async move {
            if let Err(e) = lines(stream, |req| ask(&to_node, req)).await {
                tracing::debug!("control connection: {e}");
            }
        });
    }
}

/// The user the control socket of `home` belongs to (the daemon's, who bound it).
pub(crate) fn owner(home: &Path) -> std::io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(socket_path(home))?.uid())
}

/// True when the peer of `s` runs as `uid`: the socket's mode keeps other users out, except
/// root, which the daemon refuses too (an unlocked vault is the user's alone).
fn same_user(s: &tokio::net::UnixStream, uid: u32) -> bool {
    s.peer_cred().is_ok_and(|peer| peer.uid() == uid)
}

/// Reads request lines from `stream` and writes `answer`'s reply to each.
pub(crate) async fn lines<F, Fut>(stream: tokio::net::UnixStream, mut answer: F) -> std::io::Result<()>
where
    F: FnMut(Request) -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    use zeroize::Zeroize;
    let (read, mut write) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(read.take(MAX_REQUEST as u64 + 1));
    let mut line = String::new();
    loop {
        // An unlock request's line holds the passphrase: wiped, not just cleared.
        line.zeroize();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let reply = match serde_json::from_str::<Request>(&line) {
            Err(e) => Reply::Error { message: format!("bad request: {e}"), lookup: false },
            Ok(req) => answer(req).await,
        };
        // A long list goes in parts, so its first rows are shown at once.
        let reply = match reply {
            Reply::Read(view) => match *view {
                View::List { mut items } => {
                    while items.len() > ROWS_PER_LINE {
                        let rest = items.split_off(ROWS_PER_LINE);
                        send(&mut write, &Reply::Rows { items }).await?;
                        items = rest;
                    }
                    Reply::Read(Box::new(View::List { items }))
                }
                other => Reply::Read(Box::new(other)),
            },
            other => other,
        };
        send(&mut write, &reply).await?;
    }
}

/// Writes `reply` and a newline.
async fn send(write: &mut tokio::net::unix::OwnedWriteHalf, reply: &Reply) -> std::io::Result<()> {
    use zeroize::Zeroize;
    let mut out = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    out.push(b'\n');
    let sent = write.write_all(&out).await;
    // A read's reply holds vault values.
    out.zeroize();
    sent
}

async fn ask(to_node: &mpsc::Sender<Input>, req: Request) -> Reply {
    // A write is answered once the core has applied it or refused it, never by a timer here:
    // a "timed out" reply would claim a failure while the write waits in the core's queue
    // (the client's own deadline reports an unknown outcome instead).
    let timeout = match &req {
        Request::WaitFor { timeout_ms, .. } => Duration::from_millis(*timeout_ms),
        Request::Write { .. } => Duration::MAX,
        Request::Status => Duration::from_secs(60),
        // Gathering candidates takes at most a few seconds (STUN and TURN have timeouts).
        Request::ConnectOffer | Request::ConnectAnswer { .. } | Request::ConnectAccept { .. } => {
            Duration::from_secs(60)
        }
        // Carrying a large vault into the new one, with the node stopped meanwhile.
        Request::Rotate => Duration::from_secs(600),
        Request::Read { .. } | Request::Lock | Request::Unlock { .. } => Duration::from_secs(60),
    };
    let (tx, rx) = oneshot::channel();
    if to_node.send(Input::Control { req, reply: tx }).await.is_err() {
        return Reply::Error { message: "the daemon is shutting down".into(), lookup: false };
    }
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Reply::Error { message: "the daemon is shutting down".into(), lookup: false },
        Err(_) => Reply::Error { message: "timed out".into(), lookup: false },
    }
}

use tokio::io::AsyncReadExt as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_have_a_stable_json_shape() {
        let r = Request::WaitFor { author: "ab".into(), seq: 3, timeout_ms: 10 };
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["request"], "wait_for");
        assert_eq!(serde_json::from_value::<Request>(j).unwrap(), r);
        let e = Reply::Error { message: "x".into(), lookup: true };
        assert_eq!(serde_json::to_value(&e).unwrap()["reply"], "error");
        assert!(serde_json::from_str::<Request>("{\"request\":\"nope\"}").is_err());
        assert!(serde_json::from_str::<Request>("garbage").is_err());
    }
}
