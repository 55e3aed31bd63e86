//! PostgreSQL stopped mid-run: the gate answers 503 with Retry-After while it is down, and
//! after a restart the store and the worker recover by themselves, with nothing lost or
//! half-written. The test starts a throwaway cluster of its own and stops it.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use hookgate_postgres::{HandlerResult, PgStore, PgWorker, QueuedEvent};

const BEFORE: usize = 20;

/// Starts the cluster again. After a SIGKILL the dead postmaster's backends can hold its
/// shared memory for a moment, and a postmaster started meanwhile refuses to run: try
/// again until it comes up, for a bounded time.
fn restart(pg: &mut Postgres) {
    let mut tries = 0;
    loop {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pg.restart())) {
            Ok(()) => return,
            Err(panic) if tries >= 40 => std::panic::resume_unwind(panic),
            Err(_) => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
        }
    }
}
const DURING: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_answers_503_then_recovers_without_loss() {
    let Some(mut pg) = Postgres::start() else {
        return;
    };
    let store = PgStore::builder()
        .acquire_timeout(Duration::from_secs(2))
        .connect(&format!("{}?connect_timeout=2", pg.url()))
        .await
        .unwrap();
    let gate = store
        .gate(verifier())
        .deadline(Duration::from_secs(5))
        .build()
        .unwrap();
    let handled: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let seen = handled.clone();
    let worker = PgWorker::builder(&store, move |event: QueuedEvent| {
        let seen = seen.clone();
        async move {
            *seen
                .lock()
                .unwrap()
                .entry(event.dedup_key().to_owned())
                .or_default() += 1;
            HandlerResult::Ok
        }
    })
    .poll_interval(Duration::from_millis(200))
    .lease(Duration::from_secs(2))
    .start()
    .unwrap();

    for n in 0..BEFORE {
        let delivery = signed(&format!("before_{n}"));
        let outcome = gate
            .receive(&delivery.headers, delivery.body.clone(), None)
            .await;
        assert_eq!(outcome.code(), "accepted");
    }

    // A fast shutdown, then a crash of the server (SIGKILL, recovered from its WAL).
    for outage in ["stop", "kill"] {
        tokio::task::block_in_place(|| match outage {
            "stop" => pg.stop(),
            _ => pg.kill(),
        });
        let during: Vec<_> = (0..DURING)
            .map(|n| signed(&format!("{outage}_{n}")))
            .collect();
        for delivery in &during {
            let outcome = gate
                .receive(&delivery.headers, delivery.body.clone(), None)
                .await;
            assert_eq!(outcome.status(), 503, "{outage}: {outcome:?}");
            assert!(outcome.retry_after().is_some(), "503 carries Retry-After");
            assert!(
                matches!(outcome.code(), "sink_unavailable" | "timeout"),
                "{}",
                outcome.code()
            );
        }
        // The store's own calls fail too, with an error rather than a hang or a panic.
        assert!(store.status_counts().await.is_err());

        tokio::task::block_in_place(|| restart(&mut pg));
        // The senders retry: accepted once the database is back, with no restart of ours.
        for delivery in &during {
            send_until_accepted(&gate, delivery, 600).await;
        }
    }

    let total = (BEFORE + 2 * DURING) as u64;
    eventually(
        Duration::from_secs(120),
        "every event processed",
        || async {
            store
                .status_counts()
                .await
                .is_ok_and(|counts| counts.processed == total)
        },
    )
    .await;
    worker.shutdown().await;

    let expected: BTreeSet<String> = (0..BEFORE)
        .map(|n| dedup_key(&format!("before_{n}")))
        .chain((0..DURING).map(|n| dedup_key(&format!("stop_{n}"))))
        .chain((0..DURING).map(|n| dedup_key(&format!("kill_{n}"))))
        .collect();
    let handled: BTreeSet<String> = handled.lock().unwrap().keys().cloned().collect();
    assert_eq!(handled, expected, "nothing acknowledged is lost");
    // Nothing half-written: one event per dedup row, one row per delivery.
    let db = client(&pg.url()).await;
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM hookgate.events),
                    (SELECT count(DISTINCT dedup_key) FROM hookgate.events),
                    (SELECT count(*) FROM hookgate.dedup),
                    (SELECT count(*) FROM hookgate.dedup d
                       WHERE NOT EXISTS (SELECT 1 FROM hookgate.events e WHERE e.id = d.event_id))",
            &[],
        )
        .await
        .unwrap();
    let counts: (i64, i64, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(counts, (total as i64, total as i64, total as i64, 0));
}
