//! The inbox as a dedup store: claims in process memory, committed keys in the database
//! and, in the inbox that holds the segment log, every live key in memory too.
//!
//! A claim is an in-process entry with a short lifetime: it only has to stop concurrent
//! copies of a delivery while the first one is being stored, and a crash must drop it (a
//! claim that outlived its process would block the sender's retry). A committed key is
//! the 16-byte digest of the key stored with the event itself (in its log record, then in
//! its `state` row), so committing after an enqueue into this inbox costs nothing. When
//! another sink is used with this store, [`commit`](Inbox::commit_key) writes a `dedup` row
//! (keyed by the digest) instead.
//!
//! Across processes sharing one database file, claims are not shared; two processes can
//! then both accept the same delivery at the same moment, but the enqueue transaction checks
//! the dedup row again, so only one copy is stored and both answer 2xx after it is durable.
//!
//! When the inbox is also the sink ([`Inbox::gate`]), a claim does not read the database at
//! all: the enqueue transaction's own check finds an earlier copy and reports it to the gate
//! as [`Handoff::AlreadyStored`](hookgate::Handoff), which answers `duplicate`. That saves a
//! read (and a trip to a blocking thread) per delivery.

use hookgate::BoxFuture;
use hookgate::dedup::{Claim, ClaimToken, DedupError, DedupStore, KeyState};
use rusqlite::{OptionalExtension, params};

use crate::digest::key_digest;
use crate::inbox::ClaimAttempt;
use crate::keys::KeyState as MemoryKey;
use crate::time::add;
use crate::{Inbox, InboxError};

/// The answer to a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyClaim {
    /// Claimed, with this token.
    New(u64),
    /// Another request holds a live claim.
    InFlight,
    /// Stored already.
    Duplicate,
}

/// The state of a key, without changing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyLookup {
    Absent,
    InFlight,
    Committed,
}

impl Inbox {
    /// Claims `key` for a hand-off, unless it is claimed or stored already.
    pub(crate) async fn claim_key(&self, key: &str) -> Result<KeyClaim, InboxError> {
        let token = match self.claim_in_memory(key) {
            KeyClaim::New(token) => token,
            held => return Ok(held),
        };
        // Claimed first, checked second: a holder removes its claim only after its event
        // was committed, so a claim that succeeds here sees that commit.
        match self.is_committed(key).await {
            Ok(false) => Ok(KeyClaim::New(token)),
            Ok(true) => {
                self.claims().remove(key, token);
                Ok(KeyClaim::Duplicate)
            }
            Err(err) => {
                self.claims().remove(key, token);
                Err(err)
            }
        }
    }

    /// Claims `key` in memory only: for a gate whose sink is this inbox, whose enqueue
    /// checks the database itself.
    fn claim_in_memory(&self, key: &str) -> KeyClaim {
        let now = self.now_ms();
        let ttl = self.inner.config.claim_ttl;
        match self.claims().try_claim(key, now, ttl) {
            ClaimAttempt::Held => KeyClaim::InFlight,
            ClaimAttempt::New(token) => KeyClaim::New(token),
        }
    }

