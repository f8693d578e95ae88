//! What a replica forwards: the next batch of entries a peer lacks, built from the small
//! part of each entry held in memory, with payloads and deps read back from the store.

use super::*;

/// An entry as a replica holds it in memory: what routing, chaining and heads need (the
/// sealed payload and the deps stay in the store, read back when a batch is built).
#[derive(Debug, Clone)]
pub(super) struct Held {
    /// The author.
    pub(super) author: DeviceId,
    /// Its seq.
    pub(super) seq: u64,
    /// Its timestamp.
    pub(super) hlc: Hlc,
    /// Its chain hash.
    pub(super) hash: [u8; 32],
    /// The author's head signature at exactly this entry, when held.
    pub(super) head: Option<Signature>,
    /// Bytes of its sealed payload (what it weighs in a batch).
    pub(super) sealed_len: u32,
}

impl Held {
    /// The part of `se` kept in memory.
    pub(super) fn of(se: &StoredEntry) -> Self {
        let h = &se.entry.header;
        let sealed_len = u32::try_from(se.entry.sealed.len()).unwrap_or(u32::MAX);
        Self { author: h.author, seq: h.seq, hlc: h.hlc, hash: se.hash, head: se.head, sealed_len }
    }
}

impl<S: LogStore> Replica<S> {
    /// Builds the next batch of entries `remote` lacks, scanning from log position `*cursor`.
    /// It stops once about `budget` bytes are in and every author's run ends at an entry
    /// whose head signature is held (so the receiver can verify it); it advances `*cursor`.
    pub fn batch_for(&self, remote: &VersionVector, cursor: &mut usize, budget: usize) -> Result<Batch, ReplicaError> {
        self.batch_until(remote, cursor, usize::MAX, budget)
    }

    /// [`Replica::batch_for`] that leaves entries from log position `end` on for later (held
    /// back by the sync session), except where a run begun before `end` needs them to end
    /// at a signed entry. On an error (the store could not be read) `*cursor` stays.
    pub fn batch_until(
        &self,
        remote: &VersionVector,
        cursor: &mut usize,
        end: usize,
        budget: usize,
    ) -> Result<Batch, ReplicaError> {
        let mut b = Batch::default();
        let mut author_idx: HashMap<DeviceId, u16> = HashMap::new();
        // Authors whose run so far ends without a held signature.
        let mut open: BTreeMap<u16, ()> = BTreeMap::new();
        let mut last_sig: BTreeMap<u16, Signature> = BTreeMap::new();
        // The positions taken, and each author's first and last seq among them (one run per
        // author: its entries here are consecutive seqs).
        let mut taken: Vec<(usize, u16)> = Vec::new();
        let mut runs: BTreeMap<DeviceId, (u64, u64)> = BTreeMap::new();
        let mut size = 0usize;
        let mut at = *cursor;
        while at < self.log.len() && ((size < budget && at < end) || !open.is_empty()) {
            let (e, dead) = (&self.log[at], self.dead[at]);
            at += 1;
            if dead || e.seq <= remote.get(e.author) || self.stuck.get(&e.author).is_some_and(|s| e.seq >= *s) {
                continue;
            }
            let idx = *author_idx.entry(e.author).or_insert_with(|| {
                b.authors.push(e.author);
                (b.authors.len() - 1) as u16
            });
            size += e.sealed_len as usize + 48;
            taken.push((at - 1, idx));
            runs.entry(e.author).and_modify(|r| r.1 = e.seq).or_insert((e.seq, e.seq));
            match e.head {
                // A signature at the entry serves every receiver, whether or not it knows a
                // revocation that vouches for the entry.
                Some(sig) => {
                    open.remove(&idx);
                    last_sig.insert(idx, sig);
                }
                None if self.vouched(e) => {
                    // The run ends at the revocation's root-signed hash: no head signature,
                    // and an earlier one would not cover the run's end.
                    open.remove(&idx);
                    last_sig.remove(&idx);
                }
                None => {
                    open.insert(idx, ());
                }
            }
        }
        let mut bodies = HashMap::with_capacity(runs.len());
        for (author, (from, to)) in runs {
            bodies.insert(author, self.store.load_run(author, from, to)?.into_iter());
        }
        for (pos, idx) in taken {
            let e = &self.log[pos];
            let se = bodies.get_mut(&e.author).and_then(|run| run.find(|se| se.entry.header.seq == e.seq));
            // The store holds what this replica committed: anything else is damage (or a
            // write by another handle), and no entry leaves unverified.
            let Some(se) = se.filter(|se| se.hash == e.hash) else {
                return Err(ReplicaError::Damaged(e.author, e.seq));
            };
            let Entry { header, sealed } = se.entry;
            b.entries.push(WireEntry { author: idx, seq: e.seq, hlc: e.hlc, deps: header.deps, sealed });
        }
        b.heads = last_sig.into_iter().collect();
        *cursor = at;
        Ok(b)
    }
}
