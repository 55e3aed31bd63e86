//! An inbox file written by the first schema (version 1: one `events` row per event holding
//! the body and the mutable state together, TEXT dedup keys) is opened by this version and
//! keeps everything: events in every status, their bodies and headers, attempt histories,
//! dead letters, dedup entries (with and without an event), the id sequence and the
//! ordering helper's versions.
//!
//! The fixture is built here with version 1's own DDL and SQL, copied from the code that
//! wrote such files, so the test does not depend on the current code to create it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use common::{ManualClock, event, eventually};
use hookgate::Clock;
use hookgate_inbox::{
    Enqueued, EventId, HandlerResult, Inbox, InboxEvent, LogQuery, Replay, Status, Worker,
};
use rusqlite::{Connection, params};
use sha2::Digest;

/// Version 1's schema, as `schema.rs` wrote it (including the index it dropped later).
const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup_key     TEXT    NOT NULL,
    scheme        TEXT    NOT NULL,
    delivery_id   TEXT,
    event_type    TEXT,
    signed_at     INTEGER,
    received_at   INTEGER NOT NULL,
    body          BLOB    NOT NULL,
    headers       TEXT    NOT NULL,
    is_test       INTEGER NOT NULL DEFAULT 0,
    status        TEXT    NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    due_at        INTEGER,
    lease_token   INTEGER,
    started_at    INTEGER,
    finished_at   INTEGER,
    duration_ms   INTEGER,
    last_error    TEXT,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_due ON events(due_at) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_status ON events(status, finished_at);
CREATE INDEX IF NOT EXISTS events_received ON events(received_at);
CREATE INDEX IF NOT EXISTS events_delivery ON events(delivery_id);
CREATE INDEX IF NOT EXISTS events_type ON events(event_type);
CREATE INDEX IF NOT EXISTS events_dedup ON events(dedup_key);

