//! The stored event and what a handler receives; its id and status are the event log's
//! ([`hookgate_queue::event_log`]), shared with the other stores.

use std::fmt;
use std::time::SystemTime;

use bytes::Bytes;
use hookgate::VerifiedEvent;
pub use hookgate_queue::event_log::{EventId, Status};

use crate::digest::key_digest;
use crate::time::to_millis;

/// An event as a handler receives it: the verified delivery plus its inbox bookkeeping.
///
/// The fields mirror [`VerifiedEvent`]'s; the body is byte for byte what was verified.
#[derive(Clone)]
pub struct InboxEvent {
    pub(crate) id: EventId,
    pub(crate) dedup_key: String,
    pub(crate) scheme: String,
    pub(crate) delivery_id: Option<String>,
    pub(crate) event_type: Option<String>,
    pub(crate) timestamp: Option<SystemTime>,
    pub(crate) received_at: SystemTime,
    pub(crate) body: Bytes,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) attempt: u32,
    pub(crate) is_test: bool,
    pub(crate) destination: Option<String>,
}

impl InboxEvent {
    /// An event built by hand: to unit-test a handler, or to feed handlers from another
    /// source. Received now, attempt 1, no delivery id, type, timestamp or headers; the
    /// `with_*` methods set those.
    ///
    /// ```
    /// use hookgate_inbox::{EventId, InboxEvent};
    ///
    /// let event = InboxEvent::new(EventId::new(1), "stripe", "stripe:id:evt_1", "{}")
    ///     .with_event_type("invoice.paid")
    ///     .with_attempt(2);
    /// assert_eq!((event.event_type(), event.attempt()), (Some("invoice.paid"), 2));
    /// ```
    pub fn new(
        id: EventId,
        scheme: impl Into<String>,
        dedup_key: impl Into<String>,
        body: impl Into<Bytes>,
    ) -> Self {
        InboxEvent {
            id,
            dedup_key: dedup_key.into(),
            scheme: scheme.into(),
            delivery_id: None,
            event_type: None,
            timestamp: None,
            received_at: SystemTime::now(),
            body: body.into(),
            headers: Vec::new(),
            attempt: 1,
            is_test: false,
            destination: None,
        }
    }

    /// Sets the delivery id.
    #[must_use]
    pub fn with_delivery_id(mut self, delivery_id: impl Into<String>) -> Self {
        self.delivery_id = Some(delivery_id.into());
        self
    }

    /// Sets the event type.
    #[must_use]
    pub fn with_event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }

    /// Sets the signed timestamp.
    #[must_use]
    pub fn with_timestamp(mut self, timestamp: SystemTime) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// Sets when it was received.
    #[must_use]
    pub fn with_received_at(mut self, received_at: SystemTime) -> Self {
        self.received_at = received_at;
        self
    }

    /// Sets the informational headers.
    #[must_use]
    pub fn with_headers(mut self, headers: Vec<(String, String)>) -> Self {
        self.headers = headers;
        self
    }

    /// Sets the attempt number (from 1).
    #[must_use]
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// Flags it as a test delivery.
    #[must_use]
    pub fn with_test(mut self, is_test: bool) -> Self {
        self.is_test = is_test;
        self
    }

    /// The inbox's id of the event.
    pub fn id(&self) -> EventId {
        self.id
    }

    /// The authenticated dedup key ([`VerifiedEvent::dedup_key`]).
    pub fn dedup_key(&self) -> &str {
        &self.dedup_key
    }

    /// The scheme that verified it.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }

    /// The provider's delivery id, where the scheme carries one.
    pub fn delivery_id(&self) -> Option<&str> {
        self.delivery_id.as_deref()
    }

    /// The event type, where the scheme carries one.
    pub fn event_type(&self) -> Option<&str> {
        self.event_type.as_deref()
    }

    /// The signed timestamp, where the scheme has one.
    pub fn timestamp(&self) -> Option<SystemTime> {
        self.timestamp
    }

    /// When the gate accepted the delivery.
    pub fn received_at(&self) -> SystemTime {
        self.received_at
    }

    /// The raw body as verified.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The informational headers the scheme documents, as received.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// Which attempt this is, from 1. Above 1 the handler already saw the event (it failed,
    /// or a process died while running it): handlers must be idempotent.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Whether the event is flagged as a test delivery.
    pub fn is_test(&self) -> bool {
        self.is_test
    }

    /// For an inbox with destinations ([`InboxBuilder::destinations`]): the destination
    /// this delivery of the event goes to. `None` for an inbox without destinations.
    ///
    /// [`InboxBuilder::destinations`]: crate::InboxBuilder::destinations
    pub fn destination(&self) -> Option<&str> {
        self.destination.as_deref()
    }

    /// Sets the destination (to unit-test a handler of an inbox with destinations).
    #[must_use]
    pub fn with_destination(mut self, destination: impl Into<String>) -> Self {
        self.destination = Some(destination.into());
        self
    }
}

