//! The one worker loop, over any [`Queue`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hookgate::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument as _;

use crate::route::MonotonicClock;
use crate::runner::{Runner, Verdict, bump, unbump};
use crate::{
    Admission, AttemptRecord, CIRCUIT_STATE_METRIC, ConfigError, Destination, DestinationGates,
    Handler, Hold, IN_FLIGHT_METRIC, LANE_HELD_METRIC, LaneKey, LeaseResult, Leased, Queue,
    RetryPolicy, ShutdownReport, WorkerStats,
};

/// Attempts per destination. Labels: `endpoint`, `destination`, `outcome` (`processed`,
/// `retry`, `dead`).
pub const DESTINATION_ATTEMPTS_METRIC: &str = "hookgate_destination_attempts_total";
/// Gauge: 1 while a destination is paused (as the loop last read the store), else 0.
/// Labels: `endpoint`, `destination`.
pub const DESTINATION_PAUSED_METRIC: &str = "hookgate_destination_paused";

/// Default handlers running at once per worker: 8.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Default lease (visibility timeout): 30 seconds, renewed every third of it while the
/// handler runs. A crashed consumer's deliveries are taken over this long after it died.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Default longest wait for new work: 1 second. New work wakes a worker at once where the
/// queue can say so; this paces finding retries that came due and expired leases.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Default wait for running handlers at shutdown: 30 seconds.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Default longest run of one handler call: 5 minutes, then the attempt counts as failed.
pub const DEFAULT_HANDLER_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Most handlers, or deliveries leased ahead, per worker.
const MAX_CONCURRENCY: usize = 10_000;
/// The shortest lease accepted: 100 ms.
const MIN_LEASE: Duration = Duration::from_millis(100);
/// The longest lease accepted: 24 hours.
const MAX_LEASE: Duration = Duration::from_secs(24 * 60 * 60);
/// The shortest poll interval accepted: 10 ms.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Extra time a lease in flight at shutdown gets beyond twice the poll interval.
const LEASE_AT_SHUTDOWN: Duration = Duration::from_secs(5);

/// The one worker loop: runs a [`Handler`] on the deliveries of a [`Queue`].
///
/// - **At least once.** A delivery is leased (its attempt counted) before its handler runs
///   and completed after it returns. A crash in between leaves the lease to expire, and
///   the queue hands the delivery out again as the next attempt.
/// - **Bounded concurrency.** At most [`concurrency`](WorkerBuilder::concurrency) handlers
///   run at once; with [`prefetch`](WorkerBuilder::prefetch) that many more deliveries are
///   leased ahead, waiting for a place (their attempt counts at the lease too).
/// - **Leases** are renewed every third of the [`lease`](WorkerBuilder::lease) while a
///   delivery is held (running, waiting, or its result being recorded).
/// - **Retries.** [`HandlerResult::Retry`](crate::HandlerResult::Retry), an `Err`, a panic
///   or a timeout schedules the next attempt with the [`RetryPolicy`] (exponential backoff,
///   full jitter); when the attempts run out, or on
///   [`HandlerResult::Fail`](crate::HandlerResult::Fail), the delivery is a dead letter. A
///   delivery handed out more often than the policy allows (its earlier attempts died with
///   their consumer) is dead without running the handler again, so a poison message cannot
///   crash-loop a fleet.
/// - **Graceful shutdown.** [`WorkerHandle::shutdown`] stops leasing, waits for running
///   handlers up to a grace period, and gives the rest back to the queue.
/// - **Observability.** One `webhook.process` span per attempt (`scheme`, `delivery_id`,
///   `event_type`, `queue_id`, `attempt`, `outcome`, `duration_ms`; never the body), the
///   metrics [`ATTEMPTS_METRIC`](crate::ATTEMPTS_METRIC) and
///   [`PROCESS_SECONDS_METRIC`](crate::PROCESS_SECONDS_METRIC) (labels `scheme`,
///   `outcome`), and [`WorkerStats`].
///
/// The backends name it after themselves: `hookgate_inbox::Worker`,
/// `hookgate_redis::StreamWorker`, `hookgate_nats::JetStreamWorker`,
/// `hookgate_postgres::PgWorker`.
pub struct Worker<Q> {
    _queue: PhantomData<fn() -> Q>,
}

impl<Q> fmt::Debug for Worker<Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker").finish_non_exhaustive()
    }
}

impl<Q: Queue> Worker<Q> {
    /// Starts configuring a worker that runs `handler` on the deliveries of `queue`, from
    /// the settings the queue suggests ([`Queue::defaults`]).
    pub fn builder(queue: impl Into<Q>, handler: impl Handler<Q::Event>) -> WorkerBuilder<Q> {
        let queue = queue.into();
        let defaults = queue.defaults();
        WorkerBuilder {
            queue,
            handler: Arc::new(handler),
            concurrency: DEFAULT_CONCURRENCY,
            prefetch: None,
            lease_ahead: defaults.lease_ahead,
            batch_size: None,
            lease: defaults.lease,
            poll_interval: defaults.poll_interval,
            handler_timeout: DEFAULT_HANDLER_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            retry: RetryPolicy::new(),
            destinations: None,
        }
    }
}

/// Settings of a [`Worker`]; checked by [`start`](Self::start).
#[must_use]
pub struct WorkerBuilder<Q: Queue> {
    queue: Q,
    handler: Arc<dyn Handler<Q::Event>>,
    concurrency: usize,
    prefetch: Option<usize>,
    lease_ahead: bool,
    batch_size: Option<usize>,
    lease: Duration,
    poll_interval: Duration,
    handler_timeout: Duration,
    shutdown_grace: Duration,
    retry: RetryPolicy,
    destinations: Option<(String, Vec<Destination>)>,
}

