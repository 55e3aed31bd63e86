//! The event log: what arrived, when, from which scheme, with what status, how long it took
//! and what went wrong; dead letters, replay and pruning.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use hookgate_queue::QueuedEvent;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::store::{millis, queued_event};
use crate::{Error, PgStore};

/// Default most rows of one [`LogQuery`]: 100.
pub const DEFAULT_LOG_LIMIT: usize = 100;
/// Most rows one [`LogQuery`] may ask for: 10 000.
pub const MAX_LOG_LIMIT: usize = 10_000;
/// Most rows one pruning statement deletes; [`PgStore::prune`] repeats it until done.
const PRUNE_BATCH: i64 = 5_000;

/// The store's id for an event: increasing in arrival order, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(i64);

impl EventId {
    /// The id with the given value (as shown by the event log).
    pub const fn new(value: i64) -> Self {
        EventId(value)
    }

    /// The id's value.
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where an event is in its life: the same statuses as the SQLite inbox's.
///
/// ```text
///  received ──lease──▶ processing ──success──▶ processed ──(retention)──▶ pruned
///  queued   ──lease──▶     │  ▲
///  failed   ──due───▶      │  └──(lease expired: crash)── processing
///     ▲                    ├── retry ──▶ failed
///     │                    ├── permanent failure / attempts exhausted ──▶ dead
///     │                    └── given back at shutdown ──▶ queued
///  dead, processed ──(replay)──▶ queued
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Stored, waiting for its first attempt.
    Received,
    /// Waiting to be taken again without having failed: given back at shutdown, or
    /// replayed.
    Queued,
    /// Leased by a worker (whose lease expires if its process died).
    Processing,
    /// The handler succeeded; pruned after the retention.
    Processed,
    /// The last attempt failed; another is scheduled.
    Failed,
    /// Dead letter: a permanent failure, or the attempts ran out. Waits for a replay.
    Dead,
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Status; 6] = [
        Status::Received,
        Status::Queued,
        Status::Processing,
        Status::Processed,
        Status::Failed,
        Status::Dead,
    ];

    /// The name stored in the database and shown by the event log.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Received => "received",
            Status::Queued => "queued",
            Status::Processing => "processing",
            Status::Processed => "processed",
            Status::Failed => "failed",
            Status::Dead => "dead",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| Error::Corrupt(format!("unknown status {s:?}")))
    }
}

/// A filter over the event log; every condition given must hold. Newest events first.
///
/// Test deliveries are left out unless [`include_test`](Self::include_test) is set.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use hookgate_postgres::{LogQuery, Status};
///
/// let query = LogQuery::new()
///     .status(Status::Dead)
///     .event_type("invoice.paid")
///     .received_after(SystemTime::now() - Duration::from_secs(3600))
///     .limit(50);
/// # let _ = query;
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct LogQuery {
    statuses: Vec<Status>,
    received_after: Option<SystemTime>,
    received_before: Option<SystemTime>,
    event_type: Option<String>,
    delivery_id: Option<String>,
    scheme: Option<String>,
    include_test: bool,
    only_test: bool,
    before_id: Option<EventId>,
    limit: Option<usize>,
}

impl LogQuery {
    /// Every non-test event, newest first, [`DEFAULT_LOG_LIMIT`] at most.
    pub fn new() -> Self {
        LogQuery::default()
    }

    /// Only events in `status` (call again to accept several).
    pub fn status(mut self, status: Status) -> Self {
        self.statuses.push(status);
        self
    }

    /// Only events received at or after `at`.
    pub fn received_after(mut self, at: SystemTime) -> Self {
        self.received_after = Some(at);
        self
    }

    /// Only events received before `at`.
    pub fn received_before(mut self, at: SystemTime) -> Self {
        self.received_before = Some(at);
        self
    }

