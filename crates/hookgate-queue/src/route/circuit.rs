//! The per-destination circuit breaker.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::clock::{MonotonicClock, SystemMonotonic};

/// Default consecutive failures that open a circuit: 5.
pub const DEFAULT_CIRCUIT_FAILURES: u32 = 5;
/// Default time a circuit stays open before its probe: 30 seconds.
pub const DEFAULT_CIRCUIT_OPEN_FOR: Duration = Duration::from_secs(30);

/// When a destination's circuit opens and for how long: `circuit = { failures = 5,
/// open_for = "30s" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitConfig {
    failures: NonZeroU32,
    open_for: Duration,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        CircuitConfig {
            failures: NonZeroU32::new(DEFAULT_CIRCUIT_FAILURES).unwrap_or(NonZeroU32::MIN),
            open_for: DEFAULT_CIRCUIT_OPEN_FOR,
        }
    }
}

impl CircuitConfig {
    /// Opens after `failures` consecutive failed attempts, for `open_for`.
    pub fn new(failures: NonZeroU32, open_for: Duration) -> Self {
        CircuitConfig { failures, open_for }
    }

    /// Consecutive failures that open the circuit.
    pub fn failures(&self) -> u32 {
        self.failures.get()
    }

    /// How long the circuit stays open before one probe call is let through.
    pub fn open_for(&self) -> Duration {
        self.open_for
    }
}

/// The three states, with their gauge values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CircuitState {
    /// Calls go through (gauge 0).
    Closed,
    /// No calls until the open time is over (gauge 1).
    Open,
    /// One probe call is allowed or running; it decides (gauge 2).
    HalfOpen,
}

impl CircuitState {
    /// The value of the circuit-state gauge: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> f64 {
        match self {
            CircuitState::Closed => 0.0,
            CircuitState::Open => 1.0,
            CircuitState::HalfOpen => 2.0,
        }
    }
}

/// Why [`CircuitBreaker::try_call`] said not now. The delivery waits (without using an
/// attempt); nothing is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CircuitWait {
    /// Open: the probe may go in this long.
    Open {
        /// Time left until the probe.
        remaining: Duration,
    },
    /// Half-open and the probe is running: wait for its outcome.
    ProbeInFlight,
}

#[derive(Debug, Clone, Copy)]
enum Inner {
    Closed { failures: u32 },
    Open { until: Duration },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
struct Shared {
    state: Inner,
    /// Changes on every transition, so outcomes of calls started in an earlier state are
    /// recognised and ignored.
    generation: u64,
}

/// A destination's circuit breaker: closed → open after `failures` consecutive failed
/// attempts, for `open_for` → half-open, where exactly one probe call decides (success
/// closes, failure opens again). Clones share the state.
///
/// A worker asks [`try_call`](Self::try_call) before a delivery and reports the attempt's
/// outcome on the returned [`CircuitTicket`]. Outcomes of calls that started before the
/// last transition are ignored: only the probe decides a half-open circuit, and a late
/// failure does not extend an open one. A ticket dropped without an outcome (the delivery
/// was not attempted after all) gives the probe back, so the next caller probes.
///
/// ```
/// use std::num::NonZeroU32;
/// use std::time::Duration;
/// use hookgate_queue::{CircuitBreaker, CircuitConfig, CircuitState, ManualClock};
///
/// let clock = ManualClock::new();
/// let config = CircuitConfig::new(NonZeroU32::new(2).unwrap(), Duration::from_secs(30));
/// let breaker = CircuitBreaker::with_clock(config, clock.clone());
///
/// breaker.try_call().unwrap().failure();
/// breaker.try_call().unwrap().failure();
/// assert_eq!(breaker.state(), CircuitState::Open);
/// assert!(breaker.try_call().is_err());
///
/// clock.advance(Duration::from_secs(30));
/// let probe = breaker.try_call().unwrap();
/// assert!(probe.is_probe());
/// assert!(breaker.try_call().is_err()); // only one probe
/// probe.success();
/// assert_eq!(breaker.state(), CircuitState::Closed);
/// ```
#[derive(Clone)]
pub struct CircuitBreaker<C: MonotonicClock = SystemMonotonic> {
    config: CircuitConfig,
    clock: C,
    shared: Arc<Mutex<Shared>>,
}

/// Permission for one call; report how it went with [`success`](Self::success) or
/// [`failure`](Self::failure).
#[must_use = "report the outcome with success() or failure()"]
pub struct CircuitTicket<C: MonotonicClock = SystemMonotonic> {
    breaker: CircuitBreaker<C>,
    generation: u64,
    probe: bool,
    reported: bool,
}

impl CircuitBreaker {
    /// A closed breaker on the system's monotonic clock.
    pub fn new(config: CircuitConfig) -> Self {
        CircuitBreaker::with_clock(config, SystemMonotonic::new())
    }
}

impl<C: MonotonicClock> CircuitBreaker<C> {
    /// A closed breaker on `clock`.
    pub fn with_clock(config: CircuitConfig, clock: C) -> Self {
        CircuitBreaker {
            config,
            clock,
            shared: Arc::new(Mutex::new(Shared {
                state: Inner::Closed { failures: 0 },
                generation: 0,
            })),
        }
    }

