//! Drains a backlog with the PostgreSQL worker, without HTTP, for its events per second:
//! `target/release/examples/profile_pg_worker [N] [CONCURRENCY] [fanout1] --postgres URL`.
//!
//! N distinct 1 KiB deliveries are verified and enqueued (32 at a time) into a schema of
//! their own; then a `PgWorker` (CONCURRENCY handlers at once, `hookgate serve`'s 8 by
//! default, each returning at once) leases and completes every one of them, timed from its
//! start until the log counts N processed. With `fanout1` the store routes every event to
//! one destination and the worker leases and completes deliveries (as `hookgate-load`'s
//! `gate-inbox-fanout1` does with the inbox). The schema is dropped at the end. Run it under
//! `crates/hookgate-bench/scripts/pg_cost.sh DATADIR URL target/release/examples/profile_pg_worker N C`
//! for PostgreSQL's CPU time (the script adds `--postgres URL`).

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::arithmetic_side_effects
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hookgate::{SchemeId, Verifier};
use hookgate_bench::{SW_SECRET, payload, signed_headers};
use hookgate_postgres::{HandlerResult, PgStore, PgWorker, QueuedEvent};
use hookgate_queue::{Destination, DestinationTarget, Router};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args
        .iter()
        .position(|a| a == "--postgres")
        .and_then(|i| args.get(i + 1))
        .expect("--postgres URL")
        .clone();
    let mut numbers = args.iter().filter_map(|a| a.parse::<usize>().ok());
    let n = numbers.next().unwrap_or(20_000);
    let concurrency = numbers.next().unwrap_or(8);
    let fanout = args.iter().any(|a| a == "fanout1");
    let body = bytes::Bytes::from(payload(1024));
    let verifier = Verifier::builder(SchemeId::StandardWebhooksV1)
        .secret(SW_SECRET)
        .build()
        .unwrap();
    let events: Arc<Vec<hookgate::VerifiedEvent>> = Arc::new(
        (0..n)
            .map(|i| {
                let id = format!("msg_{:016x}{i:08x}", fastrand::u64(..));
                let pairs =
                    signed_headers(SchemeId::StandardWebhooksV1, SW_SECRET, &id, &body).unwrap();
                verifier.verify(&pairs, body.clone()).unwrap()
            })
            .collect(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let schema = format!("profile_pg_worker_{}", std::process::id());
        // The target is never run: the handler answers.
        let destinations: Vec<Destination> = if fanout {
            let target = DestinationTarget::Exec("destination 1".to_owned());
            vec![Destination::new("d1", target).unwrap()]
        } else {
            Vec::new()
        };
        let mut store = PgStore::builder().schema(schema.clone());
        if fanout {
            store = store.destinations(Router::new(destinations.clone()).unwrap());
        }
        let store = store.connect(&url).await.unwrap();
        let next = Arc::new(AtomicUsize::new(0));
        let enqueues: Vec<_> = (0..32)
            .map(|_| {
                let (store, events, next) = (store.clone(), events.clone(), next.clone());
                tokio::spawn(async move {
                    while let Some(event) = events.get(next.fetch_add(1, Ordering::Relaxed)) {
                        store.enqueue(event).await.unwrap();
                    }
                })
            })
            .collect();
        for task in enqueues {
            task.await.unwrap();
        }
        let handled = Arc::new(AtomicUsize::new(0));
        let counter = handled.clone();
        let started = Instant::now();
        let mut worker = PgWorker::builder(&store, move |_: QueuedEvent| {
            counter.fetch_add(1, Ordering::Relaxed);
            async { HandlerResult::Ok }
        })
        .concurrency(concurrency);
        if fanout {
            worker = worker.destinations("load", &destinations);
        }
        let worker = worker.start().unwrap();
        while handled.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // The last results reach the database shortly after their handler returned.
        while store.status_counts().await.unwrap().processed < n as u64 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let done = started.elapsed();
        worker.shutdown().await;
        println!(
            "processed {n} events{} with {concurrency} handlers in {:.2} s ({:.0}/s)",
            if fanout { " (one destination)" } else { "" },
            done.as_secs_f64(),
            n as f64 / done.as_secs_f64()
        );
        let dropped = hookgate_postgres::tokio_postgres::connect(
            &url,
            hookgate_postgres::tokio_postgres::NoTls,
        )
        .await;
        if let Ok((client, connection)) = dropped {
            tokio::spawn(connection);
            let drop = format!("DROP SCHEMA \"{schema}\" CASCADE");
            client.batch_execute(&drop).await.unwrap();
        }
    });
}
