//! Membership records: enrolments, revocations, fork settlements and a vault's retirement,
//! signed by the vault root key.
//!
//! They travel in the clear inside the (encrypted) sync session and carry no names, only ids
//! and public keys, so they can be verified before anything else is unsealed, and the
//! rendezvous server can check them without learning anything about the vault's contents.

use std::collections::{BTreeMap, BTreeSet};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::ids::{DeviceId, VaultId};

/// Domain separation for membership signatures.
const DOMAIN: &[u8] = b"hearth/v1/membership\0";

/// A device admitted to the vault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    /// The vault.
    pub vault_id: VaultId,
    /// The device.
    pub device_id: DeviceId,
    /// Its ed25519 public key (signs log heads).
    pub sign_pk: [u8; 32],
    /// Its x25519 public key (Noise static, sealed envelopes).
    pub dh_pk: [u8; 32],
    /// When it was enrolled (ms since the Unix epoch; informational).
    pub at_ms: u64,
}

/// A device removed from the vault. Entries it wrote up to `last_seq` stay valid (they were
/// already accepted by the revoking device); any later entry is void everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The vault.
    pub vault_id: VaultId,
    /// The revoked device.
    pub device_id: DeviceId,
    /// Highest seq of the device's log that remains valid.
    pub last_seq: u64,
    /// Hash of the device's entry at `last_seq` as the revoker holds it (all zero for 0):
    /// the root key vouches for the kept prefix, so it verifies even where the device's own
    /// head signature covered only entries that are now void.
    pub last_hash: [u8; 32],
    /// When (ms since the Unix epoch; informational).
    pub at_ms: u64,
}

/// The vault was rotated: its devices moved to a new vault with a new secret (one they are
/// paired into), and this one takes no more entries anywhere. A device that learns it stops
/// syncing the vault and tells its user to pair again.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Retirement {
    /// The retired vault.
    pub vault_id: VaultId,
    /// When (ms since the Unix epoch; shown to the user).
    pub at_ms: u64,
    /// The device that rotated it.
    pub by: DeviceId,
    /// What the new vault carried: the highest seq per author the rotating device held, so a
    /// device can tell which of its entries did not make it across.
    pub carried: Vec<(DeviceId, u64)>,
}

impl Retirement {
    /// Entries beyond what was carried, among `held` (seq per author).
    pub fn uncarried(&self, held: impl IntoIterator<Item = (DeviceId, u64)>) -> u64 {
        held.into_iter()
            .map(|(d, seq)| {
                let carried = self.carried.iter().find(|(c, _)| *c == d).map_or(0, |(_, s)| *s);
                seq.saturating_sub(carried)
            })
            .sum()
    }
}

/// What a record says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipBody {
    /// Admit a device.
    Enroll(Enrollment),
    /// Remove a device.
    Revoke(Revocation),
    /// Settle a fork: the device signed two different logs (a home restored from an older
    /// copy). Its log is kept up to `last_seq`, the last entry both branches share
    /// (`last_hash`); everything beyond is void on every device, like a revocation's. Unlike
    /// a revocation, the device may come back: it re-enrols under a new device id.
    Fork(Revocation),
    /// Retire the vault (a rotation). Appended last: records of the variants above encode as
    /// they did (peers that predate it are refused by the sync protocol version first).
    Retire(Retirement),
}

impl MembershipBody {
    /// The cut-off a revocation or fork settlement sets (`None` for an enrolment).
    pub fn cut(&self) -> Option<&Revocation> {
        match self {
            MembershipBody::Enroll(_) | MembershipBody::Retire(_) => None,
            MembershipBody::Revoke(r) | MembershipBody::Fork(r) => Some(r),
        }
    }

    fn vault_id(&self) -> VaultId {
        match self {
            MembershipBody::Enroll(e) => e.vault_id,
            MembershipBody::Revoke(r) | MembershipBody::Fork(r) => r.vault_id,
            MembershipBody::Retire(r) => r.vault_id,
        }
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut v = DOMAIN.to_vec();
        // postcard of a plain struct cannot fail; an empty encoding would fail verification.
        v.extend(postcard::to_stdvec(self).unwrap_or_default());
        v
    }
}

