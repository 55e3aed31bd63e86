//! Destinations: where one endpoint's events go, and the guards around each (issue #21).
//!
//! An endpoint may declare several destinations (`[[endpoint.destination]]`, read as
//! [`DestinationConfig`] and checked into a [`Destination`]). Each event that passes the
//! gate is stored **once** and becomes one delivery per destination whose [`EventFilter`]
//! passes it; a [`Router`] makes that decision for all of an endpoint's destinations with
//! at most one JSON parse of the body. Each destination has its own [`RateGate`] (token
//! bucket), [`ConcurrencyGate`], [`CircuitBreaker`] and pause switch, put together as
//! [`DestinationGates`], and, with an `order_key`, a [`LaneScheduler`] that keeps deliveries
//! with the same [`LaneKey`] in received order, one at a time.
//!
//! # How the worker loop (#19) uses these pieces
//!
//! This module keeps no store and runs nothing; the one worker loop over the queue trait
//! does, as follows.
//!
//! **At start.** Per endpoint, resolve each [`DestinationConfig`] with the endpoint's retry
//! policy ([`DestinationConfig::resolve`]; prefix errors with `endpoint E, destination D: `)
//! and build a [`Router`]. Per destination, one [`DestinationGates`] and, when
//! [`Destination::order_key`] is set, one [`LaneScheduler`] filled with the destination's
//! pending deliveries in received order (after a restart too).
//!
//! **On receive** (in the sink's transaction, before the 2xx). [`Router::route`] gives the
//! deliveries to create: one row (or message) per [`Routed`], keyed by (event, destination
//! name), carrying the lane key. No deliveries means the event is stored with status
//! `filtered`. Routing happens once, on receive: a later config change does not re-route
//! stored events.
//!
//! **Before each delivery**, per destination, in this order:
//! 1. *paused?* The pause is recorded in the store (so `hookgate destination pause` works
//!    across processes) and mirrored with [`DestinationGates::pause`]/`resume`.
//! 2. *circuit?* Open: nothing for this destination until the probe time
//!    ([`Hold::CircuitOpen`]); half-open: exactly one delivery, the probe, goes.
//! 3. *lane?* For an ordered destination, only [`LaneScheduler::has_ready`] deliveries may
//!    go: the head of each lane, unkeyed ones freely. Checked before taking anything.
//! 4. *concurrency?* A slot, held until the attempt ends ([`Hold::Busy`] otherwise).
//! 5. *rate?* A token, last, because it cannot be given back ([`Hold::Rate`] says how long).
//!
//! Steps 1, 2, 4 and 5 are [`DestinationGates::try_admit`]; step 3 is the loop's, between
//! nothing and everything: check `has_ready()`, call `try_admit()`, then take the delivery
//! with [`LaneScheduler::next_ready`]. A hold costs the delivery nothing: no attempt is
//! counted, its lease is not extended, it waits (the receiver keeps answering 2xx).
//! Dropping an [`Admission`] unused gives back the slot and the probe.
//!
//! **After each attempt.** [`Admission::finish`] with success or failure (a retry or a
//! dead letter counts as failure for the circuit), then, for an ordered destination,
//! [`LaneScheduler::finish`] with [`LaneOutcome::Delivered`], `Retrying` (the head keeps
//! its lane blocked; call [`LaneScheduler::retry_due`] when its retry time comes) or
//! `DeadLettered` (the lane moves on; log the returned
//! [`LaneRelease::Left`]`{ released_by_dead_letter: true, .. }` as "dead letter released
//! lane K"). Per delivery the store records: destination name, state (pending, in flight,
//! retrying, delivered, dead, filtered for the event), attempts, last error, next attempt
//! time, and the lane key if any. Retries use [`Destination::retry`], per destination:
//! one destination's dead letters and replays never touch another's deliveries (a replay
//! re-enters the lane at its tail).
//!
//! **Gauges** for `/metrics`, labelled `endpoint` and `destination` (never an event id or
//! a lane key): [`CIRCUIT_STATE_METRIC`] from [`CircuitState::gauge`],
//! [`LANE_BACKLOG_METRIC`] from [`LaneScheduler::backlog`], [`IN_FLIGHT_METRIC`].
//!
//! **Fleets.** The gates and lanes are in memory, per process: with several replicas over
//! a shared store, each limit holds per replica, and an ordered destination needs its lane
//! keys confined to one worker at a time (for example a per-key lock or partition in the
//! store) for the order to hold across replicas.

mod circuit;
mod clock;
mod concurrency;
mod destination;
mod duration;
mod filter;
mod gates;
mod glob;
mod lane;
mod rate;

pub use circuit::{
    CircuitBreaker, CircuitConfig, CircuitState, CircuitTicket, CircuitWait,
    DEFAULT_CIRCUIT_FAILURES, DEFAULT_CIRCUIT_OPEN_FOR,
};
pub use clock::{ManualClock, MonotonicClock, SystemMonotonic};
pub use concurrency::{ConcurrencyGate, ConcurrencyPermit};
pub use destination::{
    Destination, DestinationConfig, DestinationError, DestinationTarget, MAX_DESTINATION_NAME,
    Routed, Router,
};
pub use duration::parse_duration;
pub use filter::{EventFilter, EventView, FilterSpec};
pub use gates::{
    Admission, CIRCUIT_STATE_METRIC, DestinationGates, Hold, IN_FLIGHT_METRIC, LANE_BACKLOG_METRIC,
};
pub use lane::{LaneKey, LaneOutcome, LaneRelease, LaneScheduler, OrderKey};
pub use rate::{RateGate, RateLimit};
