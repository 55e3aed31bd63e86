//! The servers under test, each on an ephemeral port of 127.0.0.1.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::post;
use bytes::Bytes;
use hookgate::{ChannelSink, Gate, SchemeId, Verifier};
use hookgate_inbox::Inbox;
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
}

impl Framework {
    /// The name used in the results.
    pub fn name(self) -> &'static str {
        match self {
            Framework::Axum => "axum",
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
}

impl Setup {
    /// The name used in the results.
    pub fn name(self) -> &'static str {
        match self {
            Setup::Baseline => "baseline",
            Setup::GateMemory => "gate-memory",
            Setup::GateInbox => "gate-inbox",
        }
    }
}

/// A server running in the background until [`RunningServer::stop`].
#[derive(Debug)]
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    _data: Option<tempfile::TempDir>,
}

impl RunningServer {
    /// Stops accepting, lets open requests finish and waits for the server task.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let _ = self.task.await;
    }
}

fn verifier() -> Result<Verifier, Box<dyn std::error::Error + Send + Sync>> {
    Ok(Verifier::builder(SchemeId::StandardWebhooksV1)
        .secret(SECRET)
        .build()?)
}

/// Starts `setup` for `framework` on 127.0.0.1.
///
/// # Errors
/// When the port cannot be bound, the inbox cannot be created or the gate is misconfigured.
pub async fn start(
    framework: Framework,
    setup: Setup,
) -> Result<RunningServer, Box<dyn std::error::Error + Send + Sync>> {
    match framework {
        Framework::Axum => start_axum(setup).await,
    }
}

async fn start_axum(
    setup: Setup,
) -> Result<RunningServer, Box<dyn std::error::Error + Send + Sync>> {
    let mut data = None;
    let router = match setup {
        Setup::Baseline => Router::new().route(
            "/webhooks",
            post(|_body: Bytes| async { http::StatusCode::OK }),
        ),
        Setup::GateMemory => {
            let (sink, mut receiver) = ChannelSink::bounded(65_536);
            tokio::spawn(async move { while receiver.recv().await.is_some() {} });
            let gate = Gate::builder(verifier()?).sink(sink).build()?;
            gated(gate)
        }
        Setup::GateInbox => {
            let dir = tempfile::tempdir()?;
            let inbox = Inbox::open(dir.path().join("inbox.db"))?;
            data = Some(dir);
            gated(inbox.gate(verifier()?).build()?)
        }
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
        shutdown: Some(shutdown),
        task,
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
