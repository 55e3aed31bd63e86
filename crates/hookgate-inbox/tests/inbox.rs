//! The inbox as a store: enqueue, dedup, the event log, pruning, the ordering helper.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{ManualClock, event};
use hookgate_inbox::{Advance, Enqueued, Inbox, LogQuery, Status};

fn open(dir: &tempfile::TempDir, clock: &Arc<ManualClock>) -> Inbox {
    Inbox::builder(dir.path().join("inbox.db"))
        .clock(clock.clone())
        .no_scheduled_pruning()
        .open()
        .unwrap()
}

#[tokio::test]
async fn stores_an_event_once_with_everything_the_log_needs() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new());
    let inbox = open(&dir, &clock);
    let verified = event("msg_1", "invoice.paid");

    let Enqueued::Stored(id) = inbox.enqueue(&verified).await.unwrap() else {
        panic!("first copy must be stored")
    };
    assert_eq!(
        inbox.enqueue(&verified).await.unwrap(),
        Enqueued::Duplicate(Some(id))
    );

    let entry = inbox.entry(id).await.unwrap().unwrap();
    assert_eq!(entry.status, Status::Received);
    assert_eq!(entry.scheme, "standard-webhooks-v1");
    assert_eq!(entry.delivery_id.as_deref(), Some("msg_1"));
    assert_eq!(entry.event_type.as_deref(), Some("invoice.paid"));
    assert_eq!(entry.dedup_key, verified.dedup_key());
    assert_eq!(entry.signed_at, verified.timestamp());
    assert_eq!(entry.attempts, 0);
    assert_eq!(entry.body_len, verified.body().len() as u64);
    assert!(!entry.is_test);

    let stored = inbox.event(id).await.unwrap().unwrap();
    assert_eq!(stored.body(), verified.body());
    assert_eq!(stored.dedup_key(), verified.dedup_key());
    assert_eq!(stored.headers().len(), verified.headers().len());

    let stats = inbox.stats();
    assert_eq!((stats.events_stored, stats.duplicates), (1, 1));
    assert_eq!(inbox.status_counts().await.unwrap().received, 1);
}

#[tokio::test]
async fn survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new());
    let verified = event("msg_1", "invoice.paid");
    {
        let inbox = open(&dir, &clock);
        inbox.enqueue(&verified).await.unwrap();
    }
    let inbox = open(&dir, &clock);
    assert!(matches!(
        inbox.enqueue(&verified).await.unwrap(),
        Enqueued::Duplicate(Some(_))
    ));
    assert_eq!(inbox.status_counts().await.unwrap().total(), 1);
}

#[tokio::test]
async fn many_concurrent_enqueues_are_all_stored() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new());
    let inbox = open(&dir, &clock);
    let mut tasks = Vec::new();
    for n in 0..200 {
        let inbox = inbox.clone();
        let verified = event(&format!("msg_{n}"), "a");
        tasks.push(tokio::spawn(async move { inbox.enqueue(&verified).await }));
    }
    for task in tasks {
        assert!(matches!(task.await.unwrap().unwrap(), Enqueued::Stored(_)));
    }
    let stats = inbox.stats();
    assert_eq!(stats.events_stored, 200);
    assert!(stats.log_syncs >= 1 && stats.log_syncs <= 200);
    assert_eq!(stats.log_records, 200);
    assert_eq!(inbox.status_counts().await.unwrap().received, 200);
}

