//! Building a gate: its parts and options, checked once.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{Gate, GateMetrics, Inner};
use crate::dedup::{DedupStore, MemoryDedupStore};
use crate::sink::Sink;
use crate::verifier::Verifier;

/// Default success status: 200, because some senders (Prefinery) treat any other status,
/// even another 2xx, as a failure.
pub const DEFAULT_SUCCESS_STATUS: u16 = 200;

/// Default body limit: 2 MiB. Most providers send far less; GitHub caps payloads at 25 MB,
/// so raise it for GitHub if you receive very large pushes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Default `Retry-After`: 10 seconds, the default deadline, by which time a copy that was in
/// flight has been committed or released.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(10);

/// Default deadline for the whole decision: 10 seconds, under the 15 seconds that the
/// least patient senders (Prefinery) wait for an answer.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// Builder of a [`Gate`]: a verifier, a sink, a dedup store and options.
///
/// | option | default |
/// |---|---|
/// | [`dedup`](Self::dedup) | a [`MemoryDedupStore`] with its defaults (claim 30 s, committed 72 h, 1 M keys) |
/// | [`sink`](Self::sink) | none: required by [`build`](Self::build) |
/// | [`success_status`](Self::success_status) | [`DEFAULT_SUCCESS_STATUS`] (200) |
/// | [`max_body_bytes`](Self::max_body_bytes) | [`DEFAULT_MAX_BODY_BYTES`] (2 MiB) |
/// | [`retry_after`](Self::retry_after) | [`DEFAULT_RETRY_AFTER`] (10 s) |
/// | [`deadline`](Self::deadline) | [`DEFAULT_DEADLINE`] (10 s) |
#[must_use]
pub struct GateBuilder {
    verifier: Verifier,
    dedup: Option<Arc<dyn DedupStore>>,
    sink: Option<Arc<dyn Sink>>,
    success_status: u16,
    max_body_bytes: usize,
    retry_after: Duration,
    deadline: Duration,
}

impl GateBuilder {
    pub(super) fn new(verifier: Verifier) -> Self {
        GateBuilder {
            verifier,
            dedup: None,
            sink: None,
            success_status: DEFAULT_SUCCESS_STATUS,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            retry_after: DEFAULT_RETRY_AFTER,
            deadline: DEFAULT_DEADLINE,
        }
    }

    /// The dedup store (default: a fresh [`MemoryDedupStore`] for [`build`](Self::build),
    /// none for [`build_verify_only`](Self::build_verify_only)). Replicas behind a load
    /// balancer need a shared or durable store.
    pub fn dedup(self, store: impl DedupStore + 'static) -> Self {
        self.shared_dedup(Arc::new(store))
    }

    /// A dedup store already behind an `Arc` (shared with another gate, for example).
    pub fn shared_dedup(mut self, store: Arc<dyn DedupStore>) -> Self {
        self.dedup = Some(store);
        self
    }

    /// The sink verified events are handed to. Required by [`build`](Self::build).
    pub fn sink(self, sink: impl Sink + 'static) -> Self {
        self.shared_sink(Arc::new(sink))
    }

    /// A sink already behind an `Arc`.
    pub fn shared_sink(mut self, sink: Arc<dyn Sink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// The status of an accepted (or duplicate, or verified) delivery: a 2xx, default 200.
    pub fn success_status(mut self, status: u16) -> Self {
        self.success_status = status;
        self
    }

    /// The largest body accepted, in bytes (default 2 MiB); larger ones get 413. Adapters
    /// enforce it while reading, before buffering; the gate checks it again.
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body_bytes = limit;
        self
    }

    /// The `Retry-After` sent with every 503 (default 10 s; sent in whole seconds, rounded
    /// up).
    pub fn retry_after(mut self, retry_after: Duration) -> Self {
        self.retry_after = retry_after;
        self
    }

    /// The longest the gate waits for the dedup store and the sink together (default 10 s).
    /// Past it the sender gets `503 timeout` and the claim is released (the release itself
    /// may take up to one more second; a claim that cannot be released expires).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Checks the options and builds a gate for [`Gate::receive`].
    ///
    /// # Errors
    /// [`GateConfigError::MissingSink`] without a sink, and the errors of
    /// [`build_verify_only`](Self::build_verify_only).
    pub fn build(mut self) -> Result<Gate, GateConfigError> {
        if self.sink.is_none() {
            return Err(GateConfigError::MissingSink);
        }
        if self.dedup.is_none() {
            self.dedup = Some(Arc::new(MemoryDedupStore::new()));
        }
        self.build_verify_only()
    }

    /// Checks the options and builds a gate for [`Gate::verify_only`], which needs no sink
    /// and uses a dedup store only if one was given. Such a gate without a sink answers
    /// `503 sink_unavailable` to [`Gate::receive`].
    ///
    /// # Errors
    /// [`GateConfigError::InvalidSuccessStatus`] (not 200–299),
    /// [`GateConfigError::ZeroBodyLimit`], [`GateConfigError::ZeroDeadline`],
    /// [`GateConfigError::ZeroRetryAfter`].
    pub fn build_verify_only(self) -> Result<Gate, GateConfigError> {
        if !(200..=299).contains(&self.success_status) {
            return Err(GateConfigError::InvalidSuccessStatus(self.success_status));
        }
        if self.max_body_bytes == 0 {
            return Err(GateConfigError::ZeroBodyLimit);
        }
        if self.deadline.is_zero() {
            return Err(GateConfigError::ZeroDeadline);
        }
        if self.retry_after.is_zero() {
            return Err(GateConfigError::ZeroRetryAfter);
        }
        let metrics = GateMetrics::new(self.verifier.scheme_name());
        Ok(Gate {
            inner: Arc::new(Inner {
                verifier: self.verifier,
                dedup: self.dedup,
                sink: self.sink,
                success_status: self.success_status,
                max_body_bytes: self.max_body_bytes,
                retry_after: self.retry_after,
                deadline: self.deadline,
                metrics,
            }),
        })
    }
}

impl fmt::Debug for GateBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GateBuilder")
            .field("verifier", &self.verifier)
            .field("dedup", &self.dedup)
            .field("sink", &self.sink)
            .field("success_status", &self.success_status)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("retry_after", &self.retry_after)
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// A [`Gate`] could not be built from its options.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GateConfigError {
    /// [`GateBuilder::build`] needs a sink; use
    /// [`build_verify_only`](GateBuilder::build_verify_only) for a gate without one.
    #[error("the gate has no sink: give one, or build a verify-only gate")]
    MissingSink,
    /// The success status is not a 2xx.
    #[error("the success status must be a 2xx, not {0}")]
    InvalidSuccessStatus(u16),
    /// A body limit of zero bytes would refuse every delivery.
    #[error("the body limit must not be zero")]
    ZeroBodyLimit,
    /// A deadline of zero would time out every delivery.
    #[error("the deadline must not be zero")]
    ZeroDeadline,
    /// A `Retry-After` of zero invites an immediate retry storm.
    #[error("Retry-After must not be zero")]
    ZeroRetryAfter,
}
