//! Durable storage of the op log: SQLite (WAL) for devices, memory for simulations.
//!
//! The store holds only what is already sealed or public: entry headers, sealed payloads,
//! hashes, head signatures and membership records. Every commit is one transaction, so a
//! crash leaves either a whole received batch or none of it.

use std::cell::Cell;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use ed25519_dalek::Signature;

use super::append::WriteBase;
use super::entry::Entry;
use super::view::ViewUpdate;
use crate::identity::MembershipRecord;
use crate::ids::{DeviceId, ItemId};

/// An entry, its hash, and the author's head signature at exactly this entry when known.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredEntry {
    /// The entry.
    pub entry: Entry,
    /// Its chain hash (cached; recomputed and checked on load).
    pub hash: [u8; 32],
    /// The author's signature over its log ending at this entry. Authors sign every entry;
    /// a receiver keeps the signatures that came with batches (each author's last entry of a
    /// batch always has one), and entries between them are authenticated by the hash chain.
    pub head: Option<Signature>,
}

/// Storage failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite failed.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A file beside the database could not be written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A row does not decode: the file is damaged or from an incompatible version.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// Where a replica keeps its log.
pub trait LogStore {
    /// Appends entries and membership records atomically (all or nothing).
    fn commit(&mut self, entries: &[StoredEntry], membership: &[MembershipRecord]) -> Result<(), StoreError>;
    /// Every entry in the order it was committed (a causal order).
    fn load_entries(&self) -> Result<Vec<StoredEntry>, StoreError>;
    /// The entries of `author` from seq `from` to `to` held in the log (not voided), in seq
    /// order: what a replica forwards, read back when it builds a batch.
    fn load_run(&self, author: DeviceId, from: u64, to: u64) -> Result<Vec<StoredEntry>, StoreError>;
    /// Every membership record.
    fn load_membership(&self) -> Result<Vec<MembershipRecord>, StoreError>;
    /// Membership and entries as of one moment: a reader next to a writing process never
    /// sees entries whose author's enrolment it has not loaded.
    fn load_snapshot(&self) -> Result<(Vec<MembershipRecord>, Vec<StoredEntry>), StoreError> {
        Ok((self.load_membership()?, self.load_entries()?))
    }
    /// Moves the entries of `author` beyond seq `after` out of the log into the void list
    /// (they stay sealed, so the user can still see and re-apply what they said), atomically.
    fn void(&mut self, author: DeviceId, after: u64) -> Result<(), StoreError>;
    /// Every voided entry, in the order it was voided.
    fn load_voided(&self) -> Result<Vec<StoredEntry>, StoreError>;
    /// A small metadata value.
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Sets a small metadata value.
    fn set_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// True when this store keeps a materialized view ([`super::view`]; device homes, not
    /// the simulations).
    fn keeps_view(&self) -> bool {
        false
    }
    /// Writes `up` into the view as of the log this handle last loaded or committed. Returns
    /// false, writing nothing, when the log moved on since (another writer), or when `up`
    /// is partial and the view did not reflect that log before (write it in full then).
    fn put_view(&mut self, up: &mut ViewUpdate<'_>) -> Result<bool, StoreError> {
        let _ = up;
        Ok(false)
    }
}

/// An in-memory store (tests, simulation). Commits are atomic by construction.
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    entries: Vec<StoredEntry>,
    voided: Vec<StoredEntry>,
    membership: Vec<MembershipRecord>,
    meta: std::collections::BTreeMap<String, Vec<u8>>,
}

