//! The PostgreSQL worker: `FOR UPDATE SKIP LOCKED` leases renewed while the handler runs,
//! `LISTEN/NOTIFY` wake-ups, retries with backoff, dead letters, pruning.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hookgate::BoxFuture;
use hookgate_queue::{
    Handler, HandlerResult, QueuedEvent, RetryPolicy, Runner, ShutdownReport, Verdict, WorkerStats,
};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_postgres::{AsyncMessage, Client, NoTls};

use crate::pool::Conn;
use crate::store::{millis, queued_event};
use crate::{Error, PgStore, schema};

/// Default handlers running at once per worker: 8.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Default lease: 30 seconds. An event whose worker stopped renewing its lease (it
/// crashed) is taken over by another worker this long after.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Default longest sleep of an idle worker: 5 seconds. New events and replays wake it at
/// once (`LISTEN/NOTIFY`) and a retry wakes it when due; this paces taking over expired
/// leases and covers a lost notification connection.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Default wait for running handlers at shutdown: 30 seconds.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Default interval between two [`PgStore::prune`] runs of a worker: 10 minutes.
pub const DEFAULT_PRUNE_INTERVAL: Duration = Duration::from_secs(600);

/// Longest wait before the listening connection is made again after it broke.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(5);

/// An open transaction handed to a [`TxHandler`], on the connection that will record the
/// event's result.
///
/// Run your own statements on [`client`](Self::client); do not `COMMIT` or `ROLLBACK`
/// yourself. When the handler returns [`HandlerResult::Ok`], the worker marks the event
/// processed **in this transaction** and commits it: your writes and the event's
/// completion become durable together, or not at all. On any other result, a panic or a
/// timeout, the transaction is rolled back and the event retried as usual.
#[derive(Debug, Clone, Copy)]
pub struct PgTransaction<'a> {
    client: &'a Client,
}

impl<'a> PgTransaction<'a> {
    /// The connection, inside the transaction.
    pub fn client(&self) -> &'a Client {
        self.client
    }
}

/// A handler that processes an event inside the database transaction that records it as
/// processed: the inbox pattern's exactly-once *effect* for writes to the same database.
///
/// The handler may still be called more than once for an event (a crash, an expired
/// lease), but only one call's transaction commits: the one that still holds the lease
/// when it marks the event processed. A call whose lease was taken over meanwhile is
/// rolled back, with its writes. Effects outside the transaction (an HTTP call, an email)
/// stay at least once.
///
/// Implement it on your own type, or wrap a closure with [`tx_handler`]. A full example
/// is in the crate documentation.
pub trait TxHandler: Send + Sync + 'static {
    /// Processes one event inside `tx`.
    fn handle<'a>(
        &'a self,
        event: QueuedEvent,
        tx: &'a PgTransaction<'a>,
    ) -> BoxFuture<'a, HandlerResult>;
}

/// A [`TxHandler`] made from a closure returning a boxed future:
///
/// ```
/// use hookgate_postgres::{HandlerResult, tx_handler};
///
/// let handler = tx_handler(|event, tx| {
///     Box::pin(async move {
///         let inserted = tx
///             .client()
///             .execute(
///                 "INSERT INTO payments (dedup_key) VALUES ($1)",
///                 &[&event.dedup_key()],
///             )
///             .await;
///         match inserted {
///             Ok(_) => HandlerResult::Ok,
///             Err(err) => HandlerResult::retry_because(err),
///         }
///     })
/// });
/// # let _ = handler;
/// ```
pub fn tx_handler<F>(handler: F) -> TxFn<F>
where
    F: for<'a> Fn(QueuedEvent, &'a PgTransaction<'a>) -> BoxFuture<'a, HandlerResult>
        + Send
        + Sync
        + 'static,
{
    TxFn(handler)
}

/// The [`TxHandler`] of [`tx_handler`].
pub struct TxFn<F>(F);

impl<F> fmt::Debug for TxFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TxFn")
    }
}

