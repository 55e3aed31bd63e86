//! The worker: at-least-once processing, retries, dead letters, replay, shutdown.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{event, eventually};
use hookgate_inbox::{
    Enqueued, EventId, HandlerResult, Inbox, InboxEvent, LogQuery, Replay, RetryPolicy, Status,
    Worker, WorkerBuilder,
};

fn open(dir: &tempfile::TempDir) -> Inbox {
    Inbox::builder(dir.path().join("inbox.db"))
        .no_scheduled_pruning()
        .open()
        .unwrap()
}

/// Short timings so retries happen at once; the limits in `eventually` are hang guards.
fn fast(builder: WorkerBuilder) -> WorkerBuilder {
    builder
        .poll_interval(Duration::from_millis(10))
        .lease(Duration::from_secs(5))
        .retry(
            RetryPolicy::new()
                .base(Duration::from_millis(1))
                .cap(Duration::from_millis(5))
                .max_attempts(3),
        )
}

async fn store(inbox: &Inbox, id: &str, event_type: &str) -> EventId {
    match inbox.enqueue(&event(id, event_type)).await.unwrap() {
        Enqueued::Stored(id) => id,
        other => panic!("not stored: {other:?}"),
    }
}

async fn wait_for(inbox: &Inbox, status: Status, count: u64) {
    eventually(&format!("{count} events {status}"), || async {
        inbox.status_counts().await.unwrap().get(status) == count
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_handled_and_marked_processed() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = open(&dir);
    let seen: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let handler = {
        let seen = seen.clone();
        move |event: InboxEvent| {
            let seen = seen.clone();
            async move {
                *seen
                    .lock()
                    .unwrap()
                    .entry(event.delivery_id().unwrap().to_owned())
                    .or_default() += 1;
                HandlerResult::Ok
            }
        }
    };
    // Events stored before the worker starts, and while it runs.
    for n in 0..20 {
        store(&inbox, &format!("msg_{n}"), "a").await;
    }
    let worker = fast(Worker::builder(inbox.clone(), handler))
        .concurrency(4)
        .start()
        .unwrap();
    for n in 20..50 {
        store(&inbox, &format!("msg_{n}"), "a").await;
    }
    wait_for(&inbox, Status::Processed, 50).await;
    let report = worker.shutdown().await;
    assert_eq!(report.released, 0);

    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 50);
        assert!(seen.values().all(|calls| *calls == 1));
    }
    let entries = inbox
        .query(LogQuery::new().status(Status::Processed).limit(100))
        .await
        .unwrap();
    assert_eq!(entries.len(), 50);
    for entry in entries {
        assert_eq!(entry.attempts, 1);
        assert!(entry.processing_duration.is_some());
        assert!(entry.finished_at.is_some());
        assert!(entry.last_error.is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_event_is_attempted_again_until_it_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = open(&dir);
    let id = store(&inbox, "msg_1", "a").await;
    let worker = fast(Worker::builder(
        inbox.clone(),
        |event: InboxEvent| async move {
            match event.attempt() {
                1 => HandlerResult::retry_after(Duration::from_millis(1)),
                2 => HandlerResult::retry_because("downstream 503"),
                _ => HandlerResult::Ok,
            }
        },
    ))
    .start()
    .unwrap();
    wait_for(&inbox, Status::Processed, 1).await;
    let stats = worker.stats();
    worker.shutdown().await;

    assert_eq!((stats.processed, stats.retried, stats.handled), (1, 2, 3));
    let entry = inbox.entry(id).await.unwrap().unwrap();
    assert_eq!(entry.attempts, 3);
    let outcomes: Vec<_> = inbox
        .attempts(id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.attempt, a.outcome, a.error))
        .collect();
    assert_eq!(
        outcomes,
        [
            (1, "retry".to_owned(), Some("retry requested".to_owned())),
            (2, "retry".to_owned(), Some("downstream 503".to_owned())),
            (3, "processed".to_owned(), None),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_and_permanent_failures_become_dead_letters_that_can_be_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = open(&dir);
    let healthy = Arc::new(AtomicBool::new(false));
    let handler = {
        let healthy = healthy.clone();
        move |event: InboxEvent| {
            let healthy = healthy.load(Ordering::SeqCst);
            async move {
                if healthy {
                    HandlerResult::Ok
                } else if event.event_type() == Some("bad") {
                    HandlerResult::fail("unknown customer")
                } else {
                    Err::<(), _>("database down").into()
                }
            }
        }
    };
    let flaky = store(&inbox, "msg_1", "flaky").await;
    let bad = store(&inbox, "msg_2", "bad").await;
    let other = store(&inbox, "msg_3", "flaky").await;
    let worker = fast(Worker::builder(inbox.clone(), handler))
        .start()
        .unwrap();
    wait_for(&inbox, Status::Dead, 3).await;

    let flaky_entry = inbox.entry(flaky).await.unwrap().unwrap();
    assert_eq!(flaky_entry.attempts, 3, "max attempts, then dead");
    assert_eq!(
        flaky_entry.last_error.as_deref(),
        Some("gave up after 3 attempts: database down")
    );
    assert!(flaky_entry.dead_at.is_some());
    let bad_entry = inbox.entry(bad).await.unwrap().unwrap();
    assert_eq!(bad_entry.attempts, 1, "a permanent failure is not retried");
    assert_eq!(bad_entry.last_error.as_deref(), Some("unknown customer"));

    let dead = inbox.dead_letters(None, 10).await.unwrap();
    assert_eq!(dead.len(), 3);
    let dead_flaky = inbox.dead_letters(Some("flaky"), 10).await.unwrap();
    assert_eq!(dead_flaky.len(), 2);

    // Replay one by id: it is retried from attempt 1 and now succeeds.
    healthy.store(true, Ordering::SeqCst);
    assert_eq!(inbox.replay_dead_letters(Replay::Id(bad)).await.unwrap(), 1);
    wait_for(&inbox, Status::Processed, 1).await;
    assert_eq!(inbox.entry(bad).await.unwrap().unwrap().attempts, 1);
    // Replaying something that is not dead does nothing.
    assert_eq!(inbox.replay_dead_letters(Replay::Id(bad)).await.unwrap(), 0);

    // By event type, then everything that is left.
    worker.shutdown().await;
    assert_eq!(
        inbox
            .replay_dead_letters(Replay::EventType("flaky".to_owned()))
            .await
            .unwrap(),
        2
    );
    let queued = inbox
        .query(LogQuery::new().status(Status::Queued))
        .await
        .unwrap();
    assert_eq!(queued.len(), 2);
    assert!(
        queued
            .iter()
            .all(|e| e.dead_at.is_none() && e.attempts == 0)
    );
    assert_eq!(inbox.replay_dead_letters(Replay::All).await.unwrap(), 0);
    let worker = fast(Worker::builder(inbox.clone(), |_: InboxEvent| async {
        HandlerResult::Ok
    }))
    .start()
    .unwrap();
    wait_for(&inbox, Status::Processed, 3).await;
    worker.shutdown().await;
    assert!(inbox.dead_letters(None, 10).await.unwrap().is_empty());
    // The history keeps every attempt, before and after the replay.
    assert_eq!(inbox.attempts(other).await.unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_all_puts_every_dead_letter_back() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = open(&dir);
    for n in 0..5 {
        store(
            &inbox,
            &format!("msg_{n}"),
            if n % 2 == 0 { "a" } else { "b" },
        )
        .await;
    }
    let worker = fast(Worker::builder(inbox.clone(), |_: InboxEvent| async {
        HandlerResult::fail("no")
    }))
    .start()
    .unwrap();
    wait_for(&inbox, Status::Dead, 5).await;
    worker.shutdown().await;
    let ids: Vec<EventId> = inbox
        .dead_letters(None, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        inbox
            .replay_dead_letters(Replay::Ids(ids[..2].to_vec()))
            .await
            .unwrap(),
        2
    );
    assert_eq!(inbox.replay_dead_letters(Replay::All).await.unwrap(), 3);
    assert_eq!(inbox.status_counts().await.unwrap().queued, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_or_hanging_handler_counts_as_a_failed_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = open(&dir);
    let panicky = store(&inbox, "msg_1", "panic").await;
    let slow = store(&inbox, "msg_2", "hang").await;
    let worker = fast(Worker::builder(
        inbox.clone(),
        |event: InboxEvent| async move {
            if event.attempt() == 1 {
                if event.event_type() == Some("panic") {
                    panic!("handler bug");
                }
                std::future::pending::<()>().await;
            }
            HandlerResult::Ok
        },
    ))
    .handler_timeout(Duration::from_millis(50))
    .start()
    .unwrap();
    wait_for(&inbox, Status::Processed, 2).await;
    let stats = worker.stats();
    worker.shutdown().await;
    assert_eq!((stats.panics, stats.timeouts), (1, 1));
    let history = inbox.attempts(panicky).await.unwrap();
    assert_eq!(history[0].error.as_deref(), Some("handler panicked"));
    let history = inbox.attempts(slow).await.unwrap();
    assert!(history[0].error.as_deref().unwrap().contains("timed out"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_running_handlers_within_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = open(&dir);
    let started = Arc::new(tokio::sync::Notify::new());
    let finish = Arc::new(tokio::sync::Notify::new());
    let handler = {
        let (started, finish) = (started.clone(), finish.clone());
        move |_: InboxEvent| {
            let (started, finish) = (started.clone(), finish.clone());
            async move {
                started.notify_one();
                finish.notified().await;
                HandlerResult::Ok
            }
        }
    };
    let id = store(&inbox, "msg_1", "a").await;
    let worker = fast(Worker::builder(inbox.clone(), handler))
        .shutdown_grace(Duration::from_secs(60))
        .start()
        .unwrap();
    started.notified().await;
    let shutdown = tokio::spawn(worker.shutdown());
    // New events are not taken once shutdown began.
    tokio::task::yield_now().await;
    finish.notify_one();
    let report = shutdown.await.unwrap();
    // On this multi-threaded runtime the handler may finish just before the worker sees the
    // stop (then it is recorded as usual) or during the grace period (then it counts as
    // `finished`); either way it ran to the end and nothing was released. The exact
    // `(1, 0)` of a handler finishing inside the grace period is checked deterministically,
    // on a paused clock, by hookgate-queue's
    // `shutdown_lets_running_handlers_finish_within_the_grace_period`.
    assert!(report.finished <= 1, "{report:?}");
    assert_eq!(report.released, 0, "{report:?}");
    assert_eq!(
        inbox.entry(id).await.unwrap().unwrap().status,
        Status::Processed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_releases_what_does_not_finish_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = open(&dir);
    let started = Arc::new(AtomicU32::new(0));
    let handler = {
        let started = started.clone();
        move |_: InboxEvent| {
            started.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<HandlerResult>()
        }
    };
    let id = store(&inbox, "msg_1", "a").await;
    let worker = fast(Worker::builder(inbox.clone(), handler))
        .shutdown_grace(Duration::from_millis(20))
        .start()
        .unwrap();
    eventually("the handler to start", || async {
        started.load(Ordering::SeqCst) == 1
    })
    .await;
    let report = worker.shutdown().await;
    assert_eq!((report.finished, report.released), (0, 1));
    let entry = inbox.entry(id).await.unwrap().unwrap();
    assert_eq!(entry.status, Status::Queued);
    assert_eq!(entry.attempts, 0, "the cancelled attempt is not counted");

    // The next worker picks it up.
    let worker = fast(Worker::builder(inbox.clone(), |_: InboxEvent| async {
        HandlerResult::Ok
    }))
    .start()
    .unwrap();
    wait_for(&inbox, Status::Processed, 1).await;
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_concurrency_is_respected() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = open(&dir);
    let running = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let handler = {
        let (running, peak) = (running.clone(), peak.clone());
        move |_: InboxEvent| {
            let (running, peak) = (running.clone(), peak.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                HandlerResult::Ok
            }
        }
    };
    for n in 0..30 {
        store(&inbox, &format!("msg_{n}"), "a").await;
    }
    let worker = fast(Worker::builder(inbox.clone(), handler))
        .concurrency(3)
        .start()
        .unwrap();
    wait_for(&inbox, Status::Processed, 30).await;
    worker.shutdown().await;
    let peak = peak.load(Ordering::SeqCst);
    assert!((1..=3).contains(&peak), "peak {peak}");
}

#[tokio::test]
async fn bad_worker_settings_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = open(&dir);
    let handler = |_: InboxEvent| async { HandlerResult::Ok };
    let err = Worker::builder(inbox.clone(), handler)
        .concurrency(0)
        .start()
        .unwrap_err();
    assert!(err.to_string().contains("concurrency"), "{err}");
    let err = Worker::builder(inbox.clone(), handler)
        .lease(Duration::from_millis(1))
        .start()
        .unwrap_err();
    assert!(err.to_string().contains("lease"), "{err}");
    let err = Worker::builder(inbox, handler)
        .retry(RetryPolicy::new().max_attempts(0))
        .start()
        .unwrap_err();
    assert!(err.to_string().contains("max_attempts"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processed_events_and_old_dead_letters_are_pruned_after_their_retention() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(common::ManualClock::new());
    let hour = Duration::from_secs(3600);
    let inbox = Inbox::builder(dir.path().join("inbox.db"))
        .clock(clock.clone())
        .retention(hour)
        .dead_letter_retention(2 * hour)
        .committed_ttl(72 * hour)
        .no_scheduled_pruning()
        .open()
        .unwrap();
    let ok = store(&inbox, "msg_ok", "ok").await;
    let bad = store(&inbox, "msg_bad", "bad").await;
    let worker = fast(Worker::builder(
        inbox.clone(),
        |event: InboxEvent| async move {
            if event.event_type() == Some("bad") {
                HandlerResult::fail("rejected")
            } else {
                HandlerResult::Ok
            }
        },
    ))
    .start()
    .unwrap();
    wait_for(&inbox, Status::Processed, 1).await;
    wait_for(&inbox, Status::Dead, 1).await;
    worker.shutdown().await;

    assert_eq!(
        inbox.prune().await.unwrap(),
        hookgate_inbox::PruneReport::default()
    );
    clock.advance(hour + Duration::from_secs(1));
    let report = inbox.prune().await.unwrap();
    assert_eq!((report.processed_events, report.dead_events), (1, 0));
    assert!(inbox.entry(ok).await.unwrap().is_none());
    assert!(inbox.attempts(ok).await.unwrap().is_empty());
    // The dedup entry outlives the pruned event: a late retry is still a duplicate.
    assert_eq!(
        inbox.enqueue(&event("msg_ok", "ok")).await.unwrap(),
        Enqueued::Duplicate(Some(ok))
    );
    // The pruner moved the key from the event's state row to the `dedup` table, so it
    // outlives the event across a restart too.
    let conn = rusqlite::Connection::open(dir.path().join("inbox.db")).unwrap();
    let moved: i64 = conn
        .query_row(
            "SELECT count(*) FROM dedup WHERE event_id = ?1",
            [ok.get()],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(moved, 1);
    drop(conn);

    clock.advance(hour);
    let report = inbox.prune().await.unwrap();
    assert_eq!((report.processed_events, report.dead_events), (0, 1));
    assert!(inbox.entry(bad).await.unwrap().is_none());
    assert!(inbox.dead_letters(None, 10).await.unwrap().is_empty());

    // Reopened, the keys of both pruned events come back from the `dedup` table.
    drop(inbox);
    let inbox = Inbox::builder(dir.path().join("inbox.db"))
        .clock(clock.clone())
        .no_scheduled_pruning()
        .open()
        .unwrap();
    assert_eq!(
        inbox.enqueue(&event("msg_ok", "ok")).await.unwrap(),
        Enqueued::Duplicate(Some(ok))
    );
    assert_eq!(
        inbox.enqueue(&event("msg_bad", "bad")).await.unwrap(),
        Enqueued::Duplicate(Some(bad))
    );
}

#[tokio::test]
async fn scheduled_pruning_runs_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.db");
    let clock = Arc::new(common::ManualClock::new());
    let inbox = Inbox::builder(&path)
        .clock(clock.clone())
        .committed_ttl(Duration::from_secs(60))
        .prune_interval(Duration::from_millis(10))
        .open()
        .unwrap();
    store(&inbox, "msg_1", "a").await;
    // The event reaches the database once the log's applier wrote it; a query waits for that.
    inbox.status_counts().await.unwrap();
    // Its key is in its state row (schema 5), not in the `dedup` table.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let count = |sql: &str| conn.query_row(sql, [], |row| row.get::<_, i64>(0)).unwrap();
    assert_eq!(
        count("SELECT count(*) FROM state WHERE dedup_digest IS NOT NULL"),
        1
    );
    assert_eq!(count("SELECT count(*) FROM dedup"), 0);
    assert_eq!(inbox.stats().dedup_keys_in_memory, 1);
    // An expired row of the `dedup` table (a key committed for another sink) is deleted.
    conn.execute(
        "INSERT INTO dedup (digest, event_id, expires_at) VALUES (zeroblob(16), NULL, 1)",
        [],
    )
    .unwrap();
    clock.advance(Duration::from_secs(61));
    eventually("the pruner to sweep the expired key and row", || async {
        inbox.stats().dedup_keys_in_memory == 0 && count("SELECT count(*) FROM dedup") == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_leases_one_round_ahead_and_gives_it_back_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = open(&dir);
    let started = Arc::new(AtomicU32::new(0));
    let handler = {
        let started = started.clone();
        move |_: InboxEvent| {
            started.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<HandlerResult>()
        }
    };
    for n in 0..10 {
        store(&inbox, &format!("msg_{n}"), "a").await;
    }
    let worker = fast(Worker::builder(inbox.clone(), handler))
        .concurrency(2)
        .shutdown_grace(Duration::from_millis(20))
        .start()
        .unwrap();
    // Two handlers run; two more events are leased, waiting for a place; six stay in the
    // database for others to take.
    eventually("two handlers and two events leased ahead", || async {
        started.load(Ordering::SeqCst) == 2 && inbox.status_counts().await.unwrap().processing == 4
    })
    .await;
    assert_eq!(inbox.status_counts().await.unwrap().received, 6);
    let report = worker.shutdown().await;
    assert_eq!((report.finished, report.released), (0, 4));
    let counts = inbox.status_counts().await.unwrap();
    assert_eq!(
        (counts.queued, counts.received, counts.processing),
        (4, 6, 0)
    );
    assert_eq!(
        started.load(Ordering::SeqCst),
        2,
        "events leased ahead never started"
    );
}
