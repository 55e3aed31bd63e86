//! The store: connection pool, schema, and the gate's sink and dedup store.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use hookgate::dedup::{
    Claim, ClaimToken, DEFAULT_CLAIM_TTL, DEFAULT_COMMITTED_TTL, DedupError, DedupStore, KeyState,
    MAX_TTL, MemoryDedupStore,
};
use hookgate::{BoxFuture, Gate, GateBuilder, Handoff, Sink, SinkError, VerifiedEvent, Verifier};
use hookgate_queue::{ENVELOPE_VERSION, Envelope, QueuedEvent, Router};
use tokio_postgres::Row;

use crate::batch::{Batcher, DEFAULT_BATCH_WRITERS, DEFAULT_MAX_BATCH, EnqueueStats};
use crate::deliveries::DeliverySql;
use crate::pool::{Conn, Pool};
use crate::schema::{self, Sql};
use crate::url::{DEFAULT_CONNECT_TIMEOUT, PgUrl};
use crate::{Error, EventId};

/// Default schema the tables live in: `hookgate`.
pub const DEFAULT_SCHEMA: &str = "hookgate";
/// Default most connections one [`PgStore`] opens: 16.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// Default longest wait for the answer to one statement: 30 seconds.
pub const DEFAULT_QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default retention of processed events before [`PgStore::prune`] deletes them: 7 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The query parameters of a store URL that are hookgate's settings ([`PgStore::connect`]);
/// the others go to `tokio-postgres`. A tool that also connects with `tokio-postgres`
/// directly leaves these out of its URL.
pub const URL_SETTINGS: &[&str] = &[
    "schema",
    "pool_size",
    "claim_ttl_ms",
    "committed_ttl_ms",
    "retention_ms",
    "max_batch",
    "batch_writers",
];

/// Shortest time between two notifications one store sends to wake the workers.
const WAKE_INTERVAL: Duration = Duration::from_millis(5);

/// Decides whether a delivery is a test delivery (kept out of the event log by default).
pub type TestFilter = Arc<dyn Fn(&VerifiedEvent) -> bool + Send + Sync>;

/// The hookgate store in a PostgreSQL database, shared by every replica of a fleet.
///
/// One `PgStore` is at once
/// - a **sink** for the gate ([`Sink`]): the event and its dedup row are written by one
///   statement, hence in one transaction (shared with the concurrent enqueues of its
///   batch), and [`enqueue`](PgStore::enqueue) returns only after PostgreSQL answered its
///   `COMMIT` (flushed to its WAL with the default `synchronous_commit = on`);
/// - a **dedup store** ([`DedupStore`]) whose keys are unique across replicas: the primary
///   key on the dedup table makes two replicas storing the same delivery at the same
///   moment wait for each other, and only the first stores it;
/// - the **queue** a [`PgWorker`](crate::PgWorker) leases from (`FOR UPDATE SKIP LOCKED`);
/// - the **event log** ([`query`](PgStore::query), [`entry`](PgStore::entry),
///   [`status_counts`](PgStore::status_counts), [`replay`](PgStore::replay)).
///
/// Use [`gate`](PgStore::gate) to put it behind a gate as both the dedup store and the
/// sink: claims then stay in the replica's memory (they only have to stop concurrent
/// copies while the first is stored) and the batch's statement is the one database round
/// trip per delivery (shared by the deliveries of a batch).
///
/// **Failure.** Every call takes a pooled connection; while PostgreSQL is unreachable
/// (or slower than the connect timeout) the sink and the dedup store fail, and the gate
/// answers 503 with `Retry-After` (`sink_unavailable`, `dedup_unavailable` or
/// `timeout`). Nothing is half-written: the event and its dedup row commit together or
/// not at all. Broken connections are dropped and new ones made on the next call, so the
/// store recovers by itself when the database is back.
///
/// Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct PgStore {
    pub(crate) inner: Arc<StoreInner>,
}

