//! The JetStream queue of the one worker loop: a durable pull consumer, ack / nak with
//! delay / term, dead letters on a subject of their own.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{RetentionPolicy, Stream};
use async_nats::jetstream::{AckKind, Context, Message};
use futures_util::StreamExt as _;
use hookgate::BoxFuture;
use hookgate_queue::{
    AttemptRecord, Destination, Envelope, LaneKey, LeaseResult, Leased, Queue, QueuedEvent,
};
pub use hookgate_queue::{
    DEFAULT_CONCURRENCY, DEFAULT_LEASE, DEFAULT_POLL_INTERVAL, DEFAULT_SHUTDOWN_GRACE,
};
use tokio::sync::OnceCell;

use crate::Error;
use crate::routes::{
    JetStreamPauses, LANE_PARTITIONS, check_destinations, destination_consumer,
    destination_subject, destinations_wildcard, partition_token,
};
use crate::sink::DEFAULT_DUPLICATE_WINDOW;
use crate::stream::{StreamSpec, ensure_stream};
use crate::url::{DEFAULT_ACK_TIMEOUT, DEFAULT_STREAM, DEFAULT_SUBJECT, NatsUrl, connect, context};

/// Default durable consumer name: `hookgate`.
pub const DEFAULT_CONSUMER: &str = "hookgate";

/// Header of a dead letter: why it was given up.
pub const ERROR_HEADER: &str = "Hookgate-Error";
/// Header of a dead letter: attempts made.
pub const ATTEMPTS_HEADER: &str = "Hookgate-Attempts";
/// Header of a dead letter of a destination: the subject it was consumed from, where a
/// replay of that destination's dead letters puts it back (its lane partition).
pub const SOURCE_HEADER: &str = "Hookgate-Source";

/// Runs a [`Handler`](crate::Handler) over a JetStream stream filled by a
/// [`JetStreamSink`](crate::JetStreamSink), through one durable pull consumer shared by any
/// number of workers on any number of machines: the one worker loop of `hookgate-queue`
/// ([`hookgate_queue::Worker`]) on a [`JetStreamQueue`].
///
/// ```no_run
/// use hookgate_nats::{HandlerResult, JetStreamQueue, JetStreamWorker, QueuedEvent};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let queue = JetStreamQueue::connect("nats://10.0.0.7:4222/?stream=WEBHOOKS").await?;
/// let worker = JetStreamWorker::builder(queue, |event: QueuedEvent| async move {
///     println!("{} attempt {}", event.dedup_key(), event.attempt());
///     HandlerResult::Ok
/// })
/// .start()?;
/// worker.shutdown().await;
/// # Ok(()) }
/// ```
pub type JetStreamWorker = hookgate_queue::Worker<JetStreamQueue>;
/// Settings of a [`JetStreamWorker`]: the one worker builder of `hookgate-queue`.
pub type JetStreamWorkerBuilder = hookgate_queue::WorkerBuilder<JetStreamQueue>;
/// A running [`JetStreamWorker`]. Dropping it stops the worker the same way as
/// [`shutdown`](hookgate_queue::WorkerHandle::shutdown), without waiting for it.
pub type JetStreamWorkerHandle = hookgate_queue::WorkerHandle<JetStreamQueue>;

