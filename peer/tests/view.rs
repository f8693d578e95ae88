//! The materialized view (`vault::view`): after every kind of commit, an item read from the
//! view is exactly what the log's replay shows; a view that is not the log's, or a row that
//! does not open, is never used.

use crate::common::{put, set, sync_pair};
use hearth_peer::identity::VaultSecret;
use hearth_peer::ids::{DeviceId, ItemId};
use hearth_peer::reads::{self, item_from_view, state_from_view, ReadRequest, View};
use hearth_peer::vault::{LogStore, Op, Replica, SqliteStore};

type Rep = Replica<SqliteStore>;

/// Devices 1..=n of one vault on in-memory SQLite stores, each knowing every enrolment.
fn vault(n: u8) -> Vec<Rep> {
    let secret = VaultSecret::from_bytes([0x11; 32]);
    let mut reps: Vec<Rep> = (1..=n)
        .map(|i| {
            let mut r = Replica::open(&secret, DeviceId([i; 16]), SqliteStore::in_memory().unwrap()).unwrap();
            r.enroll_self(1_000).unwrap();
            r
        })
        .collect();
    let all: Vec<_> = reps.iter().flat_map(|r| r.membership().records().to_vec()).collect();
    for r in &mut reps {
        r.add_membership(all.clone()).unwrap();
    }
    reps
}

/// Device 1's replica on a database file (its path), enrolled.
fn on_file(dir: &tempfile::TempDir) -> (std::path::PathBuf, Rep) {
    let path = dir.path().join("v.db");
    let mut r = open_at(&path);
    r.enroll_self(1_000).unwrap();
    (path, r)
}

/// Another handle of device 1 on the database at `path`.
fn open_at(path: &std::path::Path) -> Rep {
    Replica::open(&VaultSecret::from_bytes([0x11; 32]), DeviceId([1; 16]), SqliteStore::open(path).unwrap()).unwrap()
}

/// Device 2 enrols, writes item "post" and sends it to `r` in one batch (a commit of
/// another author's entry through `r`).
fn from_device_2(r: &mut Rep) {
    let secret = VaultSecret::from_bytes([0x11; 32]);
    let mut b = Replica::open(&secret, DeviceId([2; 16]), hearth_peer::vault::MemStore::default()).unwrap();
    b.enroll_self(1_000).unwrap();
    b.add_membership(r.membership().records().to_vec()).unwrap();
    r.add_membership(b.membership().records().to_vec()).unwrap();
    b.write(&put(ItemId([3; 16]), "post", &[]), 3_000).unwrap();
    assert_eq!(crate::common::sync_one_way(&b, r), 1);
}

/// What the view answers for `name` (`None`: the log must).
fn from_view(r: &mut Rep, name: &str) -> Option<reads::ItemView> {
    let keys = r.vault_keys().clone();
    item_from_view(&keys, r.store_mut(), name).unwrap()
}

/// What the replay of the log answers.
fn from_log(r: &Rep, name: &str) -> Option<reads::ItemView> {
    match reads::answer(r, &ReadRequest::Item { name: name.to_owned() }) {
        Ok(View::Item(it)) => Some(it),
        _ => None,
    }
}

/// The whole state read from the view (`None`: the log must answer).
fn whole_view(r: &mut Rep) -> Option<[u8; 32]> {
    let keys = r.vault_keys().clone();
    state_from_view(&keys, r.store_mut()).unwrap().map(|s| s.digest())
}

/// Every visible item, by name and by id, reads the same from the view as from the log, and
/// the view's whole state is the log's.
fn same_everywhere(r: &mut Rep) -> usize {
    assert_eq!(whole_view(r), Some(r.state().digest()), "the view's state is the log's");
    let shown: Vec<(ItemId, String)> = r.state().visible().map(|(id, s)| (*id, s.name().to_owned())).collect();
    for (id, name) in &shown {
        for key in [name.clone(), id.to_hex()] {
            let want = from_log(r, &key);
            if want.is_some() {
                assert_eq!(from_view(r, &key), want, "{key}");
            } else {
                assert_eq!(from_view(r, &key), None, "{key}: an ambiguous name is the log's to answer");
            }
        }
    }
    shown.len()
}