impl<Q: Queue> fmt::Debug for WorkerBuilder<Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("concurrency", &self.concurrency)
            .field("prefetch", &self.prefetch_count())
            .field("batch_size", &self.batch_size)
            .field("lease", &self.lease)
            .field("poll_interval", &self.poll_interval)
            .field("handler_timeout", &self.handler_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl<Q: Queue> WorkerBuilder<Q> {
    /// Handlers running at once (default [`DEFAULT_CONCURRENCY`], 1 to 10 000).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Deliveries leased ahead, waiting for a handler's place (0 to 10 000). Default: as
    /// many as [`concurrency`](Self::concurrency) for queues that suggest it (the SQLite
    /// inbox, where each lease is a commit), otherwise 0.
    pub fn prefetch(mut self, prefetch: usize) -> Self {
        self.prefetch = Some(prefetch);
        self
    }

    /// The most deliveries one lease takes (at least 1; default: as many as there is room
    /// for).
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = Some(batch_size);
        self
    }

    /// The lease, or visibility timeout (default [`DEFAULT_LEASE`], 100 ms to 24 h): how
    /// long after a consumer stopped renewing a delivery (it crashed) another may take it
    /// over.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// The longest wait for new work (default [`DEFAULT_POLL_INTERVAL`] unless the queue
    /// suggests another, at least 10 ms): paces finding retries that came due and expired
    /// leases where the queue cannot be woken for them; also the longest blocking read.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Longest run of one handler call (default [`DEFAULT_HANDLER_TIMEOUT`]); past it the
    /// attempt counts as failed.
    pub fn handler_timeout(mut self, timeout: Duration) -> Self {
        self.handler_timeout = timeout;
        self
    }

    /// How long [`WorkerHandle::shutdown`] waits for running handlers (default
    /// [`DEFAULT_SHUTDOWN_GRACE`]).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// The retry policy (default [`RetryPolicy::new`]: 12 attempts, backoff from 1 s to 1 h).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Runs with the destinations of endpoint `endpoint` (issue 21): each delivery the
    /// queue hands out for one of them ([`Leased::destination`]) passes that destination's
    /// guards first, in the order of the design note of the `route` module: paused (the
    /// store's pause, polled with [`Queue::paused`]), circuit breaker, its lane (one
    /// delivery per lane key running), concurrency, rate. A delivery that may not start
    /// is given back to the queue uncounted ([`Queue::release`]) and the destination
    /// skipped by the next leases ([`Queue::lease_except`]) until its hold ends, so a held
    /// destination never stalls the others. Each destination retries with its own
    /// [`Destination::retry`]. A delivery for a destination not in `destinations` is a
    /// dead letter ("destination NAME is not configured"), replayable once it is again.
    ///
    /// Gauges, labelled `endpoint` and `destination`: [`CIRCUIT_STATE_METRIC`],
    /// [`IN_FLIGHT_METRIC`], [`LANE_HELD_METRIC`] (deliveries with a lane key this
    /// worker holds; the store-wide backlog is [`crate::LANE_BACKLOG_METRIC`], set by
    /// whoever counts the store), [`DESTINATION_PAUSED_METRIC`]; and the counter
    /// [`DESTINATION_ATTEMPTS_METRIC`].
    pub fn destinations(
        mut self,
        endpoint: impl Into<String>,
        destinations: &[Destination],
    ) -> Self {
        self.destinations = Some((endpoint.into(), destinations.to_vec()));
        self
    }

    /// The queue.
    pub fn queue(&self) -> &Q {
        &self.queue
    }

    fn prefetch_count(&self) -> usize {
        match (self.prefetch, self.lease_ahead) {
            (Some(prefetch), _) => prefetch,
            (None, true) => self.concurrency,
            (None, false) => 0,
        }
    }

    /// Starts the worker on the current Tokio runtime.
    ///
    /// # Errors
    /// [`ConfigError`] for a setting out of range, or outside a Tokio runtime.
    pub fn start(self) -> Result<WorkerHandle<Q>, ConfigError> {
        self.retry.check().map_err(ConfigError)?;
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(ConfigError(format!(
                "concurrency must be between 1 and {MAX_CONCURRENCY}, got {}",
                self.concurrency
            )));
        }
        let prefetch = self.prefetch_count();
        if prefetch > MAX_CONCURRENCY {
            return Err(ConfigError(format!(
                "prefetch must be at most {MAX_CONCURRENCY}, got {prefetch}"
            )));
        }
        if self.batch_size == Some(0) {
            return Err(ConfigError("batch_size must be at least 1".to_owned()));
        }
        if self.lease < MIN_LEASE || self.lease > MAX_LEASE {
            return Err(ConfigError(format!(
                "the lease must be between 100 ms and 24 h, got {:?}",
                self.lease
            )));
        }
        if self.poll_interval < MIN_POLL_INTERVAL {
            return Err(ConfigError(format!(
                "poll_interval must be at least 10 ms, got {:?}",
                self.poll_interval
            )));
        }
        if self.handler_timeout.is_zero() {
            return Err(ConfigError(
                "the handler timeout must not be zero".to_owned(),
            ));
        }
        let routes = match self.destinations {
            Some((endpoint, destinations)) => Some(Routes::new(endpoint, destinations)?),
            None => None,
        };
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            ConfigError("a worker must be started inside a Tokio runtime".to_owned())
        })?;
        let settings = Settings {
            concurrency: self.concurrency,
            prefetch,
            batch_size: self.batch_size.unwrap_or(usize::MAX),
            lease: self.lease,
            poll_interval: self.poll_interval,
            shutdown_grace: self.shutdown_grace,
        };
        let shared = Arc::new(Shared {
            queue: self.queue,
            runner: Runner::new(self.handler, self.handler_timeout, self.retry),
            lease: self.lease,
            held: Mutex::new(HashMap::new()),
            routes,
        });
        let (stop, stopped) = watch::channel(false);
        let task = runtime.spawn(run(shared.clone(), settings, stopped));
        Ok(WorkerHandle { stop, task, shared })
    }
}

/// A running [`Worker`]. Dropping it stops the worker the same way as
/// [`shutdown`](Self::shutdown), without waiting for it.
pub struct WorkerHandle<Q: Queue> {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<ShutdownReport>,
    shared: Arc<Shared<Q>>,
}

impl<Q: Queue> fmt::Debug for WorkerHandle<Q> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<Q: Queue> WorkerHandle<Q> {
    /// Stops leasing, waits up to the grace period for running handlers (recording their
    /// results), then cancels the rest and gives their deliveries back to the queue, with
    /// those leased ahead.
    pub async fn shutdown(self) -> ShutdownReport {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(report) => report,
            Err(err) => {
                tracing::error!(error = %err, "worker task failed");
                ShutdownReport::default()
            }
        }
    }

    /// Counters since the worker started. A result is counted as it is being recorded,
    /// and the count taken back if it cannot be: whoever sees a delivery's new state sees
    /// it counted.
    pub fn stats(&self) -> WorkerStats {
        self.shared.runner.counters.snapshot()
    }

    /// The queue the worker drains.
    pub fn queue(&self) -> &Q {
        &self.shared.queue
    }
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    concurrency: usize,
    prefetch: usize,
    batch_size: usize,
    lease: Duration,
    poll_interval: Duration,
    shutdown_grace: Duration,
}

impl Settings {
    /// How many deliveries to lease now, with `running` handlers and `waiting` deliveries
    /// leased ahead; `None` when it is not the time: every handler's place is taken, or a
    /// round is already waiting (leases come in batches rather than one per finished
    /// delivery).
    fn want(&self, running: usize, waiting: usize) -> Option<usize> {
        if running >= self.concurrency || waiting >= self.prefetch.max(1) {
            return None;
        }
        let held = running.saturating_add(waiting);
        let want = self
            .concurrency
            .saturating_add(self.prefetch)
            .saturating_sub(held)
            .min(self.batch_size);
        (want > 0).then_some(want)
    }

    /// The pause after a failed lease: the poll interval, within 100 ms to 500 ms.
    fn error_pause(&self) -> Duration {
        self.poll_interval
            .clamp(Duration::from_millis(100), Duration::from_millis(500))
    }
}

struct Shared<Q: Queue> {
    queue: Q,
    runner: Runner<Q::Event>,
    lease: Duration,
    /// Deliveries leased and not finished (waiting, running or being recorded), by a
    /// number of the loop's own.
    held: Mutex<HashMap<u64, Q::Ticket>>,
    /// The destinations, when the worker runs with them.
    routes: Option<Routes>,
}

impl<Q: Queue> Shared<Q> {
    fn held(&self) -> MutexGuard<'_, HashMap<u64, Q::Ticket>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn renew(&self) {
        let tickets: Vec<Q::Ticket> = self.held().values().cloned().collect();
        if tickets.is_empty() {
            return;
        }
        if let Err(err) = self.queue.renew(tickets, self.lease).await {
            tracing::warn!(error = %err, "worker could not renew its leases");
        }
    }

    /// Mirrors the store's pauses into the destinations' gates.
    async fn sync_pauses(&self) {
        let Some(routes) = &self.routes else {
            return;
        };
        match self.queue.paused().await {
            Ok(paused) => routes.mirror_pauses(&paused),
            Err(err) => {
                tracing::warn!(error = %err, "worker could not read the paused destinations")
            }
        }
    }

    /// Gives back deliveries that may not start now, uncounted.
    async fn give_back(&self, tickets: Vec<Q::Ticket>) {
        if tickets.is_empty() {
            return;
        }
        if let Err(err) = self.queue.release(tickets).await {
            tracing::warn!(error = %err, "worker could not give back held deliveries; they are handed out again after the lease");
        }
    }
}

/// The tokio clock as the gates' monotonic clock: the system's in production, and the
/// paused test clock in the loop's tests.
#[derive(Debug, Clone, Copy)]
struct TokioClock {
    origin: tokio::time::Instant,
}

impl MonotonicClock for TokioClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// Until when a destination is held.
#[derive(Debug, Clone, Copy)]
enum Until {
    /// A time (circuit open, rate limit).
    Time(tokio::time::Instant),
    /// One of its deliveries ends (concurrency full, probe in flight).
    Finish,
    /// It is resumed.
    Resume,
}

/// One destination at run time.
struct Route {
    name: String,
    retry: RetryPolicy,
    gates: DestinationGates<TokioClock>,
    in_flight: AtomicU64,
    backlog: AtomicU64,
}

/// The worker's destinations, their holds and their running lanes.
struct Routes {
    endpoint: String,
    list: Vec<Route>,
    holds: Mutex<HashMap<usize, Until>>,
    lanes: Mutex<HashSet<(usize, LaneKey)>>,
}

