//! The table: every case, with what every adapter must answer.

use bytes::Bytes;
use hookgate::{FixedClock, Reason, SchemeId, SignRequest, Signer, Verifier};

use super::vectors::{self, Vector};
use super::{Case, Framing, KeySpec, Mode, Req, Script, Setup, SinkKind, StoreKind};

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// A key the receiver does not hold.
pub const OTHER_SECRET: &str = "whsec_dGhpcyBpcyBhbm90aGVyIGtleSBlbnRpcmVseQ==";
/// The rotated-in key.
pub const NEW_SECRET: &str = "whsec_bmV3IGtleSBhZnRlciB0aGUgcm90YXRpb24h";
pub const NOW: u64 = 1_700_000_000;
/// A small limit, so that bodies around it fit in a socket buffer.
pub const LIMIT: usize = 1024;
pub const BODY: &str = r#"{"type":"invoice.paid","data":{"id":"in_1"}}"#;

fn ok(code: &str) -> (u16, String) {
    (200, code.to_owned())
}

fn answer(status: u16, code: &str) -> (u16, String) {
    (status, code.to_owned())
}

/// The Standard Webhooks set-up most cases use.
pub fn standard() -> Setup {
    Setup {
        verify_token: None,
        scheme: SchemeId::StandardWebhooksV1,
        keys: vec![KeySpec {
            secret: SECRET.to_owned(),
            not_after: None,
        }],
        now: NOW,
        tolerance: None,
        url_per_request: false,
        limit: LIMIT,
        sink: SinkKind::Channel(64),
        store: StoreKind::Memory,
        success_status: 200,
    }
}

/// A delivery signed with `secret` at `timestamp`.
pub fn signed_with(secret: &str, id: &str, timestamp: u64, body: impl Into<Bytes>) -> Req {
    let delivery = Signer::new(SchemeId::StandardWebhooksV1, secret)
        .unwrap()
        .sign(
            &SignRequest::new(body)
                .id(id)
                .timestamp(i64::try_from(timestamp).unwrap()),
        )
        .unwrap();
    Req::new(delivery.headers, delivery.body)
}

/// A genuine delivery.
pub fn signed(id: &str) -> Req {
    signed_with(SECRET, id, NOW, BODY)
}

/// A genuine delivery whose body is exactly `len` bytes of JSON.
pub fn sized(id: &str, len: usize) -> Req {
    let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(len - 10));
    assert_eq!(body.len(), len);
    signed_with(SECRET, id, NOW, body)
}

fn key(id: &str) -> String {
    format!("standard-webhooks-v1:id:{id}")
}

fn case(
    name: &str,
    setup: Setup,
    script: Script,
    expect: Vec<(u16, String)>,
    events: usize,
) -> Case {
    Case {
        handshakes: 0,
        name: name.to_owned(),
        setup,
        mode: Mode::Receive,
        origin: None,
        script,
        expect,
        events,
    }
}

fn one(name: &str, req: Req, expect: (u16, String), events: usize) -> Case {
    case(
        name,
        standard(),
        Script::Sequential(vec![req]),
        vec![expect],
        events,
    )
}

