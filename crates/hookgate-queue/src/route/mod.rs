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
//! Steps 1, 2, 4 and 5 are [`DestinationGates::try_admit`]; the loop does step 3 around
//! it: check `has_ready()`, then `try_admit()`, then take the delivery with
//! [`LaneScheduler::next_ready`]. A hold costs the delivery nothing: no attempt is counted
//! and it stays pending in the store (lease only what can start, or give the lease back),
//! while the receiver keeps answering 2xx. When to look again: [`Hold::CircuitOpen`] and
//! [`Hold::Rate`] carry the time; [`Hold::Busy`] and [`Hold::ProbeInFlight`] end when a
//! delivery of that destination ends; [`Hold::Paused`] on resume. A hold is per
//! destination and must never stall the loop's other destinations: that is what keeps one
//! slow or broken destination from delaying another. Dropping an [`Admission`] unused gives
//! back the slot and the probe.
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
//! [`LANE_HELD_METRIC`] (what the worker holds), [`IN_FLIGHT_METRIC`]; and, from the store,
//! [`LANE_BACKLOG_METRIC`].
//!
//! **Lanes and leasing.** A [`LaneScheduler`] orders only what it is given: feed it every
//! pending delivery of its destination, in received order. If the loop feeds it a window
//! (the oldest N), a blocked lane's later deliveries stay in the window, so size the window
//! well above the concurrency or feed the scheduler per lane from the store.
//!
//! **Where this stands** (issue 21). The loop does all of the above in
//! [`WorkerBuilder::destinations`](crate::WorkerBuilder::destinations): the holds in the
//! one place that picks what starts next (`Waiting::next` in `worker.rs`), the end in
//! `record`, gauges per destination, a held destination's deliveries given back
//! uncounted and skipped by the next [`Queue::lease_except`](crate::Queue::lease_except),
//! pauses polled through [`Queue::paused`](crate::Queue::paused). Lanes are kept by the
//! store, the note's second option ("feed the scheduler per lane from the store"): a queue
//! hands out only the head of each (destination, lane key), so a retrying head keeps its
//! lane across restarts; the loop adds "one running delivery per lane of what it holds"
//! and logs the release by a dead letter. The [`LaneScheduler`] is not used by the loop
//! (it orders an in-memory window, which a lease-based store cannot give it whole).
//!
//! The SQLite inbox implements it (`hookgate-inbox`, `deliveries.rs`: routing in the log
//! record, a `deliveries` table, head-of-lane leasing, pauses in `destination_pauses`),
//! and so does the PostgreSQL store (`hookgate-postgres`, `deliveries.rs`: routing in the
//! enqueue's transaction, one `deliveries` row per (event, destination), head-of-lane
//! leasing under `FOR UPDATE SKIP LOCKED` whose head row is the lane's lock across
//! replicas, pauses in `destination_pauses`, per-destination replay); `hookgate serve`
//! runs both, and both answer the per-destination questions of the event log
//! ([`EventLog`](crate::event_log::EventLog)). The queues:
//! - **Redis streams** (`hookgate-redis`): one stream per destination
//!   (`<stream>:<destination>`, the destination also in the envelope), written at enqueue
//!   by one Lua script with the event's enqueue marker; `lease_except` skips held
//!   destinations' streams; pauses in the set `<stream>:paused`; dead letters and replay
//!   per destination; ordered lanes as 16 partition streams per ordered destination, each
//!   leased one head at a time under a per-partition lock (`SET NX PX`, renewed with the
//!   delivery lease).
//! - **JetStream** (`hookgate-nats`): one subject per destination
//!   (`<subject>.<name>`, `Nats-Msg-Id` `<dedup key>@<name>`), one durable consumer per
//!   destination that `lease_except` skips when held, pauses in a small stream, dead
//!   letters and replay per destination; ordered lanes as 16 partition subjects per
//!   ordered destination, each with a consumer whose `max_ack_pending` is 1.
//!
//! **Fleets.** The gates are in memory, per process: with several replicas over a shared
//! store, each limit holds per replica. Lanes are kept by the store (it hands out only the
//! head of each lane, or one delivery per lane partition), so the order holds across
//! replicas on PostgreSQL, Redis and JetStream alike.

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
    LANE_HELD_METRIC,
};
pub use lane::{
    LANE_PARTITIONS, LaneKey, LaneOutcome, LaneRelease, LaneScheduler, OrderKey, lane_partition,
};
pub use rate::{RateGate, RateLimit};

#[cfg(test)]
mod tests {
    //! The pieces used together the way the design note above tells the worker loop to.

    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;
    use crate::RetryPolicy;

