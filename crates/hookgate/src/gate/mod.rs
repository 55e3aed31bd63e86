//! The Gate: one decision per delivery, shared by every adapter.
//!
//! A [`Gate`] turns a raw request (headers, body bytes, optionally the public URL) into an
//! [`Outcome`]: verify the signature → check the replay window → claim the dedup key →
//! hand the event to the [`Sink`] → commit the dedup key → answer. The tower/axum and
//! actix adapters and the CLI server only translate the request in and the outcome out,
//! which is why they all behave the same.
//!
//! ```
//! use hookgate::{ChannelSink, FixedClock, Gate, SchemeId, SignRequest, Signer, Verifier};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
//! let verifier = Verifier::builder(SchemeId::StandardWebhooksV1)
//!     .secret(secret)
//!     # .clock(FixedClock::from_unix(1_700_000_000))
//!     .build()?;
//! let (sink, mut events) = ChannelSink::bounded(1024);
//! let gate = Gate::builder(verifier).sink(sink).build()?;
//!
//! // What a sender would send (adapters pass the real request's headers and body).
//! let delivery = Signer::new(SchemeId::StandardWebhooksV1, secret)?
//!     .sign(&SignRequest::new(r#"{"type":"invoice.paid"}"#).id("msg_1").timestamp(1_700_000_000))?;
//!
//! let outcome = gate.receive(&delivery.headers, delivery.body.clone(), None).await;
//! assert_eq!((outcome.status(), outcome.code()), (200, "accepted"));
//! assert_eq!(events.try_recv().unwrap().dedup_key(), "standard-webhooks-v1:id:msg_1");
//!
//! // The sender retries: acknowledged again, enqueued once.
//! let again = gate.receive(&delivery.headers, delivery.body.clone(), None).await;
//! assert_eq!((again.status(), again.code()), (200, "duplicate"));
//! assert!(events.try_recv().is_none());
//!
//! // A forged body never reaches the sink.
//! let forged = gate.receive(&delivery.headers, "{}", None).await;
//! assert_eq!((forged.status(), forged.body()), (401, "signature_mismatch"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
//!
//! # The at-least-once contract
//!
//! A webhook sender keeps retrying a delivery until it gets a 2xx, then forgets it. So the
//! gate answers 2xx **only once a copy of the event is in the sink** (durably, for a durable
//! sink) and answers "retry later" whenever it cannot be sure of that. The consequences:
//!
//! - **No loss.** Every 2xx follows a successful [`Sink::enqueue`] (or finds the key
//!   already committed, which only happens after one). A sink or dedup store that fails or
//!   hangs yields a 503, and the sender retries.
//! - **Duplicates are possible, and rare.** If the process dies after the sink took the
//!   event but before the answer left, or the sink stored an event whose acknowledgement
//!   missed the deadline, the sender retries and the event is enqueued again. Consumers
//!   must be idempotent on [`VerifiedEvent::dedup_key`]; the dedup store makes repeats
//!   rare, not impossible.
//! - **Claims never swallow retries.** The dedup key is *claimed* before the hand-off and
//!   *committed* after it. A claim that is released (the sink said no) or that expires (the
//!   process died; 30 s by default) lets the next retry through.
//!
//! # Status and code table
//!
//! Every outcome has a [status](Outcome::status), a stable [code](Outcome::code) (which is
//! also the whole response body), and on every 503 a `Retry-After` header. "Success" is
//! the configured [success status](GateBuilder::success_status), 200 by default.
//!
//! | situation | status | code | what happened, and what it tells the sender |
//! |---|---|---|---|
//! | verified, new | success | `accepted` | the sink has it and the key is committed: **stop sending this delivery** |
//! | verified, already handed off | success | `duplicate` | nothing enqueued again: stop sending it |
//! | verify-only mode, verified | success | `verified` | the event is in the outcome for the caller to process |
//! | verified provider URL handshake (Slack, Zoom, Twitch, Discord) | 200 | `handshake` | the body is the provider's required answer ([`Outcome::body`]); nothing stored or sent to the sink (which may [record it](Sink::record_handshake)) |
//! | unsigned handshake: WooCommerce's ping, Asana's `X-Hook-Secret` equal to a configured key | 200 | `handshake` | empty body (Asana: the header echoed); looked for only after `missing_header` |
//! | Microsoft Graph's empty `POST ?validationToken=T` | 200 | `handshake` | T URL-decoded, `text/plain`; looked for only after `missing_signature` (the request's query comes in the [`RequestContext`]) |
//! | Braintree's `GET ?bt_challenge=C` | 200 | `handshake` | `public_key\|hex(HMAC-SHA1(SHA-1(private key), C))`; C not 20–32 lowercase hex: 400 `malformed_header` |
//! | `GET` handshake (Meta, Dropbox), right verify token | 200 | `handshake` | the body is `hub.challenge`; see [`Gate::receive_get`] |
//! | Okta's verification `GET`, right auth header | 200 | `handshake` | `{"verification":V}`; a wrong auth header gets the delivery's 401; see [`Gate::receive_get_with_headers`] |
//! | `GET` handshake, wrong verify token (or not a subscribe) | 403 | `handshake_refused` | nothing stored |
//! | `GET` to a scheme without a `GET` handshake | 405 + Allow | `method_not_allowed` | nothing stored |
//! | Azure Event Grid's `SubscriptionValidation` POST, right token | 200 | `handshake` | `{"validationResponse":V}`; a missing or wrong token gets the delivery's 400/401 |
//! | Azure Event Grid's CloudEvents `OPTIONS`, right token | 200 | `handshake` | `WebHook-Allowed-Origin` echoes `WebHook-Request-Origin`; see [`Gate::receive_options`] |
//! | `OPTIONS` to a scheme without an `OPTIONS` handshake | 405 + Allow | `method_not_allowed` | nothing stored |
//! | verified, another copy in flight | 503 + Retry-After | `in_flight` | a concurrent copy is being handed off and is not durable yet: retry later (the retry will get `duplicate`, or be accepted if that copy failed) |
//! | required header absent | 400 | `missing_header` | not a delivery of this scheme: nothing stored |
//! | header not in the scheme's syntax | 400 | `malformed_header` | nothing stored |
//! | timestamp unreadable | 400 | `invalid_timestamp` | nothing stored |
//! | signature fields absent from the body (Mailgun) | 400 | `missing_signature` | nothing stored |
//! | no signature matches a live key | 401 | `signature_mismatch` | forged, or signed with a key we do not hold: nothing stored |
//! | only unsupported signature versions | 401 | `no_supported_signature` | nothing stored |
//! | signed body hash differs (Twilio) | 401 | `body_hash_mismatch` | nothing stored |
//! | shared token differs (GitLab) | 401 | `token_mismatch` | nothing stored |
//! | timestamp older than the window | 401 | `timestamp_too_old` | a possible replay: nothing stored |
//! | timestamp further ahead than the window | 401 | `timestamp_too_new` | nothing stored |
//! | body over the limit | 413 | `body_too_large` | nothing stored (adapters answer before buffering it all) |
//! | sink at capacity | 503 + Retry-After | `sink_full` | back-pressure: claim released, retry later |
//! | sink down or closed | 503 + Retry-After | `sink_unavailable` | claim released, retry later |
//! | dedup store failed | 503 + Retry-After | `dedup_unavailable` | fails closed: nothing enqueued, retry later |
//! | store or sink slower than the deadline | 503 + Retry-After | `timeout` | claim released, retry later |
//!
//! Why 503 rather than 409 for `in_flight`: every sender retries a 503, while some treat a
//! 4xx as final and would drop the delivery.
//!
//! A dedup commit that fails *after* the sink took the event still answers `accepted`: the
//! event is durable, which is what the 2xx promises; the claim then expires and a later
//! replay would be enqueued again (logged, and counted as `reason="dedup_commit"`).
//!
//! # The decision, step by step
//!
//! 1. **Body limit**: over [`max_body_bytes`](GateBuilder::max_body_bytes) → 413.
//! 2. **Verification** by the [`Verifier`]: signature against every live key, replay window
//!    by timestamp, authenticated dedup key. Synchronous, done when
//!    [`receive`](Gate::receive) is called. A verified delivery that is the scheme's URL
//!    [handshake](crate::handshake) is answered here ([`Verifier::handshake`]) and goes no
//!    further: no dedup claim, no enqueue.
//! 3. **Claim** the dedup key ([`DedupStore::claim`]): `duplicate`, `in_flight`, or a new
//!    claim.
//! 4. **Enqueue** ([`Sink::hand_off`], which is [`Sink::enqueue`] unless the sink
//!    deduplicates itself); on failure **release** the claim.
//! 5. **Commit** the dedup key ([`DedupStore::commit`]); then `accepted`, or `duplicate`
//!    when the sink reported that it holds an earlier copy ([`Handoff::AlreadyStored`]).
//!
//! Steps 3 to 5 share one [deadline](GateBuilder::deadline) (10 s by default, under the 15 s
//! the least patient senders wait): a store or sink that does not answer in time yields
//! `503 timeout` and a released claim, never a hung sender. Releasing after a timeout gets
//! at most one more second; a claim that could not be released expires by itself.
//!
//! The future returned by [`receive`](Gate::receive) must run inside a Tokio runtime with
//! the time driver enabled (as in every axum, hyper or actix-web server).
//!
//! # Verify-only mode
//!
//! [`Gate::verify_only`] verifies, and with a dedup store answers `duplicate` for a key
//! already committed (or `in_flight`), but enqueues nothing: a successful outcome carries
//! the [event](Outcome::event) for the caller's own handler. Build such a gate with
//! [`GateBuilder::build_verify_only`].
//!
//! # Observability
//!
//! Each call opens a `tracing` span `webhook.receive` with the fields `scheme`, `mode`
//! (`receive` or `verify_only`), `delivery_id`, `event_type`, `outcome` (the code),
//! `status` and `duration_ms`, and emits one event: DEBUG for a success, INFO for a
//! rejection or `in_flight` (with the header concerned), WARN for a 503 (with the sink's or
//! store's error). The body, the signature and the secrets are never recorded.
//!
//! Metrics go through the [`metrics`] facade (install any recorder, e.g. a Prometheus
//! exporter). Labels are the scheme name and codes only, never an event id:
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `hookgate_received_total` | counter | `scheme` |
//! | `hookgate_rejected_total` | counter | `scheme`, `reason` (4xx codes) |
//! | `hookgate_duplicates_total` | counter | `scheme` |
//! | `hookgate_in_flight_total` | counter | `scheme` |
//! | `hookgate_enqueued_total` | counter | `scheme` |
//! | `hookgate_handshakes_total` | counter | `scheme` (provider URL handshakes answered) |
//! | `hookgate_failures_total` | counter | `scheme`, `reason` (`sink_full`, `sink_unavailable`, `dedup_unavailable`, `timeout`, `dedup_commit`) |
//! | `hookgate_verify_duration_seconds` | histogram | `scheme` |
//! | `hookgate_decision_duration_seconds` | histogram | `scheme`, `outcome` |
//!
//! # Writing an adapter
//!
//! Enforce the body limit while reading (answer [`Outcome::body_too_large`] or
//! [`Gate::body_too_large`] from `Content-Length` or when the stream passes the limit),
//! pass the headers and the raw bytes to [`Gate::receive`], and answer with
//! [`Outcome::status`], [`Outcome::headers`] and [`Outcome::body`]. Put the outcome in the
//! response extensions for details; never put them in the body.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tracing::Instrument as _;

