//! The worker: runs the user's handler on each stored event, at least once.

mod handler;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

pub use handler::Handler;
pub use hookgate_queue::{
    DEFAULT_HANDLER_TIMEOUT, DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY_BASE, DEFAULT_RETRY_CAP,
    HandlerResult, RetryPolicy, ShutdownReport, WorkerStats,
};

use crate::event::EventId;
use crate::queue::{Completion, Leased, Tally};
use crate::time::add;
use crate::{Inbox, InboxError};
use handler::CatchPanic;

/// Handler attempts. Labels: `scheme`, `outcome` (`processed`, `retry`, `dead`).
const ATTEMPTS: &str = "hookgate_process_attempts_total";
/// Seconds a handler ran. Labels: `scheme`, `outcome`.
const PROCESS_SECONDS: &str = "hookgate_process_duration_seconds";
/// The longest lease accepted: 24 hours.
const MAX_LEASE: Duration = Duration::from_secs(24 * 60 * 60);
/// Longest delivery id or event type written to a span; longer ones are cut.
const MAX_FIELD_LEN: usize = 128;
/// A worker holds up to this many times its concurrency in leased events: the handlers
/// running, and as many waiting to start. Each lease is a commit that waits for an fsync;
/// leasing one round ahead means a lease per round of handlers instead of one per
/// finished event.
const LEASE_AHEAD: usize = 2;

/// Default handlers running at once: 8.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Default lease (visibility timeout): 30 seconds, renewed every third of it while the
/// handler runs. A crashed process's events are taken again this long after it died.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Default time between polls for due events: 1 second. New events wake the worker at
/// once; polling finds retries that came due and expired leases.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Default wait for running handlers at shutdown: 30 seconds.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Runs a [`Handler`] over an [`Inbox`].
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
#[derive(Debug)]
pub struct Worker {
    _private: (),
}

impl Worker {
    /// Starts configuring a worker that runs `handler` over `inbox`.
    pub fn builder(inbox: Inbox, handler: impl Handler) -> WorkerBuilder {
        WorkerBuilder {
            inbox,
            handler: Arc::new(handler),
            concurrency: DEFAULT_CONCURRENCY,
            lease: DEFAULT_LEASE,
            poll_interval: DEFAULT_POLL_INTERVAL,
            handler_timeout: DEFAULT_HANDLER_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            retry: RetryPolicy::new(),
        }
    }
}

/// Settings of a worker; checked by [`start`](Self::start).
#[must_use]
pub struct WorkerBuilder {
    inbox: Inbox,
    handler: Arc<dyn Handler>,
    concurrency: usize,
    lease: Duration,
    poll_interval: Duration,
    handler_timeout: Duration,
    shutdown_grace: Duration,
    retry: RetryPolicy,
}

impl fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("inbox", &self.inbox.path())
            .field("concurrency", &self.concurrency)
            .field("lease", &self.lease)
            .field("poll_interval", &self.poll_interval)
            .field("handler_timeout", &self.handler_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl WorkerBuilder {
    /// Handlers running at once (default [`DEFAULT_CONCURRENCY`], 1 to 10 000).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// The lease, or visibility timeout (default [`DEFAULT_LEASE`], 10 ms to 24 h): how
    /// long after a crash an event is taken again. Leases of running handlers are renewed.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Time between polls for due retries and expired leases (default
    /// [`DEFAULT_POLL_INTERVAL`]).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Longest run of one handler call (default [`DEFAULT_HANDLER_TIMEOUT`]).
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

    /// The retry policy (default [`RetryPolicy::new`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Starts the worker on the current Tokio runtime.
    ///
    /// # Errors
    /// [`InboxError::Config`] for a setting out of range, [`InboxError::Task`] outside a
    /// Tokio runtime.
    pub fn start(self) -> Result<WorkerHandle, InboxError> {
        self.retry.check().map_err(InboxError::Config)?;
        if !(1..=10_000).contains(&self.concurrency) {
            return Err(InboxError::Config(format!(
                "concurrency must be between 1 and 10000, got {}",
                self.concurrency
            )));
        }
        if self.lease < Duration::from_millis(10) || self.lease > MAX_LEASE {
            return Err(InboxError::Config(format!(
                "the lease must be between 10 ms and 24 h, got {:?}",
                self.lease
            )));
        }
        if self.poll_interval.is_zero() || self.handler_timeout.is_zero() {
            return Err(InboxError::Config(
                "poll_interval and handler_timeout must not be zero".to_owned(),
            ));
        }
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            InboxError::Task("a worker must be started inside a Tokio runtime".to_owned())
        })?;
        let (stop, stopped) = watch::channel(false);
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared {
            inbox: self.inbox,
            handler: self.handler,
            lease: self.lease,
            handler_timeout: self.handler_timeout,
            retry: self.retry,
            held: Mutex::new(HashMap::new()),
            counters: counters.clone(),
        });
        let settings = LoopSettings {
            concurrency: self.concurrency,
            poll_interval: self.poll_interval,
            shutdown_grace: self.shutdown_grace,
        };
        let task = runtime.spawn(run(shared, settings, stopped));
        Ok(WorkerHandle {
            stop,
            task,
            counters,
        })
    }
}

