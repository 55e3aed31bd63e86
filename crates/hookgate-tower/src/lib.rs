//! # hookgate-tower
//!
//! Webhook verification for [tower] and [axum] in three lines: a [`GateLayer`] reads the raw
//! body under a size limit, asks a [`hookgate::Gate`] (signature, replay window, dedup, sink)
//! and turns its [`Outcome`](hookgate::Outcome) into the response, so the same contract holds
//! in every app: 2xx only once the event is safe, 503 with `Retry-After` when the sender
//! should come back, 400/401/413 for what will never be accepted.
//!
//! [tower]: https://docs.rs/tower
//! [axum]: https://docs.rs/axum
//!
//! ## Two ways to use it
//!
//! 1. **Gate mode** ([`GateLayer::new`], acknowledge then process): the layer hands each
//!    verified event to the gate's sink and answers the sender itself: `200 accepted` once
//!    the sink has it, `200 duplicate` for a retry, and the error rows of the
//!    [contract](hookgate::gate#status-and-code-table) otherwise. The inner service (your
//!    route's handler) is **not called**: your code consumes events from the sink (a
//!    [`ChannelReceiver`](hookgate::sink::ChannelReceiver), the durable inbox's worker).
//! 2. **Verify-only mode** ([`GateLayer::verify_only`]): the layer verifies (and, with a dedup
//!    store, answers already-handled deliveries `200 duplicate`), then calls the inner service
//!    with the [`VerifiedEvent`](hookgate::VerifiedEvent) in the request extensions and the raw
//!    body re-attached as a [`RawBody`]; your handler answers. With the `axum` feature the
//!    [`VerifiedWebhook`] and [`VerifiedJson`] extractors do the same inside a handler, with the
//!    gate taken from the router state, without the layer.
//!
//! ## Quick start: axum, gate mode
//!
//! ```
//! use axum::{Router, routing::post};
//! use hookgate::{ChannelSink, Gate, SchemeId, Verifier};
//! use hookgate_tower::GateLayer;
//! # use hookgate::{SignRequest, Signer};
//! # use tower::ServiceExt as _;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
//! let verifier = Verifier::builder(SchemeId::StandardWebhooksV1).secret(secret).build()?;
//! let (sink, mut events) = ChannelSink::bounded(1024);
//! let gate = Gate::builder(verifier).sink(sink).build()?;
//!
//! let app: Router = Router::new()
//!     // The layer answers every delivery; this handler never runs.
//!     .route("/webhooks", post(|| async {}))
//!     .route_layer(GateLayer::new(gate));
//!
//! tokio::spawn(async move {
//!     while let Some(event) = events.recv().await {
//!         println!("{}: {:?}", event.dedup_key(), event.event_type());
//!     }
//! });
//! // axum::serve(tokio::net::TcpListener::bind("127.0.0.1:3000").await?, app).await?;
//! # let delivery = Signer::new(SchemeId::StandardWebhooksV1, secret)?
//! #     .sign(&SignRequest::new(r#"{"type":"invoice.paid"}"#).id("msg_1"))?;
//! # let mut request = http::Request::post("/webhooks");
//! # for (name, value) in &delivery.headers { request = request.header(name, value); }
//! # let request = request.body(axum::body::Body::from(delivery.body.clone()))?;
//! # let response = app.clone().oneshot(request).await?;
//! # assert_eq!(response.status(), 200);
//! # let forged = http::Request::post("/webhooks").body(axum::body::Body::from("{}"))?;
//! # assert_eq!(app.oneshot(forged).await?.status(), 400);
//! # Ok(())
//! # }
//! ```
//!
//! Put the layer on the webhook route only (axum's `route_layer`, or around the one
//! service): it treats every request it sees as a webhook request: a `POST` is a delivery,
//! a `GET` or `OPTIONS` is answered as the scheme's URL handshake where it has one (Meta,
//! Dropbox, Braintree, Okta; Azure Event Grid's `OPTIONS`) and `405 method_not_allowed`
//! otherwise.
//!
//! ## Quick start: plain tower (or hyper), verify-only mode
//!
//! ```
//! use std::convert::Infallible;
//!
//! use hookgate::{Gate, SchemeId, VerifiedEvent, Verifier};
//! use hookgate_tower::{GateLayer, RawBody};
//! use http::{Request, Response};
//! use tower::{Layer as _, ServiceExt as _, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::builder(SchemeId::Github).secret("It's a Secret to Everybody").build()?;
//! let gate = Gate::builder(verifier).build_verify_only()?;
//!
//! // The handler gets the verified event and the raw body, byte for byte.
//! let handler = service_fn(|request: Request<RawBody>| async move {
//!     let event = request.extensions().get::<VerifiedEvent>().cloned();
//!     let body = request.into_body().into_bytes();
//!     assert_eq!(event.map(|e| e.body().clone()), Some(body.clone()));
//!     Ok::<_, Infallible>(Response::new(http_body_util::Full::new(body)))
//! });
//! let service = GateLayer::verify_only(gate).layer(handler);
//!
//! let signed = Request::post("/webhooks")
//!     .header("X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
//!     .body(http_body_util::Full::new(bytes::Bytes::from("Hello, World!")))?;
//! assert_eq!(service.clone().oneshot(signed).await?.status(), 200);
//!
//! let forged = Request::post("/webhooks")
//!     .header("X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
//!     .body(http_body_util::Full::new(bytes::Bytes::from("Hello, World?")))?;
//! let response = service.oneshot(forged).await?;
//! assert_eq!(response.status(), 401);
//! // The details are in the extensions, never in the body.
//! let outcome = response.extensions().get::<hookgate::Outcome>().unwrap();
//! assert_eq!(outcome.code(), "signature_mismatch");
//! # Ok(())
//! # }
//! ```
//!
//! With hyper, wrap the service in `hyper_util::service::TowerToHyperService` and serve it
//! per connection; any request body implementing [`http_body::Body`] is accepted.
//!
//! ## What the middleware does, in order
//!
//! 1. `Content-Length` (or an exact body size hint) over the gate's
//!    [`max_body_bytes`](hookgate::Gate::max_body_bytes) → `413 body_too_large` before
//!    anything is read.
//! 2. The body is read through [`http_body_util::Limited`]: a streamed (chunked) body that
//!    passes the limit → `413` as soon as it does. Memory grows with what actually arrives,
//!    never with what the sender announced. A body that fails while read → `400
//!    body_unreadable` ([`BodyReadError`] in the response extensions).
//! 3. The gate decides ([`Gate::receive`](hookgate::Gate::receive) in gate mode,
//!    [`Gate::verify_only`](hookgate::Gate::verify_only) in verify-only mode). URL-signing
//!    schemes get [`public_origin`](GateLayer::public_origin) + the request's path and
//!    query.
//! 4. The response: in verify-only mode a `verified` outcome goes to the inner service;
//!    every other outcome is answered by the middleware through [`Respond`] (default
//!    [`outcome_response`]: status, `Retry-After` on a 503, the code as the body), with the
//!    [`Outcome`](hookgate::Outcome) in the response extensions, logged at DEBUG (the gate
//!    itself logs each decision in its `webhook.receive` span).
//!
//! Rejections are responses: the service's error type is the inner service's, and the
//! middleware never produces an error of its own. The response future is a state machine
//! without boxing (the gate boxes only while it talks to the dedup store and the sink).
//!
//! ## Types
//!
//! | | |
//! |---|---|
//! | [`GateLayer`] | the layer: `Clone + Debug`, cheap to clone |
//! | [`GateService`] | the middleware; `Service<http::Request<B>>` for any body `B` |
//! | [`RawBody`] | the request body the inner service gets (verify-only mode) |
//! | [`ResponseBody`] | the response body: the inner service's, or the middleware's answer |
//! | [`ResponseFuture`] | the response future |
//! | [`Respond`], [`DefaultRespond`], [`outcome_response`] | shaping the middleware's responses |
//! | [`VerifiedWebhook`], [`VerifiedJson`], [`WebhookRejection`] | axum extractors (feature `axum`) |
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `axum` | off | the [`VerifiedWebhook`] and [`VerifiedJson`] extractors for axum 0.8, and the use of axum's `OriginalUri` (nested routers) for [`public_origin`](GateLayer::public_origin) |
//!
//! The layer itself works with axum without the feature (axum takes any tower layer); the
//! feature is off by default so that plain tower and hyper users do not compile axum.
//!
//! ## Security notes
//!
//! - **Raw bytes.** The gate verifies the body exactly as received; in verify-only mode the
//!   handler gets those same bytes back, so nothing in between can re-encode them.
//! - **Bounded memory.** At most [`max_body_bytes`](hookgate::Gate::max_body_bytes) (2 MiB by
//!   default) is buffered per request, and only as it arrives. Total memory is that times the
//!   requests in flight: bound concurrency (for example tower's `ConcurrencyLimit` or
//!   `LoadShed`) and put a read timeout on the server (hyper's `header_read_timeout`, or
//!   tower-http's `TimeoutLayer`): this middleware does not time out a slow body itself.
//! - **Nothing leaks through the body.** Responses carry the stable code only; the rejected
//!   header and the sink's or store's error are in the response extensions and the logs.
//! - **The public URL is configured, not guessed.** For Twilio and Square the URL verified is
//!   the configured origin plus the path; the `Host` and `X-Forwarded-*` headers are never
//!   trusted.
//! - **Verify-only mode claims nothing.** Two concurrent copies of a delivery can both reach
//!   the handler, and a handler that fails after the layer verified loses nothing only if the
//!   sender retries (answer non-2xx). Make handlers idempotent on
//!   [`dedup_key`](hookgate::VerifiedEvent::dedup_key), or use gate mode, whose 2xx means the
//!   event is in the sink.

mod body;
#[cfg(feature = "axum")]
mod extract;
mod future;
mod layer;
mod respond;
mod service;

pub use body::{RawBody, ResponseBody};
#[cfg(feature = "axum")]
pub use extract::{
    MAX_JSON_DEPTH, VerifiedJson, VerifiedWebhook, WebhookRejection, WebhookRejectionKind,
};
pub use future::ResponseFuture;
pub use layer::{GateLayer, InvalidOrigin, Mode};
pub use respond::{BODY_UNREADABLE, BodyReadError, DefaultRespond, Respond, outcome_response};
pub use service::GateService;

/// The error type bodies are converted to.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
