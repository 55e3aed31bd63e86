//! `hookgate serve`: a webhook receiver any application can put in front of itself.
//!
//! Each endpoint is a path with a scheme and a keyring. A request to it goes through
//! `hookgate-tower`'s [`GateService`] in gate mode (body limit, verification, replay window,
//! dedup, enqueue) with the endpoint's own SQLite [`Inbox`] as dedup store and sink, so the
//! sender gets a 2xx only once the event is on disk. A [`Worker`] per endpoint then forwards,
//! pipes or prints each stored event, with the inbox's retries and dead letters.
//!
//! For a fleet of replicas, `--dedup redis://…` makes the dedup store a shared
//! [`RedisDedupStore`] (fail closed, or [`FailOpenDedupStore`] with `--dedup-fail-open`),
//! and `--queue redis://…|nats://…` makes the sink a Redis stream or a JetStream stream that
//! consumers on other machines read: such an endpoint has no local worker.
//!
//! Human-readable information goes to stderr; stdout carries only the events printed when
//! there is neither `--forward` nor `--exec`, one JSON line each.

mod config;
mod limits;
mod tls;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hookgate::{Gate, GateBuilder, HandshakeKind, Key, SchemeId, Verifier};
use hookgate_inbox::{EventLog, Inbox, RetryPolicy, Worker, WorkerHandle};
use hookgate_nats::JetStreamSink;
use hookgate_postgres::{PgStore, PgWorker, PgWorkerHandle};
use hookgate_queue::{DestinationTarget, Queue, ShutdownReport, WorkerBuilder};
use hookgate_redis::{FailOpenDedupStore, RedisDedupStore, RedisStreamSink};
use hookgate_tower::{GateService, RawBody, ResponseBody};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tower_service::Service;

use crate::client::HttpClient;
use crate::console::command::{ConsoleOnly, DEFAULT_CONSOLE_LISTEN, console_auth};
use crate::console::{Console, ConsoleEndpoint, PREFIX as CONSOLE_PREFIX};
use crate::duration::parse_duration;
use crate::error::CliError;
use crate::inbox::{DEFAULT_DATA_DIR, DEFAULT_ENDPOINT, inbox_path};
use crate::input;
use crate::{Output, Status as ExitStatus};
pub(crate) use config::write_private;
use config::{Action, Endpoint, KeySpec, Retry};
pub(crate) use config::{QueueKind, is_postgres, queue_kind, redact};
pub(crate) use limits::Limits;
use limits::{
    ConnectionSlots, DeadlineBody, InFlight, LingeringIo, OVER_CAPACITY, REFUSED_METRIC,
    RETRY_AFTER_SECONDS,
};

use crate::log_view::Counts;
use crate::process::{Processor, Target};

/// The address used when none is given.
const DEFAULT_LISTEN: &str = "127.0.0.1:8787";
/// How long open connections get to finish at shutdown.
const CONNECTION_GRACE: Duration = Duration::from_secs(10);

