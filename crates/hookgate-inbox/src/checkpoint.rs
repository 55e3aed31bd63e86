//! The checkpoint thread: copies committed pages from the write-ahead log into the database
//! file on its own connection, so that the writer's commits do little of it.
//!
//! Left to SQLite, the connection that commits runs a checkpoint whenever the log passes
//! its threshold: the writer thread then copies a thousand pages and fsyncs the database
//! file inside a commit, while every caller of that batch (and every one queued behind it)
//! waits. A `PASSIVE` checkpoint on another connection does the same work beside the
//! writer: it never blocks the writer nor a reader. Durability does not depend on it: a
//! commit is durable once the log is fsynced; the checkpoint only bounds the log's size.
//!
//! The log restarts from its beginning only when a write begins with every frame copied,
//! which under steady writes this thread's checkpoints never leave behind (the writer has
//! committed again by the time one ends). So the writer checkpoints by itself as well, at
//! a small threshold ([`WRITER_AUTOCHECKPOINT`](crate::schema::WRITER_AUTOCHECKPOINT)):
//! right after one of its commits, with this thread having copied all but the last few
//! hundred frames, which is short, and the log then restarts.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use crate::{InboxError, schema};

/// Time between checkpoints while the log keeps growing.
///
/// A checkpoint writes what it copies and fsyncs the database file, and the log's
/// `fdatasync`s in flight meanwhile wait for those bytes too (a flush of the disk persists
/// everything written before it). So frequent small checkpoints keep the enqueues' tail
/// short: every 50 ms the request p99 was 3.2–3.7 ms at 16 connections, every 10 ms (with
/// the applier's 2 ms batches) 2.1–2.2 ms. Not shorter: every 5–7 ms the p99 fell further
/// (1.7–1.8 ms) but at 64 connections the p99.9 rose from 6–14 ms to 16–34 ms
/// (measured with the writer's checkpoint at 20 000 frames; docs/BENCHMARKS.md).
const BUSY_INTERVAL: Duration = Duration::from_millis(10);
/// Time between checkpoints while nothing is written.
const IDLE_INTERVAL: Duration = Duration::from_secs(1);

/// Starts the checkpoint thread; it stops when `stop`'s sender is dropped.
pub(crate) fn spawn(path: PathBuf, stop: Receiver<()>) -> Result<(), InboxError> {
    let conn = schema::open_checkpointer(&path)?;
    std::thread::Builder::new()
        .name("hookgate-inbox-checkpoint".to_owned())
        .spawn(move || {
            let mut interval = BUSY_INTERVAL;
            let mut last = (-1, -1);
            while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(interval) {
                // (busy, frames in the log, frames copied to the database)
                let result = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                    Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
                });
                interval = match result {
                    // The log changed since the last look: writes are coming in.
                    Ok(now) if now != last => {
                        last = now;
                        BUSY_INTERVAL
                    }
                    Ok(_) => IDLE_INTERVAL,
                    Err(err) => {
                        tracing::debug!(error = %err, "inbox checkpoint failed; retrying later");
                        IDLE_INTERVAL
                    }
                };
            }
        })
        .map(drop)
        .map_err(|err| InboxError::Task(format!("cannot start the checkpoint thread: {err}")))
}
