//! Helpers for the tests against a real Redis: signed deliveries, unique key prefixes. Each
//! test starts a `redis-server` of its own ([`Redis`], from `hookgate-testkit`).

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::time::Duration;

use hookgate::{
    FixedClock, Gate, Outcome, SchemeId, SignRequest, SignedDelivery, Signer, Verifier,
};
use hookgate_redis::Envelope;
use hookgate_redis::redis::aio::ConnectionManager;
use hookgate_redis::redis::streams::StreamRangeReply;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const NOW: u64 = 1_700_000_000;

pub use hookgate_testkit::Redis;

/// A prefix no other test or earlier run uses.
pub fn unique(name: &str) -> String {
    format!("hgtest:{name}:{:016x}", fastrand::u64(..))
}

pub fn verifier() -> Verifier {
    Verifier::builder(SchemeId::StandardWebhooksV1)
        .secret(SECRET)
        .clock(FixedClock::from_unix(NOW))
        .build()
        .unwrap()
}

pub fn signed(id: &str) -> SignedDelivery {
    let body = format!(r#"{{"type":"invoice.paid","id":"{id}"}}"#);
    Signer::new(SchemeId::StandardWebhooksV1, SECRET)
        .unwrap()
        .sign(&SignRequest::new(body).id(id).timestamp(NOW as i64))
        .unwrap()
}

pub fn envelope(id: &str) -> Envelope {
    let delivery = signed(id);
    Envelope::from_event(&verifier().verify(&delivery.headers, delivery.body).unwrap())
}

pub fn dedup_key(id: &str) -> String {
    format!("standard-webhooks-v1:id:{id}")
}

/// Sends `delivery` to `gate` the way a sender does: again after every 503, until a 2xx
/// (at most `tries` times). Returns the first and the last outcome.
pub async fn send_until_accepted(
    gate: &Gate,
    delivery: &SignedDelivery,
    tries: usize,
) -> (Outcome, Outcome) {
    let first = gate
        .receive(&delivery.headers, delivery.body.clone(), None)
        .await;
    let mut last = first.clone();
    for _ in 1..tries {
        if last.is_success() {
            break;
        }
        assert_eq!(last.status(), 503, "only 503s are retried: {last:?}");
        assert!(last.retry_after().is_some(), "a 503 carries Retry-After");
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = gate
            .receive(&delivery.headers, delivery.body.clone(), None)
            .await;
    }
    assert!(last.is_success(), "never accepted: {last:?}");
    (first, last)
}

pub async fn conn(url: &str) -> ConnectionManager {
    let client = hookgate_redis::redis::Client::open(url).unwrap();
    ConnectionManager::new(client).await.unwrap()
}

/// Dedup key → how many entries of `stream` carry it.
pub async fn keys_in_stream(conn: &mut ConnectionManager, stream: &str) -> BTreeMap<String, usize> {
    let reply: StreamRangeReply = hookgate_redis::redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .unwrap();
    let mut counts = BTreeMap::new();
    for entry in reply.ids {
        let json: String = entry.get("envelope").unwrap();
        let envelope = Envelope::from_json(json.as_bytes()).unwrap();
        *counts.entry(envelope.dedup_key).or_insert(0) += 1;
    }
    counts
}

/// Deletes every key starting with `prefix`.
pub async fn cleanup(conn: &mut ConnectionManager, prefix: &str) {
    let keys: Vec<String> = hookgate_redis::redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(conn)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<i64, _> = hookgate_redis::redis::cmd("DEL")
            .arg(&keys)
            .query_async(conn)
            .await;
    }
}

/// Polls `check` every 20 ms until it holds, for at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not reached within {limit:?}");
}
