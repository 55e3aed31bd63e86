//! Deliveries per destination (issue 21): a store built with
//! [`PgStoreBuilder::destinations`](crate::PgStoreBuilder::destinations) routes each event
//! once, in the transaction of its enqueue, into one `deliveries` row per matching
//! destination (the same transaction as the event and its dedup row, so the 2xx follows
//! both). No row at all: the event is `filtered`.
//!
//! Each delivery has its own status, attempts, due time or lease end, lease token, last
//! error and dead letter; the event's row sums them up for the event log (and keeps no
//! due time, so a worker without destinations never takes a routed event). Every change
//! of a delivery and the summary of its event commit together.
//!
//! **Leasing** takes due deliveries with `FOR UPDATE SKIP LOCKED`, skipping the
//! destinations the worker holds and, for an ordered destination, every delivery that has
//! an unfinished one (not `processed`, not `dead`) of the same lane before it (`seq`
//! order). So only the head of each lane is ever handed out, and a retrying head keeps
//! its lane, across restarts too.
//!
//! **Why no lane lock beyond the rows.** Two replicas never run one lane at once because
//! the lane's head row itself is the lock: a delivery is handed out only when every
//! delivery before it in its lane is finished *in the statement's snapshot*, and a
//! delivery becomes finished only by a committed completion. Take two leases racing on a
//! lane whose head H is due: one locks H (`FOR UPDATE`), the other skips it (`SKIP
//! LOCKED`) and finds H unfinished in its snapshot, so nothing behind H qualifies either.
//! If the first lease committed before the second locked H, PostgreSQL re-checks H's new
//! row (`processing`, due at the lease end) and skips it. Until H's completion commits,
//! every snapshot shows H unfinished; after it, H is finished for good (a replay makes a
//! new tail, `seq` past the end, which waits behind the rest). A transaction-scoped
//! advisory lock (`pg_try_advisory_xact_lock`) would add nothing: it ends with the lease's
//! short transaction, long before the delivery's attempt does, and the head's
//! `processing` state is what lasts the attempt. A worker that dies leaves its head
//! `processing` until the lease ends; then the head is due again and taken over, still
//! ahead of its lane.
//!
//! A lane's order is the order in which its events were stored (`seq` is the event id).
//! Events of one key sent one after the other (each after the previous one's 2xx) keep
//! that order; two sent at the same moment to two replicas have no order to keep.
//!
//! **Locks.** A lease, a completion and a give-back each lock their delivery rows, then
//! the rows of the events to sum up, in id order (`summarize`), so that two of them never
//! wait for each other in a cycle.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use hookgate::VerifiedEvent;
pub use hookgate_queue::event_log::Delivery;
use hookgate_queue::event_log::DeliveryCounts;
use hookgate_queue::{EventView, LaneKey, LeaseResult, Leased, QueuedEvent};
use tokio_postgres::Row;

use crate::pool::Conn;
use crate::schema::{DEFERRED_COMMIT, EVENT_COLUMNS, RESULTS, result_assignments};
use crate::store::{millis, queued_event};
use crate::{Error, EventId, PgQueue, PgStore, Replay, Status};

/// The statements of deliveries and pauses, for one schema.
#[derive(Debug)]
pub(crate) struct DeliverySql {
    insert: String,
    lease: String,
    events: String,
    lock_events: String,
    summarize: String,
    finish: String,
    renew: String,
    give_back: String,
    next_due: String,
    paused: String,
    pause: String,
    resume: String,
    read: String,
    counts: String,
    lane_backlog: String,
    replay_all: String,
    replay_id: String,
    replay_ids: String,
    pub(crate) replay_type: String,
    prune: String,
}

