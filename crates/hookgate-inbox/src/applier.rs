//! The applier: moves durable records from the segment log into SQLite, in large batches.
//!
//! The applier collects durable records for up to [`APPLY_DELAY`] (or [`APPLY_MIN`]
//! records) before it applies them, so one transaction's fixed cost is shared by many
//! events; a reader waiting for a record (a query or a lease, through `Inbox::caught_up`)
//! has it applied at once.
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
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use tokio::sync::mpsc;

use crate::InboxError;
use crate::journal::{JournalShared, ToApplier, sync_dir};
use crate::segment::{self, LogRecord};
use crate::writer::{Call, Durability, Work};

/// Applied segments kept for reuse.
const KEEP_FREE: usize = 2;
/// Most records one apply transaction holds.
const APPLY_BATCH: usize = 8192;
/// Records the applier collects before it applies them at once (unless asked sooner).
const APPLY_MIN: usize = 1024;
/// The longest a durable record waits for the applier to collect more: each apply is a
/// transaction whose fixed cost (the pages of every table and index it touches, written
/// to SQLite's log and copied again by the checkpoint) is shared by the records in it. A
/// reader that needs the records sooner (a query, a lease: see
/// [`JournalShared::wanted`]) has them applied at once.
///
/// Short, because each apply writes its pages in one burst, and a flush of the disk
/// carries everything written before it: the log's next `fdatasync`, which every waiting
/// enqueue is behind, waits for that burst. At 10 ms the bursts (and the checkpoints
/// copying them) held the request p99 at 3.2–3.7 ms at 16 connections; at 2 ms, with the
/// checkpointer's 10 ms, 2.1–2.2 ms, for the same CPU per event and throughput (four
/// times the commits; see docs/BENCHMARKS.md).
const APPLY_DELAY: Duration = Duration::from_millis(2);
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
    // The dedup key goes in the state row, appended in id order like the rest: no
    // random-keyed insert per event (schema version 5).
    let mut state = conn.prepare_cached(
        "INSERT INTO state (id, status, due_at, is_test, dedup_digest, dedup_expires_at)
         VALUES (?1, 'received', ?2, ?3, ?4, ?5)",
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
        state.execute(params![
            record.id,
            record.enqueued_at_ms,
            e.is_test,
            &e.dedup_digest[..],
            record.expires_at_ms
        ])?;
        crate::deliveries::insert_routes(conn, record)?;
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
    // the segments are no longer needed (a few are kept for reuse).
    for (_, path) in &segments {
        give_up(path).map_err(log_error)?;
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
    let mut records: Vec<LogRecord> = Vec::new();
    let mut open = true;
    while open {
        open = gather(rx, shared, &mut records, &mut sealed, APPLY_DELAY);
        while !records.is_empty() {
            let rest = records.split_off(records.len().min(APPLY_BATCH));
            let chunk = std::mem::replace(&mut records, rest);
            let count = chunk.len();
            let Some(applied) = apply(writer, Arc::new(chunk)) else {
                return;
            };
            shared.unapplied.fetch_sub(count, Ordering::SeqCst);
            shared.applied.send_replace(applied);
        }
        let applied = *shared.applied.borrow();
        if sealed.front().is_some_and(|(_, last)| *last <= applied) && sync(writer) {
            while let Some((path, _)) = sealed.front().filter(|(_, last)| *last <= applied) {
                if let Err(err) = give_up(path) {
                    tracing::warn!(error = %err, path = %path.display(), "cannot remove an applied log segment");
                }
                sealed.pop_front();
            }
        }
    }
}

/// Waits for durable records and collects them into `records` until it is time to apply
/// them: [`APPLY_MIN`] records, `delay` after the first, a reader waiting for one of them
/// ([`JournalShared::wanted`]), or a closed segment to give up. Returns `false` once the
/// log's threads stopped (what was collected is still to be applied).
fn gather(
    rx: &Receiver<ToApplier>,
    shared: &JournalShared,
    records: &mut Vec<LogRecord>,
    sealed: &mut VecDeque<(PathBuf, i64)>,
    delay: Duration,
) -> bool {
    let mut deadline: Option<Instant> = None;
    loop {
        if let Some(last) = records.last() {
            let wanted = shared.wanted.load(Ordering::SeqCst);
            if records.len() >= APPLY_MIN
                || (wanted > *shared.applied.borrow() && last.id >= wanted)
            {
                return true;
            }
        }
        let message = match deadline {
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
        };
        match message {
            Ok(ToApplier::Records(batch)) => {
                records.extend(batch);
                if deadline.is_none() {
                    deadline = Instant::now().checked_add(delay);
                }
            }
            Ok(ToApplier::Sealed { path, last_id }) => {
                sealed.push_back((path, last_id));
                if records.is_empty() {
                    return true;
                }
            }
            // Only a wake-up: the condition above is checked again.
            Ok(ToApplier::Wanted) => {}
            Err(RecvTimeoutError::Timeout) => return true,
            Err(RecvTimeoutError::Disconnected) => return false,
        }
    }
}

/// Renames an applied segment for reuse, or deletes it when enough are kept.
fn give_up(path: &Path) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let seq = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('.').next())
        .and_then(|n| n.parse::<u64>().ok());
    match seq {
        Some(seq) if segment::list_free(dir)?.len() < KEEP_FREE => {
            fs::rename(path, dir.join(segment::free_name(seq)))
        }
        _ => fs::remove_file(path),
    }
}

