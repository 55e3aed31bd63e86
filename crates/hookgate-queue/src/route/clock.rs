//! The monotonic time source of the rate limiter and the circuit breaker, injectable so
//! tests move time by hand instead of sleeping.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A monotonic clock: the time elapsed since an origin fixed when the clock was made.
///
/// [`SystemMonotonic`] is the real one; [`ManualClock`] only moves when told to. Clones of
/// either share their origin, so every gate of a destination reads the same time.
pub trait MonotonicClock: Clone + Debug + Send + Sync + 'static {
    /// The time since this clock's origin; never goes backwards.
    fn now(&self) -> Duration;
}

/// The operating system's monotonic clock ([`Instant`]), the default.
#[derive(Debug, Clone, Copy)]
pub struct SystemMonotonic {
    origin: Instant,
}

impl SystemMonotonic {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        SystemMonotonic {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemMonotonic {
    fn default() -> Self {
        SystemMonotonic::new()
    }
}

impl MonotonicClock for SystemMonotonic {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock for tests that stands still until [`advance`](Self::advance) moves it; clones
/// share the same time.
///
/// ```
/// use std::time::Duration;
/// use hookgate_queue::{ManualClock, MonotonicClock};
///
/// let clock = ManualClock::new();
/// let seen_by_a_gate = clock.clone();
/// clock.advance(Duration::from_secs(30));
/// assert_eq!(seen_by_a_gate.now(), Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at zero.
    pub fn new() -> Self {
        ManualClock::default()
    }

    /// Moves the time forward by `by` (saturating at about 584 years).
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // fetch_update with a closure that always returns Some cannot fail.
        let _ = self
            .nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                Some(now.saturating_add(by))
            });
    }
}

impl MonotonicClock for ManualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Acquire))
    }
}

/// Lets `governor` read one of our clocks (`Duration` is a `governor` time reference).
#[derive(Debug, Clone)]
pub(crate) struct GovernorClock<C>(pub(crate) C);

impl<C: MonotonicClock> governor::clock::Clock for GovernorClock<C> {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.0.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manual_clock_moves_only_when_told_and_saturates() {
        let clock = ManualClock::new();
        assert_eq!(clock.now(), Duration::ZERO);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(clock.clone().now(), Duration::from_millis(1500));
        clock.advance(Duration::MAX);
        assert_eq!(clock.now(), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn the_system_clock_does_not_go_backwards() {
        let clock = SystemMonotonic::new();
        let first = clock.now();
        assert!(clock.now() >= first);
    }
}