impl DeliverySql {
    pub(crate) fn new(schema: &str) -> Self {
        let s = format!("\"{schema}\"");
        let ms = "* interval '1 millisecond'";
        let set = result_assignments("d");
        // An unfinished delivery of the same lane before `d`: `d` is not its lane's head.
        let behind = format!(
            "d.lane IS NOT NULL AND EXISTS (
                SELECT 1 FROM {s}.deliveries h
                WHERE h.destination = d.destination AND h.lane = d.lane AND h.seq < d.seq
                  AND h.status NOT IN ('processed', 'dead'))"
        );
        // A dead delivery goes back to the tail of its lane, attempts from zero.
        let replay = |condition: &str| {
            format!(
                "UPDATE {s}.deliveries d
                 SET status = 'queued', attempts = 0, due_at = now(), lease_token = NULL,
                     dead_at = NULL, updated_at = now(),
                     seq = (SELECT coalesce(max(seq), 0) FROM {s}.deliveries) + d.id
                 WHERE d.status = 'dead' AND ($1::text IS NULL OR d.destination = $1)
                   AND {condition}
                 RETURNING d.event_id"
            )
        };
        DeliverySql {
            // The deliveries of a batch's stored events (in route order, so that ids follow
            // the endpoint's destinations), and the events' own rows: no due time (the
            // deliveries have it), or `filtered` when no destination took them.
            insert: format!(
                "WITH routed AS (
                    INSERT INTO {s}.deliveries (event_id, destination, lane, seq, status, due_at)
                    SELECT t.event_id, t.destination, t.lane, t.event_id, 'received', now()
                    FROM unnest($1::bigint[], $2::text[], $3::text[]) WITH ORDINALITY
                        AS t(event_id, destination, lane, n)
                    ORDER BY t.n
                    ON CONFLICT (event_id, destination) DO NOTHING
                 )
                 UPDATE {s}.events
                 SET due_at = NULL,
                     status = CASE WHEN id = ANY($5::bigint[]) THEN 'filtered' ELSE status END,
                     finished_at = CASE WHEN id = ANY($5::bigint[]) THEN now() ELSE finished_at END
                 WHERE id = ANY($4::bigint[])"
            ),
            lease: format!(
                "WITH c AS (
                    SELECT d.id FROM {s}.deliveries d
                    WHERE d.due_at <= now() AND d.destination <> ALL($4::text[])
                      AND NOT ({behind})
                    ORDER BY d.due_at, d.id LIMIT $3
                    FOR UPDATE OF d SKIP LOCKED
                 )
                 UPDATE {s}.deliveries d
                 SET status = 'processing', attempts = d.attempts + 1, lease_token = $1,
                     due_at = now() + $2::bigint {ms}, started_at = now(), updated_at = now()
                 FROM c WHERE d.id = c.id
                 RETURNING d.id, d.event_id, d.destination, d.lane, d.attempts"
            ),
            events: format!("SELECT {EVENT_COLUMNS} FROM {s}.events e WHERE e.id = ANY($1::bigint[])"),
            lock_events: format!(
                "SELECT id FROM {s}.events WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE"
            ),
            summarize: format!(
                "WITH sums AS (
                    SELECT d.event_id,
                        CASE WHEN bool_or(d.status = 'processing') THEN 'processing'
                             WHEN bool_or(d.status = 'failed') THEN 'failed'
                             WHEN bool_and(d.status = 'received') THEN 'received'
                             WHEN bool_or(d.status IN ('received', 'queued')) THEN 'queued'
                             WHEN bool_or(d.status = 'dead') THEN 'dead'
                             ELSE 'processed' END AS status,
                        sum(d.attempts)::integer AS attempts,
                        max(d.started_at) AS started_at,
                        (array_agg(d.last_error ORDER BY d.finished_at DESC NULLS LAST)
                            FILTER (WHERE d.last_error IS NOT NULL))[1] AS last_error
                    FROM {s}.deliveries d WHERE d.event_id = ANY($1::bigint[])
                    GROUP BY d.event_id
                 )
                 UPDATE {s}.events e
                 SET status = sums.status, attempts = sums.attempts,
                     started_at = sums.started_at, last_error = sums.last_error,
                     finished_at = CASE WHEN sums.status IN ('processed', 'failed', 'dead')
                                        THEN now() ELSE e.finished_at END,
                     dead_at = CASE WHEN sums.status = 'dead' THEN coalesce(e.dead_at, now()) END,
                     due_at = NULL, lease_token = NULL, updated_at = now()
                 FROM sums WHERE e.id = sums.event_id"
            ),
            // A worker's results (`results.rs`), as the events' `finish_batch`: each
            // delivery named by id and token (`id = ANY`: the primary key, in id order).
            // Returns the event, the id and the token of each that applied.
            finish: format!(
                "WITH {RESULTS}, u AS (
                    UPDATE {s}.deliveries d SET {set}
                    FROM r
                    WHERE d.id = ANY($1::bigint[]) AND d.id = r.id AND d.lease_token = r.token
                      AND d.status = 'processing'
                    RETURNING d.event_id, d.id, r.token, d.attempts, d.started_at, r.error,
                              r.outcome
                 ), history AS (
                    INSERT INTO {s}.attempts (event_id, attempt, started_at, finished_at, outcome, error)
                    SELECT event_id, attempts, started_at, now(), outcome, error FROM u
                 )
                 SELECT event_id, id, token FROM u"
            ),
            renew: format!(
                "WITH {DEFERRED_COMMIT}
                 UPDATE {s}.deliveries SET due_at = now() + $3::bigint {ms}
                 FROM deferred
                 WHERE id = ANY($1::bigint[]) AND status = 'processing'
                   AND (id, lease_token) IN (SELECT * FROM unnest($1::bigint[], $2::bigint[]))"
            ),
            give_back: format!(
                "UPDATE {s}.deliveries
                 SET status = 'queued', attempts = greatest(attempts - 1, 0), due_at = now(),
                     lease_token = NULL, updated_at = now()
                 WHERE id = ANY($1::bigint[]) AND status = 'processing'
                   AND (id, lease_token) IN (SELECT * FROM unnest($1::bigint[], $2::bigint[]))
                 RETURNING event_id"
            ),
            // What the next lease could take, held destinations and lanes' tails left out:
            // they would otherwise wake an idle worker over and over.
            next_due: format!(
                "SELECT (extract(epoch FROM min(d.due_at) - now()) * 1000)::bigint
                 FROM {s}.deliveries d
                 WHERE d.due_at IS NOT NULL AND d.destination <> ALL($1::text[])
                   AND NOT ({behind})"
            ),
            paused: format!("SELECT destination FROM {s}.destination_pauses ORDER BY destination"),
            pause: format!(
                "INSERT INTO {s}.destination_pauses (destination) VALUES ($1)
                 ON CONFLICT (destination) DO NOTHING"
            ),
            resume: format!("DELETE FROM {s}.destination_pauses WHERE destination = $1"),
            read: format!(
                "SELECT event_id, destination, lane, status, attempts, due_at, finished_at, last_error
                 FROM {s}.deliveries WHERE event_id = $1 ORDER BY id"
            ),
            counts: format!(
                "SELECT destination, status, count(*) FROM {s}.deliveries
                 GROUP BY destination, status ORDER BY destination, status"
            ),
            // The predicate of the deliveries_lane partial index, so it answers alone.
            lane_backlog: format!(
                "SELECT destination, count(*) FROM {s}.deliveries
                 WHERE lane IS NOT NULL AND status NOT IN ('processed', 'dead')
                 GROUP BY destination ORDER BY destination"
            ),
            replay_all: replay("true"),
            replay_id: replay("d.event_id = $2::bigint"),
            replay_ids: replay("d.event_id = ANY($2::bigint[])"),
            replay_type: replay(&format!(
                "d.event_id IN (SELECT id FROM {s}.events WHERE {})",
                crate::schema::outside_received("", "event_type", "$2::text")
            )),
            // The deliveries of events pruned (processed, then deleted), and the filtered
            // events past the retention.
            prune: format!(
                "WITH gone AS (
                    DELETE FROM {s}.events WHERE id IN (
                        SELECT id FROM {s}.events
                        WHERE status = 'filtered' AND finished_at < now() - $1::bigint {ms}
                        LIMIT $2)
                    RETURNING id
                 ), orphans AS (
                    DELETE FROM {s}.deliveries WHERE id IN (
                        SELECT d.id FROM {s}.deliveries d
                        WHERE d.status = 'processed' AND d.finished_at < now() - $1::bigint {ms}
                          AND NOT EXISTS (SELECT 1 FROM {s}.events e WHERE e.id = d.event_id)
                        LIMIT $2)
                    RETURNING id
                 )
                 SELECT (SELECT count(*) FROM gone), (SELECT count(*) FROM orphans)"
            ),
        }
    }
}