CREATE TABLE IF NOT EXISTS dedup (
    key           TEXT    PRIMARY KEY,
    event_id      INTEGER,
    expires_at    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedup_expiry ON dedup(expires_at);

CREATE TABLE IF NOT EXISTS attempts (
    id            INTEGER PRIMARY KEY,
    event_id      INTEGER NOT NULL,
    attempt       INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER NOT NULL,
    outcome       TEXT    NOT NULL,
    error         TEXT
);
CREATE INDEX IF NOT EXISTS attempts_event ON attempts(event_id);

CREATE TABLE IF NOT EXISTS dead_letters (
    event_id      INTEGER PRIMARY KEY,
    dead_at       INTEGER NOT NULL,
    reason        TEXT    NOT NULL
);

CREATE TABLE IF NOT EXISTS aggregate_versions (
    aggregate     TEXT    PRIMARY KEY,
    version       INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) WITHOUT ROWID;
PRAGMA user_version = 1;
";

/// The manual clock's start, in Unix milliseconds.
const NOW: i64 = 1_700_000_000_000;
const HOUR: i64 = 3_600_000;

/// One version-1 event row: `(delivery id, event type, status, attempts, due_at, is_test,
/// last_error)`.
type Row = (
    &'static str,
    &'static str,
    &'static str,
    i64,
    Option<i64>,
    bool,
    Option<&'static str>,
);

const ROWS: [Row; 6] = [
    (
        "msg_done",
        "invoice.paid",
        "processed",
        1,
        None,
        false,
        None,
    ),
    (
        "msg_dead",
        "invoice.paid",
        "dead",
        3,
        None,
        false,
        Some("gave up"),
    ),
    (
        "msg_new",
        "invoice.created",
        "received",
        0,
        Some(NOW - HOUR),
        false,
        None,
    ),
    (
        "msg_retry",
        "invoice.created",
        "failed",
        1,
        Some(NOW - 1),
        true,
        Some("502"),
    ),
    // Leased by a worker that died: its lease ended before the clock's start.
    (
        "msg_leased",
        "customer.updated",
        "processing",
        2,
        Some(NOW - 5),
        false,
        None,
    ),
    // Stored, processed and already pruned: its id (6) must never be handed out again.
    (
        "msg_pruned",
        "invoice.paid",
        "processed",
        1,
        None,
        false,
        None,
    ),
];

/// Writes a version-1 inbox at `path` with version 1's SQL.
fn write_version_1_file(path: &Path) {
    let conn = Connection::open(path).unwrap();
    conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
        .unwrap();
    conn.execute_batch(SCHEMA_V1).unwrap();
    for (n, (delivery, event_type, status, attempts, due_at, is_test, error)) in
        ROWS.iter().enumerate()
    {
        let verified = event(delivery, event_type);
        let headers: Vec<(&str, &str)> = verified
            .headers()
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        let received = NOW - 2 * HOUR + i64::try_from(n).unwrap();
        let finished = matches!(*status, "processed" | "dead" | "failed").then_some(NOW - HOUR);
        let lease_token = (*status == "processing").then_some(42_i64);
        conn.execute(
            "INSERT INTO events (dedup_key, scheme, delivery_id, event_type, signed_at,
                 received_at, body, headers, is_test, status, attempts, due_at, lease_token,
                 started_at, finished_at, duration_ms, last_error, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                 ?17, ?6)",
            params![
                verified.dedup_key(),
                verified.scheme(),
                verified.delivery_id(),
                verified.event_type(),
                verified.timestamp_millis(),
                received,
                &verified.body()[..],
                serde_json::to_string(&headers).unwrap(),
                is_test,
                status,
                attempts,
                due_at,
                lease_token,
                (*attempts > 0).then_some(NOW - HOUR - 10),
                finished,
                finished.map(|_| 7_i64),
                error,
            ],
        )
        .unwrap();
        let id = conn.last_insert_rowid();
        conn.execute(
            "INSERT INTO dedup (key, event_id, expires_at) VALUES (?1, ?2, ?3)",
            params![verified.dedup_key(), id, NOW + 70 * HOUR],
        )
        .unwrap();
        for attempt in 1..=*attempts {
            let outcome = match (*status, attempt == *attempts) {
                ("processed", true) => "processed",
                ("dead", true) => "dead",
                ("processing", true) => continue,
                _ => "retry",
            };
            conn.execute(
                "INSERT INTO attempts (event_id, attempt, started_at, finished_at, outcome,
                     error) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    id,
                    attempt,
                    NOW - HOUR - 10,
                    NOW - HOUR,
                    outcome,
                    (outcome != "processed").then_some("boom")
                ],
            )
            .unwrap();
        }
        if *status == "dead" {
            conn.execute(
                "INSERT INTO dead_letters (event_id, dead_at, reason) VALUES (?1, ?2, ?3)",
                params![id, NOW - HOUR, "gave up"],
            )
            .unwrap();
        }
    }
    // The last event was pruned (its dedup entry outlives it, as pruning leaves it).
    conn.execute("DELETE FROM events WHERE id = 6", []).unwrap();
    conn.execute("DELETE FROM attempts WHERE event_id = 6", [])
        .unwrap();
    // A key committed for another sink (no event), and an expired one.
    let other = event("msg_other_sink", "a");
    conn.execute(
        "INSERT INTO dedup (key, event_id, expires_at) VALUES (?1, NULL, ?2)",
        params![other.dedup_key(), NOW + HOUR],
    )
    .unwrap();
    let expired = event("msg_expired", "a");
    conn.execute(
        "INSERT INTO dedup (key, event_id, expires_at) VALUES (?1, NULL, ?2)",
        params![expired.dedup_key(), NOW - 1],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO aggregate_versions (aggregate, version, updated_at) VALUES ('cus_1', 5, ?1)",
        params![NOW - HOUR],
    )
    .unwrap();
}

