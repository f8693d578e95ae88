//! A hostile rendezvous for tests: a WebSocket relay between one device and the real server
//! that forwards everything, except that what the server relays *to* the device as `signal`
//! can be altered, dropped, replayed or given another sender, as the test switches modes.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

/// What the relay does to signals bound for the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Forward them unchanged (and keep a copy).
    Honest = 0,
    /// Flip one bit of each payload (a different bit each time).
    Tamper = 1,
    /// Drop them, and deliver every signal kept so far again, twice, in reverse order.
    Replay = 2,
    /// Forward them as sent by another device (an id of the vault's room: the other one).
    Swap = 3,
}

/// A running relay.
pub struct Mitm {
    /// Where the device should connect.
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    /// Signals delivered to the device so far, after the relay's changes.
    pub delivered: Arc<AtomicUsize>,
    kept: Arc<Mutex<Vec<String>>>,
}

impl Mitm {
    /// Binds a loopback port now (so the server can be told its name), relaying to `upstream`
    /// once [`Mitm::run`] is called.
    pub fn bind() -> (TcpListener, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind relay");
        let a = l.local_addr().expect("relay address");
        (l, a)
    }

    /// Starts relaying connections on `listener` to the server at `upstream` (`ws://` URL).
    pub fn run(listener: TcpListener, upstream: String) -> Self {
        let addr = listener.local_addr().expect("relay address");
        let mode = Arc::new(AtomicU8::new(Mode::Honest as u8));
        let delivered = Arc::new(AtomicUsize::new(0));
        let kept = Arc::new(Mutex::new(Vec::new()));
        let (m, d, k) = (mode.clone(), delivered.clone(), kept.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                listener.set_nonblocking(true).expect("nonblocking");
                let l = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                while let Ok((s, _)) = l.accept().await {
                    tokio::spawn(relay(s, upstream.clone(), m.clone(), d.clone(), k.clone()));
                }
            });
        });
        Self { addr, mode, delivered, kept }
    }

    /// Switches what happens to signals from now on.
    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    /// Signals kept (honest originals).
    pub fn kept(&self) -> usize {
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

async fn relay(
    client: tokio::net::TcpStream,
    upstream: String,
    mode: Arc<AtomicU8>,
    delivered: Arc<AtomicUsize>,
    kept: Arc<Mutex<Vec<String>>>,
) {
    let Ok(down) = tokio_tungstenite::accept_async(client).await else { return };
    let Ok((up, _)) = tokio_tungstenite::connect_async(upstream.as_str()).await else { return };
    let (mut down_tx, mut down_rx) = down.split();
    let (mut up_tx, mut up_rx) = up.split();
    let mut flips = 0usize;
    loop {
        tokio::select! {
            m = down_rx.next() => match m {
                Some(Ok(m)) => if up_tx.send(m).await.is_err() { return },
                _ => return,
            },
            m = up_rx.next() => {
                let Some(Ok(m)) = m else { return };
                let Message::Text(text) = &m else {
                    if down_tx.send(m).await.is_err() { return }
                    continue;
                };
                let Ok(mut v) = serde_json::from_str::<Value>(text.as_str()) else { continue };
                if v["type"] != "signal" {
                    if down_tx.send(m).await.is_err() { return }
                    continue;
                }
                let mode = mode.load(Ordering::SeqCst);
                let mut out = Vec::new();
                if mode == Mode::Honest as u8 {
                    kept.lock().unwrap_or_else(|p| p.into_inner()).push(text.to_string());
                    out.push(text.to_string());
                } else if mode == Mode::Tamper as u8 {
                    let b64 = base64::engine::general_purpose::STANDARD;
                    let mut p = b64.decode(v["payload"].as_str().unwrap_or_default()).unwrap_or_default();
                    if !p.is_empty() {
                        let i = (flips * 7919) % p.len();
                        p[i] ^= 1 << (flips % 8);
                        flips += 1;
                    }
                    v["payload"] = Value::String(b64.encode(p));
                    out.push(v.to_string());
                } else if mode == Mode::Replay as u8 {
                    let old = kept.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    for s in old.iter().rev().chain(old.iter()) {
                        out.push(s.clone());
                    }
                } else {
                    v["from"] = Value::String("00".repeat(16));
                    out.push(v.to_string());
                }
                for s in out {
                    delivered.fetch_add(1, Ordering::SeqCst);
                    if down_tx.send(Message::Text(s.into())).await.is_err() { return }
                }
            }
        }
    }
}
