//! The Redis Streams worker: consumer groups, leases taken over with `XAUTOCLAIM`, retries
//! through a delayed set, dead letters in a stream.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use hookgate::BoxFuture;
use hookgate_queue::{
    Envelope, Handler, QueuedEvent, RetryPolicy, Runner, ShutdownReport, Verdict, WorkerStats,
};
use redis::aio::ConnectionManager;
use redis::streams::{StreamAutoClaimReply, StreamId, StreamPendingCountReply, StreamReadReply};
use redis::{Client, RedisError, RedisResult};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::Error;
use crate::scripts::Scripts;
use crate::sink::{ATTEMPTS_FIELD, DEFAULT_STREAM, ENVELOPE_FIELD};
use crate::url::{DEFAULT_RESPONSE_TIMEOUT, RedisUrl, connection};

/// Default consumer group: `hookgate`.
pub const DEFAULT_GROUP: &str = "hookgate";
/// Default handlers running at once per worker: 8.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Default lease: 30 seconds. An entry whose consumer stopped renewing it (it crashed) is
/// taken over by another consumer this long after.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
/// Default poll interval: 1 second. New entries arrive at once (blocking read); this paces
/// taking over expired leases and moving due retries back.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Default wait for running handlers at shutdown: 30 seconds.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Most retries moved from the delayed set back to the stream per poll.
const PROMOTE_BATCH: usize = 1000;

/// Runs a [`Handler`] over a Redis stream filled by a
/// [`RedisStreamSink`](crate::RedisStreamSink), in a consumer group shared by any number of
/// workers on any number of machines.
///
/// - **New entries** are read with `XREADGROUP … BLOCK` on a connection of their own (a
///   blocking read would stall the commands multiplexed on a shared one).
/// - **Leases.** An entry read by a consumer stays in the group's pending list until it is
///   finished. While its handler runs the worker renews the lease every third of
///   [`lease`](StreamWorkerBuilder::lease) (`XCLAIM … JUSTID`, only if the entry is still
///   its own). A consumer that dies stops renewing: after the lease, any worker of the
///   group takes the entry over with `XAUTOCLAIM` and runs it again. Deliveries count as
///   attempts, so an event that kills its consumer every time ends as a dead letter.
/// - **Finishing** is one Lua script per entry, atomic: if the entry is still this
///   consumer's, acknowledge it (`XACK`, then `XDEL` unless
///   [`keep_handled`](StreamWorkerBuilder::keep_handled)) and, for a retry, add it to the
///   delayed set, or for a dead letter, to the dead-letter stream. If another consumer took
///   the entry over meanwhile, nothing is changed (counted as a lost lease).
/// - **Retries** wait in a sorted set (`<stream>:delayed`, scored by due time, members
///   `<attempts>|<old entry id>|<envelope json>`); every poll moves the due ones back to the
///   stream as new entries with an `attempts` field. Backoff is the [`RetryPolicy`]'s.
/// - **Dead letters** go to `<stream>:dead` with the fields `envelope`, `attempts`, `error`
///   and `failed_at_ms`; list and replay them with
///   [`StreamDeadLetters`](crate::StreamDeadLetters).
/// - **Shutdown** ([`StreamWorkerHandle::shutdown`]) stops reading, waits for running
///   handlers up to a grace period, and gives the unfinished entries back to the stream at
///   once (their attempt not counted).
///
/// Needs Redis 6.2 or later (`XAUTOCLAIM`). The group is created at start-up (from the
/// beginning of the stream, so entries added before any worker ran are handled).
#[derive(Debug)]
pub struct StreamWorker {
    _private: (),
}

impl StreamWorker {
    /// Starts configuring a worker that runs `handler` on the stream at `url`. The URL's
    /// query may name the `stream` ([`DEFAULT_STREAM`]), the `group` ([`DEFAULT_GROUP`]),
    /// this worker's `consumer` name (default: process id and random bits) and the
    /// `dead_stream` (default `<stream>:dead`).
    ///
    /// # Errors
    /// [`Error::Config`] for a bad URL.
    pub fn builder(url: &str, handler: impl Handler) -> Result<StreamWorkerBuilder, Error> {
        let url = RedisUrl::parse(url, &["stream", "group", "consumer", "dead_stream"])?;
        let stream = url.param("stream").unwrap_or(DEFAULT_STREAM).to_owned();
        Ok(StreamWorkerBuilder {
            dead: url.param("dead_stream").map(str::to_owned),
            group: url.param("group").unwrap_or(DEFAULT_GROUP).to_owned(),
            consumer: url.param("consumer").map(str::to_owned),
            stream,
            client: url.client,
            handler: Arc::new(handler),
            concurrency: DEFAULT_CONCURRENCY,
            lease: DEFAULT_LEASE,
            poll_interval: DEFAULT_POLL_INTERVAL,
            handler_timeout: hookgate_queue::DEFAULT_HANDLER_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            retry: RetryPolicy::new(),
            delete_handled: true,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
        })
    }
}

