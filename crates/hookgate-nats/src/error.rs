//! The crate's error type.

/// Connecting to NATS, or setting up JetStream, failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A URL or setting is not usable, or an existing stream does not fit; the message says
    /// which and why.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// NATS or JetStream refused a request or could not be reached.
    #[error("nats: {0}")]
    Nats(String),
}

impl Error {
    pub(crate) fn nats(err: impl std::fmt::Display) -> Self {
        Error::Nats(err.to_string())
    }
}

impl From<hookgate_queue::ConfigError> for Error {
    fn from(err: hookgate_queue::ConfigError) -> Self {
        Error::Config(err.0)
    }
}
