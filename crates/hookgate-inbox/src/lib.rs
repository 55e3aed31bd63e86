//! # hookgate-inbox
//!
//! The embedded durable inbox for [`hookgate`]: a SQLite database that makes "answer 2xx only
//! after the event is durably stored" true on one machine, and a worker that processes the
//! stored events reliably afterwards.
//!
//! One [`Inbox`] is at once
//! - a **sink** for the gate: [`Inbox::enqueue`] returns only after the event is synced to
//!   the inbox's append-only log, from which it reaches the database moments later;
//! - a **dedup store**: the event and its dedup entry are one record of the log, so there
//!   is never one without the other;
//! - the **queue** a [`Worker`] drains, running your async [`Handler`] at least once per
//!   event, with retries, dead letters and graceful shutdown (the one worker loop of
//!   `hookgate-queue`, over an [`InboxQueue`]; a handler here is a
//!   `Handler<InboxEvent>`);
//! - an **event log** you can query ([`Inbox::query`]): what arrived, when, from which
//!   scheme, with what status, how long it took and what went wrong. Its types are the
//!   store-neutral ones of [`event_log`] (re-exported here), and the inbox implements
//!   [`EventLog`], as the PostgreSQL store does, so a tool reads either alike.
//!
//! ## Quick start
//!
//! ```
//! use hookgate::{SchemeId, SignRequest, Signer, Verifier};
//! use hookgate_inbox::{HandlerResult, Inbox, InboxEvent, Status, Worker};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
//! let inbox = Inbox::open(dir.path().join("inbox.db"))?;
//!
//! // The gate, with the inbox as its dedup store and its sink.
//! let verifier = Verifier::builder(SchemeId::StandardWebhooksV1).secret(secret).build()?;
//! let gate = inbox.gate(verifier).build()?;
//!
//! // The worker runs your handler on every stored event, at least once.
//! let worker = Worker::builder(inbox.clone(), |event: InboxEvent| async move {
//!     println!("{:?}: {}", event.event_type(), String::from_utf8_lossy(event.body()));
//!     HandlerResult::Ok // or HandlerResult::retry(), HandlerResult::fail(..), an Err
//! })
//! .start()?;
//!
//! // In your HTTP handler: the request's headers and raw body (here signed locally).
//! let delivery = Signer::new(SchemeId::StandardWebhooksV1, secret)?
//!     .sign(&SignRequest::new(r#"{"type":"invoice.paid"}"#).id("msg_1"))?;
//! let outcome = gate.receive(&delivery.headers, delivery.body.clone(), None).await;
//! // 200 only now that the event is synced to disk.
//! assert_eq!((outcome.status(), outcome.code()), (200, "accepted"));
//! // The sender's retry is acknowledged without a second copy.
//! let again = gate.receive(&delivery.headers, delivery.body.clone(), None).await;
//! assert_eq!((again.status(), again.code()), (200, "duplicate"));
//!
//! # while inbox.status_counts().await?.processed == 0 {
//! #     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
//! # }
//! // On shutdown: stop taking events, let running handlers finish, release the rest.
//! worker.shutdown().await;
//! assert_eq!(inbox.status_counts().await?.get(Status::Processed), 1);
//! # Ok(())
//! # }
//! ```
//!
//! Without the gate, [`Inbox::enqueue`] stores a [`VerifiedEvent`](hookgate::VerifiedEvent)
//! directly and says whether it was new ([`Enqueued`]).
//!
//! ## Durability guarantees
//!
//! An enqueued event is first appended to the inbox's **segment log**, a directory beside
//! the database (`inbox.db-log/` for `inbox.db`): [`Inbox::enqueue`] returns `Ok` only after
//! the `fdatasync` covering its record returned, so an event whose enqueue returned `Ok`
//! survives a killed process, an OS crash and a power cut, as far as the disk honours its
//! flushes. Segments are preallocated (zero-filled and synced, their directory synced)
//! before a record goes in, so the sync of a record never depends on file-system metadata
//! that was not already durable. Each record carries a CRC-32 over its bytes and its
//! segment's number; opening the inbox reads the log up to the first record that is torn
//! or fails its checksum, and applies to the database what the database does not have yet.
//!
//! The database (WAL mode) keeps everything else. A background applier moves records from
//! the log into it in large transactions that are not fsynced on their own: until a record
//! is in the database the log is its durable copy, and after a crash the applier replays
//! from its checkpoint (stored in the same transactions). Segments are reused or deleted
//! once what they hold is applied and fsynced. Workers and queries see an event once it is
//! applied, normally within milliseconds (the applier collects for up to 2 ms); a query
//! or a replay made after an enqueue returned waits for that enqueue's event (up to 5 s,
//! if the database is stuck). A worker's lease does not wait: it takes what is applied,
//! and the applier wakes the worker after each of its commits.
//!
//! What it does not give:
//! - protection against a disk that lies about fsync (some consumer drives and virtual
//!   disks with write caching), or against losing the disk itself — replicate or back up
//!   the file (`VACUUM INTO`, Litestream) for that;
//! - sharing over a network file system: SQLite's locking is unreliable there, and WAL
//!   needs shared memory; keep the file on a local disk;
//! - several processes taking events into one inbox: the first to open it holds its log
//!   (a lock file); another open inbox — `hookgate inbox` while `hookgate serve` runs —
//!   can query, replay and run workers, and its enqueues fail with
//!   [`InboxError::NotTheWriter`];
//! - exactly-once processing: a handler can be run again for an event it already handled
//!   (after a crash, an expired lease or a lost result), so handlers must be idempotent.
//!
//! **Group commit.** Enqueues queue for the log's writer thread, which takes every one
//! waiting (up to [`InboxBuilder::max_batch`]), writes them with one write and one
//! `fdatasync`; what arrives meanwhile waits for the next batch. Each caller is answered
//! only after the sync that covers its record, so sharing a sync never weakens the
//! guarantee; it lets throughput grow with concurrency.
//! [`Inbox::stats`] shows syncs and batch sizes.
//!
//! **Dedup keys in memory.** The inbox that holds the log keeps every live dedup key (a
//! 16-byte digest) in memory, rebuilt from the database when it opens: an enqueue decides
//! "new or duplicate" without reading the database, and a key is durable with its event's
//! record. A retry after a restart, or after a crash between the append and the apply, is
//! still answered `duplicate`.
//!
//! **Worker bookkeeping is durable a little later.** A worker's leases, completions, lease
//! renewals and releases are committed without an fsync of their own. A commit is in the
//! file once it returns, so it survives a crash of the process: an attempt cut short by a
//! crash counts, and an event that crashes the process every time still reaches its dead
//! letter. The next fsynced commit (a replay, an apply that frees a log segment) or the
//! checkpoint thread's next checkpoint (within 10 ms while the inbox is busy, a second
//! when idle) makes them durable against a power loss; a power loss before that loses
//! only the newest of them, which leaves those events due or leased: they are handled
//! again, as at-least-once processing allows anyway (an attempt in progress at the power
//! loss may then go uncounted).
//!
//! **Storage layout.** In the database, what arrived (body, headers, the fields the log
//! shows) is written once and never rewritten; the small mutable state (status, attempts,
//! lease, due time, last error) lives in a row of its own, which is all a lease or a completion updates.
//! Dedup keys are 16-byte digests of the dedup key, kept in the stored event's state row
//! (no random-keyed write per event); keys without an event have a table of their own.
//! Checkpoints run on a thread of their own. Files written by an earlier version are migrated when opened.
//!
//! ## Status lifecycle
//!
//! ```text
//!                 lease                success
//!  received ───────────────▶ processing ─────────▶ processed ──(retention)──▶ pruned
//!  queued   ───────────────▶     │  ▲
//!  failed   ──(backoff due)─▶    │  └──(lease expired: crash)── processing
//!     ▲                          │
//!     └──────── retry ───────────┤
//!                                ├── permanent failure / attempts exhausted ──▶ dead
//!                                └── released at shutdown ──▶ queued
//!  dead ──(replay)──▶ queued
//! ```
//!
//! - [`Status::Received`]: stored, not attempted yet.
//! - [`Status::Processing`]: leased by a worker; the lease is renewed while the handler runs
//!   and expires if the process dies, after which the event is taken again.
//! - [`Status::Failed`]: an attempt failed; the next is scheduled.
//! - [`Status::Queued`]: given back without failing (released at shutdown, or replayed from
//!   the dead letters).
//! - [`Status::Processed`]: done; pruned after the retention ([`DEFAULT_RETENTION`]).
//! - [`Status::Dead`]: a permanent failure or the attempts ran out; listed by
//!   [`Inbox::dead_letters`] and put back by [`Inbox::replay_dead_letters`].
//!
//! ## Destinations
//!
//! Opened with [`InboxBuilder::destinations`], the inbox routes each event once, on
//! receive: the deliveries (one per destination whose filter takes the event, with its
//! lane key) travel in the event's own log record, so they are as durable as the event
//! before the 2xx, and are applied as rows of their own. An event no destination takes
//! is stored as [`Status::Filtered`]. A [`Worker`] given the same destinations
//! (`WorkerBuilder::destinations`) then leases deliveries, each with its own status,
//! attempts, retries, dead letter and replay ([`Inbox::deliveries`],
//! [`Inbox::replay_destination`], [`Inbox::dead_deliveries`],
//! [`Inbox::delivery_counts`]); the event's own status sums them up. For an ordered
//! destination only the oldest unfinished delivery of each lane key is handed out.
//! [`Inbox::pause_destination`] holds a destination for every worker of the file, in any
//! process. See `docs/DESTINATIONS.md`.
//!
//! ## Retry policy defaults
//!
//! Exponential backoff with full jitter ([`RetryPolicy`]): after the `n`-th failed attempt
//! the next waits a random time in `[0, min(1 h, 1 s × 2ⁿ⁻¹)]`; after 12 attempts the event
//! is a dead letter. A handler can ask for a specific delay
//! ([`HandlerResult::retry_after`]). A panic or a timeout (5 minutes by default) counts as
//! a failed attempt; so does an attempt cut short by a crash.
//!
//! ## Other defaults
//!
//! | setting | default |
//! |---|---|
//! | dedup entry lifetime ([`InboxBuilder::committed_ttl`]) | 72 hours |
//! | uncommitted claim lifetime ([`InboxBuilder::claim_ttl`]) | 30 seconds |
//! | processed-event retention ([`InboxBuilder::retention`]) | 7 days |
//! | dead letters | kept until replayed |
//! | pruning interval ([`InboxBuilder::prune_interval`]) | 10 minutes |
//! | worker concurrency / lease / poll interval | 8 / 30 s / 1 s |
//!
//! ## Group commit in numbers
//!
//! [`Inbox::stats`] counts the log's syncs and the events they held
//! ([`InboxStats::average_log_batch`] is the number of enqueues that shared each
//! `fdatasync`), the database's commits and jobs, and the events not applied yet. The knobs
//! are [`InboxBuilder::max_batch`] (1 turns group commit off, for comparison),
//! [`InboxBuilder::queue_capacity`] (back-pressure: past it, or past four times as many
//! events not yet applied, the gate answers 503 `sink_full`) and
//! [`InboxBuilder::segment_size`]. Metrics: `hookgate_inbox_log_batch_size` and
//! `hookgate_inbox_commit_batch_size` (histograms),
//! `hookgate_inbox_failed_commits_total`, and from the worker
//! `hookgate_process_attempts_total` and `hookgate_process_duration_seconds` (labels
//! `scheme`, `outcome`); its spans are `webhook.process`.
//!
//! ## Ordering
//!
//! Providers deliver out of order. [`AggregateVersions`] keeps the highest version (or
//! timestamp) applied per aggregate so a handler can skip an event older than what it
//! already applied.

