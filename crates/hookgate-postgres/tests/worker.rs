//! The worker on a real PostgreSQL: retries, dead letters, replay, wake-ups, a crashed
//! worker's events taken over, transactional handlers, shutdown and pruning. Every test
//! starts a throwaway cluster of its own. No test asserts how long anything took: waits are
//! bounded polls of a condition.

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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use hookgate::BoxFuture;
use hookgate_postgres::{
    Enqueued, EventId, HandlerResult, PgQueue, PgStore, PgTransaction, PgWorker, QueuedEvent,
    Replay, RetryPolicy, Status, TxHandler, tx_handler,
};

const LIMIT: Duration = Duration::from_secs(60);

fn fast_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy::new()
        .base(Duration::from_millis(20))
        .cap(Duration::from_millis(100))
        .max_attempts(max_attempts)
}

async fn stored(store: &PgStore, name: &str) -> EventId {
    match store.enqueue(&event(name)).await.unwrap() {
        Enqueued::Stored(id) => id,
        other => panic!("{name}: {other:?}"),
    }
}

async fn status_of(store: &PgStore, id: EventId) -> Status {
    store.entry(id).await.unwrap().unwrap().status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_dead_letters_and_replay() {
    let Some(pg) = Postgres::start() else { return };
    let store = PgStore::connect(&pg.url()).await.unwrap();
    let healed = Arc::new(AtomicBool::new(false));
    let calls: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let handler = {
        let (healed, calls) = (healed.clone(), calls.clone());
        move |event: QueuedEvent| {
            let (healed, calls) = (healed.clone(), calls.clone());
            async move {
                let id = event.delivery_id().unwrap().to_owned();
                let n = {
                    let mut calls = calls.lock().unwrap();
                    let n = calls.entry(id.clone()).or_default();
                    *n += 1;
                    *n
                };
                match id.as_str() {
                    "flaky" if n < 3 => HandlerResult::retry_because(format!("try {n}")),
                    "poison" if !healed.load(Ordering::SeqCst) => HandlerResult::fail("bad body"),
                    "down" if !healed.load(Ordering::SeqCst) => {
                        HandlerResult::retry_because("downstream 502")
                    }
                    _ => HandlerResult::Ok,
                }
            }
        }
    };
    // An hour between polls: retries run because the worker sleeps until they are due.
    let worker = PgWorker::builder(&store, handler)
        .retry(fast_retries(3))
        .poll_interval(Duration::from_secs(3600))
        .start()
        .unwrap();
    let flaky = stored(&store, "flaky").await;
    let poison = stored(&store, "poison").await;
    let down = stored(&store, "down").await;
    let fine = stored(&store, "fine").await;

    eventually(LIMIT, "two processed, two dead", || async {
        let counts = store.status_counts().await.unwrap();
        counts.processed == 2 && counts.dead == 2
    })
    .await;
    assert_eq!(status_of(&store, flaky).await, Status::Processed);
    assert_eq!(status_of(&store, fine).await, Status::Processed);
    let outcomes = |attempts: Vec<hookgate_postgres::Attempt>| {
        attempts
            .into_iter()
            .map(|a| (a.attempt, a.outcome, a.error))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        outcomes(store.attempts(flaky).await.unwrap()),
        vec![
            (1, "retry".to_owned(), Some("try 1".to_owned())),
            (2, "retry".to_owned(), Some("try 2".to_owned())),
            (3, "processed".to_owned(), None),
        ]
    );
    // A permanent failure is dead at once; a retried one after the policy's 3 attempts.
    let dead = store.dead_letters(None, 10).await.unwrap();
    assert_eq!(dead.len(), 2);
    let poison_entry = store.entry(poison).await.unwrap().unwrap();
    assert_eq!(poison_entry.attempts, 1);
    assert_eq!(poison_entry.last_error.as_deref(), Some("bad body"));
    assert!(poison_entry.dead_at.is_some());
    let down_entry = store.entry(down).await.unwrap().unwrap();
    assert_eq!(down_entry.attempts, 3);
    assert!(
        down_entry.last_error.unwrap().contains("downstream 502"),
        "the reason says why"
    );
    let processed_entry = store.entry(fine).await.unwrap().unwrap();
    assert!(processed_entry.finished_at.is_some() && processed_entry.processing_duration.is_some());
    assert!(processed_entry.next_attempt_at.is_none());

    // Fixed: replay the dead letters (the notification wakes the idle worker).
    healed.store(true, Ordering::SeqCst);
    assert_eq!(store.replay_dead_letters(Replay::All).await.unwrap(), 2);
    eventually(LIMIT, "the replayed events processed", || async {
        store.status_counts().await.unwrap().processed == 4
    })
    .await;
    let replayed = store.attempts(down).await.unwrap();
    assert_eq!(replayed.last().unwrap().attempt, 1, "attempts start again");
    assert_eq!(replayed.last().unwrap().outcome, "processed");

    // A processed event can be run again too.
    assert!(store.replay(fine).await.unwrap());
    eventually(LIMIT, "the replayed event processed again", || async {
        calls.lock().unwrap()["fine"] == 2 && status_of(&store, fine).await == Status::Processed
    })
    .await;
    let stats = worker.stats();
    assert_eq!(stats.dead, 2);
    assert!(stats.retried >= 4, "{stats:?}");
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_is_woken_by_a_notification() {
    let Some(pg) = Postgres::start() else { return };
    let store = PgStore::connect(&pg.url()).await.unwrap();
    let handled = Arc::new(AtomicUsize::new(0));
    let counter = handled.clone();
    let queue = PgQueue::new(&store).prune_interval(None);
    let worker = PgWorker::builder(queue, move |_event: QueuedEvent| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            HandlerResult::Ok
        }
    })
    .poll_interval(Duration::from_secs(3600))
    .lease(Duration::from_secs(3600))
    .start()
    .unwrap();
    // Once the first event is done and the worker listens, it sleeps for an hour unless
    // woken.
    stored(&store, "first").await;
    eventually(LIMIT, "the first event handled", || async {
        handled.load(Ordering::SeqCst) == 1
    })
    .await;
    let db = client(&pg.url()).await;
    eventually(LIMIT, "the worker listens", || async {
        let listening: i64 = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN %'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        listening == 1
    })
    .await;
    stored(&store, "second").await;
    eventually(LIMIT, "the second event handled without a poll", || async {
        handled.load(Ordering::SeqCst) == 2
    })
    .await;
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_workers_events_are_taken_over_after_the_lease() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.url();
    let store = PgStore::connect(&url).await.unwrap();
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(stored(&store, &format!("crash_{n}")).await);
    }

    // The doomed worker runs in a runtime of its own, which is dropped while its handlers
    // hang: no shutdown, no give-back, its connections simply close, as in a crash.
    let (started_tx, started_rx) = std::sync::mpsc::channel::<String>();
    let doomed = std::thread::spawn({
        let url = url.clone();
        move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let worker = runtime.block_on(async {
                let store = PgStore::connect(&url).await.unwrap();
                PgWorker::builder(&store, move |event: QueuedEvent| {
                    let started = started_tx.clone();
                    async move {
                        started.send(event.dedup_key().to_owned()).unwrap();
                        std::future::pending::<()>().await;
                        HandlerResult::Ok
                    }
                })
                .concurrency(3)
                .lease(Duration::from_millis(600))
                .start()
                .unwrap()
            });
            (runtime, worker)
        }
    });
    // The handle is kept until the runtime is gone: dropping it would stop the worker
    // gracefully.
    let (runtime, doomed_worker) = doomed.join().unwrap();
    let mut running = Vec::new();
    for _ in 0..3 {
        running.push(started_rx.recv_timeout(LIMIT).unwrap());
    }
    runtime.shutdown_background();
    drop(doomed_worker);

    let handled: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
    let seen = handled.clone();
    let survivor = PgWorker::builder(&store, move |event: QueuedEvent| {
        let seen = seen.clone();
        async move {
            seen.lock()
                .unwrap()
                .insert(event.dedup_key().to_owned(), event.attempt());
            HandlerResult::Ok
        }
    })
    .lease(Duration::from_millis(600))
    .poll_interval(Duration::from_millis(200))
    .start()
    .unwrap();
    eventually(LIMIT, "every event processed", || async {
        store.status_counts().await.unwrap().processed == 6
    })
    .await;
    survivor.shutdown().await;
    let handled = handled.lock().unwrap();
    assert_eq!(handled.len(), 6);
    for key in &running {
        assert_eq!(handled[key], 2, "{key}: the crashed attempt counts");
    }
    assert_eq!(handled.values().filter(|a| **a == 1).count(), 3);
}

