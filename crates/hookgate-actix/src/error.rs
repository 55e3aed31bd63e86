//! Errors: what the middleware and the extractors answer when there is no event to hand on.

use std::error::Error as StdError;
use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use hookgate::{Outcome, OutcomeKind};

/// Why a request yielded no verified event, and the response that says so.
///
/// The response body is the [code](Self::code) alone, as for every hookgate answer; details
/// (the rejected header, a sink's error, a JSON parse error) are in [`outcome`](Self::outcome)
/// and [`source`](StdError::source), for logs, and the [`Outcome`] is also put in the response
/// extensions. [`ResponseError`] gives the status and the `Retry-After` of a 503.
///
/// ```
/// use actix_web::ResponseError as _;
/// use hookgate_actix::{WebhookError, WebhookErrorKind};
///
/// let error = WebhookError::from(hookgate::Outcome::body_too_large());
/// assert_eq!(error.kind(), WebhookErrorKind::Outcome(hookgate::OutcomeKind::BodyTooLarge));
/// assert_eq!((error.status(), error.code()), (413, "body_too_large"));
/// assert_eq!(error.error_response().status(), 413);
/// ```
pub struct WebhookError {
    kind: WebhookErrorKind,
    outcome: Option<Outcome>,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

/// What went wrong; see [`WebhookError`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookErrorKind {
    /// The gate decided, and its decision carries no event for the handler: a rejection
    /// (400, 401), a body over the limit (413), a 503 to retry later, or a `duplicate`
    /// (the success status: the sender is told it is done, and there is nothing new to
    /// process). Status and code are the [`Outcome`]'s.
    Outcome(OutcomeKind),
    /// The request body could not be read (the client went away, malformed chunked
    /// encoding): `400 body_unreadable`.
    BodyUnreadable,
    /// [`VerifiedJson`](crate::VerifiedJson): the verified body is not valid JSON:
    /// `400 invalid_json`.
    InvalidJson,
    /// [`VerifiedJson`](crate::VerifiedJson): the verified body nests arrays and objects
    /// deeper than [`MAX_JSON_DEPTH`](crate::MAX_JSON_DEPTH): `400 json_too_deep`, before
    /// any parsing.
    JsonTooDeep,
    /// [`VerifiedJson`](crate::VerifiedJson): the verified JSON does not have the shape of
    /// the target type: `422 unexpected_json`.
    UnexpectedJson,
    /// An extractor found no [`WebhookConfig`](crate::WebhookConfig) (nor a
    /// [`Gate`](hookgate::Gate)) in `app_data`, or a configuration with an error:
    /// `500 not_configured`, logged at ERROR.
    NotConfigured,
}

impl WebhookErrorKind {
    /// The stable code, which is also the response body.
    pub fn code(self) -> &'static str {
        match self {
            WebhookErrorKind::Outcome(kind) => kind.code(),
            WebhookErrorKind::BodyUnreadable => "body_unreadable",
            WebhookErrorKind::InvalidJson => "invalid_json",
            WebhookErrorKind::JsonTooDeep => "json_too_deep",
            WebhookErrorKind::UnexpectedJson => "unexpected_json",
            WebhookErrorKind::NotConfigured => "not_configured",
        }
    }
}

impl WebhookError {
    pub(crate) fn new(kind: WebhookErrorKind) -> Self {
        WebhookError {
            kind,
            outcome: None,
            source: None,
        }
    }

    pub(crate) fn with_source(
        mut self,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> WebhookErrorKind {
        self.kind
    }

    /// The HTTP status answered.
    pub fn status(&self) -> u16 {
        match (&self.outcome, self.kind) {
            (Some(outcome), _) => outcome.status(),
            (None, WebhookErrorKind::NotConfigured) => 500,
            (None, WebhookErrorKind::UnexpectedJson) => 422,
            (None, _) => 400,
        }
    }

    /// The stable code, which is the whole response body: `signature_mismatch`,
    /// `body_too_large`, `in_flight`, `invalid_json`, …
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// The gate's decision, for [`WebhookErrorKind::Outcome`].
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    /// Takes the gate's decision out.
    pub fn into_outcome(self) -> Option<Outcome> {
        self.outcome
    }
}

impl From<Outcome> for WebhookError {
    fn from(outcome: Outcome) -> Self {
        WebhookError {
            kind: WebhookErrorKind::Outcome(outcome.kind()),
            outcome: Some(outcome),
            source: None,
        }
    }
}

impl fmt::Debug for WebhookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookError")
            .field("kind", &self.kind)
            .field("status", &self.status())
            .field("outcome", &self.outcome)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for WebhookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Some(outcome) => match (outcome.rejection(), outcome.detail()) {
                (Some(rejection), _) => write!(f, "{outcome}: {rejection}"),
                (None, Some(detail)) => write!(f, "{outcome}: {detail}"),
                (None, None) => write!(f, "{outcome}"),
            },
            None => match &self.source {
                Some(source) => write!(f, "{} {}: {source}", self.status(), self.code()),
                None => write!(f, "{} {}", self.status(), self.code()),
            },
        }
    }
}

