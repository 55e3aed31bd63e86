//! Deduplication: remember which deliveries were already handed off, so a retry or a replay
//! is answered without being enqueued twice.
//!
//! A [`DedupStore`] keeps one entry per [dedup key](crate::VerifiedEvent::dedup_key), in one
//! of two states with two lifetimes:
//!
//! | state | set by | lives for | a new [`claim`](DedupStore::claim) returns |
//! |---|---|---|---|
//! | *claimed* | [`claim`](DedupStore::claim) | the claim TTL (seconds; 30 s for [`MemoryDedupStore`]) | [`Claim::InFlight`] |
//! | *committed* | [`commit`](DedupStore::commit), once the sink has the event | the sender's retry horizon (72 h by default) | [`Claim::Duplicate`] |
//! | absent | never seen, [`release`](DedupStore::release)d, or expired | | [`Claim::New`] |
//!
//! The [`Gate`](crate::Gate) claims a key before it enqueues, commits after the sink said
//! yes and releases the claim when the sink said no. A claim that is never committed (the
//! process died, the deadline passed) expires on its own, so a crash can delay the sender's
//! retry by at most the claim TTL but never swallow it.
//!
//! Implementations: [`MemoryDedupStore`] (in-process, a sharded table of key digests), and in other crates the
//! SQLite inbox and a Redis store shared by a fleet. Write your own by implementing the four
//! methods; each returns a boxed future so the trait is object-safe
//! (`Arc<dyn DedupStore>`).

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use crate::gate::BoxFuture;

mod memory;

pub use memory::{
    DEFAULT_CLAIM_TTL, DEFAULT_COMMITTED_TTL, DEFAULT_MAX_KEYS, DedupConfigError, MAX_TTL,
    MemoryDedupStore, MemoryDedupStoreBuilder,
};

/// Remembers dedup keys with claim / commit / release semantics.
///
/// Every method must be safe to call concurrently for the same key; [`claim`](Self::claim)
/// must be an atomic insert-if-absent (exactly one of many concurrent callers gets
/// [`Claim::New`]).
///
/// # Errors
/// Every method fails with a [`DedupError`] when the store cannot be reached or cannot
/// answer. The gate fails closed: a failing store yields `503 dedup_unavailable` and nothing
/// is enqueued.
pub trait DedupStore: fmt::Debug + Send + Sync {
    /// Claims `key` for a hand-off, atomically: [`Claim::New`] with a token when the key was
    /// absent (the claim then lives for the store's short claim TTL), otherwise the state the
    /// key is in. A claim must not extend or replace an existing entry.
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Claim, DedupError>>;

    /// Marks `key` as handed off: the entry now lives for the long retry horizon.
    ///
    /// Called once the sink has the event, so it must succeed even when the claim expired or
    /// was taken over meanwhile (the event is durable either way); the token identifies the
    /// claim for stores that want to check it.
    fn commit<'a>(
        &'a self,
        key: &'a str,
        token: ClaimToken,
    ) -> BoxFuture<'a, Result<(), DedupError>>;

    /// Gives up the claim identified by `token` (the sink refused the event), so that the
    /// sender's retry is accepted at once. Must do nothing when the key is committed or
    /// claimed under another token.
    fn release<'a>(
        &'a self,
        key: &'a str,
        token: ClaimToken,
    ) -> BoxFuture<'a, Result<(), DedupError>>;

    /// Reads the state of `key` without changing it (used by the verify-only mode).
    fn lookup<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyState, DedupError>>;
}

/// The answer to [`DedupStore::claim`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Claim {
    /// The key was absent and is now claimed by the caller, who must enqueue the event and
    /// then [`commit`](DedupStore::commit), or [`release`](DedupStore::release) on failure.
    New(ClaimToken),
    /// Another caller holds a live claim: a copy of this delivery is being handed off right
    /// now and is not known to be durable yet.
    InFlight,
    /// The key is committed: a copy was already handed off. Nothing is to be enqueued.
    Duplicate,
}

/// The state of a key, as read by [`DedupStore::lookup`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyState {
    /// Never seen, released, expired or evicted.
    Absent,
    /// Claimed and not committed yet.
    InFlight,
    /// Committed: handed off already.
    Committed,
}

/// Identifies one claim, so that a late [`release`](DedupStore::release) cannot remove a
/// claim that someone else made after the first one expired.
///
/// Stores choose the value (a counter for an in-process store, random bits for a shared
/// one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClaimToken(u64);

impl ClaimToken {
    /// A token with the given value.
    pub const fn new(value: u64) -> Self {
        ClaimToken(value)
    }

    /// The token's value.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// A dedup store could not answer (unreachable, timed out internally, corrupt state).
///
/// It carries the underlying error for logs; the gate answers `503 dedup_unavailable`
/// whatever it is.
pub struct DedupError {
    source: Box<dyn StdError + Send + Sync>,
}

impl DedupError {
    /// Wraps the store's own error (or a message: `&str` and `String` convert).
    pub fn new(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        DedupError {
            source: source.into(),
        }
    }
}

impl fmt::Debug for DedupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DedupError").field(&self.source).finish()
    }
}

impl fmt::Display for DedupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dedup store unavailable: {}", self.source)
    }
}

impl StdError for DedupError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.source)
    }
}

impl<T: DedupStore + ?Sized> DedupStore for Arc<T> {
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Claim, DedupError>> {
        (**self).claim(key)
    }

    fn commit<'a>(
        &'a self,
        key: &'a str,
        token: ClaimToken,
    ) -> BoxFuture<'a, Result<(), DedupError>> {
        (**self).commit(key, token)
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        token: ClaimToken,
    ) -> BoxFuture<'a, Result<(), DedupError>> {
        (**self).release(key, token)
    }

    fn lookup<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyState, DedupError>> {
        (**self).lookup(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_source_and_tokens_round_trip() {
        let err = DedupError::new("connection refused");
        assert_eq!(
            err.to_string(),
            "dedup store unavailable: connection refused"
        );
        assert!(err.source().is_some());
        assert!(format!("{err:?}").contains("connection refused"));
        assert_eq!(ClaimToken::new(7).get(), 7);
    }

    #[test]
    fn the_trait_is_object_safe() {
        fn assert_object_safe(_: Option<Arc<dyn DedupStore>>) {}
        assert_object_safe(None);
    }
}
