//! Fleets on a real Redis: every test starts a `redis-server` of its own on a free port
//! (skipped where `redis-server` is not installed, failed instead under
//! `HOOKGATE_REQUIRE_SERVICES=1`). No test asserts how long anything took: waits are bounded polls.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use hookgate::dedup::{Claim, DedupStore, KeyState};
use hookgate::{ChannelSink, Gate, OutcomeKind};
use hookgate_redis::{FailOpenDedupStore, RedisDedupStore, RedisStreamSink, StreamDeadLetters};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dedup_store_follows_the_state_table_on_a_real_redis() {
    let Some(server) = Redis::start() else { return };
    let redis_url = server.url();
    let prefix = unique("dedup");
    let store = RedisDedupStore::connect(&format!("{redis_url}?prefix={prefix}:"))
        .await
        .unwrap();
    assert_eq!(store.prefix(), format!("{prefix}:"));
    assert_eq!(store.lookup("k").await.unwrap(), KeyState::Absent);

    let Claim::New(first) = store.claim("k").await.unwrap() else {
        panic!("first claim is new")
    };
    assert_eq!(store.claim("k").await.unwrap(), Claim::InFlight);
    assert_eq!(store.lookup("k").await.unwrap(), KeyState::InFlight);

    // A stale token releases nothing; the right one does.
    store
        .release("k", hookgate::dedup::ClaimToken::new(first.get() ^ 1))
        .await
        .unwrap();
    assert_eq!(store.claim("k").await.unwrap(), Claim::InFlight);
    store.release("k", first).await.unwrap();
    assert_eq!(store.lookup("k").await.unwrap(), KeyState::Absent);

    let Claim::New(second) = store.claim("k").await.unwrap() else {
        panic!("claim after release is new")
    };
    store.commit("k", second).await.unwrap();
    assert_eq!(store.claim("k").await.unwrap(), Claim::Duplicate);
    store.release("k", second).await.unwrap();
    assert_eq!(store.lookup("k").await.unwrap(), KeyState::Committed);
    // Commit succeeds without a live claim.
    store.commit("never-claimed", second).await.unwrap();
    assert_eq!(
        store.claim("never-claimed").await.unwrap(),
        Claim::Duplicate
    );

    // The committed key got the long TTL, the claim the short one.
    let mut conn = conn(&redis_url).await;
    let committed_ttl: i64 = hookgate_redis::redis::cmd("PTTL")
        .arg(format!("{prefix}:k"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(committed_ttl > 71 * 3600 * 1000, "{committed_ttl}");
    store.claim("short").await.unwrap();
    let claim_ttl: i64 = hookgate_redis::redis::cmd("PTTL")
        .arg(format!("{prefix}:short"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((1..=30_000).contains(&claim_ttl), "{claim_ttl}");

    // Many replicas claiming the same keys at once: exactly one winner per key.
    let race_url = format!("{redis_url}?prefix={prefix}:race:");
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(RedisDedupStore::connect(&race_url).await.unwrap());
    }
    let mut tasks = Vec::new();
    for store in stores {
        tasks.push(tokio::spawn(async move {
            let mut won = 0;
            for i in 0..100 {
                if matches!(
                    store.claim(&format!("key-{i}")).await.unwrap(),
                    Claim::New(_)
                ) {
                    won += 1;
                }
            }
            won
        }));
    }
    let mut winners = 0;
    for task in tasks {
        winners += task.await.unwrap();
    }
    assert_eq!(winners, 100);
    cleanup(&mut conn, &prefix).await;
}

/// Two receivers, each a Gate with its own connections to one Redis; every delivery is
/// sent to both at once, as a sender's retry racing the original would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_receivers_sharing_redis_put_each_delivery_in_the_stream_exactly_once() {
    let Some(server) = Redis::start() else { return };
    let redis_url = server.url();
    let prefix = unique("fleet");
    let stream = format!("{prefix}:events");
    let receiver = || async {
        let dedup = RedisDedupStore::connect(&format!("{redis_url}?prefix={prefix}:dedup:"))
            .await
            .unwrap();
        let sink = RedisStreamSink::connect(&format!("{redis_url}?stream={stream}"))
            .await
            .unwrap();
        Gate::builder(verifier())
            .dedup(dedup)
            .sink(sink)
            .build()
            .unwrap()
    };
    let (a, b) = (receiver().await, receiver().await);

    let mut tasks = Vec::new();
    for i in 0..200 {
        let (a, b) = (a.clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            let delivery = signed(&format!("msg_{i}"));
            let (to_a, to_b) = tokio::join!(
                tokio::spawn({
                    let delivery = delivery.clone();
                    async move { send_until_accepted(&a, &delivery, 400).await }
                }),
                tokio::spawn(async move { send_until_accepted(&b, &delivery, 400).await }),
            );
            let (to_a, to_b) = (to_a.unwrap(), to_b.unwrap());
            // Exactly one of the two was accepted; the other was told duplicate (at once
            // or after an in-flight 503).
            let accepted = [&to_a.1, &to_b.1]
                .iter()
                .filter(|o| o.kind() == OutcomeKind::Accepted)
                .count();
            assert_eq!(accepted, 1, "msg_{i}: {to_a:?} {to_b:?}");
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    let mut conn = conn(&redis_url).await;
    let counts = keys_in_stream(&mut conn, &stream).await;
    let expected: BTreeMap<String, usize> = (0..200)
        .map(|i| (dedup_key(&format!("msg_{i}")), 1))
        .collect();
    assert_eq!(counts, expected);
    cleanup(&mut conn, &prefix).await;
}

/// A Redis killed mid-test: 503s while it is down, nothing half-written, and once it is
/// back (same port, its append-only file reloaded) the senders' retries are accepted
/// exactly once, with no restart of the receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redis_that_dies_gives_503s_then_no_loss_and_no_duplicate_once_back() {
    let Some(mut redis) = Redis::start_persistent() else {
        return;
    };
    let stream = "outage:events";
    let dedup = RedisDedupStore::builder()
        .claim_ttl(Duration::from_secs(2))
        .connect(&redis.url())
        .await
        .unwrap();
    let sink = RedisStreamSink::builder()
        .stream(stream)
        .connect(&redis.url())
        .await
        .unwrap();
    let gate = Gate::builder(verifier())
        .dedup(dedup.clone())
        .sink(sink)
        .build()
        .unwrap();
    // The explicit fail-open opt-in, on the same Redis, in front of a local sink.
    let (local_sink, mut local_events) = ChannelSink::bounded(100);
    let fail_open_gate = Gate::builder(verifier())
        .dedup(FailOpenDedupStore::new(dedup))
        .sink(local_sink)
        .build()
        .unwrap();

    // Up: accepted.
    for i in 0..20 {
        let d = signed(&format!("before_{i}"));
        let outcome = gate.receive(&d.headers, d.body.clone(), None).await;
        assert_eq!(outcome.code(), "accepted", "{outcome:?}");
    }

    // Down: every delivery is deferred with 503 + Retry-After.
    redis.kill();
    for i in 0..20 {
        let d = signed(&format!("during_{i}"));
        let outcome = gate.receive(&d.headers, d.body.clone(), None).await;
        assert_eq!(outcome.status(), 503, "{outcome:?}");
        assert!(outcome.headers().contains_key("retry-after"));
        assert!(
            matches!(
                outcome.kind(),
                OutcomeKind::DedupUnavailable | OutcomeKind::SinkUnavailable | OutcomeKind::Timeout
            ),
            "{outcome:?}"
        );
    }
    // Fail-open accepts through the outage, on its local store.
    let d = signed("fail_open_1");
    let outcome = fail_open_gate
        .receive(&d.headers, d.body.clone(), None)
        .await;
    assert_eq!(outcome.code(), "accepted", "{outcome:?}");
    let again = fail_open_gate
        .receive(&d.headers, d.body.clone(), None)
        .await;
    assert_eq!(again.code(), "duplicate", "{again:?}");
    assert_eq!(
        local_events.try_recv().unwrap().delivery_id(),
        Some("fail_open_1")
    );

    // Back: the same receiver (no restart) accepts the retries; the earlier deliveries
    // are duplicates.
    redis.restart();
    for i in 0..20 {
        let (_, last) = send_until_accepted(&gate, &signed(&format!("during_{i}")), 2000).await;
        assert_eq!(
            last.code(),
            "accepted",
            "during_{i} was half-written: {last:?}"
        );
        let (_, last) = send_until_accepted(&gate, &signed(&format!("before_{i}")), 2000).await;
        assert_eq!(last.code(), "duplicate", "{last:?}");
    }

    let mut conn = conn(&redis.url()).await;
    let counts = keys_in_stream(&mut conn, stream).await;
    let expected: BTreeMap<String, usize> = (0..20)
        .flat_map(|i| [format!("before_{i}"), format!("during_{i}")])
        .map(|id| (dedup_key(&id), 1))
        .collect();
    assert_eq!(counts, expected);
    redis.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_settings_are_checked_and_wait_without_replicas_fails_closed() {
    let Some(server) = Redis::start() else { return };
    let redis_url = server.url();
    let prefix = unique("sink");
    assert!(
        RedisStreamSink::builder()
            .stream("")
            .connect(&redis_url)
            .await
            .is_err()
    );
    assert!(
        RedisStreamSink::connect(&format!("{redis_url}?max_len=abc"))
            .await
            .is_err()
    );
    assert!(
        RedisDedupStore::builder()
            .claim_ttl(Duration::from_secs(10))
            .committed_ttl(Duration::from_secs(1))
            .connect(&redis_url)
            .await
            .is_err()
    );

    // The CI Redis has no replica: WAIT 1 cannot be satisfied, so the add is refused
    // (and the gate would answer 503) although the entry reached the primary.
    let sink = RedisStreamSink::connect(&format!(
        "{redis_url}?stream={prefix}:events&wait_replicas=1&wait_timeout_ms=20"
    ))
    .await
    .unwrap();
    let err = sink.add(&envelope("w1")).await.unwrap_err();
    assert!(err.to_string().contains("replicas"), "{err}");

    // Trimming keeps the stream near its bound.
    let trimmed = RedisStreamSink::builder()
        .stream(format!("{prefix}:trimmed"))
        .max_len(10)
        .connect(&redis_url)
        .await
        .unwrap();
    for i in 0..500 {
        trimmed.add(&envelope(&format!("t{i}"))).await.unwrap();
    }
    let mut conn = conn(&redis_url).await;
    let len: u64 = hookgate_redis::redis::cmd("XLEN")
        .arg(format!("{prefix}:trimmed"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(len < 500, "{len}");
    cleanup(&mut conn, &prefix).await;

    let dead = StreamDeadLetters::connect(&format!("{redis_url}?stream={prefix}:none"))
        .await
        .unwrap();
    assert!(dead.is_empty().await.unwrap());
    let _ = Arc::new(dead);
}
