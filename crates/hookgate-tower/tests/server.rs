#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
//! The middleware behind real servers on 127.0.0.1 (plain hyper + tower, and axum), driven
//! by a real HTTP client and by raw TCP for chunked bodies.

mod common;

use std::net::SocketAddr;

use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use common::{Delivery, Fixture, HeldSink, LIMIT, echo, verifier};
use hookgate::{ChannelSink, Gate, MemoryDedupStore, VerifiedEvent};
use hookgate_tower::{GateLayer, Mode};
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tower::{Layer as _, service_fn};

const MODES: [Mode; 2] = [Mode::Receive, Mode::VerifyOnly];

/// Serves `layer` around the echo handler with plain hyper, one task per connection.
async fn serve_tower(layer: GateLayer) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = layer.layer(service_fn(echo));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Serves an axum router.
async fn serve_axum(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// The axum app of either mode: `POST /webhooks` behind the layer, `GET /health` outside.
fn axum_app(layer: GateLayer) -> Router {
    let webhooks = match layer.mode() {
        Mode::Receive => Router::new().route(
            "/webhooks",
            post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "the handler ran") }),
        ),
        _ => Router::new().route(
            "/webhooks",
            post(
                |axum::Extension(event): axum::Extension<VerifiedEvent>, body: Bytes| async move {
                    let same = event.body() == &body;
                    (
                        StatusCode::from_u16(299).unwrap(),
                        [("x-event-body-matches", same.to_string())],
                        body,
                    )
                },
            ),
        ),
    };
    webhooks
        .route_layer(layer)
        .route("/health", axum::routing::get(|| async { "ok" }))
}

struct Reply {
    status: u16,
    head: String,
    body: Bytes,
}

impl Reply {
    fn code(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }
}

/// Sends a delivery with hyper's client (with `Content-Length`).
async fn post_delivery(addr: SocketAddr, delivery: &Delivery) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut builder = Request::post(format!("http://{addr}/webhooks"));
    for (name, value) in &delivery.headers {
        builder = builder.header(name, value);
    }
    let response = client
        .request(builder.body(Full::new(delivery.body.clone())).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let head = format!("{:?}", response.headers());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply { status, head, body }
}

