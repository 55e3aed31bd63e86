//! The inbox behind the gate: 2xx only after a durable copy, duplicates answered without a
//! second copy, claims that never swallow a retry.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{ManualClock, SECRET};
use hookgate::dedup::{Claim, DedupStore, KeyState};
use hookgate::{ChannelSink, Gate, SchemeId, SignRequest, SignedDelivery, Signer, Verifier};
use hookgate_inbox::{Inbox, LogQuery, Status};

fn delivery(id: &str) -> SignedDelivery {
    Signer::new(SchemeId::StandardWebhooksV1, SECRET)
        .unwrap()
        .sign(&SignRequest::new(format!(r#"{{"type":"ping","id":"{id}"}}"#)).id(id))
        .unwrap()
}

fn verifier() -> Verifier {
    Verifier::builder(SchemeId::StandardWebhooksV1)
        .secret(SECRET)
        .build()
        .unwrap()
}

#[tokio::test]
async fn accepted_once_then_duplicate_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(dir.path().join("inbox.db")).unwrap();
    let gate = inbox.gate(verifier()).build().unwrap();
    let d = delivery("msg_1");

    let first = gate.receive(&d.headers, d.body.clone(), None).await;
    assert_eq!((first.status(), first.code()), (200, "accepted"));
    // Durable before the answer: the row is there as soon as the 2xx is.
    assert_eq!(inbox.status_counts().await.unwrap().received, 1);

    let again = gate.receive(&d.headers, d.body.clone(), None).await;
    assert_eq!((again.status(), again.code()), (200, "duplicate"));
    let forged = gate.receive(&d.headers, "{}", None).await;
    assert_eq!(forged.status(), 401);

    let entries = inbox.query(LogQuery::new()).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].delivery_id.as_deref(), Some("msg_1"));
    assert_eq!(inbox.stats().events_stored, 1);
}

#[tokio::test]
async fn a_retry_after_a_restart_is_a_duplicate_found_by_the_enqueue_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.db");
    let d = delivery("msg_before_restart");
    {
        let inbox = Inbox::open(&path).unwrap();
        let gate = inbox.gate(verifier()).build().unwrap();
        let first = gate.receive(&d.headers, d.body.clone(), None).await;
        assert_eq!(first.code(), "accepted");
    }
    // A new process: no claim, nothing in memory; the key lives only in the file.
    let inbox = Inbox::open(&path).unwrap();
    let gate = inbox.gate(verifier()).build().unwrap();
    let again = gate.receive(&d.headers, d.body.clone(), None).await;
    assert_eq!((again.status(), again.code()), (200, "duplicate"));
    assert_eq!(inbox.status_counts().await.unwrap().total(), 1);
    assert_eq!(inbox.stats().duplicates, 1);
    // Now the key is also claimed-and-committed in memory: still a duplicate.
    let third = gate.receive(&d.headers, d.body.clone(), None).await;
    assert_eq!(third.code(), "duplicate");
    assert_eq!(inbox.status_counts().await.unwrap().total(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copies_store_one_event_and_never_2xx_before_it_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(dir.path().join("inbox.db")).unwrap();
    let gate = inbox.gate(verifier()).build().unwrap();
    let d = delivery("msg_1");
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (gate, d) = (gate.clone(), d.clone());
        tasks.push(tokio::spawn(async move {
            gate.receive(&d.headers, d.body.clone(), None).await
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        let outcome = task.await.unwrap();
        match outcome.code() {
            "accepted" => accepted += 1,
            "duplicate" | "in_flight" => {}
            other => panic!("unexpected outcome {other}"),
        }
    }
    assert_eq!(accepted, 1);
    assert_eq!(
        inbox
            .query(LogQuery::new().status(Status::Received))
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn claims_block_copies_in_flight_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new());
    let inbox = Inbox::builder(dir.path().join("inbox.db"))
        .clock(clock.clone())
        .claim_ttl(Duration::from_secs(30))
        .no_scheduled_pruning()
        .open()
        .unwrap();
    let Claim::New(token) = inbox.claim("k").await.unwrap() else {
        panic!("first claim must be new")
    };
    assert_eq!(inbox.claim("k").await.unwrap(), Claim::InFlight);
    assert_eq!(inbox.lookup("k").await.unwrap(), KeyState::InFlight);

    // A claim never committed (the process "hung") expires, and the retry gets through.
    clock.advance(Duration::from_secs(31));
    let Claim::New(second) = inbox.claim("k").await.unwrap() else {
        panic!("expired claim must be replaced")
    };
    // The first claim's late release does not remove the second one.
    inbox.release("k", token).await.unwrap();
    assert_eq!(inbox.claim("k").await.unwrap(), Claim::InFlight);
    inbox.release("k", second).await.unwrap();
    assert_eq!(inbox.lookup("k").await.unwrap(), KeyState::Absent);
}

#[tokio::test]
async fn as_a_dedup_store_for_another_sink_commit_writes_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(dir.path().join("inbox.db")).unwrap();
    let (sink, mut events) = ChannelSink::bounded(16);
    let gate = Gate::builder(verifier())
        .dedup(inbox.clone())
        .sink(sink)
        .build()
        .unwrap();
    let d = delivery("msg_1");
    let first = gate.receive(&d.headers, d.body.clone(), None).await;
    assert_eq!(first.code(), "accepted");
    let key = events.try_recv().unwrap().dedup_key().to_owned();
    assert_eq!(inbox.lookup(&key).await.unwrap(), KeyState::Committed);
    let again = gate.receive(&d.headers, d.body.clone(), None).await;
    assert_eq!(again.code(), "duplicate");
    // The inbox stored no event: the channel was the sink.
    assert_eq!(inbox.status_counts().await.unwrap().total(), 0);
    // The commit survives a restart.
    drop(gate);
    drop(inbox);
    let inbox = Inbox::open(dir.path().join("inbox.db")).unwrap();
    assert_eq!(inbox.claim(&key).await.unwrap(), Claim::Duplicate);
}

#[tokio::test]
async fn a_closed_or_full_inbox_answers_503() {
    let dir = tempfile::tempdir().unwrap();
    // A database path that cannot be written: a directory.
    let blocked = dir.path().join("blocked");
    std::fs::create_dir(&blocked).unwrap();
    assert!(Inbox::open(&blocked).is_err());

    let inbox = Inbox::builder(dir.path().join("inbox.db"))
        .queue_capacity(1)
        .open()
        .unwrap();
    let gate = inbox.gate(verifier()).build().unwrap();
    // Fill the writer queue faster than it drains: some answers may be sink_full, and
    // every answer is either accepted or a 503 asking to retry.
    let mut tasks = Vec::new();
    for n in 0..64 {
        let (gate, d) = (gate.clone(), delivery(&format!("msg_{n}")));
        tasks.push(tokio::spawn(async move {
            gate.receive(&d.headers, d.body.clone(), None).await
        }));
    }
    let mut accepted = 0u64;
    for task in tasks {
        let outcome = task.await.unwrap();
        match outcome.code() {
            "accepted" => accepted += 1,
            "sink_full" => assert_eq!(outcome.status(), 503),
            other => panic!("unexpected outcome {other}"),
        }
    }
    assert_eq!(inbox.status_counts().await.unwrap().total(), accepted);
}
