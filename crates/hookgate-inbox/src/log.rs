//! The event log: what arrived, when, from which scheme, with what status, how long it took
//! and what went wrong.

use std::time::{Duration, SystemTime};

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use crate::arrival::Order;
use crate::event::{EventId, InboxEvent, Status};
use crate::queue::{EVENT_COLUMNS, event_from_row};
use crate::time::{from_millis, to_millis};
use crate::{Inbox, InboxError};

/// Default most rows of one [`LogQuery`]: 100.
pub const DEFAULT_LOG_LIMIT: usize = 100;
/// Most rows one [`LogQuery`] may ask for: 10 000.
pub const MAX_LOG_LIMIT: usize = 10_000;

/// A filter over the event log; every condition given must hold. Newest events first.
///
/// Test deliveries are left out unless [`include_test`](Self::include_test) is set.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use hookgate_inbox::{LogQuery, Status};
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
    ///
    /// Delivery ids are not indexed (a random key would cost the writer a page per event),
    /// so this looks through the log from the newest event back: bound it with
    /// [`received_after`](Self::received_after) on a large inbox.
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

    fn to_sql(&self) -> Result<(String, Vec<Value>), InboxError> {
        self.to_sql_ordered(Order::Id)
    }

    /// The query in `order`; [`Order::Arrival`] is [`Inbox::query_by_arrival`]'s.
    pub(crate) fn to_sql_ordered(&self, order: Order) -> Result<(String, Vec<Value>), InboxError> {
        let limit = self.limit.unwrap_or(DEFAULT_LOG_LIMIT);
        if !(1..=MAX_LOG_LIMIT).contains(&limit) {
            return Err(InboxError::Config(format!(
                "a log query's limit must be between 1 and {MAX_LOG_LIMIT}, got {limit}"
            )));
        }
        // Dead letters alone, by id: walk the dead-letter table's key (one row per dead
        // event), a page at a time however many there are, instead of sorting them all
        // out of the status index (0.8 s for 500 k dead letters).
        let dead_only = order == Order::Id && self.statuses == [Status::Dead];
        let mut conditions: Vec<String> = Vec::new();
        let mut values: Vec<Value> = Vec::new();
        if !self.statuses.is_empty() {
            let mut placeholders = Vec::new();
            for status in &self.statuses {
                values.push(Value::Text(status.as_str().to_owned()));
                placeholders.push(format!("?{}", values.len()));
            }
            // Processed events are most of a log: walking the primary key newest first
            // finds a page of them at once, where the status index would have them all
            // sorted first (1.4 s at 1 M events). The other statuses are few: the index.
            let column = if dead_only || self.statuses.contains(&Status::Processed) {
                "+s.status"
            } else {
                "s.status"
            };
            conditions.push(format!("{column} IN ({})", placeholders.join(", ")));
        }
        let mut push = |condition: &str, value: Value, values: &mut Vec<Value>| {
            values.push(value);
            conditions.push(condition.replace('?', &format!("?{}", values.len())));
        };
        if let Some(at) = self.received_after {
            push(
                "e.received_at >= ?",
                Value::Integer(to_millis(at)),
                &mut values,
            );
        }
        if let Some(at) = self.received_before {
            push(
                "e.received_at < ?",
                Value::Integer(to_millis(at)),
                &mut values,
            );
        }
        if let Some(event_type) = &self.event_type {
            push(
                "e.event_type = ?",
                Value::Text(event_type.clone()),
                &mut values,
            );
        }
        if let Some(delivery_id) = &self.delivery_id {
            push(
                "e.delivery_id = ?",
                Value::Text(delivery_id.clone()),
                &mut values,
            );
        }
        if let Some(scheme) = &self.scheme {
            push("e.scheme = ?", Value::Text(scheme.clone()), &mut values);
        }
        if let Some(id) = self.before_id {
            let condition = if dead_only {
                "d.event_id < ?"
            } else {
                "e.id < ?"
            };
            push(condition, Value::Integer(id.get()), &mut values);
        }
        if self.only_test {
            conditions.push("s.is_test = 1".to_owned());
        } else if !self.include_test {
            conditions.push("s.is_test = 0".to_owned());
        }
        if let Order::Arrival(Some((at, id))) = order {
            values.push(Value::Integer(at));
            values.push(Value::Integer(id));
            let n = values.len();
            let at = n.saturating_sub(1);
            // First, so that SQLite takes it as the index range's upper bound (a later
            // `received_at < ?` would be, and a deep page would read the window above it).
            conditions.insert(0, format!("e.received_at <= ?{at}"));
            conditions.push(format!("(e.received_at, e.id) < (?{at}, ?{n})"));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let (from, order_by) = match order {
            Order::Id if dead_only => (
                "dead_letters d JOIN events e ON e.id = d.event_id JOIN state s ON s.id = e.id",
                "d.event_id DESC",
            ),
            Order::Id => (LOG_TABLES, "e.id DESC"),
            Order::Arrival(_) => (LOG_TABLES, "e.received_at DESC, e.id DESC"),
        };
        values.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        let sql = format!(
            "SELECT {LOG_COLUMNS} FROM {from} {filter} ORDER BY {order_by} LIMIT ?{}",
            values.len()
        );
        Ok((sql, values))
    }
}

