//! The vault secret and its 24-word BIP39 phrase.

use rand::RngCore;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// 256 random bits from which every vault key is derived. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct VaultSecret([u8; 32]);

impl std::fmt::Debug for VaultSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VaultSecret(..)")
    }
}

/// Why a phrase was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PhraseError {
    /// Not 24 words.
    #[error("a Hearth phrase has 24 words; this one has {0}")]
    WordCount(usize),
    /// A word that is not in the BIP39 English list. The word itself is not kept: a near
    /// miss of a phrase word is part of the secret, and errors end up in logs and terminals.
    #[error("word {position} is not a BIP39 word: check its spelling")]
    UnknownWord {
        /// 1-based position.
        position: usize,
    },
    /// All words are valid but the checksum fails: one is wrong or two are swapped.
    #[error("the phrase's checksum does not match: a word is wrong or two are swapped")]
    Checksum,
}

impl VaultSecret {
    /// A fresh random secret from the OS generator.
    pub fn generate() -> Self {
        let mut b = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        Self(b)
    }

    /// Wraps raw bytes (tests, known-answer vectors, key files).
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }

    /// The raw secret.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 24-word phrase, space separated.
    pub fn phrase(&self) -> Zeroizing<String> {
        // 32 bytes is always a valid BIP39 entropy length, so this cannot fail.
        match bip39::Mnemonic::from_entropy(&self.0) {
            Ok(m) => Zeroizing::new(m.to_string()),
            Err(_) => Zeroizing::new(String::new()),
        }
    }

    /// Parses a phrase typed by a person: case and extra whitespace are forgiven; a bad word
    /// is named by position.
    pub fn from_phrase(phrase: &str) -> Result<Self, PhraseError> {
        let norm = Zeroizing::new(phrase.split_whitespace().map(str::to_lowercase).collect::<Vec<_>>());
        if norm.len() != 24 {
            return Err(PhraseError::WordCount(norm.len()));
        }
        let list = bip39::Language::English;
        for (i, w) in norm.iter().enumerate() {
            if list.find_word(w).is_none() {
                return Err(PhraseError::UnknownWord { position: i + 1 });
            }
        }
        let joined = Zeroizing::new(norm.join(" "));
        let m = bip39::Mnemonic::parse_in_normalized(list, &joined).map_err(|_| PhraseError::Checksum)?;
        let (entropy, len) = m.to_entropy_array();
        let mut b = [0u8; 32];
        if len != 32 {
            return Err(PhraseError::WordCount(norm.len()));
        }
        b.copy_from_slice(&entropy[..32]);
        Ok(Self(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrase_round_trip_and_forgiving_input() {
        let s = VaultSecret::generate();
        let p = s.phrase();
        assert_eq!(p.split(' ').count(), 24);
        let messy = format!("  {}  ", p.to_uppercase().replace(' ', "\n "));
        assert_eq!(VaultSecret::from_phrase(&messy).unwrap().as_bytes(), s.as_bytes());
    }

    #[test]
    fn errors_name_the_problem() {
        let s = VaultSecret::from_bytes([7; 32]);
        let p = s.phrase();
        let mut words: Vec<&str> = p.split(' ').collect();
        assert_eq!(VaultSecret::from_phrase(&words[..23].join(" ")).unwrap_err(), PhraseError::WordCount(23));
        let orig = words[4];
        words[4] = "hearthx";
        assert_eq!(VaultSecret::from_phrase(&words.join(" ")).unwrap_err(), PhraseError::UnknownWord { position: 5 });
        words[4] = if orig == "abandon" { "ability" } else { "abandon" };
        assert_eq!(VaultSecret::from_phrase(&words.join(" ")).unwrap_err(), PhraseError::Checksum);
    }
}
