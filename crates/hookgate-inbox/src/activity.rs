//! Activity per minute: how many events arrived, were processed and failed in each minute
//! of a time range, for a chart of the last hours.
//!
//! Each count is one range scan of an existing index (`events_received` and
//! `state_status(status, finished_at)`), so a chart over hours stays cheap whatever the
//! size of the log.

use std::time::SystemTime;

use hookgate_queue::event_log::{ActivityFrame, ActivitySeries};
pub use hookgate_queue::event_log::{MAX_ACTIVITY_RANGE, MinuteActivity};
use rusqlite::params;

use crate::{Inbox, InboxError};

const MINUTE_MS: i64 = 60_000;

impl Inbox {
    /// One [`MinuteActivity`] per minute from the minute holding `since` up to the one
    /// holding `until` (excluded), oldest first, minutes without events included.
    ///
    /// `processed` and `failed` count events by their current status and the end of their
    /// last attempt, not every attempt: an event that failed twice and was then processed
    /// counts once, as processed. Processed events pruned by the retention are gone from
    /// the counts.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use hookgate_inbox::Inbox;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let inbox = Inbox::open(dir.path().join("inbox.db"))?;
    /// let now = SystemTime::now();
    /// let minutes = inbox
    ///     .activity_per_minute(now - Duration::from_secs(3 * 3600), now)
    ///     .await?;
    /// assert!((180..=181).contains(&minutes.len()));
    /// assert!(minutes.iter().all(|m| m.received == 0));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`InboxError::Config`] when `until` is before `since` or the range is longer than
    /// [`MAX_ACTIVITY_RANGE`]; [`InboxError::Database`].
    pub async fn activity_per_minute(
        &self,
        since: SystemTime,
        until: SystemTime,
    ) -> Result<Vec<MinuteActivity>, InboxError> {
        let mut frame = ActivityFrame::new(since, until)?;
        let (start_ms, end_ms) = (frame.start_millis(), frame.end_millis());
        self.read(move |conn, _| {
            let mut add = |sql: &str, series: ActivitySeries| {
                let mut stmt = conn.prepare_cached(sql)?;
                let mut rows = stmt.query(params![start_ms, end_ms, MINUTE_MS])?;
                while let Some(row) = rows.next()? {
                    let minute: i64 = row.get(0)?;
                    let count: i64 = row.get(1)?;
                    frame.add(minute, series, u64::try_from(count).unwrap_or(0));
                }
                Ok::<_, InboxError>(())
            };
            add(
                "SELECT received_at / ?3, count(*) FROM events
                 WHERE received_at >= ?1 AND received_at < ?2 GROUP BY 1",
                ActivitySeries::Received,
            )?;
            add(
                "SELECT finished_at / ?3, count(*) FROM state
                 WHERE status = 'processed' AND finished_at >= ?1 AND finished_at < ?2
                 GROUP BY 1",
                ActivitySeries::Processed,
            )?;
            for status in ["failed", "dead"] {
                // One range of the (status, finished_at) index per status.
                let sql = format!(
                    "SELECT finished_at / ?3, count(*) FROM state
                     WHERE status = '{status}' AND finished_at >= ?1 AND finished_at < ?2
                     GROUP BY 1"
                );
                add(&sql, ActivitySeries::Failed)?;
            }
            Ok(frame.into_minutes())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )]

    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use hookgate::{Clock, SchemeId, SignRequest, Signer, VerifiedEvent, Verifier};

    use super::*;
    use crate::{HandlerResult, InboxEvent, RetryPolicy, Status, Worker};

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[derive(Debug)]
    struct ManualClock(Mutex<SystemTime>);

    impl Clock for ManualClock {
        fn now(&self) -> SystemTime {
            *self.0.lock().unwrap()
        }
    }

    /// An event received (by the verifier's clock) at `at`.
    fn event(id: &str, event_type: &str, at: SystemTime) -> VerifiedEvent {
        let unix = at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
        let delivery = Signer::new(SchemeId::StandardWebhooksV1, SECRET)
            .unwrap()
            .sign(
                &SignRequest::new(format!(r#"{{"type":"{event_type}"}}"#))
                    .id(id)
                    .timestamp(i64::try_from(unix).unwrap()),
            )
            .unwrap();
        Verifier::builder(SchemeId::StandardWebhooksV1)
            .secret(SECRET)
            .clock(hookgate::FixedClock::new(at))
            .build()
            .unwrap()
            .verify(&delivery.headers, delivery.body)
            .unwrap()
    }

    async fn wait_for(inbox: &Inbox, status: Status, count: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while inbox.status_counts().await.unwrap().get(status) != count {
            assert!(std::time::Instant::now() < deadline, "no {count} {status}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counts_each_minute_by_arrival_and_by_the_end_of_the_last_attempt() {
        let dir = tempfile::tempdir().unwrap();
        // 10:00:30 on some day, so minutes are easy to tell apart.
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 / 60 * 60 + 30);
        let clock = Arc::new(ManualClock(Mutex::new(t0)));
        let inbox = Inbox::builder(dir.path().join("inbox.db"))
            .no_scheduled_pruning()
            .clock(clock.clone())
            .open()
            .unwrap();
        inbox.enqueue(&event("msg_1", "ok", t0)).await.unwrap();
        inbox.enqueue(&event("msg_2", "ok", t0)).await.unwrap();
        let worker = Worker::builder(inbox.clone(), |event: InboxEvent| async move {
            if event.body().starts_with(br#"{"type":"ok""#) {
                HandlerResult::Ok
            } else {
                HandlerResult::fail("no")
            }
        })
        .poll_interval(Duration::from_millis(10))
        .retry(RetryPolicy::new().max_attempts(1))
        .start()
        .unwrap();
        wait_for(&inbox, Status::Processed, 2).await;
        *clock.0.lock().unwrap() = t0 + Duration::from_secs(120);
        inbox
            .enqueue(&event("msg_3", "bad", t0 + Duration::from_secs(120)))
            .await
            .unwrap();
        wait_for(&inbox, Status::Dead, 1).await;
        worker.shutdown().await;

        let minutes = inbox
            .activity_per_minute(t0 - Duration::from_secs(60), t0 + Duration::from_secs(240))
            .await
            .unwrap();
        let counts: Vec<(u64, u64, u64)> = minutes
            .iter()
            .map(|m| (m.received, m.processed, m.failed))
            .collect();
        assert_eq!(
            counts,
            [
                (0, 0, 0),
                (2, 2, 0),
                (0, 0, 0),
                (1, 0, 1),
                (0, 0, 0),
                (0, 0, 0)
            ]
        );
        assert_eq!(minutes[1].minute, t0 - Duration::from_secs(30));
    }

    fn plan(conn: &rusqlite::Connection, sql: &str) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt
            .query_map(params![0_i64, 1_i64, MINUTE_MS], |row| {
                row.get::<_, String>(3)
            })
            .unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    }

    #[test]
    fn each_count_is_an_index_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.db");
        drop(crate::schema::open_writer(&path).unwrap());
        let conn = rusqlite::Connection::open(&path).unwrap();
        let received = plan(
            &conn,
            "SELECT received_at / ?3, count(*) FROM events
             WHERE received_at >= ?1 AND received_at < ?2 GROUP BY 1",
        );
        assert!(received.contains("events_received"), "{received}");
        let processed = plan(
            &conn,
            "SELECT finished_at / ?3, count(*) FROM state
             WHERE status = 'processed' AND finished_at >= ?1 AND finished_at < ?2 GROUP BY 1",
        );
        assert!(processed.contains("state_status"), "{processed}");
    }

    #[tokio::test]
    async fn rejects_backward_and_overlong_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Inbox::builder(dir.path().join("inbox.db"))
            .no_scheduled_pruning()
            .open()
            .unwrap();
        let now = SystemTime::now();
        assert!(matches!(
            inbox
                .activity_per_minute(now, now - Duration::from_secs(60))
                .await,
            Err(InboxError::Config(_))
        ));
        assert!(matches!(
            inbox
                .activity_per_minute(now - MAX_ACTIVITY_RANGE - Duration::from_secs(60), now)
                .await,
            Err(InboxError::Config(_))
        ));
    }
}
