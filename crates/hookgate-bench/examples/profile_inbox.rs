//! Drives the inbox's write path (the segment log, its applier) without HTTP, for profiling
//! its per-event cost:
//! `target/release/examples/profile_inbox [N] [CONCURRENCY] [worker]`, under
//! `perf record -g` or `valgrind --tool=callgrind`.
//!
//! N distinct 1 KiB deliveries (random delivery ids) are verified before the clock starts; then CONCURRENCY tasks
//! enqueue them (like that many connections through the gate), and with `worker` an inbox
//! worker (concurrency 8, a handler that returns at once) leases and completes every event
//! at the same time. It prints the rate and how many events shared each commit.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use hookgate::{SchemeId, Verifier};
use hookgate_bench::{SW_SECRET, payload, signed_headers};
use hookgate_inbox::{HandlerResult, Inbox, InboxEvent, Worker};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let concurrency: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(16);
    let with_worker = args.next().is_some_and(|s| s == "worker");
    let body = bytes::Bytes::from(payload(1024));
    let verifier = Verifier::builder(SchemeId::StandardWebhooksV1)
        .secret(SW_SECRET)
        .build()
        .unwrap();
    let events: Vec<hookgate::VerifiedEvent> = (0..n)
        .map(|i| {
            let pairs = signed_headers(
                SchemeId::StandardWebhooksV1,
                SW_SECRET,
                // Random, as providers' delivery ids are (Stripe's `evt_…`, Svix's
                // `msg_…`): sequential ids would make every key-ordered index append-only
                // and hide what a random key costs.
                &format!("msg_{:016x}{i:08x}", fastrand::u64(..)),
                &body,
            )
            .unwrap();
            verifier.verify(&pairs, body.clone()).unwrap()
        })
        .collect();
    let events = Arc::new(events);
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let inbox = Inbox::builder(dir.path().join("inbox.db"))
            .no_scheduled_pruning()
            .open()
            .unwrap();
        let worker = with_worker.then(|| {
            Worker::builder(inbox.clone(), |_: InboxEvent| async { HandlerResult::Ok })
                .start()
                .unwrap()
        });
        let started = Instant::now();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let tasks: Vec<_> = (0..concurrency)
            .map(|_| {
                let (inbox, events, next) = (inbox.clone(), events.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(event) = events.get(i) else { break };
                        inbox.enqueue(event).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let stored = started.elapsed();
        // A query waits for the events acknowledged before it to reach the database.
        let total = inbox.status_counts().await.unwrap().total();
        let applied = started.elapsed();
        assert_eq!(total, n as u64);
        if let Some(worker) = worker {
            while inbox.status_counts().await.unwrap().processed < n as u64 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let done = started.elapsed();
            worker.shutdown().await;
            println!(
                "processed {n} events in {:.2} s ({:.0}/s)",
                done.as_secs_f64(),
                n as f64 / done.as_secs_f64()
            );
        }
        let stats = inbox.stats();
        println!(
            "stored {n} events with {concurrency} tasks in {:.2} s ({:.0}/s); {} log syncs, {:.1} events/sync; \
             in the database after {:.2} s; {} database commits, {:.1} jobs/commit",
            stored.as_secs_f64(),
            n as f64 / stored.as_secs_f64(),
            stats.log_syncs,
            stats.average_log_batch(),
            applied.as_secs_f64(),
            stats.commits,
            stats.average_batch()
        );
    });
}
