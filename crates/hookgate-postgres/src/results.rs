//! A worker's results written together: the results of the handlers a worker runs at once
//! go into one statement and one transaction (committed without waiting for the WAL
//! flush, as all of a worker's bookkeeping:
//! [`DEFERRED_COMMIT`](crate::schema::DEFERRED_COMMIT)), instead of a statement and a
//! commit each: a statement's fixed cost (executor start-up, opening the
//! events' eight indexes and the attempts' three, the commit, the round trip) was most of
//! a result's cost.
//!
//! A result joins a waiting list; the caller that finds no writer running starts one. The
//! writer takes everything waiting (up to [`MAX_RESULTS`]), writes it, answers each caller
//! after the commit, and goes on until the list is empty. Each answer is exact: `true`
//! where the event was still leased under the result's token, `false` where another
//! worker had taken it over; a failed statement fails every result of its batch (none is
//! recorded, and the runner handles those events again once their leases expire).
//!
//! One writer, measured against two and four (`profile_pg_worker`, a backlog of 20 000
//! events drained by 8 and by 32 handlers): 4 240–4 546 and 8 306–9 521 events/s with one,
//! 3 495–3 545 and 6 409–8 257 with two, 2 679–2 780 and 5 352–6 462 with four, against
//! 2 912–3 572 and 4 497–4 538 with a statement per result. On a database the
//! worker shares its CPU with, fewer and larger statements are worth more than a second
//! one in flight.
//!
//! In a store with destinations the results are its deliveries', and the round's
//! transaction also sums their events up once (`deliveries.rs`): with one destination,
//! 1 514–1 775 and 4 470–4 798 events/s (8 and 32 handlers) against 901–974 and
//! 1 190–1 310 with a transaction per delivery.
//!
//! The statement reads its events through the primary key in id order (`id = ANY`), as
//! renewals and give-backs do, so two of these statements touching the same events (a
//! worker's renewal and its results, or two workers around a lease taken over) lock them
//! in the same order and wait for each other rather than deadlock.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

use crate::{Error, PgStore};

/// Most results written in one statement.
pub(crate) const MAX_RESULTS: usize = 256;
/// Most statements of results written at once (see the module's documentation).
pub(crate) const MAX_WRITERS: usize = 1;

/// The results waiting to be written, and the writers at it.
#[derive(Default)]
pub(crate) struct Results {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    waiting: Vec<Pending>,
    writers: usize,
}

/// One result: the event, its lease token, and what the handler's call came to.
pub(crate) struct Outcome {
    pub(crate) id: i64,
    pub(crate) token: i64,
    /// `processed`, `failed` or `dead`.
    pub(crate) status: &'static str,
    /// For `failed`: milliseconds until the retry is due.
    pub(crate) delay_ms: i64,
    pub(crate) error: Option<String>,
}

struct Pending {
    outcome: Outcome,
    answer: oneshot::Sender<Result<bool, Error>>,
}

impl Results {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `outcome` with the results of the same moment: `Ok(false)` if the lease
    /// was taken over. A writer is started when fewer than [`MAX_WRITERS`] run.
    pub(crate) async fn record(
        self: &Arc<Self>,
        store: &PgStore,
        outcome: Outcome,
    ) -> Result<bool, Error> {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut state = self.state();
            state.waiting.push(Pending { outcome, answer });
            let start = state.writers < MAX_WRITERS;
            if start {
                state.writers = state.writers.saturating_add(1);
            }
            start
        };
        if start {
            let writer = WriterGuard {
                results: Arc::clone(self),
                done: false,
            };
            tokio::spawn(write_all(writer, store.clone()));
        }
        answered.await.unwrap_or_else(|_| {
            Err(Error::Unavailable(
                "the worker's results writer stopped before writing this result".to_owned(),
            ))
        })
    }
}

/// Writes batches until none is waiting.
async fn write_all(mut writer: WriterGuard, store: PgStore) {
    loop {
        let batch: Vec<Pending> = {
            let mut state = writer.results.state();
            if state.waiting.is_empty() {
                state.writers = state.writers.saturating_sub(1);
                writer.done = true;
                return;
            }
            let take = state.waiting.len().min(MAX_RESULTS);
            state.waiting.drain(..take).collect()
        };
        match write(&store, &batch).await {
            Ok(applied) => {
                for pending in batch {
                    let key = (pending.outcome.id, pending.outcome.token);
                    // A caller that stopped waiting has its answer dropped.
                    let _ = pending.answer.send(Ok(applied.contains(&key)));
                }
            }
            Err(err) => {
                let errors = crate::batch::share(err, batch.len());
                for (pending, err) in batch.into_iter().zip(errors) {
                    let _ = pending.answer.send(Err(err));
                }
            }
        }
    }
}

