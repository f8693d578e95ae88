//! Enrolled but hostile peers cannot stall or skew the vault: an entry over the size limit
//! is dropped without refusing the rest of its batch or ending later sessions, and a clock a
//! year fast does not drag the local clock along.

use crate::common;

use crate::common::{put, set, sync_one_way, vault};
use hearth_peer::identity::{DeviceKeys, VaultKeys, VaultSecret};
use hearth_peer::ids::ItemId;
use hearth_peer::sync::{run_until_quiet, Role, Session, SessionConfig};
use hearth_peer::vault::replica::MAX_CLOCK_AHEAD_MS;
use hearth_peer::vault::{EntryHeader, Hlc, LogStore, MemStore, Op, Replica, SignedHead, StoredEntry};

/// h's signed head at `seq` of its real log.
fn head_at(h: &Replica<MemStore>, seq: u64) -> ed25519_dalek::Signature {
    h.heads().into_iter().find(|x| x.seq == seq).map(|x| x.sig).expect("a head at that seq")
}

/// Entry 2 of h: a 5 MiB op sealed and signed exactly as an old build would have.
fn sealed_huge(secret: &VaultSecret, h: &Replica<MemStore>, prev: [u8; 32]) -> StoredEntry {
    let keys = VaultKeys::derive(secret);
    let header = EntryHeader {
        vault: keys.vault_id,
        author: h.device_id(),
        seq: 2,
        hlc: Hlc { ms: 1_001, counter: 0 },
        deps: Default::default(),
        prev,
    };
    let op = Op::Put {
        item: ItemId([2; 16]),
        name: Some("huge".into()),
        fields: vec![("blob".into(), Some("x".repeat(5 << 20)))],
    };
    let entry = common::seal_raw(secret, header, &op);
    let hash = entry.hash();
    let sig =
        SignedHead::sign(&DeviceKeys::derive(secret, h.device_id()).sign, keys.vault_id, h.device_id(), 2, hash).sig;
    StoredEntry { entry, hash, head: Some(sig) }
}

/// Makes device `h`'s latest entry 5 MiB on the wire, as modified software could, and gives
/// it a valid-looking place in the log (the receiver drops it before any crypto).
fn plant_huge(h: &mut Replica<MemStore>) -> hearth_peer::vault::Batch {
    let mut cursor = 0;
    let mut b = h.batch_for(&Default::default(), &mut cursor, usize::MAX).unwrap();
    let last = b.entries.len() - 1;
    b.entries[last].sealed = vec![0xAB; 5 << 20];
    b
}

#[test]
fn an_oversized_entry_is_dropped_and_the_rest_of_the_batch_is_taken() {
    let (_, mut r) = vault(3);
    let (mut a, mut b, mut h) = (r.remove(0), r.remove(0), r.remove(0));
    h.write(&put(ItemId([1; 16]), "h-ok", &[]), 1_000).unwrap();
    h.write(&put(ItemId([2; 16]), "h-huge", &[]), 1_001).unwrap();
    a.write(&put(ItemId([3; 16]), "from-a", &[]), 1_002).unwrap();
    // b forwards a's entry in the same batch as h's planted one.
    let mut batch = plant_huge(&mut h);
    let mut cursor = 0;
    let from_a = a.batch_for(&Default::default(), &mut cursor, usize::MAX).unwrap();
    batch.authors.extend(from_a.authors.iter().copied());
    let shift = (batch.authors.len() - from_a.authors.len()) as u16;
    batch.entries.extend(from_a.entries.iter().cloned().map(|mut e| {
        e.author += shift;
        e
    }));
    batch.heads.extend(from_a.heads.iter().map(|(i, s)| (i + shift, *s)));
    let got = b.receive(&batch).unwrap();
    assert_eq!((got.new, got.refused), (1, 2), "a's entry taken, both of h's dropped");
    assert!(b.state().find("from-a").is_ok());
    assert!(b.state().find("h-ok").is_err());
}

