//! Two `hearth-rendezvous` replicas sharing presence and relay through a real
//! `redis-server` started by the test; a killed replica's devices leave presence within
//! the TTL.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hearth_e2e::rendezvous::Redis;
use hearth_e2e::{bin, rendezvous_identity};
use hearth_proto::ids::DeviceId;
use hearth_rendezvous::client::{self, Connection, Event, Join};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn replica(redis_url: &str) -> (Killed, SocketAddr) {
    replica_with(redis_url, &[])
}

fn replica_with(redis_url: &str, extra: &[&str]) -> (Killed, SocketAddr) {
    let mut child = Command::new(bin("hearth-rendezvous"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--no-stun",
            "--metrics-bind",
            "127.0.0.1:0",
            "--redis-url",
            redis_url,
            "--presence-ttl",
            "2",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let l = lines.next().expect("replica exited").unwrap();
        if let Some(a) = l.strip_prefix("listening http ") {
            break a.parse().unwrap();
        }
    };
    (Killed(child), addr)
}

async fn until_presence(c: &mut Connection, want: &[DeviceId], within: Duration) -> Duration {
    let t = Instant::now();
    loop {
        let left = within.checked_sub(t.elapsed()).expect("presence did not arrive in time");
        if let Event::Presence(p) = tokio::time::timeout(left, c.next()).await.expect("presence in time").unwrap() {
            if p == want {
                return t.elapsed();
            }
        }
    }
}

async fn until_signal(c: &mut Connection) -> (DeviceId, Vec<u8>) {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), c.next()).await.expect("signal in time").unwrap() {
            Event::Signal { from, payload } => return (from, payload),
            Event::Error { code, message, .. } => panic!("{code:?}: {message}"),
            Event::Presence(_) => {}
        }
    }
}

