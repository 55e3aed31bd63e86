//! The dedup keys of the inbox, all in memory: a sharded table of 128-bit key digests.
//!
//! Every key of the retry horizon (72 h by default) is here, not only those of events the
//! applier has not written to SQLite yet: an enqueue then decides "new or duplicate" with
//! one hash lookup under a shard lock, and never reads the database on the request path.
//! The table is rebuilt from SQLite's `dedup` table when the inbox opens (after the log's
//! unapplied records were applied). About 40–75 bytes per key (a 16-byte digest, a 16-byte
//! entry, the hash table's control byte and its spare room): 72 h of keys at 10 events per
//! second (2.6 M keys) take 100–200 MiB.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

const SHARDS: usize = 64;
/// The event id of an entry whose event is being appended (not yet durable).
const PENDING: i64 = -1;
/// The event id of a key committed without an event of this inbox (another sink's).
const NO_EVENT: i64 = 0;

/// The state of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyState {
    Absent,
    /// Its event is being appended; not durable yet.
    Pending,
    /// Durable, with its event's id when this inbox stored one.
    Stored(Option<i64>),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    event_id: i64,
    expires_ms: i64,
}

/// Digests are SHA-256 output, uniformly distributed and not chosen by anyone (dedup keys
/// are authenticated): their own low 64 bits are a good hash.
#[derive(Debug, Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u128(&mut self, value: u128) {
        // Truncation intended: the low half of a uniform digest.
        #[allow(clippy::cast_possible_truncation)]
        let low = value as u64;
        self.0 = low;
    }
}

type Shard = HashMap<u128, Entry, BuildHasherDefault<DigestHasher>>;

/// The in-memory dedup table.
#[derive(Debug)]
pub(crate) struct Keys {
    shards: [Mutex<Shard>; SHARDS],
    /// Woken whenever a pending entry is resolved (stored or given up).
    resolved: Notify,
}

impl Default for Keys {
    fn default() -> Self {
        Keys {
            shards: std::array::from_fn(|_| Mutex::new(Shard::default())),
            resolved: Notify::new(),
        }
    }
}

fn key(digest: &[u8; 16]) -> u128 {
    u128::from_le_bytes(*digest)
}

impl Keys {
    fn shard(&self, key: u128) -> MutexGuard<'_, Shard> {
        // The top bits pick the shard; the hasher uses the low ones.
        let index = usize::try_from(key >> 122).unwrap_or(0) % SHARDS;
        // In bounds: `index < SHARDS`, the array's length.
        #[allow(clippy::indexing_slicing)]
        let shard = &self.shards[index];
        shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reserves `digest` for a new event unless a live entry holds it; returns the state
    /// found (`Absent` means it is now reserved, pending, by the caller).
    pub(crate) fn reserve(&self, digest: &[u8; 16], now_ms: i64, expires_ms: i64) -> KeyState {
        let key = key(digest);
        let mut shard = self.shard(key);
        if let Some(found) = shard.get(&key).filter(|e| e.expires_ms > now_ms) {
            return state_of(*found);
        }
        shard.insert(
            key,
            Entry {
                event_id: PENDING,
                expires_ms,
            },
        );
        KeyState::Absent
    }

    /// Resolves the caller's reservation: stored as event `id`, or given up (`None`).
    pub(crate) fn resolve(&self, digest: &[u8; 16], id: Option<i64>) {
        self.resolve_quietly(digest, id);
        self.notify();
    }

    /// [`resolve`](Self::resolve) with `Some(id)`, without waking waiters: call
    /// [`notify`](Self::notify) after a batch of them.
    pub(crate) fn settle_quietly(&self, digest: &[u8; 16], id: i64) {
        self.resolve_quietly(digest, Some(id));
    }

    /// Wakes whoever waits for a pending key to settle.
    pub(crate) fn notify(&self) {
        self.resolved.notify_waiters();
    }

