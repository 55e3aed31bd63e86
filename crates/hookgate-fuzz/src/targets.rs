//! One harness per family of parsers, one on the whole [`Gate`].
//!
//! Each function takes the fuzzer's bytes, splits them into fields (see
//! [the crate documentation](crate#input-format)), puts them where the schemes of one family
//! read them, and checks the [oracles](crate#oracles).

use bytes::Bytes;
use hookgate::{
    ChannelSink, Gate, Headers, MemoryDedupStore, Outcome, OutcomeKind, Reason, Rejection,
    SchemeId, Verifier,
};

use crate::Verdict;
use crate::input::{BothForms, both_forms, fields, http_request};
use crate::keys::{SECRET_MARKER, generic_schemes, verifier};

/// Largest body the `gate` target's gate accepts, small enough that the fuzzer reaches the
/// 413 path.
pub const GATE_BODY_LIMIT: usize = 2048;

/// A scheme and the headers to verify it with.
type Case<'a> = (SchemeId, Vec<(&'a str, &'a [u8])>);

/// Standard Webhooks list parser (`v1,<sig> v1a,<sig> …`), used by Standard Webhooks
/// v1/v1a, Svix and GitLab signing tokens.
///
/// Fields: `id \n timestamp \n signatures \n body`; the signatures field is split on `\t`
/// into several header values.
pub fn standard_webhooks(data: &[u8]) -> Vec<Verdict> {
    let [id, ts, signatures, body] = four(data);
    let families: [(SchemeId, [&str; 3]); 4] = [
        (
            SchemeId::StandardWebhooksV1,
            ["webhook-id", "webhook-timestamp", "webhook-signature"],
        ),
        (
            SchemeId::StandardWebhooksV1a,
            ["webhook-id", "webhook-timestamp", "webhook-signature"],
        ),
        (
            SchemeId::GitlabSigning,
            ["webhook-id", "webhook-timestamp", "webhook-signature"],
        ),
        (
            SchemeId::Svix,
            ["svix-id", "svix-timestamp", "svix-signature"],
        ),
    ];
    let mut out = Vec::new();
    for (scheme, [id_name, ts_name, sig_name]) in families {
        let mut headers = vec![(id_name, id), (ts_name, ts)];
        headers.extend(signatures.split(|b| *b == b'\t').map(|s| (sig_name, s)));
        out.extend(verify_forms(scheme, &both_forms(&headers), body, None));
    }
    out
}

/// Stripe's and Prefinery's `t=…,v1=…` parser.
///
/// Fields: `header value \n body`.
pub fn stripe_t_v1(data: &[u8]) -> Vec<Verdict> {
    let [value, body] = two(data);
    let mut out = Vec::new();
    for (scheme, header) in [
        (SchemeId::Stripe, "Stripe-Signature"),
        (SchemeId::Prefinery, "X-Prefinery-Signature"),
    ] {
        out.extend(verify_forms(
            scheme,
            &both_forms(&[(header, value)]),
            body,
            None,
        ));
    }
    out
}

/// Paddle's `ts=…;h1=…` parser.
///
/// Fields: `header value \n body`.
pub fn paddle(data: &[u8]) -> Vec<Verdict> {
    let [value, body] = two(data);
    verify_forms(
        SchemeId::Paddle,
        &both_forms(&[("Paddle-Signature", value)]),
        body,
        None,
    )
}

