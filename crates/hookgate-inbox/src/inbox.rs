//! The inbox handle: opening the database, enqueueing, claims, pruning and statistics.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use hookgate::{Clock, SystemClock, VerifiedEvent};
use rusqlite::{Connection, params};
use tokio::sync::{mpsc, watch};

use crate::event::{EventId, NewEvent};
use crate::journal::{AppendJob, JournalShared, ToApplier};
use crate::keys::{KeyState, Keys};
use crate::segment::LogRecord;
use crate::time::{add, sub, to_millis};
use crate::writer::{Call, Durability, Work, WriterShared};
use crate::{InboxError, applier, checkpoint, journal, schema, writer};

/// Default lifetime of an uncommitted claim: 30 seconds (as the core's in-memory store).
pub const DEFAULT_CLAIM_TTL: Duration = Duration::from_secs(30);
/// Default lifetime of a dedup entry: 72 hours, the longest common sender retry horizon.
pub const DEFAULT_COMMITTED_TTL: Duration = Duration::from_secs(72 * 60 * 60);
/// Default time a processed event is kept in the event log: 7 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 60 * 60);
/// Default interval of the scheduled pruning: 10 minutes.
pub const DEFAULT_PRUNE_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// Default most jobs in one group commit: 1024.
pub const DEFAULT_MAX_BATCH: usize = 1024;
/// Default most writes waiting for the writer thread: 16 384.
pub const DEFAULT_QUEUE_CAPACITY: usize = 16_384;
/// Default size of a segment of the inbox's log: 32 MiB.
pub const DEFAULT_SEGMENT_SIZE: u64 = 32 * 1024 * 1024;

/// Smallest and largest segment sizes accepted.
const SEGMENT_SIZES: std::ops::RangeInclusive<u64> = 64 * 1024..=1024 * 1024 * 1024;
/// Events accepted but not yet applied to SQLite, per unit of queue capacity: past
/// `queue_capacity × this`, enqueues fail with [`InboxError::Full`].
const UNAPPLIED_PER_QUEUE_SLOT: usize = 4;
/// The longest a query waits for the events acknowledged before it to be applied.
const READ_BARRIER_LIMIT: Duration = Duration::from_secs(5);

/// The longest lifetime or retention accepted: 10 years.
const MAX_DURATION: Duration = Duration::from_secs(10 * 366 * 24 * 60 * 60);
/// Most rows one prune job deletes per table, so one prune never holds the writer long.
const PRUNE_CHUNK: i64 = 5_000;
/// Idle reader connections kept open.
const MAX_IDLE_READERS: usize = 8;

/// Decides whether a verified delivery is a test delivery (excluded from the event log
/// by default).
pub type TestFilter = Arc<dyn Fn(&VerifiedEvent) -> bool + Send + Sync>;

/// The durable inbox: a SQLite database that is at once a hookgate sink, a dedup store,
/// the queue a [`Worker`](crate::Worker) drains, and an event log.
///
/// Cheap to clone; clones share the writer thread and the connections. The writer thread
/// stops once every clone is dropped, after finishing the writes already queued.
#[derive(Clone)]
pub struct Inbox {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    path: PathBuf,
    tx: mpsc::Sender<Box<dyn Work>>,
    pub(crate) writer: Arc<WriterShared>,
    readers: Mutex<Vec<Connection>>,
    pub(crate) clock: Arc<dyn Clock>,
    claims: Mutex<Claims>,
    pub(crate) config: Config,
    test_filter: Option<TestFilter>,
    /// The endpoint's destinations, when it has them: each event is routed on receive.
    router: Option<Arc<hookgate_queue::Router>>,
    stored: AtomicU64,
    duplicates: AtomicU64,
    /// Dropped with the inbox, which stops the pruning thread.
    _stop_pruner: Option<std::sync::mpsc::Sender<()>>,
    /// Dropped with the inbox, which stops the checkpoint thread.
    _stop_checkpointer: std::sync::mpsc::Sender<()>,
    /// The segment log, when this inbox holds it (see [`InboxError::NotTheWriter`]).
    journal: Option<Journal>,
    /// Every live dedup key, when this inbox holds the log.
    keys: Arc<Keys>,
}

