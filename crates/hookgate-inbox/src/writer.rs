//! The single writer thread and its group commit.
//!
//! Every write (an enqueue, a lease, a completion, a prune) is a job sent to one thread that
//! owns the writing connection. The thread takes every job that is waiting (up to the batch
//! limit), runs each in its own savepoint inside one `BEGIN IMMEDIATE` transaction, commits
//! once — one fsync with `synchronous=FULL` — and only then answers each job. A job whose
//! own work failed is rolled back to its savepoint without disturbing the others; a failed
//! commit is reported to every job of the batch.
//!
//! While one commit is syncing, new jobs queue up, so the batch grows with the load: one
//! sender gets one fsync per event, 64 concurrent senders share them.
//!
//! A batch holding only worker bookkeeping ([`Durability::Deferred`]: leases, completions,
//! lease renewals and releases) commits without an fsync of its own; the next synced commit or
//! checkpoint makes it durable. Everything else waits for its fsync.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hookgate::Clock;
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{mpsc, oneshot, watch};

use crate::InboxError;
use crate::time::to_millis;

/// Jobs per committed transaction (callers sharing one fsync).
const BATCH_SIZE: &str = "hookgate_inbox_commit_batch_size";
/// Transactions that failed to commit.
const FAILED_COMMITS: &str = "hookgate_inbox_failed_commits_total";

/// One unit of work for the writer thread.
pub(crate) trait Work: Send {
    /// Runs inside the batch's transaction (in a savepoint). Returns whether to keep its
    /// changes.
    fn run(&mut self, conn: &Connection, now_ms: i64) -> bool;

    /// Answers the caller once the batch is committed (or failed to commit).
    fn finish(self: Box<Self>, commit: Result<(), InboxError>);

    /// Whether committing this job can make events available to workers.
    fn wakes_workers(&self) -> bool;

    /// Whether the caller is answered only after an fsync.
    fn durability(&self) -> Durability;
}

/// When a write is durable, as its caller is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// The caller is answered once the commit holding the write is fsynced
    /// (`synchronous=FULL`): dead-letter replays, pruning, everything a user relies on
    /// surviving a power loss.
    Synced,
    /// The caller is answered once the write is committed (`synchronous=NORMAL`: in the
    /// file, so it survives a crash of the process); it is fsynced by the next synced
    /// commit or the next checkpoint, whichever comes first. Only for worker bookkeeping
    /// whose loss in a power failure is already covered by at-least-once processing: a
    /// lease, completion, lease renewal or release that is lost leaves the event due or
    /// leased, and it is handled again.
    Deferred,
}

/// A closure job whose result is answered through a oneshot channel after the commit.
pub(crate) struct Call<T, F> {
    f: Option<F>,
    result: Option<Result<T, InboxError>>,
    reply: oneshot::Sender<Result<T, InboxError>>,
    wakes: bool,
    durability: Durability,
}

impl<T, F> Call<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection, i64) -> Result<T, InboxError> + Send + 'static,
{
    pub(crate) fn job(
        wakes: bool,
        f: F,
    ) -> (Box<dyn Work>, oneshot::Receiver<Result<T, InboxError>>) {
        Self::job_with(wakes, f, Durability::Synced)
    }

    /// A job answered after a commit of the given durability.
    pub(crate) fn job_with(
        wakes: bool,
        f: F,
        durability: Durability,
    ) -> (Box<dyn Work>, oneshot::Receiver<Result<T, InboxError>>) {
        let (reply, rx) = oneshot::channel();
        let call = Call {
            f: Some(f),
            result: None,
            reply,
            wakes,
            durability,
        };
        (Box::new(call), rx)
    }
}

impl<T, F> Work for Call<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection, i64) -> Result<T, InboxError> + Send + 'static,
{
    fn run(&mut self, conn: &Connection, now_ms: i64) -> bool {
        let Some(f) = self.f.take() else {
            return false;
        };
        let result = f(conn, now_ms);
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn finish(self: Box<Self>, commit: Result<(), InboxError>) {
        let answer = match (commit, self.result) {
            (Err(err), _) => Err(err),
            (Ok(()), Some(result)) => result,
            (Ok(()), None) => Err(InboxError::Closed),
        };
        // The caller may have given up waiting (a gate deadline): the write stands anyway.
        let _ = self.reply.send(answer);
    }

    fn wakes_workers(&self) -> bool {
        self.wakes
    }

    fn durability(&self) -> Durability {
        self.durability
    }
}

/// Counters and the wake-up signal shared between the writer thread and the inbox.
pub(crate) struct WriterShared {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) max_batch: usize,
    pub(crate) commits: AtomicU64,
    pub(crate) jobs: AtomicU64,
    pub(crate) largest_batch: AtomicU64,
    pub(crate) failed_commits: AtomicU64,
    /// Bumped after each commit that may have made events due.
    pub(crate) wake: watch::Sender<u64>,
}