impl LogStore for MemStore {
    fn commit(&mut self, entries: &[StoredEntry], membership: &[MembershipRecord]) -> Result<(), StoreError> {
        self.entries.extend_from_slice(entries);
        self.membership.extend_from_slice(membership);
        Ok(())
    }
    fn load_entries(&self) -> Result<Vec<StoredEntry>, StoreError> {
        Ok(self.entries.clone())
    }
    fn load_membership(&self) -> Result<Vec<MembershipRecord>, StoreError> {
        Ok(self.membership.clone())
    }
    fn load_run(&self, author: DeviceId, from: u64, to: u64) -> Result<Vec<StoredEntry>, StoreError> {
        let mut run: Vec<StoredEntry> = self
            .entries
            .iter()
            .filter(|e| e.entry.header.author == author && (from..=to).contains(&e.entry.header.seq))
            .cloned()
            .collect();
        run.sort_by_key(|e| e.entry.header.seq);
        Ok(run)
    }
    fn void(&mut self, author: DeviceId, after: u64) -> Result<(), StoreError> {
        let (gone, kept) = std::mem::take(&mut self.entries)
            .into_iter()
            .partition(|e| e.entry.header.author == author && e.entry.header.seq > after);
        self.entries = kept;
        self.voided.extend::<Vec<StoredEntry>>(gone);
        Ok(())
    }
    fn load_voided(&self) -> Result<Vec<StoredEntry>, StoreError> {
        Ok(self.voided.clone())
    }
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(key).cloned())
    }
    fn set_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.meta.insert(key.to_owned(), value.to_vec());
        Ok(())
    }
}

/// The SQLite store of a device home.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    /// This device, the file beside the database that mirrors its newest own entry, and a
    /// head committed but not yet written there.
    mirror: Option<(DeviceId, std::path::PathBuf, Option<OwnHead>)>,
    /// The log as this handle last loaded or committed it (set by `load_snapshot`, which
    /// takes `&self`).
    position: Cell<Option<Position>>,
    /// The log position the view reflected as of then, when it is that log's.
    view_pos: Cell<Option<Position>>,
}

/// A log position: the last row ids of entries, voided entries and membership records. Rows
/// are only ever added, except a void, which moves entries into `voided`: so two different
/// logs never share a position.
type Position = [i64; 3];

/// The meta key holding the position the view reflects.
const VIEW_AT: &str = "view_at";

/// The meta key holding the log's [`WriteBase`] at the view's position.
const VIEW_BASE: &str = "view_base";

fn position(conn: &Connection) -> Result<Position, StoreError> {
    Ok(conn.query_row(
        "SELECT (SELECT ifnull(max(id), 0) FROM entries), (SELECT ifnull(max(id), 0) FROM voided),
                (SELECT ifnull(max(id), 0) FROM membership)",
        [],
        |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?]),
    )?)
}

/// True when the view reflects the log as `conn` sees it now (read both in one transaction).
fn view_is_current(conn: &Connection) -> Result<bool, StoreError> {
    Ok(view_at(conn)? == Some(position(conn)?))
}

fn view_at(conn: &Connection) -> Result<Option<Position>, StoreError> {
    let raw: Option<Vec<u8>> =
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [VIEW_AT], |r| r.get(0)).optional()?;
    Ok(raw.and_then(|b| postcard::from_bytes(&b).ok()))
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// A throwaway in-memory database (tests and benchmarks of the SQL path).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        // WAL + synchronous=FULL: a committed batch survives power loss, and readers never
        // block the writer.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS entries (
                 id INTEGER PRIMARY KEY,
                 author BLOB NOT NULL,
                 seq INTEGER NOT NULL,
                 body BLOB NOT NULL,
                 UNIQUE (author, seq)
             );
             CREATE TABLE IF NOT EXISTS membership (id INTEGER PRIMARY KEY, record BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS voided (id INTEGER PRIMARY KEY, body BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS view_items (id BLOB PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS view_names (id BLOB PRIMARY KEY, key BLOB NOT NULL) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS view_names_key ON view_names (key);",
        )?;
        Ok(Self { conn, mirror: None, position: Cell::new(None), view_pos: Cell::new(None) })
    }
}

/// Rows of the view, each item's sealed state.
pub type ViewRows = Vec<(ItemId, Vec<u8>)>;