/// The running segment log of an inbox.
struct Journal {
    /// Taken (dropped) when the inbox closes, which stops the log's threads in turn.
    tx: Option<mpsc::Sender<AppendJob>>,
    /// Wakes the applier for a reader (taken when the inbox closes, with `tx`).
    to_applier: Option<std::sync::mpsc::Sender<ToApplier>>,
    shared: Arc<JournalShared>,
    unapplied_limit: usize,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for Inner {
    /// Stops the log: its writer finishes the appends queued, the applier applies every
    /// durable record, and then the log's lock is released (so the inbox can be opened
    /// again at once). Not waited for on the inbox's own threads (which must not wait for
    /// themselves).
    fn drop(&mut self) {
        let Some(mut journal) = self.journal.take() else {
            return;
        };
        drop(journal.tx.take());
        drop(journal.to_applier.take());
        let own_thread = std::thread::current()
            .name()
            .is_some_and(|name| name.starts_with("hookgate-inbox"));
        if !own_thread {
            for handle in journal.threads.drain(..) {
                let _ = handle.join();
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    pub(crate) claim_ttl: Duration,
    pub(crate) committed_ttl: Duration,
    pub(crate) retention: Duration,
    pub(crate) dead_retention: Option<Duration>,
}

/// Whether [`Inbox::enqueue`] stored the event.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored (and durable) under this id.
    Stored(EventId),
    /// A copy with the same dedup key is already stored (and durable); nothing was written.
    /// The id is that copy's, unless it was pruned.
    Duplicate(Option<EventId>),
}

/// Counters since the inbox was opened, for benchmarks and metrics.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboxStats {
    /// Transactions committed by the writer (each one fsync of the WAL).
    pub commits: u64,
    /// Jobs in those transactions (enqueues, leases, completions, prunes, …).
    pub jobs: u64,
    /// The most jobs one transaction held.
    pub largest_batch: u64,
    /// Transactions that failed to commit (every caller in them got an error).
    pub failed_commits: u64,
    /// Events stored by [`Inbox::enqueue`].
    pub events_stored: u64,
    /// Enqueues answered [`Enqueued::Duplicate`].
    pub duplicates: u64,
    /// Syncs (`fdatasync`) of the segment log, each answering a batch of enqueues.
    pub log_syncs: u64,
    /// Events appended to the segment log (and synced).
    pub log_records: u64,
    /// The most events one log sync answered.
    pub log_largest_batch: u64,
    /// Events in the log not yet applied to the database (invisible to workers and
    /// queries until they are).
    pub unapplied: u64,
    /// Dedup keys held in memory (live, or expired and not swept yet).
    pub dedup_keys_in_memory: u64,
}

impl InboxStats {
    /// Jobs per commit on average: how many callers shared each fsync of the database.
    pub fn average_batch(&self) -> f64 {
        ratio(self.jobs, self.commits)
    }

    /// Events per log sync on average: how many enqueues shared each `fdatasync`.
    pub fn average_log_batch(&self) -> f64 {
        ratio(self.log_records, self.log_syncs)
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        // Precision loss above 2^53 is irrelevant for an average.
        #[allow(clippy::cast_precision_loss)]
        let ratio = part as f64 / whole as f64;
        ratio
    }
}

/// What one [`Inbox::prune`] removed.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Expired dedup entries: the keys swept from memory by the inbox that holds the log
    /// (every live key is there), the `dedup` rows deleted by any other.
    pub dedup_entries: u64,
    /// Processed events older than the retention (with their attempt history).
    pub processed_events: u64,
    /// Dead letters older than the dead-letter retention, if one is set.
    pub dead_events: u64,
}

impl PruneReport {
    fn add(&mut self, other: PruneReport) {
        self.dedup_entries = self.dedup_entries.saturating_add(other.dedup_entries);
        self.processed_events = self.processed_events.saturating_add(other.processed_events);
        self.dead_events = self.dead_events.saturating_add(other.dead_events);
    }

    fn is_partial(&self) -> bool {
        let chunk = u64::try_from(PRUNE_CHUNK).unwrap_or(u64::MAX);
        self.dedup_entries >= chunk || self.processed_events >= chunk || self.dead_events >= chunk
    }
}

/// Settings of an [`Inbox`]; every value is checked by [`open`](Self::open).
#[must_use]
pub struct InboxBuilder {
    path: PathBuf,
    config: Config,
    prune_interval: Option<Duration>,
    max_batch: usize,
    queue_capacity: usize,
    segment_size: u64,
    clock: Arc<dyn Clock>,
    test_filter: Option<TestFilter>,
    router: Option<Arc<hookgate_queue::Router>>,
}

impl fmt::Debug for InboxBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboxBuilder")
            .field("path", &self.path)
            .field("config", &self.config)
            .field("prune_interval", &self.prune_interval)
            .field("max_batch", &self.max_batch)
            .field("queue_capacity", &self.queue_capacity)
            .field("segment_size", &self.segment_size)
            .field("clock", &self.clock)
            .field("test_filter", &self.test_filter.is_some())
            .field("router", &self.router)
            .finish()
    }
}

impl InboxBuilder {
    /// How long a claim that is never committed blocks other copies of its delivery
    /// (default [`DEFAULT_CLAIM_TTL`]). Claims live in process memory: a crash drops them.
    pub fn claim_ttl(mut self, ttl: Duration) -> Self {
        self.config.claim_ttl = ttl;
        self
    }

    /// How long a stored delivery's dedup entry lives, the sender's retry horizon (default
    /// [`DEFAULT_COMMITTED_TTL`]). A copy arriving later is stored again.
    pub fn committed_ttl(mut self, ttl: Duration) -> Self {
        self.config.committed_ttl = ttl;
        self
    }

    /// How long processed events stay in the event log after they finished (default
    /// [`DEFAULT_RETENTION`]).
    pub fn retention(mut self, retention: Duration) -> Self {
        self.config.retention = retention;
        self
    }

    /// Prunes dead letters this long after they died (default: dead letters are kept until
    /// replayed).
    pub fn dead_letter_retention(mut self, retention: Duration) -> Self {
        self.config.dead_retention = Some(retention);
        self
    }

    /// How often a background thread prunes (default [`DEFAULT_PRUNE_INTERVAL`]).
    pub fn prune_interval(mut self, interval: Duration) -> Self {
        self.prune_interval = Some(interval);
        self
    }

    /// Turns the scheduled pruning off; call [`Inbox::prune`] yourself.
    pub fn no_scheduled_pruning(mut self) -> Self {
        self.prune_interval = None;
        self
    }

    /// The most writes one group commit holds (default [`DEFAULT_MAX_BATCH`]). `1` turns
    /// group commit off: one transaction, one fsync per write.
    pub fn max_batch(mut self, max_batch: usize) -> Self {
        self.max_batch = max_batch;
        self
    }

