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
    StreamWorker,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_lanes_are_refused_clearly() {
    let Some(server) = Redis::start() else { return };
    let url = format!("{}?stream={}", server.url(), unique("lanes"));
    let ordered = vec![
        Destination::new("billing", DestinationTarget::Exec("true".into()))
            .unwrap()
            .with_order_key("/customer".parse().unwrap()),
    ];
    let err = StreamQueue::builder(&url)
        .unwrap()
        .destinations(&ordered)
        .unwrap_err()
        .to_string();
    assert!(err.contains("order_key"), "{err}");
    let err = RedisStreamSink::builder()
        .destinations(Router::new(ordered).unwrap())
        .connect(&redis_part(&url))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("order_key") && err.contains("billing"),
        "{err}"
    );
}
