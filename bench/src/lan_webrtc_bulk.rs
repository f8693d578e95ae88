//! `hearth-lan-bench --webrtc`'s bulk transfer: Hearth's WebRTC connection (`Conn`, str0m)
//! with Noise on top, A → B over UDP loopback, each peer on its own task as two daemons
//! would run; and, side by side in the same run, two webrtc-rs peers (`lan_webrtc_rs`, with
//! the bench's `webrtc-rs` feature). Both keep at most [`WINDOW`] bytes buffered at the
//! sender and send the same messages.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hearth_peer::node::webrtc::conn::{Conn, ConnEvent};
use str0m::config::DtlsCert;
use str0m::Candidate;
use tokio::net::UdpSocket;

/// Bytes buffered at the sender at most (webrtc-rs: its send-buffer limit).
pub(crate) const WINDOW: usize = 1 << 20;
/// Bytes moved per run.
pub(crate) const TOTAL: usize = 64 << 20;
/// Plaintext bytes per message (a Noise message with its tag stays under 64 KiB).
pub(crate) const MSG: usize = 64 * 1024 - 64;
/// Give up on a run after this long.
const LIMIT: Duration = Duration::from_secs(60);

/// Noise transport states for both ends (NNpsk0: the cipher the sync session uses).
pub(crate) fn noise_pair() -> anyhow::Result<(snow::TransportState, snow::TransportState)> {
    let params: snow::params::NoiseParams = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s".parse()?;
    let psk = [9u8; 32];
    let mut i = snow::Builder::new(params.clone()).psk(0, &psk)?.build_initiator()?;
    let mut r = snow::Builder::new(params).psk(0, &psk)?.build_responder()?;
    let (mut m1, mut m2, mut buf) = (vec![0u8; 128], vec![0u8; 128], vec![0u8; 128]);
    let n = i.write_message(&[], &mut m1)?;
    r.read_message(&m1[..n], &mut buf)?;
    let n = r.write_message(&[], &mut m2)?;
    i.read_message(&m2[..n], &mut buf)?;
    Ok((i.into_transport_mode()?, r.into_transport_mode()?))
}

/// What one peer's task does with the open channel.
enum Role {
    /// Seals and sends `count` messages, keeping at most [`WINDOW`] bytes queued.
    Send { tx: snow::TransportState, count: usize },
    /// Opens `count` messages; returns the time from the sender's first write to the last.
    Receive { rx: snow::TransportState, count: usize },
}

/// What both peers' tasks share.
#[derive(Default)]
struct Shared {
    /// When the sender wrote its first message.
    start: OnceLock<Instant>,
    /// The receiver has every message: the sender may stop.
    stop: AtomicBool,
}

/// Runs one peer until its role is done (the sender: until `stop` is set).
async fn peer(
    mut conn: Conn,
    sock: UdpSocket,
    local: SocketAddr,
    mut role: Role,
    shared: Arc<Shared>,
) -> anyhow::Result<Duration> {
    let end = Instant::now() + LIMIT;
    let mut buf = vec![0u8; 2048];
    let plain = vec![0x5au8; MSG];
    let mut sealed = vec![0u8; MSG + 16];
    let mut out = vec![0u8; MSG + 16];
    let (mut sent, mut delivered, mut open) = (0usize, 0usize, false);
    loop {
        while let Some(e) = conn.poll_event() {
            match e {
                ConnEvent::Transmit { destination, contents, .. } => {
                    sock.send_to(&contents, destination).await?;
                }
                ConnEvent::Open => open = true,
                ConnEvent::Message(m) => {
                    if let Role::Receive { rx, .. } = &mut role {
                        rx.read_message(&m, &mut out)?;
                        delivered += 1;
                    }
                }
                ConnEvent::Closed => bail!("connection closed"),
            }
        }
        match &mut role {
            Role::Send { tx, count } => {
                if shared.stop.load(Ordering::Relaxed) {
                    return Ok(Duration::ZERO);
                }
                if open && sent < *count && conn.queued() < WINDOW {
                    shared.start.get_or_init(Instant::now);
                    while sent < *count && conn.queued() < WINDOW {
                        let n = tx.write_message(&plain, &mut sealed)?;
                        conn.send(Instant::now(), sealed[..n].to_vec());
                        sent += 1;
                    }
                    continue;
                }
            }
            Role::Receive { count, .. } if delivered == *count => {
                shared.stop.store(true, Ordering::Relaxed);
                return Ok(shared.start.get().map(|f| f.elapsed()).unwrap_or_default());
            }
            Role::Receive { .. } => {}
        }
        if Instant::now() > end {
            bail!("timed out: {sent} sent, {delivered} delivered");
        }
        // The sender also wakes every few ms to see whether the receiver is done.
        let wake = tokio::time::Instant::from_std(conn.deadline().min(Instant::now() + Duration::from_millis(5)));
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let (n, from) = r?;
                conn.receive(Instant::now(), from, local, &buf[..n]);
            }
            () = tokio::time::sleep_until(wake) => conn.timeout(Instant::now()),
        }
    }
}

/// Megabits a second of [`TOTAL`] bytes in Noise messages, A → B, one task per peer.
pub(crate) async fn hearth(cert: &DtlsCert) -> anyhow::Result<f64> {
    let sa = hearth_peer::node::webrtc::gather::udp_socket("127.0.0.1:0".parse()?)?;
    let sb = hearth_peer::node::webrtc::gather::udp_socket("127.0.0.1:0".parse()?)?;
    let (la, lb) = (sa.local_addr()?, sb.local_addr()?);
    let (mut ca, offer) = Conn::offer(Instant::now(), cert, vec![Candidate::host(la, "udp")?])?;
    let (cb, answer) = Conn::answer(Instant::now(), cert, vec![Candidate::host(lb, "udp")?], &offer)?;
    ca.accept_answer(Instant::now(), &answer)?;
    let (tx, rx) = noise_pair()?;
    let count = TOTAL / MSG;
    let shared = Arc::new(Shared::default());
    let a = tokio::spawn(peer(ca, sa, la, Role::Send { tx, count }, shared.clone()));
    let b = tokio::spawn(peer(cb, sb, lb, Role::Receive { rx, count }, shared.clone()));
    let took = b.await.context("receiver")?;
    shared.stop.store(true, Ordering::Relaxed);
    a.await.context("sender")??;
    let took = took?;
    Ok((count * MSG) as f64 * 8.0 / took.as_secs_f64() / 1e6)
}

/// The same transfer between two webrtc-rs peers, or why it was not measured.
pub(crate) fn webrtc_rs() -> Result<f64, String> {
    #[cfg(feature = "webrtc-rs")]
    {
        crate::lan_webrtc_rs::throughput(TOTAL, MSG, WINDOW).map_err(|e| format!("failed: {e:#}"))
    }
    #[cfg(not(feature = "webrtc-rs"))]
    {
        Err("not built (cargo build --release -p hearth-bench --features webrtc-rs)".into())
    }
}
