//! `hookgate inbox` reads either store through the one event log: the same selected request
//! headers in `show`, and the handshakes the receiver answered in `handshakes`, for the
//! SQLite inbox of a data directory and for the PostgreSQL store of `serve --store`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::{Run, Serve, eventually, hookgate};
use serde_json::Value;

const GITHUB_SECRET: &str = "it's-a-secret-to-everybody";
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const LIMIT: Duration = Duration::from_secs(60);

/// `hookgate inbox` over the data directory `dir`, or over the store at `store`.
async fn inbox(dir: &Path, store: Option<&str>, args: &[&str]) -> Run {
    let dir = dir.display().to_string();
    let mut all = match store {
        Some(url) => vec!["inbox", "--store", url],
        None => vec!["inbox", "--data-dir", &dir],
    };
    all.extend_from_slice(args);
    hookgate(&all).await
}

async fn check(store: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let (github_dir, slack_dir) = (dir.path().join("github"), dir.path().join("slack"));
    let with_store = |args: &[&'static str]| -> Vec<String> {
        let mut args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        if let Some(url) = store {
            args.extend(["--store".to_owned(), url.to_owned()]);
        }
        args
    };
    let github_args = with_store(&["--scheme", "github", "--secret", GITHUB_SECRET]);
    let github_args: Vec<&str> = github_args.iter().map(String::as_str).collect();
    let github = Serve::start(&github_dir, &github_args);
    let slack_args = with_store(&["--scheme", "slack", "--secret", SLACK_SECRET]);
    let slack_args: Vec<&str> = slack_args.iter().map(String::as_str).collect();
    let slack = Serve::start(&slack_dir, &slack_args);

    // A GitHub delivery: its X-GitHub-* headers are kept, its signature never.
    let sent = hookgate([
        "send",
        &github.url("/webhooks"),
        "--scheme",
        "github",
        "--secret",
        GITHUB_SECRET,
        "--event-type",
        "push",
        "--id",
        "d-1",
        "-q",
    ])
    .await;
    assert_eq!(sent.code, 0, "{sent:?}");
    let event: Value = eventually(LIMIT, "the delivery processed", || async {
        let listed = inbox(&github_dir, store, &["list", "--json"]).await;
        let first: Value = serde_json::from_str(listed.stdout.lines().next()?).ok()?;
        (first["status"] == "processed").then_some(first)
    })
    .await;
    let id = event["id"].as_i64().unwrap().to_string();
    let shown = inbox(&github_dir, store, &["show", &id, "--json"]).await;
    assert_eq!(shown.code, 0, "{shown:?}");
    let shown: Value = serde_json::from_str(&shown.stdout).unwrap();
    let headers = shown["headers"].as_array().unwrap();
    assert!(
        headers.contains(&serde_json::json!(["X-GitHub-Event", "push"])),
        "{shown}"
    );
    assert!(
        headers.contains(&serde_json::json!(["X-GitHub-Delivery", "d-1"])),
        "{shown}"
    );
    assert!(
        !shown.to_string().contains("sha256="),
        "no signature: {shown}"
    );

    // A Slack URL check: answered, recorded as a handshake, never an event.
    let check = dir.path().join("check.json");
    std::fs::write(
        &check,
        r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aB","type":"url_verification"}"#,
    )
    .unwrap();
    let sent = hookgate([
        "send",
        &slack.url("/webhooks"),
        "--scheme",
        "slack",
        "--secret",
        SLACK_SECRET,
        "--body-file",
        check.to_str().unwrap(),
        "-q",
    ])
    .await;
    assert_eq!(sent.code, 0, "{sent:?}");
    let listed = inbox(&slack_dir, store, &["handshakes", "--json"]).await;
    assert_eq!(listed.code, 0, "{listed:?}");
    let handshakes: Vec<Value> = listed
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(handshakes.len(), 1, "{handshakes:?}");
    assert_eq!(handshakes[0]["scheme"], "slack");
    assert_eq!(handshakes[0]["kind"], "slack_url_verification");
    assert_eq!(handshakes[0]["key_id"], "0");
    assert!(!listed.stdout.contains("3eZbrw1aB"), "{listed:?}");
    let table = inbox(&slack_dir, store, &["handshakes"]).await;
    assert!(table.stdout.starts_with("RECEIVED"), "{table:?}");
    assert!(table.stdout.contains("slack_url_verification"), "{table:?}");
    let stats = inbox(&slack_dir, store, &["stats", "--json"]).await;
    let stats: Value = serde_json::from_str(&stats.stdout).unwrap();
    // Over PostgreSQL both receivers share the store: the one event is the GitHub one.
    let expected = if store.is_some() { 1 } else { 0 };
    assert_eq!(stats["total"], expected, "{stats}");
    drop((github, slack));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_shows_headers_and_lists_handshakes() {
    check(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_shows_headers_and_lists_handshakes() {
    let Some(postgres) = hookgate_testkit::Postgres::start() else {
        return;
    };
    check(Some(&postgres.url())).await;
}
