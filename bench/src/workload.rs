//! The benchmark's records: deterministic, realistic password-manager items.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// One item: a title (Hearth's item name) and four more fields.
pub(crate) struct Record {
    pub(crate) title: String,
    pub(crate) fields: [(&'static str, String); 4],
}

const WORDS: [&str; 16] = [
    "family", "bank", "mail", "router", "school", "garden", "photo", "cloud", "health", "shop", "travel", "music",
    "work", "tax", "car", "home",
];

fn words(rng: &mut StdRng, n: usize) -> String {
    (0..n).map(|_| WORDS[rng.gen_range(0..WORDS.len())]).collect::<Vec<_>>().join(" ")
}

/// `n` items from a fixed seed.
pub(crate) fn records(n: usize) -> Vec<Record> {
    let mut rng = StdRng::seed_from_u64(42);
    (0..n)
        .map(|i| {
            let site = WORDS[rng.gen_range(0..WORDS.len())];
            let password: String = (0..24).map(|_| char::from(rng.gen_range(b'!'..=b'~'))).collect();
            Record {
                title: format!("{site} account {i}"),
                fields: [
                    ("username", format!("user{}@example.org", rng.gen_range(0..100_000))),
                    ("url", format!("https://{site}.example.org/login")),
                    ("notes", words(&mut rng, 8)),
                    ("password", password),
                ],
            }
        })
        .collect()
}

/// User data bytes of a record: names and values of every field.
#[allow(dead_code)] // used by the sync bench, not the LAN bench
pub(crate) fn plaintext_bytes(r: &Record) -> usize {
    "title".len() + r.title.len() + r.fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
}
