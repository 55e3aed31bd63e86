//! The in-process dedup store: a sharded table of 128-bit key digests.
//!
//! Why not a general-purpose cache (this store first ran on `moka`): a dedup store holds a
//! million keys for days, and moka spends about 420 bytes and two concurrent-map writes
//! (with their epoch-based reclamation and housekeeping) per key, which cost a quarter of the
//! gate's throughput and 400 MiB per million keys in `docs/BENCHMARKS.md`. What the store
//! needs is much narrower than a cache: an atomic insert-if-absent, two fixed lifetimes, and
//! eviction of the oldest key when full. A mutex per shard over a `HashMap` and a queue in
//! commit order gives exactly that in about 70 bytes per key.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::ready;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

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

/// Default capacity: one million committed keys, about 70 MB when full (see
/// [`MemoryDedupStore::approximate_bytes_per_key`]); memory grows only with traffic.
pub const DEFAULT_MAX_KEYS: u64 = 1_000_000;

/// The longest lifetime accepted for either state: 365 days.
pub const MAX_TTL: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Resident memory one committed key costs at most, measured; see
/// [`MemoryDedupStore::approximate_bytes_per_key`].
const BYTES_PER_KEY: usize = 96;

/// Independent tables, each behind its own mutex, so concurrent requests rarely wait for
/// one another. A power of two.
const MAX_SHARDS: u64 = 16;

/// A [`DedupStore`] in process memory.
///
/// - **Atomic claims.** A claim checks and inserts under its shard's mutex: of any number of
///   concurrent claims of one key, exactly one gets [`Claim::New`].
/// - **Two lifetimes.** Claims expire after the claim TTL ([`DEFAULT_CLAIM_TTL`]),
///   committed keys after the committed TTL ([`DEFAULT_COMMITTED_TTL`]), both to the
///   millisecond.
/// - **Bounded.** At most `max_keys` committed keys ([`DEFAULT_MAX_KEYS`]); beyond that the
///   oldest committed keys are evicted first (they are the closest to expiring anyway).
///   An evicted key means a late retry of that delivery is enqueued again: the
///   at-least-once contract holds, only the dedup is lost. Claims in flight are bounded by
///   the same number; past it, a claim fails and the gate answers `503 dedup_unavailable`.
/// - **Fixed size per key.** Keys are held as the first 128 bits of the SHA-256 of the dedup
///   key: at most about 96 bytes each (see
///   [`approximate_bytes_per_key`](Self::approximate_bytes_per_key)), whatever the key's
///   length. Two different keys would be confused with probability about n²/2¹²⁹ (10⁻²⁷
///   for a million keys).
/// - **Per process, lost on restart.** Replicas behind a load balancer need a shared store
///   (Redis) or a durable one (the SQLite inbox).
///
/// Cheap to clone: clones share the table.
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
    inner: Arc<Table>,
}

/// A dedup key's digest: the first 128 bits of its SHA-256.
type KeyDigest = [u8; 16];

/// Milliseconds since the table was created: the clock of every deadline.
type Millis = u64;

struct Table {
    shards: Box<[Mutex<Shard>]>,
    /// Keys each shard may hold, committed (and, separately, claimed).
    shard_capacity: usize,
    started: Instant,
    next_token: AtomicU64,
    lifetimes: Lifetimes,
    max_keys: u64,
}

/// The maps keep std's randomly keyed SipHash: a sender holding a secret could grind dedup
/// keys whose digests collide under a fixed hash, and slow every lookup down.
#[derive(Default)]
struct Shard {
    /// Committed keys and when they expire.
    committed: HashMap<KeyDigest, Millis>,
    /// The same keys in commit order, which is also expiry order (one lifetime for all):
    /// expiry and eviction both take from the front.
    order: VecDeque<KeyDigest>,
    /// Keys claimed and not committed yet: their token and when the claim expires.
    claims: HashMap<KeyDigest, (u64, Millis)>,
}

#[derive(Debug, Clone, Copy)]
struct Lifetimes {
    claim: Duration,
    committed: Duration,
}

impl Shard {
    fn is_committed(&self, key: &KeyDigest, now: Millis) -> bool {
        self.committed
            .get(key)
            .is_some_and(|&expires| expires > now)
    }

    fn is_claimed(&self, key: &KeyDigest, now: Millis) -> bool {
        self.claims
            .get(key)
            .is_some_and(|&(_, expires)| expires > now)
    }

    /// Drops the committed keys that expired by `now`, and the oldest ones beyond `keep`.
    fn expire_committed(&mut self, now: Millis, keep: usize) {
        while let Some(oldest) = self.order.front() {
            let expired = self.committed.get(oldest).is_none_or(|&e| e <= now);
            if !expired && self.order.len() <= keep {
                break;
            }
            if let Some(oldest) = self.order.pop_front() {
                self.committed.remove(&oldest);
            }
        }
    }

