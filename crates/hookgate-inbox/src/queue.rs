//! The queue operations a worker performs: lease, renew, complete, release.
//!
//! They change only the event's small `state` row; the row holding the body is read, never
//! rewritten. An event is *due* when its `due_at` has passed: for `received`, `queued` and `failed`
//! events that is the time of the next attempt; for `processing` events it is the end of the
//! lease, so an event whose worker died is taken again once its lease expires. Processed
//! and dead events have no `due_at`.

use std::time::Duration;

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::event::{EventId, InboxEvent};
use crate::time::{add, from_millis};
use crate::writer::Durability;
use crate::{Inbox, InboxError};

/// An event a worker holds, with the token that proves its lease.
#[derive(Debug, Clone)]
pub(crate) struct Leased {
    pub(crate) event: InboxEvent,
    pub(crate) token: i64,
}

/// How an attempt ended, as the inbox records it.
#[derive(Debug, Clone)]
pub(crate) enum Completion {
    Processed,
    Retry { at_ms: i64, error: String },
    Dead { reason: String },
}

impl Completion {
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            Completion::Processed => "processed",
            Completion::Retry { .. } => "retry",
            Completion::Dead { .. } => "dead",
        }
    }
}

impl Inbox {
    /// Leases up to `limit` due events for `lease`, oldest due first, counting an attempt
    /// for each. Takes what the applier has applied, without waiting for the rest (see
    /// [`Inbox::write_applied`]): the worker's lease.
    pub(crate) async fn lease_applied_events(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Leased>, InboxError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.write_applied(false, move |conn, now| lease_due(conn, now, limit, lease))
            .await
    }

