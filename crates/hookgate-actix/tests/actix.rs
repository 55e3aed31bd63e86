#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
//! The middleware and the extractors inside actix-web's test harness: modes, answers,
//! configuration errors, extractor sources, JSON. Behaviour over real HTTP, compared with
//! the core gate and the tower layer, is in the workspace's conformance tests.

use std::time::Duration;

use actix_web::dev::{Payload, Service as _, ServiceResponse, Transform as _};
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::{App, HttpMessage as _, HttpRequest, HttpResponse, HttpServer, test, web};
use bytes::Bytes;
use hookgate::sink::ChannelReceiver;
use hookgate::{
    ChannelSink, FixedClock, Gate, MemoryDedupStore, Outcome, SchemeId, SignRequest, Signer,
    VerifiedEvent, Verifier,
};
use hookgate_actix::{
    ConfigError, VerifiedJson, VerifiedWebhook, WebhookConfig, WebhookError, WebhookErrorKind,
    WebhookGate,
};

type BoxedPayloadStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, PayloadError>>>>;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NOW: i64 = 1_700_000_000;
const BODY: &str = r#"{"type":"invoice.paid","data":{"id":"in_1"}}"#;
const LIMIT: usize = 1024;

fn verifier() -> Verifier {
    Verifier::builder(SchemeId::StandardWebhooksV1)
        .secret(SECRET)
        .clock(FixedClock::from_unix(NOW.unsigned_abs()))
        .build()
        .unwrap()
}

fn receiving_gate(capacity: usize) -> (Gate, ChannelReceiver) {
    let (sink, events) = ChannelSink::bounded(capacity);
    let gate = Gate::builder(verifier())
        .sink(sink)
        .max_body_bytes(LIMIT)
        .build()
        .unwrap();
    (gate, events)
}

fn checking_gate() -> Gate {
    Gate::builder(verifier())
        .max_body_bytes(LIMIT)
        .build_verify_only()
        .unwrap()
}

/// A signed delivery as a test request.
fn delivery(id: &str, body: &str) -> test::TestRequest {
    let signed = Signer::new(SchemeId::StandardWebhooksV1, SECRET)
        .unwrap()
        .sign(&SignRequest::new(body.to_owned()).id(id).timestamp(NOW))
        .unwrap();
    let mut req = test::TestRequest::post()
        .uri("/webhooks")
        .set_payload(signed.body);
    for header in signed.headers {
        req = req.insert_header(header);
    }
    req
}

async fn answer<B: actix_web::body::MessageBody>(res: ServiceResponse<B>) -> (u16, String) {
    let status = res.status().as_u16();
    let body = test::read_body(res).await;
    (status, String::from_utf8(body.to_vec()).unwrap())
}

async fn never_called() -> HttpResponse {
    HttpResponse::InternalServerError().body("the handler ran")
}

#[actix_web::test]
async fn gate_mode_answers_itself_and_hands_events_to_the_sink() {
    let (gate, mut events) = receiving_gate(16);
    let app = test::init_service(
        App::new().service(
            web::resource("/webhooks")
                .wrap(WebhookGate::new(gate))
                .to(never_called),
        ),
    )
    .await;

    let res = test::call_service(&app, delivery("msg_1", BODY).to_request()).await;
    assert_eq!(
        res.response()
            .extensions()
            .get::<Outcome>()
            .map(Outcome::code),
        Some("accepted")
    );
    assert_eq!(
        res.headers().get("content-type").unwrap(),
        "text/plain; charset=utf-8"
    );
    assert_eq!(answer(res).await, (200, "accepted".to_owned()));
    let res = test::call_service(&app, delivery("msg_1", BODY).to_request()).await;
    assert_eq!(answer(res).await, (200, "duplicate".to_owned()));
    let res =
        test::call_service(&app, delivery("msg_1", BODY).set_payload("{}").to_request()).await;
    assert!(res.response().error().is_some(), "rejections are errors");
    assert_eq!(answer(res).await, (401, "signature_mismatch".to_owned()));

    let event = events.try_recv().unwrap();
    assert_eq!(event.dedup_key(), "standard-webhooks-v1:id:msg_1");
    assert_eq!(event.body(), BODY.as_bytes());
    assert!(events.try_recv().is_none());
}

