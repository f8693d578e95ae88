//! Rotation in place: a new vault secret for this home, the current state carried into it,
//! the old vault retired and kept beside it.
//!
//! Crash-safe by one commit point. The new vault is built complete in `rotating/` (secret,
//! op log with the carried state, this device enrolled), then the old vault's retirement is
//! stored in its own log, then `rotating/ready` is written: the commit. The rest only moves
//! files, and [`Home::unlock`] finishes it on the next open, without any secret: the old
//! vault's files go to `retired/<vault id>/` (the secret last, so while it is still in the
//! home it says the old vault's files are still there), then the new vault's move in (the
//! secret last again). A crash before the commit leaves the old vault in place: `rotating/`
//! is dropped on the next open, and a vault this device retired without finishing may be
//! rotated again.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{io, write_private, Home, HomeError, DB_FILE, DEVICE_NAME, FORKED_FILE, HEAD_FILE, SECRET_FILE};
use crate::identity::{VaultKeys, VaultSecret};
use crate::ids::{DeviceId, VaultId};
use crate::vault::carry::{carry, Carried};
use crate::vault::{LogStore, Predecessor, Replica, ReplicaError, SqliteStore};

const ROTATING: &str = "rotating";
const RETIRED: &str = "retired";
const READY: &str = "ready";
/// One vault's files in a home, in the order they move: the secret last.
const VAULT_FILES: [&str; 6] = [DB_FILE, "vault.db-wal", "vault.db-shm", HEAD_FILE, FORKED_FILE, SECRET_FILE];

/// The commit record of a rotation.
#[derive(Serialize, Deserialize)]
struct Ready {
    old_vault: VaultId,
    old_device: DeviceId,
}

/// What [`Home::rotate`] did.
#[derive(Debug)]
pub struct Rotated {
    /// The new vault's secret (its phrase is shown once).
    pub secret: VaultSecret,
    /// The new vault.
    pub vault: VaultId,
    /// This device in the new vault.
    pub device: DeviceId,
    /// The retired vault.
    pub old_vault: VaultId,
    /// What was carried.
    pub carried: Carried,
}

impl Home {
    /// Rotates this home's vault (the caller holds the writer lock): see the module doc.
    pub fn rotate(&self, passphrase: Option<&str>, now_ms: u64) -> Result<Rotated, HomeError> {
        let done = self.commit_rotation(passphrase, now_ms, false)?;
        self.resume_rotation()?;
        Ok(done)
    }

    /// [`Home::rotate`] even when another device retired the vault: every holder of the old
    /// words can sign a retirement, so a thief can retire it first to lock the family out of
    /// rotating (they would all be told to pair again, with no new vault to pair into).
    pub fn rotate_retired(&self, passphrase: Option<&str>, now_ms: u64) -> Result<Rotated, HomeError> {
        let done = self.commit_rotation(passphrase, now_ms, true)?;
        self.resume_rotation()?;
        Ok(done)
    }

    /// Everything up to the commit point: the new vault built, the old one retired, `ready`.
    fn commit_rotation(&self, passphrase: Option<&str>, now_ms: u64, force: bool) -> Result<Rotated, HomeError> {
        let protection = self.protection(passphrase)?;
        let (old_secret, old_device) = self.unlock(passphrase)?;
        let mut old = self.open_unlocked(&old_secret, old_device)?;
        // Retired by another device: this one pairs again. Retired here without finishing (a
        // crash before the commit): rotating again finishes it, under the same record.
        if let Some(r) = old.retirement().filter(|r| r.by != old_device && !force) {
            return Err(ReplicaError::Retired(Box::new(r.clone())).into());
        }
        let secret = VaultSecret::generate();
        let device = DeviceId::random();
        let carried = self
            .stage(&secret, device, &protection, &mut old, now_ms, |old, new| Ok(carry(old, new, &secret, now_ms)?))?;
        old.retire(now_ms)?;
        let old_vault = old.vault_id();
        drop(old);
        self.commit(&Ready { old_vault, old_device })?;
        Ok(Rotated { vault: VaultKeys::derive(&secret).vault_id, secret, device, old_vault, carried })
    }

