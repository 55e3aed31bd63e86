#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
//! The axum extractors, on their own (gate in the state) and behind the verify-only layer.

mod common;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::post;
use bytes::Bytes;
use common::{Broken, Chunks, Delivery, Fixture, LIMIT, verifier};
use hookgate::{Gate, Outcome, SchemeId, Verifier};
use hookgate_tower::{GateLayer, VerifiedJson, VerifiedWebhook, WebhookRejection};
use http::StatusCode;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

#[derive(Debug, serde::Deserialize)]
struct Invoice {
    id: String,
}

async fn raw_handler(VerifiedWebhook(event): VerifiedWebhook) -> (StatusCode, Bytes) {
    (StatusCode::from_u16(299).unwrap(), event.into_body())
}

async fn json_handler(VerifiedJson(invoice, event): VerifiedJson<Invoice>) -> (StatusCode, String) {
    (
        StatusCode::from_u16(299).unwrap(),
        format!("{} {}", invoice.id, event.dedup_key()),
    )
}

/// An application state holding the gate among other things.
#[derive(Clone)]
struct AppState {
    gate: Gate,
    name: &'static str,
}

impl FromRef<AppState> for Gate {
    fn from_ref(state: &AppState) -> Gate {
        state.gate.clone()
    }
}

fn app(gate: Gate) -> Router {
    Router::new()
        .route("/webhooks", post(raw_handler))
        .route("/invoices", post(json_handler))
        .with_state(AppState { gate, name: "test" })
}

struct Reply {
    status: u16,
    body: Bytes,
    outcome: Option<Outcome>,
    rejection: Option<WebhookRejection>,
    retry_after: Option<String>,
}

impl Reply {
    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    fn assert(&self, status: u16, code: &str) {
        assert_eq!((self.status, self.text()), (status, code));
        let rejection = self
            .rejection
            .as_ref()
            .expect("the rejection is in the extensions");
        assert_eq!(
            (rejection.status().as_u16(), rejection.code()),
            (status, code)
        );
        assert_eq!(rejection.body_text(), code);
        assert_eq!(self.retry_after.is_some(), status == 503);
    }
}

async fn call<B>(router: Router, path: &str, delivery: &Delivery, body: B) -> Reply
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let mut request = delivery.request_with(axum::body::Body::new(body));
    *request.uri_mut() = path.parse().unwrap();
    let response = router.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status.as_u16(),
        body: body.collect().await.unwrap().to_bytes(),
        outcome: parts.extensions.get::<Outcome>().cloned(),
        rejection: parts.extensions.get::<WebhookRejection>().cloned(),
        retry_after: parts
            .headers
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned()),
    }
}

async fn post_full(router: Router, path: &str, delivery: &Delivery) -> Reply {
    let body = http_body_util::Full::new(delivery.body.clone());
    call(router, path, delivery, body).await
}

#[tokio::test]
async fn the_extractor_verifies_with_the_gate_from_the_state() {
    let mut fixture = Fixture::new();
    let app = app(fixture.gate.clone());
    let raw = b"{\"id\":\"in_1\"}\r\n\xff\x00 ".as_slice();
    let delivery = Delivery::new("msg_1", raw);
    let reply = post_full(app.clone(), "/webhooks", &delivery).await;
    assert_eq!(reply.status, 299);
    assert_eq!(
        reply.body, raw,
        "the event's body is the raw body, byte for byte"
    );
    assert!(fixture.drain().is_empty(), "the extractor never enqueues");

    // Streamed, without a length.
    let reply = call(
        app.clone(),
        "/webhooks",
        &delivery,
        Chunks::new(&delivery.body, 3),
    )
    .await;
    assert_eq!((reply.status, &reply.body[..]), (299, raw));

    post_full(
        app.clone(),
        "/webhooks",
        &Delivery::new("msg_2", "{}").with_body("{ }"),
    )
    .await
    .assert(401, "signature_mismatch");
    post_full(
        app.clone(),
        "/webhooks",
        &Delivery::new("msg_3", "{}").without("webhook-id"),
    )
    .await
    .assert(400, "missing_header");

    // A delivery already handled elsewhere: the sender is told so, the handler never runs.
    let committed = Delivery::new("msg_4", "{}");
    fixture.commit(&committed.dedup_key()).await;
    let reply = post_full(app.clone(), "/webhooks", &committed).await;
    reply.assert(200, "duplicate");
    assert_eq!(reply.outcome.unwrap().code(), "duplicate");
    let in_flight = Delivery::new("msg_5", "{}");
    fixture.claim(&in_flight.dedup_key()).await;
    let reply = post_full(app.clone(), "/webhooks", &in_flight).await;
    reply.assert(503, "in_flight");
    assert_eq!(reply.retry_after.as_deref(), Some("10"));
}

