//! The tower middleware ([`hookgate_tower::GateService`]) driven with arbitrary requests
//! through `tower::ServiceExt::oneshot`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hookgate::{ChannelSink, Gate, MemoryDedupStore, VerifiedEvent};
use hookgate_tower::{GateLayer, Mode, RawBody};
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt as _, Full};
use tower::{Layer as _, ServiceExt as _, service_fn};

use crate::Verdict;
use crate::input::{fields, http_request};
use crate::keys::{SECRET_MARKER, verifier};
use crate::targets::{GATE_BODY_LIMIT, block_on, pick_scheme};

/// The public origin the layer is configured with; the URL-signing schemes verify it
/// followed by the request's path and query.
pub const ORIGIN: &str = "https://hooks.example.com";

/// Status the inner service (verify-only mode) answers with, to tell it from the
/// middleware's own answers.
const INNER_STATUS: u16 = 299;

/// The tower middleware with an arbitrary request, in either mode, with the body arriving
/// whole or in chunks without a length.
///
/// Format: `scheme [receive|verify] [chunk size]`, then the request line
/// (`POST /path?query`), `Name: value` header lines, an empty line and the body.
pub fn tower_service(data: &[u8]) -> Vec<Verdict> {
    let [config, request_line, rest] = {
        let f = fields(data, 3);
        [0, 1, 2].map(|i| f.get(i).copied().unwrap_or_default())
    };
    let config = String::from_utf8_lossy(config);
    let mut words = config.split(' ');
    let scheme = pick_scheme(words.next().unwrap_or_default().as_bytes());
    let mode = match words.next() {
        Some("verify") => Mode::VerifyOnly,
        _ => Mode::Receive,
    };
    let chunk = words
        .next()
        .and_then(|w| w.parse::<usize>().ok())
        .filter(|n| *n > 0);
    let (headers, body) = http_request(rest);
    let body = Bytes::copy_from_slice(body);

    let Some(verifier) = verifier(scheme) else {
        return Vec::new();
    };
    let (sink, mut events) = ChannelSink::bounded(4);
    let builder = Gate::builder(verifier)
        .dedup(MemoryDedupStore::new())
        .max_body_bytes(GATE_BODY_LIMIT);
    let gate = match mode {
        Mode::Receive => builder.sink(sink).build(),
        _ => builder.build_verify_only(),
    };
    let Ok(layer) = gate.map(|gate| GateLayer::with_mode(gate, mode)) else {
        return Vec::new();
    };
    let Ok(layer) = layer.public_origin(ORIGIN) else {
        return Vec::new();
    };

    let send = |body: Bytes| -> Option<(StatusCode, Bytes, bool, bool)> {
        let mut builder = Request::builder();
        let line = String::from_utf8_lossy(request_line);
        let mut parts = line.split(' ');
        if let Some(method) = parts.next().filter(|m| !m.is_empty()) {
            builder = builder.method(method);
        }
        if let Some(uri) = parts.next() {
            builder = builder.uri(uri);
        }
        if let Some(map) = builder.headers_mut() {
            map.extend(headers.clone());
        }
        let service = layer.layer(service_fn(inner));
        block_on(async move {
            let response = match chunk {
                Some(size) => {
                    let request = builder.body(Chunked::new(&body, size)).ok()?;
                    service.oneshot(request).await
                }
                None => {
                    let request = builder.body(Full::new(body)).ok()?;
                    service.oneshot(request).await
                }
            };
            let Ok(response) = response;
            let status = response.status();
            let passed_on = response
                .headers()
                .get("x-event-body-matches")
                .is_some_and(|v| v == "true");
            let handshake = response
                .extensions()
                .get::<hookgate::Outcome>()
                .is_some_and(|outcome| outcome.handshake().is_some());
            let body = response.into_body().collect().await.ok()?.to_bytes();
            Some((status, body, passed_on, handshake))
        })
        .flatten()
    };

    let Some((status, answer, passed_on, handshake)) = send(body.clone()) else {
        // An invalid method or URI never reaches a service.
        return Vec::new();
    };
    check_answer(status, &answer, passed_on, handshake);
    let enqueued = events.try_recv();
    let code = String::from_utf8_lossy(&answer).into_owned();
    match (mode, status.as_u16(), code.as_str()) {
        (Mode::Receive, 200, "accepted") => {
            assert!(
                enqueued.is_some(),
                "{scheme}: accepted but nothing enqueued"
            );
            let again = send(body).map(|(status, answer, ..)| (status.as_u16(), answer));
            assert_eq!(
                again,
                Some((200, Bytes::from_static(b"duplicate"))),
                "{scheme}: a delivery sent twice"
            );
        }
        _ => assert!(enqueued.is_none(), "{scheme}: enqueued on {status} {code}"),
    }
    let ok = (status.is_success() && status.as_u16() != INNER_STATUS) || passed_on;
    vec![Verdict {
        label: format!("{scheme} {}", mode_name(mode)),
        result: if ok { Ok(code) } else { Err(code_of(status)) },
    }]
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::VerifyOnly => "verify",
        _ => "receive",
    }
}

