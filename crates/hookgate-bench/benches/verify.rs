//! The verify path: hookgate end to end (header parsing, timestamp check, HMAC, constant-time
//! comparison, result) against the floor (raw HMAC-SHA256 of the same signed bytes with the
//! same `hmac` + `sha2` crates, keyed once as the verifier's keys are) and the `svix` and
//! `standardwebhooks` crates.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use hookgate::{SchemeId, Verifier};
use hookgate_bench::{
    ED25519_PUBLIC, ED25519_SIGNING, PAYLOAD_SIZES, SHARED_SECRET, SW_SECRET, payload,
    signed_headers,
};
use sha2::Sha256;

fn header_map(pairs: &[(String, String)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn value<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    &pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .unwrap()
        .1
}

/// The bytes each scheme signs, for the floor.
fn signed_bytes(scheme: SchemeId, pairs: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match scheme {
        SchemeId::StandardWebhooksV1 => {
            out.extend_from_slice(value(pairs, "webhook-id").as_bytes());
            out.push(b'.');
            out.extend_from_slice(value(pairs, "webhook-timestamp").as_bytes());
            out.push(b'.');
        }
        SchemeId::Stripe => {
            let t = value(pairs, "Stripe-Signature")
                .split(',')
                .next()
                .unwrap()
                .trim_start_matches("t=");
            out.extend_from_slice(t.as_bytes());
            out.push(b'.');
        }
        _ => {}
    }
    out.extend_from_slice(body);
    out
}

fn floor_key(scheme: SchemeId) -> Vec<u8> {
    use base64::Engine as _;
    match scheme {
        SchemeId::StandardWebhooksV1 => base64::engine::general_purpose::STANDARD
            .decode(SW_SECRET.trim_start_matches("whsec_"))
            .unwrap(),
        _ => SHARED_SECRET.as_bytes().to_vec(),
    }
}

fn bench_scheme(c: &mut Criterion, scheme: SchemeId) {
    let secret = if scheme == SchemeId::StandardWebhooksV1 {
        SW_SECRET
    } else {
        SHARED_SECRET
    };
    let mut group = c.benchmark_group(format!("verify-{scheme}"));
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(40);
    let verifier = Verifier::builder(scheme).secret(secret).build().unwrap();
    let key = floor_key(scheme);
    for size in PAYLOAD_SIZES {
        let body = bytes::Bytes::from(payload(size));
        // Signed now: the peers check timestamps against the system clock.
        let pairs =
            signed_headers(scheme, secret, "msg_2LJx9bench0000000000000000", &body).unwrap();
        let headers = header_map(&pairs);
        let message = signed_bytes(scheme, &pairs, &body);
        group.throughput(Throughput::Bytes(size as u64));

        // The floor keys the HMAC once, as the verifier does (it keeps the key's two
        // midstates): each iteration starts from a copy of the keyed state, then hashes
        // exactly the bytes hookgate hashes.
        let keyed = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        group.bench_with_input(
            BenchmarkId::new("floor-hmac", size),
            &message,
            |b, message| {
                b.iter(|| {
                    let mut mac = black_box(&keyed).clone();
                    mac.update(black_box(message));
                    black_box(mac.finalize().into_bytes())
                });
            },
        );
        // The floor before issue 18 keyed the HMAC on every iteration (two more SHA-256
        // blocks than the verifier hashes): kept to compare with earlier runs.
        group.bench_with_input(
            BenchmarkId::new("floor-hmac-rekeyed", size),
            &message,
            |b, message| {
                b.iter(|| {
                    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
                    mac.update(black_box(message));
                    black_box(mac.finalize().into_bytes())
                });
            },
        );
        group.bench_with_input(BenchmarkId::new("hookgate", size), &body, |b, body| {
            b.iter(|| {
                let event = verifier.verify(black_box(&headers), body.clone()).unwrap();
                black_box(event.key_index())
            });
        });
        if scheme == SchemeId::StandardWebhooksV1 {
            let svix_headers = header_map(
                &pairs
                    .iter()
                    .map(|(k, v)| (k.replace("webhook-", "svix-"), v.clone()))
                    .collect::<Vec<_>>(),
            );
            let svix = svix::webhooks::Webhook::new(SW_SECRET).unwrap();
            group.bench_with_input(BenchmarkId::new("svix", size), &body, |b, body| {
                b.iter(|| {
                    svix.verify(black_box(body), black_box(&svix_headers))
                        .unwrap()
                });
            });
            let standard = standardwebhooks::Webhook::new(SW_SECRET).unwrap();
            group.bench_with_input(
                BenchmarkId::new("standardwebhooks", size),
                &body,
                |b, body| {
                    b.iter(|| {
                        standard
                            .verify(black_box(body), black_box(&headers))
                            .unwrap()
                    });
                },
            );
        }
    }
    group.finish();
}

fn verify_benches(c: &mut Criterion) {
    for scheme in [
        SchemeId::StandardWebhooksV1,
        SchemeId::Stripe,
        SchemeId::Github,
        SchemeId::Shopify,
    ] {
        bench_scheme(c, scheme);
    }
    let mut group = c.benchmark_group("verify-standard-webhooks-v1a");
    group
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    let verifier = Verifier::builder(SchemeId::StandardWebhooksV1a)
        .secret(ED25519_PUBLIC)
        .build()
        .unwrap();
    let body = bytes::Bytes::from(payload(1024));
    let pairs = signed_headers(
        SchemeId::StandardWebhooksV1a,
        ED25519_SIGNING,
        "msg_ed25519",
        &body,
    )
    .unwrap();
    let headers = header_map(&pairs);
    group.throughput(Throughput::Bytes(1024));
    group.bench_with_input(BenchmarkId::new("hookgate", 1024), &body, |b, body| {
        b.iter(|| black_box(verifier.verify(&headers, body.clone()).unwrap().key_index()));
    });
    group.finish();
}

criterion_group!(benches, verify_benches);
criterion_main!(benches);
