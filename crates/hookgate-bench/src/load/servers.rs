//! The servers under test, each on an ephemeral port of 127.0.0.1.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use hookgate::{ChannelSink, Gate, SchemeId, Verifier};
use hookgate_inbox::{HandlerResult, Inbox, InboxEvent, Worker, WorkerHandle};
use hookgate_postgres::{PgStore, PgWorker, PgWorkerHandle, QueuedEvent};
use hookgate_queue::{Destination, DestinationTarget, Router as DestinationRouter, WorkerStats};
use hookgate_tower::GateLayer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::SECRET;

/// The web framework of a setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framework {
    /// axum 0.8 (with `hookgate-tower`).
    Axum,
    /// actix-web 4 (with `hookgate-actix`).
    Actix,
}

impl Framework {
    /// The name used in the results.
    pub fn name(self) -> &'static str {
        match self {
            Framework::Axum => "axum",
            Framework::Actix => "actix",
        }
    }
}

/// What runs behind `POST /webhooks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// A bare handler that takes the body as `Bytes` and answers 200.
    Baseline,
    /// The Gate with the in-memory dedup store and a channel sink drained by a task in
    /// batches (see `drain` below).
    GateMemory,
    /// The Gate with the SQLite inbox as dedup store and sink (fsync per group commit).
    GateInbox,
    /// The Gate with the PostgreSQL store as dedup store and sink: concurrent deliveries
    /// are written in batches, one statement and one commit each (the store's group
    /// commit), over a pool of [`POSTGRES_POOL`] connections (or the URL's `pool_size`).
    /// Needs a database: see [`start`].
    GatePostgres,
    /// As [`Setup::GateInbox`], with a worker processing every event at the same time (a
    /// handler that returns at once): the `hookgate serve` workload, where each event is
    /// enqueued, leased and completed.
    GateInboxWorker,
    /// As [`Setup::GateInboxWorker`], on an inbox with one destination (issue 21): each
    /// event is routed on receive and becomes one delivery. The baseline of
    /// [`Setup::GateInboxFanout3`].
    GateInboxFanout1,
    /// As [`Setup::GateInboxFanout1`] with three destinations: three deliveries per event,
    /// leased and completed by the worker. The bound: at most 10 % below
    /// `gate-inbox-fanout1`'s rate.
    GateInboxFanout3,
    /// As [`Setup::GatePostgres`], with a worker processing every event at the same time
    /// (a handler that returns at once): `hookgate serve --store postgres://`, where each
    /// event is enqueued, leased and completed in the database.
    GatePostgresWorker,
}

/// Connections of the `gate-postgres` setup's pool.
pub const POSTGRES_POOL: usize = 32;

impl Setup {
    /// The name used in the results.
    pub fn name(self) -> &'static str {
        match self {
            Setup::Baseline => "baseline",
            Setup::GateMemory => "gate-memory",
            Setup::GateInbox => "gate-inbox",
            Setup::GatePostgres => "gate-postgres",
            Setup::GateInboxWorker => "gate-inbox-worker",
            Setup::GateInboxFanout1 => "gate-inbox-fanout1",
            Setup::GateInboxFanout3 => "gate-inbox-fanout3",
            Setup::GatePostgresWorker => "gate-postgres-worker",
        }
    }

    /// Whether the setup needs a PostgreSQL database.
    pub fn needs_postgres(self) -> bool {
        matches!(self, Setup::GatePostgres | Setup::GatePostgresWorker)
    }

    /// Whether the setup stores events in an inbox.
    pub fn has_inbox(self) -> bool {
        matches!(
            self,
            Setup::GateInbox
                | Setup::GateInboxWorker
                | Setup::GateInboxFanout1
                | Setup::GateInboxFanout3
        )
    }

    /// The destinations of a fan-out setup (none for the others).
    fn destinations(self) -> Vec<Destination> {
        let count = match self {
            Setup::GateInboxFanout1 => 1,
            Setup::GateInboxFanout3 => 3,
            _ => 0,
        };
        (1..=count)
            .filter_map(|n| {
                let target = DestinationTarget::Exec(format!("destination {n}"));
                Destination::new(&format!("d{n}"), target).ok()
            })
            .collect()
    }
}

/// A server running in the background until [`RunningServer::stop`].
#[derive(Debug)]
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    running: Running,
    inbox: Option<Inbox>,
    postgres: Option<Postgres>,
    worker: Option<BenchWorker>,
    _data: Option<tempfile::TempDir>,
}

/// The worker of a setup that has one, on the inbox or on the PostgreSQL store.
#[derive(Debug)]
enum BenchWorker {
    Inbox(WorkerHandle),
    Postgres(PgWorkerHandle),
}

