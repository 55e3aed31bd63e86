//! Destinations on a shared queue (issue 21): `hookgate serve --queue URL --destination …`
//! writes one copy per matching destination into the queue, `hookgate work --queue URL
//! --destination …` (another process) delivers them with each destination's gates,
//! retries and dead letters, `hookgate destination pause --queue URL` holds one
//! destination across processes, and `hookgate dead-letters --destination D --replay`
//! re-delivers to D alone. `work --queue postgres://… --destination …` delivers what
//! `serve --store` routed. On a Redis, a NATS JetStream and a PostgreSQL of the test's own
//! (`hookgate-testkit`; skipped where the binary is missing, failed under
//! `HOOKGATE_REQUIRE_SERVICES=1`). Every wait is a bounded poll.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Serve, TestServer, Work, eventually, get, hookgate};
use hookgate::{SchemeId, SignRequest, Signer};
use hookgate_testkit::{Nats, Redis};

/// Generous: a loaded 2-core machine may run several test binaries at once.
const PATIENCE: Duration = Duration::from_secs(180);
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Signs `body` as Standard Webhooks message `id` and POSTs it to serve; returns the status.
async fn post(addr: SocketAddr, id: &str, body: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let signed = Signer::new(SchemeId::StandardWebhooksV1, SECRET)
        .unwrap()
        .sign(&SignRequest::new(body.to_owned()).id(id))
        .unwrap();
    let mut request = format!(
        "POST /webhooks HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        signed.body.len()
    );
    for (name, value) in &signed.headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(&signed.body).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// The delivery ids a destination's server was sent, sorted, and each one's destination
/// header.
fn ids(server: &TestServer) -> Vec<String> {
    let mut ids: Vec<String> = server
        .seen()
        .iter()
        .map(|seen| {
            let envelope: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
            envelope["delivery_id"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    ids
}

/// How many dead letters `hookgate dead-letters --destination NAME` lists.
async fn dead_letters(queue: &str, name: &str) -> usize {
    let run = hookgate([
        "dead-letters",
        "--queue",
        queue,
        "--destination",
        name,
        "--json",
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}");
    run.stdout.lines().filter(|l| !l.trim().is_empty()).count()
}

/// The address `hookgate work --listen 127.0.0.1:0` serves its metrics on.
async fn metrics_address(work: &Work) -> SocketAddr {
    eventually(PATIENCE, "work's metrics address", || {
        let found = work
            .stderr()
            .split("health and metrics on http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|addr| addr.parse::<SocketAddr>().ok());
        async move { found }
    })
    .await
}

async fn fan_out_on(queue: String) {
    let good = TestServer::start(|_, _| (200, "ok")).await;
    let fixed = Arc::new(AtomicBool::new(false));
    let bad = {
        let fixed = Arc::clone(&fixed);
        TestServer::start(move |_, _| {
            if fixed.load(Ordering::SeqCst) {
                (200, "ok")
            } else {
                (500, "down")
            }
        })
        .await
    };
    let destinations = [
        format!(
            r#"name = "good", forward = "{}", filter = {{ type = "invoice.*" }}"#,
            good.url("/good")
        ),
        format!(
            r#"name = "bad", forward = "{}", retry = {{ max_attempts = 2, base = "10ms", cap = "20ms" }}"#,
            bad.url("/bad")
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["--secret", SECRET, "--queue", &queue];
    for d in &destinations {
        args.extend(["--destination", d.as_str()]);
    }
    let serve = Serve::start(dir.path(), &args);
    let mut work_args = vec![
        "--queue",
        &queue,
        "--workers",
        "4",
        "--listen",
        "127.0.0.1:0",
    ];
    for d in &destinations {
        work_args.extend(["--destination", d.as_str()]);
    }
    let mut work = Work::start(&work_args);
    let metrics = metrics_address(&work).await;

    // Fan-out: good takes invoices, bad everything; bad answers 500.
    let sent: Vec<String> = (0..5).map(|n| format!("msg_sd_{n}")).collect();
    for id in &sent {
        assert_eq!(
            post(serve.addr, id, r#"{"type":"invoice.paid"}"#).await,
            200
        );
    }
    // A sender's retry of the first event: acknowledged, no new copies.
    assert_eq!(
        post(serve.addr, &sent[0], r#"{"type":"invoice.paid"}"#).await,
        200
    );
    assert_eq!(
        post(serve.addr, "msg_sd_charge", r#"{"type":"charge.failed"}"#).await,
        200
    );
    eventually(PATIENCE, "bad's six dead letters", || async {
        (dead_letters(&queue, "bad").await == 6).then_some(())
    })
    .await;
    eventually(PATIENCE, "good's five deliveries", || {
        let n = good.seen().len();
        async move { (n >= 5).then_some(()) }
    })
    .await;
    assert_eq!(ids(&good), sent, "each invoice once to good, nothing else");
    assert!(
        good.seen()
            .iter()
            .all(|s| s.headers["hookgate-destination"] == "good")
    );
    assert_eq!(dead_letters(&queue, "good").await, 0);
    // Two attempts each (bad's own retry policy), then its dead letter.
    assert_eq!(bad.seen().len(), 12);

    // Replay bad's dead letters once it is fixed: they reach bad only.
    fixed.store(true, Ordering::SeqCst);
    let replay = hookgate([
        "dead-letters",
        "--queue",
        &queue,
        "--destination",
        "bad",
        "--replay",
    ])
    .await;
    assert_eq!(replay.code, 0, "{replay:?}");
    assert!(replay.stdout.starts_with("6 dead letter"), "{replay:?}");
    eventually(PATIENCE, "bad's replayed deliveries", || {
        let n = bad.seen().len();
        async move { (n >= 18).then_some(()) }
    })
    .await;
    assert_eq!(dead_letters(&queue, "bad").await, 0);

    // Pause good from another process: work holds it, bad keeps getting events.
    let pause = hookgate(["destination", "--queue", &queue, "pause", "good"]).await;
    assert_eq!(pause.code, 0, "{pause:?}");
    assert!(
        pause.stdout.contains("paused destination good"),
        "{pause:?}"
    );
    let listed = hookgate(["destination", "--queue", &queue, "paused"]).await;
    assert_eq!(listed.stdout, "good\n", "{listed:?}");
    eventually(PATIENCE, "work sees the pause", || async {
        let (_, text) = get(metrics, "/metrics").await;
        text.contains(r#"hookgate_destination_paused{endpoint="default",destination="good"} 1"#)
            .then_some(())
    })
    .await;
    assert_eq!(
        post(serve.addr, "msg_sd_late", r#"{"type":"invoice.paid"}"#).await,
        200
    );
    eventually(PATIENCE, "bad gets the late event", || {
        let n = bad.seen().len();
        async move { (n >= 19).then_some(()) }
    })
    .await;
    assert_eq!(good.seen().len(), 5, "nothing to good while it is paused");
    let resume = hookgate(["destination", "--queue", &queue, "resume", "good"]).await;
    assert_eq!(resume.code, 0, "{resume:?}");
    eventually(PATIENCE, "good gets the late event after resume", || {
        let n = good.seen().len();
        async move { (n >= 6).then_some(()) }
    })
    .await;
    assert_eq!(good.seen().len(), 6);
    assert_eq!(
        ids(&bad).iter().filter(|id| *id == "msg_sd_late").count(),
        1
    );

    let stopped = std::process::Command::new("kill")
        .args(["-TERM", &work.pid().to_string()])
        .status()
        .unwrap();
    assert!(stopped.success());
    assert_eq!(work.wait_exit(PATIENCE), Some(0), "{}", work.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_fan_out_dead_letters_replay_and_pause_per_destination() {
    let Some(server) = Redis::start() else { return };
    let queue = format!(
        "{}?stream=hgsd:{:012x}",
        server.url(),
        fastrand::u64(..) >> 16
    );
    fan_out_on(queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_fan_out_dead_letters_replay_and_pause_per_destination() {
    let Some(server) = Nats::start() else { return };
    let tag = format!("{:012x}", fastrand::u64(..) >> 16);
    let queue = format!(
        "{}/?stream=HGSD_{}&subject=hgsd.{tag}",
        server.url(),
        tag.to_uppercase()
    );
    fan_out_on(queue).await;
}

/// An ordered destination on a queue through the processes: the first event of customer
/// A fails twice; per customer the application sees exactly the received order.
async fn ordered_lanes_on(queue: String) {
    // serve fills a queue it does not consume.
    ordered_lanes_through(&["--queue", &queue], queue.clone()).await;
}

/// serve started with `at` (its queue or store), two `hookgate work --queue queue` deliver.
async fn ordered_lanes_through(at: &[&str], queue: String) {
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = {
        let failures = Arc::clone(&failures);
        TestServer::start(move |_, seen| {
            let envelope: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
            if envelope["delivery_id"] == "msg_lane_a0"
                && failures.fetch_add(1, Ordering::SeqCst) < 2
            {
                (500, "not yet")
            } else {
                (200, "ok")
            }
        })
        .await
    };
    let ledger = format!(
        r#"name = "ledger", forward = "{}", order_key = "/customer", retry = {{ max_attempts = 10, base = "10ms", cap = "20ms" }}"#,
        app.url("/ledger")
    );
    let dir = tempfile::tempdir().unwrap();
    let mut serve_args = vec!["--secret", SECRET, "--destination", &ledger];
    serve_args.extend_from_slice(at);
    let serve = Serve::start(dir.path(), &serve_args);
    let work_args = [
        "--queue",
        &queue,
        "--destination",
        &ledger,
        "--workers",
        "4",
    ];
    let _first = Work::start(&work_args);
    let _second = Work::start(&work_args);
    let mut sent = Vec::new();
    for n in 0..4 {
        for customer in ["a", "b"] {
            let id = format!("msg_lane_{customer}{n}");
            let body = format!(r#"{{"type":"invoice.paid","customer":"{customer}"}}"#);
            assert_eq!(post(serve.addr, &id, &body).await, 200);
            sent.push(id);
        }
    }
    eventually(PATIENCE, "every event delivered", || {
        let delivered = app.seen().len();
        async move { (delivered >= 8 + 2).then_some(()) }
    })
    .await;
    let arrivals: Vec<String> = app
        .seen()
        .iter()
        .map(|seen| {
            let envelope: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
            envelope["delivery_id"].as_str().unwrap().to_owned()
        })
        .collect();
    let lane = |customer: &str| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for id in arrivals
            .iter()
            .filter(|id| id.starts_with(&format!("msg_lane_{customer}")))
        {
            if out.last() != Some(id) {
                out.push(id.clone());
            }
        }
        out
    };
    let expected = |customer: &str| -> Vec<String> {
        (0..4).map(|n| format!("msg_lane_{customer}{n}")).collect()
    };
    // A's head three times (two 500s), then the rest of A in order; B in order.
    assert_eq!(lane("a"), expected("a"), "{arrivals:?}");
    assert_eq!(lane("b"), expected("b"), "{arrivals:?}");
    assert_eq!(arrivals.len(), 10, "{arrivals:?}");
    let a_done = arrivals.iter().rposition(|id| id == "msg_lane_a0").unwrap();
    assert!(
        arrivals[..a_done]
            .iter()
            .all(|id| id == "msg_lane_a0" || id.contains("_b")),
        "nothing of A's lane before its head succeeded: {arrivals:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_ordered_lanes_through_serve_and_two_workers() {
    let Some(server) = Redis::start() else { return };
    let queue = format!(
        "{}?stream=hgsdl:{:012x}",
        server.url(),
        fastrand::u64(..) >> 16
    );
    ordered_lanes_on(queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_ordered_lanes_through_serve_and_two_workers() {
    let Some(server) = Nats::start() else { return };
    let tag = format!("{:012x}", fastrand::u64(..) >> 16);
    let queue = format!(
        "{}/?stream=HGSDL_{}&subject=hgsdl.{tag}",
        server.url(),
        tag.to_uppercase()
    );
    ordered_lanes_on(queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_ordered_lanes_through_serve_store_and_two_workers() {
    let Some(server) = hookgate_testkit::Postgres::start() else {
        return;
    };
    let url = server.url();
    // serve stores and routes; with no local workers, only `work` delivers.
    ordered_lanes_through(&["--store", &url, "--workers", "0"], url.clone()).await;
}
