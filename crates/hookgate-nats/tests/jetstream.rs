//! Fleets on a real NATS JetStream: every test starts a `nats-server -js` of its own on a free
//! port (skipped where `nats-server` is not installed, failed instead under
//! `HOOKGATE_REQUIRE_SERVICES=1`).
//! Every test uses streams and subjects of its own and deletes its streams at the end. No
//! test asserts how long anything took: waits are bounded polls.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hookgate::{
    FixedClock, Gate, MemoryDedupStore, Outcome, OutcomeKind, SchemeId, SignRequest,
    SignedDelivery, Signer, Verifier,
};
use hookgate_nats::async_nats::jetstream;
use hookgate_nats::{
    ATTEMPTS_HEADER, ERROR_HEADER, Envelope, HandlerResult, JetStreamQueue, JetStreamSink,
    JetStreamWorker, QueuedEvent, RetryPolicy,
};
use hookgate_testkit::Nats;
use tokio::sync::mpsc;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NOW: u64 = 1_700_000_000;

type Seen = Arc<Mutex<Vec<(String, u32)>>>;

/// A stream name and subject no other test or run uses.
fn unique() -> (String, String) {
    let tag = format!("{:012x}", fastrand::u64(..) >> 16);
    (format!("HGTEST_{tag}"), format!("hgtest.{tag}.events"))
}

fn url(nats: &Nats, stream: &str, subject: &str) -> String {
    format!("{}/?stream={stream}&subject={subject}", nats.url())
}

fn verifier() -> Verifier {
    Verifier::builder(SchemeId::StandardWebhooksV1)
        .secret(SECRET)
        .clock(FixedClock::from_unix(NOW))
        .build()
        .unwrap()
}

