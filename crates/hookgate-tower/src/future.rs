//! The response future: read the body under the limit, ask the gate, then answer or call
//! the inner service. A state machine; nothing is boxed here (the gate's own future boxes
//! only while it talks to the dedup store and the sink).

use std::fmt;
use std::future::Future;
use std::mem;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use hookgate::{Outcome, OutcomeKind, ReceiveFuture, RequestContext};
use http::request::Parts;
use http::{HeaderMap, Request, Response, header};
use http_body::Body;
use http_body_util::combinators::Collect;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::BoxError;
use crate::body::{RawBody, ResponseBody};
use crate::layer::{Mode, Shared};
use crate::respond::{BodyReadError, Respond};

pin_project! {
    /// The response future of [`GateService`](crate::GateService).
    pub struct ResponseFuture<S, B, R>
    where
        S: Service<Request<RawBody>>,
        B: Body,
        B::Error: Into<BoxError>,
    {
        #[pin]
        state: State<B, S::Future>,
        // Only in verify-only mode: in Gate mode the inner service is never called, so it is
        // not cloned for every request either.
        inner: Option<S>,
        shared: Arc<Shared<R>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<B, F>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        // Reading the body, at most the limit.
        Collecting { #[pin] collect: Collect<Limited<B>>, parts: Parts },
        // The gate is deciding.
        Deciding { decision: ReceiveFuture, parts: Parts },
        // Verify-only mode: the inner service has the request.
        Inner { #[pin] future: F },
        // Decided without reading the body (`Content-Length` over the limit).
        Decided { outcome: Option<Outcome> },
        Done,
    }
}

impl<S, B, R> ResponseFuture<S, B, R>
where
    S: Service<Request<RawBody>>,
    B: Body,
    B::Error: Into<BoxError>,
{
    pub(crate) fn new(request: Request<B>, inner: Option<S>, shared: Arc<Shared<R>>) -> Self {
        let limit = shared.gate.max_body_bytes();
        let (parts, body) = request.into_parts();
        let state = if declared_too_large(&parts.headers, &body, limit) {
            State::Decided {
                outcome: Some(shared.gate.body_too_large()),
            }
        } else {
            State::Collecting {
                collect: Limited::new(body, limit).collect(),
                parts,
            }
        };
        ResponseFuture {
            state,
            inner,
            shared,
        }
    }
}

impl<S, B, R, ResBody> Future for ResponseFuture<S, B, R>
where
    S: Service<Request<RawBody>, Response = Response<ResBody>>,
    B: Body,
    B::Data: Buf,
    B::Error: Into<BoxError>,
    R: Respond,
{
    type Output = Result<Response<ResponseBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            let next = match this.state.as_mut().project() {
                StateProj::Collecting { collect, parts } => {
                    let collected = ready!(collect.poll(cx));
                    let parts = take_parts(parts);
                    match collected {
                        Ok(collected) => {
                            let body = collected.to_bytes();
                            let decision = decide(this.shared, &parts, body);
                            State::Deciding { decision, parts }
                        }
                        Err(error) if error.is::<LengthLimitError>() => State::Decided {
                            outcome: Some(this.shared.gate.body_too_large()),
                        },
                        Err(error) => {
                            tracing::debug!(%error, "webhook body could not be read: 400");
                            this.state.set(State::Done);
                            let response = BodyReadError::new(error).into_response();
                            return Poll::Ready(Ok(response.map(ResponseBody::answer)));
                        }
                    }
                }
                StateProj::Deciding { decision, parts } => {
                    let outcome = ready!(Pin::new(decision).poll(cx));
                    let parts = take_parts(parts);
                    match pass_on(outcome, this.inner.take()) {
                        Ok((request, mut inner)) => {
                            let request = request.into_request(parts);
                            State::Inner {
                                future: inner.call(request),
                            }
                        }
                        Err(outcome) => State::Decided {
                            outcome: Some(outcome),
                        },
                    }
                }
                StateProj::Inner { future } => {
                    let response = ready!(future.poll(cx));
                    this.state.set(State::Done);
                    return Poll::Ready(response.map(|r| r.map(ResponseBody::inner)));
                }
                StateProj::Decided { outcome } => {
                    let outcome = outcome.take().unwrap_or_else(Outcome::body_too_large);
                    this.state.set(State::Done);
                    return Poll::Ready(Ok(answer(this.shared.respond.as_ref(), outcome)));
                }
                StateProj::Done => {
                    // Polled after completion: not allowed by the `Future` contract; stay
                    // pending rather than panic.
                    tracing::error!("hookgate-tower ResponseFuture polled after completion");
                    return Poll::Pending;
                }
            };
            this.state.set(next);
        }
    }
}

impl<S, B, R> fmt::Debug for ResponseFuture<S, B, R>
where
    S: Service<Request<RawBody>>,
    B: Body,
    B::Error: Into<BoxError>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Collecting { .. } => "collecting",
            State::Deciding { .. } => "deciding",
            State::Inner { .. } => "inner",
            State::Decided { .. } => "decided",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

/// A verified delivery to hand to the inner service (verify-only mode).
struct PassOn {
    event: hookgate::VerifiedEvent,
}

