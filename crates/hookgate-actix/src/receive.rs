//! The path every request takes: body limit, raw bytes, the gate. Shared by the middleware
//! and the extractors so that they cannot drift apart.

use actix_web::dev::Payload;
use actix_web::http::header::HeaderMap;
use actix_web::http::{Method, Uri};
use bytes::Bytes;
use hookgate::{Outcome, RequestContext};

use crate::body::{BodyError, declared_too_large, read_limited};
use crate::config::Settings;
use crate::error::{WebhookError, WebhookErrorKind};
use crate::headers::ActixHeaders;

/// Which of the gate's calls to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// [`Gate::receive`](hookgate::Gate::receive): verify, deduplicate, hand off.
    Receive,
    /// [`Gate::verify_only`](hookgate::Gate::verify_only): verify and hand the event back.
    VerifyOnly,
}

/// A decided request: the gate's outcome and the raw body it was given.
pub(crate) struct Decided {
    pub(crate) outcome: Outcome,
    pub(crate) body: Bytes,
}

/// Reads the body under the gate's limit and asks the gate.
///
/// # Errors
/// `413 body_too_large` (as an outcome) when `Content-Length` announces more than the limit
/// (the body is not read) or the stream passes it (reading stops there);
/// `400 body_unreadable` when the stream fails.
pub(crate) async fn decide(
    settings: &Settings,
    mode: Mode,
    method: &Method,
    headers: &HeaderMap,
    uri: &Uri,
    payload: &mut Payload,
) -> Result<Decided, WebhookError> {
    let gate = &settings.gate;
    if *method == Method::GET {
        // A GET is never a delivery: a provider's GET handshake (Meta), or 405.
        return Ok(Decided {
            outcome: gate
                .receive_get_with_headers(&ActixHeaders::new(headers), uri.query())
                .await,
            body: Bytes::new(),
        });
    }
    if *method == Method::OPTIONS {
        // Never a delivery either: Azure Event Grid's CloudEvents validation, or 405.
        return Ok(Decided {
            outcome: gate
                .receive_options(&ActixHeaders::new(headers), uri.query())
                .await,
            body: Bytes::new(),
        });
    }
    let limit = gate.max_body_bytes();
    if declared_too_large(headers, limit) {
        return Err(WebhookError::from(gate.body_too_large()));
    }
    let body = match read_limited(payload, limit).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => return Err(WebhookError::from(gate.body_too_large())),
        Err(BodyError::Unreadable(error)) => {
            tracing::debug!(%error, "webhook body unreadable");
            return Err(WebhookError::new(WebhookErrorKind::BodyUnreadable).with_source(error));
        }
    };
    let url = settings.url_for(uri);
    // The request line: schemes that sign the URL (Twilio, Square, HubSpot v3) or the method
    // (HubSpot v3) read it from here, and a handshake in the query of a POST (Microsoft
    // Graph's validationToken), public origin or not.
    let request = RequestContext::new()
        .with_url_opt(url.as_deref())
        .with_method(method.as_str())
        .with_query_opt(uri.query());
    let headers = ActixHeaders::new(headers);
    let future = match mode {
        Mode::Receive => gate.receive(&headers, body.clone(), request),
        Mode::VerifyOnly => gate.verify_only(&headers, body.clone(), request),
    };
    Ok(Decided {
        outcome: future.await,
        body,
    })
}