    /// [`lease_applied_events`](Self::lease_applied_events) once every event acknowledged
    /// before the call is applied: for tests that lease what they just enqueued.
    #[cfg(test)]
    pub(crate) async fn lease_events(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Leased>, InboxError> {
        self.caught_up().await;
        self.lease_applied_events(limit, lease).await
    }

    /// Extends the leases of events still held; returns how many were extended.
    pub(crate) async fn renew_leases(
        &self,
        held: Vec<(EventId, i64)>,
        lease: Duration,
    ) -> Result<usize, InboxError> {
        let held = held
            .into_iter()
            .map(|(id, token)| (id.get(), token))
            .collect();
        self.renew(
            "UPDATE state SET due_at = ?3
             WHERE id = ?1 AND lease_token = ?2 AND status = 'processing'",
            held,
            lease,
        )
        .await
    }

    /// Runs `update` (`?1` row id, `?2` lease token, `?3` new due time) for each lease
    /// still held, without an fsync of its own; returns how many were extended.
    pub(crate) async fn renew(
        &self,
        update: &'static str,
        held: Vec<(i64, i64)>,
        lease: Duration,
    ) -> Result<usize, InboxError> {
        self.write_with(
            false,
            move |conn, now| {
                let mut stmt = conn.prepare_cached(update)?;
                let mut renewed = 0usize;
                for (id, token) in held {
                    renewed = renewed.saturating_add(stmt.execute(params![
                        id,
                        token,
                        add(now, lease)
                    ])?);
                }
                Ok(renewed)
            },
            Durability::Deferred,
        )
        .await
    }

    /// Records the end of an attempt alone (the worker records its results in batches:
    /// `worker/completions.rs`). Returns false when the lease was lost meanwhile (it
    /// expired and another worker took the event, or it was released): then nothing
    /// changes.
    #[cfg(test)]
    pub(crate) async fn record_attempt(
        &self,
        id: EventId,
        token: i64,
        attempt: u32,
        started_at: std::time::SystemTime,
        duration: Duration,
        completion: Completion,
    ) -> Result<bool, InboxError> {
        let wakes = matches!(completion, Completion::Retry { .. });
        self.write_with(
            wakes,
            move |conn, now| {
                complete_attempt(
                    conn,
                    now,
                    id,
                    token,
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

    /// Gives events back without counting the attempt (a graceful shutdown that could not
    /// wait for their handlers). Returns how many were released.
    pub(crate) async fn release_leases(
        &self,
        held: Vec<(EventId, i64)>,
    ) -> Result<usize, InboxError> {
        self.write_with(
            true,
            move |conn, now| {
                let mut stmt = conn.prepare_cached(
                    "UPDATE state SET status = 'queued', due_at = ?3, lease_token = NULL,
                     attempts = max(attempts - 1, 0)
                 WHERE id = ?1 AND lease_token = ?2 AND status = 'processing'",
                )?;
                let mut released = 0usize;
                for (id, token) in held {
                    released =
                        released.saturating_add(stmt.execute(params![id.get(), token, now])?);
                }
                Ok(released)
            },
            Durability::Deferred,
        )
        .await
    }
}

fn lease_due(
    conn: &Connection,
    now: i64,
    limit: i64,
    lease: Duration,
) -> Result<Vec<Leased>, InboxError> {
    let token = i64::from_ne_bytes(fastrand::u64(..).to_ne_bytes());
    let mut taken: Vec<(i64, i64, bool)> = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
            "UPDATE state
             SET status = 'processing', attempts = attempts + 1, due_at = ?2, lease_token = ?3,
                 started_at = ?1
             WHERE id IN (SELECT id FROM state WHERE due_at <= ?1 ORDER BY due_at, id LIMIT ?4)
             RETURNING id, attempts, is_test",
        )?;
        let rows = stmt.query_map(params![now, add(now, lease), token, limit], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?;
        for row in rows {
            taken.push(row?);
        }
    }
    taken.sort_unstable_by_key(|(id, _, _)| *id);
    let mut read =
        conn.prepare_cached(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ?1"))?;
    let mut leased = Vec::with_capacity(taken.len());
    for (id, attempts, is_test) in taken {
        let event = read
            .query_row(params![id], |row| event_from_row(row, attempts, is_test))
            .optional()?;
        match event {
            Some(event) => leased.push(Leased {
                event: event?,
                token,
            }),
            // A state row without its event: the file was changed outside the inbox.
            // Reported (the whole lease is rolled back) rather than handing out a
            // made-up event.
            None => {
                return Err(InboxError::Corrupt(format!(
                    "event {id} has a state but no row"
                )));
            }
        }
    }
    Ok(leased)
}

/// The columns [`event_from_row`] reads, from `events`.
pub(crate) const EVENT_COLUMNS: &str =
    "id, dedup_key, scheme, delivery_id, event_type, signed_at, received_at, body, headers";

/// Reads an [`InboxEvent`] from the [`EVENT_COLUMNS`] of `events` and the `attempts` and
/// `is_test` of its state.
pub(crate) fn event_from_row(
    row: &Row<'_>,
    attempts: i64,
    is_test: bool,
) -> rusqlite::Result<Result<InboxEvent, InboxError>> {
    let headers: String = row.get(8)?;
    let body: Vec<u8> = row.get(7)?;
    let headers = match serde_json::from_str::<Vec<(String, String)>>(&headers) {
        Ok(headers) => headers,
        Err(err) => return Ok(Err(InboxError::Corrupt(format!("headers: {err}")))),
    };
    Ok(Ok(InboxEvent {
        id: EventId::new(row.get(0)?),
        dedup_key: row.get(1)?,
        scheme: row.get(2)?,
        delivery_id: row.get(3)?,
        event_type: row.get(4)?,
        timestamp: row.get::<_, Option<i64>>(5)?.map(from_millis),
        received_at: from_millis(row.get(6)?),
        body: Bytes::from(body),
        headers,
        attempt: u32::try_from(attempts).unwrap_or(u32::MAX),
        is_test,
        destination: None,
    }))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn complete_attempt(
    conn: &Connection,
    now: i64,
    id: EventId,
    token: i64,
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
    let changed = conn
        .prepare_cached(
            "UPDATE state
             SET status = ?3, due_at = ?4, lease_token = NULL, finished_at = ?5,
                 duration_ms = ?6, last_error = ?7
             WHERE id = ?1 AND lease_token = ?2 AND status = 'processing'",
        )?
        .execute(params![
            id.get(),
            token,
            status,
            due_at,
            now,
            duration_ms,
            error
        ])?;
    if changed == 0 {
        return Ok(false);
    }
    conn.prepare_cached(
        "INSERT INTO attempts (event_id, attempt, started_at, finished_at, outcome, error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        id.get(),
        attempt,
        started_ms,
        now,
        completion.outcome(),
        error
    ])?;
    if let Completion::Dead { reason } = completion {
        conn.prepare_cached(
            "INSERT INTO dead_letters (event_id, dead_at, reason) VALUES (?1, ?2, ?3)
             ON CONFLICT(event_id) DO UPDATE SET dead_at = excluded.dead_at,
                                                 reason = excluded.reason",
        )?
        .execute(params![id.get(), now, reason])?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{SystemTime, UNIX_EPOCH};

    use hookgate::{Clock, SchemeId, SignRequest, Signer, Verifier};

    use super::*;
    use crate::Status;

    #[derive(Debug)]
    struct ManualClock(Mutex<SystemTime>);

    impl ManualClock {
        fn advance(&self, by: Duration) {
            let mut now = self.0.lock().unwrap();
            *now = now.checked_add(by).unwrap();
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> SystemTime {
            *self.0.lock().unwrap()
        }
    }

    async fn inbox_with_one_event() -> (tempfile::TempDir, Arc<ManualClock>, Inbox) {
        let dir = tempfile::tempdir().unwrap();
        let start = UNIX_EPOCH.checked_add(Duration::from_secs(1_700_000_000));
        let clock = Arc::new(ManualClock(Mutex::new(start.unwrap())));
        let inbox = Inbox::builder(dir.path().join("inbox.db"))
            .clock(clock.clone())
            .no_scheduled_pruning()
            .open()
            .unwrap();
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let delivery = Signer::new(SchemeId::StandardWebhooksV1, secret)
            .unwrap()
            .sign(&SignRequest::new("{}").id("msg_1"))
            .unwrap();
        let event = Verifier::builder(SchemeId::StandardWebhooksV1)
            .secret(secret)
            .build()
            .unwrap()
            .verify(&delivery.headers, delivery.body)
            .unwrap();
        inbox.enqueue(&event).await.unwrap();
        (dir, clock, inbox)
    }

    #[tokio::test]
    async fn an_expired_lease_hands_the_event_over_again() {
        let (_dir, clock, inbox) = inbox_with_one_event().await;
        let lease = Duration::from_secs(30);

        let first = inbox.lease_events(10, lease).await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].event.attempt(), 1);
        // Leased: nobody else gets it, even just before the lease ends.
        clock.advance(Duration::from_secs(29));
        assert!(inbox.lease_events(10, lease).await.unwrap().is_empty());

        // The holder "crashed": once the lease ends the event is due again, as attempt 2.
        clock.advance(Duration::from_secs(2));
        let second = inbox.lease_events(10, lease).await.unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].event.id(), first[0].event.id());
        assert_eq!(second[0].event.attempt(), 2);
        assert_ne!(second[0].token, first[0].token);

        // The first holder's late result is refused; the current holder's counts.
        let id = first[0].event.id();
        let at = clock.now();
        let late = inbox
            .record_attempt(
                id,
                first[0].token,
                1,
                at,
                Duration::ZERO,
                Completion::Processed,
            )
            .await
            .unwrap();
        assert!(!late);
        let current = inbox
            .record_attempt(
                id,
                second[0].token,
                2,
                at,
                Duration::from_millis(5),
                Completion::Processed,
            )
            .await
            .unwrap();
        assert!(current);
        let entry = inbox.entry(id).await.unwrap().unwrap();
        assert_eq!(entry.status, Status::Processed);
        assert_eq!(entry.attempts, 2);
        assert_eq!(entry.processing_duration, Some(Duration::from_millis(5)));
    }

    #[tokio::test]
    async fn renewing_keeps_the_lease_and_release_gives_the_attempt_back() {
        let (_dir, clock, inbox) = inbox_with_one_event().await;
        let lease = Duration::from_secs(30);
        let held = inbox.lease_events(1, lease).await.unwrap();
        let id = held[0].event.id();
        let token = held[0].token;

        clock.advance(Duration::from_secs(20));
        assert_eq!(
            inbox.renew_leases(vec![(id, token)], lease).await.unwrap(),
            1
        );
        clock.advance(Duration::from_secs(20));
        assert!(
            inbox.lease_events(1, lease).await.unwrap().is_empty(),
            "renewed"
        );
        let entry = inbox.entry(id).await.unwrap().unwrap();
        assert_eq!(entry.status, Status::Processing);
        assert!(entry.lease_until.is_some());

        assert_eq!(inbox.release_leases(vec![(id, token)]).await.unwrap(), 1);
        let entry = inbox.entry(id).await.unwrap().unwrap();
        assert_eq!((entry.status, entry.attempts), (Status::Queued, 0));
        let again = inbox.lease_events(1, lease).await.unwrap();
        assert_eq!(again[0].event.attempt(), 1);
        // A stale token renews nothing.
        assert_eq!(
            inbox.renew_leases(vec![(id, token)], lease).await.unwrap(),
            0
        );
    }

    #[tokio::test]
    async fn a_retry_waits_for_its_time() {
        let (_dir, clock, inbox) = inbox_with_one_event().await;
        let lease = Duration::from_secs(30);
        let held = inbox.lease_events(1, lease).await.unwrap();
        let id = held[0].event.id();
        let retry_at = crate::time::add(inbox.now_ms(), Duration::from_secs(60));
        let completion = Completion::Retry {
            at_ms: retry_at,
            error: "downstream 502".to_owned(),
        };
        let at = clock.now();
        assert!(
            inbox
                .record_attempt(id, held[0].token, 1, at, Duration::ZERO, completion,)
                .await
                .unwrap()
        );
        let entry = inbox.entry(id).await.unwrap().unwrap();
        assert_eq!(entry.status, Status::Failed);
        assert_eq!(entry.last_error.as_deref(), Some("downstream 502"));
        assert_eq!(
            entry.next_attempt_at.map(crate::time::to_millis),
            Some(retry_at)
        );

        clock.advance(Duration::from_secs(59));
        assert!(inbox.lease_events(1, lease).await.unwrap().is_empty());
        clock.advance(Duration::from_secs(1));
        assert_eq!(inbox.lease_events(1, lease).await.unwrap().len(), 1);
        let history = inbox.attempts(id).await.unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].outcome, "retry");
    }
}
