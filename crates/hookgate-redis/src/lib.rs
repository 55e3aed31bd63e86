//! # hookgate-redis
//!
//! Run a fleet of [`hookgate`] receivers on Redis. When one receiver is not enough, several
//! replicas sit behind a load balancer and a sender's retry can land on any of them; they
//! then need to share what they have seen, and to hand events to a queue that other
//! machines consume.
//!
//! - [`RedisDedupStore`]: the [dedup store](hookgate::DedupStore) every replica shares
//!   (`SET key NX PX` to claim, extended to the long TTL on commit, deleted on release).
//! - [`RedisStreamSink`]: the [sink](hookgate::Sink) that appends each event to a Redis
//!   stream (`XADD`), as the [envelope](hookgate_queue::Envelope) shared with the NATS
//!   backend, and answers only once Redis acknowledged it.
//! - [`StreamWorker`]: consumers on any machine, in a consumer group, running your
//!   [`Handler`] at least once per event: leases taken over with `XAUTOCLAIM` when a
//!   consumer dies, retries with exponential backoff through a delayed set, a dead-letter
//!   stream ([`StreamDeadLetters`] lists and replays it). It is the one worker loop of
//!   `hookgate-queue` over a [`StreamQueue`], which holds the stream's settings.
//! - [`FailOpenDedupStore`]: the explicit opt-in to keep accepting through a Redis outage.
//!
//! ## Quick start
//!
//! ```no_run
//! use hookgate::{Gate, SchemeId, Verifier};
//! use hookgate_redis::{
//!     HandlerResult, QueuedEvent, RedisDedupStore, RedisStreamSink, StreamQueue, StreamWorker,
//! };
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // On every receiver replica:
//! let verifier = Verifier::builder(SchemeId::StandardWebhooksV1)
//!     .secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
//!     .build()?;
//! let gate = Gate::builder(verifier)
//!     .dedup(RedisDedupStore::connect("redis://10.0.0.5:6379/").await?)
//!     .sink(RedisStreamSink::connect("redis://10.0.0.5:6379/?stream=webhooks").await?)
//!     .build()?;
//! // … hand `gate` to the tower/axum or actix adapter.
//!
//! // On every consumer machine:
//! let queue = StreamQueue::connect("redis://10.0.0.5:6379/?stream=webhooks").await?;
//! let worker = StreamWorker::builder(queue, |event: QueuedEvent| async move {
//!     println!("{} {:?}", event.dedup_key(), event.event_type());
//!     HandlerResult::Ok
//! })
//! .start()?;
//! // On shutdown:
//! worker.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! ## Failure behaviour
//!
//! - **Fail closed.** While Redis is unreachable, or slower than the response timeout (2 s
//!   by default), the dedup store and the sink fail and the gate answers 503 with
//!   `Retry-After` (`dedup_unavailable`, `sink_unavailable`, or `timeout`); nothing is
//!   half-written: a claim is released, or expires after the claim TTL (30 s) if Redis
//!   could not be told, and the sender's retry is accepted once Redis is back. The
//!   opposite trade-off is [`FailOpenDedupStore`], documented with its cost.
//! - **Reconnects by itself.** Every connection is a [`redis::aio::ConnectionManager`]:
//!   multiplexed (one TCP connection carries every concurrent request) and re-established
//!   after a failure: a failed request starts a reconnection (one quick retry, so that
//!   requests fail fast while Redis is down), and the next request after Redis is back
//!   finds it connected again. No restart is needed.
//! - **At least once.** An event can be enqueued twice (a sink answer lost to a timeout,
//!   a `WAIT` that fell short), and handled twice (a consumer dying after the handler
//!   succeeded but before the acknowledgement): handlers deduplicate on
//!   [`QueuedEvent::dedup_key`].
//!
//! ## URLs
//!
//! Each part connects from one `redis://` (or `redis+unix://`) URL, whose query may carry
//! hookgate's settings next to the `redis` crate's own (`protocol=resp3`):
//!
//! | constructor | query parameters |
//! |---|---|
//! | [`RedisDedupStore::connect`] | `prefix`, `claim_ttl_ms`, `committed_ttl_ms` |
//! | [`RedisStreamSink::connect`] | `stream`, `max_len`, `wait_replicas`, `wait_timeout_ms` |
//! | [`StreamQueue::connect`] | `stream`, `group`, `consumer`, `dead_stream` |
//! | [`StreamDeadLetters::connect`] | `stream`, `dead_stream` |
//!
//! TLS (`rediss://`) and Redis Cluster are not enabled in this build.
//!
//! ## Keys
//!
//! | key | type | written by |
//! |---|---|---|
//! | `<prefix><dedup key>` (`hookgate:dedup:…`) | string `c:<token>` or `done` | [`RedisDedupStore`] |
//! | `<stream>` (`hookgate:events`) | stream: `envelope`, `attempts` | [`RedisStreamSink`], worker retries |
//! | `<stream>:delayed` | sorted set of retries by due time | [`StreamQueue`] |
//! | `<stream>:dead` | stream: `envelope`, `attempts`, `error`, `failed_at_ms` | [`StreamQueue`] |
//!
//! ## Destinations
//!
//! An endpoint with destinations (issue 21: `[[endpoint.destination]]` in `hookgate serve`,
//! [`hookgate_queue::Router`] in Rust) gives the sink
//! ([`RedisStreamSinkBuilder::destinations`]) and the queue
//! ([`StreamQueueBuilder::destinations`]) the same destinations. The sink routes each event
//! once and writes one copy per matching destination to that destination's own stream, in
//! one Lua script with the event's enqueue marker (all or nothing; a retry of the same event
//! writes nothing again); the queue reads every destination's stream in its own consumer
//! group, and the one worker loop gates each destination (pause, circuit, concurrency,
//! rate) and skips the held destinations' streams. Each destination retries and
//! dead-letters on its own; [`StreamDeadLetters::destination`] lists and replays one
//! destination's dead letters, back to that destination only.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<stream>:<destination>` | stream: `envelope` (naming the destination), `attempts` | the destination's deliveries; one consumer group per destination stream |
//! | `<stream>:<destination>:delayed` | sorted set | its retries by due time |
//! | `<stream>:<destination>:dead` | stream | its dead letters |
//! | `<stream>:seen:<dedup key>` | string, 72 h | the event's enqueue marker |
//! | `<stream>:filtered` | stream, about [`FILTERED_MAX_LEN`] entries | events no destination took: `dedup_key`, `event_type`, `received_at_ms` |
//! | `<stream>:paused` | set | paused destinations ([`StreamPauses`]) |
//!
//! **Ordered lanes** (`order_key`): the copy of an event with a lane key goes to one of
//! the destination's [`LANE_PARTITIONS`] (16) partition streams `<stream>:<destination>:p<n>`
//! ([`lane_partition`]: FNV-1a of the key), each run one delivery at a time across all
//! consumers by a lock `…:p<n>:lock` (`SET NX PX`, renewed with the lease); a retrying
//! head stays pending and keeps its lane (its due time in `…:p<n>:retry_at`), a dead
//! letter releases it. Keys sharing a partition share its order (16 lanes per
//! destination at most run at once). The gates are per process: with several workers,
//! each holds its own rate and concurrency limits.
//!
//! ## Requirements
//!
//! Redis 6.2 or later for the worker (`XAUTOCLAIM`); the dedup store and the sink work
//! with any Redis 5. Give Redis `maxmemory-policy noeviction` (an evicted stream or dedup
//! key is a lost event or a missed duplicate), and persistence to match the durability you
//! promise senders (see [`RedisStreamSink`]).

