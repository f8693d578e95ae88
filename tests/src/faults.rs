//! The Redis fault suite's instruments: a round-robin TCP forwarder standing for a load
//! balancer in front of replicas, devices that record everything they see, and the checker
//! over those records.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hearth_proto::ids::DeviceId;
use hearth_proto::membership::MembershipRecord;
use hearth_rendezvous::client::{self, ClientError, Event, Join};
use hearth_rendezvous::protocol::ErrorCode;
use tokio::sync::mpsc;

/// A TCP load balancer on loopback: each new connection goes to the next backend in turn,
/// skipping backends that refuse it. Stops when dropped.
pub struct Forwarder {
    /// Where clients connect (the replicas' `--public-host`: devices sign for it).
    pub addr: SocketAddr,
    listener: Option<TcpListener>,
    stop: Arc<AtomicBool>,
}

impl Forwarder {
    /// Binds its listener (so its address can be given to the replicas before they start).
    pub fn bind() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind forwarder");
        let addr = listener.local_addr().expect("addr");
        Self { addr, listener: Some(listener), stop: Arc::default() }
    }

    /// Forwards to `backends` in turn, from now on.
    pub fn run(&mut self, backends: Vec<SocketAddr>) {
        let Some(listener) = self.listener.take() else { return };
        listener.set_nonblocking(true).expect("nonblocking");
        let stopped = Arc::clone(&self.stop);
        let next = AtomicUsize::new(0);
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let start = next.fetch_add(1, Ordering::Relaxed);
                let server = (0..backends.len())
                    .map(|i| backends[(start + i) % backends.len()])
                    .find_map(|b| TcpStream::connect_timeout(&b, Duration::from_secs(1)).ok());
                let Some(server) = server else { continue };
                pipe(client, server);
            }
        });
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Copies both ways until either side closes.
fn pipe(a: TcpStream, b: TcpStream) {
    let (Ok(a2), Ok(b2)) = (a.try_clone(), b.try_clone()) else { return };
    let copy = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 || to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Both);
            let _ = from.shutdown(Shutdown::Both);
        });
    };
    copy(a, b2);
    copy(b, a2);
}

/// What a device saw, in order, with the time it saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Admitted; who was online.
    Joined(Vec<DeviceId>),
    /// A join was refused with this code.
    Refused(ErrorCode),
    /// What the connection delivered: presence, a signal, an error about a signal.
    Event(Event),
    /// The server closed the connection.
    Closed {
        /// Close code.
        code: u16,
        /// Reason.
        reason: String,
    },
}

/// A device's record.
pub type History = Arc<Mutex<Vec<(Instant, Seen)>>>;

enum Cmd {
    Signal { to: DeviceId, payload: Vec<u8>, id: Option<String> },
    Revoke(Box<MembershipRecord>),
}

/// A device connected through the rendezvous at a URL, reconnecting when closed (unless
/// revoked), recording everything.
pub struct Device {
    /// Its id.
    pub id: DeviceId,
    /// What it saw.
    pub seen: History,
    cmds: mpsc::UnboundedSender<Cmd>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Device {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Device {
    /// Joins through `url` (on the current tokio runtime) and keeps joining after closes.
    pub fn start(url: String, join: Join) -> Self {
        let id = match &join {
            Join::Vault(i) => match &i.record.body {
                hearth_proto::membership::MembershipBody::Enroll(e) => e.device_id,
                _ => DeviceId::default(),
            },
            Join::Invite(_) => DeviceId::default(),
        };
        let seen: History = Arc::default();
        let (cmds, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(url, join, Arc::clone(&seen), rx));
        Self { id, seen, cmds, task }
    }

    /// Sends a signal named `id` (its payload is the id, so the receiver's record names it).
    pub fn signal(&self, to: DeviceId, id: &str) {
        let _ = self.cmds.send(Cmd::Signal { to, payload: id.as_bytes().to_vec(), id: Some(id.to_owned()) });
    }

    /// Publishes a revocation.
    pub fn revoke(&self, record: MembershipRecord) {
        let _ = self.cmds.send(Cmd::Revoke(Box::new(record)));
    }

    /// A copy of its record.
    pub fn history(&self) -> Vec<(Instant, Seen)> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The last presence it was told (from a join or an update).
    pub fn presence(&self) -> Option<Vec<DeviceId>> {
        self.history().into_iter().rev().find_map(|(_, s)| match s {
            Seen::Joined(p) | Seen::Event(Event::Presence(p)) => Some(p),
            _ => None,
        })
    }

    /// Waits until `f` holds of its record, for at most `within`; the time it took.
    pub async fn until(&self, within: Duration, f: impl Fn(&[(Instant, Seen)]) -> bool) -> Option<Duration> {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if f(&self.history()) {
                return Some(t0.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

fn record(seen: &History, s: Seen) {
    seen.lock().unwrap_or_else(|p| p.into_inner()).push((Instant::now(), s));
}

async fn run(url: String, join: Join, seen: History, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
    loop {
        let mut conn = match client::connect(&url, &join).await {
            Ok(c) => c,
            Err(ClientError::Refused { code, .. }) => {
                record(&seen, Seen::Refused(code));
                if code == ErrorCode::Revoked {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut online = conn.online.clone();
        online.sort();
        record(&seen, Seen::Joined(online));
        loop {
            tokio::select! {
                ev = conn.next() => match ev {
                    Ok(Event::Presence(mut p)) => {
                        p.sort();
                        record(&seen, Seen::Event(Event::Presence(p)));
                    }
                    Ok(ev) => record(&seen, Seen::Event(ev)),
                    Err(ClientError::Closed { code, reason }) => {
                        record(&seen, Seen::Closed { code, reason });
                        break;
                    }
                    Err(_) => {
                        record(&seen, Seen::Closed { code: 1006, reason: "dropped".into() });
                        break;
                    }
                },
                cmd = cmds.recv() => {
                    let sent = match cmd {
                        Some(Cmd::Signal { to, payload, id }) => conn.signal_with_id(to, &payload, id.as_deref()).await,
                        Some(Cmd::Revoke(r)) => conn.revoke(&r).await,
                        None => return,
                    };
                    if sent.is_err() {
                        record(&seen, Seen::Closed { code: 1006, reason: "send failed".into() });
                        break;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What became of the signals a sender named: every one delivered exactly once, or refused
/// with an error naming it. Returns (delivered, refused); panics on a lost or duplicated one.
pub fn check_signals(sent: &[String], sender: &[(Instant, Seen)], receiver: &[(Instant, Seen)]) -> (usize, usize) {
    let mut got: HashMap<&[u8], usize> = HashMap::new();
    for (_, s) in receiver {
        if let Seen::Event(Event::Signal { payload, .. }) = s {
            *got.entry(payload.as_slice()).or_default() += 1;
        }
    }
    let refused: std::collections::HashSet<&str> = sender
        .iter()
        .filter_map(|(_, s)| match s {
            Seen::Event(Event::Error { id: Some(id), .. }) => Some(id.as_str()),
            _ => None,
        })
        .collect();
    let (mut delivered, mut told, mut lost) = (0, 0, Vec::new());
    for id in sent {
        match got.get(id.as_bytes()).copied().unwrap_or(0) {
            1 => delivered += 1,
            0 if refused.contains(id.as_str()) => told += 1,
            0 => lost.push(id.as_str()),
            n => panic!("signal {id} was delivered {n} times"),
        }
    }
    assert!(lost.is_empty(), "signals accepted, never delivered, and their sender not told: {lost:?}");
    (delivered, told)
}
