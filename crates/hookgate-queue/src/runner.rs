//! One attempt, the same way for every queue worker: span, timeout, panic, metrics and the
//! decision about what follows.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{HandlerResult, RetryPolicy, WorkerStats};
use futures_util::FutureExt as _;
use tracing::Instrument as _;

use crate::{Handler, QueuedEvent};

/// Handler attempts (the inbox worker's metric). Labels: `scheme`, `outcome` (`processed`,
/// `retry`, `dead`).
pub const ATTEMPTS_METRIC: &str = "hookgate_process_attempts_total";
/// Seconds a handler ran (the inbox worker's metric). Labels: `scheme`, `outcome`.
pub const PROCESS_SECONDS_METRIC: &str = "hookgate_process_duration_seconds";

/// Longest delivery id or event type written to a span; longer ones are cut.
const MAX_FIELD_LEN: usize = 128;

/// What a worker does with an event after one attempt.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Acknowledge it: processed.
    Processed,
    /// Schedule another attempt after `delay`.
    Retry {
        /// How long to wait before the next attempt.
        delay: Duration,
        /// What went wrong.
        error: String,
    },
    /// Move it to the dead letters.
    Dead {
        /// Why.
        reason: String,
    },
}

impl Verdict {
    /// The `outcome` label: `processed`, `retry` or `dead`.
    pub fn outcome(&self) -> &'static str {
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

/// Runs a [`Handler`] on queued events the way every hookgate worker does, and decides what
/// the queue should do next; each backend only reads, acknowledges and reschedules.
///
/// - one `webhook.process` span per attempt (`scheme`, `delivery_id`, `event_type`,
///   `queue_id`, `attempt`, `outcome`, `duration_ms`), never the body;
/// - a handler that panics or runs past the timeout counts as a failed attempt to retry;
/// - [`HandlerResult::Retry`] waits the requested delay or the [`RetryPolicy`]'s backoff
///   (exponential, full jitter); after the policy's last attempt, or on
///   [`HandlerResult::Fail`], the event is dead;
/// - an event delivered more often than the policy allows (its earlier attempts were cut
///   short by crashes) is dead without running the handler again, so a message that kills
///   its consumer cannot crash-loop a fleet;
/// - the metrics `hookgate_process_attempts_total` and `hookgate_process_duration_seconds`
///   (labels `scheme`, `outcome`), the same as the inbox worker's.
pub struct Runner {
    handler: Arc<dyn Handler>,
    timeout: Duration,
    retry: RetryPolicy,
    counters: Counters,
}

impl Runner {
    /// A runner for `handler` with a per-call `timeout` and a retry policy.
    ///
    /// # Errors
    /// [`ConfigError`] for a zero timeout, a policy without attempts or with a zero base
    /// delay.
    pub fn new(
        handler: Arc<dyn Handler>,
        timeout: Duration,
        retry: RetryPolicy,
    ) -> Result<Self, ConfigError> {
        if timeout.is_zero() {
            return Err(ConfigError(
                "the handler timeout must not be zero".to_owned(),
            ));
        }
        if retry.attempt_limit() == 0 {
            return Err(ConfigError("max_attempts must be at least 1".to_owned()));
        }
        if retry.backoff_ceiling(1).is_zero() {
            return Err(ConfigError("the retry base must not be zero".to_owned()));
        }
        Ok(Runner {
            handler,
            timeout,
            retry,
            counters: Counters::default(),
        })
    }

