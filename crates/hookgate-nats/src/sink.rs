//! The JetStream sink: publish with `Nats-Msg-Id` = dedup key, `Ok` once JetStream acked.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::Context;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::RetentionPolicy;
use hookgate::sink::{Sink, SinkError};
use hookgate::{BoxFuture, VerifiedEvent};
use hookgate_queue::{Envelope, EventView, Router};

use crate::Error;
use crate::routes::{
    FILTERED_TOKEN, check_destinations, copy_message_id, destination_subject,
    destinations_wildcard, lane_partition, partition_token,
};
use crate::stream::{StreamSpec, ensure_stream};
use crate::url::{DEFAULT_ACK_TIMEOUT, DEFAULT_STREAM, DEFAULT_SUBJECT, NatsUrl, connect, context};

/// Default JetStream duplicate window of a stream the sink creates: 2 minutes
/// (JetStream's own default).
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// A [`Sink`] that publishes each event to a NATS JetStream stream, for a fleet of
/// consumers to pull (see [`JetStreamWorker`](crate::JetStreamWorker)).
///
/// - **Payload**: the [envelope](hookgate_queue::Envelope)'s JSON, the stable format shared
///   with the Redis backend.
/// - **`Nats-Msg-Id` = the dedup key**, so JetStream itself drops a second copy of a
///   delivery published within the stream's duplicate window (2 minutes by default): two
///   replicas racing on the same delivery, or a publish retried after its ack was lost,
///   store the event once even without a shared dedup store. The gate's dedup store still
///   covers the sender's whole retry horizon; JetStream's window is the second line.
/// - **`Ok` only after the publish ack**: JetStream has stored the event (on a quorum of
///   replicas for a replicated stream). A duplicate ack (the copy was already stored) is
///   `Ok` too. No ack within the ack timeout (2 s by default) — NATS down, no JetStream,
///   no stream for the subject — fails the enqueue, and the gate answers 503; an ack
///   refused for back-pressure (`max ack pending`) answers `503 sink_full`.
/// - **The stream is created or checked at start-up**: if it exists it must capture the
///   subject (its other settings are left alone: operations may own them); if not it is
///   created as a file-backed **work-queue** stream (an event is kept until a consumer
///   acknowledges it), with the duplicate window and replicas of the builder.
///
/// The client reconnects by itself while NATS is away; events are never buffered into a
/// 2xx: without an ack, the sender is told to retry.
///
/// # Destinations
///
/// With [`destinations`](JetStreamSinkBuilder::destinations) (an endpoint with
/// `[[endpoint.destination]]`, issue 21), each event is routed once, on receive
/// ([`Router::route`]), and published as one copy per matching destination on that
/// destination's subject `<subject>.<destination>`, its envelope naming the destination;
/// the stream then captures `<subject>.*` (one token per destination). The copies are
/// published together and the enqueue answers `Ok` only once JetStream acked **every**
/// copy: the 2xx means all of them are stored. Each copy's `Nats-Msg-Id` is
/// `<dedup key>@<destination>`, so when one copy fails and the sender retries (the gate
/// answered 503), the copies already stored are dropped as duplicates by the stream's
/// duplicate window and only the missing ones are added: no duplicate copies within the
/// window (2 minutes by default; the gate's dedup store covers a committed event beyond
/// it). An event that matches no destination is acknowledged and stored nowhere (a
/// work-queue stream keeps only what some consumer takes); it is counted in the trace
/// log only.
///
/// Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct JetStreamSink {
    context: Context,
    subject: Arc<str>,
    stream: Arc<str>,
    routes: Option<Arc<SinkRoutes>>,
}

/// What the sink needs to route events to destinations.
struct SinkRoutes {
    router: Router,
    /// Per destination, in the router's order: its subject.
    subjects: Vec<String>,
    /// The subject events are published under.
    base: String,
}