/// A membership statement and the vault root's signature over it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipRecord {
    /// The statement.
    pub body: MembershipBody,
    /// Root signature over the domain tag and the postcard encoding of `body`.
    pub sig: Signature,
}

/// Why a membership record or device was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// Signature does not verify under the vault root key.
    #[error("membership record not signed by this vault's root key")]
    BadSignature,
    /// Record is for another vault.
    #[error("membership record is for vault {0}, not this one")]
    WrongVault(VaultId),
    /// Device not enrolled.
    #[error("device {0} is not enrolled in this vault")]
    NotEnrolled(DeviceId),
    /// Device revoked.
    #[error("device {0} has been revoked")]
    Revoked(DeviceId),
    /// Two enrolments with different keys for one device id.
    #[error("conflicting enrolment for device {0}")]
    Conflict(DeviceId),
}

impl MembershipRecord {
    /// Signs `body` with the vault root key.
    pub fn sign(root: &SigningKey, body: MembershipBody) -> Self {
        let sig = root.sign(&body.signed_bytes());
        Self { body, sig }
    }

    /// Checks the signature and the vault id.
    pub fn verify(&self, root: &VerifyingKey, vault: VaultId) -> Result<(), MembershipError> {
        if self.body.vault_id() != vault {
            return Err(MembershipError::WrongVault(self.body.vault_id()));
        }
        root.verify(&self.body.signed_bytes(), &self.sig).map_err(|_| MembershipError::BadSignature)
    }
}

/// The verified membership of one vault: who may author entries, with which keys.
#[derive(Debug, Clone)]
pub struct Membership {
    root: VerifyingKey,
    vault: VaultId,
    enrolled: BTreeMap<DeviceId, Enrollment>,
    /// The cut-off in force per device: the lowest of its revocations and fork settlements.
    revoked: BTreeMap<DeviceId, Revocation>,
    /// Devices revoked by a user (not only settled after a fork).
    by_user: BTreeSet<DeviceId>,
    /// Devices with a fork settlement.
    forked: BTreeSet<DeviceId>,
    /// Every retirement (two devices may rotate at once); the earliest is the one shown.
    retirements: BTreeSet<Retirement>,
    records: Vec<MembershipRecord>,
}

impl Membership {
    /// An empty membership for the vault with root key `root`.
    pub fn new(root: VerifyingKey) -> Self {
        let vault = crate::vault_id_of(&root);
        Self {
            root,
            vault,
            enrolled: BTreeMap::new(),
            revoked: BTreeMap::new(),
            by_user: BTreeSet::new(),
            forked: BTreeSet::new(),
            retirements: BTreeSet::new(),
            records: Vec::new(),
        }
    }

    /// Verifies and adds `rec`; returns whether it was new.
    pub fn insert(&mut self, rec: MembershipRecord) -> Result<bool, MembershipError> {
        rec.verify(&self.root, self.vault)?;
        match &rec.body {
            MembershipBody::Enroll(e) => match self.enrolled.get(&e.device_id) {
                Some(old) if old.sign_pk == e.sign_pk && old.dh_pk == e.dh_pk => return Ok(false),
                Some(_) => return Err(MembershipError::Conflict(e.device_id)),
                None => {
                    self.enrolled.insert(e.device_id, e.clone());
                }
            },
            MembershipBody::Retire(r) => {
                if !self.retirements.insert(r.clone()) {
                    return Ok(false);
                }
            }
            MembershipBody::Revoke(r) | MembershipBody::Fork(r) => {
                // Two cut-offs for one device (revocations, fork settlements or both): the
                // stricter (lower) one wins, so the result does not depend on the order they
                // arrive in. (Equal cut-offs with different hashes: the lower hash.)
                // A weaker record still counts for what it says of the device: a user
                // revocation must stop the device from re-enrolling even when a fork
                // settlement had cut it lower.
                let user = matches!(rec.body, MembershipBody::Revoke(_));
                let set = if user { &mut self.by_user } else { &mut self.forked };
                let new_kind = set.insert(r.device_id);
                match self.revoked.get(&r.device_id) {
                    Some(old) if (old.last_seq, old.last_hash) <= (r.last_seq, r.last_hash) && !new_kind => {
                        return Ok(false)
                    }
                    Some(old) if (old.last_seq, old.last_hash) <= (r.last_seq, r.last_hash) => {}
                    _ => {
                        self.revoked.insert(r.device_id, r.clone());
                    }
                }
            }
        }
        self.records.push(rec);
        Ok(true)
    }

