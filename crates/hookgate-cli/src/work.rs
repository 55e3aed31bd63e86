//! `hookgate work`: consume a queue that `hookgate serve --queue` or `--store` (or a Rust
//! gate with a queue sink) fills, and forward, pipe or print each event with retries and dead letters,
//! so that an application in any language gets processing from a fleet's queue.
//!
//! The processing is `serve`'s own ([`Processor`]): the same JSON envelope, the same
//! `Idempotency-Key` header, the same retry policy flags. Several `work` processes share a
//! queue: each event goes to one of them, and the events of one that dies are taken over by
//! another once their lease has expired.
//!
//! **Destinations** (issue 21). For an endpoint that `serve --queue URL` runs with
//! destinations (`--destination` flags or `[[endpoint.destination]]`), the queue holds one
//! stream per destination; `work` is given the same destinations with the same
//! `--destination` flags (the one-endpoint syntax of `serve`), and then consumes every
//! destination's stream, each delivery going to its destination's forward or exec target
//! through that destination's gates (pause, circuit, concurrency, rate: the one worker
//! loop's) and retry policy (default: this command's retry flags). Flags rather than the
//! config file: a consumer machine needs the destinations, not the endpoint's secrets.
//! A PostgreSQL store (`serve --store URL` with destinations) keeps one delivery row per
//! event and destination; `work --queue postgres://… --destination …` leases those.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hookgate_queue::{Queue, RetryPolicy, ShutdownReport, Worker, WorkerBuilder, WorkerStats};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use crate::client::HttpClient;
use crate::duration::parse_duration;
use crate::error::CliError;
use crate::process::{Processor, Target};
use crate::{Output, Status};

/// Arguments of `hookgate work`.
#[derive(Debug, clap::Args)]
pub(crate) struct WorkArgs {
    /// The queue to consume: redis://HOST:6379/?stream=NAME[&group=G][&consumer=C] (a Redis
    /// stream, read in a consumer group), nats://HOST:4222/?stream=NAME&subject=SUBJ[&
    /// consumer=C] (a JetStream stream, through a durable consumer) or
    /// postgres://USER@HOST/DB[?schema=S] (the store of `serve --store`). Workers with the
    /// same group (Redis), consumer (NATS) or database and schema (PostgreSQL) share the
    /// events.
    #[arg(long, value_name = "URL")]
    queue: String,

    /// POST each event to the application at URL: the JSON envelope `serve --forward`
    /// sends, with the event's dedup key in the Idempotency-Key header. Non-2xx or no answer
    /// in --timeout is retried.
    #[arg(long, value_name = "URL", conflicts_with = "exec")]
    forward: Option<String>,

    /// Pipe each event's JSON envelope to `sh -c CMD`; a non-zero exit is retried.
    #[arg(long, value_name = "CMD")]
    exec: Option<String>,

    /// The name given as `endpoint` in the envelope and HOOKGATE_ENDPOINT.
    #[arg(long, value_name = "NAME", default_value = "default")]
    endpoint: String,

    /// Events processed at once by this process.
    #[arg(long, value_name = "N", default_value_t = hookgate_queue::DEFAULT_CONCURRENCY)]
    workers: usize,

    /// Attempts per event before it becomes a dead letter.
    #[arg(long, value_name = "N", default_value_t = hookgate_queue::DEFAULT_MAX_ATTEMPTS)]
    max_attempts: u32,

    /// The first retry's backoff ceiling; it doubles per attempt (full jitter).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1s")]
    retry_base: Duration,

    /// The largest backoff ceiling.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    retry_cap: Duration,

    /// How long an event stays with this process before another may take it over (when
    /// this one died): longer than --timeout.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s")]
    lease: Duration,

    /// How long --forward waits for the application's answer, and --exec for the command.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    timeout: Duration,

    /// Serve /healthz and /metrics (Prometheus) on this address.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,

    /// One destination of the endpoint whose queue this is (repeatable), exactly as given
    /// to `serve --queue URL --destination …`: the keys of a `[[endpoint.destination]]`
    /// table without its braces, e.g. --destination 'name = "billing", forward =
    /// "http://127.0.0.1:3000/b", filter = { type = "invoice.*" }'. The queue's
    /// destination streams are consumed, each with its destination's target, gates and
    /// retries, instead of the plain stream. On a PostgreSQL store (`serve --store URL
    /// --destination …`), the store's deliveries of these destinations are consumed.
    #[arg(
        long = "destination",
        value_name = "KEYS",
        conflicts_with_all = ["forward", "exec"]
    )]
    destinations: Vec<String>,
}

