//! Two replicas sharing one PostgreSQL: every delivery reaches both at once, each event is
//! stored once and processed once. The test starts a throwaway cluster of its own.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use hookgate_postgres::{HandlerResult, PgStore, PgWorker, QueuedEvent};

const DELIVERIES: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_receiving_every_delivery_store_and_process_each_once() {
    let Some(pg) = Postgres::start() else { return };
    // Two replicas: each its own store (pool, in-memory claims) and gate.
    let replicas = [
        PgStore::builder()
            .pool_size(8)
            .connect(&pg.url())
            .await
            .unwrap(),
        PgStore::builder()
            .pool_size(8)
            .connect(&pg.url())
            .await
            .unwrap(),
    ];
    let gates: Vec<Arc<hookgate::Gate>> = replicas
        .iter()
        .map(|store| Arc::new(store.gate(verifier()).build().unwrap()))
        .collect();

    // Every delivery is sent to both replicas at the same moment, like a sender's retry
    // racing its original through a load balancer.
    let mut sends = tokio::task::JoinSet::new();
    for n in 0..DELIVERIES {
        let delivery = signed(&format!("evt_{n}"));
        for gate in &gates {
            let gate = gate.clone();
            let delivery = delivery.clone();
            sends.spawn(async move {
                let (_, last) = send_until_accepted(&gate, &delivery, 200).await;
                (n, last.code())
            });
        }
    }
    let mut codes: BTreeMap<usize, Vec<&'static str>> = BTreeMap::new();
    while let Some(sent) = sends.join_next().await {
        let (n, code) = sent.unwrap();
        codes.entry(n).or_default().push(code);
    }
    for (n, codes) in &codes {
        assert_eq!(codes.len(), 2);
        assert!(
            codes.iter().filter(|c| **c == "accepted").count() <= 1,
            "delivery {n} enqueued twice: {codes:?}"
        );
        assert!(
            codes.iter().all(|c| *c == "accepted" || *c == "duplicate"),
            "{codes:?}"
        );
    }

    // One row per delivery in the shared database.
    let db = client(&pg.url()).await;
    let rows = db
        .query(
            "SELECT dedup_key, count(*) FROM hookgate.events GROUP BY dedup_key",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), DELIVERIES);
    assert!(rows.iter().all(|row| row.get::<_, i64>(1) == 1));

    // A worker on each replica: every event handled once.
    let handled: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let workers: Vec<_> = replicas
        .iter()
        .map(|store| {
            let handled = handled.clone();
            PgWorker::builder(store, move |event: QueuedEvent| {
                let handled = handled.clone();
                async move {
                    *handled
                        .lock()
                        .unwrap()
                        .entry(event.dedup_key().to_owned())
                        .or_default() += 1;
                    HandlerResult::Ok
                }
            })
            .concurrency(4)
            .start()
            .unwrap()
        })
        .collect();
    eventually(
        Duration::from_secs(120),
        "every event processed",
        || async { replicas[0].status_counts().await.unwrap().processed == DELIVERIES as u64 },
    )
    .await;
    let mut stats = Vec::new();
    for worker in workers {
        stats.push(worker.stats());
        worker.shutdown().await;
    }
    let handled = handled.lock().unwrap();
    assert_eq!(handled.len(), DELIVERIES);
    assert!(handled.values().all(|count| *count == 1), "{handled:?}");
    assert_eq!(
        stats.iter().map(|s| s.processed).sum::<u64>(),
        DELIVERIES as u64
    );
}
