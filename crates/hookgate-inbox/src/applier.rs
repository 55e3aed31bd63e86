//! The applier: moves durable records from the segment log into SQLite, in large batches.
//!
//! The log is the source of truth for an event until it is in SQLite, so the applier's
//! transactions need no fsync of their own ([`Durability::Deferred`]: committed with
//! `synchronous=NORMAL`). Each one inserts the events, their state rows and dedup rows,
//! and advances the checkpoint `log_applied.event_id` in the same transaction, so a
//! record is in SQLite exactly when the checkpoint covers it. After a crash the checkpoint
//! may be behind what was applied-but-not-synced — both were lost together — and the replay
//! starts from it: records at or below it are skipped, the others inserted once.
//!
//! A segment file is deleted only once every record in it is applied *and* a synced
//! commit (one small write with `synchronous=FULL`, which fsyncs SQLite's write-ahead log
//! and with it every earlier unsynced commit) has made the application durable.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use rusqlite::{Connection, params};
use tokio::sync::mpsc;

use crate::InboxError;
use crate::journal::{JournalShared, ToApplier, sync_dir};
use crate::segment::{self, LogRecord};
use crate::writer::{Call, Durability, Work};

/// Most records one apply transaction holds.
const APPLY_BATCH: usize = 8192;
/// First pause before retrying a failed apply; doubles up to [`MAX_RETRY_PAUSE`].
const RETRY_PAUSE: Duration = Duration::from_millis(50);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(2);

/// The highest event id applied to SQLite (the applier's checkpoint).
pub(crate) fn applied_up_to(conn: &Connection) -> Result<i64, InboxError> {
    Ok(conn
        .prepare_cached("SELECT event_id FROM log_applied WHERE one = 1")?
        .query_row([], |row| row.get(0))?)
}

/// Inserts the records above the checkpoint and advances it; returns the new checkpoint.
pub(crate) fn apply_records(conn: &Connection, records: &[LogRecord]) -> Result<i64, InboxError> {
    let applied = applied_up_to(conn)?;
    let mut last = applied;
    let mut event = conn.prepare_cached(
        "INSERT INTO events (id, dedup_key, scheme, delivery_id, event_type, signed_at,
             received_at, headers, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let mut state = conn.prepare_cached(
        "INSERT INTO state (id, status, due_at, is_test) VALUES (?1, 'received', ?2, ?3)",
    )?;
    let mut dedup = conn.prepare_cached(
        "INSERT INTO dedup (digest, event_id, expires_at) VALUES (?1, ?2, ?3)
         ON CONFLICT(digest) DO UPDATE SET event_id = excluded.event_id,
                                           expires_at = excluded.expires_at",
    )?;
    for record in records.iter().filter(|r| r.id > applied) {
        let e = &record.event;
        event.execute(params![
            record.id,
            e.dedup_key,
            e.scheme,
            e.delivery_id,
            e.event_type,
            e.signed_at_ms,
            e.received_at_ms,
            e.headers_json,
            &e.body[..],
        ])?;
        state.execute(params![record.id, record.enqueued_at_ms, e.is_test])?;
        dedup.execute(params![
            &e.dedup_digest[..],
            record.id,
            record.expires_at_ms
        ])?;
        last = record.id;
    }
    if last > applied {
        conn.prepare_cached("UPDATE log_applied SET event_id = ?1 WHERE one = 1")?
            .execute(params![last])?;
    }
    Ok(last)
}

/// What [`recover`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recovered {
    /// Records applied to SQLite now (durable in the log, not yet in SQLite).
    pub(crate) replayed: usize,
    /// The sequence number for the next segment.
    pub(crate) next_seq: u64,
}

