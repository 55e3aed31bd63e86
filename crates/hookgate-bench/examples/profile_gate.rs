//! Runs the Gate's whole decision (verify, dedup claim and commit, hand-off to a channel
//! sink) over many distinct deliveries, for instruction-count profiling:
//! `valgrind --tool=callgrind target/release/examples/profile_gate [N]`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use hookgate::{ChannelSink, Gate, SchemeId, Verifier};
use hookgate_bench::{SW_SECRET, payload, signed_headers};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let body = bytes::Bytes::from(payload(1024));
    // Signed before the loop, so the profile holds only the receiving side.
    let deliveries: Vec<http::HeaderMap> = (0..n)
        .map(|i| {
            let pairs = signed_headers(
                SchemeId::StandardWebhooksV1,
                SW_SECRET,
                &format!("msg_profile_{i:016}"),
                &body,
            )
            .unwrap();
            pairs
                .iter()
                .map(|(k, v)| {
                    (
                        http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                        http::HeaderValue::from_str(v).unwrap(),
                    )
                })
                .collect()
        })
        .collect();
    let verifier = Verifier::builder(SchemeId::StandardWebhooksV1)
        .secret(SW_SECRET)
        .build()
        .unwrap();
    let (sink, mut events) = ChannelSink::bounded(1024);
    let gate = Gate::builder(verifier).sink(sink).build().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        for headers in &deliveries {
            let outcome = gate.receive(headers, body.clone(), None).await;
            assert_eq!(outcome.status(), 200);
            drop(events.try_recv());
        }
    });
}
