//! The sans-IO Binding handler: one datagram in, at most one response out.
//!
//! [`BindingHandler::handle`] reads no clock and touches no socket. The caller passes the
//! datagram, who sent it and which local address it arrived on, plus a buffer to write the
//! response into; it gets back an [`Outcome`] naming the response length and which of the
//! server's addresses must send it (RFC 5780 CHANGE-REQUEST may ask for another one).

use std::net::{IpAddr, SocketAddr};

use crate::attr;
use crate::message::{Class, DecodeError, Message, MessageType, METHOD_BINDING};
use crate::writer::{BufferTooSmall, MessageWriter};

/// A buffer of this size always holds any response the handler writes.
pub const MAX_RESPONSE_LEN: usize = 512;

/// The RFC 5780 address pair: the primary address and the alternate one. With both, the
/// server listens on all four combinations of (primary IP, alternate IP) × (primary port,
/// alternate port), so it can answer "from another IP and/or port".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlternatePair {
    /// Primary address (IP A1, port P1).
    pub primary: SocketAddr,
    /// Alternate address (IP A2, port P2); differs from `primary` in both IP and port.
    pub alternate: SocketAddr,
}

/// Why an [`AlternatePair`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AlternateError {
    /// RFC 5780 needs two distinct IPs and two distinct ports.
    #[error("alternate {alternate} must differ from primary {primary} in both IP and port")]
    NotDistinct {
        /// Primary address.
        primary: SocketAddr,
        /// Alternate address.
        alternate: SocketAddr,
    },
    /// A wildcard address cannot be reported to clients as RESPONSE-ORIGIN / OTHER-ADDRESS.
    #[error("RFC 5780 needs concrete addresses, not the wildcard {0}")]
    Unspecified(SocketAddr),
    /// Primary and alternate are of different address families.
    #[error("primary {0} and alternate {1} are of different address families")]
    MixedFamilies(SocketAddr, SocketAddr),
}

impl AlternatePair {
    /// Checks that the two addresses can form the RFC 5780 quad.
    pub fn new(primary: SocketAddr, alternate: SocketAddr) -> Result<Self, AlternateError> {
        for a in [primary, alternate] {
            if a.ip().is_unspecified() {
                return Err(AlternateError::Unspecified(a));
            }
        }
        if primary.is_ipv4() != alternate.is_ipv4() {
            return Err(AlternateError::MixedFamilies(primary, alternate));
        }
        if primary.ip() == alternate.ip() || primary.port() == alternate.port() {
            return Err(AlternateError::NotDistinct { primary, alternate });
        }
        Ok(Self { primary, alternate })
    }

    /// The four local addresses the server must bind.
    pub fn quad(&self) -> [SocketAddr; 4] {
        let (a1, a2, p1, p2) = (self.primary.ip(), self.alternate.ip(), self.primary.port(), self.alternate.port());
        [SocketAddr::new(a1, p1), SocketAddr::new(a1, p2), SocketAddr::new(a2, p1), SocketAddr::new(a2, p2)]
    }

    /// True when `local` is one of the quad's addresses.
    pub fn contains(&self, local: SocketAddr) -> bool {
        self.quad().contains(&local)
    }

    /// `local` with its IP and/or port swapped for the other one of the pair.
    fn flip(&self, local: SocketAddr, ip: bool, port: bool) -> SocketAddr {
        let other_ip = |i: IpAddr| if i == self.primary.ip() { self.alternate.ip() } else { self.primary.ip() };
        let other_port = |p: u16| if p == self.primary.port() { self.alternate.port() } else { self.primary.port() };
        SocketAddr::new(
            if ip { other_ip(local.ip()) } else { local.ip() },
            if port { other_port(local.port()) } else { local.port() },
        )
    }
}

/// What the server should do with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Send `len` bytes of the output buffer to the client, from local address `from`.
    Reply {
        /// Bytes of the output buffer to send.
        len: usize,
        /// The local address the response must leave from.
        from: SocketAddr,
        /// Whether this is a success or an error response.
        kind: ReplyKind,
    },
    /// Send nothing.
    Drop(DropReason),
}