impl fmt::Debug for InboxEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboxEvent")
            .field("id", &self.id)
            .field("scheme", &self.scheme)
            .field("delivery_id", &self.delivery_id)
            .field("event_type", &self.event_type)
            .field("dedup_key", &self.dedup_key)
            .field("attempt", &self.attempt)
            .field("is_test", &self.is_test)
            .field("destination", &self.destination)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// What the inbox writes for a verified event (owned, so it can cross to the writer thread).
#[derive(Debug, Clone)]
pub(crate) struct NewEvent {
    pub(crate) dedup_key: String,
    /// [`key_digest`] of the dedup key: what the dedup table is keyed by.
    pub(crate) dedup_digest: [u8; 16],
    pub(crate) scheme: String,
    pub(crate) delivery_id: Option<String>,
    pub(crate) event_type: Option<String>,
    pub(crate) signed_at_ms: Option<i64>,
    pub(crate) received_at_ms: i64,
    pub(crate) body: Bytes,
    pub(crate) headers_json: String,
    pub(crate) is_test: bool,
    /// For an inbox with destinations: the deliveries routing made on receive (empty:
    /// filtered). `None` for an inbox without destinations.
    pub(crate) routes: Option<Vec<RouteRecord>>,
}

/// One delivery routing made: the destination's name and the lane key, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteRecord {
    pub(crate) destination: String,
    pub(crate) lane: Option<String>,
}

impl NewEvent {
    pub(crate) fn from_verified(event: &VerifiedEvent, is_test: bool) -> Self {
        let headers: Vec<(&str, &str)> = event
            .headers()
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        NewEvent {
            dedup_key: event.dedup_key().to_owned(),
            dedup_digest: key_digest(event.dedup_key()),
            scheme: event.scheme().to_owned(),
            delivery_id: event.delivery_id().map(str::to_owned),
            event_type: event.event_type().map(str::to_owned),
            signed_at_ms: event.timestamp_millis(),
            received_at_ms: to_millis(event.received_at()),
            body: event.body().clone(),
            headers_json: serde_json::to_string(&headers).unwrap_or_else(|_| "[]".to_owned()),
            is_test,
            routes: None,
        }
    }
}

/// The deliveries `router` makes of `event`: one per destination whose filter passes it,
/// with the lane key of an ordered destination.
pub(crate) fn route(router: &hookgate_queue::Router, event: &VerifiedEvent) -> Vec<RouteRecord> {
    let headers: Vec<(String, String)> = event
        .headers()
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect();
    let view = hookgate_queue::EventView::new(event.event_type(), &headers, event.body());
    router
        .route(view)
        .into_iter()
        .filter_map(|routed| {
            let destination = router.destinations().get(routed.destination())?;
            Some(RouteRecord {
                destination: destination.name().to_owned(),
                lane: routed.into_lane().map(|lane| lane.as_str().to_owned()),
            })
        })
        .collect()
}
