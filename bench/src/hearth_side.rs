//! Hearth's side of the benchmark: two durable SQLite replicas over an in-memory pipe.

use std::time::Instant;

use hearth_peer::identity::VaultSecret;
use hearth_peer::ids::{DeviceId, ItemId};
use hearth_peer::sync::{run_until_quiet, Role, Session, SessionConfig};
use hearth_peer::vault::{Op, Replica, SqliteStore};
use serde_json::{json, Value};

use crate::workload::{plaintext_bytes, records};
use crate::{ms, report};

fn item_id(i: usize) -> ItemId {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(i as u64).to_be_bytes());
    ItemId(b)
}

fn edit(i: usize, value: String) -> Op {
    Op::Put { item: item_id(i), name: None, fields: vec![("password".into(), Some(value))] }
}

/// Builds the source device on SQLite, a thousand writes per commit (setup is not measured;
/// fsyncing 100,000 single writes would only slow it down, and building it in memory first
/// held the log three times over, which the peak RSS would have counted).
fn source(secret: &VaultSecret, dir: &std::path::Path, n: usize) -> anyhow::Result<(Replica<SqliteStore>, usize)> {
    let mut a = Replica::open(secret, DeviceId([1; 16]), SqliteStore::open(&dir.join("a.db"))?)?;
    a.enroll_self(1)?;
    a.defer_view();
    let mut plain = 0;
    let mut ops = Vec::with_capacity(1_000);
    for (i, r) in records(n).into_iter().enumerate() {
        plain += plaintext_bytes(&r);
        let fields = r.fields.into_iter().map(|(k, v)| (k.to_owned(), Some(v))).collect();
        ops.push(Op::Put { item: item_id(i), name: Some(r.title), fields });
        if ops.len() == 1_000 || i + 1 == n {
            a.write_all(&std::mem::take(&mut ops), 1_700_000_000_000 + i as u64)?;
        }
    }
    Ok((a, plain))
}

/// Runs every measurement `reps` times and returns the medians.
pub(crate) fn run(n: usize, edits: usize, reps: usize) -> anyhow::Result<Value> {
    let secret = VaultSecret::from_bytes([7; 32]);
    let dir = tempfile::tempdir()?;
    let (mut a, plain) = source(&secret, dir.path(), n)?;
    let (mut full, mut conc, mut one, mut bytes, mut conflicts) = (vec![], vec![], vec![], 0, 0);
    // As a daemon does: the materialized view is written once changes settle, not at every
    // batch; timed apart below (what a second later costs the receiving device).
    a.defer_view();
    let mut view = vec![];
    let cfg = SessionConfig::default();
    for rep in 0..reps {
        let mut b = Replica::open(
            &secret,
            DeviceId([2 + rep as u8; 16]),
            SqliteStore::open(&dir.path().join(format!("b{rep}.db")))?,
        )?;
        b.enroll_self(2)?;
        b.defer_view();
        a.add_membership(b.membership().records().to_vec())?;
        b.add_membership(a.membership().records().to_vec())?;

        let t = Instant::now();
        let mut sa = Session::new(Role::Initiator, &a, cfg)?;
        let mut sb = Session::new(Role::Responder, &b, cfg)?;
        let st = run_until_quiet(&mut sa, &mut a, &mut sb, &mut b)?;
        full.push(ms(t));
        anyhow::ensure!(b.state().digest() == a.state().digest(), "full sync did not converge");
        let t = Instant::now();
        b.refresh_view();
        view.push(ms(t));
        bytes = st.bytes_a_to_b + st.bytes_b_to_a;

        // Both devices edit the same fields without talking, then the live session meets.
        let base = 1_800_000_000_000 + rep as u64 * 1_000_000;
        for i in 0..edits {
            a.write(&edit(i, format!("a{rep}-{i}")), base + i as u64)?;
            b.write(&edit(i, format!("b{rep}-{i}")), base + i as u64)?;
        }
        let t = Instant::now();
        run_until_quiet(&mut sa, &mut a, &mut sb, &mut b)?;
        conc.push(ms(t));
        anyhow::ensure!(b.state().digest() == a.state().digest(), "concurrent edits did not converge");
        conflicts = a.state().conflicts().len();

        for k in 0..crate::ONE_EDITS.min(n) {
            let t = Instant::now();
            a.write(&edit(n - 1 - k, format!("one{rep}-{k}")), base + 999_999 + k as u64)?;
            run_until_quiet(&mut sa, &mut a, &mut sb, &mut b)?;
            one.push(ms(t));
        }
        anyhow::ensure!(b.state().digest() == a.state().digest(), "single edit did not converge");
    }
    let mut out = report(full, conc, one, bytes);
    out["plaintext_bytes"] = json!(plain);
    out["conflicts"] = json!(conflicts);
    view.sort_by(f64::total_cmp);
    out["view_ms"] = json!(view.get(view.len() / 2));
    Ok(out)
}
