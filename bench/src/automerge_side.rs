//! Automerge's side: the same records as nested maps, one change per item and per edit,
//! synced with automerge's own sync protocol (encoded messages counted as wire bytes).

use std::time::Instant;

use automerge::sync::{Message, State, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{ActorId, AutoCommit, ObjType, ROOT};
use serde_json::Value;

use crate::workload::records;
use crate::{ms, report};

/// Syncs two documents until neither has anything to send; returns bytes exchanged.
fn sync(a: &mut AutoCommit, sa: &mut State, b: &mut AutoCommit, sb: &mut State) -> anyhow::Result<usize> {
    let mut bytes = 0;
    loop {
        let mut moved = false;
        if let Some(m) = a.sync().generate_sync_message(sa) {
            let enc = m.encode();
            bytes += enc.len();
            b.sync().receive_sync_message(sb, Message::decode(&enc)?)?;
            moved = true;
        }
        if let Some(m) = b.sync().generate_sync_message(sb) {
            let enc = m.encode();
            bytes += enc.len();
            a.sync().receive_sync_message(sa, Message::decode(&enc)?)?;
            moved = true;
        }
        if !moved {
            return Ok(bytes);
        }
    }
}

/// Runs every measurement `reps` times and returns the medians.
pub(crate) fn run(n: usize, edits: usize, reps: usize) -> anyhow::Result<Value> {
    let mut a = AutoCommit::new().with_actor(ActorId::from(&[1u8; 16][..]));
    let items = a.put_object(ROOT, "items", ObjType::Map)?;
    a.commit();
    let mut ids = Vec::with_capacity(n);
    for (i, r) in records(n).into_iter().enumerate() {
        let key = format!("{i:016x}");
        let obj = a.put_object(&items, key.as_str(), ObjType::Map)?;
        a.put(&obj, "title", r.title)?;
        for (k, v) in r.fields {
            a.put(&obj, k, v)?;
        }
        a.commit();
        ids.push(obj);
    }
    let (mut full, mut conc, mut one, mut bytes) = (vec![], vec![], vec![], 0);
    for rep in 0..reps {
        let mut b = AutoCommit::new().with_actor(ActorId::from(&[2 + rep as u8; 16][..]));
        let (mut sa, mut sb) = (State::new(), State::new());
        let t = Instant::now();
        bytes = sync(&mut a, &mut sa, &mut b, &mut sb)?;
        full.push(ms(t));
        anyhow::ensure!(b.get_heads() == a.get_heads(), "automerge full sync did not converge");

        for (i, obj) in ids.iter().enumerate().take(edits) {
            a.put(obj, "password", format!("a{rep}-{i}"))?;
            a.commit();
            b.put(obj, "password", format!("b{rep}-{i}"))?;
            b.commit();
        }
        let t = Instant::now();
        sync(&mut a, &mut sa, &mut b, &mut sb)?;
        conc.push(ms(t));

        for (k, obj) in ids.iter().rev().take(crate::ONE_EDITS).enumerate() {
            let t = Instant::now();
            a.put(obj, "password", format!("one{rep}-{k}"))?;
            a.commit();
            sync(&mut a, &mut sa, &mut b, &mut sb)?;
            one.push(ms(t));
        }
        anyhow::ensure!(b.get_heads() == a.get_heads(), "automerge did not converge");
    }
    Ok(report(full, conc, one, bytes))
}
