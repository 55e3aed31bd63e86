//! The segment log's write path: group commit on one thread.
//!
//! Enqueues are [`AppendJob`]s on a bounded channel. The **log writer** thread takes every
//! job waiting (up to the batch limit), gives each record the next event id, encodes the
//! batch into one buffer, writes it with one positioned write at the end of the current
//! segment, runs one `fdatasync`, and only then answers the batch's callers: a caller's
//! `Ok` always comes after the sync that covers its record. Every enqueue that arrives
//! while a sync runs waits in the channel and goes into the next batch.
//!
//! Writing and syncing used to be two pipelined threads, the writer writing batch N+1
//! while the syncer synced batch N. That cost more than it saved: batch N+1 was sealed as
//! soon as it was written, so an enqueue arriving during sync N waited for sync N+1 and
//! then its own (about 2.5 sync cycles instead of 1.5), and each batch crossed one more
//! thread. One thread answered 13–14 k requests/s at 16 connections where the pair
//! answered 11.5–12.5 k, with larger batches (see docs/BENCHMARKS.md).
//!
//! Segments are preallocated by a third thread: the file is created, filled with zeros
//! (synced step by step, so no flush of the disk carries a whole segment of zeros in front
//! of the log's own syncs), synced, and its directory synced, before the writer may put a
//! record in it. A zero-filled file keeps every later `fdatasync` a data-only flush (no
//! block allocation, no size change, so no journal commit of the file system's metadata),
//! and the directory sync makes the file's name as durable as its contents. A full segment is closed with an
//! end-of-segment record, synced before anything in the next segment is acknowledged.
//!
//! A failed write or sync leaves the file's state unknown (the kernel may have dropped the
//! dirty pages), so the log stops taking events: every later append fails with
//! [`InboxError::Log`] until the inbox is opened again, which recovers what is valid.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, mpsc as std_mpsc};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot, watch};

use crate::InboxError;
use crate::keys::Keys;
use crate::segment::{self, LogRecord};

/// Records per `fdatasync` (callers sharing one sync of the log).
const BATCH_SIZE: &str = "hookgate_inbox_log_batch_size";
/// Bytes zeroed, then synced, per step while preallocating a segment. Syncing the zeros
/// step by step keeps each flush the disk sees small: one sync of a whole 32 MiB segment
/// held every `fdatasync` of the log waiting behind it for 18–27 ms (measured with
/// `strace -T`, see docs/BENCHMARKS.md); a 512 KiB step, at the same rate, for well under
/// a millisecond (estimated, not measured on an idle disk).
const ZERO_CHUNK: usize = 512 * 1024;

/// One enqueue for the log: answered with the event's id once it is durable.
#[derive(Debug)]
pub(crate) struct AppendJob {
    pub(crate) record: LogRecord,
    pub(crate) reply: oneshot::Sender<Result<i64, InboxError>>,
}

/// What the log writer hands the applier.
#[derive(Debug)]
pub(crate) enum ToApplier {
    /// Durable records, in id order.
    Records(Vec<LogRecord>),
    /// A closed segment, whose records (up to `last_id`) were all sent before.
    Sealed { path: PathBuf, last_id: i64 },
    /// A reader waits for the records up to [`JournalShared::wanted`]: apply them now.
    Wanted,
}

/// State shared by the log's threads and the inbox.
#[derive(Debug)]
pub(crate) struct JournalShared {
    pub(crate) syncs: AtomicU64,
    pub(crate) records: AtomicU64,
    pub(crate) largest_batch: AtomicU64,
    /// A write or sync failed: the log takes no more events.
    pub(crate) failed: AtomicBool,
    /// The highest event id that is durable in the log.
    pub(crate) durable: watch::Sender<i64>,
    /// The highest event id applied to SQLite.
    pub(crate) applied: watch::Sender<i64>,
    /// The highest event id a reader waits to see applied (the applier then applies
    /// without waiting to collect more).
    pub(crate) wanted: AtomicI64,
    /// Records accepted but not applied to SQLite yet (bounded by the inbox).
    pub(crate) unapplied: AtomicUsize,
    pub(crate) keys: Arc<Keys>,
    /// Asks the preallocator to stop.
    pub(crate) stop: AtomicBool,
}

impl JournalShared {
    pub(crate) fn new(keys: Arc<Keys>, last_id: i64) -> Self {
        JournalShared {
            syncs: AtomicU64::new(0),
            records: AtomicU64::new(0),
            largest_batch: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            durable: watch::channel(last_id).0,
            applied: watch::channel(last_id).0,
            wanted: AtomicI64::new(last_id),
            unapplied: AtomicUsize::new(0),
            keys,
            stop: AtomicBool::new(false),
        }
    }