/// Arguments of `hookgate serve`.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on (port 0 picks a free port; the actual address is printed).
    /// Default: 127.0.0.1:8787.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,

    /// The endpoint's path.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/webhooks",
        conflicts_with = "config"
    )]
    path: String,

    /// The scheme the endpoint verifies (list: `hookgate schemes`).
    #[arg(
        long,
        value_name = "ID",
        value_parser = crate::parse_scheme,
        default_value = "standard-webhooks-v1",
        conflicts_with = "config"
    )]
    scheme: hookgate::SchemeId,

    /// A secret or public key, as the provider shows it. Repeat it during a rotation.
    /// Without any (and without --config), a Standard Webhooks secret is generated on first
    /// start, kept in the data directory and printed.
    #[arg(
        long = "secret",
        value_name = "KEY",
        env = "HOOKGATE_SECRET",
        hide_env_values = true,
        allow_hyphen_values = true,
        conflicts_with = "config"
    )]
    secrets: Vec<String>,

    /// A file with one key per line, tried after the --secret keys.
    #[arg(long, value_name = "PATH", conflicts_with = "config")]
    secret_file: Option<PathBuf>,

    /// The timestamp window in seconds (default: the scheme's own).
    #[arg(long, value_name = "S", conflicts_with = "config")]
    tolerance: Option<u64>,

    /// The largest body accepted, in bytes; larger ones get 413 before being read whole.
    /// Default: 2 MiB.
    #[arg(long, value_name = "BYTES", conflicts_with = "config")]
    max_body: Option<usize>,

    /// The public URL the provider calls, for URL-signing schemes (twilio, square).
    #[arg(long, value_name = "URL", conflicts_with = "config")]
    public_url: Option<String>,

    /// The verify token configured at the provider for its GET subscription handshake
    /// (meta: `hub.verify_token`). GET requests on the endpoint are answered with
    /// `hub.challenge` only when they carry it.
    #[arg(long, value_name = "TOKEN", conflicts_with = "config")]
    verify_token: Option<String>,

    /// Where the inbox database (and a generated secret) live. Default: ./hookgate-data.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// POST each verified event to the application at URL: a JSON envelope with the
    /// original body, and an Idempotency-Key header carrying the event's dedup key.
    /// Non-2xx or no answer in --timeout is retried.
    #[arg(long, value_name = "URL", conflicts_with_all = ["exec", "queue", "config"])]
    forward: Option<String>,

    /// Pipe each verified event's JSON envelope to `sh -c CMD` (with HOOKGATE_EVENT_ID,
    /// HOOKGATE_DEDUP_KEY, HOOKGATE_EVENT_TYPE, HOOKGATE_ATTEMPT in its environment); a
    /// non-zero exit is retried.
    #[arg(long, value_name = "CMD", conflicts_with_all = ["queue", "config"])]
    exec: Option<String>,

    /// Hand each verified event to a queue for consumers on other machines instead of
    /// processing it here: redis://HOST:6379/?stream=NAME (a Redis stream, XADD) or
    /// nats://HOST:4222/?stream=NAME&subject=SUBJ (a JetStream stream, created if missing).
    /// The 2xx is sent once the queue acknowledged the event. No local worker runs for the
    /// endpoint, so --forward, --exec and the retry flags do not apply. Without --dedup, the
    /// local inbox deduplicates, per replica only.
    #[arg(long, value_name = "URL", conflicts_with = "config")]
    queue: Option<String>,

    /// Send each event to a destination (repeatable: one delivery per matching
    /// destination, each with its own retries and dead letters): the keys of a
    /// `[[endpoint.destination]]` table as an inline TOML table without its braces, e.g.
    /// --destination 'name = "billing", forward = "http://127.0.0.1:3000/b", filter = {
    /// type = "invoice.*" }, concurrency = 4'. Keys: name, forward | exec, filter (type,
    /// header, body, any, all), rate, concurrency, order_key, circuit, retry. With --queue
    /// the queue holds one stream per destination, for `hookgate work --queue URL` given
    /// the same --destination flags. See docs/DESTINATIONS.md.
    #[arg(
        long = "destination",
        value_name = "KEYS",
        conflicts_with_all = ["forward", "exec", "config"]
    )]
    destinations: Vec<String>,

    /// Deduplicate in Redis instead of the local inbox, so that replicas behind one load
    /// balancer share what they have seen: redis://HOST:6379/?prefix=P&claim_ttl_ms=N&
    /// committed_ttl_ms=N. While Redis is unreachable the endpoint answers 503 (fail
    /// closed) unless --dedup-fail-open.
    #[arg(long, value_name = "URL", conflicts_with = "config")]
    dedup: Option<String>,

    /// Keep dedup, queue, event log and dead letters in PostgreSQL instead of the local
    /// inbox: postgres://USER@HOST/DB[?schema=S] (schema default `hookgate`, created and
    /// migrated by hookgate). Every replica pointed at the same database shares them, and
    /// each runs a worker that takes events from it (FOR UPDATE SKIP LOCKED, woken by
    /// LISTEN/NOTIFY); `hookgate work --queue` the same URL adds workers elsewhere. The 2xx
    /// is sent once PostgreSQL committed the event; while it is down, 503.
    #[arg(long, value_name = "URL", conflicts_with_all = ["config", "queue", "dedup"])]
    store: Option<String>,

    /// With --dedup: while Redis is unreachable, keep accepting with a per-replica,
    /// in-memory dedup store instead of answering 503 (duplicates across replicas can then
    /// get through).
    #[arg(long, requires = "dedup", conflicts_with = "config")]
    dedup_fail_open: bool,

    /// A TOML file declaring several endpoints, each with its own inbox (see `hookgate
    /// serve --help` for the format); replaces the endpoint flags.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Attempts per event before it becomes a dead letter.
    #[arg(long, value_name = "N", default_value_t = hookgate_inbox::DEFAULT_MAX_ATTEMPTS)]
    max_attempts: u32,

    /// The first retry's backoff ceiling; it doubles per attempt (full jitter).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1s")]
    retry_base: Duration,

    /// The largest backoff ceiling.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    retry_cap: Duration,

    /// Events processed at once, per endpoint. With --store, 0 makes this replica receive
    /// only, leaving the processing to `hookgate work --queue` on the same store.
    #[arg(long, value_name = "N", default_value_t = hookgate_inbox::DEFAULT_CONCURRENCY)]
    workers: usize,

    /// How long --forward waits for the application's answer, and --exec for the command.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    timeout: Duration,

    /// How long a client gets to send a request's headers; a slower one is disconnected.
    /// Default: 30s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    header_timeout: Option<Duration>,

    /// How long a sender gets to send a request's whole body; a body trickled past it is
    /// answered 408 body_timeout and the connection closed. Default: 10s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    body_timeout: Option<Duration>,

    /// Connections open at once; beyond, a new connection is answered 503 over_capacity
    /// with Retry-After and closed. Default: 512.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,

    /// Webhook requests being answered at once; beyond, 503 over_capacity with
    /// Retry-After. Default: 256.
    #[arg(long, value_name = "N")]
    max_in_flight: Option<usize>,
    /// Serve the web console (event log, event details, dead letters with replay, activity
    /// chart, rejections; and a JSON API) under /_hookgate/. It is on this listener when
    /// that is a loopback address, else on 127.0.0.1:8788 (or --console-listen). Always
    /// behind the console token.
    #[arg(long)]
    console: bool,

    /// Serve the console on its own address instead (e.g. 127.0.0.1:8788; port 0 picks a
    /// free one, printed as `console listening on ADDR`).
    #[arg(long, value_name = "ADDR", requires = "console")]
    console_listen: Option<String>,

    /// The console token (at least 16 characters), as a Bearer token or on the login page.
    /// Default: generated on first start, kept in the data directory (console-token) and
    /// printed.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "HOOKGATE_CONSOLE_TOKEN",
        hide_env_values = true
    )]
    console_token: Option<String>,
}

/// One endpoint, running.
struct Running {
    endpoint: Endpoint,
    /// The local inbox, unless both dedup and sink are elsewhere.
    inbox: Option<Inbox>,
    service: GateService<Unreachable>,
    /// The PostgreSQL store, for an endpoint that keeps its events there.
    store: Option<PgStore>,
    /// The local worker, unless the endpoint hands its events to a queue.
    worker: Option<LocalWorker>,
}

/// An endpoint's local worker, on its inbox or on the PostgreSQL store: the one worker loop
/// of `hookgate-queue` over either queue.
enum LocalWorker {
    Inbox(WorkerHandle),
    Postgres(PgWorkerHandle),
}

impl LocalWorker {
    async fn shutdown(self) -> ShutdownReport {
        match self {
            LocalWorker::Inbox(worker) => worker.shutdown().await,
            LocalWorker::Postgres(worker) => worker.shutdown().await,
        }
    }
}