pub(crate) struct StoreInner {
    pub(crate) pool: Pool,
    pub(crate) sql: Sql,
    pub(crate) schema: String,
    pub(crate) claim_ttl: Duration,
    pub(crate) committed_ttl: Duration,
    pub(crate) retention: Duration,
    test_filter: Option<TestFilter>,
    claims: MemoryDedupStore,
    pub(crate) batcher: Batcher,
    /// The endpoint's destinations: each stored event is routed once, in its enqueue's
    /// transaction, into deliveries (see `deliveries.rs`).
    pub(crate) router: Option<Router>,
    pub(crate) delivery_sql: DeliverySql,
    /// A stored event wants the workers woken.
    wake_wanted: AtomicBool,
    /// A task is sending wake-ups.
    waking: AtomicBool,
}

/// What [`PgStore::enqueue`] did.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// The event is stored under this id.
    Stored(EventId),
    /// An earlier copy with the same dedup key is stored (within the dedup horizon);
    /// nothing was written.
    Duplicate,
}

impl PgStore {
    /// Connects with the defaults and creates or migrates the schema, reading optional
    /// settings from the URL's query: `schema` ([`DEFAULT_SCHEMA`]), `pool_size`
    /// ([`DEFAULT_POOL_SIZE`]), `claim_ttl_ms` (30 s), `committed_ttl_ms` (72 h),
    /// `retention_ms` (7 days), `max_batch` ([`DEFAULT_MAX_BATCH`]), `batch_writers`
    /// ([`DEFAULT_BATCH_WRITERS`]). Other query parameters (`connect_timeout`,
    /// `application_name`, …) go to `tokio-postgres`. The same as
    /// `PgStore::builder().connect(url)`.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), hookgate_postgres::Error> {
    /// let store = hookgate_postgres::PgStore::connect(
    ///     "postgres://app@db.internal/shop?schema=webhooks&pool_size=32",
    /// )
    /// .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] for a bad URL or setting, [`Error::Unavailable`] or
    /// [`Error::Database`] if PostgreSQL cannot be reached or refuses the schema,
    /// [`Error::SchemaTooNew`] if a newer hookgate migrated it.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        PgStore::builder().connect(url).await
    }

    /// Starts a store with other settings.
    pub fn builder() -> PgStoreBuilder {
        PgStoreBuilder {
            schema: DEFAULT_SCHEMA.to_owned(),
            pool_size: DEFAULT_POOL_SIZE,
            claim_ttl: DEFAULT_CLAIM_TTL,
            committed_ttl: DEFAULT_COMMITTED_TTL,
            retention: DEFAULT_RETENTION,
            acquire_timeout: DEFAULT_CONNECT_TIMEOUT,
            query_timeout: DEFAULT_QUERY_TIMEOUT,
            max_batch: DEFAULT_MAX_BATCH,
            batch_writers: DEFAULT_BATCH_WRITERS,
            test_filter: None,
            router: None,
        }
    }

    /// The schema the tables live in.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// Whether this store routes events to destinations
    /// ([`PgStoreBuilder::destinations`]), and its queue leases deliveries.
    pub fn has_destinations(&self) -> bool {
        self.inner.router.is_some()
    }

    /// A [`Gate`] builder with this store as both the dedup store and the sink: the usual
    /// set-up, in which a 2xx means the event and its dedup row were committed together.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use hookgate::{SchemeId, Verifier};
    ///
    /// let store = hookgate_postgres::PgStore::connect("postgres://app@db.internal/shop").await?;
    /// let verifier = Verifier::builder(SchemeId::Stripe).secret("whsec_test").build()?;
    /// let gate = store.gate(verifier).build()?;
    /// # let _ = gate;
    /// # Ok(()) }
    /// ```
    pub fn gate(&self, verifier: Verifier) -> GateBuilder {
        Gate::builder(verifier)
            .dedup(OwnSinkDedup(self.clone()))
            .sink(self.clone())
    }

    /// Stores `event` and its dedup row in one transaction, unless an earlier copy with
    /// the same dedup key is stored within the dedup horizon. Returns once PostgreSQL
    /// committed.
    ///
    /// Concurrent enqueues share transactions (group commit): while a batch is being
    /// written the next ones wait in a queue, and the next batch writes them all with one
    /// statement and one `COMMIT` ([`PgStoreBuilder::max_batch`],
    /// [`PgStoreBuilder::batch_writers`]). Each still gets its own exact answer: of two
    /// copies of a delivery in one batch the first is stored and the other is a
    /// duplicate, and no answer comes before the batch's commit. A lone enqueue is
    /// written at once.
    ///
    /// # Errors
    /// [`Error::Unavailable`], [`Error::Database`], or [`Error::Batch`] when the batch it
    /// was written in failed; in every error case nothing of the batch was stored (or, if
    /// the connection broke during the `COMMIT`, the outcome is unknown and a retry is
    /// answered `duplicate` if it was stored).
    pub async fn enqueue(&self, event: &VerifiedEvent) -> Result<Enqueued, Error> {
        self.enqueue_owned(event.clone()).await
    }

    async fn enqueue_owned(&self, event: VerifiedEvent) -> Result<Enqueued, Error> {
        let is_test = self
            .inner
            .test_filter
            .as_ref()
            .is_some_and(|filter| filter(&event));
        let headers: Vec<(&str, &str)> = event
            .headers()
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let headers = serde_json::to_string(&headers)
            .map_err(|err| Error::Corrupt(format!("headers do not serialise: {err}")))?;
        // The derived fields are computed here, in the caller's task, not by the writer.
        let _ = (event.dedup_key(), event.delivery_id(), event.event_type());
        self.enqueue_batched(event, headers, is_test).await
    }

    /// Counters of the batched enqueues ([`enqueue`](PgStore::enqueue)) since the store
    /// connected: with `events / batches` enqueues per transaction on average.
    pub fn enqueue_stats(&self) -> EnqueueStats {
        self.inner.batcher.stats()
    }

    /// Notifies the workers' channel, in the background and outside the event's
    /// transaction (see [`schema`]). One task per store sends the notifications, at most
    /// one per [`WAKE_INTERVAL`], and each commit is followed by one that starts after it:
    /// a burst of deliveries costs a few notifications rather than one each.
    pub(crate) fn wake_workers(&self) {
        let inner = &self.inner;
        inner.wake_wanted.store(true, Ordering::SeqCst);
        if inner.waking.swap(true, Ordering::SeqCst) {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            let inner = &store.inner;
            loop {
                if inner.wake_wanted.swap(false, Ordering::SeqCst) {
                    let sent = async { store.conn().await?.query(&inner.sql.notify, &[]).await };
                    if let Err(err) = sent.await {
                        tracing::debug!(error = %err, "could not wake the workers; they poll");
                    }
                    tokio::time::sleep(WAKE_INTERVAL).await;
                    continue;
                }
                inner.waking.store(false, Ordering::SeqCst);
                // A commit that asked just before the line above found this task still
                // running and left the wake-up to it: take it on, unless a new task did.
                if !inner.wake_wanted.load(Ordering::SeqCst)
                    || inner.waking.swap(true, Ordering::SeqCst)
                {
                    return;
                }
            }
        });
    }

    /// A pooled connection.
    pub(crate) async fn conn(&self) -> Result<Conn, Error> {
        self.inner.pool.get().await
    }

    async fn claim_key(&self, key: &str) -> Result<Claim, Error> {
        let token = fastrand::i64(..);
        let rows = self
            .conn()
            .await?
            .query(
                &self.inner.sql.claim,
                &[&key, &token, &millis(self.inner.claim_ttl)],
            )
            .await?;
        let row = rows
            .first()
            .ok_or_else(|| Error::Corrupt("the claim returned no row".to_owned()))?;
        let claimed: i64 = row.try_get(0)?;
        let committed: Option<bool> = row.try_get(1)?;
        Ok(if claimed > 0 {
            Claim::New(ClaimToken::new(u64::from_ne_bytes(token.to_ne_bytes())))
        } else if committed == Some(true) {
            Claim::Duplicate
        } else {
            // Claimed by someone else, or committed by a transaction this statement's
            // snapshot does not show yet: "retry later" is the safe answer for both.
            Claim::InFlight
        })
    }

    async fn commit_key(&self, key: &str) -> Result<(), Error> {
        self.conn()
            .await?
            .execute(
                &self.inner.sql.commit,
                &[&key, &millis(self.inner.committed_ttl)],
            )
            .await
            .map(drop)
    }

    async fn release_key(&self, key: &str, token: ClaimToken) -> Result<(), Error> {
        let token = i64::from_ne_bytes(token.get().to_ne_bytes());
        self.conn()
            .await?
            .execute(&self.inner.sql.release, &[&key, &token])
            .await
            .map(drop)
    }

    async fn lookup_key(&self, key: &str) -> Result<KeyState, Error> {
        let rows = self
            .conn()
            .await?
            .query(&self.inner.sql.lookup, &[&key])
            .await?;
        Ok(match rows.first().map(|row| row.try_get::<_, bool>(0)) {
            None => KeyState::Absent,
            Some(Ok(true)) => KeyState::Committed,
            Some(Ok(false)) => KeyState::InFlight,
            Some(Err(err)) => return Err(err.into()),
        })
    }
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("schema", &self.inner.schema)
            .field("pool", &self.inner.pool)
            .field("claim_ttl", &self.inner.claim_ttl)
            .field("committed_ttl", &self.inner.committed_ttl)
            .field("retention", &self.inner.retention)
            .finish_non_exhaustive()
    }
}

