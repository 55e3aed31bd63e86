//! The JetStream worker: a durable pull consumer, ack / nak with delay / term, dead letters
//! on a subject of their own.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::RetentionPolicy;
use async_nats::jetstream::{AckKind, Context, Message};
use futures_util::StreamExt as _;
use hookgate_queue::{
    Envelope, Handler, QueuedEvent, RetryPolicy, Runner, ShutdownReport, Verdict, WorkerStats,
};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::Error;
use crate::sink::DEFAULT_DUPLICATE_WINDOW;
use crate::stream::{StreamSpec, ensure_stream};
use crate::url::{DEFAULT_ACK_TIMEOUT, DEFAULT_STREAM, DEFAULT_SUBJECT, NatsUrl, connect, context};

/// Default durable consumer name: `hookgate`.
pub const DEFAULT_CONSUMER: &str = "hookgate";
/// Default handlers running at once per worker: 8.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Default lease (the consumer's `ack_wait`): 30 seconds. A message whose consumer stopped
/// reporting progress (it crashed) is redelivered this long after.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Default longest wait of one pull request: 1 second.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Default wait for running handlers at shutdown: 30 seconds.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Header of a dead letter: why it was given up.
pub const ERROR_HEADER: &str = "Hookgate-Error";
/// Header of a dead letter: attempts made.
pub const ATTEMPTS_HEADER: &str = "Hookgate-Attempts";

/// Runs a [`Handler`] over a JetStream stream filled by a
/// [`JetStreamSink`](crate::JetStreamSink), through one durable pull consumer shared by any
/// number of workers on any number of machines.
///
/// - **Pull consumer** (durable, explicit acks, created at start-up if missing): each worker
///   pulls batches up to its free concurrency.
/// - **Leases** are JetStream's `ack_wait` ([`lease`](JetStreamWorkerBuilder::lease)):
///   while a handler runs, the worker sends `+WPI` (progress) every third of it; a worker
///   that dies stops doing so and JetStream redelivers the message to another worker after
///   the lease. Deliveries count as attempts (`delivered` in the message metadata).
/// - **Results**: success is an ack confirmed by the server (double ack); a retry is a
///   `-NAK` with the [`RetryPolicy`]'s backoff (or the handler's delay), so JetStream itself
///   holds the message back; a permanent failure, or the last allowed attempt, publishes
///   the envelope to the dead-letter subject (awaiting JetStream's ack, with headers
///   [`ERROR_HEADER`] and [`ATTEMPTS_HEADER`]) and then `+TERM`s the message.
/// - **`max_deliver`.** The attempt limit is the retry policy's, enforced by the worker:
///   a message delivered more often than allowed (its consumers kept dying) is
///   dead-lettered without running the handler. The consumer's own `max_deliver` is left
///   unlimited on purpose: a message that reached JetStream's limit would stay in the
///   stream, delivered to no one and dead-lettered by no one.
/// - **Dead letters** land on [`dead_letter_subject`](JetStreamWorkerBuilder::dead_letter_subject)
///   (default `<subject>.dead`), captured by a stream of their own (default
///   `<stream>_DEAD`, limits retention) that the worker creates if missing.
/// - **Shutdown** ([`JetStreamWorkerHandle::shutdown`]) stops pulling, waits for running
///   handlers up to a grace period, and `-NAK`s the rest so they are redelivered at once
///   (JetStream counts that as a delivery).
#[derive(Debug)]
pub struct JetStreamWorker {
    _private: (),
}

impl JetStreamWorker {
    /// Starts configuring a worker that runs `handler` on the stream at `url`
    /// (`nats://host:4222`). The URL's query may name the `stream`
    /// ([`DEFAULT_STREAM`](crate::DEFAULT_STREAM)), the `subject` it captures
    /// ([`DEFAULT_SUBJECT`](crate::DEFAULT_SUBJECT)), the durable `consumer`
    /// ([`DEFAULT_CONSUMER`]), the `dead_subject` and the `dead_stream`.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad URL.
    pub fn builder(url: &str, handler: impl Handler) -> Result<JetStreamWorkerBuilder, Error> {
        let url = NatsUrl::parse(
            url,
            &[
                "stream",
                "subject",
                "consumer",
                "dead_subject",
                "dead_stream",
            ],
        )?;
        Ok(JetStreamWorkerBuilder {
            stream: url.param("stream").unwrap_or(DEFAULT_STREAM).to_owned(),
            subject: url.param("subject").unwrap_or(DEFAULT_SUBJECT).to_owned(),
            consumer: url.param("consumer").unwrap_or(DEFAULT_CONSUMER).to_owned(),
            dead_subject: url.param("dead_subject").map(str::to_owned),
            dead_stream: url.param("dead_stream").map(str::to_owned),
            server: url.server,
            handler: Arc::new(handler),
            concurrency: DEFAULT_CONCURRENCY,
            lease: DEFAULT_LEASE,
            poll_interval: DEFAULT_POLL_INTERVAL,
            handler_timeout: hookgate_queue::DEFAULT_HANDLER_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            retry: RetryPolicy::new(),
            ack_timeout: DEFAULT_ACK_TIMEOUT,
        })
    }
}

