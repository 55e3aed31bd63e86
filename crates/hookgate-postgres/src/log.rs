//! The event log: what arrived, when, from which scheme, with what status, how long it took
//! and what went wrong; dead letters, replay, handshakes and pruning.
//!
//! The types are the store-neutral ones of [`hookgate_queue::event_log`], which the SQLite
//! inbox answers too: the same [`LogQuery`] gives the same [`LogEntry`] rows from either.

use std::time::{Duration, SystemTime};

use hookgate::{BoxFuture, Handshake};
use hookgate_queue::event_log::{
    ActivityFrame, ActivitySeries, Delivery, DeliveryCounts, EventContent, EventLog, LogError,
    LogFilter, TestDeliveries,
};
pub use hookgate_queue::event_log::{
    ArrivalCursor, Attempt, DEFAULT_LOG_LIMIT, EventId, HandshakeRecord, LogEntry, LogQuery,
    MAX_ACTIVITY_RANGE, MAX_LOG_LIMIT, MinuteActivity, Replay, Status, StatusCounts,
};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::schema::outside_received;
use crate::store::{millis, queued_event};
use crate::{Error, PgStore};

/// Most rows one pruning statement deletes; [`PgStore::prune`] repeats it until done.
const PRUNE_BATCH: i64 = 5_000;

/// A statement's parameters, owned.
type Values = Vec<Box<dyn ToSql + Sync + Send>>;

/// How a log query orders its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    /// Newest id first (with [`LogQuery::before_id`] paging): the primary key, or the
    /// dead-letter index for dead letters alone.
    Id,
    /// Newest arrival first, then newest id, after the cursor: the `events_arrival`
    /// index `(received_at, id)`, read backwards from the cursor.
    Arrival(Option<ArrivalCursor>),
}

/// The statement of `filter` in `order`, its parameters numbered in order.
///
/// Statuses are written into the statement as literals (they are the fixed names of
/// [`Status::as_str`], never input), so that the planner sees `status = 'dead'` and can
/// use the partial indexes: `events_dead`, and `events_status`, which holds every status
/// but `received`.
///
/// `received` events are in `events_waiting` alone, which holds only them, and the
/// filters on an event type and a delivery id are written with
/// [`outside_received`](crate::schema::outside_received), so that each reads an index:
/// the indexes of those two columns leave `received` events out.
fn to_sql(filter: &LogFilter<'_>, order: Order, schema: &str) -> (String, Values) {
    let mut conditions: Vec<String> = Vec::new();
    let mut values: Values = Vec::new();
    if let Some(condition) = status_condition(filter.statuses) {
        conditions.push(condition);
    }
    let mut push = |condition: &str, value: Box<dyn ToSql + Sync + Send>| {
        values.push(value);
        conditions.push(condition.replace('?', &format!("${}", values.len())));
    };
    if let Some(at) = filter.received_after {
        push("e.received_at >= ?", Box::new(at));
    }
    if let Some(at) = filter.received_before {
        push("e.received_at < ?", Box::new(at));
    }
    if let Some(event_type) = filter.event_type {
        push(
            &outside_received("e.", "event_type", "?"),
            Box::new(event_type.to_owned()),
        );
    }
    if let Some(delivery_id) = filter.delivery_id {
        push(
            &outside_received("e.", "delivery_id", "?"),
            Box::new(delivery_id.to_owned()),
        );
    }
    if let Some(scheme) = filter.scheme {
        push("e.scheme = ?", Box::new(scheme.to_owned()));
    }
    if let Some(destination) = filter.destination {
        // One probe of the deliveries' (event, destination) key per event.
        let probe = format!(
            "EXISTS (SELECT 1 FROM {schema}.deliveries dl \
             WHERE dl.event_id = e.id AND dl.destination = ?)"
        );
        push(&probe, Box::new(destination.to_owned()));
    }
    if let Some(id) = filter.before_id {
        push("e.id < ?", Box::new(id.get()));
    }
    if let Order::Arrival(Some(cursor)) = order {
        values.push(Box::new(cursor.received_at));
        values.push(Box::new(cursor.id.get()));
        let n = values.len();
        conditions.push(format!(
            "(e.received_at, e.id) < (${}, ${n})",
            n.saturating_sub(1)
        ));
    }
    match filter.tests {
        TestDeliveries::Only => conditions.push("e.is_test".to_owned()),
        TestDeliveries::Excluded => conditions.push("NOT e.is_test".to_owned()),
        _ => {}
    }
    let where_clause = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let order_by = match order {
        Order::Id => "e.id DESC",
        Order::Arrival(_) => "e.received_at DESC, e.id DESC",
    };
    values.push(Box::new(i64::try_from(filter.limit).unwrap_or(i64::MAX)));
    let sql = format!(
        "SELECT {LOG_COLUMNS} FROM {schema}.events e {where_clause} ORDER BY {order_by} LIMIT ${}",
        values.len()
    );
    (sql, values)
}