    /// Only events of this type.
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }

    /// Only events with this provider delivery id.
    pub fn delivery_id(mut self, delivery_id: impl Into<String>) -> Self {
        self.delivery_id = Some(delivery_id.into());
        self
    }

    /// Only events verified by this scheme (`stripe`, `github`, …).
    pub fn scheme(mut self, scheme: impl Into<String>) -> Self {
        self.scheme = Some(scheme.into());
        self
    }

    /// Includes test deliveries (left out by default).
    pub fn include_test(mut self, include: bool) -> Self {
        self.include_test = include;
        self
    }

    /// Only test deliveries.
    pub fn only_test(mut self) -> Self {
        self.only_test = true;
        self
    }

    /// Only events older than `id`: pass the last id of a page to get the next one.
    pub fn before_id(mut self, id: EventId) -> Self {
        self.before_id = Some(id);
        self
    }

    /// At most `limit` rows (default [`DEFAULT_LOG_LIMIT`], at most [`MAX_LOG_LIMIT`]).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The statement and its parameters, numbered in order.
    fn to_sql(&self, schema: &str) -> Result<(String, Vec<Box<dyn ToSql + Sync + Send>>), Error> {
        let limit = self.limit.unwrap_or(DEFAULT_LOG_LIMIT);
        if !(1..=MAX_LOG_LIMIT).contains(&limit) {
            return Err(Error::Config(format!(
                "a log query's limit must be between 1 and {MAX_LOG_LIMIT}, got {limit}"
            )));
        }
        let mut conditions: Vec<String> = Vec::new();
        let mut values: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        let mut push = |condition: &str, value: Box<dyn ToSql + Sync + Send>| {
            values.push(value);
            conditions.push(condition.replace('?', &format!("${}", values.len())));
        };
        if !self.statuses.is_empty() {
            let names: Vec<String> = self
                .statuses
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect();
            push("e.status = ANY(?::text[])", Box::new(names));
        }
        if let Some(at) = self.received_after {
            push("e.received_at >= ?", Box::new(at));
        }
        if let Some(at) = self.received_before {
            push("e.received_at < ?", Box::new(at));
        }
        if let Some(event_type) = &self.event_type {
            push("e.event_type = ?", Box::new(event_type.clone()));
        }
        if let Some(delivery_id) = &self.delivery_id {
            push("e.delivery_id = ?", Box::new(delivery_id.clone()));
        }
        if let Some(scheme) = &self.scheme {
            push("e.scheme = ?", Box::new(scheme.clone()));
        }
        if let Some(id) = self.before_id {
            push("e.id < ?", Box::new(id.get()));
        }
        if self.only_test {
            conditions.push("e.is_test".to_owned());
        } else if !self.include_test {
            conditions.push("NOT e.is_test".to_owned());
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        values.push(Box::new(i64::try_from(limit).unwrap_or(i64::MAX)));
        let limit_param = format!("LIMIT ${}", values.len());
        let sql = format!(
            "SELECT {LOG_COLUMNS} FROM {schema}.events e {filter} ORDER BY e.id DESC {limit_param}"
        );
        Ok((sql, values))
    }
}

/// One row of the event log. The body is not included: see [`PgStore::event`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The store's id.
    pub id: EventId,
    /// The authenticated dedup key.
    pub dedup_key: String,
    /// The scheme that verified it.
    pub scheme: String,
    /// The provider's delivery id, where the scheme carries one.
    pub delivery_id: Option<String>,
    /// The event type, where the scheme carries one.
    pub event_type: Option<String>,
    /// The signed timestamp, where the scheme has one.
    pub signed_at: Option<SystemTime>,
    /// When the gate accepted it.
    pub received_at: SystemTime,
    /// Where it is in its life.
    pub status: Status,
    /// Attempts started so far (an attempt cut short by a crash counts).
    pub attempts: u32,
    /// For `received`, `queued` and `failed`: when it may next be attempted.
    pub next_attempt_at: Option<SystemTime>,
    /// For `processing`: when the lease ends unless renewed.
    pub lease_until: Option<SystemTime>,
    /// When the last attempt started.
    pub started_at: Option<SystemTime>,
    /// When the last attempt ended.
    pub finished_at: Option<SystemTime>,
    /// How long the last attempt took, from lease to result.
    pub processing_duration: Option<Duration>,
    /// The last attempt's error, if it failed.
    pub last_error: Option<String>,
    /// For dead letters: when it died.
    pub dead_at: Option<SystemTime>,
    /// Whether it is flagged as a test delivery.
    pub is_test: bool,
    /// The body's size in bytes.
    pub body_len: u64,
}

