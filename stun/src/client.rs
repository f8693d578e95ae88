//! Client side of a Binding transaction: build requests and read responses (sans-IO), plus
//! one blocking helper for tools and tests.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::attr;
use crate::message::{Class, DecodeError, Message, MessageType, TransactionId, METHOD_BINDING};
use crate::writer::{BufferTooSmall, MessageWriter};

/// Writes a Binding request into `buf`; `change` sets RFC 5780 CHANGE-REQUEST flags
/// (0x4 change IP, 0x2 change port). Returns the length.
pub fn binding_request(buf: &mut [u8], txid: &TransactionId, change: Option<u32>) -> Result<usize, BufferTooSmall> {
    let mut w = MessageWriter::new(buf, MessageType::BINDING_REQUEST, txid)?;
    if let Some(flags) = change {
        w.raw(attr::CHANGE_REQUEST, &flags.to_be_bytes())?;
    }
    w.finish_with_fingerprint()
}

/// What a Binding success response told the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingResponse {
    /// The client's address as the server saw it.
    pub mapped: SocketAddr,
    /// RFC 5780 RESPONSE-ORIGIN: where the response came from.
    pub response_origin: Option<SocketAddr>,
    /// RFC 5780 OTHER-ADDRESS: the server's alternate address.
    pub other_address: Option<SocketAddr>,
}

/// Why a datagram is not the expected Binding response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResponseError {
    /// Not a valid STUN message.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A response to some other transaction.
    #[error("transaction id does not match")]
    WrongTransaction,
    /// Not a Binding success response.
    #[error("unexpected message type {0:?}")]
    UnexpectedType(MessageType),
    /// The server answered with an error.
    #[error("server error {code}: {reason}")]
    ServerError {
        /// ERROR-CODE number.
        code: u16,
        /// ERROR-CODE reason phrase.
        reason: String,
    },
    /// The success response carries no mapped address.
    #[error("response has no (XOR-)MAPPED-ADDRESS")]
    NoMappedAddress,
}

/// Parses `bytes` as the response to the request with `txid`.
pub fn parse_response(bytes: &[u8], txid: &TransactionId) -> Result<BindingResponse, ResponseError> {
    let m = Message::parse(bytes)?;
    if m.transaction_id() != *txid {
        return Err(ResponseError::WrongTransaction);
    }
    let t = m.message_type();
    if t.method == METHOD_BINDING && t.class == Class::Error {
        let (code, reason) = m.error_code()?.unwrap_or((0, ""));
        return Err(ResponseError::ServerError { code, reason: reason.to_owned() });
    }
    if t != MessageType::BINDING_SUCCESS {
        return Err(ResponseError::UnexpectedType(t));
    }
    let mapped = match m.xor_mapped_address()? {
        Some(a) => a,
        None => m.address(attr::MAPPED_ADDRESS)?.ok_or(ResponseError::NoMappedAddress)?,
    };
    Ok(BindingResponse {
        mapped,
        response_origin: m.address(attr::RESPONSE_ORIGIN)?,
        other_address: m.address(attr::OTHER_ADDRESS)?,
    })
}

/// Sends one Binding request from `sock` to `server` and waits up to `timeout` for the
/// matching response (stray datagrams are skipped). Returns the response and its source.
pub fn query(
    sock: &UdpSocket,
    server: SocketAddr,
    change: Option<u32>,
    timeout: Duration,
) -> io::Result<(BindingResponse, SocketAddr)> {
    let txid = TransactionId::new(random_id());
    let mut buf = [0u8; 64];
    let n = binding_request(&mut buf, &txid, change).map_err(io::Error::other)?;
    sock.send_to(&buf[..n], server)?;
    let deadline = Instant::now() + timeout;
    let mut rbuf = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no STUN response"));
        }
        sock.set_read_timeout(Some(left))?;
        let (len, src) = match sock.recv_from(&mut rbuf) {
            Ok(r) => r,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
            Err(e) => return Err(e),
        };
        match parse_response(&rbuf[..len], &txid) {
            Ok(r) => return Ok((r, src)),
            Err(ResponseError::WrongTransaction | ResponseError::Decode(_)) => continue,
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        }
    }
}

/// A transaction id that is unique enough for a client: not a secret, just not repeated.
pub fn random_id() -> [u8; 12] {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let a = h.finish();
    h.write_u64(a);
    let b = h.finish();
    let mut id = [0u8; 12];
    id[..8].copy_from_slice(&a.to_le_bytes());
    id[8..].copy_from_slice(&b.to_le_bytes()[..4]);
    id
}
