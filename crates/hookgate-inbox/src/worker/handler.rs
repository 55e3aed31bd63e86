//! The handler interface: what the user's code gets and what it answers.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use hookgate::BoxFuture;

use crate::InboxEvent;
use hookgate_queue::HandlerResult;

/// The user's processing of one event.
///
/// Delivery is at least once: the same event can be handed over again after a failure, a
/// lease that expired, or a crash between the handler's success and its recording, so a
/// handler must be idempotent (check [`InboxEvent::attempt`], use the
/// [dedup key](InboxEvent::dedup_key) or the [ordering helper](crate::AggregateVersions)).
///
/// Any `async` closure or function taking an [`InboxEvent`] and returning a
/// [`HandlerResult`] — or a `Result<(), E>` with a displayable error, where `Err` means
/// "retry later" — is a handler:
///
/// ```
/// use hookgate_inbox::{Handler, HandlerResult, InboxEvent};
///
/// fn assert_handler(_: impl Handler) {}
///
/// assert_handler(|event: InboxEvent| async move {
///     match event.event_type() {
///         Some("invoice.paid") => HandlerResult::Ok,
///         Some(other) => HandlerResult::fail(format!("unexpected event type {other}")),
///         None => HandlerResult::retry(),
///     }
/// });
/// assert_handler(|_event: InboxEvent| async move { Ok::<(), std::io::Error>(()) });
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Processes one event. A panic counts as a failed attempt to retry.
    fn handle(&self, event: InboxEvent) -> BoxFuture<'_, HandlerResult>;
}

impl<F, Fut, R> Handler for F
where
    F: Fn(InboxEvent) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: Into<HandlerResult>,
{
    fn handle(&self, event: InboxEvent) -> BoxFuture<'_, HandlerResult> {
        let fut = self(event);
        Box::pin(async move { fut.await.into() })
    }
}

/// Runs a handler's future, turning a panic into `Err(())`.
pub(crate) struct CatchPanic<'a>(pub(crate) BoxFuture<'a, HandlerResult>);

impl Future for CatchPanic<'_> {
    type Output = Result<HandlerResult, ()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Ready(result)) => Poll::Ready(Ok(result)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}
