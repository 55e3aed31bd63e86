//! Runs whole requests through a framework's service in process, without sockets, for
//! instruction-count profiling of what the Gate adds to a request:
//! `valgrind --tool=callgrind target/release/examples/profile_request FRAMEWORK SETUP N`
//! with FRAMEWORK `axum` or `actix` and SETUP `baseline` (a bare handler taking the body as
//! bytes and answering 200) or `gate-memory` (the Gate with the in-memory dedup store and a
//! channel sink, as `hookgate-load`'s setups of those names). The difference between two
//! runs with different N, divided by the difference in N, is the count per request; the
//! difference between the setups is what the Gate adds.
//!
//! Every request is a distinct Standard Webhooks delivery of a 1 KiB body, signed before the
//! loop and verified with a [`FixedClock`], so every run does the same work. The HTTP parsing
//! and socket work of a real server are not in it (they are the same for both setups).

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use actix_web::{App, HttpResponse, test as actix_test, web};
use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use hookgate::{ChannelSink, FixedClock, Gate, SchemeId, SignRequest, Signer, Verifier};
use hookgate_actix::WebhookGate;
use hookgate_bench::{SW_SECRET, payload};
use hookgate_tower::GateLayer;
use tower_service::Service as _;

/// When the deliveries are signed and verified.
const T: u64 = 1_700_000_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let framework = args.get(1).map_or("axum", String::as_str).to_owned();
    let setup = args.get(2).map_or("gate-memory", String::as_str).to_owned();
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let body = Bytes::from(payload(1024));
    let signer = Signer::new(SchemeId::StandardWebhooksV1, SW_SECRET).unwrap();
    // Signed before the loop, so the profile holds only the receiving side.
    let deliveries: Vec<Vec<(String, String)>> = (0..n)
        .map(|i| {
            let request = SignRequest::new(body.clone())
                .id(format!("msg_profile_{i:016}"))
                .timestamp(i64::try_from(T).unwrap());
            signer.sign(&request).unwrap().headers
        })
        .collect();
    let gate = match setup.as_str() {
        "baseline" => None,
        "gate-memory" => Some(()),
        other => panic!("setup {other}"),
    };
    let gate_and_events = gate.map(|()| {
        let verifier = Verifier::builder(SchemeId::StandardWebhooksV1)
            .secret(SW_SECRET)
            .clock(FixedClock::from_unix(T))
            .build()
            .unwrap();
        let (sink, events) = ChannelSink::bounded(1024);
        (Gate::builder(verifier).sink(sink).build().unwrap(), events)
    });
    match framework.as_str() {
        "axum" => axum_requests(gate_and_events, &deliveries, &body),
        "actix" => actix_requests(gate_and_events, &deliveries, &body),
        other => panic!("framework {other}"),
    }
}

fn axum_requests(
    gate: Option<(Gate, hookgate::sink::ChannelReceiver)>,
    deliveries: &[Vec<(String, String)>],
    body: &Bytes,
) {
    let (mut router, mut events) = match gate {
        None => (
            Router::new().route(
                "/webhooks",
                post(|_body: Bytes| async { http::StatusCode::OK }),
            ),
            None,
        ),
        Some((gate, events)) => (
            Router::new()
                .route(
                    "/webhooks",
                    post(|| async { http::StatusCode::INTERNAL_SERVER_ERROR }),
                )
                .route_layer(GateLayer::new(gate)),
            Some(events),
        ),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        for headers in deliveries {
            let mut request = http::Request::post("/webhooks")
                .header(http::header::HOST, "127.0.0.1")
                .header(http::header::CONTENT_TYPE, "application/json");
            for (name, value) in headers {
                request = request.header(name.as_str(), value.as_str());
            }
            let request = request.body(axum::body::Body::from(body.clone())).unwrap();
            let response = router.call(request).await.unwrap();
            assert_eq!(response.status(), 200);
            if let Some(events) = &mut events {
                assert!(events.try_recv().is_some());
            }
        }
    });
}

fn actix_requests(
    gate: Option<(Gate, hookgate::sink::ChannelReceiver)>,
    deliveries: &[Vec<(String, String)>],
    body: &Bytes,
) {
    // One loop for both setups (their services differ in type).
    macro_rules! run {
        ($app:expr, $events:expr) => {{
            let app = $app;
            let mut events: Option<hookgate::sink::ChannelReceiver> = $events;
            for headers in deliveries {
                let mut request = actix_test::TestRequest::post()
                    .uri("/webhooks")
                    .insert_header(("host", "127.0.0.1"))
                    .insert_header(("content-type", "application/json"));
                for (name, value) in headers {
                    request = request.insert_header((name.as_str(), value.as_str()));
                }
                let request = request.set_payload(body.clone()).to_request();
                let response = actix_test::call_service(&app, request).await;
                assert_eq!(response.status(), 200);
                if let Some(events) = &mut events {
                    assert!(events.try_recv().is_some());
                }
            }
        }};
    }
    actix_web::rt::System::new().block_on(async {
        let resource = web::resource("/webhooks");
        match gate {
            None => run!(
                actix_test::init_service(App::new().service(
                    resource.to(|_body: web::Bytes| async { HttpResponse::Ok().finish() }),
                ))
                .await,
                None
            ),
            Some((gate, events)) => run!(
                actix_test::init_service(
                    App::new().service(
                        resource
                            .wrap(WebhookGate::new(gate))
                            .to(HttpResponse::InternalServerError),
                    ),
                )
                .await,
                Some(events)
            ),
        }
    });
}
