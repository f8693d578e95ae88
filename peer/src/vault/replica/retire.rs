//! Retirement: the end of a vault that was rotated. Its replica keeps everything it held
//! (readable, exportable) but takes no entry more, local or remote, and a device that
//! rotated away from it answers the old vault's sessions with the retirement record.

use zeroize::Zeroizing;

use super::{Replica, ReplicaError};
use crate::identity::{DeviceKeys, VaultKeys};
use crate::identity::{Membership, MembershipBody, MembershipRecord, Retirement, SymmetricKey, VaultSecret};
use crate::ids::{DeviceId, VaultId};
use crate::vault::LogStore;

/// What a device needs to tell a retired vault's devices: its Noise keys there (the old PSK
/// and its old static key), its identity in the old rendezvous room (enrolment, signing
/// key, signal key) and the records that say the vault was retired. Nothing that reads or
/// writes the old vault's contents.
#[derive(Clone)]
pub struct Predecessor {
    /// The retired vault.
    pub vault_id: VaultId,
    /// Its Noise PSK.
    pub session_psk: SymmetricKey,
    /// Its LAN discovery key (the device still advertises under it).
    pub lan_tag: SymmetricKey,
    /// This device's x25519 secret there.
    pub dh: Zeroizing<[u8; 32]>,
    /// Its retirement records (root-signed).
    pub notice: Vec<MembershipRecord>,
    /// Its key for signals sealed to the vault.
    pub signal: SymmetricKey,
    /// Its root public key (the rendezvous room's key).
    pub root: ed25519_dalek::VerifyingKey,
    /// This device's enrolment there, if held.
    pub enrollment: Option<MembershipRecord>,
    /// This device's signing key there.
    pub sign: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for Predecessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Predecessor").field("vault_id", &self.vault_id).finish_non_exhaustive()
    }
}

impl Predecessor {
    /// The predecessor that device `device` of the vault of `secret` answers as, from the
    /// vault's `membership` (its retirement records and this device's enrolment).
    pub fn derive(secret: &VaultSecret, device: DeviceId, membership: &Membership) -> Self {
        let keys = VaultKeys::derive(secret);
        let dev = DeviceKeys::derive(secret, device);
        let enrollment = membership
            .records()
            .iter()
            .find(|r| matches!(&r.body, MembershipBody::Enroll(e) if e.device_id == device))
            .cloned();
        Self {
            vault_id: keys.vault_id,
            session_psk: keys.session_psk.clone(),
            lan_tag: keys.lan_tag.clone(),
            dh: Zeroizing::new(dev.dh.to_bytes()),
            notice: membership.retirement_records(),
            signal: keys.signal.clone(),
            root: keys.root_public(),
            enrollment,
            sign: dev.sign.clone(),
        }
    }
}

/// The line a user sees on a device of a retired vault.
pub fn explain(r: &Retirement) -> String {
    let when = crate::utc::format(r.at_ms);
    format!(
        "this vault was rotated on {when} by device {}: pair this device again from one of the vault's devices (`hearth invite` there, `hearth join` here)",
        r.by
    )
}

impl<S: LogStore> Replica<S> {
    /// Retires the vault (this device rotated it): signs and stores the record; from then on
    /// the replica takes no entries. Idempotent for this device: a second call returns the
    /// record stored by the first.
    pub fn retire(&mut self, now_ms: u64) -> Result<MembershipRecord, ReplicaError> {
        let me = self.device.device_id;
        if let Some(rec) = self
            .membership
            .retirement_records()
            .into_iter()
            .find(|r| matches!(&r.body, MembershipBody::Retire(x) if x.by == me))
        {
            return Ok(rec);
        }
        let carried = self.vv.0.iter().map(|(d, s)| (*d, *s)).collect();
        let rec = MembershipRecord::sign(
            &self.keys.root,
            MembershipBody::Retire(Retirement { vault_id: self.keys.vault_id, at_ms: now_ms, by: me, carried }),
        );
        self.add_membership(vec![rec.clone()])?;
        Ok(rec)
    }

