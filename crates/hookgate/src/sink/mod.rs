//! Sinks: where the [`Gate`](crate::Gate) hands verified events over.
//!
//! A [`Sink`] answers [`enqueue`](Sink::enqueue) with `Ok` only once it *has* the event; for
//! a durable sink (the SQLite inbox, Redis Streams, NATS JetStream) that means written and
//! acknowledged, because the gate answers the sender 2xx right after, and the sender then
//! forgets the delivery. A sink that cannot take the event says why: [`SinkErrorKind::Full`]
//! (back-pressure) or [`SinkErrorKind::Unavailable`]; either way the sender gets `503` with
//! `Retry-After` and retries later.
//!
//! [`ChannelSink`] is the in-memory sink: a bounded Tokio channel. Events in it are **lost
//! if the process stops**, so it suits tests and users who accept that; everyone else wants
//! a durable sink.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use crate::event::VerifiedEvent;
use crate::gate::BoxFuture;
use crate::handshake::Handshake;

mod channel;

pub use channel::{ChannelReceiver, ChannelSink};

/// Takes verified events off the gate's hands.
///
/// The future returned by [`enqueue`](Self::enqueue) may be dropped before it completes (the
/// gate's deadline passed): the gate then answers 503 and the sender retries, so a sink that
/// did store the event in the meantime will see it again. That is the at-least-once
/// contract; consumers deduplicate by [`VerifiedEvent::dedup_key`].
pub trait Sink: fmt::Debug + Send + Sync {
    /// Hands `event` over. `Ok` means the sink has it, durably for a durable sink.
    ///
    /// # Errors
    /// A [`SinkError`] of kind [`Full`](SinkErrorKind::Full) when the sink refuses more work
    /// for now, [`Unavailable`](SinkErrorKind::Unavailable) when it cannot be reached or is
    /// closed.
    fn enqueue(&self, event: VerifiedEvent) -> BoxFuture<'_, Result<(), SinkError>>;

    /// What the gate calls: [`enqueue`](Self::enqueue), for a sink that can also tell that
    /// it holds an earlier copy already ([`Handoff::AlreadyStored`]). The SQLite inbox does:
    /// it checks its dedup table in the transaction that would store the event, so the
    /// gate's dedup store need not read the database first. The gate then answers
    /// `duplicate` instead of `accepted`.
    ///
    /// The default reports every successful `enqueue` as [`Handoff::Enqueued`].
    ///
    /// # Errors
    /// As [`enqueue`](Self::enqueue).
    fn hand_off(&self, event: VerifiedEvent) -> BoxFuture<'_, Result<Handoff, SinkError>> {
        let enqueue = self.enqueue(event);
        Box::pin(async move { enqueue.await.map(|()| Handoff::Enqueued) })
    }

    /// Told about a provider URL handshake the gate answered (never an event: it is not
    /// enqueued). A sink with an event log records it there, so an operator can see that
    /// the provider checked the URL; the gate answers the provider whatever this returns.
    ///
    /// The default does nothing.
    ///
    /// # Errors
    /// A [`SinkError`] when the record could not be written (logged by the gate).
    fn record_handshake(&self, handshake: Handshake) -> BoxFuture<'_, Result<(), SinkError>> {
        let _ = handshake;
        Box::pin(std::future::ready(Ok(())))
    }
}

/// What a sink did with an event it took: see [`Sink::hand_off`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Handoff {
    /// The event is in the sink now.
    Enqueued,
    /// The sink holds an earlier copy of this delivery (same dedup key) and did not store
    /// this one.
    AlreadyStored,
}

impl<T: Sink + ?Sized> Sink for Arc<T> {
    fn enqueue(&self, event: VerifiedEvent) -> BoxFuture<'_, Result<(), SinkError>> {
        (**self).enqueue(event)
    }

    fn hand_off(&self, event: VerifiedEvent) -> BoxFuture<'_, Result<Handoff, SinkError>> {
        (**self).hand_off(event)
    }

    fn record_handshake(&self, handshake: Handshake) -> BoxFuture<'_, Result<(), SinkError>> {
        (**self).record_handshake(handshake)
    }
}

/// Why a sink did not take an event.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SinkErrorKind {
    /// The sink is at capacity (back-pressure): answered `503 sink_full`.
    Full,
    /// The sink is down, unreachable or closed: answered `503 sink_unavailable`.
    Unavailable,
}

/// A sink refused an event: its [`kind`](Self::kind) and, for logs, the underlying error.
pub struct SinkError {
    kind: SinkErrorKind,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl SinkError {
    /// The sink is full (back-pressure).
    pub fn full() -> Self {
        SinkError {
            kind: SinkErrorKind::Full,
            source: None,
        }
    }

    /// The sink is unavailable, because of `source` (an error, or a message: `&str` and
    /// `String` convert).
    pub fn unavailable(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        SinkError {
            kind: SinkErrorKind::Unavailable,
            source: Some(source.into()),
        }
    }

    /// Why the event was refused.
    pub fn kind(&self) -> SinkErrorKind {
        self.kind
    }
}

impl fmt::Debug for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkError")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, &self.source) {
            (SinkErrorKind::Full, _) => f.write_str("sink full"),
            (SinkErrorKind::Unavailable, Some(source)) => {
                write!(f, "sink unavailable: {source}")
            }
            (SinkErrorKind::Unavailable, None) => f.write_str("sink unavailable"),
        }
    }
}

impl StdError for SinkError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_which_kind() {
        assert_eq!(SinkError::full().kind(), SinkErrorKind::Full);
        assert_eq!(SinkError::full().to_string(), "sink full");
        let down = SinkError::unavailable("disk on fire");
        assert_eq!(down.kind(), SinkErrorKind::Unavailable);
        assert_eq!(down.to_string(), "sink unavailable: disk on fire");
        assert!(down.source().is_some());
        assert!(SinkError::full().source().is_none());
    }

    #[test]
    fn the_trait_is_object_safe() {
        fn assert_object_safe(_: Option<Arc<dyn Sink>>) {}
        assert_object_safe(None);
    }
}
