//! Generated passwords and passphrases, with the entropy they carry: characters drawn
//! uniformly from the chosen classes (each class present at least once), or words drawn
//! uniformly from the EFF long wordlist (7,776 words, 12.9 bits each).

use rand::seq::SliceRandom;
use rand::Rng;

/// Characters of each class; look-alikes (0/O, 1/l/I) left out, as in `hearth add --generate`.
const LOWER: &str = "abcdefghijkmnopqrstuvwxyz";
const UPPER: &str = "ABCDEFGHJKLMNPQRSTUVWXYZ";
const DIGITS: &str = "23456789";
const SYMBOLS: &str = "!#$%&*+-=?@^_";

/// Why a request cannot be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    /// An unknown class name.
    #[error("unknown character class '{0}' (use lower, upper, digits, symbols)")]
    UnknownClass(String),
    /// Shorter than the classes it must hold, or absurd.
    #[error("length must be between {min} and 1024")]
    Length {
        /// The shortest that holds every class.
        min: usize,
    },
    /// No words, or absurdly many.
    #[error("words must be between 1 and 64")]
    Words,
}

/// A password of `length` characters from the classes named in `classes` (comma-separated:
/// lower, upper, digits, symbols; empty: all four), and its entropy in bits.
pub fn password(length: usize, classes: &str) -> Result<(String, f64), GenerateError> {
    let sets: Vec<&str> = if classes.trim().is_empty() {
        vec![LOWER, UPPER, DIGITS, SYMBOLS]
    } else {
        classes
            .split(',')
            .map(|c| match c.trim().to_ascii_lowercase().as_str() {
                "lower" => Ok(LOWER),
                "upper" => Ok(UPPER),
                "digits" => Ok(DIGITS),
                "symbols" => Ok(SYMBOLS),
                other => Err(GenerateError::UnknownClass(other.to_owned())),
            })
            .collect::<Result<_, _>>()?
    };
    if length < sets.len().max(4) || length > 1024 {
        return Err(GenerateError::Length { min: sets.len().max(4) });
    }
    let alphabet: Vec<char> = sets.iter().flat_map(|s| s.chars()).collect();
    let mut rng = rand::rngs::OsRng;
    // Drawn until every class appears: the few draws this rejects cost a fraction of a bit.
    loop {
        let p: String = (0..length).map(|_| alphabet[rng.gen_range(0..alphabet.len())]).collect();
        if sets.iter().all(|s| p.chars().any(|c| s.contains(c))) {
            let bits = length as f64 * (alphabet.len() as f64).log2();
            return Ok((p, bits));
        }
    }
}

/// A passphrase of `words` words from the EFF long wordlist joined by `separator`, and its
/// entropy in bits.
pub fn passphrase(words: usize, separator: &str) -> Result<(String, f64), GenerateError> {
    if !(1..=64).contains(&words) {
        return Err(GenerateError::Words);
    }
    let list = &diceware_wordlists::EFF_LONG_WORDLIST;
    let mut rng = rand::rngs::OsRng;
    let chosen: Vec<&str> = (0..words).filter_map(|_| list.choose(&mut rng).copied()).collect();
    Ok((chosen.join(separator), words as f64 * (list.len() as f64).log2()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hold_every_class_asked_and_nothing_else() {
        for _ in 0..200 {
            let (p, bits) = password(12, "").unwrap();
            assert_eq!(p.chars().count(), 12);
            for set in [LOWER, UPPER, DIGITS, SYMBOLS] {
                assert!(p.chars().any(|c| set.contains(c)), "{p}");
            }
            assert!((bits - 12.0 * 70f64.log2()).abs() < 1e-9, "{bits}");
        }
        let (p, bits) = password(20, "digits").unwrap();
        assert!(p.chars().all(|c| DIGITS.contains(c)), "{p}");
        assert!((bits - 20.0 * 3.0).abs() < 1e-9);
        let (p, _) = password(16, " Lower , UPPER").unwrap();
        assert!(p.chars().all(|c| c.is_ascii_alphabetic()), "{p}");
        assert_ne!(password(32, "").unwrap().0, password(32, "").unwrap().0);
    }

    #[test]
    fn bad_requests_say_why() {
        assert_eq!(password(12, "emoji"), Err(GenerateError::UnknownClass("emoji".into())));
        assert_eq!(password(3, ""), Err(GenerateError::Length { min: 4 }));
        assert_eq!(password(2000, "lower"), Err(GenerateError::Length { min: 4 }));
        assert_eq!(passphrase(0, "-"), Err(GenerateError::Words));
        assert_eq!(passphrase(65, "-"), Err(GenerateError::Words));
    }

    #[test]
    fn passphrases_are_eff_words() {
        let list = &diceware_wordlists::EFF_LONG_WORDLIST;
        assert_eq!(list.len(), 7776);
        assert_eq!((list[0], list[7775]), ("abacus", "zoom"));
        let (p, bits) = passphrase(6, "-").unwrap();
        let words: Vec<&str> = p.split('-').collect();
        assert_eq!(words.len(), 6);
        assert!(words.iter().all(|w| list.contains(w)), "{p}");
        assert!((bits - 6.0 * 7776f64.log2()).abs() < 1e-9 && bits > 77.5, "{bits}");
    }
}