/// A device's newest own entry: its seq and hash.
type OwnHead = (u64, [u8; 32]);

impl SqliteStore {
    /// This handle committed, taking the log from `before` to `at` (the view stays at its
    /// old position). When `before` is not the log this handle knew, another handle wrote
    /// in between: what this one holds in memory is not that log, so it must never write
    /// the view again (its position is forgotten).
    fn moved(&mut self, before: Position, at: Position) {
        let known = self.position.get() == Some(before);
        self.position.set(known.then_some(at));
    }

    fn write_view(&mut self, up: &mut ViewUpdate<'_>) -> Result<bool, StoreError> {
        let Some(at) = self.position.get() else { return Ok(false) };
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if position(&tx)? != at {
            return Ok(false);
        }
        let before = view_at(&tx)?;
        if !up.full && (before.is_none() || before != self.view_pos.get()) {
            return Ok(false);
        }
        if up.full {
            tx.execute("DELETE FROM view_items", [])?;
            tx.execute("DELETE FROM view_names", [])?;
        }
        {
            let mut item = tx.prepare_cached("INSERT OR REPLACE INTO view_items (id, body) VALUES (?1, ?2)")?;
            let mut unname = tx.prepare_cached("DELETE FROM view_names WHERE id = ?1")?;
            let mut name = tx.prepare_cached("INSERT INTO view_names (id, key) VALUES (?1, ?2)")?;
            for row in &mut *up {
                let id = &row.id.0[..];
                item.execute(params![id, row.body])?;
                unname.execute([id])?;
                if let Some(k) = row.name {
                    name.execute(params![id, &k[..]])?;
                }
            }
        }
        let mut meta = tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?;
        meta.execute(params![VIEW_AT, postcard::to_stdvec(&at).map_err(corrupt)?])?;
        // With its position: a build that moves the view on without writing a base leaves
        // this one behind, which the position then says.
        meta.execute(params![VIEW_BASE, postcard::to_stdvec(&(at, &up.base)).map_err(corrupt)?])?;
        drop(meta);
        tx.commit()?;
        self.view_pos.set(Some(at));
        Ok(true)
    }