/// Opens the enqueue's transaction when the store routes events: the batch's statement
/// and its deliveries then commit together ([`route_batch`] commits).
pub(crate) async fn begin_routed(store: &PgStore, conn: &mut Conn) -> Result<(), Error> {
    if store.inner.router.is_some() {
        conn.begin().await?;
    }
    Ok(())
}

/// Routes the events the batch's statement stored (`rows`: id and dedup key) with the
/// store's router, writes their deliveries and the `filtered` status of those no
/// destination took, and commits the transaction [`begin_routed`] opened. Nothing when the
/// store has no destinations. On error the connection is dropped in its transaction,
/// which rolls the whole batch back.
pub(crate) async fn route_batch<'a>(
    store: &PgStore,
    conn: &mut Conn,
    rows: &[Row],
    events: impl Iterator<Item = &'a VerifiedEvent>,
) -> Result<(), Error> {
    let Some(router) = &store.inner.router else {
        return Ok(());
    };
    let by_key: HashMap<&str, &VerifiedEvent> = events.map(|e| (e.dedup_key(), e)).collect();
    let mut event_ids: Vec<i64> = Vec::with_capacity(rows.len());
    let mut destinations: Vec<&str> = Vec::new();
    let mut lanes: Vec<Option<String>> = Vec::new();
    let mut filtered: Vec<i64> = Vec::new();
    let mut stored: Vec<i64> = Vec::with_capacity(rows.len());
    for row in rows {
        let id: i64 = row.try_get(0)?;
        let key: &str = row.try_get(1)?;
        let Some(event) = by_key.get(key) else {
            return Err(Error::Corrupt(format!(
                "the batch stored event {id} under a key it was not given"
            )));
        };
        stored.push(id);
        let headers: Vec<(String, String)> = event
            .headers()
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect();
        let routes = router.route(EventView::new(event.event_type(), &headers, event.body()));
        if routes.is_empty() {
            filtered.push(id);
        }
        for routed in routes {
            let Some(destination) = router.destinations().get(routed.destination()) else {
                continue;
            };
            event_ids.push(id);
            destinations.push(destination.name());
            lanes.push(routed.into_lane().map(|lane| lane.as_str().to_owned()));
        }
    }
    conn.execute(
        &store.inner.delivery_sql.insert,
        &[&event_ids, &destinations, &lanes, &stored, &filtered],
    )
    .await?;
    conn.commit().await
}

/// `processed`, `failed` (a retry) or `dead`: how an attempt of a delivery ended.
pub(crate) fn outcome(status: &str) -> &'static str {
    match status {
        "processed" => "processed",
        "dead" => "dead",
        _ => "retry",
    }
}

impl PgStore {
    /// Sums the deliveries of `events` up into their rows, in the open transaction.
    ///
    /// The event rows are locked first, in id order, by a statement of their own: the
    /// summing statement then starts (and takes its snapshot) only once it holds them,
    /// so it sees every delivery change of a transaction that summed the same event up
    /// before it. Locked and summed in one statement, two deliveries of one event ending
    /// at once would each miss the other's change (their snapshots predate the other's
    /// commit), and the event would stay `processing` with both done.
    async fn summarize(&self, conn: &mut Conn, mut events: Vec<i64>) -> Result<(), Error> {
        if events.is_empty() {
            return Ok(());
        }
        events.sort_unstable();
        events.dedup();
        let sql = &self.inner.delivery_sql;
        conn.query(&sql.lock_events, &[&events]).await?;
        conn.execute(&sql.summarize, &[&events]).await?;
        Ok(())
    }

    /// Runs `sql` with `params` (returning event ids first) and sums the events up, in
    /// one transaction; returns the statement's rows. `bookkeeping`: the worker's own change (a
    /// result, a give-back), committed without waiting for the WAL flush
    /// ([`DEFERRED_COMMIT`](crate::schema::DEFERRED_COMMIT)); a replay waits for it.
    async fn change_and_summarize(
        &self,
        conn: &mut Conn,
        bookkeeping: bool,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        if bookkeeping {
            conn.begin_deferred().await?;
        } else {
            conn.begin().await?;
        }
        let rows = conn.query(sql, params).await?;
        let events = rows
            .iter()
            .map(|row| row.try_get::<_, i64>(0))
            .collect::<Result<Vec<i64>, _>>()?;
        self.summarize(conn, events).await?;
        conn.commit().await?;
        Ok(rows)
    }

    /// Leases up to `limit` due deliveries for `lease`, skipping the destinations in
    /// `held` and every delivery behind an unfinished one of its lane.
    pub(crate) async fn lease_deliveries(
        &self,
        limit: usize,
        lease: Duration,
        held: &[String],
    ) -> LeaseResult<PgQueue> {
        let sql = &self.inner.delivery_sql;
        let token = fastrand::i64(..);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut conn = self.conn().await?;
        conn.begin_deferred().await?;
        let taken = conn
            .query(&sql.lease, &[&token, &millis(lease), &limit, &held])
            .await?;
        let events: Vec<i64> = taken
            .iter()
            .map(|row| row.try_get::<_, i64>(1))
            .collect::<Result<_, _>>()?;
        self.summarize(&mut conn, events.clone()).await?;
        conn.commit().await?;
        if taken.is_empty() {
            return Ok(Vec::new());
        }
        let rows = conn.query(&sql.events, &[&events]).await?;
        let mut by_id: HashMap<i64, &Row> = HashMap::with_capacity(rows.len());
        for row in &rows {
            by_id.insert(row.try_get(0)?, row);
        }
        let mut leased = Vec::with_capacity(taken.len());
        for row in &taken {
            let id: i64 = row.try_get(0)?;
            let event_id: i64 = row.try_get(1)?;
            let destination: String = row.try_get(2)?;
            let lane: Option<String> = row.try_get(3)?;
            let attempt = u32::try_from(row.try_get::<_, i32>(4)?).unwrap_or(0);
            let queue_id = format!("{event_id}/{destination}");
            let lane = lane.as_deref().map(LaneKey::new);
            let event = match by_id.get(&event_id).map(|row| queued_event(row)) {
                Some(Ok(event)) => Ok(event),
                Some(Err(err)) => Err(err.to_string()),
                None => Err(format!("delivery {id} has no event {event_id}")),
            };
            let delivery = match event {
                Ok(event) => {
                    let event =
                        QueuedEvent::new(event.into_envelope(), event_id.to_string(), attempt)
                            .with_destination(destination.clone());
                    Leased::new((id, token), queue_id, attempt, event)
                }
                Err(reason) => Leased::unreadable((id, token), queue_id, attempt, reason),
            };
            leased.push(delivery.with_destination(destination, lane));
        }
        Ok(leased)
    }

