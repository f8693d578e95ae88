//! Zero-copy STUN message decoding (RFC 8489 §5–§6, with RFC 3489 "classic" framing).
//!
//! [`Message::parse`] validates the whole datagram once — header, length, every attribute
//! header, FINGERPRINT placement and CRC — and then hands out borrowed attribute views. It
//! never allocates, so a hostile datagram costs at most one linear pass over its bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::attr;

/// The fixed value in bytes 4..8 of every RFC 5389/8489 message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Size of the STUN header in bytes.
pub const HEADER_LEN: usize = 20;
/// XOR applied to the CRC-32 in a FINGERPRINT attribute ("STUN" in ASCII).
pub const FINGERPRINT_XOR: u32 = 0x5354_554e;
/// Upper bound on attributes in one message; a datagram with more is rejected, not walked.
pub const MAX_ATTRIBUTES: usize = 64;

/// Why a datagram is not an acceptable STUN message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Shorter than the 20-byte header.
    #[error("datagram of {0} bytes is shorter than a STUN header")]
    Truncated(usize),
    /// The two most significant bits are not zero: another protocol (RTP, DTLS, ...).
    #[error("not a STUN message (leading bits set)")]
    NotStun,
    /// The header's length field is not a multiple of four.
    #[error("message length {0} is not a multiple of 4")]
    UnalignedLength(u16),
    /// The header's length field disagrees with the datagram size.
    #[error("header says {declared} bytes of attributes, datagram carries {actual}")]
    LengthMismatch {
        /// Length from the header.
        declared: usize,
        /// Bytes actually present after the header.
        actual: usize,
    },
    /// An attribute header claims more bytes than remain in the message.
    #[error("attribute 0x{0:04x} overruns the message")]
    AttributeOverrun(u16),
    /// More than [`MAX_ATTRIBUTES`] attributes.
    #[error("more than {MAX_ATTRIBUTES} attributes")]
    TooManyAttributes,
    /// FINGERPRINT is present but is not the last attribute.
    #[error("FINGERPRINT is not the last attribute")]
    FingerprintNotLast,
    /// FINGERPRINT value does not match the message's CRC-32.
    #[error("FINGERPRINT does not match")]
    BadFingerprint,
    /// An attribute's value has the wrong size or an unknown address family.
    #[error("attribute 0x{0:04x} is malformed")]
    MalformedAttribute(u16),
}

/// The four STUN message classes (RFC 8489 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// A request, answered by a success or error response.
    Request,
    /// A one-way indication, never answered.
    Indication,
    /// A success response.
    Success,
    /// An error response.
    Error,
}

/// A decoded message type: 12-bit method plus class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageType {
    /// The method (0x001 is Binding).
    pub method: u16,
    /// The class.
    pub class: Class,
}

/// The Binding method.
pub const METHOD_BINDING: u16 = 0x001;

impl MessageType {
    /// A Binding request.
    pub const BINDING_REQUEST: Self = Self { method: METHOD_BINDING, class: Class::Request };
    /// A Binding success response.
    pub const BINDING_SUCCESS: Self = Self { method: METHOD_BINDING, class: Class::Success };
    /// A Binding error response.
    pub const BINDING_ERROR: Self = Self { method: METHOD_BINDING, class: Class::Error };

    /// Splits the 14-bit wire value into method and class (the bits are interleaved).
    pub fn from_bits(bits: u16) -> Self {
        let class = match ((bits >> 7) & 0b10) | ((bits >> 4) & 0b01) {
            0b00 => Class::Request,
            0b01 => Class::Indication,
            0b10 => Class::Success,
            _ => Class::Error,
        };
        let method = (bits & 0x000f) | ((bits >> 1) & 0x0070) | ((bits >> 2) & 0x0f80);
        Self { method, class }
    }

    /// The 14-bit wire value.
    pub fn to_bits(self) -> u16 {
        let c = match self.class {
            Class::Request => 0b00,
            Class::Indication => 0b01,
            Class::Success => 0b10,
            Class::Error => 0b11,
        };
        let m = self.method & 0x0fff;
        (m & 0x000f) | ((m & 0x0070) << 1) | ((m & 0x0f80) << 2) | ((c & 0b01) << 4) | ((c & 0b10) << 7)
    }
}

/// The 128 bits after the message length: magic cookie plus 96-bit id, or (RFC 3489) a
/// 128-bit id. Kept whole so a response echoes exactly what the client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransactionId(pub [u8; 16]);

