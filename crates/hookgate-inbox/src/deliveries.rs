//! Deliveries per destination (issue 21): an inbox opened with destinations
//! ([`InboxBuilder::destinations`](crate::InboxBuilder::destinations)) routes each event
//! once, on receive, and the log record carries the result (see `segment.rs`); applying
//! the record writes one `deliveries` row per matching destination in the same
//! transaction as the event. No row at all: the event is `filtered`.
//!
//! Each delivery has its own status, attempts, due time, lease, last error and dead
//! letter; the event's `state` row sums them up for the event log (and keeps no due time,
//! so a worker without destinations never takes a routed event). A lease takes due
//! deliveries, skipping the destinations the worker holds and, for an ordered
//! destination, any delivery with an unfinished one of the same lane key before it
//! (`seq` order): a retrying head keeps its lane, after a restart too. A replayed dead
//! letter goes to the tail of its lane.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use crate::event::{EventId, InboxEvent, Status};
use crate::queue::{Completion, EVENT_COLUMNS, event_from_row};
use crate::segment::LogRecord;
use crate::time::{add, from_millis};
use crate::writer::Durability;
use crate::{Inbox, InboxError, Replay};

pub use hookgate_queue::event_log::Delivery;

/// A delivery a worker holds, with the token of its lease.
#[derive(Debug)]
pub(crate) struct LeasedDelivery {
    pub(crate) id: i64,
    pub(crate) token: i64,
    pub(crate) lane: Option<String>,
    pub(crate) event: InboxEvent,
}

/// Writes the deliveries of a routed record (its event and state rows are written):
/// `filtered` when routing matched nothing. Nothing for an unrouted record.
pub(crate) fn insert_routes(conn: &Connection, record: &LogRecord) -> Result<(), InboxError> {
    let Some(routes) = &record.event.routes else {
        return Ok(());
    };
    if routes.is_empty() {
        conn.prepare_cached(
            "UPDATE state SET status = 'filtered', due_at = NULL, finished_at = ?2 WHERE id = ?1",
        )?
        .execute(params![record.id, record.enqueued_at_ms])?;
        return Ok(());
    }
    conn.prepare_cached("UPDATE state SET due_at = NULL WHERE id = ?1")?
        .execute(params![record.id])?;
    // A lane's order is its events' order: `seq` starts as the event id (unique within a
    // destination, which has one delivery per event), and a replay moves it past the end.
    let mut insert = conn.prepare_cached(
        "INSERT INTO deliveries (event_id, destination, lane, seq, status, due_at)
         VALUES (?1, ?2, ?3, ?1, 'received', ?4)
         ON CONFLICT (event_id, destination) DO NOTHING",
    )?;
    for route in routes {
        insert.execute(params![
            record.id,
            route.destination,
            route.lane,
            record.enqueued_at_ms
        ])?;
    }
    Ok(())
}

/// Sums an event's deliveries up into its `state` row (and its dead-letter row).
fn summarize(conn: &Connection, event_id: i64, now: i64) -> Result<(), InboxError> {
    conn.prepare_cached(
        "UPDATE state SET
             status = (SELECT CASE
                 WHEN sum(status = 'processing') > 0 THEN 'processing'
                 WHEN sum(status = 'failed') > 0 THEN 'failed'
                 WHEN sum(status IN ('received', 'queued')) > 0 THEN
                     CASE WHEN sum(status = 'received') = count(*) THEN 'received' ELSE 'queued' END
                 WHEN sum(status = 'dead') > 0 THEN 'dead'
                 ELSE 'processed' END
                 FROM deliveries WHERE event_id = ?1),
             attempts = (SELECT coalesce(sum(attempts), 0) FROM deliveries WHERE event_id = ?1),
             started_at = (SELECT max(started_at) FROM deliveries WHERE event_id = ?1),
             last_error = (SELECT last_error FROM deliveries WHERE event_id = ?1
                           AND last_error IS NOT NULL ORDER BY finished_at DESC LIMIT 1),
             finished_at = ?2, due_at = NULL, lease_token = NULL
         WHERE id = ?1",
    )?
    .execute(params![event_id, now])?;
    let dead: Option<String> = conn
        .prepare_cached("SELECT last_error FROM state WHERE id = ?1 AND status = 'dead'")?
        .query_row(params![event_id], |row| row.get(0))
        .optional()?
        .flatten();
    match dead {
        Some(reason) => conn
            .prepare_cached(
                "INSERT INTO dead_letters (event_id, dead_at, reason) VALUES (?1, ?2, ?3)
                 ON CONFLICT(event_id) DO UPDATE SET dead_at = excluded.dead_at,
                                                     reason = excluded.reason",
            )?
            .execute(params![event_id, now, reason])?,
        None => conn
            .prepare_cached("DELETE FROM dead_letters WHERE event_id = ?1")?
            .execute(params![event_id])?,
    };
    Ok(())
}