mod dead;
mod dedup;
mod error;
mod fail_open;
mod routes;
mod scripts;
mod sink;
mod url;
mod worker;

pub use dead::{DeadLetter, StreamDeadLetters};
pub use dedup::{DEFAULT_DEDUP_PREFIX, RedisDedupStore, RedisDedupStoreBuilder};
pub use error::Error;
pub use fail_open::{FAIL_OPEN_METRIC, FailOpenDedupStore};
pub use hookgate_queue::{
    ENVELOPE_VERSION, Envelope, EnvelopeError, Handler, HandlerResult, QueuedEvent, RetryPolicy,
    ShutdownReport, WorkerStats,
};
pub use redis;
pub use routes::{FILTERED_MAX_LEN, LANE_PARTITIONS, StreamPauses, lane_partition};
pub use sink::{
    ATTEMPTS_FIELD, DEFAULT_STREAM, ENVELOPE_FIELD, RedisStreamSink, RedisStreamSinkBuilder,
};
pub use url::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_RESPONSE_TIMEOUT};
pub use worker::{
    DEFAULT_CONCURRENCY, DEFAULT_GROUP, DEFAULT_LEASE, DEFAULT_POLL_INTERVAL,
    DEFAULT_SHUTDOWN_GRACE, StreamQueue, StreamQueueBuilder, StreamTicket, StreamWorker,
    StreamWorkerBuilder, StreamWorkerHandle,
};
