//! Dead letters: events whose handler failed permanently or ran out of attempts. They stay
//! until replayed (or pruned, if a dead-letter retention is set).

pub use hookgate_queue::event_log::Replay;
use rusqlite::params;

use crate::log::{LogEntry, LogQuery};
use crate::{Inbox, InboxError};

impl Inbox {
    /// Dead letters, newest first, optionally of one event type; each entry carries
    /// `dead_at` and the `last_error` that killed it. Test deliveries are included.
    ///
    /// # Errors
    /// As [`Inbox::query`].
    pub async fn dead_letters(
        &self,
        event_type: Option<&str>,
        limit: usize,
    ) -> Result<Vec<LogEntry>, InboxError> {
        self.query(LogQuery::dead_letters(event_type, limit)).await
    }

    /// Puts dead letters back in the queue (status `queued`, due now, attempts counted
    /// from zero again, the attempt history kept). Returns how many were replayed; events
    /// that are not dead are left alone.
    ///
    /// # Errors
    /// [`InboxError::Closed`] or [`InboxError::Database`].
    pub async fn replay_dead_letters(&self, which: Replay) -> Result<u64, InboxError> {
        self.write(true, move |conn, now| {
            let mut stmt = conn.prepare_cached(
                "CREATE TEMP TABLE IF NOT EXISTS replay_ids (id INTEGER PRIMARY KEY)",
            )?;
            stmt.execute([])?;
            conn.execute("DELETE FROM temp.replay_ids", [])?;
            let selected = "INSERT INTO temp.replay_ids (id) SELECT s.id FROM state s
                            JOIN events e ON e.id = s.id WHERE s.status = 'dead'";
            match &which {
                Replay::All => conn.execute(selected, [])?,
                Replay::Id(id) => {
                    conn.execute(&format!("{selected} AND s.id = ?1"), params![id.get()])?
                }
                Replay::Ids(ids) => {
                    let mut stmt = conn.prepare_cached(&format!("{selected} AND s.id = ?1"))?;
                    let mut count = 0usize;
                    for id in ids {
                        count = count.saturating_add(stmt.execute(params![id.get()])?);
                    }
                    count
                }
                Replay::EventType(event_type) => conn.execute(
                    &format!("{selected} AND e.event_type = ?1"),
                    params![event_type],
                )?,
                // A kind of replay this build does not know selects nothing.
                _ => 0,
            };
            conn.execute(
                "DELETE FROM dead_letters WHERE event_id IN (SELECT id FROM temp.replay_ids)",
                [],
            )?;
            let replayed = conn.execute(
                "UPDATE state SET status = 'queued', attempts = 0, due_at = ?1,
                     lease_token = NULL
                 WHERE id IN (SELECT id FROM temp.replay_ids)",
                params![now],
            )?;
            crate::deliveries::replay_routed(conn, now)?;
            conn.execute("DELETE FROM temp.replay_ids", [])?;
            Ok(u64::try_from(replayed).unwrap_or(u64::MAX))
        })
        .await
    }
}