/// `Ok` only once the event (or an earlier copy with the same dedup key) is committed, so
/// the gate's 2xx always follows a durable copy; [`hand_off`](Sink::hand_off) reports an
/// earlier copy as [`Handoff::AlreadyStored`] and the gate answers `duplicate`. Every
/// error is [`SinkError::unavailable`]: nothing was stored and the gate answers 503.
impl Sink for PgStore {
    fn enqueue(&self, event: VerifiedEvent) -> BoxFuture<'_, Result<(), SinkError>> {
        let handed = self.hand_off(event);
        Box::pin(async move { handed.await.map(drop) })
    }

    fn hand_off(&self, event: VerifiedEvent) -> BoxFuture<'_, Result<Handoff, SinkError>> {
        Box::pin(async move {
            match self.enqueue_owned(event).await {
                Ok(Enqueued::Stored(_)) => Ok(Handoff::Enqueued),
                Ok(Enqueued::Duplicate) => Ok(Handoff::AlreadyStored),
                Err(err) => Err(SinkError::unavailable(err)),
            }
        })
    }

    /// Records the handshake in the `handshakes` table ([`PgStore::record_handshake`]).
    fn record_handshake(
        &self,
        handshake: hookgate::Handshake,
    ) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            PgStore::record_handshake(self, &handshake)
                .await
                .map_err(SinkError::unavailable)
        })
    }
}

