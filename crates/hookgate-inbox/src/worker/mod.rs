//! The inbox as a [`Queue`] of the one worker loop of `hookgate-queue`.

mod completions;

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use hookgate::BoxFuture;
use hookgate_queue::{AttemptRecord, Defaults, LaneKey, LeaseResult, Leased, Queue, QueueEvent};
use tokio::sync::watch;

pub use hookgate_queue::{
    DEFAULT_CONCURRENCY, DEFAULT_HANDLER_TIMEOUT, DEFAULT_LEASE, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_POLL_INTERVAL, DEFAULT_RETRY_BASE, DEFAULT_RETRY_CAP, DEFAULT_SHUTDOWN_GRACE, Handler,
    HandlerResult, RetryPolicy, ShutdownReport, WorkerStats,
};

use crate::event::EventId;
use crate::queue::Completion;
use crate::time::to_millis;
use crate::{Inbox, InboxError, InboxEvent};

/// Runs a [`Handler`] over an [`Inbox`]: the one worker loop of `hookgate-queue`
/// ([`hookgate_queue::Worker`]) on an [`InboxQueue`].
///
/// - **At least once.** An event is leased (attempt counted) before its handler runs and
///   marked processed after it returns. A crash in between leaves the lease to expire, and
///   the event is handed over again.
/// - **Bounded concurrency.** At most [`concurrency`](WorkerBuilder::concurrency) handlers
///   run at once. The worker leases one round ahead (as many events again as handlers,
///   waiting to start), so that one lease serves a round of handlers; every other event
///   waits in the database, not in memory. An event leased ahead counts its attempt at the
///   lease, like a running one: if the process dies, that attempt counts although the
///   handler never started it.
/// - **Retries.** [`HandlerResult::Retry`], an `Err`, a panic or a timeout schedules the
///   next attempt with the [`RetryPolicy`]; when attempts run out, or on
///   [`HandlerResult::Fail`], the event becomes a dead letter.
/// - **Graceful shutdown.** [`WorkerHandle::shutdown`] stops taking events, waits for
///   running handlers up to a grace period, and gives the rest back to the queue.
///
/// Several workers (in one process or several) may drain one inbox: leases keep them from
/// taking the same event at once.
///
/// ```
/// use hookgate_inbox::{HandlerResult, Inbox, InboxEvent, Worker};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let inbox = Inbox::open(dir.path().join("inbox.db"))?;
/// let worker = Worker::builder(inbox.clone(), |event: InboxEvent| async move {
///     println!("{} attempt {}", event.dedup_key(), event.attempt());
///     HandlerResult::Ok
/// })
/// .concurrency(4)
/// .start()?;
/// let report = worker.shutdown().await;
/// assert_eq!((report.finished, report.released), (0, 0));
/// # Ok(())
/// # }
/// ```
pub type Worker = hookgate_queue::Worker<InboxQueue>;
/// Settings of a [`Worker`]; checked by [`start`](hookgate_queue::WorkerBuilder::start).
pub type WorkerBuilder = hookgate_queue::WorkerBuilder<InboxQueue>;
/// A running [`Worker`]. Dropping it stops the worker the same way as
/// [`shutdown`](hookgate_queue::WorkerHandle::shutdown), without waiting for it.
pub type WorkerHandle = hookgate_queue::WorkerHandle<InboxQueue>;

/// The inbox as the queue of a [`Worker`]: leases are `processing` rows with a lease token,
/// renewed while the handler runs; a worker is woken in-process by every stored event and
/// polls (every [`poll_interval`](hookgate_queue::WorkerBuilder::poll_interval)) for
/// retries that came due and leases that expired.
///
/// One per worker: it remembers which wake-up its worker has seen. Made from an [`Inbox`]
/// by [`Worker::builder`] (through `From`), or with [`new`](Self::new).
pub struct InboxQueue {
    inbox: Inbox,
    /// The wake-up generation seen at the last lease.
    seen: Mutex<watch::Receiver<u64>>,
    /// Results waiting to be recorded together.
    completions: completions::Completions,
}

impl InboxQueue {
    /// The queue of `inbox`'s events.
    pub fn new(inbox: Inbox) -> Self {
        let seen = Mutex::new(inbox.subscribe());
        InboxQueue {
            inbox,
            seen,
            completions: completions::Completions::default(),
        }
    }

    /// The inbox.
    pub fn inbox(&self) -> &Inbox {
        &self.inbox
    }
}

impl From<Inbox> for InboxQueue {
    fn from(inbox: Inbox) -> Self {
        InboxQueue::new(inbox)
    }
}

impl fmt::Debug for InboxQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboxQueue")
            .field("inbox", &self.inbox.path())
            .finish_non_exhaustive()
    }
}

impl QueueEvent for InboxEvent {
    fn scheme(&self) -> &str {
        &self.scheme
    }

    fn delivery_id(&self) -> Option<&str> {
        self.delivery_id.as_deref()
    }

    fn event_type(&self) -> Option<&str> {
        self.event_type.as_deref()
    }
}

/// The proof of an inbox lease: on an event, or, for an inbox with destinations, on one
/// delivery of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxTicket(Lease);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lease {
    Event(EventId, i64),
    Delivery(i64, i64),
}

/// Event leases and delivery leases: (id, lease token) each.
type Split = (Vec<(EventId, i64)>, Vec<(i64, i64)>);

