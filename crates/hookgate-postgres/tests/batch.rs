//! Batched enqueues (group commit) on a real PostgreSQL. Each test holds the first batch
//! back with a table lock taken by a session of its own, so that the enqueues sent
//! meanwhile are known to wait for one batch together; no test asserts how long anything
//! took.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::time::Duration;

use common::*;
use hookgate_postgres::tokio_postgres::{Client, Transaction};
use hookgate_postgres::{Enqueued, Error, PgStore};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(30);

/// A store writing one batch at a time, so that enqueues sent while a batch is held back
/// make up the next one.
async fn one_writer(url: &str) -> PgStore {
    PgStore::builder()
        .batch_writers(1)
        .connect(url)
        .await
        .unwrap()
}

/// Holds the dedup table until the transaction ends: every batch blocks on it.
async fn hold_dedup(db: &mut Client) -> Transaction<'_> {
    let blocker = db.transaction().await.unwrap();
    blocker
        .batch_execute("LOCK TABLE hookgate.dedup IN EXCLUSIVE MODE")
        .await
        .unwrap();
    blocker
}

fn enqueue(store: &PgStore, id: &str) -> JoinHandle<Result<Enqueued, Error>> {
    let store = store.clone();
    let event = event(id);
    tokio::spawn(async move { store.enqueue(&event).await })
}

/// Enqueues `ids` one after the other, each waiting in the queue before the next is
/// sent, so that their order in the batch is the order given.
async fn queue_in_order(
    store: &PgStore,
    ids: &[String],
) -> Vec<JoinHandle<Result<Enqueued, Error>>> {
    let before = store.enqueue_stats().waiting;
    let mut waiting = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        waiting.push(enqueue(store, id));
        eventually(WAIT, "the enqueue waits for the next batch", || async {
            store.enqueue_stats().waiting == before + n + 1
        })
        .await;
    }
    waiting
}

/// Starts an enqueue whose batch blocks on the held table.
async fn first_batch_in_flight(store: &PgStore, id: &str) -> JoinHandle<Result<Enqueued, Error>> {
    let first = enqueue(store, id);
    eventually(WAIT, "the first batch is being written", || async {
        let stats = store.enqueue_stats();
        stats.writing == 1 && stats.waiting == 0
    })
    .await;
    first
}