/// What every request needs.
struct Router {
    endpoints: Vec<Running>,
    metrics: Option<PrometheusHandle>,
    in_flight: InFlight,
    body_timeout: Duration,
    /// The console, when it is on this listener.
    console: Option<Arc<Console>>,
}

/// The body of every response `serve` sends: the gate's, or a plain one.
pub(crate) type ResponseBodyOf = Either<ResponseBody<Full<Bytes>>, Full<Bytes>>;

/// What answers the requests of one listener.
pub(crate) trait Handle: Send + Sync + 'static {
    /// The response to `request`.
    fn handle(
        &self,
        request: Request<Incoming>,
    ) -> impl std::future::Future<Output = Response<ResponseBodyOf>> + Send;
}

impl Handle for Router {
    async fn handle(&self, request: Request<Incoming>) -> Response<ResponseBodyOf> {
        self.route(request).await
    }
}

/// Runs `hookgate serve` until SIGTERM or Ctrl-C.
///
/// # Errors
/// A configuration problem, an address that cannot be bound, an inbox that cannot be
/// opened.
pub(crate) async fn run(args: ServeArgs) -> Result<Output, CliError> {
    let file = args.config.as_deref().map(config::read).transpose()?;
    let data_dir = args
        .data_dir
        .clone()
        .or_else(|| file.as_ref().and_then(|f| f.data_dir.clone()))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    std::fs::create_dir_all(&data_dir).map_err(|e| {
        CliError::new(format!(
            "cannot create the data directory {}: {e}",
            data_dir.display()
        ))
    })?;
    let retry = Retry {
        max_attempts: args.max_attempts,
        base: args.retry_base,
        cap: args.retry_cap,
    };
    let endpoints = match &file {
        Some(file) => config::endpoints(file, retry)?,
        None => vec![flag_endpoint(&args, &data_dir, retry)?],
    };
    let listen = args
        .listen
        .clone()
        .or_else(|| file.as_ref().and_then(|f| f.listen.clone()))
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let tls_files = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        _ => file
            .as_ref()
            .and_then(|f| f.tls.as_ref())
            .map(|t| (t.cert.clone(), t.key.clone())),
    };
    let tls = match &tls_files {
        Some((cert, key)) => Some(tls::acceptor(cert, key)?),
        None => None,
    };
    if args.workers > 10_000 {
        return Err(CliError::new("--workers must be between 0 and 10000"));
    }
    if args.workers == 0 {
        if let Some(e) = endpoints.iter().find(|e| e.store.is_none()) {
            return Err(CliError::new(format!(
                "--workers 0 (receive only; `hookgate work` processes) needs a PostgreSQL store, \
                 and endpoint {} keeps its events in a local inbox that nothing else reads",
                e.name
            )));
        }
    }
    if args.timeout.is_zero() {
        return Err(CliError::new("--timeout must not be zero"));
    }
    let limits = limits(&args, file.as_ref())?;

    let metrics = PrometheusBuilder::new().install_recorder().ok();
    if metrics.is_none() {
        crate::note("metrics are unavailable (a recorder is already installed)");
    }
    let client = HttpClient::new(None, args.timeout, 64)?;
    let mut running = Vec::new();
    for endpoint in endpoints {
        running.push(start_endpoint(endpoint, &data_dir, &client, &args).await?);
    }

    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|e| CliError::new(format!("cannot listen on {listen}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| CliError::new(format!("cannot read the bound address: {e}")))?;
    let origin = format!("{}://{addr}", if tls.is_some() { "https" } else { "http" });
    for run in &running {
        let e = &run.endpoint;
        let dedup = match (&e.dedup, &run.inbox) {
            (Some(url), _) => format!(
                "dedup in Redis {}{}",
                config::redact(url),
                if e.dedup_fail_open {
                    " (fail open)"
                } else {
                    ""
                }
            ),
            (None, Some(inbox)) => format!("inbox {}", inbox.path().display()),
            (None, None) => match &e.store {
                Some(url) => format!("store PostgreSQL {}", config::redact(url)),
                None => String::new(),
            },
        };
        let action = if e.destinations.is_empty() {
            describe_action(&e.action)
        } else {
            let names: Vec<String> = e
                .destinations
                .iter()
                .map(|d| format!("{} ({})", d.name(), d.target().redacted()))
                .collect();
            format!("destinations {}", names.join(", "))
        };
        crate::note(&format!(
            "endpoint {}: POST {origin}{} ({}) → {action}; {dedup}",
            e.name, e.path, e.scheme,
        ));
        if matches!(e.action, Action::Queue(_)) {
            crate::note(&format!(
                "endpoint {}: events go to the queue for consumers elsewhere; this process \
                 does not process them (no local worker){}",
                e.name,
                if e.destinations.is_empty() {
                    ""
                } else {
                    ": one stream per destination, for hookgate work --queue URL with the \
                     same --destination flags"
                }
            ));
            if e.dedup.is_none() {
                crate::note(&format!(
                    "warning: endpoint {}: without --dedup redis://… dedup is per replica (this \
                     replica's inbox): replicas behind one load balancer can each queue the \
                     same delivery",
                    e.name
                ));
            }
        }
    }
    let console = match args.console {
        true => Some(start_console(
            &args,
            &data_dir,
            &running,
            metrics.clone(),
            tls.is_some(),
        )?),
        false => None,
    };
    // On this listener only if it is loopback (or a --console-listen address was given).
    let console_apart = match (&console, &args.console_listen) {
        (None, _) => None,
        (Some(_), Some(listen)) => Some(listen.clone()),
        (Some(_), None) if addr.ip().is_loopback() => None,
        (Some(_), None) => {
            crate::note(&format!(
                "the console stays on {DEFAULT_CONSOLE_LISTEN}, not on {addr}, which is not a \
                 loopback address: choose its address with --console-listen"
            ));
            Some(DEFAULT_CONSOLE_LISTEN.to_owned())
        }
    };
    let console_listener = match &console_apart {
        Some(listen) => {
            let listener = TcpListener::bind(listen)
                .await
                .map_err(|e| CliError::new(format!("cannot listen on {listen} (console): {e}")))?;
            let console_addr = listener
                .local_addr()
                .map_err(|e| CliError::new(format!("cannot read the bound address: {e}")))?;
            crate::note(&format!(
                "console: {}://{console_addr}{CONSOLE_PREFIX}/",
                if tls.is_some() { "https" } else { "http" }
            ));
            eprintln_flush(&format!("console listening on {console_addr}"));
            Some(listener)
        }
        None => {
            if console.is_some() {
                crate::note(&format!("console: {origin}{CONSOLE_PREFIX}/"));
            }
            None
        }
    };
    let router = Arc::new(Router {
        endpoints: running,
        metrics: metrics.clone(),
        in_flight: InFlight::new(limits.max_in_flight),
        body_timeout: limits.body_timeout,
        console: if console_listener.is_none() {
            console.clone()
        } else {
            None
        },
    });
    if let Some(handle) = metrics {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                handle.run_upkeep();
            }
        });
    }
    eprintln_flush(&format!("listening on {addr}"));

    match (console_listener, console) {
        (Some(console_listener), Some(console)) => {
            tokio::join!(
                serve(listener, tls.clone(), Arc::clone(&router), limits),
                serve(
                    console_listener,
                    tls,
                    Arc::new(ConsoleOnly(console)),
                    limits
                ),
            );
        }
        _ => serve(listener, tls, Arc::clone(&router), limits).await,
    }

    crate::note("shutting down: finishing the events being processed");
    let Ok(router) = Arc::try_unwrap(router) else {
        return Err(CliError::new(
            "internal error: connections outlived the shutdown",
        ));
    };
    for run in router.endpoints {
        let Some(worker) = run.worker else {
            continue;
        };
        let report = worker.shutdown().await;
        crate::note(&format!(
            "endpoint {}: {} finished, {} given back to the queue",
            run.endpoint.name, report.finished, report.released
        ));
    }
    Ok(Output::new(Vec::new(), ExitStatus::Success))
}