impl TransactionId {
    /// An RFC 8489 id: the magic cookie followed by `id`.
    pub fn new(id: [u8; 12]) -> Self {
        let mut raw = [0u8; 16];
        raw[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        raw[4..].copy_from_slice(&id);
        Self(raw)
    }

    /// True when the id starts with the magic cookie (an RFC 5389/8489 client).
    pub fn has_cookie(&self) -> bool {
        self.0[..4] == MAGIC_COOKIE.to_be_bytes()
    }
}

/// One attribute as it sits in the message: type and unpadded value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAttribute<'a> {
    /// Attribute type; below 0x8000 means comprehension-required.
    pub typ: u16,
    /// The value without padding.
    pub value: &'a [u8],
}

/// A validated, borrowed STUN message.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    bytes: &'a [u8],
    typ: MessageType,
    txid: TransactionId,
}

impl<'a> Message<'a> {
    /// Validates `bytes` as one complete STUN message.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        if bytes.len() < HEADER_LEN {
            return Err(DecodeError::Truncated(bytes.len()));
        }
        if bytes[0] & 0xc0 != 0 {
            return Err(DecodeError::NotStun);
        }
        let bits = u16::from_be_bytes([bytes[0], bytes[1]]);
        let declared = u16::from_be_bytes([bytes[2], bytes[3]]);
        if !declared.is_multiple_of(4) {
            return Err(DecodeError::UnalignedLength(declared));
        }
        let actual = bytes.len() - HEADER_LEN;
        if usize::from(declared) != actual {
            return Err(DecodeError::LengthMismatch { declared: declared.into(), actual });
        }
        let mut txid = [0u8; 16];
        txid.copy_from_slice(&bytes[4..HEADER_LEN]);
        let msg = Self { bytes, typ: MessageType::from_bits(bits), txid: TransactionId(txid) };
        msg.validate_attributes()?;
        Ok(msg)
    }

    /// Walks every attribute header once and checks FINGERPRINT.
    fn validate_attributes(&self) -> Result<(), DecodeError> {
        let mut offset = HEADER_LEN;
        let mut count = 0usize;
        while offset < self.bytes.len() {
            let (typ, len) = attr_header(self.bytes, offset).ok_or(DecodeError::AttributeOverrun(0))?;
            let padded = (len + 3) & !3;
            let value_at = offset + 4;
            if value_at + padded > self.bytes.len() {
                return Err(DecodeError::AttributeOverrun(typ));
            }
            count += 1;
            if count > MAX_ATTRIBUTES {
                return Err(DecodeError::TooManyAttributes);
            }
            if typ == attr::FINGERPRINT {
                if value_at + padded != self.bytes.len() {
                    return Err(DecodeError::FingerprintNotLast);
                }
                if len != 4 {
                    return Err(DecodeError::MalformedAttribute(typ));
                }
                let want = u32::from_be_bytes([
                    self.bytes[value_at],
                    self.bytes[value_at + 1],
                    self.bytes[value_at + 2],
                    self.bytes[value_at + 3],
                ]);
                if fingerprint(&self.bytes[..offset]) != want {
                    return Err(DecodeError::BadFingerprint);
                }
            }
            offset = value_at + padded;
        }
        Ok(())
    }

    /// Method and class.
    pub fn message_type(&self) -> MessageType {
        self.typ
    }

    /// The transaction id (with the cookie for RFC 8489 clients).
    pub fn transaction_id(&self) -> TransactionId {
        self.txid
    }

    /// True for an RFC 3489 ("classic") message without the magic cookie.
    pub fn is_classic(&self) -> bool {
        !self.txid.has_cookie()
    }

    /// The raw message bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The attributes in wire order.
    pub fn attributes(&self) -> Attributes<'a> {
        Attributes { bytes: self.bytes, offset: HEADER_LEN }
    }

    /// The first attribute of type `typ`, if any.
    pub fn attribute(&self, typ: u16) -> Option<&'a [u8]> {
        self.attributes().find(|a| a.typ == typ).map(|a| a.value)
    }

    /// Decodes XOR-MAPPED-ADDRESS, the client's reflexive address.
    pub fn xor_mapped_address(&self) -> Result<Option<SocketAddr>, DecodeError> {
        self.attribute(attr::XOR_MAPPED_ADDRESS)
            .map(|v| decode_xor_address(attr::XOR_MAPPED_ADDRESS, v, &self.txid))
            .transpose()
    }

    /// Decodes a plain address attribute (MAPPED-ADDRESS, OTHER-ADDRESS, ...).
    pub fn address(&self, typ: u16) -> Result<Option<SocketAddr>, DecodeError> {
        self.attribute(typ).map(|v| decode_address(typ, v)).transpose()
    }

    /// Decodes ERROR-CODE into (code, reason).
    pub fn error_code(&self) -> Result<Option<(u16, &'a str)>, DecodeError> {
        let Some(v) = self.attribute(attr::ERROR_CODE) else { return Ok(None) };
        if v.len() < 4 {
            return Err(DecodeError::MalformedAttribute(attr::ERROR_CODE));
        }
        let code = u16::from(v[2] & 0x07) * 100 + u16::from(v[3]);
        let reason = std::str::from_utf8(&v[4..]).map_err(|_| DecodeError::MalformedAttribute(attr::ERROR_CODE))?;
        Ok(Some((code, reason)))
    }
}

