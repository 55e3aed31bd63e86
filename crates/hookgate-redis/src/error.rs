//! The crate's error type.

/// Connecting, configuring or talking to Redis failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A URL or setting is not usable; the message says which and why.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Redis refused a command or could not be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

impl From<hookgate_queue::ConfigError> for Error {
    fn from(err: hookgate_queue::ConfigError) -> Self {
        Error::Config(err.0)
    }
}