/// Settings of a [`StreamWorker`]; checked by [`start`](Self::start).
#[must_use]
pub struct StreamWorkerBuilder {
    client: Client,
    handler: Arc<dyn Handler>,
    stream: String,
    group: String,
    consumer: Option<String>,
    dead: Option<String>,
    concurrency: usize,
    lease: Duration,
    poll_interval: Duration,
    handler_timeout: Duration,
    shutdown_grace: Duration,
    retry: RetryPolicy,
    delete_handled: bool,
    response_timeout: Duration,
}

impl StreamWorkerBuilder {
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

    /// Handlers running at once (default [`DEFAULT_CONCURRENCY`], 1 to 10 000).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// The lease (default [`DEFAULT_LEASE`], at least 100 ms): how long after a consumer
    /// stopped renewing an entry another may take it over.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// How often to take over expired leases and move due retries back (default
    /// [`DEFAULT_POLL_INTERVAL`]); also the longest blocking read.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Longest run of one handler call (default 5 minutes).
    pub fn handler_timeout(mut self, timeout: Duration) -> Self {
        self.handler_timeout = timeout;
        self
    }

    /// How long [`StreamWorkerHandle::shutdown`] waits for running handlers (default
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

    /// Keep handled entries in the stream (only acknowledged) instead of deleting them:
    /// for when other consumer groups read the same stream. Trim it yourself then
    /// ([`RedisStreamSinkBuilder::max_len`](crate::RedisStreamSinkBuilder::max_len), or
    /// `XTRIM MINID`).
    pub fn keep_handled(mut self) -> Self {
        self.delete_handled = false;
        self
    }

    /// How long to wait for Redis's answer to a command (default
    /// [`DEFAULT_RESPONSE_TIMEOUT`](crate::DEFAULT_RESPONSE_TIMEOUT)).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Connects, creates the consumer group if needed, and starts the worker on the
    /// current Tokio runtime.
    ///
    /// # Errors
    /// [`Error::Config`] for a setting out of range, [`Error::Redis`] if Redis cannot be
    /// reached or refuses to create the group.
    pub async fn start(self) -> Result<StreamWorkerHandle, Error> {
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
        if self.poll_interval < Duration::from_millis(1) || self.response_timeout.is_zero() {
            return Err(Error::Config(
                "poll_interval and response_timeout must be at least 1 ms".to_owned(),
            ));
        }
        if self.stream.is_empty() || self.group.is_empty() {
            return Err(Error::Config(
                "the stream and group names must not be empty".to_owned(),
            ));
        }
        let runner = Runner::new(self.handler, self.handler_timeout, self.retry)?;
        let consumer = self
            .consumer
            .unwrap_or_else(|| format!("{}-{:08x}", std::process::id(), fastrand::u32(..)));
        let names = Names {
            delayed: format!("{}:delayed", self.stream),
            dead: self.dead.unwrap_or_else(|| format!("{}:dead", self.stream)),
            stream: self.stream,
            group: self.group,
            consumer,
        };
        let conn = connection(self.client.clone(), self.response_timeout).await?;
        // The blocking reads get a connection of their own, which waits longer for an answer.
        let reader = connection(
            self.client,
            self.response_timeout.saturating_add(self.poll_interval),
        )
        .await?;
        ensure_group(&mut conn.clone(), &names).await?;

        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            conn,
            names,
            scripts: Scripts::new(),
            runner,
            lease: self.lease,
            delete_handled: self.delete_handled,
            held: Mutex::new(HashMap::new()),
        });
        let settings = Settings {
            concurrency: self.concurrency,
            poll_interval: self.poll_interval,
            shutdown_grace: self.shutdown_grace,
        };
        let task = tokio::spawn(run(shared.clone(), reader, settings, stopped));
        Ok(StreamWorkerHandle { stop, task, shared })
    }
}