#[actix_web::test]
async fn a_503_carries_retry_after_and_the_outcome() {
    let (gate, events) = receiving_gate(16);
    drop(events);
    let app = test::init_service(
        App::new().service(
            web::resource("/webhooks")
                .wrap(WebhookGate::new(gate))
                .to(never_called),
        ),
    )
    .await;
    let res = test::call_service(&app, delivery("msg_down", BODY).to_request()).await;
    assert_eq!(res.headers().get("retry-after").unwrap(), "10");
    let outcome = res
        .response()
        .extensions()
        .get::<Outcome>()
        .cloned()
        .unwrap();
    assert!(outcome.detail().unwrap().contains("receiver was dropped"));
    let (status, code) = answer(res).await;
    assert_eq!((status, code.as_str()), (503, "sink_unavailable"));
    assert!(!code.contains("dropped"), "details stay out of the body");
}

#[actix_web::test]
async fn bodies_over_the_limit_get_413_whether_announced_or_streamed() {
    let (gate, mut events) = receiving_gate(16);
    let app = test::init_service(
        App::new()
            .wrap(WebhookGate::new(gate))
            .default_service(web::to(never_called)),
    )
    .await;
    let big = "x".repeat(LIMIT + 1);
    let res = test::call_service(&app, delivery("msg_big", &big).to_request()).await;
    assert_eq!(answer(res).await, (413, "body_too_large".to_owned()));

    // Streamed without a length: counted as it arrives.
    let chunks: Vec<Result<Bytes, PayloadError>> =
        (0..8).map(|_| Ok(Bytes::from(vec![b'x'; 200]))).collect();
    let req = delivery("msg_stream", "{}").to_request();
    let (mut req, _) = req.replace_payload(Payload::from(Box::pin(futures_util::stream::iter(
        chunks,
    )) as BoxedPayloadStream));
    req.headers_mut().remove("content-length");
    let res = test::call_service(&app, req).await;
    assert_eq!(answer(res).await, (413, "body_too_large".to_owned()));
    assert!(events.try_recv().is_none());
}

#[actix_web::test]
async fn a_body_that_cannot_be_read_gets_400_body_unreadable() {
    let (gate, _events) = receiving_gate(16);
    let app = test::init_service(
        App::new()
            .wrap(WebhookGate::new(gate))
            .default_service(web::to(never_called)),
    )
    .await;
    let chunks: Vec<Result<Bytes, PayloadError>> = vec![
        Ok(Bytes::from_static(b"{\"a\":")),
        Err(PayloadError::Incomplete(None)),
    ];
    let req = delivery("msg_broken", "{}").to_request();
    let (mut req, _) = req.replace_payload(Payload::from(Box::pin(futures_util::stream::iter(
        chunks,
    )) as BoxedPayloadStream));
    req.headers_mut().remove("content-length");
    let res = test::call_service(&app, req).await;
    let error = res.response().error().unwrap();
    let error = error.as_error::<WebhookError>().unwrap();
    assert_eq!(error.kind(), WebhookErrorKind::BodyUnreadable);
    assert!(std::error::Error::source(error).is_some());
    assert_eq!(answer(res).await, (400, "body_unreadable".to_owned()));
}

#[actix_web::test]
async fn verify_only_mode_passes_the_event_and_the_raw_body_on() {
    async fn handler(req: HttpRequest, body: web::Bytes) -> HttpResponse {
        let event = req.extensions().get::<VerifiedEvent>().cloned().unwrap();
        assert_eq!(event.body(), &body);
        HttpResponse::Accepted().body(format!("handled {}", event.dedup_key()))
    }
    let store = MemoryDedupStore::new();
    let gate = Gate::builder(verifier())
        .dedup(store.clone())
        .build_verify_only()
        .unwrap();
    let app = test::init_service(
        App::new().service(
            web::resource("/webhooks")
                .wrap(WebhookGate::verify_only(gate))
                .to(handler),
        ),
    )
    .await;
    let res = test::call_service(&app, delivery("msg_vo", BODY).to_request()).await;
    assert_eq!(
        answer(res).await,
        (202, "handled standard-webhooks-v1:id:msg_vo".to_owned())
    );
    let forged = delivery("msg_vo", BODY).set_payload("{}").to_request();
    let res = test::call_service(&app, forged).await;
    assert_eq!(answer(res).await, (401, "signature_mismatch".to_owned()));

    // Once another replica has handed it off, the middleware answers `duplicate` itself.
    let key = "standard-webhooks-v1:id:msg_vo";
    let hookgate::dedup::Claim::New(token) =
        hookgate::DedupStore::claim(&store, key).await.unwrap()
    else {
        panic!("new key");
    };
    hookgate::DedupStore::commit(&store, key, token)
        .await
        .unwrap();
    let res = test::call_service(&app, delivery("msg_vo", BODY).to_request()).await;
    assert_eq!(answer(res).await, (200, "duplicate".to_owned()));
}

