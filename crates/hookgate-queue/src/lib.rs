//! # hookgate-queue
//!
//! Backend-neutral processing for hookgate: the handler interface, the retry policy, the
//! dead-letter rules and **the one worker loop**, over a small [`Queue`] trait that each
//! backend implements:
//!
//! | backend | queue | worker name | event |
//! |---|---|---|---|
//! | SQLite inbox (`hookgate-inbox`) | `InboxQueue` | `Worker` | `InboxEvent` |
//! | Redis Streams (`hookgate-redis`) | `StreamQueue` | `StreamWorker` | [`QueuedEvent`] |
//! | NATS JetStream (`hookgate-nats`) | `JetStreamQueue` | `JetStreamWorker` | [`QueuedEvent`] |
//! | PostgreSQL (`hookgate-postgres`) | `PgQueue` | `PgWorker` | [`QueuedEvent`] |
//!
//! It also holds the [`event_log`] model (one [`LogQuery`](event_log::LogQuery), one
//! [`LogEntry`](event_log::LogEntry), one [`EventLog`](event_log::EventLog) trait over every
//! store that keeps an event log: the SQLite inbox and PostgreSQL) and the destination
//! model of issue 21 (config, filters, router, rate, concurrency, circuit breaker, ordered
//! lanes).
//!
//! This crate depends on no backend; the backends depend on it, and never on each other.
//!
//! - [`Worker`], [`WorkerBuilder`], [`WorkerHandle`]: the loop and its one builder
//!   (concurrency, prefetch, batch size, lease, poll interval, retry policy, handler
//!   timeout, shutdown grace), with graceful shutdown ([`ShutdownReport`]), counters
//!   ([`WorkerStats`]), metrics and tracing.
//! - [`Handler`]: the user's processing, answering a [`HandlerResult`], retried with a
//!   [`RetryPolicy`] (exponential backoff with full jitter, then dead letters).
//! - [`Queue`]: lease a batch (with a lease duration, taken over when it expires), wait for
//!   new work without hard polling, renew, complete, retry at a time, dead, release at
//!   shutdown.
//! - [`Envelope`]: the stable, versioned JSON document a verified event travels as through
//!   Redis and JetStream (its format is documented on the type); a consumer in another
//!   language reads it directly.
//!
//! ## One event type per queue
//!
//! A queue names what its handler receives ([`Queue::Event`]), and [`Handler`] is generic
//! over it: the SQLite inbox hands over its `InboxEvent` (with its numeric id and test
//! flag), the other queues a [`QueuedEvent`] (the [`Envelope`] plus the queue's id and the
//! attempt). Both have the same accessors (`dedup_key`, `scheme`, `delivery_id`,
//! `event_type`, `timestamp`, `received_at`, `key_id` or `id`, `body`, `headers`,
//! `attempt`), so a handler body reads the same whichever backend feeds it, and one type
//! can implement `Handler<InboxEvent>` and `Handler<QueuedEvent>` alike. Closures work
//! unchanged: `|event: QueuedEvent| async move { … }`.
//!
//! ## Dead letters and replay
//!
//! The loop decides *when* a delivery is dead (a permanent failure, the attempts run out,
//! or handed out more often than allowed); the queue stores it ([`Queue::dead`]). Listing
//! and replaying dead letters stays with each backend's own API (`Inbox::dead_letters`
//! and `replay_dead_letters`, `StreamDeadLetters`, `JetStreamDeadLetters`,
//! `PgStore::replay_dead_letters`; `hookgate inbox replay` and `hookgate dead-letters` on
//! the command line): their storage differs too much (rows, a stream, a subject) for one
//! signature to fit, and a replayed delivery is simply due again for the next lease.
//!
//! ## Your own queue
//!
//! ```
//! use std::collections::VecDeque;
//! use std::sync::Mutex;
//! use std::time::{Duration, SystemTime};
//!
//! use hookgate::BoxFuture;
//! use hookgate_queue::{
//!     AttemptRecord, HandlerResult, LeaseResult, Leased, Queue, QueueEvent, Worker,
//! };
//!
//! /// A queue of strings in memory (lost on restart; no leases to expire).
//! #[derive(Default)]
//! struct Strings {
//!     due: Mutex<VecDeque<(u32, String)>>,
//!     done: Mutex<Vec<String>>,
//! }
//!
//! struct Text(String);
//!
//! impl QueueEvent for Text {
//!     fn scheme(&self) -> &str { "text" }
//!     fn delivery_id(&self) -> Option<&str> { None }
//!     fn event_type(&self) -> Option<&str> { None }
//! }
//!
//! impl Queue for Strings {
//!     type Event = Text;
//!     type Ticket = String;
//!     type Error = std::convert::Infallible;
//!
//!     fn lease(&self, max: usize, _lease: Duration, _wait: Duration)
//!         -> BoxFuture<'_, LeaseResult<Self>> {
//!         let mut due = self.due.lock().unwrap();
//!         let n = max.min(due.len());
//!         let batch = due.drain(..n).map(|(attempts, text)| {
//!             Leased::new(text.clone(), text.clone(), attempts + 1, Text(text))
//!         });
//!         let batch: Vec<_> = batch.collect();
//!         Box::pin(async move { Ok(batch) })
//!     }
//!     fn renew(&self, _: Vec<String>, _: Duration) -> BoxFuture<'_, Result<(), Self::Error>> {
//!         Box::pin(async { Ok(()) })
//!     }
//!     fn complete(&self, text: String, _: AttemptRecord) -> BoxFuture<'_, Result<bool, Self::Error>> {
//!         self.done.lock().unwrap().push(text);
//!         Box::pin(async { Ok(true) })
//!     }
//!     fn retry(&self, text: String, a: AttemptRecord, _at: SystemTime, _error: String)
//!         -> BoxFuture<'_, Result<bool, Self::Error>> {
//!         self.due.lock().unwrap().push_back((a.attempt, text));
//!         Box::pin(async { Ok(true) })
//!     }
//!     fn dead(&self, _: String, _: AttemptRecord, _reason: String)
//!         -> BoxFuture<'_, Result<bool, Self::Error>> {
//!         Box::pin(async { Ok(true) })
//!     }
//!     fn release(&self, tickets: Vec<String>) -> BoxFuture<'_, Result<u64, Self::Error>> {
//!         let n = u64::try_from(tickets.len()).unwrap_or(u64::MAX);
//!         self.due.lock().unwrap().extend(tickets.into_iter().map(|t| (0, t)));
//!         Box::pin(async move { Ok(n) })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let queue = Strings::default();
//! queue.due.lock().unwrap().push_back((0, "hello".to_owned()));
//! let worker = Worker::<Strings>::builder(queue, |text: Text| async move {
//!     println!("{}", text.0);
//!     HandlerResult::Ok
//! })
//! .start()?;
//! while worker.stats().processed == 0 {
//!     tokio::task::yield_now().await;
//! }
//! worker.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! ## Destinations
//!
//! An endpoint may declare several destinations (issue 21; see the `route` items:
//! [`DestinationConfig`], [`Router`], [`DestinationGates`]). A queue with destinations
//! stores one delivery per event and matching destination, says on each [`Leased`] which
//! destination it goes to and its lane key ([`Leased::with_destination`]), skips held
//! destinations in [`Queue::lease_except`], hands out only the head of each lane, and
//! reports its paused destinations ([`Queue::paused`]). The loop, given the destinations
//! with [`WorkerBuilder::destinations`], checks each delivery against its destination's
//! pause, circuit breaker, lane, concurrency cap and rate limit before starting it (in
//! the one place that picks what starts next), gives
//! back uncounted what may not start, retries with each destination's own policy, and
//! keeps the gauges. One held destination never holds up another.

mod envelope;
mod event;
pub mod event_log;
mod handler;
mod queue;
mod result;
mod retry;
mod route;
mod runner;
mod stats;
mod worker;

pub use envelope::{ENVELOPE_VERSION, Envelope, EnvelopeError};
pub use event::QueuedEvent;
pub use handler::Handler;
pub use queue::{AttemptRecord, Defaults, LeaseResult, Leased, Queue, QueueEvent};
pub use result::HandlerResult;
pub use retry::{DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY_BASE, DEFAULT_RETRY_CAP, RetryPolicy};
pub use route::*;
pub use runner::{ATTEMPTS_METRIC, ConfigError, PROCESS_SECONDS_METRIC};
pub use stats::{ShutdownReport, WorkerStats};
pub use worker::{
    DEFAULT_CONCURRENCY, DEFAULT_HANDLER_TIMEOUT, DEFAULT_LEASE, DEFAULT_POLL_INTERVAL,
    DEFAULT_SHUTDOWN_GRACE, DESTINATION_ATTEMPTS_METRIC, DESTINATION_PAUSED_METRIC, Worker,
    WorkerBuilder, WorkerHandle,
};