const LOG_COLUMNS: &str = "e.id, e.dedup_key, e.scheme, e.delivery_id, e.event_type, \
    e.signed_at, e.received_at, e.status, e.attempts, e.due_at, e.started_at, e.finished_at, \
    e.duration_ms, e.last_error, e.dead_at, e.is_test, octet_length(e.body)";

fn entry_from_row(row: &Row) -> Result<LogEntry, Error> {
    let status: Status = row.try_get::<_, String>(7)?.parse()?;
    let due_at: Option<SystemTime> = row.try_get(9)?;
    let (next_attempt_at, lease_until) = match status {
        Status::Processing => (None, due_at),
        _ => (due_at, None),
    };
    Ok(LogEntry {
        id: EventId::new(row.try_get(0)?),
        dedup_key: row.try_get(1)?,
        scheme: row.try_get(2)?,
        delivery_id: row.try_get(3)?,
        event_type: row.try_get(4)?,
        signed_at: row.try_get(5)?,
        received_at: row.try_get(6)?,
        status,
        attempts: u32::try_from(row.try_get::<_, i32>(8)?).unwrap_or(0),
        next_attempt_at,
        lease_until,
        started_at: row.try_get(10)?,
        finished_at: row.try_get(11)?,
        processing_duration: row
            .try_get::<_, Option<i64>>(12)?
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
        last_error: row.try_get(13)?,
        dead_at: row.try_get(14)?,
        is_test: row.try_get(15)?,
        body_len: u64::try_from(row.try_get::<_, i32>(16)?).unwrap_or(0),
    })
}

/// How many events are in each status.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// Stored, not attempted yet.
    pub received: u64,
    /// Back in the queue after a release or a replay.
    pub queued: u64,
    /// Leased by a worker.
    pub processing: u64,
    /// Done (until pruned).
    pub processed: u64,
    /// Waiting for a retry.
    pub failed: u64,
    /// Dead letters.
    pub dead: u64,
}

impl StatusCounts {
    /// The count for `status`.
    pub fn get(&self, status: Status) -> u64 {
        match status {
            Status::Received => self.received,
            Status::Queued => self.queued,
            Status::Processing => self.processing,
            Status::Processed => self.processed,
            Status::Failed => self.failed,
            Status::Dead => self.dead,
        }
    }

    /// Events not finished yet (received, queued, processing or failed): the queue depth.
    pub fn pending(&self) -> u64 {
        self.received
            .saturating_add(self.queued)
            .saturating_add(self.processing)
            .saturating_add(self.failed)
    }

    /// All events held.
    pub fn total(&self) -> u64 {
        self.pending()
            .saturating_add(self.processed)
            .saturating_add(self.dead)
    }

    fn slot(&mut self, status: Status) -> &mut u64 {
        match status {
            Status::Received => &mut self.received,
            Status::Queued => &mut self.queued,
            Status::Processing => &mut self.processing,
            Status::Processed => &mut self.processed,
            Status::Failed => &mut self.failed,
            Status::Dead => &mut self.dead,
        }
    }
}

/// One attempt at processing an event.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Its number, from 1 (restarting after a replay).
    pub attempt: u32,
    /// When the event was leased for it.
    pub started_at: SystemTime,
    /// When its result was recorded.
    pub finished_at: SystemTime,
    /// `processed`, `retry` or `dead`.
    pub outcome: String,
    /// The error, if it failed.
    pub error: Option<String>,
}

