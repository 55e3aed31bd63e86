//! Extractors: the verified event, and its body as typed JSON.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage as _, HttpRequest};
use hookgate::VerifiedEvent;
use serde::de::DeserializeOwned;

use crate::config::WebhookConfig;
use crate::error::{WebhookError, WebhookErrorKind};
use crate::receive::{Mode, decide};

type LocalBoxFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// Extracts the verified delivery.
///
/// Behind [`WebhookGate::verify_only`](crate::WebhookGate::verify_only) it takes the event
/// the middleware verified. Without the middleware it does the same work itself with the
/// [`WebhookConfig`] (or [`Gate`](hookgate::Gate)) found in `app_data`: reads the raw body
/// under the gate's limit and calls [`Gate::verify_only`](hookgate::Gate::verify_only).
/// When there is no event, the handler is not called and the [`WebhookError`] answers:
/// the gate's status and code (400, 401, 413, 503 with `Retry-After`, or the success status
/// with `duplicate` when the gate's dedup store already has the delivery).
///
/// Without the middleware, the extractor reads the body: it must be the only body
/// extractor of the handler; [`VerifiedEvent::body`] has the raw bytes. It never enqueues:
/// the handler processes the event (idempotently on
/// [`dedup_key`](VerifiedEvent::dedup_key), since senders retry).
///
/// ```
/// use actix_web::{App, HttpResponse, test, web};
/// use hookgate::{Gate, SchemeId, Verifier};
/// use hookgate_actix::{VerifiedWebhook, WebhookConfig};
///
/// async fn handle(VerifiedWebhook(event): VerifiedWebhook) -> HttpResponse {
///     HttpResponse::Ok().body(format!("{} bytes", event.body().len()))
/// }
///
/// # actix_web::rt::System::new().block_on(async {
/// let verifier = Verifier::builder(SchemeId::Github).secret("It's a Secret to Everybody").build()?;
/// let gate = Gate::builder(verifier).build_verify_only()?;
/// let app = test::init_service(
///     App::new()
///         .app_data(WebhookConfig::new(gate))
///         .route("/webhooks", web::post().to(handle)),
/// )
/// .await;
/// let signed = |body: &'static str| {
///     test::TestRequest::post()
///         .uri("/webhooks")
///         .insert_header((
///             "X-Hub-Signature-256",
///             "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
///         ))
///         .set_payload(body)
///         .to_request()
/// };
/// let res = test::call_service(&app, signed("Hello, World!")).await;
/// assert_eq!(test::read_body(res).await, "13 bytes");
/// let res = test::call_service(&app, signed("Hello, forger!")).await;
/// assert_eq!(res.status(), 401);
/// assert_eq!(test::read_body(res).await, "signature_mismatch");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct VerifiedWebhook(pub VerifiedEvent);

impl Deref for VerifiedWebhook {
    type Target = VerifiedEvent;

    fn deref(&self) -> &VerifiedEvent {
        &self.0
    }
}

impl FromRequest for VerifiedWebhook {
    type Error = WebhookError;
    type Future = LocalBoxFuture<Result<Self, WebhookError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if let Some(event) = req.extensions().get::<VerifiedEvent>() {
            let event = event.clone();
            return Box::pin(async move { Ok(VerifiedWebhook(event)) });
        }
        let config = config_of(req);
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let config = config?;
            let decided = decide(
                config.settings(),
                Mode::VerifyOnly,
                req.method(),
                req.headers(),
                req.uri(),
                &mut payload,
            )
            .await?;
            // A success without an event is a `duplicate`: nothing for the handler.
            match (decided.outcome.is_success(), decided.outcome.event()) {
                (true, Some(event)) => Ok(VerifiedWebhook(event.clone())),
                _ => Err(WebhookError::from(decided.outcome)),
            }
        })
    }
}

/// The configuration an extractor works with, or `500 not_configured`.
fn config_of(req: &HttpRequest) -> Result<WebhookConfig, WebhookError> {
    let Some(config) = WebhookConfig::from_app_data(req) else {
        tracing::error!(
            "hookgate extractor used without WebhookConfig or Gate in app_data, \
             nor the WebhookGate::verify_only middleware"
        );
        return Err(WebhookError::new(WebhookErrorKind::NotConfigured));
    };
    if let Some(error) = config.error() {
        tracing::error!(%error, "hookgate extractor misconfigured");
        return Err(WebhookError::new(WebhookErrorKind::NotConfigured).with_source(error.clone()));
    }
    Ok(config)
}

/// The deepest nesting of arrays and objects [`VerifiedJson`] deserialises; deeper bodies
/// get `400 json_too_deep` before any parsing.
pub const MAX_JSON_DEPTH: usize = 64;