/// Each row of the Gate contract, in gate mode.
pub fn contract() -> Vec<Case> {
    let good = signed("msg_rows");
    vec![
        one(
            "verified, new: accepted",
            signed("msg_new"),
            ok("accepted"),
            1,
        ),
        case(
            "verified, already handed off: duplicate",
            standard(),
            Script::Sequential(vec![
                signed("msg_dup"),
                signed("msg_dup"),
                signed("msg_dup"),
            ]),
            vec![ok("accepted"), ok("duplicate"), ok("duplicate")],
            1,
        ),
        case(
            "the sender's retry (same id, new timestamp and signature) is a duplicate",
            standard(),
            Script::Sequential(vec![
                signed_with(SECRET, "msg_retry", NOW - 60, BODY),
                signed_with(SECRET, "msg_retry", NOW, BODY),
            ]),
            vec![ok("accepted"), ok("duplicate")],
            1,
        ),
        case(
            "different deliveries are each accepted",
            standard(),
            Script::Sequential(vec![signed("msg_a"), signed("msg_b"), signed("msg_c")]),
            vec![ok("accepted"), ok("accepted"), ok("accepted")],
            3,
        ),
        one(
            "signature header missing: 400",
            good.clone().without("webhook-signature"),
            answer(400, "missing_header"),
            0,
        ),
        one(
            "id header missing: 400",
            good.clone().without("webhook-id"),
            answer(400, "missing_header"),
            0,
        ),
        one(
            "timestamp header missing: 400",
            good.clone().without("webhook-timestamp"),
            answer(400, "missing_header"),
            0,
        ),
        one(
            "no headers at all: 400",
            Req::new(Vec::new(), BODY),
            answer(400, "missing_header"),
            0,
        ),
        one(
            "id header repeated with another value: 400",
            good.clone().adding("webhook-id", "msg_other"),
            answer(400, "malformed_header"),
            0,
        ),
        one(
            "timestamp not a number: 400",
            good.clone().replacing("webhook-timestamp", "yesterday"),
            answer(400, "invalid_timestamp"),
            0,
        ),
        one(
            "signature header with no known signature in it: 401",
            good.clone().replacing("webhook-signature", "garbage"),
            answer(401, "signature_mismatch"),
            0,
        ),
        one(
            "body changed: 401",
            good.clone().body(r#"{"type":"invoice.refunded"}"#),
            answer(401, "signature_mismatch"),
            0,
        ),
        one(
            "body with a trailing newline the sender never signed: 401",
            good.clone().body(format!("{BODY}\n")),
            answer(401, "signature_mismatch"),
            0,
        ),
        one(
            "signed with a key we do not hold: 401",
            signed_with(OTHER_SECRET, "msg_rows", NOW, BODY),
            answer(401, "signature_mismatch"),
            0,
        ),
        one(
            "stale timestamp: 401",
            signed_with(SECRET, "msg_rows", NOW - 3600, BODY),
            answer(401, "timestamp_too_old"),
            0,
        ),
        one(
            "timestamp in the future: 401",
            signed_with(SECRET, "msg_rows", NOW + 3600, BODY),
            answer(401, "timestamp_too_new"),
            0,
        ),
        case(
            "Stripe: only a test-mode v0 signature: 401",
            Setup {
                verify_token: None,
                scheme: SchemeId::Stripe,
                keys: vec![KeySpec {
                    secret: "whsec_stripe_test".to_owned(),
                    not_after: None,
                }],
                ..standard()
            },
            Script::Sequential(vec![Req::new(
                vec![(
                    "Stripe-Signature".to_owned(),
                    format!(
                        "t={NOW},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"
                    ),
                )],
                BODY,
            )]),
            vec![answer(401, "no_supported_signature")],
            0,
        ),
        case(
            "a forgery stores nothing: the genuine delivery is still new",
            standard(),
            Script::Sequential(vec![good.clone().body("{}"), good.clone(), good.clone()]),
            vec![
                answer(401, "signature_mismatch"),
                ok("accepted"),
                ok("duplicate"),
            ],
            1,
        ),
        case(
            "sink at capacity: 503 sink_full; the claim is released, so the retry is sink_full again, not in_flight",
            Setup {
                verify_token: None,
                sink: SinkKind::Channel(1),
                ..standard()
            },
            Script::Sequential(vec![
                signed("msg_fill"),
                signed("msg_full"),
                signed("msg_full"),
            ]),
            vec![
                ok("accepted"),
                answer(503, "sink_full"),
                answer(503, "sink_full"),
            ],
            1,
        ),
        one_with(
            "sink down: 503 sink_unavailable",
            Setup {
                verify_token: None,
                sink: SinkKind::Closed,
                ..standard()
            },
            vec![signed("msg_down"), signed("msg_down")],
            vec![
                answer(503, "sink_unavailable"),
                answer(503, "sink_unavailable"),
            ],
            0,
        ),
        one_with(
            "sink hangs past the deadline: 503 timeout",
            Setup {
                verify_token: None,
                sink: SinkKind::Hanging,
                ..standard()
            },
            vec![signed("msg_slow")],
            vec![answer(503, "timeout")],
            0,
        ),
        one_with(
            "dedup store down: fails closed with 503 dedup_unavailable",
            Setup {
                verify_token: None,
                store: StoreKind::Down,
                ..standard()
            },
            vec![signed("msg_nostore"), signed("msg_nostore")],
            vec![
                answer(503, "dedup_unavailable"),
                answer(503, "dedup_unavailable"),
            ],
            0,
        ),
        one_with(
            "another copy in flight (claimed elsewhere): 503 in_flight",
            Setup {
                verify_token: None,
                store: StoreKind::Claimed(key("msg_claimed")),
                ..standard()
            },
            vec![signed("msg_claimed"), signed("msg_other_one")],
            vec![answer(503, "in_flight"), ok("accepted")],
            1,
        ),
        one_with(
            "already committed by another replica: duplicate, nothing enqueued",
            Setup {
                verify_token: None,
                store: StoreKind::Committed(key("msg_committed")),
                ..standard()
            },
            vec![signed("msg_committed")],
            vec![ok("duplicate")],
            0,
        ),
        one_with(
            "configured success status 202",
            Setup {
                verify_token: None,
                success_status: 202,
                ..standard()
            },
            vec![
                signed("msg_202"),
                signed("msg_202"),
                good.clone().body("{}"),
            ],
            vec![
                answer(202, "accepted"),
                answer(202, "duplicate"),
                answer(401, "signature_mismatch"),
            ],
            1,
        ),
    ]
}

fn one_with(
    name: &str,
    setup: Setup,
    reqs: Vec<Req>,
    expect: Vec<(u16, String)>,
    events: usize,
) -> Case {
    case(name, setup, Script::Sequential(reqs), expect, events)
}

/// Bodies at and over the limit, with a length, chunked, and announced but never sent.
pub fn limits() -> Vec<Case> {
    let at = || sized("msg_at_limit", LIMIT);
    let over = || sized("msg_over_limit", LIMIT + 1);
    let big = || sized("msg_big", 64 * 1024);
    vec![
        one(
            "body exactly at the limit: accepted",
            at(),
            ok("accepted"),
            1,
        ),
        one(
            "body one byte over the limit (Content-Length): 413",
            over(),
            answer(413, "body_too_large"),
            0,
        ),
        one(
            "body at the limit, chunked: accepted",
            at().framing(Framing::Chunked(100)),
            ok("accepted"),
            1,
        ),
        one(
            "body one byte over the limit, chunked: 413",
            over().framing(Framing::Chunked(100)),
            answer(413, "body_too_large"),
            0,
        ),
        one(
            "body in one-byte chunks: reassembled and accepted",
            signed("msg_tiny_chunks").framing(Framing::Chunked(1)),
            ok("accepted"),
            1,
        ),
        one(
            "body in a single chunk: accepted",
            signed("msg_one_chunk").framing(Framing::Chunked(1 << 20)),
            ok("accepted"),
            1,
        ),
        one(
            "64 KiB body (Content-Length): 413",
            big(),
            answer(413, "body_too_large"),
            0,
        ),
        one(
            "64 KiB body, chunked: 413 once the limit is passed",
            big().framing(Framing::Chunked(4096)),
            answer(413, "body_too_large"),
            0,
        ),
        one(
            "1 GB announced, never sent: 413 before reading",
            signed("msg_announced").framing(Framing::DeclaredOnly(1 << 30)),
            answer(413, "body_too_large"),
            0,
        ),
        one(
            "limit + 1 announced, never sent: 413 before reading",
            signed("msg_announced").framing(Framing::DeclaredOnly(LIMIT as u64 + 1)),
            answer(413, "body_too_large"),
            0,
        ),
        one(
            "empty body, signed: accepted",
            signed_with(SECRET, "msg_empty", NOW, ""),
            ok("accepted"),
            1,
        ),
        case(
            "an oversized copy stores nothing: the genuine one is still new",
            standard(),
            Script::Sequential(vec![
                signed("msg_then").body(vec![b' '; LIMIT + 1]),
                signed("msg_then").framing(Framing::Chunked(7)),
                signed("msg_then"),
            ]),
            vec![
                answer(413, "body_too_large"),
                ok("accepted"),
                ok("duplicate"),
            ],
            1,
        ),
    ]
}

/// Concurrent deliveries: copies in flight, and many different deliveries at once.
pub fn concurrency() -> Vec<Case> {
    let copies = 8;
    let mut expect = vec![ok("accepted")];
    expect.extend((0..copies).map(|_| answer(503, "in_flight")));
    expect.push(ok("duplicate"));
    let distinct: Vec<Req> = (0..16)
        .map(|i| signed(&format!("msg_parallel_{i}")))
        .collect();
    vec![
        case(
            "copies arriving while the first is in the sink: 503 in_flight, never 2xx before it is durable",
            Setup {
                verify_token: None,
                sink: SinkKind::Held,
                ..standard()
            },
            Script::Held {
                first: signed("msg_concurrent"),
                copies: (0..copies).map(|_| signed("msg_concurrent")).collect(),
                after: vec![signed("msg_concurrent")],
            },
            expect,
            1,
        ),
        case(
            "a chunked copy in flight is answered like any other",
            Setup {
                verify_token: None,
                sink: SinkKind::Held,
                ..standard()
            },
            Script::Held {
                first: signed("msg_mixed").framing(Framing::Chunked(5)),
                copies: vec![
                    signed("msg_mixed"),
                    signed("msg_mixed").framing(Framing::Chunked(3)),
                ],
                after: vec![signed("msg_mixed").framing(Framing::Chunked(11))],
            },
            vec![
                ok("accepted"),
                answer(503, "in_flight"),
                answer(503, "in_flight"),
                ok("duplicate"),
            ],
            1,
        ),
        case(
            "16 different deliveries at once: all accepted",
            standard(),
            Script::Concurrent(distinct),
            (0..16).map(|_| ok("accepted")).collect(),
            16,
        ),
    ]
}

/// Key rotation: old and new keys overlap, then the old one expires.
pub fn rotation() -> Vec<Case> {
    let rotating = |old_not_after: u64| Setup {
        verify_token: None,
        keys: vec![
            KeySpec {
                secret: SECRET.to_owned(),
                not_after: Some(old_not_after),
            },
            KeySpec {
                secret: NEW_SECRET.to_owned(),
                not_after: None,
            },
        ],
        ..standard()
    };
    vec![
        one_with(
            "during the overlap both keys verify",
            rotating(NOW + 3600),
            vec![
                signed_with(SECRET, "msg_old_key", NOW, BODY),
                signed_with(NEW_SECRET, "msg_new_key", NOW, BODY),
            ],
            vec![ok("accepted"), ok("accepted")],
            2,
        ),
        one_with(
            "the same delivery re-signed with the new key is a duplicate",
            rotating(NOW + 3600),
            vec![
                signed_with(SECRET, "msg_resigned", NOW, BODY),
                signed_with(NEW_SECRET, "msg_resigned", NOW, BODY),
            ],
            vec![ok("accepted"), ok("duplicate")],
            1,
        ),
        one_with(
            "after the overlap the old key no longer verifies",
            rotating(NOW - 1),
            vec![
                signed_with(SECRET, "msg_expired_key", NOW, BODY),
                signed_with(NEW_SECRET, "msg_expired_key", NOW, BODY),
            ],
            vec![answer(401, "signature_mismatch"), ok("accepted")],
            1,
        ),
        one_with(
            "a key we never held, during a rotation",
            rotating(NOW + 3600),
            vec![signed_with(OTHER_SECRET, "msg_stranger", NOW, BODY)],
            vec![answer(401, "signature_mismatch")],
            0,
        ),
    ]
}

/// Verify-only mode: the handler gets the event and the raw body; everything else is
/// answered by the middleware.
pub fn verify_only() -> Vec<Case> {
    let verify_only = |name: &str, setup: Setup, reqs: Vec<Req>, expect, events| Case {
        mode: Mode::VerifyOnly,
        ..one_with(name, setup, reqs, expect, events)
    };
    let no_store = || Setup {
        verify_token: None,
        store: StoreKind::Absent,
        ..standard()
    };
    vec![
        verify_only(
            "verified: the handler gets the event and the raw body",
            no_store(),
            vec![signed("msg_vo")],
            vec![ok("verified")],
            1,
        ),
        verify_only(
            "without a dedup store every copy reaches the handler",
            no_store(),
            vec![signed("msg_vo_twice"), signed("msg_vo_twice")],
            vec![ok("verified"), ok("verified")],
            2,
        ),
        verify_only(
            "a chunked delivery reaches the handler whole",
            no_store(),
            vec![sized("msg_vo_chunked", LIMIT).framing(Framing::Chunked(33))],
            vec![ok("verified")],
            1,
        ),
        verify_only(
            "a forgery never reaches the handler",
            no_store(),
            vec![
                signed("msg_vo").body("{}"),
                signed("msg_vo").without("webhook-id"),
            ],
            vec![
                answer(401, "signature_mismatch"),
                answer(400, "missing_header"),
            ],
            0,
        ),
        verify_only(
            "over the limit, chunked: 413 and no handler",
            no_store(),
            vec![
                sized("msg_vo_big", LIMIT + 1).framing(Framing::Chunked(64)),
                sized("msg_vo_big", LIMIT + 1),
            ],
            vec![answer(413, "body_too_large"), answer(413, "body_too_large")],
            0,
        ),
        verify_only(
            "already committed (shared store): duplicate, no handler",
            Setup {
                verify_token: None,
                store: StoreKind::Committed(key("msg_vo_done")),
                ..standard()
            },
            vec![signed("msg_vo_done"), signed("msg_vo_fresh")],
            vec![ok("duplicate"), ok("verified")],
            1,
        ),
        verify_only(
            "claimed elsewhere: 503 in_flight, no handler",
            Setup {
                verify_token: None,
                store: StoreKind::Claimed(key("msg_vo_claimed")),
                ..standard()
            },
            vec![signed("msg_vo_claimed")],
            vec![answer(503, "in_flight")],
            0,
        ),
        verify_only(
            "dedup store down: 503, no handler",
            Setup {
                verify_token: None,
                store: StoreKind::Down,
                ..standard()
            },
            vec![signed("msg_vo_nostore")],
            vec![answer(503, "dedup_unavailable")],
            0,
        ),
        verify_only(
            "configured success status 202 is the handler's too",
            Setup {
                verify_token: None,
                success_status: 202,
                ..no_store()
            },
            vec![signed("msg_vo_202")],
            vec![answer(202, "verified")],
            1,
        ),
    ]
}

/// Every provider vector, in gate mode (valid ones twice: accepted, then duplicate), and
/// the valid ones in verify-only mode too.
pub fn provider_vectors() -> Vec<Case> {
    let mut cases = Vec::new();
    for vector in vectors::load() {
        // A signed GET (hubspot-v3-009: a POST's signature sent as GET) is checked by the
        // core vectors only: the adapters never take a GET as a delivery (it is a GET
        // handshake or 405), so over HTTP it cannot reach the signature check.
        if vector.method.as_deref() == Some("GET") {
            continue;
        }
        // A URL with a raw space (contentful-016, -021, as the toolkit was called with it)
        // is no HTTP request target; contentful-022 is the same case as it arrives.
        if vector.url.as_deref().is_some_and(|url| url.contains(' ')) {
            continue;
        }
        // Credentials in the signed URL (twilio-sdk-001…003): no adapter takes a public
        // origin with a user name in it, so these are core-only too.
        if vector
            .url
            .as_deref()
            .is_some_and(|url| split_url(url).0.contains('@'))
        {
            continue;
        }
        let expected = vector
            .strict_expect
            .clone()
            .unwrap_or_else(|| vector.expect.clone());
        let req = vector_request(&vector);
        let setup = vector_setup(&vector);
        let origin = vector.url.as_deref().map(|url| split_url(url).0.to_owned());
        if vector.gate_expect.as_deref() == Some("handshake") {
            // An unsigned handshake (WooCommerce's ping): the verifier rejects it, the Gate
            // answers it (empty body) and stores nothing.
            for mode in [Mode::Receive, Mode::VerifyOnly] {
                cases.push(Case {
                    handshakes: 1,
                    name: format!(
                        "vector {} [{}], an unsigned handshake",
                        vector.id, vector.case
                    ),
                    setup: setup.clone(),
                    mode,
                    origin: origin.clone(),
                    script: Script::Sequential(vec![req.clone()]),
                    expect: vec![ok("")],
                    events: 0,
                });
            }
        } else if let (true, Some(answer)) = (expected == "valid", handshake_answer(&vector)) {
            // A provider's URL handshake (Discord's PING): answered every time, never stored.
            cases.push(Case {
                handshakes: 2,
                name: format!("vector {} [{}], a handshake", vector.id, vector.case),
                setup: setup.clone(),
                mode: Mode::Receive,
                origin: origin.clone(),
                script: Script::Sequential(vec![req.clone(), req.clone()]),
                expect: vec![ok(&answer), ok(&answer)],
                events: 0,
            });
            cases.push(Case {
                handshakes: 1,
                name: format!(
                    "vector {} [{}], a handshake, verify-only",
                    vector.id, vector.case
                ),
                setup: Setup {
                    store: StoreKind::Absent,
                    ..setup
                },
                mode: Mode::VerifyOnly,
                origin,
                script: Script::Sequential(vec![req]),
                expect: vec![ok(&answer)],
                events: 0,
            });
        } else if expected == "valid" {
            cases.push(Case {
                handshakes: 0,
                name: format!("vector {} [{}]", vector.id, vector.case),
                setup: setup.clone(),
                mode: Mode::Receive,
                origin: origin.clone(),
                script: Script::Sequential(vec![req.clone(), req.clone()]),
                expect: vec![ok("accepted"), ok("duplicate")],
                events: 1,
            });
            cases.push(Case {
                handshakes: 0,
                name: format!("vector {} [{}], verify-only", vector.id, vector.case),
                setup: Setup {
                    verify_token: None,
                    store: StoreKind::Absent,
                    ..setup
                },
                mode: Mode::VerifyOnly,
                origin,
                script: Script::Sequential(vec![req]),
                expect: vec![ok("verified")],
                events: 1,
            });
        } else {
            let reason = Reason::from_code(&expected)
                .unwrap_or_else(|| panic!("{}: unknown code {expected}", vector.id));
            cases.push(Case {
                handshakes: 0,
                name: format!("vector {} [{}]", vector.id, vector.case),
                setup,
                mode: Mode::Receive,
                origin,
                script: Script::Sequential(vec![req]),
                expect: vec![(reason.status(), expected)],
                events: 0,
            });
        }
    }
    cases
}

/// The answer the core verifier gives when a valid vector is its scheme's URL handshake.
fn handshake_answer(vector: &Vector) -> Option<String> {
    let scheme: SchemeId = vector.scheme.parse().ok()?;
    scheme.handshake()?;
    let mut builder = Verifier::builder(scheme)
        .secret(vector.secret.as_str())
        .clock(FixedClock::from_unix(vector.now));
    if let Some(tolerance) = vector.tolerance_s {
        builder = builder.tolerance(std::time::Duration::from_secs(tolerance));
    }
    let verifier = builder.build_with_url_per_request().ok()?;
    let event = verifier
        .verify_at_url(
            &vector.header_pairs(),
            vector.body_bytes(),
            vector.url.as_deref(),
        )
        .ok()?;
    verifier
        .handshake(&event)
        .map(|reply| reply.body_text().to_owned())
}

fn vector_setup(vector: &Vector) -> Setup {
    Setup {
        verify_token: None,
        scheme: vector.scheme.parse().unwrap(),
        keys: vec![KeySpec {
            secret: vector.secret.clone(),
            not_after: None,
        }],
        now: vector.now,
        tolerance: vector.tolerance_s,
        // URL-signing schemes: the URL is the origin plus the request's path, per request.
        url_per_request: true,
        limit: 1 << 20,
        sink: SinkKind::Channel(16),
        store: StoreKind::Memory,
        success_status: 200,
    }
}

fn vector_request(vector: &Vector) -> Req {
    let headers = vector.header_pairs();
    let mut req = Req::new(headers, vector.body_bytes());
    // The method, where the scheme signs it (hubspot-v3, contentful).
    req.method = match vector.method.as_deref() {
        None | Some("POST") => "POST",
        Some("PUT") => "PUT",
        Some("PATCH") => "PATCH",
        Some(other) => panic!("{}: no conformance request for method {other}", vector.id),
    };
    match vector.url.as_deref() {
        Some(url) => req.path(split_url(url).1),
        None => req,
    }
}

/// `https://host[:port]/path?query` → (`https://host[:port]`, `/path?query`).
fn split_url(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").unwrap() + 3;
    match url[after_scheme..].find('/') {
        Some(slash) => url.split_at(after_scheme + slash),
        None => (url, "/"),
    }
}

/// A provider's delivery of `body`, signed for `scheme` with `secret` at `NOW`.
fn provider(scheme: SchemeId, secret: &str, body: &str) -> Req {
    let delivery = Signer::new(scheme, secret)
        .unwrap()
        .sign(
            &SignRequest::new(body.to_owned())
                .id("msg_handshake")
                .timestamp(i64::try_from(NOW).unwrap()),
        )
        .unwrap();
    Req::new(delivery.headers, delivery.body)
}

fn provider_setup(scheme: SchemeId, key: &str) -> Setup {
    Setup {
        scheme,
        keys: vec![KeySpec {
            secret: key.to_owned(),
            not_after: None,
        }],
        verify_token: Some(META_VERIFY_TOKEN.to_owned()),
        ..standard()
    }
}

pub const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
pub const SLACK_CHALLENGE: &str = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P";
pub const ZOOM_SECRET: &str = "zoom-secret-token";
/// `hex(HMAC-SHA256("zoom-secret-token", "qgg8vlvZRS6UYooatFL8Aw"))`, computed apart from
/// hookgate (Python's `hmac` module).
pub const ZOOM_ENCRYPTED: &str = "d9e0d764a78494688ba3f2d5c0ed4ca311394b4834d959759213424d2df961e3";
pub const TWITCH_SECRET: &str = "twitch-eventsub-secret";
pub const TWITCH_CHALLENGE: &str = "pogchamp-kappa-360noscope-vohiyo";
/// RFC 8032 test 1: the seed signs, the public key verifies.
pub const DISCORD_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
pub const DISCORD_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
pub const META_SECRET: &str = "meta-app-secret";
pub const META_VERIFY_TOKEN: &str = "meatyhamhock";

/// Provider URL handshakes, in both modes: the provider's answer, never an event; forged
/// ones rejected like forged deliveries; ordinary events of the same schemes still events.
/// Okta's auth header value and verification challenge (support.okta.com's example).
const OKTA_SECRET: &str = "my-shared-secret";
const OKTA_CHALLENGE: &str = "Me_rShK8JHsTnbyYrWXCEoMGbM_zsZ6k0hLPZ_Pg";

/// Asana's `X-Hook-Secret`, configured as the key (hookgate never learns one).
const ASANA_SECRET: &str = "b537207f20cbfa02357cf448134da559e8bd39d61597dcd5631b8012eae53e81";

/// Microsoft Graph's subscription clientState.
const GRAPH_CLIENT_STATE: &str = "SecretClientState-8f14e45f";
/// braintree_python's unit-test key pair, in hookgate's `public_key:private_key` format, and
/// the official challenge with its answer (tests/unit/test_webhooks.py).
const BRAINTREE_KEYS: &str = "integration_public_key:integration_private_key";
const BRAINTREE_CHALLENGE: &str = "20f9f8ed05f77439fe955c977e4c8a53";
const BRAINTREE_ANSWER: &str = "integration_public_key|d9b899556c966b3f06945ec21311865d35df3ce4";

/// Azure Event Grid's token, as the operator puts it in the webhook URL registered in Azure.
const EVENT_GRID_TOKEN: &str = "eg-7f3c9a1b2d4e6f80_S3cret";

/// Event Grid's `SubscriptionValidationEvent` POST (learn.microsoft.com/azure/event-grid,
/// end-point-validation-event-grid-events-schema) with `query` on the endpoint's URL.
fn event_grid_validation(query: &str) -> Req {
    let body = r#"[{"id":"2d1781af-3a4c-4d7c-bd0c-e34b19da4e66","topic":"/subscriptions/xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx","subject":"","data":{"validationCode":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6","validationUrl":"https://rp-eastus2.eventgrid.azure.net:553/eventsubscriptions/myeventsub/validate?id=0000000000-0000-0000-0000-00000000000000&t=2022-10-28T04:23:35.1981776Z&apiVersion=2018-05-01-preview&token=1A1A1A1A"},"eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","eventTime":"2022-10-28T04:23:35.1981776Z","metadataVersion":"1","dataVersion":"1"}]"#;
    let path = if query.is_empty() {
        "/webhooks".to_owned()
    } else {
        format!("/webhooks?{query}")
    };
    Req::new(
        vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            (
                "aeg-event-type".to_owned(),
                "SubscriptionValidation".to_owned(),
            ),
        ],
        body,
    )
    .path(path)
}

