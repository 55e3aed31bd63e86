//! # hookgate-postgres
//!
//! Run a fleet of [`hookgate`] receivers on the PostgreSQL database you already have:
//! dedup, queue, event log and dead letters in one database shared by every replica, and
//! no Redis or NATS.
//!
//! - [`PgStore`]: the gate's [sink](hookgate::Sink) and [dedup store](hookgate::DedupStore)
//!   in one: the event and its dedup row are written in one transaction, and the gate
//!   answers 2xx only after PostgreSQL committed it. Dedup keys are unique across replicas
//!   (a primary key), so two replicas receiving the same delivery at once store it once.
//!   Concurrent deliveries share transactions (group commit, see [below](#group-commit)).
//! - [`PgWorker`]: workers in any number of processes, leasing events with
//!   `FOR UPDATE SKIP LOCKED`, woken by `LISTEN/NOTIFY`, running your [`Handler`] at least
//!   once per event with retries (exponential backoff, full jitter) and dead letters; a
//!   crashed worker's events are taken over after the lease. It is the one worker loop of
//!   `hookgate-queue` over a [`PgQueue`].
//! - [`TxHandler`]: or process each event **inside the transaction that marks it
//!   processed**, so that your own writes to the same database happen exactly once.
//! - The event log: [`PgStore::query`] (keyset pages by id) and
//!   [`PgStore::query_by_arrival`] (by arrival, for time windows), [`PgStore::entry`],
//!   [`PgStore::event`] (body and headers), [`PgStore::attempts`],
//!   [`PgStore::status_counts`], [`PgStore::activity_per_minute`],
//!   [`PgStore::dead_letters`], [`PgStore::replay_dead_letters`], [`PgStore::replay`],
//!   [`PgStore::handshakes`], [`PgStore::prune`]. Its types are the store-neutral ones of
//!   [`event_log`], the same as the SQLite inbox's, and the store implements [`EventLog`],
//!   so a tool reads either store alike.
//! - Destinations (fan-out, filters, ordered lanes; issue 21): with
//!   [`PgStoreBuilder::destinations`] each event is routed once, in its enqueue's
//!   transaction, into one delivery per matching destination, and the worker leases
//!   deliveries, the head of each lane only, across replicas ([`PgStore::deliveries`],
//!   [`PgStore::replay_destination`], [`PgStore::pause_destination`]).
//!
//! ## Quick start
//!
//! ```
//! use hookgate::{SchemeId, SignRequest, Signer, Verifier};
//! use hookgate_postgres::{HandlerResult, PgStore, PgWorker, QueuedEvent, Status};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let Some(postgres) = hookgate_testkit::Postgres::start() else { return Ok(()) };
//! # let url = postgres.url();
//! let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
//! // Every replica connects to the same database; the schema is created on first use.
//! let store = PgStore::connect(&url).await?;
//!
//! // The gate, with the store as its dedup store and its sink.
//! let verifier = Verifier::builder(SchemeId::StandardWebhooksV1).secret(secret).build()?;
//! let gate = store.gate(verifier).build()?;
//!
//! // Workers (in these processes or others) run your handler on every stored event.
//! let worker = PgWorker::builder(&store, |event: QueuedEvent| async move {
//!     println!("{:?}: {}", event.event_type(), String::from_utf8_lossy(event.body()));
//!     HandlerResult::Ok
//! })
//! .start()?;
//!
//! // In your HTTP handler: the request's headers and raw body (here signed locally).
//! let delivery = Signer::new(SchemeId::StandardWebhooksV1, secret)?
//!     .sign(&SignRequest::new(r#"{"type":"invoice.paid"}"#).id("msg_1"))?;
//! let outcome = gate.receive(&delivery.headers, delivery.body.clone(), None).await;
//! // 200 only now that PostgreSQL committed the event.
//! assert_eq!((outcome.status(), outcome.code()), (200, "accepted"));
//! let again = gate.receive(&delivery.headers, delivery.body.clone(), None).await;
//! assert_eq!((again.status(), again.code()), (200, "duplicate"));
//!
//! # while store.status_counts().await?.processed == 0 {
//! #     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
//! # }
//! worker.shutdown().await;
//! assert_eq!(store.status_counts().await?.get(Status::Processed), 1);
//! # Ok(())
//! # }
//! ```
//!
//! ## Exactly-once effects: process inside the transaction
//!
//! A plain handler runs at least once: a crash after its side effect but before the
//! event is marked processed runs it again. When the side effect is a write to the same
//! database, a [`TxHandler`] removes that window: it gets the transaction that will mark
//! the event processed, and its writes commit with that mark or not at all. A handler
//! whose lease was taken over (it was too slow, its process stalled) is rolled back, so
//! of all the calls for an event, exactly one commits.
//!
//! ```
//! use hookgate::{SchemeId, SignRequest, Signer, Verifier};
//! use hookgate::BoxFuture;
//! use hookgate_postgres::{HandlerResult, PgStore, PgTransaction, PgWorker, QueuedEvent, TxHandler};
//!
//! /// Books each paid invoice in the application's own table.
//! struct BookPayment;
//!
//! impl TxHandler for BookPayment {
//!     fn handle<'a>(
//!         &'a self,
//!         event: QueuedEvent,
//!         tx: &'a PgTransaction<'a>,
//!     ) -> BoxFuture<'a, HandlerResult> {
//!         Box::pin(async move {
//!             let booked = tx
//!                 .client()
//!                 .execute(
//!                     "INSERT INTO ledger (dedup_key, body) VALUES ($1, $2)",
//!                     &[&event.dedup_key(), &event.body().as_ref()],
//!                 )
//!                 .await;
//!             match booked {
//!                 Ok(_) => HandlerResult::Ok,
//!                 Err(err) => HandlerResult::retry_because(err),
//!             }
//!         })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let Some(postgres) = hookgate_testkit::Postgres::start() else { return Ok(()) };
//! # let url = postgres.url();
//! # let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
//! // The store lives in the application's database, in a schema of its own.
//! let store = PgStore::connect(&format!("{url}?schema=webhooks")).await?;
//! # let (app, connection) = hookgate_postgres::tokio_postgres::connect(&url, hookgate_postgres::tokio_postgres::NoTls).await?;
//! # tokio::spawn(connection);
//! # app.batch_execute("CREATE TABLE ledger (dedup_key text PRIMARY KEY, body bytea)").await?;
//! let worker = PgWorker::transactional(&store, BookPayment).start()?;
//! # let gate = store.gate(Verifier::builder(SchemeId::StandardWebhooksV1).secret(secret).build()?).build()?;
//! # let delivery = Signer::new(SchemeId::StandardWebhooksV1, secret)?
//! #     .sign(&SignRequest::new(r#"{"type":"invoice.paid"}"#).id("msg_1"))?;
//! # assert!(gate.receive(&delivery.headers, delivery.body.clone(), None).await.is_success());
//! # while store.status_counts().await?.processed == 0 {
//! #     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
//! # }
//! # let booked: i64 = app.query_one("SELECT count(*) FROM ledger", &[]).await?.get(0);
//! # assert_eq!(booked, 1);
//! worker.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! [`tx_handler`] turns a closure into a [`TxHandler`].
//!
//! ## Failure behaviour
//!
//! - **Fail closed.** While PostgreSQL is down or unreachable, the sink fails and the gate
//!   answers 503 with `Retry-After` (`sink_unavailable`, or `timeout` if the gate's
//!   deadline passes first). The events of a batch and their dedup rows are one
//!   statement, so nothing is half-written (an error fails every enqueue of the batch);
//!   the sender's retry is accepted once the database is back.
//! - **Reconnects by itself.** Connections come from a small pool; a broken one is
//!   dropped and the next call connects again. The worker's listening connection is
//!   remade with backoff; until then the worker polls.
//! - **At least once.** A `COMMIT` whose answer is lost to a broken connection leaves the
//!   gate answering 503 for an event that may be stored: the sender's retry is then
//!   answered `duplicate`. Plain handlers may run more than once for an event (crashes,
//!   expired leases): deduplicate on [`QueuedEvent::dedup_key`], or use a [`TxHandler`].
//! - **Durability** is PostgreSQL's: with the default `synchronous_commit = on`, a
//!   committed event is in the server's fsynced WAL. With synchronous replication it is
//!   also on the standbys you configured.
//! - **The worker's bookkeeping is durable a little later.** A lease, a result, a lease
//!   renewal and a give-back commit with `synchronous_commit = off` for their own
//!   transaction: they do not wait for the WAL flush, which PostgreSQL's WAL writer does
//!   within about three `wal_writer_delay`s (600 ms by default). Only a crash or power
//!   loss of the *server* in that window can undo one, and then the event is due or
//!   leased again and handled again, as at-least-once processing already allows (an
//!   attempt may go uncounted). The enqueue, replays, pruning and a [`TxHandler`]'s
//!   transaction (the handler's writes and the event's result) wait for the flush.
//!
//! ## Group commit
//!
//! A commit waits for PostgreSQL's WAL flush, and on a busy store one statement and one
//! commit per delivery makes the database's per-transaction work, not the disk, the
//! limit. So [`PgStore::enqueue`] batches: while a batch is being written, the deliveries
//! that arrive wait in a queue, and the next batch writes them all with one statement
//! (`INSERT … SELECT FROM unnest(…)`, prepared once per connection) and one `COMMIT`. At
//! most [`PgStoreBuilder::batch_writers`] batches (default 2) are written at once, each at
//! most [`PgStoreBuilder::max_batch`] events (default 256); nothing waits for a batch to
//! fill, so a lone delivery is written at once. Every delivery is still answered on its
//! own and only after its batch committed: a copy of a delivery in the same batch is a
//! duplicate of the first, replicas' batches sharing keys wait for each other (keys are
//! inserted in one order, so they cannot deadlock), and an error fails exactly the
//! deliveries of its batch. [`PgStore::enqueue_stats`] counts batches and events. It
//! needs no server setting (such as `commit_delay`).
//!
//! A worker's results are written the same way: the results of the handlers that finish
//! while one round of results is being written share the next statement and transaction
//! (each handler's result still answered on its own, `false` if its lease was taken
//! over). A failed round fails all its results, and their events are handled again once
//! their leases expire. In a store with destinations, the round's deliveries and the
//! summaries of their events share the transaction.
//!
//! ## Schema
//!
//! hookgate creates and migrates its tables itself, in one schema (default `hookgate`,
//! or `?schema=` / [`PgStoreBuilder::schema`]), so it can share the application's
//! database. Migrations are versioned in `<schema>.schema_migrations` and applied in one
//! transaction under an advisory lock, so replicas starting together migrate once; a
//! build older than the database's schema refuses to start ([`Error::SchemaTooNew`]).
//!
//! | table | holds |
//! |---|---|
//! | `events` | every event: body, headers, status, attempts, next due time or lease end, last error |
//! | `dedup` | one row per dedup key until the horizon (72 h): a live claim, or the stored event |
//! | `attempts` | the attempt history the event log shows |
//! | `handshakes` | the provider URL handshakes the gate answered (when, scheme, kind, key id), until the retention |
//! | `deliveries` | with [`PgStoreBuilder::destinations`]: one row per event and matching destination (status, attempts, due time or lease end, last error, lane key) |
//! | `destination_pauses` | the destinations paused ([`PgStore::pause_destination`]), for every replica |
//! | `schema_migrations` | the migrations applied |
//!
//! After each stored event the store notifies the channel `<schema>_events`, outside the
//! event's transaction and coalesced (at most one notification per 5 ms per store).
//!
//! ## URLs
//!
//! [`PgStore::connect`] takes a `postgres://` URL whose query may carry hookgate's
//! settings (`schema`, `pool_size`, `claim_ttl_ms`, `committed_ttl_ms`, `retention_ms`,
//! `max_batch`, `batch_writers`: [`URL_SETTINGS`])
//! next to `tokio-postgres`'s own (`connect_timeout`, default 5 s; `application_name`,
//! default `hookgate`). TLS is not enabled in this build: reach the database over a
//! private network or a local proxy.
//!
//! ## Requirements
//!
//! PostgreSQL 11 or later.