/// A JetStream stream read through a durable pull consumer, as the queue of a
/// [`JetStreamWorker`].
///
/// - **Pull consumer** (durable, explicit acks): each lease takes what is there at once,
///   or else waits up to the worker's poll interval for the next message (a pull request
///   with that expiry) and then takes what followed it.
/// - **Leases** are JetStream's `ack_wait`: the consumer is created, if missing, with the
///   worker's [`lease`](hookgate_queue::WorkerBuilder::lease) at its first lease; while a
///   handler runs, the worker sends `+WPI` (progress) every third of it; a worker that dies
///   stops doing so and JetStream redelivers the message to another worker after the
///   lease. Deliveries count as attempts (`delivered` in the message metadata).
/// - **Results**: success is an ack confirmed by the server (double ack); a retry is a
///   `-NAK` with the delay to the retry time, so JetStream itself holds the message back; a
///   dead letter is published to the dead-letter subject (awaiting JetStream's ack, with
///   headers [`ERROR_HEADER`] and [`ATTEMPTS_HEADER`]) and then `+TERM`ed.
/// - **`max_deliver`.** The attempt limit is the retry policy's, enforced by the worker:
///   a message delivered more often than allowed (its consumers kept dying) is
///   dead-lettered without running the handler. The consumer's own `max_deliver` is left
///   unlimited on purpose: a message that reached JetStream's limit would stay in the
///   stream, delivered to no one and dead-lettered by no one.
/// - **Dead letters** land on the dead-letter subject (default `<subject>.dead`), captured
///   by a stream of their own (default `<stream>_DEAD`, limits retention) that
///   [`connect`](JetStreamQueueBuilder::connect) creates if missing.
/// - **Release** at shutdown `-NAK`s the unfinished messages so they are redelivered at
///   once (JetStream counts that as a delivery).
///
/// # Destinations
///
/// With [`destinations`](JetStreamQueueBuilder::destinations) (issue 21) the queue reads
/// the copies a [`JetStreamSink`](crate::JetStreamSink) with the same destinations
/// publishes on `<subject>.<destination>`: one durable consumer per destination
/// (`<consumer>_<destination>`, filtered on its subject), each leased delivery naming its
/// destination ([`Leased::destination`]). [`lease_except`](Queue::lease_except) does not
/// pull from the held destinations' consumers at all; [`paused`](Queue::paused) reads
/// the stream `<stream>_PAUSED` ([`JetStreamPauses`](crate::JetStreamPauses)).
/// Each destination's dead letters go to `<dead subject>.<destination>` in the one
/// dead-letter stream (which then captures `<dead subject>.*`). An ordered destination
/// (`order_key`) also has [`LANE_PARTITIONS`](crate::LANE_PARTITIONS) partition consumers
/// (`<consumer>_<destination>~p<n>` on `<subject>.<destination>~p<n>`) with
/// `max_ack_pending = 1`, each leased delivery carrying its partition as the lane
/// (`p<n>`). A delivery the loop gives back because its destination
/// became held is a redelivery to JetStream, so it counts as an attempt. A lease takes
/// what each open consumer has now without waiting; [`wait`](Queue::wait) then waits for
/// the next copy published, seen by a core-NATS subscription to `<subject>.*` (so new
/// work starts at once on any destination), or the poll interval (retries coming due).
pub struct JetStreamQueue {
    context: Context,
    stream: Stream,
    subject: String,
    consumer_name: String,
    dead_subject: String,
    consumer: OnceCell<PullConsumer>,
    /// One consumer per destination, when the queue has destinations.
    destinations: Vec<DestinationConsumer>,
    pauses: Option<JetStreamPauses>,
    /// With destinations: woken by a core-NATS subscription to the destinations' subjects
    /// whenever a copy is published (see [`Queue::wait`]).
    published: Option<Published>,
}

