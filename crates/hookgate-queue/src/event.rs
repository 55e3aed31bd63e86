//! What a queue worker's handler receives.

use std::fmt;
use std::time::SystemTime;

use bytes::Bytes;

use crate::{Envelope, QueueEvent};

/// An event as a queue worker's [`Handler`](crate::Handler) receives it: the envelope plus
/// the queue's bookkeeping.
///
/// It mirrors the inbox's `InboxEvent`, so a handler reads the same fields whichever
/// backend delivers the event.
#[derive(Clone)]
pub struct QueuedEvent {
    envelope: Envelope,
    id: String,
    attempt: u32,
    destination: Option<String>,
}

impl QueuedEvent {
    /// An event read from a queue: `id` is the queue's id for the message, `attempt` which
    /// attempt this is, from 1.
    pub fn new(envelope: Envelope, id: impl Into<String>, attempt: u32) -> Self {
        QueuedEvent {
            envelope,
            id: id.into(),
            attempt,
            destination: None,
        }
    }

    /// Says which of the endpoint's destinations this delivery of the event goes to (a
    /// queue with destinations, issue 21): the handler then runs that destination's
    /// target.
    #[must_use]
    pub fn with_destination(mut self, destination: impl Into<String>) -> Self {
        self.destination = Some(destination.into());
        self
    }

    /// The queue's id of this copy of the event: a Redis stream entry id
    /// (`1700000000000-0`), a JetStream stream sequence or a PostgreSQL event id. A retried event gets a new one on
    /// Redis; use [`dedup_key`](Self::dedup_key) to recognise an event.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Which attempt this is, from 1. Above 1 the event was handed to a handler before (it
    /// failed, or a consumer died while running it): handlers must be idempotent.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The authenticated dedup key: the same for every copy and retry of a delivery.
    pub fn dedup_key(&self) -> &str {
        &self.envelope.dedup_key
    }

    /// The scheme that verified it.
    pub fn scheme(&self) -> &str {
        &self.envelope.scheme
    }

    /// The provider's delivery id, where the scheme carries one.
    pub fn delivery_id(&self) -> Option<&str> {
        self.envelope.delivery_id.as_deref()
    }

    /// The event type, where the scheme carries one.
    pub fn event_type(&self) -> Option<&str> {
        self.envelope.event_type.as_deref()
    }

    /// The signed timestamp, where the scheme has one.
    pub fn timestamp(&self) -> Option<SystemTime> {
        self.envelope.timestamp()
    }

    /// When the gate accepted the delivery.
    pub fn received_at(&self) -> SystemTime {
        self.envelope.received_at()
    }

    /// The keyring entry that matched.
    pub fn key_id(&self) -> &str {
        &self.envelope.key_id
    }

    /// The raw body as verified.
    pub fn body(&self) -> &Bytes {
        &self.envelope.body
    }

    /// The informational headers the scheme documents, as received.
    pub fn headers(&self) -> &[(String, String)] {
        &self.envelope.headers
    }

    /// The destination this delivery goes to, for an endpoint with destinations: the one
    /// the queue said ([`with_destination`](Self::with_destination), the PostgreSQL store's
    /// delivery row), else the envelope's `destination` (Redis and JetStream write one copy
    /// per destination). Mirrors `InboxEvent::destination`.
    pub fn destination(&self) -> Option<&str> {
        self.destination
            .as_deref()
            .or(self.envelope.destination.as_deref())
    }

    /// The whole envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Takes the envelope out.
    pub fn into_envelope(self) -> Envelope {
        self.envelope
    }
}

impl fmt::Debug for QueuedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueuedEvent")
            .field("id", &self.id)
            .field("attempt", &self.attempt)
            .field("destination", &self.destination)
            .field("envelope", &self.envelope)
            .finish()
    }
}

impl QueueEvent for QueuedEvent {
    fn scheme(&self) -> &str {
        &self.envelope.scheme
    }

    fn delivery_id(&self) -> Option<&str> {
        self.envelope.delivery_id.as_deref()
    }

    fn event_type(&self) -> Option<&str> {
        self.envelope.event_type.as_deref()
    }
}