/// The condition on the status of a filter for `statuses` (`None`: any status).
fn status_condition(statuses: &[Status]) -> Option<String> {
    let received = "e.status = 'received'";
    let others: Vec<String> = statuses
        .iter()
        .filter(|s| **s != Status::Received)
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    let others = (!others.is_empty()).then(|| format!("e.status IN ({})", others.join(", ")));
    match (statuses.contains(&Status::Received), others) {
        (false, others) => others,
        (true, None) => Some(received.to_owned()),
        (true, Some(others)) => Some(format!("({others} OR ({received}))")),
    }
}

const LOG_COLUMNS: &str = "e.id, e.dedup_key, e.scheme, e.delivery_id, e.event_type, \
    e.signed_at, e.received_at, e.status, e.attempts, e.due_at, e.started_at, e.finished_at, \
    e.duration_ms, e.last_error, e.dead_at, e.is_test, octet_length(e.body)";

fn entry_from_row(row: &Row) -> Result<LogEntry, Error> {
    let mut entry = LogEntry::new(
        EventId::new(row.try_get(0)?),
        row.try_get::<_, String>(2)?,
        row.try_get::<_, String>(1)?,
    );
    entry.delivery_id = row.try_get(3)?;
    entry.event_type = row.try_get(4)?;
    entry.signed_at = row.try_get(5)?;
    entry.received_at = row.try_get(6)?;
    entry.status = row.try_get::<_, String>(7)?.parse()?;
    entry.attempts = u32::try_from(row.try_get::<_, i32>(8)?).unwrap_or(0);
    entry.set_due_at(row.try_get(9)?);
    entry.started_at = row.try_get(10)?;
    entry.finished_at = row.try_get(11)?;
    entry.processing_duration = row
        .try_get::<_, Option<i64>>(12)?
        .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
    entry.last_error = row.try_get(13)?;
    entry.dead_at = row.try_get(14)?;
    entry.is_test = row.try_get(15)?;
    entry.body_len = u64::try_from(row.try_get::<_, i32>(16)?).unwrap_or(0);
    Ok(entry)
}

/// What [`PgStore::prune`] deleted.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Processed events older than the retention, with their attempt history.
    pub events: u64,
    /// Dedup rows past the dedup horizon.
    pub dedup_keys: u64,
    /// Handshake records older than the retention.
    pub handshakes: u64,
}

impl PgStore {
    /// The events matching `query`, newest first.
    ///
    /// A page reads only its own rows of an index, however large the log: newest first by
    /// the primary key (paged with [`LogQuery::before_id`]), or, for dead letters alone,
    /// by a partial index holding only them.
    ///
    /// # Errors
    /// [`Error::Config`] for a limit out of range; [`Error::Unavailable`],
    /// [`Error::Database`].
    pub async fn query(&self, query: LogQuery) -> Result<Vec<LogEntry>, Error> {
        self.log_page(&query, Order::Id).await
    }

    /// The events matching `query`, newest arrival first (ties by newest id), starting
    /// after `after`: pass [`ArrivalCursor::after`] of a page's last entry to get the next
    /// page. Meant for time windows (`received_after` / `received_before`), where it reads
    /// only the page's rows of the arrival index `(received_at, id)`.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use hookgate_postgres::{ArrivalCursor, LogQuery, PgStore};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let Some(postgres) = hookgate_testkit::Postgres::start() else { return Ok(()) };
    /// let store = PgStore::connect(&postgres.url()).await?;
    /// let window = LogQuery::new()
    ///     .received_after(SystemTime::now() - Duration::from_secs(86_400))
    ///     .limit(50);
    /// let page = store.query_by_arrival(window.clone(), None).await?;
    /// if let Some(last) = page.last() {
    ///     let next = store.query_by_arrival(window, Some(ArrivalCursor::after(last))).await?;
    ///     # let _ = next;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`query`](Self::query).
    pub async fn query_by_arrival(
        &self,
        query: LogQuery,
        after: Option<ArrivalCursor>,
    ) -> Result<Vec<LogEntry>, Error> {
        self.log_page(&query, Order::Arrival(after)).await
    }