impl JetStreamSink {
    /// Connects with the defaults, reading optional settings from the URL's query:
    /// `stream` ([`DEFAULT_STREAM`](crate::DEFAULT_STREAM)), `subject`
    /// ([`DEFAULT_SUBJECT`](crate::DEFAULT_SUBJECT)), `duplicate_window_ms` (2 minutes),
    /// `ack_timeout_ms` (2 s).
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), hookgate_nats::Error> {
    /// let sink = hookgate_nats::JetStreamSink::connect("nats://127.0.0.1:4222/?stream=SHOP&subject=shop.webhooks").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] for a bad URL or an existing stream that does not capture the
    /// subject, [`Error::Nats`] if NATS or JetStream cannot be reached now.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        JetStreamSink::connect_with_destinations(url, None).await
    }

    /// [`connect`](Self::connect), routing each event to `router`'s destinations when one
    /// is given (see [Destinations](Self#destinations)).
    ///
    /// # Errors
    /// As [`connect`](Self::connect), and [`Error::Config`] for a destination this backend
    /// cannot serve (a name with `.`).
    pub async fn connect_with_destinations(
        url: &str,
        router: Option<Router>,
    ) -> Result<Self, Error> {
        let url = NatsUrl::parse(
            url,
            &["stream", "subject", "duplicate_window_ms", "ack_timeout_ms"],
        )?;
        let mut builder = JetStreamSink::builder();
        if let Some(stream) = url.param("stream") {
            builder = builder.stream(stream);
        }
        if let Some(subject) = url.param("subject") {
            builder = builder.subject(subject);
        }
        if let Some(window) = url.millis("duplicate_window_ms")? {
            builder = builder.duplicate_window(window);
        }
        if let Some(timeout) = url.millis("ack_timeout_ms")? {
            builder = builder.ack_timeout(timeout);
        }
        if let Some(router) = router {
            builder = builder.destinations(router);
        }
        builder.connect(&url.server).await
    }

    /// Starts a sink with other settings.
    pub fn builder() -> JetStreamSinkBuilder {
        JetStreamSinkBuilder {
            stream: DEFAULT_STREAM.to_owned(),
            subject: DEFAULT_SUBJECT.to_owned(),
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            max_age: Duration::ZERO,
            replicas: 1,
            create: true,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            router: None,
        }
    }

    /// The stream's name.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The subject events are published on.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Publishes `envelope` and waits for JetStream's ack; returns the stream sequence and
    /// whether JetStream found it a duplicate within its window.
    ///
    /// # Errors
    /// [`SinkError`]: full on back-pressure, unavailable otherwise.
    pub async fn publish(&self, envelope: &Envelope) -> Result<(u64, bool), SinkError> {
        let payload = envelope.to_json().map_err(SinkError::unavailable)?;
        let publish = PublishMessage::build()
            .message_id(envelope.dedup_key.as_str())
            .payload(payload.into());
        let ack = self
            .context
            .send_publish(self.subject.to_string(), publish)
            .await
            .map_err(publish_error)?
            .await
            .map_err(publish_error)?;
        Ok((ack.sequence, ack.duplicate))
    }

    /// Routes `event` and publishes its copies (see [Destinations](Self#destinations)),
    /// waiting for every ack; returns how many copies JetStream newly stored.
    async fn publish_routed(
        &self,
        routes: &SinkRoutes,
        event: &VerifiedEvent,
    ) -> Result<usize, SinkError> {
        let envelope = Envelope::from_event(event);
        let routed = routes.router.route(EventView::new(
            envelope.event_type.as_deref(),
            &envelope.headers,
            &envelope.body,
        ));
        if routed.is_empty() {
            // Stored and acknowledged all the same (issue 21): on a subject of its own that
            // no consumer reads, once (its own message id).
            tracing::debug!(dedup_key = %envelope.dedup_key, "filtered: no destination takes the event");
            let payload = envelope.to_json().map_err(SinkError::unavailable)?;
            let publish = PublishMessage::build()
                .message_id(copy_message_id(&envelope.dedup_key, FILTERED_TOKEN).as_str())
                .payload(payload.into());
            let subject = destination_subject(&routes.base, FILTERED_TOKEN);
            let ack = self
                .context
                .send_publish(subject, publish)
                .await
                .map_err(publish_error)?
                .await
                .map_err(publish_error)?;
            return Ok(usize::from(!ack.duplicate));
        }
        // Send every copy first, then wait for the acks: one round trip, not one per copy.
        let mut pending = Vec::with_capacity(routed.len());
        for route in &routed {
            let (Some(subject), Some(destination)) = (
                routes.subjects.get(route.destination()),
                routes.router.destinations().get(route.destination()),
            ) else {
                continue;
            };
            let copy = envelope.clone().with_destination(destination.name());
            let payload = copy.to_json().map_err(SinkError::unavailable)?;
            let publish = PublishMessage::build()
                .message_id(copy_message_id(&envelope.dedup_key, destination.name()).as_str())
                .payload(payload.into());
            // An ordered destination's copy with a lane key goes to its lane's partition.
            let subject = match route.lane() {
                Some(lane) if destination.order_key().is_some() => destination_subject(
                    &routes.base,
                    &partition_token(destination.name(), lane_partition(lane.as_str())),
                ),
                _ => subject.clone(),
            };
            pending.push(
                self.context
                    .send_publish(subject, publish)
                    .await
                    .map_err(publish_error)?,
            );
        }
        let mut stored = 0usize;
        for ack in pending {
            let ack = ack.await.map_err(publish_error)?;
            if !ack.duplicate {
                stored = stored.saturating_add(1);
            }
        }
        Ok(stored)
    }
}

