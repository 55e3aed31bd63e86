//! Several keys per verifier, each with an optional expiry, so secrets rotate without downtime.

use std::sync::Arc;
use std::time::SystemTime;

use crate::secret::Secret;

/// One secret or public key, with a name and an optional not-after time.
///
/// During a rotation, add the new key and give the old one a not-after time: deliveries
/// signed with either verify until then, and only the new one afterwards.
#[derive(Debug, Clone)]
pub struct Key {
    pub(crate) id: Option<Arc<str>>,
    pub(crate) secret: Secret,
    pub(crate) not_after: Option<SystemTime>,
}

impl Key {
    /// A key from the secret or public key as the provider writes it (`whsec_…`, a token, …).
    pub fn new(secret: impl Into<Secret>) -> Self {
        Key {
            id: None,
            secret: secret.into(),
            not_after: None,
        }
    }

    /// Names the key, so a verified event says which key matched (default: its position).
    pub fn with_id(mut self, id: impl Into<Arc<str>>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The key stops verifying after this instant.
    pub fn not_after(mut self, at: SystemTime) -> Self {
        self.not_after = Some(at);
        self
    }

    /// Whether the key may still verify at `now`.
    pub fn is_live(&self, now: SystemTime) -> bool {
        self.not_after.is_none_or(|limit| now <= limit)
    }
}

impl<S: Into<Secret>> From<S> for Key {
    fn from(secret: S) -> Self {
        Key::new(secret)
    }
}

/// The keys a verifier tries, in order.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    pub(crate) keys: Vec<Key>,
}

impl Keyring {
    /// An empty keyring.
    pub fn new() -> Self {
        Keyring::default()
    }

    /// Adds a key.
    #[must_use]
    pub fn with(mut self, key: impl Into<Key>) -> Self {
        self.keys.push(key.into());
        self
    }

    /// Adds a key in place.
    pub fn push(&mut self, key: impl Into<Key>) {
        self.keys.push(key.into());
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there is no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter()
    }
}

impl<K: Into<Key>> FromIterator<K> for Keyring {
    fn from_iter<I: IntoIterator<Item = K>>(iter: I) -> Self {
        Keyring {
            keys: iter.into_iter().map(Into::into).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn keys_expire_after_not_after() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let key = Key::new("s").not_after(now);
        assert!(key.is_live(now));
        assert!(!key.is_live(now + Duration::from_secs(1)));
        assert!(Key::new("s").is_live(now));
        let ring: Keyring = ["a", "b"].into_iter().collect();
        assert_eq!(ring.len(), 2);
        assert!(!format!("{ring:?}").contains("\"a\""));
    }
}