#[test]
fn replicas_share_presence_and_relay_through_redis() {
    let redis = Redis::start();
    let url = &redis.url;
    let (_r1, a1) = replica(url);
    let (r2, a2) = replica(url);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut a =
            client::connect(&format!("ws://{a1}/v1/signal"), &Join::Vault(Box::new(rendezvous_identity(42, 1))))
                .await
                .unwrap();
        let mut b =
            client::connect(&format!("ws://{a2}/v1/signal"), &Join::Vault(Box::new(rendezvous_identity(42, 2))))
                .await
                .unwrap();
        assert_eq!(b.online, vec![a.device], "b's replica sees a, connected to the other replica");
        until_presence(&mut a, &[b.device], Duration::from_secs(5)).await;
        a.signal(b.device, b"offer across replicas").await.unwrap();
        assert_eq!(until_signal(&mut b).await, (a.device, b"offer across replicas".to_vec()));
        b.signal(a.device, b"answer back").await.unwrap();
        assert_eq!(until_signal(&mut a).await, (b.device, b"answer back".to_vec()));
        // The device reconnects through replica 1 while its old connection on replica 2 is
        // still open: replica 2 closes the old one, and the device stays online.
        let join_b = Join::Vault(Box::new(rendezvous_identity(42, 2)));
        let mut b_moved = client::connect(&format!("ws://{a1}/v1/signal"), &join_b).await.unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(5), b.next()).await.expect("old connection closed") {
                Err(client::ClientError::Closed { code, .. }) => {
                    assert_eq!(code, 1008);
                    break;
                }
                Err(e) => panic!("{e}"),
                Ok(_) => continue,
            }
        }
        a.signal(b_moved.device, b"after moving").await.unwrap();
        assert_eq!(until_signal(&mut b_moved).await, (a.device, b"after moving".to_vec()));
        // Mailboxes are shared: b leaves replica 1, a signals it, and b gets the signal when
        // it comes back through replica 2.
        b_moved.close().await;
        until_presence(&mut a, &[], Duration::from_secs(5)).await;
        a.signal(b.device, b"held for you").await.unwrap();
        let mut b_back = client::connect(&format!("ws://{a2}/v1/signal"), &join_b).await.unwrap();
        assert_eq!(until_signal(&mut b_back).await, (a.device, b"held for you".to_vec()));
        until_presence(&mut a, &[b.device], Duration::from_secs(5)).await;
        // Redis drops every client connection (a restart, a failover): a signal sent right
        // then is delivered or refused with an error, never silently lost; once the
        // replicas have reconnected, signals pass both ways again.
        for kind in ["normal", "pubsub"] {
            redis.cli(&["CLIENT", "KILL", "TYPE", kind]);
        }
        a.signal(b.device, b"during the hiccup").await.unwrap();
        tokio::select! {
            got = until_signal(&mut b_back) => assert_eq!(got, (a.device, b"during the hiccup".to_vec())),
            err = async {
                loop {
                    if let Ok(Ok(Event::Error { code, .. })) = tokio::time::timeout(Duration::from_secs(6), a.next()).await {
                        return code;
                    }
                }
            } => eprintln!("signal during the Redis hiccup refused with {err:?}"),
        }
        // Wait for the replicas to be back on Redis by the thing itself: a signal that gets
        // through (each try its own payload, so a late earlier one is not mistaken for it).
        let mut through = false;
        for attempt in 0..20 {
            let payload = format!("after the hiccup {attempt}");
            a.signal(b.device, payload.as_bytes()).await.unwrap();
            if let Ok(got) = tokio::time::timeout(Duration::from_millis(500), until_signal(&mut b_back)).await {
                assert_eq!(got.0, a.device);
                assert!(got.1.starts_with(b"after the hiccup"), "{:?}", String::from_utf8_lossy(&got.1));
                through = true;
                break;
            }
            // Not yet: drop what the failed try left on a's side (e.g. an error reply).
            while let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(50), a.next()).await {}
        }
        assert!(through, "no signal got through after the Redis connections were killed");
        b_back.signal(a.device, b"back at you").await.unwrap();
        assert_eq!(until_signal(&mut a).await, (b.device, b"back at you".to_vec()));
        // Kill replica 2 without any goodbye: b must leave a's presence within the TTL
        // (2 s) plus one refresh period.
        drop(r2);
        let took = until_presence(&mut a, &[], Duration::from_secs(6)).await;
        eprintln!("dead replica's device left presence after {took:?}");
        a.signal(b.device, b"anyone?").await.unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(5), a.next()).await.unwrap().unwrap() {
                Event::Error { code, .. } => {
                    assert_eq!(code, hearth_rendezvous::protocol::ErrorCode::UnknownRecipient);
                    break;
                }
                _ => continue,
            }
        }
    });
}

/// A revocation sent through one replica closes the revoked device on the other replica and
/// keeps it out of both (the revocation is shared through Redis).
#[test]
fn a_revocation_on_one_replica_reaches_the_other() {
    use ed25519_dalek::SigningKey;
    use hearth_proto::membership::{MembershipBody, MembershipRecord, Revocation};
    use hearth_rendezvous::client::ClientError;
    use hearth_rendezvous::protocol::ErrorCode;
    let redis = Redis::start();
    let url = &redis.url;
    let (_r1, a1) = replica(url);
    let (_r2, a2) = replica(url);
    let (url1, url2) = (format!("ws://{a1}/v1/signal"), format!("ws://{a2}/v1/signal"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut a = client::connect(&url1, &Join::Vault(Box::new(rendezvous_identity(43, 1)))).await.unwrap();
        let mut b = client::connect(&url2, &Join::Vault(Box::new(rendezvous_identity(43, 2)))).await.unwrap();
        until_presence(&mut a, &[b.device], Duration::from_secs(5)).await;
        let root = SigningKey::from_bytes(&[43; 32]);
        let vault_id = hearth_proto::vault_id_of(&root.verifying_key());
        let rec = MembershipRecord::sign(
            &root,
            MembershipBody::Revoke(Revocation {
                vault_id,
                device_id: b.device,
                last_seq: 0,
                last_hash: [0; 32],
                at_ms: 0,
            }),
        );
        a.revoke(&rec).await.unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(5), b.next()).await.expect("b is closed in time") {
                Err(ClientError::Closed { code, reason }) => {
                    assert_eq!(code, 1008);
                    assert!(reason.contains("revoked"), "{reason}");
                    break;
                }
                Ok(_) => continue,
                Err(e) => panic!("{e}"),
            }
        }
        for u in [&url1, &url2] {
            let err = client::connect(u, &Join::Vault(Box::new(rendezvous_identity(43, 2)))).await.unwrap_err();
            assert!(matches!(err, ClientError::Refused { code: ErrorCode::Revoked, .. }), "{u}: {err}");
        }
        until_presence(&mut a, &[], Duration::from_secs(5)).await;
    });
}