    /// Pairs this home, whose vault another device retired, into a new vault in place (`hearth
    /// join` on the home that was told to pair again): the retired vault moves to
    /// `retired/<vault id>/` (everything it held stays readable there) and the new one,
    /// this device enrolled under `device`, takes its place. Crash-safe like a rotation (the
    /// same commit marker and moves). `protection` must open the retired vault's secret.
    pub fn replace_retired(
        &self,
        secret: &VaultSecret,
        device: DeviceId,
        protection: &super::Protection,
        now_ms: u64,
    ) -> Result<(), HomeError> {
        // Held until the new vault is in place (not by the caller: the join's node that syncs
        // it takes the lock next).
        let _lock = self.lock_writer()?;
        let (old_secret, old_device) = self.unlock(protection.passphrase())?;
        let mut old = self.open_unlocked(&old_secret, old_device)?;
        if old.retirement().is_none_or(|r| r.by == old_device) {
            return Err(HomeError::AlreadyInitialized(self.dir.clone()));
        }
        let old_vault = old.vault_id();
        self.stage(secret, device, protection, &mut old, now_ms, |_, _| Ok(()))?;
        drop(old);
        self.commit(&Ready { old_vault, old_device })?;
        self.resume_rotation()
    }

    /// Builds the new vault in `rotating/`: the secret kept like `protection` says, this
    /// device enrolled, the device name kept, then `fill` (the carried state); nothing is
    /// left of it on failure.
    fn stage<T>(
        &self,
        secret: &VaultSecret,
        device: DeviceId,
        protection: &super::Protection,
        old: &mut Replica<SqliteStore>,
        now_ms: u64,
        fill: impl FnOnce(&Replica<SqliteStore>, &mut Replica<SqliteStore>) -> Result<T, HomeError>,
    ) -> Result<T, HomeError> {
        let staging = Home::new(self.dir.join(ROTATING));
        let _ = fs::remove_dir_all(staging.dir());
        let built = (|| {
            staging.create(secret, device, protection)?;
            let mut new = staging.open_unlocked(secret, device)?;
            new.enroll_self(now_ms)?;
            // The name is written into the new vault under the new id when the daemon next
            // starts (`node::name_self`) or the home pairs again (`join`).
            if let Some(name) = old.store_mut().get_meta(DEVICE_NAME)? {
                new.store_mut().set_meta(DEVICE_NAME, &name)?;
            }
            fill(old, &mut new)
        })();
        if built.is_err() {
            let _ = fs::remove_dir_all(staging.dir());
        }
        built
    }

    /// Writes the commit marker of the vault staged in `rotating/`: from here on the next
    /// open finishes the moves.
    fn commit(&self, ready: &Ready) -> Result<(), HomeError> {
        let staging = self.dir.join(ROTATING);
        let bytes = postcard::to_stdvec(ready).map_err(|_| HomeError::Damaged(self.dir.clone()))?;
        let marker = staging.join(READY);
        write_private(&marker, &bytes).map_err(io(&marker))?;
        sync_dir(&staging);
        Ok(())
    }

    /// True when a committed rotation still has files to move.
    pub(super) fn rotation_ready(&self) -> bool {
        self.dir.join(ROTATING).join(READY).exists()
    }