    /// The most writes waiting for the writer (default [`DEFAULT_QUEUE_CAPACITY`]). Past
    /// it, [`Inbox::enqueue`] fails with [`InboxError::Full`] (the gate answers 503).
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity;
        self
    }

    /// The size of each file of the inbox's segment log (default [`DEFAULT_SEGMENT_SIZE`],
    /// between 64 KiB and 1 GiB). Each segment is written with zeros when it is created,
    /// so every later sync is a data-only flush; it is deleted once all its events are in
    /// the database.
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// The clock for every stored instant, lease and expiry (default [`SystemClock`]).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Flags deliveries for which `filter` returns true as test deliveries: they are
    /// processed like any other but left out of the event log unless asked for.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// // Stripe marks test-mode events with "livemode": false.
    /// let inbox = hookgate_inbox::Inbox::builder(dir.path().join("inbox.db"))
    ///     .test_filter(|event| {
    ///         let body = std::str::from_utf8(event.body()).unwrap_or("");
    ///         body.contains("\"livemode\":false") || body.contains("\"livemode\": false")
    ///     })
    ///     .open()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn test_filter<F>(mut self, filter: F) -> Self
    where
        F: Fn(&VerifiedEvent) -> bool + Send + Sync + 'static,
    {
        self.test_filter = Some(Arc::new(filter));
        self
    }

    /// The endpoint's destinations (issue 21): each event the inbox stores is routed
    /// once, on receive, and becomes one delivery per destination whose filter passes it
    /// (with its lane key), written in the same durable record as the event; an event no
    /// destination takes is stored as `filtered`. A [`Worker`](crate::Worker) then leases
    /// deliveries instead of events ([`InboxEvent::destination`](crate::InboxEvent::destination)
    /// says where each goes); give it the same destinations
    /// ([`WorkerBuilder::destinations`](hookgate_queue::WorkerBuilder::destinations)).
    /// Events stored before keep their routing (none: an inbox with destinations does not
    /// lease them).
    ///
    /// ```
    /// use hookgate_inbox::Inbox;
    /// use hookgate_queue::{Destination, DestinationTarget, Router};
    ///
    /// # let dir = tempfile::tempdir()?;
    /// let router = Router::new(vec![
    ///     Destination::new("billing", DestinationTarget::Forward("http://127.0.0.1:3000/".into()))?,
    ///     Destination::new("audit", DestinationTarget::Exec("./audit.sh".into()))?,
    /// ])?;
    /// let inbox = Inbox::builder(dir.path().join("inbox.db")).destinations(router).open()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn destinations(mut self, router: hookgate_queue::Router) -> Self {
        self.router = Some(Arc::new(router));
        self
    }

    /// Opens (creating if needed) the database and starts the writer thread, and the
    /// pruning thread unless turned off.
    ///
    /// # Errors
    /// [`InboxError::Config`] for a setting out of range, [`InboxError::Database`] when the
    /// file cannot be opened or switched to WAL, [`InboxError::SchemaTooNew`] for a file
    /// written by a newer version.
    pub fn open(self) -> Result<Inbox, InboxError> {
        self.validate()?;
        let conn = schema::open_writer(&self.path)?;
        let keys = Arc::new(Keys::default());
        // The log is ours if nobody else holds its lock: then replay what it holds that
        // the database does not, and load every live dedup key.
        let log = match lock_log(&self.path)? {
            Some((dir, lock)) => {
                let recovered = applier::recover(&conn, &dir)?;
                let now = to_millis(self.clock.now());
                load_keys(&conn, &keys, now)?;
                let last_id = last_event_id(&conn)?;
                Some((dir, lock, recovered, last_id))
            }
            None => None,
        };
        let (tx, rx) = mpsc::channel(self.queue_capacity);
        let (wake, _) = watch::channel(0);
        let shared = Arc::new(WriterShared {
            clock: self.clock.clone(),
            max_batch: self.max_batch,
            commits: AtomicU64::new(0),
            jobs: AtomicU64::new(0),
            largest_batch: AtomicU64::new(0),
            failed_commits: AtomicU64::new(0),
            wake,
        });
        writer::spawn(conn, rx, shared.clone())?;
        let journal = match log {
            Some((dir, lock, recovered, last_id)) => {
                Some(self.start_journal(dir, lock, recovered.next_seq, last_id, &keys, &tx)?)
            }
            None => None,
        };
        let (stop_checkpointer, checkpointer_stop) = std::sync::mpsc::channel();
        checkpoint::spawn(self.path.clone(), checkpointer_stop)?;
        let (stop_pruner, stop_rx) = match self.prune_interval {
            Some(_) => {
                let (stop, rx) = std::sync::mpsc::channel();
                (Some(stop), Some(rx))
            }
            None => (None, None),
        };
        let inner = Arc::new(Inner {
            path: self.path,
            tx,
            writer: shared,
            readers: Mutex::new(Vec::new()),
            clock: self.clock,
            claims: Mutex::new(Claims::default()),
            config: self.config,
            test_filter: self.test_filter,
            router: self.router,
            stored: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            _stop_pruner: stop_pruner,
            _stop_checkpointer: stop_checkpointer,
            journal,
            keys,
        });
        if let (Some(interval), Some(stop_rx)) = (self.prune_interval, stop_rx) {
            spawn_pruner(Arc::downgrade(&inner), interval, stop_rx)?;
        }
        Ok(Inbox { inner })
    }

    /// Starts the log's threads on a fresh segment, and the applier.
    fn start_journal(
        &self,
        dir: PathBuf,
        lock: std::fs::File,
        seq: u64,
        last_id: i64,
        keys: &Arc<Keys>,
        writer: &mpsc::Sender<Box<dyn Work>>,
    ) -> Result<Journal, InboxError> {
        let io = |err: std::io::Error| InboxError::Log(Arc::new(err));
        let shared = Arc::new(JournalShared::new(keys.clone(), last_id));
        let (tx, rx) = mpsc::channel(self.queue_capacity);
        let (to_applier, applier_rx) = std::sync::mpsc::channel();
        let mut threads = journal::start(
            dir,
            seq,
            self.segment_size,
            self.max_batch,
            last_id.saturating_add(1),
            rx,
            shared.clone(),
            to_applier.clone(),
        )
        .map_err(io)?
        .handles;
        threads.push(applier::spawn(applier_rx, writer.clone(), shared.clone(), lock).map_err(io)?);
        Ok(Journal {
            tx: Some(tx),
            to_applier: Some(to_applier),
            shared,
            unapplied_limit: self.queue_capacity.saturating_mul(UNAPPLIED_PER_QUEUE_SLOT),
            threads,
        })
    }

    fn validate(&self) -> Result<(), InboxError> {
        let check = |name: &str, d: Duration| {
            if d.is_zero() || d > MAX_DURATION {
                Err(InboxError::Config(format!(
                    "{name} must be between 1 ms and 10 years, got {d:?}"
                )))
            } else {
                Ok(())
            }
        };
        check("claim_ttl", self.config.claim_ttl)?;
        check("committed_ttl", self.config.committed_ttl)?;
        check("retention", self.config.retention)?;
        if let Some(dead) = self.config.dead_retention {
            check("dead_letter_retention", dead)?;
        }
        if let Some(interval) = self.prune_interval {
            check("prune_interval", interval)?;
        }
        if !(1..=100_000).contains(&self.max_batch) {
            return Err(InboxError::Config(format!(
                "max_batch must be between 1 and 100000, got {}",
                self.max_batch
            )));
        }
        if !SEGMENT_SIZES.contains(&self.segment_size) {
            return Err(InboxError::Config(format!(
                "segment_size must be between 64 KiB and 1 GiB, got {} bytes",
                self.segment_size
            )));
        }
        if !(1..=10_000_000).contains(&self.queue_capacity) {
            return Err(InboxError::Config(format!(
                "queue_capacity must be between 1 and 10000000, got {}",
                self.queue_capacity
            )));
        }
        Ok(())
    }
}