impl PassOn {
    fn into_request(self, mut parts: Parts) -> Request<RawBody> {
        let body = RawBody::new(self.event.body().clone());
        parts.extensions.insert(self.event);
        Request::from_parts(parts, body)
    }
}

/// In verify-only mode (the only one that holds the inner service) a `verified` outcome goes
/// on to the inner service; everything else is answered by the middleware.
fn pass_on<S>(outcome: Outcome, inner: Option<S>) -> Result<(PassOn, S), Outcome> {
    let Some(inner) = inner else {
        return Err(outcome);
    };
    if outcome.kind() != OutcomeKind::Verified || outcome.event().is_none() {
        return Err(outcome);
    }
    match outcome.into_event() {
        Some(event) => Ok((PassOn { event }, inner)),
        // Unreachable: the event was there a line above. Refuse rather than pass on an
        // unverified request.
        None => Err(Outcome::body_too_large()),
    }
}

fn decide<R>(shared: &Shared<R>, parts: &Parts, body: Bytes) -> ReceiveFuture {
    // A GET is never a delivery: it is a provider's GET handshake (Meta), or 405.
    if parts.method == http::Method::GET {
        return shared
            .gate
            .receive_get_with_headers(&parts.headers, parts.uri.query());
    }
    // An OPTIONS is never a delivery: Azure Event Grid's CloudEvents validation (its token
    // in the query or `Authorization`), or 405.
    if parts.method == http::Method::OPTIONS {
        return shared
            .gate
            .receive_options(&parts.headers, parts.uri.query());
    }
    let url = shared
        .public_origin
        .as_deref()
        .map(|origin| public_url(origin, parts));
    // The request line: schemes that sign the URL (Twilio, Square, HubSpot v3) or the method
    // (HubSpot v3) read it from here, and a handshake in the query of a POST (Microsoft
    // Graph's validationToken), public origin or not.
    let request = RequestContext::new()
        .with_url_opt(url.as_deref())
        .with_method(parts.method.as_str())
        .with_query_opt(parts.uri.query());
    match shared.mode {
        Mode::Receive => shared.gate.receive(&parts.headers, body, request),
        Mode::VerifyOnly => shared.gate.verify_only(&parts.headers, body, request),
    }
}

/// The origin followed by the request's path and query, as the sender called it.
fn public_url(origin: &str, parts: &Parts) -> String {
    #[cfg(feature = "axum")]
    let uri = parts
        .extensions
        .get::<axum::extract::OriginalUri>()
        .map_or(&parts.uri, |original| &original.0);
    #[cfg(not(feature = "axum"))]
    let uri = &parts.uri;
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let mut url = String::with_capacity(origin.len().saturating_add(path_and_query.len()));
    url.push_str(origin);
    url.push_str(path_and_query);
    url
}

/// Whether the sender declared a body over the limit: answered before reading any of it.
fn declared_too_large<B: Body>(headers: &HeaderMap, body: &B, limit: usize) -> bool {
    let limit = u64::try_from(limit).unwrap_or(u64::MAX);
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    declared.is_some_and(|length| length > limit) || body.size_hint().lower() > limit
}

fn answer<R: Respond, B>(respond: &R, outcome: Outcome) -> Response<ResponseBody<B>> {
    tracing::debug!(
        status = outcome.status(),
        code = outcome.code(),
        "webhook answered by the middleware"
    );
    let response = respond.respond(&outcome);
    let (mut parts, body) = response.into_parts();
    parts.extensions.insert(outcome);
    Response::from_parts(parts, ResponseBody::answer(body))
}

/// Moves the request head out of a state that is about to be replaced.
fn take_parts(parts: &mut Parts) -> Parts {
    mem::replace(parts, Request::new(()).into_parts().0)
}

#[cfg(test)]
mod tests {
    use http_body_util::Full;

    use super::*;

    #[test]
    fn a_declared_length_over_the_limit_is_caught_before_reading() {
        let mut headers = HeaderMap::new();
        let body = http_body_util::Empty::<Bytes>::new();
        assert!(!declared_too_large(&headers, &body, 10));
        headers.insert(header::CONTENT_LENGTH, "10".parse().unwrap());
        assert!(!declared_too_large(&headers, &body, 10));
        headers.insert(header::CONTENT_LENGTH, "11".parse().unwrap());
        assert!(declared_too_large(&headers, &body, 10));
        headers.insert(
            header::CONTENT_LENGTH,
            "99999999999999999999999".parse().unwrap(),
        );
        assert!(
            !declared_too_large(&headers, &body, 10),
            "unparsable: read and count"
        );

        let known = Full::new(Bytes::from_static(b"0123456789A"));
        assert!(declared_too_large(&HeaderMap::new(), &known, 10));
    }

    #[test]
    fn the_public_url_is_the_origin_and_the_called_path() {
        let (parts, ()) = Request::post("/hooks/twilio?a=1&b=2")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(
            public_url("https://hooks.example.com", &parts),
            "https://hooks.example.com/hooks/twilio?a=1&b=2"
        );
        let (parts, ()) = Request::post("http://internal:8080/x")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(
            public_url("https://h.example", &parts),
            "https://h.example/x"
        );
    }
}
