//! The servers under test, each on an ephemeral port of 127.0.0.1.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use hookgate::{ChannelSink, Gate, SchemeId, Verifier};
use hookgate_inbox::{HandlerResult, Inbox, InboxEvent, Worker, WorkerHandle};
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
    /// The Gate with the in-memory dedup store and a channel sink drained by a task.
    GateMemory,
    /// The Gate with the SQLite inbox as dedup store and sink (fsync per group commit).
    GateInbox,
    /// As [`Setup::GateInbox`], with a worker processing every event at the same time (a
    /// handler that returns at once): the `hookgate serve` workload, where each event is
    /// enqueued, leased and completed.
    GateInboxWorker,
}

impl Setup {
    /// The name used in the results.
    pub fn name(self) -> &'static str {
        match self {
            Setup::Baseline => "baseline",
            Setup::GateMemory => "gate-memory",
            Setup::GateInbox => "gate-inbox",
            Setup::GateInboxWorker => "gate-inbox-worker",
        }
    }

    /// Whether the setup stores events in an inbox.
    pub fn has_inbox(self) -> bool {
        matches!(self, Setup::GateInbox | Setup::GateInboxWorker)
    }
}

/// A server running in the background until [`RunningServer::stop`].
#[derive(Debug)]
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    running: Running,
    inbox: Option<Inbox>,
    worker: Option<WorkerHandle>,
    _data: Option<tempfile::TempDir>,
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

    /// The worker's counters, for the setup that has one.
    pub fn worker_stats(&self) -> Option<hookgate_inbox::WorkerStats> {
        self.worker.as_ref().map(WorkerHandle::stats)
    }

    /// Stops accepting, lets open requests finish and waits for the server (and the
    /// worker, which gives back what it has not finished).
    pub async fn stop(self) {
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
    }
}

fn verifier() -> Result<Verifier, BoxError> {
    Ok(Verifier::builder(SchemeId::StandardWebhooksV1)
        .secret(SECRET)
        .build()?)
}

/// Starts `setup` for `framework` on 127.0.0.1.
///
/// # Errors
/// When the port cannot be bound, the inbox cannot be created or the gate is misconfigured.
pub async fn start(framework: Framework, setup: Setup) -> Result<RunningServer, BoxError> {
    match framework {
        Framework::Axum => start_axum(setup).await,
        Framework::Actix => start_actix(setup),
    }
}

/// What a setup runs: its gate (none for the baseline), the inbox's data directory and the
/// receiving end of a channel sink, to be drained by a task.
struct Parts {
    gate: Option<Gate>,
    inbox: Option<Inbox>,
    with_worker: bool,
    data: Option<tempfile::TempDir>,
    receiver: Option<hookgate::sink::ChannelReceiver>,
}

fn parts(setup: Setup) -> Result<Parts, BoxError> {
    Ok(match setup {
        Setup::Baseline => Parts {
            gate: None,
            inbox: None,
            with_worker: false,
            data: None,
            receiver: None,
        },
        Setup::GateMemory => {
            let (sink, receiver) = ChannelSink::bounded(65_536);
            let gate = Gate::builder(verifier()?).sink(sink).build()?;
            Parts {
                gate: Some(gate),
                inbox: None,
                with_worker: false,
                data: None,
                receiver: Some(receiver),
            }
        }
        Setup::GateInbox | Setup::GateInboxWorker => {
            let dir = tempfile::tempdir()?;
            let inbox = Inbox::open(dir.path().join("inbox.db"))?;
            Parts {
                gate: Some(inbox.gate(verifier()?).build()?),
                inbox: Some(inbox),
                with_worker: setup == Setup::GateInboxWorker,
                data: Some(dir),
                receiver: None,
            }
        }
    })
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The worker of [`Setup::GateInboxWorker`]: `hookgate serve`'s default concurrency, and a
/// handler that succeeds at once, so what is measured is the inbox's queue work.
fn start_worker(inbox: &Inbox) -> Result<WorkerHandle, BoxError> {
    Ok(
        Worker::builder(inbox.clone(), |_: InboxEvent| async { HandlerResult::Ok })
            .concurrency(WORKER_CONCURRENCY)
            .start()?,
    )
}

/// Handlers the worker of [`Setup::GateInboxWorker`] runs at once (`hookgate serve`'s
/// default).
const WORKER_CONCURRENCY: usize = 8;

fn start_actix(setup: Setup) -> Result<RunningServer, BoxError> {
    use actix_web::{App, HttpResponse, HttpServer, web};
    use hookgate_actix::WebhookGate;

    let Parts {
        gate,
        inbox,
        with_worker,
        data,
        receiver,
    } = parts(setup)?;
    // On the caller's Tokio runtime, as the axum setups' worker.
    let worker = match (&inbox, with_worker) {
        (Some(inbox), true) => Some(start_worker(inbox)?),
        _ => None,
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (ready, started) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            if let Some(mut receiver) = receiver {
                actix_web::rt::spawn(async move { while receiver.recv().await.is_some() {} });
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
        worker,
        _data: data,
    })
}

async fn start_axum(setup: Setup) -> Result<RunningServer, BoxError> {
    let Parts {
        gate,
        inbox,
        with_worker,
        data,
        receiver,
    } = parts(setup)?;
    let worker = match (&inbox, with_worker) {
        (Some(inbox), true) => Some(start_worker(inbox)?),
        _ => None,
    };
    if let Some(mut receiver) = receiver {
        tokio::spawn(async move { while receiver.recv().await.is_some() {} });
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
