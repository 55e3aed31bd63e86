//! Helpers for the tests against a real PostgreSQL: signed deliveries, bounded waits, a
//! direct connection. Each test starts a cluster of its own ([`Postgres`], from
//! `hookgate-testkit`).

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use hookgate::{
    FixedClock, Gate, Outcome, SchemeId, SignRequest, SignedDelivery, Signer, Verifier,
};
use hookgate_postgres::tokio_postgres::{self, Client, NoTls};

pub use hookgate_testkit::Postgres;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const NOW: u64 = 1_700_000_000;

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

pub fn dedup_key(id: &str) -> String {
    format!("standard-webhooks-v1:id:{id}")
}

/// A verified event for `id`, to hand to the store directly.
pub fn event(id: &str) -> hookgate::VerifiedEvent {
    let delivery = signed(id);
    verifier().verify(&delivery.headers, delivery.body).unwrap()
}

/// Sends `delivery` to `gate` the way a sender does: again after every 503, until a 2xx
/// (at most `tries` times, 50 ms apart). Returns the first and the last outcome.
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

/// A connection of the test's own, to look at the tables.
pub async fn client(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    tokio::spawn(connection);
    client
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