/// Writes one batch; returns the `(id, token)` of each result that applied.
async fn write(store: &PgStore, batch: &[Pending]) -> Result<HashSet<(i64, i64)>, Error> {
    let outcomes = || batch.iter().map(|pending| &pending.outcome);
    let ids: Vec<i64> = outcomes().map(|o| o.id).collect();
    let tokens: Vec<i64> = outcomes().map(|o| o.token).collect();
    let statuses: Vec<&str> = outcomes().map(|o| o.status).collect();
    let delays: Vec<i64> = outcomes().map(|o| o.delay_ms).collect();
    let errors: Vec<Option<&str>> = outcomes().map(|o| o.error.as_deref()).collect();
    let kinds: Vec<&str> = outcomes()
        .map(|o| crate::deliveries::outcome(o.status))
        .collect();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
        [&ids, &tokens, &statuses, &delays, &errors, &kinds];
    if store.has_destinations() {
        return store.finish_deliveries(&params).await;
    }
    let rows = store
        .conn()
        .await?
        .query(&store.inner.sql.finish_batch, &params)
        .await?;
    rows.iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        .collect()
}

/// Counts a writer that stopped without finishing (its runtime shut down, or it
/// panicked) as gone, so that the next result starts one again; if it was the last, the
/// results still waiting are answered with an error (their senders dropped) rather than
/// left waiting.
struct WriterGuard {
    results: Arc<Results>,
    done: bool,
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let abandoned = {
            let mut state = self.results.state();
            state.writers = state.writers.saturating_sub(1);
            if state.writers == 0 {
                std::mem::take(&mut state.waiting)
            } else {
                Vec::new()
            }
        };
        drop(abandoned);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Results recorded at the same moment are written by one statement, in one
    /// transaction (their attempts share the transaction's `now()`), and each caller
    /// learns whether its own result applied: not where the lease token is another's.
    #[tokio::test]
    async fn results_of_the_same_moment_share_a_statement_and_each_gets_its_answer() {
        let Some(postgres) = hookgate_testkit::Postgres::start() else {
            return;
        };
        let store = PgStore::connect(&postgres.url()).await.unwrap();
        let mut conn = store.conn().await.unwrap();
        // Ten leased events, event i under token 100 + i.
        conn.execute(
            "INSERT INTO hookgate.events (id, dedup_key, scheme, received_at, key_id, headers,
                 body, status, attempts, lease_token, started_at, due_at)
             SELECT i, 'k' || i, 'stripe', now(), 'k0', '[]', '\\x7b7d', 'processing', 1,
                 100 + i, now(), now() + interval '1 minute'
             FROM generate_series(1, 10) AS i",
            &[],
        )
        .await
        .unwrap();
        drop(conn);
        let results = Arc::new(Results::default());
        // Spawned before any of them runs (this test's runtime has one thread), so the
        // first one's writer finds all ten waiting.
        let calls: Vec<_> = (1..=10_i64)
            .map(|id| {
                let (results, store) = (results.clone(), store.clone());
                // Events 9 and 10 were taken over: the results carry the old tokens.
                let token = if id >= 9 { 7 } else { 100 + id };
                let (status, error) = match id {
                    1..=6 => ("processed", None),
                    7 => ("failed", Some("try again".to_owned())),
                    _ => ("dead", Some("gave up".to_owned())),
                };
                let outcome = Outcome {
                    id,
                    token,
                    status,
                    delay_ms: 60_000,
                    error,
                };
                tokio::spawn(async move { results.record(&store, outcome).await.unwrap() })
            })
            .collect();
        let mut answers = Vec::new();
        for call in calls {
            answers.push(call.await.unwrap());
        }
        assert_eq!(
            answers,
            [true, true, true, true, true, true, true, true, false, false]
        );
        let mut conn = store.conn().await.unwrap();
        let rows = conn
            .query(
                "SELECT id, status, lease_token IS NULL, due_at IS NOT NULL, last_error
                 FROM hookgate.events ORDER BY id",
                &[],
            )
            .await
            .unwrap();
        let events: Vec<(i64, String, bool, bool, Option<String>)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect();
        for (id, status, released, due, error) in &events {
            let expected = match id {
                1..=6 => ("processed", true, false, None),
                7 => ("failed", true, true, Some("try again")),
                8 => ("dead", true, false, Some("gave up")),
                // Untouched: still leased under the new token.
                _ => ("processing", false, true, None),
            };
            assert_eq!(
                (status.as_str(), *released, *due, error.as_deref()),
                expected,
                "event {id}"
            );
        }
        let history = conn
            .query(
                "SELECT count(*), count(DISTINCT finished_at),
                        count(*) FILTER (WHERE outcome = 'retry'),
                        count(*) FILTER (WHERE outcome = 'dead')
                 FROM hookgate.attempts",
                &[],
            )
            .await
            .unwrap();
        let counts: (i64, i64, i64, i64) = (
            history[0].get(0),
            history[0].get(1),
            history[0].get(2),
            history[0].get(3),
        );
        assert_eq!(
            counts,
            (8, 1, 1, 1),
            "attempts, their transactions, retries, dead"
        );
    }
}
