//! The event log on a real PostgreSQL, read through the store-neutral `EventLog` trait that
//! `hookgate inbox` and the console use: headers kept, pages by arrival, activity per minute,
//! dead letters replayed one, some, by type or all, handshakes recorded by the gate, and the
//! migrations from the first and second schemas.

#![allow(
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use hookgate::{FixedClock, OutcomeKind, SchemeId, SignRequest, Signer, VerifiedEvent, Verifier};
use hookgate_postgres::event_log::{EventLog, LogError};
use hookgate_postgres::{ArrivalCursor, Enqueued, EventId, LogQuery, PgStore, Replay, Status};

const GITHUB_SECRET: &str = "it's-a-secret-to-everybody";
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

/// A GitHub delivery `n` of `event_type`, received (by the verifier's clock) at `at`.
fn github(n: u64, event_type: &str, at: SystemTime) -> VerifiedEvent {
    let delivery = Signer::new(SchemeId::Github, GITHUB_SECRET)
        .unwrap()
        .sign(
            &SignRequest::new(format!(r#"{{"n":{n},"html":"<script>alert(1)</script>"}}"#))
                .id(format!("delivery-{n}"))
                .event_type(event_type),
        )
        .unwrap();
    Verifier::builder(SchemeId::Github)
        .secret(GITHUB_SECRET)
        .clock(FixedClock::new(at))
        .build()
        .unwrap()
        .verify(&delivery.headers, delivery.body)
        .unwrap()
}

async fn stored(store: &PgStore, event: &VerifiedEvent) -> EventId {
    match store.enqueue(event).await.unwrap() {
        Enqueued::Stored(id) => id,
        other => panic!("not stored: {other:?}"),
    }
}

/// Ten events, arriving out of id order (event `n` at `t0 + n * 7 mod 10` s), of types
/// `push` (even) and `issues` (odd).
async fn ten_events(store: &PgStore, t0: SystemTime) -> Vec<EventId> {
    let mut ids = Vec::new();
    for n in 0..10_u64 {
        let at = t0 + Duration::from_secs(n * 7 % 10);
        let kind = if n % 2 == 0 { "push" } else { "issues" };
        ids.push(stored(store, &github(n, kind, at)).await);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_pages_by_arrival_and_activity_read_as_the_inbox_reads_them() {
    let Some(pg) = Postgres::start() else { return };
    let store = PgStore::connect(&pg.url()).await.unwrap();
    let log: &dyn EventLog = &store;
    // 10:00:30 on some day, so minutes are easy to tell apart.
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 / 60 * 60 + 30);
    let ids = ten_events(&store, t0).await;

    // The scheme's informational headers are kept, as the inbox keeps them.
    let content = log.content(ids[3]).await.unwrap().unwrap();
    let names: Vec<&str> = content.headers.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains(&"X-GitHub-Event"), "{names:?}");
    assert!(
        content
            .headers
            .contains(&("X-GitHub-Delivery".to_owned(), "delivery-3".to_owned())),
        "{:?}",
        content.headers
    );
    assert!(
        content
            .headers
            .iter()
            .all(|(n, _)| !n.eq_ignore_ascii_case("X-Hub-Signature-256")),
        "never the signature"
    );
    assert!(content.body.starts_with(br#"{"n":3,"#));
    assert!(log.content(EventId::new(999)).await.unwrap().is_none());

    // By id, with a filter: the same rows as the inbox's query.
    let push = log.query(LogQuery::new().event_type("push")).await.unwrap();
    let push_ids: Vec<EventId> = push.iter().map(|e| e.id).collect();
    assert_eq!(push_ids, [ids[8], ids[6], ids[4], ids[2], ids[0]]);
    assert_eq!(push[0].delivery_id.as_deref(), Some("delivery-8"));

    // The window [t0 + 2 s, t0 + 9 s) by arrival: seven events, three per page, each once.
    let window = LogQuery::new()
        .received_after(t0 + Duration::from_secs(2))
        .received_before(t0 + Duration::from_secs(9))
        .limit(3);
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = log.query_by_arrival(window.clone(), after).await.unwrap();
        seen.extend(page.iter().map(|e| e.received_at));
        match page.last() {
            Some(last) if page.len() == 3 => after = Some(ArrivalCursor::after(last)),
            _ => break,
        }
    }
    let expected: Vec<SystemTime> = (2..9).rev().map(|s| t0 + Duration::from_secs(s)).collect();
    assert_eq!(seen, expected);
    // Ties on arrival go by id, across pages, from a cursor given as text.
    let same = SystemTime::UNIX_EPOCH + Duration::from_micros(1_800_000_000_000_123);
    let tied = [
        stored(&store, &github(20, "push", same)).await,
        stored(&store, &github(21, "push", same)).await,
        stored(&store, &github(22, "push", same)).await,
    ];
    let recent = LogQuery::new()
        .received_after(same - Duration::from_secs(1))
        .limit(2);
    let first = log.query_by_arrival(recent.clone(), None).await.unwrap();
    assert_eq!(
        first.iter().map(|e| e.id).collect::<Vec<_>>(),
        [tied[2], tied[1]]
    );
    let cursor = ArrivalCursor::parse(&ArrivalCursor::after(&first[1]).to_text()).unwrap();
    let rest = log.query_by_arrival(recent, Some(cursor)).await.unwrap();
    assert_eq!(rest.iter().map(|e| e.id).collect::<Vec<_>>(), [tied[0]]);

    // Activity per minute: arrivals, and the last attempts' ends by current status.
    let db = client(&pg.url()).await;
    db.execute(
        "UPDATE hookgate.events SET status = 'processed', finished_at = $2, due_at = NULL
         WHERE id = $1",
        &[&ids[0].get(), &(t0 + Duration::from_secs(60))],
    )
    .await
    .unwrap();
    db.execute(
        "UPDATE hookgate.events SET status = 'dead', finished_at = $2, dead_at = $2, due_at = NULL
         WHERE id = $1",
        &[&ids[1].get(), &(t0 + Duration::from_secs(125))],
    )
    .await
    .unwrap();
    let minutes = log
        .activity_per_minute(t0 - Duration::from_secs(60), t0 + Duration::from_secs(180))
        .await
        .unwrap();
    let counts: Vec<(u64, u64, u64)> = minutes
        .iter()
        .map(|m| (m.received, m.processed, m.failed))
        .collect();
    // t0 is hh:00:30: arrivals at +0..+9 s all fall in its minute.
    assert_eq!(
        counts,
        [(0, 0, 0), (10, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, 0)]
    );
    assert_eq!(minutes[1].minute, t0 - Duration::from_secs(30));
    assert!(matches!(
        log.activity_per_minute(t0, t0 - Duration::from_secs(1))
            .await,
        Err(LogError::Invalid(_))
    ));
    assert!(matches!(
        log.query(LogQuery::new().limit(0)).await,
        Err(LogError::Invalid(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_walked_and_replayed_one_some_by_type_or_all() {
    let Some(pg) = Postgres::start() else { return };
    let store = PgStore::connect(&pg.url()).await.unwrap();
    let log: &dyn EventLog = &store;
    let ids = ten_events(&store, SystemTime::now()).await;
    // Events 0..6 die (their last error kept), 6 is processed, the rest wait.
    let db = client(&pg.url()).await;
    db.execute(
        "UPDATE hookgate.events
         SET status = 'dead', attempts = 3, dead_at = now(), finished_at = now(), due_at = NULL,
             last_error = 'downstream said no'
         WHERE id = ANY($1)",
        &[&ids[..6].iter().map(|id| id.get()).collect::<Vec<i64>>()],
    )
    .await
    .unwrap();
    db.execute(
        "UPDATE hookgate.events SET status = 'processed', due_at = NULL WHERE id = $1",
        &[&ids[6].get()],
    )
    .await
    .unwrap();
    let status = |id: EventId| {
        let store = store.clone();
        async move { store.entry(id).await.unwrap().unwrap().status }
    };

    // The walk: newest first, a page at a time, each with the error that killed it.
    let dead = log.dead_letters(None, 4).await.unwrap();
    assert_eq!(
        dead.iter().map(|e| e.id).collect::<Vec<_>>(),
        [ids[5], ids[4], ids[3], ids[2]]
    );
    assert!(dead.iter().all(|e| e.status == Status::Dead
        && e.last_error.as_deref() == Some("downstream said no")
        && e.dead_at.is_some()));
    let older = log
        .query(
            LogQuery::new()
                .status(Status::Dead)
                .include_test(true)
                .before_id(ids[2])
                .limit(4),
        )
        .await
        .unwrap();
    assert_eq!(
        older.iter().map(|e| e.id).collect::<Vec<_>>(),
        [ids[1], ids[0]]
    );
    let odd = log.dead_letters(Some("issues"), 10).await.unwrap();
    assert_eq!(odd.len(), 3);

    // One: only a dead letter is put back.
    assert_eq!(
        log.replay_dead_letters(Replay::Id(ids[0])).await.unwrap(),
        1
    );
    assert_eq!(
        log.replay_dead_letters(Replay::Id(ids[6])).await.unwrap(),
        0
    );
    assert_eq!(status(ids[6]).await, Status::Processed);
    let replayed = store.entry(ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (replayed.status, replayed.attempts, replayed.dead_at),
        (Status::Queued, 0, None)
    );
    // Some: the dead ones among them.
    assert_eq!(
        log.replay_dead_letters(Replay::Ids(vec![ids[1], ids[6], ids[9]]))
            .await
            .unwrap(),
        1
    );
    // By type: 3 and 5 are odd and dead (1 was replayed).
    assert_eq!(
        log.replay_dead_letters(Replay::EventType("issues".to_owned()))
            .await
            .unwrap(),
        2
    );
    assert_eq!(status(ids[3]).await, Status::Queued);
    assert_eq!(status(ids[2]).await, Status::Dead);
    // All: the rest.
    assert_eq!(log.replay_dead_letters(Replay::All).await.unwrap(), 2);
    assert_eq!(log.status_counts().await.unwrap().dead, 0);
    assert_eq!(log.replay_dead_letters(Replay::All).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gate_records_handshakes_which_never_become_events() {
    let Some(pg) = Postgres::start() else { return };
    let store = PgStore::connect(&pg.url()).await.unwrap();
    let verifier = Verifier::builder(SchemeId::Slack)
        .secret(SLACK_SECRET)
        .build()
        .unwrap();
    let gate = store.gate(verifier).build().unwrap();
    let check =
        r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aB","type":"url_verification"}"#;
    let delivery = Signer::new(SchemeId::Slack, SLACK_SECRET)
        .unwrap()
        .sign(&SignRequest::new(check))
        .unwrap();
    let outcome = gate
        .receive(&delivery.headers, delivery.body.clone(), None)
        .await;
    assert!(
        matches!(outcome.kind(), OutcomeKind::Handshake(_)),
        "{outcome:?}"
    );
    let log: &dyn EventLog = &store;
    let recorded = log.handshakes(10).await.unwrap();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(
        (recorded[0].scheme.as_str(), recorded[0].kind.as_str()),
        ("slack", "slack_url_verification")
    );
    assert_eq!(recorded[0].key_id.as_deref(), Some("0"));
    assert_eq!(log.status_counts().await.unwrap().total(), 0, "no event");
    // Nothing of the request is kept: not the challenge, not the token.
    let db = client(&pg.url()).await;
    let row: String = db
        .query_one(
            "SELECT row_to_json(h)::text FROM hookgate.handshakes h",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        !row.contains("3eZbrw1aB") && !row.contains("Jhj5dZrVaK7ZwHHjRyZWjbDl"),
        "{row}"
    );
    // Newest first, and pruned with the retention.
    let later = store.gate(
        Verifier::builder(SchemeId::Slack)
            .secret(SLACK_SECRET)
            .build()
            .unwrap(),
    );
    let later = later.build().unwrap();
    let again = Signer::new(SchemeId::Slack, SLACK_SECRET)
        .unwrap()
        .sign(
            &SignRequest::new(check).timestamp(
                i64::try_from(
                    SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .unwrap()
                        .as_secs(),
                )
                .unwrap()
                    + 1,
            ),
        )
        .unwrap();
    assert!(matches!(
        later
            .receive(&again.headers, again.body.clone(), None)
            .await
            .kind(),
        OutcomeKind::Handshake(_)
    ));
    let recorded = log.handshakes(10).await.unwrap();
    assert_eq!(recorded.len(), 2);
    assert!(recorded[0].received_at >= recorded[1].received_at);
    assert_eq!(log.handshakes(1).await.unwrap().len(), 1);
    db.execute(
        "UPDATE hookgate.handshakes SET received_at = now() - interval '30 days'",
        &[],
    )
    .await
    .unwrap();
    assert_eq!(store.prune().await.unwrap().handshakes, 2);
    assert!(log.handshakes(10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_schema_store_is_migrated_with_its_events() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.url();
    let store = PgStore::connect(&url).await.unwrap();
    let id = stored(&store, &github(1, "push", SystemTime::now())).await;
    drop(store);
    // Back to the first schema, as a build of the first schema left it.
    let db = client(&url).await;
    db.batch_execute(
        "DROP TABLE hookgate.handshakes;
         DROP INDEX hookgate.events_arrival;
         DROP INDEX hookgate.events_dead;
         CREATE INDEX events_received ON hookgate.events (received_at);
         DROP TABLE hookgate.deliveries, hookgate.destination_pauses;
         DROP INDEX hookgate.events_status;
         CREATE INDEX events_finished ON hookgate.events (status, finished_at);
         DROP INDEX hookgate.events_waiting, hookgate.events_type, hookgate.events_delivery;
         CREATE INDEX events_type ON hookgate.events (event_type);
         CREATE INDEX events_delivery ON hookgate.events (delivery_id);
         DELETE FROM hookgate.schema_migrations WHERE version IN (2, 3, 4, 5, 6);",
    )
    .await
    .unwrap();
    let store = PgStore::connect(&url).await.unwrap();
    let versions: Vec<i32> = db
        .query(
            "SELECT version FROM hookgate.schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6]);
    let indexes: Vec<String> = db
        .query(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'hookgate'
             AND tablename = 'events' ORDER BY indexname",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(
        indexes.contains(&"events_arrival".to_owned()),
        "{indexes:?}"
    );
    assert!(indexes.contains(&"events_dead".to_owned()), "{indexes:?}");
    assert!(
        !indexes.contains(&"events_received".to_owned()),
        "{indexes:?}"
    );
    let entry = store.entry(id).await.unwrap().unwrap();
    assert_eq!(entry.event_type.as_deref(), Some("push"));
    assert!(store.handshakes(10).await.unwrap().is_empty());
}

/// Schema version 3 replaces `events_finished (status, finished_at)` by the same index
/// without `received` events, and version 5 does the same to the type and delivery id
/// indexes: a version-2 store keeps its events, whatever their status, and every query
/// over them answers as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_schema_store_is_migrated_with_its_events() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.url();
    let store = PgStore::connect(&url).await.unwrap();
    let now = SystemTime::now();
    let ids = ten_events(&store, now - Duration::from_secs(60)).await;
    drop(store);
    // Back to the second schema, as a build of it left it, with events in every status
    // the index tells apart.
    let db = client(&url).await;
    db.batch_execute(
        "DROP INDEX hookgate.events_status;
         CREATE INDEX events_finished ON hookgate.events (status, finished_at);
         DROP TABLE hookgate.deliveries, hookgate.destination_pauses;
         DROP INDEX hookgate.events_waiting, hookgate.events_type, hookgate.events_delivery;
         CREATE INDEX events_type ON hookgate.events (event_type);
         CREATE INDEX events_delivery ON hookgate.events (delivery_id);
         DELETE FROM hookgate.schema_migrations WHERE version IN (3, 4, 5, 6);",
    )
    .await
    .unwrap();
    db.execute(
        "UPDATE hookgate.events SET status = CASE WHEN id % 3 = 0 THEN 'processed'
             WHEN id % 3 = 1 THEN 'dead' ELSE status END,
             finished_at = CASE WHEN id % 3 = 2 THEN NULL ELSE now() END,
             due_at = CASE WHEN id % 3 = 2 THEN due_at END",
        &[],
    )
    .await
    .unwrap();
    let before = db
        .query(
            "SELECT id, status, finished_at IS NULL FROM hookgate.events ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get::<_, i64>(0), row.get::<_, String>(1), row.get(2)))
        .collect::<Vec<(i64, String, bool)>>();

    let store = PgStore::connect(&url).await.unwrap();
    let versions: Vec<i32> = db
        .query(
            "SELECT version FROM hookgate.schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, [1, 2, 3, 4, 5, 6]);
    let indexes: Vec<(String, String)> = db
        .query(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'hookgate'
             AND tablename = 'events' ORDER BY indexname",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert!(
        !indexes.iter().any(|(name, _)| name == "events_finished"),
        "{indexes:?}"
    );
    let status_index = indexes
        .iter()
        .find(|(name, _)| name == "events_status")
        .map(|(_, def)| def.clone())
        .unwrap_or_default();
    assert!(
        status_index.contains("(status, finished_at) WHERE (status <> 'received'::text)"),
        "{status_index}"
    );
    // Versions 5 and 6: the type and delivery id indexes leave received events out, which
    // `events_waiting` holds, and events without a type or delivery id.
    let def = |name: &str| {
        indexes
            .iter()
            .find(|(index, _)| index == name)
            .map(|(_, def)| def.clone())
            .unwrap_or_default()
    };
    assert!(
        def("events_type").contains(
            "(event_type) WHERE ((event_type IS NOT NULL) AND (status <> 'received'::text))"
        ),
        "{indexes:?}"
    );
    assert!(
        def("events_delivery").contains(
            "(delivery_id) WHERE ((delivery_id IS NOT NULL) AND (status <> 'received'::text))"
        ),
        "{indexes:?}"
    );
    assert!(
        def("events_waiting").contains("(id) WHERE (status = 'received'::text)"),
        "{indexes:?}"
    );
    let after = db
        .query(
            "SELECT id, status, finished_at IS NULL FROM hookgate.events ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get::<_, i64>(0), row.get::<_, String>(1), row.get(2)))
        .collect::<Vec<(i64, String, bool)>>();
    assert_eq!(after, before);
    assert_eq!(after.len(), 10);
    // The queries that read the replaced index give the same answers.
    let counts = store.status_counts().await.unwrap();
    let count =
        |status: &str| u64::try_from(after.iter().filter(|(_, s, _)| s == status).count()).unwrap();
    assert_eq!(counts.processed, count("processed"));
    assert_eq!(counts.dead, count("dead"));
    assert_eq!(counts.received, count("received"));
    let waiting = store
        .query(LogQuery::new().status(Status::Received).include_test(true))
        .await
        .unwrap();
    assert_eq!(u64::try_from(waiting.len()).unwrap(), count("received"));
    let minutes = store
        .activity_per_minute(
            now - Duration::from_secs(120),
            now + Duration::from_secs(60),
        )
        .await
        .unwrap();
    let processed: u64 = minutes.iter().map(|m| m.processed).sum();
    let failed: u64 = minutes.iter().map(|m| m.failed).sum();
    assert_eq!(processed, count("processed"));
    assert_eq!(failed, count("dead"));
    assert_eq!(ids.len(), 10);
    // Every event is found by its type and by its delivery id, whatever its status.
    for kind in ["push", "issues"] {
        let found = store
            .query(LogQuery::new().event_type(kind).include_test(true))
            .await
            .unwrap();
        assert_eq!(found.len(), 5, "{kind}");
    }
    for n in 0..10 {
        let found = store
            .query(
                LogQuery::new()
                    .delivery_id(format!("delivery-{n}"))
                    .include_test(true),
            )
            .await
            .unwrap();
        assert_eq!(found.len(), 1, "delivery-{n}");
    }
    // A new event is stored and waits, as before.
    let id = stored(&store, &github(99, "push", SystemTime::now())).await;
    assert_eq!(
        store.entry(id).await.unwrap().unwrap().status,
        Status::Received
    );
}