/// One row of the event log. The body is not included: see [`Inbox::event`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The inbox's id.
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
    /// How long the last attempt's handler ran.
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

const LOG_COLUMNS: &str = "e.id, e.dedup_key, e.scheme, e.delivery_id, e.event_type,
    e.signed_at, e.received_at, s.status, s.attempts, s.due_at, s.started_at, s.finished_at,
    s.duration_ms, s.last_error, d.dead_at, s.is_test, length(e.body)";

/// What arrived (`e`), its state (`s`) and, for dead letters, when it died (`d`).
const LOG_TABLES: &str = "events e JOIN state s ON s.id = e.id
    LEFT JOIN dead_letters d ON d.event_id = e.id";

pub(crate) fn entry_from_row(row: &Row<'_>) -> rusqlite::Result<Result<LogEntry, InboxError>> {
    let status: String = row.get(7)?;
    let status = match status.parse::<Status>() {
        Ok(status) => status,
        Err(err) => return Ok(Err(err)),
    };
    let due_at: Option<SystemTime> = row.get::<_, Option<i64>>(9)?.map(from_millis);
    let (next_attempt_at, lease_until) = match status {
        Status::Processing => (None, due_at),
        _ => (due_at, None),
    };
    let time = |i: usize| -> rusqlite::Result<Option<SystemTime>> {
        Ok(row.get::<_, Option<i64>>(i)?.map(from_millis))
    };
    Ok(Ok(LogEntry {
        id: EventId::new(row.get(0)?),
        dedup_key: row.get(1)?,
        scheme: row.get(2)?,
        delivery_id: row.get(3)?,
        event_type: row.get(4)?,
        signed_at: time(5)?,
        received_at: from_millis(row.get(6)?),
        status,
        attempts: u32::try_from(row.get::<_, i64>(8)?).unwrap_or(0),
        next_attempt_at,
        lease_until,
        started_at: time(10)?,
        finished_at: time(11)?,
        processing_duration: row
            .get::<_, Option<i64>>(12)?
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
        last_error: row.get(13)?,
        dead_at: time(14)?,
        is_test: row.get(15)?,
        body_len: u64::try_from(row.get::<_, i64>(16)?).unwrap_or(0),
    }))
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
    /// When the handler started.
    pub started_at: SystemTime,
    /// When the attempt was recorded as finished.
    pub finished_at: SystemTime,
    /// `processed`, `retry` or `dead`.
    pub outcome: String,
    /// The error, if it failed.
    pub error: Option<String>,
}

