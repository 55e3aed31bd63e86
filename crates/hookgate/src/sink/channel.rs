//! The in-memory sink: a bounded Tokio channel, lost on crash.

use std::fmt;
use std::future::ready;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use super::{Handoff, Sink, SinkError};
use crate::event::VerifiedEvent;
use crate::gate::BoxFuture;

/// The largest capacity Tokio's channel accepts is `usize::MAX >> 3`; stay well below.
const MAX_CAPACITY: usize = usize::MAX >> 4;

/// A [`Sink`] that puts events on a bounded in-memory channel, read by a
/// [`ChannelReceiver`].
///
/// **Not durable.** An event is acknowledged to the sender as soon as it is in the channel;
/// if the process stops before your code has processed it, the event is lost and the sender
/// will not send it again. Use it in tests, in examples, or when losing events on a crash is
/// acceptable; otherwise use a durable sink (the SQLite inbox).
///
/// When the channel is full, [`enqueue`](Sink::enqueue) fails at once with
/// [`SinkErrorKind::Full`](super::SinkErrorKind::Full) (the sender gets 503 and retries)
/// rather than holding the sender's connection open; when the receiver is gone, with
/// [`SinkErrorKind::Unavailable`](super::SinkErrorKind::Unavailable).
///
/// ```
/// use hookgate::sink::ChannelSink;
///
/// let (sink, mut events) = ChannelSink::bounded(1024);
/// assert_eq!(sink.capacity(), 1024);
/// assert!(events.try_recv().is_none());
/// ```
#[derive(Clone)]
pub struct ChannelSink {
    sender: mpsc::Sender<VerifiedEvent>,
}

/// The receiving end of a [`ChannelSink`]: your worker reads verified events from it.
pub struct ChannelReceiver {
    receiver: mpsc::Receiver<VerifiedEvent>,
}

impl ChannelSink {
    /// A channel holding at most `capacity` events (clamped to at least 1), and its
    /// receiver.
    pub fn bounded(capacity: usize) -> (ChannelSink, ChannelReceiver) {
        let (sender, receiver) = mpsc::channel(capacity.clamp(1, MAX_CAPACITY));
        (ChannelSink { sender }, ChannelReceiver { receiver })
    }

    /// How many events the channel holds at most.
    pub fn capacity(&self) -> usize {
        self.sender.max_capacity()
    }

    /// How many events wait in the channel.
    pub fn len(&self) -> usize {
        self.sender
            .max_capacity()
            .saturating_sub(self.sender.capacity())
    }

    /// Whether no event waits in the channel.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the receiver is gone (every enqueue then fails as unavailable).
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

impl ChannelSink {
    fn send(&self, event: VerifiedEvent) -> Result<(), SinkError> {
        self.sender.try_send(event).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SinkError::full(),
            mpsc::error::TrySendError::Closed(_) => {
                SinkError::unavailable("the channel's receiver was dropped")
            }
        })
    }
}

impl Sink for ChannelSink {
    fn enqueue(&self, event: VerifiedEvent) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(ready(self.send(event)))
    }

    // Overridden only to save the default's second allocation.
    fn hand_off(&self, event: VerifiedEvent) -> BoxFuture<'_, Result<Handoff, SinkError>> {
        Box::pin(ready(self.send(event).map(|()| Handoff::Enqueued)))
    }
}

impl fmt::Debug for ChannelSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelSink")
            .field("capacity", &self.capacity())
            .field("len", &self.len())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl ChannelReceiver {
    /// Waits for the next event; `None` once every [`ChannelSink`] clone is dropped and the
    /// channel is empty.
    pub async fn recv(&mut self) -> Option<VerifiedEvent> {
        self.receiver.recv().await
    }

    /// The next event if one is waiting.
    pub fn try_recv(&mut self) -> Option<VerifiedEvent> {
        self.receiver.try_recv().ok()
    }

    /// Polls for the next event (for implementing a `Stream`).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<VerifiedEvent>> {
        self.receiver.poll_recv(cx)
    }

    /// How many events wait.
    pub fn len(&self) -> usize {
        self.receiver.len()
    }

    /// Whether no event waits.
    pub fn is_empty(&self) -> bool {
        self.receiver.is_empty()
    }

    /// Refuses further events (senders then fail as unavailable) while keeping those
    /// already queued readable: for a graceful shutdown.
    pub fn close(&mut self) {
        self.receiver.close();
    }

    /// The underlying Tokio receiver.
    pub fn into_inner(self) -> mpsc::Receiver<VerifiedEvent> {
        self.receiver
    }
}

impl fmt::Debug for ChannelReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelReceiver")
            .field("len", &self.receiver.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::SinkErrorKind;
    use crate::{FixedClock, SchemeId, SignRequest, Signer, Verifier};

    fn event(id: &str) -> VerifiedEvent {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let signed = Signer::new(SchemeId::StandardWebhooksV1, secret)
            .unwrap()
            .sign(&SignRequest::new("{}").id(id).timestamp(1_700_000_000))
            .unwrap();
        Verifier::builder(SchemeId::StandardWebhooksV1)
            .secret(secret)
            .clock(FixedClock::from_unix(1_700_000_000))
            .build()
            .unwrap()
            .verify(&signed.headers, signed.body)
            .unwrap()
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn full_then_closed() {
        block_on(async {
            let (sink, mut rx) = ChannelSink::bounded(1);
            assert!(sink.is_empty());
            sink.enqueue(event("msg_1")).await.unwrap();
            assert_eq!(sink.len(), 1);
            assert_eq!(rx.len(), 1);
            let err = sink.enqueue(event("msg_2")).await.unwrap_err();
            assert_eq!(err.kind(), SinkErrorKind::Full);
            assert_eq!(rx.recv().await.unwrap().delivery_id(), Some("msg_1"));
            assert!(rx.is_empty());
            drop(rx);
            assert!(sink.is_closed());
            let err = sink.enqueue(event("msg_3")).await.unwrap_err();
            assert_eq!(err.kind(), SinkErrorKind::Unavailable);
        });
    }

    #[test]
    fn capacity_is_clamped_and_close_keeps_queued_events() {
        block_on(async {
            let (sink, mut rx) = ChannelSink::bounded(0);
            assert_eq!(sink.capacity(), 1);
            sink.enqueue(event("msg_1")).await.unwrap();
            rx.close();
            assert_eq!(
                sink.enqueue(event("msg_2")).await.unwrap_err().kind(),
                SinkErrorKind::Unavailable
            );
            assert!(rx.try_recv().is_some());
            assert!(rx.recv().await.is_none());
            assert!(format!("{sink:?} {rx:?}").contains("ChannelSink"));
        });
    }
}