/// The limits from the flags, else the configuration file, else the defaults.
fn limits(args: &ServeArgs, file: Option<&config::File>) -> Result<Limits, CliError> {
    let defaults = Limits::default();
    let timeout = |flag: Option<Duration>, key: &str, text: Option<&str>, default: Duration| match (
        flag, text,
    ) {
        (Some(timeout), _) => Ok(timeout),
        (None, Some(text)) => parse_duration(text)
            .map_err(|e| CliError::new(format!("{key} in the configuration: {e}"))),
        (None, None) => Ok(default),
    };
    Limits {
        header_timeout: timeout(
            args.header_timeout,
            "header_timeout",
            file.and_then(|f| f.header_timeout.as_deref()),
            defaults.header_timeout,
        )?,
        body_timeout: timeout(
            args.body_timeout,
            "body_timeout",
            file.and_then(|f| f.body_timeout.as_deref()),
            defaults.body_timeout,
        )?,
        max_connections: args
            .max_connections
            .or_else(|| file.and_then(|f| f.max_connections))
            .unwrap_or(defaults.max_connections),
        max_in_flight: args
            .max_in_flight
            .or_else(|| file.and_then(|f| f.max_in_flight))
            .unwrap_or(defaults.max_in_flight),
    }
    .check()
    .map_err(CliError::new)
}

