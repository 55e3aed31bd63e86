//! The in-process dedup store, on a bounded `moka` cache with per-entry lifetimes.

use std::fmt;
use std::future::ready;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::ops::compute::Op;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;
use sha2::{Digest, Sha256};

use super::{Claim, ClaimToken, DedupError, DedupStore, KeyState};
use crate::gate::BoxFuture;

/// Default lifetime of an uncommitted claim: 30 seconds.
///
/// It must outlive the gate's whole decision (10 s by default, the deadline after which a
/// claim is released anyway), so a slow but successful hand-off is not duplicated by a
/// concurrent retry; and it must be short next to the senders' retry schedules (seconds to
/// minutes), so that a process that died between claim and commit delays the retry that
/// follows by at most this long.
pub const DEFAULT_CLAIM_TTL: Duration = Duration::from_secs(30);

/// Default lifetime of a committed key: 72 hours, the longest retry horizon of common
/// senders (Stripe retries for up to 3 days; Prefinery 15 times over about 2 days).
pub const DEFAULT_COMMITTED_TTL: Duration = Duration::from_secs(72 * 60 * 60);

/// Default capacity: one million keys, about 440 MB when full (see
/// [`MemoryDedupStore::approximate_bytes_per_key`]); memory grows only with traffic.
pub const DEFAULT_MAX_KEYS: u64 = 1_000_000;

/// The longest lifetime accepted for either state: 365 days.
pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Resident memory one key costs, measured; see
/// [`MemoryDedupStore::approximate_bytes_per_key`].
const BYTES_PER_KEY: usize = 440;

/// A [`DedupStore`] in process memory, on a bounded [`moka`] cache.
///
/// - **Atomic claims.** A claim is moka's `entry().or_insert_with()` read with
///   `is_fresh()`, the only atomic insert-if-absent form: of any number of concurrent
///   claims of one key, exactly one gets [`Claim::New`].
/// - **Two lifetimes.** Claims expire after the claim TTL ([`DEFAULT_CLAIM_TTL`]),
///   committed keys after the committed TTL ([`DEFAULT_COMMITTED_TTL`]), through a
///   per-entry expiry.
/// - **Bounded.** At most `max_keys` keys ([`DEFAULT_MAX_KEYS`]); beyond that the least
///   recently used keys are evicted (LRU rather than moka's default TinyLFU, which could
///   refuse to admit a new claim). An evicted committed key means a late retry of that
///   delivery is enqueued again: the at-least-once contract holds, only the dedup is lost.
/// - **Fixed size per key.** Keys are held as the first 128 bits of the SHA-256 of the dedup
///   key: about 440 bytes each, whatever the key's length. Two different keys would be
///   confused with probability about n²/2¹²⁹ (10⁻²⁷ for a million keys).
/// - **Per process, lost on restart.** Replicas behind a load balancer need a shared store
///   (Redis) or a durable one (the SQLite inbox).
///
/// Cheap to clone: clones share the cache.
///
/// ```
/// use hookgate::dedup::{Claim, DedupStore, KeyState, MemoryDedupStore};
///
/// # tokio_test_block_on(async {
/// let store = MemoryDedupStore::new();
/// let Claim::New(token) = store.claim("stripe:id:evt_1").await? else { unreachable!() };
/// assert_eq!(store.claim("stripe:id:evt_1").await?, Claim::InFlight);
/// store.commit("stripe:id:evt_1", token).await?;
/// assert_eq!(store.claim("stripe:id:evt_1").await?, Claim::Duplicate);
/// assert_eq!(store.lookup("stripe:id:evt_1").await?, KeyState::Committed);
/// # Ok::<(), hookgate::dedup::DedupError>(())
/// # }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryDedupStore {
    cache: Cache<u128, Slot>,
    next_token: Arc<AtomicU64>,
    lifetimes: Lifetimes,
    max_keys: u64,
}

/// What the cache holds for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Claimed(u64),
    Committed,
}

#[derive(Debug, Clone, Copy)]
struct Lifetimes {
    claim: Duration,
    committed: Duration,
}

impl Lifetimes {
    fn of(&self, slot: &Slot) -> Duration {
        match slot {
            Slot::Claimed(_) => self.claim,
            Slot::Committed => self.committed,
        }
    }
}

impl Expiry<u128, Slot> for Lifetimes {
    fn expire_after_create(&self, _key: &u128, value: &Slot, _at: Instant) -> Option<Duration> {
        Some(self.of(value))
    }

    fn expire_after_update(
        &self,
        _key: &u128,
        value: &Slot,
        _at: Instant,
        _remaining: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.of(value))
    }
}