#[test]
fn a_planted_huge_entry_no_longer_stalls_later_sessions() {
    let (secret, mut r) = vault(3);
    let (mut a, mut b, mut h) = (r.remove(0), r.remove(0), r.remove(0));
    h.write(&put(ItemId([1; 16]), "h-1", &[]), 1_000).unwrap();
    for i in 0..50u8 {
        a.write(&put(ItemId([10 + i; 16]), &format!("a-{i}"), &[]), 2_000 + u64::from(i)).unwrap();
    }
    // An old database of `a` (from before the limit was enforced on receipt) holds h's
    // entries, the second a properly sealed and signed 5 MiB op.
    let mut tmp = Replica::open(&secret, a.device_id(), MemStore::default()).unwrap();
    tmp.add_membership(h.membership().records().to_vec()).unwrap();
    let mut hb = h.batch_for(&Default::default(), &mut 0, usize::MAX).unwrap();
    hb.entries.truncate(1);
    hb.heads = vec![(0, head_at(&h, 1))];
    tmp.receive(&hb).unwrap();
    let mut entries = tmp.store_mut().load_entries().unwrap();
    entries.push(sealed_huge(&secret, &h, entries[0].hash));
    let mut store = a.store_mut().clone();
    store.commit(&entries, h.membership().records()).unwrap();
    let mut a = Replica::open(&secret, a.device_id(), store).unwrap();
    // Every later session from `a` still delivers everything else and ends caught up.
    for _ in 0..2 {
        let cfg = SessionConfig::default();
        let (mut sa, mut sb) =
            (Session::new(Role::Initiator, &a, cfg).unwrap(), Session::new(Role::Responder, &b, cfg).unwrap());
        run_until_quiet(&mut sa, &mut a, &mut sb, &mut b).unwrap();
        assert!(sa.is_live() && sb.is_live());
    }
    assert_eq!(b.version().get(a.device_id()), 50);
    assert_eq!(b.version().get(h.device_id()), 1, "h's run stops before the oversized entry");
}

#[test]
fn a_clock_a_year_fast_does_not_drag_local_time() {
    let (_, mut r) = vault(2);
    let (mut a, mut fast) = (r.remove(0), r.remove(0));
    let now = 1_800_000_000_000u64;
    let year = 365 * 24 * 3_600_000u64;
    fast.write(&put(ItemId([1; 16]), "from-the-future", &[]), now + year).unwrap();
    sync_one_way(&fast, &mut a);
    a.write(&set(ItemId([1; 16]), "k", "local"), now).unwrap();
    let mut cursor = 0;
    let b = a.batch_for(&Default::default(), &mut cursor, usize::MAX).unwrap();
    let mine = b.entries.iter().find(|e| b.authors[usize::from(e.author)] == a.device_id()).unwrap();
    assert_eq!(mine.hlc.ms, now, "the local write carries local time");
    assert_eq!(a.clocks_ahead(now), vec![(fast.device_id(), b.entries[0].hlc)]);
    // A peer a few minutes ahead still moves the clock (ordinary skew keeps order).
    let (_, mut r) = vault(2);
    let (mut c, mut d) = (r.remove(0), r.remove(0));
    d.write(&put(ItemId([2; 16]), "x", &[]), now + 60_000).unwrap();
    sync_one_way(&d, &mut c);
    c.write(&set(ItemId([2; 16]), "k", "v"), now).unwrap();
    let b = c.batch_for(&Default::default(), &mut 0, usize::MAX).unwrap();
    let mine = b.entries.iter().find(|e| b.authors[usize::from(e.author)] == c.device_id()).unwrap();
    assert!(mine.hlc.ms >= now + 60_000);
    assert!(c.clocks_ahead(now).is_empty());
    // The bound is exact: an hour ahead is ordinary skew, a millisecond more is reported.
    let (_, mut r) = vault(2);
    let (mut e, mut f) = (r.remove(0), r.remove(0));
    f.write(&put(ItemId([3; 16]), "edge", &[]), now + MAX_CLOCK_AHEAD_MS).unwrap();
    sync_one_way(&f, &mut e);
    assert!(e.clocks_ahead(now).is_empty());
    assert_eq!(e.clocks_ahead(now - 1).len(), 1);
}

/// An entry of exactly the largest size is an ordinary entry: written, sent and taken.
#[test]
fn an_entry_of_exactly_the_size_limit_is_sent_and_taken() {
    use hearth_peer::vault::op::MAX_OP_BYTES;
    let (_, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    let op = |n: usize| set(ItemId([5; 16]), "blob", &"x".repeat(n));
    let mut n = MAX_OP_BYTES;
    for _ in 0..4 {
        n = (n + MAX_OP_BYTES).saturating_sub(postcard::to_stdvec(&op(n)).unwrap().len());
    }
    assert_eq!(postcard::to_stdvec(&op(n)).unwrap().len(), MAX_OP_BYTES);
    a.write(&op(n), 1_000).unwrap();
    assert!(a.write(&op(n + 1), 1_001).is_err(), "one byte more is refused");
    sync_one_way(&a, &mut b);
    assert_eq!(b.state().items[&ItemId([5; 16])].field_values()["blob"].len(), n);
}
