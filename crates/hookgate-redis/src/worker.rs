//! The Redis Streams queue of the one worker loop: consumer groups, leases taken over with
//! `XAUTOCLAIM`, retries through a delayed set, dead letters in a stream.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use hookgate::BoxFuture;
use hookgate_queue::{
    AttemptRecord, Destination, Envelope, LaneKey, LeaseResult, Leased, Queue, QueuedEvent,
};
pub use hookgate_queue::{
    DEFAULT_CONCURRENCY, DEFAULT_LEASE, DEFAULT_POLL_INTERVAL, DEFAULT_SHUTDOWN_GRACE,
};
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};
use redis::{Client, RedisError, RedisResult};

use crate::Error;
use crate::routes::{
    LANE_PARTITIONS, StreamPauses, check_destinations, destination_stream, partition_stream,
};
use crate::scripts::Scripts;
use crate::sink::{ATTEMPTS_FIELD, DEFAULT_STREAM, ENVELOPE_FIELD};
use crate::url::{DEFAULT_RESPONSE_TIMEOUT, RedisUrl, connection};

/// Default consumer group: `hookgate`.
pub const DEFAULT_GROUP: &str = "hookgate";

/// Most retries moved from the delayed set back to the stream per poll.
const PROMOTE_BATCH: usize = 1000;
/// How long a lane partition's retry-at time is kept at most.
const RETRY_AT_TTL_MS: u64 = 86_400_000;
/// The longest blocking read; a longer poll interval reads again after it.
const MAX_BLOCK: Duration = Duration::from_secs(30);

/// Runs a [`Handler`](crate::Handler) over a Redis stream filled by a
/// [`RedisStreamSink`](crate::RedisStreamSink), in a consumer group shared by any number of
/// workers on any number of machines: the one worker loop of `hookgate-queue`
/// ([`hookgate_queue::Worker`]) on a [`StreamQueue`].
///
/// ```no_run
/// use hookgate_redis::{HandlerResult, QueuedEvent, StreamQueue, StreamWorker};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let queue = StreamQueue::connect("redis://10.0.0.5:6379/?stream=webhooks").await?;
/// let worker = StreamWorker::builder(queue, |event: QueuedEvent| async move {
///     println!("{}", event.dedup_key());
///     HandlerResult::Ok
/// })
/// .concurrency(16)
/// .start()?;
/// worker.shutdown().await;
/// # Ok(()) }
/// ```
pub type StreamWorker = hookgate_queue::Worker<StreamQueue>;
/// Settings of a [`StreamWorker`]: the one worker builder of `hookgate-queue`.
pub type StreamWorkerBuilder = hookgate_queue::WorkerBuilder<StreamQueue>;
/// A running [`StreamWorker`]. Dropping it stops the worker the same way as
/// [`shutdown`](hookgate_queue::WorkerHandle::shutdown), without waiting for it.
pub type StreamWorkerHandle = hookgate_queue::WorkerHandle<StreamQueue>;