use crate::dedup::{Claim, ClaimToken, DedupStore, KeyState};
use crate::event::VerifiedEvent;
use crate::handshake::{Handshake, HandshakeKind, HandshakeRefusal};
use crate::headers::Headers;
use crate::reason::{Reason, Rejection};
use crate::request::RequestContext;
use crate::sink::{Handoff, Sink, SinkErrorKind};
use crate::verifier::Verifier;

mod builder;
mod future;
mod outcome;
mod telemetry;

pub use builder::{
    DEFAULT_DEADLINE, DEFAULT_MAX_BODY_BYTES, DEFAULT_RETRY_AFTER, DEFAULT_SUCCESS_STATUS,
    GateBuilder, GateConfigError,
};
pub use future::ReceiveFuture;
pub use outcome::{Outcome, OutcomeKind};

use telemetry::{GateMetrics, Trace};

/// A boxed, `Send` future: what [`DedupStore`] and [`Sink`] methods return, so that both
/// traits are object-safe and the gate can hold `Arc<dyn DedupStore>` and `Arc<dyn Sink>`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The longest a claim release or a dedup commit may take once the deadline has passed.
const CLEANUP_GRACE: Duration = Duration::from_secs(1);

/// Verifies, deduplicates and hands off deliveries: see the [module documentation](self)
/// for the contract.
///
/// Cheap to clone (shared internally) and safe to share between threads.
#[derive(Clone)]
pub struct Gate {
    inner: Arc<Inner>,
}