    /// The retry policy.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Runs one attempt on `event`, then hands the [`Verdict`] to `apply`, which carries it
    /// out on the queue and answers whether it could (`Ok(false)`: this consumer no longer
    /// owned the message, someone else took it over).
    pub async fn process<F, Fut, E>(&self, event: QueuedEvent, queue_id: &str, apply: F)
    where
        F: FnOnce(Verdict) -> Fut,
        Fut: Future<Output = Result<bool, E>>,
        E: fmt::Display,
    {
        let scheme = event.scheme().to_owned();
        let attempt = event.attempt();
        let span = tracing::info_span!(
            "webhook.process",
            scheme = %scheme,
            delivery_id = cut(event.delivery_id().unwrap_or("")),
            event_type = cut(event.event_type().unwrap_or("")),
            queue_id = cut(queue_id),
            attempt,
            outcome = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        async {
            let started = Instant::now();
            let verdict = if attempt > self.retry.attempt_limit() {
                Verdict::Dead {
                    reason: format!(
                        "delivered {attempt} times, more than the {} attempts allowed: earlier attempts did not finish",
                        self.retry.attempt_limit()
                    ),
                }
            } else {
                bump(&self.counters.handled);
                let result = self.call(event).await;
                self.decide(attempt, result)
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
            let counter = match &verdict {
                Verdict::Processed => &self.counters.processed,
                Verdict::Retry { .. } => &self.counters.retried,
                Verdict::Dead { .. } => &self.counters.dead,
            };
            match apply(verdict).await {
                Ok(true) => bump(counter),
                Ok(false) => {
                    bump(&self.counters.lost_leases);
                    tracing::warn!("another consumer took the event over before its result was recorded; it will be handled again");
                }
                Err(err) => {
                    tracing::warn!(error = %err, "could not record the result; the event will be handled again once its lease expires");
                }
            }
        }
        .instrument(span)
        .await;
    }

    /// Counters since the runner was made.
    pub fn stats(&self) -> WorkerStats {
        self.counters.snapshot()
    }

    async fn call(&self, event: QueuedEvent) -> HandlerResult {
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

    fn decide(&self, attempt: u32, result: HandlerResult) -> Verdict {
        match result {
            HandlerResult::Ok => Verdict::Processed,
            HandlerResult::Fail(reason) => Verdict::Dead { reason },
            HandlerResult::Retry { after, error } => {
                let error = error.unwrap_or_else(|| "retry requested".to_owned());
                if self.retry.allows_retry_after(attempt) {
                    Verdict::Retry {
                        delay: after.unwrap_or_else(|| self.retry.backoff(attempt)),
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
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Counters {
    handled: AtomicU64,
    processed: AtomicU64,
    retried: AtomicU64,
    dead: AtomicU64,
    panics: AtomicU64,
    timeouts: AtomicU64,
    lost_leases: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> WorkerStats {
        WorkerStats {
            handled: self.handled.load(Ordering::Relaxed),
            processed: self.processed.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dead: self.dead.load(Ordering::Relaxed),
            panics: self.panics.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            lost_leases: self.lost_leases.load(Ordering::Relaxed),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
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
    use crate::Envelope;

    fn event(attempt: u32) -> QueuedEvent {
        let envelope = Envelope::from_json(
            br#"{"version":1,"dedup_key":"k","scheme":"s","received_at_ms":0,"key_id":"0","body_b64":""}"#,
        )
        .unwrap();
        QueuedEvent::new(envelope, "1-0", attempt)
    }

    fn runner(handler: impl Handler, policy: RetryPolicy) -> Runner {
        Runner::new(Arc::new(handler), Duration::from_secs(5), policy).unwrap()
    }

    async fn verdict_of(runner: &Runner, attempt: u32) -> Verdict {
        let mut seen = None;
        runner
            .process(event(attempt), "1-0", |v| {
                seen = Some(v);
                async { Ok::<bool, String>(true) }
            })
            .await;
        seen.unwrap()
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
        assert_eq!(ok.stats().handled, 1);
        assert_eq!(ok.stats().processed, 1);
        assert_eq!(ok.stats().dead, 1);

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

    #[tokio::test]
    async fn panics_and_timeouts_are_retried_and_lost_leases_counted() {
        let panicky = runner(
            |_e: QueuedEvent| async {
                if true {
                    panic!("boom");
                }
                HandlerResult::Ok
            },
            RetryPolicy::new(),
        );
        assert!(matches!(
            verdict_of(&panicky, 1).await,
            Verdict::Retry { .. }
        ));
        assert_eq!(panicky.stats().panics, 1);

        let slow = Runner::new(
            Arc::new(|_e: QueuedEvent| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                HandlerResult::Ok
            }),
            Duration::from_millis(20),
            RetryPolicy::new(),
        )
        .unwrap();
        let Verdict::Retry { error, .. } = verdict_of(&slow, 1).await else {
            panic!("a timeout is retried")
        };
        assert!(error.contains("timed out"));
        assert_eq!(slow.stats().timeouts, 1);

        slow.process(event(1), "1-0", |_| async { Ok::<bool, String>(false) })
            .await;
        assert_eq!(slow.stats().lost_leases, 1);
        slow.process(event(1), "1-0", |_| async { Err::<bool, _>("down") })
            .await;
        assert_eq!(slow.stats().retried, 1);
    }

    #[test]
    fn bad_settings_are_refused() {
        let handler: Arc<dyn Handler> = Arc::new(|_e: QueuedEvent| async { HandlerResult::Ok });
        assert!(Runner::new(handler.clone(), Duration::ZERO, RetryPolicy::new()).is_err());
        assert!(
            Runner::new(
                handler.clone(),
                Duration::from_secs(1),
                RetryPolicy::new().max_attempts(0)
            )
            .is_err()
        );
        assert!(
            Runner::new(
                handler,
                Duration::from_secs(1),
                RetryPolicy::new().base(Duration::ZERO)
            )
            .is_err()
        );
        assert_eq!(cut(&"é".repeat(100)).len(), 128);
    }
}