#[test]
fn the_view_follows_writes_received_batches_and_conflicts() {
    let mut reps = vault(2);
    let (mut a, mut b) = (reps.remove(0), reps.remove(0));
    let (bank, mail, gone) = (ItemId([1; 16]), ItemId([2; 16]), ItemId([3; 16]));
    a.write_all(&[put(bank, "bank", &[("pin", "1")]), put(mail, "mail", &[]), put(gone, "gone", &[])], 1_000).unwrap();
    assert_eq!(same_everywhere(&mut a), 3);
    a.write(&Op::Delete { item: gone }, 1_500).unwrap();
    assert_eq!(from_view(&mut a, "gone"), None, "a deleted item is not indexed");
    assert_eq!(from_view(&mut a, &gone.to_hex()), None, "nor found by id");
    sync_pair(&mut a, &mut b);
    assert_eq!(same_everywhere(&mut b), 2, "received batches reach the view");
    // Concurrent edits, a rename against an edit, and an edit against a delete.
    a.write(&set(bank, "pin", "from-a"), 2_000).unwrap();
    b.write(&set(bank, "pin", "from-b"), 3_000).unwrap();
    a.write(&put(mail, "post", &[]), 2_000).unwrap();
    b.write(&put(mail, "letters", &[]), 3_100).unwrap();
    sync_pair(&mut a, &mut b);
    for r in [&mut a, &mut b] {
        assert_eq!(same_everywhere(r), 2);
        let it = from_view(r, "bank").unwrap();
        assert_eq!(it.conflicts.len(), 1, "the kept conflict reads from the view too");
        assert_eq!(from_view(r, "post"), None, "the losing name is not the item's shown name");
        assert!(from_view(r, "letters").is_some());
    }
    // Two items under one name: the log answers (with both ids).
    a.write(&put(ItemId([4; 16]), "bank", &[]), 4_000).unwrap();
    assert_eq!(from_view(&mut a, "bank"), None);
    assert_eq!(same_everywhere(&mut a), 3);
}

#[test]
fn a_revocation_that_voids_entries_rewrites_the_view() {
    let mut reps = vault(3);
    let (mut a, mut b, mut c) = (reps.remove(0), reps.remove(0), reps.remove(0));
    a.write(&put(ItemId([1; 16]), "shared", &[("k", "a")]), 1_000).unwrap();
    sync_pair(&mut a, &mut c);
    sync_pair(&mut a, &mut b);
    // c goes on writing after a revokes it: what b learns late is voided when the
    // revocation arrives.
    a.revoke(c.device_id(), 2_000).unwrap();
    c.write(&set(ItemId([1; 16]), "k", "from-revoked"), 3_000).unwrap();
    c.write(&put(ItemId([9; 16]), "planted", &[]), 3_000).unwrap();
    sync_pair(&mut c, &mut b);
    assert!(from_view(&mut b, "planted").is_some());
    b.add_membership(a.membership().records().to_vec()).unwrap();
    assert_eq!(from_view(&mut b, "planted"), None, "the voided item left the view");
    assert_eq!(from_view(&mut b, "shared").unwrap().fields["k"], "a");
    same_everywhere(&mut b);
}

#[test]
fn a_view_behind_the_log_or_a_row_that_does_not_open_is_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut r) = on_file(&dir);
    r.write(&put(ItemId([1; 16]), "bank", &[("pin", "1")]), 1_000).unwrap();
    assert!(from_view(&mut r, "bank").is_some());
    drop(r);
    let conn = rusqlite::Connection::open(&path).unwrap();
    // An entry committed by a writer that did not update the view (an older build, or a
    // crash between the two commits): the view is behind the log.
    let saved: Vec<u8> = conn.query_row("SELECT value FROM meta WHERE key = 'view_at'", [], |x| x.get(0)).unwrap();
    conn.execute("UPDATE meta SET value = x'00' WHERE key = 'view_at'", []).unwrap();
    let mut r = open_at(&path);
    assert_eq!(from_view(&mut r, "bank"), None);
    assert_eq!(whole_view(&mut r), None);
    // The next write rewrites it whole.
    r.write(&put(ItemId([2; 16]), "mail", &[]), 2_000).unwrap();
    assert_eq!(same_everywhere(&mut r), 2);
    assert_ne!(
        conn.query_row("SELECT value FROM meta WHERE key = 'view_at'", [], |x| x.get::<_, Vec<u8>>(0)).unwrap(),
        saved
    );
    // A row edited in place, or moved to another item, does not open: the log answers.
    let mut body: Vec<u8> =
        conn.query_row("SELECT body FROM view_items WHERE id = ?1", [&[1u8; 16][..]], |x| x.get(0)).unwrap();
    body[30] ^= 1;
    conn.execute("UPDATE view_items SET body = ?1 WHERE id = ?2", rusqlite::params![body, &[1u8; 16][..]]).unwrap();
    assert_eq!(from_view(&mut r, "bank"), None);
    assert_eq!(whole_view(&mut r), None, "nor is the whole state read from it");
    let other: Vec<u8> =
        conn.query_row("SELECT body FROM view_items WHERE id = ?1", [&[2u8; 16][..]], |x| x.get(0)).unwrap();
    conn.execute("UPDATE view_items SET body = ?1 WHERE id = ?2", rusqlite::params![other, &[1u8; 16][..]]).unwrap();
    assert_eq!(from_view(&mut r, "bank"), None);
    assert!(from_log(&r, "bank").is_some(), "the log still answers");
    // The item's next change seals its row again.
    r.write(&set(ItemId([1; 16]), "pin", "2"), 3_000).unwrap();
    assert_eq!(same_everywhere(&mut r), 2);
}