struct Inner {
    verifier: Verifier,
    dedup: Option<Arc<dyn DedupStore>>,
    sink: Option<Arc<dyn Sink>>,
    success_status: u16,
    max_body_bytes: usize,
    retry_after: Duration,
    deadline: Duration,
    metrics: Arc<GateMetrics>,
}

/// Result of the synchronous part of a decision.
#[allow(
    clippy::large_enum_variant,
    reason = "a value returned and consumed at once; boxing would allocate per delivery"
)]
enum Admission {
    Decided(Outcome),
    Verified(VerifiedEvent, Trace),
    /// A verified provider handshake: answered, never stored.
    Handshake(Outcome, Handshake, Trace),
}

impl Gate {
    /// Starts a gate around `verifier`; see [`GateBuilder`] for the parts and defaults.
    pub fn builder(verifier: Verifier) -> GateBuilder {
        GateBuilder::new(verifier)
    }

    /// Decides about one delivery: verify, replay window, dedup claim, enqueue, dedup
    /// commit. `headers` and `body` are the request's, the body byte for byte as received;
    /// `request` is what the request line says ([`RequestContext`],
    /// or an `Option<&str>` holding the public URL alone): the public URL the sender called,
    /// needed only by URL-signing schemes (Twilio, Square, HubSpot v3) when the verifier has
    /// none configured, and the HTTP method, signed by HubSpot v3. Adapters pass both.
    ///
    /// Verification happens during this call; the returned future, which borrows nothing,
    /// talks to the dedup store and the sink and must be polled inside a Tokio runtime with
    /// time enabled. See the [module documentation](self) for every outcome.
    pub fn receive<'r, H: Headers + ?Sized>(
        &self,
        headers: &H,
        body: impl Into<Bytes>,
        request: impl Into<RequestContext<'r>>,
    ) -> ReceiveFuture {
        match self
            .inner
            .admit("receive", headers, body.into(), request.into())
        {
            Admission::Decided(outcome) => ReceiveFuture::ready(outcome),
            Admission::Handshake(outcome, handshake, trace) => {
                self.answer_handshake(outcome, handshake, trace)
            }
            Admission::Verified(event, trace) => {
                let inner = Arc::clone(&self.inner);
                let span = trace.span.clone();
                ReceiveFuture::pending(Box::pin(
                    async move {
                        let outcome = inner.hand_off(event, &trace).await;
                        trace.finish(outcome)
                    }
                    .instrument(span),
                ))
            }
        }
    }

    /// Verifies one delivery without enqueueing it: the successful outcome (`verified`,
    /// the success status) carries the [event](Outcome::event) for the caller to process.
    /// With a dedup store, a key already committed answers `duplicate` (no event) and a key
    /// in flight `in_flight`; this mode never claims or commits a key itself.
    ///
    /// # Example
    /// ```
    /// use hookgate::{Gate, SchemeId, Verifier};
    ///
    /// let verifier = Verifier::builder(SchemeId::Github)
    ///     .secret("It's a Secret to Everybody")
    ///     .build()?;
    /// let gate = Gate::builder(verifier).build_verify_only()?;
    /// let headers = [(
    ///     "X-Hub-Signature-256",
    ///     "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
    /// )];
    /// // Without a dedup store the outcome is known at once.
    /// let future = gate.verify_only(&headers, "Hello, World!", None);
    /// assert!(future.is_ready());
    /// # let outcome = tokio::runtime::Builder::new_current_thread().build()?.block_on(future);
    /// assert_eq!((outcome.status(), outcome.code()), (200, "verified"));
    /// assert_eq!(outcome.event().map(|e| e.body().len()), Some(13));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify_only<'r, H: Headers + ?Sized>(
        &self,
        headers: &H,
        body: impl Into<Bytes>,
        request: impl Into<RequestContext<'r>>,
    ) -> ReceiveFuture {
        match self
            .inner
            .admit("verify_only", headers, body.into(), request.into())
        {
            Admission::Decided(outcome) => ReceiveFuture::ready(outcome),
            Admission::Handshake(outcome, handshake, trace) => {
                self.answer_handshake(outcome, handshake, trace)
            }
            Admission::Verified(event, trace) => match &self.inner.dedup {
                None => {
                    let outcome = self.inner.success(outcome::OutcomeKind::Verified);
                    ReceiveFuture::ready(trace.finish(outcome.with_event(event)))
                }
                Some(_) => {
                    let inner = Arc::clone(&self.inner);
                    let span = trace.span.clone();
                    ReceiveFuture::pending(Box::pin(
                        async move {
                            let outcome = inner.check(event).await;
                            trace.finish(outcome)
                        }
                        .instrument(span),
                    ))
                }
            },
        }
    }

    /// Decides about a `GET` to the endpoint: the scheme's `GET` handshake (Meta's
    /// `?hub.mode=subscribe&hub.challenge=…&hub.verify_token=…`), given the request's raw
    /// query string. Adapters route `GET` here when [`takes_get`](Self::takes_get) says so
    /// (the tower and actix adapters always do; they answer 405 for other schemes through
    /// this call).
    ///
    /// | situation | status | code |
    /// |---|---|---|
    /// | right verify token | 200, the challenge as `text/plain` | `handshake` |
    /// | wrong verify token, or none configured | 403 | `handshake_refused` |
    /// | no `hub.mode=subscribe` or no `hub.challenge` | 403 | `handshake_refused` |
    /// | the scheme has no `GET` handshake | 405 + `Allow: POST` | `method_not_allowed` |
    ///
    /// ```
    /// use hookgate::{Gate, SchemeId, Verifier};
    ///
    /// let verifier = Verifier::builder(SchemeId::Meta)
    ///     .secret("app-secret")
    ///     .verify_token("meatyhamhock")
    ///     .build()?;
    /// let gate = Gate::builder(verifier).build_verify_only()?;
    /// assert!(gate.takes_get());
    /// let future = gate.receive_get(Some("hub.mode=subscribe&hub.challenge=42&hub.verify_token=meatyhamhock"));
    /// # let outcome = tokio::runtime::Builder::new_current_thread().enable_time().build()?.block_on(future);
    /// assert_eq!((outcome.status(), outcome.body()), (200, "42"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn receive_get(&self, query: Option<&str>) -> ReceiveFuture {
        self.receive_get_with_headers(&[] as &[(&str, &str)], query)
    }

    /// [`receive_get`](Self::receive_get) with the request's headers, which Okta's
    /// verification `GET` needs (its challenge and the auth header are headers): adapters
    /// call this one. For Okta, the auth header is verified as for a delivery, so a wrong
    /// one gets the same 401 `token_mismatch`; a verified `GET` without
    /// `X-Okta-Verification-Challenge` gets 403 `handshake_refused`.
    ///
    /// ```
    /// use hookgate::{Gate, SchemeId, Verifier};
    ///
    /// let verifier = Verifier::builder(SchemeId::Okta).secret("my-shared-secret").build()?;
    /// let gate = Gate::builder(verifier).build_verify_only()?;
    /// let headers = [
    ///     ("Authorization", "my-shared-secret"),
    ///     ("X-Okta-Verification-Challenge", "Me_rShK8JHsTnbyYrWXCEoMGbM_zsZ6k0hLPZ_Pg"),
    /// ];
    /// let future = gate.receive_get_with_headers(&headers, None);
    /// # let outcome = tokio::runtime::Builder::new_current_thread().enable_time().build()?.block_on(future);
    /// assert_eq!(outcome.status(), 200);
    /// assert_eq!(outcome.body(), r#"{"verification":"Me_rShK8JHsTnbyYrWXCEoMGbM_zsZ6k0hLPZ_Pg"}"#);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn receive_get_with_headers<H: Headers + ?Sized>(
        &self,
        headers: &H,
        query: Option<&str>,
    ) -> ReceiveFuture {
        let trace = Trace::start(&self.inner.metrics, "handshake");
        let verifier = &self.inner.verifier;
        let mut key_id = None;
        let answered = if verifier.scheme().handshake() == Some(HandshakeKind::OktaVerification) {
            match verifier.verify(headers, Bytes::new()) {
                Ok(event) => {
                    key_id = Some(Arc::clone(&event.key_id));
                    crate::handshake::answer_okta(headers)
                }
                Err(rejection) => {
                    return ReceiveFuture::ready(trace.finish(Outcome::rejected(rejection)));
                }
            }
        } else {
            verifier.handshake_get(query)
        };
        match answered {
            Ok(reply) => {
                let handshake = Handshake {
                    scheme: Arc::from(self.inner.verifier.scheme_name()),
                    kind: reply.kind(),
                    key_id,
                    received_at: SystemTime::now(),
                };
                self.answer_handshake(Outcome::handshake_answered(reply), handshake, trace)
            }
            Err(refusal) => ReceiveFuture::ready(trace.finish(refused(refusal))),
        }
    }

    /// Decides about an `OPTIONS` to the endpoint: the CloudEvents 1.0 abuse-protection
    /// validation Azure Event Grid sends with the CloudEvents schema, given the request's
    /// headers and raw query string. Event Grid signs nothing, so the request must carry the
    /// endpoint's token (in the query or `Authorization: Bearer`), verified as for a
    /// delivery: without it, the same 400/401 a forged delivery gets. Adapters route
    /// `OPTIONS` here when [`takes_options`](Self::takes_options) says so (the tower and actix
    /// adapters always do; other schemes get 405 through this call).
    ///
    /// | situation | status | code |
    /// |---|---|---|
    /// | right token, one `WebHook-Request-Origin: O` | 200, `WebHook-Allowed-Origin: O`, `WebHook-Allowed-Rate: *` | `handshake` |
    /// | no token / a wrong one | 400 / 401 | `missing_header` / `token_mismatch` |
    /// | right token, no (or a repeated) `WebHook-Request-Origin` | 403 | `handshake_refused` |
    /// | right token, an origin that is not a visible-ASCII name | 400 | `malformed_header` |
    /// | the scheme has no `OPTIONS` handshake | 405 + `Allow: POST` | `method_not_allowed` |
    ///
    /// ```
    /// use hookgate::{Gate, SchemeId, Verifier};
    ///
    /// let verifier = Verifier::builder(SchemeId::AzureEventGrid).secret("s3cret-token").build()?;
    /// let gate = Gate::builder(verifier).build_verify_only()?;
    /// assert!(gate.takes_options());
    /// let headers = [("WebHook-Request-Origin", "eventgrid.azure.net")];
    /// let future = gate.receive_options(&headers, Some("code=s3cret-token"));
    /// # let outcome = tokio::runtime::Builder::new_current_thread().enable_time().build()?.block_on(future);
    /// assert_eq!(outcome.status(), 200);
    /// assert_eq!(outcome.headers()["webhook-allowed-origin"], "eventgrid.azure.net");
    /// let forged = gate.receive_options(&headers, Some("code=guess"));
    /// # let forged = tokio::runtime::Builder::new_current_thread().enable_time().build()?.block_on(forged);
    /// assert_eq!((forged.status(), forged.code()), (401, "token_mismatch"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn receive_options<H: Headers + ?Sized>(
        &self,
        headers: &H,
        query: Option<&str>,
    ) -> ReceiveFuture {
        let trace = Trace::start(&self.inner.metrics, "handshake");
        if !self.takes_options() {
            let outcome = Outcome::new(OutcomeKind::MethodNotAllowed, 405);
            return ReceiveFuture::ready(trace.finish(outcome));
        }
        let verifier = &self.inner.verifier;
        let request = RequestContext::new()
            .with_method("OPTIONS")
            .with_query_opt(query);
        let event = match trace
            .span
            .in_scope(|| verifier.verify_request(headers, Bytes::new(), request))
        {
            Ok(event) => event,
            Err(rejection) => {
                return ReceiveFuture::ready(trace.finish(Outcome::rejected(rejection)));
            }
        };
        match crate::handshake::answer_cloudevents_options(headers) {
            Ok(reply) => {
                let handshake = Handshake {
                    scheme: Arc::clone(&event.scheme),
                    kind: reply.kind(),
                    key_id: Some(Arc::clone(&event.key_id)),
                    received_at: event.received_at(),
                };
                self.answer_handshake(Outcome::handshake_answered(reply), handshake, trace)
            }
            Err(refusal) => ReceiveFuture::ready(trace.finish(refused(refusal))),
        }
    }

    /// Whether the scheme validates the endpoint with an `OPTIONS` (Azure Event Grid), so
    /// that a server must route `OPTIONS` requests on the endpoint to
    /// [`receive_options`](Self::receive_options).
    pub fn takes_options(&self) -> bool {
        self.inner
            .verifier
            .scheme()
            .handshake()
            .is_some_and(HandshakeKind::takes_options)
    }

    /// Whether the scheme has a `GET` handshake (Meta), so that a server must route `GET`
    /// requests on the endpoint to [`receive_get`](Self::receive_get).
    pub fn takes_get(&self) -> bool {
        self.inner
            .verifier
            .scheme()
            .handshake()
            .is_some_and(HandshakeKind::is_get)
    }

    /// Answers a handshake: tells the sink (which may record it in its event log; a failure
    /// there is logged and does not change the answer), then answers.
    fn answer_handshake(
        &self,
        outcome: Outcome,
        handshake: Handshake,
        trace: Trace,
    ) -> ReceiveFuture {
        let Some(sink) = self.inner.sink.clone() else {
            return ReceiveFuture::ready(trace.finish(outcome));
        };
        let deadline = self.inner.deadline;
        let span = trace.span.clone();
        ReceiveFuture::pending(Box::pin(
            async move {
                let detail = match within(|| deadline, sink.record_handshake(handshake)).await {
                    Ok(Ok(())) => None,
                    Ok(Err(error)) => Some(error.to_string()),
                    Err(_elapsed) => Some("the sink did not record it in time".to_owned()),
                };
                if let Some(detail) = detail {
                    trace.handshake_not_recorded(&detail);
                }
                trace.finish(outcome)
            }
            .instrument(span),
        ))
    }

    /// `413 body_too_large`, recorded in the span and the metrics like any other decision:
    /// for adapters that stop reading a body once it passes
    /// [`max_body_bytes`](Self::max_body_bytes).
    pub fn body_too_large(&self) -> Outcome {
        Trace::start(&self.inner.metrics, "receive").finish(Outcome::body_too_large())
    }

    /// The verifier.
    pub fn verifier(&self) -> &Verifier {
        &self.inner.verifier
    }

    /// The dedup store, if any.
    pub fn dedup_store(&self) -> Option<&Arc<dyn DedupStore>> {
        self.inner.dedup.as_ref()
    }

    /// The sink, if any (a gate built with
    /// [`build_verify_only`](GateBuilder::build_verify_only) may have none).
    pub fn sink(&self) -> Option<&Arc<dyn Sink>> {
        self.inner.sink.as_ref()
    }

    /// The status answered on success.
    pub fn success_status(&self) -> u16 {
        self.inner.success_status
    }

    /// The largest body accepted, in bytes: adapters stop reading past it.
    pub fn max_body_bytes(&self) -> usize {
        self.inner.max_body_bytes
    }

    /// The `Retry-After` sent with every 503.
    pub fn retry_after(&self) -> Duration {
        self.inner.retry_after
    }

    /// The deadline for the dedup store and the sink together.
    pub fn deadline(&self) -> Duration {
        self.inner.deadline
    }
}