impl<F> TxHandler for TxFn<F>
where
    F: for<'a> Fn(QueuedEvent, &'a PgTransaction<'a>) -> BoxFuture<'a, HandlerResult>
        + Send
        + Sync
        + 'static,
{
    fn handle<'a>(
        &'a self,
        event: QueuedEvent,
        tx: &'a PgTransaction<'a>,
    ) -> BoxFuture<'a, HandlerResult> {
        (self.0)(event, tx)
    }
}

/// Runs a handler over the events of a [`PgStore`], alongside any number of workers in
/// any number of processes sharing the database.
///
/// - **Leases.** A worker takes due events with one `UPDATE … FROM (SELECT … FOR UPDATE
///   SKIP LOCKED)`: workers never wait for each other and never take the same event. A
///   leased event is `processing` until its lease ends; the worker renews the lease every
///   third of [`lease`](PgWorkerBuilder::lease) while the handler runs. A worker that
///   dies stops renewing, and after the lease any worker takes the event over and runs it
///   again. Leases count as attempts, so an event that kills its worker every time ends as
///   a dead letter.
/// - **Results** are recorded only under the lease that ran the handler (a lease token
///   per batch): a worker whose lease was taken over changes nothing (counted as a lost
///   lease).
/// - **Wake-ups.** Each stored event notifies `<schema>_events`; idle workers `LISTEN` on a
///   connection of their own and wake at once, and otherwise sleep until the next retry
///   is due or the [`poll_interval`](PgWorkerBuilder::poll_interval) passes. The listening
///   connection is made again by itself when it breaks.
/// - **Retries** follow the [`RetryPolicy`] (exponential backoff with full jitter); after
///   the last attempt, or on [`HandlerResult::Fail`], the event is `dead` until replayed
///   ([`PgStore::replay_dead_letters`], [`PgStore::replay`]).
/// - **Pruning.** Every [`prune_interval`](PgWorkerBuilder::prune_interval) it calls
///   [`PgStore::prune`].
/// - **Shutdown** ([`PgWorkerHandle::shutdown`]) stops leasing, waits for running handlers
///   up to a grace period, and gives the unfinished events back at once (their attempt not
///   counted).
///
/// With [`transactional`](PgWorker::transactional), the handler runs inside the
/// transaction that marks the event processed ([`TxHandler`]).
#[derive(Debug)]
pub struct PgWorker {
    _private: (),
}

impl PgWorker {
    /// Starts configuring a worker that runs `handler` on the events of `store`.
    pub fn builder(store: &PgStore, handler: impl Handler) -> PgWorkerBuilder {
        PgWorkerBuilder::new(store, Kind::Plain(Arc::new(handler)))
    }

    /// Starts configuring a worker that runs `handler` inside the transaction that marks
    /// each event processed. Each running handler holds one pooled connection: keep the
    /// store's pool larger than the worker's concurrency plus what the gate needs.
    pub fn transactional(store: &PgStore, handler: impl TxHandler) -> PgWorkerBuilder {
        PgWorkerBuilder::new(store, Kind::Transactional(Arc::new(handler)))
    }
}

enum Kind {
    Plain(Arc<dyn Handler>),
    Transactional(Arc<dyn TxHandler>),
}

/// Settings of a [`PgWorker`]; checked by [`start`](Self::start).
#[must_use]
pub struct PgWorkerBuilder {
    store: PgStore,
    kind: Kind,
    concurrency: usize,
    lease: Duration,
    poll_interval: Duration,
    handler_timeout: Duration,
    shutdown_grace: Duration,
    prune_interval: Option<Duration>,
    retry: RetryPolicy,
}

impl PgWorkerBuilder {
    fn new(store: &PgStore, kind: Kind) -> Self {
        PgWorkerBuilder {
            store: store.clone(),
            kind,
            concurrency: DEFAULT_CONCURRENCY,
            lease: DEFAULT_LEASE,
            poll_interval: DEFAULT_POLL_INTERVAL,
            handler_timeout: hookgate_queue::DEFAULT_HANDLER_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            prune_interval: Some(DEFAULT_PRUNE_INTERVAL),
            retry: RetryPolicy::new(),
        }
    }