    fn fail(&self, jobs: Vec<AppendJob>, err: &io::Error) {
        if !self.failed.swap(true, Ordering::SeqCst) {
            tracing::error!(error = %err, "the inbox's event log failed; no more events are taken until it is reopened");
        }
        let shared = Arc::new(io::Error::new(err.kind(), err.to_string()));
        for job in jobs {
            self.keys.resolve(&job.record.event.dedup_digest, None);
            self.unapplied.fetch_sub(1, Ordering::SeqCst);
            let _ = job.reply.send(Err(InboxError::Log(shared.clone())));
        }
        // Wake whoever waits for a durable id that will not come.
        self.durable.send_modify(|_| {});
    }
}

/// An open segment being written.
#[derive(Debug)]
pub(crate) struct Segment {
    seq: u64,
    path: PathBuf,
    file: Arc<File>,
    offset: u64,
    last_id: i64,
}

/// Creates segment `seq` in `dir`: a fully applied segment kept for reuse renamed (its
/// blocks are written already, and its old records fail the checksum under the new
/// number), or else a new file zero-filled to `size`; then synced, and its directory synced.
pub(crate) fn create_segment(
    dir: &Path,
    seq: u64,
    size: u64,
    stop: &AtomicBool,
) -> io::Result<Segment> {
    let path = dir.join(segment::file_name(seq));
    if let Some(free) = segment::list_free(dir)?.into_iter().next() {
        fs::rename(&free, &path)?;
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        if file.metadata()?.len() >= size {
            sync_dir(dir)?;
            return Ok(Segment {
                seq,
                path,
                file: Arc::new(file),
                offset: 0,
                last_id: 0,
            });
        }
        // Smaller than this inbox's segments now: not reused.
        drop(file);
        fs::remove_file(&path)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    let zeros = vec![0u8; ZERO_CHUNK];
    let mut left = size;
    while left > 0 {
        if stop.load(Ordering::Relaxed) {
            drop(file);
            let _ = fs::remove_file(&path);
            return Err(io::Error::other("the inbox is closing"));
        }
        let n = usize::try_from(left).unwrap_or(ZERO_CHUNK).min(ZERO_CHUNK);
        file.write_all(zeros.get(..n).unwrap_or(&zeros))?;
        file.sync_data()?;
        left = left.saturating_sub(n as u64);
    }
    file.sync_all()?;
    sync_dir(dir)?;
    Ok(Segment {
        seq,
        path,
        file: Arc::new(file),
        offset: 0,
        last_id: 0,
    })
}

/// Makes the directory's entries (a created or removed file's name) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The threads of a running log.
#[derive(Debug)]
pub(crate) struct Threads {
    pub(crate) handles: Vec<JoinHandle<()>>,
}

/// Starts the log writer and preallocator threads, with `first_seq` as the first
/// segment's number and `next_id` as the first event id. Durable records go to
/// `to_applier`. No segment is created before the first append: an inbox opened only to
/// be queried writes nothing.
#[allow(clippy::too_many_arguments)]
pub(crate) fn start(
    dir: PathBuf,
    first_seq: u64,
    segment_size: u64,
    max_batch: usize,
    next_id: i64,
    rx: mpsc::Receiver<AppendJob>,
    shared: Arc<JournalShared>,
    to_applier: std_mpsc::Sender<ToApplier>,
) -> io::Result<Threads> {
    let (spare_tx, spare_rx) = sync_channel::<io::Result<Segment>>(0);
    let (go_tx, go_rx) = sync_channel::<()>(1);
    let mut handles = Vec::new();
    {
        let shared = shared.clone();
        handles.push(
            std::thread::Builder::new()
                .name("hookgate-inbox-prealloc".to_owned())
                .spawn(move || {
                    // Nothing until the first append (or the inbox closes).
                    if go_rx.recv().is_ok() {
                        preallocate(&dir, first_seq, segment_size, &spare_tx, &shared);
                    }
                })?,
        );
    }
    handles.push(
        std::thread::Builder::new()
            .name("hookgate-inbox-log-writer".to_owned())
            .spawn(move || {
                let writer = Writer {
                    segment: None,
                    go: Some(go_tx),
                    spares: spare_rx,
                    to_applier,
                    segment_size,
                    max_batch,
                    next_id,
                };
                writer.run(rx, &shared);
                // Lets the preallocator's pending send fail, and stops it.
                shared.stop.store(true, Ordering::SeqCst);
            })?,
    );
    Ok(Threads { handles })
}

fn preallocate(
    dir: &Path,
    mut seq: u64,
    size: u64,
    spares: &SyncSender<io::Result<Segment>>,
    shared: &JournalShared,
) {
    while !shared.stop.load(Ordering::Relaxed) {
        let segment = create_segment(dir, seq, size, &shared.stop);
        let failed = segment.is_err();
        if let Err(std_mpsc::SendError(Ok(unused))) = spares.send(segment) {
            // Nobody will write to it: remove it (recovery would ignore it anyway).
            let _ = fs::remove_file(&unused.path);
            return;
        }
        if failed {
            return;
        }
        seq = seq.saturating_add(1);
    }
}

/// A batch written to the log, waiting for its sync.
struct SyncBatch {
    /// The files to sync, in order (the closed segment's end record first, if any).
    files: Vec<Arc<File>>,
    jobs: Vec<AppendJob>,
    sealed: Option<(PathBuf, i64)>,
    last_id: i64,
}

struct Writer {
    /// The segment being written; `None` until the first append.
    segment: Option<Segment>,
    /// Starts the preallocator at the first append.
    go: Option<SyncSender<()>>,
    spares: Receiver<io::Result<Segment>>,
    to_applier: std_mpsc::Sender<ToApplier>,
    segment_size: u64,
    max_batch: usize,
    next_id: i64,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<AppendJob>, shared: &JournalShared) {
        let mut buf = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            let mut jobs = vec![first];
            while jobs.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(job) => jobs.push(job),
                    Err(_) => break,
                }
            }
            if shared.failed.load(Ordering::SeqCst) {
                shared.fail(jobs, &io::Error::other("the event log failed earlier"));
                continue;
            }
            match self.write(&mut jobs, &mut buf) {
                Ok((files, sealed, last_id)) => {
                    let batch = SyncBatch {
                        files,
                        jobs,
                        sealed,
                        last_id,
                    };
                    sync_batch(batch, shared, &self.to_applier);
                }
                Err(err) => shared.fail(jobs, &err),
            }
        }
    }

    /// The next preallocated segment (waiting for it if it is not ready yet).
    fn next_segment(&mut self) -> io::Result<Segment> {
        if let Some(go) = self.go.take() {
            let _ = go.send(());
        }
        match self.spares.recv() {
            Ok(segment) => segment,
            Err(_) => Err(io::Error::other("the segment preallocator stopped")),
        }
    }

    /// Writes the batch (rolling over to a new segment first if it does not fit); returns
    /// the files to sync, the closed segment if any, and the batch's last id.
    #[allow(clippy::type_complexity)]
    fn write(
        &mut self,
        jobs: &mut [AppendJob],
        buf: &mut Vec<u8>,
    ) -> io::Result<(Vec<Arc<File>>, Option<(PathBuf, i64)>, i64)> {
        buf.clear();
        for job in jobs.iter_mut() {
            job.record.id = self.next_id;
            self.next_id = self.next_id.saturating_add(1);
            segment::encode_event(&job.record, buf);
        }
        let last_id = self.next_id.saturating_sub(1);
        let len = buf.len() as u64;
        let mut files = Vec::with_capacity(2);
        let mut sealed = None;
        let mut current = match self.segment.take() {
            Some(segment) => segment,
            None => self.next_segment()?,
        };
        if current.offset > 0 && current.offset.saturating_add(len) > self.segment_size {
            let mut end = Vec::new();
            segment::encode_end(&mut end);
            segment::seal(&mut end, current.seq);
            if let Err(err) = current.file.write_all_at(&end, current.offset) {
                self.segment = Some(current);
                return Err(err);
            }
            files.push(current.file.clone());
            sealed = Some((current.path.clone(), current.last_id));
            current = self.next_segment()?;
        }
        segment::seal(buf, current.seq);
        let written = current.file.write_all_at(buf, current.offset);
        if written.is_ok() {
            current.offset = current.offset.saturating_add(len);
            current.last_id = last_id;
            files.push(current.file.clone());
        }
        self.segment = Some(current);
        written?;
        Ok((files, sealed, last_id))
    }
}

