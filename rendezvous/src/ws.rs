//! WebSocket framing (RFC 6455 §5), server side, sans-IO: bytes in, events out.
//!
//! The server owns its framing instead of using a general WebSocket library so that an idle
//! connection holds no buffers at all (the read buffer is released whenever it is drained)
//! and a busy one reads and writes many frames per system call. Only what a signaling relay
//! needs is here: no extensions (RSV bits must be 0), masked client frames, fragmented
//! messages up to a size limit, ping/pong and the close handshake.

use std::borrow::Cow;

/// Frame opcodes (RFC 6455 §5.2).
pub mod opcode {
    /// Continuation of a fragmented message.
    pub const CONTINUATION: u8 = 0x0;
    /// UTF-8 text.
    pub const TEXT: u8 = 0x1;
    /// Binary data.
    pub const BINARY: u8 = 0x2;
    /// Close handshake.
    pub const CLOSE: u8 = 0x8;
    /// Ping.
    pub const PING: u8 = 0x9;
    /// Pong.
    pub const PONG: u8 = 0xA;
}

/// Why a client's bytes are not acceptable WebSocket frames. Each maps to a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// RSV bits set without a negotiated extension.
    #[error("reserved bits set")]
    Reserved,
    /// Client frames must be masked (RFC 6455 §5.1).
    #[error("client frame not masked")]
    Unmasked,
    /// An opcode RFC 6455 does not define.
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    /// A control frame that is fragmented or longer than 125 bytes.
    #[error("malformed control frame")]
    BadControl,
    /// A message longer than the limit.
    #[error("message too large")]
    TooBig,
    /// A continuation with no message started, or a new message before the last finished.
    #[error("bad fragmentation")]
    BadFragment,
    /// A text message that is not UTF-8.
    #[error("text is not valid UTF-8")]
    NotUtf8,
    /// A close frame with a one-byte body or an invalid reason.
    #[error("malformed close frame")]
    BadClose,
}

impl FrameError {
    /// The close code that reports this error (RFC 6455 §7.4.1).
    pub fn close_code(self) -> u16 {
        match self {
            FrameError::TooBig => 1009,
            FrameError::NotUtf8 => 1007,
            _ => 1002,
        }
    }
}

/// One complete message or control frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// A whole text message.
    Text(Cow<'a, str>),
    /// A whole binary message (the relay accepts text only; the contents are not kept).
    Binary,
    /// A ping with its payload (to echo in the pong).
    Ping(&'a [u8]),
    /// A pong.
    Pong,
    /// The peer closes, with its code if it gave one.
    Close(Option<u16>),
}

/// Decodes client frames. Holds only the parts of a fragmented message in progress.
#[derive(Debug)]
pub struct Decoder {
    max: usize,
    /// A fragmented message being assembled: its opcode and bytes so far.
    partial: Option<(u8, Vec<u8>)>,
}

/// A parsed frame header.
struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    header_len: usize,
    len: usize,
}

