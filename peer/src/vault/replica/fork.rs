//! Fork settlement: a device that signed two different logs (its home restored from an
//! older copy, then written) must not split the vault. Two replicas that hold different
//! branches find the last entry both share by comparing hashes (the chain makes one equal
//! hash prove the whole prefix equal), and either of them signs a `Fork` record with the
//! vault root key: the author's log is kept up to that entry and everything beyond it, on
//! both branches, is void everywhere, exactly like a revocation's cut-off. Every replica
//! that learns the record and holds yet another entry at its cut settles one lower itself,
//! so every device ends up keeping the same prefix. The forked device re-enrols under a new
//! device id and re-writes its own voided edits ([`Replica::rewrite_forked`]).

use super::*;

/// Entries below the fork point whose hashes are listed one by one; below that, a ladder of
/// doubling gaps (a fork deeper than this may be settled a little below its true point,
/// which voids some shared entries; they stay listed like every void one).
pub const DENSE_HASHES: u64 = 4096;

/// The store's meta key marking that `old`'s voided edits were re-written under a new id.
fn rewritten_key(old: DeviceId) -> String {
    format!("rewritten/{}", old.to_hex())
}

impl<S: LogStore> Replica<S> {
    /// The hash of the live entry `author#seq` (the genesis value at seq 0), if held.
    pub fn hash_at(&self, author: DeviceId, seq: u64) -> Option<[u8; 32]> {
        if seq == 0 {
            return Some(GENESIS);
        }
        self.index.get(&(author, seq)).map(|i| self.log[*i].hash)
    }

    /// This replica's hashes of `author`'s log at `from` and below, to find where another
    /// branch parts from it: every seq down to `DENSE_HASHES` below, then doubling gaps.
    pub fn fork_hashes(&self, author: DeviceId, from: u64) -> Vec<(u64, [u8; 32])> {
        let mut out = Vec::new();
        let start = from.min(self.vv.get(author));
        let mut seq = start;
        let mut gap = 1;
        while seq > 0 {
            if let Some(h) = self.hash_at(author, seq) {
                out.push((seq, h));
            }
            if start - seq >= DENSE_HASHES {
                gap *= 2;
            }
            seq = seq.saturating_sub(gap);
        }
        out
    }

    /// Settles a fork of `author` from a peer's [`fork_hashes`](Self::fork_hashes): the
    /// last seq where both logs agree is kept, everything beyond is void. Returns that seq
    /// when this call settled something (nothing when the logs agree on all listed).
    pub fn settle_fork(&mut self, author: DeviceId, theirs: &[(u64, [u8; 32])]) -> Result<Option<u64>, ReplicaError> {
        let mut agree = 0;
        let mut differ = false;
        for (seq, hash) in theirs {
            match self.hash_at(author, *seq) {
                Some(h) if h == *hash => agree = agree.max(*seq),
                Some(_) => differ = true,
                None => {}
            }
        }
        let settled = self.membership.revocation(author).is_some_and(|r| r.last_seq <= agree);
        if !differ || settled {
            return Ok(None);
        }
        let rec = self.fork_record(author, agree)?;
        self.add_membership(vec![rec])?;
        Ok(Some(agree))
    }

    /// The root-signed record settling `author`'s fork at `last_seq` (with this log's hash
    /// there). Deterministic: two replicas settling the same fork alike sign equal bytes.
    fn fork_record(&self, author: DeviceId, last_seq: u64) -> Result<MembershipRecord, ReplicaError> {
        let last_hash = self.hash_at(author, last_seq).ok_or(ReplicaError::Damaged(author, last_seq))?;
        let body = Revocation { vault_id: self.keys.vault_id, device_id: author, last_seq, last_hash, at_ms: 0 };
        Ok(MembershipRecord::sign(&self.keys.root, MembershipBody::Fork(body)))
    }

    /// Signs fork settlements into `self.membership` until every cut-off at which this log
    /// holds an entry names that entry's hash: a cut that vouches for another entry there
    /// means the author forked at or below it, so this replica settles one seq lower (which
    /// the lower-wins rule makes the one in force). Returns the records signed.
    pub(super) fn settle_mismatched_cuts(&mut self) -> Result<Vec<MembershipRecord>, ReplicaError> {
        let mut signed = Vec::new();
        loop {
            let mismatch = self.membership.revocations().find_map(|r| {
                let held = self.hash_at(r.device_id, r.last_seq)?;
                (held != r.last_hash).then_some((r.device_id, r.last_seq.saturating_sub(1)))
            });
            let Some((author, cut)) = mismatch else { return Ok(signed) };
            let rec = self.fork_record(author, cut)?;
            self.membership.insert(rec.clone())?;
            signed.push(rec);
        }
    }

    /// True when this device's own log was found forked (and no user revoked it): it must
    /// re-enrol under a new device id ([`crate::home::Home::settle_own_fork`]) to write again.
    pub fn forked_self(&self) -> bool {
        self.membership.may_reenrol(self.device.device_id)
    }

    /// After this home re-enrolled under a new device id: re-writes, as new entries of this
    /// device, every edit the old id `old` made that the fork settlement voided (what this
    /// device typed on its branch; the other branch's values stay listed as void). Done once
    /// per old id; returns the ops written.
    pub fn rewrite_forked(&mut self, old: DeviceId, now_ms: u64) -> Result<Vec<Op>, ReplicaError> {
        if old == self.device.device_id || self.store.get_meta(&rewritten_key(old))?.is_some() {
            return Ok(Vec::new());
        }
        let mut mine: Vec<StoredEntry> =
            self.store.load_voided()?.into_iter().filter(|se| se.entry.header.author == old).collect();
        mine.sort_by_key(|se| se.entry.header.seq);
        let mut ops = Vec::with_capacity(mine.len());
        for se in mine {
            let op = se.entry.unseal(&self.keys.content)?;
            self.write(&op, now_ms)?;
            ops.push(op);
        }
        self.store.set_meta(&rewritten_key(old), b"done")?;
        Ok(ops)
    }
}
