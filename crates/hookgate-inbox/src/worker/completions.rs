//! A worker's results, recorded in batches: one writer job for every result waiting.
//!
//! Each handler's result used to be a writer job of its own: a boxed closure, a savepoint
//! (whose statement journal copies every page the job touches), two statements and a
//! oneshot. With fast handlers that was most of what a processed event cost the writer
//! thread (docs/BENCHMARKS.md). Now a result joins the list of those waiting, and the
//! first to arrive on an empty list sends one job to the writer; when the writer runs it,
//! the job takes the whole list, records every result in one savepoint, and answers each
//! caller after the commit. Results arriving meanwhile go to the next job.
//!
//! The durability is the one each result had alone ([`Durability::Deferred`]: durable with
//! the next synced commit or checkpoint). A batch fails as a whole: when one statement
//! fails, the savepoint is rolled back and every caller of the batch gets the error (the
//! worker then logs it, and those leases expire and are handed out again).

use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::Lease;
use crate::queue::{Completion, complete_attempt};
use crate::writer::{Durability, Work};
use crate::{Inbox, InboxError};

/// One result waiting to be recorded.
pub(crate) struct Pending {
    /// The event's lease, or one delivery's.
    pub(crate) lease: Lease,
    pub(crate) attempt: u32,
    pub(crate) started_ms: i64,
    pub(crate) duration_ms: i64,
    pub(crate) completion: Completion,
}

/// A result and the caller waiting for it.
struct Waiting {
    pending: Pending,
    reply: oneshot::Sender<Result<bool, InboxError>>,
}

/// The results waiting for the next job, shared by a worker's recording tasks.
#[derive(Default)]
pub(crate) struct Completions {
    waiting: Arc<Mutex<Vec<Waiting>>>,
}

impl Completions {
    /// Records `pending` with whatever else is waiting; answers `Ok(false)` when its lease
    /// was lost meanwhile (nothing changed for it).
    pub(crate) async fn record(&self, inbox: &Inbox, pending: Pending) -> Result<bool, InboxError> {
        let (reply, answer) = oneshot::channel();
        let first = {
            let mut waiting = lock(&self.waiting);
            waiting.push(Waiting { pending, reply });
            waiting.len() == 1
        };
        if first {
            // Sent from a task of its own, so that a caller that stops waiting cannot
            // leave the list without a job to take it.
            let (inbox, waiting) = (inbox.clone(), self.waiting.clone());
            tokio::spawn(async move {
                let job = Box::new(Batch {
                    waiting: waiting.clone(),
                    taken: Vec::new(),
                    outcome: Ok(Vec::new()),
                    wakes: false,
                });
                if inbox.submit_job(job).await.is_err() {
                    // The writer is gone: no job will take the list.
                    for left in std::mem::take(&mut *lock(&waiting)) {
                        let _ = left.reply.send(Err(InboxError::Closed));
                    }
                }
            });
        }
        answer.await.map_err(|_| InboxError::Closed)?
    }
}

fn lock(waiting: &Mutex<Vec<Waiting>>) -> std::sync::MutexGuard<'_, Vec<Waiting>> {
    waiting.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The writer job: takes the waiting list when it runs.
struct Batch {
    waiting: Arc<Mutex<Vec<Waiting>>>,
    taken: Vec<Waiting>,
    /// Whether each result's lease was still held, or the error that stopped the batch.
    outcome: Result<Vec<bool>, InboxError>,
    wakes: bool,
}

impl Batch {
    fn record_all(&self, conn: &Connection, now_ms: i64) -> Result<Vec<bool>, InboxError> {
        let mut recorded = Vec::with_capacity(self.taken.len());
        for Waiting { pending, .. } in &self.taken {
            let done = match pending.lease {
                Lease::Event(id, token) => complete_attempt(
                    conn,
                    now_ms,
                    id,
                    token,
                    pending.attempt,
                    pending.started_ms,
                    pending.duration_ms,
                    &pending.completion,
                )?,
                Lease::Delivery(id, token) => crate::deliveries::complete(
                    conn,
                    now_ms,
                    (id, token),
                    pending.attempt,
                    pending.started_ms,
                    pending.duration_ms,
                    &pending.completion,
                )?,
            };
            recorded.push(done);
        }
        Ok(recorded)
    }
}