#[tokio::test]
async fn the_log_filters_by_status_type_delivery_time_and_test_flag() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new());
    let inbox = Inbox::builder(dir.path().join("inbox.db"))
        .clock(clock.clone())
        .no_scheduled_pruning()
        .test_filter(|event| event.event_type() == Some("test.ping"))
        .open()
        .unwrap();
    let first = event("msg_a", "invoice.paid");
    inbox.enqueue(&first).await.unwrap();
    inbox
        .enqueue(&event("msg_b", "invoice.failed"))
        .await
        .unwrap();
    inbox.enqueue(&event("msg_c", "test.ping")).await.unwrap();

    let all = inbox.query(LogQuery::new()).await.unwrap();
    let ids: Vec<_> = all
        .iter()
        .filter_map(|e| e.delivery_id.as_deref())
        .collect();
    assert_eq!(
        ids,
        ["msg_b", "msg_a"],
        "newest first, test delivery left out"
    );

    let with_test = inbox
        .query(LogQuery::new().include_test(true))
        .await
        .unwrap();
    assert_eq!(with_test.len(), 3);
    let only_test = inbox.query(LogQuery::new().only_test()).await.unwrap();
    assert_eq!(only_test.len(), 1);
    assert!(only_test[0].is_test);

    let by_type = inbox
        .query(LogQuery::new().event_type("invoice.failed"))
        .await
        .unwrap();
    assert_eq!(by_type.len(), 1);
    assert_eq!(by_type[0].delivery_id.as_deref(), Some("msg_b"));

    let by_delivery = inbox
        .query(LogQuery::new().delivery_id("msg_a"))
        .await
        .unwrap();
    assert_eq!(by_delivery.len(), 1);

    let received = inbox
        .query(
            LogQuery::new()
                .status(Status::Received)
                .status(Status::Dead),
        )
        .await
        .unwrap();
    assert_eq!(received.len(), 2);
    assert!(
        inbox
            .query(LogQuery::new().status(Status::Processed))
            .await
            .unwrap()
            .is_empty()
    );

    let at = first.received_at();
    let later = inbox
        .query(LogQuery::new().received_after(at + Duration::from_secs(3600)))
        .await
        .unwrap();
    assert!(later.is_empty());
    let earlier = inbox
        .query(LogQuery::new().received_before(at + Duration::from_secs(3600)))
        .await
        .unwrap();
    assert_eq!(earlier.len(), 2);

    let page = inbox.query(LogQuery::new().limit(1)).await.unwrap();
    assert_eq!(page.len(), 1);
    let next = inbox
        .query(LogQuery::new().limit(1).before_id(page[0].id))
        .await
        .unwrap();
    assert_eq!(next[0].delivery_id.as_deref(), Some("msg_a"));

    // Flags can be changed afterwards.
    assert!(inbox.set_test(page[0].id, true).await.unwrap());
    assert_eq!(inbox.query(LogQuery::new()).await.unwrap().len(), 1);
    assert!(inbox.query(LogQuery::new().limit(0)).await.is_err());
}

#[tokio::test]
async fn pruning_removes_expired_dedup_entries_and_old_processed_events() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new());
    let inbox = Inbox::builder(dir.path().join("inbox.db"))
        .clock(clock.clone())
        .no_scheduled_pruning()
        .committed_ttl(Duration::from_secs(60))
        .retention(Duration::from_secs(600))
        .open()
        .unwrap();
    let verified = event("msg_1", "a");
    inbox.enqueue(&verified).await.unwrap();

    // Nothing is old enough yet.
    assert_eq!(inbox.prune().await.unwrap().dedup_entries, 0);

    // The dedup entry expires after its TTL: the delivery counts as new again (the
    // unprocessed event itself is never pruned).
    clock.advance(Duration::from_secs(61));
    let report = inbox.prune().await.unwrap();
    assert_eq!((report.dedup_entries, report.processed_events), (1, 0));
    assert!(matches!(
        inbox.enqueue(&verified).await.unwrap(),
        Enqueued::Stored(_)
    ));
    assert_eq!(inbox.status_counts().await.unwrap().received, 2);
}

#[tokio::test]
async fn ordering_helper_keeps_the_highest_version() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new());
    let inbox = open(&dir, &clock);
    let versions = inbox.versions();

    assert_eq!(versions.current("cus_1").await.unwrap(), None);
    assert!(!versions.is_stale("cus_1", 1).await.unwrap());
    assert_eq!(
        versions.advance("cus_1", 5).await.unwrap(),
        Advance::Advanced { previous: None }
    );
    assert_eq!(
        versions.advance("cus_1", 9).await.unwrap(),
        Advance::Advanced { previous: Some(5) }
    );
    // Out of order: older and equal versions are stale and change nothing.
    assert_eq!(
        versions.advance("cus_1", 7).await.unwrap(),
        Advance::Stale { current: 9 }
    );
    assert!(versions.is_stale("cus_1", 9).await.unwrap());
    assert!(!versions.is_stale("cus_1", 10).await.unwrap());
    assert_eq!(versions.current("cus_2").await.unwrap(), None);

    // Concurrent advances in any order end at the maximum.
    let mut tasks = Vec::new();
    for version in [3, 40, 12, 25, 39, 1] {
        let versions = versions.clone();
        tasks.push(tokio::spawn(async move {
            versions.advance("order_1", version).await.unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(versions.current("order_1").await.unwrap(), Some(40));

    let at = std::time::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
    assert!(
        versions
            .advance_to_time("cus_3", at)
            .await
            .unwrap()
            .is_advanced()
    );
    assert_eq!(
        versions.current("cus_3").await.unwrap(),
        Some(1_700_000_000_000)
    );
    assert!(versions.forget("cus_1").await.unwrap());
    assert_eq!(versions.current("cus_1").await.unwrap(), None);
}