pub fn handshakes() -> Vec<Case> {
    let slack = |body: &str| provider(SchemeId::Slack, SLACK_SECRET, body);
    let slack_check = format!(
        r#"{{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"{SLACK_CHALLENGE}","type":"url_verification"}}"#
    );
    let zoom_check = r#"{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}"#;
    let twitch_check = format!(
        r#"{{"challenge":"{TWITCH_CHALLENGE}","subscription":{{"id":"f1c2a387-161a-49f9-a165-0f21d7a4e1c4","status":"webhook_callback_verification_pending","type":"channel.follow","version":"1"}}}}"#
    );
    let twitch = |body: &str, kind: &str| {
        provider(SchemeId::TwitchEventsub, TWITCH_SECRET, body)
            .replacing("Twitch-Eventsub-Message-Type", kind)
    };
    let discord = |body: &str| provider(SchemeId::Discord, DISCORD_SEED, body);
    let meta_get = |token: &str| {
        Req::get(&format!(
            "hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token={token}"
        ))
    };
    // name, scheme, key, request, answer, events, handshakes recorded
    type Row<'a> = (&'a str, SchemeId, &'a str, Req, (u16, String), usize, usize);
    let rows: Vec<Row<'_>> = vec![
        (
            "slack url_verification: the challenge",
            SchemeId::Slack,
            SLACK_SECRET,
            slack(&slack_check),
            ok(SLACK_CHALLENGE),
            0,
            1,
        ),
        (
            "slack url_verification signed with another secret: 401",
            SchemeId::Slack,
            SLACK_SECRET,
            provider(SchemeId::Slack, "not-the-signing-secret", &slack_check),
            answer(401, "signature_mismatch"),
            0,
            0,
        ),
        (
            "slack url_verification without a signature: 400",
            SchemeId::Slack,
            SLACK_SECRET,
            slack(&slack_check).without("X-Slack-Signature"),
            answer(400, "missing_header"),
            0,
            0,
        ),
        (
            "slack event_callback: an event",
            SchemeId::Slack,
            SLACK_SECRET,
            slack(r#"{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention"}}"#),
            ok("accepted"),
            1,
            0,
        ),
        (
            "zoom endpoint.url_validation: plainToken and encryptedToken",
            SchemeId::Zoom,
            ZOOM_SECRET,
            provider(SchemeId::Zoom, ZOOM_SECRET, zoom_check),
            ok(&format!(
                r#"{{"encryptedToken":"{ZOOM_ENCRYPTED}","plainToken":"qgg8vlvZRS6UYooatFL8Aw"}}"#
            )),
            0,
            1,
        ),
        (
            "zoom endpoint.url_validation signed with another secret: 401",
            SchemeId::Zoom,
            ZOOM_SECRET,
            provider(SchemeId::Zoom, "another-token", zoom_check),
            answer(401, "signature_mismatch"),
            0,
            0,
        ),
        (
            "twitch webhook_callback_verification: the raw challenge",
            SchemeId::TwitchEventsub,
            TWITCH_SECRET,
            twitch(&twitch_check, "webhook_callback_verification"),
            ok(TWITCH_CHALLENGE),
            0,
            1,
        ),
        (
            "twitch webhook_callback_verification signed with another secret: 401",
            SchemeId::TwitchEventsub,
            TWITCH_SECRET,
            provider(SchemeId::TwitchEventsub, "another-secret", &twitch_check).replacing(
                "Twitch-Eventsub-Message-Type",
                "webhook_callback_verification",
            ),
            answer(401, "signature_mismatch"),
            0,
            0,
        ),
        (
            "twitch revocation: an event",
            SchemeId::TwitchEventsub,
            TWITCH_SECRET,
            twitch(
                r#"{"subscription":{"id":"f1c2","status":"authorization_revoked","type":"channel.follow"}}"#,
                "revocation",
            ),
            ok("accepted"),
            1,
            0,
        ),
        (
            "discord PING: PONG",
            SchemeId::Discord,
            DISCORD_PUBLIC,
            discord(r#"{"id":"1","application_id":"2","type":1,"version":1}"#),
            ok(r#"{"type":1}"#),
            0,
            1,
        ),
        (
            "discord PING with a bad signature: 401",
            SchemeId::Discord,
            DISCORD_PUBLIC,
            discord(r#"{"id":"1","application_id":"2","type":1,"version":1}"#)
                .body(r#"{"id":"1","application_id":"2","type":1,"version":2}"#),
            answer(401, "signature_mismatch"),
            0,
            0,
        ),
        (
            "discord application command: an event",
            SchemeId::Discord,
            DISCORD_PUBLIC,
            discord(r#"{"id":"3","application_id":"2","type":2,"data":{"name":"hi"}}"#),
            ok("accepted"),
            1,
            0,
        ),
        (
            "meta GET subscribe with the verify token: the challenge",
            SchemeId::Meta,
            META_SECRET,
            meta_get(META_VERIFY_TOKEN),
            ok("1158201444"),
            0,
            1,
        ),
        (
            "meta GET subscribe with another verify token: 403",
            SchemeId::Meta,
            META_SECRET,
            meta_get("guessed"),
            answer(403, "handshake_refused"),
            0,
            0,
        ),
        (
            "meta GET without hub.mode: 403",
            SchemeId::Meta,
            META_SECRET,
            Req::get("hub.challenge=1&hub.verify_token=meatyhamhock"),
            answer(403, "handshake_refused"),
            0,
            0,
        ),
        (
            "meta signed POST: an event",
            SchemeId::Meta,
            META_SECRET,
            provider(
                SchemeId::Meta,
                META_SECRET,
                r#"{"object":"whatsapp_business_account","entry":[]}"#,
            ),
            ok("accepted"),
            1,
            0,
        ),
        (
            "dropbox GET challenge: echoed",
            SchemeId::Dropbox,
            "dropbox-app-secret",
            Req::get("challenge=%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
            ok("<script>alert(1)</script>"),
            0,
            1,
        ),
        (
            "dropbox GET without a challenge: 403",
            SchemeId::Dropbox,
            "dropbox-app-secret",
            Req::get("hub.challenge=1"),
            answer(403, "handshake_refused"),
            0,
            0,
        ),
        (
            "okta verification GET with the configured auth header: the challenge",
            SchemeId::Okta,
            OKTA_SECRET,
            Req::get("")
                .adding("Authorization", OKTA_SECRET)
                .adding("X-Okta-Verification-Challenge", OKTA_CHALLENGE),
            ok(&format!(r#"{{"verification":"{OKTA_CHALLENGE}"}}"#)),
            0,
            1,
        ),
        (
            "okta verification GET with another auth header: 401",
            SchemeId::Okta,
            OKTA_SECRET,
            Req::get("")
                .adding("Authorization", "not-the-secret")
                .adding("X-Okta-Verification-Challenge", OKTA_CHALLENGE),
            answer(401, "token_mismatch"),
            0,
            0,
        ),
        (
            "okta verification GET without the auth header: 400",
            SchemeId::Okta,
            OKTA_SECRET,
            Req::get("").adding("X-Okta-Verification-Challenge", OKTA_CHALLENGE),
            answer(400, "missing_header"),
            0,
            0,
        ),
        (
            "okta GET with the auth header but no challenge: 403",
            SchemeId::Okta,
            OKTA_SECRET,
            Req::get("").adding("Authorization", OKTA_SECRET),
            answer(403, "handshake_refused"),
            0,
            0,
        ),
        (
            "woocommerce ping (unsigned webhook_id=<digits>): 200, empty",
            SchemeId::Woocommerce,
            "woo-secret",
            Req::new(
                vec![(
                    "Content-Type".to_owned(),
                    "application/x-www-form-urlencoded".to_owned(),
                )],
                "webhook_id=12",
            ),
            ok(""),
            0,
            1,
        ),
        (
            "woocommerce unsigned POST that is not the ping: 400",
            SchemeId::Woocommerce,
            "woo-secret",
            Req::new(Vec::new(), "webhook_id=12&status=completed"),
            answer(400, "missing_header"),
            0,
            0,
        ),
        (
            "woocommerce signed delivery: an event",
            SchemeId::Woocommerce,
            "woo-secret",
            provider(SchemeId::Woocommerce, "woo-secret", r#"{"id":12}"#),
            ok("accepted"),
            1,
            0,
        ),
        (
            "asana X-Hook-Secret equal to the configured key: echoed",
            SchemeId::Asana,
            ASANA_SECRET,
            Req::new(
                vec![("X-Hook-Secret".to_owned(), ASANA_SECRET.to_owned())],
                "",
            ),
            ok(""),
            0,
            1,
        ),
        (
            "asana X-Hook-Secret of a stranger (registering a key): 400, not echoed",
            SchemeId::Asana,
            ASANA_SECRET,
            Req::new(
                vec![("X-Hook-Secret".to_owned(), "attacker-chosen".to_owned())],
                "",
            ),
            answer(400, "missing_header"),
            0,
            0,
        ),
        (
            "asana X-Hook-Secret with a body (an unsigned event): 400",
            SchemeId::Asana,
            ASANA_SECRET,
            Req::new(
                vec![("X-Hook-Secret".to_owned(), ASANA_SECRET.to_owned())],
                r#"{"events":[{"action":"changed"}]}"#,
            ),
            answer(400, "missing_header"),
            0,
            0,
        ),
        (
            "asana signed delivery: an event",
            SchemeId::Asana,
            ASANA_SECRET,
            provider(SchemeId::Asana, ASANA_SECRET, r#"{"events":[]}"#),
            ok("accepted"),
            1,
            0,
        ),
        (
            "microsoft-graph POST ?validationToken= with no body: the decoded token",
            SchemeId::MicrosoftGraph,
            GRAPH_CLIENT_STATE,
            Req::new(
                vec![(
                    "Content-Type".to_owned(),
                    "text/plain; charset=utf-8".to_owned(),
                )],
                "",
            )
            .path("/webhooks?validationToken=Validation%3A%20Testing%20%3Cb%3E"),
            ok("Validation: Testing <b>"),
            0,
            1,
        ),
        (
            "microsoft-graph POST ?validationToken= with a body: a delivery, 400",
            SchemeId::MicrosoftGraph,
            GRAPH_CLIENT_STATE,
            Req::new(Vec::new(), r#"{"value":[{"changeType":"created"}]}"#)
                .path("/webhooks?validationToken=abc"),
            answer(400, "missing_signature"),
            0,
            0,
        ),
        (
            "microsoft-graph notification with another clientState: 401",
            SchemeId::MicrosoftGraph,
            GRAPH_CLIENT_STATE,
            provider(
                SchemeId::MicrosoftGraph,
                "guessed-client-state",
                r#"{"value":[{"changeType":"created"}]}"#,
            ),
            answer(401, "token_mismatch"),
            0,
            0,
        ),
        (
            "microsoft-graph notification: an event",
            SchemeId::MicrosoftGraph,
            GRAPH_CLIENT_STATE,
            provider(
                SchemeId::MicrosoftGraph,
                GRAPH_CLIENT_STATE,
                r#"{"value":[{"changeType":"created"}]}"#,
            ),
            ok("accepted"),
            1,
            0,
        ),
        (
            "braintree GET ?bt_challenge=: public_key|HMAC",
            SchemeId::Braintree,
            BRAINTREE_KEYS,
            Req::get(&format!("bt_challenge={BRAINTREE_CHALLENGE}")),
            ok(BRAINTREE_ANSWER),
            0,
            1,
        ),
        (
            "braintree GET with a challenge that is not lowercase hex: 400",
            SchemeId::Braintree,
            BRAINTREE_KEYS,
            Req::get("bt_challenge=bad%20challenge"),
            answer(400, "malformed_header"),
            0,
            0,
        ),
        (
            "braintree GET without bt_challenge: 403",
            SchemeId::Braintree,
            BRAINTREE_KEYS,
            Req::get("challenge=20f9f8ed05f77439fe955c977e4c8a53"),
            answer(403, "handshake_refused"),
            0,
            0,
        ),
        (
            "braintree delivery signed with another private key: 401",
            SchemeId::Braintree,
            BRAINTREE_KEYS,
            provider(
                SchemeId::Braintree,
                "integration_public_key:another_private_key",
                "<notification><kind>check</kind></notification>",
            ),
            answer(401, "signature_mismatch"),
            0,
            0,
        ),
        (
            "braintree delivery: an event",
            SchemeId::Braintree,
            BRAINTREE_KEYS,
            provider(
                SchemeId::Braintree,
                BRAINTREE_KEYS,
                "<notification><kind>check</kind></notification>",
            ),
            ok("accepted"),
            1,
            0,
        ),
        (
            "azure event grid SubscriptionValidationEvent with the URL token: validationResponse",
            SchemeId::AzureEventGrid,
            EVENT_GRID_TOKEN,
            event_grid_validation(&format!("code={EVENT_GRID_TOKEN}")),
            ok(r#"{"validationResponse":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}"#),
            0,
            1,
        ),
        (
            "azure event grid SubscriptionValidationEvent with a Bearer token: validationResponse",
            SchemeId::AzureEventGrid,
            EVENT_GRID_TOKEN,
            event_grid_validation("")
                .adding("Authorization", &format!("Bearer {EVENT_GRID_TOKEN}")),
            ok(r#"{"validationResponse":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}"#),
            0,
            1,
        ),
        (
            "azure event grid SubscriptionValidationEvent without the token: 400",
            SchemeId::AzureEventGrid,
            EVENT_GRID_TOKEN,
            event_grid_validation(""),
            answer(400, "missing_header"),
            0,
            0,
        ),
        (
            "azure event grid SubscriptionValidationEvent with a wrong token: 401",
            SchemeId::AzureEventGrid,
            EVENT_GRID_TOKEN,
            event_grid_validation("code=guess"),
            answer(401, "token_mismatch"),
            0,
            0,
        ),
        (
            "azure event grid notification with the token: an event",
            SchemeId::AzureEventGrid,
            EVENT_GRID_TOKEN,
            event_grid_validation(&format!("code={EVENT_GRID_TOKEN}"))
                .replacing("aeg-event-type", "Notification"),
            ok("accepted"),
            1,
            0,
        ),
        (
            "azure event grid CloudEvents OPTIONS with the token: allowed, empty",
            SchemeId::AzureEventGrid,
            EVENT_GRID_TOKEN,
            Req::options(&format!("code={EVENT_GRID_TOKEN}"))
                .adding("WebHook-Request-Origin", "eventgrid.azure.net"),
            ok(""),
            0,
            1,
        ),
        (
            "azure event grid CloudEvents OPTIONS without the token: 400",
            SchemeId::AzureEventGrid,
            EVENT_GRID_TOKEN,
            Req::options("").adding("WebHook-Request-Origin", "eventgrid.azure.net"),
            answer(400, "missing_header"),
            0,
            0,
        ),
        (
            "azure event grid CloudEvents OPTIONS with a wrong token: 401",
            SchemeId::AzureEventGrid,
            EVENT_GRID_TOKEN,
            Req::options("access_token=guess")
                .adding("WebHook-Request-Origin", "eventgrid.azure.net"),
            answer(401, "token_mismatch"),
            0,
            0,
        ),
        (
            "azure event grid OPTIONS with the token but no WebHook-Request-Origin: 403",
            SchemeId::AzureEventGrid,
            EVENT_GRID_TOKEN,
            Req::options(&format!("code={EVENT_GRID_TOKEN}")),
            answer(403, "handshake_refused"),
            0,
            0,
        ),
        (
            "OPTIONS to a scheme without an OPTIONS handshake: 405",
            SchemeId::StandardWebhooksV1,
            SECRET,
            Req::options("").adding("WebHook-Request-Origin", "eventgrid.azure.net"),
            answer(405, "method_not_allowed"),
            0,
            0,
        ),
        (
            "GET to a scheme without a GET handshake: 405",
            SchemeId::StandardWebhooksV1,
            SECRET,
            meta_get(META_VERIFY_TOKEN),
            answer(405, "method_not_allowed"),
            0,
            0,
        ),
    ];
    let mut cases = Vec::new();
    for (name, scheme, key, req, expect, events, handshakes) in rows {
        for mode in [Mode::Receive, Mode::VerifyOnly] {
            let (expect, suffix) = match (mode, expect.1.as_str()) {
                (Mode::VerifyOnly, "accepted") => (ok("verified"), ", verify-only"),
                (Mode::VerifyOnly, _) => (expect.clone(), ", verify-only"),
                (Mode::Receive, _) => (expect.clone(), ""),
            };
            cases.push(Case {
                handshakes,
                name: format!("{name}{suffix}"),
                setup: provider_setup(scheme, key),
                mode,
                origin: None,
                script: Script::Sequential(vec![req.clone()]),
                expect: vec![expect],
                events,
            });
        }
    }
    cases
}
