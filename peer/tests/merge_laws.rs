//! Property tests of the merge laws at the replica level: merging histories is
//! commutative, associative and idempotent, and the order entries are delivered in never
//! changes the result.

use crate::common::{sync_one_way, vault};
use hearth_peer::identity::VaultSecret;
use hearth_peer::ids::{DeviceId, ItemId};
use hearth_peer::vault::{MemStore, Op, Replica, VersionVector};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Three devices with a random concurrent history (edits of shared fields, deletes,
/// partial syncs between them).
fn history(seed: u64, steps: usize) -> Vec<Replica<MemStore>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (_, mut d) = vault(3);
    let items: Vec<ItemId> = (0..4u8).map(|i| ItemId([i + 1; 16])).collect();
    for step in 0..steps {
        let i = rng.gen_range(0..3);
        if rng.gen_bool(0.25) {
            let j = (i + rng.gen_range(1..3)) % 3;
            let (src, dst) = if i < j {
                let (a, b) = d.split_at_mut(j);
                (&a[i], &mut b[0])
            } else {
                let (a, b) = d.split_at_mut(i);
                (&b[0], &mut a[j])
            };
            sync_one_way(src, dst);
            continue;
        }
        let item = items[rng.gen_range(0..items.len())];
        let op = match rng.gen_range(0..6) {
            0 => Op::Delete { item },
            1 => Op::Put { item, name: Some(format!("n{}", rng.gen::<u8>())), fields: vec![] },
            _ => Op::Put {
                item,
                name: None,
                fields: vec![(["a", "b"][rng.gen_range(0..2)].into(), Some(format!("{step}")))],
            },
        };
        d[i].write(&op, 1_000 + rng.gen_range(0..100)).unwrap();
    }
    d
}

/// What a replica holding every entry of `sources` must hold, computed from the sources'
/// versions alone (not by the merge under test).
fn union(sources: &[&Replica<MemStore>]) -> VersionVector {
    let mut vv = VersionVector::default();
    for r in sources {
        for (d, s) in &r.version().0 {
            if *s > vv.get(*d) {
                vv.set(*d, *s);
            }
        }
    }
    vv
}

fn fresh(secret_from: &Replica<MemStore>) -> Replica<MemStore> {
    let mut r = Replica::open(&VaultSecret::from_bytes([0x11; 32]), DeviceId([0xEE; 16]), MemStore::default()).unwrap();
    r.add_membership(secret_from.membership().records().to_vec()).unwrap();
    r
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn commutative(seed in any::<u64>(), steps in 5usize..60) {
        let d = history(seed, steps);
        let (mut x, mut y) = (fresh(&d[0]), fresh(&d[0]));
        sync_one_way(&d[0], &mut x);
        sync_one_way(&d[1], &mut x);
        sync_one_way(&d[1], &mut y);
        sync_one_way(&d[0], &mut y);
        prop_assert_eq!(x.state().digest(), y.state().digest());
        let want = union(&[&d[0], &d[1]]);
        prop_assert_eq!(x.version(), &want);
        prop_assert_eq!(x.len() as u64, want.total());
    }

    #[test]
    fn associative(seed in any::<u64>(), steps in 5usize..60) {
        let d = history(seed, steps);
        // (a ∪ b) ∪ c
        let mut ab = fresh(&d[0]);
        sync_one_way(&d[0], &mut ab);
        sync_one_way(&d[1], &mut ab);
        sync_one_way(&d[2], &mut ab);
        // a ∪ (b ∪ c)
        let mut bc = fresh(&d[0]);
        sync_one_way(&d[1], &mut bc);
        sync_one_way(&d[2], &mut bc);
        let mut a_bc = fresh(&d[0]);
        sync_one_way(&d[0], &mut a_bc);
        sync_one_way(&bc, &mut a_bc);
        prop_assert_eq!(ab.state().digest(), a_bc.state().digest());
        let want = union(&[&d[0], &d[1], &d[2]]);
        prop_assert_eq!(ab.version(), &want);
        prop_assert_eq!(a_bc.len() as u64, want.total());
    }

    #[test]
    fn idempotent(seed in any::<u64>(), steps in 5usize..60) {
        let mut d = history(seed, steps);
        let mut x = fresh(&d[0]);
        sync_one_way(&d[0], &mut x);
        let once = x.state().digest();
        prop_assert_eq!(x.version(), d[0].version());
        // Re-deliver everything (a fresh cursor resends all entries): all duplicates.
        let mut cursor = 0;
        let b = d[0].batch_for(&Default::default(), &mut cursor, usize::MAX).unwrap();
        let got = x.receive(&b).unwrap();
        prop_assert_eq!((got.new, got.duplicates), (0, d[0].len()));
        prop_assert_eq!(x.state().digest(), once);
        // Merging a replica with a copy of itself changes nothing either.
        let before = d[1].state().digest();
        let copy = {
            let mut c = fresh(&d[1]);
            sync_one_way(&d[1], &mut c);
            c
        };
        prop_assert_eq!(copy.version(), d[1].version());
        // Everything the copy holds, resent from scratch: nothing new.
        let b = copy.batch_for(&Default::default(), &mut 0, usize::MAX).unwrap();
        let got = d[1].receive(&b).unwrap();
        prop_assert_eq!((got.new, got.duplicates), (0, copy.len()));
        prop_assert_eq!(d[1].state().digest(), before);
    }

    #[test]
    fn delivery_order_does_not_matter(seed in any::<u64>(), steps in 5usize..60, order in Just(vec![0usize, 1, 2]).prop_shuffle(), budget in 64usize..4096) {
        let d = history(seed, steps);
        let mut reference = fresh(&d[0]);
        for r in &d {
            sync_one_way(r, &mut reference);
        }
        // Same entries, another order of sources and another batch granularity.
        let mut x = fresh(&d[0]);
        for &i in &order {
            let mut cursor = 0;
            loop {
                let b = d[i].batch_for(x.version(), &mut cursor, budget).unwrap();
                if b.is_empty() { break; }
                x.receive(&b).unwrap();
            }
        }
        prop_assert_eq!(x.state().digest(), reference.state().digest());
        let want = union(&[&d[0], &d[1], &d[2]]);
        prop_assert_eq!(x.version(), &want);
        prop_assert_eq!(reference.version(), &want);
    }
}
