//! `hearth list QUERY`: which items match a search, best first, like `bw list --search`.
//! A query matches a text as a substring (best), at the start of a word, or as the
//! query's letters in order with gaps (fuzzy: "gml" finds "gmail"); case is ignored.

/// Fields a search looks in besides the name.
pub const SEARCHED_FIELDS: [&str; 7] = ["user", "username", "login", "email", "url", "website", "site"];

/// How well `query` matches `text`: higher is better, `None` if it does not.
pub fn score(query: &str, text: &str) -> Option<u32> {
    let q = query.trim().to_lowercase();
    let t = text.to_lowercase();
    if q.is_empty() {
        return Some(0);
    }
    if t == q {
        return Some(1000);
    }
    if t.starts_with(&q) {
        return Some(900);
    }
    if let Some(at) = t.find(&q) {
        let word_start = t[..at].chars().last().is_none_or(|c| !c.is_alphanumeric());
        return Some(if word_start { 800 } else { 700 });
    }
    // Fuzzy: every query character in order; fewer gaps score higher.
    let mut gaps = 0u32;
    let mut rest = t.chars().peekable();
    for qc in q.chars() {
        let mut skipped = 0u32;
        loop {
            match rest.next() {
                Some(c) if c == qc => break,
                Some(_) => skipped += 1,
                None => return None,
            }
        }
        gaps += skipped;
    }
    Some(500u32.saturating_sub(gaps.min(499)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_beats_prefix_beats_word_beats_substring_beats_fuzzy() {
        let s = |t| score("mail", t).unwrap_or(0);
        assert!(s("mail") > s("mailbox"));
        assert!(s("mailbox") > s("work mail"));
        assert!(s("work mail") > s("gmail"));
        assert!(s("gmail") > score("gml", "gmail").unwrap());
        assert_eq!(score("MAIL", "GMail.com"), Some(700), "case is ignored");
        assert_eq!(score("", "anything"), Some(0));
    }

    #[test]
    fn fuzzy_needs_every_letter_in_order() {
        assert!(score("gml", "gmail").is_some());
        assert!(score("bnk", "bank of x").is_some());
        assert!(score("gm", "mg").is_none());
        assert!(score("zz", "pizza").is_some() && score("zzz", "pizza").is_none());
        assert!(score("gml", "gmail").unwrap() > score("gml", "g-----m-----l").unwrap(), "fewer gaps first");
    }
}