impl fmt::Debug for StreamWorkerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamWorkerBuilder")
            .field("stream", &self.stream)
            .field("group", &self.group)
            .field("consumer", &self.consumer)
            .field("concurrency", &self.concurrency)
            .field("lease", &self.lease)
            .field("poll_interval", &self.poll_interval)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// A running [`StreamWorker`]. Dropping it stops the worker the same way as
/// [`shutdown`](Self::shutdown), without waiting for it.
#[derive(Debug)]
pub struct StreamWorkerHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<ShutdownReport>,
    shared: Arc<Shared>,
}

impl StreamWorkerHandle {
    /// Stops reading, waits up to the grace period for running handlers, then cancels the
    /// rest and gives their entries back to the stream (their attempt not counted).
    pub async fn shutdown(self) -> ShutdownReport {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(report) => report,
            Err(err) => {
                tracing::error!(error = %err, "redis stream worker task failed");
                ShutdownReport::default()
            }
        }
    }

    /// Counters since the worker started.
    pub fn stats(&self) -> WorkerStats {
        self.shared.runner.stats()
    }

    /// This worker's consumer name in the group.
    pub fn consumer(&self) -> &str {
        &self.shared.names.consumer
    }
}

/// The keys and names a worker uses.
#[derive(Debug)]
struct Names {
    stream: String,
    delayed: String,
    dead: String,
    group: String,
    consumer: String,
}

/// An entry this worker is running: what it needs to give it back.
#[derive(Debug, Clone)]
struct Held {
    envelope: String,
    /// Attempts made before this one.
    attempts_before: u32,
}

struct Shared {
    conn: ConnectionManager,
    names: Names,
    scripts: Scripts,
    runner: Runner,
    lease: Duration,
    delete_handled: bool,
    held: Mutex<HashMap<String, Held>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("names", &self.names)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn held(&self) -> MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs the finish script for entry `id`.
    async fn finish(&self, id: &str, action: &str, args: &[String]) -> RedisResult<bool> {
        let mut invocation = self.scripts.finish.key(&self.names.stream);
        invocation
            .key(&self.names.delayed)
            .key(&self.names.dead)
            .arg(&self.names.group)
            .arg(id)
            .arg(&self.names.consumer)
            .arg(action)
            .arg(if self.delete_handled { "1" } else { "0" });
        for arg in args {
            invocation.arg(arg);
        }
        let applied: i64 = invocation.invoke_async(&mut self.conn.clone()).await?;
        Ok(applied == 1)
    }

    /// Carries out a verdict on entry `id`.
    async fn apply(&self, id: &str, held: &Held, verdict: Verdict) -> RedisResult<bool> {
        let attempts = held.attempts_before.saturating_add(1);
        match verdict {
            Verdict::Processed => self.finish(id, "ack", &[]).await,
            Verdict::Retry { delay, .. } => {
                let due =
                    now_ms().saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
                let member = format!("{attempts}|{id}|{}", held.envelope);
                self.finish(id, "retry", &[due.to_string(), member]).await
            }
            // `Verdict` is non-exhaustive; anything else becomes a dead letter, never a loss.
            other => {
                let reason = match other {
                    Verdict::Dead { reason } => reason,
                    other => format!("unexpected verdict {other:?}"),
                };
                self.dead(id, held, attempts, &reason).await
            }
        }
    }

    async fn dead(&self, id: &str, held: &Held, attempts: u32, reason: &str) -> RedisResult<bool> {
        let args = [
            held.envelope.clone(),
            attempts.to_string(),
            reason.to_owned(),
            now_ms().to_string(),
        ];
        self.finish(id, "dead", &args).await
    }

    /// Gives entry `id` back to the stream at once, its current attempt not counted.
    async fn release(&self, id: &str, held: &Held) -> RedisResult<bool> {
        let args = [held.envelope.clone(), held.attempts_before.to_string()];
        self.finish(id, "release", &args).await
    }
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    concurrency: usize,
    poll_interval: Duration,
    shutdown_grace: Duration,
}

/// An entry taken from the stream, and how often it was delivered.
#[derive(Debug)]
struct Taken {
    entry: StreamId,
    deliveries: u32,
}

type ReadFuture = BoxFuture<'static, RedisResult<Vec<StreamId>>>;

