//! Invite codes and join URLs: what `hearth invite` shows and `hearth join` reads.
//!
//! A code is a public *nameplate* (1–9999) and three BIP39 words: `4821-apple-river-stone`.
//! The nameplate names the meeting place (the rendezvous room, the LAN advertisement); the
//! words are the PAKE password and never leave the device in any form an eavesdropper could
//! test offline. The join URL carries the same code in its fragment, which HTTP clients and
//! QR readers never send to a server: `hearth://join?v=1&rv=<url>#<code>` (or `lan=1`).

use rand::Rng;
use sha2::{Digest, Sha256};

/// Words in a code (3 × 11 bits: a guesser's one online try wins once in 8.6 billion).
pub const WORDS: usize = 3;
/// Largest nameplate.
pub const MAX_NAMEPLATE: u16 = 9999;
/// The join URL's scheme and path.
const URL_PREFIX: &str = "hearth://join?";
/// The join URL format this build writes and reads.
pub const URL_VERSION: &str = "1";

/// Why a code or join URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodeError {
    /// Nothing was given.
    #[error("the invite code is empty")]
    Empty,
    /// The nameplate is not a number in 1..=9999.
    #[error("an invite code starts with a number from 1 to 9999 (like 4821-apple-river-stone)")]
    Nameplate,
    /// Not three words after the number.
    #[error("an invite code has a number and {WORDS} words (like 4821-apple-river-stone); this one has {0} words")]
    WordCount(usize),
    /// A word that is not one of the code words (the word is not repeated: it is part of a secret).
    #[error("word {0} of the invite code is not a code word: check its spelling")]
    UnknownWord(usize),
    /// A URL or QR code that is not a Hearth join URL.
    #[error("this is not a Hearth invite (expected hearth://join?… or a code like 4821-apple-river-stone)")]
    NotAnInvite,
    /// A join URL of a format this build does not know.
    #[error("this invite is format v={0}; this hearth reads v={URL_VERSION}: update hearth")]
    Version(String),
    /// A join URL whose rendezvous address does not decode.
    #[error("the invite's rendezvous address is damaged")]
    BadRendezvous,
}

/// An invite code: nameplate and words (as indices into the BIP39 English list).
#[derive(Clone, PartialEq, Eq)]
pub struct InviteCode {
    nameplate: u16,
    words: [u16; WORDS],
}

impl std::fmt::Debug for InviteCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The words are the secret: debug output (and so logs) shows the nameplate only.
        write!(f, "InviteCode({}-…)", self.nameplate)
    }
}

fn wordlist() -> &'static [&'static str; 2048] {
    bip39::Language::English.word_list()
}

impl InviteCode {
    /// A fresh random code.
    pub fn generate(rng: &mut impl Rng) -> Self {
        Self { nameplate: rng.gen_range(1..=MAX_NAMEPLATE), words: std::array::from_fn(|_| rng.gen_range(0..2048)) }
    }

    /// Reads a typed code: `4821-apple-river-stone`; spaces may replace dashes, case does
    /// not matter, and a word may be shortened to its first four letters (unique in the list).
    pub fn parse(s: &str) -> Result<Self, CodeError> {
        let lower = s.trim().to_ascii_lowercase();
        let mut parts = lower.split(|c: char| c == '-' || c.is_whitespace()).filter(|p| !p.is_empty());
        let first = parts.next().ok_or(CodeError::Empty)?;
        let nameplate: u16 = match first.parse() {
            Ok(n) if (1..=MAX_NAMEPLATE).contains(&n) && first.len() <= 4 => n,
            _ => return Err(CodeError::Nameplate),
        };
        let rest: Vec<&str> = parts.collect();
        if rest.len() != WORDS {
            return Err(CodeError::WordCount(rest.len()));
        }
        let mut words = [0u16; WORDS];
        for (i, w) in rest.iter().enumerate() {
            words[i] = word_index(w).ok_or(CodeError::UnknownWord(i + 1))?;
        }
        Ok(Self { nameplate, words })
    }

    /// The public nameplate.
    pub fn nameplate(&self) -> u16 {
        self.nameplate
    }

    /// The code as a person reads it aloud.
    pub fn to_text(&self) -> zeroize::Zeroizing<String> {
        let mut s = self.nameplate.to_string();
        for w in self.words {
            s.push('-');
            s.push_str(wordlist()[usize::from(w)]);
        }
        zeroize::Zeroizing::new(s)
    }

