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
    JetStreamWorker, QueuedEvent,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_lanes_and_dotted_names_are_refused_clearly() {
    let Some(server) = Nats::start() else { return };
    let url = unique_url(&server);
    let ordered = vec![
        Destination::new("billing", DestinationTarget::Exec("true".into()))
            .unwrap()
            .with_order_key("/customer".parse().unwrap()),
    ];
    let err = JetStreamQueue::builder(&url)
        .unwrap()
        .destinations(&ordered)
        .unwrap_err()
        .to_string();
    assert!(err.contains("order_key"), "{err}");
    let err = JetStreamSink::connect_with_destinations(&url, Some(Router::new(ordered).unwrap()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("order_key") && err.contains("billing"),
        "{err}"
    );
    let dotted = vec![Destination::new("a.b", DestinationTarget::Exec("true".into())).unwrap()];
    let err = JetStreamQueue::builder(&url)
        .unwrap()
        .destinations(&dotted)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no ."), "{err}");
}
