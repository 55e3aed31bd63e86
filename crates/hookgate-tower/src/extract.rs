//! axum extractors: a verified delivery, and its JSON body deserialized after verification.

use std::error::Error as StdError;
use std::fmt;

use axum::extract::{FromRef, FromRequest, Request};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use hookgate::{Gate, Outcome, OutcomeKind, VerifiedEvent};
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use crate::respond::{BODY_UNREADABLE, BodyReadError};

/// The deepest nesting of arrays and objects [`VerifiedJson`] deserializes; deeper bodies
/// are rejected with `400 json_too_deep` before any parsing.
pub const MAX_JSON_DEPTH: usize = 64;

/// Extracts a verified delivery: the [`VerifiedEvent`], whose [`body`](VerifiedEvent::body)
/// is the raw body byte for byte.
///
/// - Behind a verify-only [`GateLayer`](crate::GateLayer), it takes the event the layer
///   verified from the request extensions (nothing is verified twice).
/// - Without the layer, it verifies the request itself with the [`Gate`] from the router's
///   state (`Gate: FromRef<S>`: the state is a `Gate`, or a struct with a `Gate` field and a
///   `FromRef` impl), with [`Gate::verify_only`]: the body is read up to the gate's
///   [limit](Gate::max_body_bytes) (a larger `Content-Length` is refused before reading),
///   and with a dedup store a committed key is answered `200 duplicate` without running the
///   handler. URL-signing schemes (Twilio, Square) use the URL configured on the verifier.
///
/// It consumes the body, so it must be the last extractor of the handler. It never
/// enqueues: the handler processes the event (and should be idempotent on
/// [`dedup_key`](VerifiedEvent::dedup_key), since senders retry). Any other answer is a
/// [`WebhookRejection`].
///
/// ```
/// use axum::{Router, routing::post};
/// use hookgate::{Gate, SchemeId, Verifier};
/// use hookgate_tower::VerifiedWebhook;
///
/// async fn handler(VerifiedWebhook(event): VerifiedWebhook) -> &'static str {
///     println!("{} bytes from {}", event.body().len(), event.scheme());
///     "ok"
/// }
///
/// let verifier = Verifier::builder(SchemeId::Github).secret("It's a Secret to Everybody").build()?;
/// let gate = Gate::builder(verifier).build_verify_only()?;
/// let app: Router = Router::new().route("/webhooks", post(handler)).with_state(gate);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct VerifiedWebhook(pub VerifiedEvent);

impl<S> FromRequest<S> for VerifiedWebhook
where
    S: Send + Sync,
    Gate: FromRef<S>,
{
    type Rejection = WebhookRejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = request.into_parts();
        if let Some(event) = parts.extensions.remove::<VerifiedEvent>() {
            return Ok(VerifiedWebhook(event));
        }
        let gate = Gate::from_ref(state);
        if parts.method == http::Method::GET {
            // A provider's GET handshake (Meta) is answered here; other schemes get 405.
            let outcome = gate
                .receive_get_with_headers(&parts.headers, parts.uri.query())
                .await;
            return Err(WebhookRejection::decided(outcome));
        }
        if parts.method == http::Method::OPTIONS {
            // Azure Event Grid's CloudEvents validation is answered here; other schemes get 405.
            let outcome = gate
                .receive_options(&parts.headers, parts.uri.query())
                .await;
            return Err(WebhookRejection::decided(outcome));
        }
        let limit = gate.max_body_bytes();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok());
        if declared.is_some_and(|length| length > u64::try_from(limit).unwrap_or(u64::MAX)) {
            return Err(WebhookRejection::decided(gate.body_too_large()));
        }
        let bytes = match Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.is::<LengthLimitError>() => {
                return Err(WebhookRejection::decided(gate.body_too_large()));
            }
            Err(error) => {
                return Err(WebhookRejection::new(Kind::BodyUnreadable(
                    BodyReadError::new(error),
                )));
            }
        };
        // No public origin here (URL-signing schemes need the layer's): the method, and the
        // query (Microsoft Graph's validationToken arrives in the query of a POST).
        let line = hookgate::RequestContext::new()
            .with_method(parts.method.as_str())
            .with_query_opt(parts.uri.query());
        let outcome = gate.verify_only(&parts.headers, bytes, line).await;
        if outcome.kind() == OutcomeKind::Verified && outcome.event().is_some() {
            if let Some(event) = outcome.into_event() {
                return Ok(VerifiedWebhook(event));
            }
            return Err(WebhookRejection::new(Kind::BodyUnreadable(
                BodyReadError::new("the verified event went missing".into()),
            )));
        }
        Err(WebhookRejection::decided(outcome))
    }
}

