//! The store on a real PostgreSQL: every test starts a throwaway cluster of its own
//! (skipped where the server binaries are not installed, failed instead under
//! `HOOKGATE_REQUIRE_SERVICES=1`). No test asserts how long anything took.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use hookgate::dedup::{Claim, ClaimToken, DedupStore, KeyState};
use hookgate::{ChannelSink, Gate, Handoff, Sink};
use hookgate_postgres::{Enqueued, Error, EventId, LogQuery, PgStore, Replay, Status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dedup_store_follows_the_state_table() {
    let Some(pg) = Postgres::start() else { return };
    let store = PgStore::builder()
        .claim_ttl(Duration::from_millis(300))
        .connect(&pg.url())
        .await
        .unwrap();
    assert_eq!(store.lookup("k").await.unwrap(), KeyState::Absent);

    let Claim::New(first) = store.claim("k").await.unwrap() else {
        panic!("the first claim is new")
    };
    assert_eq!(store.claim("k").await.unwrap(), Claim::InFlight);
    assert_eq!(store.lookup("k").await.unwrap(), KeyState::InFlight);

    // A stale token releases nothing; the right one does.
    store
        .release("k", ClaimToken::new(first.get() ^ 1))
        .await
        .unwrap();
    assert_eq!(store.claim("k").await.unwrap(), Claim::InFlight);
    store.release("k", first).await.unwrap();
    assert_eq!(store.lookup("k").await.unwrap(), KeyState::Absent);

    let Claim::New(second) = store.claim("k").await.unwrap() else {
        panic!("a claim after a release is new")
    };
    store.commit("k", second).await.unwrap();
    assert_eq!(store.claim("k").await.unwrap(), Claim::Duplicate);
    // A release after the commit changes nothing.
    store.release("k", second).await.unwrap();
    assert_eq!(store.lookup("k").await.unwrap(), KeyState::Committed);
    // A commit needs no live claim.
    store.commit("never-claimed", second).await.unwrap();
    assert_eq!(
        store.claim("never-claimed").await.unwrap(),
        Claim::Duplicate
    );

    // An uncommitted claim expires, so a crashed replica's claim cannot block the retry.
    let Claim::New(_) = store.claim("abandoned").await.unwrap() else {
        panic!("new")
    };
    eventually(Duration::from_secs(30), "the claim expires", || async {
        matches!(store.claim("abandoned").await.unwrap(), Claim::New(_))
    })
    .await;

    // The committed row got the 72 h horizon.
    let db = client(&pg.url()).await;
    let hours: f64 = db
        .query_one(
            "SELECT (extract(epoch FROM expires_at - now()) / 3600)::float8 FROM hookgate.dedup WHERE key = 'k'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!((71.9..=72.0).contains(&hours), "{hours}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_stores_once_and_the_gate_answers_after_the_commit() {
    let Some(pg) = Postgres::start() else { return };
    let store = PgStore::connect(&pg.url()).await.unwrap();

    // The store directly: new, then an earlier copy.
    let stored = store.enqueue(&event("direct")).await.unwrap();
    let Enqueued::Stored(id) = stored else {
        panic!("stored")
    };
    assert_eq!(
        store.enqueue(&event("direct")).await.unwrap(),
        Enqueued::Duplicate
    );
    assert_eq!(
        store.hand_off(event("direct")).await.unwrap(),
        Handoff::AlreadyStored
    );
    assert_eq!(
        store.hand_off(event("other")).await.unwrap(),
        Handoff::Enqueued
    );

    // Behind its own gate: accepted, then duplicate, from the database (a second gate
    // over another store has no claims in memory).
    let gate = store.gate(verifier()).build().unwrap();
    let delivery = signed("via-gate");
    let outcome = gate
        .receive(&delivery.headers, delivery.body.clone(), None)
        .await;
    assert_eq!((outcome.status(), outcome.code()), (200, "accepted"));
    let replica = PgStore::connect(&pg.url()).await.unwrap();
    let other_gate = replica.gate(verifier()).build().unwrap();
    let again = other_gate
        .receive(&delivery.headers, delivery.body.clone(), None)
        .await;
    assert_eq!((again.status(), again.code()), (200, "duplicate"));

    // What was stored is what was verified, byte for byte.
    let stored = store.event(id).await.unwrap().unwrap();
    let original = event("direct");
    assert_eq!(stored.dedup_key(), original.dedup_key());
    assert_eq!(stored.body(), original.body());
    assert_eq!(stored.delivery_id(), Some("direct"));
    assert_eq!(stored.event_type(), Some("invoice.paid"));
    assert_eq!(stored.timestamp(), original.timestamp());
    assert_eq!(stored.received_at(), original.received_at());
    assert_eq!(stored.headers().len(), original.headers().len());
    assert_eq!(stored.attempt(), 0);

    let db = client(&pg.url()).await;
    let (events, keys): (i64, i64) = {
        let row = db
            .query_one(
                "SELECT (SELECT count(*) FROM hookgate.events), (SELECT count(*) FROM hookgate.dedup)",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((events, keys), (3, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_as_dedup_store_of_another_sink_and_of_itself() {
    let Some(pg) = Postgres::start() else { return };
    let store = PgStore::connect(&pg.url()).await.unwrap();

    // Dedup in PostgreSQL, events in a channel.
    let (sink, mut received) = ChannelSink::bounded(16);
    let gate = Gate::builder(verifier())
        .dedup(store.clone())
        .sink(sink)
        .build()
        .unwrap();
    let delivery = signed("shared-dedup");
    let first = gate
        .receive(&delivery.headers, delivery.body.clone(), None)
        .await;
    assert_eq!(first.code(), "accepted");
    assert!(received.recv().await.is_some());
    let again = gate
        .receive(&delivery.headers, delivery.body.clone(), None)
        .await;
    assert_eq!(again.code(), "duplicate");
    assert_eq!(
        store.lookup(&dedup_key("shared-dedup")).await.unwrap(),
        KeyState::Committed
    );

    // The store as dedup store (claims in the database) and as sink: the enqueue takes
    // the claim over, the commit keeps the row.
    let gate = Gate::builder(verifier())
        .dedup(store.clone())
        .sink(store.clone())
        .build()
        .unwrap();
    let delivery = signed("both");
    assert_eq!(
        gate.receive(&delivery.headers, delivery.body.clone(), None)
            .await
            .code(),
        "accepted"
    );
    assert_eq!(
        gate.receive(&delivery.headers, delivery.body.clone(), None)
            .await
            .code(),
        "duplicate"
    );
    assert_eq!(store.status_counts().await.unwrap().received, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_is_created_migrated_once_and_refused_when_newer() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.url();
    // Replicas starting together migrate once, in a schema of the application's choice.
    let shop = format!("{url}?schema=shop_webhooks");
    let (a, b) = tokio::join!(PgStore::connect(&shop), PgStore::connect(&shop));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.schema(), "shop_webhooks");
    a.enqueue(&event("one")).await.unwrap();
    assert_eq!(
        b.enqueue(&event("one")).await.unwrap(),
        Enqueued::Duplicate,
        "both replicas share the tables"
    );
    let db = client(&url).await;
    let versions: Vec<i32> = db
        .query(
            "SELECT version FROM shop_webhooks.schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6]);
    // Nothing in the default schema, nothing in public.
    let elsewhere: i64 = db
        .query_one(
            "SELECT count(*) FROM information_schema.tables
             WHERE table_name = 'events' AND table_schema <> 'shop_webhooks'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(elsewhere, 0);

    // A newer hookgate's schema is not touched by this build.
    db.execute(
        "INSERT INTO shop_webhooks.schema_migrations (version) VALUES (99)",
        &[],
    )
    .await
    .unwrap();
    let err = PgStore::connect(&format!("{url}?schema=shop_webhooks"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::SchemaTooNew {
                found: 99,
                supported: 6
            }
        ),
        "{err}"
    );

    // Bad settings are refused before connecting.
    for bad in [
        format!("{url}?schema=Robert%27);DROP"),
        format!("{url}?pool_size=0"),
        format!("{url}?claim_ttl_ms=0"),
        format!("{url}?claim_ttl_ms=10000&committed_ttl_ms=5000"),
        "redis://127.0.0.1/".to_owned(),
    ] {
        assert!(
            matches!(PgStore::connect(&bad).await, Err(Error::Config(_))),
            "{bad}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_log_lists_filters_shows_and_counts() {
    let Some(pg) = Postgres::start() else { return };
    let store = PgStore::builder()
        .test_filter(|event| {
            event
                .delivery_id()
                .is_some_and(|id| id.starts_with("test-"))
        })
        .connect(&pg.url())
        .await
        .unwrap();
    let before = SystemTime::now() - Duration::from_secs(3600 * 24 * 365 * 10);
    let mut ids = Vec::new();
    for name in ["a", "b", "c", "test-d"] {
        let Enqueued::Stored(id) = store.enqueue(&event(name)).await.unwrap() else {
            panic!("stored")
        };
        ids.push(id);
    }

    let all = store.query(LogQuery::new()).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![ids[2], ids[1], ids[0]],
        "newest first, test deliveries left out"
    );
    assert_eq!(all[0].status, Status::Received);
    assert_eq!(all[0].attempts, 0);
    assert!(all[0].next_attempt_at.is_some() && all[0].lease_until.is_none());
    assert_eq!(all[0].body_len, event("c").body().len() as u64);
    assert_eq!(all[0].scheme, "standard-webhooks-v1");

    let with_tests = store
        .query(LogQuery::new().include_test(true))
        .await
        .unwrap();
    assert_eq!(with_tests.len(), 4);
    let only_tests = store.query(LogQuery::new().only_test()).await.unwrap();
    assert_eq!(only_tests.len(), 1);
    assert!(only_tests[0].is_test);
    assert!(store.set_test(ids[3], false).await.unwrap());
    assert_eq!(store.query(LogQuery::new()).await.unwrap().len(), 4);
    assert!(!store.set_test(EventId::new(999_999), true).await.unwrap());

    let page = store
        .query(LogQuery::new().before_id(ids[2]).limit(1))
        .await
        .unwrap();
    assert_eq!(page.iter().map(|e| e.id).collect::<Vec<_>>(), vec![ids[1]]);
    let by_delivery = store.query(LogQuery::new().delivery_id("b")).await.unwrap();
    assert_eq!(by_delivery.len(), 1);
    assert_eq!(by_delivery[0].dedup_key, dedup_key("b"));
    for (query, expected) in [
        (LogQuery::new().event_type("invoice.paid"), 4),
        (LogQuery::new().event_type("nope"), 0),
        (LogQuery::new().scheme("standard-webhooks-v1"), 4),
        (LogQuery::new().status(Status::Received), 4),
        (
            LogQuery::new().status(Status::Dead).status(Status::Failed),
            0,
        ),
        (LogQuery::new().received_after(before), 4),
        (LogQuery::new().received_before(before), 0),
    ] {
        assert_eq!(
            store.query(query.clone()).await.unwrap().len(),
            expected,
            "{query:?}"
        );
    }
    assert!(matches!(
        store.query(LogQuery::new().limit(0)).await,
        Err(Error::Config(_))
    ));

    let entry = store.entry(ids[0]).await.unwrap().unwrap();
    assert_eq!(entry.delivery_id.as_deref(), Some("a"));
    assert!(store.entry(EventId::new(999_999)).await.unwrap().is_none());
    assert!(store.event(EventId::new(999_999)).await.unwrap().is_none());
    assert!(store.attempts(ids[0]).await.unwrap().is_empty());

    let counts = store.status_counts().await.unwrap();
    assert_eq!(
        (counts.received, counts.pending(), counts.total()),
        (4, 4, 4)
    );
    assert!(
        !store.replay(ids[0]).await.unwrap(),
        "nothing to replay yet"
    );
    assert_eq!(store.replay_dead_letters(Replay::All).await.unwrap(), 0);
    assert!(store.dead_letters(None, 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_without_an_answer_fails_in_time_and_the_store_carries_on() {
    let Some(pg) = Postgres::start() else { return };
    let store = PgStore::builder()
        .query_timeout(Duration::from_millis(300))
        .connect(&pg.url())
        .await
        .unwrap();
    // Another session holds the events table: the store's insert gets no answer.
    let mut db = client(&pg.url()).await;
    let blocker = db.transaction().await.unwrap();
    blocker
        .batch_execute("LOCK TABLE hookgate.events IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let err = store.enqueue(&event("stuck")).await.unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err}");
    let outcome = store
        .gate(verifier())
        .build()
        .unwrap()
        .receive(&signed("stuck").headers, signed("stuck").body, None)
        .await;
    assert_eq!(outcome.status(), 503, "{outcome:?}");
    blocker.rollback().await.unwrap();

    // Once the table is free the store works again; the retry is stored, or answered as a
    // duplicate if a timed-out insert went through after all, and there is one copy.
    let retried = store.enqueue(&event("stuck")).await.unwrap();
    assert!(matches!(retried, Enqueued::Stored(_) | Enqueued::Duplicate));
    let copies: i64 = db
        .query_one("SELECT count(*) FROM hookgate.events", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(copies, 1);
}