fn open(path: &Path, clock: &Arc<ManualClock>) -> Inbox {
    Inbox::builder(path)
        .clock(clock.clone())
        .no_scheduled_pruning()
        .open()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_file_is_migrated_with_everything_it_held() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.db");
    write_version_1_file(&path);
    let clock = Arc::new(ManualClock::new());
    assert_eq!(common_now(&clock), NOW);

    let inbox = open(&path, &clock);
    check_migrated(&inbox).await;
    drop(inbox);
    // Opening again changes nothing (the migration ran once).
    let inbox = open(&path, &clock);
    check_migrated(&inbox).await;

    // Dedup: stored events and keys committed for another sink are still duplicates; an
    // expired key is not; new ids continue after the highest ever handed out.
    assert_eq!(
        inbox
            .enqueue(&event("msg_done", "invoice.paid"))
            .await
            .unwrap(),
        Enqueued::Duplicate(Some(EventId::new(1)))
    );
    assert_eq!(
        inbox
            .enqueue(&event("msg_pruned", "invoice.paid"))
            .await
            .unwrap(),
        Enqueued::Duplicate(Some(EventId::new(6)))
    );
    assert_eq!(
        inbox.enqueue(&event("msg_other_sink", "a")).await.unwrap(),
        Enqueued::Duplicate(None)
    );
    assert_eq!(
        inbox.enqueue(&event("msg_expired", "a")).await.unwrap(),
        Enqueued::Stored(EventId::new(7))
    );

    // The queue: the due events (received, failed, the expired lease, the new one) are
    // processed; the dead letter waits for its replay, then is processed too.
    let worker = Worker::builder(inbox.clone(), |_: InboxEvent| async { HandlerResult::Ok })
        .poll_interval(Duration::from_millis(10))
        .start()
        .unwrap();
    eventually("the migrated queue to drain", || async {
        inbox.status_counts().await.unwrap().processed == 5
    })
    .await;
    assert_eq!(
        inbox
            .replay_dead_letters(Replay::Id(EventId::new(2)))
            .await
            .unwrap(),
        1
    );
    eventually("the replayed dead letter", || async {
        inbox.status_counts().await.unwrap().processed == 6
    })
    .await;
    worker.shutdown().await;
    let leased = inbox.entry(EventId::new(5)).await.unwrap().unwrap();
    assert_eq!(leased.attempts, 3, "the crashed attempt stays counted");
    let history = inbox.attempts(EventId::new(2)).await.unwrap();
    assert_eq!(
        history.len(),
        4,
        "three before the migration, one after the replay"
    );
    assert_eq!(history[2].outcome, "dead");
}

