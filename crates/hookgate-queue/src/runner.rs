//! One attempt, the same way for every queue: span, timeout, panic, metrics and the
//! decision about what follows.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::FutureExt as _;
use tracing::Instrument as _;

use crate::{Handler, HandlerResult, QueueEvent, RetryPolicy, WorkerStats};

/// Handler attempts. Labels: `scheme`, `outcome` (`processed`, `retry`, `dead`).
pub const ATTEMPTS_METRIC: &str = "hookgate_process_attempts_total";
/// Seconds a handler ran. Labels: `scheme`, `outcome`.
pub const PROCESS_SECONDS_METRIC: &str = "hookgate_process_duration_seconds";

/// Longest delivery id, event type or queue id written to a span; longer ones are cut.
const MAX_FIELD_LEN: usize = 128;

/// What the loop does with a delivery after one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Acknowledge it: processed.
    Processed,
    /// Schedule another attempt after `delay`.
    Retry { delay: Duration, error: String },
    /// Move it to the dead letters.
    Dead { reason: String },
}

impl Verdict {
    /// The `outcome` label: `processed`, `retry` or `dead`.
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            Verdict::Processed => "processed",
            Verdict::Retry { .. } => "retry",
            Verdict::Dead { .. } => "dead",
        }
    }
}

/// A worker setting is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid worker setting: {0}")]
pub struct ConfigError(pub String);

/// Runs the handler for one attempt and decides the [`Verdict`]; counts what happened.
pub(crate) struct Runner<E> {
    handler: Arc<dyn Handler<E>>,
    timeout: Duration,
    retry: RetryPolicy,
    pub(crate) counters: Counters,
}

impl<E: QueueEvent> Runner<E> {
    pub(crate) fn new(handler: Arc<dyn Handler<E>>, timeout: Duration, retry: RetryPolicy) -> Self {
        Runner {
            handler,
            timeout,
            retry,
            counters: Counters::default(),
        }
    }

    /// Runs one attempt of `event` (attempt number `attempt`, the queue's id `queue_id`)
    /// inside a new `webhook.process` span, which it returns for the recording of the
    /// result.
    ///
    /// For a delivery to a destination, `destination` gives its name (for the span) and
    /// its own retry policy; otherwise the worker's applies.
    pub(crate) async fn attempt_to(
        &self,
        event: E,
        queue_id: &str,
        attempt: u32,
        destination: Option<(&str, &RetryPolicy)>,
    ) -> (Verdict, tracing::Span) {
        let retry = destination.map_or(&self.retry, |(_, retry)| retry);
        let scheme = event.scheme().to_owned();
        let span = tracing::info_span!(
            "webhook.process",
            scheme = %scheme,
            delivery_id = cut(event.delivery_id().unwrap_or("")),
            event_type = cut(event.event_type().unwrap_or("")),
            queue_id = cut(queue_id),
            attempt,
            destination = destination.map(|(name, _)| name),
            outcome = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        let verdict = async {
            let started = Instant::now();
            let verdict = if attempt > retry.attempt_limit() {
                Verdict::Dead {
                    reason: format!(
                        "delivered {attempt} times, more than the {} attempts allowed: earlier attempts did not finish",
                        retry.attempt_limit()
                    ),
                }
            } else {
                bump(&self.counters.handled);
                let result = self.call(event).await;
                decide(retry, attempt, result)
            };
            let duration = started.elapsed();
            let outcome = verdict.outcome();
            let span = tracing::Span::current();
            span.record("outcome", outcome);
            span.record(
                "duration_ms",
                u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
            );
            metrics::histogram!(PROCESS_SECONDS_METRIC, "scheme" => scheme.clone(), "outcome" => outcome)
                .record(duration.as_secs_f64());
            metrics::counter!(ATTEMPTS_METRIC, "scheme" => scheme, "outcome" => outcome)
                .increment(1);
            match &verdict {
                Verdict::Processed => tracing::debug!(outcome, "event processed"),
                Verdict::Retry { delay, error } => {
                    tracing::info!(outcome, ?delay, error = %error, "event failed, retry scheduled");
                }
                Verdict::Dead { reason } => {
                    tracing::warn!(outcome, reason = %reason, "event moved to the dead letters");
                }
            }
            verdict
        }
        .instrument(span.clone())
        .await;
        (verdict, span)
    }

    async fn call(&self, event: E) -> HandlerResult {
        let call = AssertUnwindSafe(self.handler.handle(event)).catch_unwind();
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(result)) => result,
            Ok(Err(_panic)) => {
                bump(&self.counters.panics);
                HandlerResult::retry_because("handler panicked")
            }
            Err(_) => {
                bump(&self.counters.timeouts);
                HandlerResult::retry_because(format!("handler timed out after {:?}", self.timeout))
            }
        }
    }
}