/// The outcome of a handshake that was not answered.
fn refused(refusal: HandshakeRefusal) -> Outcome {
    match refusal {
        HandshakeRefusal::MissingParameter(name) => {
            Outcome::new(OutcomeKind::HandshakeRefused, 403)
                .with_detail(format!("no single {name}"))
        }
        HandshakeRefusal::VerifyTokenMismatch => Outcome::new(OutcomeKind::HandshakeRefused, 403)
            .with_detail("the verify token does not match".to_owned()),
        HandshakeRefusal::NoGetHandshake => Outcome::new(OutcomeKind::MethodNotAllowed, 405),
        HandshakeRefusal::MalformedParameter(name) => {
            Outcome::rejected(Rejection::new(Reason::MalformedHeader, name))
        }
    }
}

impl Inner {
    /// Body limit and verification: everything that needs the request itself.
    fn admit<H: Headers + ?Sized>(
        &self,
        mode: &'static str,
        headers: &H,
        body: Bytes,
        request: RequestContext<'_>,
    ) -> Admission {
        let trace = Trace::start(&self.metrics, mode);
        if body.len() > self.max_body_bytes {
            return Admission::Decided(trace.finish(Outcome::body_too_large()));
        }
        // The span's clock reading, taken a few instructions ago: a second reading for the
        // verify histogram would cost as much as the length check it would leave out.
        let started = trace.started();
        // Kept only for a scheme with an unsigned handshake, so that no other scheme pays
        // for the clone.
        let body_copy = self
            .verifier
            .scheme()
            .handshake()
            .is_some_and(HandshakeKind::is_unsigned_post)
            .then(|| body.clone());
        let verified = trace
            .span
            .in_scope(|| self.verifier.verify_request(headers, body, request));
        match verified {
            Ok(event) => {
                trace.verified(&event, started.elapsed());
                match self.verifier.handshake(&event) {
                    None => Admission::Verified(event, trace),
                    Some(reply) => {
                        let handshake = Handshake {
                            scheme: Arc::clone(&event.scheme),
                            kind: reply.kind(),
                            key_id: Some(Arc::clone(&event.key_id)),
                            received_at: event.received_at(),
                        };
                        Admission::Handshake(Outcome::handshake_answered(reply), handshake, trace)
                    }
                }
            }
            Err(rejection) => {
                // An unsigned handshake (WooCommerce's ping, Asana's X-Hook-Secret, Microsoft
                // Graph's validationToken) lacks the signature (header, or Graph's clientState
                // in the body: `missing_signature`); only then is it looked for, off the fast
                // path.
                let unsigned = matches!(
                    rejection.reason(),
                    Reason::MissingHeader | Reason::MissingSignature
                );
                if let Some(body) = body_copy.filter(|_| unsigned) {
                    if let Some((reply, key_id)) =
                        self.verifier
                            .handshake_unsigned(headers, &body, request.query())
                    {
                        let handshake = Handshake {
                            scheme: Arc::from(self.verifier.scheme_name()),
                            kind: reply.kind(),
                            key_id,
                            received_at: SystemTime::now(),
                        };
                        return Admission::Handshake(
                            Outcome::handshake_answered(reply),
                            handshake,
                            trace,
                        );
                    }
                }
                trace.verify_failed(started.elapsed());
                Admission::Decided(trace.finish(Outcome::rejected(rejection)))
            }
        }
    }

