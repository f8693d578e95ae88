//! Which fields are secrets, by name: the CLI masks their values unless asked to show them.
//!
//! A name is split into words (at any non-alphanumeric character and at lower→upper case
//! changes: `wifi_password`, `apiToken`, `SSH key`, `PIN`), and it is secret when one of its
//! words starts with a secret stem. Masking too much is the safe mistake: `keyboard` is
//! masked, a `password` is never printed by accident.

/// Word beginnings that make a field secret (lowercase).
const STEMS: [&str; 17] = [
    "pass",
    "pwd",
    "pin",
    "secret",
    "token",
    "key",
    "otp",
    "totp",
    "cvv",
    "cvc",
    "private",
    "credential",
    "recovery",
    "seed",
    "mnemonic",
    "apikey",
    "auth",
];

/// True if `item`'s field `name` holds a secret: marked so when written, or by its name.
pub fn is_secret_in(item: &crate::vault::ItemState, name: &str) -> bool {
    item.marked_secret().contains(name) || is_secret(name)
}

/// True if a field named `name` holds a secret.
pub fn is_secret(name: &str) -> bool {
    words(name).iter().any(|w| STEMS.iter().any(|s| w.starts_with(s)))
}

/// The lowercase words of `name`.
fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_numeric();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_spellings_are_secret() {
        for name in [
            "password",
            "Password",
            "PASSWORD",
            "pass",
            "passphrase",
            "wifi_password",
            "wifi-pass",
            "pwd",
            "pin",
            "PIN",
            "pincode",
            "secret",
            "client secret",
            "api_token",
            "apiToken",
            "token",
            "key",
            "SSH key",
            "private_key",
            "apikey",
            "otp",
            "totp",
            "TOTP seed",
            "cvv",
            "CVC",
            "recovery codes",
            "mnemonic",
            "auth",
        ] {
            assert!(is_secret(name), "{name}");
        }
    }

    #[test]
    fn everyday_fields_are_not() {
        for name in ["user", "username", "email", "url", "notes", "host", "port", "account", "number", "expiry", ""] {
            assert!(!is_secret(name), "{name}");
        }
    }

    #[test]
    fn words_split_at_separators_and_case_changes() {
        assert_eq!(words("apiToken"), ["api", "token"]);
        assert_eq!(words("wifi_password"), ["wifi", "password"]);
        assert_eq!(words("SSH key"), ["ssh", "key"]);
        assert_eq!(words("PIN2"), ["pin2"]);
        assert_eq!(words("--"), Vec::<String>::new());
        // A word only matches from its start: "spinner" and "username" hold no stem there.
        assert!(!is_secret("spinner") && !is_secret("shipping"));
    }
}
