//! The Redis Streams worker on a real Redis: retries with backoff, dead letters and their
//! replay, graceful shutdown, and a consumer killed mid-processing whose events another
//! consumer takes over.

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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use hookgate_redis::{
    HandlerResult, QueuedEvent, RedisStreamSink, RetryPolicy, StreamDeadLetters, StreamQueue,
    StreamWorker,
};
use tokio::sync::mpsc;

type Seen = Arc<Mutex<Vec<(String, u32)>>>;

fn fast_policy() -> RetryPolicy {
    RetryPolicy::new()
        .base(Duration::from_millis(50))
        .cap(Duration::from_millis(200))
        .max_attempts(4)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_back_off_then_succeed_and_failures_become_replayable_dead_letters() {
    let Some(server) = Redis::start() else { return };
    let redis_url = server.url();
    let prefix = unique("worker");
    let stream = format!("{prefix}:events");
    let url = format!("{redis_url}?stream={stream}");
    let sink = RedisStreamSink::connect(&url).await.unwrap();
    for id in ["ok", "flaky", "poison", "exhausted"] {
        sink.add(&envelope(id)).await.unwrap();
    }

    let seen: Seen = Arc::default();
    let fixed = Arc::new(AtomicBool::new(false));
    let handler = {
        let (seen, fixed) = (seen.clone(), fixed.clone());
        move |event: QueuedEvent| {
            let (seen, fixed) = (seen.clone(), fixed.clone());
            async move {
                let id = event.delivery_id().unwrap().to_owned();
                seen.lock().unwrap().push((id.clone(), event.attempt()));
                match id.as_str() {
                    "flaky" if event.attempt() < 3 => HandlerResult::retry_because("not yet"),
                    "poison" if !fixed.load(Ordering::SeqCst) => {
                        HandlerResult::fail("cannot parse")
                    }
                    "exhausted" if !fixed.load(Ordering::SeqCst) => {
                        HandlerResult::retry_after(Duration::from_millis(10))
                    }
                    _ => HandlerResult::Ok,
                }
            }
        }
    };
    let queue = StreamQueue::connect(&url).await.unwrap();
    let worker = StreamWorker::builder(queue, handler)
        .retry(fast_policy())
        .poll_interval(Duration::from_millis(50))
        .start()
        .unwrap();

    eventually(
        Duration::from_secs(60),
        "ok, flaky done; poison, exhausted dead",
        || {
            let stats = worker.stats();
            async move { stats.processed == 2 && stats.dead == 2 }
        },
    )
    .await;
    let attempts = |id: &str| -> Vec<u32> {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(seen_id, _)| seen_id == id)
            .map(|(_, attempt)| *attempt)
            .collect()
    };
    assert_eq!(attempts("ok"), [1]);
    assert_eq!(attempts("flaky"), [1, 2, 3]);
    assert_eq!(attempts("poison"), [1]);
    assert_eq!(attempts("exhausted"), [1, 2, 3, 4]);

    let dead = StreamDeadLetters::connect(&url).await.unwrap();
    let letters = dead.list(10).await.unwrap();
    let reasons: BTreeMap<String, (u32, String)> = letters
        .iter()
        .map(|l| {
            let envelope = l.envelope.as_ref().unwrap();
            (
                envelope.delivery_id.clone().unwrap(),
                (l.attempts, l.error.clone()),
            )
        })
        .collect();
    assert_eq!(reasons["poison"], (1, "cannot parse".to_owned()));
    assert_eq!(reasons["exhausted"].0, 4);
    assert!(reasons["exhausted"].1.contains("gave up after 4 attempts"));

    // Fixed: the dead letters go back and are processed, attempts starting over.
    fixed.store(true, Ordering::SeqCst);
    assert_eq!(dead.replay(10).await.unwrap(), 2);
    assert!(dead.is_empty().await.unwrap());
    eventually(Duration::from_secs(60), "replayed events processed", || {
        let stats = worker.stats();
        async move { stats.processed == 4 }
    })
    .await;
    assert_eq!(attempts("poison"), [1, 1]);

    let report = worker.shutdown().await;
    assert_eq!(report.released, 0);
    // Handled entries were deleted; nothing waits in the delayed set.
    let mut conn = conn(&redis_url).await;
    assert!(keys_in_stream(&mut conn, &stream).await.is_empty());
    let delayed: u64 = hookgate_redis::redis::cmd("ZCARD")
        .arg(format!("{stream}:delayed"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(delayed, 0);
    cleanup(&mut conn, &prefix).await;
}

/// Consumer A takes events and dies mid-processing (its runtime, tasks and connections
/// gone, as with a killed process). Consumer B in the same group takes them over after
/// the lease and processes each once, as a second attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_killed_mid_processing_has_its_events_redelivered_to_another() {
    let Some(server) = Redis::start() else { return };
    let redis_url = server.url();
    let prefix = unique("takeover");
    let stream = format!("{prefix}:events");
    let url = format!("{redis_url}?stream={stream}");
    let sink = RedisStreamSink::connect(&url).await.unwrap();
    let ids: Vec<String> = (0..5).map(|i| format!("evt_{i}")).collect();
    for id in &ids {
        sink.add(&envelope(id)).await.unwrap();
    }

    // Consumer A, in a runtime of its own: its handler starts and never finishes.
    let (started_tx, mut started_rx) = mpsc::unbounded_channel::<String>();
    let runtime_a = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let url_a = url.clone();
    runtime_a.spawn(async move {
        let handler = move |event: QueuedEvent| {
            let started = started_tx.clone();
            async move {
                let _ = started.send(event.delivery_id().unwrap().to_owned());
                std::future::pending::<()>().await;
                HandlerResult::Ok
            }
        };
        let queue = StreamQueue::builder(&url_a)
            .unwrap()
            .consumer("consumer-a")
            .connect()
            .await
            .unwrap();
        let worker = StreamWorker::builder(queue, handler)
            .lease(Duration::from_millis(500))
            .start()
            .unwrap();
        std::future::pending::<()>().await;
        drop(worker);
    });
    let mut started = Vec::new();
    while started.len() < ids.len() {
        let id = tokio::time::timeout(Duration::from_secs(60), started_rx.recv())
            .await
            .expect("consumer A takes every event")
            .unwrap();
        started.push(id);
    }
    // Kill A: no shutdown, no acknowledgement, no lease renewal from now on.
    runtime_a.shutdown_background();

    let seen: Seen = Arc::default();
    let handler = {
        let seen = seen.clone();
        move |event: QueuedEvent| {
            let seen = seen.clone();
            async move {
                seen.lock()
                    .unwrap()
                    .push((event.delivery_id().unwrap().to_owned(), event.attempt()));
                HandlerResult::Ok
            }
        }
    };
    let queue = StreamQueue::builder(&url)
        .unwrap()
        .consumer("consumer-b")
        .connect()
        .await
        .unwrap();
    let worker_b = StreamWorker::builder(queue, handler)
        .lease(Duration::from_millis(500))
        .poll_interval(Duration::from_millis(100))
        .start()
        .unwrap();
    eventually(
        Duration::from_secs(60),
        "consumer B processes A's events",
        || {
            let n = worker_b.stats().processed;
            async move { n == 5 }
        },
    )
    .await;
    let mut got = seen.lock().unwrap().clone();
    got.sort();
    let expected: Vec<(String, u32)> = ids.iter().map(|id| (id.clone(), 2)).collect();
    assert_eq!(got, expected, "each event once more, as attempt 2");
    assert_eq!(worker_b.queue().consumer(), "consumer-b");
    worker_b.shutdown().await;

    let mut conn = conn(&redis_url).await;
    assert!(keys_in_stream(&mut conn, &stream).await.is_empty());
    cleanup(&mut conn, &prefix).await;
}

/// Shutdown lets a running handler finish within the grace period and gives back what it
/// cannot finish, without counting the attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_gives_unfinished_events_back_uncounted() {
    let Some(server) = Redis::start() else { return };
    let redis_url = server.url();
    let prefix = unique("shutdown");
    let stream = format!("{prefix}:events");
    let url = format!("{redis_url}?stream={stream}");
    let sink = RedisStreamSink::connect(&url).await.unwrap();
    sink.add(&envelope("slow")).await.unwrap();

    let (started_tx, mut started_rx) = mpsc::unbounded_channel::<()>();
    let queue = StreamQueue::connect(&url).await.unwrap();
    let worker = StreamWorker::builder(queue, move |_event: QueuedEvent| {
        let started = started_tx.clone();
        async move {
            let _ = started.send(());
            std::future::pending::<()>().await;
            HandlerResult::Ok
        }
    })
    .shutdown_grace(Duration::from_millis(100))
    .start()
    .unwrap();
    tokio::time::timeout(Duration::from_secs(60), started_rx.recv())
        .await
        .unwrap()
        .unwrap();
    let report = worker.shutdown().await;
    assert_eq!(report.released, 1);

    // The event is back in the stream with no attempt counted: the next worker sees
    // attempt 1.
    let (tx, mut rx) = mpsc::unbounded_channel::<u32>();
    let queue = StreamQueue::connect(&url).await.unwrap();
    let next = StreamWorker::builder(queue, move |event: QueuedEvent| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(event.attempt());
            HandlerResult::Ok
        }
    })
    .start()
    .unwrap();
    let attempt = tokio::time::timeout(Duration::from_secs(60), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(attempt, 1);
    next.shutdown().await;
    let mut conn = conn(&redis_url).await;
    cleanup(&mut conn, &prefix).await;
}