fn code_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "400",
        401 => "401",
        413 => "413",
        503 => "503",
        _ => "other",
    }
}

/// Every answer is in the contract table, and only the inner service answers `299`, with
/// the verified raw body echoed. A provider handshake's 200 carries the provider's answer.
fn check_answer(status: StatusCode, body: &[u8], passed_on: bool, handshake: bool) {
    let code = String::from_utf8_lossy(body);
    match status.as_u16() {
        INNER_STATUS => assert!(passed_on, "the event body differs from the raw body"),
        200 if handshake => {}
        200 => assert!(matches!(&*code, "accepted" | "duplicate"), "200 {code}"),
        403 => assert_eq!(code, "handshake_refused"),
        405 => assert_eq!(code, "method_not_allowed"),
        400 | 401 => assert!(
            hookgate::Reason::from_code(&code).is_some() || matches!(&*code, "body_unreadable"),
            "{status} {code}"
        ),
        413 => assert_eq!(code, "body_too_large"),
        503 => assert!(OUTCOMES_503.contains(&&*code), "503 {code}"),
        other => panic_status(other, &code),
    }
    assert!(!code.contains(SECRET_MARKER));
}

const OUTCOMES_503: [&str; 5] = [
    "in_flight",
    "sink_full",
    "sink_unavailable",
    "dedup_unavailable",
    "timeout",
];

#[allow(
    clippy::panic,
    reason = "a fuzz harness reports a finding by panicking"
)]
fn panic_status(status: u16, code: &str) -> ! {
    panic!("status {status} ({code}) is not in the contract")
}

/// The inner service of verify-only mode: answers `299` with the raw body, and says whether
/// the verified event carries the same bytes.
async fn inner(request: Request<RawBody>) -> Result<Response<Full<Bytes>>, Infallible> {
    let same = request
        .extensions()
        .get::<VerifiedEvent>()
        .is_some_and(|e| e.body().as_ref() == request.body().as_bytes());
    let mut response = Response::new(Full::new(request.into_body().into_bytes()));
    *response.status_mut() = StatusCode::from_u16(INNER_STATUS).unwrap_or(StatusCode::OK);
    if let Ok(value) = http::HeaderValue::from_str(&same.to_string()) {
        response.headers_mut().insert("x-event-body-matches", value);
    }
    Ok(response)
}

/// A body in chunks of `size` bytes, without a length, each chunk ready on the first poll.
struct Chunked(VecDeque<Bytes>);

impl Chunked {
    fn new(body: &Bytes, size: usize) -> Self {
        Chunked(body.chunks(size).map(Bytes::copy_from_slice).collect())
    }
}

impl Body for Chunked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|chunk| Ok(Frame::data(chunk))))
    }
}
