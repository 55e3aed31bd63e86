//! The crate's error type.

/// Connecting, configuring or talking to PostgreSQL failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A URL or setting is not usable; the message says which and why.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// PostgreSQL refused a statement or the connection failed.
    #[error("postgres: {0}")]
    Database(#[from] tokio_postgres::Error),
    /// The write was made in one transaction with others (concurrent enqueues are
    /// batched, see [`PgStore::enqueue`](crate::PgStore::enqueue), and so are a worker's
    /// concurrent results) and PostgreSQL refused that transaction or the connection
    /// failed: none of them was written (if the connection broke during the `COMMIT`, the
    /// outcome is unknown for all of them). Each write of the batch gets this error,
    /// sharing the database's.
    #[error("postgres (a batch of {events} writes): {source}")]
    Batch {
        /// How many writes (enqueues, or a worker's results) the failed batch answered.
        events: usize,
        /// The database's error.
        source: std::sync::Arc<tokio_postgres::Error>,
    },
    /// No connection could be had in time: the server is unreachable or slower than the
    /// connect timeout, or every pooled connection stayed busy.
    #[error("postgres unavailable: {0}")]
    Unavailable(String),
    /// The schema was migrated by a newer hookgate than this build knows.
    #[error(
        "the hookgate schema is at version {found}, newer than this build supports ({supported}): upgrade hookgate"
    )]
    SchemaTooNew {
        /// The newest migration recorded in the database.
        found: i32,
        /// The newest migration this build has.
        supported: i32,
    },
    /// A stored row does not read back (changed by hand, or by an incompatible build).
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl From<hookgate_queue::ConfigError> for Error {
    fn from(err: hookgate_queue::ConfigError) -> Self {
        Error::Config(err.0)
    }
}

impl From<hookgate_queue::event_log::UnknownStatus> for Error {
    fn from(err: hookgate_queue::event_log::UnknownStatus) -> Self {
        Error::Corrupt(err.to_string())
    }
}

impl From<hookgate_queue::event_log::LogError> for Error {
    fn from(err: hookgate_queue::event_log::LogError) -> Self {
        match err {
            hookgate_queue::event_log::LogError::Invalid(message) => Error::Config(message),
            other => Error::Corrupt(other.to_string()),
        }
    }
}

impl From<Error> for hookgate_queue::event_log::LogError {
    fn from(err: Error) -> Self {
        match err {
            Error::Config(message) => hookgate_queue::event_log::LogError::Invalid(message),
            other => hookgate_queue::event_log::LogError::store(other),
        }
    }
}