    /// The view's rows for a read that skips the log: those of the items `ids` and of the
    /// items indexed under `name_key`, each once, as of one moment; `None` when the view does
    /// not reflect the log of that moment (read the log instead).
    pub fn view_rows(&self, ids: &[ItemId], name_key: Option<&[u8; 16]>) -> Result<Option<ViewRows>, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        if !view_is_current(&tx)? {
            return Ok(None);
        }
        let mut rows = Vec::new();
        let mut by_id = tx.prepare_cached("SELECT body FROM view_items WHERE id = ?1")?;
        for id in ids {
            if let Some(body) = by_id.query_row([&id.0[..]], |r| r.get::<_, Vec<u8>>(0)).optional()? {
                rows.push((*id, body));
            }
        }
        if let Some(key) = name_key {
            let mut named = tx.prepare_cached("SELECT id FROM view_names WHERE key = ?1")?;
            for raw in named.query_map([&key[..]], |r| r.get::<_, Vec<u8>>(0))? {
                let raw = raw?;
                let id = ItemId(raw.as_slice().try_into().map_err(|_| StoreError::Corrupt("view name row".into()))?);
                if rows.iter().any(|(i, _)| *i == id) {
                    continue;
                }
                let body = by_id.query_row([&id.0[..]], |r| r.get::<_, Vec<u8>>(0)).optional()?;
                rows.push((id, body.ok_or_else(|| StoreError::Corrupt("a name without its item row".into()))?));
            }
        }
        drop(by_id);
        tx.finish()?;
        Ok(Some(rows))
    }

    /// `device`'s newest entry in the log: its seq and hash.
    pub fn own_head(&self, device: DeviceId) -> Result<Option<OwnHead>, StoreError> {
        Ok(self.own_last(device)?.map(|se| (se.entry.header.seq, se.hash)))
    }

    /// `device`'s newest entry in the log.
    pub fn own_last(&self, device: DeviceId) -> Result<Option<StoredEntry>, StoreError> {
        let body: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT body FROM entries WHERE author = ?1 ORDER BY seq DESC LIMIT 1", [&device.0[..]], |r| {
                r.get(0)
            })
            .optional()?;
        body.map(|b| postcard::from_bytes(&b).map_err(corrupt)).transpose()
    }

    /// What a write needs of the log ([`WriteBase`]), kept beside the view: `None` when the
    /// view does not reflect the log now or keeps no base of that position (an older build
    /// wrote it). A write
    /// from it commits at the position read here, so the view's rows follow it.
    pub fn write_base(&self) -> Result<Option<WriteBase>, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        let at = position(&tx)?;
        if view_at(&tx)? != Some(at) {
            return Ok(None);
        }
        let raw: Option<Vec<u8>> =
            tx.query_row("SELECT value FROM meta WHERE key = ?1", [VIEW_BASE], |r| r.get(0)).optional()?;
        tx.finish()?;
        let decoded = raw.and_then(|b| postcard::from_bytes::<(Position, WriteBase)>(&b).ok());
        let Some(base) = decoded.filter(|(pos, _)| *pos == at).map(|(_, base)| base) else { return Ok(None) };
        self.position.set(Some(at));
        self.view_pos.set(Some(at));
        Ok(Some(base))
    }

    /// Hands every row of the view to `each` (until it returns false), as of one moment;
    /// false when the view does not reflect the log of that moment (read the log instead)
    /// or `each` stopped.
    pub fn view_items(&self, mut each: impl FnMut(ItemId, &[u8]) -> bool) -> Result<bool, StoreError> {
        let tx = self.conn.unchecked_transaction()?;
        if !view_is_current(&tx)? {
            return Ok(false);
        }
        let mut st = tx.prepare("SELECT id, body FROM view_items")?;
        let mut rows = st.query([])?;
        while let Some(row) = rows.next()? {
            let raw: Vec<u8> = row.get(0)?;
            let id = ItemId(raw.as_slice().try_into().map_err(|_| StoreError::Corrupt("view item row".into()))?);
            if !each(id, row.get_ref(1)?.as_blob().map_err(|e| StoreError::Corrupt(e.to_string()))?) {
                return Ok(false);
            }
        }
        drop(rows);
        drop(st);
        tx.finish()?;
        Ok(true)
    }

    /// After every commit that holds entries of `device`, writes the newest one's seq and
    /// hash to `path` (outside the database), so a database restored from an older copy is
    /// noticed before it signs a seq it already used.
    pub fn mirror_own_head(&mut self, device: DeviceId, path: std::path::PathBuf) {
        self.mirror = Some((device, path, None));
    }

    /// Decodes every postcard blob `sql` selects (one column), in row order.
    fn load_all<T: serde::de::DeserializeOwned>(&self, sql: &str) -> Result<Vec<T>, StoreError> {
        let mut st = self.conn.prepare(sql)?;
        let rows = st.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        let mut out = Vec::new();
        for r in rows {
            out.push(postcard::from_bytes(&r?).map_err(corrupt)?);
        }
        // Grown by doubling: give back the unused half (a 100k log becomes the replica's).
        out.shrink_to_fit();
        Ok(out)
    }
}