mod batch;
mod deliveries;
mod error;
mod log;
mod pool;
mod results;
mod schema;
mod store;
mod url;
mod worker;

pub use batch::{DEFAULT_BATCH_WRITERS, DEFAULT_MAX_BATCH, EnqueueStats, MAX_BATCH_BYTES};
pub use deliveries::Delivery;
pub use error::Error;
pub use hookgate_queue::event_log::{self, EventLog};
pub use hookgate_queue::{
    ENVELOPE_VERSION, Envelope, EnvelopeError, Handler, HandlerResult, QueuedEvent, RetryPolicy,
    ShutdownReport, WorkerStats,
};
pub use log::{
    ArrivalCursor, Attempt, DEFAULT_LOG_LIMIT, EventId, HandshakeRecord, LogEntry, LogQuery,
    MAX_ACTIVITY_RANGE, MAX_LOG_LIMIT, MinuteActivity, PruneReport, Replay, Status, StatusCounts,
};
pub use store::{
    DEFAULT_POOL_SIZE, DEFAULT_QUERY_TIMEOUT, DEFAULT_RETENTION, DEFAULT_SCHEMA, Enqueued, PgStore,
    PgStoreBuilder, TestFilter, URL_SETTINGS,
};
pub use tokio_postgres;
pub use url::DEFAULT_CONNECT_TIMEOUT;
pub use worker::{
    DEFAULT_CONCURRENCY, DEFAULT_LEASE, DEFAULT_POLL_INTERVAL, DEFAULT_PRUNE_INTERVAL,
    DEFAULT_SHUTDOWN_GRACE, PgQueue, PgTransaction, PgWorker, PgWorkerBuilder, PgWorkerHandle,
    TxFn, TxHandler, tx_handler,
};
