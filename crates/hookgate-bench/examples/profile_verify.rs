//! Runs one verify path many times, for instruction-count profiling and a quick same-run
//! timing:
//!
//! - `valgrind --tool=callgrind target/release/examples/profile_verify hookgate|floor SCHEME N [bare|full]`
//!   (SCHEME: `standard-webhooks-v1`, `stripe`, `github`, `shopify`; `full` adds the headers a
//!   real delivery carries: the provider's own and a proxy's). The difference between two
//!   runs with different N, divided by the difference in N, is the count per verify.
//! - `target/release/examples/profile_verify time SCHEME N`: 301 alternating batches of N
//!   floor HMACs and N verifies; prints the fastest batch of each (the ones no other process
//!   interrupted, which makes the ratio usable on a busy machine) and the 10th percentile.
//!
//! The delivery is signed at a fixed time and verified with a [`FixedClock`], so every run
//! does the same work. The floor is the raw HMAC of the same bytes from a keyed state made
//! once (as the verifier's keys are), so both sides hash the same blocks.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]
#![allow(clippy::arithmetic_side_effects, clippy::panic)]

use std::hint::black_box;

use hmac::{Hmac, Mac};
use hookgate::{FixedClock, SchemeId, SignRequest, Signer, Verifier};
use hookgate_bench::{SHARED_SECRET, SW_SECRET, payload};
use sha2::Sha256;

/// When the delivery is signed and verified.
const T: i64 = 1_700_000_000;

fn value<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    &pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .unwrap()
        .1
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map_or("hookgate", |s| s.as_str());
    let name = args.get(2).map_or("standard-webhooks-v1", |s| s.as_str());
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let full = args.get(4).is_some_and(|s| s == "full");
    let scheme = match name {
        "standard-webhooks-v1" => SchemeId::StandardWebhooksV1,
        "stripe" => SchemeId::Stripe,
        "github" => SchemeId::Github,
        "shopify" => SchemeId::Shopify,
        other => panic!("scheme {other}"),
    };
    let secret = if scheme == SchemeId::StandardWebhooksV1 {
        SW_SECRET
    } else {
        SHARED_SECRET
    };
    let body = bytes::Bytes::from(payload(1024));
    let signer = Signer::new(scheme, secret).unwrap();
    let delivery = signer
        .sign(
            &SignRequest::new(body.clone())
                .id("msg_2LJx9bench0000000000000000")
                .timestamp(T),
        )
        .unwrap();
    let mut pairs: Vec<(String, String)> = delivery.headers.clone();
    if full {
        // What a real delivery carries besides the signature.
        let common = [
            ("Host", "hooks.example.com"),
            ("User-Agent", "Provider-Hookshot/abc123"),
            ("Content-Type", "application/json"),
            ("Content-Length", "1024"),
            ("Accept", "*/*"),
            ("Accept-Encoding", "gzip"),
            ("X-Forwarded-For", "192.0.2.1"),
            ("X-Forwarded-Proto", "https"),
        ];
        let own: &[(&str, &str)] = match scheme {
            SchemeId::Github => &[
                ("X-GitHub-Event", "push"),
                ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
                ("X-GitHub-Hook-ID", "292430182"),
                ("X-GitHub-Hook-Installation-Target-ID", "79929171"),
                ("X-GitHub-Hook-Installation-Target-Type", "repository"),
            ],
            SchemeId::Shopify => &[
                ("X-Shopify-Topic", "orders/create"),
                ("X-Shopify-Shop-Domain", "shop.myshopify.com"),
                ("X-Shopify-API-Version", "2025-01"),
                (
                    "X-Shopify-Webhook-Id",
                    "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
                ),
                ("X-Shopify-Event-Id", "98880550-7158-44d4-b7cd-2c97c8a091b5"),
                ("X-Shopify-Triggered-At", "2025-01-01T00:00:00.000Z"),
            ],
            _ => &[],
        };
        for (k, v) in common.iter().chain(own) {
            pairs.push((k.to_string(), v.to_string()));
        }
    }
    let mut headers = http::HeaderMap::new();
    for (k, v) in &pairs {
        headers.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    let verifier = Verifier::builder(scheme)
        .secret(secret)
        .clock(FixedClock::from_unix(T.unsigned_abs()))
        .build()
        .unwrap();
    assert!(verifier.verify(&headers, body.clone()).is_ok());
    let key = if scheme == SchemeId::StandardWebhooksV1 {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(SW_SECRET.trim_start_matches("whsec_"))
            .unwrap()
    } else {
        SHARED_SECRET.as_bytes().to_vec()
    };
    let mut message = Vec::new();
    match scheme {
        SchemeId::StandardWebhooksV1 => {
            for name in ["webhook-id", "webhook-timestamp"] {
                message.extend_from_slice(value(&pairs, name).as_bytes());
                message.push(b'.');
            }
        }
        SchemeId::Stripe => {
            let t = value(&pairs, "Stripe-Signature")
                .split(',')
                .next()
                .unwrap()
                .trim_start_matches("t=");
            message.extend_from_slice(t.as_bytes());
            message.push(b'.');
        }
        _ => {}
    }
    message.extend_from_slice(&body);
    // Keyed once, as the verifier's keys are (it keeps the two midstates of the key): the
    // floor hashes exactly the blocks a verify hashes, and nothing else.
    let keyed = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    if mode == "time" {
        // Alternate floor and hookgate in rounds; print the median ns of each and the ratio.
        let mut floor = Vec::new();
        let mut hook = Vec::new();
        for _ in 0..301 {
            let t = std::time::Instant::now();
            for _ in 0..n {
                let mut mac = black_box(&keyed).clone();
                mac.update(black_box(&message));
                black_box(mac.finalize().into_bytes());
            }
            floor.push(t.elapsed().as_nanos() as f64 / n as f64);
            let t = std::time::Instant::now();
            for _ in 0..n {
                let event = verifier.verify(black_box(&headers), body.clone()).unwrap();
                black_box(event.key_index());
            }
            hook.push(t.elapsed().as_nanos() as f64 / n as f64);
        }
        floor.sort_by(|a, b| a.partial_cmp(b).unwrap());
        hook.sort_by(|a, b| a.partial_cmp(b).unwrap());
        // The fastest batches: the ones no other process interrupted.
        let (f, h) = (floor[0], hook[0]);
        let (f10, h10) = (floor[30], hook[30]);
        println!(
            "{name} floor {f:.0} ns hookgate {h:.0} ns ratio {:.3} (p10: {f10:.0} / {h10:.0} = {:.3})",
            h / f,
            h10 / f10
        );
        return;
    }
    for _ in 0..n {
        if mode == "floor" {
            let mut mac = black_box(&keyed).clone();
            mac.update(black_box(&message));
            black_box(mac.finalize().into_bytes());
        } else {
            let event = verifier.verify(black_box(&headers), body.clone()).unwrap();
            black_box(event.key_index());
        }
    }
}
