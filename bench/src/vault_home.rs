//! Vault homes for the benchmarks that run real `hearth` processes: an enrolled home, and a
//! source home holding the workload's records (written in memory, stored in one commit).

use std::path::Path;

use hearth_peer::home::{Home, Protection};
use hearth_peer::identity::VaultSecret;
use hearth_peer::ids::{DeviceId, ItemId};
use hearth_peer::vault::{LogStore, MemStore, Op, Replica, SqliteStore};

use crate::workload::records;

/// A new home `dir/name` of the vault `secret` as device `id`, enrolled, secret in a key file.
pub(crate) fn home(dir: &Path, name: &str, secret: &VaultSecret, id: DeviceId) -> anyhow::Result<Home> {
    let h = Home::new(dir.join(name));
    h.create(secret, id, &Protection::KeyFile)?;
    h.open(None)?.enroll_self(1)?;
    Ok(h)
}

/// A's home with the records (written in memory, stored in one commit: setup is not measured).
pub(crate) fn source(dir: &Path, secret: &VaultSecret, n: usize) -> anyhow::Result<DeviceId> {
    let id = DeviceId([1; 16]);
    let h = home(dir, "a", secret, id)?;
    let mut mem = Replica::open(secret, id, MemStore::default())?;
    mem.enroll_self(1)?;
    for (i, r) in records(n).into_iter().enumerate() {
        let mut item = [0u8; 16];
        item[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let fields = r.fields.into_iter().map(|(k, v)| (k.to_owned(), Some(v))).collect();
        mem.write(&Op::Put { item: ItemId(item), name: Some(r.title), fields }, 1_700_000_000_000 + i as u64)?;
    }
    let entries = mem.store_mut().load_entries()?;
    let mut store = SqliteStore::open(&h.db_path())?;
    store.commit(&entries, &[])?;
    Ok(id)
}
