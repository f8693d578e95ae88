//! The benchmark's load generator: many client sockets (one source port each) sending
//! Binding requests to one server, checking every response, recording latency.
//!
//! Every run is bounded by a request count *and* a wall-clock cap, and only ever targets the
//! address it is given (the bench passes loopback addresses it started servers on).

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::client::{binding_request, parse_response};
use crate::message::TransactionId;

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
    /// Client sockets, each on its own thread and source port.
    pub clients: usize,
    /// Requests in flight per client.
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
    let start = Instant::now();
    let deadline = start + spec.max_duration;
    let mut handles = Vec::with_capacity(clients);
    for i in 0..clients {
        let quota = spec.total / clients as u64 + u64::from((i as u64) < spec.total % clients as u64);
        let spec = spec.clone();
        handles.push(std::thread::spawn(move || client_loop(&spec, i as u32, quota, deadline)));
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

fn txid_for(client: u32, seq: u64) -> TransactionId {
    let mut id = [0u8; 12];
    id[..4].copy_from_slice(&client.to_be_bytes());
    id[4..].copy_from_slice(&seq.to_be_bytes());
    TransactionId::new(id)
}

fn client_loop(spec: &LoadSpec, client: u32, quota: u64, deadline: Instant) -> io::Result<LoadReport> {
    let bind: SocketAddr =
        if spec.target.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" }.parse().map_err(io::Error::other)?;
    let sock = UdpSocket::bind(bind)?;
    sock.connect(spec.target)?;
    let me = sock.local_addr()?;
    let window = spec.window.max(1);
    let mut slots = vec![Slot { seq: 0, sent_at: Instant::now(), busy: false }; window];
    let interval = spec.pace.map(|p| Duration::from_secs_f64(spec.clients.max(1) as f64 / p.max(1.0)));
    let mut next_send = Instant::now();
    let mut rep = LoadReport::default();
    let (mut seq, mut inflight) = (0u64, 0usize);
    let (mut req, mut resp) = ([0u8; 64], [0u8; 1500]);
    sock.set_read_timeout(Some(LOSS_TIMEOUT))?;
    loop {
        let now = Instant::now();
        if now >= deadline || (rep.sent >= quota && inflight == 0) {
            rep.lost += inflight as u64;
            break;
        }
        // Fill the window (closed loop) or send when the pacing clock says so (open loop).
        while rep.sent < quota && inflight < window && interval.is_none_or(|_| Instant::now() >= next_send) {
            let slot = (seq % window as u64) as usize;
            if slots[slot].busy {
                break;
            }
            let n = binding_request(&mut req, &txid_for(client, seq), None).map_err(io::Error::other)?;
            sock.send(&req[..n])?;
            slots[slot] = Slot { seq, sent_at: Instant::now(), busy: true };
            seq += 1;
            inflight += 1;
            rep.sent += 1;
            if let Some(iv) = interval {
                next_send += iv;
            }
        }
        if let Some(_iv) = interval {
            let wait =
                next_send.saturating_duration_since(Instant::now()).clamp(Duration::from_micros(50), LOSS_TIMEOUT);
            sock.set_read_timeout(Some(wait))?;
        }
        match sock.recv(&mut resp) {
            Ok(n) => {
                let got = &resp[..n];
                let Some(rseq) = got.get(12..20).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_be_bytes)
                else {
                    rep.bad += 1;
                    continue;
                };
                let slot = &mut slots[(rseq % window as u64) as usize];
                if !slot.busy || slot.seq != rseq {
                    continue; // late or duplicate: its request was already counted lost
                }
                let txid = txid_for(client, rseq);
                let good = match spec.expect {
                    Expect::Stun => parse_response(got, &txid).is_ok_and(|r| r.mapped == me),
                    Expect::Echo => got.get(4..20) == Some(&txid.0[..]),
                };
                let rtt = slot.sent_at.elapsed();
                slot.busy = false;
                inflight -= 1;
                if good {
                    rep.ok += 1;
                    rep.rtts_us.push(u32::try_from(rtt.as_micros()).unwrap_or(u32::MAX));
                } else {
                    rep.bad += 1;
                }
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                // Expire requests whose response is overdue so the window keeps moving.
                let now = Instant::now();
                for s in slots.iter_mut().filter(|s| s.busy && now.duration_since(s.sent_at) >= LOSS_TIMEOUT) {
                    s.busy = false;
                    inflight -= 1;
                    rep.lost += 1;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                return Err(io::Error::new(e.kind(), format!("nothing listens on {}", spec.target)));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(rep)
}