    fn endpoint() -> Router {
        let text = r#"
            [[destination]]
            name = "billing"
            forward = "http://127.0.0.1:3000/billing"
            filter = { type = "invoice.*" }
            concurrency = 2
            order_key = "/customer"
            circuit = { failures = 3, open_for = "30s" }
            [[destination]]
            name = "audit"
            exec = "./audit.sh"
            rate = "2/s"
        "#;
        #[derive(serde::Deserialize)]
        struct Endpoint {
            destination: Vec<DestinationConfig>,
        }
        let endpoint: Endpoint = toml::from_str(text).unwrap();
        let destinations = endpoint
            .destination
            .iter()
            .map(|c| c.resolve(RetryPolicy::new()).unwrap())
            .collect();
        Router::new(destinations).unwrap()
    }

    #[test]
    fn fan_out_with_an_ordered_lane_whose_head_fails_twice() {
        let router = endpoint();
        let clock = ManualClock::new();
        let gates: Vec<DestinationGates<ManualClock>> = router
            .destinations()
            .iter()
            .map(|d| DestinationGates::with_clock(d, clock.clone()))
            .collect();
        let mut lanes: LaneScheduler<(usize, u32)> = LaneScheduler::new();
        let mut unordered: Vec<(usize, u32)> = Vec::new();

        // Receive: each event routed once; deliveries created per matching destination.
        let events = [
            ("invoice.paid", "c1"),
            ("invoice.paid", "c2"),
            ("charge.failed", "c1"),
            ("invoice.updated", "c1"),
            ("invoice.updated", "c2"),
            ("invoice.voided", "c3"),
        ];
        let mut filtered = 0;
        for (id, (kind, customer)) in (0_u32..).zip(events) {
            let body = format!(r#"{{"customer":"{customer}"}}"#);
            let routed = router.route(EventView::new(Some(kind), &[], body.as_bytes()));
            if routed.is_empty() {
                filtered += 1;
            }
            for r in routed {
                let destination = r.destination();
                if router.destinations()[destination].order_key().is_some() {
                    lanes.push((destination, id), r.into_lane());
                } else {
                    unordered.push((destination, id));
                }
            }
        }
        assert_eq!(filtered, 0, "audit takes everything");
        assert_eq!(unordered.len(), 6);
        assert_eq!(lanes.backlog(), 5);

        // Deliver to billing: event 0 (c1's head) fails twice, then succeeds.
        let billing = &gates[0];
        let mut failures_left = 2;
        let mut delivered: Vec<u32> = Vec::new();
        let mut dead_letter_releases = 0;
        let mut rounds = 0;
        while lanes.backlog() > 0 {
            rounds += 1;
            assert!(rounds < 100, "stuck with {} held", lanes.backlog());
            let mut started = Vec::new();
            while lanes.has_ready() {
                let Ok(admission) = billing.try_admit() else {
                    break;
                };
                let Some(delivery) = lanes.next_ready() else {
                    break;
                };
                started.push((delivery, admission));
            }
            assert!(billing.in_flight().unwrap() <= 2);
            for ((destination, id), admission) in started {
                let ok = !(id == 0 && failures_left > 0);
                admission.finish(ok);
                if ok {
                    delivered.push(id);
                    if let LaneRelease::Left {
                        released_by_dead_letter: true,
                        ..
                    } = lanes.finish(&(destination, id), LaneOutcome::Delivered)
                    {
                        dead_letter_releases += 1;
                    }
                } else {
                    failures_left -= 1;
                    lanes.finish(&(destination, id), LaneOutcome::Retrying);
                }
            }
            // The retry falls due before the next round.
            lanes.retry_due(&(0, 0));
        }
        assert_eq!(dead_letter_releases, 0);
        // c2's two events went through while c1's head was failing; c1 kept its order.
        assert_eq!(delivered, [1, 4, 0, 5, 3]);
        let mut by_customer: HashMap<&str, Vec<u32>> = HashMap::new();
        for id in &delivered {
            let customer = events[*id as usize].1;
            by_customer.entry(customer).or_default().push(*id);
        }
        assert_eq!(by_customer["c1"], [0, 3]);
        assert_eq!(by_customer["c2"], [1, 4]);
        assert_eq!(by_customer["c3"], [5]);
        // Two failures stay under the circuit's three.
        assert_eq!(billing.circuit_state(), Some(CircuitState::Closed));

        // Audit is rate limited on its own: 2 at once, then one per half second.
        let audit = &gates[1];
        let mut sent = 0;
        while sent < unordered.len() {
            match audit.try_admit() {
                Ok(admission) => {
                    admission.finish(true);
                    sent += 1;
                }
                Err(Hold::Rate { wait }) => clock.advance(wait),
                Err(other) => panic!("unexpected hold {other:?}"),
            }
        }
        assert_eq!(clock.now(), Duration::from_secs(2));
    }
}
