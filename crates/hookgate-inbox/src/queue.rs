//! The queue operations a worker performs: lease, renew, complete, release.
//!
//! An event is *due* when its `due_at` has passed: for `received`, `queued` and `failed`
//! events that is the time of the next attempt; for `processing` events it is the end of the
//! lease, so an event whose worker died is taken again once its lease expires. Processed
//! and dead events have no `due_at`.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rusqlite::{Connection, Row, params};

use crate::event::{EventId, InboxEvent};
use crate::time::{add, duration_millis, from_millis};
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
    fn outcome(&self) -> &'static str {
        match self {
            Completion::Processed => "processed",
            Completion::Retry { .. } => "retry",
            Completion::Dead { .. } => "dead",
        }
    }
}

impl Inbox {
    /// Leases up to `limit` due events for `lease`, oldest due first, counting an attempt
    /// for each.
    pub(crate) async fn lease(
        &self,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<Leased>, InboxError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.write(false, move |conn, now| lease_due(conn, now, limit, lease))
            .await
    }

    /// Extends the leases of events still held; returns how many were extended.
    pub(crate) async fn renew(
        &self,
        held: Vec<(EventId, i64)>,
        lease: Duration,
    ) -> Result<usize, InboxError> {
        self.write(false, move |conn, now| {
            let mut stmt = conn.prepare_cached(
                "UPDATE events SET due_at = ?3
                 WHERE id = ?1 AND lease_token = ?2 AND status = 'processing'",
            )?;
            let mut renewed = 0usize;
            for (id, token) in held {
                renewed = renewed.saturating_add(stmt.execute(params![
                    id.get(),
                    token,
                    add(now, lease)
                ])?);
            }
            Ok(renewed)
        })
        .await
    }

    /// Records the end of an attempt. Returns false when the lease was lost meanwhile (it
    /// expired and another worker took the event, or it was released): then nothing
    /// changes.
    pub(crate) async fn complete(
        &self,
        id: EventId,
        token: i64,
        attempt: u32,
        started_at: SystemTime,
        duration: Duration,
        completion: Completion,
    ) -> Result<bool, InboxError> {
        let wakes = matches!(completion, Completion::Retry { .. });
        self.write(wakes, move |conn, now| {
            complete_attempt(
                conn,
                now,
                id,
                token,
                attempt,
                crate::time::to_millis(started_at),
                duration_millis(duration),
                &completion,
            )
        })
        .await
    }

    /// Gives events back without counting the attempt (a graceful shutdown that could not
    /// wait for their handlers). Returns how many were released.
    pub(crate) async fn release(&self, held: Vec<(EventId, i64)>) -> Result<usize, InboxError> {
        self.write(true, move |conn, now| {
            let mut stmt = conn.prepare_cached(
                "UPDATE events SET status = 'queued', due_at = ?3, lease_token = NULL,
                     attempts = max(attempts - 1, 0), updated_at = ?3
                 WHERE id = ?1 AND lease_token = ?2 AND status = 'processing'",
            )?;
            let mut released = 0usize;
            for (id, token) in held {
                released = released.saturating_add(stmt.execute(params![id.get(), token, now])?);
            }
            Ok(released)
        })
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
    let mut stmt = conn.prepare_cached(
        "UPDATE events
         SET status = 'processing', attempts = attempts + 1, due_at = ?2, lease_token = ?3,
             started_at = ?1, updated_at = ?1
         WHERE id IN (SELECT id FROM events WHERE due_at <= ?1 ORDER BY due_at, id LIMIT ?4)
         RETURNING id, dedup_key, scheme, delivery_id, event_type, signed_at, received_at,
                   body, headers, attempts, is_test",
    )?;
    let rows = stmt.query_map(params![now, add(now, lease), token, limit], event_from_row)?;
    let mut leased = Vec::new();
    for row in rows {
        leased.push(Leased {
            event: row??,
            token,
        });
    }
    leased.sort_by_key(|leased| leased.event.id);
    Ok(leased)
}

/// Reads an [`InboxEvent`] from the columns `id, dedup_key, scheme, delivery_id,
/// event_type, signed_at, received_at, body, headers, attempts, is_test`.
pub(crate) fn event_from_row(row: &Row<'_>) -> rusqlite::Result<Result<InboxEvent, InboxError>> {
    let headers: String = row.get(8)?;
    let attempts: i64 = row.get(9)?;
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
        is_test: row.get(10)?,
    }))
}

#[allow(clippy::too_many_arguments)]
fn complete_attempt(
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
            "UPDATE events
             SET status = ?3, due_at = ?4, lease_token = NULL, finished_at = ?5,
                 duration_ms = ?6, last_error = ?7, updated_at = ?5
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
