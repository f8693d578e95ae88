//! Finding items by the names people type, with "did you mean" help.

use super::merge::VaultState;
use crate::ids::ItemId;

/// Why a name did not resolve to one item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// No visible item has that name.
    #[error("no item named '{name}'{}", .suggestion.as_ref().map(|s| format!("; did you mean '{s}'?")).unwrap_or_default())]
    NotFound {
        /// The name asked for.
        name: String,
        /// The closest existing name, if any is close.
        suggestion: Option<String>,
    },
    /// Several visible items share the name (created concurrently on two devices).
    #[error("{count} items are named '{name}'; rename one with `hearth edit` using its id ({ids})")]
    Ambiguous {
        /// The name.
        name: String,
        /// How many.
        count: usize,
        /// Their ids, comma separated.
        ids: String,
    },
}

impl VaultState {
    /// The visible items `name` picks, without the "did you mean" search a failed
    /// [`VaultState::find`] makes (O(log n)): the item whose id it is, else those named so.
    pub fn resolves(&self, name: &str) -> Vec<ItemId> {
        match ItemId::from_hex(name).filter(|id| self.items.get(id).is_some_and(|s| s.is_visible() && !s.is_reserved()))
        {
            Some(id) => vec![id],
            None => self.named(name),
        }
    }

    /// The one visible item named `name` (or whose id is `name`).
    pub fn find(&self, name: &str) -> Result<ItemId, LookupError> {
        let hits = self.resolves(name);
        match hits.len() {
            1 => Ok(hits[0]),
            0 => {
                let suggestion = closest(name, self.names());
                Err(LookupError::NotFound { name: name.to_owned(), suggestion })
            }
            n => Err(LookupError::Ambiguous {
                name: name.to_owned(),
                count: n,
                ids: hits.iter().map(|i| i.to_hex()).collect::<Vec<_>>().join(", "),
            }),
        }
    }
}

/// The candidate closest to `name` (case-insensitive edit distance), if it is close: at
/// most 2 edits, or a third of the candidate's length.
pub fn closest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (distance(&c.to_lowercase(), &name.to_lowercase()), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min()
        .map(|(_, c)| c.to_owned())
}

/// Levenshtein distance (names are short; quadratic is fine).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A random password of `len` characters from letters, digits and symbols (OS randomness,
/// rejection sampling so every character is equally likely).
pub fn generate_password(len: usize) -> String {
    use rand::Rng;
    const CHARSET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789!#$%&*+-=?@^_";
    let mut rng = rand::rngs::OsRng;
    (0..len).map(|_| char::from(CHARSET[rng.gen_range(0..CHARSET.len())])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(names: &[&str]) -> VaultState {
        let mut st = VaultState::default();
        for (i, n) in names.iter().enumerate() {
            let op =
                crate::vault::Op::Put { item: ItemId([i as u8 + 1; 16]), name: Some((*n).to_owned()), fields: vec![] };
            let dev = crate::ids::DeviceId([1; 16]);
            st.apply(dev, i as u64 + 1, Default::default(), &Default::default(), &op);
        }
        st
    }

    fn suggestion(st: &VaultState, name: &str) -> Option<String> {
        match st.find(name) {
            Err(LookupError::NotFound { suggestion, .. }) => suggestion,
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn find_by_name_or_id_with_near_miss_suggestions() {
        let st = state(&["gmail", "bankofeng", "bank", "twin", "twin"]);
        assert_eq!(st.find("gmail").unwrap(), ItemId([1; 16]));
        assert_eq!(st.find(&ItemId([3; 16]).to_hex()).unwrap(), ItemId([3; 16]));
        assert!(matches!(st.find("twin"), Err(LookupError::Ambiguous { count: 2, .. })));
        // Short names: at most 2 edits away ("gmial" is 2 from "gmail"; "gxxxl" is 3).
        assert_eq!(suggestion(&st, "gmial").as_deref(), Some("gmail"));
        assert_eq!(suggestion(&st, "gxxxl"), None);
        // Longer names allow a third of their length: 9 letters, 3 edits, not 4.
        assert_eq!(suggestion(&st, "bankofxxx").as_deref(), Some("bankofeng"));
        assert_eq!(suggestion(&st, "bankoxxxx"), None);
        // The nearest wins; case does not count as an edit.
        assert_eq!(suggestion(&st, "BANKX").as_deref(), Some("bank"));
    }

    #[test]
    fn edit_distance() {
        assert_eq!(distance("gmail", "gmial"), 2);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("bank", "bank"), 0);
        assert_eq!(distance("abc", ""), 3);
        assert_eq!(distance("ab", "abc"), 1, "one insertion");
        assert_eq!(distance("abc", "ab"), 1, "one deletion");
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn passwords_are_random_and_long() {
        let a = generate_password(24);
        assert_eq!(a.chars().count(), 24);
        assert_ne!(a, generate_password(24));
    }
}