/// A Redis stream read in a consumer group, as the queue of a [`StreamWorker`].
///
/// - **New entries** are read with `XREADGROUP … BLOCK` (at most the worker's poll
///   interval) on a connection of their own (a blocking read would stall the commands
///   multiplexed on a shared one).
/// - **Leases.** An entry read by a consumer stays in the group's pending list until it is
///   finished. While its handler runs the worker renews the lease (`XCLAIM … JUSTID`, only
///   if the entry is still its own). A consumer that dies stops renewing: after the lease,
///   any worker of the group takes the entry over with `XAUTOCLAIM` (checked every poll
///   interval) and runs it again. Deliveries count as attempts, so an event that kills its
///   consumer every time ends as a dead letter.
/// - **Finishing** is one Lua script per entry, atomic: if the entry is still this
///   consumer's, acknowledge it (`XACK`, then `XDEL` unless
///   [`keep_handled`](StreamQueueBuilder::keep_handled)) and, for a retry, add it to the
///   delayed set, or for a dead letter, to the dead-letter stream. If another consumer took
///   the entry over meanwhile, nothing is changed (counted as a lost lease).
/// - **Retries** wait in a sorted set (`<stream>:delayed`, scored by due time, members
///   `<attempts>|<old entry id>|<envelope json>`); every poll moves the due ones back to the
///   stream as new entries with an `attempts` field.
/// - **Dead letters** go to `<stream>:dead` with the fields `envelope`, `attempts`, `error`
///   and `failed_at_ms`; list and replay them with
///   [`StreamDeadLetters`](crate::StreamDeadLetters).
/// - **Release** at shutdown gives unfinished entries back to the stream at once, their
///   attempt not counted; a consumer with nothing pending then leaves the group.
///
/// Needs Redis 6.2 or later (`XAUTOCLAIM`). The group is created when the queue connects
/// (from the beginning of the stream, so entries added before any worker ran are handled).
///
/// # Destinations
///
/// With [`destinations`](StreamQueueBuilder::destinations) (issue 21) the queue reads the
/// destinations' streams `<stream>:<destination>` that a
/// [`RedisStreamSink`](crate::RedisStreamSink) with the same destinations fills, each in
/// its own consumer group (the same group name on every destination stream), with its own
/// delayed set and dead-letter stream (`<stream>:<destination>:delayed`, `…:dead`), and
/// not the plain stream. Each leased delivery names its destination
/// ([`Leased::destination`]), from the stream it was read from. The worker loop's
/// [`lease_except`](Queue::lease_except) skips the held destinations' streams entirely:
/// no read, no take-over (their due retries are still moved back to their streams,
/// which delivers nothing). [`paused`](Queue::paused) reads the set `<stream>:paused`
/// that [`StreamPauses`](crate::StreamPauses) (`hookgate destination pause --queue URL`)
/// writes.
///
/// An **ordered destination** (`order_key`) also has [`LANE_PARTITIONS`](crate::LANE_PARTITIONS)
/// lane partition streams `<stream>:<destination>:p<n>` (a lane key's partition is
/// [`lane_partition`](crate::lane_partition)), each leased one head at a time across
/// every consumer: a lease takes a partition's lock `…:p<n>:lock` (`SET NX PX` for the
/// lease, renewed with it, freed when the delivery ends), then its pending head (a
/// retrying head, after its time in `…:p<n>:retry_at`; or one whose consumer died,
/// taken over and counted; one given back is not counted) or else its next entry. A
/// retry keeps the head pending, so it keeps its lane; a dead letter releases it (and
/// remembers its partition, where a replay puts it back, at the lane's tail). The loop sees the partition as the lane
/// (`p<n>`). An event without a key value goes to the destination's plain stream,
/// unordered. A new head in an idle partition is found by the next lease, within the
/// poll interval.
pub struct StreamQueue {
    conn: ConnectionManager,
    reader: ConnectionManager,
    names: Names,
    scripts: Scripts,
    delete_handled: bool,
    takeover: Mutex<Takeover>,
    pauses: Option<StreamPauses>,
}

/// Where `XAUTOCLAIM` goes on in each stream, and when the take-over and the retries last
/// ran.
#[derive(Debug)]
struct Takeover {
    cursors: Vec<String>,
    last: Option<Instant>,
}

impl StreamQueue {
    /// Connects to the stream at `url` with the settings its query names (see
    /// [`builder`](Self::builder)).
    ///
    /// # Errors
    /// [`Error::Config`] for a bad URL, [`Error::Redis`] if Redis cannot be reached or
    /// refuses to create the group.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        StreamQueue::builder(url)?.connect().await
    }

    /// Starts configuring the queue of the stream at `url`. The URL's query may name the
    /// `stream` ([`DEFAULT_STREAM`]), the `group` ([`DEFAULT_GROUP`]), this worker's
    /// `consumer` name (default: process id and random bits) and the `dead_stream`
    /// (default `<stream>:dead`).
    ///
    /// # Errors
    /// [`Error::Config`] for a bad URL.
    pub fn builder(url: &str) -> Result<StreamQueueBuilder, Error> {
        let url = RedisUrl::parse(url, &["stream", "group", "consumer", "dead_stream"])?;
        Ok(StreamQueueBuilder {
            stream: url.param("stream").unwrap_or(DEFAULT_STREAM).to_owned(),
            group: url.param("group").unwrap_or(DEFAULT_GROUP).to_owned(),
            consumer: url.param("consumer").map(str::to_owned),
            dead: url.param("dead_stream").map(str::to_owned),
            client: url.client,
            delete_handled: true,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            destinations: Vec::new(),
        })
    }

    /// This queue's consumer name in the group.
    pub fn consumer(&self) -> &str {
        &self.names.consumer
    }

    /// The stream (the endpoint's stream name; with destinations, their streams are
    /// `<stream>:<destination>`).
    pub fn stream(&self) -> &str {
        &self.names.base
    }

    /// The destinations whose streams this queue reads (none: the plain stream).
    pub fn destinations(&self) -> impl Iterator<Item = &str> {
        self.names
            .streams
            .iter()
            .filter_map(|s| s.destination.as_deref())
    }
}

