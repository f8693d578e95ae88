//! Membership records: enrolments and revocations signed by the vault root key.
//!
//! They travel in the clear inside the (encrypted) sync session and carry no names, only ids
//! and public keys, so they can be verified before anything else is unsealed, and the
//! rendezvous server can check them without learning anything about the vault's contents.

use std::collections::BTreeMap;

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

/// What a record says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipBody {
    /// Admit a device.
    Enroll(Enrollment),
    /// Remove a device.
    Revoke(Revocation),
}

impl MembershipBody {
    fn vault_id(&self) -> VaultId {
        match self {
            MembershipBody::Enroll(e) => e.vault_id,
            MembershipBody::Revoke(r) => r.vault_id,
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
    revoked: BTreeMap<DeviceId, Revocation>,
    records: Vec<MembershipRecord>,
}

impl Membership {
    /// An empty membership for the vault with root key `root`.
    pub fn new(root: VerifyingKey) -> Self {
        let vault = crate::vault_id_of(&root);
        Self { root, vault, enrolled: BTreeMap::new(), revoked: BTreeMap::new(), records: Vec::new() }
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
            MembershipBody::Revoke(r) => {
                // Two revocations of one device: the stricter (lower) cut-off wins, so the
                // result does not depend on the order they arrive in.
                // (Equal cut-offs with different hashes: the lower hash, for the same reason.)
                match self.revoked.get(&r.device_id) {
                    Some(old) if (old.last_seq, old.last_hash) <= (r.last_seq, r.last_hash) => return Ok(false),
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

    /// True when `device` has been revoked.
    pub fn is_revoked(&self, device: DeviceId) -> bool {
        self.revoked.contains_key(&device)
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