/// The signature decoders: lowercase hex (GitHub, GitHub SHA-1, Linear), hex in any case
/// (Discord, then Ed25519), canonical base64 (Shopify, Square, then DER ECDSA for SendGrid).
///
/// Fields: `signature \n body`; prefixes (`sha256=`) and timestamps (`NOW`) are added.
pub fn encodings(data: &[u8]) -> Vec<Verdict> {
    let [signature, body] = two(data);
    let now = crate::NOW.to_string();
    let prefixed = |prefix: &str| [prefix.as_bytes(), signature].concat();
    let sha256 = prefixed("sha256=");
    let sha1 = prefixed("sha1=");
    let cases: [Case<'_>; 7] = [
        (SchemeId::Github, vec![("X-Hub-Signature-256", &sha256)]),
        (SchemeId::GithubSha1, vec![("X-Hub-Signature", &sha1)]),
        (SchemeId::Linear, vec![("Linear-Signature", signature)]),
        (
            SchemeId::Discord,
            vec![
                ("X-Signature-Ed25519", signature),
                ("X-Signature-Timestamp", now.as_bytes()),
            ],
        ),
        (
            SchemeId::Shopify,
            vec![
                ("X-Shopify-Hmac-Sha256", signature),
                // Required beside the HMAC (not signed), so that the decoder is reached.
                ("X-Shopify-Topic", b"orders/create"),
                ("X-Shopify-Shop-Domain", b"shop1.myshopify.io"),
                ("X-Shopify-API-Version", b"2025-07"),
                ("X-Shopify-Webhook-Id", b"123456789"),
            ],
        ),
        (
            SchemeId::Square,
            vec![("x-square-hmacsha256-signature", signature)],
        ),
        (
            SchemeId::Sendgrid,
            vec![
                ("X-Twilio-Email-Event-Webhook-Signature", signature),
                ("X-Twilio-Email-Event-Webhook-Timestamp", now.as_bytes()),
            ],
        ),
    ];
    cases
        .iter()
        .flat_map(|(scheme, headers)| verify_forms(*scheme, &both_forms(headers), body, None))
        .collect()
}

/// Schemes whose timestamp and signature travel in separate headers: Slack and Zoom
/// (`v0=…`, Unix seconds), Twitch EventSub (`sha256=…`, RFC 3339, message id), Discord and
/// SendGrid (Unix seconds), Linear (its timestamp is read from the JSON body).
///
/// Fields: `timestamp \n id \n signature \n body`.
pub fn timestamped_headers(data: &[u8]) -> Vec<Verdict> {
    let [ts, id, signature, body] = four(data);
    let cases: [Case<'_>; 6] = [
        (
            SchemeId::Slack,
            vec![
                ("X-Slack-Signature", signature),
                ("X-Slack-Request-Timestamp", ts),
            ],
        ),
        (
            SchemeId::Zoom,
            vec![
                ("x-zm-signature", signature),
                ("x-zm-request-timestamp", ts),
            ],
        ),
        (
            SchemeId::TwitchEventsub,
            vec![
                ("Twitch-Eventsub-Message-Id", id),
                ("Twitch-Eventsub-Message-Timestamp", ts),
                ("Twitch-Eventsub-Message-Signature", signature),
            ],
        ),
        (
            SchemeId::Discord,
            vec![
                ("X-Signature-Ed25519", signature),
                ("X-Signature-Timestamp", ts),
            ],
        ),
        (
            SchemeId::Sendgrid,
            vec![
                ("X-Twilio-Email-Event-Webhook-Signature", signature),
                ("X-Twilio-Email-Event-Webhook-Timestamp", ts),
            ],
        ),
        (SchemeId::Linear, vec![("Linear-Signature", signature)]),
    ];
    cases
        .iter()
        .flat_map(|(scheme, headers)| verify_forms(*scheme, &both_forms(headers), body, None))
        .collect()
}

/// Twilio's form-parameter parser and URL handling (port variants, `bodySHA256` in the
/// query), and Square's URL + body. The URL is attacker-influenced in practice (a server
/// builds it from the request's path and query), so it is fuzzed too.
///
/// Fields: `signature \n url \n body`; an empty URL means the configured
/// [`URL`](crate::URL).
pub fn twilio_form(data: &[u8]) -> Vec<Verdict> {
    let [signature, url, body] = three(data);
    let url = String::from_utf8_lossy(url);
    let url = (!url.is_empty()).then_some(&*url);
    let mut out = Vec::new();
    for (scheme, header) in [
        (SchemeId::Twilio, "X-Twilio-Signature"),
        (SchemeId::TwilioBodySha256, "X-Twilio-Signature"),
        (SchemeId::Square, "x-square-hmacsha256-signature"),
    ] {
        out.extend(verify_forms(
            scheme,
            &both_forms(&[(header, signature)]),
            body,
            url,
        ));
    }
    out
}

/// Mailgun's signature fields in the body, JSON (`signature.{timestamp,token,signature}`)
/// or form-encoded.
///
/// Fields: the whole input is the body; there are no headers.
pub fn mailgun_body(data: &[u8]) -> Vec<Verdict> {
    verify_forms(SchemeId::Mailgun, &both_forms(&[]), data, None)
}