/// The store as the dedup store of any sink, shared by every replica: claims, commits
/// and releases are rows of the dedup table (`INSERT … ON CONFLICT`), so of any number of
/// replicas claiming a key at once exactly one gets [`Claim::New`]. Paired with this same
/// store as the sink, prefer [`PgStore::gate`], which keeps claims in memory and saves
/// two round trips per delivery.
impl DedupStore for PgStore {
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Claim, DedupError>> {
        Box::pin(async move { self.claim_key(key).await.map_err(DedupError::new) })
    }

    fn commit<'a>(
        &'a self,
        key: &'a str,
        _token: ClaimToken,
    ) -> BoxFuture<'a, Result<(), DedupError>> {
        Box::pin(async move { self.commit_key(key).await.map_err(DedupError::new) })
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        token: ClaimToken,
    ) -> BoxFuture<'a, Result<(), DedupError>> {
        Box::pin(async move { self.release_key(key, token).await.map_err(DedupError::new) })
    }

    fn lookup<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyState, DedupError>> {
        Box::pin(async move { self.lookup_key(key).await.map_err(DedupError::new) })
    }
}

/// The dedup store of [`PgStore::gate`], whose sink is the same store: a claim lives in
/// this replica's memory only, to stop concurrent copies while the first is being stored;
/// the enqueue statement checks the database (and waits for another replica storing the
/// same key), and "commit" just drops the claim.
#[derive(Debug, Clone)]
struct OwnSinkDedup(PgStore);