/// A running worker. Dropping it stops the worker the same way as
/// [`shutdown`](Self::shutdown), without waiting for it.
#[derive(Debug)]
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<ShutdownReport>,
    counters: Arc<Counters>,
}

impl WorkerHandle {
    /// Stops taking events, waits up to the grace period for running handlers, then
    /// cancels the rest and gives their events back to the queue (their attempt not
    /// counted).
    pub async fn shutdown(self) -> ShutdownReport {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(report) => report,
            Err(err) => {
                tracing::error!(error = %err, "inbox worker task failed");
                ShutdownReport::default()
            }
        }
    }

    /// Counters since the worker started.
    pub fn stats(&self) -> WorkerStats {
        self.counters.snapshot()
    }
}

#[derive(Debug, Default)]
struct Counters {
    handled: AtomicU64,
    processed: AtomicU64,
    retried: AtomicU64,
    dead: AtomicU64,
    panics: AtomicU64,
    timeouts: AtomicU64,
    lost_leases: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the outcome of `completion` in the counter it belongs to (`true`), or takes
    /// that count back (`false`).
    fn tally(counters: &Arc<Counters>, completion: &Completion) -> Tally {
        let counters = counters.clone();
        let pick: fn(&Counters) -> &AtomicU64 = match completion {
            Completion::Processed => |c| &c.processed,
            Completion::Retry { .. } => |c| &c.retried,
            Completion::Dead { .. } => |c| &c.dead,
        };
        Arc::new(move |count| {
            let counter = pick(&counters);
            if count {
                counter.fetch_add(1, Ordering::SeqCst);
            } else {
                counter.fetch_sub(1, Ordering::SeqCst);
            }
        })
    }

    fn snapshot(&self) -> WorkerStats {
        let mut stats = WorkerStats::default();
        stats.handled = self.handled.load(Ordering::Relaxed);
        stats.processed = self.processed.load(Ordering::Relaxed);
        stats.retried = self.retried.load(Ordering::Relaxed);
        stats.dead = self.dead.load(Ordering::Relaxed);
        stats.panics = self.panics.load(Ordering::Relaxed);
        stats.timeouts = self.timeouts.load(Ordering::Relaxed);
        stats.lost_leases = self.lost_leases.load(Ordering::Relaxed);
        stats
    }
}

struct Shared {
    inbox: Inbox,
    handler: Arc<dyn Handler>,
    lease: Duration,
    handler_timeout: Duration,
    retry: RetryPolicy,
    /// Events leased and not finished: id → lease token.
    held: Mutex<HashMap<EventId, i64>>,
    counters: Arc<Counters>,
}

impl Shared {
    fn held(&self) -> MutexGuard<'_, HashMap<EventId, i64>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn held_list(&self) -> Vec<(EventId, i64)> {
        self.held()
            .iter()
            .map(|(id, token)| (*id, *token))
            .collect()
    }
}

#[derive(Debug, Clone, Copy)]
struct LoopSettings {
    concurrency: usize,
    poll_interval: Duration,
    shutdown_grace: Duration,
}

