//! Group commit of enqueues: concurrent [`PgStore::enqueue`] calls are written together,
//! many events in one statement and one transaction, so that a burst of deliveries costs
//! a few commits (and WAL flushes, and round trips) instead of one each.
//!
//! An enqueue puts its event in a queue and waits. Batch writers, tasks started on
//! demand (at most [`PgStoreBuilder::batch_writers`](crate::PgStoreBuilder::batch_writers)
//! at once, each exiting when the queue is empty), take everything waiting (up to
//! [`PgStoreBuilder::max_batch`](crate::PgStoreBuilder::max_batch) events, or
//! [`MAX_BATCH_BYTES`]), write it with one statement, and answer every waiter of the
//! batch after PostgreSQL answered the `COMMIT`. Nobody waits for a batch to fill: a
//! lone enqueue is written at once, and batches grow only while earlier ones are being
//! written.
//!
//! Each waiter's answer is exact:
//! - the statement inserts the dedup rows and the events of the whole batch, so they
//!   commit together or not at all; an error answers every waiter of the batch with it;
//! - two copies with the same dedup key in one batch: the first to arrive is stored, the
//!   other is answered [`Enqueued::Duplicate`] once the first is committed;
//! - against other replicas (other batches) the primary key on the dedup table decides
//!   as it does for single enqueues, and each batch inserts its keys in byte order, so
//!   two batches sharing keys wait for each other instead of deadlocking.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use hookgate::VerifiedEvent;
use tokio::sync::oneshot;

use crate::store::{Enqueued, PgStore, millis};
use crate::{Error, EventId};

/// Default most enqueues written in one transaction: 256.
pub const DEFAULT_MAX_BATCH: usize = 256;
/// Default most batches written at once: 2 (one is written while the next fills up).
pub const DEFAULT_BATCH_WRITERS: usize = 2;
/// Most bytes of bodies and headers in one batch: 16 MiB (a single larger event is
/// written alone).
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// Counters of the store's batched enqueues since it connected
/// ([`PgStore::enqueue_stats`]).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnqueueStats {
    /// Batches written (each one statement and one transaction), committed or failed.
    pub batches: u64,
    /// Enqueues answered by those batches.
    pub events: u64,
    /// Batches that failed; each of their enqueues got the error.
    pub failed_batches: u64,
    /// Enqueues waiting for a batch now.
    pub waiting: usize,
    /// Batches being written now.
    pub writing: usize,
}

/// The queue of waiting enqueues and the batch writers taking from it.
pub(crate) struct Batcher {
    state: Mutex<State>,
    max_batch: usize,
    max_writers: usize,
    batches: AtomicU64,
    events: AtomicU64,
    failed_batches: AtomicU64,
}

struct State {
    queue: VecDeque<Waiter>,
    /// Writer tasks running.
    writers: usize,
    /// Batches taken and not yet answered.
    writing: usize,
}

/// An enqueue waiting for its batch.
struct Waiter {
    event: VerifiedEvent,
    /// The event's headers as JSON, made by the caller (off the writer's path).
    headers: String,
    is_test: bool,
    answer: oneshot::Sender<Result<Enqueued, Error>>,
}

impl Waiter {
    fn bytes(&self) -> usize {
        self.event.body().len().saturating_add(self.headers.len())
    }
}

impl Batcher {
    pub(crate) fn new(max_batch: usize, max_writers: usize) -> Self {
        Batcher {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                writers: 0,
                writing: 0,
            }),
            max_batch,
            max_writers,
            batches: AtomicU64::new(0),
            events: AtomicU64::new(0),
            failed_batches: AtomicU64::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn stats(&self) -> EnqueueStats {
        let state = self.state();
        EnqueueStats {
            batches: self.batches.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            failed_batches: self.failed_batches.load(Ordering::Relaxed),
            waiting: state.queue.len(),
            writing: state.writing,
        }
    }

