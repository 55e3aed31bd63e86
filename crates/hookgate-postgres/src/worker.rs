//! The PostgreSQL worker: `FOR UPDATE SKIP LOCKED` leases renewed while the handler runs,
//! `LISTEN/NOTIFY` wake-ups, retries with backoff, dead letters, pruning.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use hookgate::BoxFuture;
use hookgate_queue::{
    AttemptRecord, Defaults, Handler, HandlerResult, LeaseResult, Leased, Queue, QueuedEvent,
    Worker, WorkerBuilder, WorkerHandle,
};
pub use hookgate_queue::{DEFAULT_CONCURRENCY, DEFAULT_LEASE, DEFAULT_SHUTDOWN_GRACE};
use tokio::sync::{Notify, watch};
use tokio_postgres::{AsyncMessage, Client, NoTls};

use crate::pool::Conn;
use crate::results::{self, Results};
use crate::store::{millis, queued_event};
use crate::{Error, PgStore, schema};

/// Default longest sleep of an idle worker: 5 seconds. New events and replays wake it at
/// once (`LISTEN/NOTIFY`) and a retry wakes it when due; this paces taking over expired
/// leases and covers a lost notification connection.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(5);
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
/// any number of processes sharing the database: the one worker loop of `hookgate-queue`
/// ([`hookgate_queue::Worker`]) on a [`PgQueue`].
///
/// - **Leases.** A worker takes due events with one `UPDATE … FROM (SELECT … FOR UPDATE
///   SKIP LOCKED)`: workers never wait for each other and never take the same event. A
///   leased event is `processing` until its lease ends; the worker renews the lease every
///   third of [`lease`](hookgate_queue::WorkerBuilder::lease) while the handler runs. A
///   worker that dies stops renewing, and after the lease any worker takes the event over
///   and runs it again. Leases count as attempts, so an event that kills its worker every
///   time ends as a dead letter.
/// - **Results** are recorded only under the lease that ran the handler (a lease token
///   per batch): a worker whose lease was taken over changes nothing (counted as a lost
///   lease).
/// - **Wake-ups.** Each stored event notifies `<schema>_events`; idle workers `LISTEN` on a
///   connection of their own and wake at once, and otherwise sleep until the next retry
///   is due or the [`poll_interval`](hookgate_queue::WorkerBuilder::poll_interval) passes
///   (default [`DEFAULT_POLL_INTERVAL`] here). The listening connection is made again by
///   itself when it breaks.
/// - **Retries** follow the [`RetryPolicy`](crate::RetryPolicy) (exponential backoff with
///   full jitter); after the last attempt, or on [`HandlerResult::Fail`], the event is
///   `dead` until replayed ([`PgStore::replay_dead_letters`], [`PgStore::replay`]).
/// - **Pruning.** Every [`prune_interval`](PgQueue::prune_interval) the worker calls
///   [`PgStore::prune`].
/// - **Shutdown** ([`WorkerHandle::shutdown`](hookgate_queue::WorkerHandle::shutdown))
///   stops leasing, waits for running handlers up to a grace period, and gives the
///   unfinished events back at once (their attempt not counted).
///
/// With [`transactional`](PgWorker::transactional), the handler runs inside the
/// transaction that marks the event processed ([`TxHandler`]).
#[derive(Debug)]
pub struct PgWorker {
    _private: (),
}

/// Settings of a [`PgWorker`]: the one worker builder of `hookgate-queue`.
pub type PgWorkerBuilder = WorkerBuilder<PgQueue>;
/// A running [`PgWorker`]. Dropping it stops the worker the same way as
/// [`shutdown`](hookgate_queue::WorkerHandle::shutdown), without waiting for it.
pub type PgWorkerHandle = WorkerHandle<PgQueue>;

impl PgWorker {
    /// Starts configuring a worker that runs `handler` on the events of a store: pass the
    /// [`&PgStore`](PgStore), or a [`PgQueue`] with settings of its own.
    pub fn builder(queue: impl Into<PgQueue>, handler: impl Handler) -> PgWorkerBuilder {
        Worker::builder(queue, handler)
    }