mod activity;
mod applier;
mod arrival;
mod checkpoint;
mod dead;
mod dedup;
mod deliveries;
mod digest;
mod error;
mod event;
mod handshakes;
mod inbox;
mod journal;
mod keys;
mod log;
mod ordering;
mod queue;
mod schema;
mod segment;
mod sink;
mod time;
mod worker;
mod writer;

pub use activity::{MAX_ACTIVITY_RANGE, MinuteActivity};
pub use dead::Replay;
pub use deliveries::Delivery;
pub use error::InboxError;
pub use event::{EventId, InboxEvent, Status};
pub use handshakes::HandshakeRecord;
pub use hookgate::BoxFuture;
pub use hookgate_queue::event_log::{self, ArrivalCursor, EventLog};
pub use inbox::{
    DEFAULT_CLAIM_TTL, DEFAULT_COMMITTED_TTL, DEFAULT_MAX_BATCH, DEFAULT_PRUNE_INTERVAL,
    DEFAULT_QUEUE_CAPACITY, DEFAULT_RETENTION, DEFAULT_SEGMENT_SIZE, Enqueued, Inbox, InboxBuilder,
    InboxStats, PruneReport, TestFilter,
};
pub use log::{Attempt, DEFAULT_LOG_LIMIT, LogEntry, LogQuery, MAX_LOG_LIMIT, StatusCounts};
pub use ordering::{Advance, AggregateVersions};
pub use worker::{
    DEFAULT_CONCURRENCY, DEFAULT_HANDLER_TIMEOUT, DEFAULT_LEASE, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_POLL_INTERVAL, DEFAULT_RETRY_BASE, DEFAULT_RETRY_CAP, DEFAULT_SHUTDOWN_GRACE, Handler,
    HandlerResult, InboxQueue, InboxTicket, RetryPolicy, ShutdownReport, Worker, WorkerBuilder,
    WorkerHandle, WorkerStats,
};
