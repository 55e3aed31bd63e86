//! # hookgate-queue
//!
//! What hookgate's queue backends share, so that a fleet's events look the same whichever
//! engine carries them and a handler runs the same way on each:
//!
//! - the [`Envelope`]: the stable, versioned JSON document a verified event travels as (its
//!   format is documented on the type);
//! - the consumer side: the [`Handler`] a worker runs, on a [`QueuedEvent`], answering a
//!   [`HandlerResult`], retried with a [`RetryPolicy`] (exponential backoff with full
//!   jitter, then dead letters), counted in [`WorkerStats`];
//! - the [`Runner`], which makes one attempt the same way for every worker: span, timeout,
//!   panic, metrics and the [`Verdict`] on what happens next;
//! - the [`event_log`] model: one [`LogQuery`](event_log::LogQuery), one
//!   [`LogEntry`](event_log::LogEntry), one [`EventLog`](event_log::EventLog) trait over
//!   every store that keeps an event log (the SQLite inbox and PostgreSQL).
//!
//! This crate depends on no backend; the backends depend on it. `hookgate-inbox` (SQLite)
//! answers the same [`HandlerResult`] and retries with the same [`RetryPolicy`]; the queue
//! backends are `hookgate-redis` (Redis Streams), `hookgate-nats` (NATS JetStream) and
//! `hookgate-postgres`. A consumer in another language reads the envelope's JSON directly.

mod envelope;
mod event;
pub mod event_log;
mod handler;
mod result;
mod retry;
mod route;
mod runner;
mod stats;

use std::time::Duration;

pub use envelope::{ENVELOPE_VERSION, Envelope, EnvelopeError};
pub use event::QueuedEvent;
pub use handler::Handler;
pub use result::HandlerResult;
pub use retry::{DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY_BASE, DEFAULT_RETRY_CAP, RetryPolicy};
pub use route::*;
pub use stats::{ShutdownReport, WorkerStats};

/// Default longest run of one handler call: 5 minutes, then the attempt counts as failed.
pub const DEFAULT_HANDLER_TIMEOUT: Duration = Duration::from_secs(5 * 60);
pub use runner::{ATTEMPTS_METRIC, ConfigError, PROCESS_SECONDS_METRIC, Runner, Verdict};