/// The configurable generic HMAC scheme: prefix, separator, several header values, id and
/// timestamp headers in the signed template (see `keys::generic_schemes`).
///
/// Fields: `id \n timestamp \n signatures \n body`; the signatures field is split on `\t`
/// into several header values.
pub fn generic_hmac(data: &[u8]) -> Vec<Verdict> {
    let [id, ts, signatures, body] = four(data);
    let mut headers = vec![("X-Acme-Delivery", id), ("X-Acme-Timestamp", ts)];
    headers.extend(
        signatures
            .split(|b| *b == b'\t')
            .map(|s| ("X-Acme-Signature", s)),
    );
    let forms = both_forms(&headers);
    generic_schemes()
        .iter()
        .flat_map(|(scheme, verifier)| check_forms(scheme.name(), verifier, &forms, body, None))
        .collect()
}

/// The whole [`Gate`] (verify, replay window, dedup claim, enqueue, commit) with arbitrary
/// headers and body, for any of the 22 schemes.
///
/// Format: the first line names the scheme (`stripe`; anything else picks one from the
/// line's bytes), then `Name: value` header lines, an empty line and the body. Each input
/// gets a fresh gate with a memory dedup store and a channel sink; a delivery the gate
/// accepts is sent a second time and must be a `duplicate`.
pub fn gate(data: &[u8]) -> Vec<Verdict> {
    let [first, request] = two(data);
    let scheme = pick_scheme(first);
    let (headers, body) = http_request(request);
    let body = Bytes::copy_from_slice(body);
    let Some(verifier) = verifier(scheme) else {
        return Vec::new();
    };
    let (sink, mut events) = ChannelSink::bounded(4);
    let Ok(gate) = Gate::builder(verifier)
        .dedup(MemoryDedupStore::new())
        .sink(sink)
        .max_body_bytes(GATE_BODY_LIMIT)
        .build()
    else {
        return Vec::new();
    };
    let Some(first) = block_on(gate.receive(&headers, body.clone(), None)) else {
        return Vec::new();
    };
    check_outcome(&first);
    let enqueued = events.try_recv();
    match first.kind() {
        OutcomeKind::Accepted => {
            let event = enqueued.as_ref();
            assert!(event.is_some(), "{scheme}: accepted but nothing enqueued");
            let again = block_on(gate.receive(&headers, body, None));
            let again = again.as_ref().map(Outcome::kind);
            assert_eq!(
                again,
                Some(OutcomeKind::Duplicate),
                "{scheme}: a verified delivery sent twice was not a duplicate"
            );
            assert!(events.try_recv().is_none(), "{scheme}: enqueued twice");
        }
        OutcomeKind::Rejected(_) | OutcomeKind::BodyTooLarge => {
            assert!(enqueued.is_none(), "{scheme}: enqueued a rejected delivery");
        }
        other => unexpected(scheme, other),
    }
    vec![Verdict {
        label: scheme.as_str().to_owned(),
        result: if first.is_success() {
            Ok(first.code().to_owned())
        } else {
            Err(first.code())
        },
    }]
}

/// A fresh gate with a memory store and an empty channel has no reason to defer.
#[allow(
    clippy::panic,
    reason = "a fuzz harness reports a finding by panicking"
)]
fn unexpected(scheme: SchemeId, kind: OutcomeKind) -> ! {
    panic!("{scheme}: unexpected first outcome {kind:?}")
}

/// The scheme a `gate` input names, or one picked from the line's bytes.
pub fn pick_scheme(line: &[u8]) -> SchemeId {
    if let Some(id) = std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.parse::<SchemeId>().ok())
    {
        return id;
    }
    let sum = line
        .iter()
        .fold(0usize, |acc, b| acc.wrapping_add(usize::from(*b)));
    let count = SchemeId::ALL.len();
    SchemeId::ALL
        .get(sum.checked_rem(count).unwrap_or(0))
        .copied()
        .unwrap_or(SchemeId::Stripe)
}