    async fn log_page(&self, query: &LogQuery, order: Order) -> Result<Vec<LogEntry>, Error> {
        let (sql, values) = to_sql(&query.filter()?, order, &self.inner.sql.schema);
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
    /// ([`QueuedEvent::attempt`](crate::QueuedEvent::attempt) is the attempts made so far).
    ///
    /// # Errors
    /// [`Error::Unavailable`], [`Error::Database`], [`Error::Corrupt`].
    pub async fn event(&self, id: EventId) -> Result<Option<crate::QueuedEvent>, Error> {
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
            counts.set(
                status,
                u64::try_from(row.try_get::<_, i64>(1)?).unwrap_or(0),
            );
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
                Ok(Attempt::new(
                    u32::try_from(row.try_get::<_, i32>(0)?).unwrap_or(0),
                    row.try_get(1)?,
                    row.try_get(2)?,
                    row.try_get::<_, String>(3)?,
                    row.try_get(4)?,
                ))
            })
            .collect()
    }

    /// One [`MinuteActivity`] per minute from the minute holding `since` up to the one
    /// holding `until` (excluded), oldest first, minutes without events included: what
    /// arrived (by `received_at`), and what is now processed, failed or dead (by the end
    /// of its last attempt). Each count is one range of an index (`events_arrival`,
    /// `events_status`), so a chart over hours stays cheap whatever the size of the log.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use hookgate_postgres::PgStore;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let Some(postgres) = hookgate_testkit::Postgres::start() else { return Ok(()) };
    /// let store = PgStore::connect(&postgres.url()).await?;
    /// let now = SystemTime::now();
    /// let minutes = store
    ///     .activity_per_minute(now - Duration::from_secs(3 * 3600), now)
    ///     .await?;
    /// assert!((180..=181).contains(&minutes.len()));
    /// assert!(minutes.iter().all(|m| m.received == 0));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] when `until` is before `since` or the range is longer than
    /// [`MAX_ACTIVITY_RANGE`]; [`Error::Unavailable`], [`Error::Database`].
    pub async fn activity_per_minute(
        &self,
        since: SystemTime,
        until: SystemTime,
    ) -> Result<Vec<MinuteActivity>, Error> {
        let mut frame = ActivityFrame::new(since, until)?;
        let start = frame.start();
        let mut conn = self.conn().await?;
        for (sql, series) in [
            (
                &self.inner.sql.received_per_minute,
                ActivitySeries::Received,
            ),
            (
                &self.inner.sql.processed_per_minute,
                ActivitySeries::Processed,
            ),
            (&self.inner.sql.failed_per_minute, ActivitySeries::Failed),
        ] {
            for row in conn.query(sql, &[&start, &until]).await? {
                let minute: i64 = row.try_get(0)?;
                let count: i64 = row.try_get(1)?;
                frame.add(minute, series, u64::try_from(count).unwrap_or(0));
            }
        }
        Ok(frame.into_minutes())
    }

    /// Dead letters, newest first, optionally of one event type; each entry carries
    /// `dead_at` and the `last_error` that killed it. Test deliveries are included.
    ///
    /// # Errors
    /// As [`query`](Self::query).
    pub async fn dead_letters(
        &self,
        event_type: Option<&str>,
        limit: usize,
    ) -> Result<Vec<LogEntry>, Error> {
        self.query(LogQuery::dead_letters(event_type, limit)).await
    }

    /// Puts dead letters back in the queue (status `queued`, due now, attempts counted
    /// from zero again, the attempt history kept) and wakes the workers. Returns how many
    /// were replayed; events that are not dead are left alone.
    ///
    /// # Errors
    /// [`Error::Unavailable`], [`Error::Database`].
    pub async fn replay_dead_letters(&self, which: Replay) -> Result<u64, Error> {
        // Events routed to destinations: their dead deliveries are replayed (the event
        // is then no longer dead, so the event-level replay below leaves it alone).
        let routed = self.replay_deliveries(None, &which).await?;
        let sql = &self.inner.sql;
        let mut conn = self.conn().await?;
        let replayed = match &which {
            Replay::Id(id) => conn.execute(&sql.replay_dead_id, &[&id.get()]).await?,
            Replay::Ids(ids) => {
                let ids: Vec<i64> = ids.iter().map(|id| id.get()).collect();
                conn.execute(&sql.replay_dead_ids, &[&ids]).await?
            }
            Replay::EventType(event_type) => {
                conn.execute(&sql.replay_dead_type, &[event_type]).await?
            }
            Replay::All => conn.execute(&sql.replay_dead, &[]).await?,
            // A kind of replay this build does not know selects nothing.
            _ => 0,
        };
        if replayed > 0 {
            conn.query(&sql.notify, &[]).await?;
        }
        Ok(replayed.saturating_add(routed))
    }

    /// Puts one dead or processed event back in the queue (attempts start again from 1)
    /// and wakes the workers; `false` if it is neither (unknown, pending or running).
    ///
    /// # Errors
    /// [`Error::Unavailable`], [`Error::Database`].
    pub async fn replay(&self, id: EventId) -> Result<bool, Error> {
        // An event routed to destinations: its dead deliveries.
        if self.replay_deliveries(None, &Replay::Id(id)).await? > 0 {
            return Ok(true);
        }
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

    /// Records a provider URL handshake the gate answered (what
    /// [`Sink::record_handshake`](hookgate::Sink::record_handshake) does for this store):
    /// when, which scheme and handshake, which key. Not an event: nothing is queued, and
    /// nothing of the request (its challenge, its token) is kept.
    ///
    /// # Errors
    /// [`Error::Unavailable`], [`Error::Database`].
    pub async fn record_handshake(&self, handshake: &Handshake) -> Result<(), Error> {
        self.conn()
            .await?
            .execute(
                &self.inner.sql.record_handshake,
                &[
                    &handshake.received_at(),
                    &handshake.scheme(),
                    &handshake.kind().as_str(),
                    &handshake.key_id(),
                ],
            )
            .await
            .map(drop)
    }

    /// The most recent handshakes, newest first, at most `limit`.
    ///
    /// # Errors
    /// [`Error::Unavailable`], [`Error::Database`].
    pub async fn handshakes(&self, limit: usize) -> Result<Vec<HandshakeRecord>, Error> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .conn()
            .await?
            .query(&self.inner.sql.handshakes, &[&limit])
            .await?;
        rows.iter()
            .map(|row| {
                Ok(HandshakeRecord::new(
                    row.try_get(0)?,
                    row.try_get::<_, String>(1)?,
                    row.try_get::<_, String>(2)?,
                    row.try_get(3)?,
                ))
            })
            .collect()
    }

    /// Deletes processed events older than the retention (with their attempt history),
    /// handshake records older than the retention and dedup rows past the dedup horizon,
    /// in batches. A [`PgWorker`](crate::PgWorker) calls it every
    /// [`prune_interval`](crate::PgQueue::prune_interval).
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
            let (events, deliveries) = self
                .prune_deliveries(&mut conn, retention, PRUNE_BATCH)
                .await?;
            report.events = report
                .events
                .saturating_add(u64::try_from(events).unwrap_or(0));
            if events < PRUNE_BATCH && deliveries < PRUNE_BATCH {
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
        report.handshakes = conn
            .execute(&self.inner.sql.prune_handshakes, &[&retention])
            .await?;
        Ok(report)
    }
}

