//! The shared dedup store: one Redis key per dedup key, claimed with `SET NX PX`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use hookgate::BoxFuture;
use hookgate::dedup::{
    Claim, ClaimToken, DEFAULT_CLAIM_TTL, DEFAULT_COMMITTED_TTL, DedupError, DedupStore, KeyState,
    MAX_TTL,
};
use redis::aio::ConnectionManager;
use redis::{Client, Script};

use crate::Error;
use crate::url::{DEFAULT_RESPONSE_TIMEOUT, RedisUrl, connection};

/// Default prefix of the dedup keys in Redis.
pub const DEFAULT_DEDUP_PREFIX: &str = "hookgate:dedup:";

/// The value of a committed key.
const COMMITTED: &str = "done";
/// The value of a claimed key is this prefix and the claim token in hex.
const CLAIMED_PREFIX: &str = "c:";

/// Deletes the key only if it still holds the caller's claim.
const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// A [`DedupStore`] in Redis, shared by every replica of a fleet.
///
/// Each dedup key is one Redis string `<prefix><dedup key>`:
///
/// | step | command (one round trip) | value, lifetime |
/// |---|---|---|
/// | [`claim`](DedupStore::claim) | `MULTI; SET key c:<token> NX PX <claim ttl>; GET key; EXEC` | `c:<random 64-bit token, hex>`, the claim TTL (30 s) |
/// | [`commit`](DedupStore::commit) | `SET key done PX <committed ttl>` | `done`, the committed TTL (72 h) |
/// | [`release`](DedupStore::release) | a 3-line Lua script: `DEL` only if the value is still `c:<token>` | gone |
/// | [`lookup`](DedupStore::lookup) | `GET key` | |
///
/// The claim is Redis's atomic insert-if-absent: of any number of replicas claiming the
/// same key at once, exactly one gets [`Claim::New`]; the `GET` in the same transaction
/// tells the others whether the key is in flight or committed. Commit overwrites
/// unconditionally (it must succeed even if the claim expired: the event is in the sink by
/// then), and release never removes a committed key or someone else's claim. Works with
/// Redis 2.6.12 and later, and with any server speaking its protocol (Valkey, KeyDB,
/// Dragonfly).
///
/// **Failure.** Commands go over one multiplexed connection
/// ([`ConnectionManager`]) that reconnects by itself; while Redis is unreachable or slower
/// than the response timeout, every method fails with a [`DedupError`] and the gate
/// answers `503 dedup_unavailable` with `Retry-After` (fail closed). To keep accepting
/// deliveries through an outage instead, wrap it in a
/// [`FailOpenDedupStore`](crate::FailOpenDedupStore).
///
/// **Durability.** A committed key lost by Redis (no persistence, a failover before
/// replication) only means a late retry of that delivery is enqueued again: consumers
/// deduplicate anyway. An evicted key has the same effect, so give Redis a `maxmemory-policy`
/// of `noeviction` or `volatile-*` and room for one key per delivery over the committed TTL
/// (about 100 bytes each).
///
/// Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct RedisDedupStore {
    conn: ConnectionManager,
    prefix: Arc<str>,
    claim_ttl_ms: u64,
    committed_ttl_ms: u64,
    release: Arc<Script>,
}

impl RedisDedupStore {
    /// Connects with the defaults, reading optional settings from the URL's query:
    /// `prefix` ([`DEFAULT_DEDUP_PREFIX`]), `claim_ttl_ms` (30 000), `committed_ttl_ms`
    /// (72 h). Other query parameters (`protocol`) go to the `redis` crate.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), hookgate_redis::Error> {
    /// let store = hookgate_redis::RedisDedupStore::connect("redis://127.0.0.1:6379/?prefix=shop:dedup:").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] for a bad URL or setting, [`Error::Redis`] if Redis cannot be
    /// reached now.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let url = RedisUrl::parse(url, &["prefix", "claim_ttl_ms", "committed_ttl_ms"])?;
        let mut builder = RedisDedupStore::builder();
        if let Some(prefix) = url.param("prefix") {
            builder = builder.prefix(prefix);
        }
        if let Some(ttl) = url.millis("claim_ttl_ms")? {
            builder = builder.claim_ttl(ttl);
        }
        if let Some(ttl) = url.millis("committed_ttl_ms")? {
            builder = builder.committed_ttl(ttl);
        }
        builder.connect_client(url.client).await
    }

    /// Starts a store with other settings.
    pub fn builder() -> RedisDedupStoreBuilder {
        RedisDedupStoreBuilder {
            prefix: DEFAULT_DEDUP_PREFIX.to_owned(),
            claim_ttl: DEFAULT_CLAIM_TTL,
            committed_ttl: DEFAULT_COMMITTED_TTL,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
        }
    }

    /// The prefix of the keys in Redis.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// How long an uncommitted claim lives.
    pub fn claim_ttl(&self) -> Duration {
        Duration::from_millis(self.claim_ttl_ms)
    }

    /// How long a committed key lives.
    pub fn committed_ttl(&self) -> Duration {
        Duration::from_millis(self.committed_ttl_ms)
    }

    fn key(&self, dedup_key: &str) -> String {
        let mut key = String::with_capacity(self.prefix.len().saturating_add(dedup_key.len()));
        key.push_str(&self.prefix);
        key.push_str(dedup_key);
        key
    }

    async fn claim_key(&self, key: &str) -> Result<Claim, DedupError> {
        let token = ClaimToken::new(fastrand::u64(..));
        let value = claim_value(token);
        let (set, current): (Option<String>, Option<String>) = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(key)
            .arg(&value)
            .arg("NX")
            .arg("PX")
            .arg(self.claim_ttl_ms)
            .cmd("GET")
            .arg(key)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(DedupError::new)?;
        Ok(match (set, current.as_deref()) {
            (Some(_), _) => Claim::New(token),
            (None, Some(COMMITTED)) => Claim::Duplicate,
            // Claimed by someone else; `None` (expired between the two commands, which the
            // transaction rules out) would also be answered "retry later", the safe side.
            (None, _) => Claim::InFlight,
        })
    }

    async fn commit_key(&self, key: &str) -> Result<(), DedupError> {
        redis::cmd("SET")
            .arg(key)
            .arg(COMMITTED)
            .arg("PX")
            .arg(self.committed_ttl_ms)
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(DedupError::new)
    }

    async fn release_key(&self, key: &str, token: ClaimToken) -> Result<(), DedupError> {
        self.release
            .key(key)
            .arg(claim_value(token))
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(drop)
            .map_err(DedupError::new)
    }

    async fn lookup_key(&self, key: &str) -> Result<KeyState, DedupError> {
        let value: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(DedupError::new)?;
        Ok(match value.as_deref() {
            None => KeyState::Absent,
            Some(COMMITTED) => KeyState::Committed,
            Some(_) => KeyState::InFlight,
        })
    }
}

