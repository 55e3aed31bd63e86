//! The per-destination rate limit: a token bucket (`governor`'s GCRA) with an injectable clock.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use governor::clock::Clock as _;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use super::clock::{GovernorClock, MonotonicClock, SystemMonotonic};

/// A rate as written in the configuration: `"50/s"`, `"1000/min"`, `"20000/h"`.
///
/// It is a token bucket that holds `count` tokens and refills evenly over the period: up to
/// `count` deliveries may start at once after a quiet spell, and over any longer stretch no
/// more than `count` per period start.
///
/// ```
/// use std::time::Duration;
/// use hookgate_queue::RateLimit;
///
/// let rate: RateLimit = "1000/min".parse().unwrap();
/// assert_eq!(rate.count(), 1000);
/// assert_eq!(rate.period(), Duration::from_secs(60));
/// assert_eq!(rate.to_string(), "1000/min");
/// assert!("fast".parse::<RateLimit>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    count: NonZeroU32,
    unit: Unit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Second,
    Minute,
    Hour,
}

impl RateLimit {
    /// `count` per second.
    pub fn per_second(count: NonZeroU32) -> Self {
        RateLimit {
            count,
            unit: Unit::Second,
        }
    }

    /// `count` per minute.
    pub fn per_minute(count: NonZeroU32) -> Self {
        RateLimit {
            count,
            unit: Unit::Minute,
        }
    }

    /// `count` per hour.
    pub fn per_hour(count: NonZeroU32) -> Self {
        RateLimit {
            count,
            unit: Unit::Hour,
        }
    }

    /// Deliveries per period (and the bucket's size).
    pub fn count(&self) -> u32 {
        self.count.get()
    }

    /// The period.
    pub fn period(&self) -> Duration {
        match self.unit {
            Unit::Second => Duration::from_secs(1),
            Unit::Minute => Duration::from_secs(60),
            Unit::Hour => Duration::from_secs(3600),
        }
    }

    fn quota(&self) -> Quota {
        match self.unit {
            Unit::Second => Quota::per_second(self.count),
            Unit::Minute => Quota::per_minute(self.count),
            Unit::Hour => Quota::per_hour(self.count),
        }
    }
}

impl FromStr for RateLimit {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let expected = || {
            format!("expected a rate such as \"50/s\", \"1000/min\" or \"20000/h\", not {text:?}")
        };
        let (count, unit) = text.trim().split_once('/').ok_or_else(expected)?;
        let count: u32 = count.trim().parse().map_err(|_| expected())?;
        let count = NonZeroU32::new(count)
            .ok_or_else(|| "a rate of 0 would never deliver: use pause instead".to_owned())?;
        let unit = match unit.trim() {
            "s" | "sec" | "second" => Unit::Second,
            "m" | "min" | "minute" => Unit::Minute,
            "h" | "hour" => Unit::Hour,
            _ => return Err(expected()),
        };
        Ok(RateLimit { count, unit })
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            Unit::Second => "s",
            Unit::Minute => "min",
            Unit::Hour => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

type Limiter<C> = RateLimiter<NotKeyed, InMemoryState, GovernorClock<C>, NoOpMiddleware<Duration>>;

/// One destination's token bucket. A worker takes a token just before it starts a delivery
/// (after every other check, since a token cannot be given back); without one it waits the
/// returned time. Shared by reference between a destination's workers (it is `Sync`).
///
/// ```
/// use std::time::Duration;
/// use hookgate_queue::{ManualClock, RateGate};
///
/// let clock = ManualClock::new();
/// let gate = RateGate::with_clock("2/s".parse().unwrap(), clock.clone());
/// assert!(gate.try_take().is_ok());
/// assert!(gate.try_take().is_ok());
/// assert_eq!(gate.try_take(), Err(Duration::from_millis(500)));
/// clock.advance(Duration::from_millis(500));
/// assert!(gate.try_take().is_ok());
/// ```
pub struct RateGate<C: MonotonicClock = SystemMonotonic> {
    rate: RateLimit,
    limiter: Limiter<C>,
}

impl RateGate {
    /// A bucket on the system's monotonic clock, full.
    pub fn new(rate: RateLimit) -> Self {
        RateGate::with_clock(rate, SystemMonotonic::new())
    }
}

impl<C: MonotonicClock> RateGate<C> {
    /// A bucket on `clock`, full.
    pub fn with_clock(rate: RateLimit, clock: C) -> Self {
        RateGate {
            rate,
            limiter: RateLimiter::direct_with_clock(rate.quota(), GovernorClock(clock)),
        }
    }

    /// Takes a token, or says how long until the next one.
    ///
    /// # Errors
    /// The wait until a token is available (take it then; it may have gone to another
    /// worker, in which case wait again).
    pub fn try_take(&self) -> Result<(), Duration> {
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.limiter.clock().now()))
    }

    /// The configured rate.
    pub fn rate(&self) -> RateLimit {
        self.rate
    }
}

impl<C: MonotonicClock> fmt::Debug for RateGate<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateGate")
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::clock::ManualClock;

    fn rate(text: &str) -> RateLimit {
        text.parse().unwrap()
    }

    #[test]
    fn rates_read_and_print() {
        assert_eq!(
            rate("50/s"),
            RateLimit::per_second(NonZeroU32::new(50).unwrap())
        );
        assert_eq!(
            rate(" 1000 / min "),
            RateLimit::per_minute(NonZeroU32::new(1000).unwrap())
        );
        assert_eq!(
            rate("3/hour"),
            RateLimit::per_hour(NonZeroU32::new(3).unwrap())
        );
        assert_eq!(rate("50/second").to_string(), "50/s");
        assert_eq!(rate("7/h").period(), Duration::from_secs(3600));
        for bad in [
            "",
            "50",
            "50/d",
            "x/s",
            "-1/s",
            "1.5/s",
            "/s",
            "99999999999/s",
        ] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad:?} was accepted");
        }
        assert!(rate_err("0/s").contains("pause"));
    }

    fn rate_err(text: &str) -> String {
        text.parse::<RateLimit>().unwrap_err()
    }

    #[test]
    fn a_full_bucket_allows_a_burst_then_refills_evenly() {
        let clock = ManualClock::new();
        let gate = RateGate::with_clock(rate("4/s"), clock.clone());
        for _ in 0..4 {
            assert!(gate.try_take().is_ok());
        }
        assert_eq!(gate.try_take(), Err(Duration::from_millis(250)));
        clock.advance(Duration::from_millis(100));
        assert_eq!(gate.try_take(), Err(Duration::from_millis(150)));
        clock.advance(Duration::from_millis(150));
        assert!(gate.try_take().is_ok());
        assert!(gate.try_take().is_err());
        // After a quiet second the bucket is full again, never fuller.
        clock.advance(Duration::from_secs(10));
        let taken = (0..10).filter(|_| gate.try_take().is_ok()).count();
        assert_eq!(taken, 4);
    }

    #[test]
    fn over_a_long_stretch_no_more_than_the_rate_starts() {
        let clock = ManualClock::new();
        let gate = RateGate::with_clock(rate("60/min"), clock.clone());
        let mut started = 0_u32;
        // Ten minutes in steps of 100 ms, taking whatever is allowed.
        for _ in 0..6000 {
            while gate.try_take().is_ok() {
                started = started.saturating_add(1);
            }
            clock.advance(Duration::from_millis(100));
        }
        // The burst of 60 at 0 s, then one a second at 1 s … 599 s (the last look is at
        // 599.9 s): the bucket never gives more than it holds plus what refilled.
        assert_eq!(started, 60 + 599);
    }
}
