//! The queue trait: the few operations a backend performs for the one worker loop.

use std::fmt;
use std::time::{Duration, SystemTime};

use hookgate::BoxFuture;

use crate::{DEFAULT_LEASE, DEFAULT_POLL_INTERVAL, LaneKey};

/// A queue the one [`Worker`](crate::Worker) loop drains: the SQLite inbox, a Redis stream,
/// a JetStream stream, a PostgreSQL store, or your own.
///
/// The loop owns everything that is the same for every backend (bounded concurrency,
/// leasing ahead, lease renewal, the handler's timeout and panics, the retry policy and
/// the dead-letter rule, graceful shutdown, stats, metrics and tracing); a queue only
/// stores and hands over. Its operations:
///
/// | operation | what the backend does |
/// |---|---|
/// | [`lease`](Self::lease) | take up to `max` due deliveries for `lease` (an attempt counts from here), waiting up to `wait` when none is due if it waits by fetching (a blocking read, a pull with expiry) |
/// | [`wait`](Self::wait) | wait for new work without hard polling (an in-process notification, `LISTEN/NOTIFY`); must be cancel-safe |
/// | [`renew`](Self::renew) | extend the leases still held, so a slow handler is not taken over |
/// | [`complete`](Self::complete) | mark a delivery processed |
/// | [`retry`](Self::retry) | schedule another attempt at a time, recording the error |
/// | [`dead`](Self::dead) | move a delivery to the dead letters, recording why |
/// | [`release`](Self::release) | give deliveries back at shutdown without counting their attempt (where the backend can) |
///
/// Each operation on a leased delivery takes its [`Ticket`](Self::Ticket), the backend's
/// proof of the lease (a lease token, a stream entry id, a JetStream message), and answers
/// `Ok(false)` when the lease was lost meanwhile (it expired and another consumer took the
/// delivery over): the loop then counts a lost lease and changes nothing. A delivery whose
/// consumer dies is not released: its lease expires and the backend hands it out again
/// from [`lease`](Self::lease), as a new attempt.
///
/// **Destinations** (issue 21). A queue whose deliveries each go to one of an endpoint's
/// destinations says which on each [`Leased`] ([`Leased::with_destination`]), and then
/// also:
/// - leases with [`lease_except`](Self::lease_except), skipping the destinations the loop
///   holds (paused, circuit open, at their concurrency or rate limit), so that one held
///   destination never fills the loop with deliveries it cannot start;
/// - hands out, for an ordered destination, **only the head of each lane**: the oldest
///   unfinished delivery of a (destination, lane key), and nothing else of that lane
///   while it is leased or waits for its retry (a dead letter finishes it). The loop
///   keeps at most one delivery per lane running of what it holds, but only the store
///   sees the deliveries it has not handed out, so only the store can keep a retrying
///   head ahead of the rest of its lane, across restarts too;
/// - answers [`paused`](Self::paused) with the destinations paused in the store
///   (`hookgate destination pause`), which the loop polls.
///
/// **Replay of dead letters** is not part of the trait: each backend keeps its own
/// dead-letter API (listing and replay differ too much: rows, a stream, a subject), and a
/// replayed delivery simply becomes due again for [`lease`](Self::lease).
///
/// The loop calls [`lease`](Self::lease) at most once at a time and awaits it to the end
/// except when it stops (it then awaits it for a bounded time and releases what it
/// returned); the other operations may run concurrently with it and with each other.
pub trait Queue: Send + Sync + 'static {
    /// What the handler receives.
    type Event: QueueEvent;
    /// The backend's proof of a lease on one delivery; cloned cheaply.
    type Ticket: Clone + Send + Sync + 'static;
    /// What goes wrong talking to the backend (logged by the loop, never shown to senders).
    type Error: fmt::Display + Send + 'static;

    /// The worker settings this backend suggests; a
    /// [`WorkerBuilder`](crate::WorkerBuilder) starts from them.
    fn defaults(&self) -> Defaults {
        Defaults::new()
    }

    /// The clock for attempt start times and retry times (default: the system clock).
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    /// Called once when the worker starts, before the first lease (start a listening
    /// connection, say). Default: nothing.
    fn on_start(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Leases up to `max` due deliveries (at least 1) for `lease`. A backend that waits
    /// for new work by fetching it (a blocking read, a pull with expiry) may wait up to
    /// `wait` when nothing is due; the others return at once, possibly with nothing, and
    /// wait in [`wait`](Self::wait).
    fn lease(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> BoxFuture<'_, LeaseResult<Self>>;

    /// Leases like [`lease`](Self::lease), skipping deliveries to the destinations named in
    /// `held` (by [`Leased::destination`]). The loop calls this instead of `lease` when it
    /// runs with destinations. Default: `lease`, ignoring `held` (right for a queue
    /// without destinations; one with destinations must skip them, or the loop gives the
    /// held deliveries back and leases them again until the hold ends).
    fn lease_except(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
        held: Vec<String>,
    ) -> BoxFuture<'_, LeaseResult<Self>> {
        let _ = held;
        self.lease(max, lease, wait)
    }

    /// The destinations paused in the store (`hookgate destination pause NAME`, possibly
    /// from another process). The loop polls it every poll interval when it runs with
    /// destinations and holds their deliveries. Default: none.
    fn paused(&self) -> BoxFuture<'_, Result<Vec<String>, Self::Error>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Resolves when new work may be due, at the latest after `timeout` (the poll
    /// interval), without hard polling; the loop calls it after a lease found less than it
    /// asked for. The loop drops it when anything else happens, so it must be cancel-safe.
    /// Default: sleeps `timeout` (plain polling). A queue that already waited inside
    /// [`lease`](Self::lease) resolves at once instead; one that waits in neither would
    /// keep the loop spinning.
    fn wait(&self, timeout: Duration) -> BoxFuture<'_, ()> {
        Box::pin(tokio::time::sleep(timeout))
    }

    /// Extends the leases of `tickets` by `lease` (those still held by this consumer).
    fn renew(
        &self,
        tickets: Vec<Self::Ticket>,
        lease: Duration,
    ) -> BoxFuture<'_, Result<(), Self::Error>>;

    /// Marks a delivery processed. `Ok(false)`: the lease was lost, nothing changed.
    fn complete(
        &self,
        ticket: Self::Ticket,
        attempt: AttemptRecord,
    ) -> BoxFuture<'_, Result<bool, Self::Error>>;

    /// Schedules the next attempt at `at`, recording `error`. `Ok(false)`: the lease was
    /// lost, nothing changed.
    fn retry(
        &self,
        ticket: Self::Ticket,
        attempt: AttemptRecord,
        at: SystemTime,
        error: String,
    ) -> BoxFuture<'_, Result<bool, Self::Error>>;

    /// Moves a delivery to the dead letters, recording `reason`. `Ok(false)`: the lease was
    /// lost, nothing changed.
    fn dead(
        &self,
        ticket: Self::Ticket,
        attempt: AttemptRecord,
        reason: String,
    ) -> BoxFuture<'_, Result<bool, Self::Error>>;

    /// Gives deliveries back at shutdown, due at once, their attempt not counted where the
    /// backend can (JetStream counts a redelivery); returns how many were given back.
    fn release(&self, tickets: Vec<Self::Ticket>) -> BoxFuture<'_, Result<u64, Self::Error>>;

    /// Called once when the worker stopped, after the release. Default: nothing.
    fn on_shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// What [`Queue::lease`] answers: the deliveries leased, or what went wrong.