#[test]
fn a_view_written_by_another_handle_is_written_whole_by_this_one() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut r) = on_file(&dir);
    r.write(&put(ItemId([1; 16]), "bank", &[]), 1_000).unwrap();
    // Another handle on the same log writes the view (with nothing changed since).
    let mut other = open_at(&path);
    other.write(&put(ItemId([2; 16]), "mail", &[]), 2_000).unwrap();
    drop(other);
    // This replica is behind the log now: it writes nothing into the view, not even after
    // a commit of its own (its memory lacks the other handle's entry)...
    r.refresh_view();
    let mut fresh = open_at(&path);
    assert!(from_view(&mut fresh, "mail").is_some(), "the other handle's view stands");
    assert_eq!(same_everywhere(&mut fresh), 2);
    drop(fresh);
    // A batch from another device lands through this replica.
    from_device_2(&mut r);
    let mut fresh = open_at(&path);
    assert_eq!(from_view(&mut fresh, "mail"), None, "the view is behind the log: unused");
    // ...and the next handle that knows the whole log writes it whole.
    fresh.write(&put(ItemId([4; 16]), "desk", &[]), 4_000).unwrap();
    assert!(same_everywhere(&mut fresh) >= 3);
    assert!(from_view(&mut fresh, "mail").is_some());
}

/// A view whose rows are older than the log (an older build wrote the log on; the view's
/// position says so) is written whole at the next write, not patched with that write's
/// item alone: the other rows are wrong.
#[test]
fn a_view_behind_the_log_is_rewritten_whole_not_patched() {
    let dir = tempfile::tempdir().unwrap();
    let (path, mut r) = on_file(&dir);
    let bank = ItemId([1; 16]);
    r.write(&put(bank, "bank", &[("pin", "1")]), 1_000).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let old_row: Vec<u8> = conn.query_row("SELECT body FROM view_items", [], |x| x.get(0)).unwrap();
    let old_at: Vec<u8> = conn.query_row("SELECT value FROM meta WHERE key = 'view_at'", [], |x| x.get(0)).unwrap();
    r.write(&set(bank, "pin", "2"), 2_000).unwrap();
    drop(r);
    // The view as the older build left it: rows and position of before the second write.
    conn.execute("UPDATE view_items SET body = ?1", [&old_row]).unwrap();
    conn.execute("UPDATE meta SET value = ?1 WHERE key = 'view_at'", [&old_at]).unwrap();
    let mut r = open_at(&path);
    assert_eq!(from_view(&mut r, "bank"), None, "behind the log: unused");
    r.write(&put(ItemId([2; 16]), "mail", &[]), 3_000).unwrap();
    assert_eq!(from_view(&mut r, "bank").unwrap().fields["pin"], "2");
    assert_eq!(same_everywhere(&mut r), 2);
}

/// A retired vault reads through the log (which says it is retired): its view is left
/// behind.
#[test]
fn a_retired_vault_leaves_its_view_behind() {
    let mut r = vault(1).remove(0);
    r.write(&put(ItemId([1; 16]), "bank", &[]), 2_000).unwrap();
    assert!(from_view(&mut r, "bank").is_some());
    r.retire(3_000).unwrap();
    r.refresh_view();
    assert_eq!(from_view(&mut r, "bank"), None);
    assert!(from_log(&r, "bank").is_some());
}

#[test]
fn a_store_without_a_view_keeps_none() {
    let mut m = hearth_peer::vault::MemStore::default();
    assert!(!m.keeps_view());
    let (keys, state) =
        (hearth_peer::identity::VaultKeys::derive(&VaultSecret::from_bytes([1; 32])), Default::default());
    let mut up = hearth_peer::vault::view::ViewUpdate::of(&keys, &state, [], false, Default::default());
    assert!(!m.put_view(&mut up).unwrap());
}

/// A daemon writes the view when its changes settle, not at every commit: until its owner
/// asks, a deferred replica's view is behind (and says it has something to write).
#[test]
fn a_deferred_view_is_written_when_its_owner_asks() {
    let mut r = vault(1).remove(0);
    r.defer_view();
    assert!(!r.view_pending(), "nothing changed yet");
    r.write(&put(ItemId([1; 16]), "bank", &[]), 2_000).unwrap();
    assert!(r.view_pending());
    assert_eq!(from_view(&mut r, "bank"), None, "not written at the commit");
    r.refresh_view();
    assert!(!r.view_pending());
    assert_eq!(same_everywhere(&mut r), 1);
    // A store without a view never has anything to write.
    let mut m = crate::common::vault(1).1.remove(0);
    m.write(&put(ItemId([1; 16]), "bank", &[]), 2_000).unwrap();
    assert!(!m.view_pending());
    // Nor has a handle whose view another handle's commit made unwritable for it.
    let dir = tempfile::tempdir().unwrap();
    let (path, mut r) = on_file(&dir);
    r.defer_view();
    let mut other = open_at(&path);
    other.write(&put(ItemId([2; 16]), "mail", &[]), 2_000).unwrap();
    from_device_2(&mut r);
    assert!(r.view_pending(), "b's item changed r's state");
    r.refresh_view();
    assert!(!r.view_pending(), "refused once (r's memory lacks the other handle's entry), it stops trying");
}

