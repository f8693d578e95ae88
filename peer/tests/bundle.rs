//! Bundles (sneakernet sync): what goes in comes out, twice is once, and anything that is not
//! a whole, sealed bundle of this vault is refused with its reason before anything is stored.

use crate::common::{put, set, vault};
use hearth_peer::identity::VaultSecret;
use hearth_peer::ids::ItemId;
use hearth_peer::vault::bundle::{check_size, export, import, MAX_BUNDLE};
use hearth_peer::vault::{Batch, BundleError, Received, Replica, ReplicaError};

const ITEM: ItemId = ItemId([3; 16]);

#[test]
fn a_bundle_carries_everything_once() {
    let (_, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    for i in 0..300u64 {
        a.write(&set(ITEM, "n", &i.to_string()), 1_000 + i).unwrap();
    }
    b.write(&put(ItemId([4; 16]), "b's", &[]), 2_000).unwrap();
    let bytes = export(&a).unwrap();
    assert_eq!(&bytes[..8], b"HEARTHB1");
    assert_eq!(&bytes[8..24], &a.vault_id().0);
    assert_eq!(import(&mut b, &bytes).unwrap(), Received { new: 300, ..Default::default() });
    assert_eq!(b.state().items[&ITEM].field_values()["n"], "299");
    assert_eq!(import(&mut b, &bytes).unwrap(), Received { duplicates: 300, ..Default::default() });
    // Back the other way: a gets b's entry, and both hold the same state.
    let back = export(&b).unwrap();
    assert_eq!(import(&mut a, &back).unwrap(), Received { new: 1, duplicates: 300, ..Default::default() });
    assert_eq!(a.state().digest(), b.state().digest());
    // Two exports of one state differ (a fresh nonce each) and import alike.
    assert_ne!(export(&a).unwrap(), export(&a).unwrap());
}

#[test]
fn what_is_not_a_whole_bundle_of_this_vault_is_refused() {
    let (_, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    a.write(&put(ITEM, "x", &[("password", "p")]), 1_000).unwrap();
    let bytes = export(&a).unwrap();
    let digest = b.state().digest();
    let refused = |b: &mut hearth_peer::vault::Replica<_>, bytes: &[u8]| import(b, bytes).unwrap_err();
    assert!(matches!(refused(&mut b, b"HEARTHB1"), BundleError::NotABundle), "shorter than a header");
    let mut magic = bytes.clone();
    magic[0] = b'X';
    assert!(matches!(refused(&mut b, &magic), BundleError::NotABundle));
    // Exactly a header and nothing sealed: a bundle, damaged.
    assert!(matches!(refused(&mut b, &bytes[..48]), BundleError::Damaged));
    for at in [30, 60, bytes.len() - 1] {
        let mut flipped = bytes.clone();
        flipped[at] ^= 1;
        assert!(matches!(refused(&mut b, &flipped), BundleError::Damaged), "byte {at}");
    }
    let mut other = bytes.clone();
    other[8] ^= 1;
    assert!(matches!(refused(&mut b, &other), BundleError::OtherVault(v) if v.0 == other[8..24]));
    assert_eq!(b.state().digest(), digest, "nothing was stored");
    assert!(b.is_empty());
    // Size: the limit itself is accepted, one byte more is not (checked before reading).
    assert!(check_size(MAX_BUNDLE).is_ok());
    assert!(matches!(check_size(MAX_BUNDLE + 1), Err(BundleError::TooLarge(n)) if n == MAX_BUNDLE + 1));
    assert_eq!(MAX_BUNDLE, 512 << 20);
}

#[test]
fn void_entries_in_a_bundle_are_counted_not_taken() {
    let (_, mut r) = vault(2);
    let (mut a, mut d) = (r.remove(0), r.remove(0));
    d.write(&set(ITEM, "k", "1"), 1_000).unwrap();
    d.write(&set(ITEM, "k", "2"), 1_001).unwrap();
    assert_eq!(import(&mut a, &export(&d).unwrap()).unwrap().new, 2);
    a.revoke(d.device_id(), 2_000).unwrap();
    d.write(&set(ITEM, "k", "after the cut"), 3_000).unwrap();
    let got = import(&mut a, &export(&d).unwrap()).unwrap();
    assert_eq!(got, Received { duplicates: 2, void: 1, ..Default::default() });
    assert_eq!(a.state().items[&ITEM].field_values()["k"], "2");
}

/// Seals `batches` into a bundle of the vault of `secret` exactly as `export` does: what
/// modified software could write.
fn seal_bundle(secret: &VaultSecret, batches: Vec<Batch>) -> Vec<u8> {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};
    #[derive(serde::Serialize)]
    struct Body {
        membership: Vec<hearth_peer::identity::MembershipRecord>,
        batches: Vec<Batch>,
    }
    let keys = hearth_peer::identity::VaultKeys::derive(secret);
    let mut out = b"HEARTHB1".to_vec();
    out.extend_from_slice(&keys.vault_id.0);
    let nonce = [7u8; 24];
    let aad = out.clone();
    let plain = postcard::to_stdvec(&Body { membership: Vec::new(), batches }).unwrap();
    let ct = XChaCha20Poly1305::new(keys.content.as_bytes().into())
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: &plain, aad: &aad })
        .unwrap();
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// A bundle holding an entry over the size limit: that author's entries in its batch are
/// dropped and counted, everything else is taken.
#[test]
fn an_oversized_entry_in_a_bundle_is_refused_and_counted() {
    let (secret, mut r) = vault(3);
    let (mut a, mut b, mut h) = (r.remove(0), r.remove(0), r.remove(0));
    h.write(&set(ITEM, "k", "fine"), 1_000).unwrap();
    h.write(&set(ITEM, "k", "huge"), 1_001).unwrap();
    a.write(&put(ItemId([9; 16]), "from-a", &[]), 1_002).unwrap();
    let mut planted = h.batch_for(&Default::default(), &mut 0, usize::MAX).unwrap();
    planted.entries[1].sealed = vec![0xAB; 100_000];
    let from_a = a.batch_for(&Default::default(), &mut 0, usize::MAX).unwrap();
    let bytes = seal_bundle(&secret, vec![planted, from_a]);
    assert_eq!(import(&mut b, &bytes).unwrap(), Received { new: 1, refused: 2, ..Default::default() });
    assert!(b.state().find("from-a").is_ok());
    assert!(!b.state().items.contains_key(&ITEM));
}