/// Leave for one delivery to a destination to start.
struct Pass {
    route: usize,
    /// Taken when the call ends ([`Finished::settle`]), before its result is recorded.
    admission: Option<Admission<TokioClock>>,
    lane: Option<LaneKey>,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Routes {
    fn new(endpoint: String, destinations: Vec<Destination>) -> Result<Self, ConfigError> {
        let clock = TokioClock {
            origin: tokio::time::Instant::now(),
        };
        let mut list: Vec<Route> = Vec::with_capacity(destinations.len());
        for destination in destinations {
            if list.iter().any(|r| r.name == destination.name()) {
                return Err(ConfigError(format!(
                    "destination {} is given twice",
                    destination.name()
                )));
            }
            destination
                .retry()
                .check()
                .map_err(|e| ConfigError(format!("destination {}: {e}", destination.name())))?;
            list.push(Route {
                name: destination.name().to_owned(),
                retry: destination.retry(),
                gates: DestinationGates::with_clock(&destination, clock),
                in_flight: AtomicU64::new(0),
                backlog: AtomicU64::new(0),
            });
        }
        let routes = Routes {
            endpoint,
            list,
            holds: Mutex::new(HashMap::new()),
            lanes: Mutex::new(HashSet::new()),
        };
        for route in 0..routes.list.len() {
            routes.gauges(route);
        }
        Ok(routes)
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.list.iter().position(|r| r.name == name)
    }

    /// Whether `route` is held now (forgetting a hold that ended).
    fn is_held(&self, route: usize) -> bool {
        let mut holds = locked(&self.holds);
        let held = match holds.get(&route) {
            None => return false,
            Some(Until::Time(at)) => tokio::time::Instant::now() < *at,
            // Held while one of its deliveries runs: a delivery that ended between the
            // check that said "busy" and the hold being set cannot leave it held.
            Some(Until::Finish) => self
                .list
                .get(route)
                .is_some_and(|r| r.in_flight.load(Ordering::SeqCst) > 0),
            Some(Until::Resume) => self.list.get(route).is_some_and(|r| r.gates.is_paused()),
        };
        if !held {
            holds.remove(&route);
        }
        held
    }

    fn hold(&self, route: usize, hold: Hold) {
        let until = match hold {
            Hold::Paused => Until::Resume,
            Hold::CircuitOpen { remaining } => Until::Time(later(remaining)),
            Hold::Rate { wait } => Until::Time(later(wait)),
            _ => Until::Finish,
        };
        if let Some(r) = self.list.get(route) {
            tracing::debug!(destination = %r.name, ?hold, "destination held");
        }
        locked(&self.holds).insert(route, until);
        self.gauges(route);
    }

    /// The names of the destinations held now, for the next lease to skip.
    fn held_names(&self) -> Vec<String> {
        (0..self.list.len())
            .filter(|route| self.is_held(*route))
            .filter_map(|route| self.list.get(route).map(|r| r.name.clone()))
            .collect()
    }

    /// When the earliest timed hold ends.
    fn next_deadline(&self) -> Option<tokio::time::Instant> {
        locked(&self.holds)
            .values()
            .filter_map(|until| match until {
                Until::Time(at) => Some(*at),
                _ => None,
            })
            .min()
    }

    fn lane_busy(&self, route: usize, lane: &LaneKey) -> bool {
        locked(&self.lanes).contains(&(route, lane.clone()))
    }

    fn mirror_pauses(&self, paused: &[String]) {
        for (index, route) in self.list.iter().enumerate() {
            let pause = paused.contains(&route.name);
            if pause != route.gates.is_paused() {
                if pause {
                    route.gates.pause();
                    tracing::info!(endpoint = %self.endpoint, destination = %route.name, "destination paused");
                } else {
                    route.gates.resume();
                    tracing::info!(endpoint = %self.endpoint, destination = %route.name, "destination resumed");
                }
                self.gauges(index);
            }
        }
    }

    /// A delivery of `route` was taken in (`by` 1) or left (`by` -1) with a lane key.
    fn backlog(&self, route: usize, entered: bool) {
        if let Some(r) = self.list.get(route) {
            if entered {
                r.backlog.fetch_add(1, Ordering::SeqCst);
            } else {
                let _ = r
                    .backlog
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
            }
            self.gauges(route);
        }
    }

    fn started(&self, route: usize, lane: Option<&LaneKey>) {
        if let Some(lane) = lane {
            locked(&self.lanes).insert((route, lane.clone()));
        }
        if let Some(r) = self.list.get(route) {
            r.in_flight.fetch_add(1, Ordering::SeqCst);
        }
        self.gauges(route);
    }

    /// A delivery of `route` ended: its lane and concurrency slot are free again.
    fn finished(&self, route: usize, lane: Option<&LaneKey>) {
        if let Some(lane) = lane {
            locked(&self.lanes).remove(&(route, lane.clone()));
        }
        {
            let mut holds = locked(&self.holds);
            if matches!(holds.get(&route), Some(Until::Finish)) {
                holds.remove(&route);
            }
        }
        if let Some(r) = self.list.get(route) {
            let _ = r
                .in_flight
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        }
        self.gauges(route);
    }

    fn gauges(&self, route: usize) {
        let Some(r) = self.list.get(route) else {
            return;
        };
        let labels = [
            ("endpoint", self.endpoint.clone()),
            ("destination", r.name.clone()),
        ];
        if let Some(state) = r.gates.circuit_state() {
            metrics::gauge!(CIRCUIT_STATE_METRIC, &labels).set(state.gauge());
        }
        #[allow(clippy::cast_precision_loss)]
        {
            metrics::gauge!(IN_FLIGHT_METRIC, &labels)
                .set(r.in_flight.load(Ordering::SeqCst) as f64);
            metrics::gauge!(LANE_HELD_METRIC, &labels).set(r.backlog.load(Ordering::SeqCst) as f64);
            metrics::gauge!(DESTINATION_PAUSED_METRIC, &labels).set(if r.gates.is_paused() {
                1.0
            } else {
                0.0
            });
        }
    }
}

/// `after` from now, on the tokio clock.
fn later(after: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(after).unwrap_or(now)
}

/// A leased delivery, waiting for or holding a handler's place.
struct Held<Q: Queue> {
    key: u64,
    leased: Leased<Q::Ticket, Q::Event>,
}

/// Deliveries leased and waiting for a handler's place, in the order leased. The one
/// place that picks which delivery starts next: the oldest whose destination admits it
/// (see [`WorkerBuilder::destinations`]).
struct Waiting<Q: Queue> {
    queue: VecDeque<Held<Q>>,
    next_key: u64,
}

impl<Q: Queue> Waiting<Q> {
    fn new() -> Self {
        Waiting {
            queue: VecDeque::new(),
            next_key: 0,
        }
    }

    fn len(&self) -> usize {
        self.queue.len()
    }

    /// Takes a leased batch in, holding its tickets.
    fn add(&mut self, shared: &Shared<Q>, batch: Vec<Leased<Q::Ticket, Q::Event>>) {
        if batch.is_empty() {
            return;
        }
        let mut held = shared.held();
        for leased in batch {
            let key = self.next_key;
            self.next_key = self.next_key.wrapping_add(1);
            held.insert(key, leased.ticket.clone());
            if let (Some(routes), Some(_)) = (&shared.routes, &leased.lane) {
                if let Some(route) = leased.destination.as_deref().and_then(|n| routes.index(n)) {
                    routes.backlog(route, true);
                }
            }
            self.queue.push_back(Held { key, leased });
        }
    }