    /// Starts configuring a worker that runs `handler` inside the transaction that marks
    /// each event processed. Each running handler holds one pooled connection: keep the
    /// store's pool larger than the worker's concurrency plus what the gate needs.
    pub fn transactional(queue: impl Into<PgQueue>, handler: impl TxHandler) -> PgWorkerBuilder {
        let mut queue = queue.into();
        let open = Arc::new(OpenTransactions::default());
        queue.transactions = Some(open.clone());
        let adapter = TxAdapter {
            user: Arc::new(handler),
            store: queue.store.clone(),
            open,
        };
        Worker::builder(queue, adapter)
    }
}

/// The PostgreSQL store as the queue of a [`PgWorker`]: `FOR UPDATE SKIP LOCKED` leases
/// with a token, `LISTEN/NOTIFY` wake-ups, and the worker's share of pruning.
///
/// One per worker (it holds the worker's listening connection). Made from a
/// [`&PgStore`](PgStore) by [`PgWorker::builder`] (through `From`), or with
/// [`new`](Self::new) to change its settings.
pub struct PgQueue {
    store: PgStore,
    prune_interval: Option<Duration>,
    transactions: Option<Arc<OpenTransactions>>,
    wake: Arc<Notify>,
    listener: Mutex<Option<Listener>>,
    last_prune: Mutex<Option<Instant>>,
    pruning: Arc<AtomicBool>,
    /// The destinations the last lease skipped: an idle worker's wait leaves them out of
    /// the next due time too.
    held: Mutex<Vec<String>>,
    /// The results waiting to be written together.
    results: Arc<Results>,
}

/// The listening task and the switch that stops it.
struct Listener {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl PgQueue {
    /// The queue of `store`'s events, pruned every [`DEFAULT_PRUNE_INTERVAL`].
    pub fn new(store: &PgStore) -> Self {
        PgQueue {
            store: store.clone(),
            prune_interval: Some(DEFAULT_PRUNE_INTERVAL),
            transactions: None,
            wake: Arc::new(Notify::new()),
            listener: Mutex::new(None),
            last_prune: Mutex::new(None),
            pruning: Arc::new(AtomicBool::new(false)),
            held: Mutex::new(Vec::new()),
            results: Arc::default(),
        }
    }

    /// How often the worker prunes (default [`DEFAULT_PRUNE_INTERVAL`], at least 1 ms);
    /// `None` leaves pruning to you ([`PgStore::prune`]).
    #[must_use]
    pub fn prune_interval(mut self, interval: Option<Duration>) -> Self {
        self.prune_interval = interval.map(|i| i.max(Duration::from_millis(1)));
        self
    }

    /// The store.
    pub fn store(&self) -> &PgStore {
        &self.store
    }

    fn open_transactions(&self) -> Option<MutexGuard<'_, HashMap<i64, Conn>>> {
        self.transactions.as_ref().map(|open| open.lock())
    }

