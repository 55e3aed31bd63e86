#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
//! Every row of the Gate contract through `tower::ServiceExt::oneshot`, in both modes.

mod common;

use bytes::{Buf, Bytes};
use common::{
    Broken, Chunks, Delivery, DownStore, Fixture, HangingSink, LIMIT, NOW, echo, gate_with,
};
use hookgate::{
    ChannelSink, Gate, MemoryDedupStore, Outcome, SchemeId, SignRequest, Signer, Verifier,
};
use hookgate_tower::{BodyReadError, GateLayer, Mode, outcome_response};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt as _;
use tower::{Layer as _, ServiceExt as _, service_fn};

const MODES: [Mode; 2] = [Mode::Receive, Mode::VerifyOnly];

/// What came back.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    outcome: Option<Outcome>,
    response_extensions: http::Extensions,
}

impl Answer {
    fn code(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    fn assert(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status.as_u16(), self.code()),
            (status, code),
            "outcome {:?}",
            self.outcome
        );
        let outcome = self
            .outcome
            .as_ref()
            .expect("the outcome is in the extensions");
        assert_eq!((outcome.status(), outcome.code()), (status, code));
        let retry_after = self.headers.get("retry-after");
        assert_eq!(
            retry_after.is_some(),
            status == 503,
            "Retry-After on 503 only"
        );
    }

    /// The inner service (verify-only mode) answered, with the raw body echoed.
    fn assert_passed_on(&self, delivery: &Delivery) {
        assert_eq!(self.status.as_u16(), 299, "{:?}", self.outcome);
        assert_eq!(self.body, delivery.body, "the raw body reaches the handler");
        assert_eq!(self.headers["x-dedup-key"], delivery.dedup_key().as_str());
        assert_eq!(self.headers["x-event-body-matches"], "true");
        assert!(self.outcome.is_none());
    }
}

async fn send<B>(layer: &GateLayer, request: Request<B>) -> Answer
where
    B: Body + Send + 'static,
    B::Data: Buf + Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let service = layer.layer(service_fn(echo));
    let response: Response<_> = service.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
        outcome: parts.extensions.get::<Outcome>().cloned(),
        response_extensions: parts.extensions,
    }
}

