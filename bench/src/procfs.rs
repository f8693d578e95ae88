//! Process statistics from `/proc`, for the benchmarks' side-by-side numbers.
// Shared by three benchmark binaries, each using part of it.
#![allow(dead_code)]

/// Linux reports process CPU time in USER_HZ ticks, 100 per second on every mainstream build.
const CLOCK_TICKS: f64 = 100.0;

/// CPU seconds (user + system, all threads) process `pid` has used so far. Kernel work done
/// for it in softirq context (loopback packet delivery) is not included.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / CLOCK_TICKS)
}

/// A `/proc/<pid>/status` field in KiB, e.g. `VmRSS`; `pid` is a number or `self`.
pub(crate) fn status_kib(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        assert!(super::status_kib("self", "VmRSS").is_some_and(|k| k > 0));
        assert!(super::cpu_seconds(std::process::id()).is_some());
    }
}