/// Replays the log in `dir` into SQLite from the checkpoint (fsynced), then deletes every
/// segment. Reading stops at the first torn or invalid record: what follows it was never
/// acknowledged.
pub(crate) fn recover(conn: &Connection, dir: &Path) -> Result<Recovered, InboxError> {
    let segments = segment::list(dir).map_err(log_error)?;
    let mut replayed = 0usize;
    let mut last_id = i64::MIN;
    let mut ended = false;
    let mut next_seq = 1u64;
    for (seq, path) in &segments {
        next_seq = next_seq.max(seq.saturating_add(1));
        if ended {
            continue;
        }
        let data = fs::read(path).map_err(log_error)?;
        let scanned = segment::scan(*seq, &data);
        let records: Vec<LogRecord> = scanned
            .records
            .into_iter()
            .take_while(|r| {
                let in_order = r.id > last_id;
                if in_order {
                    last_id = r.id;
                }
                in_order
            })
            .collect();
        ended = !scanned.closed;
        for chunk in records.chunks(APPLY_BATCH) {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            let before = applied_up_to(conn);
            let result = apply_records(conn, chunk);
            match (before, result) {
                (Ok(before), Ok(after)) => {
                    conn.execute_batch("COMMIT")?;
                    let applied = chunk.iter().filter(|r| r.id > before && r.id <= after);
                    replayed = replayed.saturating_add(applied.count());
                }
                (Err(err), _) | (_, Err(err)) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(err);
                }
            }
        }
    }
    if replayed > 0 {
        tracing::info!(
            replayed,
            "inbox: applied events from the log that were not in the database yet"
        );
    }
    // The writer connection runs with synchronous=FULL: every commit above is fsynced, so
    // the segments are no longer needed.
    for (_, path) in &segments {
        fs::remove_file(path).map_err(log_error)?;
    }
    if !segments.is_empty() {
        sync_dir(dir).map_err(log_error)?;
    }
    Ok(Recovered { replayed, next_seq })
}

fn log_error(err: std::io::Error) -> InboxError {
    InboxError::Log(Arc::new(err))
}

/// Starts the applier thread. It holds `lock` (the log directory's lock) until it stops,
/// which is after the log's threads stopped and every record it received was applied.
pub(crate) fn spawn(
    rx: Receiver<ToApplier>,
    writer: mpsc::Sender<Box<dyn Work>>,
    shared: Arc<JournalShared>,
    lock: fs::File,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("hookgate-inbox-applier".to_owned())
        .spawn(move || {
            run(&rx, &writer, &shared);
            drop(lock);
        })
}

fn run(rx: &Receiver<ToApplier>, writer: &mpsc::Sender<Box<dyn Work>>, shared: &JournalShared) {
    let mut sealed: VecDeque<(PathBuf, i64)> = VecDeque::new();
    while let Ok(first) = rx.recv() {
        let mut records = Vec::new();
        let mut take = |msg: ToApplier, records: &mut Vec<LogRecord>| match msg {
            ToApplier::Records(batch) => records.extend(batch),
            ToApplier::Sealed { path, last_id } => sealed.push_back((path, last_id)),
        };
        take(first, &mut records);
        while records.len() < APPLY_BATCH {
            match rx.try_recv() {
                Ok(msg) => take(msg, &mut records),
                Err(_) => break,
            }
        }
        if !records.is_empty() {
            let count = records.len();
            let Some(applied) = apply(writer, Arc::new(records)) else {
                return;
            };
            shared.unapplied.fetch_sub(count, Ordering::SeqCst);
            shared.applied.send_replace(applied);
        }
        let applied = *shared.applied.borrow();
        if sealed.front().is_some_and(|(_, last)| *last <= applied) && sync(writer) {
            while let Some((path, _)) = sealed.front().filter(|(_, last)| *last <= applied) {
                if let Err(err) = fs::remove_file(path) {
                    tracing::warn!(error = %err, path = %path.display(), "cannot remove an applied log segment");
                }
                sealed.pop_front();
            }
        }
    }
}

/// Applies `records` through the writer thread, retrying until it succeeds; `None` when
/// the writer is gone.
fn apply(writer: &mpsc::Sender<Box<dyn Work>>, records: Arc<Vec<LogRecord>>) -> Option<i64> {
    let mut pause = RETRY_PAUSE;
    loop {
        let batch = records.clone();
        let (job, reply) = Call::job_with_undo(
            true,
            move |conn: &Connection, _| apply_records(conn, &batch),
            None,
            Durability::Deferred,
        );
        writer.blocking_send(job).ok()?;
        match reply.blocking_recv().ok()? {
            Ok(applied) => return Some(applied),
            Err(err) => {
                tracing::warn!(error = %err, "inbox: applying the log to the database failed; retrying");
                std::thread::sleep(pause);
                pause = pause.saturating_mul(2).min(MAX_RETRY_PAUSE);
            }
        }
    }
}

/// One synced commit: makes every earlier unsynced commit durable. Returns whether it did.
fn sync(writer: &mpsc::Sender<Box<dyn Work>>) -> bool {
    let (job, reply) = Call::job(false, |conn: &Connection, now| {
        conn.prepare_cached("UPDATE log_applied SET synced_at = ?1 WHERE one = 1")?
            .execute(params![now])?;
        Ok(())
    });
    writer.blocking_send(job).is_ok() && matches!(reply.blocking_recv(), Ok(Ok(())))
}