    fn expire_claims(&mut self, now: Millis) {
        self.claims.retain(|_, &mut (_, expires)| expires > now);
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
        // As many shards as fit, so that the shards' capacities add up to at most max_keys.
        let mut shards = MAX_SHARDS;
        while shards > 1 && shards > max_keys {
            shards /= 2;
        }
        let shard_capacity =
            usize::try_from(max_keys.checked_div(shards).unwrap_or(1)).unwrap_or(usize::MAX);
        let shards = (0..shards).map(|_| Mutex::new(Shard::default())).collect();
        MemoryDedupStore {
            inner: Arc::new(Table {
                shards,
                shard_capacity,
                started: Instant::now(),
                next_token: AtomicU64::new(1),
                lifetimes,
                max_keys,
            }),
        }
    }

    /// How long an uncommitted claim lives.
    pub fn claim_ttl(&self) -> Duration {
        self.inner.lifetimes.claim
    }

    /// How long a committed key lives.
    pub fn committed_ttl(&self) -> Duration {
        self.inner.lifetimes.committed
    }

    /// The capacity in committed keys.
    pub fn max_keys(&self) -> u64 {
        self.inner.max_keys
    }

    /// The number of keys held, claimed or committed. Expired keys are counted until they
    /// are dropped, which happens as the store is used; call
    /// [`run_pending_tasks`](Self::run_pending_tasks) first for an exact count.
    pub fn key_count(&self) -> u64 {
        let held: usize = self
            .inner
            .shards
            .iter()
            .map(|shard| {
                let shard = lock(shard);
                shard.committed.len().saturating_add(shard.claims.len())
            })
            .fold(0, usize::saturating_add);
        u64::try_from(held).unwrap_or(u64::MAX)
    }

    /// Drops every expired key and claim now (otherwise done as the store is used).
    pub fn run_pending_tasks(&self) {
        let now = self.inner.now();
        for shard in self.inner.shards.iter() {
            let mut shard = lock(shard);
            shard.expire_committed(now, self.inner.shard_capacity);
            shard.expire_claims(now);
        }
    }

    /// An upper estimate of the memory one committed key costs, in bytes: 96.
    ///
    /// Keys are held as 128-bit digests, so every key costs the same whatever the length of
    /// its dedup key: 24 bytes in a hash table that is between 44% and 88% full, plus 16
    /// bytes in the commit-order queue, whose buffer grows by doubling. So a key costs
    /// between about 45 and 90 bytes depending on where the tables are in their growth
    /// (69 measured with a million keys). A test re-measures the process's resident
    /// memory per key, so the figure stays honest. One million keys take at most about
    /// 96 MB.
    pub fn approximate_bytes_per_key() -> usize {
        BYTES_PER_KEY
    }

    fn claim_now(&self, key: &str) -> Result<Claim, DedupError> {
        let table = &*self.inner;
        let now = table.now();
        table.with_shard(&digest(key), |shard, key| {
            if shard.is_committed(key, now) {
                return Ok(Claim::Duplicate);
            }
            if shard.is_claimed(key, now) {
                return Ok(Claim::InFlight);
            }
            if shard.claims.len() >= table.shard_capacity {
                shard.expire_claims(now);
                if shard.claims.len() >= table.shard_capacity {
                    return Err(DedupError::new(
                        "the in-memory dedup store holds its maximum of claims in flight",
                    ));
                }
            }
            let token = table.next_token.fetch_add(1, Ordering::Relaxed);
            let expires = now.saturating_add(millis(table.lifetimes.claim));
            shard.claims.insert(*key, (token, expires));
            Ok(Claim::New(ClaimToken::new(token)))
        })
    }

    /// Commits whatever claim there is: the event is durable, so a concurrent claim that
    /// took over an expired one has nothing left to protect.
    fn commit_now(&self, key: &str) {
        let table = &*self.inner;
        let now = table.now();
        table.with_shard(&digest(key), |shard, key| {
            shard.claims.remove(key);
            if shard.is_committed(key, now) {
                return;
            }
            // Make room first: this also drops an expired entry of this very key, so the
            // queue holds each committed key exactly once.
            shard.expire_committed(now, table.shard_capacity.saturating_sub(1));
            let expires = now.saturating_add(millis(table.lifetimes.committed));
            shard.committed.insert(*key, expires);
            shard.order.push_back(*key);
        });
    }

    fn release_now(&self, key: &str, token: ClaimToken) {
        self.inner.with_shard(&digest(key), |shard, key| {
            if shard
                .claims
                .get(key)
                .is_some_and(|&(held, _)| held == token.get())
            {
                shard.claims.remove(key);
            }
        });
    }

    fn lookup_now(&self, key: &str) -> KeyState {
        let now = self.inner.now();
        self.inner.with_shard(&digest(key), |shard, key| {
            if shard.is_committed(key, now) {
                KeyState::Committed
            } else if shard.is_claimed(key, now) {
                KeyState::InFlight
            } else {
                KeyState::Absent
            }
        })
    }
}

impl Table {
    fn now(&self) -> Millis {
        millis(self.started.elapsed())
    }

