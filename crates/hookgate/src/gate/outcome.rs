//! What the gate decided: a status, a stable code, headers, and the event where one is
//! handed back.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode};

use crate::event::VerifiedEvent;
use crate::handshake::{HandshakeKind, HandshakeReply, TEXT_PLAIN};
use crate::reason::{Reason, Rejection};

/// Which row of the [contract table](crate::gate#status-and-code-table) an [`Outcome`] is.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeKind {
    /// Verified, new, handed to the sink, which has it: `accepted`, the success status.
    Accepted,
    /// Verify-only mode: verified and not known as a duplicate; the event is in the
    /// outcome. `verified`, the success status.
    Verified,
    /// Verified, and a copy was already handed off: nothing enqueued. `duplicate`, the
    /// success status.
    Duplicate,
    /// Verified, but another copy is being handed off right now and is not durable yet:
    /// `in_flight`, 503 with `Retry-After`.
    InFlight,
    /// Verification failed: the reason's code, 400 or 401.
    Rejected(Reason),
    /// The body is over the limit: `body_too_large`, 413.
    BodyTooLarge,
    /// The sink is at capacity: `sink_full`, 503 with `Retry-After`.
    SinkFull,
    /// The sink is down or closed: `sink_unavailable`, 503 with `Retry-After`.
    SinkUnavailable,
    /// The dedup store failed (fail closed): `dedup_unavailable`, 503 with `Retry-After`.
    DedupUnavailable,
    /// The dedup store or the sink did not answer before the gate's deadline: `timeout`,
    /// 503 with `Retry-After`.
    Timeout,
    /// A verified provider URL handshake (or Meta's `GET` with the right verify token),
    /// answered with the provider's required body (see [`Outcome::handshake`]); nothing
    /// stored. Code `handshake`, status 200.
    Handshake(HandshakeKind),
    /// A `GET` handshake refused: its verify token differs from the configured one (or none
    /// is configured), or it is not a well-formed `hub.mode=subscribe` with a challenge:
    /// `handshake_refused`, 403 (what Meta's documentation asks for).
    HandshakeRefused,
    /// A request method the endpoint does not take (a `GET` to a scheme without a `GET`
    /// handshake): `method_not_allowed`, 405.
    MethodNotAllowed,
}

impl OutcomeKind {
    /// The stable, machine-readable code (also the response body).
    pub fn code(self) -> &'static str {
        match self {
            OutcomeKind::Accepted => "accepted",
            OutcomeKind::Verified => "verified",
            OutcomeKind::Duplicate => "duplicate",
            OutcomeKind::InFlight => "in_flight",
            OutcomeKind::Rejected(reason) => reason.code(),
            OutcomeKind::BodyTooLarge => "body_too_large",
            OutcomeKind::SinkFull => "sink_full",
            OutcomeKind::SinkUnavailable => "sink_unavailable",
            OutcomeKind::DedupUnavailable => "dedup_unavailable",
            OutcomeKind::Timeout => "timeout",
            OutcomeKind::Handshake(_) => "handshake",
            OutcomeKind::HandshakeRefused => "handshake_refused",
            OutcomeKind::MethodNotAllowed => "method_not_allowed",
        }
    }

    /// Whether the sender is told it succeeded (a 2xx): [`Accepted`](Self::Accepted),
    /// [`Verified`](Self::Verified), [`Duplicate`](Self::Duplicate),
    /// [`Handshake`](Self::Handshake).
    pub fn is_success(self) -> bool {
        matches!(
            self,
            OutcomeKind::Accepted
                | OutcomeKind::Verified
                | OutcomeKind::Duplicate
                | OutcomeKind::Handshake(_)
        )
    }

    /// Whether the sender is asked to retry later (503 with `Retry-After`).
    pub fn is_retry_later(self) -> bool {
        matches!(
            self,
            OutcomeKind::InFlight
                | OutcomeKind::SinkFull
                | OutcomeKind::SinkUnavailable
                | OutcomeKind::DedupUnavailable
                | OutcomeKind::Timeout
        )
    }
}

