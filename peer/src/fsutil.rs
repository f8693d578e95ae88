//! Private files: written whole, mode 0600, never through a link.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rand::RngCore;

/// 16 random hex digits (OS randomness): fresh names nobody can predict.
pub(crate) fn random_hex() -> String {
    let mut rnd = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut rnd);
    hex::encode(rnd)
}

/// A fresh hidden name beside `path`, `.NAME.RANDOM` + `suffix`, in the same directory (so a
/// rename onto `path` stays on one file system).
pub(crate) fn fresh_sibling(path: &Path, suffix: &str) -> PathBuf {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.join(format!(".{name}.{}{suffix}", random_hex()))
}

/// Writes `bytes` to `path` with mode 0600 through a fresh temporary name in the same
/// directory (created exclusively, links not followed), synced, then renamed over `path`.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = fresh_sibling(path, ".tmp");
    let mut f =
        fs::OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(&tmp)?;
    let res = f.write_all(bytes).and_then(|()| f.sync_all()).and_then(|()| fs::rename(&tmp, path));
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}
