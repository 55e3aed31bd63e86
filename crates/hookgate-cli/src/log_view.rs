//! One view of an event-log row and an attempt, whichever store they come from: the SQLite
//! inbox or the PostgreSQL store keep the same columns in types of their own (neither
//! backend crate may depend on the other), and `hookgate inbox` prints both alike.

use std::time::{Duration, SystemTime};

/// A row of the event log.
pub(crate) trait LogRow {
    fn id(&self) -> i64;
    fn status(&self) -> &'static str;
    fn scheme(&self) -> &str;
    fn dedup_key(&self) -> &str;
    fn delivery_id(&self) -> Option<&str>;
    fn event_type(&self) -> Option<&str>;
    fn signed_at(&self) -> Option<SystemTime>;
    fn received_at(&self) -> SystemTime;
    fn attempts(&self) -> u32;
    /// When it may next be attempted, for an event that waits for one.
    fn next_attempt_at(&self) -> Option<SystemTime>;
    /// Whether it waits for an attempt (received, queued or failed).
    fn waits(&self) -> bool;
    fn started_at(&self) -> Option<SystemTime>;
    fn finished_at(&self) -> Option<SystemTime>;
    fn processing_duration(&self) -> Option<Duration>;
    fn last_error(&self) -> Option<&str>;
    fn dead_at(&self) -> Option<SystemTime>;
    fn is_test(&self) -> bool;
    fn body_len(&self) -> u64;
}

/// One attempt of an event.
pub(crate) trait AttemptRow {
    fn attempt(&self) -> u32;
    fn started_at(&self) -> SystemTime;
    fn finished_at(&self) -> SystemTime;
    fn outcome(&self) -> &str;
    fn error(&self) -> Option<&str>;
}

/// How many events are in each status, then how many wait and how many there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) each: Vec<(&'static str, u64)>,
    pub(crate) pending: u64,
    pub(crate) total: u64,
}

/// The two stores' `LogEntry`, `Attempt` and `StatusCounts` have the same fields and
/// methods: one implementation each.
macro_rules! store_rows {
    ($store:ident) => {
        impl LogRow for $store::LogEntry {
            fn id(&self) -> i64 {
                self.id.get()
            }
            fn status(&self) -> &'static str {
                self.status.as_str()
            }
            fn scheme(&self) -> &str {
                &self.scheme
            }
            fn dedup_key(&self) -> &str {
                &self.dedup_key
            }
            fn delivery_id(&self) -> Option<&str> {
                self.delivery_id.as_deref()
            }
            fn event_type(&self) -> Option<&str> {
                self.event_type.as_deref()
            }
            fn signed_at(&self) -> Option<SystemTime> {
                self.signed_at
            }
            fn received_at(&self) -> SystemTime {
                self.received_at
            }
            fn attempts(&self) -> u32 {
                self.attempts
            }
            fn next_attempt_at(&self) -> Option<SystemTime> {
                self.next_attempt_at
            }
            fn waits(&self) -> bool {
                matches!(
                    self.status,
                    $store::Status::Failed | $store::Status::Queued | $store::Status::Received
                )
            }
            fn started_at(&self) -> Option<SystemTime> {
                self.started_at
            }
            fn finished_at(&self) -> Option<SystemTime> {
                self.finished_at
            }
            fn processing_duration(&self) -> Option<Duration> {
                self.processing_duration
            }
            fn last_error(&self) -> Option<&str> {
                self.last_error.as_deref()
            }
            fn dead_at(&self) -> Option<SystemTime> {
                self.dead_at
            }
            fn is_test(&self) -> bool {
                self.is_test
            }
            fn body_len(&self) -> u64 {
                self.body_len
            }
        }

        impl From<&$store::StatusCounts> for Counts {
            fn from(counts: &$store::StatusCounts) -> Self {
                Counts {
                    each: $store::Status::ALL
                        .iter()
                        .map(|&status| (status.as_str(), counts.get(status)))
                        .collect(),
                    pending: counts.pending(),
                    total: counts.total(),
                }
            }
        }

        impl AttemptRow for $store::Attempt {
            fn attempt(&self) -> u32 {
                self.attempt
            }
            fn started_at(&self) -> SystemTime {
                self.started_at
            }
            fn finished_at(&self) -> SystemTime {
                self.finished_at
            }
            fn outcome(&self) -> &str {
                &self.outcome
            }
            fn error(&self) -> Option<&str> {
                self.error.as_deref()
            }
        }
    };
}

store_rows!(hookgate_inbox);
store_rows!(hookgate_postgres);
