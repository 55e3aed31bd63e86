//! The Redis Streams sink: `XADD` of the envelope, `Ok` once Redis acknowledged it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use hookgate::dedup::DEFAULT_COMMITTED_TTL;
use hookgate::sink::{Sink, SinkError};
use hookgate::{BoxFuture, VerifiedEvent};
use hookgate_queue::{Envelope, EventView, Router};
use redis::aio::ConnectionManager;
use redis::{Client, RedisError};

use crate::Error;
use crate::routes::{
    FILTERED_MAX_LEN, check_router, destination_stream, filtered_key, lane_partition,
    partition_stream, seen_key,
};
use crate::scripts::enqueue_routed_code;
use crate::url::{DEFAULT_RESPONSE_TIMEOUT, RedisUrl, connection};

/// Default stream the events are added to.
pub const DEFAULT_STREAM: &str = "hookgate:events";

/// The stream entry field holding the [envelope](hookgate_queue::Envelope)'s JSON.
pub const ENVELOPE_FIELD: &str = "envelope";
/// The stream entry field counting the attempts already made (absent on a first delivery;
/// set by the worker when it re-adds an event for a retry).
pub const ATTEMPTS_FIELD: &str = "attempts";

/// A [`Sink`] that appends each event to a Redis stream, for a fleet of consumers to read
/// with consumer groups (see [`StreamWorker`](crate::StreamWorker)).
///
/// Each event is one entry `XADD <stream> * envelope <json>`, the
/// [envelope](hookgate_queue::Envelope)'s JSON (the stable format shared with the NATS
/// backend). [`enqueue`](Sink::enqueue) returns `Ok` once Redis answered the `XADD`; a
/// Redis that is down, slower than the response timeout or refuses the write makes it fail,
/// and the gate answers 503 (`sink_full` when Redis is out of memory, `sink_unavailable`
/// otherwise).
///
/// # How durable is "acknowledged"?
///
/// As durable as your Redis is configured to be. With `appendonly yes` and
/// `appendfsync always`, an acknowledged entry survives a crash of the server; with the
/// default `appendfsync everysec` up to a second of entries can be lost on a power cut; with
/// persistence off, a restart loses everything. Replication is asynchronous:
///
/// - [`wait_for_replicas`](RedisStreamSinkBuilder::wait_for_replicas) adds `WAIT <n>
///   <timeout>` after the `XADD` (same round trip), and `enqueue` fails unless `n` replicas
///   confirmed the write in time. An entry that reached the primary but not enough
///   replicas is then answered 503 although it is in the stream: the sender's retry adds
///   it a second time (at-least-once; consumers deduplicate on the dedup key). `WAIT`
///   holds the sink's connection until the replicas answer or the timeout passes, so keep
///   the timeout short (tens of milliseconds on a LAN). Off by default.
///
/// # Bounding the stream
///
/// By default the stream is not trimmed: the [`StreamWorker`](crate::StreamWorker) deletes
/// entries once they are handled. [`max_len`](RedisStreamSinkBuilder::max_len) adds
/// `MAXLEN ~ <n>` to every `XADD` so the stream never holds much more than `n` entries —
/// **at the price of silently dropping the oldest entries, processed or not**, if the
/// consumers fall `n` entries behind. Use it only as a safety net far above your normal
/// backlog, or when other consumer groups read the stream and entries are not deleted.
///
/// # Destinations
///
/// With [`destinations`](RedisStreamSinkBuilder::destinations) (an endpoint with
/// `[[endpoint.destination]]`, issue 21), each event is routed once, on receive
/// ([`Router::route`]), and written as one copy per matching destination to that
/// destination's stream `<stream>:<destination>`, its envelope naming the destination
/// (see the [key layout](crate#destinations)). The copies are written by one Lua script,
/// atomically, together with the event's enqueue marker `<stream>:seen:<dedup key>`
/// (`SET NX PX`, 72 h by default): the 2xx comes only after every copy is in Redis, and a
/// sender's retry of the same event (after an answer lost to a timeout) finds the marker
/// and writes nothing again, so it creates no duplicate copies. An event that matches no
/// destination is acknowledged and recorded in `<stream>:filtered` (its dedup key, event
/// type and arrival time; trimmed to about [`FILTERED_MAX_LEN`] entries). The copy for an
/// ordered destination (`order_key`) whose event has a lane key goes to the lane's
/// partition stream `<stream>:<destination>:p<n>` instead (see
/// [`lane_partition`](crate::lane_partition)).
///
/// Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct RedisStreamSink {
    conn: ConnectionManager,
    stream: Arc<str>,
    max_len: Option<u64>,
    wait: Option<(u32, u64)>,
    routes: Option<Arc<SinkRoutes>>,
}