    /// Extends the leases of deliveries still held.
    pub(crate) async fn renew_deliveries(
        &self,
        tickets: Vec<(i64, i64)>,
        lease: Duration,
    ) -> Result<(), Error> {
        let (ids, tokens): (Vec<i64>, Vec<i64>) = tickets.into_iter().unzip();
        self.conn()
            .await?
            .execute(
                &self.inner.delivery_sql.renew,
                &[&ids, &tokens, &millis(lease)],
            )
            .await?;
        Ok(())
    }

    /// Records the ends of attempts of deliveries under their leases (a worker's results,
    /// written together by `results.rs`), with the summary of their events, in one
    /// transaction; returns the `(id, token)` of each that applied (a lost lease changes
    /// nothing).
    pub(crate) async fn finish_deliveries(
        &self,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<HashSet<(i64, i64)>, Error> {
        let mut conn = self.conn().await?;
        let rows = self
            .change_and_summarize(&mut conn, true, &self.inner.delivery_sql.finish, params)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(1)?, row.try_get(2)?)))
            .collect()
    }

    /// Gives deliveries back uncounted, due now (held by their destination, or at
    /// shutdown), and wakes the workers; returns how many.
    pub(crate) async fn give_back_deliveries(
        &self,
        tickets: Vec<(i64, i64)>,
    ) -> Result<u64, Error> {
        let (ids, tokens): (Vec<i64>, Vec<i64>) = tickets.into_iter().unzip();
        let mut conn = self.conn().await?;
        let events = self
            .change_and_summarize(
                &mut conn,
                true,
                &self.inner.delivery_sql.give_back,
                &[&ids, &tokens],
            )
            .await?;
        conn.query(&self.inner.sql.notify, &[]).await?;
        Ok(u64::try_from(events.len()).unwrap_or(u64::MAX))
    }

    /// How long until the next delivery a lease skipping `held` could take is due
    /// (`None`: nothing is scheduled).
    pub(crate) async fn next_delivery_due(
        &self,
        held: &[String],
    ) -> Result<Option<Duration>, Error> {
        let rows = self
            .conn()
            .await?
            .query(&self.inner.delivery_sql.next_due, &[&held])
            .await?;
        let ms: Option<i64> = rows
            .first()
            .map(|row| row.try_get(0))
            .transpose()?
            .flatten();
        Ok(ms.map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))))
    }

    /// Pauses deliveries to `destination`: workers on this store, in every replica, stop
    /// starting them (within their poll interval) while the receivers keep storing events.
    /// Returns `false` if it was paused already.
    ///
    /// # Errors
    /// [`Error::Unavailable`], [`Error::Database`].
    pub async fn pause_destination(&self, destination: &str) -> Result<bool, Error> {
        let changed = self
            .conn()
            .await?
            .execute(&self.inner.delivery_sql.pause, &[&destination])
            .await?;
        Ok(changed > 0)
    }

    /// Resumes deliveries to `destination` and wakes the workers. Returns `false` if it
    /// was not paused.
    ///
    /// # Errors
    /// [`Error::Unavailable`], [`Error::Database`].
    pub async fn resume_destination(&self, destination: &str) -> Result<bool, Error> {
        let mut conn = self.conn().await?;
        let changed = conn
            .execute(&self.inner.delivery_sql.resume, &[&destination])
            .await?;
        if changed > 0 {
            conn.query(&self.inner.sql.notify, &[]).await?;
        }
        Ok(changed > 0)
    }

    /// The paused destinations, by name.
    ///
    /// # Errors
    /// [`Error::Unavailable`], [`Error::Database`].
    pub async fn paused_destinations(&self) -> Result<Vec<String>, Error> {
        let rows = self
            .conn()
            .await?
            .query(&self.inner.delivery_sql.paused, &[])
            .await?;
        rows.iter()
            .map(|row| row.try_get(0).map_err(Error::from))
            .collect()
    }

    /// The deliveries of event `id`, one per destination its routing picked (none for a
    /// store without destinations, or a `filtered` event).
    ///
    /// # Errors
    /// [`Error::Unavailable`], [`Error::Database`], [`Error::Corrupt`].
    pub async fn deliveries(&self, id: EventId) -> Result<Vec<Delivery>, Error> {
        let rows = self
            .conn()
            .await?
            .query(&self.inner.delivery_sql.read, &[&id.get()])
            .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    /// Deliveries per destination and status: `(destination, status, count)`.
    ///
    /// # Errors
    /// [`Error::Unavailable`], [`Error::Database`], [`Error::Corrupt`].
    pub async fn delivery_counts(&self) -> Result<DeliveryCounts, Error> {
        let rows = self
            .conn()
            .await?
            .query(&self.inner.delivery_sql.counts, &[])
            .await?;
        let mut counts = Vec::with_capacity(rows.len());
        for row in &rows {
            let status: String = row.try_get(1)?;
            let count: i64 = row.try_get(2)?;
            counts.push((
                row.try_get(0)?,
                parse_status(&status)?,
                u64::try_from(count).unwrap_or(0),
            ));
        }
        Ok(counts)
    }

    /// Each ordered destination's lane backlog: `(destination, count)` of deliveries with
    /// a lane key that have not ended, over every replica; destinations with none are
    /// absent.
    ///
    /// # Errors
    /// [`Error::Unavailable`], [`Error::Database`].
    pub async fn lane_backlog(&self) -> Result<Vec<(String, u64)>, Error> {
        let rows = self
            .conn()
            .await?
            .query(&self.inner.delivery_sql.lane_backlog, &[])
            .await?;
        let mut backlog = Vec::with_capacity(rows.len());
        for row in &rows {
            let count: i64 = row.try_get(1)?;
            backlog.push((row.try_get(0)?, u64::try_from(count).unwrap_or(0)));
        }
        Ok(backlog)
    }

    /// Puts dead deliveries of `destination` back in the queue (due now, attempts from
    /// zero, at the tail of their lanes) and wakes the workers; the events' deliveries to
    /// other destinations are left alone. `which` selects by event (all, ids, event
    /// type). Returns how many were replayed.
    ///
    /// # Errors
    /// [`Error::Unavailable`], [`Error::Database`].
    pub async fn replay_destination(&self, destination: &str, which: Replay) -> Result<u64, Error> {
        self.replay_deliveries(Some(destination), &which).await
    }

    /// Replays the dead deliveries `which` selects, of `destination` or of every
    /// destination; returns how many.
    pub(crate) async fn replay_deliveries(
        &self,
        destination: Option<&str>,
        which: &Replay,
    ) -> Result<u64, Error> {
        let sql = &self.inner.delivery_sql;
        let mut conn = self.conn().await?;
        let events = match which {
            Replay::All => {
                self.change_and_summarize(&mut conn, false, &sql.replay_all, &[&destination])
                    .await?
            }
            Replay::Id(id) => {
                self.change_and_summarize(
                    &mut conn,
                    false,
                    &sql.replay_id,
                    &[&destination, &id.get()],
                )
                .await?
            }
            Replay::Ids(ids) => {
                let ids: Vec<i64> = ids.iter().map(|id| id.get()).collect();
                self.change_and_summarize(&mut conn, false, &sql.replay_ids, &[&destination, &ids])
                    .await?
            }
            Replay::EventType(event_type) => {
                self.change_and_summarize(
                    &mut conn,
                    false,
                    &sql.replay_type,
                    &[&destination, event_type],
                )
                .await?
            }
            // A kind of replay this build does not know selects nothing.
            _ => Vec::new(),
        };
        if !events.is_empty() {
            conn.query(&self.inner.sql.notify, &[]).await?;
        }
        Ok(u64::try_from(events.len()).unwrap_or(u64::MAX))
    }

    /// Deletes the filtered events past the retention and the processed deliveries of
    /// pruned events, at most `batch` of each; returns `(events, deliveries)` deleted.
    pub(crate) async fn prune_deliveries(
        &self,
        conn: &mut Conn,
        retention: i64,
        batch: i64,
    ) -> Result<(i64, i64), Error> {
        let rows = conn
            .query(&self.inner.delivery_sql.prune, &[&retention, &batch])
            .await?;
        match rows.first() {
            Some(row) => Ok((row.try_get(0)?, row.try_get(1)?)),
            None => Ok((0, 0)),
        }
    }
}