/// What [`PgStore::prune`] deleted.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Processed events older than the retention, with their attempt history.
    pub events: u64,
    /// Dedup rows past the dedup horizon.
    pub dedup_keys: u64,
}

impl PgStore {
    /// The events matching `query`, newest first.
    ///
    /// # Errors
    /// [`Error::Config`] for a limit out of range; [`Error::Unavailable`],
    /// [`Error::Database`].
    pub async fn query(&self, query: LogQuery) -> Result<Vec<LogEntry>, Error> {
        let (sql, values) = query.to_sql(&self.inner.sql.schema)?;
        let params: Vec<&(dyn ToSql + Sync)> = values
            .iter()
            .map(|value| &**value as &(dyn ToSql + Sync))
            .collect();
        let rows = self.conn().await?.query(&sql, &params).await?;
        rows.iter().map(entry_from_row).collect()
    }

    /// The log entry of one event.
    ///
    /// # Errors
    /// [`Error::Unavailable`], [`Error::Database`].
    pub async fn entry(&self, id: EventId) -> Result<Option<LogEntry>, Error> {
        let sql = format!(
            "SELECT {LOG_COLUMNS} FROM {}.events e WHERE e.id = $1",
            self.inner.sql.schema
        );
        let rows = self.conn().await?.query(&sql, &[&id.get()]).await?;
        rows.first().map(entry_from_row).transpose()
    }

    /// One event with its body and headers, as a handler would receive it
    /// ([`QueuedEvent::attempt`] is the attempts made so far).
    ///
    /// # Errors
    /// [`Error::Unavailable`], [`Error::Database`], [`Error::Corrupt`].
    pub async fn event(&self, id: EventId) -> Result<Option<QueuedEvent>, Error> {
        let rows = self
            .conn()
            .await?
            .query(&self.inner.sql.event, &[&id.get()])
            .await?;
        rows.first().map(queued_event).transpose()
    }

    /// How many events are in each status (test deliveries included).
    ///
    /// # Errors
    /// [`Error::Unavailable`], [`Error::Database`].
    pub async fn status_counts(&self) -> Result<StatusCounts, Error> {
        let rows = self
            .conn()
            .await?
            .query(&self.inner.sql.status_counts, &[])
            .await?;
        let mut counts = StatusCounts::default();
        for row in rows {
            let status: Status = row.try_get::<_, String>(0)?.parse()?;
            *counts.slot(status) = u64::try_from(row.try_get::<_, i64>(1)?).unwrap_or(0);
        }
        Ok(counts)
    }