    /// The next delivery to start: the oldest waiting one that is not for a destination,
    /// or whose destination admits it now. Deliveries of a held destination go to
    /// `give_back`; those whose lane has a delivery running wait.
    fn next(
        &mut self,
        shared: &Shared<Q>,
        give_back: &mut Vec<Held<Q>>,
    ) -> Option<(Held<Q>, Option<Pass>)> {
        let Some(routes) = &shared.routes else {
            return self.queue.pop_front().map(|held| (held, None));
        };
        let mut at = 0usize;
        while let Some(held) = self.queue.get(at) {
            let route = held
                .leased
                .destination
                .as_deref()
                .and_then(|n| routes.index(n));
            let Some(route) = route else {
                // Not for a destination, or for one not configured: `handle` decides.
                return self.queue.remove(at).map(|held| (held, None));
            };
            if routes.is_held(route) {
                give_back.extend(self.queue.remove(at));
                continue;
            }
            let lane = held.leased.lane.clone();
            if lane
                .as_ref()
                .is_some_and(|lane| routes.lane_busy(route, lane))
            {
                at = at.saturating_add(1);
                continue;
            }
            let admitted = routes.list.get(route).map(|r| r.gates.try_admit());
            match admitted {
                Some(Ok(admission)) => {
                    routes.started(route, lane.as_ref());
                    return self.queue.remove(at).map(|held| {
                        (
                            held,
                            Some(Pass {
                                route,
                                admission: Some(admission),
                                lane,
                            }),
                        )
                    });
                }
                Some(Err(hold)) => {
                    routes.hold(route, hold);
                    give_back.extend(self.queue.remove(at));
                }
                None => at = at.saturating_add(1),
            }
        }
        None
    }
}

/// A handler's outcome, waiting to be recorded.
struct Finished<Q: Queue> {
    key: u64,
    ticket: Q::Ticket,
    record: AttemptRecord,
    verdict: Verdict,
    span: tracing::Span,
    pass: Option<Pass>,
}

impl<Q: Queue> Finished<Q> {
    /// The call to a destination ended: its circuit breaker counts the outcome and its
    /// concurrency slot is freed now, in the loop, before the next delivery is admitted,
    /// not later when the result has been written (a second failure could otherwise be
    /// missed by the admission right after it).
    fn settle(mut self) -> Self {
        if let Some(admission) = self.pass.as_mut().and_then(|pass| pass.admission.take()) {
            admission.finish(matches!(self.verdict, Verdict::Processed));
        }
        self
    }
}

type LeaseFuture<'a, Q> = BoxFuture<'a, LeaseResult<Q>>;

async fn run<Q: Queue>(
    shared: Arc<Shared<Q>>,
    settings: Settings,
    mut stopped: watch::Receiver<bool>,
) -> ShutdownReport {
    shared.queue.on_start().await;
    // Handlers running: at most `concurrency`.
    let mut tasks: JoinSet<Finished<Q>> = JoinSet::new();
    // Results being recorded. They do not hold a handler's place: the next delivery starts
    // while the last one's result is written.
    let mut recording: JoinSet<()> = JoinSet::new();
    let mut waiting: Waiting<Q> = Waiting::new();
    // The lease in flight, and how many it asked for.
    let mut leasing: Option<(LeaseFuture<'_, Q>, usize)> = None;
    // The last lease found less than it asked for: wait for new work before the next.
    let mut idle = false;
    let mut pause: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let renew_every = settings.lease.checked_div(3).unwrap_or(settings.lease);
    let mut renew = tokio::time::interval(renew_every);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let with_routes = shared.routes.is_some();
    let mut pauses = tokio::time::interval(settings.poll_interval);
    pauses.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if with_routes {
        shared.sync_pauses().await;
    }

    loop {
        if *stopped.borrow() {
            break;
        }
        start_waiting(
            &shared,
            &mut tasks,
            &mut recording,
            &mut waiting,
            settings.concurrency,
        );
        if leasing.is_none() && !idle && pause.is_none() {
            if let Some(want) = settings.want(tasks.len(), waiting.len()) {
                let queue = &shared.queue;
                let future = match &shared.routes {
                    Some(routes) => queue.lease_except(
                        want,
                        settings.lease,
                        settings.poll_interval,
                        routes.held_names(),
                    ),
                    None => queue.lease(want, settings.lease, settings.poll_interval),
                };
                leasing = Some((future, want));
            }
        }
        let hold_ends = shared.routes.as_ref().and_then(Routes::next_deadline);
        let wait_for_work = idle
            && leasing.is_none()
            && pause.is_none()
            && settings.want(tasks.len(), waiting.len()).is_some();
        tokio::select! {
            biased;
            changed = stopped.changed() => {
                // An error means the handle was dropped: stop as well.
                if changed.is_err() {
                    break;
                }
            }
            // Before completions, so a steady stream of them cannot starve the renewal.
            _ = renew.tick() => shared.renew().await,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                idle = false;
                if let Ok(finished) = joined {
                    recording.spawn(record(shared.clone(), finished.settle()));
                }
            }
            // A result recorded may have ended a destination's hold: lease again.
            Some(_) = recording.join_next(), if !recording.is_empty() => {
                if with_routes {
                    idle = false;
                }
            }
            _ = pauses.tick(), if with_routes => {
                shared.sync_pauses().await;
                idle = false;
            }
            () = until(hold_ends), if hold_ends.is_some() => {
                idle = false;
            }
            result = lease_result::<Q>(&mut leasing), if leasing.is_some() => {
                let asked = leasing.take().map_or(0, |(_, asked)| asked);
                match result {
                    Ok(batch) => {
                        idle = batch.len() < asked;
                        waiting.add(&shared, batch);
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "worker could not lease from its queue");
                        pause = Some(Box::pin(tokio::time::sleep(settings.error_pause())));
                    }
                }
            }
            () = paused(&mut pause), if pause.is_some() => {
                pause = None;
            }
            () = shared.queue.wait(settings.poll_interval), if wait_for_work => {
                idle = false;
            }
        }
    }

    // Shutdown: no new leases nor handlers. A lease in flight may already have taken
    // deliveries: hold them, to give them back.
    let mut report = ShutdownReport::default();
    if let Some((pending, _)) = leasing.take() {
        let bound = settings
            .poll_interval
            .saturating_mul(2)
            .saturating_add(LEASE_AT_SHUTDOWN);
        match tokio::time::timeout(bound, pending).await {
            Ok(Ok(batch)) => waiting.add(&shared, batch),
            Ok(Err(err)) => tracing::debug!(error = %err, "the last lease failed"),
            Err(_) => tracing::warn!(
                "the last lease did not finish; what it took is handed out again after the lease"
            ),
        }
    }
    // Let running handlers finish within the grace period and record their results.
    let deadline = tokio::time::sleep(settings.shutdown_grace);
    tokio::pin!(deadline);
    while !tasks.is_empty() {
        tokio::select! {
            biased;
            _ = renew.tick() => shared.renew().await,
            joined = tasks.join_next() => {
                if let Some(Ok(finished)) = joined {
                    report.finished = report.finished.saturating_add(1);
                    recording.spawn(record(shared.clone(), finished.settle()));
                }
            }
            () = &mut deadline => break,
        }
    }
    tasks.abort_all();
    while let Some(joined) = tasks.join_next().await {
        // A handler that finished just as the others were cancelled.
        if let Ok(finished) = joined {
            report.finished = report.finished.saturating_add(1);
            recording.spawn(record(shared.clone(), finished.settle()));
        }
    }
    while recording.join_next().await.is_some() {}
    // Give back the rest: cancelled handlers and deliveries leased ahead.
    let unfinished: Vec<Q::Ticket> = shared.held().drain().map(|(_, ticket)| ticket).collect();
    if !unfinished.is_empty() {
        match shared.queue.release(unfinished).await {
            Ok(released) => report.released = released,
            Err(err) => {
                tracing::warn!(error = %err, "worker could not give its deliveries back; they are handed out again after the lease");
            }
        }
    }
    shared.queue.on_shutdown().await;
    report
}

