//! The future returned by the gate: ready at once for a rejection, boxed only when the
//! dedup store or the sink has to be asked.

use std::fmt;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll};

use super::BoxFuture;
use super::outcome::Outcome;

/// The decision about one delivery, resolving to an [`Outcome`].
///
/// Returned by [`Gate::receive`](crate::Gate::receive) and
/// [`Gate::verify_only`](crate::Gate::verify_only). It borrows nothing from the request (the
/// headers were read when the gate was called), so it is `Send + 'static` and can be stored
/// in an adapter's response future. A delivery rejected by verification is ready at once
/// and allocates nothing.
#[must_use = "the delivery is only decided when the future is awaited"]
pub struct ReceiveFuture {
    state: State,
}

enum State {
    Ready(Ready<Outcome>),
    Pending(BoxFuture<'static, Outcome>),
}

impl ReceiveFuture {
    pub(crate) fn ready(outcome: Outcome) -> Self {
        ReceiveFuture {
            state: State::Ready(ready(outcome)),
        }
    }

    pub(crate) fn pending(future: BoxFuture<'static, Outcome>) -> Self {
        ReceiveFuture {
            state: State::Pending(future),
        }
    }

    /// Whether the outcome is known without waiting (a rejection, or verify-only mode
    /// without a dedup store).
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready(_))
    }
}

impl Future for ReceiveFuture {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        match &mut self.state {
            State::Ready(outcome) => Pin::new(outcome).poll(cx),
            State::Pending(future) => future.as_mut().poll(cx),
        }
    }
}

impl fmt::Debug for ReceiveFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceiveFuture")
            .field("ready", &self.is_ready())
            .finish()
    }
}
