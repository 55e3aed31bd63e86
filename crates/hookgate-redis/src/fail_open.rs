//! The explicit opt-in to keep accepting deliveries while the shared dedup store is down.

use std::fmt;

use hookgate::BoxFuture;
use hookgate::dedup::{Claim, ClaimToken, DedupError, DedupStore, KeyState, MemoryDedupStore};

/// Counter of deliveries accepted on the local fallback store because the shared one
/// failed. No labels.
pub const FAIL_OPEN_METRIC: &str = "hookgate_dedup_fail_open_total";

/// A dedup store that **fails open**: when the primary (shared) store fails, it answers
/// from a local [`MemoryDedupStore`] instead of failing, so the gate keeps accepting
/// deliveries through an outage of the shared store.
///
/// The default everywhere in hookgate is to fail closed: a dedup store that cannot answer
/// makes the gate answer `503 dedup_unavailable`, the sender retries later, and nothing is
/// lost or duplicated. Wrapping a store in this type is the explicit opt-in to the
/// opposite trade-off, for when refusing webhooks is worse than processing some twice:
///
/// - while the primary fails, each replica deduplicates only against what **it** saw
///   during the outage, so a retry that lands on another replica (or a replica that
///   restarted) is enqueued again: consumers must be idempotent (they must be anyway);
/// - keys committed during the outage are written to the primary too when it answers, but
///   nothing is replayed into it afterwards;
/// - every delivery accepted through the fallback is counted in the
///   `hookgate_dedup_fail_open_total` counter ([`FAIL_OPEN_METRIC`]) and logged at WARN,
///   so the outage and its cost are visible.
///
/// The sink is not covered: if the queue itself is down, the gate still answers 503.
///
/// ```no_run
/// use hookgate_redis::{FailOpenDedupStore, RedisDedupStore};
///
/// # async fn run() -> Result<(), hookgate_redis::Error> {
/// let shared = RedisDedupStore::connect("redis://127.0.0.1:6379/").await?;
/// let store = FailOpenDedupStore::new(shared); // accepts through a Redis outage
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FailOpenDedupStore<P> {
    primary: P,
    fallback: MemoryDedupStore,
}

impl<P: DedupStore> FailOpenDedupStore<P> {
    /// Wraps `primary`, falling back to a [`MemoryDedupStore`] with the default limits.
    pub fn new(primary: P) -> Self {
        Self::with_fallback(primary, MemoryDedupStore::new())
    }

    /// Wraps `primary`, falling back to `fallback`.
    pub fn with_fallback(primary: P, fallback: MemoryDedupStore) -> Self {
        FailOpenDedupStore { primary, fallback }
    }

    /// The shared store.
    pub fn primary(&self) -> &P {
        &self.primary
    }

    /// The local store used while the primary fails.
    pub fn fallback(&self) -> &MemoryDedupStore {
        &self.fallback
    }

    /// Whether the key was claimed on the fallback (and not finished there).
    async fn claimed_locally(&self, key: &str) -> bool {
        matches!(self.fallback.lookup(key).await, Ok(KeyState::InFlight))
    }
}

impl<P: DedupStore> DedupStore for FailOpenDedupStore<P> {
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Claim, DedupError>> {
        Box::pin(async move {
            match self.primary.claim(key).await {
                Ok(claim) => Ok(claim),
                Err(err) => {
                    let claim = self.fallback.claim(key).await?;
                    if matches!(claim, Claim::New(_)) {
                        metrics::counter!(FAIL_OPEN_METRIC).increment(1);
                        tracing::warn!(
                            error = %err,
                            "shared dedup store failed; accepting on the local fallback (fail-open)"
                        );
                    }
                    Ok(claim)
                }
            }
        })
    }