    /// Runs `f` on the shard of `key`, under its lock.
    fn with_shard<R>(&self, key: &KeyDigest, f: impl FnOnce(&mut Shard, &KeyDigest) -> R) -> R {
        // The digest's last byte is uniformly distributed, and the shard count is a power
        // of two of at most 16, so the index is always in range.
        let index = usize::from(key[15]) & self.shards.len().saturating_sub(1);
        match self.shards.get(index) {
            Some(shard) => f(&mut lock(shard), key),
            // Unreachable; were it not, an empty shard only costs the dedup of this key.
            None => f(&mut Shard::default(), key),
        }
    }
}

/// A shard's lock. A panic while holding it cannot leave a shard half-updated in a way that
/// matters (each operation is a few map calls), so a poisoned lock is used as it is.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    shard.lock().unwrap_or_else(PoisonError::into_inner)
}

fn millis(duration: Duration) -> Millis {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The digest of a dedup key: the first 128 bits of its SHA-256, so every key costs the
/// same memory whatever its length.
fn digest(key: &str) -> KeyDigest {
    let hash = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 16];
    for (slot, byte) in first.iter_mut().zip(hash.iter()) {
        *slot = *byte;
    }
    first
}

impl Default for MemoryDedupStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryDedupStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryDedupStore")
            .field("keys", &self.key_count())
            .field("max_keys", &self.inner.max_keys)
            .field("claim_ttl", &self.inner.lifetimes.claim)
            .field("committed_ttl", &self.inner.lifetimes.committed)
            .finish()
    }
}

impl DedupStore for MemoryDedupStore {
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Claim, DedupError>> {
        Box::pin(ready(self.claim_now(key)))
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
                                matches!(store.claim_now(&format!("key-{i}")), Ok(Claim::New(_)))
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
        assert!(matches!(store.claim_now("claimed"), Ok(Claim::New(_))));
        let Ok(Claim::New(token)) = store.claim_now("committed") else {
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
        assert!(matches!(store.claim_now("claimed"), Ok(Claim::New(_))));
        assert_eq!(store.claim_now("committed").unwrap(), Claim::Duplicate);
    }

    #[test]
    fn capacity_is_bounded_and_new_claims_are_always_admitted() {
        let store = MemoryDedupStore::builder().max_keys(100).build().unwrap();
        for i in 0..1000 {
            assert!(
                matches!(store.claim_now(&format!("k{i}")), Ok(Claim::New(_))),
                "claim {i}"
            );
            store.commit_now(&format!("k{i}"));
        }
        store.run_pending_tasks();
        assert!(store.key_count() <= 100, "{}", store.key_count());
        // The most recent key is still remembered.
        assert_eq!(store.claim_now("k999").unwrap(), Claim::Duplicate);
    }

    #[test]
    fn committed_keys_expire_and_can_be_committed_again_once() {
        let store = MemoryDedupStore::builder()
            .claim_ttl(Duration::from_millis(300))
            .committed_ttl(Duration::from_millis(300))
            .build()
            .unwrap();
        store.commit_now("k");
        assert_eq!(store.lookup_now("k"), KeyState::Committed);
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(store.lookup_now("k"), KeyState::Absent);
        assert!(matches!(store.claim_now("k"), Ok(Claim::New(_))));
        store.commit_now("k");
        store.commit_now("k");
        assert_eq!(store.claim_now("k").unwrap(), Claim::Duplicate);
        // Each committed key sits in the commit-order queue exactly once.
        for shard in store.inner.shards.iter() {
            let shard = lock(shard);
            assert_eq!(shard.order.len(), shard.committed.len());
        }
        assert_eq!(store.key_count(), 1);
    }

    #[test]
    fn the_oldest_committed_keys_are_evicted_first() {
        let store = MemoryDedupStore::builder().max_keys(32).build().unwrap();
        for i in 0..10_000 {
            store.commit_now(&format!("k{i}"));
        }
        assert!(store.key_count() <= 32, "{}", store.key_count());
        assert_eq!(store.lookup_now("k0"), KeyState::Absent);
        // The newest key of every shard is kept.
        assert_eq!(store.lookup_now("k9999"), KeyState::Committed);
    }

    #[test]
    fn claims_in_flight_are_bounded_and_refused_with_an_error() {
        let store = MemoryDedupStore::builder()
            .max_keys(1)
            .claim_ttl(Duration::from_millis(300))
            .build()
            .unwrap();
        assert!(matches!(store.claim_now("a"), Ok(Claim::New(_))));
        let refused = store.claim_now("b").unwrap_err();
        assert!(
            refused.to_string().contains("claims in flight"),
            "{refused}"
        );
        // The claim expires, and room is made for the next one.
        std::thread::sleep(Duration::from_millis(400));
        assert!(matches!(store.claim_now("b"), Ok(Claim::New(_))));
    }

    #[test]
    fn small_capacities_are_not_exceeded() {
        for max_keys in [1_u64, 3, 15, 16, 17, 100] {
            let store = MemoryDedupStore::builder()
                .max_keys(max_keys)
                .build()
                .unwrap();
            for i in 0..1000 {
                store.commit_now(&format!("k{i}"));
            }
            assert!(
                store.key_count() <= max_keys,
                "{max_keys}: {}",
                store.key_count()
            );
            assert!(store.key_count() >= 1);
        }
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
        assert_eq!(MemoryDedupStore::approximate_bytes_per_key(), 96);
    }
}