    /// The attempt history of one event, oldest first.
    ///
    /// # Errors
    /// [`Error::Unavailable`], [`Error::Database`].
    pub async fn attempts(&self, id: EventId) -> Result<Vec<Attempt>, Error> {
        let rows = self
            .conn()
            .await?
            .query(&self.inner.sql.attempts, &[&id.get()])
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Attempt {
                    attempt: u32::try_from(row.try_get::<_, i32>(0)?).unwrap_or(0),
                    started_at: row.try_get(1)?,
                    finished_at: row.try_get(2)?,
                    outcome: row.try_get(3)?,
                    error: row.try_get(4)?,
                })
            })
            .collect()
    }

    /// The newest `limit` dead letters (test deliveries included).
    ///
    /// # Errors
    /// As [`query`](Self::query).
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<LogEntry>, Error> {
        self.query(
            LogQuery::new()
                .status(Status::Dead)
                .include_test(true)
                .limit(limit),
        )
        .await
    }

    /// Puts every dead letter back in the queue (attempts start again from 1) and wakes
    /// the workers; returns how many.
    ///
    /// # Errors
    /// [`Error::Unavailable`], [`Error::Database`].
    pub async fn replay_dead_letters(&self) -> Result<u64, Error> {
        let mut conn = self.conn().await?;
        let replayed = conn.execute(&self.inner.sql.replay_dead, &[]).await?;
        if replayed > 0 {
            conn.query(&self.inner.sql.notify, &[]).await?;
        }
        Ok(replayed)
    }

    /// Puts one dead or processed event back in the queue (attempts start again from 1)
    /// and wakes the workers; `false` if it is neither (unknown, pending or running).
    ///
    /// # Errors
    /// [`Error::Unavailable`], [`Error::Database`].
    pub async fn replay(&self, id: EventId) -> Result<bool, Error> {
        let mut conn = self.conn().await?;
        let replayed = conn
            .execute(&self.inner.sql.replay_one, &[&id.get()])
            .await?;
        if replayed > 0 {
            conn.query(&self.inner.sql.notify, &[]).await?;
        }
        Ok(replayed > 0)
    }

    /// Flags (or unflags) an event as a test delivery; `false` if there is no such event.
    ///
    /// # Errors
    /// [`Error::Unavailable`], [`Error::Database`].
    pub async fn set_test(&self, id: EventId, is_test: bool) -> Result<bool, Error> {
        let changed = self
            .conn()
            .await?
            .execute(&self.inner.sql.set_test, &[&id.get(), &is_test])
            .await?;
        Ok(changed > 0)
    }

    /// Deletes processed events older than the retention (with their attempt history) and
    /// dedup rows past the dedup horizon, in batches. A [`PgWorker`](crate::PgWorker) calls
    /// it every [`prune_interval`](crate::PgWorkerBuilder::prune_interval).
    ///
    /// # Errors
    /// [`Error::Unavailable`], [`Error::Database`]; batches deleted before the error stay
    /// deleted.
    pub async fn prune(&self) -> Result<PruneReport, Error> {
        let mut conn = self.conn().await?;
        let mut report = PruneReport::default();
        let retention = millis(self.inner.retention);
        loop {
            let rows = conn
                .query(&self.inner.sql.prune_events, &[&retention, &PRUNE_BATCH])
                .await?;
            let deleted = rows
                .first()
                .map(|row| row.try_get::<_, i64>(0))
                .transpose()?
                .unwrap_or(0);
            report.events = report
                .events
                .saturating_add(u64::try_from(deleted).unwrap_or(0));
            if deleted < PRUNE_BATCH {
                break;
            }
        }
        loop {
            let deleted = conn
                .execute(&self.inner.sql.prune_dedup, &[&PRUNE_BATCH])
                .await?;
            report.dedup_keys = report.dedup_keys.saturating_add(deleted);
            if deleted < u64::try_from(PRUNE_BATCH).unwrap_or(0) {
                break;
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_sql_numbers_its_parameters() {
        let (sql, values) = LogQuery::new()
            .status(Status::Dead)
            .status(Status::Failed)
            .event_type("a")
            .delivery_id("d")
            .limit(5)
            .to_sql("\"hookgate\"")
            .unwrap();
        assert!(sql.contains("e.status = ANY($1::text[])"), "{sql}");
        assert!(sql.contains("e.event_type = $2"), "{sql}");
        assert!(sql.contains("e.delivery_id = $3"), "{sql}");
        assert!(sql.contains("NOT e.is_test"), "{sql}");
        assert!(sql.ends_with("ORDER BY e.id DESC LIMIT $4"), "{sql}");
        assert_eq!(values.len(), 4);
        assert!(LogQuery::new().limit(0).to_sql("s").is_err());
        assert!(
            LogQuery::new()
                .limit(MAX_LOG_LIMIT + 1)
                .to_sql("s")
                .is_err()
        );
    }

    #[test]
    fn statuses_round_trip() {
        for status in Status::ALL {
            assert_eq!(status.as_str().parse::<Status>().unwrap(), status);
        }
        assert!("nope".parse::<Status>().is_err());
    }
}
