//! Destinations on Redis streams (issue 21), on a real Redis: the sink writes one copy per
//! matching destination in each destination's stream (and nothing again for a retry of the
//! same event), the queue skips held destinations, pauses cross processes, and each
//! destination dead-letters and replays on its own.

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
use hookgate::sink::Sink;
use hookgate::{SchemeId, SignRequest, Signer, VerifiedEvent};
use hookgate_queue::{
    Destination, DestinationTarget, EventFilter, FilterSpec, Queue, RetryPolicy, Router,
};
use hookgate_redis::{
    HandlerResult, QueuedEvent, RedisStreamSink, StreamDeadLetters, StreamPauses, StreamQueue,
    StreamWorker, lane_partition,
};

/// A verified event of type `kind` with delivery id `id`.
fn event(id: &str, kind: &str) -> VerifiedEvent {
    let body = format!(r#"{{"type":"{kind}","id":"{id}"}}"#);
    let signed = Signer::new(SchemeId::StandardWebhooksV1, SECRET)
        .unwrap()
        .sign(&SignRequest::new(body).id(id).timestamp(NOW as i64))
        .unwrap();
    verifier().verify(&signed.headers, signed.body).unwrap()
}

fn fast() -> RetryPolicy {
    RetryPolicy::new()
        .base(Duration::from_millis(20))
        .cap(Duration::from_millis(50))
        .max_attempts(2)
}

/// `billing` takes `invoice.*`, `audit` takes everything.
fn destinations() -> Vec<Destination> {
    let spec: FilterSpec = serde_json::from_str(r#"{ "type": "invoice.*" }"#).unwrap();
    vec![
        Destination::new("billing", DestinationTarget::Forward("http://b/".into()))
            .unwrap()
            .with_filter(EventFilter::compile(&spec).unwrap())
            .with_retry(fast())
            .unwrap(),
        Destination::new("audit", DestinationTarget::Exec("true".into()))
            .unwrap()
            .with_retry(fast())
            .unwrap(),
    ]
}

async fn routed_sink(url: &str, destinations: Vec<Destination>) -> RedisStreamSink {
    RedisStreamSink::builder()
        .stream(stream_of(url))
        .destinations(Router::new(destinations).unwrap())
        .connect(&redis_part(url))
        .await
        .unwrap()
}

fn stream_of(url: &str) -> String {
    url.split("stream=").nth(1).unwrap().to_owned()
}

fn redis_part(url: &str) -> String {
    url.split('?').next().unwrap().to_owned()
}

async fn queue(url: &str) -> StreamQueue {
    StreamQueue::builder(url)
        .unwrap()
        .destinations(&destinations())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_writes_one_copy_per_matching_destination_once() {
    let Some(server) = Redis::start() else { return };
    let prefix = unique("routes");
    let url = format!("{}?stream={prefix}", server.url());
    let sink = routed_sink(&url, destinations()).await;
    let charge = event("c1", "charge.failed");
    for e in [
        event("i1", "invoice.paid"),
        charge.clone(),
        event("i2", "invoice.voided"),
    ] {
        sink.enqueue(e).await.unwrap();
    }
    // A sender's retry of an event already written (its answer lost): nothing new.
    sink.enqueue(charge).await.unwrap();

    let mut conn = conn(&server.url()).await;
    let billing = keys_in_stream(&mut conn, &format!("{prefix}:billing")).await;
    let audit = keys_in_stream(&mut conn, &format!("{prefix}:audit")).await;
    let keys = |ids: &[&str]| -> BTreeMap<String, usize> {
        ids.iter().map(|id| (dedup_key(id), 1)).collect()
    };
    assert_eq!(billing, keys(&["i1", "i2"]));
    assert_eq!(audit, keys(&["i1", "c1", "i2"]));
    // Nothing in the plain stream; each copy names its destination.
    let plain: i64 = hookgate_redis::redis::cmd("XLEN")
        .arg(&prefix)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(plain, 0);

    // An event no destination takes is recorded as filtered.
    let picky = routed_sink(&url.replace(&prefix, &format!("{prefix}p")), {
        let mut d = destinations();
        d.truncate(1);
        d
    })
    .await;
    picky.enqueue(event("c2", "charge.failed")).await.unwrap();
    let filtered: StreamRangeReply = hookgate_redis::redis::cmd("XRANGE")
        .arg(format!("{prefix}p:filtered"))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(filtered.ids.len(), 1);
    assert_eq!(
        filtered.ids[0].get::<String>("dedup_key").unwrap(),
        dedup_key("c2")
    );
    assert_eq!(
        filtered.ids[0].get::<String>("event_type").unwrap(),
        "charge.failed"
    );
}

use hookgate_redis::redis::streams::StreamRangeReply;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_except_skips_held_destinations_and_pauses_cross_handles() {
    let Some(server) = Redis::start() else { return };
    let prefix = unique("held");
    let url = format!("{}?stream={prefix}", server.url());
    let sink = routed_sink(&url, destinations()).await;
    for id in ["i1", "i2", "i3"] {
        sink.enqueue(event(id, "invoice.paid")).await.unwrap();
    }
    let queue = queue(&url).await;
    let lease = Duration::from_secs(30);
    let wait = Duration::from_millis(50);
    let leased = queue
        .lease_except(10, lease, wait, vec!["billing".to_owned()])
        .await
        .unwrap();
    assert_eq!(leased.len(), 3);
    assert!(
        leased
            .iter()
            .all(|l| l.destination.as_deref() == Some("audit")),
        "{leased:?}"
    );
    for l in &leased {
        assert_eq!(
            l.event.as_ref().unwrap().destination(),
            Some("audit"),
            "the envelope names the destination too"
        );
    }
    // Everything of audit is leased; holding audit now leaves billing's.
    let leased = queue
        .lease_except(10, lease, wait, vec!["audit".to_owned()])
        .await
        .unwrap();
    assert_eq!(leased.len(), 3);
    assert!(
        leased
            .iter()
            .all(|l| l.destination.as_deref() == Some("billing"))
    );
    // Both held: nothing, after waiting at most the poll interval.
    let none = queue
        .lease_except(10, lease, wait, vec!["audit".into(), "billing".into()])
        .await
        .unwrap();
    assert!(none.is_empty());

    // A pause written by another process (handle) is what the queue reports.
    let other = StreamPauses::connect(&url).await.unwrap();
    assert!(queue.paused().await.unwrap().is_empty());
    assert!(other.pause("billing").await.unwrap());
    assert!(!other.pause("billing").await.unwrap());
    assert_eq!(queue.paused().await.unwrap(), ["billing"]);
    let second = StreamQueue::builder(&url)
        .unwrap()
        .destinations(&destinations())
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert_eq!(second.paused().await.unwrap(), ["billing"]);
    assert!(other.resume("billing").await.unwrap());
    assert!(!other.resume("billing").await.unwrap());
    assert!(second.paused().await.unwrap().is_empty());
    assert!(other.pause("paused").await.is_err(), "a reserved name");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_destination_dead_letters_and_replays_on_its_own() {
    let Some(server) = Redis::start() else { return };
    let prefix = unique("dead");
    let url = format!("{}?stream={prefix}", server.url());
    let sink = routed_sink(&url, destinations()).await;
    let ids = ["i1", "i2", "i3", "i4"];
    for id in ids {
        sink.enqueue(event(id, "invoice.paid")).await.unwrap();
    }

    type Seen = Arc<Mutex<Vec<(String, String, u32)>>>;
    let seen: Seen = Arc::default();
    let fixed = Arc::new(AtomicBool::new(false));
    let handler = {
        let (seen, fixed) = (seen.clone(), fixed.clone());
        move |event: QueuedEvent| {
            let (seen, fixed) = (seen.clone(), fixed.clone());
            async move {
                let destination = event.destination().unwrap_or("-").to_owned();
                let id = event.delivery_id().unwrap().to_owned();
                seen.lock()
                    .unwrap()
                    .push((destination.clone(), id, event.attempt()));
                if destination == "billing" && !fixed.load(Ordering::SeqCst) {
                    HandlerResult::retry_because("billing is down")
                } else {
                    HandlerResult::Ok
                }
            }
        }
    };
    let worker = StreamWorker::builder(queue(&url).await, handler)
        .destinations("shop", &destinations())
        .poll_interval(Duration::from_millis(50))
        .start()
        .unwrap();
    let dead_letters = StreamDeadLetters::connect(&url).await.unwrap();
    let billing_dead = dead_letters.clone().destination("billing").unwrap();
    let audit_dead = dead_letters.clone().destination("audit").unwrap();
    eventually(
        Duration::from_secs(30),
        "billing's 4 dead letters",
        || async { billing_dead.len().await.unwrap() == 4 },
    )
    .await;
    let count = |destination: &str| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(d, _, _)| d == destination)
            .count()
    };
    // Audit got every event once; billing tried each twice (its own retry policy).
    eventually(Duration::from_secs(10), "audit done", || async {
        count("audit") == 4
    })
    .await;
    assert_eq!(count("billing"), 8);
    assert_eq!(audit_dead.len().await.unwrap(), 0);
    let listed = billing_dead.list(10).await.unwrap();
    assert!(listed.iter().all(|d| {
        d.attempts == 2 && d.envelope.as_ref().unwrap().destination.as_deref() == Some("billing")
    }));

    // Replaying billing's dead letters reaches billing only.
    fixed.store(true, Ordering::SeqCst);
    assert_eq!(billing_dead.replay(100).await.unwrap(), 4);
    eventually(Duration::from_secs(30), "billing replayed", || async {
        count("billing") == 12
    })
    .await;
    worker.shutdown().await;
    assert_eq!(count("audit"), 4, "the replay did not touch audit");
    assert!(billing_dead.is_empty().await.unwrap());
    let last: Vec<u32> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(d, _, _)| d == "billing")
        .skip(8)
        .map(|(_, _, attempt)| *attempt)
        .collect();
    assert_eq!(last, [1, 1, 1, 1], "a replay starts its attempts again");
}

/// `ledger` delivers each customer's events in order (`order_key = "/customer"`).
fn ordered() -> Vec<Destination> {
    vec![
        Destination::new("ledger", DestinationTarget::Exec("true".into()))
            .unwrap()
            .with_order_key("/customer".parse().unwrap())
            .with_retry(
                RetryPolicy::new()
                    .base(Duration::from_millis(10))
                    .cap(Duration::from_millis(30))
                    .max_attempts(1000),
            )
            .unwrap(),
    ]
}

fn customer_event(id: &str, customer: &str) -> VerifiedEvent {
    let body = format!(r#"{{"type":"invoice.paid","id":"{id}","customer":"{customer}"}}"#);
    let signed = Signer::new(SchemeId::StandardWebhooksV1, SECRET)
        .unwrap()
        .sign(&SignRequest::new(body).id(id).timestamp(NOW as i64))
        .unwrap();
    verifier().verify(&signed.headers, signed.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ordered_lanes_keep_each_key_in_order_across_two_workers() {
    let Some(server) = Redis::start() else { return };
    let prefix = unique("lanes");
    let url = format!("{}?stream={prefix}", server.url());
    // Two customers in different lane partitions.
    let a = "cust-a";
    let b = (0..)
        .map(|n| format!("cust-b{n}"))
        .find(|b| lane_partition(b) != lane_partition(a))
        .unwrap();
    let sink = routed_sink(&url, ordered()).await;
    let sent = [
        ("a1", a),
        ("b1", &b),
        ("a2", a),
        ("b2", &b),
        ("a3", a),
        ("b3", &b),
    ];
    for (id, customer) in sent {
        sink.enqueue(customer_event(id, customer)).await.unwrap();
    }
    // The partitions hold them: nothing in the unordered stream.
    let mut conn = conn(&server.url()).await;
    let unordered: i64 = hookgate_redis::redis::cmd("XLEN")
        .arg(format!("{prefix}:ledger"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(unordered, 0);

    // Every call, in order: (delivery id, succeeded). a1 fails until b's lane is done:
    // it can only succeed if b's lane was not blocked behind a's failing head.
    type Calls = Arc<Mutex<Vec<(String, bool)>>>;
    let calls: Calls = Arc::default();
    let handler = {
        let calls = calls.clone();
        move |event: QueuedEvent| {
            let calls = calls.clone();
            async move {
                let id = event.delivery_id().unwrap().to_owned();
                let ok = id != "a1" || calls.lock().unwrap().iter().any(|(i, ok)| i == "b3" && *ok);
                calls.lock().unwrap().push((id, ok));
                // Long enough for the other worker to try the same lane meanwhile.
                tokio::time::sleep(Duration::from_millis(5)).await;
                if ok {
                    HandlerResult::Ok
                } else {
                    HandlerResult::retry_because("not before b3")
                }
            }
        }
    };
    let start = |consumer: &str| {
        let (url, handler, consumer) = (url.clone(), handler.clone(), consumer.to_owned());
        async move {
            let queue = StreamQueue::builder(&url)
                .unwrap()
                .consumer(consumer)
                .destinations(&ordered())
                .unwrap()
                .connect()
                .await
                .unwrap();
            StreamWorker::builder(queue, handler)
                .destinations("shop", &ordered())
                .concurrency(4)
                .poll_interval(Duration::from_millis(20))
                .start()
                .unwrap()
        }
    };
    let (first, second) = (start("w1").await, start("w2").await);
    eventually(Duration::from_secs(60), "every event delivered", || async {
        calls.lock().unwrap().iter().filter(|(_, ok)| *ok).count() == 6
    })
    .await;
    first.shutdown().await;
    second.shutdown().await;

    let calls = calls.lock().unwrap().clone();
    let done: Vec<&str> = calls
        .iter()
        .filter(|(_, ok)| *ok)
        .map(|(id, _)| id.as_str())
        .collect();
    let of = |lane: char| -> Vec<&str> {
        done.iter()
            .copied()
            .filter(|id| id.starts_with(lane))
            .collect()
    };
    assert_eq!(of('a'), ["a1", "a2", "a3"], "{calls:?}");
    assert_eq!(of('b'), ["b1", "b2", "b3"], "{calls:?}");
    // a's later events were not even tried before its head succeeded.
    let head_done = calls.iter().position(|(i, ok)| i == "a1" && *ok).unwrap();
    assert!(
        calls[..head_done]
            .iter()
            .all(|(i, _)| i == "a1" || i.starts_with('b')),
        "{calls:?}"
    );
    assert!(calls[..head_done].iter().filter(|(i, _)| i == "a1").count() >= 2);
    // Each event once when it succeeded: no lane ran two deliveries at once.
    assert_eq!(done.len(), 6, "{calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_releases_its_lane_and_replays_into_it() {
    let Some(server) = Redis::start() else { return };
    let prefix = unique("lanedead");
    let url = format!("{}?stream={prefix}", server.url());
    let ledger = vec![
        Destination::new("ledger", DestinationTarget::Exec("true".into()))
            .unwrap()
            .with_order_key("/customer".parse().unwrap())
            .with_retry(fast())
            .unwrap(),
    ];
    let sink = routed_sink(&url, ledger.clone()).await;
    for id in ["a1", "a2"] {
        sink.enqueue(customer_event(id, "cust-a")).await.unwrap();
    }
    let calls: Arc<Mutex<Vec<(String, u32)>>> = Arc::default();
    let fixed = Arc::new(AtomicBool::new(false));
    let handler = {
        let (calls, fixed) = (calls.clone(), fixed.clone());
        move |event: QueuedEvent| {
            let (calls, fixed) = (calls.clone(), fixed.clone());
            async move {
                let id = event.delivery_id().unwrap().to_owned();
                calls.lock().unwrap().push((id.clone(), event.attempt()));
                if id == "a1" && !fixed.load(Ordering::SeqCst) {
                    HandlerResult::retry_because("a1 is poison")
                } else {
                    HandlerResult::Ok
                }
            }
        }
    };
    let queue = StreamQueue::builder(&url)
        .unwrap()
        .destinations(&ledger)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let worker = StreamWorker::builder(queue, handler)
        .destinations("shop", &ledger)
        .poll_interval(Duration::from_millis(20))
        .start()
        .unwrap();
    let dead = StreamDeadLetters::connect(&url)
        .await
        .unwrap()
        .destination("ledger")
        .unwrap();
    eventually(Duration::from_secs(30), "a1 dead, a2 delivered", || async {
        dead.len().await.unwrap() == 1 && calls.lock().unwrap().iter().any(|(i, _)| i == "a2")
    })
    .await;
    // a1 ran its two attempts as the lane's head, then its dead letter let a2 go.
    assert_eq!(
        calls.lock().unwrap().clone(),
        [
            ("a1".to_owned(), 1),
            ("a1".to_owned(), 2),
            ("a2".to_owned(), 1)
        ]
    );
    // The dead letter remembers its lane partition; the replay goes back there.
    let mut conn = conn(&server.url()).await;
    let letters: StreamRangeReply = hookgate_redis::redis::cmd("XRANGE")
        .arg(format!("{prefix}:ledger:dead"))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        letters.ids[0].get::<String>("source").unwrap(),
        format!("{prefix}:ledger:p{}", lane_partition("cust-a"))
    );
    fixed.store(true, Ordering::SeqCst);
    assert_eq!(dead.replay(10).await.unwrap(), 1);
    eventually(Duration::from_secs(30), "a1 replayed", || async {
        calls.lock().unwrap().len() == 4
    })
    .await;
    worker.shutdown().await;
    assert_eq!(calls.lock().unwrap()[3], ("a1".to_owned(), 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_head_given_back_at_shutdown_keeps_its_lane_uncounted() {
    let Some(server) = Redis::start() else { return };
    let url = format!("{}?stream={}", server.url(), unique("lanestop"));
    let sink = routed_sink(&url, ordered()).await;
    for id in ["a1", "a2"] {
        sink.enqueue(customer_event(id, "cust-a")).await.unwrap();
    }
    let queue = |consumer: &'static str| {
        let url = url.clone();
        async move {
            StreamQueue::builder(&url)
                .unwrap()
                .consumer(consumer)
                .destinations(&ordered())
                .unwrap()
                .connect()
                .await
                .unwrap()
        }
    };
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stuck = StreamWorker::builder(queue("w1").await, move |event: QueuedEvent| {
        let started = started_tx.clone();
        async move {
            let _ = started.send(event.delivery_id().unwrap().to_owned());
            std::future::pending::<()>().await;
            HandlerResult::Ok
        }
    })
    .destinations("shop", &ordered())
    .shutdown_grace(Duration::from_millis(100))
    .start()
    .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(60), started_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, "a1");
    assert_eq!(stuck.shutdown().await.released, 1);

    // Another worker: a1 again first (still the lane's head), attempt 1; then a2.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, u32)>();
    let next = StreamWorker::builder(queue("w2").await, move |event: QueuedEvent| {
        let tx = tx.clone();
        async move {
            let _ = tx.send((event.delivery_id().unwrap().to_owned(), event.attempt()));
            HandlerResult::Ok
        }
    })
    .destinations("shop", &ordered())
    .poll_interval(Duration::from_millis(20))
    .start()
    .unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(
            tokio::time::timeout(Duration::from_secs(60), rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    next.shutdown().await;
    assert_eq!(seen, [("a1".to_owned(), 1), ("a2".to_owned(), 1)]);
}