/// What the sink needs to route events to destinations.
struct SinkRoutes {
    router: Router,
    /// Per destination, in the router's order: its stream.
    streams: Vec<String>,
    filtered: String,
    seen_ttl_ms: u64,
}

impl RedisStreamSink {
    /// Connects with the defaults, reading optional settings from the URL's query:
    /// `stream` ([`DEFAULT_STREAM`]), `max_len` (none), `wait_replicas` and
    /// `wait_timeout_ms` (none, 50 ms).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), hookgate_redis::Error> {
    /// let sink = hookgate_redis::RedisStreamSink::connect("redis://127.0.0.1:6379/?stream=shop:webhooks").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] for a bad URL or setting, [`Error::Redis`] if Redis cannot be
    /// reached now.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        RedisStreamSink::connect_with_destinations(url, None).await
    }

    /// [`connect`](Self::connect), routing each event to `router`'s destinations when one
    /// is given (see [Destinations](Self#destinations)).
    ///
    /// # Errors
    /// As [`connect`](Self::connect), and [`Error::Config`] for a destination this backend
    /// cannot serve (an `order_key`, a reserved name).
    pub async fn connect_with_destinations(
        url: &str,
        router: Option<Router>,
    ) -> Result<Self, Error> {
        let url = RedisUrl::parse(
            url,
            &["stream", "max_len", "wait_replicas", "wait_timeout_ms"],
        )?;
        let mut builder = RedisStreamSink::builder();
        if let Some(stream) = url.param("stream") {
            builder = builder.stream(stream);
        }
        if let Some(max_len) = url.number("max_len")? {
            builder = builder.max_len(max_len);
        }
        if let Some(replicas) = url.number("wait_replicas")? {
            let replicas = u32::try_from(replicas)
                .map_err(|_| Error::Config("wait_replicas is too large".to_owned()))?;
            let timeout = url
                .millis("wait_timeout_ms")?
                .unwrap_or(Duration::from_millis(50));
            builder = builder.wait_for_replicas(replicas, timeout);
        }
        if let Some(router) = router {
            builder = builder.destinations(router);
        }
        builder.connect_client(url.client).await
    }

    /// Starts a sink with other settings.
    pub fn builder() -> RedisStreamSinkBuilder {
        RedisStreamSinkBuilder {
            stream: DEFAULT_STREAM.to_owned(),
            max_len: None,
            wait: None,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            router: None,
            seen_ttl: DEFAULT_COMMITTED_TTL,
        }
    }

    /// The stream's key.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Adds `envelope` to the stream, returning the new entry's id.
    ///
    /// # Errors
    /// [`SinkError`]: full when Redis is out of memory, unavailable otherwise.
    pub async fn add(&self, envelope: &Envelope) -> Result<String, SinkError> {
        let json = envelope.to_json().map_err(SinkError::unavailable)?;
        let mut xadd = redis::cmd("XADD");
        xadd.arg(&*self.stream);
        if let Some(max_len) = self.max_len {
            xadd.arg("MAXLEN").arg("~").arg(max_len);
        }
        xadd.arg("*").arg(ENVELOPE_FIELD).arg(json);
        let mut conn = self.conn.clone();
        match self.wait {
            None => xadd.query_async(&mut conn).await.map_err(sink_error),
            Some((replicas, timeout_ms)) => {
                let (id, acked): (String, u32) = redis::pipe()
                    .add_command(xadd)
                    .cmd("WAIT")
                    .arg(replicas)
                    .arg(timeout_ms)
                    .query_async(&mut conn)
                    .await
                    .map_err(sink_error)?;
                if acked < replicas {
                    return Err(SinkError::unavailable(format!(
                        "only {acked} of {replicas} replicas confirmed entry {id} in time"
                    )));
                }
                Ok(id)
            }
        }
    }
}