fn parse_status(status: &str) -> Result<Status, Error> {
    status
        .parse()
        .map_err(|_| Error::Corrupt(format!("delivery status {status:?}")))
}

fn delivery_from_row(row: &Row) -> Result<Delivery, Error> {
    let status: String = row.try_get(3)?;
    let mut delivery = Delivery::new(EventId::new(row.try_get(0)?), row.try_get::<_, String>(1)?);
    delivery.lane = row.try_get(2)?;
    delivery.status = parse_status(&status)?;
    delivery.attempts = u32::try_from(row.try_get::<_, i32>(4)?).unwrap_or(0);
    delivery.due_at = row.try_get::<_, Option<SystemTime>>(5)?;
    delivery.finished_at = row.try_get::<_, Option<SystemTime>>(6)?;
    delivery.last_error = row.try_get(7)?;
    Ok(delivery)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
mod tests {
    //! Against a real PostgreSQL (started by the test), through the queue's own calls.

    use std::collections::BTreeMap;

    use hookgate::{SchemeId, SignRequest, Signer, Verifier};
    use hookgate_queue::{Destination, DestinationTarget, EventFilter, Queue, Router};
    use hookgate_testkit::Postgres;

    use super::*;

    use crate::{Enqueued, PgQueue};

    /// One result, as a worker's results writer records a round of one.
    async fn finish_one(
        store: &PgStore,
        (id, token): (i64, i64),
        status: &'static str,
        delay: i64,
        error: Option<String>,
    ) -> Result<bool, Error> {
        let (ids, tokens, statuses): (&[i64], &[i64], &[&str]) = (&[id], &[token], &[status]);
        let (delays, errors, kinds): (&[i64], &[Option<String>], &[&str]) =
            (&[delay], &[error], &[outcome(status)]);
        let applied = store
            .finish_deliveries(&[&ids, &tokens, &statuses, &delays, &errors, &kinds])
            .await?;
        Ok(applied.contains(&(id, token)))
    }

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const LEASE: Duration = Duration::from_secs(30);

    fn event(id: &str, body: &str) -> VerifiedEvent {
        let delivery = Signer::new(SchemeId::StandardWebhooksV1, SECRET)
            .unwrap()
            .sign(&SignRequest::new(body.to_owned()).id(id))
            .unwrap();
        Verifier::builder(SchemeId::StandardWebhooksV1)
            .secret(SECRET)
            .build()
            .unwrap()
            .verify(&delivery.headers, delivery.body)
            .unwrap()
    }

    fn destination(name: &str) -> Destination {
        Destination::new(name, DestinationTarget::Exec("true".into())).unwrap()
    }

    fn body_filter(json: &str) -> EventFilter {
        EventFilter::compile(&serde_json::from_str(json).unwrap()).unwrap()
    }

    async fn store(url: &str, destinations: Vec<Destination>) -> PgStore {
        PgStore::builder()
            .destinations(Router::new(destinations).unwrap())
            .connect(url)
            .await
            .unwrap()
    }

    async fn enqueue(store: &PgStore, id: &str, body: &str) -> i64 {
        match store.enqueue(&event(id, body)).await.unwrap() {
            Enqueued::Stored(id) => id.get(),
            Enqueued::Duplicate => panic!("{id} is a duplicate"),
        }
    }

    type LeasedDelivery = Leased<(i64, i64), QueuedEvent>;

    /// `(event id, destination, lane)` of each leased delivery, sorted.
    fn summary(leased: &[LeasedDelivery]) -> Vec<(i64, String, Option<String>)> {
        let mut out: Vec<_> = leased
            .iter()
            .map(|l| {
                let event = l.event.as_ref().unwrap();
                assert_eq!(event.destination(), l.destination.as_deref());
                (
                    event.id().parse::<i64>().unwrap(),
                    l.destination.clone().unwrap(),
                    l.lane.as_ref().map(|k| k.as_str().to_owned()),
                )
            })
            .collect();
        out.sort();
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn leases_skip_held_destinations_and_pauses_are_shared_by_every_store() {
        let Some(pg) = Postgres::start() else { return };
        let url = pg.url();
        let routed = store(&url, vec![destination("billing"), destination("audit")]).await;
        let first = enqueue(&routed, "msg_1", "{}").await;
        let queue = PgQueue::new(&routed);
        let leased = queue
            .lease_except(10, LEASE, Duration::ZERO, vec!["audit".to_owned()])
            .await
            .unwrap();
        assert_eq!(summary(&leased), [(first, "billing".to_owned(), None)]);
        // Another process (a CLI, a store without destinations) pauses audit.
        let cli = PgStore::connect(&url).await.unwrap();
        assert!(cli.pause_destination("audit").await.unwrap());
        assert!(!cli.pause_destination("audit").await.unwrap());
        assert_eq!(queue.paused().await.unwrap(), ["audit"]);
        // The held audit delivery is still there for the next lease that does not skip it.
        assert!(cli.resume_destination("audit").await.unwrap());
        assert!(queue.paused().await.unwrap().is_empty());
        let rest = queue.lease(10, LEASE, Duration::ZERO).await.unwrap();
        assert_eq!(summary(&rest), [(first, "audit".to_owned(), None)]);
        let entry = routed.entry(EventId::new(first)).await.unwrap().unwrap();
        assert_eq!((entry.status, entry.attempts), (Status::Processing, 2));
        assert!(
            queue
                .lease(10, LEASE, Duration::ZERO)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_replicas_leasing_at_once_never_run_one_lane_twice_and_keep_its_order() {
        let Some(pg) = Postgres::start() else { return };
        let url = pg.url();
        let ordered = || {
            vec![
                destination("ordered").with_order_key("/customer".parse().unwrap()),
                destination("free"),
            ]
        };
        // Two replicas: stores of their own, so their leases run on different connections.
        let a = store(&url, ordered()).await;
        let b = store(&url, ordered()).await;
        let mut lane_of: BTreeMap<i64, String> = BTreeMap::new();
        for n in 0..18 {
            let customer = format!("c{}", n % 3);
            let id = enqueue(
                &a,
                &format!("msg_{n}"),
                &format!(r#"{{"customer":"{customer}"}}"#),
            )
            .await;
            lane_of.insert(id, customer);
        }
        let mut order: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        let mut failed_once: Vec<i64> = Vec::new();
        let mut free = 0;
        let mut rounds = 0;
        while order.values().map(Vec::len).sum::<usize>() < 18 || free < 18 {
            rounds += 1;
            assert!(rounds < 500, "stuck: {order:?}, {free} free");
            let (from_a, from_b) = tokio::join!(
                a.lease_deliveries(4, LEASE, &[]),
                b.lease_deliveries(4, LEASE, &[])
            );
            let leased: Vec<(PgStore, LeasedDelivery)> = from_a
                .unwrap()
                .into_iter()
                .map(|l| (a.clone(), l))
                .chain(from_b.unwrap().into_iter().map(|l| (b.clone(), l)))
                .collect();
            let mut lanes_running: Vec<String> = Vec::new();
            for (_, l) in &leased {
                if let Some(lane) = &l.lane {
                    assert!(
                        !lanes_running.contains(&lane.as_str().to_owned()),
                        "lane {} handed out twice at once",
                        lane.as_str()
                    );
                    lanes_running.push(lane.as_str().to_owned());
                }
            }
            for (replica, l) in leased {
                let event_id: i64 = l.event.as_ref().unwrap().id().parse().unwrap();
                if l.destination.as_deref() == Some("free") {
                    free += 1;
                    assert!(
                        finish_one(&replica, l.ticket, "processed", 0, None)
                            .await
                            .unwrap()
                    );
                    continue;
                }
                // Every fourth event's first attempt fails: its lane waits for the retry.
                if event_id % 4 == 0 && !failed_once.contains(&event_id) {
                    failed_once.push(event_id);
                    let error = Some("500".to_owned());
                    assert!(
                        finish_one(&replica, l.ticket, "failed", 0, error)
                            .await
                            .unwrap()
                    );
                    continue;
                }
                order
                    .entry(lane_of[&event_id].clone())
                    .or_default()
                    .push(event_id);
                assert!(
                    finish_one(&replica, l.ticket, "processed", 0, None)
                        .await
                        .unwrap()
                );
            }
        }
        for (lane, ids) in &order {
            let mut sorted = ids.clone();
            sorted.sort_unstable();
            assert_eq!(ids, &sorted, "lane {lane} out of order");
            assert_eq!(ids.len(), 6);
        }
        assert!(!failed_once.is_empty());
        let counts = a.delivery_counts().await.unwrap();
        assert!(counts.contains(&("ordered".to_owned(), Status::Processed, 18)));
        assert!(counts.contains(&("free".to_owned(), Status::Processed, 18)));
        assert_eq!(a.status_counts().await.unwrap().get(Status::Processed), 18);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_retrying_head_holds_its_lane_and_a_dead_letter_releases_it() {
        let Some(pg) = Postgres::start() else { return };
        let url = pg.url();
        let routed = store(
            &url,
            vec![destination("ordered").with_order_key("/customer".parse().unwrap())],
        )
        .await;
        let one = enqueue(&routed, "msg_1", r#"{"customer":"c1"}"#).await;
        let two = enqueue(&routed, "msg_2", r#"{"customer":"c2"}"#).await;
        let three = enqueue(&routed, "msg_3", r#"{"customer":"c1"}"#).await;
        let first = routed.lease_deliveries(10, LEASE, &[]).await.unwrap();
        assert_eq!(
            summary(&first),
            [
                (one, "ordered".to_owned(), Some("c1".to_owned())),
                (two, "ordered".to_owned(), Some("c2".to_owned()))
            ],
            "event 3 waits behind 1"
        );
        let head = first
            .iter()
            .find(|l| l.lane.as_ref().unwrap().as_str() == "c1")
            .unwrap();
        let error = Some("500".to_owned());
        assert!(
            finish_one(&routed, head.ticket, "failed", 60_000, error)
                .await
                .unwrap()
        );
        let c2 = first
            .iter()
            .find(|l| l.lane.as_ref().unwrap().as_str() == "c2")
            .unwrap();
        assert!(
            finish_one(&routed, c2.ticket, "processed", 0, None)
                .await
                .unwrap()
        );
        assert!(
            routed
                .lease_deliveries(10, LEASE, &[])
                .await
                .unwrap()
                .is_empty()
        );
        // The wait of an idle worker does not count the lane's tail as due.
        let due = routed.next_delivery_due(&[]).await.unwrap().unwrap();
        assert!(due > Duration::from_secs(50), "{due:?}");
        // The retry falls due; this time the head dies, and releases its lane.
        let db = routed.conn().await.unwrap();
        db.client()
            .unwrap()
            .execute(
                "UPDATE hookgate.deliveries SET due_at = now() WHERE event_id = $1",
                &[&one],
            )
            .await
            .unwrap();
        drop(db);
        let again = routed.lease_deliveries(10, LEASE, &[]).await.unwrap();
        assert_eq!(
            summary(&again),
            [(one, "ordered".to_owned(), Some("c1".to_owned()))]
        );
        let gone = Some("gave up".to_owned());
        assert!(
            finish_one(&routed, again[0].ticket, "dead", 0, gone)
                .await
                .unwrap()
        );
        let next = routed.lease_deliveries(10, LEASE, &[]).await.unwrap();
        assert_eq!(
            summary(&next),
            [(three, "ordered".to_owned(), Some("c1".to_owned()))]
        );
        let entry = routed.entry(EventId::new(one)).await.unwrap().unwrap();
        assert_eq!(
            (entry.status, entry.attempts, entry.last_error.as_deref()),
            (Status::Dead, 2, Some("gave up"))
        );
        // A lost lease changes nothing.
        assert!(
            !finish_one(&routed, again[0].ticket, "processed", 0, None)
                .await
                .unwrap()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replaying_one_destination_leaves_the_others_deliveries_alone() {
        let Some(pg) = Postgres::start() else { return };
        let url = pg.url();
        let routed = store(&url, vec![destination("billing"), destination("audit")]).await;
        let id = enqueue(&routed, "msg_1", "{}").await;
        let other = enqueue(&routed, "msg_2", "{}").await;
        for leased in routed.lease_deliveries(10, LEASE, &[]).await.unwrap() {
            let (status, error) = match leased.destination.as_deref() {
                Some("billing") => ("dead", Some("billing answered 500".to_owned())),
                _ => ("processed", None),
            };
            assert!(
                finish_one(&routed, leased.ticket, status, 0, error)
                    .await
                    .unwrap()
            );
        }
        let entry = routed.entry(EventId::new(id)).await.unwrap().unwrap();
        assert_eq!(
            entry.status,
            Status::Dead,
            "one delivery dead, the other done"
        );
        assert_eq!(routed.dead_letters(None, 10).await.unwrap().len(), 2);
        let shown: Vec<(String, Status, u32)> = routed
            .deliveries(EventId::new(id))
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.destination, d.status, d.attempts))
            .collect();
        assert_eq!(
            shown,
            [
                ("billing".to_owned(), Status::Dead, 1),
                ("audit".to_owned(), Status::Processed, 1)
            ]
        );
        // An unknown destination replays nothing; billing's one event is replayed alone.
        assert_eq!(
            routed
                .replay_destination("audit", Replay::All)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            routed
                .replay_destination("billing", Replay::Id(EventId::new(id)))
                .await
                .unwrap(),
            1
        );
        let entry = routed.entry(EventId::new(id)).await.unwrap().unwrap();
        assert_eq!(entry.status, Status::Queued);
        let again = routed.lease_deliveries(10, LEASE, &[]).await.unwrap();
        assert_eq!(summary(&again), [(id, "billing".to_owned(), None)]);
        assert_eq!(again[0].attempt, 1, "attempts count from zero again");
        assert!(
            finish_one(&routed, again[0].ticket, "processed", 0, None)
                .await
                .unwrap()
        );
        let entry = routed.entry(EventId::new(id)).await.unwrap().unwrap();
        assert_eq!(entry.status, Status::Processed);
        // The event-level replay (the CLI's without --destination, from a store without
        // destinations) replays the other event's dead delivery, not the event row.
        let cli = PgStore::connect(&url).await.unwrap();
        assert_eq!(cli.replay_dead_letters(Replay::All).await.unwrap(), 1);
        let again = routed.lease_deliveries(10, LEASE, &[]).await.unwrap();
        assert_eq!(summary(&again), [(other, "billing".to_owned(), None)]);
        assert!(
            PgQueue::new(&cli)
                .lease(10, LEASE, Duration::ZERO)
                .await
                .unwrap()
                .is_empty(),
            "a routed event is never leased as a plain event"
        );
    }

    /// A round of a fan-out worker's results: every delivery of the round in one
    /// transaction (their attempts share its `now()`), each event summed up once from both
    /// of its deliveries, and a result under a taken-over lease answered `false`.
    #[tokio::test]
    async fn a_round_of_delivery_results_is_one_transaction() {
        let Some(pg) = Postgres::start() else { return };
        let routed = store(&pg.url(), vec![destination("a"), destination("b")]).await;
        for n in 0..4 {
            enqueue(&routed, &format!("msg_{n}"), "{}").await;
        }
        let leased = routed.lease_deliveries(8, LEASE, &[]).await.unwrap();
        assert_eq!(leased.len(), 8);
        let results = std::sync::Arc::new(crate::results::Results::default());
        // Spawned before any of them runs (one thread): the first one's writer finds all.
        let calls: Vec<_> = leased
            .iter()
            .enumerate()
            .map(|(n, l)| {
                let (results, routed) = (results.clone(), routed.clone());
                let (id, token) = l.ticket;
                // The last one's lease was taken over: its result carries another token.
                let token = if n == 7 { token.wrapping_add(1) } else { token };
                let outcome = crate::results::Outcome {
                    id,
                    token,
                    status: "processed",
                    delay_ms: 0,
                    error: None,
                };
                tokio::spawn(async move { results.record(&routed, outcome).await.unwrap() })
            })
            .collect();
        let mut answers = Vec::new();
        for call in calls {
            answers.push(call.await.unwrap());
        }
        assert_eq!(answers, [true, true, true, true, true, true, true, false]);
        // Three events with both deliveries done; the fourth still has one running.
        let counts = routed.status_counts().await.unwrap();
        assert_eq!(counts.get(Status::Processed), 3, "{counts:?}");
        assert_eq!(counts.get(Status::Processing), 1, "{counts:?}");
        let history = routed
            .conn()
            .await
            .unwrap()
            .query(
                "SELECT count(*), count(DISTINCT finished_at) FROM hookgate.attempts",
                &[],
            )
            .await
            .unwrap();
        let (attempts, transactions): (i64, i64) = (history[0].get(0), history[0].get(1));
        assert_eq!((attempts, transactions), (7, 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_deliveries_of_one_event_ending_at_once_both_count_in_its_status() {
        let Some(pg) = Postgres::start() else { return };
        let url = pg.url();
        let both = || vec![destination("a"), destination("b")];
        // The two ends of each event come from two replicas at the same moment.
        let (one, two) = (store(&url, both()).await, store(&url, both()).await);
        for n in 0..30 {
            enqueue(&one, &format!("msg_{n}"), "{}").await;
        }
        let leased = one.lease_deliveries(60, LEASE, &[]).await.unwrap();
        assert_eq!(leased.len(), 60);
        let mut by_event: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
        for l in &leased {
            let event: i64 = l.event.as_ref().unwrap().id().parse().unwrap();
            by_event.entry(event).or_default().push(l.ticket);
        }
        for tickets in by_event.values() {
            let (x, y) = tokio::join!(
                finish_one(&one, tickets[0], "processed", 0, None),
                finish_one(&two, tickets[1], "processed", 0, None)
            );
            assert!(x.unwrap() && y.unwrap());
        }
        let counts = one.status_counts().await.unwrap();
        assert_eq!(counts.get(Status::Processed), 30, "{counts:?}");
    }

    /// A routed event waits as `received` without a due time of its own (its deliveries
    /// have it): the log still finds it by that status, by its delivery id and by its type,
    /// before its lease and after.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_log_finds_routed_events_waiting_and_leased() {
        let Some(pg) = Postgres::start() else { return };
        let url = pg.url();
        let routed = store(&url, vec![destination("billing")]).await;
        let id = enqueue(&routed, "msg_1", r#"{"type":"invoice.paid"}"#).await;
        let find = |query: crate::LogQuery| {
            let routed = routed.clone();
            async move {
                let entries = routed.query(query.include_test(true)).await.unwrap();
                entries
                    .iter()
                    .map(|entry| entry.id.get())
                    .collect::<Vec<i64>>()
            }
        };
        let entry = routed.entry(EventId::new(id)).await.unwrap().unwrap();
        assert_eq!(entry.status, Status::Received);
        assert_eq!(entry.event_type.as_deref(), Some("invoice.paid"));
        for leased in [false, true] {
            if leased {
                let taken = routed.lease_deliveries(10, LEASE, &[]).await.unwrap();
                assert_eq!(summary(&taken), [(id, "billing".to_owned(), None)]);
            }
            let waiting = find(crate::LogQuery::new().status(Status::Received)).await;
            assert_eq!(waiting, if leased { vec![] } else { vec![id] });
            let by_delivery = find(crate::LogQuery::new().delivery_id("msg_1")).await;
            assert_eq!(by_delivery, [id], "leased: {leased}");
            let by_type = find(crate::LogQuery::new().event_type("invoice.paid")).await;
            assert_eq!(by_type, [id], "leased: {leased}");
        }
        assert!(
            find(crate::LogQuery::new().delivery_id("msg_2"))
                .await
                .is_empty()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_no_destination_takes_are_stored_as_filtered() {
        let Some(pg) = Postgres::start() else { return };
        let url = pg.url();
        let routed = store(
            &url,
            vec![
                destination("invoices").with_filter(body_filter(r#"{"body":{"/kind":"invoice"}}"#)),
            ],
        )
        .await;
        let charge = enqueue(&routed, "msg_1", r#"{"kind":"charge"}"#).await;
        let invoice = enqueue(&routed, "msg_2", r#"{"kind":"invoice"}"#).await;
        let entry = routed.entry(EventId::new(charge)).await.unwrap().unwrap();
        assert_eq!(entry.status, Status::Filtered);
        assert!(
            routed
                .deliveries(EventId::new(charge))
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            routed.status_counts().await.unwrap().get(Status::Filtered),
            1
        );
        let leased = routed.lease_deliveries(10, LEASE, &[]).await.unwrap();
        assert_eq!(summary(&leased), [(invoice, "invoices".to_owned(), None)]);
        // A duplicate of a routed event writes no second delivery.
        assert_eq!(
            routed
                .enqueue(&event("msg_2", r#"{"kind":"invoice"}"#))
                .await
                .unwrap(),
            Enqueued::Duplicate
        );
        assert_eq!(
            routed
                .deliveries(EventId::new(invoice))
                .await
                .unwrap()
                .len(),
            1
        );
    }
}
