//! The handler interface of the one worker loop.

use std::future::Future;

use hookgate::BoxFuture;

use crate::{HandlerResult, QueuedEvent};

/// The user's processing of one event taken from a queue.
///
/// `E` is the event type the queue hands over ([`Queue::Event`](crate::Queue::Event)):
/// [`QueuedEvent`] (the default) for the Redis, JetStream and PostgreSQL queues,
/// `hookgate_inbox::InboxEvent` for the SQLite inbox. Every queue answers the same
/// [`HandlerResult`], retried with the same [`RetryPolicy`](crate::RetryPolicy).
///
/// Delivery is at least once, so a handler must be idempotent; deduplicate on the event's
/// dedup key.
///
/// Any `async` closure or function taking the event and returning a [`HandlerResult`], or
/// a `Result<(), E>` with a displayable error (where `Err` means "retry later"), is a
/// handler:
///
/// ```
/// use hookgate_queue::{Handler, HandlerResult, QueuedEvent};
///
/// fn assert_handler(_: impl Handler) {}
///
/// assert_handler(|event: QueuedEvent| async move {
///     match event.event_type() {
///         Some("invoice.paid") => HandlerResult::Ok,
///         Some(other) => HandlerResult::fail(format!("unexpected event type {other}")),
///         None => HandlerResult::retry(),
///     }
/// });
/// assert_handler(|_event: QueuedEvent| async move { Ok::<(), std::io::Error>(()) });
/// ```
pub trait Handler<E = QueuedEvent>: Send + Sync + 'static {
    /// Processes one event. A panic counts as a failed attempt to retry.
    fn handle(&self, event: E) -> BoxFuture<'_, HandlerResult>;
}

impl<E, F, Fut, R> Handler<E> for F
where
    F: Fn(E) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: Into<HandlerResult>,
{
    fn handle(&self, event: E) -> BoxFuture<'_, HandlerResult> {
        let fut = self(event);
        Box::pin(async move { fut.await.into() })
    }
}