impl RedisStreamSink {
    /// Routes `event` and writes its copies (see [Destinations](Self#destinations)):
    /// returns how many copies were written, 0 for a filtered event, `None` when the same
    /// event had been written already.
    async fn add_routed(
        &self,
        routes: &SinkRoutes,
        event: &VerifiedEvent,
    ) -> Result<Option<usize>, SinkError> {
        let envelope = Envelope::from_event(event);
        let routed = routes.router.route(EventView::new(
            envelope.event_type.as_deref(),
            &envelope.headers,
            &envelope.body,
        ));
        let mut keys = Vec::with_capacity(routed.len().saturating_add(2));
        keys.push(seen_key(&self.stream, &envelope.dedup_key));
        keys.push(routes.filtered.clone());
        let mut copies = Vec::with_capacity(routed.len());
        for route in &routed {
            let (Some(stream), Some(destination)) = (
                routes.streams.get(route.destination()),
                routes.router.destinations().get(route.destination()),
            ) else {
                continue;
            };
            // An ordered destination's copy with a lane key goes to its lane's partition.
            match route.lane() {
                Some(lane) if destination.order_key().is_some() => {
                    keys.push(partition_stream(stream, lane_partition(lane.as_str())));
                }
                _ => keys.push(stream.clone()),
            }
            let copy = envelope.clone().with_destination(destination.name());
            copies.push(copy.to_json().map_err(SinkError::unavailable)?);
        }
        let mut eval = redis::cmd("EVAL");
        eval.arg(enqueue_routed_code())
            .arg(keys.len())
            .arg(&keys)
            .arg(routes.seen_ttl_ms)
            .arg(self.max_len.unwrap_or(0))
            .arg(FILTERED_MAX_LEN)
            .arg(&envelope.dedup_key)
            .arg(envelope.event_type.as_deref().unwrap_or(""))
            .arg(envelope.received_at_ms);
        for copy in copies {
            eval.arg(copy);
        }
        let mut conn = self.conn.clone();
        let written: i64 = match self.wait {
            None => eval.query_async(&mut conn).await.map_err(sink_error)?,
            Some((replicas, timeout_ms)) => {
                let (written, acked): (i64, u32) = redis::pipe()
                    .add_command(eval)
                    .cmd("WAIT")
                    .arg(replicas)
                    .arg(timeout_ms)
                    .query_async(&mut conn)
                    .await
                    .map_err(sink_error)?;
                if acked < replicas {
                    return Err(SinkError::unavailable(format!(
                        "only {acked} of {replicas} replicas confirmed the event in time"
                    )));
                }
                written
            }
        };
        Ok(usize::try_from(written).ok())
    }
}

fn sink_error(err: RedisError) -> SinkError {
    if err.code() == Some("OOM") {
        SinkError::full()
    } else {
        SinkError::unavailable(err)
    }
}

impl Sink for RedisStreamSink {
    fn enqueue(&self, event: VerifiedEvent) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            match &self.routes {
                Some(routes) => self.add_routed(routes, &event).await.map(drop),
                None => self.add(&Envelope::from_event(&event)).await.map(drop),
            }
        })
    }
}

impl fmt::Debug for RedisStreamSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStreamSink")
            .field("stream", &self.stream)
            .field("max_len", &self.max_len)
            .field("wait", &self.wait)
            .field(
                "destinations",
                &self.routes.as_ref().map(|r| r.streams.len()),
            )
            .finish_non_exhaustive()
    }
}

/// Settings of a [`RedisStreamSink`], checked when it connects.
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisStreamSinkBuilder {
    stream: String,
    max_len: Option<u64>,
    wait: Option<(u32, Duration)>,
    response_timeout: Duration,
    router: Option<Router>,
    seen_ttl: Duration,
}