async fn run(
    shared: Arc<Shared>,
    settings: LoopSettings,
    mut stopped: watch::Receiver<bool>,
) -> ShutdownReport {
    let mut wake = shared.inbox.subscribe();
    // Handlers running: at most `concurrency`.
    let mut tasks: JoinSet<Finished> = JoinSet::new();
    // Results being recorded. They do not hold a handler's place: the next event starts
    // while the last one's result waits for the writer's next commit.
    let mut recording: JoinSet<()> = JoinSet::new();
    // Leased events waiting for a place (see `LEASE_AHEAD`).
    let mut ready: VecDeque<Leased> = VecDeque::new();
    let most_held = settings.concurrency.saturating_mul(LEASE_AHEAD);
    let renew_every = shared.lease.checked_div(3).unwrap_or(shared.lease);
    let mut renew = tokio::time::interval(renew_every);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        if *stopped.borrow() {
            break;
        }
        start_ready(&shared, &mut tasks, &mut ready, settings.concurrency);
        let held = tasks.len().saturating_add(ready.len());
        let want = most_held.saturating_sub(held);
        let mut pause = settings.poll_interval;
        // Lease when a handler's place is free and less than one round is waiting, so
        // leases come in batches rather than one per finished event.
        let room = tasks.len() < settings.concurrency && ready.len() < settings.concurrency;
        if room && want > 0 {
            wake.borrow_and_update();
            match shared.inbox.lease_events(want, shared.lease).await {
                Ok(batch) => {
                    if !batch.is_empty() {
                        let mut held = shared.held();
                        for leased in &batch {
                            held.insert(leased.event.id(), leased.token);
                        }
                    }
                    ready.extend(batch);
                }
                Err(err) => {
                    tracing::warn!(error = %err, "inbox worker could not lease events");
                    pause = settings.poll_interval.max(Duration::from_millis(100));
                }
            }
            start_ready(&shared, &mut tasks, &mut ready, settings.concurrency);
        }
        let room = tasks.len() < settings.concurrency && ready.is_empty();
        tokio::select! {
            biased;
            changed = stopped.changed() => {
                // An error means the handle was dropped: stop as well.
                if changed.is_err() {
                    break;
                }
            }
            // Before completions, so a steady stream of them cannot starve the renewal.
            _ = renew.tick() => renew_leases(&shared).await,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok(finished) = joined {
                    recording.spawn(record(shared.clone(), finished));
                }
            }
            Some(_) = recording.join_next(), if !recording.is_empty() => {}
            Ok(()) = wake.changed(), if room => {}
            () = tokio::time::sleep(pause), if room => {}
        }
    }

    // Shutdown: no new leases nor handlers; let running handlers finish within the grace
    // period and their results be recorded; give back the rest (those leased ahead too).
    let mut report = ShutdownReport::default();
    let deadline = tokio::time::sleep(settings.shutdown_grace);
    tokio::pin!(deadline);
    while !tasks.is_empty() {
        tokio::select! {
            biased;
            _ = renew.tick() => renew_leases(&shared).await,
            joined = tasks.join_next() => {
                if let Some(Ok(finished)) = joined {
                    report.finished = report.finished.saturating_add(1);
                    recording.spawn(record(shared.clone(), finished));
                }
            }
            () = &mut deadline => break,
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    while recording.join_next().await.is_some() {}
    let unfinished = shared.held_list();
    if !unfinished.is_empty() {
        match shared.inbox.release_leases(unfinished).await {
            Ok(released) => report.released = u64::try_from(released).unwrap_or(u64::MAX),
            Err(err) => {
                tracing::warn!(error = %err, "inbox worker could not release its leases; they will expire");
            }
        }
    }
    report
}

/// Starts handlers for leased events while there is a place.
fn start_ready(
    shared: &Arc<Shared>,
    tasks: &mut JoinSet<Finished>,
    ready: &mut VecDeque<Leased>,
    concurrency: usize,
) {
    while tasks.len() < concurrency {
        let Some(leased) = ready.pop_front() else {
            return;
        };
        tasks.spawn(handle(shared.clone(), leased));
    }
}

async fn renew_leases(shared: &Shared) {
    let held = shared.held_list();
    if held.is_empty() {
        return;
    }
    if let Err(err) = shared.inbox.renew_leases(held, shared.lease).await {
        tracing::warn!(error = %err, "inbox worker could not renew its leases");
    }
}

/// A handler's outcome, waiting to be recorded.
struct Finished {
    id: EventId,
    token: i64,
    attempt: u32,
    started_at: std::time::SystemTime,
    duration: Duration,
    completion: Completion,
    span: tracing::Span,
}

/// Runs the handler on one leased event.
async fn handle(shared: Arc<Shared>, leased: Leased) -> Finished {
    let Leased { event, token } = leased;
    let id = event.id();
    let attempt = event.attempt();
    let scheme = event.scheme().to_owned();
    let span = tracing::info_span!(
        "webhook.process",
        scheme = %scheme,
        delivery_id = cut(event.delivery_id().unwrap_or("")),
        event_type = cut(event.event_type().unwrap_or("")),
        event_id = id.get(),
        attempt,
        outcome = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
    );
    let run = async {
        Counters::bump(&shared.counters.handled);
        let started_at = shared.inbox.inner.clock.now();
        let clock_start = Instant::now();
        let result = match tokio::time::timeout(
            shared.handler_timeout,
            CatchPanic(shared.handler.handle(event)),
        )
        .await
        {
            Ok(Ok(result)) => result,
            Ok(Err(())) => {
                Counters::bump(&shared.counters.panics);
                HandlerResult::retry_because("handler panicked")
            }
            Err(_) => {
                Counters::bump(&shared.counters.timeouts);
                HandlerResult::retry_because(format!(
                    "handler timed out after {:?}",
                    shared.handler_timeout
                ))
            }
        };
        let duration = clock_start.elapsed();
        let completion = completion_for(&shared, attempt, result);
        let span = tracing::Span::current();
        span.record("outcome", outcome_name(&completion));
        span.record(
            "duration_ms",
            u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        );
        let outcome = outcome_name(&completion);
        metrics::histogram!(PROCESS_SECONDS, "scheme" => scheme.clone(), "outcome" => outcome)
            .record(duration.as_secs_f64());
        metrics::counter!(ATTEMPTS, "scheme" => scheme, "outcome" => outcome).increment(1);
        (started_at, duration, completion)
    };
    let (started_at, duration, completion) = run.instrument(span.clone()).await;
    Finished {
        id,
        token,
        attempt,
        started_at,
        duration,
        completion,
        span,
    }
}

/// Records a handler's outcome; the event stays held (its lease renewed) until then.
async fn record(shared: Arc<Shared>, finished: Finished) {
    let Finished {
        id,
        token,
        attempt,
        started_at,
        duration,
        completion,
        span,
    } = finished;
    async {
        let tally = Counters::tally(&shared.counters, &completion);
        match shared
            .inbox.record_attempt(id, token, attempt, started_at, duration, completion, tally)
            .await
        {
            // Counted inside the transaction (see `record_attempt`): whoever sees the new
            // status sees the count too.
            Ok(true) => {}
            Ok(false) => {
                Counters::bump(&shared.counters.lost_leases);
                tracing::warn!("lease lost before the result was recorded; the event will be handled again");
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not record the result; the lease will expire and the event be handled again");
            }
        }
        shared.held().remove(&id);
    }
    .instrument(span)
    .await;
}

fn completion_for(shared: &Shared, attempt: u32, result: HandlerResult) -> Completion {
    match result {
        HandlerResult::Ok => Completion::Processed,
        HandlerResult::Fail(reason) => Completion::Dead { reason },
        HandlerResult::Retry { after, error } => {
            let error = error.unwrap_or_else(|| "retry requested".to_owned());
            if shared.retry.allows_retry_after(attempt) {
                let delay = after.unwrap_or_else(|| shared.retry.backoff(attempt));
                Completion::Retry {
                    at_ms: add(shared.inbox.now_ms(), delay),
                    error,
                }
            } else {
                Completion::Dead {
                    reason: format!("gave up after {attempt} attempts: {error}"),
                }
            }
        }
        // `HandlerResult` is non-exhaustive: an outcome added later is retried, never
        // dropped.
        _ => Completion::Retry {
            at_ms: add(shared.inbox.now_ms(), shared.retry.backoff(attempt)),
            error: "unknown handler result".to_owned(),
        },
    }
}

fn outcome_name(completion: &Completion) -> &'static str {
    match completion {
        Completion::Processed => "processed",
        Completion::Retry { .. } => "retry",
        Completion::Dead { .. } => "dead",
    }
}

/// `text` cut to at most [`MAX_FIELD_LEN`] bytes, on a character boundary.
fn cut(text: &str) -> &str {
    let mut end = text.len().min(MAX_FIELD_LEN);
    while !text.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    text.get(..end).unwrap_or("")
}
