//! The benchmark's load generator: many client sockets (one source port each) sending
//! Binding requests to one server, checking every response, recording latency.
//!
//! Every run is bounded by a request count *and* a wall-clock cap, and only ever targets the
//! address it is given (the bench passes loopback addresses it started servers on).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use crate::client::{binding_request, parse_response};
use crate::message::TransactionId;
use crate::mmsg::{RecvBatch, SendBatch, BATCH};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// A request is counted lost after this long without its response.
const LOSS_TIMEOUT: Duration = Duration::from_millis(200);

/// What a correct response looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A Binding success whose mapped address is the client's own socket address.
    Stun,
    /// The request bytes echoed back unchanged.
    Echo,
}

/// One load run.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Server address (loopback).
    pub target: SocketAddr,
    /// Client sockets, each with its own source port.
    pub clients: usize,
    /// Generator threads the client sockets are spread over.
    pub threads: usize,
    /// Requests in flight per client (at most one batch).
    pub window: usize,
    /// Total requests to complete.
    pub total: u64,
    /// Hard cap on the run's duration.
    pub max_duration: Duration,
    /// Open-loop pacing in requests/s over all clients; `None` runs closed-loop at full speed.
    pub pace: Option<f64>,
    /// How responses are checked.
    pub expect: Expect,
}

/// Results of one run.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    /// Requests sent.
    pub sent: u64,
    /// Correct responses.
    pub ok: u64,
    /// Responses that failed the check.
    pub bad: u64,
    /// Requests that timed out.
    pub lost: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Round-trip times in microseconds of the correct responses (sorted).
    pub rtts_us: Vec<u32>,
}

impl LoadReport {
    /// Correct responses per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile (0..=1) of round-trip time in microseconds.
    pub fn quantile_us(&self, q: f64) -> u32 {
        if self.rtts_us.is_empty() {
            return 0;
        }
        let i = ((self.rtts_us.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        self.rtts_us[i]
    }

    fn merge(&mut self, other: LoadReport) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.bad += other.bad;
        self.lost += other.lost;
        self.rtts_us.extend(other.rtts_us);
    }
}

/// Runs `spec` to completion (or its time cap) and returns the merged report.
pub fn run(spec: &LoadSpec) -> io::Result<LoadReport> {
    let clients = spec.clients.max(1);
    let threads = spec.threads.clamp(1, clients);
    let start = Instant::now();
    let deadline = start + spec.max_duration;
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        // Client ids t, t+threads, ... belong to thread t; the request quota is split likewise.
        let ids: Vec<u32> = (t..clients).step_by(threads).map(|i| i as u32).collect();
        let quota = spec.total * ids.len() as u64 / clients as u64;
        let spec = spec.clone();
        handles.push(std::thread::spawn(move || worker(&spec, &ids, quota, threads, deadline)));
    }
    let mut report = LoadReport::default();
    for h in handles {
        let r = h.join().map_err(|_| io::Error::other("load thread panicked"))??;
        report.merge(r);
    }
    report.elapsed = start.elapsed();
    report.rtts_us.sort_unstable();
    Ok(report)
}

#[derive(Clone, Copy)]
struct Slot {
    seq: u64,
    sent_at: Instant,
    busy: bool,
}

/// One client socket (one source port) and its window of outstanding requests.
struct Client {
    id: u32,
    sock: UdpSocket,
    me: SocketAddr,
    slots: Vec<Slot>,
    next_seq: u64,
    inflight: usize,
}

fn txid_for(client: u32, seq: u64) -> TransactionId {
    let mut id = [0u8; 12];
    id[..4].copy_from_slice(&client.to_be_bytes());
    id[4..].copy_from_slice(&seq.to_be_bytes());
    TransactionId::new(id)
}