    /// Finishes a committed rotation's moves, or drops an uncommitted one (see the module
    /// doc). Needs no secret; every step may be repeated.
    pub(super) fn resume_rotation(&self) -> Result<(), HomeError> {
        let staging = self.dir.join(ROTATING);
        if !staging.exists() {
            return Ok(());
        }
        let marker = staging.join(READY);
        let bytes = match fs::read(&marker) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return fs::remove_dir_all(&staging).map_err(io(&staging));
            }
            Err(e) => return Err(io(&marker)(e)),
        };
        let ready: Ready = postcard::from_bytes(&bytes).map_err(|_| HomeError::Damaged(marker.clone()))?;
        if self.secret_file()?.is_some_and(|f| f.device_id == ready.old_device) {
            let retired = self.dir.join(RETIRED).join(ready.old_vault.to_hex());
            fs::DirBuilder::new().recursive(true).mode(0o700).create(&retired).map_err(io(&retired))?;
            move_files(&self.dir, &retired)?;
        }
        if self.secret_file()?.is_none() {
            move_files(&staging, &self.dir)?;
        }
        sync_dir(&self.dir);
        fs::remove_dir_all(&staging).map_err(io(&staging))
    }

    /// The vaults this home rotated away from, each with the keys to answer its devices'
    /// handshakes and its retirement records (for the daemon: see [`Predecessor`]).
    pub fn predecessors(&self, passphrase: Option<&str>) -> Result<Vec<Predecessor>, HomeError> {
        let dir = self.dir.join(RETIRED);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(&dir)(e)),
        };
        let mut out = Vec::new();
        for e in entries {
            let path = e.map_err(io(&dir))?.path();
            let home = Home::new(&path);
            let (secret, device) = home.unlock(passphrase)?;
            let r = home.open_unlocked(&secret, device)?;
            if r.retirement().is_some() {
                out.push(Predecessor::derive(&secret, device, r.membership()));
            }
        }
        Ok(out)
    }

    /// The retired vaults' directories (to read or export what they held).
    pub fn retired_homes(&self) -> Vec<Home> {
        let Ok(entries) = fs::read_dir(self.dir.join(RETIRED)) else { return Vec::new() };
        entries.filter_map(Result::ok).map(|e| Home::new(e.path())).collect()
    }
}

/// Moves a vault's files from `from` to `to` (those present), the secret last.
fn move_files(from: &Path, to: &Path) -> Result<(), HomeError> {
    for f in VAULT_FILES {
        let src = from.join(f);
        match fs::rename(&src, to.join(f)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&src)(e)),
        }
    }
    Ok(())
}