impl BenchWorker {
    fn stats(&self) -> WorkerStats {
        match self {
            BenchWorker::Inbox(worker) => worker.stats(),
            BenchWorker::Postgres(worker) => worker.stats(),
        }
    }

    async fn shutdown(self) {
        match self {
            BenchWorker::Inbox(worker) => drop(worker.shutdown().await),
            BenchWorker::Postgres(worker) => drop(worker.shutdown().await),
        }
    }
}

/// The `gate-postgres` setup's database: the URL without hookgate's settings (for a
/// direct connection), the schema of this run (dropped at stop, so runs do not see each
/// other's deliveries), the store, and the database's committed transactions when it
/// started.
#[derive(Debug)]
struct Postgres {
    driver_url: String,
    schema: String,
    store: PgStore,
    commits_at_start: Option<i64>,
}

/// What [`RunningServer::stop`] reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stopped {
    /// With `gate-postgres`: transactions the database committed from the store's start
    /// to its stop (`pg_stat_database.xact_commit`, every session of the database), once
    /// the statistics settled.
    pub postgres_commits: Option<u64>,
}

#[derive(Debug)]
enum Running {
    /// An axum server on this runtime.
    Tokio {
        shutdown: oneshot::Sender<()>,
        task: JoinHandle<()>,
    },
    /// An actix-web server on its own thread and actix system.
    Actix {
        handle: actix_web::dev::ServerHandle,
        thread: std::thread::JoinHandle<()>,
    },
}

impl RunningServer {
    /// The inbox's counters, for the setup that has one: how many group commits stored
    /// how many events.
    pub fn inbox_stats(&self) -> Option<hookgate_inbox::InboxStats> {
        self.inbox.as_ref().map(Inbox::stats)
    }

    /// The PostgreSQL store's counters of batched enqueues, for `gate-postgres`.
    pub fn postgres_stats(&self) -> Option<hookgate_postgres::EnqueueStats> {
        self.postgres.as_ref().map(|pg| pg.store.enqueue_stats())
    }

    /// The worker's counters, for the setup that has one.
    pub fn worker_stats(&self) -> Option<WorkerStats> {
        self.worker.as_ref().map(BenchWorker::stats)
    }

    /// Stops accepting, lets open requests finish and waits for the server (and the
    /// worker, which gives back what it has not finished); for `gate-postgres`, counts the
    /// database's commits and drops the run's schema.
    pub async fn stop(self) -> Stopped {
        if let Some(worker) = self.worker {
            worker.shutdown().await;
        }
        match self.running {
            Running::Tokio { shutdown, task } => {
                let _ = shutdown.send(());
                let _ = task.await;
            }
            Running::Actix { handle, thread } => {
                handle.stop(true).await;
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
        }
        let mut stopped = Stopped::default();
        if let Some(postgres) = self.postgres {
            let Postgres {
                driver_url,
                schema,
                store,
                commits_at_start,
            } = postgres;
            // The store's sessions end with it; their statistics are flushed as they exit.
            drop(store);
            if let Ok(client) = direct(&driver_url).await {
                // Wait (at most 10 s) for the store's sessions to be gone: a session's
                // statistics are flushed when it exits. This session's own few reads are
                // counted too (under 0.1 % of a run's commits).
                for _ in 0..100 {
                    if others_connected(&client).await == Some(0) {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                stopped.postgres_commits = match (commits_at_start, commits(&client).await) {
                    (Some(start), Some(end)) => u64::try_from(end.saturating_sub(start)).ok(),
                    _ => None,
                };
                let drop = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                let _ = client.batch_execute(&drop).await;
            }
        }
        stopped
    }
}

/// A direct connection, outside the store; its session lasts while the client is held.
pub(super) async fn direct(
    url: &str,
) -> Result<hookgate_postgres::tokio_postgres::Client, hookgate_postgres::tokio_postgres::Error> {
    let tls = hookgate_postgres::tokio_postgres::NoTls;
    let (client, connection) = hookgate_postgres::tokio_postgres::connect(url, tls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// The database's committed transactions so far, read afresh.
async fn commits(client: &hookgate_postgres::tokio_postgres::Client) -> Option<i64> {
    client
        .query_one(
            "SELECT pg_stat_clear_snapshot(), xact_commit FROM pg_stat_database \
             WHERE datname = current_database()",
            &[],
        )
        .await
        .ok()?
        .try_get(1)
        .ok()
}

/// Client sessions of the database other than this one.
async fn others_connected(client: &hookgate_postgres::tokio_postgres::Client) -> Option<i64> {
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid() AND backend_type = 'client backend'",
            &[],
        )
        .await
        .ok()?
        .try_get(0)
        .ok()
}

/// `url` without hookgate's settings (`pool_size`, `max_batch`, …), for `tokio-postgres`.
pub fn driver_url(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(name, _)| name);
            !pair.is_empty() && !hookgate_postgres::URL_SETTINGS.contains(&name)
        })
        .collect();
    if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    }
}