pub type LeaseResult<Q> =
    Result<Vec<Leased<<Q as Queue>::Ticket, <Q as Queue>::Event>>, <Q as Queue>::Error>;

/// What the loop reads from an event for its `webhook.process` span and its metrics.
pub trait QueueEvent: Send + 'static {
    /// The scheme that verified the event (the `scheme` label).
    fn scheme(&self) -> &str;
    /// The provider's delivery id, where the scheme carries one.
    fn delivery_id(&self) -> Option<&str>;
    /// The event type, where the scheme carries one.
    fn event_type(&self) -> Option<&str>;
}

/// One delivery a queue leased to the worker.
///
/// A delivery is one stored event, or, for an endpoint with destinations, one event's
/// delivery to one destination ([`with_destination`](Self::with_destination)), with the
/// lane key of an ordered destination. Queues build it with [`new`](Self::new) or
/// [`unreadable`](Self::unreadable).
#[non_exhaustive]
pub struct Leased<T, E> {
    /// The proof of the lease.
    pub ticket: T,
    /// The queue's id of the delivery, for logs (`queue_id` in the span).
    pub id: String,
    /// Which attempt this is, from 1, counting attempts cut short by crashes.
    pub attempt: u32,
    /// The event, or why it could not be read (the loop then dead-letters it without
    /// calling the handler).
    pub event: Result<E, String>,
    /// The destination this delivery goes to (its name), for a queue with destinations.
    pub destination: Option<String>,
    /// The lane key, for a delivery to an ordered destination whose event has one.
    pub lane: Option<LaneKey>,
}