impl Inbox {
    /// Opens the inbox at `path` with the defaults.
    ///
    /// # Errors
    /// As [`InboxBuilder::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<Inbox, InboxError> {
        Inbox::builder(path).open()
    }

    /// Starts configuring an inbox stored at `path`.
    pub fn builder(path: impl AsRef<Path>) -> InboxBuilder {
        InboxBuilder {
            path: path.as_ref().to_path_buf(),
            config: Config {
                claim_ttl: DEFAULT_CLAIM_TTL,
                committed_ttl: DEFAULT_COMMITTED_TTL,
                retention: DEFAULT_RETENTION,
                dead_retention: None,
            },
            prune_interval: Some(DEFAULT_PRUNE_INTERVAL),
            max_batch: DEFAULT_MAX_BATCH,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            segment_size: DEFAULT_SEGMENT_SIZE,
            clock: Arc::new(SystemClock),
            test_filter: None,
            router: None,
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Durably stores a verified event, unless a copy with the same dedup key is already
    /// stored. Returns once the record holding it is synced to the inbox's log; concurrent
    /// calls share that sync. The event is then applied to the database in the background
    /// (within milliseconds): workers and queries see it from then on, and a query made
    /// after this call returned waits for it.
    ///
    /// The event and its dedup entry are one record: there is no moment where one is
    /// durable without the other.
    ///
    /// # Errors
    /// [`InboxError::Full`] when too many events are waiting, [`InboxError::Log`] when the
    /// log cannot be written, [`InboxError::NotTheWriter`] when another open inbox holds
    /// this inbox's log, [`InboxError::Closed`] when the inbox is closing. In every error
    /// case the event was not acknowledged (it may still be stored, after a failed sync).
    pub async fn enqueue(&self, event: &VerifiedEvent) -> Result<Enqueued, InboxError> {
        let Some(journal) = &self.inner.journal else {
            return Err(InboxError::NotTheWriter);
        };
        let is_test = self
            .inner
            .test_filter
            .as_ref()
            .is_some_and(|filter| filter(event));
        let mut new = NewEvent::from_verified(event, is_test);
        if let Some(router) = &self.inner.router {
            new.routes = Some(crate::event::route(router, event));
        }
        let key = new.dedup_key.clone();
        let now = self.now_ms();
        let expires = add(now, self.inner.config.committed_ttl);
        let digest = new.dedup_digest;
        let keys = &self.inner.keys;
        loop {
            match keys.reserve(&digest, now, expires) {
                KeyState::Absent => break,
                KeyState::Stored(id) => return Ok(self.duplicate(&new.dedup_key, id)),
                // Another enqueue of the same key is being synced: answer as it ends.
                KeyState::Pending => match keys.settled(&digest, now).await {
                    KeyState::Stored(id) => return Ok(self.duplicate(&new.dedup_key, id)),
                    _ if journal.shared.failed.load(Ordering::SeqCst) => {
                        return Err(log_failed());
                    }
                    _ => {}
                },
            }
        }
        // Reserved: from here to the hand-over nothing awaits, so the reservation is
        // always either handed to the log (which settles it) or given up here.
        let rx = match self.append(journal, new) {
            Ok(rx) => rx,
            Err(err) => {
                keys.resolve(&digest, None);
                return Err(err);
            }
        };
        let id = rx.await.map_err(|_| InboxError::Closed)??;
        self.inner.stored.fetch_add(1, Ordering::Relaxed);
        self.claims().mark_stored(&key);
        Ok(Enqueued::Stored(EventId::new(id)))
    }

    fn append(
        &self,
        journal: &Journal,
        event: NewEvent,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<i64, InboxError>>, InboxError> {
        let shared = &journal.shared;
        if shared.failed.load(Ordering::SeqCst) {
            return Err(log_failed());
        }
        let tx = journal.tx.as_ref().ok_or(InboxError::Closed)?;
        if shared.unapplied.fetch_add(1, Ordering::SeqCst) >= journal.unapplied_limit {
            shared.unapplied.fetch_sub(1, Ordering::SeqCst);
            return Err(InboxError::Full);
        }
        let now = self.now_ms();
        let record = LogRecord {
            id: 0,
            enqueued_at_ms: now,
            expires_at_ms: add(now, self.inner.config.committed_ttl),
            event,
        };
        let (reply, rx) = tokio::sync::oneshot::channel();
        if let Err(err) = tx.try_send(AppendJob { record, reply }) {
            shared.unapplied.fetch_sub(1, Ordering::SeqCst);
            return Err(match err {
                mpsc::error::TrySendError::Full(_) => InboxError::Full,
                mpsc::error::TrySendError::Closed(_) => InboxError::Closed,
            });
        }
        Ok(rx)
    }

    fn duplicate(&self, key: &str, id: Option<i64>) -> Enqueued {
        self.inner.duplicates.fetch_add(1, Ordering::Relaxed);
        self.claims().mark_stored(key);
        Enqueued::Duplicate(id.map(EventId::new))
    }

    /// Waits (a bounded time) until every event acknowledged before this call is applied
    /// to the database, so a query or a lease sees what its caller enqueued.
    pub(crate) async fn caught_up(&self) {
        let Some(journal) = &self.inner.journal else {
            return;
        };
        let target = *journal.shared.durable.borrow();
        let mut applied = journal.shared.applied.subscribe();
        if *applied.borrow() >= target {
            return;
        }
        // The applier collects records for a few milliseconds before applying them: ask
        // for these now.
        journal.shared.wanted.fetch_max(target, Ordering::SeqCst);
        if let Some(to_applier) = &journal.to_applier {
            let _ = to_applier.send(ToApplier::Wanted);
        }
        let waited =
            tokio::time::timeout(READ_BARRIER_LIMIT, applied.wait_for(|a| *a >= target)).await;
        if waited.is_err() {
            tracing::warn!("inbox: events are slow to reach the database; answering without them");
        }
    }

    /// Whether this inbox routes events to destinations (and its queue leases deliveries).
    pub fn has_destinations(&self) -> bool {
        self.inner.router.is_some()
    }

    /// Whether this inbox holds the segment log (and so takes new events).
    pub(crate) fn holds_log(&self) -> bool {
        self.inner.journal.is_some()
    }

    /// The state of a dedup key in memory (only meaningful when [`holds_log`](Self::holds_log)).
    pub(crate) fn key_state(&self, digest: &[u8; 16]) -> KeyState {
        self.inner.keys.state(digest, self.now_ms())
    }

    /// Records a durable dedup key in memory (committed for another sink).
    pub(crate) fn remember_key(&self, digest: &[u8; 16], expires_ms: i64) {
        self.inner.keys.insert_stored(digest, None, expires_ms);
    }

    /// Counters since the inbox was opened.
    pub fn stats(&self) -> InboxStats {
        let w = &self.inner.writer;
        InboxStats {
            commits: w.commits.load(Ordering::Relaxed),
            jobs: w.jobs.load(Ordering::Relaxed),
            largest_batch: w.largest_batch.load(Ordering::Relaxed),
            failed_commits: w.failed_commits.load(Ordering::Relaxed),
            events_stored: self.inner.stored.load(Ordering::Relaxed),
            duplicates: self.inner.duplicates.load(Ordering::Relaxed),
            log_syncs: self.journal_stat(|j| j.syncs.load(Ordering::Relaxed)),
            log_records: self.journal_stat(|j| j.records.load(Ordering::Relaxed)),
            log_largest_batch: self.journal_stat(|j| j.largest_batch.load(Ordering::Relaxed)),
            unapplied: self.journal_stat(|j| {
                u64::try_from(j.unapplied.load(Ordering::Relaxed)).unwrap_or(u64::MAX)
            }),
            dedup_keys_in_memory: u64::try_from(self.inner.keys.len()).unwrap_or(u64::MAX),
        }
    }

    fn journal_stat(&self, f: impl Fn(&JournalShared) -> u64) -> u64 {
        self.inner.journal.as_ref().map_or(0, |j| f(&j.shared))
    }

    /// Deletes expired dedup entries, processed events past the retention (with their
    /// attempt history) and, if a dead-letter retention is set, old dead letters. Runs in
    /// chunks so other writes are not held up.
    ///
    /// # Errors
    /// [`InboxError::Closed`] or [`InboxError::Database`].
    pub async fn prune(&self) -> Result<PruneReport, InboxError> {
        let swept = self.inner.keys.sweep(self.now_ms());
        let mut total = PruneReport::default();
        loop {
            let config = self.inner.config;
            let report = self
                .write(false, move |conn, now| prune_chunk(conn, now, &config))
                .await?;
            total.add(report);
            if !report.is_partial() {
                break;
            }
        }
        // The inbox that holds the log has every live key in memory (those of the `dedup`
        // table and those of the events' state rows, which expire there without a delete).
        if self.holds_log() {
            total.dedup_entries = u64::try_from(swept).unwrap_or(u64::MAX);
        }
        Ok(total)
    }

    /// Marks an event as a test delivery (or not). Returns whether the event exists.
    ///
    /// # Errors
    /// [`InboxError::Closed`] or [`InboxError::Database`].
    pub async fn set_test(&self, id: EventId, is_test: bool) -> Result<bool, InboxError> {
        self.write(false, move |conn, _| {
            let changed = conn.execute(
                "UPDATE state SET is_test = ?2 WHERE id = ?1",
                params![id.get(), is_test],
            )?;
            Ok(changed > 0)
        })
        .await
    }

    /// A write that waits for room in the writer's queue.
    pub(crate) async fn write<T, F>(&self, wakes: bool, f: F) -> Result<T, InboxError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, i64) -> Result<T, InboxError> + Send + 'static,
    {
        self.write_with(wakes, f, Durability::Synced).await
    }

    /// A write answered after a commit of the given durability.
    pub(crate) async fn write_with<T, F>(
        &self,
        wakes: bool,
        f: F,
        durability: Durability,
    ) -> Result<T, InboxError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, i64) -> Result<T, InboxError> + Send + 'static,
    {
        // Worker bookkeeping (deferred) only touches events it leased, already applied.
        if durability == Durability::Synced {
            self.caught_up().await;
        }
        self.submit(wakes, f, durability).await
    }

    /// A worker's lease: a deferred write without the read barrier.
    ///
    /// It takes what the applier has applied. The applier wakes the worker after each of
    /// its commits, so nothing is missed; waiting for the barrier instead made every lease
    /// force the applier to commit what it had collected so far and wait for that commit,
    /// so leases came no faster than small apply transactions (the worker kept 10–30 % of
    /// the intake's pace in `hookgate-load`).
    ///
    /// It is not fsynced on its own ([`Durability::Deferred`]): a commit is in the file as
    /// soon as it returns, so a lease survives a crash of the process (an attempt cut short
    /// by it counts, and an event that crashes the process every time still reaches its
    /// dead letter); only a power loss before the next fsync (a checkpoint, within
    /// milliseconds) can take it back, which leaves the event due again, as at-least-once
    /// processing allows. An fsync per lease held the worker at 13 400 events/s where it
    /// now processes 22 000 (`profile_inbox 40000 16 worker`, docs/BENCHMARKS.md).
    pub(crate) async fn write_applied<T, F>(&self, wakes: bool, f: F) -> Result<T, InboxError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, i64) -> Result<T, InboxError> + Send + 'static,
    {
        self.submit(wakes, f, Durability::Deferred).await
    }

    /// Sends a job of its own kind to the writer thread (waiting for room in its queue).
    pub(crate) async fn submit_job(
        &self,
        job: Box<dyn crate::writer::Work>,
    ) -> Result<(), InboxError> {
        self.inner
            .tx
            .send(job)
            .await
            .map_err(|_| InboxError::Closed)
    }

    async fn submit<T, F>(&self, wakes: bool, f: F, durability: Durability) -> Result<T, InboxError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, i64) -> Result<T, InboxError> + Send + 'static,
    {
        let (job, rx) = Call::job_with(wakes, f, durability);
        self.submit_job(job).await?;
        rx.await.map_err(|_| InboxError::Closed)?
    }

    /// A query on a reader connection, off the async threads.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, InboxError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, i64) -> Result<T, InboxError> + Send + 'static,
    {
        self.caught_up().await;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match inner.lock_readers().pop() {
                Some(conn) => conn,
                None => schema::open_reader(&inner.path)?,
            };
            let result = f(&conn, inner.now_ms());
            let mut idle = inner.lock_readers();
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|err| InboxError::Task(err.to_string()))?
    }

    /// Receives a new value whenever a commit may have made events due.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.writer.wake.subscribe()
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.inner.now_ms()
    }

    pub(crate) fn claims(&self) -> MutexGuard<'_, Claims> {
        self.inner
            .claims
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    fn lock_readers(&self) -> MutexGuard<'_, Vec<Connection>> {
        self.readers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn now_ms(&self) -> i64 {
        to_millis(self.clock.now())
    }
}