/// Settings of a [`JetStreamWorker`]; checked by [`start`](Self::start).
#[must_use]
pub struct JetStreamWorkerBuilder {
    server: String,
    handler: Arc<dyn Handler>,
    stream: String,
    subject: String,
    consumer: String,
    dead_subject: Option<String>,
    dead_stream: Option<String>,
    concurrency: usize,
    lease: Duration,
    poll_interval: Duration,
    handler_timeout: Duration,
    shutdown_grace: Duration,
    retry: RetryPolicy,
    ack_timeout: Duration,
}

impl JetStreamWorkerBuilder {
    /// The stream (default [`DEFAULT_STREAM`](crate::DEFAULT_STREAM)).
    pub fn stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = stream.into();
        self
    }

    /// The subject the events are published on (default
    /// [`DEFAULT_SUBJECT`](crate::DEFAULT_SUBJECT)); the consumer filters on it.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = subject.into();
        self
    }

    /// The durable consumer shared by the workers (default [`DEFAULT_CONSUMER`]).
    pub fn consumer(mut self, consumer: impl Into<String>) -> Self {
        self.consumer = consumer.into();
        self
    }

    /// The subject dead letters are published on (default `<subject>.dead`).
    pub fn dead_letter_subject(mut self, subject: impl Into<String>) -> Self {
        self.dead_subject = Some(subject.into());
        self
    }

    /// The stream that keeps the dead letters, created if missing (default
    /// `<stream>_DEAD`).
    pub fn dead_letter_stream(mut self, stream: impl Into<String>) -> Self {
        self.dead_stream = Some(stream.into());
        self
    }

    /// Handlers running at once (default [`DEFAULT_CONCURRENCY`], 1 to 10 000).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// The lease, JetStream's `ack_wait` for a consumer the worker creates (default
    /// [`DEFAULT_LEASE`], at least 100 ms).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Longest wait of one pull request (default [`DEFAULT_POLL_INTERVAL`]); also how long
    /// a shutdown may wait for the pull in flight.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Longest run of one handler call (default 5 minutes).
    pub fn handler_timeout(mut self, timeout: Duration) -> Self {
        self.handler_timeout = timeout;
        self
    }

    /// How long [`JetStreamWorkerHandle::shutdown`] waits for running handlers (default
    /// [`DEFAULT_SHUTDOWN_GRACE`]).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// The retry policy (default [`RetryPolicy::new`]: 12 attempts, backoff from 1 s to 1 h).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Connects, creates the stream, the dead-letter stream and the durable consumer if
    /// missing, and starts the worker on the current Tokio runtime.
    ///
    /// # Errors
    /// [`Error::Config`] for a setting out of range or a stream that does not fit,
    /// [`Error::Nats`] if NATS or JetStream cannot be reached.
    pub async fn start(self) -> Result<JetStreamWorkerHandle, Error> {
        if !(1..=10_000).contains(&self.concurrency) {
            return Err(Error::Config(format!(
                "concurrency must be between 1 and 10000, got {}",
                self.concurrency
            )));
        }
        if self.lease < Duration::from_millis(100) {
            return Err(Error::Config(format!(
                "the lease must be at least 100 ms, got {:?}",
                self.lease
            )));
        }
        if self.poll_interval < Duration::from_millis(10) || self.ack_timeout.is_zero() {
            return Err(Error::Config(
                "poll_interval must be at least 10 ms and the ack timeout not zero".to_owned(),
            ));
        }
        let runner = Runner::new(self.handler, self.handler_timeout, self.retry)?;
        let client = connect(&self.server, "hookgate-worker").await?;
        let context = context(client, self.ack_timeout);
        let stream = ensure_stream(
            &context,
            &StreamSpec {
                name: self.stream.clone(),
                subject: self.subject.clone(),
                retention: RetentionPolicy::WorkQueue,
                duplicate_window: DEFAULT_DUPLICATE_WINDOW,
                max_age: Duration::ZERO,
                replicas: 1,
            },
            true,
        )
        .await?;
        let dead_subject = self
            .dead_subject
            .unwrap_or_else(|| format!("{}.dead", self.subject));
        let dead_spec = StreamSpec {
            name: self
                .dead_stream
                .unwrap_or_else(|| format!("{}_DEAD", self.stream)),
            subject: dead_subject.clone(),
            retention: RetentionPolicy::Limits,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            max_age: Duration::ZERO,
            replicas: 1,
        };
        ensure_stream(&context, &dead_spec, true).await?;
        let consumer: PullConsumer = stream
            .get_or_create_consumer(
                &self.consumer,
                pull::Config {
                    durable_name: Some(self.consumer.clone()),
                    filter_subject: self.subject.clone(),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: self.lease,
                    max_deliver: -1,
                    ..pull::Config::default()
                },
            )
            .await
            .map_err(|e| Error::nats(format!("consumer {}: {e}", self.consumer)))?;

        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            context,
            dead_subject,
            runner,
            lease: self.lease,
            held: Mutex::new(HashMap::new()),
        });
        let settings = Settings {
            concurrency: self.concurrency,
            poll_interval: self.poll_interval,
            shutdown_grace: self.shutdown_grace,
        };
        let task = tokio::spawn(run(shared.clone(), consumer, settings, stopped));
        Ok(JetStreamWorkerHandle { stop, task, shared })
    }
}

