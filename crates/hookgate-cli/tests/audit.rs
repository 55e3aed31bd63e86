//! `hookgate audit` against receivers that get things wrong, and the checks a scheme makes
//! moot reported as not applicable, with the reason.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::collections::BTreeMap;

use common::{Serve, TestServer, hookgate};

fn verdicts_of(stdout: &str) -> BTreeMap<String, (String, serde_json::Value)> {
    let audit: serde_json::Value = serde_json::from_str(stdout).expect("one JSON object");
    audit["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap().to_owned(),
                (c["verdict"].as_str().unwrap().to_owned(), c.clone()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_naive_receiver_that_checks_nothing_fails_the_right_checks() {
    let naive = TestServer::start(|_, _| (200, "ok")).await;
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("audit.md");
    let run = hookgate([
        "audit",
        &naive.url("/webhooks"),
        "--secret",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "--json",
        "--report",
        report.to_str().unwrap(),
    ])
    .await;
    assert_eq!(run.code, 1, "accepting forgeries exits 1: {run:?}");
    let verdicts = verdicts_of(&run.stdout);
    let expected = [
        ("valid", "pass"),
        // 2xx to a copy is right for the sender; whether it ran twice is invisible here.
        ("replay", "unknown"),
        ("resigned", "unknown"),
        ("tampered-body", "fail"),
        ("wrong-key", "fail"),
        ("missing-signature", "fail"),
        ("malformed-signature", "fail"),
        ("other-scheme", "fail"),
        ("truncated-signature", "fail"),
        ("empty-signature", "fail"),
        ("stale-timestamp", "fail"),
        ("future-timestamp", "warn"),
        ("body-too-large", "fail"),
    ];
    for (id, verdict) in expected {
        assert_eq!(verdicts[id].0, verdict, "{id}: {}", verdicts[id].1);
    }
    assert_eq!(verdicts.len(), expected.len());
    let replay_note = verdicts["replay"].1["note"].as_str().unwrap();
    assert!(replay_note.contains("cannot tell"), "{replay_note}");
    assert!(
        replay_note.contains("on the receiver, check"),
        "{replay_note}"
    );

    // The Markdown report tells the reviewer what to check on the receiver's side.
    let markdown = std::fs::read_to_string(&report).unwrap();
    assert!(markdown.contains("**FAIL**"), "{markdown}");
    assert!(
        markdown.contains("## To check on the receiver's side"),
        "{markdown}"
    );
    assert!(
        !markdown.contains("whsec_MfKQ9r8"),
        "no secret in the report"
    );

    // The text report names each failure with expected and observed.
    let text = hookgate([
        "audit",
        &naive.url("/webhooks"),
        "--secret",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    ])
    .await;
    assert_eq!(text.code, 1);
    assert!(
        text.stdout.contains("FAIL    tampered body"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("expected: 4xx"), "{}", text.stdout);
    assert!(text.stdout.contains("observed: 200 ok"), "{}", text.stdout);
    assert!(!text.stdout.contains("whsec_MfKQ9r8"), "no secret printed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_rejects_everything_fails_the_genuine_delivery() {
    let closed = TestServer::start(|_, _| (401, "nope")).await;
    let run = hookgate([
        "audit",
        &closed.url("/webhooks"),
        "--scheme",
        "stripe",
        "--secret",
        "whsec_test",
        "--json",
    ])
    .await;
    assert_eq!(run.code, 1, "{run:?}");
    let verdicts = verdicts_of(&run.stdout);
    assert_eq!(verdicts["valid"].0, "fail");
    let note = verdicts["valid"].1["note"].as_str().unwrap();
    assert!(note.contains("--secret"), "{note}");
    assert_eq!(verdicts["replay"].0, "not_applicable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_a_scheme_makes_moot_are_not_applicable_with_the_reason() {
    // GitHub signs no timestamp and no id: the window and re-signing checks do not apply.
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(
        dir.path(),
        &["--scheme", "github", "--secret", "It's a Secret"],
    );
    let run = hookgate([
        "audit",
        &serve.url("/webhooks"),
        "--scheme",
        "github",
        "--secret",
        "It's a Secret",
        "--json",
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}\n{}", serve.stderr());
    let verdicts = verdicts_of(&run.stdout);
    for id in ["stale-timestamp", "future-timestamp", "resigned"] {
        assert_eq!(verdicts[id].0, "not_applicable", "{id}");
        let note = verdicts[id].1["note"].as_str().unwrap();
        assert!(note.contains("signs no timestamp"), "{id}: {note}");
    }
    for id in [
        "valid",
        "replay",
        "tampered-body",
        "wrong-key",
        "missing-signature",
        "body-too-large",
    ] {
        assert_eq!(verdicts[id].0, "pass", "{id}: {}", verdicts[id].1);
    }

    // Mailgun signs only a timestamp and a token, in the body: a tampered body and a
    // missing header say nothing about a receiver.
    let naive = TestServer::start(|_, _| (200, "ok")).await;
    let run = hookgate([
        "audit",
        &naive.url("/mailgun"),
        "--scheme",
        "mailgun",
        "--secret",
        "key-mailgun",
        "--json",
    ])
    .await;
    let verdicts = verdicts_of(&run.stdout);
    let tampered = verdicts["tampered-body"].1["note"].as_str().unwrap();
    assert_eq!(verdicts["tampered-body"].0, "not_applicable");
    assert!(
        tampered.contains("does not authenticate the body"),
        "{tampered}"
    );
    assert_eq!(verdicts["missing-signature"].0, "not_applicable");
    assert!(
        verdicts["missing-signature"].1["note"]
            .as_str()
            .unwrap()
            .contains("in the body"),
    );
    assert_eq!(verdicts["wrong-key"].0, "fail");
}

/// `audit --scheme azure-event-grid` against `serve`: the token is checked (wrong key and no
/// token fail a forgery), the body is not covered by it (tampering is not applicable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_knows_azure_event_grid_checks_a_token_not_the_body() {
    const TOKEN: &str = "eg-7f3c9a1b2d4e6f80_S3cret";
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(
        dir.path(),
        &["--scheme", "azure-event-grid", "--secret", TOKEN],
    );
    let run = hookgate([
        "audit",
        &serve.url("/webhooks"),
        "--scheme",
        "azure-event-grid",
        "--secret",
        TOKEN,
        "--json",
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}\n{}", serve.stderr());
    let verdicts = verdicts_of(&run.stdout);
    for id in ["valid", "wrong-key", "missing-signature", "body-too-large"] {
        assert_eq!(verdicts[id].0, "pass", "{id}: {}", verdicts[id].1);
    }
    assert_eq!(verdicts["tampered-body"].0, "not_applicable");
    assert!(!run.stdout.contains(TOKEN), "{}", run.stdout);
}