#[tokio::test]
async fn a_new_delivery_is_acknowledged_after_the_sink_has_it_or_passed_on() {
    for mode in MODES {
        let mut fixture = Fixture::new();
        let layer = GateLayer::with_mode(fixture.gate.clone(), mode);
        let delivery = Delivery::new("msg_new", r#"{"type":"invoice.paid"}"#);
        let answer = send(&layer, delivery.request()).await;
        let events = fixture.drain();
        match mode {
            Mode::Receive => {
                answer.assert(200, "accepted");
                assert_eq!(answer.headers["content-type"], "text/plain; charset=utf-8");
                assert_eq!(events.len(), 1);
                assert_eq!(events[0].body(), &delivery.body);
                assert_eq!(events[0].dedup_key(), delivery.dedup_key());
            }
            _ => {
                answer.assert_passed_on(&delivery);
                assert!(events.is_empty(), "verify-only never enqueues");
            }
        }
    }
}

#[tokio::test]
async fn a_delivery_already_handed_off_is_acknowledged_as_a_duplicate() {
    for mode in MODES {
        let mut fixture = Fixture::new();
        let layer = GateLayer::with_mode(fixture.gate.clone(), mode);
        let delivery = Delivery::new("msg_dup", "{}");
        fixture.commit(&delivery.dedup_key()).await;
        send(&layer, delivery.request())
            .await
            .assert(200, "duplicate");
        assert!(fixture.drain().is_empty());
    }
}

#[tokio::test]
async fn a_retry_is_a_duplicate_in_gate_mode() {
    let mut fixture = Fixture::new();
    let layer = GateLayer::new(fixture.gate.clone());
    let delivery = Delivery::new("msg_retry", "{}");
    send(&layer, delivery.request())
        .await
        .assert(200, "accepted");
    send(&layer, delivery.request())
        .await
        .assert(200, "duplicate");
    assert_eq!(fixture.drain().len(), 1);
}

#[tokio::test]
async fn a_copy_in_flight_asks_the_sender_to_retry_later() {
    for mode in MODES {
        let mut fixture = Fixture::new();
        let layer = GateLayer::with_mode(fixture.gate.clone(), mode);
        let delivery = Delivery::new("msg_flight", "{}");
        fixture.claim(&delivery.dedup_key()).await;
        let answer = send(&layer, delivery.request()).await;
        answer.assert(503, "in_flight");
        assert_eq!(answer.headers["retry-after"], "10");
        assert!(fixture.drain().is_empty());
    }
}

#[tokio::test]
async fn rejections_are_400_or_401_with_the_reason_code_and_store_nothing() {
    let signed = || Delivery::new("msg_bad", r#"{"a":1}"#);
    let cases = [
        (
            "no signature",
            signed().without("webhook-signature"),
            400,
            "missing_header",
        ),
        (
            "no id",
            signed().without("webhook-id"),
            400,
            "missing_header",
        ),
        (
            "id header repeated with another value",
            signed().adding("webhook-id", "msg_other"),
            400,
            "malformed_header",
        ),
        (
            "unreadable timestamp",
            signed().with_header("webhook-timestamp", "soon"),
            400,
            "invalid_timestamp",
        ),
        (
            "forged body",
            signed().with_body(r#"{"a":2}"#),
            401,
            "signature_mismatch",
        ),
        (
            "unknown key",
            signed().with_header(
                "webhook-signature",
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
            401,
            "signature_mismatch",
        ),
        (
            "stale",
            Delivery::at("msg_old", "{}", NOW - 3600),
            401,
            "timestamp_too_old",
        ),
        (
            "from the future",
            Delivery::at("msg_new", "{}", NOW + 3600),
            401,
            "timestamp_too_new",
        ),
    ];
    for (name, delivery, status, code) in cases {
        for mode in MODES {
            let mut fixture = Fixture::new();
            let layer = GateLayer::with_mode(fixture.gate.clone(), mode);
            let answer = send(&layer, delivery.request()).await;
            assert_eq!(
                (answer.status.as_u16(), answer.code()),
                (status, code),
                "{name} ({mode:?})"
            );
            answer.assert(status, code);
            let outcome = answer.outcome.unwrap();
            assert!(
                outcome.rejection().is_some(),
                "{name}: the reason is in the extensions"
            );
            assert!(fixture.drain().is_empty(), "{name}");
        }
    }
}

#[tokio::test]
async fn bodies_at_the_limit_pass_and_one_byte_more_is_413_whether_declared_or_streamed() {
    for mode in MODES {
        for (len, over) in [(LIMIT - 1, false), (LIMIT, false), (LIMIT + 1, true)] {
            let delivery = Delivery::sized(&format!("msg_{len}"), len);
            // With Content-Length (a `Full` body has an exact size), then streamed in
            // chunks of unknown total length.
            for streamed in [false, true] {
                let mut fixture = Fixture::new();
                let layer = GateLayer::with_mode(fixture.gate.clone(), mode);
                let answer = if streamed {
                    send(
                        &layer,
                        delivery.request_with(Chunks::new(&delivery.body, 100)),
                    )
                    .await
                } else {
                    let mut request = delivery.request();
                    request
                        .headers_mut()
                        .insert("content-length", len.to_string().parse().unwrap());
                    send(&layer, request).await
                };
                let case = format!("{len} bytes, streamed {streamed}, {mode:?}");
                if over {
                    answer.assert(413, "body_too_large");
                    assert!(fixture.drain().is_empty(), "{case}");
                } else if mode == Mode::Receive {
                    answer.assert(200, "accepted");
                    assert_eq!(fixture.drain().len(), 1, "{case}");
                } else {
                    answer.assert_passed_on(&delivery);
                }
            }
        }
    }
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_without_reading_the_body() {
    let fixture = Fixture::new();
    let layer = GateLayer::new(fixture.gate.clone());
    let delivery = Delivery::new("msg_big", "{}");
    // The body would fail if it were read.
    let mut request = delivery.request_with(Broken::new());
    request
        .headers_mut()
        .insert("content-length", "1000000000".parse().unwrap());
    send(&layer, request).await.assert(413, "body_too_large");
}

#[tokio::test]
async fn a_content_length_that_lies_does_not_lift_the_limit() {
    let fixture = Fixture::new();
    let layer = GateLayer::new(fixture.gate.clone());
    let delivery = Delivery::sized("msg_liar", LIMIT + 500);
    let mut request = delivery.request_with(Chunks::new(&delivery.body, 256));
    request
        .headers_mut()
        .insert("content-length", "10".parse().unwrap());
    send(&layer, request).await.assert(413, "body_too_large");
}

#[tokio::test]
async fn a_full_sink_is_503_with_retry_after_and_the_claim_is_released() {
    let mut fixture = Fixture::with_capacity(1);
    let layer = GateLayer::new(fixture.gate.clone());
    send(&layer, Delivery::new("msg_first", "{}").request())
        .await
        .assert(200, "accepted");
    let second = Delivery::new("msg_second", "{}");
    let answer = send(&layer, second.request()).await;
    answer.assert(503, "sink_full");
    assert_eq!(answer.headers["retry-after"], "10");
    // Once there is room, the sender's retry goes through (the claim was released).
    assert_eq!(fixture.drain().len(), 1);
    send(&layer, second.request()).await.assert(200, "accepted");

    // Verify-only mode never touches the sink.
    let full = Fixture::with_capacity(1);
    let layer = GateLayer::verify_only(full.gate.clone());
    send(&layer, Delivery::new("msg_a", "{}").request()).await;
    let third = Delivery::new("msg_b", "{}");
    send(&layer, third.request()).await.assert_passed_on(&third);
}

#[tokio::test]
async fn a_closed_sink_is_503_sink_unavailable() {
    let Fixture { gate, events, .. } = Fixture::new();
    drop(events);
    let layer = GateLayer::new(gate);
    let answer = send(&layer, Delivery::new("msg_closed", "{}").request()).await;
    answer.assert(503, "sink_unavailable");
    assert!(answer.outcome.unwrap().detail().is_some());
}

#[tokio::test]
async fn a_dedup_store_that_is_down_fails_closed_in_both_modes() {
    for mode in MODES {
        let (sink, mut events) = ChannelSink::bounded(8);
        let layer = GateLayer::with_mode(gate_with(sink, DownStore), mode);
        send(&layer, Delivery::new("msg_down", "{}").request())
            .await
            .assert(503, "dedup_unavailable");
        assert!(events.try_recv().is_none());
    }
}

#[tokio::test]
async fn a_sink_that_does_not_answer_in_time_is_503_timeout() {
    let layer = GateLayer::new(gate_with(HangingSink, MemoryDedupStore::new()));
    send(&layer, Delivery::new("msg_slow", "{}").request())
        .await
        .assert(503, "timeout");
}

#[tokio::test]
async fn a_body_that_fails_while_read_is_400_body_unreadable() {
    for mode in MODES {
        let fixture = Fixture::new();
        let layer = GateLayer::with_mode(fixture.gate.clone(), mode);
        let delivery = Delivery::new("msg_broken", "{}");
        let answer = send(&layer, delivery.request_with(Broken::new())).await;
        assert_eq!(
            (answer.status.as_u16(), answer.code()),
            (400, "body_unreadable")
        );
        let error = answer.response_extensions.get::<BodyReadError>().unwrap();
        assert!(error.to_string().contains("connection reset"));
    }
}

#[tokio::test]
async fn the_response_shape_can_be_customised_and_the_outcome_stays_in_the_extensions() {
    let fixture = Fixture::new();
    let layer = GateLayer::new(fixture.gate.clone()).respond_with(|outcome: &Outcome| {
        let mut response = outcome_response(outcome);
        *response.body_mut() = Bytes::from(format!(r#"{{"code":"{}"}}"#, outcome.code()));
        response
            .headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        response
    });
    let delivery = Delivery::new("msg_json", "{}").with_body("{ }");
    let service = layer.layer(service_fn(echo));
    let response = service.oneshot(delivery.request()).await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["content-type"], "application/json");
    let outcome = response.extensions().get::<Outcome>().unwrap().clone();
    assert_eq!(outcome.code(), "signature_mismatch");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, r#"{"code":"signature_mismatch"}"#);
}

#[tokio::test]
async fn url_signing_schemes_verify_the_public_origin_plus_the_called_path() {
    let secret = "EXAMPLE_SQUARE_SIGNATURE_KEY";
    let url = "https://hooks.example.com/webhooks/square?shop=1";
    let signed = Signer::new(SchemeId::Square, secret)
        .unwrap()
        .sign(&SignRequest::new(r#"{"event_id":"e1"}"#).url(url))
        .unwrap();
    let verifier = Verifier::builder(SchemeId::Square)
        .secret(secret)
        .build_with_url_per_request()
        .unwrap();
    let gate = Gate::builder(verifier).build_verify_only().unwrap();
    let request = || {
        let mut builder = Request::post("/webhooks/square?shop=1");
        for (name, value) in &signed.headers {
            builder = builder.header(name, value);
        }
        builder
            .body(http_body_util::Full::new(signed.body.clone()))
            .unwrap()
    };

    let with_origin = GateLayer::verify_only(gate.clone())
        .public_origin("https://hooks.example.com/")
        .unwrap();
    let answer = send(&with_origin, request()).await;
    assert_eq!(answer.status.as_u16(), 299, "{:?}", answer.outcome);

    let wrong_origin = GateLayer::verify_only(gate.clone())
        .public_origin("https://other.example.com")
        .unwrap();
    send(&wrong_origin, request())
        .await
        .assert(401, "signature_mismatch");

    let without = GateLayer::verify_only(gate);
    send(&without, request())
        .await
        .assert(400, "missing_header");
}

#[tokio::test]
async fn the_service_exposes_its_parts_and_the_layer_debugs() {
    let fixture = Fixture::new();
    let layer = GateLayer::verify_only(fixture.gate.clone());
    assert!(format!("{layer:?}").contains("VerifyOnly"));
    let mut service = layer.layer(service_fn(echo));
    assert_eq!(service.mode(), Mode::VerifyOnly);
    assert_eq!(service.gate().max_body_bytes(), LIMIT);
    let _: &mut _ = service.get_mut();
    let _ = service.get_ref();
    let _inner = service.into_inner();

    let gate_mode = hookgate_tower::GateService::new(service_fn(echo), fixture.gate.clone());
    assert_eq!(gate_mode.mode(), Mode::Receive);
    let via = hookgate_tower::GateService::<()>::layer(fixture.gate.clone());
    assert_eq!(via.mode(), Mode::Receive);
    let checker = hookgate_tower::GateService::verify_only(service_fn(echo), fixture.gate);
    assert_eq!(checker.mode(), Mode::VerifyOnly);
}