/// A bundle whose log of a device parts from the one held (a home restored from an older
/// copy wrote again) settles the fork at the last shared entry, as a session would.
#[test]
fn a_bundle_whose_log_parts_from_ours_settles_the_fork() {
    let (secret, mut r) = vault(2);
    let (mut a, mut b) = (r.remove(0), r.remove(0));
    let id = a.device_id();
    a.write(&set(ITEM, "k", "a1"), 1_000).unwrap();
    let backup = a.store_mut().clone();
    a.write(&set(ITEM, "k", "a2"), 1_001).unwrap();
    assert_eq!(import(&mut b, &export(&a).unwrap()).unwrap().new, 2);
    let mut restored = Replica::open(&secret, id, backup).unwrap();
    restored.write(&set(ITEM, "k", "r2"), 2_000).unwrap();
    let got = import(&mut b, &export(&restored).unwrap()).unwrap();
    assert_eq!(got, Received { duplicates: 1, void: 1, ..Default::default() });
    let cut = b.membership().revocation(id).unwrap();
    assert_eq!((cut.last_seq, Some(cut.last_hash)), (1, a.hash_at(id, 1)));
    assert!(b.membership().is_forked(id));
    assert_eq!(b.state().items[&ITEM].field_values()["k"], "a1");
    // A run that skips a seq proves nothing about where logs part: no settlement, and the
    // entries are refused as a gap.
    let (_, mut r) = vault(2);
    let mut c = r.remove(1);
    let mut gap = a.batch_for(&Default::default(), &mut 0, usize::MAX).unwrap();
    gap.entries.retain(|e| e.seq != 1);
    let err = import(&mut c, &seal_bundle(&secret, vec![gap])).unwrap_err();
    assert!(matches!(err, BundleError::Replica(ReplicaError::Gap { .. })), "{err}");
    assert!(c.membership().revocation(id).is_none());
}

/// A bundle carrying only the later part of a log (not from seq 1) proves nothing about
/// where logs part: it settles nothing, and what chains on the log held is taken.
#[test]
fn a_bundle_with_part_of_a_log_settles_nothing() {
    let (secret, mut r) = vault(2);
    let (mut a, mut c) = (r.remove(0), r.remove(0));
    let id = a.device_id();
    a.write(&set(ITEM, "k", "a1"), 1_001).unwrap();
    a.write(&set(ITEM, "k", "a2"), 1_002).unwrap();
    assert_eq!(import(&mut c, &export(&a).unwrap()).unwrap().new, 2);
    a.write(&set(ITEM, "k", "a3"), 1_003).unwrap();
    let mut tail = a.batch_for(&Default::default(), &mut 0, usize::MAX).unwrap();
    tail.entries.retain(|e| e.seq != 1);
    let got = import(&mut c, &seal_bundle(&secret, vec![tail])).unwrap();
    assert_eq!(got, Received { new: 1, duplicates: 1, ..Default::default() });
    assert!(c.membership().revocation(id).is_none());
    assert_eq!(c.state().items[&ITEM].field_values()["k"], "a3");
}