fn common_now(clock: &ManualClock) -> i64 {
    i64::try_from(clock.now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

async fn check_migrated(inbox: &Inbox) {
    let counts = inbox.status_counts().await.unwrap();
    assert_eq!(
        (
            counts.received,
            counts.failed,
            counts.processing,
            counts.processed,
            counts.dead,
            counts.queued
        ),
        (1, 1, 1, 1, 1, 0)
    );
    assert!(inbox.entry(EventId::new(6)).await.unwrap().is_none());

    for (n, (delivery, event_type, status, attempts, _, is_test, error)) in
        ROWS.iter().take(5).enumerate()
    {
        let id = EventId::new(i64::try_from(n).unwrap() + 1);
        let entry = inbox.entry(id).await.unwrap().unwrap();
        let verified = event(delivery, event_type);
        assert_eq!(entry.delivery_id.as_deref(), Some(*delivery));
        assert_eq!(entry.event_type.as_deref(), Some(*event_type));
        assert_eq!(entry.status.as_str(), *status);
        assert_eq!(i64::from(entry.attempts), *attempts);
        assert_eq!(entry.is_test, *is_test);
        assert_eq!(entry.last_error.as_deref(), *error);
        assert_eq!(entry.dedup_key, verified.dedup_key());
        assert_eq!(entry.scheme, "standard-webhooks-v1");
        assert_eq!(entry.body_len, verified.body().len() as u64);
        assert_eq!(
            entry.received_at,
            UNIX_EPOCH + Duration::from_millis(u64::try_from(NOW - 2 * HOUR).unwrap() + n as u64)
        );
        if matches!(*status, "processed" | "dead" | "failed") {
            assert_eq!(entry.processing_duration, Some(Duration::from_millis(7)));
        }
        assert_eq!(entry.dead_at.is_some(), *status == "dead");
        let stored = inbox.event(id).await.unwrap().unwrap();
        assert_eq!(stored.body(), verified.body());
        assert_eq!(stored.headers().len(), verified.headers().len());
        // `verified` was signed again just now, the stored copy when the file was written:
        // the same second, or a few later (comparing them exactly failed at a second's edge).
        let (then, now) = (stored.timestamp().unwrap(), verified.timestamp().unwrap());
        assert!(now.duration_since(then).unwrap() <= Duration::from_secs(60));
    }
    let leased = inbox.entry(EventId::new(5)).await.unwrap().unwrap();
    assert!(leased.lease_until.is_some());
    assert_eq!(inbox.attempts(EventId::new(2)).await.unwrap().len(), 3);
    assert_eq!(
        inbox.attempts(EventId::new(1)).await.unwrap()[0].outcome,
        "processed"
    );

    // The log's filters still find them.
    let paid = inbox
        .query(LogQuery::new().event_type("invoice.paid"))
        .await
        .unwrap();
    assert_eq!(paid.len(), 2);
    let by_delivery = inbox
        .query(LogQuery::new().delivery_id("msg_new"))
        .await
        .unwrap();
    assert_eq!(by_delivery[0].id, EventId::new(3));
    let test_only = inbox.query(LogQuery::new().only_test()).await.unwrap();
    assert_eq!(test_only.len(), 1);
    assert_eq!(test_only[0].delivery_id.as_deref(), Some("msg_retry"));
    let dead = inbox.dead_letters(None, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].status, Status::Dead);
    assert_eq!(inbox.versions().current("cus_1").await.unwrap(), Some(5));
}

/// Version 2's schema, as `schema.rs` wrote it on main before the segment log (schema 3).
const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup_key     TEXT    NOT NULL,
    scheme        TEXT    NOT NULL,
    delivery_id   TEXT,
    event_type    TEXT,
    signed_at     INTEGER,
    received_at   INTEGER NOT NULL,
    headers       TEXT    NOT NULL,
    body          BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS events_received ON events(received_at);
CREATE INDEX IF NOT EXISTS events_type ON events(event_type);

CREATE TABLE IF NOT EXISTS state (
    id            INTEGER PRIMARY KEY,
    status        TEXT    NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    due_at        INTEGER,
    lease_token   INTEGER,
    started_at    INTEGER,
    finished_at   INTEGER,
    duration_ms   INTEGER,
    last_error    TEXT,
    is_test       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS state_due ON state(due_at) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS state_status ON state(status, finished_at);

CREATE TABLE IF NOT EXISTS dedup (
    digest        BLOB    PRIMARY KEY,
    event_id      INTEGER,
    expires_at    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedup_expiry ON dedup(expires_at);

CREATE TABLE IF NOT EXISTS attempts (
    id            INTEGER PRIMARY KEY,
    event_id      INTEGER NOT NULL,
    attempt       INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER NOT NULL,
    outcome       TEXT    NOT NULL,
    error         TEXT
);
CREATE INDEX IF NOT EXISTS attempts_event ON attempts(event_id);

CREATE TABLE IF NOT EXISTS dead_letters (
    event_id      INTEGER PRIMARY KEY,
    dead_at       INTEGER NOT NULL,
    reason        TEXT    NOT NULL
);

CREATE TABLE IF NOT EXISTS aggregate_versions (
    aggregate     TEXT    PRIMARY KEY,
    version       INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) WITHOUT ROWID;
";

/// A version-2 file (the layout before the segment log), written with version 2's own DDL
/// and the SQL its enqueue ran, opens with its events, their states and its dedup keys; new
/// ids continue after its sequence, and its queue drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_2_file_opens_with_its_events_and_dedup_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inbox.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .unwrap();
        conn.execute_batch(SCHEMA_V2).unwrap();
        for (n, (delivery, status)) in [("msg_v2_done", "processed"), ("msg_v2_new", "received")]
            .into_iter()
            .enumerate()
        {
            let verified = event(delivery, "invoice.paid");
            conn.execute(
                "INSERT INTO events (dedup_key, scheme, delivery_id, event_type, signed_at,
                     received_at, headers, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    verified.dedup_key(),
                    verified.scheme(),
                    verified.delivery_id(),
                    verified.event_type(),
                    verified.timestamp_millis(),
                    NOW - HOUR + i64::try_from(n).unwrap(),
                    "[]",
                    &verified.body()[..],
                ],
            )
            .unwrap();
            let id = conn.last_insert_rowid();
            conn.execute(
                "INSERT INTO state (id, status, due_at, finished_at, is_test)
                 VALUES (?1, ?2, ?3, ?4, 0)",
                params![
                    id,
                    status,
                    (status == "received").then_some(NOW - HOUR),
                    (status == "processed").then_some(NOW - HOUR),
                ],
            )
            .unwrap();
            let digest = sha2::Sha256::digest(verified.dedup_key().as_bytes());
            conn.execute(
                "INSERT INTO dedup (digest, event_id, expires_at) VALUES (?1, ?2, ?3)",
                params![&digest[..16], id, NOW + 10 * HOUR],
            )
            .unwrap();
        }
        let other = sha2::Sha256::digest(event("msg_v2_other_sink", "a").dedup_key().as_bytes());
        conn.execute(
            "INSERT INTO dedup (digest, event_id, expires_at) VALUES (?1, NULL, ?2)",
            params![&other[..16], NOW + 10 * HOUR],
        )
        .unwrap();
        // Ids handed out before and since pruned: new ids continue after them.
        conn.execute(
            "UPDATE sqlite_sequence SET seq = 9 WHERE name = 'events'",
            [],
        )
        .unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
    }
    let clock = Arc::new(ManualClock::new());
    let inbox = open(&path, &clock);
    let counts = inbox.status_counts().await.unwrap();
    assert_eq!((counts.processed, counts.total()), (1, 2));
    let entry = inbox.entry(EventId::new(2)).await.unwrap().unwrap();
    assert_eq!(entry.delivery_id.as_deref(), Some("msg_v2_new"));
    assert_eq!(entry.status, Status::Received);
    for (delivery, expected) in [
        ("msg_v2_done", Enqueued::Duplicate(Some(EventId::new(1)))),
        ("msg_v2_new", Enqueued::Duplicate(Some(EventId::new(2)))),
        ("msg_v2_other_sink", Enqueued::Duplicate(None)),
        ("msg_v3_first", Enqueued::Stored(EventId::new(10))),
    ] {
        let got = inbox.enqueue(&event(delivery, "a")).await.unwrap();
        assert_eq!(got, expected, "{delivery}");
    }
    let worker = Worker::builder(inbox.clone(), |_: InboxEvent| async { HandlerResult::Ok })
        .poll_interval(Duration::from_millis(10))
        .start()
        .unwrap();
    eventually("the queue to drain", || async {
        inbox.status_counts().await.unwrap().processed == 3
    })
    .await;
    worker.shutdown().await;
    drop(inbox);
    // And again after a restart: the keys came back from the file.
    let inbox = open(&path, &clock);
    assert_eq!(
        inbox.enqueue(&event("msg_v3_first", "a")).await.unwrap(),
        Enqueued::Duplicate(Some(EventId::new(10)))
    );
}
