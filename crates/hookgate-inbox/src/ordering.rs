//! The ordering helper: the highest version applied per aggregate, so a handler can skip an
//! event older than what it already applied.
//!
//! Providers do not deliver in order: a retry of an old `customer.updated` can arrive after
//! a newer one. Give each aggregate (a customer, an order) a version — the provider's
//! sequence number, or the event's signed timestamp in milliseconds — and:
//!
//! 1. before applying, ask [`AggregateVersions::is_stale`] and skip a stale event;
//! 2. after applying, record the version with [`AggregateVersions::advance`].
//!
//! `advance` only moves forward (it keeps the maximum), atomically, so concurrent workers
//! cannot move a version back. Versions are kept until deleted with
//! [`AggregateVersions::forget`]; they are not pruned.

use std::fmt;
use std::time::SystemTime;

use rusqlite::{OptionalExtension, params};

use crate::time::to_millis;
use crate::{Inbox, InboxError};

/// Per-aggregate versions stored in the inbox database. Get one with
/// [`Inbox::versions`]; cheap to clone.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
/// # let dir = tempfile::tempdir()?;
/// use hookgate_inbox::{Advance, Inbox};
///
/// let inbox = Inbox::open(dir.path().join("inbox.db"))?;
/// let versions = inbox.versions();
/// assert_eq!(versions.advance("cus_1", 7).await?, Advance::Advanced { previous: None });
/// // An older event arrives late: skip it.
/// assert!(versions.is_stale("cus_1", 5).await?);
/// assert_eq!(versions.advance("cus_1", 5).await?, Advance::Stale { current: 7 });
/// assert_eq!(versions.current("cus_1").await?, Some(7));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct AggregateVersions {
    inbox: Inbox,
}

/// The answer of [`AggregateVersions::advance`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// The version was higher than the one stored (or none was) and is now recorded.
    Advanced {
        /// The version stored before.
        previous: Option<i64>,
    },
    /// The version was not higher than the stored one, which is unchanged.
    Stale {
        /// The version stored.
        current: i64,
    },
}

impl Advance {
    /// Whether the version was recorded.
    pub fn is_advanced(&self) -> bool {
        matches!(self, Advance::Advanced { .. })
    }
}

impl Inbox {
    /// The ordering helper over this inbox's database.
    pub fn versions(&self) -> AggregateVersions {
        AggregateVersions {
            inbox: self.clone(),
        }
    }
}

impl AggregateVersions {
    /// The highest version recorded for `aggregate`.
    ///
    /// # Errors
    /// [`InboxError::Database`].
    pub async fn current(&self, aggregate: &str) -> Result<Option<i64>, InboxError> {
        let aggregate = aggregate.to_owned();
        self.inbox
            .read(move |conn, _| {
                Ok(conn
                    .prepare_cached("SELECT version FROM aggregate_versions WHERE aggregate = ?1")?
                    .query_row(params![aggregate], |row| row.get(0))
                    .optional()?)
            })
            .await
    }

    /// Whether `version` is not newer than what was recorded for `aggregate` (an event with
    /// it can be skipped). False when nothing was recorded.
    ///
    /// # Errors
    /// [`InboxError::Database`].
    pub async fn is_stale(&self, aggregate: &str, version: i64) -> Result<bool, InboxError> {
        Ok(self
            .current(aggregate)
            .await?
            .is_some_and(|current| version <= current))
    }

    /// Records `version` for `aggregate` if it is higher than the recorded one, atomically
    /// and durably.
    ///
    /// # Errors
    /// [`InboxError::Closed`] or [`InboxError::Database`].
    pub async fn advance(&self, aggregate: &str, version: i64) -> Result<Advance, InboxError> {
        let aggregate = aggregate.to_owned();
        self.inbox
            .write(false, move |conn, now| {
                let previous: Option<i64> = conn
                    .prepare_cached("SELECT version FROM aggregate_versions WHERE aggregate = ?1")?
                    .query_row(params![aggregate], |row| row.get(0))
                    .optional()?;
                if let Some(current) = previous.filter(|current| version <= *current) {
                    return Ok(Advance::Stale { current });
                }
                conn.prepare_cached(
                    "INSERT INTO aggregate_versions (aggregate, version, updated_at)
                     VALUES (?1, ?2, ?3)
                     ON CONFLICT(aggregate) DO UPDATE SET version = excluded.version,
                                                          updated_at = excluded.updated_at",
                )?
                .execute(params![aggregate, version, now])?;
                Ok(Advance::Advanced { previous })
            })
            .await
    }

    /// [`advance`](Self::advance) with a time as the version (Unix milliseconds), such as
    /// the event's signed [`timestamp`](crate::InboxEvent::timestamp).
    ///
    /// # Errors
    /// As [`advance`](Self::advance).
    pub async fn advance_to_time(
        &self,
        aggregate: &str,
        at: SystemTime,
    ) -> Result<Advance, InboxError> {
        self.advance(aggregate, to_millis(at)).await
    }

    /// Deletes the version recorded for `aggregate`; returns whether there was one.
    ///
    /// # Errors
    /// [`InboxError::Closed`] or [`InboxError::Database`].
    pub async fn forget(&self, aggregate: &str) -> Result<bool, InboxError> {
        let aggregate = aggregate.to_owned();
        self.inbox
            .write(false, move |conn, _| {
                Ok(conn.execute(
                    "DELETE FROM aggregate_versions WHERE aggregate = ?1",
                    params![aggregate],
                )? > 0)
            })
            .await
    }
}

impl fmt::Debug for AggregateVersions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AggregateVersions")
            .field("path", &self.inbox.path())
            .finish()
    }
}