    /// May a call go now? Closed: yes. Open: not until `open_for` is over; then the first
    /// caller gets the probe (the circuit is half-open) and everyone else waits for its
    /// outcome.
    ///
    /// # Errors
    /// Why not, and for open circuits how long until the probe.
    pub fn try_call(&self) -> Result<CircuitTicket<C>, CircuitWait> {
        let now = self.clock.now();
        let mut shared = self.lock();
        let probe = match shared.state {
            Inner::Closed { .. } => false,
            Inner::Open { until } if now < until => {
                return Err(CircuitWait::Open {
                    remaining: until.saturating_sub(now),
                });
            }
            Inner::Open { .. } => {
                shared.state = Inner::HalfOpen { probing: true };
                shared.generation = shared.generation.wrapping_add(1);
                true
            }
            Inner::HalfOpen { probing: true } => return Err(CircuitWait::ProbeInFlight),
            Inner::HalfOpen { probing: false } => {
                shared.state = Inner::HalfOpen { probing: true };
                true
            }
        };
        Ok(CircuitTicket {
            breaker: self.clone(),
            generation: shared.generation,
            probe,
            reported: false,
        })
    }

    /// The state now (an open circuit whose time is over reads as half-open).
    pub fn state(&self) -> CircuitState {
        let now = self.clock.now();
        match self.lock().state {
            Inner::Closed { .. } => CircuitState::Closed,
            Inner::Open { until } if now < until => CircuitState::Open,
            Inner::Open { .. } | Inner::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    /// The configuration.
    pub fn config(&self) -> CircuitConfig {
        self.config
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // The state is a few plain values, valid whatever a panicking holder did.
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn report(&self, generation: u64, probe: bool, outcome: Outcome) {
        let now = self.clock.now();
        let mut shared = self.lock();
        if shared.generation != generation {
            return;
        }
        let next = match (shared.state, outcome) {
            (Inner::Closed { .. }, Outcome::Success) => Inner::Closed { failures: 0 },
            (Inner::Closed { failures }, Outcome::Failure) => {
                let failures = failures.saturating_add(1);
                if failures >= self.config.failures.get() {
                    self.open_at(now)
                } else {
                    Inner::Closed { failures }
                }
            }
            (Inner::HalfOpen { .. }, Outcome::Success) if probe => Inner::Closed { failures: 0 },
            (Inner::HalfOpen { .. }, Outcome::Failure) if probe => self.open_at(now),
            (Inner::HalfOpen { .. }, Outcome::Abandoned) if probe => {
                Inner::HalfOpen { probing: false }
            }
            (state, _) => state,
        };
        let transition = !matches!(
            (shared.state, next),
            (Inner::Closed { .. }, Inner::Closed { .. })
                | (Inner::HalfOpen { .. }, Inner::HalfOpen { .. })
        );
        shared.state = next;
        if transition {
            shared.generation = shared.generation.wrapping_add(1);
        }
    }

    fn open_at(&self, now: Duration) -> Inner {
        Inner::Open {
            until: now.saturating_add(self.config.open_for),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    Abandoned,
}

impl<C: MonotonicClock> CircuitTicket<C> {
    /// Whether this call is the half-open circuit's probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The call succeeded: resets the failure count, or closes a half-open circuit.
    pub fn success(mut self) {
        self.reported = true;
        self.breaker
            .report(self.generation, self.probe, Outcome::Success);
    }

    /// The call failed (an error, a timeout, a 5xx): counts towards opening, or opens a
    /// half-open circuit again.
    pub fn failure(mut self) {
        self.reported = true;
        self.breaker
            .report(self.generation, self.probe, Outcome::Failure);
    }
}

impl<C: MonotonicClock> Drop for CircuitTicket<C> {
    fn drop(&mut self) {
        if !self.reported {
            self.breaker
                .report(self.generation, self.probe, Outcome::Abandoned);
        }
    }
}

impl<C: MonotonicClock> fmt::Debug for CircuitBreaker<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("config", &self.config)
            .field("state", &self.state())
            .finish()
    }
}

impl<C: MonotonicClock> fmt::Debug for CircuitTicket<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitTicket")
            .field("probe", &self.probe)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::clock::ManualClock;

    fn breaker(failures: u32, open_secs: u64) -> (CircuitBreaker<ManualClock>, ManualClock) {
        let clock = ManualClock::new();
        let config = CircuitConfig::new(
            NonZeroU32::new(failures).unwrap(),
            Duration::from_secs(open_secs),
        );
        (CircuitBreaker::with_clock(config, clock.clone()), clock)
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let (b, _) = breaker(3, 30);
        b.try_call().unwrap().failure();
        b.try_call().unwrap().failure();
        b.try_call().unwrap().success();
        b.try_call().unwrap().failure();
        b.try_call().unwrap().failure();
        assert_eq!(b.state(), CircuitState::Closed);
        b.try_call().unwrap().failure();
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(b.state().gauge(), 1.0);
    }

    #[test]
    fn open_waits_then_exactly_one_probe_decides() {
        let (b, clock) = breaker(1, 30);
        b.try_call().unwrap().failure();
        clock.advance(Duration::from_secs(10));
        assert_eq!(
            b.try_call().unwrap_err(),
            CircuitWait::Open {
                remaining: Duration::from_secs(20)
            }
        );
        clock.advance(Duration::from_secs(20));
        assert_eq!(b.state(), CircuitState::HalfOpen);
        assert_eq!(b.state().gauge(), 2.0);
        let probe = b.try_call().unwrap();
        assert!(probe.is_probe());
        assert_eq!(b.try_call().unwrap_err(), CircuitWait::ProbeInFlight);
        assert_eq!(b.try_call().unwrap_err(), CircuitWait::ProbeInFlight);

        // The probe fails: open again for the whole time.
        probe.failure();
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(
            b.try_call().unwrap_err(),
            CircuitWait::Open {
                remaining: Duration::from_secs(30)
            }
        );
        clock.advance(Duration::from_secs(30));

        // This probe succeeds: closed, and calls flow.
        let probe = b.try_call().unwrap();
        probe.success();
        assert_eq!(b.state(), CircuitState::Closed);
        assert_eq!(b.state().gauge(), 0.0);
        let call = b.try_call().unwrap();
        assert!(!call.is_probe());
        call.success();
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_caller_probe() {
        let (b, clock) = breaker(1, 5);
        b.try_call().unwrap().failure();
        clock.advance(Duration::from_secs(5));
        drop(b.try_call().unwrap());
        assert_eq!(b.state(), CircuitState::HalfOpen);
        let probe = b.try_call().unwrap();
        assert!(probe.is_probe());
        probe.success();
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[test]
    fn outcomes_of_calls_started_before_a_transition_are_ignored() {
        let (b, clock) = breaker(2, 30);
        let slow_a = b.try_call().unwrap();
        let slow_b = b.try_call().unwrap();
        let slow_c = b.try_call().unwrap();
        b.try_call().unwrap().failure();
        b.try_call().unwrap().failure();
        assert_eq!(b.state(), CircuitState::Open);
        // A late success does not close it, a late failure does not extend it.
        slow_a.success();
        clock.advance(Duration::from_secs(20));
        slow_b.failure();
        assert_eq!(b.state(), CircuitState::Open);
        clock.advance(Duration::from_secs(10));
        let probe = b.try_call().unwrap();
        // An old call ending while the probe runs does not decide.
        slow_c.success();
        assert_eq!(b.try_call().unwrap_err(), CircuitWait::ProbeInFlight);
        probe.failure();
        assert_eq!(b.state(), CircuitState::Open);
    }

    #[test]
    fn dropped_ordinary_tickets_change_nothing() {
        let (b, _) = breaker(1, 30);
        drop(b.try_call().unwrap());
        assert_eq!(b.state(), CircuitState::Closed);
        let clone = b.clone();
        clone.try_call().unwrap().failure();
        assert_eq!(b.state(), CircuitState::Open);
        assert_eq!(
            CircuitConfig::default().failures(),
            DEFAULT_CIRCUIT_FAILURES
        );
        assert_eq!(
            CircuitConfig::default().open_for(),
            DEFAULT_CIRCUIT_OPEN_FOR
        );
    }
}