impl DedupStore for OwnSinkDedup {
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Claim, DedupError>> {
        self.0.inner.claims.claim(key)
    }

    fn commit<'a>(
        &'a self,
        key: &'a str,
        token: ClaimToken,
    ) -> BoxFuture<'a, Result<(), DedupError>> {
        // The enqueue wrote the committed row; the claim only has to go.
        self.0.inner.claims.release(key, token)
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        token: ClaimToken,
    ) -> BoxFuture<'a, Result<(), DedupError>> {
        self.0.inner.claims.release(key, token)
    }

    fn lookup<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyState, DedupError>> {
        Box::pin(async move {
            match self.0.lookup_key(key).await.map_err(DedupError::new)? {
                KeyState::Absent => self.0.inner.claims.lookup(key).await,
                state => Ok(state),
            }
        })
    }
}

/// Settings of a [`PgStore`], checked when it connects.
#[must_use]
pub struct PgStoreBuilder {
    schema: String,
    pool_size: usize,
    claim_ttl: Duration,
    committed_ttl: Duration,
    retention: Duration,
    acquire_timeout: Duration,
    query_timeout: Duration,
    max_batch: usize,
    batch_writers: usize,
    test_filter: Option<TestFilter>,
    router: Option<Router>,
}

impl fmt::Debug for PgStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStoreBuilder")
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("claim_ttl", &self.claim_ttl)
            .field("committed_ttl", &self.committed_ttl)
            .field("retention", &self.retention)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("query_timeout", &self.query_timeout)
            .field("max_batch", &self.max_batch)
            .field("batch_writers", &self.batch_writers)
            .field("test_filter", &self.test_filter.is_some())
            .field("destinations", &self.router.is_some())
            .finish_non_exhaustive()
    }
}

impl PgStoreBuilder {
    /// The schema the tables live in (default [`DEFAULT_SCHEMA`]): lower-case letters,
    /// digits and `_`. Created if missing, so the store can live in the application's own
    /// database next to its tables.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Most connections open at once (default [`DEFAULT_POOL_SIZE`], 1 to 1000). Concurrent
    /// deliveries on different connections share PostgreSQL's WAL flushes (group commit),
    /// so throughput grows with it up to the server's limits. A worker running
    /// transactional handlers holds one connection per running handler.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// How long an uncommitted claim lives (default 30 s). Keep it longer than the gate's
    /// deadline.
    pub fn claim_ttl(mut self, ttl: Duration) -> Self {
        self.claim_ttl = ttl;
        self
    }

    /// How long a stored delivery's dedup row lives (default 72 h): your senders' retry
    /// horizon.
    pub fn committed_ttl(mut self, ttl: Duration) -> Self {
        self.committed_ttl = ttl;
        self
    }

    /// How long processed events stay in the event log before [`PgStore::prune`] deletes
    /// them (default [`DEFAULT_RETENTION`]). Dead letters stay until replayed.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// How long a call waits for a connection (a free pool slot, or a new connection)
    /// before failing (default 5 s). Keep it under the gate's deadline to answer 503
    /// `sink_unavailable` rather than `timeout` when the database is down.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// How long a statement waits for PostgreSQL's answer before the call fails and its
    /// connection is closed (default [`DEFAULT_QUERY_TIMEOUT`]): a server that stopped
    /// answering without closing the connection (a network partition) then costs a failed
    /// call, never a worker stuck for good.
    pub fn query_timeout(mut self, timeout: Duration) -> Self {
        self.query_timeout = timeout;
        self
    }

