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
//! ```

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::identity::VaultSecret;
use crate::ids::DeviceId;
use crate::vault::{Replica, ReplicaError, SqliteStore, StoreError};

const SECRET_FILE: &str = "secret";
const DB_FILE: &str = "vault.db";
const LOCK_FILE: &str = "writer.lock";
const PEERS_FILE: &str = "peers";
const FORMAT: u8 = 1;

/// How the vault secret is kept on disk.
#[derive(Debug, Clone)]
pub enum Protection {
    /// A 0600 key file, for daemons and tests.
    KeyFile,
    /// Sealed under a passphrase with argon2id.
    Passphrase(Zeroizing<String>),
}

#[derive(Serialize, Deserialize)]
enum Stored {
    Plain { secret: [u8; 32] },
    Sealed { salt: [u8; 16], nonce: [u8; 24], ciphertext: Vec<u8> },
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
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Opening the op log failed.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    /// Opening the database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another process holds the writer lock.
    #[error("another hearth process (a running daemon?) is writing to {0}")]
    Busy(PathBuf),
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

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HomeError + '_ {
    move |source| HomeError::Io { path: path.to_owned(), source }
}

fn passphrase_key(pass: &str, salt: &[u8; 16]) -> Result<Zeroizing<[u8; 32]>, HomeError> {
    let mut key = Zeroizing::new([0u8; 32]);
    argon2::Argon2::default()
        .hash_password_into(pass.as_bytes(), salt, key.as_mut())
        .map_err(|_| HomeError::WrongPassphrase)?;
    Ok(key)
}

impl Home {
    /// The home at `dir` (nothing is touched yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The op log database path.
    pub fn db_path(&self) -> PathBuf {
        self.dir.join(DB_FILE)
    }

    /// True when a vault has been initialised here.
    pub fn exists(&self) -> bool {
        self.dir.join(SECRET_FILE).exists()
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
                let mut salt = [0u8; 16];
                let mut nonce = [0u8; 24];
                rand::rngs::OsRng.fill_bytes(&mut salt);
                rand::rngs::OsRng.fill_bytes(&mut nonce);
                let key = passphrase_key(p, &salt)?;
                let ciphertext = XChaCha20Poly1305::new(key.as_ref().into())
                    .encrypt(XNonce::from_slice(&nonce), Payload { msg: secret.as_bytes(), aad: &device_id.0 })
                    .map_err(|_| HomeError::WrongPassphrase)?;
                Stored::Sealed { salt, nonce, ciphertext }
            }
        };
        let bytes = Zeroizing::new(
            postcard::to_stdvec(&SecretFile { format: FORMAT, device_id, stored })
                .map_err(|_| HomeError::Damaged(self.dir.clone()))?,
        );
        let path = self.dir.join(SECRET_FILE);
        let tmp = self.dir.join("secret.tmp");
        let mut f =
            fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))?;
        SqliteStore::open(&self.db_path())?;
        Ok(())
    }

    /// Reads the secret, unsealing it with `passphrase` when it is sealed.
    pub fn unlock(&self, passphrase: Option<&str>) -> Result<(VaultSecret, DeviceId), HomeError> {
        let path = self.dir.join(SECRET_FILE);
        if !path.exists() {
            return Err(HomeError::NotInitialized(self.dir.clone()));
        }
        let bytes = Zeroizing::new(fs::read(&path).map_err(io(&path))?);
        let file: SecretFile = postcard::from_bytes(&bytes).map_err(|_| HomeError::Damaged(path.clone()))?;
        if file.format != FORMAT {
            return Err(HomeError::Damaged(path));
        }
        let secret = match file.stored {
            Stored::Plain { secret } => VaultSecret::from_bytes(secret),
            Stored::Sealed { salt, nonce, ciphertext } => {
                let pass = passphrase.ok_or(HomeError::Locked)?;
                let key = passphrase_key(pass, &salt)?;
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
        let file = self.lock_file()?;
        match file.try_lock() {
            Ok(()) => Ok(WriterLock { _file: file }),
            Err(fs::TryLockError::WouldBlock) => Err(HomeError::Busy(self.dir.clone())),
            Err(fs::TryLockError::Error(e)) => Err(HomeError::Io { path: self.dir.join(LOCK_FILE), source: e }),
        }
    }

    /// Static peers listed in the home's `peers` file (`host:port` a line; `#` comments).
    pub fn static_peers(&self) -> Result<Vec<String>, HomeError> {
        let path = self.dir.join(PEERS_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(text
                .lines()
                .map(|l| l.split('#').next().unwrap_or_default().trim())
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(HomeError::Io { path, source: e }),
        }
    }

    /// Unlocks and opens the replica.
    pub fn open(&self, passphrase: Option<&str>) -> Result<Replica<SqliteStore>, HomeError> {
        let (secret, device) = self.unlock(passphrase)?;
        let store = SqliteStore::open(&self.db_path())?;
        Ok(Replica::open(&secret, device, store)?)
    }
}
