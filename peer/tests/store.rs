//! The SQLite store: reopening re-verifies the log, the live WAL holds no plaintext, and
//! a damaged database is reported, not trusted.

use hearth_peer::home::{Home, Protection};
use hearth_peer::identity::VaultSecret;
use hearth_peer::ids::{DeviceId, ItemId};
use hearth_peer::vault::Op;

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn reopen_restores_state_and_wal_holds_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::new(dir.path().join("h"));
    let secret = VaultSecret::generate();
    home.create(&secret, DeviceId::random(), &Protection::KeyFile).unwrap();
    let mut r = home.open(None).unwrap();
    r.enroll_self(1).unwrap();
    let canary = b"WALCANARY-4242";
    for i in 0..50u8 {
        let v = String::from_utf8_lossy(canary).into_owned();
        r.write(
            &Op::Put { item: ItemId([i; 16]), name: Some(v.clone()), fields: vec![("password".into(), Some(v))] },
            10,
        )
        .unwrap();
    }
    // While the database is open, the WAL holds the recent pages: check it and the main file.
    let wal = std::fs::read(home.db_path().with_extension("db-wal")).unwrap();
    assert!(!wal.is_empty(), "expected a live WAL");
    assert!(!contains(&wal, canary));
    assert!(!contains(&std::fs::read(home.db_path()).unwrap(), canary));
    let digest = r.state().digest();
    drop(r);
    let again = home.open(None).unwrap();
    assert_eq!(again.state().digest(), digest);
    assert_eq!(again.len(), 50);
}

#[test]
fn a_tampered_database_is_refused_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::new(dir.path().join("h"));
    home.create(&VaultSecret::generate(), DeviceId::random(), &Protection::KeyFile).unwrap();
    let mut r = home.open(None).unwrap();
    r.enroll_self(1).unwrap();
    for i in 0..3u8 {
        r.write(&Op::Put { item: ItemId([i; 16]), name: Some("n".into()), fields: vec![] }, 10).unwrap();
    }
    drop(r);
    let conn = rusqlite::Connection::open(home.db_path()).unwrap();
    conn.execute("DELETE FROM entries WHERE seq = 2", []).unwrap();
    drop(conn);
    let err = home.open(None).unwrap_err();
    assert!(err.to_string().contains("damaged"), "{err}");
}

/// A home with device `me` holding `n` own entries, closed.
fn written_home(dir: &std::path::Path, n: u8) -> Home {
    let home = Home::new(dir.join("h"));
    home.create(&VaultSecret::generate(), DeviceId::random(), &Protection::KeyFile).unwrap();
    let mut r = home.open(None).unwrap();
    r.enroll_self(1).unwrap();
    for i in 0..n {
        r.write(&Op::Put { item: ItemId([i; 16]), name: Some(format!("n{i}")), fields: vec![] }, 10).unwrap();
    }
    home
}

/// A row edited in place (a byte of its sealed payload, the stored hash kept) breaks the
/// chain: the reopen recomputes every hash and refuses the database.
#[test]
fn a_row_edited_in_place_is_refused_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let home = written_home(dir.path(), 3);
    let conn = rusqlite::Connection::open(home.db_path()).unwrap();
    let mut body: Vec<u8> = conn.query_row("SELECT body FROM entries WHERE seq = 2", [], |r| r.get(0)).unwrap();
    let mid = body.len() / 2;
    body[mid] ^= 0x01;
    conn.execute("UPDATE entries SET body = ?1 WHERE seq = 2", [&body]).unwrap();
    drop(conn);
    let err = home.open(None).unwrap_err();
    assert!(err.to_string().contains("damaged"), "{err}");
}

/// The own log's tail deleted (or the whole database swapped for an older copy): the head
/// mirrored beside the database notices, reads still work, writes are refused.
#[test]
fn a_truncated_own_log_opens_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let home = written_home(dir.path(), 3);
    let conn = rusqlite::Connection::open(home.db_path()).unwrap();
    conn.execute("DELETE FROM entries WHERE seq = 3", []).unwrap();
    drop(conn);
    let mut r = home.open(None).unwrap();
    assert_eq!(r.state().visible().count(), 2);
    let err = r.write(&Op::Put { item: ItemId([9; 16]), name: Some("x".into()), fields: vec![] }, 20).unwrap_err();
    assert!(err.to_string().contains("restored from an older copy"), "{err}");
}

/// The meta table (where restored verdicts and re-write markers live) keeps what is set,
/// across a reopen.
#[test]
fn meta_values_are_kept_across_a_reopen() {
    use hearth_peer::vault::{LogStore, SqliteStore};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.db");
    let mut s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.get_meta("k").unwrap(), None);
    s.set_meta("k", b"one").unwrap();
    s.set_meta("k", b"two").unwrap();
    s.set_meta("other", b"").unwrap();
    drop(s);
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.get_meta("k").unwrap(), Some(b"two".to_vec()));
    assert_eq!(s.get_meta("other").unwrap(), Some(Vec::new()));
    assert_eq!(s.get_meta("none").unwrap(), None);
}

/// A head file that cannot be written after SQLite committed (a full disk, say) leaves the
/// write durable and reported as done; later writes go on, and the head catches up once it
/// can be written again.
#[test]
fn a_head_file_that_cannot_be_written_does_not_fail_a_committed_write() {
    let dir = tempfile::tempdir().unwrap();
    let home = written_home(dir.path(), 2);
    let head = home.dir().join("head");
    let mut r = home.open(None).unwrap();
    // A directory in its place: the rename over it fails, even for root.
    std::fs::remove_file(&head).unwrap();
    std::fs::create_dir(&head).unwrap();
    std::fs::write(head.join("x"), b"x").unwrap();
    for i in 10..12u8 {
        r.write(&Op::Put { item: ItemId([i; 16]), name: Some(format!("n{i}")), fields: vec![] }, 20)
            .expect("a committed write is reported as written");
    }
    assert_eq!(r.len(), 4);
    std::fs::remove_dir_all(&head).unwrap();
    r.write(&Op::Put { item: ItemId([20; 16]), name: Some("n20".into()), fields: vec![] }, 30).unwrap();
    let line = std::fs::read_to_string(&head).unwrap();
    assert!(line.starts_with("5 "), "the head caught up: {line}");
    drop(r);
    let mut again = home.open(None).unwrap();
    assert_eq!(again.state().visible().count(), 5);
    again.write(&Op::Put { item: ItemId([21; 16]), name: Some("n21".into()), fields: vec![] }, 40).unwrap();
}