    /// Claim, enqueue, commit, within the deadline.
    async fn hand_off(&self, event: VerifiedEvent, trace: &Trace) -> Outcome {
        let Some(sink) = &self.sink else {
            return self.retry_later(
                OutcomeKind::SinkUnavailable,
                "this gate was built for verify-only use and has no sink".to_owned(),
            );
        };
        let budget = Budget::start(self.deadline);
        let key = event.dedup_key().to_owned();

        let claim = match &self.dedup {
            None => None,
            Some(store) => match within(|| budget.remaining(), store.claim(&key)).await {
                Ok(Ok(Claim::New(token))) => Some((store, token)),
                Ok(Ok(Claim::Duplicate)) => return self.success(OutcomeKind::Duplicate),
                Ok(Ok(Claim::InFlight)) => {
                    return self.retry_later(
                        OutcomeKind::InFlight,
                        "another copy is being handed off".to_owned(),
                    );
                }
                Ok(Err(error)) => {
                    return self.retry_later(OutcomeKind::DedupUnavailable, error.to_string());
                }
                Err(_elapsed) => {
                    return self.retry_later(
                        OutcomeKind::Timeout,
                        "the dedup store did not answer the claim in time".to_owned(),
                    );
                }
            },
        };

        let handed = match within(|| budget.remaining(), sink.hand_off(event)).await {
            Ok(Ok(handoff)) => Ok(handoff),
            Ok(Err(error)) => {
                let kind = match error.kind() {
                    SinkErrorKind::Full => OutcomeKind::SinkFull,
                    SinkErrorKind::Unavailable => OutcomeKind::SinkUnavailable,
                };
                Err(self.retry_later(kind, error.to_string()))
            }
            Err(_elapsed) => Err(self.retry_later(
                OutcomeKind::Timeout,
                "the sink did not answer in time".to_owned(),
            )),
        };
        let mut outcome = match handed {
            Ok(Handoff::AlreadyStored) => self.success(OutcomeKind::Duplicate),
            Ok(Handoff::Enqueued) => {
                trace.enqueued();
                self.success(OutcomeKind::Accepted)
            }
            Err(refused) => {
                if let Some((store, token)) = claim {
                    release(store.as_ref(), &key, token, &budget, trace).await;
                }
                return refused;
            }
        };
        if let Some((store, token)) = claim {
            let failure = match within(|| budget.cleanup(), store.commit(&key, token)).await {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(error.to_string()),
                Err(_elapsed) => Some("the dedup store did not answer the commit in time".into()),
            };
            if let Some(detail) = failure {
                trace.commit_failed(&detail);
                outcome = outcome.with_detail(detail);
            }
        }
        outcome
    }

