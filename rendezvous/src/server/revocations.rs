//! Revoked devices per vault, bounded per vault and in total, forgotten with the room.
//!
//! The server keeps no disk state: what it forgets (a restart, a room idle past
//! [`Revocations::new`]'s `idle`) it re-learns from the vault's own devices, which present the
//! root-signed revocations they hold each time they join. Refusing a revoked device here is
//! defence in depth: devices already refuse it end to end (its sessions fail membership).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use hearth_proto::ids::{DeviceId, VaultId};

/// Most revoked devices kept per vault (a family or team revokes a handful; a room holds 64).
pub const REVOKED_PER_VAULT: usize = 256;
/// Most revocations kept in all (16 bytes each plus overhead: a few MiB at worst).
pub const REVOKED_TOTAL: usize = 1 << 18;
/// How long a vault's revocations outlive its last member here.
pub const REVOKED_IDLE: Duration = Duration::from_secs(600);

/// Why a revocation was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RevokeRefusal {
    /// The vault has as many revoked devices recorded as one vault may.
    #[error("this vault has the most revocations the server keeps")]
    VaultFull,
    /// The server holds as many revocations as it may.
    #[error("the server holds the most revocations it keeps")]
    ServerFull,
}

struct Vault {
    devices: HashSet<DeviceId>,
    /// Last time the vault's room had a member here (or a revocation arrived).
    active: Instant,
}

/// The revocations this server knows.
pub struct Revocations {
    vaults: HashMap<VaultId, Vault>,
    total: usize,
    per_vault: usize,
    max_total: usize,
    idle: Duration,
}

impl Revocations {
    /// At most `per_vault` per vault and `max_total` in all; a vault's are forgotten once its
    /// room has had no member for `idle`.
    pub fn new(per_vault: usize, max_total: usize, idle: Duration) -> Self {
        Self { vaults: HashMap::new(), total: 0, per_vault, max_total, idle }
    }

    /// Records `device` of `vault` as revoked; true if it was not yet.
    pub fn add(&mut self, vault: VaultId, device: DeviceId, now: Instant) -> Result<bool, RevokeRefusal> {
        if self.contains(vault, device) {
            return Ok(false);
        }
        let len = self.vaults.get(&vault).map_or(0, |v| v.devices.len());
        if len >= self.per_vault {
            return Err(RevokeRefusal::VaultFull);
        }
        if self.total >= self.max_total {
            return Err(RevokeRefusal::ServerFull);
        }
        let v = self.vaults.entry(vault).or_insert_with(|| Vault { devices: HashSet::new(), active: now });
        v.devices.insert(device);
        v.active = now;
        self.total += 1;
        Ok(true)
    }

    /// True if `device` is revoked from `vault`.
    pub fn contains(&self, vault: VaultId, device: DeviceId) -> bool {
        self.vaults.get(&vault).is_some_and(|v| v.devices.contains(&device))
    }

    /// Forgets the revocations of vaults whose room has been empty for `idle`; `occupied`
    /// says which rooms have members now.
    pub fn sweep(&mut self, now: Instant, occupied: impl Fn(VaultId) -> bool) {
        let idle = self.idle;
        let mut freed = 0;
        self.vaults.retain(|id, v| {
            if occupied(*id) {
                v.active = now;
            }
            let keep = now.saturating_duration_since(v.active) < idle;
            if !keep {
                freed += v.devices.len();
            }
            keep
        });
        self.total -= freed;
    }

    /// Every revocation held (to write back to a Redis that lost them).
    pub fn all(&self) -> Vec<(VaultId, DeviceId)> {
        self.vaults.iter().flat_map(|(v, r)| r.devices.iter().map(move |d| (*v, *d))).collect()
    }

    /// Revocations held.
    pub fn len(&self) -> usize {
        self.total
    }

    /// None held.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: VaultId = VaultId([1; 16]);
    const W: VaultId = VaultId([2; 16]);

    #[test]
    fn bounded_per_vault_and_in_total_with_a_clear_refusal() {
        let t0 = Instant::now();
        let mut r = Revocations::new(2, 3, Duration::from_secs(60));
        assert_eq!(r.add(V, DeviceId([1; 16]), t0), Ok(true));
        assert_eq!(r.add(V, DeviceId([1; 16]), t0), Ok(false), "known already");
        assert_eq!(r.add(V, DeviceId([2; 16]), t0), Ok(true));
        assert_eq!(r.add(V, DeviceId([3; 16]), t0), Err(RevokeRefusal::VaultFull));
        assert_eq!(r.add(W, DeviceId([1; 16]), t0), Ok(true));
        assert_eq!(r.add(W, DeviceId([2; 16]), t0), Err(RevokeRefusal::ServerFull));
        assert!(r.contains(V, DeviceId([2; 16])) && !r.contains(W, DeviceId([2; 16])));
        assert_eq!(r.len(), 3);
        let mut all = r.all();
        all.sort();
        assert_eq!(all, vec![(V, DeviceId([1; 16])), (V, DeviceId([2; 16])), (W, DeviceId([1; 16]))]);
    }

    #[test]
    fn the_server_bounds_hold_full_vaults() {
        let t0 = Instant::now();
        let mut r = Revocations::new(REVOKED_PER_VAULT, REVOKED_TOTAL, REVOKED_IDLE);
        for i in 0..REVOKED_PER_VAULT as u16 {
            let mut d = [0u8; 16];
            d[..2].copy_from_slice(&i.to_be_bytes());
            assert_eq!(r.add(V, DeviceId(d), t0), Ok(true), "{i}");
        }
        assert_eq!(r.add(V, DeviceId([0xff; 16]), t0), Err(RevokeRefusal::VaultFull));
        // Room for many more vaults like it.
        for v in 0..1000u16 {
            let mut id = [0u8; 16];
            id[..2].copy_from_slice(&v.to_be_bytes());
            id[15] = 9;
            assert_eq!(r.add(VaultId(id), DeviceId([1; 16]), t0), Ok(true), "{v}");
        }
    }

    #[test]
    fn forgotten_once_the_room_stays_empty() {
        let t0 = Instant::now();
        let mut r = Revocations::new(8, 100, Duration::from_secs(60));
        r.add(V, DeviceId([1; 16]), t0).unwrap();
        r.add(W, DeviceId([1; 16]), t0).unwrap();
        // V's room has members: kept however long; W's is empty: forgotten after `idle`.
        assert!(!r.is_empty());
        r.sweep(t0 + Duration::from_secs(30), |v| v == V);
        r.sweep(t0 + Duration::from_secs(60), |v| v == V);
        assert!(!r.contains(W, DeviceId([1; 16])), "forgotten at `idle` exactly");
        r.sweep(t0 + Duration::from_secs(61), |v| v == V);
        assert!(r.contains(V, DeviceId([1; 16])));
        assert!(!r.contains(W, DeviceId([1; 16])));
        assert_eq!(r.len(), 1);
        r.sweep(t0 + Duration::from_secs(200), |_| false);
        assert!(r.is_empty());
    }
}
