//! Batched UDP I/O: `recvmmsg`/`sendmmsg` through nix's safe wrappers.
//!
//! One system call moves up to [`BATCH`] datagrams, which is where a small STUN server
//! spends its time (the protocol work per datagram is a few hundred nanoseconds; a syscall
//! costs more). Buffers are owned here and reused, so the hot loop allocates only the tiny
//! per-call slice-header vectors nix's lifetimes require.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use nix::sys::socket::{recvmmsg, sendmmsg, MsgFlags, MultiHeaders, SockaddrStorage};

/// Datagrams per system call.
pub const BATCH: usize = 32;
/// Largest datagram read; a longer one is truncated by the kernel and then fails parsing.
pub const MAX_DATAGRAM: usize = 2048;

/// Receive buffers and headers for one socket-reading thread.
pub struct RecvBatch {
    headers: MultiHeaders<SockaddrStorage>,
    bufs: Vec<[u8; MAX_DATAGRAM]>,
    meta: Vec<(usize, Option<SocketAddr>)>,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch").field("received", &self.meta.len()).finish()
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        Self {
            headers: MultiHeaders::preallocate(BATCH, None),
            bufs: vec![[0u8; MAX_DATAGRAM]; BATCH],
            meta: Vec::with_capacity(BATCH),
        }
    }
}

impl RecvBatch {
    /// Receives up to [`BATCH`] datagrams: waits for the first (subject to the socket's read
    /// timeout or non-blocking mode), then takes whatever else is queued.
    pub fn recv(&mut self, sock: &impl AsRawFd) -> io::Result<usize> {
        self.meta.clear();
        let mut slices: Vec<[IoSliceMut<'_>; 1]> =
            self.bufs.iter_mut().map(|b| [IoSliceMut::new(&mut b[..])]).collect();
        let res = recvmmsg(sock.as_raw_fd(), &mut self.headers, slices.iter_mut(), MsgFlags::MSG_WAITFORONE, None)
            .map_err(io::Error::from)?;
        for m in res {
            self.meta.push((m.bytes, m.address.and_then(to_std)));
        }
        Ok(self.meta.len())
    }

    /// The `i`-th received datagram and its source (`None` for an unknown address family).
    pub fn get(&self, i: usize) -> Option<(&[u8], Option<SocketAddr>)> {
        let (len, from) = *self.meta.get(i)?;
        Some((&self.bufs[i][..len.min(MAX_DATAGRAM)], from))
    }

    /// Datagrams from the last [`RecvBatch::recv`].
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    /// True when the last receive returned nothing.
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }
}

/// Outgoing datagrams collected during one batch, flushed with `sendmmsg`.
pub struct SendBatch {
    headers: MultiHeaders<SockaddrStorage>,
    bufs: Vec<[u8; MAX_DATAGRAM]>,
    lens: Vec<usize>,
    addrs: Vec<Option<SockaddrStorage>>,
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch").field("queued", &self.lens.len()).finish()
    }
}

impl Default for SendBatch {
    fn default() -> Self {
        Self {
            headers: MultiHeaders::preallocate(BATCH, None),
            bufs: vec![[0u8; MAX_DATAGRAM]; BATCH],
            lens: Vec::with_capacity(BATCH),
            addrs: Vec::with_capacity(BATCH),
        }
    }
}

impl SendBatch {
    /// The buffer for the next datagram, or `None` when the batch is full.
    pub fn next_buf(&mut self) -> Option<&mut [u8; MAX_DATAGRAM]> {
        self.bufs.get_mut(self.lens.len())
    }

    /// Commits `len` bytes of the buffer from [`SendBatch::next_buf`], to `to` (`None` on a
    /// connected socket).
    pub fn push(&mut self, len: usize, to: Option<SocketAddr>) {
        if self.lens.len() < BATCH {
            self.lens.push(len.min(MAX_DATAGRAM));
            self.addrs.push(to.map(SockaddrStorage::from));
        }
    }

    /// Queued datagrams.
    pub fn len(&self) -> usize {
        self.lens.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }

    /// Sends everything queued; returns (sent, failed). A datagram the kernel refuses is
    /// skipped so one bad destination cannot wedge the batch.
    pub fn flush(&mut self, sock: &impl AsRawFd) -> (usize, usize) {
        let (mut sent, mut failed, mut at) = (0, 0, 0);
        while at < self.lens.len() {
            let slices: Vec<[IoSlice<'_>; 1]> = self.bufs[at..self.lens.len()]
                .iter()
                .zip(&self.lens[at..])
                .map(|(b, n)| [IoSlice::new(&b[..*n])])
                .collect();
            let flags = MsgFlags::empty();
            match sendmmsg(sock.as_raw_fd(), &mut self.headers, &slices, &self.addrs[at..], [], flags) {
                Ok(res) => {
                    let n = res.count();
                    if n == 0 {
                        failed += 1;
                        at += 1;
                    } else {
                        sent += n;
                        at += n;
                    }
                }
                Err(_) => {
                    failed += 1;
                    at += 1;
                }
            }
        }
        self.lens.clear();
        self.addrs.clear();
        (sent, failed)
    }
}

fn to_std(s: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = s.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    s.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}
