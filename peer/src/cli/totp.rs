//! Time-based one-time passwords (RFC 6238 over RFC 4226's HOTP), from what a TOTP field
//! holds: an `otpauth://totp/...` URI, or a bare base32 secret (spaces and case ignored).

use hmac::{Hmac, Mac};

/// The hash a code is computed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA1 (the default, and what nearly every service uses).
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

/// A TOTP generator.
#[derive(Clone, PartialEq, Eq)]
pub struct Totp {
    secret: Vec<u8>,
    /// The hash.
    pub algorithm: Algorithm,
    /// Digits per code (6 to 8).
    pub digits: u32,
    /// Seconds per code.
    pub period: u64,
}

impl std::fmt::Debug for Totp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Totp")
            .field("algorithm", &self.algorithm)
            .field("digits", &self.digits)
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl Drop for Totp {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.secret);
    }
}

/// Why a field is not a TOTP secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    /// Not base32.
    #[error("the secret is not base32 (letters A-Z and digits 2-7)")]
    NotBase32,
    /// An `otpauth://` URI without a secret, or not for TOTP.
    #[error("not an otpauth://totp/ URI with a secret")]
    BadUri,
    /// A parameter out of range.
    #[error("unsupported {0}")]
    Unsupported(&'static str),
}

/// HMAC of `msg` under `key` with hash `$d` (keys of any length are accepted).
macro_rules! hmac_with {
    ($d:ty, $key:expr, $msg:expr) => {
        match Hmac::<$d>::new_from_slice($key) {
            Ok(mut m) => {
                m.update($msg);
                m.finalize().into_bytes().to_vec()
            }
            Err(_) => Vec::new(),
        }
    };
}

impl Totp {
    /// A generator for `secret` (raw bytes) with the usual parameters (SHA-1, 6 digits, 30 s).
    pub fn new(secret: Vec<u8>) -> Self {
        Self { secret, algorithm: Algorithm::Sha1, digits: 6, period: 30 }
    }