    /// The verify-only dedup check.
    async fn check(&self, event: VerifiedEvent) -> Outcome {
        let Some(store) = &self.dedup else {
            return self.success(OutcomeKind::Verified).with_event(event);
        };
        match within(|| self.deadline, store.lookup(event.dedup_key())).await {
            Ok(Ok(KeyState::Absent)) => self.success(OutcomeKind::Verified).with_event(event),
            Ok(Ok(KeyState::Committed)) => self.success(OutcomeKind::Duplicate),
            Ok(Ok(KeyState::InFlight)) => self.retry_later(
                OutcomeKind::InFlight,
                "another copy is being handed off".to_owned(),
            ),
            Ok(Err(error)) => self.retry_later(OutcomeKind::DedupUnavailable, error.to_string()),
            Err(_elapsed) => self.retry_later(
                OutcomeKind::Timeout,
                "the dedup store did not answer in time".to_owned(),
            ),
        }
    }

    fn success(&self, kind: OutcomeKind) -> Outcome {
        Outcome::new(kind, self.success_status)
    }

    fn retry_later(&self, kind: OutcomeKind, detail: String) -> Outcome {
        Outcome::retry_later(kind, self.retry_after, detail)
    }
}

/// Gives the claim back so the sender's retry is accepted at once; a failure only delays
/// that retry until the claim expires.
async fn release(
    store: &dyn DedupStore,
    key: &str,
    token: ClaimToken,
    budget: &Budget,
    trace: &Trace,
) {
    match within(|| budget.cleanup(), store.release(key, token)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => trace.release_failed(&error.to_string()),
        Err(_elapsed) => trace.release_failed("the dedup store did not answer in time"),
    }
}

