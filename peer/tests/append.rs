//! Writes from the view (`vault::append`): an `Appender` appends exactly what the replica's
//! own write would have (same seq, clock, deps, chain, merged state), keeps the view the
//! log's, and declines whenever the view cannot vouch for the write.

use crate::common::{put, set, sync_one_way};
use hearth_peer::actions::{self, ActionError, WriteRequest};
use hearth_peer::identity::VaultSecret;
use hearth_peer::ids::{DeviceId, ItemId};
use hearth_peer::vault::replica::MAX_CLOCK_AHEAD_MS;
use hearth_peer::vault::{Appender, EntryHeader, LookupError, MemStore, Replica, SqliteStore, WriteBase};

type Rep = Replica<SqliteStore>;

const ME: DeviceId = DeviceId([1; 16]);
const BANK: ItemId = ItemId([1; 16]);
const MAIL: ItemId = ItemId([2; 16]);
/// The wall clock of the writes under test.
const NOW: u64 = 10_000_000;

fn secret() -> VaultSecret {
    VaultSecret::from_bytes([0x11; 32])
}

fn open_at(path: &std::path::Path) -> Rep {
    Replica::open(&secret(), ME, SqliteStore::open(path).unwrap()).unwrap()
}

/// An appender of device 1 on the database at `path` holding what `names` resolve to.
fn appender(path: &std::path::Path, names: &[&str], now: u64) -> Option<Appender> {
    Appender::open(&secret(), ME, SqliteStore::open(path).unwrap(), names, now).unwrap()
}

/// A second device of the vault on a memory store, enrolled and known to `r`.
fn device_2(r: &mut Rep) -> Replica<MemStore> {
    let mut b = Replica::open(&secret(), DeviceId([2; 16]), MemStore::default()).unwrap();
    b.enroll_self(1_000).unwrap();
    b.add_membership(r.membership().records().to_vec()).unwrap();
    r.add_membership(b.membership().records().to_vec()).unwrap();
    b
}

/// A log on a new database file: device 1's "bank" (pin 1) and "mail", device 2's edit of
/// the pin concurrent with device 1's (a kept conflict), and device 2's clock `ahead` ms
/// past `NOW` on an item of its own.
fn build(dir: &tempfile::TempDir, file: &str, ahead: u64) -> std::path::PathBuf {
    let path = dir.path().join(file);
    let mut a = open_at(&path);
    a.enroll_self(1_000).unwrap();
    let mut b = device_2(&mut a);
    a.write_all(&[put(BANK, "bank", &[("pin", "1")]), put(MAIL, "mail", &[])], 2_000).unwrap();
    sync_one_way(&a, &mut b);
    a.write(&set(BANK, "pin", "from-a"), 3_000).unwrap();
    b.write(&set(BANK, "pin", "from-b"), 3_000).unwrap();
    b.write(&put(ItemId([7; 16]), "b's", &[]), NOW + ahead).unwrap();
    sync_one_way(&b, &mut a);
    path
}

/// Device 1's newest entry's header on the database at `path` (the log's open verifies it).
fn newest(path: &std::path::Path) -> EntryHeader {
    let r = open_at(path);
    let seq = r.version().get(ME);
    let mut cursor = 0;
    let batch = r.batch_for(&Default::default(), &mut cursor, usize::MAX).unwrap();
    let at = batch.authors.iter().position(|a| *a == ME).unwrap() as u16;
    let we = batch.entries.iter().find(|e| e.author == at && e.seq == seq).unwrap();
    we.to_entry(r.vault_id(), ME, [0; 32]).header
}

