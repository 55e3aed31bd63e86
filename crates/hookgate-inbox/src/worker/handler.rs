//! The handler interface: what the user's code gets and what it answers.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hookgate::BoxFuture;

use crate::InboxEvent;

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

/// How an attempt ended.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerResult {
    /// Processed: the event is done.
    Ok,
    /// A transient failure: try again, after `after` if given, otherwise after the retry
    /// policy's backoff. Once the attempts run out the event becomes a dead letter.
    Retry {
        /// The delay before the next attempt (default: exponential backoff with jitter).
        after: Option<Duration>,
        /// What went wrong, for the event log.
        error: Option<String>,
    },
    /// A permanent failure: the event becomes a dead letter at once (it can be replayed).
    Fail(String),
}

impl HandlerResult {
    /// Retry after the policy's backoff.
    pub fn retry() -> Self {
        HandlerResult::Retry {
            after: None,
            error: None,
        }
    }

    /// Retry after `delay` (a provider's or a downstream service's `Retry-After`).
    pub fn retry_after(delay: Duration) -> Self {
        HandlerResult::Retry {
            after: Some(delay),
            error: None,
        }
    }

    /// Retry after the policy's backoff, recording `error` in the event log.
    pub fn retry_because(error: impl fmt::Display) -> Self {
        HandlerResult::Retry {
            after: None,
            error: Some(error.to_string()),
        }
    }

    /// Fail permanently with `reason`: the event goes to the dead letters.
    pub fn fail(reason: impl fmt::Display) -> Self {
        HandlerResult::Fail(reason.to_string())
    }
}

impl<E: fmt::Display> From<Result<(), E>> for HandlerResult {
    /// `Ok(())` is [`HandlerResult::Ok`]; `Err(e)` is a retry recording `e`.
    fn from(result: Result<(), E>) -> Self {
        match result {
            Ok(()) => HandlerResult::Ok,
            Err(err) => HandlerResult::retry_because(err),
        }
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