fn parse_header(buf: &[u8], max: usize) -> Result<Option<Header>, FrameError> {
    let [b0, b1, ..] = *buf else { return Ok(None) };
    if b0 & 0x70 != 0 {
        return Err(FrameError::Reserved);
    }
    let opcode = b0 & 0x0F;
    let fin = b0 & 0x80 != 0;
    match opcode {
        opcode::CONTINUATION | opcode::TEXT | opcode::BINARY => {}
        opcode::CLOSE | opcode::PING | opcode::PONG => {
            if !fin || b1 & 0x7F > 125 {
                return Err(FrameError::BadControl);
            }
        }
        other => return Err(FrameError::UnknownOpcode(other)),
    }
    if b1 & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let (len, at) = match b1 & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            Some(b) => (u64::from_be_bytes(b), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    // Refuse before the body arrives: an oversized frame is never buffered.
    let len = usize::try_from(len).ok().filter(|l| *l <= max).ok_or(FrameError::TooBig)?;
    let Some(mask) = buf.get(at..at + 4).and_then(|m| <[u8; 4]>::try_from(m).ok()) else { return Ok(None) };
    Ok(Some(Header { fin, opcode, mask, header_len: at + 4, len }))
}

fn unmask(data: &mut [u8], mask: [u8; 4]) {
    // Word at a time: the relay unmasks every byte it forwards.
    let m = u32::from_ne_bytes(mask);
    let mut chunks = data.chunks_exact_mut(4);
    for c in &mut chunks {
        let w = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ m;
        c.copy_from_slice(&w.to_ne_bytes());
    }
    for (b, k) in chunks.into_remainder().iter_mut().zip(mask) {
        *b ^= k;
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, FrameError> {
    std::str::from_utf8(bytes).map_err(|_| FrameError::NotUtf8)
}

impl Decoder {
    /// A decoder accepting messages of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self { max, partial: None }
    }

    /// Decodes the first frame in `buf` (unmasking it in place). Returns the bytes it used and
    /// the event it completed (`None` for a non-final fragment), or `Ok(None)` when `buf`
    /// does not yet hold a whole frame.
    pub fn decode<'a>(&'a mut self, buf: &'a mut [u8]) -> Result<Option<(usize, Option<Event<'a>>)>, FrameError> {
        let Some(h) = parse_header(buf, self.max)? else { return Ok(None) };
        let end = h.header_len + h.len;
        let Some(body) = buf.get_mut(h.header_len..end) else { return Ok(None) };
        unmask(body, h.mask);
        let body: &'a [u8] = body;
        let event = match h.opcode {
            opcode::PING => Some(Event::Ping(body)),
            opcode::PONG => Some(Event::Pong),
            opcode::CLOSE => Some(Event::Close(close_code(body)?)),
            opcode::CONTINUATION => {
                let Some((_, parts)) = self.partial.as_mut() else { return Err(FrameError::BadFragment) };
                if parts.len() + body.len() > self.max {
                    return Err(FrameError::TooBig);
                }
                parts.extend_from_slice(body);
                if !h.fin {
                    return Ok(Some((end, None)));
                }
                let Some((op, parts)) = self.partial.take() else { return Err(FrameError::BadFragment) };
                Some(whole_owned(op, parts)?)
            }
            op => {
                if self.partial.is_some() {
                    return Err(FrameError::BadFragment);
                }
                if !h.fin {
                    self.partial = Some((op, body.to_vec()));
                    return Ok(Some((end, None)));
                }
                Some(if op == opcode::TEXT { Event::Text(Cow::Borrowed(utf8(body)?)) } else { Event::Binary })
            }
        };
        Ok(Some((end, event)))
    }
}

fn whole_owned<'a>(op: u8, parts: Vec<u8>) -> Result<Event<'a>, FrameError> {
    if op != opcode::TEXT {
        return Ok(Event::Binary);
    }
    String::from_utf8(parts).map(|s| Event::Text(Cow::Owned(s))).map_err(|_| FrameError::NotUtf8)
}

fn close_code(body: &[u8]) -> Result<Option<u16>, FrameError> {
    match body {
        [] => Ok(None),
        [a, b, reason @ ..] => {
            utf8(reason).map_err(|_| FrameError::BadClose)?;
            let code = u16::from_be_bytes([*a, *b]);
            // RFC 6455 §7.4: 1005, 1006 and 1015 are never sent, 1004 and 1016–2999 are
            // reserved, below 1000 unused: such a close is a protocol error, not echoed.
            if !is_sendable_close(code) {
                return Err(FrameError::BadClose);
            }
            Ok(Some(code))
        }
        [_] => Err(FrameError::BadClose),
    }
}

/// True for close codes an endpoint may put on the wire (RFC 6455 §7.4.1, IANA registry).
pub fn is_sendable_close(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Appends a frame header (FIN set) for a payload of `len` bytes.
fn header(opcode: u8, len: usize, masked: bool, out: &mut Vec<u8>) {
    let mask_bit = if masked { 0x80 } else { 0 };
    out.push(0x80 | opcode);
    match len {
        0..=125 => out.push(mask_bit | len as u8),
        126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

/// Appends an unmasked server frame (FIN set) to `out`.
pub fn encode(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(payload.len() + 10);
    header(opcode, payload.len(), false, out);
    out.extend_from_slice(payload);
}

/// A whole text frame, ready to queue for any number of connections.
pub fn text_frame(text: &str) -> bytes::Bytes {
    let mut out = Vec::with_capacity(text.len() + 10);
    encode(opcode::TEXT, text.as_bytes(), &mut out);
    out.into()
}

/// Appends a close frame with `code` and `reason` (cut to fit a control frame).
pub fn encode_close(code: u16, reason: &str, out: &mut Vec<u8>) {
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut body = Vec::with_capacity(2 + cut);
    body.extend_from_slice(&code.to_be_bytes());
    body.extend_from_slice(&reason.as_bytes()[..cut]);
    encode(opcode::CLOSE, &body, out);
}

/// Client-side framing: masks `payload` with `mask` (tests and the load generator).
pub fn encode_masked(opcode: u8, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    out.reserve(payload.len() + 14);
    header(opcode, payload.len(), true, out);
    out.extend_from_slice(&mask);
    let at = out.len();
    out.extend_from_slice(payload);
    unmask(&mut out[at..], mask);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_all(dec: &mut Decoder, mut buf: Vec<u8>) -> Result<Vec<String>, FrameError> {
        let mut pos = 0;
        let mut out = Vec::new();
        while let Some((n, ev)) = dec.decode(&mut buf[pos..])? {
            out.push(format!("{ev:?}"));
            pos += n;
        }
        Ok(out)
    }

    #[test]
    fn masked_text_round_trip() {
        let mut buf = Vec::new();
        encode_masked(opcode::TEXT, b"hello", [1, 2, 3, 4], &mut buf);
        let mut dec = Decoder::new(100);
        let (n, ev) = dec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(n, 11);
        assert_eq!(ev, Some(Event::Text(Cow::Borrowed("hello"))));
    }

    #[test]
    fn rfc6455_example_frames() {
        // §5.7: a masked "Hello" and an unmasked one (refused from a client).
        let mut masked = vec![0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let mut dec = Decoder::new(100);
        assert_eq!(dec.decode(&mut masked).unwrap().unwrap().1, Some(Event::Text("Hello".into())));
        let mut unmasked = vec![0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(dec.decode(&mut unmasked), Err(FrameError::Unmasked));
        let mut out = Vec::new();
        encode(opcode::TEXT, b"Hello", &mut out);
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    }

    #[test]
    fn fragments_assemble_with_control_frames_between() {
        let mut buf = Vec::new();
        let mut first = Vec::new();
        encode_masked(opcode::TEXT, b"hel", [9, 8, 7, 6], &mut first);
        first[0] &= 0x7F; // not final
        buf.extend(first);
        encode_masked(opcode::PING, b"p", [1, 1, 1, 1], &mut buf);
        encode_masked(opcode::CONTINUATION, b"lo", [5, 5, 5, 5], &mut buf);
        let got = decode_all(&mut Decoder::new(100), buf).unwrap();
        assert_eq!(got, ["None", "Some(Ping([112]))", "Some(Text(\"hello\"))"]);
    }

    #[test]
    fn limits_and_protocol_errors() {
        let frame = |op: u8, body: &[u8]| {
            let mut b = Vec::new();
            encode_masked(op, body, [3, 1, 4, 1], &mut b);
            b
        };
        let mut dec = Decoder::new(4);
        assert_eq!(dec.decode(&mut frame(opcode::TEXT, b"12345")), Err(FrameError::TooBig));
        // Refused from the header alone, before the body arrives.
        assert_eq!(dec.decode(&mut [0x81, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0]), Err(FrameError::TooBig));
        assert_eq!(dec.decode(&mut frame(opcode::TEXT, &[0xFF])), Err(FrameError::NotUtf8));
        assert_eq!(dec.decode(&mut frame(opcode::CONTINUATION, b"x")), Err(FrameError::BadFragment));
        assert_eq!(dec.decode(&mut frame(0x3, b"")), Err(FrameError::UnknownOpcode(3)));
        assert_eq!(dec.decode(&mut frame(opcode::CLOSE, &[3])), Err(FrameError::BadClose));
        let mut rsv = frame(opcode::TEXT, b"a");
        rsv[0] |= 0x40;
        assert_eq!(dec.decode(&mut rsv), Err(FrameError::Reserved));
        let mut frag_ping = frame(opcode::PING, b"");
        frag_ping[0] &= 0x7F;
        assert_eq!(dec.decode(&mut frag_ping), Err(FrameError::BadControl));
        // Fragments that add up past the limit.
        let mut a = frame(opcode::TEXT, b"123");
        a[0] &= 0x7F;
        assert_eq!(dec.decode(&mut a).unwrap().unwrap().1, None);
        assert_eq!(dec.decode(&mut frame(opcode::CONTINUATION, b"45")), Err(FrameError::TooBig));
    }

    /// The boundaries mutation testing found unguarded: close codes per error, the 125-byte
    /// control-frame limit, fragments adding up to exactly the limit, and the exact header
    /// bytes of each length encoding (masked and not).
    #[test]
    fn boundaries_and_exact_headers() {
        assert_eq!(FrameError::TooBig.close_code(), 1009);
        assert_eq!(FrameError::NotUtf8.close_code(), 1007);
        assert_eq!(FrameError::Unmasked.close_code(), 1002);
        let masked = |op: u8, body: &[u8]| {
            let mut b = Vec::new();
            encode_masked(op, body, [7, 7, 7, 7], &mut b);
            b
        };
        let mut dec = Decoder::new(1 << 20);
        assert_eq!(
            dec.decode(&mut masked(opcode::PING, &[1; 125])).unwrap().unwrap().1,
            Some(Event::Ping(&[1; 125][..]))
        );
        assert_eq!(dec.decode(&mut masked(opcode::PING, &[1; 126])), Err(FrameError::BadControl));
        // Fragments of 3 + 2 bytes under a 5-byte limit: exactly at the limit is fine.
        let mut dec = Decoder::new(5);
        let mut first = masked(opcode::TEXT, b"123");
        first[0] &= 0x7F;
        assert_eq!(dec.decode(&mut first).unwrap().unwrap().1, None);
        assert_eq!(
            dec.decode(&mut masked(opcode::CONTINUATION, b"45")).unwrap().unwrap().1,
            Some(Event::Text("12345".into()))
        );
        // Length encodings: 7-bit, 16-bit (126) and 64-bit (127), mask bit as asked.
        for (len, head) in [
            (125usize, vec![0x82, 125]),
            (200, vec![0x82, 126, 0, 200]),
            (70_000, vec![0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]),
        ] {
            let mut out = Vec::new();
            encode(opcode::BINARY, &vec![0; len], &mut out);
            assert_eq!(&out[..head.len()], &head[..], "{len}");
            assert_eq!(out.len(), head.len() + len);
            let m = masked(opcode::BINARY, &vec![0; len]);
            let mut mhead = head.clone();
            mhead[1] |= 0x80;
            assert_eq!(&m[..mhead.len()], &mhead[..], "masked {len}");
            let mut dec = Decoder::new(1 << 20);
            let mut m = m;
            assert_eq!(dec.decode(&mut m).unwrap().unwrap(), (head.len() + 4 + len, Some(Event::Binary)));
        }
    }

    #[test]
    fn reserved_close_codes_are_a_protocol_error() {
        let close = |code: u16| {
            let mut b = Vec::new();
            encode_masked(opcode::CLOSE, &code.to_be_bytes(), [3, 1, 4, 1], &mut b);
            b
        };
        for bad in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            let mut dec = Decoder::new(1 << 16);
            assert_eq!(dec.decode(&mut close(bad)), Err(FrameError::BadClose), "{bad}");
        }
        for good in [1000u16, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999] {
            let mut dec = Decoder::new(1 << 16);
            assert_eq!(dec.decode(&mut close(good)).unwrap().unwrap().1, Some(Event::Close(Some(good))));
        }
        assert_eq!(FrameError::BadClose.close_code(), 1002);
    }

    #[test]
    fn close_frames() {
        let mut out = Vec::new();
        encode_close(1008, &"é".repeat(100), &mut out);
        assert!(out.len() <= 127, "control frames carry at most 125 bytes");
        assert_eq!(&out[2..4], &1008u16.to_be_bytes());
        assert!(std::str::from_utf8(&out[4..]).is_ok(), "reason cut on a character boundary");
    }

    proptest! {
        #[test]
        fn garbage_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut dec = Decoder::new(128);
            let mut pos = 0;
            while let Ok(Some((n, _))) = dec.decode(&mut bytes[pos..]) {
                prop_assert!(n > 0);
                pos += n;
            }
        }

        #[test]
        fn any_split_of_frames_decodes_the_same(
            msgs in proptest::collection::vec("[ -~é]{0,200}", 1..6),
            mask in any::<[u8; 4]>(),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut wire = Vec::new();
            for m in &msgs {
                encode_masked(opcode::TEXT, m.as_bytes(), mask, &mut wire);
            }
            // Feed in two parts, as partial reads would.
            let cut = cut.index(wire.len() + 1);
            let mut dec = Decoder::new(1 << 12);
            let mut buf = wire[..cut].to_vec();
            let mut got = Vec::new();
            let mut pos = 0;
            while let Some((n, ev)) = dec.decode(&mut buf[pos..]).unwrap() {
                if let Some(Event::Text(t)) = ev { got.push(t.into_owned()); }
                pos += n;
            }
            buf.drain(..pos);
            buf.extend_from_slice(&wire[cut..]);
            pos = 0;
            while let Some((n, ev)) = dec.decode(&mut buf[pos..]).unwrap() {
                if let Some(Event::Text(t)) = ev { got.push(t.into_owned()); }
                pos += n;
            }
            prop_assert_eq!(pos, buf.len());
            prop_assert_eq!(got, msgs);
        }
    }
}
