//! Runs one verify path many times, for instruction-count profiling:
//! `valgrind --tool=callgrind target/release/examples/profile_verify hookgate|floor [N] [SCHEME]`.
//! `SCHEME` (default `standard-webhooks-v1`) picks the preset `hookgate` verifies, signed with
//! the bench's shared secret; `floor` is the bare HMAC of the Standard Webhooks message.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use hmac::{Hmac, Mac};
use hookgate::{SchemeId, Verifier};
use hookgate_bench::{SHARED_SECRET, SW_SECRET, payload, signed_headers};
use sha2::Sha256;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "hookgate".into());
    let n: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let scheme: SchemeId = std::env::args()
        .nth(3)
        .map_or(SchemeId::StandardWebhooksV1, |s| s.parse().unwrap());
    let secret = if scheme == SchemeId::StandardWebhooksV1 {
        SW_SECRET
    } else {
        SHARED_SECRET
    };
    let body = bytes::Bytes::from(payload(1024));
    let pairs = signed_headers(scheme, secret, "msg_2LJx9bench0000000000000000", &body).unwrap();
    let mut headers = http::HeaderMap::new();
    for (k, v) in &pairs {
        headers.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    let verifier = Verifier::builder(scheme).secret(secret).build().unwrap();
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD
        .decode(SW_SECRET.trim_start_matches("whsec_"))
        .unwrap();
    let mut message = Vec::new();
    for name in ["webhook-id", "webhook-timestamp"] {
        let value = pairs.iter().find(|(k, _)| k == name);
        message.extend_from_slice(value.map_or(&b""[..], |(_, v)| v.as_bytes()));
        message.push(b'.');
    }
    message.extend_from_slice(&body);
    for _ in 0..n {
        if mode == "floor" {
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
            mac.update(black_box(&message));
            black_box(mac.finalize().into_bytes());
        } else {
            black_box(
                verifier
                    .verify(black_box(&headers), body.clone())
                    .unwrap()
                    .key_index(),
            );
        }
    }
}