fn claim_value(token: ClaimToken) -> String {
    format!("{CLAIMED_PREFIX}{:016x}", token.get())
}

impl DedupStore for RedisDedupStore {
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Claim, DedupError>> {
        Box::pin(async move { self.claim_key(&self.key(key)).await })
    }

    fn commit<'a>(
        &'a self,
        key: &'a str,
        _token: ClaimToken,
    ) -> BoxFuture<'a, Result<(), DedupError>> {
        Box::pin(async move { self.commit_key(&self.key(key)).await })
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        token: ClaimToken,
    ) -> BoxFuture<'a, Result<(), DedupError>> {
        Box::pin(async move { self.release_key(&self.key(key), token).await })
    }

    fn lookup<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyState, DedupError>> {
        Box::pin(async move { self.lookup_key(&self.key(key)).await })
    }
}

impl fmt::Debug for RedisDedupStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisDedupStore")
            .field("prefix", &self.prefix)
            .field("claim_ttl_ms", &self.claim_ttl_ms)
            .field("committed_ttl_ms", &self.committed_ttl_ms)
            .finish_non_exhaustive()
    }
}

/// Settings of a [`RedisDedupStore`], checked when it connects.
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisDedupStoreBuilder {
    prefix: String,
    claim_ttl: Duration,
    committed_ttl: Duration,
    response_timeout: Duration,
}

impl RedisDedupStoreBuilder {
    /// The prefix of the keys (default [`DEFAULT_DEDUP_PREFIX`]): one per application
    /// sharing a Redis.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long an uncommitted claim lives (default 30 s, millisecond precision). Keep it
    /// longer than the gate's deadline.
    pub fn claim_ttl(mut self, ttl: Duration) -> Self {
        self.claim_ttl = ttl;
        self
    }

    /// How long a committed key lives (default 72 h): your senders' retry horizon.
    pub fn committed_ttl(mut self, ttl: Duration) -> Self {
        self.committed_ttl = ttl;
        self
    }

    /// How long to wait for Redis's answer before counting it as down (default
    /// [`DEFAULT_RESPONSE_TIMEOUT`](crate::DEFAULT_RESPONSE_TIMEOUT)).
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Connects to `url` (any query parameters go to the `redis` crate).
    ///
    /// # Errors
    /// [`Error::Config`] for a bad URL or setting, [`Error::Redis`] if Redis cannot be
    /// reached now.
    pub async fn connect(self, url: &str) -> Result<RedisDedupStore, Error> {
        let url = RedisUrl::parse(url, &[])?;
        self.connect_client(url.client).await
    }

    /// Builds the store on an existing connection (shared with other parts of the
    /// application; its own timeouts then apply).
    ///
    /// # Errors
    /// [`Error::Config`] for a setting out of range.
    pub fn build(self, conn: ConnectionManager) -> Result<RedisDedupStore, Error> {
        for (which, ttl) in [("claim", self.claim_ttl), ("committed", self.committed_ttl)] {
            if ttl < Duration::from_millis(1) {
                return Err(Error::Config(format!(
                    "the {which} TTL must be at least 1 ms"
                )));
            }
            if ttl > MAX_TTL {
                return Err(Error::Config(format!(
                    "the {which} TTL must not exceed 365 days"
                )));
            }
        }
        if self.claim_ttl > self.committed_ttl {
            return Err(Error::Config(
                "the claim TTL must not exceed the committed TTL".to_owned(),
            ));
        }
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Ok(RedisDedupStore {
            conn,
            prefix: Arc::from(self.prefix),
            claim_ttl_ms: millis(self.claim_ttl),
            committed_ttl_ms: millis(self.committed_ttl),
            release: Arc::new(Script::new(RELEASE_LUA)),
        })
    }

    async fn connect_client(self, client: Client) -> Result<RedisDedupStore, Error> {
        if self.response_timeout.is_zero() {
            return Err(Error::Config(
                "the response timeout must not be zero".to_owned(),
            ));
        }
        let conn = connection(client, self.response_timeout).await?;
        self.build(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_values_carry_the_token() {
        assert_eq!(claim_value(ClaimToken::new(255)), "c:00000000000000ff");
        assert_ne!(claim_value(ClaimToken::new(0)), COMMITTED);
    }
}