/// Books each event in `ledger`; the first call for `stolen` waits until the test took
/// its lease away.
struct Ledger {
    steal: Mutex<Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>>,
}

impl TxHandler for Ledger {
    fn handle<'a>(
        &'a self,
        event: QueuedEvent,
        tx: &'a PgTransaction<'a>,
    ) -> BoxFuture<'a, HandlerResult> {
        Box::pin(async move {
            if let Err(err) = tx
                .client()
                .execute(
                    "INSERT INTO ledger (dedup_key, attempt) VALUES ($1, $2)",
                    &[&event.dedup_key(), &(event.attempt() as i32)],
                )
                .await
            {
                return HandlerResult::retry_because(err);
            }
            match event.delivery_id() {
                Some("refused") if event.attempt() == 1 => {
                    HandlerResult::retry_because("downstream said no")
                }
                Some("stolen") if event.attempt() == 1 => {
                    let signals = self.steal.lock().unwrap().take();
                    if let Some((written, go)) = signals {
                        written.send(()).unwrap();
                        tokio::task::spawn_blocking(move || go.recv_timeout(LIMIT).unwrap())
                            .await
                            .unwrap();
                    }
                    HandlerResult::Ok
                }
                _ => HandlerResult::Ok,
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transactional_handlers_writes_commit_with_the_event_exactly_once() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.url();
    let db = client(&url).await;
    db.batch_execute("CREATE TABLE ledger (dedup_key text NOT NULL, attempt int NOT NULL)")
        .await
        .unwrap();
    let store = PgStore::connect(&format!("{url}?schema=inbox"))
        .await
        .unwrap();
    let (written_tx, written_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel();
    let worker = PgWorker::transactional(
        &store,
        Ledger {
            steal: Mutex::new(Some((written_tx, go_rx))),
        },
    )
    .retry(fast_retries(5))
    .lease(Duration::from_millis(600))
    .poll_interval(Duration::from_millis(200))
    .start()
    .unwrap();

    let ok = stored(&store, "ok").await;
    let refused = stored(&store, "refused").await;
    let stolen = stored(&store, "stolen").await;

    // The `stolen` handler wrote its row and waits: another worker takes the lease over
    // (as after a stall past the lease), then the handler returns Ok.
    tokio::task::spawn_blocking(move || written_rx.recv_timeout(LIMIT).unwrap())
        .await
        .unwrap();
    let taken = db
        .execute(
            "UPDATE inbox.events SET lease_token = 42 WHERE id = $1 AND status = 'processing'",
            &[&stolen.get()],
        )
        .await
        .unwrap();
    assert_eq!(taken, 1);
    go_tx.send(()).unwrap();

    eventually(LIMIT, "all three processed", || async {
        store.status_counts().await.unwrap().processed == 3
    })
    .await;
    let rows = db
        .query(
            "SELECT dedup_key, array_agg(attempt ORDER BY attempt) FROM ledger GROUP BY dedup_key",
            &[],
        )
        .await
        .unwrap();
    let ledger: BTreeMap<String, Vec<i32>> =
        rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    // One committed write per event: the refused attempt and the attempt whose lease was
    // taken over were rolled back with the handler's writes.
    assert_eq!(
        ledger,
        BTreeMap::from([
            (dedup_key("ok"), vec![1]),
            (dedup_key("refused"), vec![2]),
            (dedup_key("stolen"), vec![2]),
        ])
    );
    assert_eq!(status_of(&store, ok).await, Status::Processed);
    assert_eq!(status_of(&store, refused).await, Status::Processed);
    let stats = worker.stats();
    assert_eq!(stats.lost_leases, 1, "{stats:?}");
    worker.shutdown().await;

    // The closure form works the same way.
    let closure_worker = PgWorker::transactional(
        &store,
        tx_handler(|event, tx| {
            Box::pin(async move {
                match tx
                    .client()
                    .execute(
                        "INSERT INTO ledger (dedup_key, attempt) VALUES ($1, 0)",
                        &[&event.dedup_key()],
                    )
                    .await
                {
                    Ok(_) => HandlerResult::Ok,
                    Err(err) => HandlerResult::retry_because(err),
                }
            })
        }),
    )
    .start()
    .unwrap();
    stored(&store, "closure").await;
    eventually(LIMIT, "the closure's event processed", || async {
        store.status_counts().await.unwrap().processed == 4
    })
    .await;
    closure_worker.shutdown().await;
    let closure_rows: i64 = db
        .query_one(
            "SELECT count(*) FROM ledger WHERE dedup_key = $1",
            &[&dedup_key("closure")],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(closure_rows, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_unfinished_events_back_and_pruning_follows_the_retention() {
    let Some(pg) = Postgres::start() else { return };
    let store = PgStore::builder()
        .claim_ttl(Duration::from_millis(10))
        .committed_ttl(Duration::from_millis(200))
        .retention(Duration::from_millis(200))
        .connect(&pg.url())
        .await
        .unwrap();
    let started = Arc::new(AtomicUsize::new(0));
    let counter = started.clone();
    let worker = PgWorker::builder(&store, move |_event: QueuedEvent| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
            HandlerResult::Ok
        }
    })
    .shutdown_grace(Duration::from_millis(50))
    .start()
    .unwrap();
    let hung = stored(&store, "hung").await;
    eventually(LIMIT, "the handler started", || async {
        started.load(Ordering::SeqCst) == 1
    })
    .await;
    let report = worker.shutdown().await;
    assert_eq!((report.finished, report.released), (0, 1));
    let entry = store.entry(hung).await.unwrap().unwrap();
    assert_eq!(entry.status, Status::Queued);
    assert_eq!(entry.attempts, 0, "a given-back attempt is not counted");

    // Another worker finishes it; pruning then deletes it, its history and its dedup row
    // once the retention and the horizon passed.
    let queue = PgQueue::new(&store).prune_interval(None);
    let worker = PgWorker::builder(queue, |_event: QueuedEvent| async { HandlerResult::Ok })
        .start()
        .unwrap();
    eventually(LIMIT, "processed", || async {
        status_of(&store, hung).await == Status::Processed
    })
    .await;
    worker.shutdown().await;
    assert_eq!(store.attempts(hung).await.unwrap().len(), 1);
    eventually(LIMIT, "pruned", || async {
        let report = store.prune().await.unwrap();
        store.entry(hung).await.unwrap().is_none() && report.dedup_keys <= 1
    })
    .await;
    assert!(store.attempts(hung).await.unwrap().is_empty());
    let db = client(&pg.url()).await;
    eventually(LIMIT, "the dedup row pruned", || async {
        store.prune().await.unwrap();
        let left: i64 = db
            .query_one("SELECT count(*) FROM hookgate.dedup", &[])
            .await
            .unwrap()
            .get(0);
        left == 0
    })
    .await;
    // Past the horizon, the same delivery is new again.
    assert!(matches!(
        store.enqueue(&event("hung")).await.unwrap(),
        Enqueued::Stored(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_worker_settings_are_refused() {
    let Some(pg) = Postgres::start() else { return };
    let store = PgStore::connect(&pg.url()).await.unwrap();
    let handler = |_event: QueuedEvent| async { HandlerResult::Ok };
    assert!(
        PgWorker::builder(&store, handler)
            .concurrency(0)
            .start()
            .is_err()
    );
    assert!(
        PgWorker::builder(&store, handler)
            .lease(Duration::from_millis(10))
            .start()
            .is_err()
    );
    assert!(
        PgWorker::builder(&store, handler)
            .poll_interval(Duration::ZERO)
            .start()
            .is_err()
    );
    assert!(
        PgWorker::builder(&store, handler)
            .retry(RetryPolicy::new().max_attempts(0))
            .start()
            .is_err()
    );
}

/// Sessions of the database other than `db`'s own, hookgate's among them.
async fn other_sessions(db: &tokio_postgres::Client) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pg_stat_activity
         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// WAL flushes of the whole server so far. A session's counts reach the view when it
/// exits (or when idle, at most once a second), so the test reads it with no other
/// session left.
async fn wal_flushes(db: &tokio_postgres::Client) -> i64 {
    eventually(LIMIT, "every other session gone", || async {
        other_sessions(db).await == 0
    })
    .await;
    db.query_one("SELECT wal_sync FROM pg_stat_wal", &[])
        .await
        .unwrap()
        .get(0)
}

/// The worker's bookkeeping (leases and results) commits without waiting for the WAL
/// flush: processing 40 events one at a time, each result a commit of its own, flushes
/// the WAL fewer than 40 times (a synchronous commit flushes every time). The enqueues
/// before it flushed as ever, and every event is processed. With destinations as without:
/// their leases and results are explicit transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workers_bookkeeping_does_not_wait_for_wal_flushes() {
    let Some(pg) = Postgres::start() else { return };
    bookkeeping_flushes(&pg.url(), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fan_out_workers_bookkeeping_does_not_wait_for_wal_flushes() {
    let Some(pg) = Postgres::start() else { return };
    let target = hookgate_queue::DestinationTarget::Exec("true".into());
    let destination = hookgate_queue::Destination::new("billing", target).unwrap();
    bookkeeping_flushes(&pg.url(), &[destination]).await;
}

async fn bookkeeping_flushes(url: &str, destinations: &[hookgate_queue::Destination]) {
    let connect = || async {
        let mut builder = PgStore::builder();
        if !destinations.is_empty() {
            builder =
                builder.destinations(hookgate_queue::Router::new(destinations.to_vec()).unwrap());
        }
        builder.connect(url).await.unwrap()
    };
    let db = client(url).await;
    let before_enqueues = wal_flushes(&db).await;
    let store = connect().await;
    for n in 0..40 {
        stored(&store, &format!("evt_{n}")).await;
    }
    drop(store);
    let before = wal_flushes(&db).await;
    // (Not exactly 40: the WAL writer may flush a commit before its session does.)
    assert!(
        before - before_enqueues >= 30,
        "each enqueue alone waits for its flush: {before_enqueues} -> {before}"
    );

    let store = connect().await;
    let queue = PgQueue::new(&store).prune_interval(None);
    let mut worker =
        PgWorker::builder(queue, |_event: QueuedEvent| async { HandlerResult::Ok }).concurrency(1);
    if !destinations.is_empty() {
        worker = worker.destinations("flushes", destinations);
    }
    let worker = worker.start().unwrap();
    eventually(LIMIT, "every event processed", || async {
        store.status_counts().await.unwrap().get(Status::Processed) == 40
    })
    .await;
    worker.shutdown().await;
    drop(store);
    let after = wal_flushes(&db).await;
    // Synchronous, the 40 results flush at least 40 times (79 with their leases, when
    // this was measured); deferred, only the WAL writer flushes, at most five times a
    // second (`wal_writer_delay` 200 ms), so only a worker slower than 8 s would reach 40.
    assert!(
        after - before < 40,
        "40 results and their leases flushed the WAL {} times",
        after - before
    );
}

/// A lease is renewed and given back through the queue, with and without destinations:
/// the bookkeeping statements that commit without waiting for the flush still change
/// exactly what they did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_are_renewed_and_given_back_with_and_without_destinations() {
    use hookgate_queue::Queue as _;
    let Some(pg) = Postgres::start() else { return };
    let url = pg.url();
    let db = client(&url).await;
    let target = hookgate_queue::DestinationTarget::Exec("true".into());
    let billing = hookgate_queue::Destination::new("billing", target).unwrap();
    for (schema, table, destinations) in [
        ("plain", "events", Vec::new()),
        ("routed", "deliveries", vec![billing]),
    ] {
        let mut builder = PgStore::builder().schema(schema);
        if !destinations.is_empty() {
            builder = builder.destinations(hookgate_queue::Router::new(destinations).unwrap());
        }
        let store = builder.connect(&url).await.unwrap();
        let id = stored(&store, "evt_1").await;
        let queue = PgQueue::new(&store).prune_interval(None);
        let minute = Duration::from_secs(60);
        let leased = queue.lease(1, minute, Duration::ZERO).await.unwrap();
        assert_eq!(leased.len(), 1, "{schema}");
        let ticket = leased[0].ticket;
        queue
            .renew(vec![ticket], Duration::from_secs(3600))
            .await
            .unwrap();
        let renewed: bool = db
            .query_one(
                &format!("SELECT due_at > now() + interval '30 minutes' FROM {schema}.{table}"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(renewed, "{schema}: the lease runs for an hour now");
        assert_eq!(queue.release(vec![ticket]).await.unwrap(), 1, "{schema}");
        let entry = store.entry(id).await.unwrap().unwrap();
        assert_eq!(
            (entry.status, entry.attempts),
            (Status::Queued, 0),
            "{schema}"
        );
        let again = queue.lease(1, minute, Duration::ZERO).await.unwrap();
        assert_eq!(again.len(), 1, "{schema}: due again at once");
        assert_eq!(
            again[0].attempt, 1,
            "{schema}: the given-back attempt is not counted"
        );
    }
}