/// `req` through the log's replay on one copy and through an appender on another: the same
/// outcome, the same newest entry (but for its chain hash), the same merged state, and a
/// view that is the log's.
fn same_write(dir: &tempfile::TempDir, req: &WriteRequest, ahead: u64) {
    let (by_log, by_view) = (build(dir, "log.db", ahead), build(dir, "view.db", ahead));
    let mut r = open_at(&by_log);
    let want = actions::apply(&mut r, req, NOW).map_err(|e| e.to_string());
    drop(r);
    let mut w = appender(&by_view, &req.names().unwrap(), NOW).expect("the view vouches for this write");
    let got = actions::apply_from_view(&mut w, req, NOW).unwrap().map_err(|e| e.to_string());
    drop(w);
    assert_eq!(got, want, "{req:?}");
    let (x, y) = (newest(&by_log), newest(&by_view));
    assert_eq!((x.seq, x.hlc, &x.deps), (y.seq, y.hlc, &y.deps), "{req:?}");
    let (mut x, mut y) = (open_at(&by_log), open_at(&by_view));
    assert_eq!(x.state().digest(), y.state().digest(), "{req:?}");
    for r in [&mut x, &mut y] {
        let keys = r.vault_keys().clone();
        let view = hearth_peer::reads::state_from_view(&keys, r.store_mut()).unwrap();
        assert_eq!(view.map(|s| s.digest()), Some(r.state().digest()), "{req:?}: the view is the log's");
    }
    for p in [by_log, by_view] {
        std::fs::remove_file(p).unwrap();
    }
}

#[test]
fn item_actions_from_the_view_write_what_the_log_would() {
    let dir = tempfile::tempdir().unwrap();
    let edit = |fields: Vec<(String, Option<String>)>, rename: Option<&str>, secret: &[&str]| WriteRequest::Edit {
        name: "bank".into(),
        fields,
        rename: rename.map(str::to_owned),
        secret: secret.iter().map(|s| (*s).to_owned()).collect(),
    };
    let reqs = [
        edit(vec![("pin".into(), Some("2".into())), ("url".into(), Some("u".into()))], None, &["pin"]),
        edit(vec![("pin".into(), None)], Some("vault"), &[]),
        edit(vec![], Some("mail"), &[]),
        edit(vec![], Some("bank"), &[]),
        edit(vec![], None, &[]),
        WriteRequest::Edit { name: MAIL.to_hex(), fields: vec![], rename: Some("post".into()), secret: vec![] },
        WriteRequest::Rm { name: "mail".into() },
        WriteRequest::Resolve { name: "bank".into(), field: "pin".into(), value: "kept".into() },
        WriteRequest::Resolve { name: "bank".into(), field: "pn".into(), value: "x".into() },
        WriteRequest::Add { name: "mail".into(), fields: vec![], secret: vec![] },
        WriteRequest::Add { name: BANK.to_hex(), fields: vec![], secret: vec![] },
    ];
    for req in &reqs {
        same_write(&dir, req, 0);
    }
    // A peer's clock 2 h ahead does not drag this device's; 10 min ahead, it does.
    let pin = edit(vec![("pin".into(), Some("3".into()))], None, &[]);
    same_write(&dir, &pin, MAX_CLOCK_AHEAD_MS + 7_200_000);
    same_write(&dir, &pin, 600_000);
}