fn worker(spec: &LoadSpec, ids: &[u32], quota: u64, threads: usize, deadline: Instant) -> io::Result<LoadReport> {
    let bind: SocketAddr =
        if spec.target.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" }.parse().map_err(io::Error::other)?;
    let window = spec.window.clamp(1, BATCH);
    let mut clients = Vec::with_capacity(ids.len());
    for &id in ids {
        let sock = UdpSocket::bind(bind)?;
        sock.connect(spec.target)?;
        sock.set_nonblocking(true)?;
        let me = sock.local_addr()?;
        let slots = vec![Slot { seq: 0, sent_at: Instant::now(), busy: false }; window];
        clients.push(Client { id, sock, me, slots, next_seq: 0, inflight: 0 });
    }
    let per_thread_rate = spec.pace.map(|p| p / threads as f64);
    let started = Instant::now();
    let mut rep = LoadReport::default();
    let (mut rx, mut tx) = (RecvBatch::default(), SendBatch::default());
    let mut last_expiry = Instant::now();
    loop {
        let now = Instant::now();
        let inflight: usize = clients.iter().map(|c| c.inflight).sum();
        if now >= deadline || (rep.sent >= quota && inflight == 0) {
            rep.lost += inflight as u64;
            break;
        }
        // How many may be sent now: the whole window (closed loop) or what the pace allows.
        let mut budget = match per_thread_rate {
            Some(r) => (((now - started).as_secs_f64() * r) as u64).saturating_sub(rep.sent),
            None => u64::MAX,
        };
        for c in clients.iter_mut() {
            while budget > 0 && rep.sent < quota && c.inflight < window {
                let slot = (c.next_seq % window as u64) as usize;
                let Some(buf) = tx.next_buf() else { break };
                if c.slots[slot].busy {
                    break;
                }
                let n = binding_request(buf, &txid_for(c.id, c.next_seq), None).map_err(io::Error::other)?;
                tx.push(n, None);
                c.slots[slot] = Slot { seq: c.next_seq, sent_at: now, busy: true };
                c.next_seq += 1;
                c.inflight += 1;
                rep.sent += 1;
                budget -= 1;
            }
            if !tx.is_empty() {
                let (_, failed) = tx.flush(&c.sock);
                rep.lost += failed as u64;
            }
        }
        let wait = if per_thread_rate.is_some() { Duration::from_millis(1) } else { LOSS_TIMEOUT };
        let ready: Vec<bool> = {
            let mut fds: Vec<PollFd<'_>> =
                clients.iter().map(|c| PollFd::new(c.sock.as_fd(), PollFlags::POLLIN)).collect();
            let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
            poll(&mut fds, timeout).map_err(io::Error::from)?;
            fds.iter().map(|f| f.revents().is_some_and(|r| r.contains(PollFlags::POLLIN))).collect()
        };
        for (c, _) in clients.iter_mut().zip(ready).filter(|(_, r)| *r) {
            loop {
                match rx.recv(&c.sock) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        return Err(io::Error::new(e.kind(), format!("nothing listens on {}", spec.target)));
                    }
                    Err(e) => return Err(e),
                }
                for i in 0..rx.len() {
                    let Some((got, _)) = rx.get(i) else { break };
                    check_response(spec.expect, c, got, &mut rep);
                }
                if rx.len() < BATCH {
                    break;
                }
            }
        }
        // Expire overdue requests so every window keeps moving even when datagrams are lost.
        let now = Instant::now();
        if now.duration_since(last_expiry) >= LOSS_TIMEOUT / 4 {
            last_expiry = now;
            for c in clients.iter_mut() {
                for s in c.slots.iter_mut().filter(|s| s.busy && now.duration_since(s.sent_at) >= LOSS_TIMEOUT) {
                    s.busy = false;
                    c.inflight -= 1;
                    rep.lost += 1;
                }
            }
        }
    }
    Ok(rep)
}

/// Matches one response to its slot and checks it.
fn check_response(expect: Expect, c: &mut Client, got: &[u8], rep: &mut LoadReport) {
    let Some(rseq) = got.get(12..20).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_be_bytes) else {
        rep.bad += 1;
        return;
    };
    let window = c.slots.len() as u64;
    let slot = &mut c.slots[(rseq % window) as usize];
    if !slot.busy || slot.seq != rseq {
        return; // late or duplicate: its request was already counted lost
    }
    let txid = txid_for(c.id, rseq);
    let good = match expect {
        Expect::Stun => parse_response(got, &txid).is_ok_and(|r| r.mapped == c.me),
        Expect::Echo => got.get(4..20) == Some(&txid.0[..]),
    };
    let rtt = slot.sent_at.elapsed();
    slot.busy = false;
    c.inflight -= 1;
    if good {
        rep.ok += 1;
        rep.rtts_us.push(u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX));
    } else {
        rep.bad += 1;
    }
}