/// The store or the sink did not answer within the time given.
struct TimedOut;

/// Runs `future` for at most `limit()`. A future that is ready at once (an in-memory store or
/// sink) gets no timer, nor even a clock reading: arming a timer would cost more than the
/// work itself.
async fn within<F: Future>(
    limit: impl FnOnce() -> Duration,
    future: F,
) -> Result<F::Output, TimedOut> {
    let mut future = std::pin::pin!(future);
    let first = std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(output) => Ok(output),
        Poll::Pending => tokio::time::timeout(limit(), future)
            .await
            .map_err(|_elapsed| TimedOut),
    }
}

/// The time left of one decision's deadline (on Tokio's clock, so tests can pause it).
struct Budget {
    started: tokio::time::Instant,
    deadline: Duration,
}

impl Budget {
    fn start(deadline: Duration) -> Budget {
        Budget {
            started: tokio::time::Instant::now(),
            deadline,
        }
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_sub(self.started.elapsed())
    }

    /// Time for a release or a commit: what is left, and at least a short grace once the
    /// deadline has passed.
    fn cleanup(&self) -> Duration {
        self.remaining().max(CLEANUP_GRACE.min(self.deadline))
    }
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        f.debug_struct("Gate")
            .field("verifier", &inner.verifier)
            .field("dedup", &inner.dedup)
            .field("sink", &inner.sink)
            .field("success_status", &inner.success_status)
            .field("max_body_bytes", &inner.max_body_bytes)
            .field("retry_after", &inner.retry_after)
            .field("deadline", &inner.deadline)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChannelSink, SchemeId};

    #[tokio::test(start_paused = true)]
    async fn the_budget_counts_down_and_keeps_a_grace_for_cleanup() {
        let budget = Budget::start(Duration::from_secs(10));
        assert_eq!(budget.remaining(), Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(budget.remaining(), Duration::from_secs(6));
        assert_eq!(budget.cleanup(), Duration::from_secs(6));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(budget.remaining(), Duration::ZERO);
        assert_eq!(budget.cleanup(), CLEANUP_GRACE);

        let short = Budget::start(Duration::from_millis(300));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(short.cleanup(), Duration::from_millis(300));
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let verifier = Verifier::builder(SchemeId::Github)
            .secret("s")
            .build()
            .unwrap();
        let (sink, _events) = ChannelSink::bounded(1);
        let gate = Gate::builder(verifier.clone()).sink(sink).build().unwrap();
        assert_eq!(gate.success_status(), 200);
        assert_eq!(gate.max_body_bytes(), 2 * 1024 * 1024);
        assert_eq!(gate.retry_after(), Duration::from_secs(10));
        assert_eq!(gate.deadline(), Duration::from_secs(10));
        assert!(gate.dedup_store().is_some());
        assert!(gate.sink().is_some());
        assert_eq!(gate.verifier().scheme_name(), "github");

        let checker = Gate::builder(verifier).build_verify_only().unwrap();
        assert!(checker.dedup_store().is_none());
        assert!(checker.sink().is_none());
        assert!(format!("{checker:?}").starts_with("Gate {"));
    }
}
