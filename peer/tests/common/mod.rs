//! Helpers shared by the peer crate's integration tests.
#![allow(dead_code)]

use hearth_peer::identity::VaultSecret;
use hearth_peer::ids::{DeviceId, ItemId};
use hearth_peer::vault::{LogStore, MemStore, Op, Replica, VersionVector};

/// A vault with `n` enrolled devices on memory stores, each knowing every enrolment.
pub(crate) fn vault(n: usize) -> (VaultSecret, Vec<Replica<MemStore>>) {
    let secret = VaultSecret::from_bytes([0x11; 32]);
    let mut reps: Vec<Replica<MemStore>> = (0..n)
        .map(|i| {
            let mut r = Replica::open(&secret, DeviceId([i as u8 + 1; 16]), MemStore::default()).unwrap();
            r.enroll_self(1_000).unwrap();
            r
        })
        .collect();
    let all: Vec<_> = reps.iter().flat_map(|r| r.membership().records().to_vec()).collect();
    for r in &mut reps {
        r.add_membership(all.clone()).unwrap();
    }
    (secret, reps)
}

/// Two sessions between `a` (dialling) and `b`, run until both are live and quiet.
pub(crate) fn live_sessions<A: LogStore, B: LogStore>(
    a: &mut Replica<A>,
    b: &mut Replica<B>,
) -> (hearth_peer::sync::Session, hearth_peer::sync::Session) {
    use hearth_peer::sync::{run_until_quiet, Role, Session, SessionConfig};
    let cfg = SessionConfig::default();
    let (mut sa, mut sb) =
        (Session::new(Role::Initiator, a, cfg).unwrap(), Session::new(Role::Responder, b, cfg).unwrap());
    run_until_quiet(&mut sa, a, &mut sb, b).unwrap();
    assert!(sa.is_live() && sb.is_live());
    (sa, sb)
}

/// Sends everything `from` has that `to` lacks, in bounded batches; returns batches sent.
pub(crate) fn sync_one_way<A: LogStore, B: LogStore>(from: &Replica<A>, to: &mut Replica<B>) -> usize {
    let mut cursor = 0;
    let mut n = 0;
    loop {
        let remote: VersionVector = to.version().clone();
        let b = from.batch_for(&remote, &mut cursor, 16 * 1024).unwrap();
        if b.is_empty() {
            return n;
        }
        to.receive(&b).unwrap();
        n += 1;
    }
}

/// Both directions.
pub(crate) fn sync_pair<A: LogStore, B: LogStore>(a: &mut Replica<A>, b: &mut Replica<B>) {
    sync_one_way(a, b);
    sync_one_way(b, a);
}

/// A put of `fields` on `item` with `name`.
pub(crate) fn put(item: ItemId, name: &str, fields: &[(&str, &str)]) -> Op {
    Op::Put {
        item,
        name: Some(name.to_owned()),
        fields: fields.iter().map(|(k, v)| (k.to_string(), Some(v.to_string()))).collect(),
    }
}

/// A put of one field without renaming.
pub(crate) fn set(item: ItemId, k: &str, v: &str) -> Op {
    Op::Put { item, name: None, fields: vec![(k.to_owned(), Some(v.to_owned()))] }
}

/// Seals `op` under `header` exactly as `Entry::seal` does, with no size check and a fixed
/// nonce: how modified software or an old build could produce an entry.
pub(crate) fn seal_raw(
    secret: &VaultSecret,
    header: hearth_peer::vault::EntryHeader,
    op: &Op,
) -> hearth_peer::vault::Entry {
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};
    let keys = hearth_peer::identity::VaultKeys::derive(secret);
    let nonce = [9u8; 24];
    let aad = postcard::to_stdvec(&header).unwrap();
    let ct = XChaCha20Poly1305::new(keys.content.as_bytes().into())
        .encrypt(XNonce::from_slice(&nonce), Payload { msg: &postcard::to_stdvec(op).unwrap(), aad: &aad })
        .unwrap();
    hearth_peer::vault::Entry { header, sealed: [&nonce[..], &ct].concat() }
}
