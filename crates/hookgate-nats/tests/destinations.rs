//! Destinations on JetStream (issue 21), on a real `nats-server -js` of the test's own:
//! the sink publishes one copy per matching destination on its subject (and no second copy
//! for a retry of the same event), the queue skips held destinations' consumers, pauses
//! cross processes through a key-value bucket, and each destination dead-letters and
//! replays on its own. Waits are bounded polls.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookgate::sink::Sink;
use hookgate::{FixedClock, SchemeId, SignRequest, Signer, VerifiedEvent, Verifier};
use hookgate_nats::{
    HandlerResult, JetStreamDeadLetters, JetStreamPauses, JetStreamQueue, JetStreamSink,
    JetStreamWorker, QueuedEvent, lane_partition,
};
use hookgate_queue::{
    Destination, DestinationTarget, EventFilter, FilterSpec, Queue, RetryPolicy, Router,
};
use hookgate_testkit::Nats;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NOW: u64 = 1_700_000_000;

fn unique_url(nats: &Nats) -> String {
    let tag = format!("{:012x}", fastrand::u64(..) >> 16);
    format!("{}/?stream=HGD_{tag}&subject=hgd.{tag}", nats.url())
}

/// A verified event of type `kind` with delivery id `id`.
fn event(id: &str, kind: &str) -> VerifiedEvent {
    let body = format!(r#"{{"type":"{kind}","id":"{id}"}}"#);
    let signed = Signer::new(SchemeId::StandardWebhooksV1, SECRET)
        .unwrap()
        .sign(&SignRequest::new(body).id(id).timestamp(NOW as i64))
        .unwrap();
    Verifier::builder(SchemeId::StandardWebhooksV1)
        .secret(SECRET)
        .clock(FixedClock::from_unix(NOW))
        .build()
        .unwrap()
        .verify(&signed.headers, signed.body)
        .unwrap()
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

async fn routed_sink(url: &str, destinations: Vec<Destination>) -> JetStreamSink {
    JetStreamSink::connect_with_destinations(url, Some(Router::new(destinations).unwrap()))
        .await
        .unwrap()
}

async fn queue(url: &str) -> JetStreamQueue {
    JetStreamQueue::builder(url)
        .unwrap()
        .destinations(&destinations())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// Polls `check` every 20 ms until it holds, for at most `limit`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
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

/// (destination, delivery id) → copies, of what `leased` holds.
fn copies<T>(
    leased: &[hookgate_queue::Leased<T, QueuedEvent>],
) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for l in leased {
        let event = l.event.as_ref().unwrap();
        assert_eq!(
            l.destination.as_deref(),
            event.destination(),
            "the envelope names it too"
        );
        let key = (
            l.destination.clone().unwrap(),
            event.delivery_id().unwrap().to_owned(),
        );
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

fn expect(pairs: &[(&str, &str)]) -> BTreeMap<(String, String), usize> {
    pairs
        .iter()
        .map(|(d, id)| (((*d).to_owned(), (*id).to_owned()), 1))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_lease_except_and_pauses() {
    let Some(server) = Nats::start() else { return };
    let url = unique_url(&server);
    let sink = routed_sink(&url, destinations()).await;
    let charge = event("c1", "charge.failed");
    for e in [
        event("i1", "invoice.paid"),
        charge.clone(),
        event("i2", "invoice.voided"),
    ] {
        sink.enqueue(e).await.unwrap();
    }
    // A sender's retry of an event already stored: its copies are duplicates.
    sink.enqueue(charge).await.unwrap();

    let queue = queue(&url).await;
    let lease = Duration::from_secs(30);
    let wait = Duration::from_millis(200);
    let mut audit = Vec::new();
    while audit.len() < 3 {
        let got = queue
            .lease_except(10, lease, wait, vec!["billing".to_owned()])
            .await
            .unwrap();
        assert!(!got.is_empty(), "audit's copies: {audit:?}");
        audit.extend(got);
    }
    assert_eq!(
        copies(&audit),
        expect(&[("audit", "i1"), ("audit", "c1"), ("audit", "i2")])
    );
    let billing = queue
        .lease_except(10, lease, wait, vec!["audit".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        copies(&billing),
        expect(&[("billing", "i1"), ("billing", "i2")])
    );
    // Nothing more anywhere: no duplicate copy of c1.
    assert!(queue.lease(10, lease, wait).await.unwrap().is_empty());
    let none = queue
        .lease_except(10, lease, wait, vec!["audit".into(), "billing".into()])
        .await
        .unwrap();
    assert!(none.is_empty());

    // A pause written by another process (handle) is what every queue reports.
    let other = JetStreamPauses::connect(&url).await.unwrap();
    assert!(queue.paused().await.unwrap().is_empty());
    assert!(other.pause("billing").await.unwrap());
    assert!(!other.pause("billing").await.unwrap());
    assert_eq!(queue.paused().await.unwrap(), ["billing"]);
    let second = JetStreamQueue::builder(&url)
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_destination_dead_letters_and_replays_on_its_own() {
    let Some(server) = Nats::start() else { return };
    let url = unique_url(&server);
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
    let worker = JetStreamWorker::builder(queue(&url).await, handler)
        .destinations("shop", &destinations())
        .poll_interval(Duration::from_millis(50))
        .start()
        .unwrap();
    let dead_letters = JetStreamDeadLetters::connect(&url).await.unwrap();
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
    Verifier::builder(SchemeId::StandardWebhooksV1)
        .secret(SECRET)
        .clock(FixedClock::from_unix(NOW))
        .build()
        .unwrap()
        .verify(&signed.headers, signed.body)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ordered_lanes_keep_each_key_in_order_across_two_workers() {
    let Some(server) = Nats::start() else { return };
    let url = unique_url(&server);
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
    let start = |_consumer: &str| {
        let (url, handler) = (url.clone(), handler.clone());
        async move {
            let queue = JetStreamQueue::builder(&url)
                .unwrap()
                .destinations(&ordered())
                .unwrap()
                .connect()
                .await
                .unwrap();
            JetStreamWorker::builder(queue, handler)
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
    let Some(server) = Nats::start() else { return };
    let url = unique_url(&server);
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
    let queue = JetStreamQueue::builder(&url)
        .unwrap()
        .destinations(&ledger)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let worker = JetStreamWorker::builder(queue, handler)
        .destinations("shop", &ledger)
        .poll_interval(Duration::from_millis(20))
        .start()
        .unwrap();
    let dead = JetStreamDeadLetters::connect(&url)
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
    let stream = url
        .split("stream=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let client = hookgate_nats::async_nats::connect(server.address())
        .await
        .unwrap();
    let dead_stream = hookgate_nats::async_nats::jetstream::new(client)
        .get_stream(format!("{stream}_DEAD"))
        .await
        .unwrap();
    let letter = dead_stream.get_raw_message(1).await.unwrap();
    let source = letter.headers.get(hookgate_nats::SOURCE_HEADER).unwrap();
    assert!(
        source
            .as_str()
            .ends_with(&format!(".ledger~p{}", lane_partition("cust-a"))),
        "{source:?}"
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
async fn dotted_names_are_refused_clearly() {
    let Some(server) = Nats::start() else { return };
    let url = unique_url(&server);
    let dotted = vec![Destination::new("a.b", DestinationTarget::Exec("true".into())).unwrap()];
    let err = JetStreamQueue::builder(&url)
        .unwrap()
        .destinations(&dotted)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no ."), "{err}");
    let err = JetStreamSink::connect_with_destinations(&url, Some(Router::new(dotted).unwrap()))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no ."), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_no_destination_takes_is_stored_on_the_filtered_subject_once() {
    let Some(server) = Nats::start() else { return };
    let tag = format!("{:012x}", fastrand::u64(..) >> 16);
    let url = format!("{}/?stream=HGF_{tag}&subject=hgf.{tag}", server.url());
    let billing_only: Vec<Destination> = destinations().into_iter().take(1).collect();
    let sink = routed_sink(&url, billing_only).await;
    let charge = event("c1", "charge.failed");
    sink.enqueue(charge.clone()).await.unwrap();
    // A sender's retry: the same message id, dropped as a duplicate.
    sink.enqueue(charge).await.unwrap();

    let client = async_nats::connect(server.url()).await.unwrap();
    let stream = async_nats::jetstream::new(client)
        .get_stream(format!("HGF_{tag}"))
        .await
        .unwrap();
    let kept = stream
        .get_last_raw_message_by_subject(&format!("hgf.{tag}.~filtered"))
        .await
        .unwrap();
    let envelope: serde_json::Value = serde_json::from_slice(&kept.payload).unwrap();
    assert_eq!(envelope["delivery_id"], "c1");
    assert_eq!(envelope["event_type"], "charge.failed");
    let mut stream = stream;
    assert_eq!(
        stream.info().await.unwrap().state.messages,
        1,
        "stored once"
    );
}