impl StdError for WebhookError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|source| source as &(dyn StdError + 'static))
    }
}

impl ResponseError for WebhookError {
    fn status_code(&self) -> StatusCode {
        status_code(self.status())
    }

    fn error_response(&self) -> HttpResponse {
        tracing::trace!(
            status = self.status(),
            code = self.code(),
            detail = %self,
            "rejecting webhook request"
        );
        if let Some(outcome) = &self.outcome {
            return outcome_response(outcome.clone());
        }
        plain(HttpResponse::build(self.status_code()), self.code())
    }
}

/// The response for a gate's decision: its status, its headers (`Retry-After` on a 503),
/// its content type and body (the code as plain text, or a handshake's answer); the outcome
/// goes in the response extensions.
pub(crate) fn outcome_response(outcome: Outcome) -> HttpResponse {
    let mut builder = HttpResponse::build(status_code(outcome.status()));
    copy_outcome_headers(&outcome, &mut builder);
    // A handshake's answer may be JSON (Zoom, Discord); everything else is the code.
    builder.insert_header((
        header::CONTENT_TYPE,
        HeaderValue::from_static(outcome.content_type()),
    ));
    let mut response = builder.body(outcome.body_bytes());
    response.extensions_mut().insert(outcome);
    response
}

fn plain(mut builder: HttpResponseBuilder, body: &'static str) -> HttpResponse {
    builder
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        ))
        .body(body)
}

/// actix-web 4 is on `http` 0.2, the gate on `http` 1: statuses and headers cross by value.
fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn copy_outcome_headers(outcome: &Outcome, builder: &mut HttpResponseBuilder) {
    for (name, value) in &outcome.headers() {
        let converted = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        );
        if let (Ok(name), Ok(value)) = converted {
            builder.append_header((name, value));
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::body::MessageBody as _;

    use super::*;

    #[test]
    fn statuses_cross_between_http_versions_and_unknown_ones_become_500() {
        assert_eq!(status_code(413), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(status_code(202), StatusCode::ACCEPTED);
        assert_eq!(status_code(42), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn kinds_without_an_outcome_have_fixed_statuses_and_codes() {
        for (kind, status, code) in [
            (WebhookErrorKind::BodyUnreadable, 400, "body_unreadable"),
            (WebhookErrorKind::InvalidJson, 400, "invalid_json"),
            (WebhookErrorKind::JsonTooDeep, 400, "json_too_deep"),
            (WebhookErrorKind::UnexpectedJson, 422, "unexpected_json"),
            (WebhookErrorKind::NotConfigured, 500, "not_configured"),
        ] {
            let error = WebhookError::new(kind).with_source("detail for the logs");
            assert_eq!((error.status(), error.code()), (status, code));
            assert_eq!(
                error.to_string(),
                format!("{status} {code}: detail for the logs")
            );
            assert!(error.outcome().is_none());
            assert_eq!(error.source().unwrap().to_string(), "detail for the logs");
            let response = error.error_response();
            assert_eq!(response.status().as_u16(), status);
            let body = response.into_body().try_into_bytes().unwrap();
            assert_eq!(body, code);
        }
    }

    #[test]
    fn an_outcome_keeps_its_status_code_and_extensions() {
        let error = WebhookError::from(Outcome::body_too_large());
        let response = error.error_response();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            response.extensions().get::<Outcome>().map(Outcome::code),
            Some("body_too_large")
        );
        assert!(format!("{error:?}").contains("body_too_large"));
        assert_eq!(error.into_outcome().unwrap().status(), 413);
    }
}