#[test]
fn an_added_item_and_the_appenders_next_write_chain_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(&dir, "v.db", 0);
    let add = WriteRequest::Add { name: "desk".into(), fields: vec![("k".into(), Some("v".into()))], secret: vec![] };
    let mut w = appender(&path, &add.names().unwrap(), NOW).unwrap();
    let shown = format!("{w:?}");
    assert!(shown.starts_with("Appender { device: ") && shown.contains("vv: "), "{shown}");
    assert!(!shown.contains("bank") && !shown.contains("from-a"), "no item in it: {shown}");
    let item = actions::apply_from_view(&mut w, &add, NOW).unwrap().unwrap().item.unwrap();
    assert_eq!(w.state().find("desk"), Ok(item));
    // Two more writes through the same appender, within one millisecond: they chain on the
    // first and count up its clock.
    let seq = w.write_all(&[set(item, "k", "v2"), set(item, "k2", "w")], NOW).unwrap();
    assert_eq!(w.write_all(&[], NOW).unwrap(), seq, "nothing to write, nothing written");
    drop(w);
    let h = newest(&path);
    assert_eq!((h.seq, h.hlc.ms, h.hlc.counter), (seq, NOW, 3), "device 2 wrote at (NOW, 0)");
    let mut r = open_at(&path);
    assert_eq!(r.version().get(ME), seq, "the log verifies on open: the chain and its signatures hold");
    let it = &r.state().items[&item];
    assert_eq!(it.field_values().into_iter().collect::<Vec<_>>(), [("k", "v2"), ("k2", "w")]);
    let keys = r.vault_keys().clone();
    let view = hearth_peer::reads::state_from_view(&keys, r.store_mut()).unwrap();
    assert_eq!(view.map(|s| s.digest()), Some(r.state().digest()));
    // The base moved with the writes: the next appender starts where these ended.
    let base = r.store_mut().write_base().unwrap().unwrap();
    assert_eq!(base.vv, *r.version());
    assert_eq!(base.newest.last(), Some(&h.hlc));
    drop(r);
    let next = WriteRequest::Rm { name: "desk".into() };
    let mut w = appender(&path, &next.names().unwrap(), NOW).unwrap();
    actions::apply_from_view(&mut w, &next, NOW).unwrap().unwrap();
    assert_eq!(newest(&path).hlc.counter, 4);
}

#[test]
fn a_name_the_view_cannot_settle_goes_to_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(&dir, "v.db", 0);
    let typo = WriteRequest::Rm { name: "bnak".into() };
    let mut w = appender(&path, &typo.names().unwrap(), NOW).unwrap();
    assert!(actions::apply_from_view(&mut w, &typo, NOW).is_none(), "the log's answer suggests 'bank'");
    let e = actions::apply(&mut open_at(&path), &typo, NOW).unwrap_err();
    assert!(e.to_string().contains("did you mean 'bank'"), "{e}");
    // Two items under one name: the view's answer is the log's (both ids).
    let mut r = open_at(&path);
    r.write(&put(ItemId([9; 16]), "bank", &[]), NOW).unwrap();
    drop(r);
    let rm = WriteRequest::Rm { name: "bank".into() };
    let mut w = appender(&path, &rm.names().unwrap(), NOW).unwrap();
    let e = actions::apply_from_view(&mut w, &rm, NOW).unwrap().unwrap_err();
    assert!(matches!(e, ActionError::Lookup(LookupError::Ambiguous { count: 2, .. })), "{e}");
    // Other actions need the whole vault.
    assert_eq!(WriteRequest::NameDevice { name: "x".into() }.names(), None);
    assert!(actions::apply_from_view(&mut w, &WriteRequest::Revoke { device: DeviceId([2; 16]) }, NOW).is_none());
}

/// The view's stored base on the database at `path`, with the position it was written at.
fn get_base(path: &std::path::Path) -> ([i64; 3], WriteBase) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let raw: Vec<u8> = conn.query_row("SELECT value FROM meta WHERE key = 'view_base'", [], |x| x.get(0)).unwrap();
    postcard::from_bytes(&raw).unwrap()
}

/// Sets the view's stored base (a forged or damaged one) on the database at `path`, at the
/// position `at`.
fn set_base_at(path: &std::path::Path, at: [i64; 3], base: &WriteBase) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let raw = postcard::to_stdvec(&(at, base)).unwrap();
    conn.execute("UPDATE meta SET value = ?1 WHERE key = 'view_base'", [raw]).unwrap();
}

/// [`set_base_at`] the position the base was written at.
fn set_base(path: &std::path::Path, base: &WriteBase) {
    set_base_at(path, get_base(path).0, base);
}