/// Sends a delivery over raw TCP, its body in chunks of `chunk` bytes
/// (`Transfer-Encoding: chunked`, no `Content-Length`), and reads until the server closes.
async fn post_chunked(addr: SocketAddr, delivery: &Delivery, chunk: usize) -> Reply {
    let mut request = format!("POST /webhooks HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n").into_bytes();
    for (name, value) in &delivery.headers {
        request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    for piece in delivery.body.chunks(chunk) {
        request.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        request.extend_from_slice(piece);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    raw(addr, &request).await
}

async fn raw(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    // A reset after the whole answer arrived is fine; what was read counts.
    let _ = stream.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, _) = text
        .split_once("\r\n\r\n")
        .expect("a complete response head");
    let status = head[9..12].parse().unwrap();
    let body_start = head.len() + 4;
    let mut body = Bytes::copy_from_slice(&response[body_start..]);
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Reply {
        status,
        head: head.to_owned(),
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Bytes {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap(), 16).unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return Bytes::from(out);
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Bytes no JSON parser or text layer would keep as they are.
fn awkward_body(len: usize) -> Bytes {
    let pattern: &[u8] = b"{\"k\": \"\xff\xfe\x00\r\n \t\\u0000\xc3\x28\"}  \r\n";
    pattern
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect::<Vec<u8>>()
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_hyper_every_row_through_a_real_client() {
    for mode in MODES {
        let mut fixture = Fixture::new();
        let addr = serve_tower(GateLayer::with_mode(fixture.gate.clone(), mode)).await;
        let success = if mode == Mode::Receive { 200 } else { 299 };

        let delivery = Delivery::new("msg_1", awkward_body(300));
        let reply = post_delivery(addr, &delivery).await;
        assert_eq!(reply.status, success, "{mode:?}: {}", reply.code());
        match mode {
            Mode::Receive => {
                assert_eq!(reply.code(), "accepted");
                assert_eq!(fixture.drain()[0].body(), &delivery.body);
                // The sender's retry: acknowledged, not enqueued again.
                let again = post_delivery(addr, &delivery).await;
                assert_eq!((again.status, again.code()), (200, "duplicate"));
            }
            _ => {
                assert_eq!(reply.body, delivery.body, "byte-identical raw body");
                assert!(reply.head.contains("\"x-event-body-matches\": \"true\""));
            }
        }

        let forged = Delivery::new("msg_2", "{}").with_body("{ }");
        let reply = post_delivery(addr, &forged).await;
        assert_eq!((reply.status, reply.code()), (401, "signature_mismatch"));

        let unsigned = Delivery::new("msg_3", "{}").without("webhook-signature");
        let reply = post_delivery(addr, &unsigned).await;
        assert_eq!((reply.status, reply.code()), (400, "missing_header"));

        let committed = Delivery::new("msg_4", "{}");
        fixture.commit(&committed.dedup_key()).await;
        let reply = post_delivery(addr, &committed).await;
        assert_eq!((reply.status, reply.code()), (200, "duplicate"));

        let in_flight = Delivery::new("msg_5", "{}");
        fixture.claim(&in_flight.dedup_key()).await;
        let reply = post_delivery(addr, &in_flight).await;
        assert_eq!((reply.status, reply.code()), (503, "in_flight"));
        assert!(
            reply.head.contains("\"retry-after\": \"10\""),
            "{}",
            reply.head
        );
        assert!(fixture.drain().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_holds_with_and_without_content_length() {
    for mode in MODES {
        let mut fixture = Fixture::new();
        let addr = serve_tower(GateLayer::with_mode(fixture.gate.clone(), mode)).await;
        let success = if mode == Mode::Receive { 200 } else { 299 };
        for len in [LIMIT - 1, LIMIT, LIMIT + 1] {
            let over = len > LIMIT;
            let delivery = Delivery::new(&format!("cl_{len}"), awkward_body(len));
            let reply = post_delivery(addr, &delivery).await;
            let expected = if over { 413 } else { success };
            assert_eq!(reply.status, expected, "Content-Length {len}, {mode:?}");
            if over {
                assert_eq!(reply.code(), "body_too_large");
            } else if mode == Mode::VerifyOnly {
                assert_eq!(reply.body, delivery.body);
            }

            for chunk in [1, 7, 512, 4096] {
                let delivery = Delivery::new(&format!("ch_{len}_{chunk}"), awkward_body(len));
                let reply = post_chunked(addr, &delivery, chunk).await;
                assert_eq!(
                    reply.status,
                    expected,
                    "chunked {len} by {chunk}, {mode:?}: {}",
                    reply.code()
                );
                assert!(
                    !reply
                        .head
                        .to_ascii_lowercase()
                        .contains("content-length: 0\r\n")
                        || over
                );
                if over {
                    assert_eq!(reply.code(), "body_too_large");
                } else if mode == Mode::VerifyOnly {
                    assert_eq!(reply.body, delivery.body, "chunked raw body, byte for byte");
                }
            }
        }
        let stored = fixture.drain();
        assert!(stored.iter().all(|e| e.body().len() <= LIMIT));
        if mode == Mode::Receive {
            assert_eq!(stored.len(), 2 * 5, "two sizes, five ways each");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_declared_body_is_refused_before_it_is_sent() {
    let fixture = Fixture::new();
    let addr = serve_tower(GateLayer::new(fixture.gate.clone())).await;
    let delivery = Delivery::new("msg_huge", "{}");
    let mut request = format!(
        "POST /webhooks HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 10000000000\r\n"
    )
    .into_bytes();
    for (name, value) in &delivery.headers {
        request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    request.extend_from_slice(b"\r\n{}");
    let reply = raw(addr, &request).await;
    assert_eq!((reply.status, reply.code()), (413, "body_too_large"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copies_of_a_delivery_are_enqueued_once_in_gate_mode() {
    let (channel, mut events) = ChannelSink::bounded(16);
    let sink = HeldSink::new(channel);
    let gate = Gate::builder(verifier())
        .sink(sink.clone())
        .dedup(MemoryDedupStore::new())
        .max_body_bytes(LIMIT)
        .build()
        .unwrap();
    let addr = serve_axum(axum_app(GateLayer::new(gate))).await;
    let delivery = std::sync::Arc::new(Delivery::new("msg_concurrent", r#"{"n":1}"#));

    const COPIES: usize = 6;
    let mut copies = JoinSet::new();
    for _ in 0..COPIES {
        let delivery = delivery.clone();
        copies.spawn(async move { post_delivery(addr, &delivery).await });
    }
    // One copy holds the claim and waits in the sink; every other one is told to retry.
    for _ in 0..COPIES - 1 {
        let reply = copies.join_next().await.unwrap().unwrap();
        assert_eq!((reply.status, reply.code()), (503, "in_flight"));
        assert!(reply.head.contains("retry-after"));
    }
    assert!(events.try_recv().is_none(), "nothing acknowledged yet");
    sink.open();
    let last = copies.join_next().await.unwrap().unwrap();
    assert_eq!((last.status, last.code()), (200, "accepted"));

    // The senders' retries are duplicates now.
    let retry = post_delivery(addr, &delivery).await;
    assert_eq!((retry.status, retry.code()), (200, "duplicate"));
    assert!(events.try_recv().is_some());
    assert!(events.try_recv().is_none(), "enqueued exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copies_all_reach_a_verify_only_handler_with_the_same_bytes() {
    let fixture = Fixture::new();
    let addr = serve_axum(axum_app(GateLayer::verify_only(fixture.gate.clone()))).await;
    let delivery = std::sync::Arc::new(Delivery::new("msg_vo", awkward_body(200)));
    let mut copies = JoinSet::new();
    for _ in 0..4 {
        let delivery = delivery.clone();
        copies.spawn(async move { post_delivery(addr, &delivery).await });
    }
    while let Some(reply) = copies.join_next().await {
        let reply = reply.unwrap();
        // Verify-only mode claims nothing: the handler must be idempotent.
        assert_eq!(reply.status, 299);
        assert_eq!(reply.body, delivery.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_routes_behind_route_layer_in_both_modes() {
    for mode in MODES {
        let mut fixture = Fixture::new();
        let addr = serve_axum(axum_app(GateLayer::with_mode(fixture.gate.clone(), mode))).await;

        let delivery = Delivery::new("msg_axum", awkward_body(100));
        let reply = post_delivery(addr, &delivery).await;
        match mode {
            Mode::Receive => {
                assert_eq!((reply.status, reply.code()), (200, "accepted"));
                assert_eq!(fixture.drain().len(), 1);
            }
            _ => {
                assert_eq!(reply.status, 299);
                assert_eq!(reply.body, delivery.body, "axum's Bytes sees the raw body");
                assert!(reply.head.contains("\"x-event-body-matches\": \"true\""));
            }
        }
        let reply = post_chunked(
            addr,
            &Delivery::new("msg_big", awkward_body(LIMIT + 1)),
            100,
        )
        .await;
        assert_eq!((reply.status, reply.code()), (413, "body_too_large"));
        let reply = post_delivery(addr, &Delivery::new("msg_x", "{}").with_body("{ }")).await;
        assert_eq!((reply.status, reply.code()), (401, "signature_mismatch"));

        // Other routes are not the layer's business.
        let get = raw(
            addr,
            format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!((get.status, get.code()), (200, "ok"));
        // `route_layer` runs for every method of a matched path: a GET to the webhook route
        // is not a delivery, and this scheme has no GET handshake.
        let wrong_method = raw(
            addr,
            format!("GET /webhooks HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_eq!(
            (wrong_method.status, wrong_method.code()),
            (405, "method_not_allowed")
        );
    }
}

/// Azure Event Grid's token, as the operator puts it in the webhook URL registered in Azure.
const EVENT_GRID_TOKEN: &str = "eg-7f3c9a1b2d4e6f80_S3cret";

/// The `SubscriptionValidationEvent` of learn.microsoft.com/azure/event-grid
/// (end-point-validation-event-grid-events-schema).
const EVENT_GRID_VALIDATION: &str = r#"[{"id":"2d1781af-3a4c-4d7c-bd0c-e34b19da4e66","topic":"/subscriptions/xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx","subject":"","data":{"validationCode":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6","validationUrl":"https://rp-eastus2.eventgrid.azure.net:553/eventsubscriptions/myeventsub/validate?id=0000000000-0000-0000-0000-00000000000000&t=2022-10-28T04:23:35.1981776Z&apiVersion=2018-05-01-preview&token=1A1A1A1A"},"eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","eventTime":"2022-10-28T04:23:35.1981776Z","metadataVersion":"1","dataVersion":"1"}]"#;

/// One request over raw TCP: `method target`, the headers, and the body with its length.
async fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    raw(addr, request.as_bytes()).await
}

/// Both Azure Event Grid handshakes through a real server: answered only with the token,
/// refused like a forged delivery without it, and never handed to the sink (Gate mode) or the
/// handler (verify-only mode); a notification with the token is an event.
async fn event_grid_handshakes(
    addr: SocketAddr,
    mode: Mode,
    events: &mut hookgate::sink::ChannelReceiver,
) {
    let with_token = format!("/webhooks?code={EVENT_GRID_TOKEN}");
    let validation = [
        ("Content-Type", "application/json"),
        ("aeg-event-type", "SubscriptionValidation"),
    ];
    let reply = send(
        addr,
        "POST",
        &with_token,
        &validation,
        EVENT_GRID_VALIDATION,
    )
    .await;
    assert_eq!(reply.status, 200, "{mode:?}: {}", reply.code());
    let answer: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(
        answer,
        serde_json::json!({"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"})
    );
    assert!(
        reply
            .head
            .to_ascii_lowercase()
            .contains("content-type: application/json")
    );
    for (target, status, code) in [
        ("/webhooks", 400, "missing_header"),
        ("/webhooks?code=guess", 401, "token_mismatch"),
    ] {
        let forged = send(addr, "POST", target, &validation, EVENT_GRID_VALIDATION).await;
        assert_eq!(
            (forged.status, forged.code()),
            (status, code),
            "{mode:?} {target}"
        );
    }

    let origin = [("WebHook-Request-Origin", "eventgrid.azure.net")];
    let reply = send(addr, "OPTIONS", &with_token, &origin, "").await;
    assert_eq!(reply.status, 200, "{mode:?}: {}", reply.code());
    let head = reply.head.to_ascii_lowercase();
    assert!(
        head.contains("webhook-allowed-origin: eventgrid.azure.net"),
        "{head}"
    );
    assert!(head.contains("webhook-allowed-rate: *"), "{head}");
    assert!(reply.body.is_empty());
    let bearer = format!("Bearer {EVENT_GRID_TOKEN}");
    let reply = send(
        addr,
        "OPTIONS",
        "/webhooks",
        &[origin[0], ("Authorization", bearer.as_str())],
        "",
    )
    .await;
    assert_eq!(
        reply.status, 200,
        "{mode:?}: the token in a Bearer delivery property"
    );
    for (target, status, code) in [
        ("/webhooks", 400, "missing_header"),
        ("/webhooks?code=guess", 401, "token_mismatch"),
    ] {
        let forged = send(addr, "OPTIONS", target, &origin, "").await;
        assert_eq!(
            (forged.status, forged.code()),
            (status, code),
            "{mode:?} {target}"
        );
        assert!(
            !forged
                .head
                .to_ascii_lowercase()
                .contains("webhook-allowed-origin")
        );
    }
    let no_origin = send(addr, "OPTIONS", &with_token, &[], "").await;
    assert_eq!(
        (no_origin.status, no_origin.code()),
        (403, "handshake_refused")
    );
    assert!(
        events.try_recv().is_none(),
        "{mode:?}: a handshake reached the sink"
    );

    // A notification with the token is an event: the query reaches the gate on a POST too.
    let notification = [
        ("Content-Type", "application/json"),
        ("aeg-event-type", "Notification"),
    ];
    let body = r#"[{"id":"831e1650-001e-001b-66ab-eeb76e069631","eventType":"Microsoft.Storage.BlobCreated","data":{}}]"#;
    let reply = send(addr, "POST", &with_token, &notification, body).await;
    match mode {
        Mode::Receive => {
            assert_eq!((reply.status, reply.code()), (200, "accepted"));
            let event = events.try_recv().expect("the notification was stored");
            assert_eq!(event.body().as_ref(), body.as_bytes());
            assert!(!format!("{event:?}").contains(EVENT_GRID_TOKEN));
        }
        _ => assert_eq!((reply.status, reply.body.as_ref()), (299, body.as_bytes())),
    }
}

fn event_grid_gate() -> (Gate, hookgate::sink::ChannelReceiver) {
    let verifier = hookgate::Verifier::builder(hookgate::SchemeId::AzureEventGrid)
        .secret(EVENT_GRID_TOKEN)
        .build()
        .unwrap();
    let (sink, events) = ChannelSink::bounded(4);
    (Gate::builder(verifier).sink(sink).build().unwrap(), events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_event_grid_handshakes_over_plain_hyper_and_axum() {
    for mode in MODES {
        let (gate, mut events) = event_grid_gate();
        let addr = serve_tower(GateLayer::with_mode(gate, mode)).await;
        event_grid_handshakes(addr, mode, &mut events).await;
        let (gate, mut events) = event_grid_gate();
        let addr = serve_axum(axum_app(GateLayer::with_mode(gate, mode))).await;
        event_grid_handshakes(addr, mode, &mut events).await;
    }
}