/// Extracts a verified delivery and deserializes its JSON body **after** verification:
/// `VerifiedJson(payload, event)`.
///
/// It works like [`VerifiedWebhook`] (behind a verify-only layer or on its own with a
/// [`Gate`] in the state), then parses the raw body with `serde_json`. Nesting deeper than
/// [`MAX_JSON_DEPTH`] is refused before parsing (`400 json_too_deep`), invalid JSON is
/// `400 invalid_json`, and JSON that does not fit `T` is `422 unexpected_json`. The
/// `Content-Type` is not checked: the signature already says who sent the body.
///
/// ```
/// use axum::{Router, routing::post};
/// use hookgate::{Gate, SchemeId, Verifier};
/// use hookgate_tower::VerifiedJson;
///
/// #[derive(serde::Deserialize)]
/// struct Invoice { id: String }
///
/// async fn handler(VerifiedJson(invoice, event): VerifiedJson<Invoice>) -> &'static str {
///     println!("invoice {} (dedup key {})", invoice.id, event.dedup_key());
///     "ok"
/// }
///
/// let verifier = Verifier::builder(SchemeId::Stripe).secret("whsec_test").build()?;
/// let gate = Gate::builder(verifier).build_verify_only()?;
/// let app: Router = Router::new().route("/webhooks", post(handler)).with_state(gate);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct VerifiedJson<T>(pub T, pub VerifiedEvent);

impl<S, T> FromRequest<S> for VerifiedJson<T>
where
    S: Send + Sync,
    Gate: FromRef<S>,
    T: DeserializeOwned,
{
    type Rejection = WebhookRejection;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let VerifiedWebhook(event) = VerifiedWebhook::from_request(request, state).await?;
        let payload = parse_json(event.body())?;
        Ok(VerifiedJson(payload, event))
    }
}

fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, WebhookRejection> {
    if nesting_exceeds(body, MAX_JSON_DEPTH) {
        return Err(WebhookRejection::new(Kind::JsonTooDeep));
    }
    serde_json::from_slice(body).map_err(|error| {
        let kind = match error.classify() {
            serde_json::error::Category::Data => Kind::UnexpectedJson(error.to_string()),
            _ => Kind::InvalidJson(error.to_string()),
        };
        WebhookRejection::new(kind)
    })
}

/// Whether arrays and objects nest deeper than `max`, counting only brackets outside
/// strings. Linear, no allocation.
fn nesting_exceeds(json: &[u8], max: usize) -> bool {
    let mut depth = 0_usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in json {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth = depth.saturating_add(1);
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Why [`VerifiedWebhook`] or [`VerifiedJson`] did not extract: a response for the sender.
///
/// Its [`status`](Self::status) is the gate's (400, 401, 413, 503, and 200 for a
/// `duplicate`, which the handler need not see) or the JSON check's (400, 422); the
/// response body is the [`code`](Self::code) alone, with `Retry-After` on a 503. The
/// gate's [`Outcome`] (when the gate decided) and the rejection itself go into the
/// response extensions, and the rejection is logged at TRACE.
#[derive(Debug, Clone)]
pub struct WebhookRejection {
    kind: Kind,
}

/// What a [`WebhookRejection`] is about.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookRejectionKind {
    /// The gate decided (a verification failure, `body_too_large`, `duplicate`, a 503):
    /// see [`WebhookRejection::outcome`].
    Outcome,
    /// The body could not be read: `400 body_unreadable`.
    BodyUnreadable,
    /// [`VerifiedJson`]: the verified body is not valid JSON: `400 invalid_json`.
    InvalidJson,
    /// [`VerifiedJson`]: the verified body nests deeper than [`MAX_JSON_DEPTH`]:
    /// `400 json_too_deep`.
    JsonTooDeep,
    /// [`VerifiedJson`]: the verified JSON does not have the expected shape:
    /// `422 unexpected_json`.
    UnexpectedJson,
}

#[derive(Debug, Clone)]
enum Kind {
    Outcome(Box<Outcome>),
    BodyUnreadable(BodyReadError),
    InvalidJson(String),
    JsonTooDeep,
    UnexpectedJson(String),
}

impl WebhookRejection {
    fn new(kind: Kind) -> Self {
        WebhookRejection { kind }
    }

    fn decided(outcome: Outcome) -> Self {
        WebhookRejection::new(Kind::Outcome(Box::new(outcome)))
    }

    /// What the rejection is about.
    pub fn kind(&self) -> WebhookRejectionKind {
        match &self.kind {
            Kind::Outcome(_) => WebhookRejectionKind::Outcome,
            Kind::BodyUnreadable(_) => WebhookRejectionKind::BodyUnreadable,
            Kind::InvalidJson(_) => WebhookRejectionKind::InvalidJson,
            Kind::JsonTooDeep => WebhookRejectionKind::JsonTooDeep,
            Kind::UnexpectedJson(_) => WebhookRejectionKind::UnexpectedJson,
        }
    }

    /// The status of the response.
    pub fn status(&self) -> StatusCode {
        match &self.kind {
            Kind::Outcome(outcome) => outcome.status_code(),
            Kind::BodyUnreadable(_) | Kind::InvalidJson(_) | Kind::JsonTooDeep => {
                StatusCode::BAD_REQUEST
            }
            Kind::UnexpectedJson(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    /// The stable code: the gate's (`signature_mismatch`, `duplicate`, …) or
    /// `body_unreadable`, `invalid_json`, `json_too_deep`, `unexpected_json`.
    pub fn code(&self) -> &'static str {
        match &self.kind {
            Kind::Outcome(outcome) => outcome.code(),
            Kind::BodyUnreadable(_) => BODY_UNREADABLE,
            Kind::InvalidJson(_) => "invalid_json",
            Kind::JsonTooDeep => "json_too_deep",
            Kind::UnexpectedJson(_) => "unexpected_json",
        }
    }

    /// The response body: the code alone.
    pub fn body_text(&self) -> String {
        self.code().to_owned()
    }

    /// The gate's decision, when the gate decided.
    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.kind {
            Kind::Outcome(outcome) => Some(outcome),
            _ => None,
        }
    }
}

impl IntoResponse for WebhookRejection {
    fn into_response(self) -> Response {
        let status = self.status();
        let code = self.code();
        tracing::trace!(status = status.as_u16(), code, detail = %self, "rejecting webhook request");
        let mut response = match &self.kind {
            // The outcome's body: its code, or a provider handshake's answer.
            Kind::Outcome(outcome) => (status, outcome.body_bytes()).into_response(),
            _ => (status, code).into_response(),
        };
        let content_type = match &self.kind {
            Kind::Outcome(outcome) => outcome.content_type(),
            _ => "text/plain; charset=utf-8",
        };
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Kind::Outcome(outcome) = &self.kind {
            response.headers_mut().extend(outcome.headers());
            response.extensions_mut().insert((**outcome).clone());
        }
        response.extensions_mut().insert(self);
        response
    }
}

impl fmt::Display for WebhookRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Outcome(outcome) => match (outcome.rejection(), outcome.detail()) {
                (Some(rejection), _) => write!(f, "{outcome}: {rejection}"),
                (None, Some(detail)) => write!(f, "{outcome}: {detail}"),
                (None, None) => write!(f, "{outcome}"),
            },
            Kind::BodyUnreadable(error) => error.fmt(f),
            Kind::InvalidJson(error) => write!(f, "the verified body is not valid JSON: {error}"),
            Kind::JsonTooDeep => write!(
                f,
                "the verified JSON body nests deeper than {MAX_JSON_DEPTH} levels"
            ),
            Kind::UnexpectedJson(error) => {
                write!(f, "the verified JSON body has an unexpected shape: {error}")
            }
        }
    }
}