    /// Handlers running at once (default [`DEFAULT_CONCURRENCY`], 1 to 10 000).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// The lease (default [`DEFAULT_LEASE`], at least 100 ms): how long after a worker
    /// stopped renewing an event another may take it over.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Longest sleep of an idle worker (default [`DEFAULT_POLL_INTERVAL`]).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Longest run of one handler call (default 5 minutes).
    pub fn handler_timeout(mut self, timeout: Duration) -> Self {
        self.handler_timeout = timeout;
        self
    }

    /// How long [`PgWorkerHandle::shutdown`] waits for running handlers (default
    /// [`DEFAULT_SHUTDOWN_GRACE`]).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// How often to prune (default [`DEFAULT_PRUNE_INTERVAL`]); `None` leaves pruning to
    /// you ([`PgStore::prune`]).
    pub fn prune_interval(mut self, interval: Option<Duration>) -> Self {
        self.prune_interval = interval;
        self
    }

    /// The retry policy (default [`RetryPolicy::new`]: 12 attempts, backoff from 1 s to 1 h).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Starts the worker on the current Tokio runtime.
    ///
    /// # Errors
    /// [`Error::Config`] for a setting out of range.
    pub fn start(self) -> Result<PgWorkerHandle, Error> {
        if !(1..=10_000).contains(&self.concurrency) {
            return Err(Error::Config(format!(
                "concurrency must be between 1 and 10000, got {}",
                self.concurrency
            )));
        }
        if self.lease < Duration::from_millis(100) {
            return Err(Error::Config(format!(
                "the lease must be at least 100 ms, got {:?}",
                self.lease
            )));
        }
        if self.poll_interval < Duration::from_millis(1)
            || self
                .prune_interval
                .is_some_and(|i| i < Duration::from_millis(1))
        {
            return Err(Error::Config(
                "poll_interval and prune_interval must be at least 1 ms".to_owned(),
            ));
        }
        let (handler, transactions): (Arc<dyn Handler>, Option<Arc<OpenTransactions>>) =
            match self.kind {
                Kind::Plain(handler) => (handler, None),
                Kind::Transactional(user) => {
                    let open = Arc::new(OpenTransactions::default());
                    let adapter = TxAdapter {
                        user,
                        store: self.store.clone(),
                        open: open.clone(),
                    };
                    (Arc::new(adapter), Some(open))
                }
            };
        let runner = Runner::new(handler, self.handler_timeout, self.retry)?;
        let (stop, stopped) = watch::channel(false);
        let wake = Arc::new(Notify::new());
        let shared = Arc::new(Shared {
            store: self.store,
            runner,
            lease: self.lease,
            held: Mutex::new(HashMap::new()),
            transactions,
        });
        let settings = Settings {
            concurrency: self.concurrency,
            poll_interval: self.poll_interval,
            shutdown_grace: self.shutdown_grace,
            prune_interval: self.prune_interval,
        };
        let listener = tokio::spawn(listen(
            shared.store.inner.pool.config().clone(),
            schema::channel(shared.store.schema()),
            wake.clone(),
            stopped.clone(),
        ));
        let task = tokio::spawn(run(shared.clone(), settings, stopped, wake));
        Ok(PgWorkerHandle {
            stop,
            task,
            listener,
            shared,
        })
    }
}

impl fmt::Debug for PgWorkerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgWorkerBuilder")
            .field("store", &self.store)
            .field(
                "transactional",
                &matches!(self.kind, Kind::Transactional(_)),
            )
            .field("concurrency", &self.concurrency)
            .field("lease", &self.lease)
            .field("poll_interval", &self.poll_interval)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// A running [`PgWorker`]. Dropping it stops the worker the same way as
/// [`shutdown`](Self::shutdown), without waiting for it.
#[derive(Debug)]
pub struct PgWorkerHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<ShutdownReport>,
    listener: tokio::task::JoinHandle<()>,
    shared: Arc<Shared>,
}