#[test]
fn an_update_shows_in_debug_output_without_its_rows() {
    let (keys, state) =
        (hearth_peer::identity::VaultKeys::derive(&VaultSecret::from_bytes([1; 32])), Default::default());
    let text = format!("{:?}", hearth_peer::vault::view::ViewUpdate::of(&keys, &state, [], false, Default::default()));
    assert_eq!(text, "ViewUpdate { full: false, .. }");
}

/// A home whose database went back to an older copy (the head file beside it stays) reads
/// through the log, which says so: its own view, of its own older log, does not answer.
#[test]
fn an_older_copy_of_a_home_reads_through_its_log() {
    use hearth_peer::home::{Home, Protection};
    let dir = tempfile::tempdir().unwrap();
    let home = Home::new(dir.path().join("h"));
    home.create(&VaultSecret::generate(), DeviceId::random(), &Protection::KeyFile).unwrap();
    let mut r = home.open(None).unwrap();
    r.enroll_self(1).unwrap();
    r.write(&put(ItemId([1; 16]), "one", &[]), 10).unwrap();
    drop(r);
    assert!(home.view_item(None, "one").unwrap().is_some(), "a home that is whole reads its view");
    let backup = dir.path().join("backup.db");
    std::fs::copy(home.db_path(), &backup).unwrap();
    let mut r = home.open(None).unwrap();
    r.write(&put(ItemId([2; 16]), "two", &[]), 20).unwrap();
    drop(r);
    assert!(home.view_item(None, "two").unwrap().is_some());
    for ext in ["db-wal", "db-shm"] {
        let _ = std::fs::remove_file(home.db_path().with_extension(ext));
    }
    std::fs::copy(&backup, home.db_path()).unwrap();
    assert!(home.view_item(None, "one").unwrap().is_none(), "the head file is ahead of this log");
    assert!(home.view_state(None).unwrap().is_none());
    // The log's open marks it restored (the verdict is stored): still the log's to answer.
    let r = home.open(None).unwrap();
    assert_eq!(r.state().visible().count(), 1);
    drop(r);
    std::fs::remove_file(dir.path().join("h").join("head")).unwrap();
    assert!(home.view_item(None, "one").unwrap().is_none(), "a stored verdict alone keeps the view out");
}

/// `hearth devices` from the view (membership, the devices' name rows, the view's version
/// vector) is the log's answer, through names, writes and a revocation.
#[test]
fn devices_read_from_the_view_are_the_logs() {
    let mut reps = vault(3);
    let (mut a, mut b) = (reps.remove(0), reps.remove(0));
    let devices = |r: &mut Rep| {
        let (keys, me) = (r.vault_keys().clone(), r.device_id());
        let from_view = reads::devices_from_view(&keys, r.store_mut(), me).unwrap();
        let from_log = reads::answer(r, &ReadRequest::Devices).unwrap();
        assert_eq!(from_view.as_ref(), Some(&from_log));
        from_log
    };
    devices(&mut a);
    a.write(&hearth_peer::vault::device_names::name_op(a.device_id(), "laptop"), 1_000).unwrap();
    b.write(&hearth_peer::vault::device_names::name_op(b.device_id(), "phone"), 1_100).unwrap();
    b.write(&put(ItemId([1; 16]), "bank", &[]), 1_200).unwrap();
    sync_pair(&mut a, &mut b);
    a.revoke(DeviceId([3; 16]), 2_000).unwrap();
    let View::Devices { devices: rows } = devices(&mut a) else { panic!("not devices") };
    let named: Vec<_> = rows.iter().map(|d| (d.name.clone(), d.this_device, d.revoked, d.entries)).collect();
    assert_eq!(
        named,
        [(Some("laptop".into()), true, false, 1), (Some("phone".into()), false, false, 2), (None, false, true, 0)]
    );
    // A view behind the log does not answer.
    let keys = a.vault_keys().clone();
    a.defer_view();
    a.write(&hearth_peer::vault::device_names::name_op(a.device_id(), "desk"), 3_000).unwrap();
    assert_eq!(reads::devices_from_view(&keys, a.store_mut(), DeviceId([1; 16])).unwrap(), None);
}