/// New copies were published: a notification fed by a subscription task, stopped when the
/// queue is dropped.
struct Published {
    notify: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Published {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The consumer of one destination's subject.
struct DestinationConsumer {
    name: String,
    durable: String,
    subject: String,
    dead_subject: String,
    consumer: OnceCell<PullConsumer>,
    /// For a lane partition of an ordered destination: the loop's lane key (`p<n>`); its
    /// consumer has `max_ack_pending = 1`.
    lane: Option<LaneKey>,
}

impl JetStreamQueue {
    /// Connects to the stream at `url` (`nats://host:4222`) with the settings its query
    /// names (see [`builder`](Self::builder)).
    ///
    /// # Errors
    /// [`Error::Config`] for a bad URL or a stream that does not fit, [`Error::Nats`] if NATS
    /// or JetStream cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        JetStreamQueue::builder(url)?.connect().await
    }

    /// Starts configuring the queue of the stream at `url`. The URL's query may name the
    /// `stream` ([`DEFAULT_STREAM`](crate::DEFAULT_STREAM)), the `subject` it captures
    /// ([`DEFAULT_SUBJECT`](crate::DEFAULT_SUBJECT)), the durable `consumer`
    /// ([`DEFAULT_CONSUMER`]), the `dead_subject` and the `dead_stream`.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad URL.
    pub fn builder(url: &str) -> Result<JetStreamQueueBuilder, Error> {
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
        Ok(JetStreamQueueBuilder {
            stream: url.param("stream").unwrap_or(DEFAULT_STREAM).to_owned(),
            subject: url.param("subject").unwrap_or(DEFAULT_SUBJECT).to_owned(),
            consumer: url.param("consumer").unwrap_or(DEFAULT_CONSUMER).to_owned(),
            dead_subject: url.param("dead_subject").map(str::to_owned),
            dead_stream: url.param("dead_stream").map(str::to_owned),
            server: url.server,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            destinations: Vec::new(),
        })
    }

    /// The durable consumer of destination number `at`, created if missing.
    async fn destination_consumer(
        &self,
        at: usize,
        lease: Duration,
    ) -> Result<&PullConsumer, Error> {
        let Some(slot) = self.destinations.get(at) else {
            return Err(Error::Config(format!("no destination number {at}")));
        };
        slot.consumer
            .get_or_try_init(|| async {
                self.stream
                    .get_or_create_consumer(
                        &slot.durable,
                        pull::Config {
                            durable_name: Some(slot.durable.clone()),
                            filter_subject: slot.subject.clone(),
                            ack_policy: AckPolicy::Explicit,
                            ack_wait: lease,
                            max_deliver: -1,
                            // A lane partition: one delivery outstanding at a time, across
                            // every worker; a retrying head (nak with delay) keeps it.
                            max_ack_pending: if slot.lane.is_some() {
                                1
                            } else {
                                pull::Config::default().max_ack_pending
                            },
                            ..pull::Config::default()
                        },
                    )
                    .await
                    .map_err(|e| Error::nats(format!("consumer {}: {e}", slot.durable)))
            })
            .await
    }

    /// Leases from the consumers of the destinations not `held`: what each has now, or
    /// else the first message any of them gets within `wait`.
    async fn lease_destinations(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
        held: &[String],
    ) -> LeaseResult<Self> {
        let open: Vec<usize> = (0..self.destinations.len())
            .filter(|at| {
                self.destinations
                    .get(*at)
                    .is_some_and(|slot| !held.contains(&slot.name))
            })
            .collect();
        if open.is_empty() {
            // Every destination is held: wait as a pull would, then look again.
            tokio::time::sleep(wait).await;
            return Ok(Vec::new());
        }
        let share = max.div_ceil(open.len()).max(1);
        let mut batch = Vec::new();
        for at in &open {
            let consumer = self.destination_consumer(*at, lease).await?;
            let partition = self.destinations.get(*at).is_some_and(|s| s.lane.is_some());
            if partition {
                // Its head, if it is free; a partition whose head is out answers nothing
                // (or refuses the pull): not an error of the queue.
                match fetch(consumer, 1, None).await {
                    Ok(messages) => {
                        for message in messages {
                            batch.push(self.leased_for(*at, message));
                        }
                    }
                    Err(err) => tracing::debug!(error = %err, "lane partition: nothing to pull"),
                }
                continue;
            }
            for message in fetch(consumer, share, None).await? {
                batch.push(self.leased_for(*at, message));
            }
        }
        // Nothing now: `wait` waits for the next publish (or the poll interval), rather
        // than a pull with expiry per consumer, whose slowest one would delay the others.
        Ok(batch)
    }

    /// The leased delivery of `message`, from destination number `at`'s consumer.
    fn leased_for(&self, at: usize, message: Message) -> Leased<Arc<Message>, QueuedEvent> {
        let leased = leased(message);
        match self.destinations.get(at) {
            Some(slot) => leased.with_destination(slot.name.as_str(), slot.lane.clone()),
            None => leased,
        }
    }

    /// Where a message's dead letter goes: its destination's dead subject, found from
    /// the subject it was published on.
    fn dead_subject_of(&self, message: &Message) -> &str {
        self.destinations
            .iter()
            .find(|slot| slot.subject == message.subject.as_str())
            .map_or(self.dead_subject.as_str(), |slot| {
                slot.dead_subject.as_str()
            })
    }

    /// The durable consumer, created with `lease` as its `ack_wait` if missing.
    async fn consumer(&self, lease: Duration) -> Result<&PullConsumer, Error> {
        self.consumer
            .get_or_try_init(|| async {
                self.stream
                    .get_or_create_consumer(
                        &self.consumer_name,
                        pull::Config {
                            durable_name: Some(self.consumer_name.clone()),
                            filter_subject: self.subject.clone(),
                            ack_policy: AckPolicy::Explicit,
                            ack_wait: lease,
                            max_deliver: -1,
                            ..pull::Config::default()
                        },
                    )
                    .await
                    .map_err(|e| Error::nats(format!("consumer {}: {e}", self.consumer_name)))
            })
            .await
    }

    /// Publishes the message to the dead-letter subject, then terminates it. If the dead
    /// letter cannot be stored, the message is redelivered later instead (never lost).
    async fn dead_letter(
        &self,
        message: &Message,
        attempt: u32,
        reason: &str,
    ) -> Result<(), Error> {
        let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
        let mut headers = HeaderMap::new();
        headers.insert(ERROR_HEADER, header_safe(reason).as_str());
        headers.insert(ATTEMPTS_HEADER, attempt.to_string().as_str());
        // Where it came from, so that a replay puts it back there (a lane partition).
        headers.insert(SOURCE_HEADER, message.subject.as_str());
        let dedup = dedup_of(message).unwrap_or_default();
        let publish = PublishMessage::build()
            .message_id(format!("{dedup}:dead:{sequence}").as_str())
            .headers(headers)
            .payload(message.payload.clone());
        let dead_subject = self.dead_subject_of(message).to_owned();
        let stored = async {
            self.context
                .send_publish(dead_subject, publish)
                .await
                .map_err(Error::nats)?
                .await
                .map_err(Error::nats)
        }
        .await;
        if let Err(err) = stored {
            let _ = message.ack_with(AckKind::Nak(Some(DEFAULT_LEASE))).await;
            return Err(err);
        }
        message
            .double_ack_with(AckKind::Term)
            .await
            .map_err(Error::nats)
    }
}

impl fmt::Debug for JetStreamQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamQueue")
            .field("subject", &self.subject)
            .field("consumer", &self.consumer_name)
            .field("dead_subject", &self.dead_subject)
            .finish_non_exhaustive()
    }
}