impl fmt::Debug for StreamQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamQueue")
            .field("names", &self.names)
            .field("delete_handled", &self.delete_handled)
            .finish_non_exhaustive()
    }
}

/// Settings of a [`StreamQueue`]; checked by [`connect`](Self::connect).
#[must_use]
pub struct StreamQueueBuilder {
    client: Client,
    stream: String,
    group: String,
    consumer: Option<String>,
    dead: Option<String>,
    delete_handled: bool,
    response_timeout: Duration,
    /// Each destination's name, and whether it is ordered.
    destinations: Vec<(String, bool)>,
}

impl fmt::Debug for StreamQueueBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamQueueBuilder")
            .field("stream", &self.stream)
            .field("group", &self.group)
            .field("consumer", &self.consumer)
            .field("dead", &self.dead)
            .field("delete_handled", &self.delete_handled)
            .field("response_timeout", &self.response_timeout)
            .field("destinations", &self.destinations)
            .finish_non_exhaustive()
    }
}

impl StreamQueueBuilder {
    /// The stream (default [`DEFAULT_STREAM`]).
    pub fn stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = stream.into();
        self
    }

    /// The consumer group (default [`DEFAULT_GROUP`]).
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
    }

    /// This worker's consumer name, unique within the group (default: process id and
    /// random bits). A worker restarted under the same name resumes its own pending
    /// entries at once instead of after the lease.
    pub fn consumer(mut self, consumer: impl Into<String>) -> Self {
        self.consumer = Some(consumer.into());
        self
    }

    /// The dead-letter stream (default `<stream>:dead`).
    pub fn dead_letter_stream(mut self, stream: impl Into<String>) -> Self {
        self.dead = Some(stream.into());
        self
    }

    /// Keep handled entries in the stream (only acknowledged) instead of deleting them:
    /// for when other consumer groups read the same stream. Trim it yourself then
    /// ([`RedisStreamSinkBuilder::max_len`](crate::RedisStreamSinkBuilder::max_len), or
    /// `XTRIM`).
    pub fn keep_handled(mut self, keep: bool) -> Self {
        self.delete_handled = !keep;
        self
    }

    /// How long to wait for Redis's answer to a command (default 2 s); a blocking read
    /// waits this much longer than it blocks.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Reads the streams of these destinations instead of the plain stream (see
    /// [Destinations](StreamQueue#destinations)); the worker then runs with the same
    /// destinations ([`WorkerBuilder::destinations`](hookgate_queue::WorkerBuilder::destinations)).
    ///
    /// # Errors
    /// [`Error::Config`] for a destination named `paused`, `filtered` or `seen`.
    pub fn destinations(mut self, destinations: &[Destination]) -> Result<Self, Error> {
        check_destinations(destinations)?;
        self.destinations = destinations
            .iter()
            .map(|d| (d.name().to_owned(), d.order_key().is_some()))
            .collect();
        Ok(self)
    }

    /// Connects and creates the consumer group if needed.
    ///
    /// # Errors
    /// [`Error::Config`] for a setting out of range, [`Error::Redis`] if Redis cannot be
    /// reached or refuses to create the group.
    pub async fn connect(self) -> Result<StreamQueue, Error> {
        if self.response_timeout.is_zero() {
            return Err(Error::Config(
                "the response timeout must be at least 1 ms".to_owned(),
            ));
        }
        if self.stream.is_empty() || self.group.is_empty() {
            return Err(Error::Config(
                "the stream and group names must not be empty".to_owned(),
            ));
        }
        let consumer = self
            .consumer
            .unwrap_or_else(|| format!("{}-{:08x}", std::process::id(), fastrand::u32(..)));
        let streams = if self.destinations.is_empty() {
            vec![StreamNames {
                destination: None,
                lane: None,
                delayed: format!("{}:delayed", self.stream),
                dead: self.dead.unwrap_or_else(|| format!("{}:dead", self.stream)),
                stream: self.stream.clone(),
            }]
        } else {
            let mut streams = Vec::new();
            for (name, ordered) in &self.destinations {
                let stream = destination_stream(&self.stream, name);
                let dead = format!("{stream}:dead");
                if *ordered {
                    for n in 0..LANE_PARTITIONS {
                        let partition = partition_stream(&stream, n);
                        streams.push(StreamNames {
                            destination: Some(name.clone()),
                            delayed: format!("{partition}:delayed"),
                            dead: dead.clone(),
                            lane: Some(Lane {
                                key: LaneKey::new(&format!("p{n}")),
                                lock: format!("{partition}:lock"),
                                retry_at: format!("{partition}:retry_at"),
                            }),
                            stream: partition,
                        });
                    }
                }
                // Unkeyed deliveries of an ordered destination run unordered, here.
                streams.push(StreamNames {
                    destination: Some(name.clone()),
                    delayed: format!("{stream}:delayed"),
                    dead,
                    lane: None,
                    stream,
                });
            }
            streams
        };
        let names = Names {
            base: self.stream,
            streams,
            group: self.group,
            consumer,
        };
        let conn = connection(self.client.clone(), self.response_timeout).await?;
        // The blocking reads get a connection of their own, which waits longer for an answer.
        let reader =
            connection(self.client, self.response_timeout.saturating_add(MAX_BLOCK)).await?;
        ensure_groups(&mut conn.clone(), &names).await?;
        let pauses =
            (!self.destinations.is_empty()).then(|| StreamPauses::new(conn.clone(), &names.base));
        Ok(StreamQueue {
            conn,
            reader,
            scripts: Scripts::new(),
            delete_handled: self.delete_handled,
            takeover: Mutex::new(Takeover {
                cursors: vec!["0-0".to_owned(); names.streams.len()],
                last: None,
            }),
            names,
            pauses,
        })
    }
}