impl fmt::Debug for Inbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inbox")
            .field("path", &self.inner.path)
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// The directory of the inbox's segment log: beside the database, `<file name>-log`.
pub(crate) fn log_dir(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    name.push("-log");
    path.with_file_name(name)
}

/// Takes the log directory's lock; `None` when another open inbox holds it.
fn lock_log(path: &Path) -> Result<Option<(PathBuf, std::fs::File)>, InboxError> {
    let io = |err: std::io::Error| InboxError::Log(Arc::new(err));
    let dir = log_dir(path);
    std::fs::create_dir_all(&dir).map_err(io)?;
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join("LOCK"))
        .map_err(io)?;
    // flock: held by this open file until it is closed (by the applier thread when the
    // inbox closes, or by the kernel when the process dies).
    match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some((dir, lock))),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
        Err(err) => Err(io(err.into())),
    }
}

/// Loads every live dedup key from the database into memory: the keys in the events'
/// `state` rows (newest event first, so a key stored twice names its latest event), then
/// the `dedup` table's (keys without a state row; see `schema.rs`, version 5).
fn load_keys(conn: &Connection, keys: &Keys, now: i64) -> Result<(), InboxError> {
    for sql in [
        "SELECT dedup_digest, id, dedup_expires_at FROM state
          WHERE dedup_expires_at > ?1 ORDER BY id DESC",
        "SELECT digest, event_id, expires_at FROM dedup WHERE expires_at > ?1",
    ] {
        let mut stmt = conn.prepare(sql)?;
        let mut rows = stmt.query(params![now])?;
        while let Some(row) = rows.next()? {
            let digest: Vec<u8> = row.get(0)?;
            let Ok(digest) = <[u8; 16]>::try_from(digest.as_slice()) else {
                continue;
            };
            keys.insert_stored(&digest, row.get(1)?, row.get(2)?);
        }
    }
    Ok(())
}