fn verifier() -> Result<Verifier, BoxError> {
    Ok(Verifier::builder(SchemeId::StandardWebhooksV1)
        .secret(SECRET)
        .build()?)
}

/// Starts `setup` for `framework` on 127.0.0.1. `postgres` is the database URL of the
/// `gate-postgres` setup (each run gets a schema of its own, dropped at stop).
///
/// # Errors
/// When the port cannot be bound, the inbox or the PostgreSQL store cannot be created
/// (or `gate-postgres` has no URL), or the gate is misconfigured.
pub async fn start(
    framework: Framework,
    setup: Setup,
    postgres: Option<&str>,
) -> Result<RunningServer, BoxError> {
    let parts = parts(setup, postgres).await?;
    match framework {
        Framework::Axum => start_axum(parts).await,
        Framework::Actix => start_actix(parts),
    }
}

/// What a setup runs: its gate (none for the baseline), the inbox's data directory and the
/// receiving end of a channel sink, to be drained by a task.
struct Parts {
    gate: Option<Gate>,
    inbox: Option<Inbox>,
    postgres: Option<Postgres>,
    with_worker: bool,
    /// The fan-out setups' destinations, for the inbox and its worker.
    destinations: Vec<Destination>,
    data: Option<tempfile::TempDir>,
    receiver: Option<hookgate::sink::ChannelReceiver>,
}

