//! Hearth's WebRTC layer (`node::webrtc::conn::Conn`, str0m under it) driven with raw SDP,
//! for interoperability tests against independent stacks (aiortc, Chromium), which cannot
//! seal Hearth's envelopes or speak its Noise session.
//!
//! `hearth-webrtc-echo --bind IP (--offer | --answer) [--secs N]`: JSON lines on stdin and
//! stdout. With `--answer` it reads `{"type":"offer","sdp":…}` and prints the answer; with
//! `--offer` it prints an offer and reads the answer. Once the data channel opens it sends
//! `hello from hearth`, answers every message `M` with `echo:M`, and prints each event as
//! `{"event":"open"|"message"|"closed",…}`. It stops when the channel closes or after N
//! seconds (default 30).

use std::io::BufRead;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hearth_peer::node::webrtc::conn::{certificate, Conn, ConnEvent};
use serde_json::{json, Value};
use str0m::Candidate;

fn say(v: Value) {
    println!("{v}");
}

fn read_sdp(kind: &str) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading stdin")?;
    let v: Value = serde_json::from_str(&line).context("a JSON line")?;
    if v["type"] != kind {
        bail!("expected a {kind}, got {v}");
    }
    v["sdp"].as_str().map(str::to_owned).context("no sdp")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let ip: IpAddr = arg("--bind").context("--bind IP")?.parse()?;
    let secs: u64 = arg("--secs").map_or(Ok(30), |s| s.parse())?;
    let offering = args.iter().any(|a| a == "--offer");
    let sock = hearth_peer::node::webrtc::gather::udp_socket(SocketAddr::new(ip, 0))?;
    let local = sock.local_addr()?;
    let cert = certificate().context("DTLS certificate")?;
    let candidates = vec![Candidate::host(local, "udp")?];
    let now = Instant::now();
    let mut conn = if offering {
        let (mut conn, offer) = Conn::offer(now, &cert, candidates)?;
        say(json!({"type": "offer", "sdp": offer}));
        conn.accept_answer(Instant::now(), &read_sdp("answer")?)?;
        conn
    } else {
        let (conn, answer) = Conn::answer(now, &cert, candidates, &read_sdp("offer")?)?;
        say(json!({"type": "answer", "sdp": answer}));
        conn
    };
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut buf = vec![0u8; 65536];
    loop {
        while let Some(ev) = conn.poll_event() {
            match ev {
                ConnEvent::Transmit { destination, contents, .. } => {
                    let _ = sock.send_to(&contents, destination).await;
                }
                ConnEvent::Open => {
                    say(json!({"event": "open"}));
                    conn.send(Instant::now(), b"hello from hearth".to_vec());
                }
                ConnEvent::Message(m) => {
                    let text = String::from_utf8_lossy(&m).into_owned();
                    say(json!({"event": "message", "text": text}));
                    if !text.starts_with("echo:") {
                        conn.send(Instant::now(), [b"echo:".as_slice(), &m].concat());
                    }
                }
                ConnEvent::Closed => {
                    say(json!({"event": "closed"}));
                    return Ok(());
                }
            }
        }
        let wake = tokio::time::Instant::from_std(conn.deadline()).min(end);
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                let (n, from) = r?;
                conn.receive(Instant::now(), from, local, &buf[..n]);
            }
            () = tokio::time::sleep_until(wake) => {
                if tokio::time::Instant::now() >= end {
                    say(json!({"event": "timeout"}));
                    return Ok(());
                }
                conn.timeout(Instant::now());
            }
        }
    }
}