/// The highest event id ever given: the id sequence, or the log's checkpoint.
fn last_event_id(conn: &Connection) -> Result<i64, InboxError> {
    Ok(conn.query_row(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),
                    coalesce((SELECT max(id) FROM events), 0),
                    (SELECT event_id FROM log_applied WHERE one = 1))",
        [],
        |row| row.get(0),
    )?)
}

fn log_failed() -> InboxError {
    InboxError::Log(Arc::new(std::io::Error::other(
        "the event log failed; reopen the inbox",
    )))
}

fn prune_chunk(conn: &Connection, now: i64, config: &Config) -> Result<PruneReport, InboxError> {
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    let dedup_entries = conn.execute(
        "DELETE FROM dedup WHERE digest IN
             (SELECT digest FROM dedup WHERE expires_at <= ?1 LIMIT ?2)",
        params![now, PRUNE_CHUNK],
    )?;
    let processed_events =
        delete_finished(conn, "processed", sub(now, config.retention), now)?.saturating_add(
            delete_finished(conn, "filtered", sub(now, config.retention), now)?,
        );
    let dead_events = match config.dead_retention {
        Some(retention) => delete_finished(conn, "dead", sub(now, retention), now)?,
        None => 0,
    };
    Ok(PruneReport {
        dedup_entries: count(dedup_entries),
        processed_events: count(processed_events),
        dead_events: count(dead_events),
    })
}

