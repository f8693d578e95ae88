//! Behind a reverse proxy: which peers are trusted proxies (`--trusted-proxy CIDR`), and the
//! client address they pass on: the PROXY protocol header (v1 text or v2 binary, as HAProxy
//! defines it) or `Forwarded` / `X-Forwarded-For`. Sans-IO: bytes and headers in, addresses
//! out. From a peer that is not a trusted proxy none of this is read at all.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::http::HeaderMap;

/// An address block, e.g. `10.0.0.0/8`, `fd00::/8`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

/// A `--trusted-proxy` value that is not an address or `ADDR/PREFIX`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an address block (want ADDR or ADDR/PREFIX): {0:?}")]
pub struct BadCidr(pub String);

impl std::str::FromStr for Cidr {
    type Err = BadCidr;

    fn from_str(s: &str) -> Result<Self, BadCidr> {
        let bad = || BadCidr(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s, None),
        };
        let net = addr.parse::<IpAddr>().map_err(|_| bad())?.to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { net, prefix })
    }
}

impl Cidr {
    /// True if `ip` (IPv4-mapped IPv6 counts as IPv4) is inside this block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                masked(u32::from(n).into(), self.prefix, 32) == masked(u32::from(i).into(), self.prefix, 32)
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => {
                masked(u128::from(n), self.prefix, 128) == masked(u128::from(i), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn masked(bits: u128, prefix: u8, width: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        bits >> (width - prefix)
    }
}

/// The trusted proxies.
#[derive(Debug, Clone, Default)]
pub struct Trusted(Vec<Cidr>);

impl Trusted {
    /// Trusts the peers inside `blocks`.
    pub fn new(blocks: Vec<Cidr>) -> Self {
        Self(blocks)
    }

    /// True if `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client behind `peer` as the forwarding headers say: the rightmost hop that is
    /// not a trusted proxy (hops left of it could be written by the client itself). A hop
    /// that cannot be read (`unknown`, an obfuscated name) ends the walk at the proxy that
    /// reported it. `Forwarded` wins over `X-Forwarded-For` when both are present.
    pub fn client(&self, headers: &HeaderMap, peer: IpAddr) -> IpAddr {
        let forwarded = joined(headers, "forwarded");
        let hops: Vec<Option<IpAddr>> = if forwarded.is_empty() {
            joined(headers, "x-forwarded-for").split(',').filter(|h| !h.trim().is_empty()).map(hop_ip).collect()
        } else {
            forwarded.split(',').map(|e| forwarded_for(e).and_then(hop_ip)).collect()
        };
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            if !self.contains(client) {
                break;
            }
            match hop {
                Some(ip) => client = ip,
                None => break,
            }
        }
        client
    }
}

/// All values of header `name`, joined by commas in order (RFC 9110 §5.3).
fn joined(headers: &HeaderMap, name: &str) -> String {
    let values: Vec<&str> = headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
    values.join(",")
}

/// The `for=` parameter of one `Forwarded` element (RFC 7239).
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case("for").then(|| v.trim().trim_matches('"'))
    })
}

/// One hop's address: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`.
fn hop_ip(hop: &str) -> Option<IpAddr> {
    let h = hop.trim();
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(sa) = h.parse::<SocketAddr>() {
        return Some(sa.ip().to_canonical());
    }
    h.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|i| i.parse::<Ipv6Addr>().ok())
        .map(|i| IpAddr::V6(i).to_canonical())
}

/// What the first bytes of a trusted proxy's connection hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// Not enough bytes yet to tell or to finish the header.
    NeedMore,
    /// No PROXY header: the connection starts with HTTP.
    Absent,
    /// A PROXY header of `len` bytes; `source` is the client (`None`: the proxy's own
    /// connection, e.g. a health check, `LOCAL` or `UNKNOWN`).
    Proxy {
        /// Bytes to consume.
        len: usize,
        /// The client address.
        source: Option<SocketAddr>,
    },
}

/// A malformed PROXY header (the connection is closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed PROXY protocol header: {0}")]
pub struct BadHeader(pub &'static str);

const V1_PREFIX: &[u8] = b"PROXY ";
/// A v1 header is at most 107 bytes, CRLF included.
const V1_MAX: usize = 107;
const V2_SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// Largest v2 header accepted (address block plus TLVs); real proxies send well under this.
pub const V2_MAX: usize = 16 + 512;

/// Reads a PROXY protocol header at the start of `buf`.
pub fn parse_header(buf: &[u8]) -> Result<Header, BadHeader> {
    // `buf` may hold only the first few bytes of a signature yet.
    let starts = |sig: &[u8]| {
        let n = buf.len().min(sig.len());
        buf[..n] == sig[..n]
    };
    if buf.is_empty() {
        return Ok(Header::NeedMore);
    }
    if starts(V2_SIG) {
        return if buf.len() < 16 { Ok(Header::NeedMore) } else { parse_v2(buf) };
    }
    if starts(V1_PREFIX) {
        // Shorter than the prefix: no CRLF yet, so `parse_v1` asks for more.
        return parse_v1(buf);
    }
    Ok(Header::Absent)
}

fn parse_v1(buf: &[u8]) -> Result<Header, BadHeader> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = window.windows(2).position(|w| w == b"\r\n") else {
        return if buf.len() >= V1_MAX { Err(BadHeader("v1 line too long")) } else { Ok(Header::NeedMore) };
    };
    let line = std::str::from_utf8(&buf[V1_PREFIX.len()..end]).map_err(|_| BadHeader("v1 not ASCII"))?;
    let len = end + 2;
    let f: Vec<&str> = line.split(' ').collect();
    match f.as_slice() {
        ["UNKNOWN", ..] => Ok(Header::Proxy { len, source: None }),
        [proto @ ("TCP4" | "TCP6"), src, _dst, sport, _dport] => {
            let ip: IpAddr = src.parse().map_err(|_| BadHeader("v1 source address"))?;
            if ip.is_ipv4() != (*proto == "TCP4") {
                return Err(BadHeader("v1 address family"));
            }
            let port: u16 = sport.parse().map_err(|_| BadHeader("v1 source port"))?;
            Ok(Header::Proxy { len, source: Some(SocketAddr::new(ip, port)) })
        }
        _ => Err(BadHeader("v1 fields")),
    }
}

fn parse_v2(buf: &[u8]) -> Result<Header, BadHeader> {
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(BadHeader("v2 version"));
    }
    let fam = buf[13];
    let body = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let len = 16 + body;
    if len > V2_MAX {
        return Err(BadHeader("v2 header too long"));
    }
    if buf.len() < len {
        return Ok(Header::NeedMore);
    }
    let a = &buf[16..len];
    match ver_cmd & 0x0f {
        0 => return Ok(Header::Proxy { len, source: None }),
        1 => {}
        _ => return Err(BadHeader("v2 command")),
    }
    let source = match fam >> 4 {
        1 if a.len() >= 12 => {
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([a[8], a[9]])))
        }
        2 if a.len() >= 36 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&a[..16]);
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), u16::from_be_bytes([a[32], a[33]])))
        }
        1 | 2 => return Err(BadHeader("v2 address block too short")),
        // AF_UNSPEC or AF_UNIX: no IP client to count by.
        _ => None,
    };
    Ok(Header::Proxy { len, source: source.map(|s| SocketAddr::new(s.ip().to_canonical(), s.port())) })
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
