//! Shared by the rendezvous integration tests: a server on a loopback socket, vaults of
//! enrolled devices.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use hearth_proto::ids::DeviceId;
use hearth_proto::membership::{Enrollment, MembershipBody, MembershipRecord};
use hearth_rendezvous::client::{self, Identity, Join};
use hearth_rendezvous::server::{self, Config, Limits};
use tokio::sync::oneshot;

pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    registry: prometheus::Registry,
}

impl Server {
    pub(crate) async fn start(limits: Limits) -> Self {
        Self::start_with(Config { limits, ..Config::default() }).await
    }

    pub(crate) async fn start_with(cfg: Config) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), cfg).await
    }

    /// A server listening on `addr` (a port freed just before, for a proxy set up in front).
    pub(crate) async fn start_on(addr: SocketAddr, cfg: Config) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let registry = prometheus::Registry::new();
        let task = tokio::spawn(server::run(listener, cfg, registry.clone(), async move {
            let _ = rx.await;
        }));
        Self { addr, stop: Some(tx), task, registry }
    }

    pub(crate) fn url(&self) -> String {
        format!("ws://{}/v1/signal", self.addr)
    }

    pub(crate) fn metric(&self, name: &str, label: Option<&str>) -> u64 {
        let mut total = 0;
        for f in self.registry.gather() {
            if f.name() != name {
                continue;
            }
            for m in f.get_metric() {
                if label.is_none_or(|l| m.get_label().iter().any(|p| p.value() == l)) {
                    total += m.get_counter().get_value() as u64 + m.get_gauge().get_value() as u64;
                }
            }
        }
        total
    }

    pub(crate) async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), self.task).await.expect("server drains in time").unwrap().unwrap();
    }
}

/// A vault with `n` enrolled devices.
pub(crate) fn vault(seed: u8, n: u8) -> (SigningKey, Vec<Identity>) {
    let root = SigningKey::from_bytes(&[seed; 32]);
    let vault_id = hearth_proto::vault_id_of(&root.verifying_key());
    let ids = (0..n)
        .map(|i| {
            let device_key = SigningKey::from_bytes(&[seed.wrapping_add(100 + i); 32]);
            let record = MembershipRecord::sign(
                &root,
                MembershipBody::Enroll(Enrollment {
                    vault_id,
                    device_id: DeviceId([seed.wrapping_add(i + 1); 16]),
                    sign_pk: device_key.verifying_key().to_bytes(),
                    dh_pk: [0; 32],
                    at_ms: 0,
                }),
            );
            Identity { root: root.verifying_key(), record, device_key, revocations: Vec::new() }
        })
        .collect();
    (root, ids)
}

/// Connects and joins `id`'s vault room.
pub(crate) async fn join(s: &Server, id: &Identity) -> client::Connection {
    client::connect(&s.url(), &Join::Vault(Box::new(id.clone()))).await.unwrap()
}

pub(crate) fn limits() -> Limits {
    Limits { admission_timeout: Duration::from_millis(500), ..Limits::default() }
}