fn signed(id: &str) -> SignedDelivery {
    let body = format!(r#"{{"type":"invoice.paid","id":"{id}"}}"#);
    Signer::new(SchemeId::StandardWebhooksV1, SECRET)
        .unwrap()
        .sign(&SignRequest::new(body).id(id).timestamp(NOW as i64))
        .unwrap()
}

fn envelope(id: &str) -> Envelope {
    let delivery = signed(id);
    Envelope::from_event(&verifier().verify(&delivery.headers, delivery.body).unwrap())
}

async fn send_until_accepted(gate: &Gate, delivery: &SignedDelivery) -> Outcome {
    for _ in 0..400 {
        let outcome = gate
            .receive(&delivery.headers, delivery.body.clone(), None)
            .await;
        if outcome.is_success() {
            return outcome;
        }
        assert_eq!(outcome.status(), 503, "{outcome:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never accepted");
}

async fn eventually<F: FnMut() -> bool>(limit: Duration, what: &str, mut check: F) {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not reached within {limit:?}");
}

async fn context(nats: &Nats) -> jetstream::Context {
    jetstream::new(
        hookgate_nats::async_nats::connect(nats.address())
            .await
            .unwrap(),
    )
}

async fn delete_streams(nats: &Nats, stream: &str) {
    let context = context(nats).await;
    let _ = context.delete_stream(stream).await;
    let _ = context.delete_stream(format!("{stream}_DEAD")).await;
}

fn recording_handler(
    seen: &Seen,
) -> impl Fn(QueuedEvent) -> std::future::Ready<HandlerResult> + Send + Sync + 'static {
    let seen = seen.clone();
    move |event: QueuedEvent| {
        seen.lock()
            .unwrap()
            .push((event.dedup_key().to_owned(), event.attempt()));
        std::future::ready(HandlerResult::Ok)
    }
}

/// Two receivers without a shared dedup store, each with its own connection: every
/// delivery is sent to both at once, both accept it, and JetStream's `Nats-Msg-Id` dedup
/// keeps one copy, which the consumer sees once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_receivers_publish_each_delivery_once_and_the_consumer_sees_it_once() {
    let Some(nats) = Nats::start() else { return };
    let (stream, subject) = unique();
    let receiver = || async {
        Gate::builder(verifier())
            .dedup(MemoryDedupStore::new())
            .sink(
                JetStreamSink::connect(&url(&nats, &stream, &subject))
                    .await
                    .unwrap(),
            )
            .build()
            .unwrap()
    };
    let (a, b) = (receiver().await, receiver().await);

    let mut tasks = Vec::new();
    for i in 0..200 {
        let (a, b) = (a.clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            let delivery = signed(&format!("msg_{i}"));
            let other = delivery.clone();
            let (to_a, to_b) = tokio::join!(
                tokio::spawn(async move { send_until_accepted(&a, &delivery).await }),
                tokio::spawn(async move { send_until_accepted(&b, &other).await }),
            );
            // Each receiver only knows its own store: both accept.
            assert_eq!(to_a.unwrap().kind(), OutcomeKind::Accepted);
            assert_eq!(to_b.unwrap().kind(), OutcomeKind::Accepted);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut info = context(&nats).await.get_stream(&stream).await.unwrap();
    assert_eq!(info.info().await.unwrap().state.messages, 200);

    let seen: Seen = Arc::default();
    let queue = JetStreamQueue::connect(&url(&nats, &stream, &subject))
        .await
        .unwrap();
    let worker = JetStreamWorker::builder(queue, recording_handler(&seen))
        .start()
        .unwrap();
    eventually(Duration::from_secs(60), "200 events processed", || {
        worker.stats().processed == 200
    })
    .await;
    // Nothing more arrives.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (key, attempt) in seen.lock().unwrap().iter() {
        assert_eq!(*attempt, 1);
        *counts.entry(key.clone()).or_insert(0) += 1;
    }
    let expected: BTreeMap<String, usize> = (0..200)
        .map(|i| (format!("standard-webhooks-v1:id:msg_{i}"), 1))
        .collect();
    assert_eq!(counts, expected);
    worker.shutdown().await;
    // Work-queue retention: acknowledged events are gone.
    assert_eq!(info.info().await.unwrap().state.messages, 0);
    delete_streams(&nats, &stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_are_naked_with_backoff_and_failures_become_dead_letters() {
    let Some(nats) = Nats::start() else { return };
    let (stream, subject) = unique();
    let sink = JetStreamSink::connect(&url(&nats, &stream, &subject))
        .await
        .unwrap();
    for id in ["ok", "flaky", "poison", "exhausted"] {
        let (_, duplicate) = sink.publish(&envelope(id)).await.unwrap();
        assert!(!duplicate);
    }
    // The same id again within the window: JetStream says duplicate, stores nothing.
    assert!(sink.publish(&envelope("ok")).await.unwrap().1);

    let seen: Seen = Arc::default();
    let handler = {
        let seen = seen.clone();
        move |event: QueuedEvent| {
            let seen = seen.clone();
            async move {
                let id = event.delivery_id().unwrap().to_owned();
                seen.lock().unwrap().push((id.clone(), event.attempt()));
                match id.as_str() {
                    "flaky" if event.attempt() < 3 => HandlerResult::retry_because("not yet"),
                    "poison" => HandlerResult::fail("cannot parse"),
                    "exhausted" => HandlerResult::retry_after(Duration::from_millis(10)),
                    _ => HandlerResult::Ok,
                }
            }
        }
    };
    let queue = JetStreamQueue::connect(&url(&nats, &stream, &subject))
        .await
        .unwrap();
    let worker = JetStreamWorker::builder(queue, handler)
        .retry(
            RetryPolicy::new()
                .base(Duration::from_millis(50))
                .cap(Duration::from_millis(200))
                .max_attempts(4),
        )
        .poll_interval(Duration::from_millis(200))
        .start()
        .unwrap();
    eventually(
        Duration::from_secs(60),
        "ok, flaky done; poison, exhausted dead",
        || {
            let stats = worker.stats();
            stats.processed == 2 && stats.dead == 2
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
    worker.shutdown().await;

    let context = context(&nats).await;
    let dead = context.get_stream(format!("{stream}_DEAD")).await.unwrap();
    let mut letters = BTreeMap::new();
    for sequence in 1..=2 {
        let message = dead.get_raw_message(sequence).await.unwrap();
        let envelope = Envelope::from_json(&message.payload).unwrap();
        letters.insert(
            envelope.delivery_id.unwrap(),
            (
                message.headers.get(ERROR_HEADER).unwrap().to_string(),
                message.headers.get(ATTEMPTS_HEADER).unwrap().to_string(),
            ),
        );
        assert_eq!(message.subject.as_str(), format!("{subject}.dead"));
    }
    assert_eq!(
        letters["poison"],
        ("cannot parse".to_owned(), "1".to_owned())
    );
    assert!(letters["exhausted"].0.contains("gave up after 4 attempts"));
    assert_eq!(letters["exhausted"].1, "4");
    let mut events = context.get_stream(&stream).await.unwrap();
    assert_eq!(events.info().await.unwrap().state.messages, 0);
    delete_streams(&nats, &stream).await;
}

/// Worker A pulls events and dies mid-processing (its runtime, tasks and connection
/// gone, as with a killed process). Worker B on the same durable consumer gets them
/// redelivered after the lease and processes each once, as a second attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_killed_mid_processing_has_its_events_redelivered_to_another() {
    let Some(nats) = Nats::start() else { return };
    let (stream, subject) = unique();
    let sink = JetStreamSink::connect(&url(&nats, &stream, &subject))
        .await
        .unwrap();
    let ids: Vec<String> = (0..5).map(|i| format!("evt_{i}")).collect();
    for id in &ids {
        sink.publish(&envelope(id)).await.unwrap();
    }

    let (started_tx, mut started_rx) = mpsc::unbounded_channel::<String>();
    let runtime_a = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let url_a = url(&nats, &stream, &subject);
    runtime_a.spawn(async move {
        let handler = move |event: QueuedEvent| {
            let started = started_tx.clone();
            async move {
                let _ = started.send(event.dedup_key().to_owned());
                std::future::pending::<()>().await;
                HandlerResult::Ok
            }
        };
        let queue = JetStreamQueue::connect(&url_a).await.unwrap();
        let worker = JetStreamWorker::builder(queue, handler)
            .lease(Duration::from_secs(2))
            .start()
            .unwrap();
        std::future::pending::<()>().await;
        drop(worker);
    });
    let mut started = 0;
    while started < ids.len() {
        tokio::time::timeout(Duration::from_secs(60), started_rx.recv())
            .await
            .expect("worker A pulls every event")
            .unwrap();
        started += 1;
    }
    // Kill A: no ack, no nak, no progress from now on.
    runtime_a.shutdown_background();

    let seen: Seen = Arc::default();
    let queue = JetStreamQueue::connect(&url(&nats, &stream, &subject))
        .await
        .unwrap();
    let worker_b = JetStreamWorker::builder(queue, recording_handler(&seen))
        .poll_interval(Duration::from_millis(200))
        .start()
        .unwrap();
    let distinct = || {
        let mut keys: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|(k, _)| k.clone())
            .collect();
        keys.sort();
        keys.dedup();
        keys
    };
    eventually(
        Duration::from_secs(60),
        "worker B processes A's events",
        || distinct().len() == 5,
    )
    .await;
    let got = seen.lock().unwrap().clone();
    let keys = distinct();
    let expected: Vec<String> = ids
        .iter()
        .map(|id| format!("standard-webhooks-v1:id:{id}"))
        .collect();
    assert_eq!(keys, expected, "every event handed to B");
    // At least the second delivery. It can be a later one: a pull request that A left
    // open when it died may still take a redelivery before the server drops it, and that
    // delivery counts too.
    assert!(got.iter().all(|(_, attempt)| *attempt >= 2), "{got:?}");
    worker_b.shutdown().await;
    delete_streams(&nats, &stream).await;
}

/// Without JetStream's ack there is no 2xx: a stream deleted under a running receiver
/// gives 503s, and the stream checked at start-up must capture the subject.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_publish_ack_means_503_and_streams_are_checked_at_start_up() {
    let Some(nats) = Nats::start() else { return };
    let (stream, subject) = unique();
    let sink = JetStreamSink::builder()
        .stream(&stream)
        .subject(&subject)
        .ack_timeout(Duration::from_millis(500))
        .connect(&nats.url())
        .await
        .unwrap();
    assert_eq!(
        (sink.stream(), sink.subject()),
        (stream.as_str(), subject.as_str())
    );
    let gate = Gate::builder(verifier())
        .dedup(MemoryDedupStore::new())
        .sink(sink)
        .build()
        .unwrap();
    let d = signed("before");
    assert_eq!(
        gate.receive(&d.headers, d.body.clone(), None).await.code(),
        "accepted"
    );

    context(&nats).await.delete_stream(&stream).await.unwrap();
    let d = signed("after");
    let outcome = gate.receive(&d.headers, d.body.clone(), None).await;
    assert_eq!(outcome.status(), 503, "{outcome:?}");
    assert_eq!(outcome.code(), "sink_unavailable");
    // The claim was released: once the stream is back, the retry is accepted.
    let _recreated = JetStreamSink::connect(&url(&nats, &stream, &subject))
        .await
        .unwrap();
    assert_eq!(
        gate.receive(&d.headers, d.body.clone(), None).await.code(),
        "accepted"
    );

    // An existing stream that does not capture the subject is refused; check-only mode
    // does not create a missing one.
    let err = JetStreamSink::connect(&format!(
        "{}/?stream={stream}&subject=other.subject",
        nats.url()
    ))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("does not capture"), "{err}");
    let (missing, missing_subject) = unique();
    assert!(
        JetStreamSink::builder()
            .stream(&missing)
            .subject(missing_subject)
            .check_only()
            .connect(&nats.url())
            .await
            .is_err()
    );
    assert!(
        JetStreamSink::connect(&format!("{}/?bogus=1", nats.url()))
            .await
            .is_err()
    );
    delete_streams(&nats, &stream).await;
}