#[derive(Debug, serde::Deserialize)]
struct Invoice {
    r#type: String,
}

async fn typed(VerifiedJson(invoice, event): VerifiedJson<Invoice>) -> HttpResponse {
    HttpResponse::Ok().body(format!("{} {}", invoice.r#type, event.scheme()))
}

async fn untyped(VerifiedWebhook(event): VerifiedWebhook) -> HttpResponse {
    HttpResponse::Ok().body(event.delivery_id().unwrap_or("none").to_owned())
}

#[actix_web::test]
async fn extractors_verify_on_their_own_with_the_gate_from_app_data() {
    // A bare Gate, web::Data<Gate>, WebhookConfig, web::Data<WebhookConfig>.
    let apps = [
        App::new().app_data(checking_gate()),
        App::new().app_data(web::Data::new(checking_gate())),
        App::new().app_data(WebhookConfig::new(checking_gate())),
        App::new().app_data(web::Data::new(WebhookConfig::new(checking_gate()))),
    ];
    for app in apps {
        let app = test::init_service(
            app.route("/webhooks", web::post().to(untyped))
                .route("/typed", web::post().to(typed)),
        )
        .await;
        let res = test::call_service(&app, delivery("msg_x", BODY).to_request()).await;
        assert_eq!(answer(res).await, (200, "msg_x".to_owned()));
        let req = delivery("msg_x", BODY).uri("/typed").to_request();
        let res = test::call_service(&app, req).await;
        assert_eq!(
            answer(res).await,
            (200, "invoice.paid standard-webhooks-v1".to_owned())
        );
        let res =
            test::call_service(&app, delivery("msg_x", BODY).set_payload("x").to_request()).await;
        assert_eq!(answer(res).await, (401, "signature_mismatch".to_owned()));
        let big = "x".repeat(LIMIT + 1);
        let res = test::call_service(&app, delivery("msg_x", &big).to_request()).await;
        assert_eq!(answer(res).await, (413, "body_too_large".to_owned()));
    }
}

#[actix_web::test]
async fn verified_json_answers_like_the_axum_extractor() {
    let app = test::init_service(
        App::new()
            .app_data(checking_gate())
            .route("/typed", web::post().to(typed)),
    )
    .await;
    let deep = format!("{}{}", "[".repeat(65), "]".repeat(65));
    for (body, status, code) in [
        ("{", 400, "invalid_json"),
        (r#"{"type":1}"#, 422, "unexpected_json"),
        (deep.as_str(), 400, "json_too_deep"),
    ] {
        let req = delivery("msg_json", body).uri("/typed").to_request();
        let res = test::call_service(&app, req).await;
        assert_eq!(answer(res).await, (status, code.to_owned()), "{body}");
    }
}

#[actix_web::test]
async fn extractors_without_configuration_answer_500_not_configured() {
    let app = test::init_service(
        App::new()
            .app_data(WebhookConfig::new(checking_gate()).public_origin("not an origin"))
            .route("/misconfigured", web::post().to(untyped))
            .service(
                web::scope("/bare")
                    .app_data(web::Data::new(5_u8))
                    .route("/webhooks", web::post().to(untyped)),
            ),
    )
    .await;
    let req = delivery("msg_cfg", BODY).uri("/misconfigured").to_request();
    let res = test::call_service(&app, req).await;
    assert_eq!(answer(res).await, (500, "not_configured".to_owned()));

    let app = test::init_service(App::new().route("/webhooks", web::post().to(untyped))).await;
    let res = test::call_service(&app, delivery("msg_cfg", BODY).to_request()).await;
    assert_eq!(answer(res).await, (500, "not_configured".to_owned()));
}

#[actix_web::test]
async fn url_signing_schemes_verify_the_public_origin_and_the_path_as_received() {
    let token = "12345";
    let url = "https://hooks.example.com/sms?b=2&a=1";
    let signed = Signer::new(SchemeId::Twilio, token)
        .unwrap()
        .sign(&SignRequest::new("Body=hi&From=%2B1555").url(url))
        .unwrap();
    let verifier = Verifier::builder(SchemeId::Twilio)
        .secret(token)
        .build_with_url_per_request()
        .unwrap();
    let gate = Gate::builder(verifier).build_verify_only().unwrap();
    let app = test::init_service(
        App::new()
            .app_data(WebhookConfig::new(gate.clone()).public_origin("https://hooks.example.com/"))
            .default_service(web::to(untyped))
            .service(
                web::scope("/mw")
                    .wrap(WebhookGate::verify_only(gate).public_origin("https://hooks.example.com"))
                    .default_service(web::to(untyped)),
            ),
    )
    .await;
    let request = |path: &str| {
        let mut req = test::TestRequest::post()
            .uri(path)
            .set_payload(signed.body.clone());
        for header in &signed.headers {
            req = req.insert_header(header.clone());
        }
        req.to_request()
    };
    let res = test::call_service(&app, request("/sms?b=2&a=1")).await;
    assert_eq!(answer(res).await.0, 200);
    // The query in another order is another URL.
    let res = test::call_service(&app, request("/sms?a=1&b=2")).await;
    assert_eq!(answer(res).await, (401, "signature_mismatch".to_owned()));
    // Behind the middleware mounted at /mw the path differs from what was signed.
    let res = test::call_service(&app, request("/mw/sms?b=2&a=1")).await;
    assert_eq!(answer(res).await, (401, "signature_mismatch".to_owned()));
}

#[actix_web::test]
async fn bad_configuration_stops_the_middleware_from_starting() {
    let (gate, _events) = receiving_gate(1);
    let cases = [
        (
            WebhookGate::new(checking_gate()),
            ConfigError::GateWithoutSink,
        ),
        (
            WebhookGate::new(gate.clone()).public_origin("https://a.example/path"),
            ConfigError::InvalidPublicOrigin {
                origin: "https://a.example/path".to_owned(),
                problem: "it must be scheme, host and port only, without a path, query or fragment",
            },
        ),
    ];
    for (middleware, error) in cases {
        assert_eq!(middleware.config().error(), Some(&error));
        assert!(middleware.new_transform(test::ok_service()).await.is_err());
    }
    let fine = WebhookGate::new(gate).public_origin("https://a.example/");
    assert_eq!(fine.config().origin(), Some("https://a.example"));
    let service = fine.new_transform(test::ok_service()).await.unwrap();
    let res = service
        .call(test::TestRequest::post().to_srv_request())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}

#[actix_web::test]
async fn a_server_with_a_misconfigured_middleware_does_not_start() {
    let gate = checking_gate();
    let server = HttpServer::new(move || {
        App::new()
            .wrap(WebhookGate::new(gate.clone()))
            .default_service(web::to(never_called))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .unwrap()
    .run();
    // The timeout guards against a hang only; the server fails at once.
    let result = tokio::time::timeout(Duration::from_secs(60), server).await;
    let error = result.expect("the server stopped by itself").unwrap_err();
    assert!(error.to_string().contains("can not start"), "{error}");
}

/// Azure Event Grid's token, as the operator puts it in the webhook URL registered in Azure.
const EVENT_GRID_TOKEN: &str = "eg-7f3c9a1b2d4e6f80_S3cret";

/// The `SubscriptionValidationEvent` of learn.microsoft.com/azure/event-grid
/// (end-point-validation-event-grid-events-schema).
const EVENT_GRID_VALIDATION: &str = r#"[{"id":"2d1781af-3a4c-4d7c-bd0c-e34b19da4e66","topic":"/subscriptions/xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx","subject":"","data":{"validationCode":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6","validationUrl":"https://rp-eastus2.eventgrid.azure.net:553/eventsubscriptions/myeventsub/validate?id=0000000000-0000-0000-0000-00000000000000&t=2022-10-28T04:23:35.1981776Z&apiVersion=2018-05-01-preview&token=1A1A1A1A"},"eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","eventTime":"2022-10-28T04:23:35.1981776Z","metadataVersion":"1","dataVersion":"1"}]"#;

/// One request over a real TCP connection; the status, the head (lower-cased) and the body.
async fn over_http(
    addr: std::net::SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    let response = tokio::task::spawn_blocking(move || {
        use std::io::{Read as _, Write as _};
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        stream.write_all(request.as_bytes()).unwrap();
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        String::from_utf8(response).unwrap()
    })
    .await
    .unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
    (
        head[9..12].parse().unwrap(),
        head.to_ascii_lowercase(),
        body.to_owned(),
    )
}

/// Both Azure Event Grid handshakes, through the middleware (`/mw`) and the extractor
/// (`/ex`) of a real actix-web server: answered only with the token, refused like a forged
/// delivery without it, never handed to the sink or the handler.
#[actix_web::test]
async fn azure_event_grid_handshakes_over_real_http() {
    let verifier = Verifier::builder(SchemeId::AzureEventGrid)
        .secret(EVENT_GRID_TOKEN)
        .build()
        .unwrap();
    let (sink, mut events) = ChannelSink::bounded(4);
    let gate = Gate::builder(verifier.clone()).sink(sink).build().unwrap();
    let checking = Gate::builder(verifier).build_verify_only().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(WebhookConfig::new(checking.clone()))
            .service(
                web::resource("/mw")
                    .wrap(WebhookGate::new(gate.clone()))
                    .to(never_called),
            )
            .route("/ex", web::route().to(untyped))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);

    for path in ["/mw", "/ex"] {
        let with_token = format!("{path}?code={EVENT_GRID_TOKEN}");
        let validation = [("aeg-event-type", "SubscriptionValidation")];
        let (status, head, body) = over_http(
            addr,
            "POST",
            &with_token,
            &validation,
            EVENT_GRID_VALIDATION,
        )
        .await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            serde_json::json!({"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"})
        );
        let origin = [("WebHook-Request-Origin", "eventgrid.azure.net")];
        let (status, head, body) = over_http(addr, "OPTIONS", &with_token, &origin, "").await;
        assert_eq!((status, body.as_str()), (200, ""), "{path}");
        assert!(
            head.contains("webhook-allowed-origin: eventgrid.azure.net"),
            "{head}"
        );
        assert!(head.contains("webhook-allowed-rate: *"), "{head}");
        for method in ["POST", "OPTIONS"] {
            for (target, status, code) in [
                (path.to_owned(), 400, "missing_header"),
                (format!("{path}?code=guess"), 401, "token_mismatch"),
            ] {
                let headers = [validation[0], origin[0]];
                let got = over_http(addr, method, &target, &headers, EVENT_GRID_VALIDATION).await;
                assert_eq!((got.0, got.2.as_str()), (status, code), "{method} {target}");
                assert!(!got.1.contains("webhook-allowed-origin"));
            }
        }
        let (status, _, body) = over_http(addr, "OPTIONS", &with_token, &[], "").await;
        assert_eq!(
            (status, body.as_str()),
            (403, "handshake_refused"),
            "{path}"
        );
    }
    assert!(events.try_recv().is_none(), "a handshake reached the sink");
    // A notification with the token is an event: the query reaches the gate on a POST too.
    let body = r#"[{"id":"831e1650-001e-001b-66ab-eeb76e069631","eventType":"Microsoft.Storage.BlobCreated","data":{}}]"#;
    let notification = [("aeg-event-type", "Notification")];
    let target = format!("/mw?code={EVENT_GRID_TOKEN}");
    let (status, _, answer) = over_http(addr, "POST", &target, &notification, body).await;
    assert_eq!((status, answer.as_str()), (200, "accepted"));
    assert_eq!(events.try_recv().unwrap().body().as_ref(), body.as_bytes());
    handle.stop(true).await;
}
