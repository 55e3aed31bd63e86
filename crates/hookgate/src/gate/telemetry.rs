//! The `webhook.receive` span and the gate's metrics. Nothing here sees a body or a secret,
//! and no event id is ever a metric label.

use std::time::Instant;

use metrics::SharedString;
use tracing::Span;
use tracing::field::Empty;

use super::outcome::{Outcome, OutcomeKind};
use crate::event::VerifiedEvent;

/// Every delivery that reached the gate. Label: `scheme`.
pub(super) const RECEIVED: &str = "hookgate_received_total";
/// Deliveries refused with a 4xx. Labels: `scheme`, `reason` (a verification code or
/// `body_too_large`).
pub(super) const REJECTED: &str = "hookgate_rejected_total";
/// Duplicates answered with the success status. Label: `scheme`.
pub(super) const DUPLICATES: &str = "hookgate_duplicates_total";
/// Copies answered `503 in_flight`. Label: `scheme`.
pub(super) const IN_FLIGHT: &str = "hookgate_in_flight_total";
/// Events the sink accepted. Label: `scheme`.
pub(super) const ENQUEUED: &str = "hookgate_enqueued_total";
/// Failures of the sink or the dedup store. Labels: `scheme`, `reason` (`sink_full`,
/// `sink_unavailable`, `dedup_unavailable`, `timeout`, `dedup_commit`).
pub(super) const FAILURES: &str = "hookgate_failures_total";
/// Seconds spent verifying. Label: `scheme`.
pub(super) const VERIFY_SECONDS: &str = "hookgate_verify_duration_seconds";
/// Seconds from the call to the decision. Labels: `scheme`, `outcome` (the code).
pub(super) const DECISION_SECONDS: &str = "hookgate_decision_duration_seconds";

/// Longest delivery id or event type written to the span; longer ones are cut.
const MAX_FIELD_LEN: usize = 128;

/// One decision's span, clock and labels.
pub(super) struct Trace {
    pub(super) span: Span,
    started: Instant,
    scheme: SharedString,
}

impl Trace {
    pub(super) fn start(scheme: &SharedString, mode: &'static str) -> Trace {
        let span = tracing::info_span!(
            "webhook.receive",
            scheme = &**scheme,
            mode,
            delivery_id = Empty,
            event_type = Empty,
            outcome = Empty,
            status = Empty,
            duration_ms = Empty,
        );
        metrics::counter!(RECEIVED, "scheme" => scheme.clone()).increment(1);
        Trace {
            span,
            started: Instant::now(),
            scheme: scheme.clone(),
        }
    }

    pub(super) fn verified(&self, event: &VerifiedEvent, took: std::time::Duration) {
        metrics::histogram!(VERIFY_SECONDS, "scheme" => self.scheme.clone())
            .record(took.as_secs_f64());
        // The event type is read from the body: not worth parsing it for a span nobody records.
        if self.span.is_disabled() {
            return;
        }
        if let Some(id) = event.delivery_id() {
            self.span.record("delivery_id", cut(id));
        }
        if let Some(kind) = event.event_type() {
            self.span.record("event_type", cut(kind));
        }
    }

    pub(super) fn verify_failed(&self, took: std::time::Duration) {
        metrics::histogram!(VERIFY_SECONDS, "scheme" => self.scheme.clone())
            .record(took.as_secs_f64());
    }

    pub(super) fn enqueued(&self) {
        metrics::counter!(ENQUEUED, "scheme" => self.scheme.clone()).increment(1);
    }

    pub(super) fn commit_failed(&self, detail: &str) {
        metrics::counter!(FAILURES, "scheme" => self.scheme.clone(), "reason" => "dedup_commit")
            .increment(1);
        tracing::warn!(
            parent: &self.span,
            detail,
            "event accepted, but the dedup store did not record it; a retry would be enqueued again"
        );
    }

    pub(super) fn release_failed(&self, detail: &str) {
        tracing::warn!(
            parent: &self.span,
            detail,
            "could not release the dedup claim; it will expire by itself"
        );
    }

    /// Records the outcome in the span, the metrics and one log event, and returns it.
    pub(super) fn finish(self, outcome: Outcome) -> Outcome {
        let code = outcome.code();
        let elapsed = self.started.elapsed();
        let scheme = self.scheme;
        self.span.record("outcome", code);
        self.span.record("status", outcome.status());
        self.span.record(
            "duration_ms",
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        );
        metrics::histogram!(DECISION_SECONDS, "scheme" => scheme.clone(), "outcome" => code)
            .record(elapsed.as_secs_f64());
        let span = &self.span;
        match outcome.kind() {
            OutcomeKind::Accepted | OutcomeKind::Verified => {
                tracing::debug!(parent: span, outcome = code, "webhook accepted");
            }
            OutcomeKind::Duplicate => {
                metrics::counter!(DUPLICATES, "scheme" => scheme).increment(1);
                tracing::debug!(parent: span, outcome = code, "duplicate webhook, not enqueued again");
            }
            OutcomeKind::InFlight => {
                metrics::counter!(IN_FLIGHT, "scheme" => scheme).increment(1);
                tracing::info!(parent: span, outcome = code, "copy of a webhook in flight, asked to retry");
            }
            OutcomeKind::Rejected(_) | OutcomeKind::BodyTooLarge => {
                metrics::counter!(REJECTED, "scheme" => scheme, "reason" => code).increment(1);
                let location = outcome.rejection().map_or("", |r| r.location());
                tracing::info!(parent: span, outcome = code, location, "webhook rejected");
            }
            OutcomeKind::SinkFull
            | OutcomeKind::SinkUnavailable
            | OutcomeKind::DedupUnavailable
            | OutcomeKind::Timeout => {
                metrics::counter!(FAILURES, "scheme" => scheme, "reason" => code).increment(1);
                let detail = outcome.detail().unwrap_or("");
                tracing::warn!(parent: span, outcome = code, detail, "webhook deferred, asked to retry");
            }
        }
        outcome
    }
}

/// At most [`MAX_FIELD_LEN`] bytes of `value`, cut at a character boundary.
fn cut(value: &str) -> &str {
    if value.len() <= MAX_FIELD_LEN {
        return value;
    }
    let mut end = MAX_FIELD_LEN;
    while !value.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    value.get(..end).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_fields_are_cut_at_a_char_boundary() {
        assert_eq!(cut("short"), "short");
        let long = "é".repeat(100);
        let cut_value = cut(&long);
        assert!(cut_value.len() <= MAX_FIELD_LEN);
        assert!(long.starts_with(cut_value));
        assert!(!cut_value.is_empty());
    }
}