pub(crate) fn block_on<F: std::future::Future>(future: F) -> Option<F::Output> {
    thread_local! {
        static RUNTIME: Option<tokio::runtime::Runtime> =
            tokio::runtime::Builder::new_current_thread().enable_time().build().ok();
    }
    RUNTIME.with(|runtime| runtime.as_ref().map(|rt| rt.block_on(future)))
}

/// The status, code, body and headers agree with the gate's contract table.
fn check_outcome(outcome: &Outcome) {
    let kind = outcome.kind();
    let expected = match kind {
        OutcomeKind::Rejected(reason) => reason.status(),
        OutcomeKind::BodyTooLarge => 413,
        OutcomeKind::Accepted | OutcomeKind::Verified | OutcomeKind::Duplicate => 200,
        _ => 503,
    };
    assert_eq!(outcome.status(), expected, "{kind:?}");
    assert_eq!(outcome.body(), outcome.code());
    assert_eq!(outcome.code(), kind.code());
    assert_eq!(
        outcome.headers().contains_key(http::header::RETRY_AFTER),
        expected == 503,
        "{kind:?}"
    );
    if let Some(rejection) = outcome.rejection() {
        check_rejection(rejection);
    }
    assert!(!format!("{outcome:?}").contains(SECRET_MARKER));
}

fn two(data: &[u8]) -> [&[u8]; 2] {
    let f = fields(data, 2);
    [field(&f, 0), field(&f, 1)]
}

fn three(data: &[u8]) -> [&[u8]; 3] {
    let f = fields(data, 3);
    [field(&f, 0), field(&f, 1), field(&f, 2)]
}

fn four(data: &[u8]) -> [&[u8]; 4] {
    let f = fields(data, 4);
    [field(&f, 0), field(&f, 1), field(&f, 2), field(&f, 3)]
}

fn field<'a>(fields: &[&'a [u8]], index: usize) -> &'a [u8] {
    fields.get(index).copied().unwrap_or_default()
}

fn verify_forms(
    scheme: SchemeId,
    forms: &BothForms,
    body: &[u8],
    url: Option<&str>,
) -> Vec<Verdict> {
    match verifier(scheme) {
        Some(verifier) => check_forms(scheme.as_str(), &verifier, forms, body, url),
        None => Vec::new(),
    }
}

/// Verifies through the pair form and, where possible, the `HeaderMap` form; both must agree
/// when they carry the same bytes.
fn check_forms(
    label: &str,
    verifier: &Verifier,
    forms: &BothForms,
    body: &[u8],
    url: Option<&str>,
) -> Vec<Verdict> {
    let pairs = check(verifier, &forms.pairs, body, url);
    let mut out = vec![Verdict {
        label: label.to_owned(),
        result: pairs.clone(),
    }];
    if let Some(map) = &forms.map {
        let mapped = check(verifier, map, body, url);
        if forms.comparable {
            assert_eq!(pairs, mapped, "{label}: HeaderMap and pairs disagree");
        } else {
            out.push(Verdict {
                label: format!("{label} (header map)"),
                result: mapped,
            });
        }
    }
    out
}

fn check<H: Headers + ?Sized>(
    verifier: &Verifier,
    headers: &H,
    body: &[u8],
    url: Option<&str>,
) -> Result<String, &'static str> {
    match verifier.verify_at_url(headers, Bytes::copy_from_slice(body), url) {
        Ok(event) => {
            let key = event.dedup_key().to_owned();
            assert!(
                key.starts_with(&format!("{}:", verifier.scheme_name())),
                "dedup key {key:?} of {}",
                verifier.scheme_name()
            );
            let _ = (event.event_type(), event.delivery_id(), event.timestamp());
            assert!(!format!("{event:?}").contains(SECRET_MARKER));
            Ok(key)
        }
        Err(rejection) => {
            check_rejection(&rejection);
            Err(rejection.code())
        }
    }
}

fn check_rejection(rejection: &Rejection) {
    let reason = rejection.reason();
    assert!(matches!(rejection.status(), 400 | 401), "{reason:?}");
    assert_eq!(rejection.status(), reason.status());
    assert_eq!(Reason::from_code(rejection.code()), Some(reason));
    let shown = format!("{rejection} {rejection:?}");
    assert!(!shown.contains(SECRET_MARKER), "secret in {shown}");
}