    fn commit<'a>(
        &'a self,
        key: &'a str,
        token: ClaimToken,
    ) -> BoxFuture<'a, Result<(), DedupError>> {
        Box::pin(async move {
            if self.claimed_locally(key).await {
                // Claimed on the fallback: record it there, and in the shared store if it is
                // back (best effort).
                self.fallback.commit(key, token).await?;
                if let Err(err) = self.primary.commit(key, token).await {
                    tracing::debug!(error = %err, "fail-open commit not recorded in the shared store");
                }
                return Ok(());
            }
            self.primary.commit(key, token).await
        })
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        token: ClaimToken,
    ) -> BoxFuture<'a, Result<(), DedupError>> {
        Box::pin(async move {
            if self.claimed_locally(key).await {
                return self.fallback.release(key, token).await;
            }
            self.primary.release(key, token).await
        })
    }

    fn lookup<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyState, DedupError>> {
        Box::pin(async move {
            match self.primary.lookup(key).await {
                Ok(state) => Ok(state),
                Err(_) => self.fallback.lookup(key).await,
            }
        })
    }
}

impl<P: fmt::Debug> fmt::Debug for FailOpenDedupStore<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailOpenDedupStore")
            .field("primary", &self.primary)
            .field("fallback", &self.fallback)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// A store that fails while `down` is set, around a memory store.
    #[derive(Debug, Default)]
    struct Flaky {
        down: AtomicBool,
        inner: MemoryDedupStore,
    }

    impl Flaky {
        fn check(&self) -> Result<(), DedupError> {
            if self.down.load(Ordering::SeqCst) {
                Err(DedupError::new("connection refused"))
            } else {
                Ok(())
            }
        }
    }

    impl DedupStore for Flaky {
        fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Claim, DedupError>> {
            Box::pin(async move {
                self.check()?;
                self.inner.claim(key).await
            })
        }
        fn commit<'a>(
            &'a self,
            key: &'a str,
            token: ClaimToken,
        ) -> BoxFuture<'a, Result<(), DedupError>> {
            Box::pin(async move {
                self.check()?;
                self.inner.commit(key, token).await
            })
        }
        fn release<'a>(
            &'a self,
            key: &'a str,
            token: ClaimToken,
        ) -> BoxFuture<'a, Result<(), DedupError>> {
            Box::pin(async move {
                self.check()?;
                self.inner.release(key, token).await
            })
        }
        fn lookup<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyState, DedupError>> {
            Box::pin(async move {
                self.check()?;
                self.inner.lookup(key).await
            })
        }
    }

    #[tokio::test]
    async fn falls_back_only_while_the_primary_fails() {
        let primary = Arc::new(Flaky::default());
        let store = FailOpenDedupStore::new(primary.clone());

        // Up: the primary decides.
        let Claim::New(t) = store.claim("a").await.unwrap() else {
            panic!("new")
        };
        store.commit("a", t).await.unwrap();
        assert_eq!(
            primary.inner.lookup("a").await.unwrap(),
            KeyState::Committed
        );
        assert_eq!(
            store.fallback().lookup("a").await.unwrap(),
            KeyState::Absent
        );

        // Down: the fallback answers, and dedups what this replica saw.
        primary.down.store(true, Ordering::SeqCst);
        let Claim::New(t) = store.claim("b").await.unwrap() else {
            panic!("accepted while down")
        };
        assert_eq!(store.claim("b").await.unwrap(), Claim::InFlight);
        store.commit("b", t).await.unwrap();
        assert_eq!(store.claim("b").await.unwrap(), Claim::Duplicate);
        assert_eq!(store.lookup("b").await.unwrap(), KeyState::Committed);
        let Claim::New(t) = store.claim("c").await.unwrap() else {
            panic!("new")
        };
        store.release("c", t).await.unwrap();
        assert!(matches!(store.claim("c").await.unwrap(), Claim::New(_)));

        // Back up: the primary decides again; "b" was not replayed into it.
        primary.down.store(false, Ordering::SeqCst);
        assert!(matches!(store.claim("b").await.unwrap(), Claim::New(_)));
        assert_eq!(store.claim("a").await.unwrap(), Claim::Duplicate);
        assert!(format!("{store:?}").contains("FailOpenDedupStore"));
    }
}
