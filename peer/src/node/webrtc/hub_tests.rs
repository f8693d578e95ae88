//! The hub's handling of signals from devices it does not know yet.

use super::*;
use crate::identity::{DeviceKeys, VaultKeys, VaultSecret};
use hearth_proto::membership::{Enrollment, MembershipBody, MembershipRecord};

struct Vault {
    keys: VaultKeys,
    secret: VaultSecret,
}

impl Vault {
    fn record(&self, i: u8) -> MembershipRecord {
        let d = DeviceKeys::derive(&self.secret, DeviceId([i; 16]));
        let e = Enrollment {
            vault_id: self.keys.vault_id,
            device_id: d.device_id,
            sign_pk: d.sign_public(),
            dh_pk: d.dh_public(),
            at_ms: 0,
        };
        MembershipRecord::sign(&self.keys.root, MembershipBody::Enroll(e))
    }

    /// The membership as a device that knows devices `ids` sees it.
    fn membership(&self, ids: &[u8]) -> Membership {
        let mut m = Membership::new(self.keys.root_public());
        for i in ids {
            m.insert(self.record(*i)).unwrap();
        }
        m
    }

    fn signaling(&self, i: u8) -> Signaling {
        let d = DeviceKeys::derive(&self.secret, DeviceId([i; 16]));
        Signaling::new(&self.keys, d.device_id, d.sign, d.dh)
    }
}

fn vault() -> Vault {
    let secret = VaultSecret::from_bytes([0x42; 32]);
    Vault { keys: VaultKeys::derive(&secret), secret }
}

fn hub(v: &Vault, i: u8) -> (Hub, mpsc::Receiver<(DeviceId, Vec<u8>)>) {
    let (to_node, _) = mpsc::channel(8);
    let ctx = Ctx { cert: conn::certificate().unwrap(), stun: None, ids: Default::default(), to_node };
    let (out, rx) = mpsc::channel(8);
    (Hub::new(v.signaling(i), ctx, out), rx)
}

/// A device that just joined knows the inviter from its grant and offers at once; the
/// inviter does not know it until its introduction arrives. The offer waits for it instead
/// of being dropped (the joiner would wait out its answer timeout, 15 s, and dial again).
#[tokio::test]
async fn an_offer_that_overtakes_its_senders_introduction_waits_for_it() {
    let v = vault();
    let (inviter_m, joiner_m) = (v.membership(&[1]), v.membership(&[1, 2]));
    let (mut inviter, mut out) = hub(&v, 1);
    let mut joiner = v.signaling(2);
    let (_, offer) = joiner.offer(&joiner_m, DeviceId([1; 16]), "v=0".into(), unix_ms()).unwrap();
    assert_eq!(inviter.signal(&inviter_m, DeviceId([2; 16]), &offer), None);
    assert_eq!(inviter.held.len(), 1, "held, not dropped");
    assert!(inviter.tasks.is_empty(), "not answered yet");

    let intro = joiner.intro(&joiner_m).unwrap();
    assert_eq!(inviter.signal(&inviter_m, DeviceId([2; 16]), &intro), Some(DeviceId([2; 16])));
    assert!(inviter.held.is_empty());
    assert_eq!(inviter.tasks.len(), 1, "the held offer is being answered");
    let (to, _) = out.try_recv().expect("the inviter introduces itself in return");
    assert_eq!(to, DeviceId([2; 16]));
    inviter.stop();
}

/// Held signals are bounded: one per sender (the latest), at most [`MAX_HELD`] senders.
#[tokio::test]
async fn held_signals_are_bounded() {
    let v = vault();
    let m = v.membership(&[1]);
    let (mut inviter, _out) = hub(&v, 1);
    for i in 2..(2 + MAX_HELD as u8 + 4) {
        let jm = v.membership(&[1, i]);
        let mut s = v.signaling(i);
        for _ in 0..2 {
            let (_, offer) = s.offer(&jm, DeviceId([1; 16]), "v=0".into(), unix_ms()).unwrap();
            inviter.signal(&m, DeviceId([i; 16]), &offer);
        }
    }
    assert_eq!(inviter.held.len(), MAX_HELD);
}