#[test]
fn the_appender_declines_whatever_the_view_cannot_vouch_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(&dir, "v.db", 0);
    assert!(appender(&path, &["bank"], NOW).is_some());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let meta = |key: &str| -> Vec<u8> {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |x| x.get(0)).unwrap()
    };
    let (at, base) = (meta("view_at"), meta("view_base"));
    let put_meta = |key: &str, v: &[u8]| {
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", rusqlite::params![key, v]).unwrap()
    };
    // A view behind the log, or without a base (an older build wrote it).
    put_meta("view_at", b"\0");
    assert!(appender(&path, &["bank"], NOW).is_none());
    put_meta("view_at", &at);
    conn.execute("DELETE FROM meta WHERE key = 'view_base'", []).unwrap();
    assert!(appender(&path, &["bank"], NOW).is_none());
    put_meta("view_base", b"\xff\xff");
    assert!(appender(&path, &["bank"], NOW).is_none(), "a base that does not decode");
    put_meta("view_base", &base);
    // A base that does not count this device's newest entry.
    let (pos, good) = get_base(&path);
    // A base of another position: a build that does not keep one moved the view on.
    set_base_at(&path, [pos[0] - 1, pos[1], pos[2]], &good);
    assert!(appender(&path, &["bank"], NOW).is_none());
    set_base_at(&path, pos, &good);
    assert!(appender(&path, &["bank"], NOW).is_some());
    let mut wrong = good.clone();
    wrong.vv.set(ME, good.vv.get(ME) - 1);
    set_base(&path, &wrong);
    assert!(appender(&path, &["bank"], NOW).is_none());
    // A clock it cannot place: every timestamp kept is over an hour ahead, and older ones
    // were left out.
    let mut future = good.clone();
    future.newest = vec![hearth_peer::vault::Hlc { ms: NOW + MAX_CLOCK_AHEAD_MS + 1, counter: 0 }];
    future.whole = false;
    set_base(&path, &future);
    assert!(appender(&path, &["bank"], NOW).is_none());
    assert!(appender(&path, &["bank"], NOW + 1).is_some(), "a millisecond later it is placed");
    future.whole = true;
    set_base(&path, &future);
    assert!(appender(&path, &["bank"], NOW).is_some(), "when it is every timestamp, there is none older");
    set_base(&path, &good);
    // A restored-copy verdict (an empty one is a verdict cleared).
    let verdict = format!("restored/{}", ME.to_hex());
    put_meta(&verdict, b"3 5");
    assert!(appender(&path, &["bank"], NOW).is_none());
    put_meta(&verdict, b"");
    assert!(appender(&path, &["bank"], NOW).is_some());
    // A row of a named item that does not open.
    let mut row: Vec<u8> =
        conn.query_row("SELECT body FROM view_items WHERE id = ?1", [&BANK.0[..]], |x| x.get(0)).unwrap();
    row[30] ^= 1;
    conn.execute("UPDATE view_items SET body = ?1 WHERE id = ?2", rusqlite::params![row, &BANK.0[..]]).unwrap();
    assert!(appender(&path, &["bank"], NOW).is_none());
    assert!(appender(&path, &["mail"], NOW).is_some(), "the other rows still serve");
    assert!(appender(&path, &[&BANK.to_hex()], NOW).is_none(), "found by id too");
}