    fn resolve_quietly(&self, digest: &[u8; 16], id: Option<i64>) {
        let key = key(digest);
        let mut shard = self.shard(key);
        match (id, shard.get_mut(&key)) {
            (Some(id), Some(entry)) if entry.event_id == PENDING => entry.event_id = id,
            (None, Some(entry)) if entry.event_id == PENDING => {
                shard.remove(&key);
            }
            _ => {}
        }
    }

    /// Records a durable key (loaded at start, or committed for another sink).
    pub(crate) fn insert_stored(&self, digest: &[u8; 16], event_id: Option<i64>, expires_ms: i64) {
        let key = key(digest);
        let mut shard = self.shard(key);
        let entry = shard.entry(key).or_insert(Entry {
            event_id: event_id.unwrap_or(NO_EVENT),
            expires_ms,
        });
        if entry.event_id != PENDING {
            entry.expires_ms = entry.expires_ms.max(expires_ms);
        }
    }

    /// The state of `digest` now.
    pub(crate) fn state(&self, digest: &[u8; 16], now_ms: i64) -> KeyState {
        let key = key(digest);
        self.shard(key)
            .get(&key)
            .filter(|e| e.expires_ms > now_ms)
            .map_or(KeyState::Absent, |e| state_of(*e))
    }

    /// Waits until `digest` is no longer pending; returns its state then.
    pub(crate) async fn settled(&self, digest: &[u8; 16], now_ms: i64) -> KeyState {
        loop {
            let notified = self.resolved.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.state(digest, now_ms) {
                KeyState::Pending => notified.await,
                other => return other,
            }
        }
    }

    /// Drops expired entries; returns how many.
    pub(crate) fn sweep(&self, now_ms: i64) -> usize {
        let mut removed = 0usize;
        for shard in &self.shards {
            let mut shard = shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let before = shard.len();
            shard.retain(|_, e| e.event_id == PENDING || e.expires_ms > now_ms);
            removed = removed.saturating_add(before.saturating_sub(shard.len()));
        }
        removed
    }

    /// Keys held (live or not yet swept).
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                s.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .len()
            })
            .fold(0usize, usize::saturating_add)
    }
}

fn state_of(entry: Entry) -> KeyState {
    match entry.event_id {
        PENDING => KeyState::Pending,
        NO_EVENT => KeyState::Stored(None),
        id => KeyState::Stored(Some(id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::key_digest;

    #[test]
    fn a_reservation_is_pending_until_resolved_and_expires() {
        let keys = Keys::default();
        let d = key_digest("k");
        assert_eq!(keys.reserve(&d, 1_000, 2_000), KeyState::Absent);
        assert_eq!(keys.reserve(&d, 1_000, 2_000), KeyState::Pending);
        keys.resolve(&d, Some(7));
        assert_eq!(keys.reserve(&d, 1_500, 2_500), KeyState::Stored(Some(7)));
        assert_eq!(keys.state(&d, 1_999), KeyState::Stored(Some(7)));
        // Expired: free again, and swept.
        assert_eq!(keys.state(&d, 2_000), KeyState::Absent);
        assert_eq!(keys.sweep(2_000), 1);
        assert_eq!(keys.len(), 0);
        // A reservation given up frees the key.
        assert_eq!(keys.reserve(&d, 3_000, 4_000), KeyState::Absent);
        keys.resolve(&d, None);
        assert_eq!(keys.state(&d, 3_000), KeyState::Absent);
        // A key committed for another sink.
        keys.insert_stored(&key_digest("other"), None, 5_000);
        assert_eq!(
            keys.state(&key_digest("other"), 3_000),
            KeyState::Stored(None)
        );
    }

    #[tokio::test]
    async fn a_waiter_sees_the_pending_key_settle() {
        let keys = std::sync::Arc::new(Keys::default());
        let d = key_digest("k");
        assert_eq!(keys.reserve(&d, 1_000, 2_000), KeyState::Absent);
        let waiter = {
            let keys = keys.clone();
            tokio::spawn(async move { keys.settled(&d, 1_000).await })
        };
        tokio::task::yield_now().await;
        keys.resolve(&d, Some(3));
        assert_eq!(waiter.await.unwrap(), KeyState::Stored(Some(3)));
    }
}