/// The queue a URL names: one that `serve --queue` fills, or a PostgreSQL store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueKind {
    Redis,
    Nats,
    Postgres,
}

impl QueueKind {
    /// The queue `url` names, recognised as `serve` recognises its `--queue` and `--store`.
    pub(crate) fn of(url: &str) -> Result<QueueKind, CliError> {
        if crate::serve::is_postgres(url) {
            return Ok(QueueKind::Postgres);
        }
        match crate::serve::queue_kind(url) {
            Ok(crate::serve::QueueKind::Redis) => Ok(QueueKind::Redis),
            Ok(crate::serve::QueueKind::Nats) => Ok(QueueKind::Nats),
            Err(_) => Err(CliError::new(
                "--queue: a redis://… (Redis stream), nats://… (JetStream) or postgres://… \
                 (a hookgate PostgreSQL store) URL",
            )),
        }
    }
}

/// A started worker on one of the three queues: the same loop, over another queue.
enum Running {
    Redis(hookgate_redis::StreamWorkerHandle),
    Nats(hookgate_nats::JetStreamWorkerHandle),
    Postgres(hookgate_postgres::PgWorkerHandle),
}

impl Running {
    fn stats(&self) -> WorkerStats {
        match self {
            Running::Redis(worker) => worker.stats(),
            Running::Nats(worker) => worker.stats(),
            Running::Postgres(worker) => worker.stats(),
        }
    }

    async fn shutdown(self) -> ShutdownReport {
        match self {
            Running::Redis(worker) => worker.shutdown().await,
            Running::Nats(worker) => worker.shutdown().await,
            Running::Postgres(worker) => worker.shutdown().await,
        }
    }
}

/// The one worker's settings from the flags, on `queue`.
fn configure<Q: Queue>(
    builder: WorkerBuilder<Q>,
    args: &WorkArgs,
    policy: RetryPolicy,
) -> WorkerBuilder<Q> {
    builder
        .concurrency(args.workers)
        .retry(policy)
        .lease(args.lease)
        .handler_timeout(args.timeout.saturating_add(Duration::from_secs(5)))
}

/// The worker with the endpoint's destinations, if it has some.
fn with_destinations<Q: Queue>(
    builder: WorkerBuilder<Q>,
    endpoint: &str,
    destinations: &[hookgate_queue::Destination],
) -> WorkerBuilder<Q> {
    if destinations.is_empty() {
        builder
    } else {
        builder.destinations(endpoint, destinations)
    }
}