async fn parts(setup: Setup, postgres: Option<&str>) -> Result<Parts, BoxError> {
    Ok(match setup {
        Setup::Baseline => Parts {
            gate: None,
            inbox: None,
            postgres: None,
            with_worker: false,
            destinations: Vec::new(),
            data: None,
            receiver: None,
        },
        Setup::GateMemory => {
            let (sink, receiver) = ChannelSink::bounded(65_536);
            let gate = Gate::builder(verifier()?).sink(sink).build()?;
            Parts {
                gate: Some(gate),
                inbox: None,
                postgres: None,
                with_worker: false,
                destinations: Vec::new(),
                data: None,
                receiver: Some(receiver),
            }
        }
        Setup::GateInbox
        | Setup::GateInboxWorker
        | Setup::GateInboxFanout1
        | Setup::GateInboxFanout3 => {
            let dir = tempfile::tempdir()?;
            let destinations = setup.destinations();
            let mut builder = Inbox::builder(dir.path().join("inbox.db"));
            if !destinations.is_empty() {
                builder = builder.destinations(DestinationRouter::new(destinations.clone())?);
            }
            let inbox = builder.open()?;
            Parts {
                gate: Some(inbox.gate(verifier()?).build()?),
                inbox: Some(inbox),
                postgres: None,
                with_worker: setup != Setup::GateInbox,
                destinations,
                data: Some(dir),
                receiver: None,
            }
        }
        Setup::GatePostgres | Setup::GatePostgresWorker => {
            static RUNS: AtomicU64 = AtomicU64::new(0);
            let url = postgres.ok_or("the gate-postgres setup needs a PostgreSQL URL")?;
            // Each run has a schema of its own, dropped at its end: never one of the URL.
            let names_schema = url
                .split_once('?')
                .is_some_and(|(_, query)| query.split('&').any(|pair| pair.starts_with("schema=")));
            if names_schema {
                return Err(
                    "the --postgres URL must not name a schema: each run makes its own".into(),
                );
            }
            let schema = format!(
                "hookgate_load_{}_{}",
                std::process::id(),
                RUNS.fetch_add(1, Ordering::Relaxed)
            );
            let store = PgStore::builder()
                .schema(schema.clone())
                .pool_size(POSTGRES_POOL)
                .connect(url)
                .await?;
            let driver_url = driver_url(url);
            let commits_at_start = match direct(&driver_url).await {
                Ok(client) => commits(&client).await,
                Err(_) => None,
            };
            Parts {
                gate: Some(store.gate(verifier()?).build()?),
                inbox: None,
                postgres: Some(Postgres {
                    driver_url,
                    schema,
                    store,
                    commits_at_start,
                }),
                with_worker: setup == Setup::GatePostgresWorker,
                destinations: Vec::new(),
                data: None,
                receiver: None,
            }
        }
    })
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The consumer of the `gate-memory` setup's channel: it takes what has arrived once a
/// millisecond (waiting for the first event of a batch, then a millisecond for the rest).
///
/// A consumer that awaited each event did nothing but sleep, so every enqueue woke it: one
/// context switch per request (107 165 in a 4 s axum run against 594 for the baseline,
/// 172 921 against 620 for actix, whose consumer runs on a thread of its own), which cost
/// more than the whole Gate and measured the bench's consumer rather than the Gate. Batched,
/// the run has as many context switches as the baseline's (899 in the same 4 s axum run).
async fn drain(mut receiver: hookgate::sink::ChannelReceiver) {
    while receiver.recv().await.is_some() {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        while receiver.try_recv().is_some() {}
    }
}

/// The worker of the setups that have one: `hookgate serve`'s default concurrency, and a
/// handler that succeeds at once, so what is measured is the queue's work (the inbox's,
/// or the PostgreSQL store's).
fn start_worker(
    inbox: Option<&Inbox>,
    postgres: Option<&Postgres>,
    destinations: &[Destination],
) -> Result<BenchWorker, BoxError> {
    if let Some(postgres) = postgres {
        let builder = PgWorker::builder(&postgres.store, |_: QueuedEvent| async {
            HandlerResult::Ok
        })
        .concurrency(WORKER_CONCURRENCY);
        return Ok(BenchWorker::Postgres(builder.start()?));
    }
    let inbox = inbox.ok_or("a worker needs an inbox or a PostgreSQL store")?;
    let mut builder = Worker::builder(inbox.clone(), |_: InboxEvent| async { HandlerResult::Ok })
        .concurrency(WORKER_CONCURRENCY);
    if !destinations.is_empty() {
        builder = builder.destinations("load", destinations);
    }
    Ok(BenchWorker::Inbox(builder.start()?))
}

/// Handlers the worker of [`Setup::GateInboxWorker`] runs at once (`hookgate serve`'s
/// default).
const WORKER_CONCURRENCY: usize = 8;

fn start_actix(parts: Parts) -> Result<RunningServer, BoxError> {
    use actix_web::{App, HttpResponse, HttpServer, web};
    use hookgate_actix::WebhookGate;

    let Parts {
        gate,
        inbox,
        postgres,
        with_worker,
        destinations,
        data,
        receiver,
    } = parts;
    // On the caller's Tokio runtime, as the axum setups' worker.
    let worker = with_worker
        .then(|| start_worker(inbox.as_ref(), postgres.as_ref(), &destinations))
        .transpose()?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (ready, started) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            if let Some(receiver) = receiver {
                actix_web::rt::spawn(drain(receiver));
            }
            let server = HttpServer::new(move || {
                let resource = web::resource("/webhooks");
                match &gate {
                    Some(gate) => App::new().service(
                        resource
                            .wrap(WebhookGate::new(gate.clone()))
                            .to(HttpResponse::InternalServerError),
                    ),
                    None => App::new().service(
                        resource.to(|_body: web::Bytes| async { HttpResponse::Ok().finish() }),
                    ),
                }
            })
            .workers(2)
            .disable_signals()
            .listen(listener);
            match server {
                Ok(server) => {
                    let server = server.run();
                    let _ = ready.send(Ok(server.handle()));
                    let _ = server.await;
                }
                Err(error) => {
                    let _ = ready.send(Err(error.to_string()));
                }
            }
        });
    });
    let handle = started
        .recv()
        .map_err(|_| "the actix server thread ended early")??;
    Ok(RunningServer {
        addr,
        running: Running::Actix { handle, thread },
        inbox,
        postgres,
        worker,
        _data: data,
    })
}

async fn start_axum(parts: Parts) -> Result<RunningServer, BoxError> {
    let Parts {
        gate,
        inbox,
        postgres,
        with_worker,
        destinations,
        data,
        receiver,
    } = parts;
    let worker = with_worker
        .then(|| start_worker(inbox.as_ref(), postgres.as_ref(), &destinations))
        .transpose()?;
    if let Some(receiver) = receiver {
        tokio::spawn(drain(receiver));
    }
    let router = match gate {
        None => Router::new().route(
            "/webhooks",
            post(|_body: Bytes| async { http::StatusCode::OK }),
        ),
        Some(gate) => gated(gate),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (shutdown, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(RunningServer {
        addr,
        running: Running::Tokio { shutdown, task },
        inbox,
        postgres,
        worker,
        _data: data,
    })
}

/// Gate mode: the layer answers the sender itself; the route's handler is never reached.
fn gated(gate: Gate) -> Router {
    Router::new()
        .route(
            "/webhooks",
            post(|| async { http::StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .route_layer(GateLayer::new(gate))
}