/// Success or error response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyKind {
    /// Binding success response.
    Success,
    /// Error response (400 or 420).
    Error,
}

/// Why a datagram was dropped without a response (each is a metrics label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not STUN at all (bad leading bits, too short).
    NotStun,
    /// STUN-shaped but malformed (lengths, attributes).
    Malformed,
    /// FINGERPRINT present and wrong.
    BadFingerprint,
    /// An indication (never answered).
    Indication,
    /// A response (a server does not answer responses).
    Response,
    /// Over the per-source rate limit (decided by the caller, listed here for metrics).
    RateLimited,
    /// A request of a method other than Binding: not answered, so a forged source address
    /// cannot turn the server into a reflector for error responses.
    OtherMethod,
    /// The reply would be 3× the request or more (a guard; no request shape served reaches it).
    Amplification,
}

impl DropReason {
    /// Every reason, for pre-registering metric labels.
    pub const ALL: [DropReason; 8] = [
        DropReason::NotStun,
        DropReason::Malformed,
        DropReason::BadFingerprint,
        DropReason::Indication,
        DropReason::Response,
        DropReason::RateLimited,
        DropReason::OtherMethod,
        DropReason::Amplification,
    ];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::NotStun => "not_stun",
            DropReason::Malformed => "malformed",
            DropReason::BadFingerprint => "bad_fingerprint",
            DropReason::Indication => "indication",
            DropReason::Response => "response",
            DropReason::RateLimited => "rate_limited",
            DropReason::OtherMethod => "other_method",
            DropReason::Amplification => "amplification",
        }
    }

    fn from_decode(e: DecodeError) -> Self {
        match e {
            DecodeError::Truncated(_) | DecodeError::NotStun => DropReason::NotStun,
            DecodeError::BadFingerprint => DropReason::BadFingerprint,
            _ => DropReason::Malformed,
        }
    }
}

/// Configuration of the Binding handler.
#[derive(Debug, Clone, Default)]
pub struct BindingConfig {
    /// Text for the SOFTWARE attribute (RFC 8489 clients only); `None` omits it.
    pub software: Option<String>,
    /// The RFC 5780 address pair, if the server has a second IP and port.
    pub alternate: Option<AlternatePair>,
}

/// The Binding request handler. Immutable after construction, so every server thread can
/// share one through a plain reference.
#[derive(Debug, Clone)]
pub struct BindingHandler {
    config: BindingConfig,
}

/// A reply is always less than this many times the size of its request (reflection bound).
pub const MAX_AMPLIFICATION: usize = 3;

/// CHANGE-REQUEST flag bits (RFC 5780 §7.2).
const CHANGE_IP: u32 = 0x4;
const CHANGE_PORT: u32 = 0x2;

impl BindingHandler {
    /// A handler with `config`.
    pub fn new(config: BindingConfig) -> Self {
        Self { config }
    }

    /// The configuration.
    pub fn config(&self) -> &BindingConfig {
        &self.config
    }

    /// Handles one datagram from `from` that arrived on local address `local`, writing any
    /// response into `out` (at least [`MAX_RESPONSE_LEN`] bytes).
    pub fn handle(&self, from: SocketAddr, local: SocketAddr, datagram: &[u8], out: &mut [u8]) -> Outcome {
        let msg = match Message::parse(datagram) {
            Ok(m) => m,
            Err(e) => return Outcome::Drop(DropReason::from_decode(e)),
        };
        let typ = msg.message_type();
        match typ.class {
            Class::Request => {}
            Class::Indication => return Outcome::Drop(DropReason::Indication),
            Class::Success | Class::Error => return Outcome::Drop(DropReason::Response),
        }
        if typ.method != METHOD_BINDING {
            return Outcome::Drop(DropReason::OtherMethod);
        }
        // A buffer too small for our own bounded responses is a caller bug; drop rather than panic.
        match self.respond(&msg, from, local, out) {
            Ok(Outcome::Reply { len, .. }) if len >= MAX_AMPLIFICATION * datagram.len() => {
                Outcome::Drop(DropReason::Amplification)
            }
            Ok(o) => o,
            Err(BufferTooSmall) => Outcome::Drop(DropReason::Malformed),
        }
    }

