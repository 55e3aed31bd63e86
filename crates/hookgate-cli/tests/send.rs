//! `hookgate send` against in-test endpoints: provider retry schedules compressed with
//! --time-scale, every attempt re-signed with the same id; and the inbox's filters.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::time::Duration;

use common::{Serve, TestServer, eventually, hookgate, inbox_list};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_2xx_is_retried_on_the_prefinery_schedule_compressed() {
    let endpoint = TestServer::start(|n, _| if n < 3 { (500, "down") } else { (200, "ok") }).await;
    let run = hookgate([
        "send",
        &endpoint.url("/hooks"),
        "--secret",
        SECRET,
        "--id",
        "msg_retry",
        "--retry-schedule",
        "prefinery",
        "--time-scale",
        "0.001",
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[0].starts_with("msg_retry attempt 1: 500 down"),
        "{}",
        run.stdout
    );
    // Prefinery waits 5 s + N⁴ after the N-th failure: 6 s, 21 s, 86 s, scaled by 0.001.
    assert!(lines[0].ends_with("retry in 6ms"), "{}", run.stdout);
    assert!(lines[1].ends_with("retry in 21ms"), "{}", run.stdout);
    assert!(lines[2].ends_with("retry in 86ms"), "{}", run.stdout);
    assert!(
        lines[3].starts_with("msg_retry attempt 4: 200 ok"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("1 delivered (2xx), 0 failed; 4 attempts"),
        "{}",
        run.stdout
    );
    let seen = endpoint.seen();
    assert_eq!(seen.len(), 4);
    for request in &seen {
        assert_eq!(
            request.headers["webhook-id"], "msg_retry",
            "same id each time"
        );
        assert!(request.headers.contains_key("webhook-signature"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_never_gets_a_2xx_exits_1() {
    let endpoint = TestServer::start(|_, _| (500, "down")).await;
    let run = hookgate([
        "send",
        &endpoint.url("/hooks"),
        "--secret",
        SECRET,
        "--count",
        "2",
        "--concurrency",
        "2",
        "--retry-schedule",
        "svix",
        "--time-scale",
        "0.00005",
    ])
    .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains("giving up"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("0 delivered (2xx), 2 failed; 16 attempts"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains(SECRET) && !run.stderr.contains(SECRET));

    let refused = hookgate(["send", "http://127.0.0.1:9/x", "--secret", SECRET]).await;
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(refused.stdout.contains("error:"), "{}", refused.stdout);

    let usage = hookgate(["send", "not-a-url", "--secret", SECRET]).await;
    assert_eq!(usage.code, 2, "{usage:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_filters_by_type_status_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &["--secret", SECRET]);
    for (event_type, count) in [("invoice.paid", "2"), ("user.created", "1")] {
        let run = hookgate([
            "send",
            &serve.url("/webhooks"),
            "--secret",
            SECRET,
            "--event-type",
            event_type,
            "--count",
            count,
        ])
        .await;
        assert_eq!(run.code, 0, "{run:?}");
    }
    eventually(
        Duration::from_secs(180),
        "three processed events",
        || async {
            (inbox_list(dir.path(), &["--status", "processed"])
                .await
                .len()
                == 3)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        inbox_list(dir.path(), &["--type", "invoice.paid"])
            .await
            .len(),
        2
    );
    assert_eq!(inbox_list(dir.path(), &["--since", "1h"]).await.len(), 3);
    assert!(
        inbox_list(dir.path(), &["--since", "2999-01-01T00:00:00Z"])
            .await
            .is_empty()
    );
    assert!(
        inbox_list(dir.path(), &["--status", "dead"])
            .await
            .is_empty()
    );

    let dir_arg = dir.path().to_str().unwrap();
    let table = hookgate(["inbox", "--data-dir", dir_arg, "list", "--limit", "2"]).await;
    assert_eq!(table.code, 0, "{table:?}");
    assert!(
        table.stdout.starts_with("      ID  STATUS"),
        "{}",
        table.stdout
    );
    assert_eq!(table.stdout.lines().count(), 3, "a header and two rows");
    assert!(table.stderr.contains("--limit N or --all"), "{table:?}");

    let missing = hookgate(["inbox", "--data-dir", dir_arg, "show", "999"]).await;
    assert_eq!(missing.code, 2, "{missing:?}");
    let empty = tempfile::tempdir().unwrap();
    let none = hookgate([
        "inbox",
        "--data-dir",
        empty.path().to_str().unwrap(),
        "stats",
    ])
    .await;
    assert_eq!(none.code, 2, "{none:?}");
    assert!(none.stderr.contains("hookgate serve"), "{none:?}");
}

/// `send --scheme azure-event-grid` carries the token where `serve` looks for it (its
/// `Authorization: Bearer` delivery property), and the event is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_delivers_an_azure_event_grid_event_to_serve() {
    const TOKEN: &str = "eg-7f3c9a1b2d4e6f80_S3cret";
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(
        dir.path(),
        &["--scheme", "azure-event-grid", "--secret", TOKEN],
    );
    let run = hookgate([
        "send",
        &serve.url("/webhooks"),
        "--scheme",
        "azure-event-grid",
        "--secret",
        TOKEN,
        "--id",
        "msg_eg",
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}\n{}", serve.stderr());
    assert!(run.stdout.contains("1 delivered (2xx)"), "{}", run.stdout);
    let events = eventually(Duration::from_secs(30), "the event stored", || async {
        let events = inbox_list(dir.path(), &[]).await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(!format!("{events:?}").contains(TOKEN), "{events:?}");
    let run = hookgate([
        "send",
        &serve.url("/webhooks"),
        "--scheme",
        "azure-event-grid",
        "--secret",
        "not-the-token",
        "--id",
        "msg_eg_forged",
    ])
    .await;
    assert!(run.stdout.contains("401 token_mismatch"), "{run:?}");
}
