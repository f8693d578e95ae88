//! A WebSocket connection's socket and buffers: the tokio edge around [`crate::ws`].
//!
//! Both buffers exist only while they hold bytes. An idle connection waits on socket
//! readiness with nothing allocated; a busy one reads many frames per `read` and writes
//! everything queued with one `write`.

use std::io;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::ws::{self, Event, FrameError};

/// Most bytes read per wakeup (then frames are handled and the loop comes back).
const READ_CHUNK: usize = 16 * 1024;

/// How long a closing connection waits for the peer's close reply.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Why a connection ends.
#[derive(Debug)]
pub(super) enum End {
    /// The peer closed the TCP stream or the socket failed.
    Gone,
    /// The peer sent a close frame (already answered).
    Closed,
    /// The peer broke the framing rules.
    Frame(FrameError),
    /// More unsent output than allowed: the peer does not read.
    Backlog,
}

/// A socket with framing state.
pub(super) struct Link {
    io: TcpStream,
    rbuf: Vec<u8>,
    dec: ws::Decoder,
    out: Vec<u8>,
    wpos: usize,
    max_out: usize,
}

/// One step of reading: the bytes it used and the event, if the frame completed one.
pub(super) type Decoded<'a> = Option<(usize, Option<Event<'a>>)>;

impl Link {
    /// Wraps an upgraded socket; `prefix` is what the HTTP layer read past the request.
    pub(super) fn new(io: TcpStream, prefix: &[u8], max_message: usize, max_out: usize) -> Self {
        Self { io, rbuf: prefix.to_vec(), dec: ws::Decoder::new(max_message), out: Vec::new(), wpos: 0, max_out }
    }

    /// Queues a text message.
    pub(super) fn text(&mut self, text: &str) {
        ws::encode(ws::opcode::TEXT, text.as_bytes(), &mut self.out);
    }

    /// Queues a control or data frame.
    pub(super) fn frame(&mut self, opcode: u8, payload: &[u8]) {
        ws::encode(opcode, payload, &mut self.out);
    }

    /// The output queue, to append whole frames to.
    pub(super) fn out(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Decodes the next frame from the read buffer, from offset `pos`.
    pub(super) fn decode(&mut self, pos: usize) -> Result<Decoded<'_>, FrameError> {
        let buf = self.rbuf.get_mut(pos..).unwrap_or_default();
        self.dec.decode(buf)
    }

    /// Drops the first `n` bytes read; frees the buffer when nothing is left.
    pub(super) fn consume(&mut self, n: usize) {
        if n >= self.rbuf.len() {
            self.rbuf = Vec::new();
        } else {
            self.rbuf.drain(..n);
        }
    }

    /// Writes as much queued output as the socket takes now.
    pub(super) fn flush(&mut self) -> Result<(), End> {
        while self.wpos < self.out.len() {
            match self.io.try_write(&self.out[self.wpos..]) {
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return Err(End::Gone),
            }
        }
        if self.wpos == self.out.len() {
            self.out = Vec::new();
            self.wpos = 0;
        } else if self.out.len() - self.wpos > self.max_out {
            return Err(End::Backlog);
        }
        Ok(())
    }

    /// Waits until the socket can be read (or written, while output is pending), then reads
    /// what is there. Returns after each wakeup, true if the peer sent bytes; the caller
    /// decodes, then calls again.
    pub(super) async fn wait(&mut self) -> Result<bool, End> {
        let interest = if self.out.is_empty() { Interest::READABLE } else { Interest::READABLE | Interest::WRITABLE };
        let ready = self.io.ready(interest).await.map_err(|_| End::Gone)?;
        let mut heard = false;
        if ready.is_readable() {
            self.rbuf.reserve(READ_CHUNK);
            match self.io.try_read_buf(&mut self.rbuf) {
                Ok(0) => return Err(End::Gone),
                Ok(_) => heard = true,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Err(End::Gone),
            }
            if self.rbuf.is_empty() {
                self.rbuf = Vec::new();
            }
        }
        self.flush()?;
        Ok(heard)
    }

    /// Sends a close frame after any queued output, waits (briefly) for the peer's close
    /// reply, then shuts the socket. Closing with unread bytes would make the kernel send RST,
    /// which can destroy our close frame before the peer reads the reason.
    pub(super) async fn close(&mut self, code: u16, reason: &str) {
        ws::encode_close(code, reason, &mut self.out);
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            let mut peer_closed = false;
            while !(peer_closed && self.out.is_empty()) {
                if self.wait().await.is_err() {
                    return;
                }
                let mut pos = 0;
                loop {
                    match self.decode(pos) {
                        Ok(Some((n, ev))) => {
                            peer_closed |= matches!(ev, Some(Event::Close(_)));
                            pos += n;
                        }
                        Ok(None) => break,
                        Err(_) => return,
                    }
                }
                self.consume(pos);
            }
        })
        .await;
        let _ = self.flush();
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut self.io).await;
    }

    /// Answers the peer's close frame (echoing its code) and flushes, briefly.
    pub(super) async fn answer_close(&mut self, code: Option<u16>) {
        match code {
            Some(c) => ws::encode_close(c, "", &mut self.out),
            None => ws::encode(ws::opcode::CLOSE, &[], &mut self.out),
        }
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while !self.out.is_empty() {
                if self.wait().await.is_err() {
                    return;
                }
            }
        })
        .await;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut self.io).await;
    }
}
