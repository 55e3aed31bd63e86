//! Pages of the event log by arrival time, for time windows.
//!
//! [`Inbox::query`] pages by id, which is what a window-less list wants. Within a time
//! window (`received_after` / `received_before`) that order has SQLite read the whole
//! window through the `events_received` index and sort it by id before it returns the
//! first page (over a second for a window of 800 k events). Ordered by
//! `(received_at, id)`, the order that index already holds, a page reads only its own
//! rows, and the next page starts after an [`ArrivalCursor`].

use hookgate_queue::event_log::ArrivalCursor;
use rusqlite::params_from_iter;

use crate::log::{LogEntry, LogQuery, entry_from_row, to_sql};
use crate::time::to_millis;
use crate::{Inbox, InboxError};

/// How a log query orders its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    /// Newest id first (with [`LogQuery::before_id`] paging).
    Id,
    /// Newest arrival first, then newest id; after the cursor `(received_at ms, id)`.
    Arrival(Option<(i64, i64)>),
}

impl Inbox {
    /// The events matching `query`, newest arrival first (ties by newest id), starting after
    /// `after`. Pass [`ArrivalCursor::after`] of a page's last entry to get the next page.
    /// Meant for time windows, where it reads only the page's rows of the arrival index.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use hookgate_inbox::{ArrivalCursor, Inbox, LogQuery};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let inbox = Inbox::open(dir.path().join("inbox.db"))?;
    /// let window = LogQuery::new()
    ///     .received_after(SystemTime::now() - Duration::from_secs(86_400))
    ///     .received_before(SystemTime::now() - Duration::from_secs(3_600))
    ///     .limit(50);
    /// let page = inbox.query_by_arrival(window.clone(), None).await?;
    /// if let Some(last) = page.last() {
    ///     let next = inbox.query_by_arrival(window, Some(ArrivalCursor::after(last))).await?;
    ///     # let _ = next;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Inbox::query`].
    pub async fn query_by_arrival(
        &self,
        query: LogQuery,
        after: Option<ArrivalCursor>,
    ) -> Result<Vec<LogEntry>, InboxError> {
        let cursor = after.map(|c| (to_millis(c.received_at), c.id.get()));
        let (sql, values) = to_sql(&query, Order::Arrival(cursor))?;
        self.read(move |conn, _| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(params_from_iter(values), entry_from_row)?;
            let mut entries = Vec::new();
            for row in rows {
                entries.push(row??);
            }
            Ok(entries)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use hookgate::{FixedClock, SchemeId, SignRequest, Signer, Verifier};

    use super::*;

    #[test]
    fn a_window_page_reads_the_arrival_index_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.db");
        drop(crate::schema::open_writer(&path).unwrap());
        let conn = rusqlite::Connection::open(&path).unwrap();
        let now = SystemTime::now();
        let query = LogQuery::new()
            .received_after(now - Duration::from_secs(7200))
            .received_before(now - Duration::from_secs(3600))
            .limit(50);
        for cursor in [None, Some((1_i64, 2_i64))] {
            let (sql, values) = to_sql(&query, Order::Arrival(cursor)).unwrap();
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> = stmt
                .query_map(params_from_iter(values), |row| row.get(3))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let plan = plan.join("; ");
            assert!(plan.contains("events_received"), "{plan}");
            assert!(!plan.contains("TEMP B-TREE"), "no sort: {plan}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pages_cover_the_window_once_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::builder(dir.path().join("inbox.db"))
            .no_scheduled_pruning()
            .open()
            .unwrap();
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        // Arrivals out of id order: event n arrives at t0 + (n * 7 mod 10) s.
        for n in 0..10_u64 {
            let at = t0 + Duration::from_secs(n * 7 % 10);
            let delivery = Signer::new(SchemeId::StandardWebhooksV1, secret)
                .unwrap()
                .sign(
                    &SignRequest::new("{}")
                        .id(format!("msg_{n}"))
                        .timestamp(1_700_000_000 + i64::try_from(n * 7 % 10).unwrap()),
                )
                .unwrap();
            let event = Verifier::builder(SchemeId::StandardWebhooksV1)
                .secret(secret)
                .clock(FixedClock::new(at))
                .build()
                .unwrap()
                .verify(&delivery.headers, delivery.body)
                .unwrap();
            inbox.enqueue(&event).await.unwrap();
        }
        // The window [t0 + 2 s, t0 + 9 s): seven events, three per page.
        let window = LogQuery::new()
            .received_after(t0 + Duration::from_secs(2))
            .received_before(t0 + Duration::from_secs(9))
            .limit(3);
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = inbox.query_by_arrival(window.clone(), after).await.unwrap();
            seen.extend(page.iter().map(|e| e.received_at));
            match page.last() {
                Some(last) if page.len() == 3 => after = Some(ArrivalCursor::after(last)),
                _ => break,
            }
        }
        let expected: Vec<SystemTime> = (2..9).rev().map(|s| t0 + Duration::from_secs(s)).collect();
        assert_eq!(seen, expected);
        let cursor = ArrivalCursor::after(&inbox.query(LogQuery::new()).await.unwrap()[0]);
        assert_eq!(ArrivalCursor::parse(&cursor.to_text()), Some(cursor));
        assert_eq!(ArrivalCursor::parse("x.1"), None);
    }
}