async fn run(
    shared: Arc<Shared>,
    reader: ConnectionManager,
    settings: Settings,
    mut stopped: watch::Receiver<bool>,
) -> ShutdownReport {
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut read: Option<ReadFuture> = None;
    let mut renew = tokio::time::interval(shared.lease.checked_div(3).unwrap_or(shared.lease));
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut maintain = tokio::time::interval(settings.poll_interval);
    maintain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cursor = "0-0".to_owned();
    let block_ms = u64::try_from(settings.poll_interval.as_millis()).unwrap_or(u64::MAX);

    loop {
        if *stopped.borrow() {
            break;
        }
        let room = settings.concurrency.saturating_sub(tasks.len());
        if room > 0 && read.is_none() {
            read = Some(Box::pin(read_new(
                reader.clone(),
                &shared.names,
                room,
                block_ms,
            )));
        }
        tokio::select! {
            biased;
            changed = stopped.changed() => {
                // An error means the handle was dropped: stop as well.
                if changed.is_err() {
                    break;
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = renew.tick() => renew_leases(&shared).await,
            _ = maintain.tick() => {
                promote_due(&shared).await;
                let room = settings.concurrency.saturating_sub(tasks.len());
                if room > 0 {
                    for taken in take_over(&shared, &mut cursor, room).await {
                        spawn(&mut tasks, &shared, taken);
                    }
                }
            }
            result = poll_read(&mut read) => {
                read = None;
                match result {
                    Ok(entries) => {
                        for entry in entries {
                            spawn(&mut tasks, &shared, Taken { entry, deliveries: 1 });
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "redis stream worker could not read");
                        if err.code() == Some("NOGROUP") {
                            // The stream or group was deleted (or Redis restarted empty).
                            if let Err(err) = ensure_group(&mut shared.conn.clone(), &shared.names).await {
                                tracing::warn!(error = %err, "could not recreate the consumer group");
                            }
                        }
                        tokio::time::sleep(settings.poll_interval.min(Duration::from_millis(500))).await;
                    }
                }
            }
        }
    }

    // Shutdown. A read in flight may already have been given entries: take them and give
    // them back at once.
    let mut report = ShutdownReport::default();
    if let Some(pending) = read.take() {
        if let Ok(Ok(entries)) =
            tokio::time::timeout(settings.poll_interval.saturating_mul(2), pending).await
        {
            for entry in entries {
                let held = held_of(&entry, 1);
                if matches!(shared.release(&entry.id, &held).await, Ok(true)) {
                    report.released = report.released.saturating_add(1);
                }
            }
        }
    }
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
            _ = renew.tick() => renew_leases(&shared).await,
            () = &mut deadline => break,
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let unfinished: Vec<(String, Held)> = shared.held().drain().collect();
    for (id, held) in unfinished {
        match shared.release(&id, &held).await {
            Ok(true) => report.released = report.released.saturating_add(1),
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(error = %err, "could not give an entry back; another consumer takes it over after the lease");
            }
        }
    }
    forget_consumer_if_idle(&shared).await;
    report
}

async fn poll_read(read: &mut Option<ReadFuture>) -> RedisResult<Vec<StreamId>> {
    match read {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

fn read_new(
    mut conn: ConnectionManager,
    names: &Names,
    count: usize,
    block_ms: u64,
) -> impl Future<Output = RedisResult<Vec<StreamId>>> + Send + 'static {
    let mut cmd = redis::cmd("XREADGROUP");
    cmd.arg("GROUP")
        .arg(&names.group)
        .arg(&names.consumer)
        .arg("COUNT")
        .arg(count)
        .arg("BLOCK")
        .arg(block_ms)
        .arg("STREAMS")
        .arg(&names.stream)
        .arg(">");
    async move {
        let reply: Option<StreamReadReply> = cmd.query_async(&mut conn).await?;
        Ok(reply
            .map(|r| r.keys.into_iter().flat_map(|key| key.ids).collect())
            .unwrap_or_default())
    }
}

fn spawn(tasks: &mut JoinSet<()>, shared: &Arc<Shared>, taken: Taken) {
    let held = held_of(&taken.entry, taken.deliveries);
    shared.held().insert(taken.entry.id.clone(), held.clone());
    tasks.spawn(process_one(shared.clone(), taken.entry, held));
}

fn held_of(entry: &StreamId, deliveries: u32) -> Held {
    let before: u32 = entry.get(ATTEMPTS_FIELD).unwrap_or(0);
    Held {
        envelope: entry.get::<String>(ENVELOPE_FIELD).unwrap_or_default(),
        // Earlier deliveries of this very entry were attempts cut short (a crash).
        attempts_before: before.saturating_add(deliveries.saturating_sub(1)),
    }
}

async fn process_one(shared: Arc<Shared>, entry: StreamId, held: Held) {
    let id = entry.id;
    let attempt = held.attempts_before.saturating_add(1);
    match Envelope::from_json(held.envelope.as_bytes()) {
        Ok(envelope) => {
            let event = QueuedEvent::new(envelope, id.clone(), attempt);
            shared
                .runner
                .process(event, &id, |verdict| shared.apply(&id, &held, verdict))
                .await;
        }
        Err(err) => {
            tracing::warn!(entry = %id, error = %err, "unreadable stream entry moved to the dead letters");
            let reason = format!("unreadable entry: {err}");
            if let Err(err) = shared.dead(&id, &held, attempt, &reason).await {
                tracing::warn!(error = %err, "could not dead-letter an unreadable entry");
            }
        }
    }
    shared.held().remove(&id);
}

async fn renew_leases(shared: &Shared) {
    let ids: Vec<String> = shared.held().keys().cloned().collect();
    if ids.is_empty() {
        return;
    }
    let mut invocation = shared.scripts.renew.key(&shared.names.stream);
    invocation
        .arg(&shared.names.group)
        .arg(&shared.names.consumer);
    for id in &ids {
        invocation.arg(id);
    }
    if let Err(err) = invocation
        .invoke_async::<i64>(&mut shared.conn.clone())
        .await
    {
        tracing::warn!(error = %err, "redis stream worker could not renew its leases");
    }
}

async fn promote_due(shared: &Shared) {
    let result = shared
        .scripts
        .promote
        .key(&shared.names.delayed)
        .key(&shared.names.stream)
        .arg(now_ms())
        .arg(PROMOTE_BATCH)
        .invoke_async::<i64>(&mut shared.conn.clone())
        .await;
    if let Err(err) = result {
        tracing::warn!(error = %err, "redis stream worker could not move due retries back");
    }
}

/// Takes over up to `room` entries whose lease expired (`XAUTOCLAIM`), with how often each
/// was delivered.
async fn take_over(shared: &Shared, cursor: &mut String, room: usize) -> Vec<Taken> {
    match try_take_over(shared, cursor, room).await {
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
    shared: &Shared,
    cursor: &mut String,
    room: usize,
) -> RedisResult<Vec<Taken>> {
    let names = &shared.names;
    let lease_ms = u64::try_from(shared.lease.as_millis()).unwrap_or(u64::MAX);
    let mut conn = shared.conn.clone();
    let reply: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
        .arg(&names.stream)
        .arg(&names.group)
        .arg(&names.consumer)
        .arg(lease_ms)
        .arg(cursor.as_str())
        .arg("COUNT")
        .arg(room)
        .query_async(&mut conn)
        .await?;
    *cursor = reply.next_stream_id;
    if reply.claimed.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for entry in &reply.claimed {
        pipe.cmd("XPENDING")
            .arg(&names.stream)
            .arg(&names.group)
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
            Taken { entry, deliveries }
        })
        .collect())
}

/// Creates the consumer group (from the start of the stream, creating the stream) unless
/// it exists.
async fn ensure_group(conn: &mut ConnectionManager, names: &Names) -> Result<(), RedisError> {
    let created: RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&names.stream)
        .arg(&names.group)
        .arg("0")
        .arg("MKSTREAM")
        .query_async(conn)
        .await;
    match created {
        Err(err) if err.code() != Some("BUSYGROUP") => Err(err),
        _ => Ok(()),
    }
}

/// Removes this consumer from the group if nothing is pending for it, so stopped workers
/// do not accumulate in `XINFO CONSUMERS`.
async fn forget_consumer_if_idle(shared: &Shared) {
    let names = &shared.names;
    let mut conn = shared.conn.clone();
    let pending: RedisResult<StreamPendingCountReply> = redis::cmd("XPENDING")
        .arg(&names.stream)
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
            .arg(&names.stream)
            .arg(&names.group)
            .arg(&names.consumer)
            .query_async(&mut conn)
            .await;
    }
}

fn now_ms() -> i64 {
    match SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}