impl Work for Batch {
    fn run(&mut self, conn: &Connection, now_ms: i64) -> bool {
        self.taken = std::mem::take(&mut *lock(&self.waiting));
        // A retry makes an event due again later: the workers' next wait should see it.
        self.wakes = self
            .taken
            .iter()
            .any(|w| matches!(w.pending.completion, Completion::Retry { .. }));
        self.outcome = self.record_all(conn, now_ms);
        self.outcome.is_ok()
    }

    fn finish(self: Box<Self>, commit: Result<(), InboxError>) {
        let Batch { taken, outcome, .. } = *self;
        match (commit, outcome) {
            (Ok(()), Ok(recorded)) => {
                for (waiting, done) in taken.into_iter().zip(recorded) {
                    let _ = waiting.reply.send(Ok(done));
                }
            }
            (Err(err), _) | (Ok(()), Err(err)) => {
                for waiting in taken {
                    let _ = waiting.reply.send(Err(err.clone()));
                }
            }
        }
    }

    fn wakes_workers(&self) -> bool {
        self.wakes
    }

    fn durability(&self) -> Durability {
        Durability::Deferred
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::applier::tests::event;
    use crate::event::EventId;
    use crate::inbox::tests::hold_writer;

    fn result(id: EventId, token: i64, completion: Completion) -> Pending {
        Pending {
            lease: Lease::Event(id, token),
            attempt: 1,
            started_ms: 0,
            duration_ms: 1,
            completion,
        }
    }

    /// Twenty results that arrive while the writer is busy are recorded by one job, each
    /// caller gets its own answer (a lost lease is `false`), and a retry is scheduled.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn results_waiting_together_are_recorded_by_one_job() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::builder(dir.path().join("inbox.db"))
            .no_scheduled_pruning()
            .open()
            .unwrap();
        for n in 0..20 {
            inbox.enqueue(&event(&format!("msg_{n}"))).await.unwrap();
        }
        let leased = inbox
            .lease_events(20, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(leased.len(), 20);
        let completions = Arc::new(Completions::default());
        let (release, held) = hold_writer(&inbox).await;
        let jobs_before = inbox.stats().jobs;
        let mut answers = Vec::new();
        for (n, lease) in leased.iter().enumerate() {
            // The first result's token is wrong: its lease counts as lost.
            let token = if n == 0 { lease.token + 1 } else { lease.token };
            let completion = if n == 1 {
                Completion::Retry {
                    at_ms: 0,
                    error: "later".to_owned(),
                }
            } else {
                Completion::Processed
            };
            let (completions, inbox) = (completions.clone(), inbox.clone());
            let pending = result(lease.event.id(), token, completion);
            answers.push(tokio::spawn(async move {
                completions.record(&inbox, pending).await
            }));
        }
        // Wait (bounded) until every result is in the list, behind the held writer.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while lock(&completions.waiting).len() < 20 {
            assert!(std::time::Instant::now() < deadline, "results never queued");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        release.send(()).unwrap();
        held.await.unwrap();
        let mut recorded = Vec::new();
        for answer in answers {
            recorded.push(answer.await.unwrap().unwrap());
        }
        assert!(!recorded[0], "a lost lease changes nothing");
        assert!(recorded[1..].iter().all(|done| *done));
        // The held job and one batch.
        assert_eq!(inbox.stats().jobs - jobs_before, 2);
        let counts = inbox.status_counts().await.unwrap();
        assert_eq!(
            (counts.processed, counts.failed, counts.processing),
            (18, 1, 1)
        );
    }
}