/// Accepts connections until a shutdown signal, then lets open ones finish.
pub(crate) async fn serve<H: Handle>(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Arc<H>,
    limits: Limits,
) {
    let slots = ConnectionSlots::new(limits.max_connections);
    let graceful = GracefulShutdown::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    crate::note(&format!("accept failed: {error}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let Some(slot) = slots.try_open() else {
            slots.refuse(stream);
            continue;
        };
        let stream = LingeringIo::new(stream);
        let router = Arc::clone(&router);
        let service = service_fn(move |request: Request<Incoming>| {
            let router = Arc::clone(&router);
            async move { Ok::<_, Infallible>(router.handle(request).await) }
        });
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        match &tls {
            None => {
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                let watched = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = watched.await;
                    drop(slot);
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                    if let Ok(Ok(stream)) = handshake.await {
                        let connection = builder.serve_connection(TokioIo::new(stream), service);
                        let _ = watcher.watch(connection).await;
                    }
                    drop(slot);
                });
            }
        }
    }
    drop(listener);
    if tokio::time::timeout(CONNECTION_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        crate::note("some connections were still open after 10 s: closed");
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

impl Router {
    async fn route(&self, request: Request<Incoming>) -> Response<ResponseBodyOf> {
        let path = request.uri().path();
        if let Some(console) = &self.console {
            if path == CONSOLE_PREFIX || path.starts_with(&format!("{CONSOLE_PREFIX}/")) {
                return console.serve_request(request).await.map(Either::Right);
            }
        }
        if let Some(run) = self.endpoints.iter().find(|r| r.endpoint.path == path) {
            // A GET goes to the gate only for a scheme with a GET handshake (Meta), an
            // OPTIONS only for one validated with an OPTIONS (Azure Event Grid's CloudEvents
            // abuse protection).
            let takes_get = run.service.gate().takes_get();
            let takes_options = run.service.gate().takes_options();
            let method = request.method();
            if method != Method::POST
                && !(takes_get && method == Method::GET)
                && !(takes_options && method == Method::OPTIONS)
            {
                let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed\n");
                let allow = match (takes_get, takes_options) {
                    (true, true) => "GET, OPTIONS, POST",
                    (true, false) => "GET, POST",
                    (false, true) => "OPTIONS, POST",
                    (false, false) => "POST",
                };
                response
                    .headers_mut()
                    .insert(header::ALLOW, http::HeaderValue::from_static(allow));
                return response;
            }
            let Some(_permit) = self.in_flight.try_enter() else {
                return over_capacity();
            };
            let request = request.map(|body| DeadlineBody::new(body, self.body_timeout));
            let mut service = run.service.clone();
            let response = match service.call(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            if response
                .extensions()
                .get::<hookgate_tower::BodyReadError>()
                .is_some_and(|error| limits::is_body_timeout(error))
            {
                return body_timeout();
            }
            return response.map(Either::Left);
        }
        match (request.method(), path) {
            (&Method::GET | &Method::HEAD, "/healthz") => plain(StatusCode::OK, "ok\n"),
            (&Method::GET, "/metrics") => self.metrics().await,
            _ => plain(StatusCode::NOT_FOUND, "not_found\n"),
        }
    }

    /// The Prometheus text exposition, with the inboxes' event counts refreshed.
    async fn metrics(&self) -> Response<ResponseBodyOf> {
        let Some(handle) = &self.metrics else {
            return plain(StatusCode::SERVICE_UNAVAILABLE, "metrics_unavailable\n");
        };
        for run in &self.endpoints {
            if run.worker.is_none() {
                continue;
            }
            let counts = match (&run.inbox, &run.store) {
                (Some(inbox), _) => inbox.status_counts().await.ok().map(|c| Counts::from(&c)),
                (None, Some(store)) => store.status_counts().await.ok().map(|c| Counts::from(&c)),
                (None, None) => None,
            };
            let Some(Counts { each, pending, .. }) = counts else {
                continue;
            };
            for (status, count) in each {
                #[allow(clippy::cast_precision_loss, reason = "a gauge")]
                let value = count as f64;
                metrics::gauge!(
                    "hookgate_inbox_events",
                    "endpoint" => run.endpoint.name.clone(),
                    "status" => status
                )
                .set(value);
            }
            #[allow(clippy::cast_precision_loss, reason = "a gauge")]
            let pending = pending as f64;
            metrics::gauge!("hookgate_queue_depth", "endpoint" => run.endpoint.name.clone())
                .set(pending);
            if !run.endpoint.destinations.is_empty() {
                match (&run.inbox, &run.store) {
                    (Some(inbox), _) => destination_gauges(&run.endpoint, inbox).await,
                    (None, Some(store)) => destination_gauges(&run.endpoint, store).await,
                    (None, None) => {}
                }
            }
        }
        let mut response = Response::new(Either::Right(Full::new(Bytes::from(handle.render()))));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        response
    }
}

/// `hookgate_destination_deliveries{endpoint, destination, status}`: an endpoint's
/// deliveries per destination and status (every status of every destination, zeros too).
///
/// And `hookgate_destination_lane_backlog` of each ordered destination, counted in the
/// store (a worker knows only the lane heads it holds).
async fn destination_gauges(endpoint: &Endpoint, log: &dyn EventLog) {
    if let Ok(backlog) = log.lane_backlog().await {
        for destination in &endpoint.destinations {
            if destination.order_key().is_none() {
                continue;
            }
            let count = backlog
                .iter()
                .find(|(d, _)| d == destination.name())
                .map_or(0, |(_, n)| *n);
            #[allow(clippy::cast_precision_loss, reason = "a gauge")]
            let value = count as f64;
            metrics::gauge!(
                hookgate_queue::LANE_BACKLOG_METRIC,
                "endpoint" => endpoint.name.clone(),
                "destination" => destination.name().to_owned()
            )
            .set(value);
        }
    }
    let Ok(counts) = log.delivery_counts().await else {
        return;
    };
    for destination in &endpoint.destinations {
        for status in hookgate_inbox::Status::ALL {
            if status == hookgate_inbox::Status::Filtered {
                continue;
            }
            let count = counts
                .iter()
                .find(|(d, s, _)| d == destination.name() && *s == status)
                .map_or(0, |(_, _, n)| *n);
            #[allow(clippy::cast_precision_loss, reason = "a gauge")]
            let value = count as f64;
            metrics::gauge!(
                DESTINATION_DELIVERIES_METRIC,
                "endpoint" => endpoint.name.clone(),
                "destination" => destination.name().to_owned(),
                "status" => status.as_str()
            )
            .set(value);
        }
    }
}

/// Gauge: deliveries per destination and status.
const DESTINATION_DELIVERIES_METRIC: &str = "hookgate_destination_deliveries";

pub(crate) fn plain(status: StatusCode, text: &'static str) -> Response<ResponseBodyOf> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from_static(
        text.as_bytes(),
    ))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// `503 over_capacity` with Retry-After: the in-flight cap is reached.
fn over_capacity() -> Response<ResponseBodyOf> {
    metrics::counter!(REFUSED_METRIC, "reason" => OVER_CAPACITY).increment(1);
    let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, "over_capacity\n");
    response.headers_mut().insert(
        header::RETRY_AFTER,
        http::HeaderValue::from_static(RETRY_AFTER_SECONDS),
    );
    response
}

/// `408 body_timeout`, and the connection is closed: the body missed its deadline.
fn body_timeout() -> Response<ResponseBodyOf> {
    metrics::counter!(REFUSED_METRIC, "reason" => limits::BODY_TIMEOUT).increment(1);
    let mut response = plain(StatusCode::REQUEST_TIMEOUT, "body_timeout\n");
    response
        .headers_mut()
        .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    response
}