/// The keys and names a queue uses.
#[derive(Debug)]
struct Names {
    /// The stream name of the URL.
    base: String,
    /// The streams read: the plain stream, or one per destination.
    streams: Vec<StreamNames>,
    group: String,
    consumer: String,
}

/// One stream read by the queue, with its delayed set and dead letters.
#[derive(Debug)]
struct StreamNames {
    /// The destination whose stream it is.
    destination: Option<String>,
    stream: String,
    delayed: String,
    dead: String,
    /// For a lane partition of an ordered destination: leased one head at a time.
    lane: Option<Lane>,
}

/// A lane partition's keys.
#[derive(Debug)]
struct Lane {
    /// The loop's lane key for the partition's deliveries (`p<n>`).
    key: LaneKey,
    /// Who holds the partition's head (`SET NX PX`, the lease).
    lock: String,
    /// When its retrying head is due (Unix ms).
    retry_at: String,
}

/// An entry this consumer holds: what it needs to finish it or give it back.
#[derive(Debug)]
pub struct StreamTicket {
    id: String,
    envelope: String,
    /// Attempts made before this one.
    attempts_before: u32,
    /// Which of the queue's streams it was read from.
    stream: usize,
}

impl StreamTicket {
    /// The entry id in the stream.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Queue for StreamQueue {
    type Event = QueuedEvent;
    type Ticket = Arc<StreamTicket>;
    type Error = Error;

    fn lease(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> BoxFuture<'_, LeaseResult<Self>> {
        Box::pin(self.lease_streams(max, lease, wait, Vec::new()))
    }

