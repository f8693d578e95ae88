//! Times as people read them: `YYYY-MM-DD HH:MM:SS UTC`, from ms since the Unix epoch,
//! with no calendar crate (Howard Hinnant's days-to-civil algorithm).

/// `ms` since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn format(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_civil_utc() {
        // Known answers (Python's datetime), across leap days, centuries and 400-year eras.
        for (ms, want) in [
            (0, "1970-01-01 00:00:00"),
            (5_097_600_000, "1970-03-01 00:00:00"),
            (951_782_400_000, "2000-02-29 00:00:00"),
            (1_677_628_800_000, "2023-03-01 00:00:00"),
            (1_709_251_140_000, "2024-02-29 23:59:00"),
            (1_796_325_248_019, "2026-12-03 19:14:08"),
            (3_981_312_000_000, "2096-02-29 00:00:00"),
            (4_107_499_200_000, "2100-02-28 12:00:00"),
            (4_107_542_400_000, "2100-03-01 00:00:00"),
            (4_133_980_800_000, "2101-01-01 00:00:00"),
            (13_569_465_540_000, "2399-12-31 23:59:00"),
            (13_574_563_200_000, "2400-02-29 00:00:00"),
            (13_574_649_600_000, "2400-03-01 00:00:00"),
        ] {
            assert_eq!(super::format(ms), format!("{want} UTC"), "{ms}");
        }
    }
}