    /// The next batch: the waiters in arrival order, skipping those that stopped waiting
    /// (their caller gave up: nothing is written for them). `None` when nothing waits,
    /// and the calling writer then counts as gone: the check and the count change under
    /// one lock, so an enqueue either finds a writer that will still look at the queue or
    /// starts one.
    fn take(&self) -> Option<Vec<Waiter>> {
        let mut state = self.state();
        let mut batch: Vec<Waiter> = Vec::new();
        let mut bytes = 0usize;
        while let Some(next) = state.queue.front() {
            if next.answer.is_closed() {
                state.queue.pop_front();
                continue;
            }
            let size = next.bytes();
            if !batch.is_empty()
                && (batch.len() >= self.max_batch || bytes.saturating_add(size) > MAX_BATCH_BYTES)
            {
                break;
            }
            bytes = bytes.saturating_add(size);
            if let Some(waiter) = state.queue.pop_front() {
                batch.push(waiter);
            }
        }
        if batch.is_empty() {
            state.writers = state.writers.saturating_sub(1);
            None
        } else {
            state.writing = state.writing.saturating_add(1);
            Some(batch)
        }
    }
}

impl PgStore {
    /// Queues `event` for the next batch and waits for its answer.
    pub(crate) async fn enqueue_batched(
        &self,
        event: VerifiedEvent,
        headers: String,
        is_test: bool,
    ) -> Result<Enqueued, Error> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Unavailable("enqueue called outside a Tokio runtime".to_owned()))?;
        let (answer, answered) = oneshot::channel();
        let batcher = &self.inner.batcher;
        let start_writer = {
            let mut state = batcher.state();
            state.queue.push_back(Waiter {
                event,
                headers,
                is_test,
                answer,
            });
            let start = state.writers < batcher.max_writers;
            if start {
                state.writers = state.writers.saturating_add(1);
            }
            start
        };
        if start_writer {
            // The guard is made here, not in the task: a task that never runs (its
            // runtime is shutting down) still drops it.
            runtime.spawn(write_batches(WriterGuard {
                store: self.clone(),
                done: false,
                writing: false,
            }));
        }
        answered.await.unwrap_or_else(|_| {
            Err(Error::Unavailable(
                "the task writing this enqueue's batch stopped (its runtime shut down); \
                 the event may have been stored"
                    .to_owned(),
            ))
        })
    }
}

/// A batch writer: writes batches until nothing waits.
async fn write_batches(mut guard: WriterGuard) {
    let store = guard.store.clone();
    while let Some(batch) = store.inner.batcher.take() {
        guard.writing = true;
        let result = write(&store, &batch).await;
        guard.writing = false;
        answer(&store, batch, result);
    }
    guard.done = true;
}

/// Counts a writer that stopped without finishing (its runtime shut down, or it
/// panicked) as gone, and if it was the last one, fails the enqueues still waiting
/// rather than leaving them to wait for good; the batch it was writing is dropped with
/// it, which answers its waiters with an error.
struct WriterGuard {
    store: PgStore,
    done: bool,
    writing: bool,
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let abandoned = {
            let mut state = self.store.inner.batcher.state();
            state.writers = state.writers.saturating_sub(1);
            if self.writing {
                state.writing = state.writing.saturating_sub(1);
            }
            if state.writers == 0 {
                std::mem::take(&mut state.queue)
            } else {
                VecDeque::new()
            }
        };
        // Dropping a waiter's sender answers it with the "stopped" error.
        drop(abandoned);
    }
}

