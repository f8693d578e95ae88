//! A device's home directory: the sealed vault secret and the SQLite op log.
//!
//! ```text
//! <home>/secret    the vault secret + device id: a 0600 key file, or sealed under a
//!                  passphrase (argon2id → XChaCha20-Poly1305)
//! <home>/vault.db  the op log (SQLite, WAL): sealed entries only
//! <home>/writer.lock  held (flock) by the one process that may write the log: the daemon
//!                  for its whole life, a CLI command for one write when no daemon runs
//! <home>/daemon.sock  the running daemon's control socket (0600)
//! <home>/peers     optional static peers for the daemon, one `host:port` a line
//! <home>/rendezvous  the rendezvous URL this device paired through (`hearth join`): the
//!                  daemon joins it when no --rendezvous is given
//! <home>/retired/<vault id>/  a vault this home rotated away from (`hearth rotate`): its
//!                  secret, op log and head, kept to answer its devices and lose nothing
//! <home>/rotating/ a rotation being built; `rotating/ready` marks it complete (see `rotate`)
//! ```

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::identity::{VaultKeys, VaultSecret};
use crate::ids::DeviceId;
use crate::reads::ItemView;
use crate::vault::{Appender, Replica, ReplicaError, SqliteStore, StoreError};

mod rotate;
pub use rotate::Rotated;

/// The store's meta key of this device's name (set by `init --name` / `join --name`, kept
/// on this device only, carried into a new vault by a rotation).
pub const DEVICE_NAME: &str = "device_name";

const SECRET_FILE: &str = "secret";
const DB_FILE: &str = "vault.db";
const LOCK_FILE: &str = "writer.lock";
const PEERS_FILE: &str = "peers";
const RENDEZVOUS_FILE: &str = "rendezvous";
const HEAD_FILE: &str = "head";
/// Written before a forked device re-enrols (its old id), removed once its edits are re-written.
const FORKED_FILE: &str = "forked-from";
/// Secret-file format: 1 sealed with the argon2 crate's defaults; 2 stores its parameters.
const FORMAT: u8 = 2;
/// Shortest passphrase accepted for sealing.
pub const MIN_PASSPHRASE: usize = 8;

/// Argon2id cost of a passphrase seal, stored in the sealed file so it can be raised later
/// without locking anyone out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl KdfParams {
    /// New seals: 64 MiB, 3 passes, 4 lanes — above OWASP's Argon2id minimum (19 MiB, 2
    /// passes) and the cost password managers use for a vault key; ~0.3 s on one core here.
    pub const DEFAULT: KdfParams = KdfParams { m_kib: 64 * 1024, t: 3, p: 4 };
    /// What format-1 files were sealed with (the argon2 crate's 0.5 defaults).
    const V1: KdfParams = KdfParams { m_kib: 19 * 1024, t: 2, p: 1 };
}

/// How the vault secret is kept on disk.
#[derive(Debug, Clone)]
pub enum Protection {
    /// A 0600 key file, for daemons and tests.
    KeyFile,
    /// Sealed under a passphrase with argon2id.
    Passphrase(Zeroizing<String>),
}

impl Protection {
    /// The passphrase that opens a home protected this way, if any.
    pub fn passphrase(&self) -> Option<&str> {
        match self {
            Protection::Passphrase(p) => Some(p.as_str()),
            Protection::KeyFile => None,
        }
    }
}

#[derive(Serialize, Deserialize)]
enum Stored {
    Plain {
        secret: [u8; 32],
    },
    /// Format 1: sealed with [`KdfParams::V1`].
    Sealed {
        salt: [u8; 16],
        nonce: [u8; 24],
        ciphertext: Vec<u8>,
    },
    /// Format 2: the parameters travel with the seal.
    SealedWith {
        kdf: KdfParams,
        salt: [u8; 16],
        nonce: [u8; 24],
        ciphertext: Vec<u8>,
    },
}

#[derive(Serialize, Deserialize)]
struct SecretFile {
    format: u8,
    device_id: DeviceId,
    stored: Stored,
}