impl fmt::Debug for JetStreamWorkerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamWorkerBuilder")
            .field("server", &self.server)
            .field("stream", &self.stream)
            .field("subject", &self.subject)
            .field("consumer", &self.consumer)
            .field("concurrency", &self.concurrency)
            .field("lease", &self.lease)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// A running [`JetStreamWorker`]. Dropping it stops the worker the same way as
/// [`shutdown`](Self::shutdown), without waiting for it.
#[derive(Debug)]
pub struct JetStreamWorkerHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<ShutdownReport>,
    shared: Arc<Shared>,
}

impl JetStreamWorkerHandle {
    /// Stops pulling, waits up to the grace period for running handlers, then cancels the
    /// rest and `-NAK`s their messages for immediate redelivery.
    pub async fn shutdown(self) -> ShutdownReport {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(report) => report,
            Err(err) => {
                tracing::error!(error = %err, "jetstream worker task failed");
                ShutdownReport::default()
            }
        }
    }

    /// Counters since the worker started.
    pub fn stats(&self) -> WorkerStats {
        self.shared.runner.stats()
    }
}

struct Shared {
    context: Context,
    dead_subject: String,
    runner: Runner,
    lease: Duration,
    /// Messages being handled, by stream sequence.
    held: Mutex<HashMap<u64, Arc<Message>>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("dead_subject", &self.dead_subject)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn held(&self) -> MutexGuard<'_, HashMap<u64, Arc<Message>>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn apply(
        &self,
        message: &Message,
        attempt: u32,
        verdict: Verdict,
    ) -> Result<bool, Error> {
        match verdict {
            Verdict::Processed => message.double_ack().await.map_err(Error::nats)?,
            Verdict::Retry { delay, .. } => message
                .ack_with(AckKind::Nak(Some(delay)))
                .await
                .map_err(Error::nats)?,
            other => {
                let reason = match other {
                    Verdict::Dead { reason } => reason,
                    other => format!("unexpected verdict {other:?}"),
                };
                self.dead(message, attempt, &reason).await?;
            }
        }
        Ok(true)
    }

    /// Publishes the message to the dead-letter subject, then terminates it. If the dead
    /// letter cannot be stored, the message is redelivered later instead (never lost).
    async fn dead(&self, message: &Message, attempt: u32, reason: &str) -> Result<(), Error> {
        let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
        let mut headers = HeaderMap::new();
        headers.insert(ERROR_HEADER, header_safe(reason).as_str());
        headers.insert(ATTEMPTS_HEADER, attempt.to_string().as_str());
        let dedup = dedup_of(message).unwrap_or_default();
        let publish = PublishMessage::build()
            .message_id(format!("{dedup}:dead:{sequence}").as_str())
            .headers(headers)
            .payload(message.payload.clone());
        let stored = async {
            self.context
                .send_publish(self.dead_subject.clone(), publish)
                .await
                .map_err(Error::nats)?
                .await
                .map_err(Error::nats)
        }
        .await;
        if let Err(err) = stored {
            let _ = message.ack_with(AckKind::Nak(Some(self.lease))).await;
            return Err(err);
        }
        message
            .double_ack_with(AckKind::Term)
            .await
            .map_err(Error::nats)
    }
}

