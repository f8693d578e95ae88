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

/// What a hub's connection tasks send the node.
type FromTasks = mpsc::Receiver<crate::node::Input>;
/// The signals a hub sends through the rendezvous link: (recipient, envelope).
type Signals = mpsc::Receiver<(DeviceId, Vec<u8>)>;

/// Device `i`'s hub; its tasks ask `stun` for their mapping.
fn hub_of(v: &Vault, i: u8, stun: Option<std::net::SocketAddr>) -> (Hub, FromTasks, Signals) {
    let (to_node, from_tasks) = mpsc::channel(8);
    let ctx = Ctx { cert: conn::certificate().unwrap(), stun, ids: Default::default(), to_node };
    let (out, rx) = mpsc::channel(8);
    (Hub::new(v.signaling(i), ctx, out), from_tasks, rx)
}

fn hub(v: &Vault, i: u8) -> (Hub, Signals) {
    let (hub, _, signals) = hub_of(v, i, None);
    (hub, signals)
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

/// A STUN server on loopback that answers every request after `delay`, reporting a made-up
/// mapping (as a NAT would) for each requester.
async fn slow_stun(delay: std::time::Duration) -> std::net::SocketAddr {
    let server = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = server.recv_from(&mut buf).await {
            let Ok(req) = hearth_stun::Message::parse(&buf[..n]) else { continue };
            let txid = req.transaction_id();
            let server = server.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let mut out = [0u8; 128];
                let mut w =
                    hearth_stun::writer::MessageWriter::new(&mut out, hearth_stun::MessageType::BINDING_SUCCESS, &txid)
                        .unwrap();
                w.xor_address(hearth_stun::attr::XOR_MAPPED_ADDRESS, "203.0.113.7:6000".parse().unwrap()).unwrap();
                let len = w.finish_with_fingerprint().unwrap();
                let _ = server.send_to(&out[..len], from).await;
            });
        }
    });
    addr
}

/// The next request of a connection task.
async fn next_event(from_tasks: &mut FromTasks) -> TaskEvent {
    let next = tokio::time::timeout(std::time::Duration::from_secs(5), from_tasks.recv()).await;
    match next {
        Ok(Some(crate::node::Input::WebRtc(ev))) => ev,
        other => panic!("expected a task event, got {other:?}"),
    }
}

/// Trickle ICE: the offer leaves with host candidates before the STUN server has answered,
/// the mapping follows in a `Candidates` signal of the same session, and the answering
/// device reads it.
#[tokio::test]
async fn the_offer_leaves_before_stun_answers_and_the_mapping_follows() {
    let v = vault();
    let m = v.membership(&[1, 2]);
    let stun = slow_stun(std::time::Duration::from_millis(300)).await;
    let (mut a, mut from_tasks, mut out) = hub_of(&v, 1, Some(stun));
    let mut b = v.signaling(2);
    let start = std::time::Instant::now();
    a.dial(TargetId(1), DeviceId([2; 16]));
    let ev = next_event(&mut from_tasks).await;
    let waited = start.elapsed();
    let TaskEvent::Offer { sdp, .. } = &ev else { panic!("{ev:?}") };
    assert!(trickle::reads(sdp), "the offer says its sender reads trickled candidates");
    assert!(!sdp.contains("typ srflx"), "no mapping in the offer: {sdp}");
    assert!(waited < std::time::Duration::from_millis(250), "the offer waited {waited:?} for the STUN server");
    a.task_event(&m, ev);
    let (to, offer) = out.recv().await.unwrap();
    assert_eq!(to, DeviceId([2; 16]));
    let session = b.receive(&m, DeviceId([1; 16]), &offer, unix_ms()).unwrap().session;

    let ev = next_event(&mut from_tasks).await;
    let TaskEvent::Candidates { to, session: s, lines } = &ev else { panic!("{ev:?}") };
    assert_eq!((*to, *s), (DeviceId([2; 16]), session));
    assert!(lines.iter().any(|l| l.contains("203.0.113.7 6000 typ srflx")), "{lines:?}");
    let lines = lines.clone();
    a.task_event(&m, ev);
    let (_, env) = out.recv().await.unwrap();
    let got = b.receive(&m, DeviceId([1; 16]), &env, unix_ms()).unwrap();
    assert_eq!(got.body, Body::Candidates(lines));
    a.stop();
}

/// A device whose answer lacks the mark (a build before trickle) never gets the candidates
/// trickled to it; the next dial to it waits for gathering and puts them all in the offer.
#[tokio::test]
async fn a_device_that_reads_no_trickled_candidates_gets_complete_offers() {
    let v = vault();
    let m = v.membership(&[1, 2]);
    let stun = slow_stun(std::time::Duration::from_millis(300)).await;
    let (mut a, mut from_tasks, mut out) = hub_of(&v, 1, Some(stun));
    let mut b = v.signaling(2);
    a.dial(TargetId(1), DeviceId([2; 16]));
    let ev = next_event(&mut from_tasks).await;
    let TaskEvent::Offer { sdp, .. } = &ev else { panic!("{ev:?}") };
    let cert = conn::certificate().unwrap();
    let (_, plain_answer) = conn::Conn::answer(std::time::Instant::now(), &cert, Vec::new(), sdp).unwrap();
    a.task_event(&m, ev);
    let (_, offer) = out.recv().await.unwrap();
    let session = b.receive(&m, DeviceId([1; 16]), &offer, unix_ms()).unwrap().session;
    let answer = b.reply(&m, DeviceId([1; 16]), session, &Body::Answer(plain_answer), unix_ms()).unwrap();
    a.signal(&m, DeviceId([2; 16]), &answer);
    assert!(a.no_trickle.contains(&DeviceId([2; 16])));

    // The first connection's task may still report; the next dial's offer is complete.
    let start = std::time::Instant::now();
    a.dial(TargetId(2), DeviceId([2; 16]));
    let sdp = loop {
        if let TaskEvent::Offer { sdp, .. } = next_event(&mut from_tasks).await {
            break sdp;
        }
    };
    assert!(sdp.contains("203.0.113.7 6000 typ srflx"), "{sdp}");
    assert!(start.elapsed() >= std::time::Duration::from_millis(250), "it waited for the STUN server");
    a.stop();
}