    /// The enrolment of a device that may still author entry `seq`.
    pub fn author(&self, device: DeviceId, seq: u64) -> Result<&Enrollment, MembershipError> {
        let e = self.enrolled.get(&device).ok_or(MembershipError::NotEnrolled(device))?;
        match self.revoked.get(&device) {
            Some(r) if seq > r.last_seq => Err(MembershipError::Revoked(device)),
            _ => Ok(e),
        }
    }

    /// The active (enrolled, not revoked) device whose x25519 key is `dh_pk`.
    pub fn active_by_dh(&self, dh_pk: &[u8; 32]) -> Result<&Enrollment, MembershipError> {
        let e = self
            .enrolled
            .values()
            .find(|e| &e.dh_pk == dh_pk)
            .ok_or(MembershipError::NotEnrolled(DeviceId::default()))?;
        if self.revoked.contains_key(&e.device_id) {
            return Err(MembershipError::Revoked(e.device_id));
        }
        Ok(e)
    }

    /// The revocation in force for `device` (the lowest cut-off), if any.
    pub fn revocation(&self, device: DeviceId) -> Option<&Revocation> {
        self.revoked.get(&device)
    }

    /// Every revocation in force.
    pub fn revocations(&self) -> impl Iterator<Item = &Revocation> {
        self.revoked.values()
    }

    /// True when `device` has been revoked (or its fork settled): it authors nothing new.
    pub fn is_revoked(&self, device: DeviceId) -> bool {
        self.revoked.contains_key(&device)
    }

    /// True when a user revoked `device` (a fork settlement alone does not count).
    pub fn revoked_by_user(&self, device: DeviceId) -> bool {
        self.by_user.contains(&device)
    }

    /// True when `device`'s log forked and was settled.
    pub fn is_forked(&self, device: DeviceId) -> bool {
        self.forked.contains(&device)
    }

    /// True when `device` is out only because its fork was settled (no user revoked it): it
    /// may come back under a new device id, so it is told.
    pub fn may_reenrol(&self, device: DeviceId) -> bool {
        self.is_forked(device) && !self.revoked_by_user(device)
    }

    /// The vault's retirement, if it was rotated: the earliest (by time, then device) when
    /// two devices rotated it, so every device shows the same one.
    pub fn retirement(&self) -> Option<&Retirement> {
        self.retirements.first()
    }

    /// The retirement records (what a device that must learn of the rotation is sent).
    pub fn retirement_records(&self) -> Vec<MembershipRecord> {
        self.records.iter().filter(|r| matches!(r.body, MembershipBody::Retire(_))).cloned().collect()
    }

    /// Every verified record (to send to peers).
    pub fn records(&self) -> &[MembershipRecord] {
        &self.records
    }

    /// Enrolled devices, revoked ones included.
    pub fn devices(&self) -> impl Iterator<Item = (&Enrollment, Option<&Revocation>)> {
        self.enrolled.values().map(|e| (e, self.revoked.get(&e.device_id)))
    }

    /// The vault id these records belong to.
    pub fn vault_id(&self) -> VaultId {
        self.vault
    }