/// For the event-level replay (`Inbox::replay_dead_letters`) of routed events, whose ids
/// are in `temp.replay_ids`: their dead deliveries are replayed instead of the event row.
pub(crate) fn replay_routed(conn: &Connection, now: i64) -> Result<(), InboxError> {
    let events: Vec<i64> = conn
        .prepare_cached(
            "SELECT DISTINCT event_id FROM deliveries
             WHERE event_id IN (SELECT id FROM temp.replay_ids)",
        )?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for event in events {
        requeue_dead(conn, "event_id = ?1", params![event], now)?;
        summarize(conn, event, now)?;
    }
    Ok(())
}

/// Puts the dead deliveries `condition` selects back in the queue, at the tail of their
/// lanes; returns the events they belong to.
fn requeue_dead(
    conn: &Connection,
    condition: &str,
    values: impl rusqlite::Params,
    now: i64,
) -> Result<Vec<i64>, InboxError> {
    let tail: i64 = conn.query_row("SELECT coalesce(max(seq), 0) FROM deliveries", [], |row| {
        row.get(0)
    })?;
    let sql = format!(
        "UPDATE deliveries SET status = 'queued', attempts = 0, due_at = {now},
             lease_token = NULL, seq = {tail} + id
         WHERE status = 'dead' AND {condition}
         RETURNING event_id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let events = stmt
        .query_map(values, |row| row.get(0))?
        .collect::<Result<Vec<i64>, _>>()?;
    Ok(events)
}

impl Inbox {
    /// Leases up to `limit` due deliveries for `lease`, skipping the destinations in
    /// `held` and every delivery that has an unfinished one of the same lane before it.
    /// Takes what the applier has applied, without waiting for the rest (see
    /// [`Inbox::write_applied`]): the worker's lease.
    pub(crate) async fn lease_applied_deliveries(
        &self,
        limit: usize,
        lease: Duration,
        held: Vec<String>,
    ) -> Result<Vec<LeasedDelivery>, InboxError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let held = serde_json::to_string(&held).unwrap_or_else(|_| "[]".to_owned());
        self.write_applied(false, move |conn, now| {
            lease_due(conn, now, limit, lease, &held)
        })
        .await
    }

    /// [`lease_applied_deliveries`](Self::lease_applied_deliveries) once every event
    /// acknowledged before the call is applied: for tests that lease what they just
    /// enqueued.
    #[cfg(test)]
    pub(crate) async fn lease_deliveries(
        &self,
        limit: usize,
        lease: Duration,
        held: Vec<String>,
    ) -> Result<Vec<LeasedDelivery>, InboxError> {
        self.caught_up().await;
        self.lease_applied_deliveries(limit, lease, held).await
    }

    /// Extends the leases of deliveries still held.
    pub(crate) async fn renew_deliveries(
        &self,
        held: Vec<(i64, i64)>,
        lease: Duration,
    ) -> Result<usize, InboxError> {
        self.renew(
            "UPDATE deliveries SET due_at = ?3
             WHERE id = ?1 AND lease_token = ?2 AND status = 'processing'",
            held,
            lease,
        )
        .await
    }

    /// Records the end of an attempt of a delivery; `false` when the lease was lost.
    #[cfg(test)]
    pub(crate) async fn record_delivery(
        &self,
        (id, token): (i64, i64),
        attempt: u32,
        started_at: std::time::SystemTime,
        duration: Duration,
        completion: Completion,
    ) -> Result<bool, InboxError> {
        let wakes = matches!(completion, Completion::Retry { .. });
        self.write_with(
            wakes,
            move |conn, now| {
                complete(
                    conn,
                    now,
                    (id, token),
                    attempt,
                    crate::time::to_millis(started_at),
                    crate::time::duration_millis(duration),
                    &completion,
                )
            },
            Durability::Deferred,
        )
        .await
    }

    /// Gives deliveries back uncounted (held by their destination, or at shutdown).
    pub(crate) async fn release_deliveries(
        &self,
        held: Vec<(i64, i64)>,
    ) -> Result<usize, InboxError> {
        self.write_with(
            true,
            move |conn, now| {
                let mut stmt = conn.prepare_cached(
                    "UPDATE deliveries SET status = 'queued', due_at = ?3, lease_token = NULL,
                         attempts = max(attempts - 1, 0)
                     WHERE id = ?1 AND lease_token = ?2 AND status = 'processing'
                     RETURNING event_id",
                )?;
                let mut released = 0usize;
                for (id, token) in held {
                    let event: Option<i64> = stmt
                        .query_row(params![id, token, now], |row| row.get(0))
                        .optional()?;
                    if let Some(event) = event {
                        released = released.saturating_add(1);
                        summarize(conn, event, now)?;
                    }
                }
                Ok(released)
            },
            Durability::Deferred,
        )
        .await
    }

    /// Pauses deliveries to `destination`: workers of this inbox, in any process, stop
    /// starting them (within their poll interval) while the receiver keeps storing
    /// events. Returns `false` if it was paused already.
    ///
    /// # Errors
    /// [`InboxError::Closed`] or [`InboxError::Database`].
    pub async fn pause_destination(&self, destination: &str) -> Result<bool, InboxError> {
        let destination = destination.to_owned();
        self.write(false, move |conn, now| {
            let changed = conn.execute(
                "INSERT INTO destination_pauses (destination, paused_at) VALUES (?1, ?2)
                 ON CONFLICT(destination) DO NOTHING",
                params![destination, now],
            )?;
            Ok(changed > 0)
        })
        .await
    }

    /// Resumes deliveries to `destination`. Returns `false` if it was not paused.
    ///
    /// # Errors
    /// [`InboxError::Closed`] or [`InboxError::Database`].
    pub async fn resume_destination(&self, destination: &str) -> Result<bool, InboxError> {
        let destination = destination.to_owned();
        self.write(true, move |conn, _| {
            let changed = conn.execute(
                "DELETE FROM destination_pauses WHERE destination = ?1",
                params![destination],
            )?;
            Ok(changed > 0)
        })
        .await
    }

    /// The paused destinations, by name.
    ///
    /// # Errors
    /// [`InboxError::Database`].
    pub async fn paused_destinations(&self) -> Result<Vec<String>, InboxError> {
        self.read(|conn, _| {
            let names = conn
                .prepare_cached("SELECT destination FROM destination_pauses ORDER BY destination")?
                .query_map([], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(names)
        })
        .await
    }

    /// The deliveries of event `id`, one per destination its routing picked (none for an
    /// inbox without destinations, or a `filtered` event).
    ///
    /// # Errors
    /// [`InboxError::Database`].
    pub async fn deliveries(&self, id: EventId) -> Result<Vec<Delivery>, InboxError> {
        self.read(move |conn, _| {
            read_deliveries(conn, "event_id = ?1 ORDER BY id", params![id.get()])
        })
        .await
    }

    /// The dead deliveries of `destination` (or of every destination), oldest first, at
    /// most `limit`.
    ///
    /// # Errors
    /// [`InboxError::Database`].
    pub async fn dead_deliveries(
        &self,
        destination: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Delivery>, InboxError> {
        let destination = destination.map(str::to_owned);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn, _| {
            read_deliveries(
                conn,
                "status = 'dead' AND (?1 IS NULL OR destination = ?1) ORDER BY id LIMIT ?2",
                params![destination, limit],
            )
        })
        .await
    }

    /// Deliveries per destination and status: `(destination, status, count)`, for the
    /// event log and `/metrics`.
    ///
    /// # Errors
    /// [`InboxError::Database`].
    pub async fn delivery_counts(&self) -> Result<Vec<(String, Status, u64)>, InboxError> {
        self.read(|conn, _| {
            let mut stmt = conn.prepare_cached(
                "SELECT destination, status, count(*) FROM deliveries
                 GROUP BY destination, status ORDER BY destination, status",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })?;
            let mut counts = Vec::new();
            for row in rows {
                let (destination, status, count) = row?;
                let status = status
                    .parse()
                    .map_err(|_| InboxError::Corrupt(format!("delivery status {status:?}")))?;
                counts.push((destination, status, u64::try_from(count).unwrap_or(0)));
            }
            Ok(counts)
        })
        .await
    }

    /// Each ordered destination's lane backlog: `(destination, count)` of deliveries with a
    /// lane key that have not ended (pending, retrying or running), over the whole inbox,
    /// for `/metrics`. Read from the `deliveries_lane` partial index, which holds exactly
    /// these rows. Destinations with no backlog are absent.
    ///
    /// # Errors
    /// [`InboxError::Database`].
    pub async fn lane_backlog(&self) -> Result<Vec<(String, u64)>, InboxError> {
        self.read(|conn, _| {
            let mut stmt = conn.prepare_cached(
                "SELECT destination, count(*) FROM deliveries
                 WHERE lane IS NOT NULL AND status NOT IN ('processed', 'dead')
                 GROUP BY destination ORDER BY destination",
            )?;
            let rows = stmt.query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
            })?;
            let mut backlog = Vec::new();
            for row in rows {
                let (destination, count) = row?;
                backlog.push((destination, u64::try_from(count).unwrap_or(0)));
            }
            Ok(backlog)
        })
        .await
    }

    /// Puts dead deliveries of `destination` back in the queue (due now, attempts from
    /// zero, at the tail of their lanes); the event's deliveries to other destinations
    /// are left alone. `which` selects by event (all, ids, event type). Returns how many
    /// were replayed.
    ///
    /// # Errors
    /// [`InboxError::Closed`] or [`InboxError::Database`].
    pub async fn replay_destination(
        &self,
        destination: &str,
        which: Replay,
    ) -> Result<u64, InboxError> {
        let destination = destination.to_owned();
        self.write(true, move |conn, now| {
            let mut events = Vec::new();
            let mine = "destination = ?1";
            match &which {
                Replay::All => events.extend(requeue_dead(conn, mine, params![destination], now)?),
                Replay::Id(id) => events.extend(requeue_dead(
                    conn,
                    "destination = ?1 AND event_id = ?2",
                    params![destination, id.get()],
                    now,
                )?),
                Replay::Ids(ids) => {
                    for id in ids {
                        events.extend(requeue_dead(
                            conn,
                            "destination = ?1 AND event_id = ?2",
                            params![destination, id.get()],
                            now,
                        )?);
                    }
                }
                Replay::EventType(event_type) => events.extend(requeue_dead(
                    conn,
                    "destination = ?1 AND event_id IN (SELECT id FROM events WHERE event_type = ?2)",
                    params![destination, event_type],
                    now,
                )?),
                _ => {}
            }
            let replayed = u64::try_from(events.len()).unwrap_or(u64::MAX);
            events.sort_unstable();
            events.dedup();
            for event in events {
                summarize(conn, event, now)?;
            }
            Ok(replayed)
        })
        .await
    }
}