/// Deletes up to one chunk of events in `status` that finished before `before`, with their
/// state, attempts and dead-letter rows. A key that outlives its event (a retention
/// shorter than the dedup horizon) moves from the state row to the `dedup` table first.
fn delete_finished(
    conn: &Connection,
    status: &str,
    before: i64,
    now: i64,
) -> Result<usize, InboxError> {
    conn.execute(
        "CREATE TEMP TABLE IF NOT EXISTS prune_ids (id INTEGER PRIMARY KEY)",
        [],
    )?;
    conn.execute("DELETE FROM temp.prune_ids", [])?;
    conn.execute(
        "INSERT INTO temp.prune_ids (id)
             SELECT id FROM state WHERE status = ?1 AND finished_at <= ?2 LIMIT ?3",
        params![status, before, PRUNE_CHUNK],
    )?;
    conn.execute(
        "INSERT INTO dedup (digest, event_id, expires_at)
             SELECT dedup_digest, id, dedup_expires_at FROM state
              WHERE id IN (SELECT id FROM temp.prune_ids)
                AND dedup_digest IS NOT NULL AND dedup_expires_at > ?1
         ON CONFLICT(digest) DO UPDATE SET event_id = excluded.event_id,
                                           expires_at = max(expires_at, excluded.expires_at)",
        params![now],
    )?;
    for table in ["attempts", "dead_letters", "deliveries"] {
        conn.execute(
            &format!("DELETE FROM {table} WHERE event_id IN (SELECT id FROM temp.prune_ids)"),
            [],
        )?;
    }
    conn.execute(
        "DELETE FROM state WHERE id IN (SELECT id FROM temp.prune_ids)",
        [],
    )?;
    let deleted = conn.execute(
        "DELETE FROM events WHERE id IN (SELECT id FROM temp.prune_ids)",
        [],
    )?;
    conn.execute("DELETE FROM temp.prune_ids", [])?;
    Ok(deleted)
}

fn spawn_pruner(
    inner: Weak<Inner>,
    interval: Duration,
    stop: std::sync::mpsc::Receiver<()>,
) -> Result<(), InboxError> {
    std::thread::Builder::new()
        .name("hookgate-inbox-pruner".to_owned())
        .spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(interval)
            {
                let Some(inner) = inner.upgrade() else {
                    return;
                };
                prune_blocking(&inner);
            }
        })
        .map(drop)
        .map_err(|err| InboxError::Task(format!("cannot start the pruning thread: {err}")))
}

fn prune_blocking(inner: &Inner) {
    inner.keys.sweep(inner.now_ms());
    loop {
        let config = inner.config;
        let (job, rx) = Call::job(false, move |conn, now| prune_chunk(conn, now, &config));
        if inner.tx.blocking_send(job).is_err() {
            return;
        }
        match rx.blocking_recv() {
            Ok(Ok(report)) => {
                if report != PruneReport::default() {
                    tracing::debug!(?report, "inbox pruned");
                }
                if !report.is_partial() {
                    return;
                }
            }
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "inbox pruning failed");
                return;
            }
            Err(_) => return,
        }
    }
}

/// In-process claims of dedup keys: which deliveries are being handed off right now.
#[derive(Debug, Default)]
pub(crate) struct Claims {
    map: HashMap<String, ClaimEntry>,
    next_token: u64,
    sweep_at: usize,
}

#[derive(Debug, Clone, Copy)]
struct ClaimEntry {
    token: u64,
    expires_ms: i64,
    /// The inbox stored the event (or found it stored): the key is durable already.
    stored: bool,
}

/// The answer of [`Claims::try_claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClaimAttempt {
    New(u64),
    Held,
}

impl Claims {
    /// Claims `key` unless a live claim holds it.
    pub(crate) fn try_claim(&mut self, key: &str, now_ms: i64, ttl: Duration) -> ClaimAttempt {
        if self.map.len() >= self.sweep_at {
            self.map.retain(|_, entry| entry.expires_ms > now_ms);
            self.sweep_at = self.map.len().saturating_mul(2).max(1024);
        }
        if let Some(entry) = self.map.get(key) {
            if entry.expires_ms > now_ms {
                return ClaimAttempt::Held;
            }
        }
        self.next_token = self.next_token.wrapping_add(1);
        let token = self.next_token;
        self.map.insert(
            key.to_owned(),
            ClaimEntry {
                token,
                expires_ms: add(now_ms, ttl),
                stored: false,
            },
        );
        ClaimAttempt::New(token)
    }

    /// Whether a live claim holds `key`.
    pub(crate) fn is_held(&self, key: &str, now_ms: i64) -> bool {
        self.map
            .get(key)
            .is_some_and(|entry| entry.expires_ms > now_ms)
    }

    /// Removes the claim made with `token`; returns whether the inbox stored its event.
    /// `None` when the claim is gone or belongs to another token.
    pub(crate) fn remove(&mut self, key: &str, token: u64) -> Option<bool> {
        match self.map.get(key) {
            Some(entry) if entry.token == token => {
                let stored = entry.stored;
                self.map.remove(key);
                Some(stored)
            }
            _ => None,
        }
    }