    /// The vault's retirement, if it was rotated.
    pub fn retirement(&self) -> Option<&Retirement> {
        self.membership.retirement()
    }

    /// Entries held here that the rotation did not carry into the new vault (written, or
    /// received, after the rotating device's last sync): export them to keep them.
    pub fn uncarried(&self) -> u64 {
        self.retirement().map_or(0, |r| r.uncarried(self.vv.0.iter().map(|(d, s)| (*d, *s))))
    }

    pub(super) fn check_not_retired(&self) -> Result<(), ReplicaError> {
        match self.retirement() {
            Some(r) => Err(ReplicaError::Retired(Box::new(r.clone()))),
            None => Ok(()),
        }
    }

    /// Vaults this device rotated away from, whose sessions it answers with the retirement.
    pub fn set_predecessors(&mut self, predecessors: Vec<Predecessor>) {
        self.predecessors = predecessors;
    }

    /// See [`Replica::set_predecessors`].
    pub fn predecessors(&self) -> &[Predecessor] {
        &self.predecessors
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::{MemStore, Op, VersionVector};

    fn put(v: &str) -> Op {
        Op::Put {
            item: crate::ids::ItemId([1; 16]),
            name: Some("x".into()),
            fields: vec![("k".into(), Some(v.into()))],
        }
    }

    #[test]
    fn a_retired_replica_takes_no_entry_and_counts_what_was_not_carried() {
        let secret = VaultSecret::from_bytes([9; 32]);
        let (a, b) = (DeviceId([1; 16]), DeviceId([2; 16]));
        let mut ra = Replica::open(&secret, a, MemStore::default()).unwrap();
        ra.enroll_self(1).unwrap();
        let mut rb = Replica::open(&secret, b, MemStore::default()).unwrap();
        rb.enroll_self(1).unwrap();
        ra.add_membership(rb.membership().records().to_vec()).unwrap();
        ra.write(&put("1"), 10).unwrap();
        ra.write(&put("2"), 11).unwrap();
        // b wrote one entry the rotating device never saw.
        rb.write(&put("3"), 12).unwrap();
        let late = rb.batch_for(&VersionVector::default(), &mut 0, 1 << 20).unwrap();
        let rec = ra.retire(1_800_000_000_000).unwrap();
        assert_eq!(ra.retire(1_900_000_000_000).unwrap(), rec, "retiring twice keeps the first record");
        assert_eq!(ra.membership().retirement_records().len(), 1);
        assert!(matches!(ra.write(&put("4"), 20), Err(ReplicaError::Retired(_))));
        assert!(matches!(ra.receive(&late), Err(ReplicaError::Retired(_))));
        assert_eq!(ra.len(), 2, "what was held stays");
        assert_eq!(ra.uncarried(), 0);
        let shown = ra.write(&put("4"), 20).unwrap_err().to_string();
        assert!(shown.contains("rotated on 2027-01-15 08:00:00 UTC by device 0101"), "{shown}");
        // The other device learns it with its uncarried entry counted.
        rb.add_membership(vec![rec]).unwrap();
        assert_eq!(rb.retirement().map(|r| r.by), Some(a));
        assert_eq!(rb.uncarried(), 1);
        assert!(matches!(rb.write(&put("5"), 30), Err(ReplicaError::Retired(_))));
    }

    #[test]
    fn a_predecessor_prints_its_vault_and_no_key() {
        let secret = VaultSecret::from_bytes([9; 32]);
        let p =
            Predecessor::derive(&secret, DeviceId([1; 16]), &Membership::new(VaultKeys::derive(&secret).root_public()));
        let shown = format!("{p:?}");
        assert!(shown.starts_with("Predecessor { vault_id: VaultId(") && shown.ends_with(".. }"), "{shown}");
        assert!(!shown.contains(&format!("{:?}", p.dh.as_slice())));
    }
}
