//! STUN message encoding into a caller-owned buffer (no allocation on the hot path).

use std::net::{IpAddr, SocketAddr};

use crate::attr;
use crate::message::{fingerprint, xor_address, MessageType, TransactionId, HEADER_LEN};

/// ERROR-CODE value: 4 header bytes and a reason of at most 128 bytes (RFC 8489 §14.8).
const ERROR_CODE_MAX: usize = 4 + 128;
/// UNKNOWN-ATTRIBUTES value: at most 16 types of 2 bytes.
const UNKNOWN_MAX: usize = 2 * 16;

/// The buffer is too small for what was being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("STUN output buffer too small")]
pub struct BufferTooSmall;

/// Builds one message in place; the header length is kept current after every attribute.
#[derive(Debug)]
pub struct MessageWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> MessageWriter<'b> {
    /// Starts a message of type `typ` with transaction id `txid` at the front of `buf`.
    pub fn new(buf: &'b mut [u8], typ: MessageType, txid: &TransactionId) -> Result<Self, BufferTooSmall> {
        let head = buf.get_mut(..HEADER_LEN).ok_or(BufferTooSmall)?;
        head[..2].copy_from_slice(&typ.to_bits().to_be_bytes());
        head[2..4].copy_from_slice(&[0, 0]);
        head[4..].copy_from_slice(&txid.0);
        Ok(Self { buf, len: HEADER_LEN })
    }

    /// Appends one attribute with `value`, zero-padded to a four-byte boundary.
    pub fn raw(&mut self, typ: u16, value: &[u8]) -> Result<&mut Self, BufferTooSmall> {
        let vlen = u16::try_from(value.len()).map_err(|_| BufferTooSmall)?;
        let padded = (value.len() + 3) & !3;
        let end = self.len + 4 + padded;
        let dst = self.buf.get_mut(self.len..end).ok_or(BufferTooSmall)?;
        dst[..2].copy_from_slice(&typ.to_be_bytes());
        dst[2..4].copy_from_slice(&vlen.to_be_bytes());
        dst[4..4 + value.len()].copy_from_slice(value);
        dst[4 + value.len()..].fill(0);
        self.len = end;
        self.set_length()?;
        Ok(self)
    }

    /// Appends a MAPPED-ADDRESS-shaped attribute.
    pub fn address(&mut self, typ: u16, addr: SocketAddr) -> Result<&mut Self, BufferTooSmall> {
        let mut v = [0u8; 20];
        v[2..4].copy_from_slice(&addr.port().to_be_bytes());
        let n = match addr.ip() {
            IpAddr::V4(ip) => {
                v[1] = 0x01;
                v[4..8].copy_from_slice(&ip.octets());
                8
            }
            IpAddr::V6(ip) => {
                v[1] = 0x02;
                v[4..20].copy_from_slice(&ip.octets());
                20
            }
        };
        self.raw(typ, &v[..n])
    }

    /// Appends an XOR-MAPPED-ADDRESS-shaped attribute, XOR'd with this message's id.
    pub fn xor_address(&mut self, typ: u16, addr: SocketAddr) -> Result<&mut Self, BufferTooSmall> {
        let mut id = [0u8; 16];
        id.copy_from_slice(&self.buf[4..HEADER_LEN]);
        self.address(typ, xor_address(addr, &TransactionId(id)))
    }

    /// Appends ERROR-CODE (RFC 8489 §14.8).
    pub fn error_code(&mut self, code: u16, reason: &str) -> Result<&mut Self, BufferTooSmall> {
        let reason = reason.as_bytes();
        let mut v = [0u8; ERROR_CODE_MAX];
        let n = reason.len().min(128);
        // `code / 100` is 3..=6 for valid codes; masked so a bad caller can't set reserved bits.
        v[2] = ((code / 100) & 0x07) as u8;
        v[3] = (code % 100) as u8;
        v[4..4 + n].copy_from_slice(&reason[..n]);
        self.raw(attr::ERROR_CODE, &v[..4 + n])
    }

    /// Appends UNKNOWN-ATTRIBUTES listing `types`.
    pub fn unknown_attributes(&mut self, types: &[u16]) -> Result<&mut Self, BufferTooSmall> {
        let mut v = [0u8; UNKNOWN_MAX];
        let n = types.len().min(16);
        for (i, t) in types.iter().take(n).enumerate() {
            v[2 * i..2 * i + 2].copy_from_slice(&t.to_be_bytes());
        }
        self.raw(attr::UNKNOWN_ATTRIBUTES, &v[..2 * n])
    }

    /// Appends FINGERPRINT and returns the finished length.
    pub fn finish_with_fingerprint(mut self) -> Result<usize, BufferTooSmall> {
        let at = self.len;
        // The length field must already count the FINGERPRINT attribute when the CRC is taken.
        self.raw(attr::FINGERPRINT, &[0; 4])?;
        let crc = fingerprint(&self.buf[..at]);
        self.buf[at + 4..at + 8].copy_from_slice(&crc.to_be_bytes());
        Ok(self.len)
    }

    /// Bytes written so far (header included).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing but the header is written.
    pub fn is_empty(&self) -> bool {
        self.len <= HEADER_LEN
    }

    /// Returns the finished length (no FINGERPRINT).
    pub fn finish(self) -> usize {
        self.len
    }

    /// Writes the attribute length into the header.
    fn set_length(&mut self) -> Result<(), BufferTooSmall> {
        let body = u16::try_from(self.len - HEADER_LEN).map_err(|_| BufferTooSmall)?;
        self.buf[2..4].copy_from_slice(&body.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;

    /// RFC 5769 §2.2: the IPv4 sample response, rebuilt from its parts, must match
    /// byte-for-byte (SOFTWARE, XOR-MAPPED-ADDRESS, FINGERPRINT; MESSAGE-INTEGRITY omitted,
    /// so only the layout and XOR are compared on the prefix).
    #[test]
    fn rfc5769_xor_mapped_address_v4() {
        let txid = TransactionId::new([0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae]);
        let mut buf = [0u8; 128];
        let mut w = MessageWriter::new(&mut buf, MessageType::BINDING_SUCCESS, &txid).unwrap();
        w.raw(attr::SOFTWARE, b"test vector ").unwrap();
        w.xor_address(attr::XOR_MAPPED_ADDRESS, "192.0.2.1:32853".parse().unwrap()).unwrap();
        let n = w.finish_with_fingerprint().unwrap();
        // From RFC 5769 §2.2: the XOR-MAPPED-ADDRESS attribute bytes.
        let expect_xma = [0x00, 0x20, 0x00, 0x08, 0x00, 0x01, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43];
        assert_eq!(&buf[36..48], &expect_xma);
        let m = Message::parse(&buf[..n]).unwrap();
        assert_eq!(m.xor_mapped_address().unwrap(), Some("192.0.2.1:32853".parse().unwrap()));
    }

    /// RFC 5769 §2.3: the IPv6 sample's XOR-MAPPED-ADDRESS bytes.
    #[test]
    fn rfc5769_xor_mapped_address_v6() {
        let txid = TransactionId::new([0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae]);
        let mut buf = [0u8; 128];
        let mut w = MessageWriter::new(&mut buf, MessageType::BINDING_SUCCESS, &txid).unwrap();
        w.xor_address(attr::XOR_MAPPED_ADDRESS, "[2001:db8:1234:5678:11:2233:4455:6677]:32853".parse().unwrap())
            .unwrap();
        let n = w.finish();
        let expect = [
            0x00, 0x20, 0x00, 0x14, 0x00, 0x02, 0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25,
            0xf4, 0xb5, 0xbe, 0xd2, 0xb9, 0xd9,
        ];
        assert_eq!(&buf[20..n], &expect);
    }

    /// RFC 5769 §2.1 sample request: our parser accepts it and its FINGERPRINT checks out.
    #[test]
    fn rfc5769_sample_request_parses() {
        let req: [u8; 108] = [
            0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87,
            0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73, 0x74, 0x20, 0x63, 0x6c,
            0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f,
            0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76,
            0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e,
            0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
        ];
        let m = Message::parse(&req).unwrap();
        assert_eq!(m.message_type(), MessageType::BINDING_REQUEST);
        assert_eq!(m.attributes().count(), 6);
        let mut bad = req;
        bad[107] ^= 1;
        assert_eq!(Message::parse(&bad).unwrap_err(), crate::DecodeError::BadFingerprint);
    }

    #[test]
    fn too_small_buffer_is_an_error() {
        let mut buf = [0u8; 30];
        let txid = TransactionId::new([1; 12]);
        let mut w = MessageWriter::new(&mut buf, MessageType::BINDING_SUCCESS, &txid).unwrap();
        assert_eq!(w.address(attr::MAPPED_ADDRESS, "[::1]:1".parse().unwrap()).unwrap_err(), BufferTooSmall);
        assert_eq!(
            MessageWriter::new(&mut [0u8; 10], MessageType::BINDING_SUCCESS, &txid).unwrap_err(),
            BufferTooSmall
        );
    }
}
