//! The injected source of "now", so replay windows can be tested at fixed instants.

use std::fmt::Debug;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: Send + Sync + Debug {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The operating system's wall clock (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock stopped at one instant, for tests and for re-checking a captured delivery.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(SystemTime);

impl FixedClock {
    /// A clock stopped at `at`.
    pub fn new(at: SystemTime) -> Self {
        FixedClock(at)
    }

    /// A clock stopped at `secs` seconds after the Unix epoch (clamped to the year 9999, so
    /// an absurd value cannot overflow the platform's time type).
    pub fn from_unix(secs: u64) -> Self {
        const YEAR_9999: u64 = 253_402_300_799;
        let at = UNIX_EPOCH.checked_add(Duration::from_secs(secs.min(YEAR_9999)));
        FixedClock(at.unwrap_or(UNIX_EPOCH))
    }
}

impl Clock for FixedClock {
    fn now(&self) -> SystemTime {
        self.0
    }
}

/// Milliseconds since the Unix epoch; instants before it count as negative.
pub(crate) fn unix_millis(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis())
            .map(|ms| ms.saturating_neg())
            .unwrap_or(i64::MIN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_clock_reports_its_instant() {
        let clock = FixedClock::from_unix(1_700_000_000);
        assert_eq!(unix_millis(clock.now()), 1_700_000_000_000);
        assert_eq!(unix_millis(UNIX_EPOCH - Duration::from_secs(1)), -1000);
    }
}