    fn lease_except(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
        held: Vec<String>,
    ) -> BoxFuture<'_, LeaseResult<Self>> {
        Box::pin(self.lease_streams(max, lease, wait, held))
    }

    fn paused(&self) -> BoxFuture<'_, Result<Vec<String>, Error>> {
        Box::pin(async move {
            match &self.pauses {
                Some(pauses) => pauses.paused().await,
                None => Ok(Vec::new()),
            }
        })
    }

    fn wait(&self, _timeout: Duration) -> BoxFuture<'_, ()> {
        // The blocking read in `lease` waited already.
        Box::pin(async {})
    }

    fn renew(
        &self,
        tickets: Vec<Arc<StreamTicket>>,
        lease: Duration,
    ) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move {
            for (at, names) in self.names.streams.iter().enumerate() {
                if let Some(lane) = &names.lane {
                    if tickets.iter().any(|t| t.stream == at) {
                        self.scripts
                            .renew_lock
                            .key(&lane.lock)
                            .arg(&self.names.consumer)
                            .arg(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1))
                            .invoke_async::<i64>(&mut self.conn.clone())
                            .await?;
                    }
                    continue;
                }
                let ids: Vec<&str> = tickets
                    .iter()
                    .filter(|t| t.stream == at)
                    .map(|t| t.id.as_str())
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                let mut invocation = self.scripts.renew.key(&names.stream);
                invocation.arg(&self.names.group).arg(&self.names.consumer);
                for id in ids {
                    invocation.arg(id);
                }
                invocation
                    .invoke_async::<i64>(&mut self.conn.clone())
                    .await?;
            }
            Ok(())
        })
    }

    fn complete(
        &self,
        ticket: Arc<StreamTicket>,
        _attempt: AttemptRecord,
    ) -> BoxFuture<'_, Result<bool, Error>> {
        Box::pin(async move { Ok(self.finish(&ticket, "ack", &[]).await?) })
    }

    fn retry(
        &self,
        ticket: Arc<StreamTicket>,
        _attempt: AttemptRecord,
        at: SystemTime,
        _error: String,
    ) -> BoxFuture<'_, Result<bool, Error>> {
        Box::pin(async move {
            let attempts = ticket.attempts_before.saturating_add(1);
            let member = format!("{attempts}|{}|{}", ticket.id, ticket.envelope);
            let args = [unix_millis(at).to_string(), member];
            Ok(self.finish(&ticket, "retry", &args).await?)
        })
    }

    fn dead(
        &self,
        ticket: Arc<StreamTicket>,
        _attempt: AttemptRecord,
        reason: String,
    ) -> BoxFuture<'_, Result<bool, Error>> {
        Box::pin(async move {
            let args = [
                ticket.envelope.clone(),
                ticket.attempts_before.saturating_add(1).to_string(),
                reason,
                unix_millis(SystemTime::now()).to_string(),
            ];
            Ok(self.finish(&ticket, "dead", &args).await?)
        })
    }

    fn release(&self, tickets: Vec<Arc<StreamTicket>>) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(async move {
            let mut released = 0u64;
            for ticket in tickets {
                let args = [ticket.envelope.clone(), ticket.attempts_before.to_string()];
                match self.finish(&ticket, "release", &args).await {
                    Ok(true) => released = released.saturating_add(1),
                    Ok(false) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "could not give an entry back; another consumer takes it over after the lease");
                    }
                }
            }
            Ok(released)
        })
    }

    fn on_shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.forget_consumer_if_idle())
    }
}

impl StreamQueue {
    /// Whether the take-over and the move of due retries are due (every `every`), noting
    /// that they run now.
    fn maintenance_due(&self, every: Duration) -> bool {
        let mut takeover = self.takeover.lock().unwrap_or_else(PoisonError::into_inner);
        if takeover.last.is_some_and(|at| at.elapsed() < every) {
            return false;
        }
        takeover.last = Some(Instant::now());
        true
    }