/// The console over every endpoint that keeps an event log: its local inbox, or the
/// PostgreSQL store of `--store`.
fn start_console(
    args: &ServeArgs,
    data_dir: &Path,
    running: &[Running],
    metrics: Option<PrometheusHandle>,
    secure: bool,
) -> Result<Arc<Console>, CliError> {
    if let Some(run) = running.iter().find(|run| {
        run.endpoint.path == CONSOLE_PREFIX
            || run.endpoint.path.starts_with(&format!("{CONSOLE_PREFIX}/"))
    }) {
        return Err(CliError::new(format!(
            "endpoint {}: its path {} is where --console lives; choose another path",
            run.endpoint.name, run.endpoint.path
        )));
    }
    let endpoints: Vec<ConsoleEndpoint> = running
        .iter()
        .filter_map(|run| {
            let log: Arc<dyn EventLog> = match (&run.inbox, &run.store) {
                (Some(inbox), _) => Arc::new(inbox.clone()),
                (None, Some(store)) => Arc::new(store.clone()),
                (None, None) => return None,
            };
            Some(ConsoleEndpoint {
                name: run.endpoint.name.clone(),
                log,
            })
        })
        .collect();
    if endpoints.is_empty() {
        return Err(CliError::new(
            "--console shows the event log of a local inbox or a --store, and no endpoint has \
             one (--queue with --dedup keeps nothing here)",
        ));
    }
    let auth = console_auth(args.console_token.as_deref(), data_dir)?;
    Ok(Arc::new(Console::new(auth, endpoints, metrics, secure)))
}

/// The one endpoint of the flags, with a generated secret on a first run without keys.
fn flag_endpoint(args: &ServeArgs, data_dir: &Path, retry: Retry) -> Result<Endpoint, CliError> {
    config::check_path(&args.path).map_err(CliError::new)?;
    let mut secrets = args.secrets.clone();
    if let Some(path) = &args.secret_file {
        secrets = input::collect_secrets(&secrets, Some(path))?;
    }
    if secrets.is_empty() {
        let (secret, generated) = config::stored_secret(data_dir)?;
        let path = data_dir.join("secret");
        if generated {
            crate::note(&format!(
                "no --secret given: generated this {} secret, kept in {} (senders sign with \
                 it):\n\n    {secret}\n",
                args.scheme,
                path.display()
            ));
        } else {
            crate::note(&format!(
                "no --secret given: using the secret kept in {}",
                path.display()
            ));
        }
        secrets.push(secret);
    }
    let action = match (&args.forward, &args.exec, &args.queue) {
        (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
            return Err(CliError::new(
                "--queue hands events to consumers on other machines, so it cannot be combined \
                 with --forward or --exec (which process them here)",
            ));
        }
        (Some(url), _, None) => {
            crate::client::parse_url(url, "--forward")?;
            Action::Forward(url.clone())
        }
        (None, Some(command), None) => Action::Exec(command.clone()),
        (None, None, Some(url)) => {
            config::queue_kind(url).map_err(|e| CliError::new(format!("--queue: {e}")))?;
            Action::Queue(url.clone())
        }
        (None, None, None) => Action::Print,
    };
    if let Some(url) = &args.dedup {
        config::check_dedup(url).map_err(|e| CliError::new(format!("--dedup: {e}")))?;
    }
    if let Some(url) = &args.store {
        config::check_store(url, args.queue.is_some(), args.dedup.is_some())
            .map_err(|e| CliError::new(format!("--{e}")))?;
    }
    let configs = args
        .destinations
        .iter()
        .map(|text| config::destination_flag(text))
        .collect::<Result<Vec<_>, _>>()
        .map_err(CliError::new)?;
    let destinations =
        config::destinations(DEFAULT_ENDPOINT, &configs, retry, &action).map_err(CliError::new)?;
    Ok(Endpoint {
        name: DEFAULT_ENDPOINT.to_owned(),
        path: args.path.clone(),
        scheme: args.scheme,
        keys: secrets
            .into_iter()
            .map(|secret| KeySpec {
                secret,
                not_after: None,
            })
            .collect(),
        tolerance: args.tolerance.map(Duration::from_secs),
        max_body: args.max_body,
        action,
        dedup: args.dedup.clone(),
        dedup_fail_open: args.dedup_fail_open,
        store: args.store.clone(),
        public_url: args.public_url.clone(),
        verify_token: args.verify_token.clone(),
        retry,
        destinations,
    })
}

/// Opens an endpoint's inbox, builds its gate and starts its worker.
async fn start_endpoint(
    endpoint: Endpoint,
    data_dir: &Path,
    client: &HttpClient,
    args: &ServeArgs,
) -> Result<Running, CliError> {
    let context = |problem: String| CliError::new(format!("endpoint {}: {problem}", endpoint.name));
    let mut builder = Verifier::builder(endpoint.scheme);
    for spec in &endpoint.keys {
        let mut key = Key::new(spec.secret.as_str());
        if let Some(at) = spec.not_after {
            key = key.not_after(at);
        }
        builder = builder.key(key);
    }
    if let Some(tolerance) = endpoint.tolerance {
        if tolerance.is_zero() {
            return Err(context(
                "the tolerance must be at least 1 second".to_owned(),
            ));
        }
        builder = builder.tolerance(tolerance);
    }
    // Twilio's JSON requests sign a URL whose query carries the body's hash, different for
    // each request: that URL is the public origin, the path and the request's own query.
    let origin = per_request_origin(&endpoint).map_err(context)?;
    if let (Some(url), None) = (&endpoint.public_url, &origin) {
        builder = builder.url(url.as_str());
    }
    if let Some(token) = &endpoint.verify_token {
        builder = builder.verify_token(token.as_str());
    }
    // Only Meta's GET handshake is checked with a verify token (Dropbox's and Okta's are not).
    let takes_get = endpoint.scheme.handshake() == Some(HandshakeKind::MetaSubscribe);
    if takes_get && endpoint.verify_token.is_none() {
        crate::note(&format!(
            "endpoint {}: scheme {} checks the URL with a GET and a verify token; without \
             --verify-token (verify_token in the config) that check is refused with 403",
            endpoint.name, endpoint.scheme
        ));
    }
    let built = match origin {
        Some(_) => builder.build_with_url_per_request(),
        None => builder.build(),
    };
    let verifier = built.map_err(|e| match e {
        hookgate::ConfigError::MissingUrl(scheme) => context(format!(
            "scheme {scheme} signs the request URL: give the exact public URL the provider \
             calls (--public-url, or public_url in the config)"
        )),
        other => context(other.to_string()),
    })?;
    if let Some(url) = &endpoint.store {
        return start_postgres_endpoint(url, endpoint.clone(), verifier, origin, client, args)
            .await
            .map_err(context);
    }
    let queue = match &endpoint.action {
        Action::Queue(url) => Some(url.as_str()),
        _ => None,
    };
    let inbox = if queue.is_some() && endpoint.dedup.is_some() {
        None
    } else {
        let path = inbox_path(data_dir, &endpoint.name);
        let mut builder = Inbox::builder(&path);
        // With a queue the inbox is only the dedup store: the queue holds the deliveries.
        if !endpoint.destinations.is_empty() && queue.is_none() {
            let router = hookgate_queue::Router::new(endpoint.destinations.clone())
                .map_err(|e| context(format!("destination {e}")))?;
            builder = builder.destinations(router);
        }
        Some(
            builder
                .open()
                .map_err(|e| context(format!("cannot open the inbox {}: {e}", path.display())))?,
        )
    };
    let mut gate = build_gate(&endpoint, verifier, inbox.as_ref())
        .await
        .map_err(context)?;
    if let Some(limit) = endpoint.max_body {
        gate = gate.max_body_bytes(limit);
    }
    let gate = gate.build().map_err(|e| context(e.to_string()))?;
    let service = gate_service(gate, origin.as_deref()).map_err(context)?;
    let (Some(local), None) = (&inbox, queue) else {
        return Ok(Running {
            service,
            endpoint,
            inbox,
            store: None,
            worker: None,
        });
    };
    let processor = processor(&endpoint, client, args)?;
    let mut builder = local_worker(Worker::builder(local.clone(), processor), &endpoint, args);
    if !endpoint.destinations.is_empty() {
        builder = builder.destinations(endpoint.name.clone(), &endpoint.destinations);
    }
    let worker = builder.start().map_err(|e| context(e.to_string()))?;
    Ok(Running {
        service,
        endpoint,
        inbox,
        store: None,
        worker: Some(LocalWorker::Inbox(worker)),
    })
}