impl PgWorkerHandle {
    /// Stops leasing, waits up to the grace period for running handlers, then cancels the
    /// rest and gives their events back (their attempt not counted).
    pub async fn shutdown(self) -> ShutdownReport {
        let _ = self.stop.send(true);
        let report = match self.task.await {
            Ok(report) => report,
            Err(err) => {
                tracing::error!(error = %err, "postgres worker task failed");
                ShutdownReport::default()
            }
        };
        let _ = self.listener.await;
        report
    }

    /// Counters since the worker started.
    pub fn stats(&self) -> WorkerStats {
        self.shared.runner.stats()
    }
}

struct Settings {
    concurrency: usize,
    poll_interval: Duration,
    shutdown_grace: Duration,
    prune_interval: Option<Duration>,
}

/// Connections holding a transactional handler's open transaction, by event id, between
/// the handler's return and the recording of its result.
#[derive(Debug, Default)]
struct OpenTransactions(Mutex<HashMap<i64, Conn>>);

impl OpenTransactions {
    fn lock(&self) -> MutexGuard<'_, HashMap<i64, Conn>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Shared {
    store: PgStore,
    runner: Runner,
    lease: Duration,
    /// Events this worker runs: id → lease token.
    held: Mutex<HashMap<i64, i64>>,
    transactions: Option<Arc<OpenTransactions>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("store", &self.store)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

/// One leased event.
struct Leased {
    id: i64,
    token: i64,
    event: Result<QueuedEvent, Error>,
}

impl Shared {
    fn held(&self) -> MutexGuard<'_, HashMap<i64, i64>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Leases up to `room` due events.
    async fn lease(&self, room: usize) -> Result<Vec<Leased>, Error> {
        let token = fastrand::i64(..);
        let limit = i64::try_from(room).unwrap_or(i64::MAX);
        let rows = self
            .store
            .conn()
            .await?
            .query(
                &self.store.inner.sql.lease,
                &[&token, &millis(self.lease), &limit],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Leased {
                    id: row.try_get(0)?,
                    token,
                    event: queued_event(row),
                })
            })
            .collect()
    }

    /// Records a verdict under the lease `token`: `Ok(false)` if the lease was taken over.
    /// For a transactional handler's success, in its transaction, then committed.
    async fn apply(&self, id: i64, token: i64, verdict: Verdict) -> Result<bool, Error> {
        let (status, delay, error, outcome) = match verdict {
            Verdict::Processed => ("processed", 0, None, "processed"),
            Verdict::Retry { delay, error } => ("failed", millis(delay), Some(error), "retry"),
            Verdict::Dead { reason } => ("dead", 0, Some(reason), "dead"),
            // `Verdict` is non-exhaustive: anything added later is retried, never dropped.
            _ => ("failed", 1000, Some("unknown verdict".to_owned()), "retry"),
        };
        let sql = &self.store.inner.sql.finish;
        let open = self
            .transactions
            .as_ref()
            .and_then(|open| open.lock().remove(&id));
        if let Some(mut conn) = open {
            if status == "processed" {
                let applied = conn
                    .execute(sql, &[&id, &token, &status, &delay, &error, &outcome])
                    .await?;
                if applied == 0 {
                    // Someone else holds the lease now: the handler's writes go too.
                    conn.rollback().await?;
                    return Ok(false);
                }
                conn.commit().await?;
                return Ok(true);
            }
            conn.rollback().await?;
        }
        let applied = self
            .store
            .conn()
            .await?
            .execute(sql, &[&id, &token, &status, &delay, &error, &outcome])
            .await?;
        Ok(applied > 0)
    }

    async fn renew(&self) {
        let (ids, tokens): (Vec<i64>, Vec<i64>) =
            self.held().iter().map(|(id, token)| (*id, *token)).unzip();
        if ids.is_empty() {
            return;
        }
        let renewed = async {
            self.store
                .conn()
                .await?
                .execute(
                    &self.store.inner.sql.renew,
                    &[&ids, &tokens, &millis(self.lease)],
                )
                .await
        };
        if let Err(err) = renewed.await {
            tracing::warn!(error = %err, "postgres worker could not renew its leases");
        }
    }

    /// Gives events back to the queue at once, their attempt not counted.
    async fn give_back(&self, held: Vec<(i64, i64)>) -> Result<u64, Error> {
        if held.is_empty() {
            return Ok(0);
        }
        let (ids, tokens): (Vec<i64>, Vec<i64>) = held.into_iter().unzip();
        let mut conn = self.store.conn().await?;
        let released = conn
            .execute(&self.store.inner.sql.give_back, &[&ids, &tokens])
            .await?;
        conn.query(&self.store.inner.sql.notify, &[]).await?;
        Ok(released)
    }

    /// How long until the next event is due (`None`: nothing is scheduled).
    async fn next_due(&self) -> Result<Option<Duration>, Error> {
        let rows = self
            .store
            .conn()
            .await?
            .query(&self.store.inner.sql.next_due, &[])
            .await?;
        let ms: Option<i64> = rows
            .first()
            .map(|row| row.try_get(0))
            .transpose()?
            .flatten();
        Ok(ms.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))))
    }
}