/// This device's newest entry, as stored, must verify: it is what the next entry chains on.
#[test]
fn the_appender_declines_an_own_head_that_does_not_verify() {
    use hearth_peer::vault::StoredEntry;
    let dir = tempfile::tempdir().unwrap();
    let path = build(&dir, "v.db", 0);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let seq: i64 = conn.query_row("SELECT max(seq) FROM entries WHERE author = ?1", [&ME.0[..]], |x| x.get(0)).unwrap();
    let raw: Vec<u8> = conn
        .query_row("SELECT body FROM entries WHERE author = ?1 AND seq = ?2", rusqlite::params![&ME.0[..], seq], |x| {
            x.get(0)
        })
        .unwrap();
    let good: StoredEntry = postcard::from_bytes(&raw).unwrap();
    let store = |se: &StoredEntry| {
        let body = postcard::to_stdvec(se).unwrap();
        conn.execute(
            "UPDATE entries SET body = ?1 WHERE author = ?2 AND seq = ?3",
            rusqlite::params![body, &ME.0[..], seq],
        )
        .unwrap();
    };
    let mut bad = good.clone();
    bad.entry.sealed[40] ^= 1;
    store(&bad);
    assert!(appender(&path, &["bank"], NOW).is_none(), "its hash does not recompute");
    let mut bad = good.clone();
    bad.head = None;
    store(&bad);
    assert!(appender(&path, &["bank"], NOW).is_none(), "no signature of its own");
    let mut bad = good.clone();
    let first: Vec<u8> =
        conn.query_row("SELECT body FROM entries WHERE author = ?1 AND seq = 1", [&ME.0[..]], |x| x.get(0)).unwrap();
    bad.head = postcard::from_bytes::<StoredEntry>(&first).unwrap().head;
    store(&bad);
    assert!(appender(&path, &["bank"], NOW).is_none(), "a signature over another entry");
    store(&good);
    assert!(appender(&path, &["bank"], NOW).is_some());
    // No entry of its own at all, but a base that counts one.
    conn.execute("DELETE FROM entries WHERE author = ?1", [&ME.0[..]]).unwrap();
    // (Its view is written again for the log now, so that only the base speaks.)
    drop(conn);
    let mut r = open_at(&path);
    r.refresh_view();
    drop(r);
    let mut w = get_base(&path).1;
    w.vv.set(ME, 3);
    set_base(&path, &w);
    assert!(appender(&path, &["bank"], NOW).is_none());
}

/// A retired vault, and a device that must re-enrol after its log forked, write through the
/// log (which says why); a device revoked by a user is refused as by the log.
#[test]
fn a_retired_vault_or_a_forked_or_revoked_device_is_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let path = build(&dir, "v.db", 0);
    let mut r = open_at(&path);
    r.retire(NOW).unwrap();
    drop(r);
    assert!(appender(&path, &["bank"], NOW).is_none(), "retired");
    // Device 1's home copied before its first entry, written again, met by device 2: the
    // fork is settled, and device 1 learns it must re-enrol.
    let path = dir.path().join("forked.db");
    let mut a = open_at(&path);
    a.enroll_self(1_000).unwrap();
    let mut b = device_2(&mut a);
    let mut copy = Replica::open(&secret(), ME, MemStore::default()).unwrap();
    copy.add_membership(b.membership().records().to_vec()).unwrap();
    a.write(&put(BANK, "bank", &[]), 2_000).unwrap();
    sync_one_way(&a, &mut b);
    copy.write(&put(MAIL, "mail", &[]), 2_500).unwrap();
    meet(&mut copy, &mut b);
    assert!(b.membership().is_forked(ME));
    a.add_membership(b.membership().records().to_vec()).unwrap();
    assert!(a.forked_self());
    drop(a);
    assert!(appender(&path, &["bank"], NOW).is_none(), "forked");
    // Revoked by a user: the write is refused, as the log's would be.
    let path = build(&dir, "revoked.db", 0);
    let mut r = open_at(&path);
    let mut b = device_2(&mut r);
    sync_one_way(&r, &mut b);
    b.revoke(ME, 5_000).unwrap();
    r.add_membership(b.membership().records().to_vec()).unwrap();
    drop(r);
    let rm = WriteRequest::Rm { name: "mail".into() };
    let e = actions::apply_from_view(&mut appender(&path, &["mail"], NOW).unwrap(), &rm, NOW).unwrap().unwrap_err();
    assert!(matches!(e, ActionError::Replica(hearth_peer::vault::ReplicaError::NotActive)), "{e}");
}

/// One session between `x` and `y`, to quiet or to the settlement that ends it.
fn meet(x: &mut Replica<MemStore>, y: &mut Replica<MemStore>) {
    use hearth_peer::sync::{run_until_quiet, Role, Session, SessionConfig};
    let cfg = SessionConfig::default();
    let mut sx = Session::new(Role::Initiator, x, cfg).unwrap();
    let mut sy = Session::new(Role::Responder, y, cfg).unwrap();
    let _ = run_until_quiet(&mut sx, x, &mut sy, y);
}
