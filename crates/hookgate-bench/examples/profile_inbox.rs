//! Drives the inbox's write path (the segment log, its applier) without HTTP, for profiling
//! its per-event cost:
//! `target/release/examples/profile_inbox [N] [CONCURRENCY] [worker|fanout1]`, under
//! `perf record -g` or `valgrind --tool=callgrind`.
//!
//! N distinct 1 KiB deliveries (random delivery ids) are verified before the clock starts; then CONCURRENCY tasks
//! enqueue them (like that many connections through the gate), and with `worker` an inbox
//! worker (concurrency 8, a handler that returns at once) leases and completes every event
//! at the same time; with `fanout1` the inbox routes every event to one destination and the
//! worker leases and completes deliveries (`hookgate-load`'s `gate-inbox-fanout1`). It prints the rate and how many events shared each commit, then the
//! CPU time (from `/proc/self/task/*/schedstat`, nanoseconds on the CPU) and the context
//! switches (`voluntary_ctxt_switches`, `nonvoluntary_ctxt_switches`) of every thread, per
//! event: counts that depend little on what else runs on the machine.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use hookgate::{SchemeId, Verifier};
use hookgate_bench::{SW_SECRET, payload, signed_headers};
use hookgate_inbox::{HandlerResult, Inbox, InboxEvent, Worker};
use hookgate_queue::{Destination, DestinationTarget, Router};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let concurrency: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(16);
    let mode = args.next();
    let fanout = mode.as_deref() == Some("fanout1");
    let with_worker = fanout || mode.as_deref() == Some("worker");
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
        // As `hookgate-load`'s fan-out setups: the target is never run, the handler answers.
        let destinations: Vec<Destination> = if fanout {
            let target = DestinationTarget::Exec("destination 1".to_owned());
            vec![Destination::new("d1", target).unwrap()]
        } else {
            Vec::new()
        };
        let mut inbox = Inbox::builder(dir.path().join("inbox.db")).no_scheduled_pruning();
        if fanout {
            inbox = inbox.destinations(Router::new(destinations.clone()).unwrap());
        }
        let inbox = inbox.open().unwrap();
        // Counted by the handler, so that waiting for the worker costs nothing while it
        // runs (a status count reads the whole table: polled every 5 ms it was a tenth of
        // the process's CPU).
        let handled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let worker = with_worker.then(|| {
            let handled = handled.clone();
            let mut worker = Worker::builder(inbox.clone(), move |_: InboxEvent| {
                handled.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                async { HandlerResult::Ok }
            });
            if fanout {
                worker = worker.destinations("load", &destinations);
            }
            worker.start().unwrap()
        });
        let before = snapshot();
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
            while handled.load(std::sync::atomic::Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            // The last results reach the database shortly after their handler returned.
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
        print_threads(&before, n);
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

/// One thread's counters.
#[derive(Default, Clone)]
struct ThreadCost {
    threads: u64,
    cpu_ns: u64,
    voluntary: u64,
    involuntary: u64,
}

/// Every live thread's counters since it started, by thread id, with its name.
fn snapshot() -> std::collections::HashMap<String, (String, ThreadCost)> {
    let mut threads = std::collections::HashMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return threads;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap_or_default();
        let status = read("status");
        let field = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        let cost = ThreadCost {
            threads: 1,
            cpu_ns: read("schedstat")
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0),
            voluntary: field("voluntary_ctxt_switches:"),
            involuntary: field("nonvoluntary_ctxt_switches:"),
        };
        threads.insert(
            task.file_name().to_string_lossy().into_owned(),
            (read("comm").trim().to_owned(), cost),
        );
    }
    threads
}

/// Prints every thread's CPU time and context switches per event since `before`: one row
/// per thread, in the order they were started (thread names are cut to 15 bytes, so the
/// inbox's threads are told apart by that order: the database writer, then the log's
/// preallocator and writer (which also syncs), the applier, the checkpointer), the runtime's threads
/// summed.
fn print_threads(before: &std::collections::HashMap<String, (String, ThreadCost)>, events: usize) {
    let mut rows: std::collections::BTreeMap<(u64, String), ThreadCost> = Default::default();
    for (tid, (name, now)) in snapshot() {
        let start = before.get(&tid).map(|(_, c)| c.clone()).unwrap_or_default();
        let order = if name.starts_with("hookgate-inbox") {
            tid.parse().unwrap_or(0)
        } else {
            0
        };
        let cost = rows.entry((order, name)).or_default();
        cost.threads = cost.threads.saturating_add(1);
        cost.cpu_ns = cost
            .cpu_ns
            .saturating_add(now.cpu_ns.saturating_sub(start.cpu_ns));
        cost.voluntary = cost
            .voluntary
            .saturating_add(now.voluntary.saturating_sub(start.voluntary));
        cost.involuntary = cost
            .involuntary
            .saturating_add(now.involuntary.saturating_sub(start.involuntary));
    }
    let by_name = rows
        .into_iter()
        .map(|((order, name), cost)| (format!("{name} {order}"), cost))
        .collect::<Vec<_>>();
    let per = |x: u64| x as f64 / events as f64;
    println!("thread                     n   CPU us/event  vol cs/event  invol cs/event");
    let mut total = ThreadCost::default();
    for (name, c) in &by_name {
        println!(
            "{name:<24} {:>3} {:>13.2} {:>13.3} {:>15.3}",
            c.threads,
            per(c.cpu_ns) / 1000.0,
            per(c.voluntary),
            per(c.involuntary)
        );
        total.cpu_ns = total.cpu_ns.saturating_add(c.cpu_ns);
        total.voluntary = total.voluntary.saturating_add(c.voluntary);
        total.involuntary = total.involuntary.saturating_add(c.involuntary);
    }
    println!(
        "{:<28} {:>13.2} {:>13.3} {:>15.3}",
        "total",
        per(total.cpu_ns) / 1000.0,
        per(total.voluntary),
        per(total.involuntary)
    );
}
