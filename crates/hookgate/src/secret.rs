//! Key material that never shows up in `Debug` output and is wiped from memory on drop.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// A secret or key as the provider hands it over (`whsec_…`, a token, a public key).
///
/// `Debug` prints `Secret(<redacted>)`; the bytes are zeroized when the value is dropped.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret string.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Zeroizing::new(value.into()))
    }

    /// The secret as written. Handle with care: do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret::new(value)
    }
}

/// The wrapped `Zeroizing<String>` wipes the bytes when a `Secret` is dropped.
impl ZeroizeOnDrop for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Decoded key bytes (an HMAC key or a private key seed), zeroized on drop.
#[derive(Clone)]
pub(crate) struct KeyBytes(Zeroizing<Vec<u8>>);

impl KeyBytes {
    pub(crate) fn new(bytes: Vec<u8>) -> Self {
        KeyBytes(Zeroizing::new(bytes))
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyBytes(<redacted>)")
    }
}

/// The wrapped `Zeroizing<Vec<u8>>` wipes the bytes when `KeyBytes` are dropped.
impl ZeroizeOnDrop for KeyBytes {}

impl Zeroize for KeyBytes {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let secret = Secret::new("whsec_supersecret");
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert!(!format!("{:?}", KeyBytes::new(b"abc".to_vec())).contains("abc"));
        assert_eq!(secret.expose(), "whsec_supersecret");
        fn wiped_on_drop<T: ZeroizeOnDrop>(_: &T) {}
        wiped_on_drop(&secret);
        wiped_on_drop(&KeyBytes::new(vec![1]));
    }
}
