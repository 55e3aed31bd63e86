//! The checks a worker makes before each delivery to one destination, in one place.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::circuit::{CircuitBreaker, CircuitState, CircuitTicket, CircuitWait};
use super::clock::{MonotonicClock, SystemMonotonic};
use super::concurrency::{ConcurrencyGate, ConcurrencyPermit};
use super::destination::Destination;
use super::rate::RateGate;

/// Gauge: a destination's circuit state (0 closed, 1 open, 2 half-open), labelled
/// `endpoint` and `destination`.
pub const CIRCUIT_STATE_METRIC: &str = "hookgate_destination_circuit_state";
/// Gauge: a destination's ordered-lane backlog, the deliveries with a lane key that have
/// not ended (waiting, retrying or running), counted in the store over every worker,
/// labelled `endpoint` and `destination`. Set by whoever can count the store (`hookgate
/// serve`'s `/metrics`, on each scrape), not by a worker, which holds only lane heads.
pub const LANE_BACKLOG_METRIC: &str = "hookgate_destination_lane_backlog";
/// Gauge: deliveries with a lane key one worker holds (leased, waiting for a place or
/// running), labelled `endpoint` and `destination`.
pub const LANE_HELD_METRIC: &str = "hookgate_destination_lane_held";
/// Gauge: deliveries in flight to a destination, labelled `endpoint` and `destination`.
pub const IN_FLIGHT_METRIC: &str = "hookgate_destination_in_flight";

/// Why a delivery may not start now. It waits, without using an attempt; nothing is
/// dropped and the receiver keeps answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hold {
    /// The destination is paused.
    Paused,
    /// The circuit is open; the probe may go in `remaining`.
    CircuitOpen {
        /// Time until the probe.
        remaining: Duration,
    },
    /// The circuit is half-open and its probe is running: wait for its outcome.
    ProbeInFlight,
    /// `concurrency` deliveries are in flight: wait until one ends.
    Busy,
    /// The rate limit allows the next start in `wait`.
    Rate {
        /// Time until a token is free.
        wait: Duration,
    },
}

/// Leave to start one delivery: holds the concurrency slot and the circuit breaker's ticket
/// until [`finish`](Self::finish). Dropped without `finish` (the delivery was not made after
/// all), it frees the slot and gives back the probe, so nothing is counted.
#[derive(Debug)]
#[must_use = "report the attempt's outcome with finish()"]
pub struct Admission<C: MonotonicClock = SystemMonotonic> {
    ticket: Option<CircuitTicket<C>>,
    _permit: Option<ConcurrencyPermit>,
}

impl<C: MonotonicClock> Admission<C> {
    /// Whether this delivery is the half-open circuit's probe.
    pub fn is_probe(&self) -> bool {
        self.ticket.as_ref().is_some_and(CircuitTicket::is_probe)
    }

    /// The attempt ended: `succeeded` is what the circuit breaker counts (a retry or a dead
    /// letter is a failure). Frees the concurrency slot.
    pub fn finish(self, succeeded: bool) {
        if let Some(ticket) = self.ticket {
            if succeeded {
                ticket.success();
            } else {
                ticket.failure();
            }
        }
    }
}

/// One destination's runtime guards: pause switch, circuit breaker, concurrency cap and
/// rate limit, as its [`Destination`] configures them (a guard not configured always
/// admits). [`try_admit`](Self::try_admit) checks them in this order: paused, circuit,
/// concurrency, rate. Each check only runs when the ones before it passed, and the rate
/// token, the one thing that cannot be given back, is taken last.
///
/// Ordered lanes are not in here: the worker picks *which* delivery to start from the
/// destination's [`LaneScheduler`](crate::LaneScheduler) (checking
/// [`has_ready`](crate::LaneScheduler::has_ready) before asking for admission).
///
/// ```
/// use std::num::NonZeroU32;
/// use std::time::Duration;
/// use hookgate_queue::{Destination, DestinationGates, DestinationTarget, Hold, ManualClock};
///
/// let destination = Destination::new("billing", DestinationTarget::Forward("http://b/".into()))
///     .unwrap()
///     .with_concurrency(NonZeroU32::new(1).unwrap())
///     .with_rate("1/s".parse().unwrap());
/// let clock = ManualClock::new();
/// let gates = DestinationGates::with_clock(&destination, clock.clone());
///
/// let first = gates.try_admit().unwrap();
/// assert_eq!(gates.try_admit().unwrap_err(), Hold::Busy);
/// first.finish(true);
/// assert_eq!(gates.try_admit().unwrap_err(), Hold::Rate { wait: Duration::from_secs(1) });
/// clock.advance(Duration::from_secs(1));
/// gates.pause();
/// assert_eq!(gates.try_admit().unwrap_err(), Hold::Paused);
/// gates.resume();
/// gates.try_admit().unwrap().finish(true);
/// ```
#[derive(Debug)]
pub struct DestinationGates<C: MonotonicClock = SystemMonotonic> {
    paused: AtomicBool,
    circuit: Option<CircuitBreaker<C>>,
    concurrency: Option<ConcurrencyGate>,
    rate: Option<RateGate<C>>,
}

impl DestinationGates {
    /// The guards of `destination` on the system's monotonic clock, not paused.
    pub fn new(destination: &Destination) -> Self {
        DestinationGates::with_clock(destination, SystemMonotonic::new())
    }
}

impl<C: MonotonicClock> DestinationGates<C> {
    /// The guards of `destination` on `clock`, not paused.
    pub fn with_clock(destination: &Destination, clock: C) -> Self {
        DestinationGates {
            paused: AtomicBool::new(false),
            circuit: destination
                .circuit()
                .map(|config| CircuitBreaker::with_clock(config, clock.clone())),
            concurrency: destination.concurrency().map(ConcurrencyGate::new),
            rate: destination
                .rate()
                .map(|rate| RateGate::with_clock(rate, clock)),
        }
    }