/// Writes one batch: the stored event's id (or `None`, a duplicate) of each waiter, in
/// the batch's order.
async fn write(store: &PgStore, batch: &[Waiter]) -> Result<Vec<Option<EventId>>, Error> {
    let inner = &store.inner;
    // The first copy of each key in the batch is written; the others follow it.
    let mut first: HashMap<&str, usize> = HashMap::with_capacity(batch.len());
    let mut unique: Vec<&Waiter> = Vec::with_capacity(batch.len());
    for (index, waiter) in batch.iter().enumerate() {
        first.entry(waiter.event.dedup_key()).or_insert_with(|| {
            unique.push(waiter);
            index
        });
    }
    let keys: Vec<&str> = unique.iter().map(|w| w.event.dedup_key()).collect();
    let schemes: Vec<&str> = unique.iter().map(|w| w.event.scheme()).collect();
    let delivery_ids: Vec<Option<&str>> = unique.iter().map(|w| w.event.delivery_id()).collect();
    let event_types: Vec<Option<&str>> = unique.iter().map(|w| w.event.event_type()).collect();
    let signed_at: Vec<Option<SystemTime>> = unique.iter().map(|w| w.event.timestamp()).collect();
    let received_at: Vec<SystemTime> = unique.iter().map(|w| w.event.received_at()).collect();
    let key_ids: Vec<&str> = unique.iter().map(|w| w.event.key_id()).collect();
    let headers: Vec<&str> = unique.iter().map(|w| w.headers.as_str()).collect();
    let bodies: Vec<&[u8]> = unique.iter().map(|w| w.event.body().as_ref()).collect();
    let is_test: Vec<bool> = unique.iter().map(|w| w.is_test).collect();
    let ttl = millis(inner.committed_ttl);

    let mut conn = store.conn().await?;
    crate::deliveries::begin_routed(store, &mut conn).await?;
    let rows = conn
        .query(
            &inner.sql.enqueue,
            &[
                &keys,
                &ttl,
                &schemes,
                &delivery_ids,
                &event_types,
                &signed_at,
                &received_at,
                &key_ids,
                &headers,
                &bodies,
                &is_test,
            ],
        )
        .await?;
    crate::deliveries::route_batch(store, &mut conn, &rows, unique.iter().map(|w| &w.event))
        .await?;
    drop(conn);

    let mut stored: HashMap<String, i64> = HashMap::with_capacity(rows.len());
    for row in &rows {
        stored.insert(row.try_get(1)?, row.try_get(0)?);
    }
    Ok(batch
        .iter()
        .enumerate()
        .map(|(index, waiter)| {
            let key = waiter.event.dedup_key();
            match first.get(key) {
                Some(&at) if at == index => stored.get(key).map(|&id| EventId::new(id)),
                // A later copy in the same batch: the first is stored or was a duplicate.
                _ => None,
            }
        })
        .collect())
}

/// Answers each waiter of a written batch.
fn answer(store: &PgStore, batch: Vec<Waiter>, result: Result<Vec<Option<EventId>>, Error>) {
    let batcher = &store.inner.batcher;
    let batch_len = batch.len();
    let events = u64::try_from(batch_len).unwrap_or(u64::MAX);
    batcher.batches.fetch_add(1, Ordering::Relaxed);
    batcher.events.fetch_add(events, Ordering::Relaxed);
    {
        let mut state = batcher.state();
        state.writing = state.writing.saturating_sub(1);
    }
    match result {
        Ok(outcomes) => {
            if outcomes.iter().any(Option::is_some) {
                store.wake_workers();
            }
            for (waiter, outcome) in batch.into_iter().zip(outcomes) {
                let enqueued = match outcome {
                    Some(id) => Enqueued::Stored(id),
                    None => Enqueued::Duplicate,
                };
                // A caller that stopped waiting has its answer dropped.
                let _ = waiter.answer.send(Ok(enqueued));
            }
        }
        Err(err) => {
            batcher.failed_batches.fetch_add(1, Ordering::Relaxed);
            for (waiter, err) in batch.into_iter().zip(share(err, batch_len)) {
                let _ = waiter.answer.send(Err(err));
            }
        }
    }
}

/// One error for each of `count` waiters of a failed batch: the error itself for a lone
/// waiter, otherwise copies of it (a database error, which cannot be copied, becomes an
/// [`Error::Batch`] they share).
pub(crate) fn share(err: Error, count: usize) -> Vec<Error> {
    if count <= 1 {
        return vec![err];
    }
    let err = match err {
        Error::Database(source) => Error::Batch {
            events: count,
            source: Arc::new(source),
        },
        other => other,
    };
    let mut errors: Vec<Error> = std::iter::repeat_with(|| copy(&err))
        .take(count.saturating_sub(1))
        .collect();
    errors.push(err);
    errors
}

fn copy(err: &Error) -> Error {
    match err {
        Error::Batch { events, source } => Error::Batch {
            events: *events,
            source: Arc::clone(source),
        },
        Error::Unavailable(message) => Error::Unavailable(message.clone()),
        Error::Config(message) => Error::Config(message.clone()),
        Error::Corrupt(message) => Error::Corrupt(message.clone()),
        Error::SchemaTooNew { found, supported } => Error::SchemaTooNew {
            found: *found,
            supported: *supported,
        },
        // Made a `Batch` by `share`; kept readable should that change.
        Error::Database(source) => Error::Unavailable(source.to_string()),
    }
}