/// Runs the user's [`TxHandler`] for the [`Runner`]: opens the transaction, and keeps it
/// open after a success so that [`Shared::apply`] records the result in it.
struct TxAdapter {
    user: Arc<dyn TxHandler>,
    store: PgStore,
    open: Arc<OpenTransactions>,
}

impl Handler for TxAdapter {
    fn handle(&self, event: QueuedEvent) -> BoxFuture<'_, HandlerResult> {
        Box::pin(async move {
            let Ok(id) = event.id().parse::<i64>() else {
                return HandlerResult::fail(format!("not an event id: {:?}", event.id()));
            };
            let mut conn = match self.store.conn().await {
                Ok(conn) => conn,
                Err(err) => return HandlerResult::retry_because(err),
            };
            if let Err(err) = conn.begin().await {
                return HandlerResult::retry_because(err);
            }
            let result = match conn.client() {
                Ok(client) => {
                    let tx = PgTransaction { client };
                    self.user.handle(event, &tx).await
                }
                Err(err) => HandlerResult::retry_because(err),
            };
            if matches!(result, HandlerResult::Ok) {
                self.open.lock().insert(id, conn);
            } else if let Err(err) = conn.rollback().await {
                // Dropped in the transaction, the connection is closed: rolled back.
                tracing::debug!(error = %err, "could not roll a handler's transaction back");
            }
            result
        })
    }
}