/// Extracts a verified delivery and deserialises its JSON body **after** verification:
/// `VerifiedJson(payload, event)`.
///
/// Verification comes first, exactly as for [`VerifiedWebhook`]; only an authentic body is
/// parsed. Nesting deeper than [`MAX_JSON_DEPTH`] is refused before parsing
/// (`400 json_too_deep`), invalid JSON is `400 invalid_json`, and JSON that does not fit `T`
/// is `422 unexpected_json`. The `Content-Type` is not checked: the signature already says
/// who sent the body.
///
/// ```
/// use actix_web::{App, HttpResponse, test, web};
/// use hookgate::{Gate, SchemeId, Verifier};
/// use hookgate_actix::{VerifiedJson, WebhookGate};
///
/// #[derive(serde::Deserialize)]
/// struct Invoice {
///     r#type: String,
/// }
///
/// async fn handle(VerifiedJson(invoice, event): VerifiedJson<Invoice>) -> HttpResponse {
///     HttpResponse::Ok().body(format!("{} from {}", invoice.r#type, event.scheme()))
/// }
///
/// # actix_web::rt::System::new().block_on(async {
/// # let now = 1_700_000_000;
/// let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// let verifier = Verifier::builder(SchemeId::StandardWebhooksV1)
///     .secret(secret)
/// #   .clock(hookgate::FixedClock::from_unix(now as u64))
///     .build()?;
/// let gate = Gate::builder(verifier).build_verify_only()?;
/// let app = test::init_service(App::new().service(
///     web::resource("/webhooks")
///         .wrap(WebhookGate::verify_only(gate))
///         .route(web::post().to(handle)),
/// ))
/// .await;
///
/// let delivery = hookgate::Signer::new(SchemeId::StandardWebhooksV1, secret)?.sign(
///     &hookgate::SignRequest::new(r#"{"type":"invoice.paid"}"#).id("msg_1").timestamp(now),
/// )?;
/// let mut req = test::TestRequest::post().uri("/webhooks").set_payload(delivery.body);
/// for header in delivery.headers {
///     req = req.insert_header(header);
/// }
/// let res = test::call_service(&app, req.to_request()).await;
/// assert_eq!(test::read_body(res).await, "invoice.paid from standard-webhooks-v1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct VerifiedJson<T>(pub T, pub VerifiedEvent);

impl<T> Deref for VerifiedJson<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for VerifiedJson<T> {
    type Error = WebhookError;
    type Future = LocalBoxFuture<Result<Self, WebhookError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let verified = VerifiedWebhook::from_request(req, payload);
        Box::pin(async move {
            let VerifiedWebhook(event) = verified.await?;
            let value = parse_json(event.body())?;
            Ok(VerifiedJson(value, event))
        })
    }
}

/// Deserialises `body` after checking its nesting depth.
fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, WebhookError> {
    if nesting_exceeds(body, MAX_JSON_DEPTH) {
        return Err(
            WebhookError::new(WebhookErrorKind::JsonTooDeep).with_source(format!(
                "the verified JSON body nests deeper than {MAX_JSON_DEPTH} levels"
            )),
        );
    }
    serde_json::from_slice(body).map_err(|error| {
        let kind = match error.classify() {
            serde_json::error::Category::Data => WebhookErrorKind::UnexpectedJson,
            _ => WebhookErrorKind::InvalidJson,
        };
        WebhookError::new(kind).with_source(error)
    })
}

/// Whether arrays and objects in `body` nest deeper than `max_depth`, brackets inside
/// strings aside. Linear, allocation-free, and conservative on malformed input (which the
/// parser then rejects anyway).
fn nesting_exceeds(body: &[u8], max_depth: usize) -> bool {
    let mut depth: usize = 0;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in body {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth = depth.saturating_add(1);
                if depth > max_depth {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_arrays_and_objects_but_not_brackets_in_strings() {
        assert!(!nesting_exceeds(br#"{"a":[1,{"b":2}]}"#, 3));
        assert!(nesting_exceeds(br#"{"a":[1,{"b":2}]}"#, 2));
        assert!(!nesting_exceeds(br#"{"a":"[[[[{{{{"}"#, 1));
        assert!(!nesting_exceeds(br#"{"a":"\"[[[["}"#, 1));
        assert!(!nesting_exceeds(br#"["\\",["x"]]"#, 2));
        assert!(nesting_exceeds(br#"["\\",[["x"]]]"#, 2));
        assert!(!nesting_exceeds(b"", 1));
        assert!(nesting_exceeds(&[b'['; 65], 64));
        assert!(!nesting_exceeds(&[b'['; 64], 64));
    }

    #[test]
    fn json_failures_have_the_same_codes_and_statuses_as_the_tower_extractor() {
        #[derive(Debug, serde::Deserialize)]
        struct Invoice {
            id: String,
        }
        let check = |body: &[u8], status: u16, code: &str| {
            let error = parse_json::<Invoice>(body).unwrap_err();
            assert_eq!((error.status(), error.code()), (status, code));
            assert!(error.outcome().is_none());
            assert!(std::error::Error::source(&error).is_some());
        };
        check(b"{", 400, "invalid_json");
        check(br#"{"id":1}"#, 422, "unexpected_json");
        check("[".repeat(1000).as_bytes(), 400, "json_too_deep");
        let invoice: Invoice = parse_json(br#"{"id":"in_1"}"#).unwrap();
        assert_eq!(invoice.id, "in_1");
    }
}