/// Splits tickets into event leases and delivery leases.
fn split(tickets: Vec<InboxTicket>) -> Split {
    let mut events = Vec::new();
    let mut deliveries = Vec::new();
    for InboxTicket(lease) in tickets {
        match lease {
            Lease::Event(id, token) => events.push((id, token)),
            Lease::Delivery(id, token) => deliveries.push((id, token)),
        }
    }
    (events, deliveries)
}

impl Queue for InboxQueue {
    type Event = InboxEvent;
    type Ticket = InboxTicket;
    type Error = InboxError;

    fn defaults(&self) -> Defaults {
        let mut defaults = Defaults::new();
        // Each lease is a round trip through the writer thread: one serves a round of
        // handlers.
        defaults.lease_ahead = true;
        defaults
    }

    fn now(&self) -> SystemTime {
        self.inbox.inner.clock.now()
    }

    fn lease(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> BoxFuture<'_, LeaseResult<Self>> {
        self.lease_except(max, lease, wait, Vec::new())
    }

    /// An inbox with destinations leases deliveries (skipping `held` destinations and
    /// every delivery behind an unfinished one of its lane); one without, events.
    fn lease_except(
        &self,
        max: usize,
        lease: Duration,
        _wait: Duration,
        held: Vec<String>,
    ) -> BoxFuture<'_, LeaseResult<Self>> {
        // Seen before leasing: an event stored meanwhile wakes the next wait.
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .borrow_and_update();
        Box::pin(async move {
            if self.inbox.has_destinations() {
                let batch = self
                    .inbox
                    .lease_applied_deliveries(max, lease, held)
                    .await?;
                return Ok(batch
                    .into_iter()
                    .map(|leased| {
                        let ticket = InboxTicket(Lease::Delivery(leased.id, leased.token));
                        let attempt = leased.event.attempt();
                        let destination = leased.event.destination().unwrap_or("").to_owned();
                        let id = format!("{}/{destination}", leased.event.id());
                        let lane = leased.lane.as_deref().map(LaneKey::new);
                        Leased::new(ticket, id, attempt, leased.event)
                            .with_destination(destination, lane)
                    })
                    .collect());
            }
            let batch = self.inbox.lease_applied_events(max, lease).await?;
            Ok(batch
                .into_iter()
                .map(|leased| {
                    let id = leased.event.id();
                    let attempt = leased.event.attempt();
                    let ticket = InboxTicket(Lease::Event(id, leased.token));
                    Leased::new(ticket, id.to_string(), attempt, leased.event)
                })
                .collect())
        })
    }

    fn paused(&self) -> BoxFuture<'_, Result<Vec<String>, InboxError>> {
        Box::pin(self.inbox.paused_destinations())
    }

    fn wait(&self, timeout: Duration) -> BoxFuture<'_, ()> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Box::pin(async move {
            if let Ok(Err(_closed)) = tokio::time::timeout(timeout, seen.changed()).await {
                tokio::time::sleep(timeout).await;
            }
        })
    }

    fn renew(
        &self,
        tickets: Vec<InboxTicket>,
        lease: Duration,
    ) -> BoxFuture<'_, Result<(), InboxError>> {
        let (events, deliveries) = split(tickets);
        Box::pin(async move {
            if !events.is_empty() {
                self.inbox.renew_leases(events, lease).await?;
            }
            if !deliveries.is_empty() {
                self.inbox.renew_deliveries(deliveries, lease).await?;
            }
            Ok(())
        })
    }

    fn complete(
        &self,
        ticket: InboxTicket,
        attempt: AttemptRecord,
    ) -> BoxFuture<'_, Result<bool, InboxError>> {
        self.record(ticket, attempt, Completion::Processed)
    }

    fn retry(
        &self,
        ticket: InboxTicket,
        attempt: AttemptRecord,
        at: SystemTime,
        error: String,
    ) -> BoxFuture<'_, Result<bool, InboxError>> {
        let at_ms = to_millis(at);
        self.record(ticket, attempt, Completion::Retry { at_ms, error })
    }

    fn dead(
        &self,
        ticket: InboxTicket,
        attempt: AttemptRecord,
        reason: String,
    ) -> BoxFuture<'_, Result<bool, InboxError>> {
        self.record(ticket, attempt, Completion::Dead { reason })
    }

    fn release(&self, tickets: Vec<InboxTicket>) -> BoxFuture<'_, Result<u64, InboxError>> {
        let (events, deliveries) = split(tickets);
        Box::pin(async move {
            let mut released = 0usize;
            if !events.is_empty() {
                released = self.inbox.release_leases(events).await?;
            }
            if !deliveries.is_empty() {
                released =
                    released.saturating_add(self.inbox.release_deliveries(deliveries).await?);
            }
            Ok(u64::try_from(released).unwrap_or(u64::MAX))
        })
    }
}

impl InboxQueue {
    fn record(
        &self,
        InboxTicket(lease): InboxTicket,
        attempt: AttemptRecord,
        completion: Completion,
    ) -> BoxFuture<'_, Result<bool, InboxError>> {
        let pending = completions::Pending {
            lease,
            attempt: attempt.attempt,
            started_ms: to_millis(attempt.started_at),
            duration_ms: crate::time::duration_millis(attempt.duration),
            completion,
        };
        Box::pin(self.completions.record(&self.inbox, pending))
    }
}