    /// Marks `key` as handed off. Free when this inbox stored the event; otherwise writes
    /// the dedup entry.
    pub(crate) async fn commit_key(&self, key: &str, token: u64) -> Result<(), InboxError> {
        if self.claims().remove(key, token) == Some(true) {
            return Ok(());
        }
        let digest = key_digest(key);
        let ttl = self.inner.config.committed_ttl;
        let expires = self
            .write(false, move |conn, now| {
                let expires = add(now, ttl);
                conn.prepare_cached(
                    "INSERT INTO dedup (digest, event_id, expires_at) VALUES (?1, NULL, ?2)
                 ON CONFLICT(digest) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)",
                )?
                .execute(params![&digest[..], expires])?;
                Ok(expires)
            })
            .await?;
        self.remember_key(&digest, expires);
        Ok(())
    }

    /// Gives up the claim made with `token`, if it still holds the key.
    pub(crate) fn release_key(&self, key: &str, token: u64) {
        self.claims().remove(key, token);
    }

    /// The state of `key`.
    pub(crate) async fn lookup_key(&self, key: &str) -> Result<KeyLookup, InboxError> {
        if self.holds_log() && self.key_state(&key_digest(key)) == MemoryKey::Pending {
            return Ok(KeyLookup::InFlight);
        }
        if self.is_committed(key).await? {
            return Ok(KeyLookup::Committed);
        }
        if self.claims().is_held(key, self.now_ms()) {
            return Ok(KeyLookup::InFlight);
        }
        Ok(KeyLookup::Absent)
    }

    /// Whether `key` is durably stored: from memory when this inbox holds the log (every
    /// live key is there), else from the database. There, the keys of stored events are
    /// in their `state` rows, which have no index on the digest (an index would put the
    /// random-keyed insert back on every event): the lookup of an inbox that does not
    /// hold the log reads `state` through. Only a second process using this file as the
    /// dedup store of another sink does that.
    async fn is_committed(&self, key: &str) -> Result<bool, InboxError> {
        let digest = key_digest(key);
        if self.holds_log() {
            return Ok(matches!(self.key_state(&digest), MemoryKey::Stored(_)));
        }
        self.read(move |conn, now| {
            Ok(conn
                .prepare_cached(
                    "SELECT 1 FROM dedup WHERE digest = ?1 AND expires_at > ?2
                     UNION ALL
                     SELECT 1 FROM state WHERE dedup_digest = ?1 AND dedup_expires_at > ?2
                     LIMIT 1",
                )?
                .query_row(params![&digest[..], now], |_| Ok(()))
                .optional()?
                .is_some())
        })
        .await
    }
}

impl From<KeyClaim> for Claim {
    fn from(claim: KeyClaim) -> Claim {
        match claim {
            KeyClaim::New(token) => Claim::New(ClaimToken::new(token)),
            KeyClaim::InFlight => Claim::InFlight,
            KeyClaim::Duplicate => Claim::Duplicate,
        }
    }
}

/// The inbox as the gate's dedup store. Pair it with the same inbox as the sink: the
/// commit is then free, because the enqueue already wrote the dedup entry.
impl DedupStore for Inbox {
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Claim, DedupError>> {
        Box::pin(async move {
            let claim = self.claim_key(key).await.map_err(DedupError::new)?;
            Ok(claim.into())
        })
    }

    fn commit<'a>(
        &'a self,
        key: &'a str,
        token: ClaimToken,
    ) -> BoxFuture<'a, Result<(), DedupError>> {
        Box::pin(async move {
            self.commit_key(key, token.get())
                .await
                .map_err(DedupError::new)
        })
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        token: ClaimToken,
    ) -> BoxFuture<'a, Result<(), DedupError>> {
        self.release_key(key, token.get());
        Box::pin(std::future::ready(Ok(())))
    }

    fn lookup<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyState, DedupError>> {
        Box::pin(async move {
            Ok(match self.lookup_key(key).await.map_err(DedupError::new)? {
                KeyLookup::Absent => KeyState::Absent,
                KeyLookup::InFlight => KeyState::InFlight,
                KeyLookup::Committed => KeyState::Committed,
            })
        })
    }
}

/// The dedup store of [`Inbox::gate`], whose sink is the same inbox: claims in memory only
/// (see the module documentation); everything else as [`Inbox`]'s.
#[derive(Debug, Clone)]
pub(crate) struct OwnSinkDedup(pub(crate) Inbox);

impl DedupStore for OwnSinkDedup {
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Claim, DedupError>> {
        Box::pin(std::future::ready(Ok(self.0.claim_in_memory(key).into())))
    }

    fn commit<'a>(
        &'a self,
        key: &'a str,
        token: ClaimToken,
    ) -> BoxFuture<'a, Result<(), DedupError>> {
        self.0.commit(key, token)
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        token: ClaimToken,
    ) -> BoxFuture<'a, Result<(), DedupError>> {
        self.0.release(key, token)
    }

    fn lookup<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyState, DedupError>> {
        self.0.lookup(key)
    }
}