impl fmt::Debug for WriterShared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriterShared")
            .field("max_batch", &self.max_batch)
            .field("commits", &self.commits)
            .finish_non_exhaustive()
    }
}

/// Starts the writer thread. It runs until every sender of `rx` is dropped, after
/// finishing the jobs already queued.
pub(crate) fn spawn(
    conn: Connection,
    rx: mpsc::Receiver<Box<dyn Work>>,
    shared: Arc<WriterShared>,
) -> Result<(), InboxError> {
    std::thread::Builder::new()
        .name("hookgate-inbox-writer".to_owned())
        .spawn(move || run(conn, rx, &shared))
        .map(drop)
        .map_err(|err| InboxError::Task(format!("cannot start the writer thread: {err}")))
}

fn run(mut conn: Connection, mut rx: mpsc::Receiver<Box<dyn Work>>, shared: &WriterShared) {
    let mut batch: Vec<Box<dyn Work>> = Vec::new();
    // The connection starts with synchronous=FULL (`schema::open_writer`).
    let mut synced = true;
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < shared.max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        commit_batch(&mut conn, &mut batch, shared, &mut synced);
    }
}

fn commit_batch(
    conn: &mut Connection,
    batch: &mut Vec<Box<dyn Work>>,
    shared: &WriterShared,
    synced: &mut bool,
) {
    let size = u64::try_from(batch.len()).unwrap_or(u64::MAX);
    let now_ms = to_millis(shared.clock.now());
    // A batch of worker bookkeeping only commits without an fsync of its own; any batch
    // with one synced job fsyncs, which also makes every earlier deferred commit durable
    // (the log is fsynced as a whole).
    let sync = batch
        .iter()
        .any(|job| job.durability() == Durability::Synced);
    let outcome = set_synchronous(conn, sync, synced).and_then(|()| run_all(conn, batch, now_ms));
    match &outcome {
        Ok(wake) => {
            #[allow(clippy::cast_precision_loss)]
            metrics::histogram!(BATCH_SIZE).record(size as f64);
            shared.commits.fetch_add(1, Ordering::Relaxed);
            shared.jobs.fetch_add(size, Ordering::Relaxed);
            shared.largest_batch.fetch_max(size, Ordering::Relaxed);
            if *wake {
                shared.wake.send_modify(|generation| {
                    *generation = generation.wrapping_add(1);
                });
            }
        }
        Err(err) => {
            metrics::counter!(FAILED_COMMITS).increment(1);
            shared.failed_commits.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %err, jobs = size, "inbox group commit failed");
        }
    }
    let commit = outcome.map(drop);
    for job in batch.drain(..) {
        job.finish(commit.clone());
    }
}

/// Switches the connection between `synchronous=FULL` and `NORMAL` (in WAL mode: no
/// fsync at commit) when the batch needs the other one.
fn set_synchronous(conn: &Connection, sync: bool, synced: &mut bool) -> Result<(), InboxError> {
    if sync != *synced {
        // Not a cached statement: this pragma takes effect when it is prepared, so a
        // cached copy would change nothing the second time.
        conn.pragma_update(None, "synchronous", if sync { "FULL" } else { "NORMAL" })?;
        *synced = sync;
    }
    Ok(())
}

fn run_all(
    conn: &mut Connection,
    batch: &mut [Box<dyn Work>],
    now_ms: i64,
) -> Result<bool, InboxError> {
    let txn = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut wake = false;
    for job in batch.iter_mut() {
        // Prepared once per connection: a savepoint per job must not cost a parse per job.
        txn.prepare_cached("SAVEPOINT job")?.execute([])?;
        if job.run(&txn, now_ms) {
            wake |= job.wakes_workers();
        } else {
            txn.prepare_cached("ROLLBACK TO job")?.execute([])?;
        }
        txn.prepare_cached("RELEASE job")?.execute([])?;
    }
    txn.commit()?;
    Ok(wake)
}