    /// Parses what a TOTP field holds: an `otpauth://totp/...` URI or a base32 secret.
    pub fn parse(field: &str) -> Result<Self, TotpError> {
        let field = field.trim();
        let Some(rest) = strip_prefix_ci(field, "otpauth://") else { return Ok(Self::new(base32(field)?)) };
        let rest = strip_prefix_ci(rest, "totp/").ok_or(TotpError::BadUri)?;
        let query = rest.split_once('?').map(|(_, q)| q).ok_or(TotpError::BadUri)?;
        let mut secret = None;
        let mut t = Self::new(Vec::new());
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v);
            match k.to_ascii_lowercase().as_str() {
                "secret" => secret = Some(base32(&v)?),
                "algorithm" => {
                    t.algorithm = match v.to_ascii_uppercase().as_str() {
                        "SHA1" => Algorithm::Sha1,
                        "SHA256" => Algorithm::Sha256,
                        "SHA512" => Algorithm::Sha512,
                        _ => return Err(TotpError::Unsupported("algorithm")),
                    }
                }
                "digits" => {
                    t.digits = v.parse().ok().filter(|d| (6..=8).contains(d)).ok_or(TotpError::Unsupported("digits"))?
                }
                "period" => t.period = v.parse().ok().filter(|p| *p > 0).ok_or(TotpError::Unsupported("period"))?,
                _ => {}
            }
        }
        t.secret = secret.filter(|s| !s.is_empty()).ok_or(TotpError::BadUri)?;
        Ok(t)
    }

    /// The code at Unix time `unix_secs`, zero-padded to `digits`.
    pub fn code(&self, unix_secs: u64) -> String {
        let counter = (unix_secs / self.period).to_be_bytes();
        let mac = match self.algorithm {
            Algorithm::Sha1 => hmac_with!(sha1::Sha1, &self.secret, &counter),
            Algorithm::Sha256 => hmac_with!(sha2::Sha256, &self.secret, &counter),
            Algorithm::Sha512 => hmac_with!(sha2::Sha512, &self.secret, &counter),
        };
        // RFC 4226 §5.3: dynamic truncation.
        let offset = usize::from(mac.last().copied().unwrap_or(0) & 0x0f);
        let word = mac.get(offset..offset + 4).map_or(0, |b| u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]));
        let code = word % 10u32.pow(self.digits);
        format!("{code:0width$}", width = self.digits as usize)
    }

    /// Seconds the code at `unix_secs` stays valid.
    pub fn remaining(&self, unix_secs: u64) -> u64 {
        self.period - unix_secs % self.period
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// Base32 (RFC 4648) as people paste it: any case, spaces or dashes between groups,
/// padding or none.
fn base32(s: &str) -> Result<Vec<u8>, TotpError> {
    let clean: String = s.chars().filter(|c| !matches!(c, ' ' | '-' | '=')).map(|c| c.to_ascii_uppercase()).collect();
    if clean.is_empty() {
        return Err(TotpError::NotBase32);
    }
    data_encoding::BASE32_NOPAD.decode(clean.as_bytes()).map_err(|_| TotpError::NotBase32)
}

/// `%XX` escapes and `+` decoded; anything malformed kept as it is.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 Appendix B: 8-digit codes at the given times, one seed per hash.
    #[test]
    fn rfc_6238_test_vectors() {
        let sha1 = Totp { secret: b"12345678901234567890".to_vec(), algorithm: Algorithm::Sha1, digits: 8, period: 30 };
        let sha256 = Totp {
            secret: b"12345678901234567890123456789012".to_vec(),
            algorithm: Algorithm::Sha256,
            digits: 8,
            period: 30,
        };
        let sha512 = Totp {
            secret: b"1234567890123456789012345678901234567890123456789012345678901234".to_vec(),
            algorithm: Algorithm::Sha512,
            digits: 8,
            period: 30,
        };
        for (t, a, b, c) in [
            (59, "94287082", "46119246", "90693936"),
            (1_111_111_109, "07081804", "68084774", "25091201"),
            (1_111_111_111, "14050471", "67062674", "99943326"),
            (1_234_567_890, "89005924", "91819424", "93441116"),
            (2_000_000_000, "69279037", "90698825", "38618901"),
            (20_000_000_000, "65353130", "77737706", "47863826"),
        ] {
            assert_eq!((sha1.code(t).as_str(), sha256.code(t).as_str(), sha512.code(t).as_str()), (a, b, c), "{t}");
        }
    }

    #[test]
    fn fields_as_people_paste_them() {
        // "12345678901234567890" in base32.
        let b32 = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
        let t = Totp::parse(b32).unwrap();
        assert_eq!((t.digits, t.period, t.algorithm), (6, 30, Algorithm::Sha1));
        assert_eq!(t.code(59), "287082", "the 8-digit vector's last six");
        assert_eq!(Totp::parse("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").unwrap(), t);
        let uri = format!("otpauth://totp/Example%3Aalice%40example.com?secret={b32}&issuer=Example&digits=8&period=60&algorithm=SHA256");
        let u = Totp::parse(&uri).unwrap();
        assert_eq!((u.digits, u.period, u.algorithm), (8, 60, Algorithm::Sha256));
        assert_eq!(u.remaining(61), 59);
        assert_eq!(Totp::parse("OTPAUTH://TOTP/x?SECRET=GEZDGNBV").map(|t| t.digits), Ok(6));
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert_eq!(Totp::parse("not base32!"), Err(TotpError::NotBase32));
        assert_eq!(Totp::parse(""), Err(TotpError::NotBase32));
        assert_eq!(Totp::parse("otpauth://hotp/x?secret=GEZDGNBV"), Err(TotpError::BadUri));
        assert_eq!(Totp::parse("otpauth://totp/x?issuer=y"), Err(TotpError::BadUri));
        assert_eq!(Totp::parse("otpauth://totp/x"), Err(TotpError::BadUri));
        assert_eq!(Totp::parse("otpauth://totp/x?secret=GEZDGNBV&digits=12"), Err(TotpError::Unsupported("digits")));
        assert_eq!(Totp::parse("otpauth://totp/x?secret=GEZDGNBV&period=0"), Err(TotpError::Unsupported("period")));
        assert_eq!(
            Totp::parse("otpauth://totp/x?secret=GEZDGNBV&algorithm=MD5"),
            Err(TotpError::Unsupported("algorithm"))
        );
        assert_eq!(percent_decode("a%3Ab+c%zz%4"), "a:b c%zz%4");
    }
}
