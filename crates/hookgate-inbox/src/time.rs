//! Instants are stored as Unix milliseconds (`INTEGER`); all arithmetic saturates.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch; instants before it are negative.
pub(crate) fn to_millis(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis())
            .map(i64::saturating_neg)
            .unwrap_or(i64::MIN),
    }
}

/// The instant `ms` milliseconds after the Unix epoch (clamped to what the platform holds).
pub(crate) fn from_millis(ms: i64) -> SystemTime {
    let magnitude = Duration::from_millis(ms.unsigned_abs());
    let at = if ms >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    };
    at.unwrap_or(UNIX_EPOCH)
}

/// A duration in whole milliseconds, saturating at `i64::MAX`.
pub(crate) fn duration_millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `at + d` in milliseconds, saturating.
pub(crate) fn add(at_ms: i64, d: Duration) -> i64 {
    at_ms.saturating_add(duration_millis(d))
}

/// `at - d` in milliseconds, saturating.
pub(crate) fn sub(at_ms: i64, d: Duration) -> i64 {
    at_ms.saturating_sub(duration_millis(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_round_trip_and_saturate() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(to_millis(at), 1_700_000_000_123);
        assert_eq!(from_millis(1_700_000_000_123), at);
        assert_eq!(to_millis(UNIX_EPOCH - Duration::from_secs(1)), -1000);
        assert_eq!(from_millis(-1000), UNIX_EPOCH - Duration::from_secs(1));
        assert_eq!(add(i64::MAX - 1, Duration::from_secs(1)), i64::MAX);
        assert_eq!(sub(i64::MIN + 1, Duration::MAX), i64::MIN);
    }
}