    /// The PAKE password: the whole code, canonical (nameplate included, so a code cannot be
    /// replayed under another nameplate).
    pub fn password(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut p = b"hearth/v1/invite-code\0".to_vec();
        p.extend_from_slice(self.to_text().as_bytes());
        zeroize::Zeroizing::new(p)
    }

    /// The rendezvous pairing room: SHA-256 of the nameplate alone, never of the words
    /// (a room id derived from the words would let the server test guesses offline).
    pub fn room(&self) -> [u8; 32] {
        room_of(self.nameplate)
    }

    /// The tag of the inviter's LAN pairing advertisement (from the nameplate alone, for the
    /// same reason: anyone on the LAN sees it).
    pub fn lan_tag(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"hearth/v1/invite-lan\0");
        h.update(self.nameplate.to_string().as_bytes());
        hex::encode(&h.finalize()[..8])
    }
}

/// The pairing room of `nameplate`.
pub fn room_of(nameplate: u16) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"hearth/v1/invite-room\0");
    h.update(nameplate.to_string().as_bytes());
    h.finalize().into()
}

fn word_index(w: &str) -> Option<u16> {
    let list = wordlist();
    if let Ok(i) = list.binary_search(&w) {
        return u16::try_from(i).ok();
    }
    // BIP39 English words are unique in their first four letters.
    if w.len() == 4 {
        let i = list.iter().position(|x| x.starts_with(w))?;
        return u16::try_from(i).ok();
    }
    None
}

/// Where a join URL (or a bare code) says to meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinTarget {
    /// The rendezvous to meet through; `None`: the LAN.
    pub rendezvous: Option<String>,
    /// The code.
    pub code: InviteCode,
}

impl JoinTarget {
    /// The join URL: `hearth://join?v=1&rv=<url>#<code>`, or `…&lan=1#<code>` for the LAN.
    pub fn to_url(&self) -> zeroize::Zeroizing<String> {
        let place = match &self.rendezvous {
            Some(rv) => format!("rv={}", percent_encode(rv)),
            None => "lan=1".to_owned(),
        };
        zeroize::Zeroizing::new(format!("{URL_PREFIX}v={URL_VERSION}&{place}#{}", self.code.to_text().as_str()))
    }