/// Syncs a written batch, then settles its dedup keys, answers its callers and hands its
/// records to the applier.
fn sync_batch(batch: SyncBatch, shared: &JournalShared, to_applier: &std_mpsc::Sender<ToApplier>) {
    if shared.failed.load(Ordering::SeqCst) {
        shared.fail(
            batch.jobs,
            &io::Error::other("the event log failed earlier"),
        );
        return;
    }
    if let Err(err) = batch.files.iter().try_for_each(|file| file.sync_data()) {
        shared.fail(batch.jobs, &err);
        return;
    }
    let size = u64::try_from(batch.jobs.len()).unwrap_or(u64::MAX);
    shared.syncs.fetch_add(1, Ordering::Relaxed);
    shared.records.fetch_add(size, Ordering::Relaxed);
    shared.largest_batch.fetch_max(size, Ordering::Relaxed);
    #[allow(clippy::cast_precision_loss)]
    metrics::histogram!(BATCH_SIZE).record(size as f64);
    // Durable from here: first the watermark (a caller answered below then reads
    // its own write), then the dedup entries, then the callers.
    shared.durable.send_replace(batch.last_id);
    for job in &batch.jobs {
        shared
            .keys
            .settle_quietly(&job.record.event.dedup_digest, job.record.id);
    }
    shared.keys.notify();
    let mut records = Vec::with_capacity(batch.jobs.len());
    for job in batch.jobs {
        // The caller may have given up waiting (a gate deadline): the event stands.
        let _ = job.reply.send(Ok(job.record.id));
        records.push(job.record);
    }
    let _ = to_applier.send(ToApplier::Records(records));
    if let Some((path, last_id)) = batch.sealed {
        let _ = to_applier.send(ToApplier::Sealed { path, last_id });
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::segment::tests::record;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiting_appends_share_one_sync_and_roll_over_segments() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Arc::new(Keys::default());
        let shared = Arc::new(JournalShared::new(keys.clone(), 0));
        let size = 64 * 1024;
        let (tx, rx) = mpsc::channel(1024);
        let (to_applier, applied) = std_mpsc::channel();
        // 64 appends wait before the writer starts: one batch, one sync.
        let mut replies = Vec::new();
        for n in 0..64 {
            let r = record(1000 + n as i64, &"x".repeat(900 + n));
            assert_eq!(
                keys.reserve(&r.event.dedup_digest, 0, 1),
                crate::keys::KeyState::Absent
            );
            let (reply, rx) = oneshot::channel();
            shared.unapplied.fetch_add(1, Ordering::SeqCst);
            tx.try_send(AppendJob { record: r, reply }).unwrap();
            replies.push(rx);
        }
        let threads = start(
            dir.path().to_path_buf(),
            1,
            size,
            1024,
            11,
            rx,
            shared.clone(),
            to_applier,
        )
        .unwrap();
        let mut ids = Vec::new();
        for reply in replies {
            ids.push(reply.await.unwrap().unwrap());
        }
        assert_eq!(ids, (11..75).collect::<Vec<_>>());
        assert_eq!(shared.syncs.load(Ordering::SeqCst), 1);
        assert_eq!(shared.largest_batch.load(Ordering::SeqCst), 64);
        assert_eq!(*shared.durable.borrow(), 74);
        // The batch (about 60 KiB) fit in segment 1; the next one rolls over.
        let more = record(5000, &"y".repeat(8000));
        let (reply, reply_rx) = oneshot::channel();
        keys.reserve(&more.event.dedup_digest, 0, 1);
        tx.send(AppendJob {
            record: more,
            reply,
        })
        .await
        .unwrap();
        assert_eq!(reply_rx.await.unwrap().unwrap(), 75);
        drop(tx);
        for handle in threads.handles {
            handle.join().unwrap();
        }
        let mut got = Vec::new();
        let mut sealed = Vec::new();
        for msg in applied.try_iter() {
            match msg {
                ToApplier::Records(records) => got.extend(records.iter().map(|r| r.id)),
                ToApplier::Sealed { last_id, .. } => sealed.push(last_id),
                ToApplier::Wanted => {}
            }
        }
        assert_eq!(got, (11..76).collect::<Vec<_>>());
        assert_eq!(sealed, [74]);
        // Segment 1 is closed, segment 2 holds event 75, and both read back.
        let one = segment::scan(
            1,
            &fs::read(dir.path().join(segment::file_name(1))).unwrap(),
        );
        assert!(one.closed);
        assert_eq!(one.records.len(), 64);
        let two = segment::scan(
            2,
            &fs::read(dir.path().join(segment::file_name(2))).unwrap(),
        );
        assert!(!two.closed);
        assert_eq!(two.records.iter().map(|r| r.id).collect::<Vec<_>>(), [75]);
        assert_eq!(
            keys.state(&record(1000, "").event.dedup_digest, 0),
            crate::keys::KeyState::Stored(Some(11))
        );
    }
}