fn corrupt(e: postcard::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

impl LogStore for SqliteStore {
    fn commit(&mut self, entries: &[StoredEntry], membership: &[MembershipRecord]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let before = position(&tx)?;
        {
            let mut ins = tx.prepare_cached("INSERT INTO entries (author, seq, body) VALUES (?1, ?2, ?3)")?;
            for e in entries {
                let body = postcard::to_stdvec(e).map_err(corrupt)?;
                let h = &e.entry.header;
                ins.execute(params![&h.author.0[..], h.seq as i64, body])?;
            }
            let mut m = tx.prepare_cached("INSERT INTO membership (record) VALUES (?1)")?;
            for r in membership {
                m.execute(params![postcard::to_stdvec(r).map_err(corrupt)?])?;
            }
        }
        let at = position(&tx)?;
        tx.commit()?;
        self.moved(before, at);
        // The commit is durable from here on: a head file that cannot be written (full disk)
        // must not make it look failed, or the caller's memory would part from the database.
        // The head is written again after the next commit until it succeeds.
        if let Some((me, path, pending)) = &mut self.mirror {
            if let Some(e) = entries.iter().rev().find(|e| e.entry.header.author == *me) {
                *pending = Some((e.entry.header.seq, e.hash));
            }
            if let Some((seq, hash)) = *pending {
                let line = format!("{seq} {}\n", hex::encode(hash));
                match crate::fsutil::write_private(path, line.as_bytes()) {
                    Ok(()) => *pending = None,
                    Err(e) => tracing::warn!(
                        path = %path.display(),
                        "the commit is durable, but the head file could not be written (retried after the next commit): {e}"
                    ),
                }
            }
        }
        Ok(())
    }

    fn load_entries(&self) -> Result<Vec<StoredEntry>, StoreError> {
        self.load_all("SELECT body FROM entries ORDER BY id")
    }

    fn load_membership(&self) -> Result<Vec<MembershipRecord>, StoreError> {
        self.load_all("SELECT record FROM membership ORDER BY id")
    }

    fn load_run(&self, author: DeviceId, from: u64, to: u64) -> Result<Vec<StoredEntry>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT body FROM entries WHERE author = ?1 AND seq BETWEEN ?2 AND ?3 ORDER BY seq")?;
        let mut rows = st.query(params![&author.0[..], from as i64, to as i64])?;
        let mut out = Vec::new();
        // Decoded from SQLite's own buffer: no copy of each body on the way.
        while let Some(row) = rows.next()? {
            let body = row.get_ref(0)?.as_blob().map_err(|e| StoreError::Corrupt(e.to_string()))?;
            out.push(postcard::from_bytes(body).map_err(corrupt)?);
        }
        Ok(out)
    }

    fn void(&mut self, author: DeviceId, after: u64) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let before = position(&tx)?;
        let args = params![&author.0[..], after as i64];
        tx.execute(
            "INSERT INTO voided (body) SELECT body FROM entries WHERE author = ?1 AND seq > ?2 ORDER BY id",
            args,
        )?;
        tx.execute("DELETE FROM entries WHERE author = ?1 AND seq > ?2", args)?;
        let at = position(&tx)?;
        tx.commit()?;
        self.moved(before, at);
        Ok(())
    }

    fn load_voided(&self) -> Result<Vec<StoredEntry>, StoreError> {
        self.load_all("SELECT body FROM voided ORDER BY id")
    }

    fn load_snapshot(&self) -> Result<(Vec<MembershipRecord>, Vec<StoredEntry>), StoreError> {
        // One read transaction: both loads see the same commit (WAL snapshot isolation).
        let tx = self.conn.unchecked_transaction()?;
        let out = (self.load_membership()?, self.load_entries()?);
        let at = position(&tx)?;
        let view = view_at(&tx)?;
        tx.finish()?;
        self.position.set(Some(at));
        self.view_pos.set(view.filter(|v| *v == at));
        Ok(out)
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?)
    }

    fn set_meta(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", params![key, value])?;
        Ok(())
    }

    fn keeps_view(&self) -> bool {
        true
    }

    /// Written without waiting for the disk (`synchronous = NORMAL`): a view lost in a
    /// crash is one whose position no longer matches the log, so readers replay the log and
    /// the next writer writes the view again; no edit depends on it.
    fn put_view(&mut self, up: &mut ViewUpdate<'_>) -> Result<bool, StoreError> {
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let out = self.write_view(up);
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        out
    }
}