    /// Most enqueues written in one transaction (default [`DEFAULT_MAX_BATCH`], 1 to
    /// 10 000; 1 writes each on its own). See [`PgStore::enqueue`].
    pub fn max_batch(mut self, size: usize) -> Self {
        self.max_batch = size;
        self
    }

    /// Most batches of enqueues written at once, each on a connection of the pool
    /// (default [`DEFAULT_BATCH_WRITERS`], 1 to 1000, and never more than the pool size).
    /// More writers mean smaller
    /// batches and more commits; one writer means every enqueue waits for the batch
    /// before it.
    pub fn batch_writers(mut self, writers: usize) -> Self {
        self.batch_writers = writers;
        self
    }

    /// Routes each stored event to `router`'s destinations (issue 21): the enqueue writes
    /// one delivery per matching destination in the event's own transaction (no delivery:
    /// the event is `filtered`), and a [`PgWorker`](crate::PgWorker) on this store leases
    /// deliveries (each with its own attempts, retries and dead letter, ordered lanes
    /// kept by the store) instead of events. Run the worker with
    /// [`WorkerBuilder::destinations`](hookgate_queue::WorkerBuilder::destinations) of the
    /// same destinations. Routing happens once: a later change of the destinations does
    /// not re-route stored events.
    pub fn destinations(mut self, router: Router) -> Self {
        self.router = Some(router);
        self
    }

    /// Marks matching deliveries as test deliveries, left out of the event log by default.
    pub fn test_filter<F>(mut self, filter: F) -> Self
    where
        F: Fn(&VerifiedEvent) -> bool + Send + Sync + 'static,
    {
        self.test_filter = Some(Arc::new(filter));
        self
    }

    /// Connects to `url` and creates or migrates the schema. hookgate's settings in the
    /// URL's query (the ones [`PgStore::connect`] reads) take precedence over the
    /// builder's; the other query parameters go to `tokio-postgres`.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), hookgate_postgres::Error> {
    /// use std::time::Duration;
    ///
    /// // A pool of 32 from the URL, a shorter retention from the code.
    /// let store = hookgate_postgres::PgStore::builder()
    ///     .retention(Duration::from_secs(24 * 3600))
    ///     .connect("postgres://app@db.internal/shop?pool_size=32")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`PgStore::connect`].
    pub async fn connect(mut self, url: &str) -> Result<PgStore, Error> {
        let url = PgUrl::parse(url, URL_SETTINGS)?;
        if let Some(schema) = url.param("schema") {
            self.schema = schema.to_owned();
        }
        if let Some(size) = url.number("pool_size")? {
            self.pool_size = usize::try_from(size).unwrap_or(usize::MAX);
        }
        if let Some(ttl) = url.millis("claim_ttl_ms")? {
            self.claim_ttl = ttl;
        }
        if let Some(ttl) = url.millis("committed_ttl_ms")? {
            self.committed_ttl = ttl;
        }
        if let Some(retention) = url.millis("retention_ms")? {
            self.retention = retention;
        }
        if let Some(size) = url.number("max_batch")? {
            self.max_batch = usize::try_from(size).unwrap_or(usize::MAX);
        }
        if let Some(writers) = url.number("batch_writers")? {
            self.batch_writers = usize::try_from(writers).unwrap_or(usize::MAX);
        }
        self.connect_config(url.config).await
    }

