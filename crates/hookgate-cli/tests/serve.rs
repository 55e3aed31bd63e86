//! `hookgate serve` as a process on a free port, driven by `hookgate send`, `audit` and
//! `inbox`: the whole receiving path, durability to processing, as a user runs it.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Serve, TestServer, eventually, get, hookgate, inbox_list};

/// Generous: a loaded 2-core machine may run several test binaries at once.
const PATIENCE: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_passes_every_check_against_serve_with_a_generated_secret() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &[]);
    assert!(
        serve
            .stderr()
            .contains("generated this standard-webhooks-v1 secret")
    );
    let secret = serve.generated_secret();
    assert!(secret.starts_with("whsec_"));
    assert!(
        serve.stderr().contains(&secret),
        "the first run prints its secret"
    );

    let report = dir.path().join("audit.md");
    let run = hookgate([
        "audit",
        &serve.url("/webhooks"),
        "--secret",
        &secret,
        "--json",
        "--report",
        report.to_str().unwrap(),
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}\n{}", serve.stderr());
    let audit: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(audit["result"], "PASS");
    for check in audit["checks"].as_array().unwrap() {
        assert_eq!(check["verdict"], "pass", "{check}");
    }
    assert_eq!(audit["summary"]["passed"], 13);
    let markdown = std::fs::read_to_string(&report).unwrap();
    assert!(markdown.contains("# Webhook receiver audit"), "{markdown}");
    assert!(markdown.contains("**PASS**"));

    // Only the genuine delivery was stored, once, and printed as one JSON line.
    let events = eventually(PATIENCE, "the audit's delivery to be processed", || async {
        let events = inbox_list(dir.path(), &["--status", "processed"]).await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event_type"], "hookgate.audit");
    let printed = eventually(PATIENCE, "the event on stdout", || async {
        let out = serve.stdout();
        (!out.is_empty()).then_some(out)
    })
    .await;
    let line: serde_json::Value = serde_json::from_str(printed.lines().next().unwrap()).unwrap();
    assert_eq!(line["body"]["data"]["audit"], "valid");
    assert_eq!(line["dedup_key"], events[0]["dedup_key"]);

    // A second start reuses the stored secret and does not print it again.
    drop(serve);
    let again = Serve::start(dir.path(), &[]);
    assert!(again.stderr().contains("using the secret kept in"));
    assert!(!again.stderr().contains(&secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_deliveries_at_concurrency_32_are_all_processed() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(
        dir.path(),
        &["--secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    );
    let run = hookgate([
        "send",
        &serve.url("/webhooks"),
        "--secret",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "--count",
        "1000",
        "--concurrency",
        "32",
        "--retry-schedule",
        "exponential",
        "--time-scale",
        "0.1",
        "--quiet",
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}\n{}", serve.stderr());
    assert!(
        run.stdout.contains("1000 delivered (2xx), 0 failed"),
        "{}",
        run.stdout
    );
    let events = eventually(PATIENCE, "1000 processed events", || async {
        let events = inbox_list(dir.path(), &["--status", "processed"]).await;
        (events.len() >= 1000).then_some(events)
    })
    .await;
    assert_eq!(events.len(), 1000);
    let mut keys: Vec<&str> = events
        .iter()
        .map(|e| e["dedup_key"].as_str().unwrap())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 1000, "each delivery stored once");
    let stats = hookgate([
        "inbox",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "stats",
        "--json",
    ])
    .await;
    let stats: serde_json::Value = serde_json::from_str(&stats.stdout).unwrap();
    assert_eq!(stats["processed"], 1000);
    assert_eq!(stats["pending"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_retries_until_the_application_accepts() {
    // The application fails its first two requests, then accepts.
    let app = TestServer::start(|n, _| if n < 2 { (503, "busy") } else { (200, "ok") }).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let serve = Serve::start(
        dir.path(),
        &[
            "--secret",
            secret,
            "--forward",
            &app.url("/events"),
            "--retry-base",
            "20ms",
            "--max-attempts",
            "5",
        ],
    );
    let body = dir.path().join("body.json");
    std::fs::write(&body, br#"{"type":"invoice.paid","amount":42}"#).unwrap();
    let run = hookgate([
        "send",
        &serve.url("/webhooks"),
        "--secret",
        secret,
        "--id",
        "msg_forward_1",
        "--body-file",
        body.to_str().unwrap(),
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}");

    let events = eventually(PATIENCE, "the event to be processed", || async {
        let events = inbox_list(dir.path(), &["--status", "processed"]).await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events[0]["attempts"], 3, "{events:?}");
    let seen = app.seen();
    assert_eq!(seen.len(), 3);
    for (n, request) in seen.iter().enumerate() {
        assert_eq!(request.path, "/events");
        assert_eq!(
            request.headers["idempotency-key"], "standard-webhooks-v1:id:msg_forward_1",
            "the same key on every attempt"
        );
        assert_eq!(
            request.headers["hookgate-attempt"],
            (n + 1).to_string().as_str()
        );
        let envelope: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(envelope["body"]["amount"], 42, "the original body inside");
        assert_eq!(envelope["delivery_id"], "msg_forward_1");
        assert_eq!(envelope["event_type"], "invoice.paid");
    }
    // The event log kept the failed attempts.
    let id = events[0]["id"].to_string();
    let show = hookgate([
        "inbox",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "show",
        &id,
    ])
    .await;
    assert_eq!(show.code, 0, "{show:?}");
    assert!(show.stdout.contains("forward: 503 busy"), "{}", show.stdout);
    assert!(
        show.stdout.contains("attempt 3: processed"),
        "{}",
        show.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_always_failing_target_ends_in_dead_letters_that_replay_reruns() {
    let healthy = Arc::new(AtomicBool::new(false));
    let app = {
        let healthy = Arc::clone(&healthy);
        TestServer::start(move |_, _| {
            if healthy.load(Ordering::SeqCst) {
                (200, "ok")
            } else {
                (500, "down")
            }
        })
        .await
    };
    let dir = tempfile::tempdir().unwrap();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let serve = Serve::start(
        dir.path(),
        &[
            "--secret",
            secret,
            "--forward",
            &app.url("/events"),
            "--retry-base",
            "10ms",
            "--max-attempts",
            "2",
        ],
    );
    let run = hookgate([
        "send",
        &serve.url("/webhooks"),
        "--secret",
        secret,
        "--count",
        "2",
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    let dead = eventually(PATIENCE, "two dead letters", || async {
        let dead = inbox_list(dir.path(), &["--status", "dead"]).await;
        (dead.len() == 2).then_some(dead)
    })
    .await;
    for event in &dead {
        assert_eq!(event["attempts"], 2);
        assert!(
            event["last_error"]
                .as_str()
                .unwrap()
                .contains("forward: 500 down"),
            "{event}"
        );
    }
    let attempts_before = app.seen().len();
    assert_eq!(attempts_before, 4);
    // The worker's lines reach stderr (HOOKGATE_LOG's default, info): each retry and each
    // dead letter with its reason, and never the secret.
    eventually(PATIENCE, "the dead letters in serve's log", || async {
        let log = serve.stderr();
        (log.matches("event moved to the dead letters").count() == 2).then_some(())
    })
    .await;
    let log = serve.stderr();
    assert!(log.contains("event failed, retry scheduled"), "{log}");
    assert!(log.contains("forward: 500 down"), "{log}");
    let forged = hookgate([
        "send",
        &serve.url("/webhooks"),
        "--secret",
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ])
    .await;
    assert_ne!(forged.code, 0, "{forged:?}");
    eventually(PATIENCE, "the rejection in serve's log", || async {
        serve
            .stderr()
            .contains(r#"webhook rejected outcome="signature_mismatch""#)
            .then_some(())
    })
    .await;
    let key = secret.trim_start_matches("whsec_");
    assert!(!serve.stderr().contains(key), "the secret is never logged");

    healthy.store(true, Ordering::SeqCst);
    let replay = hookgate([
        "inbox",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "replay",
        "--dead",
    ])
    .await;
    assert_eq!(replay.code, 0, "{replay:?}");
    assert!(replay.stdout.contains("replayed 2"), "{}", replay.stdout);
    eventually(PATIENCE, "the replayed events to be processed", || async {
        let processed = inbox_list(dir.path(), &["--status", "processed"]).await;
        (processed.len() == 2).then_some(())
    })
    .await;
    assert_eq!(app.seen().len(), attempts_before + 2);
    assert!(
        inbox_list(dir.path(), &["--status", "dead"])
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_certificate_generated_in_the_test() {
    let dir = tempfile::tempdir().unwrap();
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let data = dir.path().join("data");
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let serve = Serve::start(
        &data,
        &[
            "--secret",
            secret,
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(
        serve.stderr().contains("POST https://"),
        "{}",
        serve.stderr()
    );
    let url = format!("https://127.0.0.1:{}/webhooks", serve.addr.port());

    // A sender that checks the certificate (as Prefinery does) and trusts it succeeds.
    let run = hookgate([
        "send",
        &url,
        "--secret",
        secret,
        "--ca-cert",
        cert.to_str().unwrap(),
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("200 accepted"), "{}", run.stdout);

    // Without trusting it, the handshake fails: nothing is accepted over plain trust.
    let untrusted = hookgate(["send", &url, "--secret", secret]).await;
    assert_eq!(untrusted.code, 1, "{untrusted:?}");
    assert!(untrusted.stdout.contains("error"), "{}", untrusted.stdout);

    // Plain HTTP on the TLS port is not served.
    let plain = hookgate([
        "send",
        &serve.url("/webhooks"),
        "--secret",
        secret,
        "--timeout",
        "5s",
    ])
    .await;
    assert_eq!(plain.code, 1, "{plain:?}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metrics_and_a_graceful_exit_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let mut serve = Serve::start(dir.path(), &["--secret", secret]);
    assert_eq!(get(serve.addr, "/healthz").await, (200, "ok\n".to_owned()));
    assert_eq!(get(serve.addr, "/nope").await.0, 404);
    assert_eq!(get(serve.addr, "/webhooks").await.0, 405);

    let run = hookgate(["send", &serve.url("/webhooks"), "--secret", secret]).await;
    assert_eq!(run.code, 0, "{run:?}");
    let forged = hookgate([
        "send",
        &serve.url("/webhooks"),
        "--secret",
        "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    ])
    .await;
    assert_eq!(forged.code, 1, "{forged:?}");
    assert!(
        forged.stdout.contains("401 signature_mismatch"),
        "{}",
        forged.stdout
    );

    let (status, metrics) = get(serve.addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("hookgate_enqueued_total{scheme=\"standard-webhooks-v1\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hookgate_rejected_total{scheme=\"standard-webhooks-v1\",reason=\"signature_mismatch\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hookgate_queue_depth{endpoint=\"default\"}"),
        "{metrics}"
    );
    assert!(!metrics.contains("msg_"), "event ids are never labels");

    let kill = std::process::Command::new("kill")
        .args(["-TERM", &serve.pid().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    assert_eq!(
        serve.wait_exit(Duration::from_secs(60)),
        Some(0),
        "{}",
        serve.stderr()
    );
    assert!(
        serve.stderr().contains("shutting down"),
        "{}",
        serve.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_declares_several_endpoints_each_with_its_own_inbox() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("exec.out");
    let config = dir.path().join("hookgate.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            [[endpoint]]
            name = "github"
            path = "/hooks/github"
            scheme = "github"
            exec = "cat >> '{}'"
            keys = [{{ secret = "new-secret" }}, {{ secret = "old-secret", not_after = "2000-01-01T00:00:00Z" }}]

            [[endpoint]]
            name = "stripe"
            path = "/hooks/stripe"
            scheme = "stripe"
            keys = [{{ secret = "whsec_stripe" }}]
            "#,
            out.display()
        ),
    )
    .unwrap();
    let serve = Serve::start(dir.path(), &["--config", config.to_str().unwrap()]);

    let github = hookgate([
        "send",
        &serve.url("/hooks/github"),
        "--scheme",
        "github",
        "--secret",
        "new-secret",
        "--event-type",
        "push",
    ])
    .await;
    assert_eq!(github.code, 0, "{github:?}");
    // A key past its not-after no longer verifies.
    let expired = hookgate([
        "send",
        &serve.url("/hooks/github"),
        "--scheme",
        "github",
        "--secret",
        "old-secret",
    ])
    .await;
    assert_eq!(expired.code, 1, "{expired:?}");
    let stripe = hookgate([
        "send",
        &serve.url("/hooks/stripe"),
        "--scheme",
        "stripe",
        "--secret",
        "whsec_stripe",
    ])
    .await;
    assert_eq!(stripe.code, 0, "{stripe:?}");
    // A scheme's delivery sent to another endpoint is refused.
    let crossed = hookgate([
        "send",
        &serve.url("/hooks/stripe"),
        "--scheme",
        "github",
        "--secret",
        "new-secret",
    ])
    .await;
    assert_eq!(crossed.code, 1, "{crossed:?}");

    let written = eventually(PATIENCE, "the exec command's output", || async {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        (!text.is_empty()).then_some(text)
    })
    .await;
    let envelope: serde_json::Value =
        serde_json::from_str(written.lines().next().unwrap()).unwrap();
    assert_eq!(envelope["endpoint"], "github");
    assert_eq!(envelope["event_type"], "push");

    let both = hookgate(["inbox", "--data-dir", dir.path().to_str().unwrap(), "list"]).await;
    assert_eq!(both.code, 2, "two inboxes: --endpoint is needed: {both:?}");
    assert!(
        both.stderr.contains("github") && both.stderr.contains("stripe"),
        "{both:?}"
    );
    let github_events = inbox_list(dir.path(), &["--endpoint", "github"]).await;
    assert_eq!(github_events.len(), 1, "{github_events:?}");
    assert_eq!(github_events[0]["scheme"], "github");
    let stripe_events = inbox_list(dir.path(), &["--endpoint", "stripe"]).await;
    assert_eq!(stripe_events.len(), 1, "{stripe_events:?}");
    assert_eq!(stripe_events[0]["scheme"], "stripe");
}

/// Figma's passcode is the shared secret and travels in the body: what serve stores, shows
/// and forwards has it replaced by "[redacted]".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stores_figma_events_without_the_passcode() {
    const PASSCODE: &str = "f1gm4-p4ssc0de-0123456789abcdef";
    let app = TestServer::start(|_, _| (200, "ok")).await;
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(
        dir.path(),
        &[
            "--scheme",
            "figma",
            "--secret",
            PASSCODE,
            "--forward",
            &app.url("/events"),
        ],
    );
    let body = dir.path().join("body.json");
    std::fs::write(
        &body,
        br#"{"event_type":"FILE_UPDATE","file_key":"zH8mdb3SdmfPLgp0wAMjNi","webhook_id":"22"}"#,
    )
    .unwrap();
    let run = hookgate([
        "send",
        &serve.url("/webhooks"),
        "--scheme",
        "figma",
        "--secret",
        PASSCODE,
        "--body-file",
        body.to_str().unwrap(),
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}\n{}", serve.stderr());

    let events = eventually(PATIENCE, "the figma event to be processed", || async {
        let events = inbox_list(dir.path(), &["--status", "processed"]).await;
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event_type"], "FILE_UPDATE");
    let id = events[0]["id"].to_string();
    let dir_arg = dir.path().to_str().unwrap();
    let show = hookgate(["inbox", "--data-dir", dir_arg, "show", &id]).await;
    assert_eq!(show.code, 0, "{show:?}");
    assert!(
        show.stdout.contains(r#""passcode":"[redacted]""#),
        "{}",
        show.stdout
    );
    let json = hookgate(["inbox", "--data-dir", dir_arg, "show", &id, "--json"]).await;
    let list = hookgate(["inbox", "--data-dir", dir_arg, "list", "--json"]).await;
    let seen = app.seen();
    assert_eq!(seen.len(), 1);
    let envelope: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(envelope["body"]["passcode"], "[redacted]");
    assert_eq!(envelope["body"]["file_key"], "zH8mdb3SdmfPLgp0wAMjNi");
    for (what, text) in [
        ("inbox show", show.stdout.clone()),
        ("inbox show --json", json.stdout),
        ("inbox list --json", list.stdout),
        (
            "the forwarded envelope",
            String::from_utf8_lossy(&seen[0].body).into_owned(),
        ),
        ("serve's output", serve.stdout() + &serve.stderr()),
    ] {
        assert!(
            !text.contains(PASSCODE),
            "{what} shows the passcode: {text}"
        );
    }
    // Nothing in the inbox's files holds it either.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && path != body {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes
                    .windows(PASSCODE.len())
                    .any(|w| w == PASSCODE.as_bytes()),
                "{} holds the passcode",
                path.display()
            );
        }
    }
}

/// `hookgate audit` knows the presets added last: every check that applies passes against
/// `serve`, the URL- and method-signing ones included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_passes_against_serve_for_the_newest_presets() {
    const PUBLIC: &str = "https://hooks.example.com/webhooks";
    for (scheme, secret, signs_url) in [
        ("hubspot-v3", "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy", true),
        (
            "contentful",
            "c0nt3ntfu1S1gn1ngS3cr3t-0123456789abcdefghijABCDEFGHIJ_klmnopqrs",
            true,
        ),
        ("figma", "f1gm4-p4ssc0de-0123456789abcdef", false),
        ("box", "SamplePrimaryKey", false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut args = vec!["--scheme", scheme, "--secret", secret];
        if signs_url {
            args.extend(["--public-url", PUBLIC]);
        }
        let serve = Serve::start(dir.path(), &args);
        let url = serve.url("/webhooks");
        let mut audit = vec![
            "audit",
            url.as_str(),
            "--scheme",
            scheme,
            "--secret",
            secret,
        ];
        audit.push("--json");
        if signs_url {
            audit.extend(["--public-url", PUBLIC]);
        }
        let run = hookgate(audit).await;
        assert_eq!(run.code, 0, "{scheme}: {run:?}\n{}", serve.stderr());
        let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(report["result"], "PASS", "{scheme}: {report}");
        assert_eq!(report["summary"]["failed"], 0, "{scheme}");
        assert!(
            report["summary"]["passed"].as_u64().unwrap() >= 5,
            "{scheme}: {report}"
        );
    }
}