async fn lease_result<Q: Queue>(
    leasing: &mut Option<(LeaseFuture<'_, Q>, usize)>,
) -> LeaseResult<Q> {
    match leasing {
        Some((future, _)) => future.await,
        None => std::future::pending().await,
    }
}

async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn paused(pause: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
    match pause {
        Some(sleep) => sleep.await,
        None => std::future::pending().await,
    }
}

/// Starts handlers for waiting deliveries while there is a place; gives back those whose
/// destination is held.
fn start_waiting<Q: Queue>(
    shared: &Arc<Shared<Q>>,
    tasks: &mut JoinSet<Finished<Q>>,
    recording: &mut JoinSet<()>,
    waiting: &mut Waiting<Q>,
    concurrency: usize,
) {
    let mut give_back = Vec::new();
    while tasks.len() < concurrency {
        let Some((held, pass)) = waiting.next(shared, &mut give_back) else {
            break;
        };
        tasks.spawn(handle(shared.clone(), held, pass));
    }
    if give_back.is_empty() {
        return;
    }
    let mut tickets = Vec::with_capacity(give_back.len());
    {
        let mut holding = shared.held();
        for held in give_back {
            holding.remove(&held.key);
            if let (Some(routes), Some(_)) = (&shared.routes, &held.leased.lane) {
                if let Some(route) = held
                    .leased
                    .destination
                    .as_deref()
                    .and_then(|n| routes.index(n))
                {
                    routes.backlog(route, false);
                }
            }
            tickets.push(held.leased.ticket);
        }
    }
    let shared = shared.clone();
    recording.spawn(async move { shared.give_back(tickets).await });
}

/// Runs the handler on one leased delivery.
async fn handle<Q: Queue>(
    shared: Arc<Shared<Q>>,
    held: Held<Q>,
    pass: Option<Pass>,
) -> Finished<Q> {
    let Held { key, leased } = held;
    let Leased {
        ticket,
        id,
        attempt,
        event,
        destination,
        ..
    } = leased;
    let started_at = shared.queue.now();
    let clock = Instant::now();
    let route = pass
        .as_ref()
        .and_then(|pass| shared.routes.as_ref()?.list.get(pass.route));
    let unknown = match (&destination, &shared.routes, route) {
        (Some(name), Some(_), None) => Some(name.clone()),
        _ => None,
    };
    let (verdict, span) = match (event, unknown) {
        (_, Some(name)) => {
            let span = tracing::info_span!("webhook.process", queue_id = %id, attempt, destination = %name);
            let reason = format!("destination {name} is not configured");
            span.in_scope(
                || tracing::warn!(reason = %reason, "delivery moved to the dead letters"),
            );
            (Verdict::Dead { reason }, span)
        }
        (Ok(event), None) => {
            let to = route.map(|r| (r.name.as_str(), &r.retry));
            shared.runner.attempt_to(event, &id, attempt, to).await
        }
        (Err(reason), None) => {
            let span = tracing::info_span!("webhook.process", queue_id = %id, attempt);
            span.in_scope(|| {
                tracing::warn!(reason = %reason, "unreadable delivery moved to the dead letters");
            });
            let verdict = Verdict::Dead {
                reason: format!("unreadable: {reason}"),
            };
            (verdict, span)
        }
    };
    Finished {
        key,
        ticket,
        record: AttemptRecord {
            attempt,
            started_at,
            duration: clock.elapsed(),
        },
        verdict,
        span,
        pass,
    }
}

/// Records a handler's outcome; the delivery stays held (its lease renewed) until then.
async fn record<Q: Queue>(shared: Arc<Shared<Q>>, finished: Finished<Q>) {
    let Finished {
        key,
        ticket,
        record,
        verdict,
        span,
        pass,
    } = finished;
    async {
        let counters = &shared.runner.counters;
        let counter = counters.of(&verdict);
        let outcome = verdict.outcome();
        let dead = matches!(verdict, Verdict::Dead { .. });
        // Counted before the queue changes, taken back if it does not: whoever sees the new
        // state sees the count.
        bump(counter);
        let queue = &shared.queue;
        let result = match verdict {
            Verdict::Processed => queue.complete(ticket, record).await,
            Verdict::Retry { delay, error } => {
                let at = queue.now().checked_add(delay).unwrap_or_else(|| queue.now());
                queue.retry(ticket, record, at, error).await
            }
            Verdict::Dead { reason } => queue.dead(ticket, record, reason).await,
        };
        match result {
            Ok(true) => {}
            Ok(false) => {
                unbump(counter);
                bump(&counters.lost_leases);
                tracing::warn!("lease lost before the result was recorded; the event will be handled again");
            }
            Err(err) => {
                unbump(counter);
                tracing::warn!(error = %err, "could not record the result; the event will be handled again once its lease expires");
            }
        }
        if let (Some(pass), Some(routes)) = (pass, &shared.routes) {
            end_pass(routes, pass, outcome, dead);
        }
        shared.held().remove(&key);
    }
    .instrument(span)
    .await;
}

/// The end of a delivery to a destination: the circuit breaker counts it, its slot and
/// lane are freed, and a dead letter that releases a lane says so.
fn end_pass(routes: &Routes, pass: Pass, outcome: &'static str, dead: bool) {
    let Pass {
        route,
        admission,
        lane,
    } = pass;
    // Already settled when the call ended; here only if it was not.
    if let Some(admission) = admission {
        admission.finish(outcome == "processed");
    }
    if let Some(r) = routes.list.get(route) {
        metrics::counter!(
            DESTINATION_ATTEMPTS_METRIC,
            "endpoint" => routes.endpoint.clone(),
            "destination" => r.name.clone(),
            "outcome" => outcome
        )
        .increment(1);
        if let (true, Some(lane)) = (dead, &lane) {
            tracing::warn!(destination = %r.name, lane = %lane, "dead letter released lane {lane}: later deliveries of the key go on without it");
        }
    }
    if lane.is_some() {
        routes.backlog(route, false);
    }
    routes.finished(route, lane.as_ref());
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    //! The loop itself, over a queue in memory (our own logic: a fake queue is enough here;
    //! every backend runs the same loop against its real server in its own tests). Time is
    //! Tokio's paused clock, so backoffs and timeouts pass without waiting.

    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::*;
    use crate::{HandlerResult, QueueEvent};

    const LIMIT: Duration = Duration::from_secs(600);

    #[derive(Debug)]
    struct Job {
        name: String,
        attempt: u32,
        destination: Option<String>,
    }

    impl QueueEvent for Job {
        fn scheme(&self) -> &str {
            "test"
        }
        fn delivery_id(&self) -> Option<&str> {
            Some(&self.name)
        }
        fn event_type(&self) -> Option<&str> {
            None
        }
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum State {
        Due(SystemTime),
        Leased { token: u64, until: SystemTime },
        Done,
        Dead(String),
    }

    #[derive(Debug, Clone)]
    struct Item {
        name: String,
        attempts: u32,
        state: State,
        unreadable: bool,
        destination: Option<String>,
        lane: Option<String>,
    }

    /// What the queue was told, per item.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Told {
        Processed {
            attempt: u32,
        },
        Retry {
            attempt: u32,
            started_at: SystemTime,
            at: SystemTime,
            error: String,
        },
        Dead {
            attempt: u32,
            reason: String,
        },
    }

    #[derive(Debug)]
    struct Memory {
        start: tokio::time::Instant,
        items: Mutex<Vec<Item>>,
        told: Mutex<BTreeMap<String, Vec<Told>>>,
        next_token: AtomicU64,
        renewals: AtomicU64,
        released: AtomicU64,
        lose_leases: AtomicBool,
        paused: Mutex<Vec<String>>,
    }

    impl Memory {
        fn new(names: &[&str]) -> Self {
            let epoch = UNIX_EPOCH;
            Memory {
                start: tokio::time::Instant::now(),
                items: Mutex::new(
                    names
                        .iter()
                        .map(|name| Item {
                            name: (*name).to_owned(),
                            attempts: 0,
                            state: State::Due(epoch),
                            unreadable: false,
                            destination: None,
                            lane: None,
                        })
                        .collect(),
                ),
                told: Mutex::default(),
                next_token: AtomicU64::new(1),
                renewals: AtomicU64::new(0),
                released: AtomicU64::new(0),
                lose_leases: AtomicBool::new(false),
                paused: Mutex::default(),
            }
        }

        /// Deliveries `(name, destination, lane)`, in received order.
        fn routed(deliveries: &[(&str, &str, Option<&str>)]) -> Self {
            let names: Vec<&str> = deliveries.iter().map(|(name, _, _)| *name).collect();
            let memory = Memory::new(&names);
            for (item, (_, destination, lane)) in memory.items().iter_mut().zip(deliveries) {
                item.destination = Some((*destination).to_owned());
                item.lane = lane.map(str::to_owned);
            }
            memory
        }

        fn items(&self) -> MutexGuard<'_, Vec<Item>> {
            self.items.lock().unwrap()
        }

        fn item(&self, name: &str) -> Item {
            self.items()
                .iter()
                .find(|item| item.name == name)
                .cloned()
                .unwrap()
        }

        fn told(&self, name: &str) -> Vec<Told> {
            self.told
                .lock()
                .unwrap()
                .get(name)
                .cloned()
                .unwrap_or_default()
        }

        fn count(&self, pick: impl Fn(&State) -> bool) -> usize {
            self.items().iter().filter(|item| pick(&item.state)).count()
        }

        /// Applies `change` to the item `ticket` names if the ticket still holds its lease.
        fn settle(&self, ticket: (usize, u64), told: Told, state: State) -> bool {
            let mut items = self.items();
            let item = items.get_mut(ticket.0).unwrap();
            if self.lose_leases.load(Ordering::SeqCst)
                || !matches!(item.state, State::Leased { token, .. } if token == ticket.1)
            {
                return false;
            }
            item.state = state;
            self.told
                .lock()
                .unwrap()
                .entry(item.name.clone())
                .or_default()
                .push(told);
            true
        }
    }

    impl Queue for Memory {
        type Event = Job;
        type Ticket = (usize, u64);
        type Error = String;

        fn now(&self) -> SystemTime {
            UNIX_EPOCH.checked_add(self.start.elapsed()).unwrap()
        }

        fn lease(
            &self,
            max: usize,
            lease: Duration,
            wait: Duration,
        ) -> BoxFuture<'_, LeaseResult<Self>> {
            self.lease_except(max, lease, wait, Vec::new())
        }

        /// Skips held destinations and, like a store must, hands out only the head of
        /// each lane (the oldest unfinished delivery of a destination and key).
        fn lease_except(
            &self,
            max: usize,
            lease: Duration,
            _wait: Duration,
            held: Vec<String>,
        ) -> BoxFuture<'_, LeaseResult<Self>> {
            let now = self.now();
            let mut batch = Vec::new();
            let mut items = self.items();
            let mut heads: Vec<(String, String)> = Vec::new();
            for (index, item) in items.iter_mut().enumerate() {
                if batch.len() == max {
                    break;
                }
                let unfinished = !matches!(item.state, State::Done | State::Dead(_));
                let lane = item.destination.clone().zip(item.lane.clone());
                let behind = lane.as_ref().is_some_and(|lane| heads.contains(lane));
                if let (true, Some(lane)) = (unfinished, lane) {
                    heads.push(lane);
                }
                if behind || item.destination.as_ref().is_some_and(|d| held.contains(d)) {
                    continue;
                }
                let due = match item.state {
                    State::Due(at) => at <= now,
                    State::Leased { until, .. } => until <= now,
                    State::Done | State::Dead(_) => false,
                };
                if !due {
                    continue;
                }
                let token = self.next_token.fetch_add(1, Ordering::SeqCst);
                item.attempts += 1;
                item.state = State::Leased {
                    token,
                    until: now + lease,
                };
                let ticket = (index, token);
                batch.push(if item.unreadable {
                    Leased::unreadable(ticket, item.name.clone(), item.attempts, "not JSON")
                } else {
                    let job = Job {
                        name: item.name.clone(),
                        attempt: item.attempts,
                        destination: item.destination.clone(),
                    };
                    let leased = Leased::new(ticket, item.name.clone(), item.attempts, job);
                    match &item.destination {
                        Some(d) => leased
                            .with_destination(d.clone(), item.lane.as_deref().map(LaneKey::new)),
                        None => leased,
                    }
                });
            }
            Box::pin(async move { Ok(batch) })
        }

        fn paused(&self) -> BoxFuture<'_, Result<Vec<String>, String>> {
            let paused = self.paused.lock().unwrap().clone();
            Box::pin(async move { Ok(paused) })
        }

        fn wait(&self, timeout: Duration) -> BoxFuture<'_, ()> {
            Box::pin(tokio::time::sleep(timeout))
        }

        fn renew(
            &self,
            tickets: Vec<(usize, u64)>,
            lease: Duration,
        ) -> BoxFuture<'_, Result<(), String>> {
            let now = self.now();
            for (index, token) in tickets {
                if let Some(State::Leased { token: held, until }) =
                    self.items().get_mut(index).map(|item| &mut item.state)
                {
                    if *held == token {
                        *until = now + lease;
                        self.renewals.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            Box::pin(async { Ok(()) })
        }

        fn complete(
            &self,
            ticket: (usize, u64),
            attempt: AttemptRecord,
        ) -> BoxFuture<'_, Result<bool, String>> {
            let told = Told::Processed {
                attempt: attempt.attempt,
            };
            let done = self.settle(ticket, told, State::Done);
            Box::pin(async move { Ok(done) })
        }

        fn retry(
            &self,
            ticket: (usize, u64),
            attempt: AttemptRecord,
            at: SystemTime,
            error: String,
        ) -> BoxFuture<'_, Result<bool, String>> {
            let told = Told::Retry {
                attempt: attempt.attempt,
                started_at: attempt.started_at,
                at,
                error,
            };
            let done = self.settle(ticket, told, State::Due(at));
            Box::pin(async move { Ok(done) })
        }

        fn dead(
            &self,
            ticket: (usize, u64),
            attempt: AttemptRecord,
            reason: String,
        ) -> BoxFuture<'_, Result<bool, String>> {
            let told = Told::Dead {
                attempt: attempt.attempt,
                reason: reason.clone(),
            };
            let done = self.settle(ticket, told, State::Dead(reason));
            Box::pin(async move { Ok(done) })
        }

        fn release(&self, tickets: Vec<(usize, u64)>) -> BoxFuture<'_, Result<u64, String>> {
            let now = self.now();
            let mut released = 0;
            for (index, token) in tickets {
                let mut items = self.items();
                let item = items.get_mut(index).unwrap();
                if matches!(item.state, State::Leased { token: held, .. } if held == token) {
                    item.state = State::Due(now);
                    item.attempts -= 1;
                    released += 1;
                }
            }
            self.released.fetch_add(released, Ordering::SeqCst);
            Box::pin(async move { Ok(released) })
        }
    }

    /// Waits (on the paused clock) until `done` holds, or fails after [`LIMIT`].
    async fn until(what: &str, done: impl Fn() -> bool) {
        let waited = tokio::time::timeout(LIMIT, async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        assert!(waited.is_ok(), "gave up waiting for {what}");
    }

    fn fast(builder: WorkerBuilder<Arc<Memory>>) -> WorkerBuilder<Arc<Memory>> {
        builder.poll_interval(Duration::from_millis(10))
    }

    /// The queue is shared with the test through an `Arc`.
    impl Queue for Arc<Memory> {
        type Event = Job;
        type Ticket = (usize, u64);
        type Error = String;

        fn now(&self) -> SystemTime {
            (**self).now()
        }
        fn lease(
            &self,
            max: usize,
            lease: Duration,
            wait: Duration,
        ) -> BoxFuture<'_, LeaseResult<Self>> {
            (**self).lease(max, lease, wait)
        }
        fn wait(&self, timeout: Duration) -> BoxFuture<'_, ()> {
            (**self).wait(timeout)
        }
        fn lease_except(
            &self,
            max: usize,
            lease: Duration,
            wait: Duration,
            held: Vec<String>,
        ) -> BoxFuture<'_, LeaseResult<Self>> {
            (**self).lease_except(max, lease, wait, held)
        }
        fn paused(&self) -> BoxFuture<'_, Result<Vec<String>, String>> {
            (**self).paused()
        }
        fn renew(
            &self,
            tickets: Vec<(usize, u64)>,
            lease: Duration,
        ) -> BoxFuture<'_, Result<(), String>> {
            (**self).renew(tickets, lease)
        }
        fn complete(
            &self,
            ticket: (usize, u64),
            attempt: AttemptRecord,
        ) -> BoxFuture<'_, Result<bool, String>> {
            (**self).complete(ticket, attempt)
        }
        fn retry(
            &self,
            ticket: (usize, u64),
            attempt: AttemptRecord,
            at: SystemTime,
            error: String,
        ) -> BoxFuture<'_, Result<bool, String>> {
            (**self).retry(ticket, attempt, at, error)
        }
        fn dead(
            &self,
            ticket: (usize, u64),
            attempt: AttemptRecord,
            reason: String,
        ) -> BoxFuture<'_, Result<bool, String>> {
            (**self).dead(ticket, attempt, reason)
        }
        fn release(&self, tickets: Vec<(usize, u64)>) -> BoxFuture<'_, Result<u64, String>> {
            (**self).release(tickets)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_follow_the_policy_and_wait_for_their_time() {
        let queue = Arc::new(Memory::new(&["flaky"]));
        let policy = RetryPolicy::new()
            .base(Duration::from_millis(100))
            .cap(Duration::from_secs(1))
            .max_attempts(5);
        let worker = fast(Worker::builder(queue.clone(), |job: Job| async move {
            match job.attempt {
                1 => HandlerResult::retry_because("downstream 502"),
                2 => HandlerResult::retry(),
                3 => HandlerResult::retry_after(Duration::from_secs(7)),
                _ => HandlerResult::Ok,
            }
        }))
        .retry(policy)
        .start()
        .unwrap();
        until("processed", || queue.item("flaky").state == State::Done).await;
        let stats = worker.stats();
        worker.shutdown().await;
        assert_eq!(
            (stats.handled, stats.retried, stats.processed, stats.dead),
            (4, 3, 1, 0)
        );

        let told = queue.told("flaky");
        assert_eq!(told.len(), 4);
        let mut previous_at = UNIX_EPOCH;
        for (n, told) in told.iter().take(3).enumerate() {
            let Told::Retry {
                attempt,
                started_at,
                at,
                error,
            } = told
            else {
                panic!("attempt {n} is a retry: {told:?}")
            };
            assert_eq!(*attempt as usize, n + 1);
            assert!(*started_at >= previous_at, "a retry waits for its time");
            let delay = at.duration_since(*started_at).unwrap();
            match attempt {
                // Full jitter: anywhere from zero to the doubling ceiling.
                1 => {
                    assert!(delay <= Duration::from_millis(100), "{delay:?}");
                    assert_eq!(error, "downstream 502");
                }
                2 => {
                    assert!(delay <= Duration::from_millis(200), "{delay:?}");
                    assert_eq!(error, "retry requested");
                }
                // The handler's own delay wins.
                _ => assert_eq!(delay, Duration::from_secs(7)),
            }
            previous_at = *at;
        }
        assert_eq!(told[3], Told::Processed { attempt: 4 });
    }

    #[tokio::test(start_paused = true)]
    async fn dead_letters_after_the_last_attempt_at_once_on_fail_and_for_crash_loops() {
        let queue = Arc::new(Memory::new(&["down", "poison", "crashy", "garbled"]));
        // `crashy` was handed out 3 times already, its consumers died each time.
        queue.items()[2].attempts = 3;
        queue.items()[3].unreadable = true;
        let calls: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
        let seen = calls.clone();
        let worker = fast(Worker::builder(queue.clone(), move |job: Job| {
            *seen.lock().unwrap().entry(job.name.clone()).or_default() += 1;
            async move {
                match job.name.as_str() {
                    "poison" => HandlerResult::fail("cannot parse"),
                    _ => Err::<(), _>("database down").into(),
                }
            }
        }))
        .retry(
            RetryPolicy::new()
                .base(Duration::from_millis(10))
                .cap(Duration::from_millis(50))
                .max_attempts(3),
        )
        .start()
        .unwrap();
        until("all dead", || {
            queue.count(|state| matches!(state, State::Dead(_))) == 4
        })
        .await;
        let stats = worker.stats();
        worker.shutdown().await;

        assert_eq!(
            queue.item("down").state,
            State::Dead("gave up after 3 attempts: database down".to_owned())
        );
        assert_eq!(queue.told("down").len(), 3);
        assert_eq!(
            queue.told("poison"),
            [Told::Dead {
                attempt: 1,
                reason: "cannot parse".to_owned()
            }]
        );
        let State::Dead(reason) = queue.item("crashy").state else {
            panic!("crashy is dead")
        };
        assert!(reason.contains("delivered 4 times"), "{reason}");
        let State::Dead(reason) = queue.item("garbled").state else {
            panic!("garbled is dead")
        };
        assert_eq!(reason, "unreadable: not JSON");
        let calls = calls.lock().unwrap();
        assert_eq!(calls.get("crashy"), None, "never run again");
        assert_eq!(calls.get("garbled"), None);
        assert_eq!(calls.get("down"), Some(&3));
        assert_eq!((stats.dead, stats.retried, stats.handled), (4, 2, 4));
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_releases_running_and_prefetched_leases_uncounted() {
        let queue = Arc::new(Memory::new(&["a", "b", "c", "d", "e", "f"]));
        let started = Arc::new(AtomicU32::new(0));
        let count = started.clone();
        let worker = fast(Worker::builder(queue.clone(), move |_job: Job| {
            count.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<HandlerResult>()
        }))
        .concurrency(2)
        .prefetch(2)
        .shutdown_grace(Duration::from_millis(50))
        .start()
        .unwrap();
        until("two running, two leased ahead", || {
            started.load(Ordering::SeqCst) == 2
                && queue.count(|s| matches!(s, State::Leased { .. })) == 4
        })
        .await;
        let report = worker.shutdown().await;
        assert_eq!((report.finished, report.released), (0, 4));
        assert_eq!(queue.count(|s| matches!(s, State::Leased { .. })), 0);
        assert!(
            queue.items().iter().all(|item| item.attempts == 0),
            "a released attempt is not counted"
        );
        assert_eq!(
            started.load(Ordering::SeqCst),
            2,
            "prefetched never started"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_lets_running_handlers_finish_within_the_grace_period() {
        let queue = Arc::new(Memory::new(&["slow"]));
        let go = Arc::new(tokio::sync::Notify::new());
        let started = Arc::new(AtomicU32::new(0));
        let (signal, count) = (go.clone(), started.clone());
        let worker = fast(Worker::builder(queue.clone(), move |_job: Job| {
            let signal = signal.clone();
            count.fetch_add(1, Ordering::SeqCst);
            async move {
                signal.notified().await;
                HandlerResult::Ok
            }
        }))
        .shutdown_grace(Duration::from_secs(60))
        .start()
        .unwrap();
        until("started", || started.load(Ordering::SeqCst) == 1).await;
        let shutdown = tokio::spawn(worker.shutdown());
        tokio::task::yield_now().await;
        go.notify_one();
        let report = shutdown.await.unwrap();
        assert_eq!((report.finished, report.released), (1, 0));
        assert_eq!(queue.item("slow").state, State::Done);
    }

    #[tokio::test(start_paused = true)]
    async fn panics_and_timeouts_count_as_failed_attempts() {
        let queue = Arc::new(Memory::new(&["panic", "hang"]));
        let worker = fast(Worker::builder(queue.clone(), |job: Job| async move {
            if job.attempt == 1 {
                if job.name == "panic" {
                    panic!("handler bug");
                }
                std::future::pending::<()>().await;
            }
            HandlerResult::Ok
        }))
        .handler_timeout(Duration::from_millis(50))
        .retry(
            RetryPolicy::new()
                .base(Duration::from_millis(1))
                .cap(Duration::from_millis(5)),
        )
        .start()
        .unwrap();
        until("both processed", || queue.count(|s| *s == State::Done) == 2).await;
        let stats = worker.stats();
        worker.shutdown().await;
        assert_eq!((stats.panics, stats.timeouts, stats.retried), (1, 1, 2));
        let Told::Retry { error, .. } = &queue.told("panic")[0] else {
            panic!("retried")
        };
        assert_eq!(error, "handler panicked");
        let Told::Retry { error, .. } = &queue.told("hang")[0] else {
            panic!("retried")
        };
        assert!(error.contains("timed out after 50ms"), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn leases_are_renewed_while_the_handler_runs_and_lost_ones_counted() {
        let queue = Arc::new(Memory::new(&["long"]));
        let calls = Arc::new(AtomicU32::new(0));
        let count = calls.clone();
        let worker = fast(Worker::builder(queue.clone(), move |_job: Job| {
            count.fetch_add(1, Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                HandlerResult::Ok
            }
        }))
        .lease(Duration::from_millis(300))
        .start()
        .unwrap();
        until("processed", || queue.item("long").state == State::Done).await;
        worker.shutdown().await;
        assert!(queue.renewals.load(Ordering::SeqCst) >= 5);
        assert_eq!(calls.load(Ordering::SeqCst), 1, "never taken over");
        assert_eq!(queue.item("long").attempts, 1);

        // The lease is lost before the result is recorded: nothing counted but that.
        let queue = Arc::new(Memory::new(&["stolen"]));
        queue.lose_leases.store(true, Ordering::SeqCst);
        let worker = fast(Worker::builder(queue.clone(), |_job: Job| async {
            HandlerResult::Ok
        }))
        .start()
        .unwrap();
        until("the result refused", || worker.stats().lost_leases >= 1).await;
        let stats = worker.stats();
        worker.shutdown().await;
        assert_eq!(stats.processed, 0);
    }

    fn destination(name: &str) -> Destination {
        Destination::new(name, crate::DestinationTarget::Exec("true".into())).unwrap()
    }

    /// Handler starts: (delivery name, destination, when on the queue's clock).
    type Starts = Arc<Mutex<Vec<(String, SystemTime)>>>;

    #[tokio::test(start_paused = true)]
    async fn a_busy_destination_does_not_hold_up_the_others() {
        let mut deliveries = vec![];
        let names: Vec<String> = (0..6)
            .map(|n| format!("slow{n}"))
            .chain((0..20).map(|n| format!("fast{n}")))
            .collect();
        for name in &names {
            let d = if name.starts_with("slow") {
                "slow"
            } else {
                "fast"
            };
            deliveries.push((name.as_str(), d, None));
        }
        let queue = Arc::new(Memory::routed(&deliveries));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (running, most) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let (g, r, m) = (gate.clone(), running.clone(), most.clone());
        let worker = fast(Worker::builder(queue.clone(), move |job: Job| {
            let (g, r, m) = (g.clone(), r.clone(), m.clone());
            async move {
                if job.destination.as_deref() == Some("slow") {
                    let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now, Ordering::SeqCst);
                    g.acquire().await.unwrap().forget();
                    r.fetch_sub(1, Ordering::SeqCst);
                }
                HandlerResult::Ok
            }
        }))
        .concurrency(4)
        .destinations(
            "e",
            &[
                destination("slow").with_concurrency(std::num::NonZeroU32::new(2).unwrap()),
                destination("fast"),
            ],
        )
        .start()
        .unwrap();
        until("every fast delivery done while slow is stuck", || {
            (0..20).all(|n| queue.item(&format!("fast{n}")).state == State::Done)
        })
        .await;
        assert_eq!(
            running.load(Ordering::SeqCst),
            2,
            "slow holds its two slots"
        );
        gate.add_permits(6);
        until("slow done", || queue.count(|s| *s == State::Done) == 26).await;
        worker.shutdown().await;
        assert_eq!(
            most.load(Ordering::SeqCst),
            2,
            "never above its concurrency"
        );
        // Held deliveries were given back uncounted: each was attempted exactly once.
        assert!(queue.items().iter().all(|item| item.attempts == 1));
    }

    #[tokio::test(start_paused = true)]
    async fn each_destination_retries_with_its_own_policy_and_circuit() {
        let queue = Arc::new(Memory::routed(&[
            ("down1", "down", None),
            ("down2", "down", None),
            ("up1", "up", None),
        ]));
        let starts: Starts = Arc::default();
        let seen = starts.clone();
        let clock = queue.clone();
        let worker = fast(Worker::builder(queue.clone(), move |job: Job| {
            seen.lock().unwrap().push((job.name.clone(), clock.now()));
            async move {
                match job.destination.as_deref() {
                    Some("down") => HandlerResult::retry_because("502"),
                    _ => HandlerResult::Ok,
                }
            }
        }))
        .concurrency(1)
        .retry(RetryPolicy::new().max_attempts(9))
        .destinations(
            "e",
            &[
                destination("down")
                    .with_retry(
                        RetryPolicy::new()
                            .max_attempts(2)
                            .base(Duration::from_millis(10))
                            .cap(Duration::from_millis(10)),
                    )
                    .unwrap()
                    .with_circuit(crate::CircuitConfig::new(
                        std::num::NonZeroU32::new(2).unwrap(),
                        Duration::from_secs(30),
                    )),
                destination("up"),
            ],
        )
        .start()
        .unwrap();
        until("both down deliveries dead", || {
            queue.count(|s| matches!(s, State::Dead(_))) == 2
        })
        .await;
        worker.shutdown().await;
        assert_eq!(queue.item("up1").state, State::Done);
        let State::Dead(reason) = queue.item("down1").state else {
            panic!()
        };
        assert!(reason.contains("gave up after 2 attempts"), "{reason}");
        // Two failures open the circuit for 30 s: the third and fourth attempts wait.
        let starts = starts.lock().unwrap();
        let down: Vec<SystemTime> = starts
            .iter()
            .filter(|(n, _)| n.starts_with("down"))
            .map(|(_, at)| *at)
            .collect();
        assert_eq!(down.len(), 4, "{starts:?}");
        let gap = down[2].duration_since(down[1]).unwrap();
        assert!(
            gap >= Duration::from_secs(30),
            "the probe waited for the circuit: {gap:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn ordered_lanes_keep_their_order_and_a_dead_letter_releases_its_lane() {
        let queue = Arc::new(Memory::routed(&[
            ("c1-a", "ordered", Some("c1")),
            ("c2-a", "ordered", Some("c2")),
            ("c1-b", "ordered", Some("c1")),
            ("c3-a", "ordered", Some("c3")),
            ("c2-b", "ordered", Some("c2")),
            ("c1-c", "ordered", Some("c1")),
            ("c3-b", "ordered", Some("c3")),
        ]));
        let starts: Starts = Arc::default();
        let seen = starts.clone();
        let clock = queue.clone();
        let worker = fast(Worker::builder(queue.clone(), move |job: Job| {
            seen.lock().unwrap().push((job.name.clone(), clock.now()));
            async move {
                match (job.name.as_str(), job.attempt) {
                    ("c1-a", 1 | 2) => HandlerResult::retry_after(Duration::from_secs(5)),
                    ("c3-a", _) => HandlerResult::fail("poison"),
                    _ => HandlerResult::Ok,
                }
            }
        }))
        .concurrency(8)
        .destinations(
            "e",
            &[destination("ordered").with_order_key("/customer".parse().unwrap())],
        )
        .start()
        .unwrap();
        until("all finished", || {
            queue.count(|s| matches!(s, State::Done | State::Dead(_))) == 7
        })
        .await;
        worker.shutdown().await;
        let starts = starts.lock().unwrap();
        let order = |key: &str| -> Vec<String> {
            starts
                .iter()
                .filter(|(n, _)| n.starts_with(key))
                .map(|(n, _)| n.clone())
                .collect()
        };
        assert_eq!(order("c1"), ["c1-a", "c1-a", "c1-a", "c1-b", "c1-c"]);
        assert_eq!(order("c2"), ["c2-a", "c2-b"]);
        assert_eq!(order("c3"), ["c3-a", "c3-b"], "the dead letter released c3");
        // c2 was not held up by c1's failing head.
        let at = |name: &str| {
            starts
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, at)| *at)
                .next_back()
                .unwrap()
        };
        assert!(at("c2-b") < at("c1-b"));
        assert!(matches!(queue.item("c3-a").state, State::Dead(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_destination_waits_for_resume_and_the_others_go_on() {
        let queue = Arc::new(Memory::routed(&[
            ("p1", "paused", None),
            ("o1", "open", None),
            ("p2", "paused", None),
            ("o2", "open", None),
        ]));
        queue.paused.lock().unwrap().push("paused".to_owned());
        let worker = fast(Worker::builder(queue.clone(), |_job: Job| async {
            HandlerResult::Ok
        }))
        .destinations("e", &[destination("paused"), destination("open")])
        .start()
        .unwrap();
        until("the open destination done", || {
            queue.item("o1").state == State::Done && queue.item("o2").state == State::Done
        })
        .await;
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert!(
            queue
                .items()
                .iter()
                .filter(|i| i.name.starts_with('p'))
                .all(|i| i.attempts == 0)
        );
        queue.paused.lock().unwrap().clear();
        until("resumed", || queue.count(|s| *s == State::Done) == 4).await;
        worker.shutdown().await;
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limits_pace_a_destination_and_unknown_destinations_are_dead() {
        let names: Vec<String> = (0..6).map(|n| format!("r{n}")).collect();
        let mut deliveries: Vec<(&str, &str, Option<&str>)> =
            names.iter().map(|n| (n.as_str(), "rated", None)).collect();
        deliveries.push(("gone", "removed", None));
        let queue = Arc::new(Memory::routed(&deliveries));
        let starts: Starts = Arc::default();
        let seen = starts.clone();
        let clock = queue.clone();
        let worker = fast(Worker::builder(queue.clone(), move |job: Job| {
            seen.lock().unwrap().push((job.name.clone(), clock.now()));
            async { HandlerResult::Ok }
        }))
        .destinations(
            "e",
            &[destination("rated").with_rate("2/s".parse().unwrap())],
        )
        .start()
        .unwrap();
        until("all rated done", || queue.count(|s| *s == State::Done) == 6).await;
        worker.shutdown().await;
        let starts = starts.lock().unwrap();
        assert_eq!(
            starts.len(),
            6,
            "the unknown destination's delivery never ran"
        );
        let last = starts.iter().map(|(_, at)| *at).max().unwrap();
        assert!(
            last.duration_since(UNIX_EPOCH).unwrap() >= Duration::from_secs(2),
            "{last:?}"
        );
        assert_eq!(
            queue.item("gone").state,
            State::Dead("destination removed is not configured".to_owned())
        );
    }

    #[tokio::test]
    async fn bad_settings_are_refused() {
        let handler = |_job: Job| async { HandlerResult::Ok };
        let builder = || Worker::builder(Arc::new(Memory::new(&[])), handler);
        let refused = |builder: WorkerBuilder<Arc<Memory>>| builder.start().unwrap_err().0;
        assert!(refused(builder().concurrency(0)).contains("concurrency"));
        assert!(refused(builder().prefetch(10_001)).contains("prefetch"));
        assert!(refused(builder().batch_size(0)).contains("batch_size"));
        assert!(refused(builder().lease(Duration::from_millis(10))).contains("lease"));
        assert!(refused(builder().poll_interval(Duration::ZERO)).contains("poll_interval"));
        assert!(refused(builder().handler_timeout(Duration::ZERO)).contains("timeout"));
        assert!(
            refused(builder().retry(RetryPolicy::new().max_attempts(0))).contains("max_attempts")
        );
        builder().start().unwrap().shutdown().await;
    }

    #[test]
    fn leases_come_in_rounds() {
        let settings = |concurrency, prefetch, batch_size| Settings {
            concurrency,
            prefetch,
            batch_size,
            lease: DEFAULT_LEASE,
            poll_interval: DEFAULT_POLL_INTERVAL,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        };
        // No prefetch: as many as there are free places, none when full.
        let plain = settings(8, 0, usize::MAX);
        assert_eq!(plain.want(0, 0), Some(8));
        assert_eq!(plain.want(5, 0), Some(3));
        assert_eq!(plain.want(8, 0), None);
        // One round ahead: two rounds at first, then a round once one is free and less
        // than a round waits.
        let ahead = settings(2, 2, usize::MAX);
        assert_eq!(ahead.want(0, 0), Some(4));
        assert_eq!(ahead.want(2, 2), None);
        assert_eq!(ahead.want(1, 1), Some(2));
        assert_eq!(ahead.want(1, 2), None);
        // A batch size caps each lease.
        assert_eq!(settings(8, 8, 5).want(0, 0), Some(5));
    }
}