/// Runs `hookgate work` until SIGTERM or Ctrl-C, then finishes (or gives back) the events
/// in progress.
///
/// # Errors
/// Bad flags, a queue that cannot be reached at start, an address that cannot be bound.
pub(crate) async fn run(args: WorkArgs) -> Result<Output, CliError> {
    if args.workers == 0 || args.workers > 10_000 {
        return Err(CliError::new("--workers must be between 1 and 10000"));
    }
    if args.timeout.is_zero() {
        return Err(CliError::new("--timeout must not be zero"));
    }
    if args.lease <= args.timeout {
        return Err(CliError::new(
            "--lease must be longer than --timeout, or a slow event would be taken over while \
             it is still being processed",
        ));
    }
    let kind = QueueKind::of(&args.queue)?;
    let client = HttpClient::new(None, args.timeout, 64)?;
    let target = match (&args.forward, &args.exec) {
        (Some(url), _) => Target::forward(url, &client)?,
        (None, Some(command)) => Target::Exec(command.clone()),
        (None, None) => Target::Print,
    };
    let destinations = if args.destinations.is_empty() {
        Vec::new()
    } else {
        crate::serve::queue_destinations(
            &args.endpoint,
            &args.destinations,
            &args.queue,
            (args.max_attempts, args.retry_base, args.retry_cap),
        )?
    };
    let processor = Processor {
        endpoint: Arc::from(args.endpoint.as_str()),
        action: target,
        timeout: args.timeout,
        destinations: Arc::from(crate::serve::destination_targets(
            &args.endpoint,
            &destinations,
            &client,
        )?),
    };
    let policy = RetryPolicy::new()
        .base(args.retry_base)
        .cap(args.retry_cap)
        .max_attempts(args.max_attempts);
    let shown = crate::serve::redact(&args.queue);
    let metrics = match &args.listen {
        Some(_) => PrometheusBuilder::new().install_recorder().ok(),
        None => None,
    };
    let unreachable = |e: &dyn std::fmt::Display| CliError::new(format!("--queue {shown}: {e}"));
    let started = match kind {
        QueueKind::Redis => {
            let mut builder =
                hookgate_redis::StreamQueue::builder(&args.queue).map_err(|e| unreachable(&e))?;
            if !destinations.is_empty() {
                builder = builder
                    .destinations(&destinations)
                    .map_err(|e| unreachable(&e))?;
            }
            let queue = builder.connect().await.map_err(|e| unreachable(&e))?;
            let worker = configure(Worker::builder(queue, processor), &args, policy);
            with_destinations(worker, &args.endpoint, &destinations)
                .start()
                .map(Running::Redis)
        }
        QueueKind::Nats => {
            let mut builder =
                hookgate_nats::JetStreamQueue::builder(&args.queue).map_err(|e| unreachable(&e))?;
            if !destinations.is_empty() {
                builder = builder
                    .destinations(&destinations)
                    .map_err(|e| unreachable(&e))?;
            }
            let queue = builder.connect().await.map_err(|e| unreachable(&e))?;
            let worker = configure(Worker::builder(queue, processor), &args, policy);
            with_destinations(worker, &args.endpoint, &destinations)
                .start()
                .map(Running::Nats)
        }
        QueueKind::Postgres => {
            // With destinations the store's worker leases deliveries (one per event and
            // destination, written by `serve --store` on receive), not events.
            let mut store = hookgate_postgres::PgStore::builder();
            if !destinations.is_empty() {
                let router = hookgate_queue::Router::new(destinations.clone())
                    .map_err(|e| CliError::new(format!("destination {e}")))?;
                store = store.destinations(router);
            }
            let store = store
                .connect(&args.queue)
                .await
                .map_err(|e| unreachable(&e))?;
            let worker = configure(
                hookgate_postgres::PgWorker::builder(&store, processor),
                &args,
                policy,
            );
            with_destinations(worker, &args.endpoint, &destinations)
                .start()
                .map(Running::Postgres)
        }
    };
    let worker = started.map_err(|e| CliError::new(format!("--queue {shown}: {e}")))?;
    crate::note(&format!("working on {shown}: {} at once", args.workers));
    let health = match &args.listen {
        Some(listen) => {
            let listener = TcpListener::bind(listen)
                .await
                .map_err(|e| CliError::new(format!("cannot listen on {listen}: {e}")))?;
            let addr = listener
                .local_addr()
                .map_err(|e| CliError::new(format!("cannot read the bound address: {e}")))?;
            crate::note(&format!(
                "health and metrics on http://{addr}/healthz, /metrics"
            ));
            Some(tokio::spawn(serve_health(listener, metrics)))
        }
        None => None,
    };
    crate::serve::shutdown_signal().await;
    crate::note("shutting down: finishing the events being processed");
    if let Some(health) = health {
        health.abort();
    }
    let stats = worker.stats();
    let report = worker.shutdown().await;
    crate::note(&format!(
        "{} processed, {} retried, {} dead-lettered; {} finished at shutdown, {} given back to \
         the queue",
        stats.processed, stats.retried, stats.dead, report.finished, report.released
    ));
    Ok(Output::new(Vec::new(), Status::Success))
}

/// `/healthz` and `/metrics` until the task is aborted.
async fn serve_health(listener: TcpListener, metrics: Option<PrometheusHandle>) {
    let metrics = Arc::new(metrics);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let metrics = Arc::clone(&metrics);
        let service = service_fn(move |request: Request<Incoming>| {
            let metrics = Arc::clone(&metrics);
            async move { Ok::<_, Infallible>(answer(&request, metrics.as_ref().as_ref())) }
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10));
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

fn answer(
    request: &Request<Incoming>,
    metrics: Option<&PrometheusHandle>,
) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "ok\n".to_owned(),
        ),
        (&Method::GET, "/metrics") => match metrics {
            Some(handle) => (StatusCode::OK, "text/plain; version=0.0.4", handle.render()),
            None => (
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                "metrics_unavailable\n".to_owned(),
            ),
        },
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not_found\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_kind_comes_from_the_url_scheme() {
        assert_eq!(
            QueueKind::of("redis://h:6379/?stream=s").ok(),
            Some(QueueKind::Redis)
        );
        assert_eq!(
            QueueKind::of("redis+unix:///tmp/r.sock").ok(),
            Some(QueueKind::Redis)
        );
        assert_eq!(
            QueueKind::of("nats://h:4222/?stream=S").ok(),
            Some(QueueKind::Nats)
        );
        assert_eq!(
            QueueKind::of("postgres://u@h/db").ok(),
            Some(QueueKind::Postgres)
        );
        assert!(QueueKind::of("amqp://h/").is_err());
    }
}