impl<T, E> Leased<T, E> {
    /// A delivery of `event`, attempt number `attempt` (from 1).
    pub fn new(ticket: T, id: impl Into<String>, attempt: u32, event: E) -> Self {
        Leased {
            ticket,
            id: id.into(),
            attempt,
            event: Ok(event),
            destination: None,
            lane: None,
        }
    }

    /// Says which destination the delivery goes to, and its lane key if the destination
    /// is ordered (see [`Queue`] on destinations).
    #[must_use]
    pub fn with_destination(
        mut self,
        destination: impl Into<String>,
        lane: Option<LaneKey>,
    ) -> Self {
        self.destination = Some(destination.into());
        self.lane = lane;
        self
    }

    /// A delivery whose content cannot be read (a corrupt or foreign message): the loop
    /// moves it to the dead letters with `reason`.
    pub fn unreadable(
        ticket: T,
        id: impl Into<String>,
        attempt: u32,
        reason: impl fmt::Display,
    ) -> Self {
        Leased {
            ticket,
            id: id.into(),
            attempt,
            event: Err(reason.to_string()),
            destination: None,
            lane: None,
        }
    }
}

impl<T, E> fmt::Debug for Leased<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leased")
            .field("id", &self.id)
            .field("attempt", &self.attempt)
            .field("readable", &self.event.is_ok())
            .field("destination", &self.destination)
            .finish_non_exhaustive()
    }
}

/// The attempt a result belongs to, for the queue's history.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptRecord {
    /// Which attempt, from 1.
    pub attempt: u32,
    /// When the handler was started ([`Queue::now`]).
    pub started_at: SystemTime,
    /// How long it ran.
    pub duration: Duration,
}

/// The worker settings a backend suggests ([`Queue::defaults`]).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    /// The lease: [`DEFAULT_LEASE`] unless the backend says otherwise.
    pub lease: Duration,
    /// The longest wait for new work: [`DEFAULT_POLL_INTERVAL`] unless the backend says
    /// otherwise.
    pub poll_interval: Duration,
    /// Lease one round ahead (as many deliveries again as handlers, waiting for a place):
    /// for queues where a lease costs a commit, so that one lease serves a round of
    /// handlers. Off unless the backend says otherwise.
    pub lease_ahead: bool,
}

impl Defaults {
    /// [`DEFAULT_LEASE`], [`DEFAULT_POLL_INTERVAL`], no leasing ahead.
    pub const fn new() -> Self {
        Defaults {
            lease: DEFAULT_LEASE,
            poll_interval: DEFAULT_POLL_INTERVAL,
            lease_ahead: false,
        }
    }
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults::new()
    }
}