    /// Leases from the streams of the destinations not `held` (from the plain stream
    /// without destinations).
    async fn lease_streams(
        &self,
        max: usize,
        lease: Duration,
        wait: Duration,
        held: Vec<String>,
    ) -> LeaseResult<Self> {
        let not_held = |names: &StreamNames| {
            names
                .destination
                .as_ref()
                .is_none_or(|name| !held.contains(name))
        };
        let open: Vec<usize> = (0..self.names.streams.len())
            .filter(|at| {
                self.names
                    .streams
                    .get(*at)
                    .is_some_and(|names| names.lane.is_none() && not_held(names))
            })
            .collect();
        let partitions: Vec<usize> = (0..self.names.streams.len())
            .filter(|at| {
                self.names
                    .streams
                    .get(*at)
                    .is_some_and(|names| names.lane.is_some() && not_held(names))
            })
            .collect();
        let mut batch = Vec::new();
        for at in partitions {
            if batch.len() >= max {
                break;
            }
            match self.lease_partition(at, lease).await {
                Ok(Some(leased)) => batch.push(leased),
                Ok(None) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "redis stream worker could not lease a lane partition");
                }
            }
        }
        if self.maintenance_due(wait) {
            self.promote_due().await;
            for at in &open {
                let room = max.saturating_sub(batch.len());
                if room == 0 {
                    break;
                }
                for (entry, deliveries) in self.take_over(*at, room, lease).await {
                    batch.push(self.leased(*at, entry, deliveries));
                }
            }
        }
        let room = max.saturating_sub(batch.len());
        if room == 0 {
            return Ok(batch);
        }
        // Block only when nothing was taken over, at most the poll interval.
        let block = batch.is_empty().then(|| wait.min(MAX_BLOCK));
        if open.is_empty() {
            // Every unordered stream is held: wait as a blocking read would (a lane
            // partition's new head is found by the next lease), then look again.
            if let Some(block) = block {
                tokio::time::sleep(block).await;
            }
            return Ok(batch);
        }
        match self.read_new(&open, room, block).await {
            Ok(entries) => batch.extend(
                entries
                    .into_iter()
                    .map(|(at, entry)| self.leased(at, entry, 1)),
            ),
            Err(err) => {
                if err.code() == Some("NOGROUP") {
                    // The stream or group was deleted (or Redis restarted empty).
                    if let Err(err) = ensure_groups(&mut self.conn.clone(), &self.names).await {
                        tracing::warn!(error = %err, "could not recreate the consumer group");
                    }
                }
                if batch.is_empty() {
                    return Err(err.into());
                }
                tracing::warn!(error = %err, "redis stream worker could not read");
            }
        }
        Ok(batch)
    }

    /// Leases the head of lane partition `at` if it is free (see the script).
    async fn lease_partition(
        &self,
        at: usize,
        lease: Duration,
    ) -> RedisResult<Option<Leased<Arc<StreamTicket>, QueuedEvent>>> {
        let Some(names) = self.names.streams.get(at) else {
            return Ok(None);
        };
        let Some(lane) = &names.lane else {
            return Ok(None);
        };
        let reply: Option<(String, Vec<String>, u32)> = self
            .scripts
            .lease_partition
            .key(&names.stream)
            .key(&lane.lock)
            .key(&lane.retry_at)
            .arg(&self.names.group)
            .arg(&self.names.consumer)
            .arg(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1))
            .arg(unix_millis(SystemTime::now()))
            .invoke_async(&mut self.conn.clone())
            .await?;
        let Some((id, fields, deliveries)) = reply else {
            return Ok(None);
        };
        let mut map = std::collections::HashMap::new();
        let mut pairs = fields.into_iter();
        while let (Some(name), Some(value)) = (pairs.next(), pairs.next()) {
            map.insert(name, redis::Value::BulkString(value.into_bytes()));
        }
        let entry = StreamId {
            id,
            map,
            ..StreamId::default()
        };
        Ok(Some(self.leased(at, entry, deliveries)))
    }

    /// The leased delivery of `entry` from stream `at`.
    fn leased(
        &self,
        at: usize,
        entry: StreamId,
        deliveries: u32,
    ) -> Leased<Arc<StreamTicket>, QueuedEvent> {
        let leased = leased(at, entry, deliveries);
        match self.names.streams.get(at) {
            Some(StreamNames {
                destination: Some(destination),
                lane,
                ..
            }) => leased.with_destination(destination, lane.as_ref().map(|l| l.key.clone())),
            _ => leased,
        }
    }

    /// Runs the finish script for the entry of `ticket`.
    async fn finish(
        &self,
        ticket: &StreamTicket,
        action: &str,
        args: &[String],
    ) -> RedisResult<bool> {
        let Some(names) = self.names.streams.get(ticket.stream) else {
            return Ok(false);
        };
        if let Some(lane) = &names.lane {
            let mut invocation = self.scripts.finish_partition.key(&names.stream);
            invocation
                .key(&lane.lock)
                .key(&lane.retry_at)
                .key(&names.dead)
                .arg(&self.names.group)
                .arg(&ticket.id)
                .arg(&self.names.consumer)
                .arg(action);
            match action {
                // The head stays pending; only its due time is kept (for a day at most).
                "retry" => {
                    if let Some(due) = args.first() {
                        invocation.arg(due).arg(RETRY_AT_TTL_MS);
                    }
                }
                "dead" => {
                    for arg in args {
                        invocation.arg(arg);
                    }
                }
                _ => {}
            }
            let applied: i64 = invocation.invoke_async(&mut self.conn.clone()).await?;
            return Ok(applied == 1);
        }
        let mut invocation = self.scripts.finish.key(&names.stream);
        invocation
            .key(&names.delayed)
            .key(&names.dead)
            .arg(&self.names.group)
            .arg(&ticket.id)
            .arg(&self.names.consumer)
            .arg(action)
            .arg(if self.delete_handled { "1" } else { "0" });
        for arg in args {
            invocation.arg(arg);
        }
        let applied: i64 = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(applied == 1)
    }

    /// Reads about `count` new entries for this consumer from the streams `open` (one
    /// command; at least one entry per stream that has some), blocking up to `block` if
    /// given, with the stream each came from.
    async fn read_new(
        &self,
        open: &[usize],
        count: usize,
        block: Option<Duration>,
    ) -> RedisResult<Vec<(usize, StreamId)>> {
        let names = &self.names;
        let per_stream = count.div_ceil(open.len().max(1)).max(1);
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&names.group)
            .arg(&names.consumer)
            .arg("COUNT")
            .arg(per_stream);
        if let Some(block) = block {
            cmd.arg("BLOCK")
                .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX).max(1));
        }
        cmd.arg("STREAMS");
        for at in open {
            if let Some(stream) = names.streams.get(*at) {
                cmd.arg(&stream.stream);
            }
        }
        for _ in open {
            cmd.arg(">");
        }
        let reply: Option<StreamReadReply> = cmd.query_async(&mut self.reader.clone()).await?;
        let mut out = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            let Some(at) = names.streams.iter().position(|s| s.stream == key.key) else {
                continue;
            };
            out.extend(key.ids.into_iter().map(|id| (at, id)));
        }
        Ok(out)
    }

    async fn promote_due(&self) {
        for names in &self.names.streams {
            let result = self
                .scripts
                .promote
                .key(&names.delayed)
                .key(&names.stream)
                .arg(unix_millis(SystemTime::now()))
                .arg(PROMOTE_BATCH)
                .invoke_async::<i64>(&mut self.conn.clone())
                .await;
            if let Err(err) = result {
                tracing::warn!(error = %err, "redis stream worker could not move due retries back");
            }
        }
    }

    /// Takes over up to `room` entries of stream `at` whose lease expired
    /// (`XAUTOCLAIM`), with how often each was delivered.
    async fn take_over(&self, at: usize, room: usize, lease: Duration) -> Vec<(StreamId, u32)> {
        match self.try_take_over(at, room, lease).await {
            Ok(taken) => {
                if !taken.is_empty() {
                    tracing::info!(count = taken.len(), "took over entries whose lease expired");
                }
                taken
            }
            Err(err) => {
                tracing::warn!(error = %err, "redis stream worker could not take over expired leases");
                Vec::new()
            }
        }
    }

    async fn try_take_over(
        &self,
        at: usize,
        room: usize,
        lease: Duration,
    ) -> RedisResult<Vec<(StreamId, u32)>> {
        let Some(names) = self.names.streams.get(at) else {
            return Ok(Vec::new());
        };
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX);
        let cursor = self
            .takeover
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .cursors
            .get(at)
            .cloned()
            .unwrap_or_else(|| "0-0".to_owned());
        let mut conn = self.conn.clone();
        let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
            .arg(&names.stream)
            .arg(&self.names.group)
            .arg(&self.names.consumer)
            .arg(lease_ms)
            .arg(cursor)
            .arg("COUNT")
            .arg(room)
            .query_async(&mut conn)
            .await?;
        if let Some(cursor) = self
            .takeover
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .cursors
            .get_mut(at)
        {
            *cursor = reply.next_stream_id;
        }
        if reply.claimed.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for entry in &reply.claimed {
            pipe.cmd("XPENDING")
                .arg(&names.stream)
                .arg(&self.names.group)
                .arg(&entry.id)
                .arg(&entry.id)
                .arg(1);
        }
        let counts: Vec<StreamPendingCountReply> = pipe.query_async(&mut conn).await?;
        Ok(reply
            .claimed
            .into_iter()
            .zip(counts)
            .map(|(entry, count)| {
                let deliveries = count
                    .ids
                    .first()
                    .map_or(1, |p| u32::try_from(p.times_delivered).unwrap_or(u32::MAX));
                (entry, deliveries)
            })
            .collect())
    }

    /// Removes this consumer from the group if nothing is pending for it, so stopped
    /// workers do not accumulate in `XINFO CONSUMERS`.
    async fn forget_consumer_if_idle(&self) {
        let names = &self.names;
        let mut conn = self.conn.clone();
        for stream in &names.streams {
            let pending: RedisResult<StreamPendingCountReply> = redis::cmd("XPENDING")
                .arg(&stream.stream)
                .arg(&names.group)
                .arg("-")
                .arg("+")
                .arg(1)
                .arg(&names.consumer)
                .query_async(&mut conn)
                .await;
            if matches!(pending, Ok(ref p) if p.ids.is_empty()) {
                let _: RedisResult<i64> = redis::cmd("XGROUP")
                    .arg("DELCONSUMER")
                    .arg(&stream.stream)
                    .arg(&names.group)
                    .arg(&names.consumer)
                    .query_async(&mut conn)
                    .await;
            }
        }
    }
}