async fn count(db: &Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copies_in_one_batch_are_stored_once() {
    let Some(pg) = Postgres::start() else { return };
    let store = one_writer(&pg.url()).await;
    let mut db = client(&pg.url()).await;
    let blocker = hold_dedup(&mut db).await;
    let first = first_batch_in_flight(&store, "first").await;

    // Eight copies of one delivery and two others wait for the next batch together.
    let copies: Vec<_> = (0..8).map(|_| enqueue(&store, "copy")).collect();
    let others = [enqueue(&store, "other-1"), enqueue(&store, "other-2")];
    eventually(WAIT, "ten enqueues wait", || async {
        store.enqueue_stats().waiting == 10
    })
    .await;
    blocker.rollback().await.unwrap();

    assert!(matches!(first.await.unwrap(), Ok(Enqueued::Stored(_))));
    let mut stored = Vec::new();
    for copy in copies {
        match copy.await.unwrap().unwrap() {
            Enqueued::Stored(id) => stored.push(id),
            Enqueued::Duplicate => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(stored.len(), 1, "exactly one copy is stored: {stored:?}");
    for other in others {
        assert!(matches!(other.await.unwrap(), Ok(Enqueued::Stored(_))));
    }
    let stats = store.enqueue_stats();
    assert_eq!(
        (stats.batches, stats.events, stats.failed_batches),
        (2, 11, 0)
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM hookgate.events WHERE delivery_id = 'copy'"
        )
        .await,
        1
    );
    assert_eq!(count(&db, "SELECT count(*) FROM hookgate.events").await, 4);
    // Later copies find it in the database.
    assert_eq!(
        store.enqueue(&event("copy")).await.unwrap(),
        Enqueued::Duplicate
    );
    // The stored copy is the one read back.
    let shown = store.event(stored[0]).await.unwrap().unwrap();
    assert_eq!(shown.delivery_id(), Some("copy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_batching_the_same_keys_in_opposite_orders_store_each_once() {
    let Some(pg) = Postgres::start() else { return };
    let a = one_writer(&pg.url()).await;
    let b = one_writer(&pg.url()).await;
    let mut db = client(&pg.url()).await;
    // Each batch stops at the dedup row of `shared-10` until the test lets it go, so that
    // both replicas' batches are mid-statement at once.
    let gatekeeper = client(&pg.url()).await;
    gatekeeper
        .batch_execute("SELECT pg_advisory_lock(4242)")
        .await
        .unwrap();
    db.batch_execute(
        "CREATE FUNCTION hold() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN PERFORM pg_advisory_xact_lock_shared(4242); RETURN NEW; END $$;
         CREATE TRIGGER hold_shared_10 BEFORE INSERT ON hookgate.dedup
             FOR EACH ROW WHEN (NEW.key LIKE '%:shared-10') EXECUTE FUNCTION hold();",
    )
    .await
    .unwrap();
    let blocker = hold_dedup(&mut db).await;
    let first_a = first_batch_in_flight(&a, "a-first").await;
    let first_b = first_batch_in_flight(&b, "b-first").await;

    // The same 20 deliveries reach both replicas, in opposite orders. Inserted in those
    // orders, each batch would hold keys the other waits for: a deadlock, and one batch
    // failed. The store inserts each batch's keys in byte order.
    let ids: Vec<String> = (0..20).map(|n| format!("shared-{n:02}")).collect();
    let reversed: Vec<String> = ids.iter().rev().cloned().collect();
    let at_a = queue_in_order(&a, &ids).await;
    let at_b = queue_in_order(&b, &reversed).await;
    blocker.rollback().await.unwrap();
    assert!(matches!(first_a.await.unwrap(), Ok(Enqueued::Stored(_))));
    assert!(matches!(first_b.await.unwrap(), Ok(Enqueued::Stored(_))));
    eventually(WAIT, "both batches wait mid-statement", || async {
        count(
            &db,
            "SELECT count(*) FROM pg_stat_activity
             WHERE wait_event_type = 'Lock' AND query LIKE '%unnest%'",
        )
        .await
            == 2
    })
    .await;
    gatekeeper
        .batch_execute("SELECT pg_advisory_unlock(4242)")
        .await
        .unwrap();

    let mut stored_at_a = Vec::new();
    for handle in at_a {
        stored_at_a.push(matches!(
            handle.await.unwrap().unwrap(),
            Enqueued::Stored(_)
        ));
    }
    let mut stored_at_b = Vec::new();
    for handle in at_b {
        stored_at_b.push(matches!(
            handle.await.unwrap().unwrap(),
            Enqueued::Stored(_)
        ));
    }
    stored_at_b.reverse();
    for (n, (at_a, at_b)) in stored_at_a.iter().zip(&stored_at_b).enumerate() {
        assert!(at_a ^ at_b, "shared-{n:02}: stored by exactly one replica");
    }
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM hookgate.events WHERE delivery_id LIKE 'shared-%'"
        )
        .await,
        20
    );
    for store in [&a, &b] {
        let stats = store.enqueue_stats();
        assert_eq!((stats.batches, stats.failed_batches), (2, 0), "{stats:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_in_a_batch_fails_each_of_its_enqueues_and_stores_none() {
    let Some(pg) = Postgres::start() else { return };
    let store = one_writer(&pg.url()).await;
    let mut db = client(&pg.url()).await;
    // PostgreSQL refuses one event of the batch (its insert raises), after the rows
    // before it in the same statement were written.
    db.batch_execute(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
             $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$;
         CREATE TRIGGER refuse_poison BEFORE INSERT ON hookgate.events
             FOR EACH ROW WHEN (NEW.delivery_id = 'poison') EXECUTE FUNCTION refuse();",
    )
    .await
    .unwrap();
    let gate = store.gate(verifier()).build().unwrap();
    let blocker = hold_dedup(&mut db).await;
    let first = first_batch_in_flight(&store, "before").await;

    let ids: Vec<String> = ["good-1", "good-2", "poison", "good-3"]
        .iter()
        .map(|id| (*id).to_owned())
        .collect();
    let direct = queue_in_order(&store, &ids).await;
    // And one through the gate: the sender is answered 503 with Retry-After.
    let via_gate = {
        let gate = gate.clone();
        let delivery = signed("good-gate");
        tokio::spawn(async move {
            gate.receive(&delivery.headers, delivery.body.clone(), None)
                .await
        })
    };
    eventually(WAIT, "five enqueues wait", || async {
        store.enqueue_stats().waiting == 5
    })
    .await;
    blocker.rollback().await.unwrap();

    assert!(matches!(first.await.unwrap(), Ok(Enqueued::Stored(_))));
    for handle in direct {
        match handle.await.unwrap() {
            Err(Error::Batch { events, source }) => {
                assert_eq!(events, 5);
                let message = source
                    .as_db_error()
                    .map(|db| db.message().to_owned())
                    .unwrap_or_default();
                assert_eq!(message, "refused by the test");
            }
            other => panic!("every enqueue of the batch fails: {other:?}"),
        }
    }
    let outcome = via_gate.await.unwrap();
    assert_eq!(outcome.status(), 503, "{outcome:?}");
    assert!(outcome.retry_after().is_some());
    let stats = store.enqueue_stats();
    assert_eq!((stats.batches, stats.failed_batches), (2, 1));

    // Nothing of the failed batch was written: neither events nor dedup rows.
    assert_eq!(count(&db, "SELECT count(*) FROM hookgate.events").await, 1);
    assert_eq!(count(&db, "SELECT count(*) FROM hookgate.dedup").await, 1);
    // So the retries are stored, not answered as duplicates.
    db.batch_execute("DROP TRIGGER refuse_poison ON hookgate.events")
        .await
        .unwrap();
    for id in &ids {
        assert!(
            matches!(store.enqueue(&event(id)).await, Ok(Enqueued::Stored(_))),
            "{id}"
        );
    }
    let (_, last) = send_until_accepted(&gate, &signed("good-gate"), 3).await;
    assert_eq!(last.code(), "accepted");
    assert_eq!(count(&db, "SELECT count(*) FROM hookgate.events").await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_stopped_with_its_runtime_fails_the_waiting_enqueues() {
    let Some(pg) = Postgres::start() else { return };
    let store = one_writer(&pg.url()).await;
    let mut db = client(&pg.url()).await;
    let blocker = hold_dedup(&mut db).await;

    // The first enqueue comes from another runtime, which starts the batch writer there.
    let other = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let first = {
        let store = store.clone();
        let event = event("on-the-other-runtime");
        other.spawn(async move { store.enqueue(&event).await })
    };
    eventually(WAIT, "the first batch is being written", || async {
        store.enqueue_stats().writing == 1
    })
    .await;
    let ids: Vec<String> = (0..3).map(|n| format!("waiting-{n}")).collect();
    let waiting = queue_in_order(&store, &ids).await;

    // That runtime shuts down with its writer mid-batch: the enqueues waiting for the
    // next batch are answered with an error instead of waiting for good.
    other.shutdown_background();
    for handle in waiting {
        let answer = tokio::time::timeout(WAIT, handle)
            .await
            .expect("answered")
            .unwrap();
        assert!(matches!(answer, Err(Error::Unavailable(_))), "{answer:?}");
    }
    assert!(first.await.is_err(), "the other runtime's task was dropped");
    let stats = store.enqueue_stats();
    assert_eq!((stats.waiting, stats.writing), (0, 0), "{stats:?}");
    blocker.rollback().await.unwrap();

    // None of the waiting enqueues was written, and the store carries on with a new writer.
    for id in &ids {
        assert!(
            matches!(store.enqueue(&event(id)).await, Ok(Enqueued::Stored(_))),
            "{id}"
        );
    }
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM hookgate.events WHERE delivery_id LIKE 'waiting-%'"
        )
        .await,
        3
    );
    // The abandoned batch's statement had reached the server, which ran it once the
    // table was free: stored at most once.
    assert!(
        count(
            &db,
            "SELECT count(*) FROM hookgate.events WHERE delivery_id = 'on-the-other-runtime'"
        )
        .await
            <= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_settings_come_from_the_builder_or_the_url() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.url();
    // The URL's settings win over the builder's, and the driver never sees them.
    let store = PgStore::builder()
        .pool_size(1)
        .connect(&format!("{url}?pool_size=3&max_batch=2&batch_writers=1"))
        .await
        .unwrap();
    let handles: Vec<_> = (0..6).map(|n| enqueue(&store, &format!("e{n}"))).collect();
    for handle in handles {
        assert!(matches!(handle.await.unwrap(), Ok(Enqueued::Stored(_))));
    }
    let stats = store.enqueue_stats();
    assert_eq!(stats.events, 6);
    assert!(stats.batches >= 3, "at most 2 per batch: {stats:?}");

    for bad in [
        "max_batch=0",
        "max_batch=10001",
        "batch_writers=0",
        "max_batch=x",
    ] {
        assert!(
            matches!(
                PgStore::connect(&format!("{url}?{bad}")).await,
                Err(Error::Config(_))
            ),
            "{bad}"
        );
    }
    assert!(matches!(
        PgStore::builder().max_batch(0).connect(&url).await,
        Err(Error::Config(_))
    ));
}