/// Settings of a [`JetStreamQueue`]; checked by [`connect`](Self::connect).
#[must_use]
#[derive(Debug)]
pub struct JetStreamQueueBuilder {
    server: String,
    stream: String,
    subject: String,
    consumer: String,
    dead_subject: Option<String>,
    dead_stream: Option<String>,
    ack_timeout: Duration,
    /// Each destination's name, and whether it is ordered.
    destinations: Vec<(String, bool)>,
}

impl JetStreamQueueBuilder {
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

    /// Reads the copies of these destinations, one consumer each, instead of the plain
    /// subject (see [Destinations](JetStreamQueue#destinations)); the worker then runs with
    /// the same destinations
    /// ([`WorkerBuilder::destinations`](hookgate_queue::WorkerBuilder::destinations)).
    ///
    /// # Errors
    /// [`Error::Config`] for a destination this backend cannot serve: a `.` in its name.
    pub fn destinations(mut self, destinations: &[Destination]) -> Result<Self, Error> {
        check_destinations(destinations)?;
        self.destinations = destinations
            .iter()
            .map(|d| (d.name().to_owned(), d.order_key().is_some()))
            .collect();
        Ok(self)
    }

    /// Connects, and creates the stream and the dead-letter stream if missing (the
    /// durable consumers are created at the first lease, with the worker's lease).
    ///
    /// # Errors
    /// [`Error::Config`] for a stream that does not fit, [`Error::Nats`] if NATS or
    /// JetStream cannot be reached.
    pub async fn connect(self) -> Result<JetStreamQueue, Error> {
        let client = connect(&self.server, "hookgate-worker").await?;
        let context = context(client, self.ack_timeout);
        let routed = !self.destinations.is_empty();
        let stream = ensure_stream(
            &context,
            &StreamSpec {
                name: self.stream.clone(),
                subject: if routed {
                    destinations_wildcard(&self.subject)
                } else {
                    self.subject.clone()
                },
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
            subject: if routed {
                destinations_wildcard(&dead_subject)
            } else {
                dead_subject.clone()
            },
            retention: RetentionPolicy::Limits,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            max_age: Duration::ZERO,
            replicas: 1,
        };
        ensure_stream(&context, &dead_spec, true).await?;
        let mut destinations = Vec::new();
        for (name, ordered) in &self.destinations {
            let dead = destination_subject(&dead_subject, name);
            if *ordered {
                for n in 0..LANE_PARTITIONS {
                    let token = partition_token(name, n);
                    destinations.push(DestinationConsumer {
                        name: name.clone(),
                        durable: destination_consumer(&self.consumer, &token),
                        subject: destination_subject(&self.subject, &token),
                        dead_subject: dead.clone(),
                        consumer: OnceCell::new(),
                        lane: Some(LaneKey::new(&format!("p{n}"))),
                    });
                }
            }
            // Unkeyed deliveries of an ordered destination run unordered, here.
            destinations.push(DestinationConsumer {
                name: name.clone(),
                durable: destination_consumer(&self.consumer, name),
                subject: destination_subject(&self.subject, name),
                dead_subject: dead,
                consumer: OnceCell::new(),
                lane: None,
            });
        }
        let (pauses, published) = if routed {
            let pauses = JetStreamPauses::open(&context, &self.stream).await?;
            let mut subscription = context
                .client()
                .subscribe(destinations_wildcard(&self.subject))
                .await
                .map_err(Error::nats)?;
            let notify = Arc::new(tokio::sync::Notify::new());
            let task = tokio::spawn({
                let notify = Arc::clone(&notify);
                async move {
                    while subscription.next().await.is_some() {
                        notify.notify_one();
                    }
                }
            });
            (Some(pauses), Some(Published { notify, task }))
        } else {
            (None, None)
        };
        Ok(JetStreamQueue {
            context,
            stream,
            subject: self.subject,
            consumer_name: self.consumer,
            dead_subject,
            consumer: OnceCell::new(),
            destinations,
            pauses,
            published,
        })
    }
}

impl Queue for JetStreamQueue {
    type Event = QueuedEvent;
    type Ticket = Arc<Message>;
    type Error = Error;