    fn mark_stored(&mut self, key: &str) {
        if let Some(entry) = self.map.get_mut(key) {
            entry.stored = true;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Holds the database writer inside a job until the returned sender is dropped or
    /// sent to: nothing is applied meanwhile.
    pub(crate) async fn hold_writer(
        inbox: &Inbox,
    ) -> (std::sync::mpsc::Sender<()>, tokio::task::JoinHandle<()>) {
        let (entered_tx, entered_rx) = std::sync::mpsc::channel::<()>();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let held = {
            let inbox = inbox.clone();
            tokio::spawn(async move {
                inbox
                    .write(false, move |_, _| {
                        entered_tx.send(()).ok();
                        release_rx.recv().ok();
                        Ok(())
                    })
                    .await
                    .unwrap();
            })
        };
        tokio::task::spawn_blocking(move || entered_rx.recv())
            .await
            .unwrap()
            .unwrap();
        (release_tx, held)
    }

    #[test]
    fn claims_expire_and_check_tokens() {
        let mut claims = Claims::default();
        let ttl = Duration::from_millis(100);
        let ClaimAttempt::New(token) = claims.try_claim("k", 1_000, ttl) else {
            panic!("first claim must be new")
        };
        assert_eq!(claims.try_claim("k", 1_050, ttl), ClaimAttempt::Held);
        assert!(claims.is_held("k", 1_099));
        assert!(!claims.is_held("k", 1_100));
        // Expired: a new claim takes over, and the old token no longer releases it.
        let ClaimAttempt::New(second) = claims.try_claim("k", 1_100, ttl) else {
            panic!("expired claim must be replaced")
        };
        assert_ne!(token, second);
        assert_eq!(claims.remove("k", token), None);
        claims.mark_stored("k");
        assert_eq!(claims.remove("k", second), Some(true));
        assert!(!claims.is_held("k", 1_100));
    }

    #[test]
    fn rejects_out_of_range_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.db");
        let err = Inbox::builder(&path)
            .claim_ttl(Duration::ZERO)
            .open()
            .unwrap_err();
        assert!(err.to_string().contains("claim_ttl"), "{err}");
        let err = Inbox::builder(&path).max_batch(0).open().unwrap_err();
        assert!(err.to_string().contains("max_batch"), "{err}");
        let err = Inbox::builder(&path)
            .retention(Duration::MAX)
            .open()
            .unwrap_err();
        assert!(err.to_string().contains("retention"), "{err}");
    }
}

#[cfg(test)]
mod group_commit_tests {
    use super::*;
    use crate::inbox::tests::hold_writer;

    /// A batch of deferred jobs (worker bookkeeping, the worker's lease among them) only
    /// commits with `synchronous=NORMAL` (no fsync); every other batch with `FULL`, however
    /// often the two alternate.
    #[tokio::test]
    async fn only_batches_of_deferred_jobs_skip_the_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::builder(dir.path().join("inbox.db"))
            .no_scheduled_pruning()
            .open()
            .unwrap();
        let level = |conn: &Connection| -> Result<i64, InboxError> {
            Ok(conn.query_row("PRAGMA synchronous", [], |row| row.get(0))?)
        };
        for _ in 0..3 {
            let deferred = inbox
                .write_with(false, move |conn, _| level(conn), Durability::Deferred)
                .await
                .unwrap();
            assert_eq!(deferred, 1, "NORMAL");
            let lease = inbox
                .write_applied(false, move |conn, _| level(conn))
                .await
                .unwrap();
            assert_eq!(lease, 1, "a lease: NORMAL");
            let synced = inbox
                .write(false, move |conn, _| level(conn))
                .await
                .unwrap();
            assert_eq!(synced, 2, "FULL");
        }
    }

    /// Enqueues never wait for SQLite: while the database writer is held inside a job,
    /// 64 enqueues are answered from the log (sharing its syncs), and the applier puts
    /// them in the database once the writer is free; a query made then sees all of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn enqueues_are_answered_from_the_log_while_the_database_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::builder(dir.path().join("inbox.db"))
            .no_scheduled_pruning()
            .open()
            .unwrap();
        let (release_tx, blocker) = hold_writer(&inbox).await;

        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let signer = hookgate::Signer::new(hookgate::SchemeId::StandardWebhooksV1, secret).unwrap();
        let verifier = hookgate::Verifier::builder(hookgate::SchemeId::StandardWebhooksV1)
            .secret(secret)
            .build()
            .unwrap();
        let mut senders = Vec::new();
        for n in 0..64 {
            let delivery = signer
                .sign(&hookgate::SignRequest::new("{}").id(format!("msg_{n}")))
                .unwrap();
            let event = verifier.verify(&delivery.headers, delivery.body).unwrap();
            let inbox = inbox.clone();
            senders.push(tokio::spawn(async move { inbox.enqueue(&event).await }));
        }
        let mut ids = Vec::new();
        for sender in senders {
            match sender.await.unwrap().unwrap() {
                Enqueued::Stored(id) => ids.push(id.get()),
                other => panic!("{other:?}"),
            }
        }
        ids.sort_unstable();
        assert_eq!(ids, (1..=64).collect::<Vec<_>>());
        let stats = inbox.stats();
        assert_eq!(stats.log_records, 64);
        assert!(stats.log_syncs >= 1 && stats.log_syncs <= 64);
        assert_eq!(stats.unapplied, 64, "the database writer is still held");

        release_tx.send(()).unwrap();
        blocker.await.unwrap();
        assert_eq!(inbox.status_counts().await.unwrap().total(), 64);
        assert_eq!(inbox.stats().unapplied, 0);
    }
}
