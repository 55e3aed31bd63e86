//! Exponential backoff with full jitter, and the attempt limit.

use std::time::Duration;

/// Default delay ceiling after the first failure: 1 second.
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(1);
/// Default largest delay ceiling: 1 hour.
pub const DEFAULT_RETRY_CAP: Duration = Duration::from_secs(60 * 60);
/// Default attempts before an event becomes a dead letter: 12.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 12;

/// When to retry a failed event and when to give up.
///
/// After the `n`-th failed attempt the next one waits a random delay between zero and
/// `min(cap, base × 2ⁿ⁻¹)` ("full jitter": retries of many events that failed together
/// spread out instead of arriving in waves). After `max_attempts` attempts the event
/// becomes a dead letter. With the defaults (1 s, 1 h, 12 attempts) the ceilings are 1 s,
/// 2 s, 4 s … 1024 s, 1 h: an event is retried for about half an hour on average, at most
/// a little over an hour, before it is dead-lettered.
///
/// ```
/// use std::time::Duration;
/// use hookgate_queue::RetryPolicy;
///
/// let policy = RetryPolicy::new()
///     .base(Duration::from_millis(100))
///     .cap(Duration::from_secs(10))
///     .max_attempts(5);
/// assert_eq!(policy.backoff_ceiling(1), Duration::from_millis(100));
/// assert_eq!(policy.backoff_ceiling(4), Duration::from_millis(800));
/// assert_eq!(policy.backoff_ceiling(20), Duration::from_secs(10));
/// assert!(policy.backoff(3) <= Duration::from_millis(400));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct RetryPolicy {
    base: Duration,
    cap: Duration,
    max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::new()
    }
}

impl RetryPolicy {
    /// The defaults: [`DEFAULT_RETRY_BASE`], [`DEFAULT_RETRY_CAP`], [`DEFAULT_MAX_ATTEMPTS`].
    pub fn new() -> Self {
        RetryPolicy {
            base: DEFAULT_RETRY_BASE,
            cap: DEFAULT_RETRY_CAP,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }

    /// The delay ceiling after the first failure (must not be zero).
    pub fn base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// The largest delay ceiling (at least `base`).
    pub fn cap(mut self, cap: Duration) -> Self {
        self.cap = cap;
        self
    }

    /// Attempts in all, the first included, before the event becomes a dead letter (at
    /// least 1; 1 means no retries).
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// The attempt limit.
    pub fn attempt_limit(&self) -> u32 {
        self.max_attempts
    }

    /// Whether another attempt follows failed attempt number `attempt` (from 1).
    pub fn allows_retry_after(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }

    /// The upper bound of the delay after failed attempt number `attempt` (from 1):
    /// `min(cap, base × 2^(attempt-1))`, without overflow.
    pub fn backoff_ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        let factor = 1u32.checked_shl(doublings).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// A random delay in `[0, backoff_ceiling(attempt)]`, to the millisecond.
    pub fn backoff(&self, attempt: u32) -> Duration {
        jitter(self.backoff_ceiling(attempt), fastrand::u64(..))
    }

    /// Checks the values: a base above zero, a cap at least the base, at least one
    /// attempt.
    ///
    /// # Errors
    /// What is wrong, in words.
    pub fn check(&self) -> Result<(), String> {
        if self.base.is_zero() {
            return Err("retry base must not be zero".to_owned());
        }
        if self.cap < self.base {
            return Err(format!(
                "retry cap ({:?}) must be at least the base ({:?})",
                self.cap, self.base
            ));
        }
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// Maps a uniformly random `draw` onto `[0, ceiling]` in whole milliseconds.
fn jitter(ceiling: Duration, draw: u64) -> Duration {
    let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    let ms = match ceiling_ms.checked_add(1) {
        Some(span) => draw.checked_rem(span).unwrap_or(0),
        None => draw,
    };
    Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_from_the_base_up_to_the_cap() {
        let policy = RetryPolicy::new()
            .base(Duration::from_secs(1))
            .cap(Duration::from_secs(60));
        let ceilings: Vec<u64> = (1..=8)
            .map(|n| policy.backoff_ceiling(n).as_secs())
            .collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60]);
        // Attempt 0 is treated as the first; huge attempt numbers cannot overflow.
        assert_eq!(policy.backoff_ceiling(0), Duration::from_secs(1));
        assert_eq!(policy.backoff_ceiling(u32::MAX), Duration::from_secs(60));
        let huge = RetryPolicy::new().base(Duration::MAX).cap(Duration::MAX);
        assert_eq!(huge.backoff_ceiling(40), Duration::MAX);
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        let ceiling = Duration::from_millis(1000);
        assert_eq!(jitter(ceiling, 0), Duration::ZERO);
        assert_eq!(jitter(ceiling, 1000), ceiling);
        assert_eq!(jitter(ceiling, 1001), Duration::ZERO);
        assert_eq!(jitter(Duration::ZERO, 12345), Duration::ZERO);
        assert!(jitter(Duration::MAX, u64::MAX) <= Duration::MAX);

        let policy = RetryPolicy::new()
            .base(Duration::from_millis(10))
            .cap(Duration::from_millis(200));
        let draws: Vec<Duration> = (0..2000).map(|_| policy.backoff(3)).collect();
        assert!(draws.iter().all(|d| *d <= Duration::from_millis(40)));
        // Spread over the whole range, not clustered at the ceiling.
        assert!(draws.iter().any(|d| *d < Duration::from_millis(10)));
        assert!(draws.iter().any(|d| *d > Duration::from_millis(30)));
    }

    #[test]
    fn attempts_run_out_at_the_limit() {
        let policy = RetryPolicy::new().max_attempts(3);
        assert!(policy.allows_retry_after(1));
        assert!(policy.allows_retry_after(2));
        assert!(!policy.allows_retry_after(3));
        assert!(!RetryPolicy::new().max_attempts(1).allows_retry_after(1));
    }

    #[test]
    fn rejects_nonsense() {
        assert!(RetryPolicy::new().base(Duration::ZERO).check().is_err());
        assert!(
            RetryPolicy::new()
                .base(Duration::from_secs(2))
                .cap(Duration::from_secs(1))
                .check()
                .is_err()
        );
        assert!(RetryPolicy::new().max_attempts(0).check().is_err());
        assert!(RetryPolicy::new().check().is_ok());
    }
}
