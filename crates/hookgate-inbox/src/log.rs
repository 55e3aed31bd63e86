//! The event log: what arrived, when, from which scheme, with what status, how long it took
//! and what went wrong.

use std::time::{Duration, SystemTime};

use hookgate::BoxFuture;
use hookgate_queue::event_log::{
    ArrivalCursor, Delivery, DeliveryCounts, EventContent, EventLog, HandshakeRecord, LogError,
    LogFilter, MinuteActivity, Replay, TestDeliveries,
};
pub use hookgate_queue::event_log::{
    Attempt, DEFAULT_LOG_LIMIT, LogEntry, LogQuery, MAX_LOG_LIMIT, StatusCounts,
};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use crate::arrival::Order;
use crate::event::{EventId, InboxEvent, Status};
use crate::queue::{EVENT_COLUMNS, event_from_row};
use crate::time::{from_millis, to_millis};
use crate::{Inbox, InboxError};

/// The statement of a log query in `order` and its parameters; [`Order::Arrival`] is
/// [`Inbox::query_by_arrival`]'s.
pub(crate) fn to_sql(query: &LogQuery, order: Order) -> Result<(String, Vec<Value>), InboxError> {
    Ok(sql_of(&query.filter()?, order))
}

fn sql_of(filter: &LogFilter<'_>, order: Order) -> (String, Vec<Value>) {
    let limit = filter.limit;
    // Dead letters alone, by id: walk the dead-letter table's key (one row per dead
    // event), a page at a time however many there are, instead of sorting them all
    // out of the status index (0.8 s for 500 k dead letters).
    let dead_only = order == Order::Id && filter.dead_only();
    let mut conditions: Vec<String> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    if !filter.statuses.is_empty() {
        let mut placeholders = Vec::new();
        for status in filter.statuses {
            values.push(Value::Text(status.as_str().to_owned()));
            placeholders.push(format!("?{}", values.len()));
        }
        // Processed events are most of a log: walking the primary key newest first
        // finds a page of them at once, where the status index would have them all
        // sorted first (1.4 s at 1 M events). The other statuses are few: the index.
        let column = if dead_only || filter.statuses.contains(&Status::Processed) {
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
    if let Some(at) = filter.received_after {
        push(
            "e.received_at >= ?",
            Value::Integer(to_millis(at)),
            &mut values,
        );
    }
    if let Some(at) = filter.received_before {
        push(
            "e.received_at < ?",
            Value::Integer(to_millis(at)),
            &mut values,
        );
    }
    if let Some(event_type) = filter.event_type {
        push(
            "e.event_type = ?",
            Value::Text(event_type.to_owned()),
            &mut values,
        );
    }
    if let Some(delivery_id) = filter.delivery_id {
        push(
            "e.delivery_id = ?",
            Value::Text(delivery_id.to_owned()),
            &mut values,
        );
    }
    if let Some(scheme) = filter.scheme {
        push("e.scheme = ?", Value::Text(scheme.to_owned()), &mut values);
    }
    if let Some(destination) = filter.destination {
        // One probe of the deliveries' (event, destination) key per event.
        push(
            "EXISTS (SELECT 1 FROM deliveries dl WHERE dl.event_id = e.id AND dl.destination = ?)",
            Value::Text(destination.to_owned()),
            &mut values,
        );
    }
    if let Some(id) = filter.before_id {
        let condition = if dead_only {
            "d.event_id < ?"
        } else {
            "e.id < ?"
        };
        push(condition, Value::Integer(id.get()), &mut values);
    }
    match filter.tests {
        TestDeliveries::Only => conditions.push("s.is_test = 1".to_owned()),
        TestDeliveries::Excluded => conditions.push("s.is_test = 0".to_owned()),
        _ => {}
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
    let where_clause = if conditions.is_empty() {
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
        "SELECT {LOG_COLUMNS} FROM {from} {where_clause} ORDER BY {order_by} LIMIT ?{}",
        values.len()
    );
    (sql, values)
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
        Err(err) => return Ok(Err(err.into())),
    };
    let time = |i: usize| -> rusqlite::Result<Option<SystemTime>> {
        Ok(row.get::<_, Option<i64>>(i)?.map(from_millis))
    };
    let mut entry = LogEntry::new(
        EventId::new(row.get(0)?),
        row.get::<_, String>(2)?,
        row.get::<_, String>(1)?,
    );
    entry.delivery_id = row.get(3)?;
    entry.event_type = row.get(4)?;
    entry.signed_at = time(5)?;
    entry.received_at = from_millis(row.get(6)?);
    entry.status = status;
    entry.attempts = u32::try_from(row.get::<_, i64>(8)?).unwrap_or(0);
    entry.set_due_at(time(9)?);
    entry.started_at = time(10)?;
    entry.finished_at = time(11)?;
    entry.processing_duration = row
        .get::<_, Option<i64>>(12)?
        .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
    entry.last_error = row.get(13)?;
    entry.dead_at = time(14)?;
    entry.is_test = row.get(15)?;
    entry.body_len = u64::try_from(row.get::<_, i64>(16)?).unwrap_or(0);
    Ok(Ok(entry))
}

impl Inbox {
    /// The events matching `query`, newest first.
    ///
    /// # Errors
    /// [`InboxError::Config`] for a limit out of range, [`InboxError::Database`].
    pub async fn query(&self, query: LogQuery) -> Result<Vec<LogEntry>, InboxError> {
        let (sql, values) = to_sql(&query, Order::Id)?;
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
                counts.set(status.parse()?, u64::try_from(count).unwrap_or(0));
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
                Ok(Attempt::new(
                    row.get(0)?,
                    from_millis(row.get(1)?),
                    from_millis(row.get(2)?),
                    row.get::<_, String>(3)?,
                    row.get(4)?,
                ))
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

/// The inbox's event log through the store-neutral [`EventLog`] trait (what `hookgate inbox`
/// and the console read); each method is the inherent one of the same name.
impl EventLog for Inbox {
    fn query(&self, query: LogQuery) -> BoxFuture<'_, Result<Vec<LogEntry>, LogError>> {
        Box::pin(async move { Ok(Inbox::query(self, query).await?) })
    }

    fn query_by_arrival(
        &self,
        query: LogQuery,
        after: Option<ArrivalCursor>,
    ) -> BoxFuture<'_, Result<Vec<LogEntry>, LogError>> {
        Box::pin(async move { Ok(Inbox::query_by_arrival(self, query, after).await?) })
    }

    fn entry(&self, id: EventId) -> BoxFuture<'_, Result<Option<LogEntry>, LogError>> {
        Box::pin(async move { Ok(Inbox::entry(self, id).await?) })
    }

    fn attempts(&self, id: EventId) -> BoxFuture<'_, Result<Vec<Attempt>, LogError>> {
        Box::pin(async move { Ok(Inbox::attempts(self, id).await?) })
    }

    fn content(&self, id: EventId) -> BoxFuture<'_, Result<Option<EventContent>, LogError>> {
        Box::pin(async move {
            let event = Inbox::event(self, id).await?;
            Ok(event.map(|e| EventContent::new(e.headers().to_vec(), e.body().clone())))
        })
    }

    fn status_counts(&self) -> BoxFuture<'_, Result<StatusCounts, LogError>> {
        Box::pin(async move { Ok(Inbox::status_counts(self).await?) })
    }

    fn activity_per_minute(
        &self,
        since: SystemTime,
        until: SystemTime,
    ) -> BoxFuture<'_, Result<Vec<MinuteActivity>, LogError>> {
        Box::pin(async move { Ok(Inbox::activity_per_minute(self, since, until).await?) })
    }

    fn replay_dead_letters(&self, which: Replay) -> BoxFuture<'_, Result<u64, LogError>> {
        Box::pin(async move { Ok(Inbox::replay_dead_letters(self, which).await?) })
    }

    fn handshakes(&self, limit: usize) -> BoxFuture<'_, Result<Vec<HandshakeRecord>, LogError>> {
        Box::pin(async move { Ok(Inbox::handshakes(self, limit).await?) })
    }

    fn deliveries(&self, id: EventId) -> BoxFuture<'_, Result<Vec<Delivery>, LogError>> {
        Box::pin(async move { Ok(Inbox::deliveries(self, id).await?) })
    }

    fn delivery_counts(&self) -> BoxFuture<'_, Result<DeliveryCounts, LogError>> {
        Box::pin(async move { Ok(Inbox::delivery_counts(self).await?) })
    }

    fn lane_backlog(&self) -> BoxFuture<'_, Result<Vec<(String, u64)>, LogError>> {
        Box::pin(async move { Ok(Inbox::lane_backlog(self).await?) })
    }

    fn replay_destination<'a>(
        &'a self,
        destination: &'a str,
        which: Replay,
    ) -> BoxFuture<'a, Result<u64, LogError>> {
        Box::pin(async move { Ok(Inbox::replay_destination(self, destination, which).await?) })
    }

    fn pause_destination<'a>(
        &'a self,
        destination: &'a str,
    ) -> BoxFuture<'a, Result<bool, LogError>> {
        Box::pin(async move { Ok(Inbox::pause_destination(self, destination).await?) })
    }

    fn resume_destination<'a>(
        &'a self,
        destination: &'a str,
    ) -> BoxFuture<'a, Result<bool, LogError>> {
        Box::pin(async move { Ok(Inbox::resume_destination(self, destination).await?) })
    }

    fn paused_destinations(&self) -> BoxFuture<'_, Result<Vec<String>, LogError>> {
        Box::pin(async move { Ok(Inbox::paused_destinations(self).await?) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_sql_numbers_its_parameters() {
        let query = LogQuery::new()
            .status(Status::Dead)
            .status(Status::Failed)
            .event_type("a")
            .delivery_id("d")
            .limit(5);
        let (sql, values) = to_sql(&query, Order::Id).unwrap();
        assert!(sql.contains("s.status IN (?1, ?2)"), "{sql}");
        assert!(sql.contains("e.event_type = ?3"), "{sql}");
        assert!(sql.contains("e.delivery_id = ?4"), "{sql}");
        assert!(sql.contains("s.is_test = 0"), "{sql}");
        assert!(sql.contains("LIMIT ?5"), "{sql}");
        assert_eq!(values.len(), 5);
        assert!(to_sql(&LogQuery::new().limit(0), Order::Id).is_err());
        let (sql, _) = to_sql(&LogQuery::new().status(Status::Processed), Order::Id).unwrap();
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
            let (sql, values) = to_sql(&query, Order::Id).unwrap();
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
        assert!(to_sql(&LogQuery::new().limit(MAX_LOG_LIMIT + 1), Order::Id).is_err());
    }
}
