//! `hearth lock`: the running daemon forgets the vault's secret (and its plaintext) and stops
//! syncing; the next command that needs the vault asks for the passphrase once and unlocks
//! it. `--lock-after` does the same after a time without commands.

use std::time::Duration;

use anyhow::bail;
use hearth_peer::node::control::{Client, Reply, Request};
use serde_json::json;

use crate::commands::Ctx;

/// When an idle daemon locks: `--lock-after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LockAfter {
    /// Never.
    Never,
    /// After this long without a command.
    After(Duration),
}

impl LockAfter {
    /// The idle time, if it locks at all.
    pub(crate) fn duration(self) -> Option<Duration> {
        match self {
            LockAfter::Never => None,
            LockAfter::After(d) => Some(d),
        }
    }
}

/// `30s`, `15m`, `1h`, `2d`, a number of seconds, or `0`/`never`/`off`.
pub(crate) fn parse_duration(text: &str) -> Result<LockAfter, String> {
    let t = text.trim();
    if matches!(t, "0" | "never" | "off") {
        return Ok(LockAfter::Never);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 =
        n.parse().map_err(|_| format!("{text:?}: expected a duration like 30s, 15m or 1h (0 or never: never)"))?;
    let secs = match unit.trim() {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        u => return Err(format!("{text:?}: unknown unit {u:?} (s, m, h or d)")),
    };
    match n.checked_mul(secs) {
        Some(0) => Ok(LockAfter::Never),
        Some(s) => Ok(LockAfter::After(Duration::from_secs(s))),
        None => Err(format!("{text:?}: too long")),
    }
}

/// `hearth lock`.
pub(crate) fn run(ctx: &Ctx) -> anyhow::Result<()> {
    let Some(mut daemon) = Client::connect(ctx.home.dir()) else {
        bail!(
            "no daemon runs for this home: without one, every command asks for the passphrase (nothing stays unlocked)"
        );
    };
    match daemon.request(&Request::Lock, Duration::from_secs(60))? {
        Reply::Unlocked { unlocked: false } => {
            ctx.print(json!({"ok": true, "locked": true}), || {
                "locked: the daemon forgot the vault's secret and stopped syncing; the next command asks for the passphrase".into()
            });
            Ok(())
        }
        Reply::Error { message, .. } => bail!(message),
        other => bail!("the daemon answered a lock with {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("90"), Ok(LockAfter::After(Duration::from_secs(90))));
        assert_eq!(parse_duration("30s"), Ok(LockAfter::After(Duration::from_secs(30))));
        assert_eq!(parse_duration("15m"), Ok(LockAfter::After(Duration::from_secs(900))));
        assert_eq!(parse_duration("1h"), Ok(LockAfter::After(Duration::from_secs(3600))));
        assert_eq!(parse_duration("2d"), Ok(LockAfter::After(Duration::from_secs(172_800))));
        for never in ["0", "never", "off", "0m"] {
            assert_eq!(parse_duration(never), Ok(LockAfter::Never), "{never}");
        }
        for bad in ["", "m", "1y", "-5m", "1.5h", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(LockAfter::Never.duration(), None);
    }
}