fn read_deliveries(
    conn: &Connection,
    condition: &str,
    values: impl rusqlite::Params,
) -> Result<Vec<Delivery>, InboxError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT event_id, destination, lane, status, attempts, due_at, finished_at, last_error
         FROM deliveries WHERE {condition}"
    ))?;
    let rows = stmt.query_map(values, |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, Option<String>>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, i64>(4)?,
            row.get::<_, Option<i64>>(5)?,
            row.get::<_, Option<i64>>(6)?,
            row.get::<_, Option<String>>(7)?,
        ))
    })?;
    let mut deliveries = Vec::new();
    for row in rows {
        let (event, destination, lane, status, attempts, due_at, finished_at, last_error) = row?;
        let mut delivery = Delivery::new(EventId::new(event), destination);
        delivery.lane = lane;
        delivery.status = status
            .parse()
            .map_err(|_| InboxError::Corrupt(format!("delivery status {status:?}")))?;
        delivery.attempts = u32::try_from(attempts).unwrap_or(0);
        delivery.due_at = due_at.map(from_millis);
        delivery.finished_at = finished_at.map(from_millis);
        delivery.last_error = last_error;
        deliveries.push(delivery);
    }
    Ok(deliveries)
}

fn lease_due(
    conn: &Connection,
    now: i64,
    limit: i64,
    lease: Duration,
    held: &str,
) -> Result<Vec<LeasedDelivery>, InboxError> {
    let token = i64::from_ne_bytes(fastrand::u64(..).to_ne_bytes());
    let mut taken: Vec<(i64, i64, String, Option<String>, i64)> = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
            "UPDATE deliveries
             SET status = 'processing', attempts = attempts + 1, due_at = ?2, lease_token = ?3,
                 started_at = ?1
             WHERE id IN (
                 SELECT d.id FROM deliveries d
                 WHERE d.due_at <= ?1
                   AND d.destination NOT IN (SELECT value FROM json_each(?5))
                   AND (d.lane IS NULL OR NOT EXISTS (
                       SELECT 1 FROM deliveries h
                       WHERE h.destination = d.destination AND h.lane = d.lane
                         AND h.seq < d.seq AND h.status NOT IN ('processed', 'dead')))
                 ORDER BY d.due_at, d.id LIMIT ?4)
             RETURNING id, event_id, destination, lane, attempts",
        )?;
        let rows = stmt.query_map(params![now, add(now, lease), token, limit, held], |row| {
            Ok((
                row.get(0)?,
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
            ))
        })?;
        for row in rows {
            taken.push(row?);
        }
    }
    taken.sort_unstable_by_key(|(id, ..)| *id);
    let mut read = conn.prepare_cached(&format!(
        "SELECT {EVENT_COLUMNS}, (SELECT is_test FROM state WHERE state.id = events.id)
         FROM events WHERE id = ?1"
    ))?;
    let mut leased = Vec::with_capacity(taken.len());
    let mut events: Vec<i64> = Vec::with_capacity(taken.len());
    for (id, event_id, destination, lane, attempts) in taken {
        let event = read
            .query_row(params![event_id], |row| {
                let is_test: Option<bool> = row.get(9)?;
                event_from_row(row, attempts, is_test.unwrap_or(false))
            })
            .optional()?;
        let Some(event) = event else {
            return Err(InboxError::Corrupt(format!(
                "delivery {id} has no event {event_id}"
            )));
        };
        let mut event = event?;
        event.destination = Some(destination);
        leased.push(LeasedDelivery {
            id,
            token,
            lane,
            event,
        });
        events.push(event_id);
    }
    events.sort_unstable();
    events.dedup();
    for event in events {
        summarize(conn, event, now)?;
    }
    Ok(leased)
}