    /// May a delivery start now? See the type's documentation for the order of checks.
    ///
    /// # Errors
    /// The first check that said wait.
    pub fn try_admit(&self) -> Result<Admission<C>, Hold> {
        if self.is_paused() {
            return Err(Hold::Paused);
        }
        let ticket = match &self.circuit {
            Some(circuit) => Some(circuit.try_call().map_err(|wait| match wait {
                CircuitWait::Open { remaining } => Hold::CircuitOpen { remaining },
                CircuitWait::ProbeInFlight => Hold::ProbeInFlight,
            })?),
            None => None,
        };
        let permit = match &self.concurrency {
            Some(gate) => Some(gate.try_permit().ok_or(Hold::Busy)?),
            None => None,
        };
        if let Some(rate) = &self.rate {
            rate.try_take().map_err(|wait| Hold::Rate { wait })?;
        }
        Ok(Admission {
            ticket,
            _permit: permit,
        })
    }

    /// Stops admitting deliveries (the pause of `hookgate destination pause`; the worker
    /// keeps the switch in step with the store, where the pause is recorded).
    pub fn pause(&self) {
        self.paused.store(true, Ordering::Release);
    }

    /// Admits deliveries again.
    pub fn resume(&self) {
        self.paused.store(false, Ordering::Release);
    }

    /// Whether the destination is paused.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Acquire)
    }

    /// The circuit's state, when there is a breaker (for [`CIRCUIT_STATE_METRIC`]).
    pub fn circuit_state(&self) -> Option<CircuitState> {
        self.circuit.as_ref().map(CircuitBreaker::state)
    }

    /// Deliveries holding a concurrency slot, when there is a cap (for
    /// [`IN_FLIGHT_METRIC`]; without a cap the worker counts its own).
    pub fn in_flight(&self) -> Option<u32> {
        self.concurrency.as_ref().map(ConcurrencyGate::in_flight)
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;
    use crate::route::circuit::CircuitConfig;
    use crate::route::clock::ManualClock;
    use crate::route::destination::DestinationTarget;

    fn destination() -> Destination {
        Destination::new("d", DestinationTarget::Exec("cat".into())).unwrap()
    }

    #[test]
    fn an_unguarded_destination_always_admits() {
        let gates = DestinationGates::new(&destination());
        let many: Vec<_> = (0..100).map(|_| gates.try_admit().unwrap()).collect();
        assert!(many.iter().all(|a| !a.is_probe()));
        assert_eq!(gates.circuit_state(), None);
        assert_eq!(gates.in_flight(), None);
    }

    #[test]
    fn an_open_circuit_holds_before_taking_a_slot_or_a_token() {
        let clock = ManualClock::new();
        let d = destination()
            .with_circuit(CircuitConfig::new(NonZeroU32::MIN, Duration::from_secs(10)))
            .with_concurrency(NonZeroU32::MIN)
            .with_rate("1/s".parse().unwrap());
        let gates = DestinationGates::with_clock(&d, clock.clone());
        gates.try_admit().unwrap().finish(false);
        assert_eq!(gates.circuit_state(), Some(CircuitState::Open));
        assert_eq!(gates.in_flight(), Some(0));
        assert_eq!(
            gates.try_admit().unwrap_err(),
            Hold::CircuitOpen {
                remaining: Duration::from_secs(10)
            }
        );
        // Open for 10 s: the rate token refilled long ago, so the probe goes straight in.
        clock.advance(Duration::from_secs(10));
        let probe = gates.try_admit().unwrap();
        assert!(probe.is_probe());
        assert_eq!(gates.try_admit().unwrap_err(), Hold::ProbeInFlight);
        probe.finish(true);
        assert_eq!(gates.circuit_state(), Some(CircuitState::Closed));
    }

    #[test]
    fn a_rate_hold_gives_back_the_slot_and_the_probe() {
        let clock = ManualClock::new();
        let d = destination()
            .with_circuit(CircuitConfig::new(NonZeroU32::MIN, Duration::from_secs(1)))
            .with_concurrency(NonZeroU32::MIN)
            .with_rate("1/min".parse().unwrap());
        let gates = DestinationGates::with_clock(&d, clock.clone());
        gates.try_admit().unwrap().finish(false);
        clock.advance(Duration::from_secs(1));
        // Half-open, a slot free, but the token was used by the first call.
        assert_eq!(
            gates.try_admit().unwrap_err(),
            Hold::Rate {
                wait: Duration::from_secs(59)
            }
        );
        assert_eq!(gates.in_flight(), Some(0));
        assert_eq!(gates.circuit_state(), Some(CircuitState::HalfOpen));
        clock.advance(Duration::from_secs(59));
        let probe = gates.try_admit().unwrap();
        assert!(probe.is_probe());
        assert_eq!(gates.in_flight(), Some(1));
        drop(probe);
        assert_eq!(gates.in_flight(), Some(0));
        assert_eq!(gates.circuit_state(), Some(CircuitState::HalfOpen));
    }

    #[test]
    fn paused_holds_first_and_resume_lets_through() {
        let gates = DestinationGates::new(&destination().with_concurrency(NonZeroU32::MIN));
        gates.pause();
        assert!(gates.is_paused());
        assert_eq!(gates.try_admit().unwrap_err(), Hold::Paused);
        gates.resume();
        let admitted = gates.try_admit().unwrap();
        assert_eq!(gates.try_admit().unwrap_err(), Hold::Busy);
        admitted.finish(true);
        assert!(gates.try_admit().is_ok());
    }
}
