//! How one handler call ended: the answer every worker acts on, whichever queue it reads.

use std::fmt;
use std::time::Duration;

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