/// Applies `records` through the writer thread, retrying until it succeeds; `None` when
/// the writer is gone.
fn apply(writer: &mpsc::Sender<Box<dyn Work>>, records: Arc<Vec<LogRecord>>) -> Option<i64> {
    let mut pause = RETRY_PAUSE;
    loop {
        let batch = records.clone();
        let (job, reply) = Call::job_with(
            true,
            move |conn: &Connection, _| apply_records(conn, &batch),
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

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
pub(crate) mod tests {
    use std::path::Path;
    use std::sync::mpsc as std_mpsc;

    use hookgate::{SchemeId, SignRequest, Signer, VerifiedEvent, Verifier};

    use super::*;
    use crate::inbox::log_dir;
    use crate::inbox::tests::hold_writer;
    use crate::{Enqueued, Inbox, LogQuery};

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    /// A verified Standard Webhooks delivery with delivery id `id`.
    pub(crate) fn event(id: &str) -> VerifiedEvent {
        let delivery = Signer::new(SchemeId::StandardWebhooksV1, SECRET)
            .unwrap()
            .sign(&SignRequest::new(format!("{{\"id\":\"{id}\"}}")).id(id))
            .unwrap();
        Verifier::builder(SchemeId::StandardWebhooksV1)
            .secret(SECRET)
            .build()
            .unwrap()
            .verify(&delivery.headers, delivery.body)
            .unwrap()
    }

    fn open(path: &Path) -> Inbox {
        Inbox::builder(path).no_scheduled_pruning().open().unwrap()
    }

    /// What a crash at this moment leaves on disk: the database, its write-ahead log and
    /// the segments, copied while every thread of the inbox is still running.
    fn crash_copy(from: &Path, to: &Path) {
        for suffix in ["", "-wal"] {
            let name = format!("inbox.db{suffix}");
            if from.join(&name).exists() {
                fs::copy(from.join(&name), to.join(&name)).unwrap();
            }
        }
        let (source, target) = (
            log_dir(&from.join("inbox.db")),
            log_dir(&to.join("inbox.db")),
        );
        fs::create_dir_all(&target).unwrap();
        for (_, path) in segment::list(&source).unwrap() {
            fs::copy(&path, target.join(path.file_name().unwrap())).unwrap();
        }
    }

    fn segments(db: &Path) -> Vec<(u64, PathBuf)> {
        segment::list(&log_dir(db)).unwrap()
    }

    /// What the applier collects before a transaction: everything sent until a reader
    /// asks for it, [`APPLY_MIN`] records, or a closed segment; never a wait for the delay
    /// once a reader asked (the delay here is an hour: a wrong answer hangs, bounded below).
    #[test]
    fn the_applier_collects_until_a_reader_asks_or_enough_arrived() {
        let hour = Duration::from_secs(3600);
        let shared = Arc::new(JournalShared::new(
            Arc::new(crate::keys::Keys::default()),
            0,
        ));
        let (tx, rx) = std_mpsc::channel();
        let (done_tx, done_rx) = std_mpsc::channel();
        let collector = {
            let shared = shared.clone();
            std::thread::spawn(move || {
                loop {
                    let (mut records, mut sealed) = (Vec::new(), VecDeque::new());
                    let open = gather(&rx, &shared, &mut records, &mut sealed, hour);
                    let ids: Vec<i64> = records.iter().map(|r| r.id).collect();
                    let sealed: Vec<i64> = sealed.iter().map(|(_, last)| *last).collect();
                    done_tx.send((ids, sealed, open)).unwrap();
                    if !open {
                        return;
                    }
                }
            })
        };
        let next = || done_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        let records = |ids: std::ops::Range<i64>| {
            ToApplier::Records(ids.map(|id| segment::tests::record(id, "{}")).collect())
        };

        // Records alone wait for more; a reader asking for the last of them ends the wait.
        tx.send(records(1..3)).unwrap();
        tx.send(records(3..5)).unwrap();
        assert!(done_rx.recv_timeout(Duration::from_millis(200)).is_err());
        shared.wanted.store(4, Ordering::SeqCst);
        tx.send(ToApplier::Wanted).unwrap();
        assert_eq!(next(), (vec![1, 2, 3, 4], vec![], true));
        // A reader asking for a record not here yet is answered when it arrives.
        shared.wanted.store(6, Ordering::SeqCst);
        tx.send(ToApplier::Wanted).unwrap();
        tx.send(records(5..6)).unwrap();
        assert!(done_rx.recv_timeout(Duration::from_millis(200)).is_err());
        tx.send(records(6..7)).unwrap();
        assert_eq!(next(), (vec![5, 6], vec![], true));
        shared.applied.send_replace(6);
        // Enough records end the wait without a reader.
        let min = i64::try_from(APPLY_MIN).unwrap();
        tx.send(records(7..7 + min)).unwrap();
        assert_eq!(next().0.len(), APPLY_MIN);
        // A closed segment with nothing to apply is handed over at once.
        tx.send(ToApplier::Sealed {
            path: PathBuf::from("x"),
            last_id: 6,
        })
        .unwrap();
        assert_eq!(next(), (vec![], vec![6], true));
        // The log stopping hands over what was collected.
        tx.send(records(2000..2002)).unwrap();
        drop(tx);
        assert_eq!(next(), (vec![2000, 2001], vec![], false));
        collector.join().unwrap();
    }

    /// A crash between append and apply: the acknowledged events are only in the log.
    /// Opening the copy replays them into SQLite exactly once, and the sender's retry of
    /// one of them is a duplicate.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crash_between_append_and_apply_replays_each_record_once() {
        let (live, crashed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let inbox = open(&live.path().join("inbox.db"));
        // Two events applied before, three acknowledged only by the log.
        for id in ["msg_a", "msg_b"] {
            inbox.enqueue(&event(id)).await.unwrap();
        }
        assert_eq!(inbox.status_counts().await.unwrap().total(), 2);
        let (release, held) = hold_writer(&inbox).await;
        for id in ["msg_c", "msg_d", "msg_e"] {
            assert!(matches!(
                inbox.enqueue(&event(id)).await.unwrap(),
                Enqueued::Stored(_)
            ));
        }
        assert_eq!(inbox.stats().unapplied, 3);
        crash_copy(live.path(), crashed.path());
        release.send(()).unwrap();
        held.await.unwrap();

        let path = crashed.path().join("inbox.db");
        {
            let conn = Connection::open(&path).unwrap();
            let rows: i64 = conn
                .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
                .unwrap();
            assert_eq!(rows, 2, "the copy holds only the applied events");
        }
        let reopened = open(&path);
        let entries = reopened.query(LogQuery::new().limit(100)).await.unwrap();
        let mut ids: Vec<String> = entries
            .iter()
            .filter_map(|e| e.delivery_id.clone())
            .collect();
        ids.sort();
        assert_eq!(ids, ["msg_a", "msg_b", "msg_c", "msg_d", "msg_e"]);
        let numbers: Vec<i64> = entries.iter().rev().map(|e| e.id.get()).collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5]);
        // The retries are duplicates, of the replayed copies.
        assert_eq!(
            reopened.enqueue(&event("msg_d")).await.unwrap(),
            Enqueued::Duplicate(Some(crate::EventId::new(4)))
        );
        assert_eq!(
            reopened.enqueue(&event("msg_a")).await.unwrap(),
            Enqueued::Duplicate(Some(crate::EventId::new(1)))
        );
        // New events continue after the replayed ids; the segments were consumed.
        assert_eq!(
            reopened.enqueue(&event("msg_f")).await.unwrap(),
            Enqueued::Stored(crate::EventId::new(6))
        );
        assert_eq!(
            segments(&path).len(),
            2,
            "the new active segment and its spare at most"
        );
        drop(reopened);
        // Opening again replays nothing twice.
        let again = open(&path);
        assert_eq!(again.status_counts().await.unwrap().total(), 6);
        drop(inbox);
    }

    /// A torn or corrupted tail: recovery keeps every whole record before it and drops the
    /// rest, without a panic, whatever the bytes are.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn recovery_stops_at_a_torn_tail_or_a_bad_checksum() {
        for damage in ["garbage after", "flipped byte", "cut short"] {
            let (live, crashed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
            let inbox = open(&live.path().join("inbox.db"));
            let (release, held) = hold_writer(&inbox).await;
            for id in ["msg_1", "msg_2", "msg_3"] {
                inbox.enqueue(&event(id)).await.unwrap();
            }
            crash_copy(live.path(), crashed.path());
            release.send(()).unwrap();
            held.await.unwrap();
            drop(inbox);

            let path = crashed.path().join("inbox.db");
            let active = segments(&path)
                .into_iter()
                .find(|(seq, p)| {
                    !segment::scan(*seq, &fs::read(p).unwrap())
                        .records
                        .is_empty()
                })
                .unwrap();
            let mut data = fs::read(&active.1).unwrap();
            let scanned = segment::scan(active.0, &data);
            assert_eq!(scanned.records.len(), 3);
            let end = scanned.valid_len;
            let last_start = {
                let mut two = Vec::new();
                for r in &scanned.records[..2] {
                    segment::encode_event(r, &mut two);
                }
                two.len()
            };
            let kept = match damage {
                "garbage after" => {
                    for (n, byte) in data[end..end + 64].iter_mut().enumerate() {
                        *byte = (n * 37 + 11) as u8;
                    }
                    3
                }
                "flipped byte" => {
                    data[last_start + segment::HEADER_LEN + 3] ^= 0x40;
                    2
                }
                _ => {
                    // The last record half written: its second half is still zeros.
                    for byte in &mut data[(last_start + end) / 2..end] {
                        *byte = 0;
                    }
                    2
                }
            };
            fs::write(&active.1, &data).unwrap();
            let reopened = open(&path);
            let entries = reopened.query(LogQuery::new()).await.unwrap();
            assert_eq!(entries.len(), kept, "{damage}");
            // What was lost was never acknowledged in a real crash; its retry is new.
            let retry = reopened.enqueue(&event("msg_3")).await.unwrap();
            assert_eq!(matches!(retry, Enqueued::Stored(_)), kept == 2, "{damage}");
        }
    }

    /// Full segments are closed and rolled over, and deleted once everything in them is
    /// in the database; a restart finds every event once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn segments_roll_over_and_are_deleted_once_applied() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.db");
        let inbox = Inbox::builder(&path)
            .no_scheduled_pruning()
            .segment_size(64 * 1024)
            .open()
            .unwrap();
        let mut highest_seq = 0;
        for n in 0..400 {
            let delivery = Signer::new(SchemeId::StandardWebhooksV1, SECRET)
                .unwrap()
                .sign(&SignRequest::new("x".repeat(1000)).id(format!("msg_{n}")))
                .unwrap();
            let event = Verifier::builder(SchemeId::StandardWebhooksV1)
                .secret(SECRET)
                .build()
                .unwrap()
                .verify(&delivery.headers, delivery.body)
                .unwrap();
            inbox.enqueue(&event).await.unwrap();
            if let Some((seq, _)) = segments(&path).last() {
                highest_seq = highest_seq.max(*seq);
            }
        }
        assert!(
            highest_seq >= 6,
            "400 KiB in 64 KiB segments: {highest_seq}"
        );
        assert_eq!(inbox.status_counts().await.unwrap().total(), 400);
        // Applied and synced segments are deleted (the active one and a spare stay).
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while segments(&path).len() > 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                segments(&path)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Applied segments are kept for reuse (renamed, a bounded number), not re-zeroed;
        // their old records never count again.
        assert!(segment::list_free(&log_dir(&path)).unwrap().len() <= KEEP_FREE);
        drop(inbox);
        let reopened = open(&path);
        assert_eq!(reopened.status_counts().await.unwrap().total(), 400);
        assert_eq!(reopened.stats().dedup_keys_in_memory, 400);
    }

    /// A second inbox on the same file (`hookgate inbox` while `serve` runs) does not get
    /// the log: it reads what the first one applied and refuses to take events.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_inbox_on_the_file_reads_but_takes_no_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.db");
        let first = open(&path);
        first.enqueue(&event("msg_1")).await.unwrap();
        first.status_counts().await.unwrap();
        let second = open(&path);
        assert_eq!(second.status_counts().await.unwrap().total(), 1);
        assert!(matches!(
            second.enqueue(&event("msg_2")).await,
            Err(crate::InboxError::NotTheWriter)
        ));
        // Closing the first hands the log over at the next open.
        drop(first);
        drop(second);
        let third = open(&path);
        assert!(matches!(
            third.enqueue(&event("msg_2")).await,
            Ok(Enqueued::Stored(_))
        ));
    }
}