    async fn connect_config(self, config: tokio_postgres::Config) -> Result<PgStore, Error> {
        schema::check_schema_name(&self.schema)?;
        if !(1..=1000).contains(&self.pool_size) {
            return Err(Error::Config(format!(
                "pool_size must be between 1 and 1000, got {}",
                self.pool_size
            )));
        }
        if !(1..=10_000).contains(&self.max_batch) {
            return Err(Error::Config(format!(
                "max_batch must be between 1 and 10000, got {}",
                self.max_batch
            )));
        }
        if !(1..=1000).contains(&self.batch_writers) {
            return Err(Error::Config(format!(
                "batch_writers must be between 1 and 1000, got {}",
                self.batch_writers
            )));
        }
        if self.acquire_timeout.is_zero() || self.query_timeout.is_zero() {
            return Err(Error::Config(
                "the acquire and query timeouts must not be zero".to_owned(),
            ));
        }
        for (which, ttl) in [
            ("claim TTL", self.claim_ttl),
            ("committed TTL", self.committed_ttl),
            ("retention", self.retention),
        ] {
            if ttl < Duration::from_millis(1) || ttl > MAX_TTL {
                return Err(Error::Config(format!(
                    "the {which} must be between 1 ms and 365 days"
                )));
            }
        }
        if self.claim_ttl > self.committed_ttl {
            return Err(Error::Config(
                "the claim TTL must not exceed the committed TTL".to_owned(),
            ));
        }
        let claims = MemoryDedupStore::builder()
            .claim_ttl(self.claim_ttl)
            .committed_ttl(self.committed_ttl)
            .build()
            .map_err(|err| Error::Config(err.to_string()))?;
        let pool = Pool::new(
            config,
            self.pool_size,
            self.acquire_timeout,
            self.query_timeout,
        );
        schema::migrate(&mut pool.get().await?, &self.schema).await?;
        Ok(PgStore {
            inner: Arc::new(StoreInner {
                pool,
                sql: Sql::new(&self.schema),
                delivery_sql: DeliverySql::new(&self.schema),
                router: self.router,
                schema: self.schema,
                claim_ttl: self.claim_ttl,
                committed_ttl: self.committed_ttl,
                retention: self.retention,
                test_filter: self.test_filter,
                claims,
                batcher: Batcher::new(self.max_batch, self.batch_writers.min(self.pool_size)),
                wake_wanted: AtomicBool::new(false),
                waking: AtomicBool::new(false),
            }),
        })
    }
}

/// A duration in whole milliseconds, for SQL.
pub(crate) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Reads a row of [`schema::EVENT_COLUMNS`] into the event a handler receives.
pub(crate) fn queued_event(row: &Row) -> Result<QueuedEvent, Error> {
    let id: i64 = row.try_get(0)?;
    let headers: String = row.try_get(8)?;
    let headers: serde_json::Value = serde_json::from_str(&headers)
        .map_err(|err| Error::Corrupt(format!("event {id}: headers: {err}")))?;
    let signed_at: Option<SystemTime> = row.try_get(5)?;
    let received_at: SystemTime = row.try_get(6)?;
    let fields = serde_json::json!({
        "version": ENVELOPE_VERSION,
        "dedup_key": row.try_get::<_, String>(1)?,
        "scheme": row.try_get::<_, String>(2)?,
        "delivery_id": row.try_get::<_, Option<String>>(3)?,
        "event_type": row.try_get::<_, Option<String>>(4)?,
        "timestamp_ms": signed_at.map(unix_millis),
        "received_at_ms": unix_millis(received_at),
        "key_id": row.try_get::<_, String>(7)?,
        "headers": headers,
        "body_b64": "",
    });
    let mut envelope: Envelope = serde_json::from_value(fields)
        .map_err(|err| Error::Corrupt(format!("event {id}: {err}")))?;
    envelope.body = row.try_get::<_, Vec<u8>>(9)?.into();
    let attempt: i32 = row.try_get(10)?;
    Ok(QueuedEvent::new(
        envelope,
        id.to_string(),
        u32::try_from(attempt).unwrap_or(0),
    ))
}

/// Milliseconds since the Unix epoch; instants before it are negative.
pub(crate) fn unix_millis(at: SystemTime) -> i64 {
    match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis())
            .map(i64::saturating_neg)
            .unwrap_or(i64::MIN),
    }
}
