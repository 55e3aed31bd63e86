//! # hookgate-queue
//!
//! What hookgate's queue backends share, so that a fleet's events look the same whichever
//! engine carries them and a handler runs the same way on each:
//!
//! - the [`Envelope`]: the stable, versioned JSON document a verified event travels as (its
//!   format is documented on the type);
//! - the consumer side: the [`Handler`] a worker runs, on a [`QueuedEvent`], answering the
//!   inbox's [`HandlerResult`], retried with the inbox's [`RetryPolicy`] (exponential backoff
//!   with full jitter, then dead letters);
//! - the [`Runner`], which makes one attempt the same way for every worker: span, timeout,
//!   panic, metrics and the [`Verdict`] on what happens next.
//!
//! The backends are `hookgate-redis` (Redis Streams) and `hookgate-nats` (NATS
//! JetStream). A consumer in another language reads the envelope's JSON directly.

mod envelope;
mod event;
mod handler;
mod runner;

pub use envelope::{ENVELOPE_VERSION, Envelope, EnvelopeError};
pub use event::QueuedEvent;
pub use handler::Handler;
pub use hookgate_inbox::{
    DEFAULT_HANDLER_TIMEOUT, DEFAULT_MAX_ATTEMPTS, DEFAULT_RETRY_BASE, DEFAULT_RETRY_CAP,
    HandlerResult, RetryPolicy, ShutdownReport, WorkerStats,
};
pub use runner::{ATTEMPTS_METRIC, ConfigError, PROCESS_SECONDS_METRIC, Runner, Verdict};