/// For a scheme that signs a URL differing per request (Twilio's JSON requests, whose query
/// carries the body's hash): the origin of the public URL, to which the gate adds each
/// request's path and query. The public URL's path must then be the endpoint's own.
fn per_request_origin(endpoint: &Endpoint) -> Result<Option<String>, String> {
    let (SchemeId::TwilioBodySha256, Some(url)) = (endpoint.scheme, &endpoint.public_url) else {
        return Ok(None);
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("the public URL {url} is not a URL"))?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(format!("the public URL {url} has no scheme and host"));
    };
    if uri.path() != endpoint.path {
        return Err(format!(
            "scheme {} signs each request's own URL: the public URL's path ({}) must be the \
             endpoint's path ({}); its query is taken from each request",
            endpoint.scheme,
            uri.path(),
            endpoint.path
        ));
    }
    Ok(Some(format!("{scheme}://{authority}")))
}

/// The gate in front of the endpoint, rebuilding each request's public URL from `origin`
/// where one is given.
fn gate_service(gate: Gate, origin: Option<&str>) -> Result<GateService<Unreachable>, String> {
    match origin {
        None => Ok(GateService::new(Unreachable, gate)),
        Some(origin) => {
            let layer = hookgate_tower::GateLayer::new(gate)
                .public_origin(origin)
                .map_err(|e| e.to_string())?;
            Ok(tower_layer::Layer::layer(&layer, Unreachable))
        }
    }
}

/// How much longer than --timeout a handler may run before the worker gives up on it.
const HANDLER_GRACE: Duration = Duration::from_secs(10);

/// The local worker's settings, the same on either store: the one worker loop.
fn local_worker<Q: Queue>(
    builder: WorkerBuilder<Q>,
    endpoint: &Endpoint,
    args: &ServeArgs,
) -> WorkerBuilder<Q> {
    builder
        .concurrency(args.workers)
        .retry(retry_policy(endpoint))
        .handler_timeout(args.timeout.saturating_add(HANDLER_GRACE))
}

fn retry_policy(endpoint: &Endpoint) -> RetryPolicy {
    endpoint.retry.policy()
}

/// An endpoint on the PostgreSQL store: the store is the gate's dedup store and sink, and
/// this replica's worker takes events from it. Connects (and migrates) now, so that a wrong
/// URL or an unreachable database fails at start.
async fn start_postgres_endpoint(
    url: &str,
    endpoint: Endpoint,
    verifier: Verifier,
    origin: Option<String>,
    client: &HttpClient,
    args: &ServeArgs,
) -> Result<Running, String> {
    let shown = config::redact(url);
    let mut store = PgStore::builder();
    if !endpoint.destinations.is_empty() {
        let router = hookgate_queue::Router::new(endpoint.destinations.clone())
            .map_err(|e| format!("destination {e}"))?;
        store = store.destinations(router);
    }
    let store = store
        .connect(url)
        .await
        .map_err(|e| format!("--store {shown}: {e}"))?;
    let mut gate = store.gate(verifier);
    if let Some(limit) = endpoint.max_body {
        gate = gate.max_body_bytes(limit);
    }
    let gate = gate.build().map_err(|e| e.to_string())?;
    let service = gate_service(gate, origin.as_deref())?;
    if args.workers == 0 {
        return Ok(Running {
            service,
            endpoint,
            inbox: None,
            store: Some(store),
            worker: None,
        });
    }
    let processor = processor(&endpoint, client, args).map_err(|e| e.to_string())?;
    let mut builder = local_worker(PgWorker::builder(&store, processor), &endpoint, args);
    if !endpoint.destinations.is_empty() {
        builder = builder.destinations(endpoint.name.clone(), &endpoint.destinations);
    }
    let worker = builder
        .start()
        .map_err(|e| format!("--store {shown}: {e}"))?;
    Ok(Running {
        service,
        endpoint,
        inbox: None,
        store: Some(store),
        worker: Some(LocalWorker::Postgres(worker)),
    })
}