/// Why a home could not be created or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HomeError {
    /// No vault here yet.
    #[error("no vault in {0}: run `hearth init` first")]
    NotInitialized(PathBuf),
    /// A vault exists already.
    #[error("{0} already holds a vault; use another --home")]
    AlreadyInitialized(PathBuf),
    /// The secret is passphrase-sealed and none was given.
    #[error("vault is locked: run with --passphrase-file FILE or set HEARTH_PASSPHRASE")]
    Locked,
    /// The passphrase does not open the secret.
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// The secret file does not decode.
    #[error("secret file {0} is damaged or from a newer version")]
    Damaged(PathBuf),
    /// File system error.
    #[error("{path}: {error}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error (in the message, not a `source`: a chain printed whole shows it once).
        error: std::io::Error,
    },
    /// Opening the op log failed.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// Opening the database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The passphrase is too weak to seal a vault secret with.
    #[error("passphrase refused: {0}")]
    WeakPassphrase(&'static str),
    /// Another process holds the writer lock (its pid, when it wrote one).
    #[error("another hearth process{who} is writing to {}", .0.display(), who = holder(*.1))]
    Busy(PathBuf, Option<u32>),
    /// The home is open to other users (or owned by another): its secrets and the daemon's
    /// control socket must be this user's alone.
    #[error("{path} {why}: fix it (`chmod 700 {path}` as its owner) before running the daemon")]
    NotPrivate {
        /// The home.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// The home's writer lock; released when dropped (or when the process dies, even by kill -9).
#[derive(Debug)]
pub struct WriterLock {
    _file: fs::File,
}

/// A device home directory.
#[derive(Debug, Clone)]
pub struct Home {
    dir: PathBuf,
}

/// Who holds the writer lock, as the `Busy` message says it.
fn holder(pid: Option<u32>) -> String {
    pid.map_or_else(|| " (a running daemon?)".to_owned(), |p| format!(" (pid {p}, a running daemon?)"))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HomeError + '_ {
    move |error| HomeError::Io { path: path.to_owned(), error }
}

/// The text of an optional file of the home: `None` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<String>, HomeError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

fn passphrase_key(pass: &str, salt: &[u8; 16], kdf: KdfParams) -> Result<Zeroizing<[u8; 32]>, HomeError> {
    let params = argon2::Params::new(kdf.m_kib, kdf.t, kdf.p, Some(32)).map_err(|_| HomeError::WrongPassphrase)?;
    let mut key = Zeroizing::new([0u8; 32]);
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password_into(pass.as_bytes(), salt, key.as_mut())
        .map_err(|_| HomeError::WrongPassphrase)?;
    Ok(key)
}

/// Reads the `head` file: this device's newest own seq and its hash.
fn read_head(path: &Path) -> Option<(u64, [u8; 32])> {
    let text = fs::read_to_string(path).ok()?;
    let (seq, hash) = text.trim().split_once(' ')?;
    let mut h = [0u8; 32];
    hex::decode_to_slice(hash, &mut h).ok()?;
    Some((seq.parse().ok()?, h))
}

/// Refuses passphrases too weak to protect a vault secret on a stolen disk.
pub fn check_passphrase(pass: &str) -> Result<(), HomeError> {
    let chars: Vec<char> = pass.chars().collect();
    if chars.len() < MIN_PASSPHRASE {
        return Err(HomeError::WeakPassphrase("it is shorter than 8 characters; a few words make a strong one"));
    }
    let distinct: std::collections::BTreeSet<char> = chars.iter().copied().collect();
    if distinct.len() < 4 {
        return Err(HomeError::WeakPassphrase("it repeats too few different characters"));
    }
    if chars.iter().all(char::is_ascii_digit) && chars.len() < 16 {
        return Err(HomeError::WeakPassphrase("digits alone are guessed quickly; use words"));
    }
    Ok(())
}

pub use crate::fsutil::write_private;

impl Home {
    /// The home at `dir` (nothing is touched yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Checks that the home is a directory of this user's with no access for anyone else
    /// (mode 0700, as `create` makes it): the daemon serves writes on a socket inside it.
    pub fn check_private(&self) -> Result<(), HomeError> {
        use std::os::unix::fs::MetadataExt;
        let md = fs::symlink_metadata(&self.dir).map_err(io(&self.dir))?;
        let why = if !md.is_dir() {
            Some("is not a directory".to_owned())
        } else if md.uid() != nix::unistd::geteuid().as_raw() {
            Some(format!("is owned by uid {}, not by this user", md.uid()))
        } else if md.mode() & 0o077 != 0 {
            Some(format!("has mode {:o}, open to other users", md.mode() & 0o777))
        } else {
            None
        };
        match why {
            Some(why) => Err(HomeError::NotPrivate { path: self.dir.clone(), why }),
            None => Ok(()),
        }
    }

    /// The op log database path.
    pub fn db_path(&self) -> PathBuf {
        self.dir.join(DB_FILE)
    }

    /// True when a vault has been initialised here (or a rotation that will finish on the
    /// next open is under way).
    pub fn exists(&self) -> bool {
        self.dir.join(SECRET_FILE).exists() || self.rotation_ready()
    }

    /// Creates the home complete — secret stored, op log created, this device enrolled — or
    /// not at all: it is built in a private staging directory beside the home and renamed
    /// into place, so a failure (or a crash) at any step leaves no half-made home behind.
    /// The passphrase of `protection` opens it for the enrolment (it is never asked twice).
    pub fn create_enrolled(
        &self,
        secret: &VaultSecret,
        device_id: DeviceId,
        protection: &Protection,
        now_ms: u64,
    ) -> Result<(), HomeError> {
        if self.exists() {
            return Err(HomeError::AlreadyInitialized(self.dir.clone()));
        }
        let staging = Home::new(crate::fsutil::fresh_sibling(&self.dir, ".init"));
        let built = (|| {
            staging.create(secret, device_id, protection)?;
            staging.open(protection.passphrase())?.enroll_self(now_ms)?;
            // An existing empty directory is replaced; one holding anything is refused.
            fs::rename(&staging.dir, &self.dir).map_err(io(&self.dir))
        })();
        if built.is_err() {
            let _ = fs::remove_dir_all(&staging.dir);
        }
        built
    }

    /// Stores `secret` for device `device_id` and creates the op log.
    pub fn create(&self, secret: &VaultSecret, device_id: DeviceId, protection: &Protection) -> Result<(), HomeError> {
        if self.exists() {
            return Err(HomeError::AlreadyInitialized(self.dir.clone()));
        }
        fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        // The home holds the sealed secret and the control socket: owner only.
        fs::set_permissions(&self.dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).map_err(io(&self.dir))?;
        let stored = match protection {
            Protection::KeyFile => Stored::Plain { secret: *secret.as_bytes() },
            Protection::Passphrase(p) => {
                check_passphrase(p)?;
                let mut salt = [0u8; 16];
                let mut nonce = [0u8; 24];
                rand::rngs::OsRng.fill_bytes(&mut salt);
                rand::rngs::OsRng.fill_bytes(&mut nonce);
                let kdf = KdfParams::DEFAULT;
                let key = passphrase_key(p, &salt, kdf)?;
                let ciphertext = XChaCha20Poly1305::new(key.as_ref().into())
                    .encrypt(XNonce::from_slice(&nonce), Payload { msg: secret.as_bytes(), aad: &device_id.0 })
                    .map_err(|_| HomeError::WrongPassphrase)?;
                Stored::SealedWith { kdf, salt, nonce, ciphertext }
            }
        };
        let bytes = Zeroizing::new(
            postcard::to_stdvec(&SecretFile { format: FORMAT, device_id, stored })
                .map_err(|_| HomeError::Damaged(self.dir.clone()))?,
        );
        let path = self.dir.join(SECRET_FILE);
        write_private(&path, &bytes).map_err(io(&path))?;
        // SQLite gives the -wal and -shm files the database file's mode: create it 0600 first.
        let db = self.db_path();
        fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(&db).map_err(io(&db))?;
        SqliteStore::open(&db)?;
        Ok(())
    }

    /// Reads the secret, unsealing it with `passphrase` when it is sealed.
    pub fn unlock(&self, passphrase: Option<&str>) -> Result<(VaultSecret, DeviceId), HomeError> {
        self.resume_rotation()?;
        let path = self.dir.join(SECRET_FILE);
        if !path.exists() {
            return Err(HomeError::NotInitialized(self.dir.clone()));
        }
        let bytes = Zeroizing::new(fs::read(&path).map_err(io(&path))?);
        let file: SecretFile = postcard::from_bytes(&bytes).map_err(|_| HomeError::Damaged(path.clone()))?;
        if !(1..=FORMAT).contains(&file.format) {
            return Err(HomeError::Damaged(path));
        }
        let kdf = match &file.stored {
            Stored::SealedWith { kdf, .. } => *kdf,
            _ => KdfParams::V1,
        };
        let secret = match file.stored {
            Stored::Plain { secret } => VaultSecret::from_bytes(secret),
            Stored::Sealed { salt, nonce, ciphertext } | Stored::SealedWith { salt, nonce, ciphertext, .. } => {
                let pass = passphrase.ok_or(HomeError::Locked)?;
                let key = passphrase_key(pass, &salt, kdf)?;
                let plain = Zeroizing::new(
                    XChaCha20Poly1305::new(key.as_ref().into())
                        .decrypt(XNonce::from_slice(&nonce), Payload { msg: &ciphertext, aad: &file.device_id.0 })
                        .map_err(|_| HomeError::WrongPassphrase)?,
                );
                let arr: [u8; 32] = plain.as_slice().try_into().map_err(|_| HomeError::Damaged(path.clone()))?;
                VaultSecret::from_bytes(arr)
            }
        };
        Ok((secret, file.device_id))
    }

    fn lock_file(&self) -> Result<fs::File, HomeError> {
        if !self.exists() {
            return Err(HomeError::NotInitialized(self.dir.clone()));
        }
        let path = self.dir.join(LOCK_FILE);
        fs::OpenOptions::new().create(true).truncate(false).write(true).mode(0o600).open(&path).map_err(io(&path))
    }

    /// Takes the writer lock, or fails at once with [`HomeError::Busy`].
    pub fn lock_writer(&self) -> Result<WriterLock, HomeError> {
        let mut file = self.lock_file()?;
        match file.try_lock() {
            Ok(()) => {
                // Who holds it, for the next process's error message (best effort: the lock
                // itself is the flock, not this text).
                use std::io::{Seek, Write};
                let _ =
                    file.set_len(0).and_then(|()| file.rewind()).and_then(|()| write!(file, "{}", std::process::id()));
                Ok(WriterLock { _file: file })
            }
            Err(fs::TryLockError::WouldBlock) => {
                let pid = fs::read_to_string(self.dir.join(LOCK_FILE)).ok().and_then(|s| s.trim().parse().ok());
                Err(HomeError::Busy(self.dir.clone(), pid))
            }
            Err(fs::TryLockError::Error(e)) => Err(HomeError::Io { path: self.dir.join(LOCK_FILE), error: e }),
        }
    }

    /// Static peers listed in the home's `peers` file (`host:port` a line; `#` comments).
    pub fn static_peers(&self) -> Result<Vec<String>, HomeError> {
        let text = read_optional(&self.dir.join(PEERS_FILE))?.unwrap_or_default();
        Ok(text
            .lines()
            .map(|l| l.split('#').next().unwrap_or_default().trim())
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// The rendezvous URL this device paired through (`<home>/rendezvous`), if any.
    pub fn stored_rendezvous(&self) -> Result<Option<String>, HomeError> {
        let text = read_optional(&self.dir.join(RENDEZVOUS_FILE))?;
        Ok(text.map(|t| t.trim().to_owned()).filter(|s| !s.is_empty()))
    }

    /// Keeps `url` as the rendezvous the daemon joins by default.
    pub fn store_rendezvous(&self, url: &str) -> Result<(), HomeError> {
        let path = self.dir.join(RENDEZVOUS_FILE);
        write_private(&path, format!("{}\n", url.trim()).as_bytes()).map_err(io(&path))
    }

    /// Unlocks and opens the replica. A database behind this device's own newest entry (as
    /// recorded in the `head` file beside it) opens for reading but refuses writes.
    pub fn open(&self, passphrase: Option<&str>) -> Result<Replica<SqliteStore>, HomeError> {
        let (secret, device) = self.unlock(passphrase)?;
        self.open_unlocked(&secret, device)
    }

    /// Item `name` read from the home's materialized view, without replaying the log; `None`
    /// when the view cannot answer (see [`crate::reads::item_from_view`]): open the home.
    pub fn view_item(&self, passphrase: Option<&str>, name: &str) -> Result<Option<ItemView>, HomeError> {
        let Some((secret, _, store)) = self.view_store(passphrase)? else { return Ok(None) };
        Ok(crate::reads::item_from_view(&VaultKeys::derive(&secret), &store, name)?)
    }

    /// The whole merged state read from the home's materialized view; `None` when the view
    /// cannot answer (see [`crate::reads::state_from_view`]): open the home.
    pub fn view_state(&self, passphrase: Option<&str>) -> Result<Option<crate::vault::VaultState>, HomeError> {
        let Some((secret, _, store)) = self.view_store(passphrase)? else { return Ok(None) };
        Ok(crate::reads::state_from_view(&VaultKeys::derive(&secret), &store)?)
    }

    /// `hearth devices` from the home's materialized view (see
    /// [`crate::reads::devices_from_view`]); `None` when the view cannot answer: open the home.
    pub fn view_devices(&self, passphrase: Option<&str>) -> Result<Option<crate::reads::View>, HomeError> {
        let Some((secret, device, store)) = self.view_store(passphrase)? else { return Ok(None) };
        Ok(crate::reads::devices_from_view(&VaultKeys::derive(&secret), &store, device)?)
    }

    /// A writer of this home's log that starts from its materialized view, holding the items
    /// `names` can resolve to ([`Appender`]); `None` when the view cannot vouch for a write
    /// at `now_ms`: open the home. The caller holds the writer lock.
    pub fn appender(
        &self,
        passphrase: Option<&str>,
        names: &[&str],
        now_ms: u64,
    ) -> Result<Option<Appender>, HomeError> {
        // A re-enrolment a crash interrupted is finished by the log's path first.
        if self.fork_pending() {
            return Ok(None);
        }
        let Some((secret, device, mut store)) = self.view_store(passphrase)? else { return Ok(None) };
        store.mirror_own_head(device, self.dir.join(HEAD_FILE));
        Ok(Appender::open(&secret, device, store, names, now_ms)?)
    }

    /// The secret, the device and the database for a read or write from the view; `None`
    /// when this home may be an older copy of itself (its own newest entry is not the one
    /// the head file beside the database recorded, or a verdict says so): opening the log
    /// says so on every command.
    fn view_store(&self, passphrase: Option<&str>) -> Result<Option<(VaultSecret, DeviceId, SqliteStore)>, HomeError> {
        let (secret, device) = self.unlock(passphrase)?;
        // The head file before the log, as `open_unlocked` reads them.
        let held = read_head(&self.dir.join(HEAD_FILE));
        let store = SqliteStore::open(&self.db_path())?;
        if crate::vault::replica::restored_verdict(&store, device)?
            || held.is_some_and(|h| store.own_head(device).ok().flatten() != Some(h))
        {
            return Ok(None);
        }
        Ok(Some((secret, device, store)))
    }

    /// [`Home::open`] with the secret already unlocked.
    fn open_unlocked(&self, secret: &VaultSecret, device: DeviceId) -> Result<Replica<SqliteStore>, HomeError> {
        // The head file is read before the log: a writer updates it after each commit, so
        // read in this order it never runs ahead of the log unless the log really is older.
        let head = self.dir.join(HEAD_FILE);
        let held_head = read_head(&head);
        let mut store = SqliteStore::open(&self.db_path())?;
        store.mirror_own_head(device, head.clone());
        let mut r = Replica::open(secret, device, store)?;
        if let Some((seq, hash)) = held_head {
            let have = r.version().get(device);
            if have < seq || (have == seq && r.own_hash(seq) != Some(hash)) {
                r.mark_restored(have, seq);
            }
        }
        Ok(r)
    }

    /// Re-enrols this home under a fresh device id (after a restore from an older copy):
    /// everything held stays, the old id is never written again, so no seq is signed twice.
    /// Returns (old id, new id).
    pub fn repair(&self, passphrase: Option<&str>, now_ms: u64) -> Result<(DeviceId, DeviceId), HomeError> {
        let (secret, old) = self.unlock(passphrase)?;
        let protection = self.protection(passphrase)?;
        let new = DeviceId::random();
        let staged = Home::new(self.dir.join("repair.tmp"));
        let _ = fs::remove_dir_all(staged.dir());
        staged.create(&secret, new, &protection)?;
        // The old id's head file goes first: read with the new id's secret, it would make
        // the log look older than what the new id wrote.
        let _ = fs::remove_file(self.dir.join(HEAD_FILE));
        fs::rename(staged.dir().join(SECRET_FILE), self.dir.join(SECRET_FILE)).map_err(io(&self.dir))?;
        let _ = fs::remove_dir_all(staged.dir());
        let mut r = self.open(passphrase)?;
        r.enroll_self(now_ms)?;
        Ok((old, new))
    }
}

impl Home {
    fn secret_file(&self) -> Result<Option<SecretFile>, HomeError> {
        let path = self.dir.join(SECRET_FILE);
        match fs::read(&path) {
            Ok(bytes) => postcard::from_bytes(&bytes).map(Some).map_err(|_| HomeError::Damaged(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// True when this home's secret is sealed by a passphrase (opening it needs one).
    pub fn is_sealed(&self) -> bool {
        matches!(self.protection(None), Err(HomeError::Locked))
    }

    /// How this home's secret is kept (a new secret for it is kept the same way).
    pub fn protection(&self, passphrase: Option<&str>) -> Result<Protection, HomeError> {
        let file = self.secret_file()?.ok_or_else(|| HomeError::NotInitialized(self.dir.clone()))?;
        Ok(match (&file.stored, passphrase) {
            (Stored::Plain { .. }, _) => Protection::KeyFile,
            (_, Some(p)) => Protection::Passphrase(Zeroizing::new(p.to_owned())),
            (_, None) => return Err(HomeError::Locked),
        })
    }
}

/// What [`Home::settle_own_fork`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reenrolled {
    /// The forked device id, never written again.
    pub old: DeviceId,
    /// The id this home writes as now.
    pub new: DeviceId,
    /// Edits of the old id's voided branch re-written under the new one.
    pub rewritten: usize,
}

impl Reenrolled {
    /// The one line that tells the user what happened.
    pub fn explain(&self) -> String {
        format!(
            "This device's log had forked (its home was restored from an older copy and written again): it now writes as device {} (was {}) and re-wrote the {} edit(s) it had made since; values of the other branch are listed by `hearth conflicts --void`.",
            self.new, self.old, self.rewritten
        )
    }
}

impl Home {
    /// True when a re-enrolment after a fork was started and not finished (a crash).
    pub fn fork_pending(&self) -> bool {
        self.dir.join(FORKED_FILE).exists()
    }

    /// When this device's own log was found forked (a peer settled it), re-enrols the home
    /// under a new device id and re-writes the edits the settlement voided, so nothing typed
    /// here is lost; resumes one a crash interrupted. The caller holds the writer lock.
    /// (It unlocks and opens the home: callers check [`Replica::forked_self`] or
    /// [`Home::fork_pending`] first.)
    pub fn settle_own_fork(&self, passphrase: Option<&str>, now_ms: u64) -> Result<Option<Reenrolled>, HomeError> {
        let marker = self.dir.join(FORKED_FILE);
        let pending = match read_optional(&marker)? {
            Some(text) => Some(DeviceId::from_hex(&text).ok_or_else(|| HomeError::Damaged(marker.clone()))?),
            None => None,
        };
        // One open (one key derivation for a sealed home) tells the id and whether it forked.
        let r = self.open(passphrase)?;
        let current = r.device_id();
        let old = match pending {
            Some(old) => old,
            None => {
                if !r.forked_self() {
                    return Ok(None);
                }
                write_private(&marker, current.to_hex().as_bytes()).map_err(io(&marker))?;
                current
            }
        };
        drop(r);
        let new = if current == old { self.repair(passphrase, now_ms)?.1 } else { current };
        let mut r = self.open(passphrase)?;
        r.enroll_self(now_ms)?;
        let rewritten = r.rewrite_forked(old, now_ms)?.len();
        fs::remove_file(&marker).map_err(io(&marker))?;
        Ok(Some(Reenrolled { old, new, rewritten }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(home: &Home) -> SecretFile {
        postcard::from_bytes(&fs::read(home.dir().join(SECRET_FILE)).unwrap()).unwrap()
    }

    #[test]
    fn a_sealed_secret_records_its_kdf_parameters_and_old_files_still_open() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().join("h"));
        let secret = VaultSecret::from_bytes([5; 32]);
        let pass = Protection::Passphrase(Zeroizing::new("correct horse battery".into()));
        home.create(&secret, DeviceId([1; 16]), &pass).unwrap();
        let file = stored(&home);
        assert_eq!(file.format, FORMAT);
        assert!(matches!(file.stored, Stored::SealedWith { kdf: KdfParams::DEFAULT, .. }));
        assert_eq!(home.unlock(Some("correct horse battery")).unwrap().0.as_bytes(), secret.as_bytes());
        assert!(matches!(home.unlock(Some("wrong horse battery")), Err(HomeError::WrongPassphrase)));
        // A format-1 file (the crate's default parameters, none stored) keeps opening.
        let salt = [3; 16];
        let nonce = [4; 24];
        let key = passphrase_key("old passphrase", &salt, KdfParams::V1).unwrap();
        let ciphertext = XChaCha20Poly1305::new(key.as_ref().into())
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: secret.as_bytes(), aad: &[1; 16] })
            .unwrap();
        let v1 =
            SecretFile { format: 1, device_id: DeviceId([1; 16]), stored: Stored::Sealed { salt, nonce, ciphertext } };
        fs::write(home.dir().join(SECRET_FILE), postcard::to_stdvec(&v1).unwrap()).unwrap();
        assert_eq!(home.unlock(Some("old passphrase")).unwrap().0.as_bytes(), secret.as_bytes());
    }

    #[test]
    fn weak_passphrases_are_refused_with_a_reason() {
        for weak in ["short", "aaaaaaaaaaaa", "abababababab", "12345678"] {
            assert!(matches!(check_passphrase(weak), Err(HomeError::WeakPassphrase(_))), "{weak}");
        }
        assert!(check_passphrase("correct horse").is_ok());
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path().join("h"));
        let weak = Protection::Passphrase(Zeroizing::new("1234".into()));
        assert!(matches!(
            home.create(&VaultSecret::from_bytes([5; 32]), DeviceId([1; 16]), &weak),
            Err(HomeError::WeakPassphrase(_))
        ));
        assert!(!home.exists());
    }

    #[test]
    fn private_files_are_0600_and_never_written_through_a_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle");
        write_private(&path, b"x").unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // Overwriting replaces the file; a symlink at the target is replaced, not followed.
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        write_private(&link, b"new").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 3, "no temporary file left behind");
    }
}