#[tokio::test]
async fn the_extractor_enforces_the_gate_limit_declared_or_streamed() {
    let fixture = Fixture::new();
    let app = app(fixture.gate.clone());
    for (len, status) in [(LIMIT, 299), (LIMIT + 1, 413)] {
        let delivery = Delivery::sized(&format!("msg_{len}"), len);
        let declared = Delivery::sized(&format!("msg_{len}"), len)
            .with_header("content-length", &len.to_string());
        let reply = post_full(app.clone(), "/webhooks", &declared).await;
        assert_eq!(reply.status, status, "{len} with Content-Length");
        let reply = call(
            app.clone(),
            "/webhooks",
            &delivery,
            Chunks::new(&delivery.body, 100),
        )
        .await;
        assert_eq!(reply.status, status, "{len} streamed");
        if status == 413 {
            reply.assert(413, "body_too_large");
        }
    }
    // Refused from the declared length alone: this body fails if it is read at all.
    let huge = Delivery::new("msg_huge", "{}").with_header("content-length", "1000000000");
    call(app.clone(), "/webhooks", &huge, Broken::new())
        .await
        .assert(413, "body_too_large");
    let reply = call(
        app,
        "/webhooks",
        &Delivery::new("msg_b", "{}"),
        Broken::new(),
    )
    .await;
    reply.assert(400, "body_unreadable");
}

#[tokio::test]
async fn json_is_deserialized_only_after_verification_and_bounded() {
    let fixture = Fixture::new();
    let app = app(fixture.gate.clone());
    let reply = post_full(
        app.clone(),
        "/invoices",
        &Delivery::new("msg_j", r#"{"id":"in_7"}"#),
    )
    .await;
    assert_eq!(reply.status, 299);
    assert_eq!(reply.text(), "in_7 standard-webhooks-v1:id:msg_j");

    // A forged body is never parsed: the signature check answers first.
    post_full(
        app.clone(),
        "/invoices",
        &Delivery::new("msg_f", "{}").with_body("{not json"),
    )
    .await
    .assert(401, "signature_mismatch");

    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    post_full(app.clone(), "/invoices", &Delivery::new("msg_deep", deep))
        .await
        .assert(400, "json_too_deep");
    post_full(
        app.clone(),
        "/invoices",
        &Delivery::new("msg_bad", "{\"id\":"),
    )
    .await
    .assert(400, "invalid_json");
    post_full(
        app.clone(),
        "/invoices",
        &Delivery::new("msg_shape", r#"{"id":7}"#),
    )
    .await
    .assert(422, "unexpected_json");
}

#[tokio::test]
async fn behind_the_layer_the_extractor_takes_the_verified_event_without_verifying_again() {
    let fixture = Fixture::new();
    // The state's gate holds another secret: if the extractor verified again, it would
    // answer 401.
    let other = Verifier::builder(SchemeId::StandardWebhooksV1)
        .secret("whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXk=")
        .build()
        .unwrap();
    let state_gate = Gate::builder(other).build_verify_only().unwrap();
    let app = app(state_gate).route_layer(GateLayer::verify_only(fixture.gate.clone()));
    let delivery = Delivery::new("msg_l", r#"{"id":"in_9"}"#);
    let reply = post_full(app.clone(), "/webhooks", &delivery).await;
    assert_eq!((reply.status, &reply.body), (299, &delivery.body));
    let reply = post_full(app.clone(), "/invoices", &delivery).await;
    assert_eq!(
        (reply.status, reply.text()),
        (299, "in_9 standard-webhooks-v1:id:msg_l")
    );
    // The layer answers rejections itself.
    let reply = post_full(
        app,
        "/webhooks",
        &Delivery::new("msg_m", "{}").with_body("{ }"),
    )
    .await;
    assert_eq!((reply.status, reply.text()), (401, "signature_mismatch"));
    assert!(
        reply.rejection.is_none(),
        "answered by the layer, not the extractor"
    );
    assert!(reply.outcome.is_some());
}

#[tokio::test]
async fn the_state_can_be_the_gate_itself() {
    let fixture = Fixture::new();
    let app: Router = Router::new()
        .route("/webhooks", post(raw_handler))
        .with_state(fixture.gate.clone());
    let delivery = Delivery::new("msg_s", "{}");
    assert_eq!(post_full(app, "/webhooks", &delivery).await.status, 299);
    let _ = verifier();
}

#[test]
fn app_state_fields_are_reachable() {
    let fixture = Fixture::new();
    let state = AppState {
        gate: fixture.gate.clone(),
        name: "x",
    };
    assert_eq!(state.name, "x");
    assert_eq!(Gate::from_ref(&state).max_body_bytes(), LIMIT);
}
