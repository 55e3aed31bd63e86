//! Configuration errors (reported when a verifier is built) and the one-call error type.

use crate::reason::Rejection;

/// A verifier or signer could not be built from its configuration.
///
/// Reported at build time so that a bad secret or an unusable setting never becomes a panic
/// or a silently disabled check at request time. Messages name the key by position, never
/// by value.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No key was given.
    #[error("the keyring is empty: give at least one secret or public key")]
    EmptyKeyring,
    /// A key could not be decoded into the material the scheme needs.
    #[error("key {index} is not usable for scheme {scheme}: {problem}")]
    InvalidKey {
        /// Position of the key in the keyring.
        index: usize,
        /// The scheme id.
        scheme: String,
        /// What is wrong with it (never the key itself).
        problem: &'static str,
    },
    /// A tolerance of zero would reject every delivery; use `without_timestamp_check` to
    /// disable the window explicitly.
    #[error("a timestamp tolerance of zero is not allowed")]
    ZeroTolerance,
    /// The scheme signs the request URL, so the public URL must be configured.
    #[error("scheme {0} signs the request URL: configure the public URL the provider calls")]
    MissingUrl(String),
    /// The scheme id is not known.
    #[error("unknown scheme `{0}` (see `hookgate schemes`)")]
    UnknownScheme(String),
    /// A generic scheme's configuration is inconsistent.
    #[error("generic scheme: {0}")]
    Generic(String),
    /// The scheme has no signing side with the given key (for example a public key).
    #[error("scheme {0} cannot sign with this key: {1}")]
    CannotSign(String, &'static str),
    /// The verify token for a `GET` handshake is empty: any request without one would
    /// match it.
    #[error("the verify token is empty")]
    EmptyVerifyToken,
}

/// The error of the one-call [`verify`](crate::verify) API: either the delivery was rejected,
/// or the arguments did not make a usable verifier.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The delivery is not authentic, not fresh or not well-formed.
    #[error("webhook rejected: {0}")]
    Rejected(#[from] Rejection),
    /// The scheme, keys or options are unusable.
    #[error("configuration error: {0}")]
    Config(#[from] ConfigError),
}

impl Error {
    /// The rejection, when the delivery itself was at fault.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            Error::Rejected(r) => Some(r),
            Error::Config(_) => None,
        }
    }
}