    /// The root public key.
    pub fn root(&self) -> &VerifyingKey {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(b: u8) -> SigningKey {
        SigningKey::from_bytes(&[b; 32])
    }

    fn enroll(root: &SigningKey, d: u8, key: u8) -> MembershipRecord {
        MembershipRecord::sign(
            root,
            MembershipBody::Enroll(Enrollment {
                vault_id: crate::vault_id_of(&root.verifying_key()),
                device_id: DeviceId([d; 16]),
                sign_pk: [key; 32],
                dh_pk: [key.wrapping_add(1); 32],
                at_ms: 1,
            }),
        )
    }

    fn revoke(root: &SigningKey, d: u8, last_seq: u64, last_hash: [u8; 32]) -> MembershipRecord {
        let vault_id = crate::vault_id_of(&root.verifying_key());
        MembershipRecord::sign(
            root,
            MembershipBody::Revoke(Revocation {
                vault_id,
                device_id: DeviceId([d; 16]),
                last_seq,
                last_hash,
                at_ms: 2,
            }),
        )
    }

    #[test]
    fn the_vault_id_is_the_truncated_hash_of_the_root_key() {
        // Known answer (PROTOCOL.md §1): the root public key of the 0x42 test secret.
        let mut pk = [0u8; 32];
        hex::decode_to_slice("2ddc69c7fe76284b3e7bd2dece83e4a955fad2604c541721c284c66aad0ee20b", &mut pk).unwrap();
        let id = crate::vault_id_of(&VerifyingKey::from_bytes(&pk).unwrap());
        assert_eq!(id.to_hex(), "fdedcc8fef1f1cc6e2ac94f7410dadd6");
        let id = crate::vault_id_of(&root(0x42).verifying_key());
        let m = Membership::new(root(0x42).verifying_key());
        assert_eq!(m.vault_id(), id);
        assert_eq!(m.root(), &root(0x42).verifying_key());
    }

    #[test]
    fn records_verify_only_under_their_root_and_vault() {
        let (r, other) = (root(1), root(2));
        let rec = enroll(&r, 1, 10);
        let vault = crate::vault_id_of(&r.verifying_key());
        assert_eq!(rec.verify(&r.verifying_key(), vault), Ok(()));
        assert_eq!(rec.verify(&other.verifying_key(), vault), Err(MembershipError::BadSignature));
        let wrong = crate::vault_id_of(&other.verifying_key());
        assert_eq!(rec.verify(&r.verifying_key(), wrong), Err(MembershipError::WrongVault(vault)));
        // Any change of the body breaks the signature (it covers the domain tag and body).
        let mut tampered = rec.clone();
        if let MembershipBody::Enroll(e) = &mut tampered.body {
            e.at_ms += 1;
        }
        assert_eq!(tampered.verify(&r.verifying_key(), vault), Err(MembershipError::BadSignature));
        // A signature over the body without the domain tag is not accepted.
        let bare = MembershipRecord { body: rec.body.clone(), sig: r.sign(&postcard::to_stdvec(&rec.body).unwrap()) };
        assert_eq!(bare.verify(&r.verifying_key(), vault), Err(MembershipError::BadSignature));
        let mut m = Membership::new(r.verifying_key());
        assert_eq!(m.insert(enroll(&other, 1, 10)), Err(MembershipError::WrongVault(wrong)));
        assert!(m.records().is_empty());
    }

    #[test]
    fn enrolments_are_idempotent_and_conflicts_refused() {
        let r = root(1);
        let mut m = Membership::new(r.verifying_key());
        assert_eq!(m.insert(enroll(&r, 1, 10)), Ok(true));
        assert_eq!(m.insert(enroll(&r, 1, 10)), Ok(false));
        assert_eq!(m.records().len(), 1);
        // Same device id, other keys (sign key differs, or only the DH key differs).
        assert_eq!(m.insert(enroll(&r, 1, 11)), Err(MembershipError::Conflict(DeviceId([1; 16]))));
        let mut half = enroll(&r, 1, 10);
        if let MembershipBody::Enroll(e) = &mut half.body {
            e.dh_pk = [99; 32];
        }
        let half = MembershipRecord::sign(&r, half.body);
        assert_eq!(m.insert(half), Err(MembershipError::Conflict(DeviceId([1; 16]))));
        let mut half = enroll(&r, 1, 10);
        if let MembershipBody::Enroll(e) = &mut half.body {
            e.sign_pk = [99; 32];
        }
        let half = MembershipRecord::sign(&r, half.body);
        assert_eq!(m.insert(half), Err(MembershipError::Conflict(DeviceId([1; 16]))));
        assert_eq!(m.devices().count(), 1);
    }

    #[test]
    fn authorship_ends_at_the_lowest_cut_off_whatever_the_order() {
        let r = root(1);
        let d = DeviceId([1; 16]);
        for order in [[5u64, 3], [3, 5]] {
            let mut m = Membership::new(r.verifying_key());
            m.insert(enroll(&r, 1, 10)).unwrap();
            assert_eq!(m.author(d, 1_000).map(|e| e.sign_pk), Ok([10; 32]));
            assert!(!m.is_revoked(d));
            assert!(m.revocation(d).is_none());
            let mut added = 0;
            for cut in order {
                added += usize::from(m.insert(revoke(&r, 1, cut, [cut as u8; 32])).unwrap());
            }
            assert_eq!(added, if order[0] == 5 { 2 } else { 1 }, "a weaker revocation is not new");
            assert!(m.is_revoked(d));
            assert!(m.revoked_by_user(d) && !m.is_forked(d), "a revocation is not a fork settlement");
            assert_eq!(m.revocation(d).map(|r| r.last_seq), Some(3));
            assert_eq!(m.revocations().count(), 1);
            assert!(m.author(d, 3).is_ok(), "the cut-off itself stays valid");
            assert_eq!(m.author(d, 4).map(|_| ()), Err(MembershipError::Revoked(d)));
            assert_eq!(m.author(d, 2).map(|e| e.sign_pk), Ok([10; 32]));
            assert_eq!(m.active_by_dh(&[11; 32]).map(|_| ()), Err(MembershipError::Revoked(d)));
            let (e, rev) = m.devices().next().unwrap();
            assert_eq!((e.device_id, rev.map(|r| r.last_seq)), (d, Some(3)));
        }
        // Equal cut-offs: the lower hash wins, in either order.
        for order in [[[9u8; 32], [4; 32]], [[4; 32], [9; 32]]] {
            let mut m = Membership::new(r.verifying_key());
            for h in order {
                m.insert(revoke(&r, 1, 3, h)).unwrap();
            }
            assert_eq!(m.revocation(d).map(|r| r.last_hash), Some([4; 32]));
        }
    }

    #[test]
    fn fork_settlements_cut_like_revocations_but_are_told_apart() {
        let r = root(1);
        let d = DeviceId([1; 16]);
        let vault_id = crate::vault_id_of(&r.verifying_key());
        let fork = |last_seq: u64| {
            MembershipRecord::sign(
                &r,
                MembershipBody::Fork(Revocation { vault_id, device_id: d, last_seq, last_hash: [7; 32], at_ms: 0 }),
            )
        };
        let mut m = Membership::new(r.verifying_key());
        m.insert(enroll(&r, 1, 10)).unwrap();
        assert_eq!(m.insert(fork(5)), Ok(true));
        assert_eq!(m.insert(fork(5)), Ok(false), "the same settlement twice is one");
        assert!(m.is_revoked(d) && m.is_forked(d) && !m.revoked_by_user(d) && m.may_reenrol(d));
        assert_eq!(fork(5).body.cut().map(|c| c.last_seq), Some(5));
        assert!(enroll(&r, 1, 10).body.cut().is_none());
        assert_eq!(m.author(d, 6).map(|_| ()), Err(MembershipError::Revoked(d)));
        assert_eq!(m.insert(fork(3)), Ok(true), "a lower settlement is news");
        assert_eq!(m.revocation(d).map(|r| r.last_seq), Some(3));
        // A user revocation with a weaker cut still says the user revoked it, once.
        assert_eq!(m.insert(revoke(&r, 1, 9, [1; 32])), Ok(true));
        assert_eq!(m.insert(revoke(&r, 1, 8, [1; 32])), Ok(false));
        assert!(m.revoked_by_user(d) && !m.may_reenrol(d), "a user revocation is final");
        assert_eq!(m.revocation(d).map(|r| (r.last_seq, r.last_hash)), Some((3, [7; 32])));
        // A fork and a revocation of one cut-off sign different bytes.
        let as_revoke = MembershipRecord::sign(
            &r,
            MembershipBody::Revoke(Revocation { vault_id, device_id: d, last_seq: 5, last_hash: [7; 32], at_ms: 0 }),
        );
        assert_ne!(as_revoke.sig, fork(5).sig);
        assert_eq!(m.records().len(), 4);
    }

    fn retire(root: &SigningKey, by: u8, at_ms: u64) -> MembershipRecord {
        let vault_id = crate::vault_id_of(&root.verifying_key());
        let carried = vec![(DeviceId([1; 16]), 4), (DeviceId([2; 16]), 9)];
        MembershipRecord::sign(
            root,
            MembershipBody::Retire(Retirement { vault_id, at_ms, by: DeviceId([by; 16]), carried }),
        )
    }

    #[test]
    fn the_earliest_retirement_is_shown_whatever_the_order_and_each_is_kept() {
        let r = root(1);
        for order in [[(2u8, 50u64), (1, 70), (3, 50)], [(1, 70), (3, 50), (2, 50)]] {
            let mut m = Membership::new(r.verifying_key());
            m.insert(enroll(&r, 1, 10)).unwrap();
            assert!(m.retirement().is_none() && m.retirement_records().is_empty());
            for (by, at) in order {
                assert_eq!(m.insert(retire(&r, by, at)), Ok(true));
                assert_eq!(m.insert(retire(&r, by, at)), Ok(false), "the same retirement twice is one");
            }
            let shown = m.retirement().unwrap();
            assert_eq!((shown.by, shown.at_ms), (DeviceId([2; 16]), 50), "earliest, then the lower device id");
            assert_eq!(m.retirement_records().len(), 3);
            assert_eq!(m.records().len(), 4);
            // A retirement cuts no device: entries already held stay authored.
            assert!(m.author(DeviceId([1; 16]), 1_000).is_ok());
            assert!(retire(&r, 1, 1).body.cut().is_none());
        }
        // Signed like every record: another root's retirement is refused.
        let mut m = Membership::new(r.verifying_key());
        let other = retire(&root(2), 1, 1);
        assert!(matches!(m.insert(other), Err(MembershipError::WrongVault(_))));
        let forged = MembershipRecord { body: retire(&r, 1, 1).body, sig: retire(&root(2), 1, 1).sig };
        assert_eq!(m.insert(forged), Err(MembershipError::BadSignature));
        assert!(m.retirement().is_none());
    }

    #[test]
    fn uncarried_counts_the_entries_past_what_the_rotation_carried() {
        let r = retire(&root(1), 1, 1);
        let MembershipBody::Retire(ret) = &r.body else { unreachable!() };
        assert_eq!(ret.uncarried([(DeviceId([1; 16]), 4), (DeviceId([2; 16]), 9)]), 0);
        assert_eq!(ret.uncarried([(DeviceId([1; 16]), 6), (DeviceId([2; 16]), 8), (DeviceId([3; 16]), 2)]), 4);
        assert_eq!(ret.uncarried([]), 0);
    }

    #[test]
    fn unknown_and_active_devices_are_told_apart() {
        let r = root(1);
        let mut m = Membership::new(r.verifying_key());
        m.insert(enroll(&r, 1, 10)).unwrap();
        m.insert(enroll(&r, 2, 20)).unwrap();
        assert_eq!(m.active_by_dh(&[11; 32]).map(|e| e.device_id), Ok(DeviceId([1; 16])));
        assert_eq!(m.active_by_dh(&[21; 32]).map(|e| e.device_id), Ok(DeviceId([2; 16])));
        assert!(matches!(m.active_by_dh(&[10; 32]), Err(MembershipError::NotEnrolled(_))));
        assert_eq!(m.author(DeviceId([3; 16]), 1).map(|_| ()), Err(MembershipError::NotEnrolled(DeviceId([3; 16]))));
        assert_eq!(m.records().len(), 2);
        assert_eq!(m.devices().count(), 2);
    }

    #[test]
    fn ids_round_trip_through_hex() {
        let d = DeviceId([0xAB; 16]);
        assert_eq!(d.to_hex(), "ab".repeat(16));
        assert_eq!(DeviceId::from_hex(&d.to_hex()), Some(d));
        assert_eq!(DeviceId::from_hex(&format!(" {} ", d.to_hex())), Some(d));
        assert_eq!(DeviceId::from_hex("abc"), None);
        assert_eq!(format!("{d}"), d.to_hex());
        assert_eq!(format!("{d:?}"), "DeviceId(abababab)");
        assert_ne!(DeviceId::random(), DeviceId::random());
    }
}