    fn lease(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> BoxFuture<'_, LeaseResult<Self>> {
        Box::pin(async move {
            if !self.destinations.is_empty() {
                return self.lease_destinations(max, lease, wait, &[]).await;
            }
            let consumer = self.consumer(lease).await?;
            // What is there now; else wait for the next message, then take what followed.
            let mut messages = fetch(consumer, max, None).await?;
            if messages.is_empty() {
                messages = fetch(consumer, 1, Some(wait)).await?;
                if !messages.is_empty() && max > 1 {
                    match fetch(consumer, max.saturating_sub(1), None).await {
                        Ok(more) => messages.extend(more),
                        Err(err) => tracing::debug!(error = %err, "could not fetch more"),
                    }
                }
            }
            Ok(messages.into_iter().map(leased).collect())
        })
    }

    fn lease_except(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
        held: Vec<String>,
    ) -> BoxFuture<'_, LeaseResult<Self>> {
        Box::pin(async move {
            if self.destinations.is_empty() {
                return self.lease(max, lease, wait).await;
            }
            self.lease_destinations(max, lease, wait, &held).await
        })
    }

    fn paused(&self) -> BoxFuture<'_, Result<Vec<String>, Error>> {
        Box::pin(async move {
            match &self.pauses {
                Some(pauses) => pauses.paused().await,
                None => Ok(Vec::new()),
            }
        })
    }

    fn wait(&self, timeout: Duration) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            // With destinations `lease` does not wait: wait for the next copy published (a
            // permit left by one published meanwhile ends it at once), or the poll
            // interval, which paces finding retries that came due. Cancel-safe. Without
            // them, the pull in `lease` waited already.
            if let Some(published) = &self.published {
                let _ = tokio::time::timeout(timeout, published.notify.notified()).await;
            }
        })
    }

    fn renew(
        &self,
        tickets: Vec<Arc<Message>>,
        _lease: Duration,
    ) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            for message in tickets {
                message
                    .ack_with(AckKind::Progress)
                    .await
                    .map_err(Error::nats)?;
            }
            Ok(())
        })
    }

    fn complete(
        &self,
        message: Arc<Message>,
        _attempt: AttemptRecord,
    ) -> BoxFuture<'_, Result<bool, Error>> {
        Box::pin(async move {
            message.double_ack().await.map_err(Error::nats)?;
            Ok(true)
        })
    }

    fn retry(
        &self,
        message: Arc<Message>,
        _attempt: AttemptRecord,
        at: SystemTime,
        _error: String,
    ) -> BoxFuture<'_, Result<bool, Error>> {
        let delay = at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        Box::pin(async move {
            message
                .ack_with(AckKind::Nak(Some(delay)))
                .await
                .map_err(Error::nats)?;
            Ok(true)
        })
    }

    fn dead(
        &self,
        message: Arc<Message>,
        attempt: AttemptRecord,
        reason: String,
    ) -> BoxFuture<'_, Result<bool, Error>> {
        Box::pin(async move {
            self.dead_letter(&message, attempt.attempt, &reason).await?;
            Ok(true)
        })
    }

    fn release(&self, tickets: Vec<Arc<Message>>) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(async move {
            let mut released = 0u64;
            for message in tickets {
                match message.ack_with(AckKind::Nak(None)).await {
                    Ok(()) => released = released.saturating_add(1),
                    Err(err) => {
                        tracing::warn!(error = %err, "could not give a message back; JetStream redelivers it after the lease");
                    }
                }
            }
            Ok(released)
        })
    }
}

