//! # hookgate-nats
//!
//! Run a fleet of [`hookgate`] receivers on NATS JetStream: every replica publishes the
//! events it accepts to one stream, and workers on any machine pull them.
//!
//! - [`JetStreamSink`]: the [sink](hookgate::Sink). Publishes the
//!   [envelope](hookgate_queue::Envelope) (the stable JSON shared with the Redis backend)
//!   with `Nats-Msg-Id` = the dedup key, so JetStream drops a second copy within its
//!   duplicate window, and answers only after JetStream's publish ack. The stream is
//!   created (file storage, work-queue retention) or checked at start-up.
//! - [`JetStreamWorker`]: a durable pull consumer running your [`Handler`] at least once per
//!   event: ack, nak with the backoff delay, term after publishing to a dead-letter subject;
//!   a dead consumer's messages are redelivered after the lease (`ack_wait`). It is the one
//!   worker loop of `hookgate-queue` over a [`JetStreamQueue`], which holds the stream's
//!   settings.
//! - [`JetStreamDeadLetters`]: list the dead letters and replay them onto the stream.
//!
//! ## Quick start
//!
//! ```no_run
//! use hookgate::{Gate, MemoryDedupStore, SchemeId, Verifier};
//! use hookgate_nats::{HandlerResult, JetStreamQueue, JetStreamSink, JetStreamWorker, QueuedEvent};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // On every receiver replica:
//! let verifier = Verifier::builder(SchemeId::StandardWebhooksV1)
//!     .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
//!     .build()?;
//! let gate = Gate::builder(verifier)
//!     // A shared store (hookgate-redis) dedups over the whole retry horizon; JetStream's
//!     // Nats-Msg-Id window covers copies racing on different replicas meanwhile.
//!     .dedup(MemoryDedupStore::new())
//!     .sink(JetStreamSink::connect("nats://10.0.0.7:4222/?stream=WEBHOOKS&subject=webhooks.in").await?)
//!     .build()?;
//!
//! // On every consumer machine:
//! let queue = JetStreamQueue::connect("nats://10.0.0.7:4222/?stream=WEBHOOKS&subject=webhooks.in").await?;
//! let worker = JetStreamWorker::builder(queue, |event: QueuedEvent| async move {
//!     println!("{} attempt {}", event.dedup_key(), event.attempt());
//!     HandlerResult::Ok
//! })
//! .start()?;
//! worker.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! ## Failure behaviour
//!
//! - **Fail closed.** No publish ack within the ack timeout (2 s by default): NATS down,
//!   JetStream unavailable, no stream for the subject. The enqueue fails and the gate
//!   answers 503 with `Retry-After`, releasing its dedup claim. A publish that did reach
//!   JetStream but whose ack was lost is stored once: the sender's retry carries the same
//!   `Nats-Msg-Id`.
//! - **Reconnects by itself**: the `async-nats` client reconnects in the background for as
//!   long as it takes; no restart is needed.
//! - **At least once**: a handler can see an event again (a consumer died after the handler
//!   succeeded but before the ack reached JetStream, or a copy arrived after the duplicate
//!   window): deduplicate on [`QueuedEvent::dedup_key`].
//!
//! ## URLs
//!
//! | constructor | query parameters |
//! |---|---|
//! | [`JetStreamSink::connect`] | `stream`, `subject`, `duplicate_window_ms`, `ack_timeout_ms` |
//! | [`JetStreamQueue::connect`] | `stream`, `subject`, `consumer`, `dead_subject`, `dead_stream` |
//! | [`JetStreamDeadLetters::connect`] | `stream`, `subject`, `dead_stream` (`consumer` ignored) |
//!
//! ## Destinations
//!
//! An endpoint with destinations (issue 21: `[[endpoint.destination]]` in `hookgate serve`,
//! [`hookgate_queue::Router`] in Rust) gives the sink
//! ([`JetStreamSinkBuilder::destinations`]) and the queue
//! ([`JetStreamQueueBuilder::destinations`]) the same destinations:
//!
//! | what | where |
//! |---|---|
//! | one copy per matching destination, the envelope naming it | subject `<subject>.<destination>`, `Nats-Msg-Id` `<dedup key>@<destination>`; the stream captures `<subject>.*` |
//! | one durable consumer per destination | `<consumer>_<destination>`, filtered on its subject |
//! | its dead letters | subject `<dead subject>.<destination>` in `<stream>_DEAD` (which captures `<dead subject>.*`) |
//! | paused destinations | one message each on `hookgate.paused.<stream>.<destination>` in the stream `<stream>_PAUSED` ([`JetStreamPauses`]) |
//!
//! The 2xx comes once JetStream acked every copy; a sender's retry after a partial failure
//! stores only the missing copies (the others are duplicates within the window). An event
//! no destination takes is acknowledged and stored once on `<subject>.~filtered`, which no
//! consumer reads. [`JetStreamDeadLetters::destination`]
//! lists and replays one destination's dead letters, back to that destination only.
//! Destination names are letters, digits, `-` and `_` here (a subject token). **Ordered
//! lanes** (`order_key`): the copy of an event with a lane key goes to one of the
//! destination's [`LANE_PARTITIONS`] (16) partition subjects `<subject>.<destination>~p<n>`
//! ([`lane_partition`]: FNV-1a of the key, as in `hookgate-redis`), each read by its own
//! durable consumer with `max_ack_pending = 1`: one delivery out at a time across every
//! worker; a retrying head (nak with delay) keeps its lane, a dead letter (term) releases
//! it and carries its partition ([`SOURCE_HEADER`]) for the replay. Use a stream and
//! subject of their own for an endpoint with destinations.
//!
//! Works with nats-server 2.9 and later.

mod dead;
mod error;
mod routes;
mod sink;
mod stream;
mod url;
mod worker;

pub use async_nats;
pub use dead::{DeadLetter, JetStreamDeadLetters};
pub use error::Error;
pub use hookgate_queue::{
    ENVELOPE_VERSION, Envelope, EnvelopeError, Handler, HandlerResult, QueuedEvent, RetryPolicy,
    ShutdownReport, WorkerStats,
};
pub use routes::{JetStreamPauses, LANE_PARTITIONS, lane_partition};
pub use sink::{DEFAULT_DUPLICATE_WINDOW, JetStreamSink, JetStreamSinkBuilder};
pub use url::{DEFAULT_ACK_TIMEOUT, DEFAULT_STREAM, DEFAULT_SUBJECT};
pub use worker::{
    ATTEMPTS_HEADER, DEFAULT_CONCURRENCY, DEFAULT_CONSUMER, DEFAULT_LEASE, DEFAULT_POLL_INTERVAL,
    DEFAULT_SHUTDOWN_GRACE, ERROR_HEADER, JetStreamQueue, JetStreamQueueBuilder, JetStreamWorker,
    JetStreamWorkerBuilder, JetStreamWorkerHandle, SOURCE_HEADER,
};
