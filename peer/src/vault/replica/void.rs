//! Voiding: what a revocation does to entries of the revoked device beyond its cut-off, and
//! the list of what they had said.

use super::*;

/// What a voided entry had said, for the user to see and re-apply (its `author` is the
/// revoked or forked device).
pub type VoidValue = super::history::Change;

impl<S: LogStore> Replica<S> {
    /// True when `e` is the last kept entry of a revoked author and the revocation's
    /// root-signed hash vouches for it.
    pub(super) fn vouched(&self, e: &Held) -> bool {
        self.membership.revocation(e.author).is_some_and(|r| r.last_seq == e.seq && r.last_hash == e.hash)
    }

    /// True when `held` covers `deps`, each revoked author's component capped at its
    /// cut-off: a dependency on a void entry counts as satisfied. (Checked per received
    /// entry, so it allocates nothing.)
    pub(super) fn deps_held(&self, deps: &VersionVector, held: &VersionVector) -> bool {
        deps.0.iter().all(|(d, s)| {
            let need = self.membership.revocation(*d).map_or(*s, |r| (*s).min(r.last_seq));
            held.get(*d) >= need
        })
    }

    /// Voids every held entry beyond its author's revocation cut-off; returns how many.
    pub(super) fn void_revoked(&mut self) -> Result<usize, ReplicaError> {
        let cuts: Vec<(DeviceId, u64)> = self
            .membership
            .revocations()
            .filter(|r| self.vv.get(r.device_id) > r.last_seq)
            .map(|r| (r.device_id, r.last_seq))
            .collect();
        let mut n = 0;
        for (author, after) in cuts {
            // The kept prefix stays verifiable on reopen: its last entry is the one the
            // record's root-signed hash names (a cut naming another entry was settled one
            // lower by `settle_mismatched_cuts` before this runs).
            self.store.void(author, after)?;
            for seq in after + 1..=self.vv.get(author) {
                if let Some(i) = self.index.remove(&(author, seq)) {
                    self.dead[i] = true;
                    n += 1;
                }
            }
            self.vv.set(author, after);
        }
        if n > 0 {
            self.n_dead += n;
            self.rebuild_state()?;
        }
        Ok(n)
    }

    /// Recomputes the merged state from the live entries (after a void: the store holds
    /// exactly those).
    pub(super) fn rebuild_state(&mut self) -> Result<(), ReplicaError> {
        let mut state = VaultState::default();
        for se in self.store.load_entries()? {
            let h = &se.entry.header;
            state.apply(h.author, h.seq, h.hlc, &h.deps, &se.entry.unseal(&self.keys.content)?);
        }
        self.state = state;
        self.view.all_changed();
        Ok(())
    }

    /// What every voided entry had said (unsealed on demand; the store keeps them sealed).
    pub fn voided_values(&self) -> Result<Vec<VoidValue>, ReplicaError> {
        let mut out = Vec::new();
        for se in self.store.load_voided()? {
            out.push(VoidValue::new(&se.entry.header, se.entry.unseal(&self.keys.content)?));
        }
        Ok(out)
    }
}