/// Eight devices race into one two-member pairing room through two replicas: the
/// check-and-join is one Redis script, so exactly two get in.
#[test]
fn concurrent_joins_across_replicas_never_overfill_a_room() {
    let redis = Redis::start();
    let url = &redis.url;
    let (_r1, a1) = replica(url);
    let (_r2, a2) = replica(url);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let joins = (0..8).map(|i| {
            let url = format!("ws://{}/v1/signal", if i % 2 == 0 { a1 } else { a2 });
            tokio::spawn(async move { client::connect(&url, &Join::Invite([0x77; 32])).await })
        });
        let results: Vec<_> = futures_util::future::join_all(joins).await.into_iter().map(|r| r.unwrap()).collect();
        let admitted: Vec<&Connection> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(admitted.len(), 2, "{:?}", results.iter().map(|r| r.as_ref().err()).collect::<Vec<_>>());
        for r in results.iter().filter_map(|r| r.as_ref().err()) {
            assert!(
                matches!(
                    r,
                    client::ClientError::Refused { code: hearth_rendezvous::protocol::ErrorCode::RoomFull, .. }
                ),
                "{r:?}"
            );
        }
    });
}

/// A device that leaves takes its location with it (the `where` hash does not grow).
#[test]
fn leaving_removes_the_location() {
    let redis = Redis::start();
    let url = &redis.url;
    let (_r1, a1) = replica(url);
    let id = rendezvous_identity(44, 1);
    let key = format!("hearth:where:v{}", hearth_proto::vault_id_of(&id.root).to_hex());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = client::connect(&format!("ws://{a1}/v1/signal"), &Join::Vault(Box::new(id))).await.unwrap();
        assert_eq!(redis.cli(&["HLEN", &key]), "1");
        c.close().await;
    });
    let until = Instant::now() + Duration::from_secs(5);
    while redis.cli(&["HLEN", &key]) != "0" {
        assert!(Instant::now() < until, "location left behind");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Shared mailboxes keep the per-vault byte budget (`--mailbox-room-bytes`).
#[test]
fn shared_mailboxes_keep_the_room_budget() {
    let redis = Redis::start();
    let url = &redis.url;
    let flags = ["--mailbox-room-bytes", "2000"];
    let (_r1, a1) = replica_with(url, &flags);
    let (_r2, a2) = replica_with(url, &flags);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut a =
            client::connect(&format!("ws://{a1}/v1/signal"), &Join::Vault(Box::new(rendezvous_identity(45, 1))))
                .await
                .unwrap();
        let join_b = Join::Vault(Box::new(rendezvous_identity(45, 2)));
        let b = client::connect(&format!("ws://{a2}/v1/signal"), &join_b).await.unwrap();
        let b_dev = b.device;
        until_presence(&mut a, &[b_dev], Duration::from_secs(5)).await;
        b.close().await;
        until_presence(&mut a, &[], Duration::from_secs(5)).await;
        // Ten 500-byte signals (about 730 bytes each as held): two fit in 2000 bytes.
        for i in 0..10u8 {
            a.signal(b_dev, &[i; 500]).await.unwrap();
        }
        let mut full = 0;
        while let Ok(Ok(ev)) = tokio::time::timeout(Duration::from_millis(500), a.next()).await {
            if let Event::Error { message, .. } = ev {
                assert!(message.contains("mailbox is full"), "{message}");
                full += 1;
            }
        }
        assert_eq!(full, 8);
        let mut back = client::connect(&format!("ws://{a1}/v1/signal"), &join_b).await.unwrap();
        assert_eq!(until_signal(&mut back).await.1, vec![0u8; 500]);
        assert_eq!(until_signal(&mut back).await.1, vec![1u8; 500]);
    });
}