/// One pull request for up to `count` messages: waiting up to `wait` if given (it then
/// ends at its expiry or its count), otherwise answered at once with what is there. A
/// pull runs to its end, so no message the server handed over is dropped on the floor.
async fn fetch(
    consumer: &PullConsumer,
    count: usize,
    wait: Option<Duration>,
) -> Result<Vec<Message>, Error> {
    let mut batch = match wait {
        Some(expires) => consumer
            .batch()
            .max_messages(count)
            .expires(expires)
            .messages()
            .await
            .map_err(Error::nats)?,
        None => consumer
            .fetch()
            .max_messages(count)
            .messages()
            .await
            .map_err(Error::nats)?,
    };
    let mut messages = Vec::new();
    while let Some(next) = batch.next().await {
        match next {
            Ok(message) => messages.push(message),
            Err(err) if messages.is_empty() => return Err(Error::nats(err)),
            Err(_) => break,
        }
    }
    Ok(messages)
}

/// The leased delivery of `message`; its attempt is how often JetStream delivered it.
fn leased(message: Message) -> Leased<Arc<Message>, QueuedEvent> {
    let info = message.info().ok();
    let attempt = info
        .as_ref()
        .map(|info| u32::try_from(info.delivered).unwrap_or(1))
        .unwrap_or(1);
    let id = info
        .as_ref()
        .map(|info| info.stream_sequence)
        .unwrap_or(0)
        .to_string();
    let parsed = Envelope::from_json(&message.payload);
    let message = Arc::new(message);
    match parsed {
        Ok(envelope) => {
            let event = QueuedEvent::new(envelope, id.clone(), attempt);
            Leased::new(message, id, attempt, event)
        }
        Err(err) => Leased::unreadable(message, id, attempt, err),
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