    /// SOFTWARE, when configured and when the reply stays under the amplification bound
    /// with it (and the FINGERPRINT the request asked for): minimal requests go without it.
    fn software(&self, w: &mut MessageWriter<'_>, room: &Room) -> Result<(), BufferTooSmall> {
        if let Some(s) = &self.config.software {
            let b = software_bytes(s);
            if room.fits(w, 4 + b.len().next_multiple_of(4)) {
                w.raw(attr::SOFTWARE, b)?;
            }
        }
        Ok(())
    }

    fn respond(
        &self,
        msg: &Message<'_>,
        from: SocketAddr,
        local: SocketAddr,
        out: &mut [u8],
    ) -> Result<Outcome, BufferTooSmall> {
        let mut unknown = [0u16; 16];
        let mut n_unknown = 0;
        let mut change = 0u32;
        for a in msg.attributes() {
            if a.typ == attr::CHANGE_REQUEST {
                let Ok(bytes) = <[u8; 4]>::try_from(a.value) else {
                    return self.error(msg, local, 400, "Bad Request", &[], out);
                };
                change = u32::from_be_bytes(bytes) & (CHANGE_IP | CHANGE_PORT);
            } else if attr::comprehension_required(a.typ)
                && !attr::understood_in_binding_request(a.typ)
                && n_unknown < unknown.len()
            {
                unknown[n_unknown] = a.typ;
                n_unknown += 1;
            }
        }
        // RFC 5780 §6.1: a server with no alternate address treats CHANGE-REQUEST as unknown.
        let alternate = self.config.alternate.filter(|p| p.contains(local) && p.primary.is_ipv4() == from.is_ipv4());
        if change != 0 && alternate.is_none() && n_unknown < unknown.len() {
            unknown[n_unknown] = attr::CHANGE_REQUEST;
            n_unknown += 1;
        }
        if n_unknown > 0 {
            return self.error(msg, local, 420, "Unknown Attribute", &unknown[..n_unknown], out);
        }
        let origin = match alternate {
            Some(p) => p.flip(local, change & CHANGE_IP != 0, change & CHANGE_PORT != 0),
            None => local,
        };
        let mut w = MessageWriter::new(out, MessageType::BINDING_SUCCESS, &msg.transaction_id())?;
        if msg.is_classic() {
            // RFC 3489 clients read only the plain attributes of their own era.
            w.address(attr::MAPPED_ADDRESS, from)?;
            if let Some(p) = alternate {
                w.address(attr::SOURCE_ADDRESS, origin)?;
                w.address(attr::CHANGED_ADDRESS, p.flip(local, true, true))?;
            }
            return Ok(Outcome::Reply { len: w.finish(), from: origin, kind: ReplyKind::Success });
        }
        let room = Room::for_request(msg);
        w.xor_address(attr::XOR_MAPPED_ADDRESS, from)?;
        // RFC 5780's two addresses are informational: left out of a reply to a request too
        // small to justify them (an IPv6 pair triples a bare 20-byte request).
        let per_addr = if origin.is_ipv4() { 12 } else { 24 };
        if let Some(p) = alternate.filter(|_| room.fits(&w, 2 * per_addr)) {
            w.address(attr::RESPONSE_ORIGIN, origin)?;
            w.address(attr::OTHER_ADDRESS, p.flip(local, true, true))?;
        }
        self.software(&mut w, &room)?;
        Ok(Outcome::Reply { len: room.finish(w)?, from: origin, kind: ReplyKind::Success })
    }