/// Makes renames in `dir` durable (best effort: a crash may otherwise undo them, which the
/// resume repeats anyway).
fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::home::Protection;
    use crate::vault::Op;

    const PASS: &str = "correct horse battery";

    /// A home holding one item; sealed under [`PASS`] when `sealed` (each open then costs an
    /// argon2 derivation: the loops use key files).
    fn home(dir: &Path, sealed: bool) -> Home {
        let h = Home::new(dir.join("h"));
        let p = if sealed { Protection::Passphrase(zeroize::Zeroizing::new(PASS.into())) } else { Protection::KeyFile };
        h.create_enrolled(&VaultSecret::from_bytes([3; 32]), DeviceId([1; 16]), &p, 1_000).unwrap();
        let mut r = h.open(Some(PASS)).unwrap();
        let op = Op::Put {
            item: crate::ids::ItemId([5; 16]),
            name: Some("mail".into()),
            fields: vec![("password".into(), Some("hunter22".into()))],
        };
        r.write(&op, 2_000).unwrap();
        r.store_mut().set_meta(DEVICE_NAME, b"laptop").unwrap();
        h
    }

    /// Another device of `h`'s vault retires it, and `h` learns it; the vault's id.
    fn retired_by_another(h: &Home) -> VaultId {
        let mut r = h.open(Some(PASS)).unwrap();
        let secret = VaultSecret::from_bytes([3; 32]);
        let mut other = Replica::open(&secret, DeviceId([2; 16]), crate::vault::MemStore::default()).unwrap();
        other.enroll_self(1).unwrap();
        r.add_membership(vec![other.retire(2_500).unwrap()]).unwrap();
        r.vault_id()
    }

    fn digest(h: &Home) -> [u8; 32] {
        h.open(Some(PASS)).unwrap().state().digest()
    }

    #[test]
    fn a_rotation_moves_the_home_to_a_new_vault_and_keeps_the_old_one_retired() {
        let dir = tempfile::tempdir().unwrap();
        let h = home(dir.path(), true);
        let (before, old_vault) = (digest(&h), h.open(Some(PASS)).unwrap().vault_id());
        let done = h.rotate(Some(PASS), 3_000).unwrap();
        assert_eq!(done.old_vault, old_vault);
        assert_ne!(done.vault, old_vault);
        assert_eq!(done.carried.items, 1);
        let mut r = h.open(Some(PASS)).unwrap();
        assert_eq!((r.vault_id(), r.device_id()), (done.vault, done.device));
        assert!(r.retirement().is_none());
        assert_eq!(
            r.state().visible().next().map(|(_, it)| it.field_values()["password"].to_owned()).as_deref(),
            Some("hunter22")
        );
        assert_eq!(r.store_mut().get_meta(DEVICE_NAME).unwrap().as_deref(), Some(&b"laptop"[..]));
        r.write(&Op::Delete { item: crate::ids::ItemId([5; 16]) }, 4_000).unwrap();
        assert!(matches!(h.protection(None), Err(HomeError::Locked)), "the new secret is sealed like the old");
        // The old vault: retired by this device, everything it held still there.
        let old = h.retired_homes();
        assert_eq!(old.len(), 1);
        let o = old[0].open(Some(PASS)).unwrap();
        assert_eq!((o.vault_id(), o.state().digest()), (old_vault, before));
        assert_eq!(o.retirement().map(|r| (r.by, r.at_ms)), Some((DeviceId([1; 16]), 3_000)));
        let p = h.predecessors(Some(PASS)).unwrap();
        assert_eq!((p.len(), p[0].vault_id, p[0].notice.len()), (1, old_vault, 1));
        assert!(!dir.path().join("h").join(ROTATING).exists());
        // Rotating again retires the second vault too.
        h.rotate(Some(PASS), 5_000).unwrap();
        assert_eq!(h.retired_homes().len(), 2);
    }

    #[test]
    fn a_crash_before_the_commit_leaves_the_old_vault_and_rotating_again_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let h = home(dir.path(), false);
        let before = digest(&h);
        let old_vault = h.open(Some(PASS)).unwrap().vault_id();
        // Built but not committed: dropped on the next open.
        h.commit_rotation(Some(PASS), 3_000, false).unwrap();
        fs::remove_file(h.dir().join(ROTATING).join(READY)).unwrap();
        let r = h.open(Some(PASS)).unwrap();
        assert!(!h.dir().join(ROTATING).exists());
        assert_eq!(r.vault_id(), old_vault, "still the old vault");
        assert_eq!(r.state().digest(), before, "nothing lost");
        assert_eq!(r.retirement().map(|r| r.by), Some(DeviceId([1; 16])), "retired here, unfinished");
        drop(r);
        // This device may rotate the vault it retired itself; the record stays the first one.
        let done = h.rotate(Some(PASS), 9_000).unwrap();
        assert_eq!(done.old_vault, old_vault);
        let o = h.retired_homes()[0].open(Some(PASS)).unwrap();
        assert_eq!(o.membership().retirement_records().len(), 1);
        assert_eq!(o.retirement().map(|r| r.at_ms), Some(3_000));
    }

    #[test]
    fn a_crash_anywhere_after_the_commit_is_finished_by_the_next_open() {
        // Every prefix of the moves: k old files moved, then k new files moved.
        for k in 0..=2 * VAULT_FILES.len() {
            let dir = tempfile::tempdir().unwrap();
            let h = home(dir.path(), false);
            let before = digest(&h);
            let done = h.commit_rotation(Some(PASS), 3_000, false).unwrap();
            let retired = h.dir().join(RETIRED).join(done.old_vault.to_hex());
            fs::create_dir_all(&retired).unwrap();
            let staging = h.dir().join(ROTATING);
            for (i, f) in VAULT_FILES.iter().chain(VAULT_FILES.iter()).enumerate().take(k) {
                let (from, to) =
                    if i < VAULT_FILES.len() { (h.dir(), retired.as_path()) } else { (staging.as_path(), h.dir()) };
                let _ = fs::rename(from.join(f), to.join(f));
            }
            assert!(h.exists(), "k={k}: a home mid-rotation still exists");
            let r = h.open(Some(PASS)).unwrap();
            assert_eq!((r.vault_id(), r.device_id()), (done.vault, done.device), "k={k}");
            assert!(!staging.exists());
            let o = h.retired_homes()[0].open(Some(PASS)).unwrap();
            assert_eq!(o.state().digest(), before, "k={k}: the old vault whole");
            assert_eq!(r.state().visible().count(), 1, "k={k}: the new vault whole");
        }
    }

    #[test]
    fn a_home_with_no_rotation_has_no_predecessor_and_damage_is_reported_not_destroyed() {
        let dir = tempfile::tempdir().unwrap();
        let h = home(dir.path(), false);
        assert!(h.predecessors(None).unwrap().is_empty());
        assert!(h.retired_homes().is_empty());
        // `retired` that is not a directory: an error, not "none".
        fs::write(h.dir().join(RETIRED), b"x").unwrap();
        assert!(matches!(h.predecessors(None), Err(HomeError::Io { .. })));
        fs::remove_file(h.dir().join(RETIRED)).unwrap();
        // A commit marker that cannot be read: the staging is kept and the open fails.
        fs::create_dir_all(h.dir().join(ROTATING).join(READY)).unwrap();
        assert!(matches!(h.open(None), Err(HomeError::Io { .. })));
        assert!(h.dir().join(ROTATING).exists());
        fs::remove_dir_all(h.dir().join(ROTATING)).unwrap();
        // A move that fails stops the resume before the new vault's files come in (they
        // would replace the old log still in the home).
        let before = digest(&h);
        let done = h.commit_rotation(None, 3_000, false).unwrap();
        let blocker = h.dir().join(RETIRED).join(done.old_vault.to_hex()).join(DB_FILE).join("x");
        fs::create_dir_all(&blocker).unwrap();
        assert!(matches!(h.open(None), Err(HomeError::Io { .. })));
        assert_eq!(
            h.secret_file().unwrap().map(|f| f.device_id),
            Some(DeviceId([1; 16])),
            "the old vault still in place"
        );
        fs::remove_dir_all(blocker.parent().unwrap()).unwrap();
        let r = h.open(None).unwrap();
        assert_eq!(r.vault_id(), done.vault);
        assert_eq!(h.retired_homes()[0].open(None).unwrap().state().digest(), before);
    }

    #[test]
    fn a_home_told_of_a_rotation_pairs_again_in_place_and_keeps_the_old_vault() {
        let dir = tempfile::tempdir().unwrap();
        let h = home(dir.path(), false);
        let before = digest(&h);
        let new_secret = VaultSecret::from_bytes([8; 32]);
        // Not retired (or retired by this device itself): refused, as a second init is.
        let p = crate::home::Protection::KeyFile;
        assert!(matches!(
            h.replace_retired(&new_secret, DeviceId([4; 16]), &p, 1),
            Err(HomeError::AlreadyInitialized(_))
        ));
        let old_vault = retired_by_another(&h);
        h.replace_retired(&new_secret, DeviceId([4; 16]), &p, 3_000).unwrap();
        let mut r = h.open(None).unwrap();
        assert_eq!((r.device_id(), r.vault_id()), (DeviceId([4; 16]), VaultKeys::derive(&new_secret).vault_id));
        assert!(r.retirement().is_none() && r.is_empty());
        assert_eq!(r.store_mut().get_meta(DEVICE_NAME).unwrap().as_deref(), Some(&b"laptop"[..]));
        let old = h.retired_homes()[0].open(None).unwrap();
        assert_eq!((old.vault_id(), old.state().digest()), (old_vault, before));
        // It answers the old vault's devices with the retirement it was told.
        assert_eq!(h.predecessors(None).unwrap()[0].notice.len(), 1);
    }

    #[test]
    fn a_vault_retired_by_another_device_is_not_rotated_again() {
        let dir = tempfile::tempdir().unwrap();
        let h = home(dir.path(), false);
        retired_by_another(&h);
        assert!(matches!(h.rotate(Some(PASS), 3_000), Err(HomeError::Replica(ReplicaError::Retired(_)))));
        assert!(!h.dir().join(ROTATING).exists() && h.retired_homes().is_empty());
        // Unless the user insists (a thief may have retired it): the state is carried.
        let before = digest(&h);
        let done = h.rotate_retired(Some(PASS), 4_000).unwrap();
        let r = h.open(Some(PASS)).unwrap();
        assert_eq!((r.vault_id(), r.retirement().is_none()), (done.vault, true));
        assert_eq!(h.retired_homes()[0].open(Some(PASS)).unwrap().state().digest(), before);
    }
}