impl RedisStreamSinkBuilder {
    /// The stream's key (default [`DEFAULT_STREAM`]).
    pub fn stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = stream.into();
        self
    }

    /// Trims the stream to about `max_len` entries on every add (`MAXLEN ~`). Drops the
    /// oldest entries **whether or not they were processed**: see the
    /// [type documentation](RedisStreamSink#bounding-the-stream).
    pub fn max_len(mut self, max_len: u64) -> Self {
        self.max_len = Some(max_len);
        self
    }

    /// Requires `replicas` replicas to confirm each add within `timeout` (`WAIT`): see the
    /// [type documentation](RedisStreamSink#how-durable-is-acknowledged).
    pub fn wait_for_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait = Some((replicas, timeout));
        self
    }

    /// How long to wait for Redis's answer before counting it as down (default
    /// [`DEFAULT_RESPONSE_TIMEOUT`](crate::DEFAULT_RESPONSE_TIMEOUT)); with `WAIT`, it must
    /// exceed the wait timeout.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Routes each event to `router`'s destinations, one copy per matching destination in
    /// its own stream (see [Destinations](RedisStreamSink#destinations)). Refused when it
    /// connects: a destination named `paused`, `filtered` or `seen`.
    pub fn destinations(mut self, router: Router) -> Self {
        self.router = Some(router);
        self
    }

    /// How long an event's enqueue marker lives (default 72 h, the dedup store's
    /// committed TTL): a retry of the same event within it writes nothing again. Only
    /// with [`destinations`](Self::destinations).
    pub fn seen_ttl(mut self, ttl: Duration) -> Self {
        self.seen_ttl = ttl;
        self
    }

    /// Connects to `url` (any query parameters go to the `redis` crate).
    ///
    /// # Errors
    /// [`Error::Config`] for a bad URL or setting, [`Error::Redis`] if Redis cannot be
    /// reached now.
    pub async fn connect(self, url: &str) -> Result<RedisStreamSink, Error> {
        let url = RedisUrl::parse(url, &[])?;
        self.connect_client(url.client).await
    }

    /// Builds the sink on an existing connection.
    ///
    /// # Errors
    /// [`Error::Config`] for a setting out of range.
    pub fn build(self, conn: ConnectionManager) -> Result<RedisStreamSink, Error> {
        if self.stream.is_empty() {
            return Err(Error::Config(
                "the stream name must not be empty".to_owned(),
            ));
        }
        if self.max_len == Some(0) {
            return Err(Error::Config("max_len must be at least 1".to_owned()));
        }
        let wait = match self.wait {
            None => None,
            Some((0, _)) => {
                return Err(Error::Config(
                    "wait_for_replicas needs at least one replica".to_owned(),
                ));
            }
            Some((replicas, timeout)) => {
                if timeout.is_zero() || timeout >= self.response_timeout {
                    // WAIT 0 would block forever; a wait longer than the response timeout
                    // would always look like a dead Redis.
                    return Err(Error::Config(format!(
                        "the replica wait timeout must be between 1 ms and the response timeout ({:?})",
                        self.response_timeout
                    )));
                }
                Some((
                    replicas,
                    u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                ))
            }
        };
        let routes = match self.router {
            None => None,
            Some(router) => {
                check_router(&router)?;
                if self.seen_ttl < Duration::from_millis(1) {
                    return Err(Error::Config(
                        "the enqueue marker TTL must be at least 1 ms".to_owned(),
                    ));
                }
                let streams = router
                    .destinations()
                    .iter()
                    .map(|d| destination_stream(&self.stream, d.name()))
                    .collect();
                Some(Arc::new(SinkRoutes {
                    streams,
                    filtered: filtered_key(&self.stream),
                    seen_ttl_ms: u64::try_from(self.seen_ttl.as_millis()).unwrap_or(u64::MAX),
                    router,
                }))
            }
        };
        Ok(RedisStreamSink {
            conn,
            stream: Arc::from(self.stream),
            max_len: self.max_len,
            wait,
            routes,
        })
    }

    async fn connect_client(self, client: Client) -> Result<RedisStreamSink, Error> {
        if self.response_timeout.is_zero() {
            return Err(Error::Config(
                "the response timeout must not be zero".to_owned(),
            ));
        }
        let conn = connection(client, self.response_timeout).await?;
        self.build(conn)
    }
}