    fn error(
        &self,
        msg: &Message<'_>,
        local: SocketAddr,
        code: u16,
        reason: &str,
        unknown: &[u16],
        out: &mut [u8],
    ) -> Result<Outcome, BufferTooSmall> {
        let typ = MessageType { method: msg.message_type().method, class: Class::Error };
        let mut w = MessageWriter::new(out, typ, &msg.transaction_id())?;
        w.error_code(code, reason)?;
        if !unknown.is_empty() {
            w.unknown_attributes(unknown)?;
        }
        let len = if msg.is_classic() {
            w.finish()
        } else {
            let room = Room::for_request(msg);
            self.software(&mut w, &room)?;
            room.finish(w)?
        };
        Ok(Outcome::Reply { len, from: local, kind: ReplyKind::Error })
    }
}

/// The reflection budget of one reply: under [`MAX_AMPLIFICATION`] × the request, with a
/// FINGERPRINT when the request carried one or when it fits.
struct Room {
    limit: usize,
    fingerprint: bool,
}

impl Room {
    fn for_request(msg: &Message<'_>) -> Self {
        Self {
            limit: MAX_AMPLIFICATION * msg.as_bytes().len(),
            fingerprint: msg.attribute(attr::FINGERPRINT).is_some(),
        }
    }

    /// True when `extra` more bytes and a FINGERPRINT after them stay under the limit (the
    /// FINGERPRINT, which lets clients demultiplex, goes before anything optional).
    fn fits(&self, w: &MessageWriter<'_>, extra: usize) -> bool {
        w.len() + extra + 8 < self.limit
    }

    fn finish(&self, w: MessageWriter<'_>) -> Result<usize, BufferTooSmall> {
        if self.fingerprint || w.len() + 8 < self.limit {
            w.finish_with_fingerprint()
        } else {
            Ok(w.finish())
        }
    }
}

/// SOFTWARE is capped at 128 bytes by RFC 8489 §14.14 (cut on a char boundary).
fn software_bytes(s: &str) -> &[u8] {
    let mut end = s.len().min(128);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s.as_bytes()[..end]
}

#[cfg(test)]
mod tests {
    use super::{software_bytes, Room};
    use crate::message::{MessageType, TransactionId};
    use crate::writer::MessageWriter;

    /// `fits` and `finish` at the exact edge of the budget: a reply must stay *under* the
    /// limit, FINGERPRINT (8 bytes) counted, and a FINGERPRINT the request carried is always
    /// answered with one.
    #[test]
    fn the_reflection_budget_is_exact() {
        let txid = TransactionId::new([1; 12]);
        let mut buf = [0u8; 64];
        let w = MessageWriter::new(&mut buf, MessageType::BINDING_SUCCESS, &txid).unwrap();
        assert_eq!(w.len(), 20);
        // 20 + 4 + 8 = 32 must be strictly under the limit.
        assert!(Room { limit: 33, fingerprint: false }.fits(&w, 4));
        assert!(!Room { limit: 32, fingerprint: false }.fits(&w, 4));
        assert!(!Room { limit: 31, fingerprint: false }.fits(&w, 4));
        // finish: 20 + 8 = 28 under the limit adds FINGERPRINT, at it does not.
        let finish = |limit: usize, fingerprint: bool| {
            let mut buf = [0u8; 64];
            let w = MessageWriter::new(&mut buf, MessageType::BINDING_SUCCESS, &txid).unwrap();
            Room { limit, fingerprint }.finish(w).unwrap()
        };
        assert_eq!(finish(29, false), 28);
        assert_eq!(finish(28, false), 20);
        assert_eq!(finish(27, false), 20);
        assert_eq!(finish(0, true), 28, "asked for: always");
        assert_eq!(finish(1_000, true), 28);
    }

    #[test]
    fn software_is_cut_at_128_bytes_on_a_char_boundary() {
        assert_eq!(software_bytes("hearth"), b"hearth");
        let ascii = "a".repeat(200);
        assert_eq!(software_bytes(&ascii).len(), 128);
        // 'é' is two bytes: byte 128 falls inside the 64th one when preceded by one 'a'.
        let s = format!("a{}", "é".repeat(100));
        let cut = software_bytes(&s);
        assert_eq!(cut.len(), 127);
        assert!(std::str::from_utf8(cut).is_ok());
    }
}