/// What follows an attempt's `result` under `retry`.
fn decide(retry: &RetryPolicy, attempt: u32, result: HandlerResult) -> Verdict {
    match result {
        HandlerResult::Ok => Verdict::Processed,
        HandlerResult::Fail(reason) => Verdict::Dead { reason },
        HandlerResult::Retry { after, error } => {
            let error = error.unwrap_or_else(|| "retry requested".to_owned());
            if retry.allows_retry_after(attempt) {
                Verdict::Retry {
                    delay: after.unwrap_or_else(|| retry.backoff(attempt)),
                    error,
                }
            } else {
                Verdict::Dead {
                    reason: format!("gave up after {attempt} attempts: {error}"),
                }
            }
        }
    }
}

impl<E> fmt::Debug for Runner<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("stats", &self.counters.snapshot())
            .finish_non_exhaustive()
    }
}

/// The counters behind [`WorkerStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) handled: AtomicU64,
    pub(crate) processed: AtomicU64,
    pub(crate) retried: AtomicU64,
    pub(crate) dead: AtomicU64,
    pub(crate) panics: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) lost_leases: AtomicU64,
}

impl Counters {
    /// The counter a verdict's result goes to.
    pub(crate) fn of(&self, verdict: &Verdict) -> &AtomicU64 {
        match verdict {
            Verdict::Processed => &self.processed,
            Verdict::Retry { .. } => &self.retried,
            Verdict::Dead { .. } => &self.dead,
        }
    }

    pub(crate) fn snapshot(&self) -> WorkerStats {
        WorkerStats {
            handled: self.handled.load(Ordering::SeqCst),
            processed: self.processed.load(Ordering::SeqCst),
            retried: self.retried.load(Ordering::SeqCst),
            dead: self.dead.load(Ordering::SeqCst),
            panics: self.panics.load(Ordering::SeqCst),
            timeouts: self.timeouts.load(Ordering::SeqCst),
            lost_leases: self.lost_leases.load(Ordering::SeqCst),
        }
    }
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::SeqCst);
}

pub(crate) fn unbump(counter: &AtomicU64) {
    let _ = counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
}

/// `text` cut to at most [`MAX_FIELD_LEN`] bytes, on a character boundary.
fn cut(text: &str) -> &str {
    let mut end = text.len().min(MAX_FIELD_LEN);
    while !text.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    text.get(..end).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Envelope, QueuedEvent};

    fn event() -> QueuedEvent {
        let envelope = Envelope::from_json(
            br#"{"version":1,"dedup_key":"k","scheme":"s","received_at_ms":0,"key_id":"0","body_b64":""}"#,
        )
        .unwrap();
        QueuedEvent::new(envelope, "1-0", 1)
    }

    fn runner(handler: impl Handler, policy: RetryPolicy) -> Runner<QueuedEvent> {
        Runner::new(Arc::new(handler), Duration::from_secs(5), policy)
    }

    async fn verdict_of(runner: &Runner<QueuedEvent>, attempt: u32) -> Verdict {
        runner.attempt_to(event(), "1-0", attempt, None).await.0
    }

    #[tokio::test]
    async fn results_become_verdicts_with_the_policy() {
        let policy = RetryPolicy::new()
            .base(Duration::from_millis(100))
            .cap(Duration::from_secs(1))
            .max_attempts(3);
        let ok = runner(|_e: QueuedEvent| async { HandlerResult::Ok }, policy);
        assert_eq!(verdict_of(&ok, 1).await, Verdict::Processed);
        // Delivered more often than allowed: dead without calling the handler.
        assert!(matches!(verdict_of(&ok, 4).await, Verdict::Dead { .. }));
        assert_eq!(ok.counters.snapshot().handled, 1);

        let retry = runner(
            |_e: QueuedEvent| async { HandlerResult::retry_after(Duration::from_secs(7)) },
            policy,
        );
        assert_eq!(
            verdict_of(&retry, 1).await,
            Verdict::Retry {
                delay: Duration::from_secs(7),
                error: "retry requested".to_owned()
            }
        );
        let Verdict::Dead { reason } = verdict_of(&retry, 3).await else {
            panic!("the last attempt is dead")
        };
        assert!(reason.contains("after 3 attempts"), "{reason}");

        let err = runner(
            |_e: QueuedEvent| async { Err::<(), _>("downstream 502") },
            policy,
        );
        let Verdict::Retry { delay, error } = verdict_of(&err, 2).await else {
            panic!("an Err is retried")
        };
        assert!(delay <= Duration::from_millis(200));
        assert_eq!(error, "downstream 502");

        let fail = runner(
            |_e: QueuedEvent| async { HandlerResult::fail("bad") },
            policy,
        );
        assert_eq!(
            verdict_of(&fail, 1).await,
            Verdict::Dead {
                reason: "bad".to_owned()
            }
        );
    }

    #[test]
    fn long_span_fields_are_cut_on_a_character_boundary() {
        assert_eq!(cut(&"é".repeat(100)).len(), 128);
        assert_eq!(cut("short"), "short");
    }
}