impl StdError for WebhookRejection {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.kind {
            Kind::BodyUnreadable(error) => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_counted_outside_strings_only() {
        assert!(!nesting_exceeds(br#"{"a":[1,{"b":2}]}"#, 3));
        assert!(nesting_exceeds(br#"{"a":[1,{"b":[2]}]}"#, 3));
        assert!(!nesting_exceeds(br#"{"a":"[[[[[[\"[[[["}"#, 1));
        let deep = "[".repeat(MAX_JSON_DEPTH + 1);
        assert!(nesting_exceeds(deep.as_bytes(), MAX_JSON_DEPTH));
        let fine = format!(
            "{}{}",
            "[".repeat(MAX_JSON_DEPTH),
            "]".repeat(MAX_JSON_DEPTH)
        );
        assert!(!nesting_exceeds(fine.as_bytes(), MAX_JSON_DEPTH));
    }

    #[test]
    fn json_failures_have_codes_and_statuses() {
        #[derive(Debug, serde::Deserialize)]
        struct Invoice {
            #[allow(dead_code)]
            id: String,
        }
        let check = |body: &str, status: u16, code: &str| {
            let error = parse_json::<Invoice>(&Bytes::from(body.to_owned())).unwrap_err();
            assert_eq!((error.status().as_u16(), error.code()), (status, code));
            assert_eq!(error.body_text(), code);
            assert!(error.outcome().is_none());
        };
        check("{", 400, "invalid_json");
        check(r#"{"id":1}"#, 422, "unexpected_json");
        check(&"[".repeat(1000), 400, "json_too_deep");
        assert!(parse_json::<Invoice>(&Bytes::from_static(br#"{"id":"in_1"}"#)).is_ok());
    }

    #[test]
    fn a_rejection_response_carries_the_code_retry_after_and_the_outcome() {
        let rejection = WebhookRejection::decided(Outcome::body_too_large());
        assert_eq!(rejection.kind(), WebhookRejectionKind::Outcome);
        assert_eq!(rejection.to_string(), "413 body_too_large");
        let response = rejection.into_response();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            response.extensions().get::<Outcome>().unwrap().code(),
            "body_too_large"
        );
        assert!(response.extensions().get::<WebhookRejection>().is_some());
    }
}