/// The store's event log through the store-neutral [`EventLog`] trait (what `hookgate
/// inbox` and the console read); each method is the inherent one of the same name.
impl EventLog for PgStore {
    fn query(&self, query: LogQuery) -> BoxFuture<'_, Result<Vec<LogEntry>, LogError>> {
        Box::pin(async move { Ok(PgStore::query(self, query).await?) })
    }

    fn query_by_arrival(
        &self,
        query: LogQuery,
        after: Option<ArrivalCursor>,
    ) -> BoxFuture<'_, Result<Vec<LogEntry>, LogError>> {
        Box::pin(async move { Ok(PgStore::query_by_arrival(self, query, after).await?) })
    }

    fn entry(&self, id: EventId) -> BoxFuture<'_, Result<Option<LogEntry>, LogError>> {
        Box::pin(async move { Ok(PgStore::entry(self, id).await?) })
    }

    fn attempts(&self, id: EventId) -> BoxFuture<'_, Result<Vec<Attempt>, LogError>> {
        Box::pin(async move { Ok(PgStore::attempts(self, id).await?) })
    }

    fn content(&self, id: EventId) -> BoxFuture<'_, Result<Option<EventContent>, LogError>> {
        Box::pin(async move {
            let event = PgStore::event(self, id).await?;
            Ok(event.map(|e| EventContent::new(e.headers().to_vec(), e.body().clone())))
        })
    }

    fn status_counts(&self) -> BoxFuture<'_, Result<StatusCounts, LogError>> {
        Box::pin(async move { Ok(PgStore::status_counts(self).await?) })
    }

    fn activity_per_minute(
        &self,
        since: SystemTime,
        until: SystemTime,
    ) -> BoxFuture<'_, Result<Vec<MinuteActivity>, LogError>> {
        Box::pin(async move { Ok(PgStore::activity_per_minute(self, since, until).await?) })
    }

    fn replay_dead_letters(&self, which: Replay) -> BoxFuture<'_, Result<u64, LogError>> {
        Box::pin(async move { Ok(PgStore::replay_dead_letters(self, which).await?) })
    }

    fn handshakes(&self, limit: usize) -> BoxFuture<'_, Result<Vec<HandshakeRecord>, LogError>> {
        Box::pin(async move { Ok(PgStore::handshakes(self, limit).await?) })
    }

    fn deliveries(&self, id: EventId) -> BoxFuture<'_, Result<Vec<Delivery>, LogError>> {
        Box::pin(async move { Ok(PgStore::deliveries(self, id).await?) })
    }

    fn delivery_counts(&self) -> BoxFuture<'_, Result<DeliveryCounts, LogError>> {
        Box::pin(async move { Ok(PgStore::delivery_counts(self).await?) })
    }

    fn lane_backlog(&self) -> BoxFuture<'_, Result<Vec<(String, u64)>, LogError>> {
        Box::pin(async move { Ok(PgStore::lane_backlog(self).await?) })
    }

    fn replay_destination<'a>(
        &'a self,
        destination: &'a str,
        which: Replay,
    ) -> BoxFuture<'a, Result<u64, LogError>> {
        Box::pin(async move { Ok(PgStore::replay_destination(self, destination, which).await?) })
    }

    fn pause_destination<'a>(
        &'a self,
        destination: &'a str,
    ) -> BoxFuture<'a, Result<bool, LogError>> {
        Box::pin(async move { Ok(PgStore::pause_destination(self, destination).await?) })
    }

    fn resume_destination<'a>(
        &'a self,
        destination: &'a str,
    ) -> BoxFuture<'a, Result<bool, LogError>> {
        Box::pin(async move { Ok(PgStore::resume_destination(self, destination).await?) })
    }

    fn paused_destinations(&self) -> BoxFuture<'_, Result<Vec<String>, LogError>> {
        Box::pin(async move { Ok(PgStore::paused_destinations(self).await?) })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::arithmetic_side_effects)]

    use super::*;

    fn statement(query: &LogQuery, order: Order) -> (String, usize) {
        let (sql, values) = to_sql(&query.filter().unwrap(), order, "\"hookgate\"");
        (sql, values.len())
    }

    #[test]
    fn query_sql_numbers_its_parameters() {
        let query = LogQuery::new()
            .status(Status::Dead)
            .status(Status::Failed)
            .event_type("a")
            .delivery_id("d")
            .limit(5);
        let (sql, values) = statement(&query, Order::Id);
        assert!(sql.contains("e.status IN ('dead', 'failed')"), "{sql}");
        assert!(
            sql.contains(
                "((e.status <> 'received' AND e.event_type = $1) \
                 OR (e.status = 'received' AND e.event_type = $1))"
            ),
            "{sql}"
        );
        assert!(
            sql.contains(
                "((e.status <> 'received' AND e.delivery_id = $2) \
                 OR (e.status = 'received' AND e.delivery_id = $2))"
            ),
            "{sql}"
        );
        assert!(sql.contains("NOT e.is_test"), "{sql}");
        assert!(sql.ends_with("ORDER BY e.id DESC LIMIT $3"), "{sql}");
        assert_eq!(values, 3);
        let cursor = ArrivalCursor {
            received_at: SystemTime::UNIX_EPOCH,
            id: EventId::new(3),
        };
        let query = LogQuery::new().received_after(SystemTime::UNIX_EPOCH);
        let (sql, values) = statement(&query, Order::Arrival(Some(cursor)));
        assert!(sql.contains("(e.received_at, e.id) < ($2, $3)"), "{sql}");
        assert!(
            sql.ends_with("ORDER BY e.received_at DESC, e.id DESC LIMIT $4"),
            "{sql}"
        );
        assert_eq!(values, 4);
    }

    /// A store filled with `n` events straight in SQL (a realistic spread: a few dead
    /// letters, some failed, the rest processed, one event type in ten), analysed.
    async fn filled(n: i64) -> Option<(hookgate_testkit::Postgres, PgStore)> {
        let postgres = hookgate_testkit::Postgres::start()?;
        let store = PgStore::connect(&postgres.url()).await.unwrap();
        let mut conn = store.conn().await.unwrap();
        conn.execute(
            "INSERT INTO hookgate.events (dedup_key, scheme, delivery_id, event_type, \
                 received_at, key_id, headers, body, status, attempts, finished_at, dead_at)
             SELECT 'k' || i, 'stripe', 'd' || i, CASE WHEN i % 10 = 0 THEN 'rare' ELSE 'common' END,
                 now() - (($1 - i) * interval '100 milliseconds'), 'k0', '[]', '\\x7b7d',
                 CASE WHEN i % 5000 = 0 THEN 'dead' WHEN i % 997 = 0 THEN 'failed' ELSE 'processed' END,
                 1, now(), CASE WHEN i % 5000 = 0 THEN now() END
             FROM generate_series(1, $1::bigint) AS i",
            &[&n],
        )
        .await
        .unwrap();
        conn.execute("ANALYZE hookgate.events", &[]).await.unwrap();
        drop(conn);
        Some((postgres, store))
    }

    /// Fills a store with `n` events ([`filled`]) and returns the plan of each page the
    /// console asks for.
    async fn plans(n: i64, analyze: bool) -> Option<Vec<(String, String)>> {
        let (_postgres, store) = filled(n).await?;
        let mut conn = store.conn().await.unwrap();
        let now = SystemTime::now();
        let cursor = Some(ArrivalCursor {
            received_at: now - Duration::from_secs(3600),
            id: EventId::new(n / 2),
        });
        let middle = EventId::new(n / 2);
        let window = LogQuery::new().received_after(now - Duration::from_secs(7200));
        let cases = [
            ("newest", LogQuery::new(), Order::Id),
            ("older page", LogQuery::new().before_id(middle), Order::Id),
            (
                "processed",
                LogQuery::new().status(Status::Processed).before_id(middle),
                Order::Id,
            ),
            (
                "dead letters",
                LogQuery::new().status(Status::Dead).include_test(true),
                Order::Id,
            ),
            (
                "older dead letters",
                LogQuery::new()
                    .status(Status::Dead)
                    .include_test(true)
                    .before_id(middle),
                Order::Id,
            ),
            ("window", window.clone(), Order::Arrival(None)),
            ("window, later page", window.clone(), Order::Arrival(cursor)),
            (
                "window of a type, later page",
                window.event_type("common"),
                Order::Arrival(cursor),
            ),
            (
                "until",
                LogQuery::new().received_before(now),
                Order::Arrival(cursor),
            ),
        ];
        let mut plans = Vec::new();
        for (name, query, order) in cases {
            let explain = if analyze {
                "EXPLAIN ANALYZE"
            } else {
                "EXPLAIN"
            };
            let (_, plan) = plan_of(&mut conn, explain, &query.limit(50), order).await;
            plans.push((name.to_owned(), plan));
        }
        Some(plans)
    }

    /// The pages that must stay fast on a large log read one index in order and stop at
    /// the page's end: never a sort of every match, never a scan of the whole table.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pages_walk_an_index_instead_of_sorting() {
        let Some(plans) = plans(200_000, false).await else {
            return;
        };
        for (name, plan) in &plans {
            assert!(plan.starts_with("Limit"), "{name}: {plan}");
            assert!(!plan.contains("Sort"), "{name}: no sort: {plan}");
            assert!(!plan.contains("Seq Scan"), "{name}: no full scan: {plan}");
            let index = if name.starts_with("window") || name == "until" {
                "events_arrival"
            } else if name.contains("dead") {
                "events_dead"
            } else {
                "events_pkey"
            };
            assert!(
                plan.contains(&format!("Index Scan Backward using {index}")),
                "{name}: {plan}"
            );
        }
    }

    /// Puts the events `ids` back to waiting, as the enqueue leaves them, and analyses
    /// the table.
    async fn waiting(conn: &mut crate::pool::Conn, ids: &[i64]) {
        conn.execute(
            "UPDATE hookgate.events SET status = 'received', due_at = now(), finished_at = NULL
             WHERE id = ANY($1)",
            &[&ids],
        )
        .await
        .unwrap();
        conn.execute("ANALYZE hookgate.events", &[]).await.unwrap();
    }

    async fn explain(
        conn: &mut crate::pool::Conn,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> String {
        explain_as(conn, "EXPLAIN", sql, params).await
    }

    /// `explain` (`EXPLAIN` or `EXPLAIN ANALYZE`) of `sql` with `params`, as text.
    async fn explain_as(
        conn: &mut crate::pool::Conn,
        explain: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> String {
        let rows = conn
            .query(&format!("{explain} {sql}"), params)
            .await
            .unwrap();
        let plan: Vec<String> = rows.iter().map(|row| row.get::<_, String>(0)).collect();
        plan.join("\n")
    }

    /// The log's statement for `query` in `order`, and its plan (`explain`: `EXPLAIN` or
    /// `EXPLAIN ANALYZE`).
    async fn plan_of(
        conn: &mut crate::pool::Conn,
        explain: &str,
        query: &LogQuery,
        order: Order,
    ) -> (String, String) {
        let (sql, values) = to_sql(&query.filter().unwrap(), order, "\"hookgate\"");
        let params: Vec<&(dyn ToSql + Sync)> = values
            .iter()
            .map(|value| &**value as &(dyn ToSql + Sync))
            .collect();
        let plan = explain_as(conn, explain, &sql, &params).await;
        (sql, plan)
    }

    /// What used `(status, finished_at)` before it left `received` out (schema version 3)
    /// still reads an index: the status filters, the activity counts and pruning; and a
    /// filter on `received`, which that index does not hold, reads `events_waiting`
    /// (schema version 5) instead of the whole log.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn status_queries_read_an_index_without_received_in_the_status_index() {
        let Some((_postgres, store)) = filled(200_000).await else {
            return;
        };
        let mut conn = store.conn().await.unwrap();
        // Each event finished a second after it arrived (over 5.5 hours), and two events
        // waiting, as the enqueue leaves them.
        conn.execute(
            "UPDATE hookgate.events SET finished_at = received_at + interval '1 second'",
            &[],
        )
        .await
        .unwrap();
        waiting(&mut conn, &[1000, 2000]).await;
        for (statuses, index) in [
            (&[Status::Received][..], "events_waiting"),
            (&[Status::Received, Status::Failed][..], "events_status"),
            (&[Status::Failed][..], "events_status"),
            (&[Status::Queued, Status::Processing][..], "events_status"),
        ] {
            let mut query = LogQuery::new().include_test(true).limit(50);
            for status in statuses {
                query = query.status(*status);
            }
            let (_, plan) = plan_of(&mut conn, "EXPLAIN", &query, Order::Id).await;
            assert!(!plan.contains("Seq Scan"), "{statuses:?}: {plan}");
            assert!(plan.contains(index), "{statuses:?}: {plan}");
        }
        let sql = &store.inner.sql;
        let now = SystemTime::now();
        let since = now - Duration::from_secs(600);
        for activity in [&sql.processed_per_minute, &sql.failed_per_minute] {
            let plan = explain(&mut conn, activity, &[&since, &now]).await;
            assert!(!plan.contains("Seq Scan"), "{plan}");
            assert!(plan.contains("events_status"), "{plan}");
        }
        // Nothing is old enough to prune: the index says so without reading the log.
        let retention = millis(Duration::from_secs(7 * 86_400));
        let plan = explain(&mut conn, &sql.prune_events, &[&retention, &PRUNE_BATCH]).await;
        assert!(!plan.contains("Seq Scan on events"), "{plan}");
        assert!(plan.contains("events_status"), "{plan}");
        // The received events are found, and only they.
        let waiting = store
            .query(LogQuery::new().status(Status::Received).include_test(true))
            .await
            .unwrap();
        let ids: Vec<i64> = waiting.iter().map(|entry| entry.id.get()).collect();
        assert_eq!(ids, [2000, 1000]);
        let mixed = store
            .query(
                LogQuery::new()
                    .status(Status::Received)
                    .status(Status::Dead)
                    .include_test(true)
                    .limit(500),
            )
            .await
            .unwrap();
        assert_eq!(mixed.len(), 2 + 40, "two waiting, one dead letter in 5 000");
    }

    /// The filters on an event type and on a delivery id read the indexes of those
    /// columns, which leave `received` events out (schema version 5), and `events_waiting`
    /// for the received ones: never the whole log. They find events in every status.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn type_and_delivery_filters_read_indexes_without_received_events() {
        let Some((_postgres, store)) = filled(200_000).await else {
            return;
        };
        let mut conn = store.conn().await.unwrap();
        // A scarce type, on one processed event and one waiting as the enqueue leaves it.
        conn.execute(
            "UPDATE hookgate.events SET event_type = 'scarce' WHERE id IN (1500, 2500)",
            &[],
        )
        .await
        .unwrap();
        waiting(&mut conn, &[2500, 3500]).await;
        // (query, the indexes that may serve it, whether received events are looked for,
        // the events)
        let cases = [
            (
                LogQuery::new().event_type("scarce"),
                &["events_type"][..],
                true,
                vec![2500, 1500],
            ),
            (
                LogQuery::new().delivery_id("d1500"),
                &["events_delivery"],
                true,
                vec![1500],
            ),
            (
                LogQuery::new().delivery_id("d3500"),
                &["events_delivery"],
                true,
                vec![3500],
            ),
            // The planner drops the received half, which contradicts the status filter, and
            // reads the type's index or the dead letters' (40 here).
            (
                LogQuery::new().status(Status::Dead).event_type("scarce"),
                &["events_type", "events_dead"],
                false,
                vec![],
            ),
        ];
        for (query, indexes, waiting, expected) in cases {
            let query = query.include_test(true).limit(50);
            let (sql, plan) = plan_of(&mut conn, "EXPLAIN", &query, Order::Id).await;
            assert!(!plan.contains("Seq Scan"), "{sql}: {plan}");
            assert!(
                indexes.iter().any(|index| plan.contains(index)),
                "{sql}: {plan}"
            );
            assert_eq!(plan.contains("events_waiting"), waiting, "{sql}: {plan}");
            let found: Vec<i64> = store
                .query(query)
                .await
                .unwrap()
                .iter()
                .map(|entry| entry.id.get())
                .collect();
            assert_eq!(found, expected, "{sql}");
        }
        // Replays by type read an index too: of dead events, and of destinations' dead
        // deliveries.
        let plan = explain(&mut conn, &store.inner.sql.replay_dead_type, &[&"scarce"]).await;
        assert!(!plan.contains("Seq Scan on events"), "{plan}");
        let destination: Option<String> = None;
        let plan = explain(
            &mut conn,
            &store.inner.delivery_sql.replay_type,
            &[&destination, &"scarce"],
        )
        .await;
        assert!(!plan.contains("Seq Scan on events"), "{plan}");
    }

    #[test]
    fn received_is_looked_for_apart_from_the_other_statuses() {
        assert_eq!(status_condition(&[]), None);
        assert_eq!(
            status_condition(&[Status::Dead, Status::Failed]).as_deref(),
            Some("e.status IN ('dead', 'failed')")
        );
        assert_eq!(
            status_condition(&[Status::Received]).as_deref(),
            Some("e.status = 'received'")
        );
        assert_eq!(
            status_condition(&[Status::Failed, Status::Received]).as_deref(),
            Some("(e.status IN ('failed') OR (e.status = 'received'))")
        );
    }

    /// The same pages at 1 M events, run: prints each plan with its execution time (a
    /// measurement to read, not a test that can fail on a slow machine).
    /// `cargo test -p hookgate-postgres --lib -- --ignored --nocapture pages_at_a_million`
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "fills a million rows: a measurement, run by hand"]
    async fn pages_at_a_million_events() {
        let Some(plans) = plans(1_000_000, true).await else {
            return;
        };
        for (name, plan) in &plans {
            let time = plan
                .lines()
                .find(|line| line.starts_with("Execution Time"))
                .unwrap_or("");
            println!("{name}: {time}");
            assert!(!plan.contains("Sort"), "{name}: {plan}");
        }
    }

    /// The worker's statements about leased events (a result, a renewal, a give-back) and
    /// the replays of given events find their rows by the primary key (or the dead
    /// letters' index), and the log's status pages and pruning read neither the type nor
    /// the delivery id index, whatever the planner knows of the table. A status test in
    /// them (`status = 'processing'`) let the planner
    /// take a partial index of the events outside `received` instead (`events_type`,
    /// `events_delivery`, `events_status`): with the statistics of a new store (its
    /// indexes made empty and never analysed since) such an index looks empty, and the
    /// plan then read every entry of it for each result, a cost growing with every event
    /// processed (5 ms a result after 20 000 events, measured).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_statistics_taken_while_events_waited_every_statement_reads_the_right_index() {
        let Some(postgres) = hookgate_testkit::Postgres::start() else {
            return;
        };
        let store = PgStore::connect(&postgres.url()).await.unwrap();
        let sql = &store.inner.sql;
        let mut conn = store.conn().await.unwrap();
        // 20 016 events enqueued and analysed while all of them still waited (as
        // autovacuum's analyse after a burst of enqueues leaves the statistics), then taken
        // by a worker: 20 000 processed, a few dead or failed, 16 leased. Autovacuum stays
        // away from the table during the test.
        conn.client()
            .unwrap()
            .batch_execute(
                "ALTER TABLE hookgate.events SET (autovacuum_enabled = false);
                 INSERT INTO hookgate.events (dedup_key, scheme, delivery_id, event_type,
                     received_at, key_id, headers, body, status, due_at)
                 SELECT 'k' || i, 'stripe', 'd' || i, 'invoice.paid', now(), 'k0', '[]',
                     '\\x7b7d', 'received', now()
                 FROM generate_series(1, 20016) AS i;
                 ANALYZE hookgate.events;
                 UPDATE hookgate.events SET attempts = 1,
                     status = CASE WHEN id > 20000 THEN 'processing' WHEN id % 1000 = 0 THEN 'dead'
                                   WHEN id % 97 = 0 THEN 'failed' ELSE 'processed' END,
                     finished_at = CASE WHEN id <= 20000 THEN now() END,
                     lease_token = CASE WHEN id > 20000 THEN 7 END,
                     due_at = CASE WHEN id > 20000 THEN now() END;",
            )
            .await
            .unwrap();
        // Each statement prepared with its parameters' types, explained with the values
        // of a leased event, in the plan a prepared statement gets at first (one made for
        // the values) and the one it may keep (one for any value).
        let statements = [
            (
                "finish_batch",
                &sql.finish_batch,
                "bigint[], bigint[], text[], bigint[], text[], text[]",
                "'{20001,20002}', '{7,7}', '{processed,dead}', '{0,0}', '{NULL,gone}', \
                 '{processed,dead}'",
            ),
            (
                "finish_in_transaction",
                &sql.finish_in_transaction,
                "bigint[], bigint[], text[], bigint[], text[], text[]",
                "'{20001}', '{7}', '{processed}', '{0}', '{NULL}', '{processed}'",
            ),
            (
                "renew",
                &sql.renew,
                "bigint[], bigint[], bigint",
                "'{20001,20002}', '{7,7}', 30000",
            ),
            (
                "give_back",
                &sql.give_back,
                "bigint[], bigint[]",
                "'{20001,20002}', '{7,7}'",
            ),
            ("replay_one", &sql.replay_one, "bigint", "20000"),
            ("replay_dead_id", &sql.replay_dead_id, "bigint", "20000"),
            (
                "replay_dead_ids",
                &sql.replay_dead_ids,
                "bigint[]",
                "'{19000,20000}'",
            ),
        ];
        let client = conn.client().unwrap();
        for (name, statement, types, values) in statements {
            client
                .batch_execute(&format!("PREPARE {name} ({types}) AS {statement}"))
                .await
                .unwrap();
            for mode in ["force_custom_plan", "force_generic_plan"] {
                let messages = client
                    .simple_query(&format!(
                        "SET plan_cache_mode = {mode}; EXPLAIN EXECUTE {name}({values})"
                    ))
                    .await
                    .unwrap();
                let plan: Vec<&str> = messages
                    .iter()
                    .filter_map(|message| match message {
                        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0),
                        _ => None,
                    })
                    .collect();
                let plan = plan.join("\n");
                // The dead letters' own index (`(id) WHERE status = 'dead'`) is as good.
                assert!(
                    plan.contains("using events_pkey on events")
                        || name.starts_with("replay_dead") && plan.contains("events_dead"),
                    "{name} ({mode}):\n{plan}"
                );
                for partial in ["events_type", "events_delivery", "events_status"] {
                    assert!(!plan.contains(partial), "{name} ({mode}):\n{plan}");
                }
            }
        }
        // Every status page of the log, and pruning: the status index, or the dead
        // letters' or the waiting events' own, never the type or delivery id index (which
        // any status test offered the planner before schema version 6).
        for status in Status::ALL {
            let query = LogQuery::new().status(status).include_test(true).limit(50);
            let (_, plan) = plan_of(&mut conn, "EXPLAIN", &query, Order::Id).await;
            for index in ["events_type", "events_delivery"] {
                assert!(!plan.contains(index), "{status:?}:\n{plan}");
            }
        }
        let retention = millis(Duration::from_secs(7 * 86_400));
        let plan = explain(&mut conn, &sql.prune_events, &[&retention, &PRUNE_BATCH]).await;
        assert!(plan.contains("events_status"), "{plan}");
    }
}