async fn run(
    shared: Arc<Shared>,
    settings: Settings,
    mut stopped: watch::Receiver<bool>,
    wake: Arc<Notify>,
) -> ShutdownReport {
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut renew = tokio::time::interval(
        shared
            .lease
            .checked_div(3)
            .unwrap_or(shared.lease)
            .max(Duration::from_millis(10)),
    );
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut prune =
        tokio::time::interval(settings.prune_interval.unwrap_or(Duration::from_secs(3600)));
    prune.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *stopped.borrow() {
            break;
        }
        let room = settings.concurrency.saturating_sub(tasks.len());
        let mut sleep_for = settings.poll_interval;
        if room > 0 {
            match shared.lease(room).await {
                Ok(leased) => {
                    let full = leased.len() == room;
                    for leased in leased {
                        spawn(&mut tasks, &shared, leased);
                    }
                    if full {
                        // There may be more: lease again as soon as there is room.
                        sleep_for = Duration::ZERO;
                    } else {
                        match shared.next_due().await {
                            Ok(Some(due)) => {
                                sleep_for =
                                    sleep_for.min(due.saturating_add(Duration::from_millis(5)));
                            }
                            Ok(None) => {}
                            Err(err) => {
                                tracing::debug!(error = %err, "could not read the next due time")
                            }
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "postgres worker could not lease events");
                    sleep_for = sleep_for.min(Duration::from_millis(500));
                }
            }
        }
        let sleep = tokio::time::sleep(sleep_for);
        tokio::select! {
            biased;
            changed = stopped.changed() => {
                // An error means the handle was dropped: stop as well.
                if changed.is_err() {
                    break;
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = renew.tick() => shared.renew().await,
            _ = prune.tick(), if settings.prune_interval.is_some() => {
                match shared.store.prune().await {
                    Ok(report) => tracing::debug!(?report, "pruned the event log"),
                    Err(err) => tracing::warn!(error = %err, "could not prune the event log"),
                }
            }
            () = wake.notified(), if room > 0 => {}
            () = sleep, if room > 0 => {}
        }
    }

    let mut report = ShutdownReport::default();
    let deadline = tokio::time::sleep(settings.shutdown_grace);
    tokio::pin!(deadline);
    while !tasks.is_empty() {
        tokio::select! {
            biased;
            joined = tasks.join_next() => {
                if joined.is_some() {
                    report.finished = report.finished.saturating_add(1);
                }
            }
            _ = renew.tick() => shared.renew().await,
            () = &mut deadline => break,
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    if let Some(open) = &shared.transactions {
        // Handlers cut short between their success and its recording: closing their
        // connections rolls their transactions back.
        open.lock().clear();
    }
    let unfinished: Vec<(i64, i64)> = shared.held().drain().collect();
    match shared.give_back(unfinished).await {
        Ok(released) => report.released = released,
        Err(err) => {
            tracing::warn!(error = %err, "could not give events back; other workers take them over after the lease");
        }
    }
    report
}

fn spawn(tasks: &mut JoinSet<()>, shared: &Arc<Shared>, leased: Leased) {
    shared.held().insert(leased.id, leased.token);
    tasks.spawn(process_one(shared.clone(), leased));
}

async fn process_one(shared: Arc<Shared>, leased: Leased) {
    let Leased { id, token, event } = leased;
    match event {
        Ok(event) => {
            let queue_id = id.to_string();
            shared
                .runner
                .process(event, &queue_id, |verdict| shared.apply(id, token, verdict))
                .await;
        }
        Err(err) => {
            tracing::warn!(event = id, error = %err, "unreadable event moved to the dead letters");
            let verdict = Verdict::Dead {
                reason: format!("unreadable event: {err}"),
            };
            if let Err(err) = shared.apply(id, token, verdict).await {
                tracing::warn!(error = %err, "could not dead-letter an unreadable event");
            }
        }
    }
    shared.held().remove(&id);
}

/// Keeps a `LISTEN` connection open, waking the worker on every notification and after
/// every reconnection (notifications sent while it was away are lost).
async fn listen(
    config: tokio_postgres::Config,
    channel: String,
    wake: Arc<Notify>,
    mut stopped: watch::Receiver<bool>,
) {
    let mut delay = Duration::from_millis(100);
    loop {
        if *stopped.borrow() {
            return;
        }
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let notified = wake.clone();
                let mut driver = tokio::spawn(async move {
                    loop {
                        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                            Some(Ok(AsyncMessage::Notification(_))) => notified.notify_one(),
                            Some(Ok(_)) => {}
                            Some(Err(err)) => {
                                tracing::debug!(error = %err, "postgres listening connection failed");
                                return;
                            }
                            None => return,
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN \"{channel}\"")).await {
                    Ok(()) => {
                        delay = Duration::from_millis(100);
                        wake.notify_one();
                        tokio::select! {
                            _ = &mut driver => {}
                            _ = stopped.changed() => {
                                driver.abort();
                                return;
                            }
                        }
                    }
                    Err(err) => {
                        tracing::debug!(error = %err, "could not LISTEN");
                        driver.abort();
                    }
                }
                drop(client);
            }
            Err(err) => {
                tracing::debug!(error = %err, "postgres worker cannot open its listening connection");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stopped.changed() => return,
        }
        delay = delay.saturating_mul(2).min(MAX_RECONNECT_DELAY);
    }
}