fn dedup_of(message: &Message) -> Option<String> {
    Envelope::from_json(&message.payload)
        .ok()
        .map(|envelope| envelope.dedup_key)
}

/// A header value cannot hold line breaks; long reasons are cut.
fn header_safe(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(512)
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    concurrency: usize,
    poll_interval: Duration,
    shutdown_grace: Duration,
}

async fn run(
    shared: Arc<Shared>,
    consumer: PullConsumer,
    settings: Settings,
    mut stopped: watch::Receiver<bool>,
) -> ShutdownReport {
    let mut tasks: JoinSet<()> = JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        if *stopped.borrow() {
            break;
        }
        let room = settings.concurrency.saturating_sub(tasks.len());
        if room == 0 {
            tokio::select! {
                changed = stopped.changed() => if changed.is_err() { break },
                _ = tasks.join_next() => {}
            }
            continue;
        }
        // A pull runs to its end (at most the poll interval), so no message the server
        // handed over is dropped on the floor; each is handled as soon as it arrives.
        let pulled = pull(&consumer, room, settings.poll_interval, |message| {
            let message = Arc::new(message);
            let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
            shared.held().insert(sequence, message.clone());
            tasks.spawn(process_one(shared.clone(), message, sequence));
        })
        .await;
        if let Err(err) = pulled {
            tracing::warn!(error = %err, "jetstream worker could not pull");
            tokio::select! {
                changed = stopped.changed() => if changed.is_err() { break },
                () = tokio::time::sleep(settings.poll_interval.min(Duration::from_millis(500))) => {}
            }
        }
        if stopped.has_changed().is_err() {
            break;
        }
    }

    let mut report = ShutdownReport::default();
    let deadline = tokio::time::sleep(settings.shutdown_grace);
    tokio::pin!(deadline);
    while !tasks.is_empty() {
        tokio::select! {
            biased;
            joined = tasks.join_next() => {
                if joined.is_some() {
                    report.finished = report.finished.saturating_add(1);
                }
            }
            () = &mut deadline => break,
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let unfinished: Vec<Arc<Message>> = shared.held().drain().map(|(_, m)| m).collect();
    for message in unfinished {
        match message.ack_with(AckKind::Nak(None)).await {
            Ok(()) => report.released = report.released.saturating_add(1),
            Err(err) => {
                tracing::warn!(error = %err, "could not give a message back; JetStream redelivers it after the lease");
            }
        }
    }
    report
}

/// One pull request for up to `count` messages, waiting at most `expires`; `each` gets
/// every message as it arrives.
async fn pull(
    consumer: &PullConsumer,
    count: usize,
    expires: Duration,
    mut each: impl FnMut(Message),
) -> Result<(), Error> {
    let mut batch = consumer
        .batch()
        .max_messages(count)
        .expires(expires)
        .messages()
        .await
        .map_err(Error::nats)?;
    let mut got_any = false;
    while let Some(next) = batch.next().await {
        match next {
            Ok(message) => {
                got_any = true;
                each(message);
            }
            Err(err) if !got_any => return Err(Error::nats(err)),
            Err(_) => break,
        }
    }
    Ok(())
}

async fn process_one(shared: Arc<Shared>, message: Arc<Message>, sequence: u64) {
    let attempt = message
        .info()
        .map(|info| u32::try_from(info.delivered).unwrap_or(1))
        .unwrap_or(1);
    let id = sequence.to_string();
    match Envelope::from_json(&message.payload) {
        Ok(envelope) => {
            let event = QueuedEvent::new(envelope, id.clone(), attempt);
            let work = shared.runner.process(event, &id, |verdict| {
                shared.apply(&message, attempt, verdict)
            });
            // Tell JetStream the work goes on, every third of the lease.
            let progress = async {
                let every = shared.lease.checked_div(3).unwrap_or(shared.lease);
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(err) = message.ack_with(AckKind::Progress).await {
                        tracing::warn!(error = %err, "could not extend a lease");
                    }
                }
            };
            tokio::select! {
                () = work => {}
                () = progress => {}
            }
        }
        Err(err) => {
            tracing::warn!(sequence, error = %err, "unreadable message moved to the dead letters");
            if let Err(err) = shared
                .dead(&message, attempt, &format!("unreadable message: {err}"))
                .await
            {
                tracing::warn!(error = %err, "could not dead-letter an unreadable message");
            }
        }
    }
    shared.held().remove(&sequence);
}