/// Iterator over a validated message's attributes.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = RawAttribute<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let (typ, len) = attr_header(self.bytes, self.offset)?;
        let value = self.bytes.get(self.offset + 4..self.offset + 4 + len)?;
        self.offset += 4 + ((len + 3) & !3);
        Some(RawAttribute { typ, value })
    }
}

/// Reads (type, length) of the attribute header at `offset`, if four bytes remain.
fn attr_header(bytes: &[u8], offset: usize) -> Option<(u16, usize)> {
    let h = bytes.get(offset..offset + 4)?;
    Some((u16::from_be_bytes([h[0], h[1]]), usize::from(u16::from_be_bytes([h[2], h[3]]))))
}

/// CRC-32 of `bytes` XOR'd with "STUN" (RFC 8489 §14.7). `bytes` must already carry a
/// header length that counts the FINGERPRINT attribute.
pub fn fingerprint(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes) ^ FINGERPRINT_XOR
}

/// Decodes a MAPPED-ADDRESS-shaped value (family, port, address).
pub fn decode_address(typ: u16, v: &[u8]) -> Result<SocketAddr, DecodeError> {
    let bad = DecodeError::MalformedAttribute(typ);
    let port = u16::from_be_bytes([*v.get(2).ok_or(bad)?, *v.get(3).ok_or(bad)?]);
    match (v[1], v.len()) {
        (0x01, 8) => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(v[4], v[5], v[6], v[7])), port)),
        (0x02, 20) => {
            let mut ip = [0u8; 16];
            ip.copy_from_slice(&v[4..20]);
            Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => Err(bad),
    }
}

/// Decodes an XOR-MAPPED-ADDRESS-shaped value against the transaction id.
pub fn decode_xor_address(typ: u16, v: &[u8], txid: &TransactionId) -> Result<SocketAddr, DecodeError> {
    let plain = decode_address(typ, v)?;
    Ok(xor_address(plain, txid))
}

/// Applies (and, being an involution, removes) the RFC 8489 §14.2 address XOR.
pub fn xor_address(addr: SocketAddr, txid: &TransactionId) -> SocketAddr {
    let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    match addr.ip() {
        IpAddr::V4(ip) => {
            let x = u32::from(ip) ^ MAGIC_COOKIE;
            SocketAddr::new(IpAddr::V4(Ipv4Addr::from(x)), port)
        }
        IpAddr::V6(ip) => {
            let mut o = ip.octets();
            for (b, k) in o.iter_mut().zip(txid.0.iter()) {
                *b ^= k;
            }
            SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_bits_round_trip() {
        for bits in 0u16..0x4000 {
            assert_eq!(MessageType::from_bits(bits).to_bits(), bits);
        }
        assert_eq!(MessageType::BINDING_REQUEST.to_bits(), 0x0001);
        assert_eq!(MessageType::BINDING_SUCCESS.to_bits(), 0x0101);
        assert_eq!(MessageType::BINDING_ERROR.to_bits(), 0x0111);
        assert_eq!(MessageType::from_bits(0x0011).class, Class::Indication);
    }

    #[test]
    fn rejects_short_and_foreign() {
        assert_eq!(Message::parse(&[0; 19]).unwrap_err(), DecodeError::Truncated(19));
        let mut rtp = [0u8; 20];
        rtp[0] = 0x80;
        assert_eq!(Message::parse(&rtp).unwrap_err(), DecodeError::NotStun);
    }

    #[test]
    fn rejects_length_lies() {
        let mut m = [0u8; 24];
        m[1] = 1;
        m[3] = 8; // claims 8 bytes, has 4
        assert!(matches!(Message::parse(&m).unwrap_err(), DecodeError::LengthMismatch { .. }));
        m[3] = 2;
        assert_eq!(Message::parse(&m).unwrap_err(), DecodeError::UnalignedLength(2));
        m[3] = 4;
        m[20..24].copy_from_slice(&[0x80, 0x22, 0x00, 0x08]); // SOFTWARE of 8 bytes, 0 present
        assert_eq!(Message::parse(&m).unwrap_err(), DecodeError::AttributeOverrun(0x8022));
    }
}