impl MemoryDedupStore {
    /// A store with the defaults: [`DEFAULT_MAX_KEYS`], [`DEFAULT_CLAIM_TTL`],
    /// [`DEFAULT_COMMITTED_TTL`].
    pub fn new() -> Self {
        Self::with_checked(
            DEFAULT_MAX_KEYS,
            Lifetimes {
                claim: DEFAULT_CLAIM_TTL,
                committed: DEFAULT_COMMITTED_TTL,
            },
        )
    }

    /// Starts a store with other limits.
    pub fn builder() -> MemoryDedupStoreBuilder {
        MemoryDedupStoreBuilder {
            max_keys: DEFAULT_MAX_KEYS,
            claim_ttl: DEFAULT_CLAIM_TTL,
            committed_ttl: DEFAULT_COMMITTED_TTL,
        }
    }

    fn with_checked(max_keys: u64, lifetimes: Lifetimes) -> Self {
        // The lifetimes were validated (non-zero, at most MAX_TTL), so moka never sees an
        // absurd duration.
        let cache = Cache::builder()
            .max_capacity(max_keys)
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(lifetimes)
            .build();
        MemoryDedupStore {
            cache,
            next_token: Arc::new(AtomicU64::new(1)),
            lifetimes,
            max_keys,
        }
    }

    /// How long an uncommitted claim lives.
    pub fn claim_ttl(&self) -> Duration {
        self.lifetimes.claim
    }

    /// How long a committed key lives.
    pub fn committed_ttl(&self) -> Duration {
        self.lifetimes.committed
    }

    /// The capacity in keys.
    pub fn max_keys(&self) -> u64 {
        self.max_keys
    }

    /// The number of keys held, claimed or committed. Approximate: moka applies insertions,
    /// expirations and evictions in batches; call
    /// [`run_pending_tasks`](Self::run_pending_tasks) first for an exact count.
    pub fn key_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Applies pending expirations and evictions now (moka otherwise does it in batches
    /// while the store is used).
    pub fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }

    /// An estimate of the memory one key costs, in bytes: 440.
    ///
    /// Keys are held as 128-bit digests, so every key costs the same whatever the length of
    /// its dedup key. The figure is the process's resident memory per key, measured with
    /// 10 000 to 1 000 000 committed keys on Linux with glibc's allocator (419 to 430
    /// bytes), rounded up. It covers moka's entry with its atomics, its hash-table slot, its
    /// nodes in the LRU and write-order queues and the timer wheel of the per-entry expiry,
    /// and the allocator's own headers and rounding (the bytes requested from the
    /// allocator are about 320 per key). It does not cover moka's fixed structures, which do
    /// not grow with the keys. A test re-measures it, so it stays honest across moka
    /// upgrades. One million keys take about 440 MB.
    pub fn approximate_bytes_per_key() -> usize {
        BYTES_PER_KEY
    }

    fn claim_now(&self, key: &str) -> Claim {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let entry = self
            .cache
            .entry(digest(key))
            .or_insert_with(|| Slot::Claimed(token));
        if entry.is_fresh() {
            return Claim::New(ClaimToken::new(token));
        }
        match entry.into_value() {
            Slot::Claimed(_) => Claim::InFlight,
            Slot::Committed => Claim::Duplicate,
        }
    }

    // Commit and release are compute operations, never a plain `insert`, so they read and
    // write the key under moka's per-key lock. They cannot interleave with a claim's
    // insert-if-absent except after a claim expired, which at worst lets a second copy
    // through: a duplicate, never a loss.
    fn commit_now(&self, key: &str) {
        self.cache
            .entry(digest(key))
            .and_compute_with(|existing| match existing {
                Some(entry) if *entry.value() == Slot::Committed => Op::Nop,
                _ => Op::Put(Slot::Committed),
            });
    }

    fn release_now(&self, key: &str, token: ClaimToken) {
        self.cache
            .entry(digest(key))
            .and_compute_with(|existing| match existing {
                Some(entry) if *entry.value() == Slot::Claimed(token.get()) => Op::Remove,
                _ => Op::Nop,
            });
    }

    fn lookup_now(&self, key: &str) -> KeyState {
        match self.cache.get(&digest(key)) {
            None => KeyState::Absent,
            Some(Slot::Claimed(_)) => KeyState::InFlight,
            Some(Slot::Committed) => KeyState::Committed,
        }
    }
}

/// The cache key of a dedup key: the first 128 bits of its SHA-256, so every key costs the
/// same memory whatever its length.
fn digest(key: &str) -> u128 {
    let hash = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 16];
    for (slot, byte) in first.iter_mut().zip(hash.iter()) {
        *slot = *byte;
    }
    u128::from_be_bytes(first)
}

impl Default for MemoryDedupStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryDedupStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryDedupStore")
            .field("keys", &self.cache.entry_count())
            .field("max_keys", &self.max_keys)
            .field("claim_ttl", &self.lifetimes.claim)
            .field("committed_ttl", &self.lifetimes.committed)
            .finish()
    }
}