impl fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The gate's decision about one delivery, for an adapter to turn into a response.
///
/// The response is [`status`](Self::status), the [`headers`](Self::headers) (`Retry-After`
/// on every 503, `Allow` on a 405), the [`content_type`](Self::content_type) and the
/// [`body`](Self::body), which is the [`code`](Self::code) alone, except for a provider
/// handshake, whose body is the answer the provider expects.
/// Details (the rejected header, the sink's error) are for logs and response extensions,
/// never for the body: [`rejection`](Self::rejection), [`detail`](Self::detail).
///
/// ```
/// let outcome = hookgate::Outcome::body_too_large();
/// assert_eq!(outcome.status(), 413);
/// assert_eq!(outcome.code(), "body_too_large");
/// assert_eq!(outcome.body(), "body_too_large");
/// assert!(outcome.retry_after().is_none());
/// assert!(outcome.event().is_none());
/// ```
#[derive(Clone)]
pub struct Outcome {
    kind: OutcomeKind,
    status: u16,
    retry_after: Option<Duration>,
    event: Option<Box<VerifiedEvent>>,
    rejection: Option<Rejection>,
    detail: Option<Arc<str>>,
    /// Boxed: rare, and an outcome is moved around on every delivery.
    handshake: Option<Box<HandshakeReply>>,
}

impl Outcome {
    /// `413 body_too_large`, for adapters that enforce the body limit while reading the
    /// body (from `Content-Length` or while streaming), before the gate sees it.
    /// [`Gate::body_too_large`](crate::Gate::body_too_large) returns the same and also
    /// records it in logs and metrics.
    pub fn body_too_large() -> Self {
        Outcome::new(OutcomeKind::BodyTooLarge, 413)
    }

    pub(crate) fn new(kind: OutcomeKind, status: u16) -> Self {
        Outcome {
            kind,
            status,
            retry_after: None,
            event: None,
            rejection: None,
            detail: None,
            handshake: None,
        }
    }

    pub(crate) fn handshake_answered(reply: HandshakeReply) -> Self {
        let mut outcome = Outcome::new(OutcomeKind::Handshake(reply.kind()), 200);
        outcome.handshake = Some(Box::new(reply));
        outcome
    }

    pub(crate) fn rejected(rejection: Rejection) -> Self {
        let mut outcome = Outcome::new(
            OutcomeKind::Rejected(rejection.reason()),
            rejection.status(),
        );
        outcome.rejection = Some(rejection);
        outcome
    }

    pub(crate) fn retry_later(kind: OutcomeKind, retry_after: Duration, detail: String) -> Self {
        let mut outcome = Outcome::new(kind, 503);
        outcome.retry_after = Some(retry_after);
        outcome.detail = Some(Arc::from(detail));
        outcome
    }

    pub(crate) fn with_event(mut self, event: VerifiedEvent) -> Self {
        self.event = Some(Box::new(event));
        self
    }

    pub(crate) fn with_detail(mut self, detail: String) -> Self {
        self.detail = Some(Arc::from(detail));
        self
    }