pub(crate) fn complete(
    conn: &Connection,
    now: i64,
    (id, token): (i64, i64),
    attempt: u32,
    started_ms: i64,
    duration_ms: i64,
    completion: &Completion,
) -> Result<bool, InboxError> {
    let (status, due_at, error) = match completion {
        Completion::Processed => ("processed", None, None),
        Completion::Retry { at_ms, error } => ("failed", Some(*at_ms), Some(error.as_str())),
        Completion::Dead { reason } => ("dead", None, Some(reason.as_str())),
    };
    let changed: Option<(i64, String)> = conn
        .prepare_cached(
            "UPDATE deliveries
             SET status = ?3, due_at = ?4, lease_token = NULL, finished_at = ?5,
                 duration_ms = ?6, last_error = ?7
             WHERE id = ?1 AND lease_token = ?2 AND status = 'processing'
             RETURNING event_id, destination",
        )?
        .query_row(
            params![id, token, status, due_at, now, duration_ms, error],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let Some((event_id, destination)) = changed else {
        return Ok(false);
    };
    conn.prepare_cached(
        "INSERT INTO attempts (event_id, attempt, started_at, finished_at, outcome, error,
             destination)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        event_id,
        attempt,
        started_ms,
        now,
        completion.outcome(),
        error,
        destination
    ])?;
    summarize(conn, event_id, now)?;
    Ok(true)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    //! Over a real inbox file and the real worker loop.

    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use std::time::SystemTime;

    use hookgate::{SchemeId, SignRequest, Signer, VerifiedEvent, Verifier};
    use hookgate_queue::{Destination, DestinationTarget, EventFilter, RetryPolicy, Router};

    use super::*;
    use crate::{HandlerResult, Worker};

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const LIMIT: Duration = Duration::from_secs(30);

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

    async fn eventually(what: &str, mut done: impl AsyncFnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + LIMIT;
        while !done().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "gave up waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn fast_retry() -> RetryPolicy {
        RetryPolicy::new()
            .max_attempts(2)
            .base(Duration::from_millis(10))
            .cap(Duration::from_millis(20))
    }

    #[tokio::test]
    async fn fan_out_dead_letters_and_replay_stay_per_destination() {
        let dir = tempfile::tempdir().unwrap();
        let destinations = vec![
            destination("billing")
                .with_filter(body_filter(r#"{"body":{"/kind":"invoice"}}"#))
                .with_retry(fast_retry())
                .unwrap(),
            destination("audit"),
        ];
        let router = Router::new(destinations.clone()).unwrap();
        let inbox = Inbox::builder(dir.path().join("inbox.db"))
            .destinations(router)
            .no_scheduled_pruning()
            .open()
            .unwrap();
        for (n, kind) in ["invoice", "charge", "invoice"].iter().enumerate() {
            inbox
                .enqueue(&event(
                    &format!("msg_{n}"),
                    &format!(r#"{{"kind":"{kind}"}}"#),
                ))
                .await
                .unwrap();
        }
        let calls: Arc<Mutex<BTreeMap<(i64, String), u32>>> = Arc::default();
        let seen = calls.clone();
        let worker = Worker::builder(inbox.clone(), move |event: InboxEvent| {
            let destination = event.destination().unwrap().to_owned();
            *seen
                .lock()
                .unwrap()
                .entry((event.id().get(), destination.clone()))
                .or_default() += 1;
            async move {
                if destination == "billing" {
                    HandlerResult::retry_because("billing answered 500")
                } else {
                    HandlerResult::Ok
                }
            }
        })
        .poll_interval(Duration::from_millis(20))
        .destinations("e", &destinations)
        .start()
        .unwrap();
        eventually("billing's two deliveries dead", async || {
            inbox
                .dead_deliveries(Some("billing"), 10)
                .await
                .unwrap()
                .len()
                == 2
        })
        .await;
        eventually("audit's three delivered", async || {
            inbox.delivery_counts().await.unwrap().contains(&(
                "audit".to_owned(),
                Status::Processed,
                3,
            ))
        })
        .await;
        let first = inbox.entry(EventId::new(1)).await.unwrap().unwrap();
        assert_eq!(
            first.status,
            Status::Dead,
            "one delivery dead, the other done"
        );
        assert_eq!(
            first.last_error.as_deref(),
            Some("gave up after 2 attempts: billing answered 500")
        );
        let second = inbox.entry(EventId::new(2)).await.unwrap().unwrap();
        assert_eq!(second.status, Status::Processed, "audit only");
        let deliveries = inbox.deliveries(EventId::new(1)).await.unwrap();
        let summary: Vec<(&str, Status, u32)> = deliveries
            .iter()
            .map(|d| (d.destination.as_str(), d.status, d.attempts))
            .collect();
        assert_eq!(
            summary,
            [
                ("billing", Status::Dead, 2),
                ("audit", Status::Processed, 1)
            ]
        );
        assert_eq!(inbox.dead_letters(None, 10).await.unwrap().len(), 2);

        // Replaying billing's dead letters does not touch audit's deliveries.
        assert_eq!(
            inbox
                .replay_destination("billing", Replay::All)
                .await
                .unwrap(),
            2
        );
        eventually("billing dead again", async || {
            inbox
                .dead_deliveries(Some("billing"), 10)
                .await
                .unwrap()
                .iter()
                .all(|d| d.attempts == 2)
                && calls.lock().unwrap().get(&(1, "billing".to_owned())) == Some(&4)
        })
        .await;
        worker.shutdown().await;
        let calls = calls.lock().unwrap();
        assert_eq!(calls.get(&(1, "audit".to_owned())), Some(&1));
        assert_eq!(calls.get(&(3, "audit".to_owned())), Some(&1));
        assert_eq!(calls.get(&(2, "billing".to_owned())), None, "filtered out");
    }

    #[tokio::test]
    async fn events_no_destination_takes_are_stored_as_filtered() {
        let dir = tempfile::tempdir().unwrap();
        let router = Router::new(vec![
            destination("invoices").with_filter(body_filter(r#"{"body":{"/kind":"invoice"}}"#)),
        ])
        .unwrap();
        let inbox = Inbox::builder(dir.path().join("inbox.db"))
            .destinations(router)
            .open()
            .unwrap();
        let stored = inbox
            .enqueue(&event("msg_1", r#"{"kind":"charge"}"#))
            .await
            .unwrap();
        assert!(matches!(stored, crate::Enqueued::Stored(_)));
        let entry = inbox.entry(EventId::new(1)).await.unwrap().unwrap();
        assert_eq!(entry.status, Status::Filtered);
        assert!(inbox.deliveries(EventId::new(1)).await.unwrap().is_empty());
        assert!(
            inbox
                .lease_deliveries(10, LIMIT, Vec::new())
                .await
                .unwrap()
                .is_empty()
        );
        // And a plain lease never takes it either.
        assert!(inbox.lease_events(10, LIMIT).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_lane_hands_out_its_head_only_and_pauses_are_shared_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.db");
        let router = Router::new(vec![
            destination("ordered").with_order_key("/customer".parse().unwrap()),
            destination("other"),
        ])
        .unwrap();
        let inbox = Inbox::builder(&path).destinations(router).open().unwrap();
        for (n, customer) in ["c1", "c2", "c1"].iter().enumerate() {
            inbox
                .enqueue(&event(
                    &format!("msg_{n}"),
                    &format!(r#"{{"customer":"{customer}"}}"#),
                ))
                .await
                .unwrap();
        }
        // The backlog counts every keyed delivery not ended; `other` has no lanes.
        let backlog = |n: u64| vec![("ordered".to_owned(), n)];
        assert_eq!(inbox.lane_backlog().await.unwrap(), backlog(3));
        // Another process (here: another handle on the file) pauses `other`.
        let cli = Inbox::open(&path).unwrap();
        assert!(cli.pause_destination("other").await.unwrap());
        assert!(!cli.pause_destination("other").await.unwrap());
        assert_eq!(inbox.paused_destinations().await.unwrap(), ["other"]);

        let first = inbox
            .lease_deliveries(10, LIMIT, vec!["other".to_owned()])
            .await
            .unwrap();
        let lanes: Vec<(i64, Option<&str>)> = first
            .iter()
            .map(|d| (d.event.id().get(), d.lane.as_deref()))
            .collect();
        assert_eq!(
            lanes,
            [(1, Some("c1")), (2, Some("c2"))],
            "event 3 waits behind 1"
        );
        // The head fails: its retry keeps the lane, even once event 3 is due.
        let head = &first[0];
        let at_ms = inbox.now_ms() + 60_000;
        let retry = Completion::Retry {
            at_ms,
            error: "500".to_owned(),
        };
        assert!(
            inbox
                .record_delivery(
                    (head.id, head.token),
                    1,
                    SystemTime::now(),
                    Duration::ZERO,
                    retry
                )
                .await
                .unwrap()
        );
        assert!(
            inbox
                .lease_deliveries(10, LIMIT, vec!["other".to_owned()])
                .await
                .unwrap()
                .is_empty()
        );
        // A dead letter releases the lane.
        let dead = Completion::Dead {
            reason: "gave up".to_owned(),
        };
        conn_force_due(&inbox, head.id).await;
        let again = inbox
            .lease_deliveries(10, LIMIT, vec!["other".to_owned()])
            .await
            .unwrap();
        assert_eq!(again.len(), 1);
        assert!(
            inbox
                .record_delivery(
                    (again[0].id, again[0].token),
                    2,
                    SystemTime::now(),
                    Duration::ZERO,
                    dead
                )
                .await
                .unwrap()
        );
        let next = inbox
            .lease_deliveries(10, LIMIT, vec!["other".to_owned()])
            .await
            .unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].event.id().get(), 3);
        // Dead ended event 1's delivery; 2 and 3 are still running, from another handle too.
        assert_eq!(cli.lane_backlog().await.unwrap(), backlog(2));
        assert!(cli.resume_destination("other").await.unwrap());
        assert!(inbox.paused_destinations().await.unwrap().is_empty());
        let others = inbox.lease_deliveries(10, LIMIT, Vec::new()).await.unwrap();
        assert_eq!(others.len(), 3);
        assert!(
            others
                .iter()
                .all(|d| d.event.destination() == Some("other"))
        );
    }

    #[tokio::test]
    async fn the_event_level_replay_replays_a_routed_events_dead_deliveries_only() {
        let dir = tempfile::tempdir().unwrap();
        let router = Router::new(vec![destination("a"), destination("b")]).unwrap();
        let inbox = Inbox::builder(dir.path().join("inbox.db"))
            .destinations(router)
            .open()
            .unwrap();
        inbox.enqueue(&event("msg_1", "{}")).await.unwrap();
        let leased = inbox.lease_deliveries(10, LIMIT, Vec::new()).await.unwrap();
        assert_eq!(leased.len(), 2);
        for (n, d) in leased.iter().enumerate() {
            let completion = if n == 0 {
                Completion::Dead {
                    reason: "gone".to_owned(),
                }
            } else {
                Completion::Processed
            };
            let recorded = inbox
                .record_delivery(
                    (d.id, d.token),
                    1,
                    SystemTime::now(),
                    Duration::ZERO,
                    completion,
                )
                .await
                .unwrap();
            assert!(recorded);
        }
        let entry = inbox.entry(EventId::new(1)).await.unwrap().unwrap();
        assert_eq!(
            (entry.status, entry.last_error.as_deref()),
            (Status::Dead, Some("gone"))
        );
        assert_eq!(inbox.replay_dead_letters(Replay::All).await.unwrap(), 1);
        let entry = inbox.entry(EventId::new(1)).await.unwrap().unwrap();
        assert_eq!(entry.status, Status::Queued);
        // Only the dead delivery comes back, and never as a plain event.
        assert!(inbox.lease_events(10, LIMIT).await.unwrap().is_empty());
        let again = inbox.lease_deliveries(10, LIMIT, Vec::new()).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].event.destination(), Some("a"));
        assert_eq!(
            again[0].event.attempt(),
            1,
            "attempts count from zero again"
        );
    }

    /// Makes a delivery due now (its retry time reached).
    async fn conn_force_due(inbox: &Inbox, id: i64) {
        inbox
            .write(false, move |conn, now| {
                conn.execute(
                    "UPDATE deliveries SET due_at = ?2 WHERE id = ?1",
                    params![id, now],
                )?;
                Ok(())
            })
            .await
            .unwrap();
    }
}