fn publish_error(err: async_nats::jetstream::context::PublishError) -> SinkError {
    match err.kind() {
        PublishErrorKind::MaxAckPending => SinkError::full(),
        _ => SinkError::unavailable(err),
    }
}

impl Sink for JetStreamSink {
    fn enqueue(&self, event: VerifiedEvent) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            match &self.routes {
                Some(routes) => self.publish_routed(routes, &event).await.map(drop),
                None => self.publish(&Envelope::from_event(&event)).await.map(drop),
            }
        })
    }
}

impl fmt::Debug for JetStreamSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamSink")
            .field("stream", &self.stream)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Settings of a [`JetStreamSink`], checked when it connects.
#[derive(Debug, Clone)]
#[must_use]
pub struct JetStreamSinkBuilder {
    stream: String,
    subject: String,
    duplicate_window: Duration,
    max_age: Duration,
    replicas: usize,
    create: bool,
    ack_timeout: Duration,
    router: Option<Router>,
}

impl JetStreamSinkBuilder {
    /// Routes each event to `router`'s destinations, one copy per matching destination on
    /// its own subject (see [Destinations](JetStreamSink#destinations)); an ordered
    /// destination's keyed copy goes to its lane's partition subject
    /// `<subject>.<destination>~p<n>`. Refused when it connects: a destination whose name
    /// has a `.`.
    pub fn destinations(mut self, router: Router) -> Self {
        self.router = Some(router);
        self
    }

    /// The stream (default [`DEFAULT_STREAM`](crate::DEFAULT_STREAM)).
    pub fn stream(mut self, stream: impl Into<String>) -> Self {
        self.stream = stream.into();
        self
    }

    /// The subject to publish on (default [`DEFAULT_SUBJECT`](crate::DEFAULT_SUBJECT)).
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = subject.into();
        self
    }

    /// JetStream's duplicate window for a stream the sink creates (default
    /// [`DEFAULT_DUPLICATE_WINDOW`]). Longer windows cost server memory per message id.
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// Oldest age of a message in a stream the sink creates (default: unlimited). A limit
    /// drops events nobody consumed in time: use it only as a safety net.
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Replicas of a stream the sink creates, in a JetStream cluster (default 1). With 3,
    /// an ack means a quorum stored the event.
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas;
        self
    }

    /// Only check that the stream exists and captures the subject; never create it (for
    /// streams managed by operations).
    pub fn check_only(mut self) -> Self {
        self.create = false;
        self
    }

    /// How long to wait for JetStream's ack (default
    /// [`DEFAULT_ACK_TIMEOUT`](crate::DEFAULT_ACK_TIMEOUT)).
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// Connects to the server at `url` (`nats://host:4222`), and creates or checks the
    /// stream.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad setting or an existing stream that does not capture the
    /// subject, [`Error::Nats`] if NATS or JetStream cannot be reached now.
    pub async fn connect(self, url: &str) -> Result<JetStreamSink, Error> {
        let url = NatsUrl::parse(url, &[])?;
        if self.stream.is_empty() || self.subject.is_empty() {
            return Err(Error::Config(
                "the stream and subject must not be empty".to_owned(),
            ));
        }
        if self.ack_timeout.is_zero() || self.replicas == 0 {
            return Err(Error::Config(
                "the ack timeout and the replicas must not be zero".to_owned(),
            ));
        }
        let routes = match self.router {
            None => None,
            Some(router) => {
                check_destinations(router.destinations())?;
                let subjects = router
                    .destinations()
                    .iter()
                    .map(|d| destination_subject(&self.subject, d.name()))
                    .collect();
                Some(Arc::new(SinkRoutes {
                    router,
                    subjects,
                    base: self.subject.clone(),
                }))
            }
        };
        let client = connect(&url.server, "hookgate-sink").await?;
        let context = context(client, self.ack_timeout);
        let spec = StreamSpec {
            name: self.stream.clone(),
            subject: if routes.is_some() {
                destinations_wildcard(&self.subject)
            } else {
                self.subject.clone()
            },
            retention: RetentionPolicy::WorkQueue,
            duplicate_window: self.duplicate_window,
            max_age: self.max_age,
            replicas: self.replicas,
        };
        ensure_stream(&context, &spec, self.create).await?;
        Ok(JetStreamSink {
            context,
            subject: Arc::from(self.subject),
            stream: Arc::from(self.stream),
            routes,
        })
    }
}