    /// Reads a join URL or a bare code (`rendezvous` then says where to meet; `None`: the LAN).
    pub fn parse(s: &str, rendezvous: Option<&str>) -> Result<Self, CodeError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(CodeError::Empty);
        }
        let Some(rest) = strip_prefix_ci(s, URL_PREFIX) else {
            if s.contains(':') || s.contains('?') {
                return Err(CodeError::NotAnInvite);
            }
            return Ok(Self { rendezvous: rendezvous.map(str::to_owned), code: InviteCode::parse(s)? });
        };
        let (query, fragment) = rest.split_once('#').ok_or(CodeError::NotAnInvite)?;
        let (mut version, mut rv, mut lan) = (None, None, false);
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("v", v)) => version = Some(v),
                Some(("rv", v)) => rv = Some(percent_decode(v).ok_or(CodeError::BadRendezvous)?),
                Some(("lan", "1")) => lan = true,
                // Later formats may add parameters; the version says whether they matter.
                _ => {}
            }
        }
        match version {
            Some(URL_VERSION) => {}
            Some(v) => return Err(CodeError::Version(v.chars().take(8).collect())),
            None => return Err(CodeError::NotAnInvite),
        }
        if rv.as_deref().is_some_and(str::is_empty) || (rv.is_none() && !lan) {
            return Err(CodeError::BadRendezvous);
        }
        Ok(Self { rendezvous: rv, code: InviteCode::parse(fragment)? })
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn code(s: &str) -> InviteCode {
        InviteCode::parse(s).unwrap()
    }

    #[test]
    fn a_code_reads_back_in_every_way_a_person_types_it() {
        let c = code("4821-apple-river-stone");
        assert_eq!(c.nameplate(), 4821);
        assert_eq!(c.to_text().as_str(), "4821-apple-river-stone");
        for typed in ["  4821 Apple RIVER stone ", "4821-appl-rive-ston", "4821 - apple - river - stone"] {
            assert_eq!(code(typed), c, "{typed}");
        }
    }

    #[test]
    fn bad_codes_get_typed_errors() {
        assert_eq!(InviteCode::parse(""), Err(CodeError::Empty));
        assert_eq!(InviteCode::parse("0-apple-river-stone"), Err(CodeError::Nameplate));
        assert_eq!(InviteCode::parse("10000-apple-river-stone"), Err(CodeError::Nameplate));
        assert_eq!(InviteCode::parse("00001-apple-river-stone"), Err(CodeError::Nameplate));
        assert_eq!(InviteCode::parse("apple-river-stone"), Err(CodeError::Nameplate));
        assert_eq!(InviteCode::parse("12-apple-river"), Err(CodeError::WordCount(2)));
        assert_eq!(InviteCode::parse("12-apple-river-stone-wolf"), Err(CodeError::WordCount(4)));
        assert_eq!(InviteCode::parse("12-apple-rivr-stone"), Err(CodeError::UnknownWord(2)));
        assert_eq!(InviteCode::parse("12-apple-ab-stone"), Err(CodeError::UnknownWord(2)));
        // An error never repeats a word (a near miss is part of the secret).
        assert!(!CodeError::UnknownWord(2).to_string().contains("rivr"));
    }

    #[test]
    fn the_room_and_lan_tag_depend_on_the_nameplate_only() {
        let (a, b) = (code("77-apple-river-stone"), code("77-zoo-zoo-zoo"));
        assert_eq!(a.room(), b.room());
        assert_eq!(a.lan_tag(), b.lan_tag());
        assert_ne!(a.room(), code("78-apple-river-stone").room());
        assert_ne!(a.password(), b.password());
        assert_eq!(format!("{a:?}"), "InviteCode(77-…)", "Debug hides the words");
    }

    #[test]
    fn room_ids_and_lan_tags_match_the_protocol_text() {
        // PROTOCOL §6.7 and §7, cross-checked with Python's hashlib.
        let c = code("4821-apple-river-stone");
        assert_eq!(hex::encode(c.room()), "5dbe75ae75b4ac0511b535a2a82fa2924eaa4c3750e2a25dd5b0ae9a7e850e45");
        assert_eq!(c.lan_tag(), "ed681a1deeacf3b7");
        assert_ne!(c.lan_tag(), code("4822-apple-river-stone").lan_tag());
    }

    #[test]
    fn join_urls_round_trip_and_refuse_what_is_not_an_invite() {
        let c = code("4821-apple-river-stone");
        let rv = JoinTarget { rendezvous: Some("https://rv.example:8443/x?a=b&c".into()), code: c.clone() };
        let url = rv.to_url();
        assert!(url.starts_with("hearth://join?v=1&rv=https%3A%2F%2Frv.example"), "{}", url.as_str());
        assert!(url.ends_with("#4821-apple-river-stone"));
        assert_eq!(JoinTarget::parse(&url, None).unwrap(), rv);
        let lan = JoinTarget { rendezvous: None, code: c.clone() };
        assert_eq!(JoinTarget::parse(&lan.to_url(), Some("ignored")).unwrap(), lan);
        // A bare code meets where the caller says.
        assert_eq!(
            JoinTarget::parse("4821 apple river stone", Some("http://h:1")).unwrap().rendezvous.unwrap(),
            "http://h:1"
        );
        assert_eq!(JoinTarget::parse("https://example.com/login", None), Err(CodeError::NotAnInvite));
        assert_eq!(JoinTarget::parse("WIFI:S:home;T:WPA;P:x;;", None), Err(CodeError::NotAnInvite));
        assert_eq!(JoinTarget::parse("hearth://join?v=2&lan=1#1-a-b-c", None), Err(CodeError::Version("2".into())));
        assert_eq!(JoinTarget::parse("hearth://join?v=1#1-zoo-zoo-zoo", None), Err(CodeError::BadRendezvous));
        assert_eq!(JoinTarget::parse("hearth://join?v=1&rv=%zz#1-zoo-zoo-zoo", None), Err(CodeError::BadRendezvous));
        assert_eq!(JoinTarget::parse("hearth://join?v=1&lan=1", None), Err(CodeError::NotAnInvite));
    }

    proptest! {
        #[test]
        fn any_text_parses_or_errs_without_panic(s in ".{0,80}") {
            let _ = JoinTarget::parse(&s, None);
            let _ = InviteCode::parse(&s);
        }

        #[test]
        fn generated_codes_and_urls_round_trip(seed: u64, rv in "[ -~]{1,40}") {
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
            let c = InviteCode::generate(&mut rng);
            prop_assert_eq!(InviteCode::parse(&c.to_text()).unwrap(), c.clone());
            let t = JoinTarget { rendezvous: Some(rv), code: c };
            prop_assert_eq!(JoinTarget::parse(&t.to_url(), None).unwrap(), t);
        }
    }
}