    /// Starts a prune in the background when one is due and none is running.
    fn prune_if_due(&self) {
        let Some(interval) = self.prune_interval else {
            return;
        };
        {
            let mut last = self
                .last_prune
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|at| at.elapsed() < interval) {
                return;
            }
            *last = Some(Instant::now());
        }
        if self.pruning.swap(true, Ordering::SeqCst) {
            return;
        }
        let (store, pruning) = (self.store.clone(), self.pruning.clone());
        tokio::spawn(async move {
            match store.prune().await {
                Ok(report) => tracing::debug!(?report, "pruned the event log"),
                Err(err) => tracing::warn!(error = %err, "could not prune the event log"),
            }
            pruning.store(false, Ordering::SeqCst);
        });
    }

    /// Records a result under the lease `token`: `Ok(false)` if the lease was taken over.
    /// For a transactional handler's success, in its transaction, then committed.
    async fn finish(
        &self,
        (id, token): (i64, i64),
        status: &'static str,
        delay: i64,
        error: Option<String>,
    ) -> Result<bool, Error> {
        let open = self
            .open_transactions()
            .and_then(|mut open| open.remove(&id));
        if let Some(mut conn) = open {
            if status == "processed" {
                let outcome = crate::deliveries::outcome(status);
                let (ids, tokens, statuses): (&[i64], &[i64], &[&str]) =
                    (&[id], &[token], &[status]);
                let (delays, errors, outcomes): (&[i64], &[Option<String>], &[&str]) =
                    (&[delay], &[error], &[outcome]);
                let applied = conn
                    .query(
                        &self.store.inner.sql.finish_in_transaction,
                        &[&ids, &tokens, &statuses, &delays, &errors, &outcomes],
                    )
                    .await?;
                if applied.is_empty() {
                    // Someone else holds the lease now: the handler's writes go too.
                    conn.rollback().await?;
                    return Ok(false);
                }
                conn.commit().await?;
                return Ok(true);
            }
            conn.rollback().await?;
        }
        let outcome = results::Outcome {
            id,
            token,
            status,
            delay_ms: delay,
            error,
        };
        self.results.record(&self.store, outcome).await
    }

    /// How long until the next event is due (`None`: nothing is scheduled).
    async fn next_due(&self) -> Result<Option<Duration>, Error> {
        if self.store.has_destinations() {
            let held = self
                .held
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            return self.store.next_delivery_due(&held).await;
        }
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

impl From<&PgStore> for PgQueue {
    fn from(store: &PgStore) -> Self {
        PgQueue::new(store)
    }
}

impl From<PgStore> for PgQueue {
    fn from(store: PgStore) -> Self {
        PgQueue::new(&store)
    }
}

impl fmt::Debug for PgQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgQueue")
            .field("store", &self.store)
            .field("prune_interval", &self.prune_interval)
            .field("transactional", &self.transactions.is_some())
            .finish_non_exhaustive()
    }
}

impl Queue for PgQueue {
    type Event = QueuedEvent;
    type Ticket = (i64, i64);
    type Error = Error;

    fn defaults(&self) -> Defaults {
        let mut defaults = Defaults::new();
        defaults.poll_interval = DEFAULT_POLL_INTERVAL;
        defaults
    }