/// The leased delivery of `entry`, delivered `deliveries` times to consumers: earlier
/// deliveries of this very entry were attempts cut short (a crash).
fn leased(
    stream: usize,
    entry: StreamId,
    deliveries: u32,
) -> Leased<Arc<StreamTicket>, QueuedEvent> {
    let before: u32 = entry.get(ATTEMPTS_FIELD).unwrap_or(0);
    let attempts_before = before.saturating_add(deliveries.saturating_sub(1));
    let envelope = entry.get::<String>(ENVELOPE_FIELD).unwrap_or_default();
    let attempt = attempts_before.saturating_add(1);
    let id = entry.id;
    let parsed = Envelope::from_json(envelope.as_bytes());
    let ticket = Arc::new(StreamTicket {
        id: id.clone(),
        envelope,
        attempts_before,
        stream,
    });
    match parsed {
        Ok(parsed) => {
            let event = QueuedEvent::new(parsed, id.clone(), attempt);
            Leased::new(ticket, id, attempt, event)
        }
        Err(err) => Leased::unreadable(ticket, id, attempt, err),
    }
}

/// Creates the consumer group on each stream (from the start of the stream, creating the
/// stream) unless it exists.
async fn ensure_groups(conn: &mut ConnectionManager, names: &Names) -> Result<(), RedisError> {
    for stream in &names.streams {
        let created: RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&stream.stream)
            .arg(&names.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(conn)
            .await;
        match created {
            Err(err) if err.code() != Some("BUSYGROUP") => return Err(err),
            _ => {}
        }
    }
    Ok(())
}

fn unix_millis(at: SystemTime) -> i64 {
    match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}
