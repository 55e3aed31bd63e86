//! Turning the gate's decision into the response the sender gets.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use hookgate::Outcome;
use http::{HeaderValue, Response, StatusCode, header};

/// Shapes the responses the middleware sends itself.
///
/// The middleware calls it for every response it makes from an [`Outcome`]: in
/// [gate mode](crate::Mode::Receive) for every delivery (the 2xx included), in
/// [verify-only mode](crate::Mode::VerifyOnly) for every delivery it does not pass on (a
/// rejection, a 503, a `duplicate`). Whatever it returns, the middleware then puts the
/// [`Outcome`] into the response's extensions.
///
/// Implemented for closures `Fn(&Outcome) -> http::Response<Bytes>`; [`DefaultRespond`] is
/// the default. Keep the status: it is what tells the sender whether to retry. Keep details
/// out of the body (they may help an attacker); [`outcome_response`] gives the default
/// response to start from.
///
/// ```
/// use bytes::Bytes;
/// use hookgate::{ChannelSink, Gate, Outcome, SchemeId, Verifier};
/// use hookgate_tower::{GateLayer, outcome_response};
///
/// // A JSON body instead of the bare code.
/// let json = |outcome: &Outcome| {
///     let mut response = outcome_response(outcome);
///     *response.body_mut() = Bytes::from(format!(r#"{{"code":"{}"}}"#, outcome.code()));
///     response.headers_mut().insert(
///         http::header::CONTENT_TYPE,
///         http::HeaderValue::from_static("application/json"),
///     );
///     response
/// };
///
/// let verifier = Verifier::builder(SchemeId::Github).secret("It's a Secret to Everybody").build()?;
/// let (sink, _events) = ChannelSink::bounded(1024);
/// let layer = GateLayer::new(Gate::builder(verifier).sink(sink).build()?).respond_with(json);
/// # let _ = layer;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait Respond: Send + Sync + 'static {
    /// The response for `outcome`.
    fn respond(&self, outcome: &Outcome) -> Response<Bytes>;
}

impl<F> Respond for F
where
    F: Fn(&Outcome) -> Response<Bytes> + Send + Sync + 'static,
{
    fn respond(&self, outcome: &Outcome) -> Response<Bytes> {
        self(outcome)
    }
}

/// The default [`Respond`]: [`outcome_response`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultRespond;

impl Respond for DefaultRespond {
    fn respond(&self, outcome: &Outcome) -> Response<Bytes> {
        outcome_response(outcome)
    }
}

/// The default response for an outcome: its status, its headers (`Retry-After` on a 503),
/// `Content-Type: text/plain; charset=utf-8`, and its code as the whole body; for a provider
/// handshake, the answer the provider expects with its content type.
///
/// ```
/// let response = hookgate_tower::outcome_response(&hookgate::Outcome::body_too_large());
/// assert_eq!(response.status(), 413);
/// assert_eq!(response.body(), "body_too_large");
/// ```
pub fn outcome_response(outcome: &Outcome) -> Response<Bytes> {
    let mut response = Response::new(outcome.body_bytes());
    *response.status_mut() = outcome.status_code();
    let headers = response.headers_mut();
    headers.extend(outcome.headers());
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(outcome.content_type()),
    );
    response
}

const TEXT_PLAIN: HeaderValue = HeaderValue::from_static("text/plain; charset=utf-8");

/// The code of the answer to a request whose body could not be read (the connection broke,
/// the chunked encoding was invalid): `400 body_unreadable`.
pub const BODY_UNREADABLE: &str = "body_unreadable";

/// The request body failed while it was read, for another reason than its size.
///
/// The middleware then answers `400 body_unreadable` without asking the gate (there is no
/// delivery to decide about, and [`Respond`] is not called), and puts this error into the
/// response's extensions. Usually the connection is broken and the sender never sees the
/// answer; it retries.
#[derive(Clone)]
pub struct BodyReadError {
    source: Arc<dyn StdError + Send + Sync>,
}

impl BodyReadError {
    pub(crate) fn new(source: Box<dyn StdError + Send + Sync>) -> Self {
        BodyReadError {
            source: Arc::from(source),
        }
    }

    /// The status answered: 400.
    pub fn status(&self) -> StatusCode {
        StatusCode::BAD_REQUEST
    }

    /// The code answered as the body: [`BODY_UNREADABLE`].
    pub fn code(&self) -> &'static str {
        BODY_UNREADABLE
    }

    pub(crate) fn into_response(self) -> Response<Bytes> {
        let mut response = Response::new(Bytes::from_static(BODY_UNREADABLE.as_bytes()));
        *response.status_mut() = self.status();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, TEXT_PLAIN);
        response.extensions_mut().insert(self);
        response
    }
}

impl fmt::Debug for BodyReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyReadError")
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for BodyReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the request body could not be read: {}", self.source)
    }
}

impl StdError for BodyReadError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_response_is_status_headers_and_code() {
        let response = DefaultRespond.respond(&Outcome::body_too_large());
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(response.body(), "body_too_large");
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            "text/plain; charset=utf-8"
        );
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
    }

    #[test]
    fn a_body_read_error_answers_400_and_keeps_its_cause() {
        let error = BodyReadError::new("connection reset".into());
        assert_eq!(
            error.to_string(),
            "the request body could not be read: connection reset"
        );
        assert!(error.source().is_some());
        let response = error.into_response();
        assert_eq!(response.status(), 400);
        assert_eq!(response.body(), "body_unreadable");
        assert!(response.extensions().get::<BodyReadError>().is_some());
    }
}