    fn on_start(&self) -> BoxFuture<'_, ()> {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(listen(
            self.store.inner.pool.config().clone(),
            schema::channel(self.store.schema()),
            self.wake.clone(),
            stopped,
        ));
        *self.listener.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Listener { stop, task });
        Box::pin(async {})
    }

    fn lease(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> BoxFuture<'_, LeaseResult<Self>> {
        if self.store.has_destinations() {
            return self.lease_except(max, lease, wait, Vec::new());
        }
        self.prune_if_due();
        Box::pin(async move {
            let token = fastrand::i64(..);
            let limit = i64::try_from(max).unwrap_or(i64::MAX);
            let rows = self
                .store
                .conn()
                .await?
                .query(
                    &self.store.inner.sql.lease,
                    &[&token, &millis(lease), &limit],
                )
                .await?;
            rows.iter()
                .map(|row| {
                    let id: i64 = row.try_get(0)?;
                    let attempt: i32 = row.try_get(10)?;
                    let attempt = u32::try_from(attempt).unwrap_or(0);
                    Ok(match queued_event(row) {
                        Ok(event) => Leased::new((id, token), id.to_string(), attempt, event),
                        Err(err) => Leased::unreadable((id, token), id.to_string(), attempt, err),
                    })
                })
                .collect()
        })
    }

    /// A store with destinations leases deliveries: the head of each lane only, none of
    /// the `held` destinations (see `deliveries.rs`). Transactional handlers do not run
    /// with destinations (each delivery would need a transaction of its own).
    fn lease_except(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
        held: Vec<String>,
    ) -> BoxFuture<'_, LeaseResult<Self>> {
        if !self.store.has_destinations() {
            return self.lease(max, lease, wait);
        }
        self.prune_if_due();
        Box::pin(async move {
            if self.transactions.is_some() {
                return Err(Error::Config(
                    "transactional handlers do not run on a store with destinations".to_owned(),
                ));
            }
            let leased = self.store.lease_deliveries(max, lease, &held).await;
            *self.held.lock().unwrap_or_else(PoisonError::into_inner) = held;
            leased
        })
    }

    fn paused(&self) -> BoxFuture<'_, Result<Vec<String>, Error>> {
        Box::pin(self.store.paused_destinations())
    }

    fn wait(&self, timeout: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut sleep_for = timeout;
            match self.next_due().await {
                Ok(Some(due)) => {
                    sleep_for = sleep_for.min(due.saturating_add(Duration::from_millis(5)));
                }
                Ok(None) => {}
                Err(err) => tracing::debug!(error = %err, "could not read the next due time"),
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(sleep_for) => {}
            }
        })
    }

    fn renew(&self, tickets: Vec<(i64, i64)>, lease: Duration) -> BoxFuture<'_, Result<(), Error>> {
        if self.store.has_destinations() {
            return Box::pin(self.store.renew_deliveries(tickets, lease));
        }
        Box::pin(async move {
            let (ids, tokens): (Vec<i64>, Vec<i64>) = tickets.into_iter().unzip();
            self.store
                .conn()
                .await?
                .execute(
                    &self.store.inner.sql.renew,
                    &[&ids, &tokens, &millis(lease)],
                )
                .await?;
            Ok(())
        })
    }

    fn complete(
        &self,
        ticket: (i64, i64),
        _attempt: AttemptRecord,
    ) -> BoxFuture<'_, Result<bool, Error>> {
        Box::pin(self.finish(ticket, "processed", 0, None))
    }

    fn retry(
        &self,
        ticket: (i64, i64),
        _attempt: AttemptRecord,
        at: SystemTime,
        error: String,
    ) -> BoxFuture<'_, Result<bool, Error>> {
        let delay = at.duration_since(self.now()).unwrap_or(Duration::ZERO);
        Box::pin(self.finish(ticket, "failed", millis(delay), Some(error)))
    }

    fn dead(
        &self,
        ticket: (i64, i64),
        _attempt: AttemptRecord,
        reason: String,
    ) -> BoxFuture<'_, Result<bool, Error>> {
        Box::pin(self.finish(ticket, "dead", 0, Some(reason)))
    }

    fn release(&self, tickets: Vec<(i64, i64)>) -> BoxFuture<'_, Result<u64, Error>> {
        if self.store.has_destinations() {
            return Box::pin(self.store.give_back_deliveries(tickets));
        }
        Box::pin(async move {
            if let Some(mut open) = self.open_transactions() {
                // Handlers cut short between their success and its recording: closing their
                // connections rolls their transactions back.
                for (id, _) in &tickets {
                    open.remove(id);
                }
            }
            let (ids, tokens): (Vec<i64>, Vec<i64>) = tickets.into_iter().unzip();
            let mut conn = self.store.conn().await?;
            let released = conn
                .execute(&self.store.inner.sql.give_back, &[&ids, &tokens])
                .await?;
            conn.query(&self.store.inner.sql.notify, &[]).await?;
            Ok(released)
        })
    }

    fn on_shutdown(&self) -> BoxFuture<'_, ()> {
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        Box::pin(async move {
            if let Some(Listener { stop, task }) = listener {
                let _ = stop.send(true);
                let _ = task.await;
            }
        })
    }
}

impl Drop for PgQueue {
    fn drop(&mut self) {
        if let Some(listener) = self
            .listener
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = listener.stop.send(true);
        }
    }
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

/// Runs the user's [`TxHandler`] as a [`Handler`]: opens the transaction, and keeps it
/// open after a success so that the queue records the result in it.
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
                // The connection is driven here, in this task: stopping the task closes it.
                let driver = async move {
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
                };
                tokio::pin!(driver);
                let statement = format!("LISTEN \"{channel}\"");
                let listening = client.batch_execute(&statement);
                let listened = tokio::select! {
                    result = listening => Some(result),
                    () = &mut driver => None,
                    _ = stopped.changed() => return,
                };
                match listened {
                    Some(Ok(())) => {
                        delay = Duration::from_millis(100);
                        wake.notify_one();
                        tokio::select! {
                            () = &mut driver => {}
                            _ = stopped.changed() => return,
                        }
                    }
                    Some(Err(err)) => tracing::debug!(error = %err, "could not LISTEN"),
                    None => {}
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