/// The gate's dedup store and sink: Redis or the inbox for dedup, a queue or the inbox as
/// the sink. Connects to Redis and NATS now, so that a wrong URL fails at start.
async fn build_gate(
    endpoint: &Endpoint,
    verifier: Verifier,
    inbox: Option<&Inbox>,
) -> Result<GateBuilder, String> {
    let builder = Gate::builder(verifier);
    let builder = match (&endpoint.dedup, inbox) {
        (Some(url), _) => {
            let store = RedisDedupStore::connect(url)
                .await
                .map_err(|e| format!("--dedup {}: {e}", config::redact(url)))?;
            if endpoint.dedup_fail_open {
                builder.dedup(FailOpenDedupStore::new(store))
            } else {
                builder.dedup(store)
            }
        }
        (None, Some(inbox)) => builder.dedup(inbox.clone()),
        (None, None) => return Err("internal error: no dedup store".to_owned()),
    };
    Ok(match (&endpoint.action, inbox) {
        (Action::Queue(url), _) => {
            let shown = config::redact(url);
            let router = if endpoint.destinations.is_empty() {
                None
            } else {
                Some(
                    hookgate_queue::Router::new(endpoint.destinations.clone())
                        .map_err(|e| format!("destination {e}"))?,
                )
            };
            match config::queue_kind(url)? {
                QueueKind::Redis => builder.sink(
                    RedisStreamSink::connect_with_destinations(url, router)
                        .await
                        .map_err(|e| format!("--queue {shown}: {e}"))?,
                ),
                QueueKind::Nats => builder.sink(
                    JetStreamSink::connect_with_destinations(url, router)
                        .await
                        .map_err(|e| format!("--queue {shown}: {e}"))?,
                ),
            }
        }
        (_, Some(inbox)) => builder.sink(inbox.clone()),
        (_, None) => return Err("internal error: no sink".to_owned()),
    })
}

/// What an endpoint's local worker runs for each event.
fn processor(
    endpoint: &Endpoint,
    client: &HttpClient,
    args: &ServeArgs,
) -> Result<Processor, CliError> {
    Ok(Processor {
        endpoint: Arc::from(endpoint.name.as_str()),
        action: target(&endpoint.action, client)?,
        timeout: args.timeout,
        destinations: Arc::from(destination_targets(
            &endpoint.name,
            &endpoint.destinations,
            client,
        )?),
    })
}

/// What runs for each destination's deliveries, by name (for `serve`'s local worker and
/// `hookgate work`).
///
/// # Errors
/// A destination whose target does not run in this process (a queue).
pub(crate) fn destination_targets(
    endpoint: &str,
    destinations: &[hookgate_queue::Destination],
    client: &HttpClient,
) -> Result<Vec<(String, Target)>, CliError> {
    let mut out = Vec::with_capacity(destinations.len());
    for destination in destinations {
        let target = match destination.target() {
            DestinationTarget::Forward(url) => Target::forward(url, client)?,
            DestinationTarget::Exec(command) => Target::Exec(command.clone()),
            _ => {
                return Err(CliError::new(format!(
                    "endpoint {endpoint}, destination {}: only forward and exec destinations \
                     run here",
                    destination.name()
                )));
            }
        };
        out.push((destination.name().to_owned(), target));
    }
    Ok(out)
}

/// The destinations of `hookgate work --queue URL --destination …`: the `--destination`
/// flags of `serve`, checked as `serve` checks them for an endpoint whose queue is `url`,
/// with `retry` as their default retry policy.
///
/// # Errors
/// A flag that is not a destination, or one a queue cannot serve (`order_key`).
pub(crate) fn queue_destinations(
    endpoint: &str,
    flags: &[String],
    url: &str,
    retry: (u32, Duration, Duration),
) -> Result<Vec<hookgate_queue::Destination>, CliError> {
    let configs = flags
        .iter()
        .map(|text| config::destination_flag(text))
        .collect::<Result<Vec<_>, _>>()
        .map_err(CliError::new)?;
    let (max_attempts, base, cap) = retry;
    // A PostgreSQL store holds its deliveries itself (`serve --store`); a queue URL must
    // name a queue that can hold one stream per destination.
    let action = if is_postgres(url) {
        Action::Print
    } else {
        Action::Queue(url.to_owned())
    };
    config::destinations(
        endpoint,
        &configs,
        config::Retry {
            max_attempts,
            base,
            cap,
        },
        &action,
    )
    .map_err(CliError::new)
}

/// What the local worker runs for `action`.
fn target(action: &Action, client: &HttpClient) -> Result<Target, CliError> {
    match action {
        Action::Forward(url) => Target::forward(url, client),
        Action::Exec(command) => Ok(Target::Exec(command.clone())),
        Action::Print => Ok(Target::Print),
        Action::Queue(_) => Err(CliError::new(
            "internal error: a queue endpoint has no local processor",
        )),
    }
}

fn describe_action(action: &Action) -> String {
    match action {
        Action::Forward(url) => format!("forward to {url}"),
        Action::Exec(command) => format!("exec {command:?}"),
        Action::Print => "print to stdout".to_owned(),
        Action::Queue(url) => format!("queue {}", config::redact(url)),
    }
}

/// A line on stderr, flushed at once (tests and scripts wait for `listening on`).
pub(crate) fn eprintln_flush(line: &str) {
    use std::io::Write as _;
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}").and_then(|()| stderr.flush());
}

/// The inner service of the gate-mode middleware: never called, since in gate mode the
/// middleware answers every request itself.
#[derive(Debug, Clone, Copy)]
struct Unreachable;

impl Service<Request<RawBody>> for Unreachable {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<RawBody>) -> Self::Future {
        let mut response = Response::new(Full::new(Bytes::from_static(b"internal_error\n")));
        *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        std::future::ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    #[test]
    fn listening_address_default_is_local() {
        let addr: SocketAddr = DEFAULT_LISTEN.parse().unwrap();
        assert!(addr.ip().is_loopback());
    }
}
