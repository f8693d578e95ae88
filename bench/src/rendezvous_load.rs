//! The relay load generator: raw WebSocket frames built once and patched in place (a
//! 16-hex-digit send time), read back by scanning frame headers. Per message it does a
//! small fraction of either server's work, so the server under test sets the pace.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hearth_rendezvous::client::Identity;
use hearth_rendezvous::protocol::{self, ServerMsg};
use hearth_rendezvous::ws;
use rand::RngCore;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A client WebSocket on a bare socket.
pub(crate) struct RawWs {
    io: TcpStream,
    buf: Vec<u8>,
    mask: [u8; 4],
}

/// A server frame found in a buffer: opcode, payload range, total length.
fn server_frame(buf: &[u8]) -> Option<(u8, std::ops::Range<usize>, usize)> {
    let [b0, b1, ..] = *buf else { return None };
    let (len, at) = match b1 & 0x7F {
        126 => (u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize, 10),
        n => (n as usize, 2),
    };
    (buf.len() >= at + len).then_some((b0 & 0x0F, at..at + len, at + len))
}

impl RawWs {
    /// Connects and upgrades at `path`.
    pub(crate) async fn connect(addr: SocketAddr, path: &str) -> anyhow::Result<Self> {
        let mut io = TcpStream::connect(addr).await?;
        io.set_nodelay(true)?;
        let mut key = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut key);
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            protocol::to_b64(&key)
        );
        io.write_all(req.as_bytes()).await?;
        let mut buf = Vec::with_capacity(1024);
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            io.readable().await?;
            match io.try_read_buf(&mut buf) {
                Ok(0) => bail!("{addr} closed during the upgrade"),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e.into()),
            }
        };
        if !buf.starts_with(b"HTTP/1.1 101") {
            bail!("upgrade refused: {}", String::from_utf8_lossy(&buf[..end]));
        }
        buf.drain(..end);
        let mut mask = [0u8; 4];
        rand::thread_rng().fill_bytes(&mut mask);
        Ok(Self { io, buf, mask })
    }

    /// Sends one text message.
    pub(crate) async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        let mut f = Vec::new();
        ws::encode_masked(ws::opcode::TEXT, text.as_bytes(), self.mask, &mut f);
        Ok(self.io.write_all(&f).await?)
    }

    /// Reads what the socket has now; false at end of stream.
    async fn fill(&mut self) -> anyhow::Result<bool> {
        self.io.readable().await?;
        self.buf.reserve(64 * 1024);
        match self.io.try_read_buf(&mut self.buf) {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// Receives the next text message (setup only: allocates).
    pub(crate) async fn recv_text(&mut self) -> anyhow::Result<String> {
        loop {
            if let Some((op, body, used)) = server_frame(&self.buf) {
                let text = String::from_utf8(self.buf[body].to_vec());
                self.buf.drain(..used);
                match op {
                    1 => return Ok(text?),
                    8 => bail!("server closed the connection"),
                    _ => continue,
                }
            }
            if !self.fill().await? {
                bail!("connection closed");
            }
        }
    }

    /// Reads and discards until the connection ends (an idle client that still listens).
    pub(crate) async fn drain(mut self) {
        while let Ok(true) = self.fill().await {
            self.each_text(|_| {});
        }
    }

    /// Calls `f` with the payload of every whole text frame read so far, then drops them.
    fn each_text(&mut self, mut f: impl FnMut(&[u8])) {
        let mut pos = 0;
        while let Some((op, body, used)) = server_frame(&self.buf[pos..]) {
            if op == 1 {
                f(&self.buf[pos + body.start..pos + body.end]);
            }
            pos += used;
        }
        self.buf.drain(..pos);
    }
}

/// Joins a Hearth vault room as `id`; returns the socket and the device id (hex).
pub(crate) async fn hearth_join(addr: SocketAddr, id: &Identity) -> anyhow::Result<(RawWs, String)> {
    let mut ws = RawWs::connect(addr, "/v1/signal").await?;
    let ServerMsg::Challenge { nonce, .. } = serde_json::from_str(&ws.recv_text().await?)? else {
        bail!("expected a challenge");
    };
    let nonce = protocol::from_b64(&nonce).context("nonce")?;
    let hello = protocol::sign_hello(&id.root, &id.record, &id.device_key, &nonce, &addr.to_string());
    ws.send_text(&serde_json::to_string(&hello)?).await?;
    loop {
        match serde_json::from_str(&ws.recv_text().await?)? {
            ServerMsg::Welcome { device, .. } => return Ok((ws, device)),
            ServerMsg::Presence { .. } => continue,
            other => bail!("not admitted: {other:?}"),
        }
    }
}

/// Registers with a PeerJS server as `id`.
pub(crate) async fn peerjs_join(addr: SocketAddr, id: &str) -> anyhow::Result<RawWs> {
    let mut ws = RawWs::connect(addr, &format!("/peerjs?key=peerjs&id={id}&token=t{id}")).await?;
    let open = ws.recv_text().await?;
    if !open.contains("\"OPEN\"") {
        bail!("PeerJS did not open: {open}");
    }
    Ok(ws)
}

/// A message to send again and again, with the place of its send time.
#[derive(Clone)]
pub(crate) struct Template {
    frame: Vec<u8>,
    /// Offset of the 16 hex digits of the send time in `frame`.
    stamp_at: usize,
    /// Offset of the frame's payload (masking is relative to it).
    body_at: usize,
    mask: [u8; 4],
    /// What precedes the send time in the relayed message.
    marker: &'static [u8],
}

/// The 16 digits that stand for the send time in a template.
const STAMP: &str = "0000000000000000";

impl Template {
    /// `text` must contain `marker` followed by [`STAMP`].
    fn new(text: &str, marker: &'static [u8], mask: [u8; 4]) -> anyhow::Result<Self> {
        let at = text.find(std::str::from_utf8(marker)?).context("marker")? + marker.len();
        let mut frame = Vec::new();
        ws::encode_masked(ws::opcode::TEXT, text.as_bytes(), mask, &mut frame);
        let body_at = frame.len() - text.len();
        Ok(Self { frame, stamp_at: body_at + at, body_at, mask, marker })
    }

    /// A Hearth `signal` to device `to` with a 244-character base64-alphabet payload.
    pub(crate) fn hearth(to: &str, mask: [u8; 4]) -> anyhow::Result<Self> {
        let text = format!(r#"{{"type":"signal","to":"{to}","payload":"{STAMP}{}"}}"#, "A".repeat(228));
        Self::new(&text, b"\"payload\":\"", mask)
    }

    /// A PeerJS `OFFER` to `dst` carrying the same amount of data.
    pub(crate) fn peerjs(dst: &str, mask: [u8; 4]) -> anyhow::Result<Self> {
        let text =
            format!(r#"{{"type":"OFFER","dst":"{dst}","payload":{{"t":"{STAMP}","sdp":"{}"}}}}"#, "A".repeat(228));
        Self::new(&text, b"\"t\":\"", mask)
    }

    /// Appends the frame stamped with `t`.
    fn stamp_into(&self, t: u64, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&self.frame);
        for j in 0..16 {
            let nibble = (t >> (60 - 4 * j)) & 0xF;
            let digit = b"0123456789abcdef"[nibble as usize];
            let i = self.stamp_at + j;
            out[start + i] = digit ^ self.mask[(i - self.body_at) % 4];
        }
    }

    /// The send time in a relayed message, if it carries one.
    fn stamp_of(&self, msg: &[u8]) -> Option<u64> {
        let at = msg.windows(self.marker.len()).position(|w| w == self.marker)? + self.marker.len();
        u64::from_str_radix(std::str::from_utf8(msg.get(at..at + 16)?).ok()?, 16).ok()
    }
}

/// One sender→receiver pair's run.
pub(crate) struct Pair {
    /// Sends.
    pub(crate) tx: RawWs,
    /// Receives.
    pub(crate) rx: RawWs,
    /// What the sender sends.
    pub(crate) template: Template,
}

/// Sends `n` messages with at most `window` in flight, at most one per `pace` if given,
/// starting at `start`; returns each message's latency in µs. Gives up after `limit`.
pub(crate) async fn run_pair(
    mut p: Pair,
    n: usize,
    window: usize,
    pace: Option<Duration>,
    origin: Instant,
    start: Instant,
    limit: Duration,
) -> anyhow::Result<(Vec<u32>, Pair)> {
    tokio::time::sleep_until(start.into()).await;
    let deadline = Instant::now() + limit;
    let mut lat = Vec::with_capacity(n);
    let (mut sent, mut out, mut next_send) = (0usize, Vec::new(), start);
    while lat.len() < n {
        let now = Instant::now();
        if now > deadline {
            bail!("pair stalled: {} of {n} messages arrived", lat.len());
        }
        while sent < n && sent - lat.len() < window && pace.is_none_or(|_| now >= next_send) {
            p.template.stamp_into(origin.elapsed().as_micros() as u64, &mut out);
            sent += 1;
            if let Some(iv) = pace {
                next_send += iv;
            }
        }
        if !out.is_empty() {
            p.tx.io.write_all(&out).await?;
            out.clear();
        }
        let can_send = sent < n && sent - lat.len() < window;
        tokio::select! {
            r = p.rx.fill() => {
                if !r? {
                    bail!("receiver closed");
                }
                let t = &p.template;
                p.rx.each_text(|m| {
                    if let Some(s) = t.stamp_of(m) {
                        lat.push(origin.elapsed().as_micros().saturating_sub(u128::from(s)) as u32);
                    }
                });
            }
            // The sender also hears presence updates; keep its socket drained.
            r = p.tx.fill() => {
                if !r? {
                    bail!("sender closed");
                }
                p.tx.each_text(|_| {});
            }
            _ = tokio::time::sleep_until(next_send.into()), if pace.is_some() && can_send => {}
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
    }
    Ok((lat, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamped_frame_carries_its_time_through_masking() {
        let t = Template::hearth(&"ab".repeat(16), [1, 2, 3, 4]).unwrap();
        let mut out = Vec::new();
        t.stamp_into(0x0123_4567_89ab_cdef, &mut out);
        let mut dec = ws::Decoder::new(1 << 16);
        let Some((_, Some(ws::Event::Text(text)))) = dec.decode(&mut out).unwrap() else { panic!("one text frame") };
        assert!(text.contains("\"payload\":\"0123456789abcdef"), "{text}");
        assert_eq!(t.stamp_of(text.as_bytes()), Some(0x0123_4567_89ab_cdef));
    }
}