impl DedupStore for MemoryDedupStore {
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Claim, DedupError>> {
        Box::pin(ready(Ok(self.claim_now(key))))
    }

    fn commit<'a>(
        &'a self,
        key: &'a str,
        _token: ClaimToken,
    ) -> BoxFuture<'a, Result<(), DedupError>> {
        self.commit_now(key);
        Box::pin(ready(Ok(())))
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        token: ClaimToken,
    ) -> BoxFuture<'a, Result<(), DedupError>> {
        self.release_now(key, token);
        Box::pin(ready(Ok(())))
    }

    fn lookup<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyState, DedupError>> {
        Box::pin(ready(Ok(self.lookup_now(key))))
    }
}

/// Builder of a [`MemoryDedupStore`]; every limit is checked by [`build`](Self::build).
#[derive(Debug, Clone)]
#[must_use]
pub struct MemoryDedupStoreBuilder {
    max_keys: u64,
    claim_ttl: Duration,
    committed_ttl: Duration,
}

impl MemoryDedupStoreBuilder {
    /// The capacity in keys (default [`DEFAULT_MAX_KEYS`]).
    pub fn max_keys(mut self, max_keys: u64) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// How long an uncommitted claim lives (default [`DEFAULT_CLAIM_TTL`]). Keep it longer
    /// than the gate's deadline.
    pub fn claim_ttl(mut self, ttl: Duration) -> Self {
        self.claim_ttl = ttl;
        self
    }

    /// How long a committed key lives (default [`DEFAULT_COMMITTED_TTL`]): the longest time
    /// after which your senders still retry or might replay.
    pub fn committed_ttl(mut self, ttl: Duration) -> Self {
        self.committed_ttl = ttl;
        self
    }

    /// Checks the limits and builds the store.
    ///
    /// ```
    /// use std::time::Duration;
    /// use hookgate::dedup::{DedupConfigError, MemoryDedupStore};
    ///
    /// let store = MemoryDedupStore::builder()
    ///     .max_keys(10_000)
    ///     .committed_ttl(Duration::from_secs(7 * 24 * 3600))
    ///     .build()?;
    /// assert_eq!(store.claim_ttl(), Duration::from_secs(30));
    ///
    /// let err = MemoryDedupStore::builder().claim_ttl(Duration::ZERO).build().unwrap_err();
    /// assert_eq!(err, DedupConfigError::ZeroTtl("claim"));
    /// # Ok::<(), DedupConfigError>(())
    /// ```
    ///
    /// # Errors
    /// [`DedupConfigError::ZeroCapacity`], [`DedupConfigError::ZeroTtl`],
    /// [`DedupConfigError::TtlTooLong`] (over [`MAX_TTL`]),
    /// [`DedupConfigError::ClaimOutlivesCommit`].
    pub fn build(self) -> Result<MemoryDedupStore, DedupConfigError> {
        if self.max_keys == 0 {
            return Err(DedupConfigError::ZeroCapacity);
        }
        for (which, ttl) in [("claim", self.claim_ttl), ("committed", self.committed_ttl)] {
            if ttl.is_zero() {
                return Err(DedupConfigError::ZeroTtl(which));
            }
            if ttl > MAX_TTL {
                return Err(DedupConfigError::TtlTooLong(which));
            }
        }
        if self.claim_ttl > self.committed_ttl {
            return Err(DedupConfigError::ClaimOutlivesCommit);
        }
        Ok(MemoryDedupStore::with_checked(
            self.max_keys,
            Lifetimes {
                claim: self.claim_ttl,
                committed: self.committed_ttl,
            },
        ))
    }
}

