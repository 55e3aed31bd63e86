//! The one error type of the inbox.

use std::sync::Arc;

/// Why an inbox operation failed.
///
/// Cheap to clone: one failed group commit is reported to every caller whose write it held.
#[non_exhaustive]
#[derive(Debug, Clone, thiserror::Error)]
pub enum InboxError {
    /// Too many writes are waiting for the database (see
    /// [`InboxBuilder::queue_capacity`](crate::InboxBuilder::queue_capacity)). Nothing was
    /// written; the sender should retry later.
    #[error("the inbox is full: too many writes are waiting")]
    Full,
    /// The inbox's writer thread has stopped (the inbox was closed, or the thread failed).
    #[error("the inbox is closed")]
    Closed,
    /// SQLite reported an error (I/O error, disk full, corrupt file, locked by another
    /// process for too long).
    #[error("inbox database error: {0}")]
    Database(#[source] Arc<rusqlite::Error>),
    /// A setting was out of range; the message names it.
    #[error("invalid inbox configuration: {0}")]
    Config(String),
    /// The database file was written by a newer version of hookgate-inbox.
    #[error(
        "the inbox database has schema version {found}, newer than the {supported} this version understands"
    )]
    SchemaTooNew {
        /// The version found in the file.
        found: i64,
        /// The newest version this build understands.
        supported: i64,
    },
    /// A stored row could not be decoded (for example an unknown status).
    #[error("corrupt inbox row: {0}")]
    Corrupt(String),
    /// The segment log, where enqueued events are made durable, could not be read or
    /// written (I/O error, disk full). After a failed write the log takes no more events
    /// until the inbox is opened again, which recovers everything that was acknowledged.
    #[error("inbox log error: {0}")]
    Log(#[source] Arc<std::io::Error>),
    /// Another open [`Inbox`](crate::Inbox) (in this process or another) holds this inbox's
    /// segment log: only that one takes new events. This one can still query the event log
    /// and run workers, replays and pruning.
    #[error("another open inbox holds this inbox's log and takes its events")]
    NotTheWriter,
    /// The work could not be run (the Tokio runtime is shutting down).
    #[error("inbox task failed: {0}")]
    Task(String),
}

impl From<rusqlite::Error> for InboxError {
    fn from(err: rusqlite::Error) -> Self {
        InboxError::Database(Arc::new(err))
    }
}

impl From<hookgate_queue::event_log::UnknownStatus> for InboxError {
    fn from(err: hookgate_queue::event_log::UnknownStatus) -> Self {
        InboxError::Corrupt(err.to_string())
    }
}

impl From<hookgate_queue::event_log::LogError> for InboxError {
    fn from(err: hookgate_queue::event_log::LogError) -> Self {
        match err {
            hookgate_queue::event_log::LogError::Invalid(message) => InboxError::Config(message),
            other => InboxError::Corrupt(other.to_string()),
        }
    }
}

impl From<InboxError> for hookgate_queue::event_log::LogError {
    fn from(err: InboxError) -> Self {
        match err {
            InboxError::Config(message) => hookgate_queue::event_log::LogError::Invalid(message),
            other => hookgate_queue::event_log::LogError::store(other),
        }
    }
}