    /// Which kind of decision this is.
    pub fn kind(&self) -> OutcomeKind {
        self.kind
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The HTTP status as an [`http::StatusCode`].
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The stable code: `accepted`, `duplicate`, `signature_mismatch`, … (see the
    /// [table](crate::gate#status-and-code-table)).
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// The response body: the code alone, nothing else; for a handshake, the provider's
    /// expected answer ([`HandshakeReply::body_text`]).
    pub fn body(&self) -> &str {
        match &self.handshake {
            Some(reply) => reply.body_text(),
            None => self.kind.code(),
        }
    }

    /// The response body as bytes (see [`body`](Self::body)); no copy for a code.
    pub fn body_bytes(&self) -> bytes::Bytes {
        match &self.handshake {
            Some(reply) => reply.body().clone(),
            None => bytes::Bytes::from_static(self.kind.code().as_bytes()),
        }
    }

    /// The response's `Content-Type`: `text/plain; charset=utf-8`, or a handshake's own
    /// (Zoom and Discord expect JSON).
    pub fn content_type(&self) -> &'static str {
        self.handshake
            .as_deref()
            .map_or(TEXT_PLAIN, HandshakeReply::content_type)
    }

    /// The handshake answered, for [`OutcomeKind::Handshake`].
    pub fn handshake(&self) -> Option<&HandshakeReply> {
        self.handshake.as_deref()
    }

    /// Whether the status is a 2xx.
    pub fn is_success(&self) -> bool {
        self.kind.is_success()
    }

    /// How long the sender should wait before retrying; set on every 503.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// The `Retry-After` value in whole seconds (rounded up, at least 1), if any.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(|d| {
            let secs = d.as_secs();
            let rounded = if d.subsec_nanos() > 0 {
                secs.saturating_add(1)
            } else {
                secs
            };
            rounded.max(1)
        })
    }

    /// The response headers the outcome requires: `Retry-After` on a 503, `Allow: POST` on
    /// a 405, `X-Content-Type-Options: nosniff` on a handshake's answer (it echoes what the
    /// request carried), nothing otherwise.
    pub fn headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(reply) = &self.handshake {
            headers.insert(
                http::header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            for (name, value) in reply.headers() {
                headers.insert(name.clone(), value.clone());
            }
        }
        if let Some(secs) = self.retry_after_secs() {
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.kind == OutcomeKind::MethodNotAllowed {
            headers.insert(http::header::ALLOW, HeaderValue::from_static("POST"));
        }
        headers
    }

    /// The verified event, in verify-only mode (where the caller processes it itself).
    pub fn event(&self) -> Option<&VerifiedEvent> {
        self.event.as_deref()
    }

    /// Takes the verified event out, in verify-only mode.
    pub fn into_event(self) -> Option<VerifiedEvent> {
        self.event.map(|event| *event)
    }

    /// The verification failure with the header it concerns, for a rejected delivery.
    pub fn rejection(&self) -> Option<&Rejection> {
        self.rejection.as_ref()
    }

    /// What went wrong inside, for a 503 (the sink's or the dedup store's error), or what
    /// was noted on an accepted delivery (a failed dedup commit). For logs and response
    /// extensions, never for the response body.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outcome")
            .field("status", &self.status)
            .field("code", &self.code())
            .field("retry_after", &self.retry_after)
            .field("rejection", &self.rejection)
            .field("detail", &self.detail)
            .field("event", &self.event)
            .field(
                "handshake",
                &self.handshake.as_deref().map(HandshakeReply::kind),
            )
            .finish()
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let at = |d| Outcome::retry_later(OutcomeKind::SinkFull, d, String::new());
        assert_eq!(at(Duration::from_millis(1500)).retry_after_secs(), Some(2));
        assert_eq!(at(Duration::ZERO).retry_after_secs(), Some(1));
        assert_eq!(at(Duration::from_secs(10)).retry_after_secs(), Some(10));
        assert_eq!(at(Duration::MAX).retry_after_secs(), Some(u64::MAX));
        let headers = at(Duration::from_secs(10)).headers();
        assert_eq!(headers.get("retry-after").unwrap(), "10");
        assert!(Outcome::body_too_large().headers().is_empty());
    }

    #[test]
    fn codes_are_stable_and_rejections_keep_their_status() {
        let outcome = Outcome::rejected(Rejection::new(
            Reason::SignatureMismatch,
            "X-Hub-Signature-256",
        ));
        assert_eq!(outcome.status(), 401);
        assert_eq!(outcome.status_code(), StatusCode::UNAUTHORIZED);
        assert_eq!(outcome.code(), "signature_mismatch");
        assert_eq!(
            outcome.rejection().map(Rejection::location),
            Some("X-Hub-Signature-256")
        );
        assert_eq!(outcome.to_string(), "401 signature_mismatch");
        assert!(!outcome.is_success());
        for (kind, code) in [
            (OutcomeKind::Accepted, "accepted"),
            (OutcomeKind::Verified, "verified"),
            (OutcomeKind::Duplicate, "duplicate"),
            (OutcomeKind::InFlight, "in_flight"),
            (OutcomeKind::BodyTooLarge, "body_too_large"),
            (OutcomeKind::SinkFull, "sink_full"),
            (OutcomeKind::SinkUnavailable, "sink_unavailable"),
            (OutcomeKind::DedupUnavailable, "dedup_unavailable"),
            (OutcomeKind::Timeout, "timeout"),
            (
                OutcomeKind::Handshake(HandshakeKind::DiscordPing),
                "handshake",
            ),
            (OutcomeKind::HandshakeRefused, "handshake_refused"),
            (OutcomeKind::MethodNotAllowed, "method_not_allowed"),
        ] {
            assert_eq!(kind.code(), code);
            assert_eq!(kind.to_string(), code);
            assert!(!(kind.is_success() && kind.is_retry_later()));
        }
    }
}
