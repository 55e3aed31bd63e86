//! The middleware: a [`Transform`] users configure, and the service it wraps around theirs.

use std::future::{Ready, ready};
use std::pin::Pin;
use std::rc::Rc;

use actix_web::HttpMessage as _;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use hookgate::Gate;

use crate::config::{ConfigError, WebhookConfig};
use crate::error::{WebhookError, outcome_response};
use crate::receive::{Decided, Mode, decide};

type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// Middleware that puts a [`Gate`] in front of a resource, scope or app.
///
/// - [`WebhookGate::new`] (**gate mode**): the middleware answers the sender itself, with
///   the gate's outcome: `200 accepted` once the sink has the event, `200 duplicate`, 4xx for
///   a forged, stale or malformed delivery, 413, or 503 with `Retry-After`. The wrapped
///   service is never called; give the resource any handler.
/// - [`WebhookGate::verify_only`] (**verify-only mode**): a verified delivery goes on to the
///   wrapped service with the [`VerifiedEvent`](hookgate::VerifiedEvent) in the request
///   extensions (take it with [`VerifiedWebhook`](crate::VerifiedWebhook) or
///   [`VerifiedJson`](crate::VerifiedJson)) and the raw body put back, so `web::Bytes` and
///   friends still work; the handler's response is the answer. Anything else (rejections,
///   413, `duplicate` where the gate has a dedup store, 503) is answered by the middleware.
///
/// The body is read here, raw, under the gate's [`max_body_bytes`](Gate::max_body_bytes):
/// `413 body_too_large` as soon as `Content-Length` announces more, or as soon as the
/// stream (chunked included) passes the limit. Invalid options ([`public_origin`](Self::public_origin))
/// are logged and stop the app from starting; the middleware never panics.
///
/// ```
/// use actix_web::{App, HttpResponse, test, web};
/// use hookgate::{ChannelSink, Gate, SchemeId, Verifier};
/// use hookgate_actix::WebhookGate;
///
/// # actix_web::rt::System::new().block_on(async {
/// let verifier = Verifier::builder(SchemeId::Github).secret("It's a Secret to Everybody").build()?;
/// let (sink, mut events) = ChannelSink::bounded(1024);
/// let gate = Gate::builder(verifier).sink(sink).build()?;
///
/// let app = test::init_service(App::new().service(
///     web::resource("/webhooks")
///         .wrap(WebhookGate::new(gate.clone()))
///         .to(HttpResponse::Ok), // never reached: the gate answers
/// ))
/// .await;
/// let req = test::TestRequest::post()
///     .uri("/webhooks")
///     .insert_header((
///         "X-Hub-Signature-256",
///         "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
///     ))
///     .set_payload("Hello, World!")
///     .to_request();
/// let res = test::call_service(&app, req).await;
/// assert_eq!(res.status(), 200);
/// assert_eq!(test::read_body(res).await, "accepted");
/// assert_eq!(events.try_recv().map(|e| e.body().len()), Some(13));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct WebhookGate {
    config: WebhookConfig,
    mode: Mode,
}

impl WebhookGate {
    /// Gate mode: verify, deduplicate, hand off to the gate's sink, and answer the sender.
    /// A gate without a sink (from
    /// [`build_verify_only`](hookgate::GateBuilder::build_verify_only)) is a configuration
    /// error, reported when the app starts.
    pub fn new(gate: Gate) -> Self {
        let has_sink = gate.sink().is_some();
        let config = WebhookConfig::new(gate);
        WebhookGate {
            config: if has_sink {
                config
            } else {
                config.fail(ConfigError::GateWithoutSink)
            },
            mode: Mode::Receive,
        }
    }

    /// Verify-only mode: verify (and, with a dedup store, answer `duplicate` for a delivery
    /// already handed off), then call the wrapped service with the event in the request
    /// extensions and the raw body put back.
    pub fn verify_only(gate: Gate) -> Self {
        WebhookGate {
            config: WebhookConfig::new(gate),
            mode: Mode::VerifyOnly,
        }
    }

    /// The public origin senders call, for URL-signing schemes (Twilio, Square): see
    /// [`WebhookConfig::public_origin`]. An invalid one stops the app from starting.
    pub fn public_origin(mut self, origin: impl AsRef<str>) -> Self {
        self.config = self.config.public_origin(origin);
        self
    }

    /// The configuration: gate, origin, and the first invalid option if any.
    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }
}

impl<S, B> Transform<S, ServiceRequest> for WebhookGate
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Transform = WebhookGateService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        if let Some(error) = self.config.error() {
            tracing::error!(%error, "hookgate middleware misconfigured: the app cannot start");
            return ready(Err(()));
        }
        ready(Ok(WebhookGateService {
            service: Rc::new(service),
            config: self.config.clone(),
            mode: self.mode,
        }))
    }
}

/// The service [`WebhookGate`] wraps around the user's.
#[doc(hidden)]
#[derive(Debug)]
pub struct WebhookGateService<S> {
    service: Rc<S>,
    config: WebhookConfig,
    mode: Mode,
}

impl<S, B> Service<ServiceRequest> for WebhookGateService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<Result<Self::Response, Self::Error>>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let service = Rc::clone(&self.service);
        let config = self.config.clone();
        let mode = self.mode;
        Box::pin(async move {
            let mut payload = req.take_payload();
            let settings = config.settings();
            let decided = decide(
                settings,
                mode,
                req.method(),
                req.headers(),
                req.uri(),
                &mut payload,
            )
            .await;
            let Decided { outcome, body } = match decided {
                Ok(decided) => decided,
                Err(error) => return Ok(req.error_response(error).map_into_right_body()),
            };
            if !outcome.is_success() {
                return Ok(req
                    .error_response(WebhookError::from(outcome))
                    .map_into_right_body());
            }
            if mode == Mode::Receive || outcome.event().is_none() {
                // Accepted, duplicate: the gate's answer is the whole answer.
                return Ok(req
                    .into_response(outcome_response(outcome))
                    .map_into_right_body());
            }
            // The verified body goes on: the bytes received, but for a scheme whose secret
            // travels in the body (Figma), which has it redacted.
            let body = match outcome.into_event() {
                Some(event) => {
                    let verified = event.body().clone();
                    req.extensions_mut().insert(event);
                    verified
                }
                None => body,
            };
            req.set_payload(body.into());
            service
                .call(req)
                .await
                .map(ServiceResponse::map_into_left_body)
        })
    }
}