impl Inbox {
    /// The events matching `query`, newest first.
    ///
    /// # Errors
    /// [`InboxError::Config`] for a limit out of range, [`InboxError::Database`].
    pub async fn query(&self, query: LogQuery) -> Result<Vec<LogEntry>, InboxError> {
        let (sql, values) = query.to_sql()?;
        self.read(move |conn, _| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(values), entry_from_row)?;
            let mut entries = Vec::new();
            for row in rows {
                entries.push(row??);
            }
            Ok(entries)
        })
        .await
    }

    /// The log entry of one event.
    ///
    /// # Errors
    /// [`InboxError::Database`].
    pub async fn entry(&self, id: EventId) -> Result<Option<LogEntry>, InboxError> {
        self.read(move |conn, _| {
            let sql = format!("SELECT {LOG_COLUMNS} FROM {LOG_TABLES} WHERE e.id = ?1");
            conn.prepare_cached(&sql)?
                .query_row(params![id.get()], entry_from_row)
                .optional()?
                .transpose()
        })
        .await
    }

    /// One event with its body, as a handler would receive it (`attempt` is the attempts
    /// made so far).
    ///
    /// # Errors
    /// [`InboxError::Database`].
    pub async fn event(&self, id: EventId) -> Result<Option<InboxEvent>, InboxError> {
        self.read(move |conn, _| read_event(conn, id)).await
    }

    /// How many events are in each status (test deliveries included).
    ///
    /// # Errors
    /// [`InboxError::Database`].
    pub async fn status_counts(&self) -> Result<StatusCounts, InboxError> {
        self.read(|conn, _| {
            let mut counts = StatusCounts::default();
            let mut stmt =
                conn.prepare_cached("SELECT status, count(*) FROM state GROUP BY status")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let status: String = row.get(0)?;
                let count: i64 = row.get(1)?;
                *counts.slot(status.parse()?) = u64::try_from(count).unwrap_or(0);
            }
            Ok(counts)
        })
        .await
    }

    /// The attempt history of one event, oldest first.
    ///
    /// # Errors
    /// [`InboxError::Database`].
    pub async fn attempts(&self, id: EventId) -> Result<Vec<Attempt>, InboxError> {
        self.read(move |conn, _| {
            let mut stmt = conn.prepare_cached(
                "SELECT attempt, started_at, finished_at, outcome, error FROM attempts
                 WHERE event_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map(params![id.get()], |row| {
                Ok(Attempt {
                    attempt: row.get(0)?,
                    started_at: from_millis(row.get(1)?),
                    finished_at: from_millis(row.get(2)?),
                    outcome: row.get(3)?,
                    error: row.get(4)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}

fn read_event(conn: &Connection, id: EventId) -> Result<Option<InboxEvent>, InboxError> {
    conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS}, (SELECT attempts FROM state WHERE state.id = events.id),
                (SELECT is_test FROM state WHERE state.id = events.id)
         FROM events WHERE id = ?1"
    ))?
    .query_row(params![id.get()], |row| {
        let attempts: Option<i64> = row.get(9)?;
        let is_test: Option<bool> = row.get(10)?;
        event_from_row(row, attempts.unwrap_or(0), is_test.unwrap_or(false))
    })
    .optional()?
    .transpose()
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
            .to_sql()
            .unwrap();
        assert!(sql.contains("s.status IN (?1, ?2)"), "{sql}");
        assert!(sql.contains("e.event_type = ?3"), "{sql}");
        assert!(sql.contains("e.delivery_id = ?4"), "{sql}");
        assert!(sql.contains("s.is_test = 0"), "{sql}");
        assert!(sql.contains("LIMIT ?5"), "{sql}");
        assert_eq!(values.len(), 5);
        assert!(LogQuery::new().limit(0).to_sql().is_err());
        let (sql, _) = LogQuery::new().status(Status::Processed).to_sql().unwrap();
        assert!(sql.contains("+s.status IN (?1)"), "{sql}");
    }

    /// The plans of the pages that must stay fast at 1 M events: newest first by the
    /// primary key (or the dead-letter table's), never a sort of every match.
    #[test]
    fn pages_walk_a_key_instead_of_sorting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.db");
        drop(crate::schema::open_writer(&path).unwrap());
        let conn = Connection::open(&path).unwrap();
        let plan = |query: LogQuery| {
            let (sql, values) = query.to_sql().unwrap();
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let rows = stmt
                .query_map(params_from_iter(values), |row| row.get::<_, String>(3))
                .unwrap();
            rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
        };
        for query in [
            LogQuery::new(),
            LogQuery::new().before_id(EventId::new(500)),
            LogQuery::new().status(Status::Processed),
            LogQuery::new().status(Status::Dead).include_test(true),
            LogQuery::new()
                .status(Status::Dead)
                .include_test(true)
                .before_id(EventId::new(500)),
            LogQuery::new().event_type("a").before_id(EventId::new(500)),
        ] {
            let plan = plan(query.clone());
            assert!(!plan.contains("TEMP B-TREE"), "{query:?}: {plan}");
        }
        let dead = plan(
            LogQuery::new()
                .status(Status::Dead)
                .before_id(EventId::new(500)),
        );
        assert!(
            dead.starts_with("SEARCH d USING INTEGER PRIMARY KEY"),
            "{dead}"
        );
        assert!(LogQuery::new().limit(MAX_LOG_LIMIT + 1).to_sql().is_err());
    }
}