/// A [`MemoryDedupStore`] could not be built from its limits.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DedupConfigError {
    /// A capacity of zero keys would remember nothing.
    #[error("a dedup store needs room for at least one key")]
    ZeroCapacity,
    /// A lifetime (`claim` or `committed`) of zero.
    #[error("the {0} lifetime must not be zero")]
    ZeroTtl(&'static str),
    /// A lifetime (`claim` or `committed`) longer than [`MAX_TTL`].
    #[error("the {0} lifetime must not exceed 365 days")]
    TtlTooLong(&'static str),
    /// The claim lifetime is longer than the committed lifetime.
    #[error("the claim lifetime must not exceed the committed lifetime")]
    ClaimOutlivesCommit,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn claim_commit_release_follow_the_state_table() {
        block_on(async {
            let store = MemoryDedupStore::new();
            assert_eq!(store.lookup("k").await.unwrap(), KeyState::Absent);
            let Claim::New(first) = store.claim("k").await.unwrap() else {
                panic!("first claim is new")
            };
            assert_eq!(store.claim("k").await.unwrap(), Claim::InFlight);
            assert_eq!(store.lookup("k").await.unwrap(), KeyState::InFlight);

            // A stale token releases nothing; the right one releases.
            store.release("k", ClaimToken::new(0)).await.unwrap();
            assert_eq!(store.claim("k").await.unwrap(), Claim::InFlight);
            store.release("k", first).await.unwrap();
            assert_eq!(store.lookup("k").await.unwrap(), KeyState::Absent);

            let Claim::New(second) = store.claim("k").await.unwrap() else {
                panic!("claim after release is new")
            };
            assert_ne!(first, second);
            store.commit("k", second).await.unwrap();
            assert_eq!(store.claim("k").await.unwrap(), Claim::Duplicate);
            // Releasing a committed key does nothing.
            store.release("k", second).await.unwrap();
            assert_eq!(store.lookup("k").await.unwrap(), KeyState::Committed);
            // Committing twice is harmless.
            store.commit("k", second).await.unwrap();
            assert_eq!(store.claim("k").await.unwrap(), Claim::Duplicate);
        });
    }

    #[test]
    fn commit_succeeds_even_without_a_live_claim() {
        block_on(async {
            let store = MemoryDedupStore::new();
            store.commit("k", ClaimToken::new(42)).await.unwrap();
            assert_eq!(store.claim("k").await.unwrap(), Claim::Duplicate);
        });
    }

    #[test]
    fn concurrent_claims_have_exactly_one_winner() {
        let store = MemoryDedupStore::new();
        let barrier = std::sync::Barrier::new(8);
        let winners = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        (0..200)
                            .filter(|i| {
                                matches!(store.claim_now(&format!("key-{i}")), Claim::New(_))
                            })
                            .count()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .sum::<usize>()
        });
        assert_eq!(winners, 200);
    }

    #[test]
    fn claims_expire_and_committed_keys_outlive_them() {
        let store = MemoryDedupStore::builder()
            .claim_ttl(Duration::from_millis(30))
            .committed_ttl(Duration::from_secs(3600))
            .build()
            .unwrap();
        assert!(matches!(store.claim_now("claimed"), Claim::New(_)));
        let Claim::New(token) = store.claim_now("committed") else {
            panic!("new")
        };
        store.commit_now("committed");
        let _ = token;
        // Poll with a generous bound: the claim expires, the committed key does not.
        let mut expired = false;
        for _ in 0..2000 {
            std::thread::sleep(Duration::from_millis(10));
            if store.lookup_now("claimed") == KeyState::Absent {
                expired = true;
                break;
            }
        }
        assert!(expired, "the claim never expired");
        assert!(matches!(store.claim_now("claimed"), Claim::New(_)));
        assert_eq!(store.claim_now("committed"), Claim::Duplicate);
    }

    #[test]
    fn capacity_is_bounded_and_new_claims_are_always_admitted() {
        let store = MemoryDedupStore::builder().max_keys(100).build().unwrap();
        for i in 0..1000 {
            assert!(
                matches!(store.claim_now(&format!("k{i}")), Claim::New(_)),
                "claim {i}"
            );
            store.commit_now(&format!("k{i}"));
        }
        store.run_pending_tasks();
        assert!(store.key_count() <= 100, "{}", store.key_count());
        // The most recent key is still remembered.
        assert_eq!(store.claim_now("k999"), Claim::Duplicate);
    }

    #[test]
    fn bad_limits_are_errors_not_panics() {
        let b = MemoryDedupStore::builder;
        assert_eq!(
            b().max_keys(0).build().unwrap_err(),
            DedupConfigError::ZeroCapacity
        );
        assert_eq!(
            b().committed_ttl(Duration::ZERO).build().unwrap_err(),
            DedupConfigError::ZeroTtl("committed")
        );
        assert_eq!(
            b().committed_ttl(Duration::MAX).build().unwrap_err(),
            DedupConfigError::TtlTooLong("committed")
        );
        assert_eq!(
            b().claim_ttl(Duration::from_secs(u64::MAX))
                .build()
                .unwrap_err(),
            DedupConfigError::TtlTooLong("claim")
        );
        assert_eq!(
            b().claim_ttl(Duration::from_secs(7200))
                .committed_ttl(Duration::from_secs(3600))
                .build()
                .unwrap_err(),
            DedupConfigError::ClaimOutlivesCommit
        );
        assert!(b().committed_ttl(MAX_TTL).build().is_ok());
    }

    #[test]
    fn debug_shows_limits() {
        let text = format!("{:?}", MemoryDedupStore::default());
        assert!(text.contains("max_keys: 1000000"), "{text}");
        assert_eq!(MemoryDedupStore::approximate_bytes_per_key(), 440);
    }
}
