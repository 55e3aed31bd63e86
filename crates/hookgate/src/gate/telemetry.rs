//! The `webhook.receive` span and the gate's metrics. Nothing here sees a body or a secret,
//! and no event id is ever a metric label.

use std::sync::Arc;
use std::time::Instant;

use metrics::{Key, Label, Level, Metadata, SharedString};
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
/// Provider URL handshakes answered. Label: `scheme`.
pub(super) const HANDSHAKES: &str = "hookgate_handshakes_total";
/// Failures of the sink or the dedup store. Labels: `scheme`, `reason` (`sink_full`,
/// `sink_unavailable`, `dedup_unavailable`, `timeout`, `dedup_commit`).
pub(super) const FAILURES: &str = "hookgate_failures_total";
/// Seconds spent verifying. Label: `scheme`.
pub(super) const VERIFY_SECONDS: &str = "hookgate_verify_duration_seconds";
/// Seconds from the call to the decision. Labels: `scheme`, `outcome` (the code).
pub(super) const DECISION_SECONDS: &str = "hookgate_decision_duration_seconds";

/// Longest delivery id or event type written to the span; longer ones are cut.
const MAX_FIELD_LEN: usize = 128;

/// What the `metrics` macros would pass: the gate's metrics are registered by this module.
static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The keys of a gate's per-delivery metrics, built once per gate rather than once per
/// delivery (a key with a label is an allocation). They are looked up in whichever recorder
/// is installed at the time of each delivery, as the `metrics` macros do.
pub(super) struct GateMetrics {
    scheme: SharedString,
    received: Key,
    verify_seconds: Key,
    enqueued: Key,
    duplicates: Key,
    in_flight: Key,
    accepted_seconds: Key,
}

impl GateMetrics {
    pub(super) fn new(scheme: &str) -> Arc<GateMetrics> {
        let scheme = SharedString::from(Arc::<str>::from(scheme));
        let key =
            |name: &'static str| Key::from_parts(name, vec![Label::new("scheme", scheme.clone())]);
        Arc::new(GateMetrics {
            received: key(RECEIVED),
            verify_seconds: key(VERIFY_SECONDS),
            enqueued: key(ENQUEUED),
            duplicates: key(DUPLICATES),
            in_flight: key(IN_FLIGHT),
            accepted_seconds: Key::from_parts(
                DECISION_SECONDS,
                vec![
                    Label::new("scheme", scheme.clone()),
                    Label::new("outcome", "accepted"),
                ],
            ),
            scheme,
        })
    }

    fn count(key: &Key) {
        metrics::with_recorder(|recorder| recorder.register_counter(key, &METADATA)).increment(1);
    }

    fn record(key: &Key, seconds: f64) {
        metrics::with_recorder(|recorder| recorder.register_histogram(key, &METADATA))
            .record(seconds);
    }
}

/// One decision's span, clock and metrics.
pub(super) struct Trace {
    pub(super) span: Span,
    started: Instant,
    metrics: Arc<GateMetrics>,
}

impl Trace {
    pub(super) fn start(metrics: &Arc<GateMetrics>, mode: &'static str) -> Trace {
        let span = tracing::info_span!(
            "webhook.receive",
            scheme = &*metrics.scheme,
            mode,
            delivery_id = Empty,
            event_type = Empty,
            outcome = Empty,
            status = Empty,
            duration_ms = Empty,
        );
        GateMetrics::count(&metrics.received);
        Trace {
            span,
            started: Instant::now(),
            metrics: Arc::clone(metrics),
        }
    }

    /// When the decision started.
    pub(super) fn started(&self) -> Instant {
        self.started
    }

    pub(super) fn verified(&self, event: &VerifiedEvent, took: std::time::Duration) {
        GateMetrics::record(&self.metrics.verify_seconds, took.as_secs_f64());
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
        GateMetrics::record(&self.metrics.verify_seconds, took.as_secs_f64());
    }

    pub(super) fn enqueued(&self) {
        GateMetrics::count(&self.metrics.enqueued);
    }

    pub(super) fn commit_failed(&self, detail: &str) {
        let scheme = self.metrics.scheme.clone();
        metrics::counter!(FAILURES, "scheme" => scheme, "reason" => "dedup_commit").increment(1);
        tracing::warn!(
            parent: &self.span,
            detail,
            "event accepted, but the dedup store did not record it; a retry would be enqueued again"
        );
    }

    pub(super) fn handshake_not_recorded(&self, detail: &str) {
        tracing::warn!(
            parent: &self.span,
            detail,
            "handshake answered, but the sink did not record it"
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
        let metrics = &*self.metrics;
        self.span.record("outcome", code);
        self.span.record("status", outcome.status());
        self.span.record(
            "duration_ms",
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        );
        if outcome.kind() == OutcomeKind::Accepted {
            GateMetrics::record(&metrics.accepted_seconds, elapsed.as_secs_f64());
        } else {
            let scheme = metrics.scheme.clone();
            metrics::histogram!(DECISION_SECONDS, "scheme" => scheme, "outcome" => code)
                .record(elapsed.as_secs_f64());
        }
        let span = &self.span;
        match outcome.kind() {
            OutcomeKind::Accepted | OutcomeKind::Verified => {
                tracing::debug!(parent: span, outcome = code, "webhook accepted");
            }
            OutcomeKind::Duplicate => {
                GateMetrics::count(&metrics.duplicates);
                tracing::debug!(parent: span, outcome = code, "duplicate webhook, not enqueued again");
            }
            OutcomeKind::InFlight => {
                GateMetrics::count(&metrics.in_flight);
                tracing::info!(parent: span, outcome = code, "copy of a webhook in flight, asked to retry");
            }
            OutcomeKind::Handshake(kind) => {
                let scheme = metrics.scheme.clone();
                metrics::counter!(HANDSHAKES, "scheme" => scheme).increment(1);
                tracing::info!(
                    parent: span,
                    outcome = code,
                    handshake = kind.as_str(),
                    "provider URL handshake answered; nothing stored"
                );
            }
            OutcomeKind::Rejected(_)
            | OutcomeKind::BodyTooLarge
            | OutcomeKind::HandshakeRefused
            | OutcomeKind::MethodNotAllowed => {
                let scheme = metrics.scheme.clone();
                metrics::counter!(REJECTED, "scheme" => scheme, "reason" => code).increment(1);
                let location = outcome.rejection().map_or("", |r| r.location());
                tracing::info!(parent: span, outcome = code, location, "webhook rejected");
            }
            OutcomeKind::SinkFull
            | OutcomeKind::SinkUnavailable
            | OutcomeKind::DedupUnavailable
            | OutcomeKind::Timeout => {
                let scheme = metrics.scheme.clone();
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
