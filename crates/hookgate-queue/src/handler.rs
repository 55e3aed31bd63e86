//! The handler interface of the queue workers.

use std::future::Future;

use hookgate::BoxFuture;

use crate::{HandlerResult, QueuedEvent};

/// The user's processing of one event taken from a queue.
///
/// The same contract as the inbox's `Handler`, and the same [`HandlerResult`]: only the
/// event type differs ([`QueuedEvent`] instead of `InboxEvent`). Delivery is at least once,
/// so a handler must be idempotent; deduplicate on [`QueuedEvent::dedup_key`].
///
/// Any `async` closure or function taking a [`QueuedEvent`] and returning a
/// [`HandlerResult`], or a `Result<(), E>` with a displayable error (where `Err` means
/// "retry later"), is a handler:
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
pub trait Handler: Send + Sync + 'static {
    /// Processes one event. A panic counts as a failed attempt to retry.
    fn handle(&self, event: QueuedEvent) -> BoxFuture<'_, HandlerResult>;
}

impl<F, Fut, R> Handler for F
where
    F: Fn(QueuedEvent) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: Into<HandlerResult>,
{
    fn handle(&self, event: QueuedEvent) -> BoxFuture<'_, HandlerResult> {
        let fut = self(event);
        Box::pin(async move { fut.await.into() })
    }
}
