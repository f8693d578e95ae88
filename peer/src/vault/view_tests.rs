//! The view's rows and name keys.

use super::*;
use crate::identity::VaultSecret;
use crate::ids::DeviceId;
use crate::vault::entry::NONCE_LEN;
use crate::vault::Op;

fn keys(b: u8) -> VaultKeys {
    VaultKeys::derive(&VaultSecret::from_bytes([b; 32]))
}

fn item(name: &str, fields: &[(&str, &str)]) -> (VaultState, ItemId) {
    let id = ItemId([7; 16]);
    let mut st = VaultState::default();
    let fields = fields.iter().map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned()))).collect();
    let op = Op::Put { item: id, name: Some(name.to_owned()), fields };
    st.apply(DeviceId([1; 16]), 1, Default::default(), &Default::default(), &op);
    (st, id)
}

#[test]
fn a_row_opens_as_the_item_it_sealed_and_holds_no_plaintext() {
    let k = keys(1);
    let (st, id) = item("bank", &[("password", "hunter2-secret")]);
    let row = seal_item(&k, id, &st.items[&id]);
    assert!(!row.windows(6).any(|w| w == b"hunter") && !row.windows(4).any(|w| w == b"bank"));
    assert_eq!(open_item(&k, id, &row).unwrap(), st.items[&id]);
    assert_ne!(seal_item(&k, id, &st.items[&id])[..NONCE_LEN], row[..NONCE_LEN], "a fresh nonce each time");
}

#[test]
fn an_edited_moved_or_foreign_row_does_not_open() {
    let k = keys(1);
    let (st, id) = item("bank", &[("password", "x")]);
    let row = seal_item(&k, id, &st.items[&id]);
    for i in [0, NONCE_LEN, row.len() - 1] {
        let mut bad = row.clone();
        bad[i] ^= 1;
        assert_eq!(open_item(&k, id, &bad), Err(ViewError(id.to_hex())), "byte {i}");
    }
    assert!(open_item(&k, ItemId([8; 16]), &row).is_err(), "another item's row");
    assert!(open_item(&keys(2), id, &row).is_err(), "another vault's row");
    assert!(open_item(&k, id, &row[..NONCE_LEN - 1]).is_err() && open_item(&k, id, &[]).is_err());
}

#[test]
fn name_keys_are_equal_for_equal_names_only_and_keyed_by_vault() {
    let k = keys(1);
    assert_eq!(name_key(&k, "bank"), name_key(&k, "bank"));
    assert_ne!(name_key(&k, "bank"), name_key(&k, "Bank"));
    assert_ne!(name_key(&k, "bank"), name_key(&keys(2), "bank"));
}

#[test]
fn an_update_holds_the_rows_and_names_of_what_changed_or_of_everything() {
    let k = keys(1);
    let (mut st, id) = item("bank", &[]);
    let gone = ItemId([9; 16]);
    let op = Op::Put { item: gone, name: Some("old".into()), fields: vec![] };
    st.apply(DeviceId([1; 16]), 2, Default::default(), &Default::default(), &op);
    st.apply(DeviceId([1; 16]), 3, Default::default(), &Default::default(), &Op::Delete { item: gone });
    let up = ViewUpdate::of(&k, &st, [gone, ItemId([3; 16])], false, Default::default());
    assert!(!up.full);
    let rows: Vec<ViewRow> = up.collect();
    assert_eq!(rows.len(), 1, "an id the state does not hold is skipped");
    assert_eq!((rows[0].id, rows[0].name), (gone, None), "a deleted item is not indexed");
    let all = ViewUpdate::of(&k, &st, [], true, Default::default());
    assert!(all.full);
    let all: Vec<ViewRow> = all.collect();
    assert_eq!(
        all.iter().map(|r| (r.id, r.name)).collect::<Vec<_>>(),
        vec![(id, Some(name_key(&k, "bank"))), (gone, None)]
    );
    assert_eq!(open_item(&k, gone, &all[1].body).unwrap(), st.items[&gone]);
    let all = all.into_iter().map(|r| (r.id, r.body)).collect::<Vec<_>>();
    let one = state_of([(id, open_item(&k, id, &all[0].1).unwrap())]);
    assert_eq!(one.find("bank"), Ok(id), "a state of one row finds it by name");
}
