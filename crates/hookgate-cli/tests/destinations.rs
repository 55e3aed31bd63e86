//! `hookgate serve` with several destinations per endpoint (issue 21), as processes on
//! free ports: fan-out, filters, concurrency caps, a circuit breaker, ordered lanes,
//! pause/resume over the CLI, and a SIGKILL during fan-out. Deliveries are told apart by
//! the envelope's `delivery_id` (the id each test signs its events with).

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
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Serve, TestServer, eventually, get, hookgate, inbox_list};
use hookgate::{SchemeId, SignRequest, Signer};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// Generous: a loaded 2-core machine may run several test binaries at once.
const PATIENCE: Duration = Duration::from_secs(180);
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// Signs `body` as Standard Webhooks message `id` and POSTs it to serve; returns the status.
async fn post(addr: SocketAddr, id: &str, body: &str) -> u16 {
    let request = SignRequest::new(body.to_owned()).id(id);
    post_signed(addr, SchemeId::StandardWebhooksV1, SECRET, request).await
}

/// Signs `request` with `scheme` and `secret` and POSTs it to serve; returns the status.
async fn post_signed(
    addr: SocketAddr,
    scheme: SchemeId,
    secret: &str,
    request: SignRequest,
) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let signed = Signer::new(scheme, secret).unwrap().sign(&request).unwrap();
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

/// The delivery ids a destination's server was sent, in arrival order.
fn ids(server: &TestServer) -> Vec<String> {
    server.seen().iter().map(delivery_id).collect()
}

fn delivery_id(seen: &common::Seen) -> String {
    let envelope: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    envelope["delivery_id"].as_str().unwrap().to_owned()
}

/// Where a test's events are kept: serve's local inbox in its data directory, or a
/// PostgreSQL store (`serve --store`); and how serve and the CLI are told so.
struct On {
    /// serve's arguments: none for the inbox, `--store URL`.
    serve: Vec<String>,
    /// `hookgate inbox` and `hookgate destination`'s: `--data-dir DIR` or `--store URL`.
    cli: Vec<String>,
}

impl On {
    fn inbox(dir: &Path) -> On {
        On {
            serve: Vec::new(),
            cli: vec!["--data-dir".to_owned(), dir.to_str().unwrap().to_owned()],
        }
    }

    fn store(url: &str) -> On {
        On {
            serve: vec!["--store".to_owned(), url.to_owned()],
            cli: vec!["--store".to_owned(), url.to_owned()],
        }
    }

    /// serve's arguments with `extra` after them.
    fn serve_args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args: Vec<&str> = self.serve.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        args
    }

    /// `hookgate COMMAND --data-dir DIR|--store URL ARGS…`.
    async fn run(&self, command: &str, args: &[&str]) -> common::Run {
        let mut all: Vec<&str> = vec![command];
        all.extend(self.cli.iter().map(String::as_str));
        all.extend_from_slice(args);
        hookgate(all).await
    }

    /// `hookgate inbox stats --json`'s deliveries per destination and status.
    async fn counts(&self) -> serde_json::Value {
        let at: Vec<&str> = self.cli.iter().map(String::as_str).collect();
        counts_of(&at).await
    }
}

/// `hookgate inbox stats --json`'s deliveries per destination and status, of a data
/// directory's inbox.
async fn destination_counts(dir: &Path) -> serde_json::Value {
    counts_of(&["--data-dir", dir.to_str().unwrap()]).await
}

/// The same, of the store `at` names (`--data-dir DIR` or `--store URL`).
async fn counts_of(at: &[&str]) -> serde_json::Value {
    let mut args = vec!["inbox"];
    args.extend_from_slice(at);
    args.extend_from_slice(&["stats", "--json"]);
    let run = hookgate(args).await;
    assert_eq!(run.code, 0, "{run:?}");
    let stats: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    stats["destinations"].clone()
}

fn destination(name: &str, url: &str, extra: &str) -> String {
    let mut keys = format!("name = \"{name}\", forward = \"{url}\"");
    if !extra.is_empty() {
        keys.push_str(", ");
        keys.push_str(extra);
    }
    keys
}

fn serve(dir: &Path, destinations: &[String], extra: &[&str]) -> Serve {
    let mut args: Vec<&str> = vec!["--secret", SECRET, "--retry-base", "10ms"];
    for d in destinations {
        args.push("--destination");
        args.push(d);
    }
    args.extend_from_slice(extra);
    Serve::start(dir, &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_with_a_failing_destination_dead_letters_and_replays_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    fan_out(dir.path(), &On::inbox(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_on_a_postgres_store_dead_letters_and_replays_the_failing_destination_alone() {
    let Some(postgres) = hookgate_testkit::Postgres::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    fan_out(dir.path(), &On::store(&postgres.url())).await;
}

async fn fan_out(dir: &Path, on: &On) {
    let good = TestServer::start(|_, _| (200, "ok")).await;
    let bad = TestServer::start(|_, _| (500, "down")).await;
    let retry = r#"retry = { max_attempts = 2, base = "10ms", cap = "20ms" }"#;
    let serve = serve(
        dir,
        &[
            destination("good", &good.url("/good"), ""),
            destination("bad", &bad.url("/bad"), retry),
        ],
        &on.serve_args(&[]),
    );
    let sent: Vec<String> = (0..5).map(|n| format!("msg_fan_{n}")).collect();
    for id in &sent {
        assert_eq!(
            post(serve.addr, id, r#"{"type":"invoice.paid"}"#).await,
            200
        );
    }
    eventually(PATIENCE, "bad's five dead letters", || async {
        let counts = on.counts().await;
        (counts["bad"]["dead"] == 5 && counts["good"]["processed"] == 5).then_some(())
    })
    .await;
    let mut got = ids(&good);
    got.sort();
    assert_eq!(got, sent, "good got every event exactly once");
    assert_eq!(bad.seen().len(), 10, "two attempts each");
    // The event log shows each event dead (one delivery dead), with both deliveries.
    let dead = on
        .run("inbox", &["list", "--json", "--status", "dead"])
        .await;
    assert_eq!(dead.stdout.lines().count(), 5, "{dead:?}");
    let show = on.run("inbox", &["show", "1"]).await;
    assert!(
        show.stdout.contains("good: processed, 1 attempt(s)"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout.contains("bad: dead, 2 attempt(s)"),
        "{}",
        show.stdout
    );
    assert!(show.stdout.contains("forward: 500 down"), "{}", show.stdout);

    // Replaying bad's dead letters does not deliver to good again.
    let replay = on
        .run("inbox", &["replay", "--dead", "--destination", "bad"])
        .await;
    assert_eq!(replay.code, 0, "{replay:?}");
    assert!(replay.stdout.contains("replayed 5"), "{}", replay.stdout);
    eventually(PATIENCE, "bad dead again after its replay", || async {
        let counts = on.counts().await;
        (bad.seen().len() == 20 && counts["bad"]["dead"] == 5).then_some(())
    })
    .await;
    assert_eq!(good.seen().len(), 5, "good untouched by bad's replay");
    let (status, metrics) = get(serve.addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains(
            r#"hookgate_destination_deliveries{endpoint="default",destination="bad",status="dead"} 5"#
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_send_each_event_where_they_say_and_store_the_rest_as_filtered() {
    let invoices = TestServer::start(|_, _| (200, "ok")).await;
    let shop = TestServer::start(|_, _| (200, "ok")).await;
    let live = TestServer::start(|_, _| (200, "ok")).await;
    let dir = tempfile::tempdir().unwrap();
    // GitHub keeps X-GitHub-Event (the event type) and X-GitHub-Delivery with the event.
    let github_secret = "github-test-secret";
    let serve = Serve::start(
        dir.path(),
        &[
            "--scheme",
            "github",
            "--secret",
            github_secret,
            "--destination",
            &destination(
                "invoices",
                &invoices.url("/"),
                r#"filter = { type = ["issue*", "pull_request.*"] }"#,
            ),
            "--destination",
            &destination(
                "shop",
                &shop.url("/"),
                r#"filter = { header = { "X-GitHub-Delivery" = "msg_shop_*" } }"#,
            ),
            "--destination",
            &destination(
                "live",
                &live.url("/"),
                r#"filter = { body = { "/data/livemode" = true } }"#,
            ),
        ],
    );
    let events = [
        ("msg_a", "issues", "false"),
        ("msg_b", "issue_comment", "null"),
        ("msg_shop_c", "push", "true"),
        ("msg_d", "push", "true"),
        ("msg_e", "push", "false"),
    ];
    for (id, event_type, livemode) in events {
        // GitHub's dedup key is the body's digest: each body names its delivery.
        let body = format!(r#"{{"n":"{id}","data":{{"livemode":{livemode}}}}}"#);
        let request = SignRequest::new(body).id(id).event_type(event_type);
        let status = post_signed(serve.addr, SchemeId::Github, github_secret, request).await;
        assert_eq!(status, 200, "{id}");
    }
    eventually(PATIENCE, "every delivery made", || async {
        let counts = destination_counts(dir.path()).await;
        (counts["invoices"]["processed"] == 2
            && counts["shop"]["processed"] == 1
            && counts["live"]["processed"] == 2)
            .then_some(())
    })
    .await;
    let sorted = |server: &TestServer| {
        let mut got = ids(server);
        got.sort();
        got
    };
    assert_eq!(sorted(&invoices), ["msg_a", "msg_b"]);
    assert_eq!(sorted(&shop), ["msg_shop_c"]);
    assert_eq!(sorted(&live), ["msg_d", "msg_shop_c"]);
    let filtered = inbox_list(dir.path(), &["--status", "filtered"]).await;
    assert_eq!(filtered.len(), 1, "{filtered:?}");
    assert_eq!(filtered[0]["delivery_id"], "msg_e");
    drop(serve);

    // A filter that cannot be parsed stops serve at start, naming where and what.
    let bad = hookgate([
        "serve",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--secret",
        SECRET,
        "--destination",
        &destination(
            "audit",
            &live.url("/"),
            r#"filter = { body = { "data" = 1 } }"#,
        ),
    ])
    .await;
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(
        bad.stderr
            .contains("endpoint default, destination audit: filter.body"),
        "{}",
        bad.stderr
    );
    // And in a config file too.
    let config = dir.path().join("hookgate.toml");
    std::fs::write(
        &config,
        format!(
            "[[endpoint]]\nname = \"stripe\"\npath = \"/stripe\"\nscheme = \"stripe\"\n\
             keys = [{{ secret = \"whsec_x\" }}]\n\
             [[endpoint.destination]]\nname = \"billing\"\nforward = \"{}\"\n\
             filter = {{ type = [] }}\n",
            live.url("/")
        ),
    )
    .unwrap();
    let bad = hookgate([
        "serve",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ])
    .await;
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(
        bad.stderr
            .contains("endpoint stripe, destination billing: filter.type"),
        "{}",
        bad.stderr
    );
}

/// A slow application that records how many of its requests ran at once, when each began
/// and ended, and the order in which it answered 2xx, failing requests `fail` picks (from
/// the delivery id and how many times it was seen).
struct SlowApp {
    addr: SocketAddr,
    most: Arc<AtomicUsize>,
    accepted: Arc<Mutex<Vec<String>>>,
    seen: Arc<Mutex<BTreeMap<String, usize>>>,
    timeline: Arc<Mutex<Vec<(Instant, Mark)>>>,
    task: tokio::task::JoinHandle<()>,
}

/// A request's beginning, or its end with the status it was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Start,
    End(u16),
}

impl Drop for SlowApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SlowApp {
    async fn start<F>(hold: Duration, fail: F) -> SlowApp
    where
        F: Fn(&str, usize, &[String]) -> bool + Send + Sync + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
        let timeline: Arc<Mutex<Vec<(Instant, Mark)>>> = Arc::default();
        let fail = Arc::new(fail);
        let (r, m, a, s) = (running, most.clone(), accepted.clone(), seen.clone());
        let t = timeline.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (r, m, a, s, fail) = (r.clone(), m.clone(), a.clone(), s.clone(), fail.clone());
                let t = t.clone();
                let service = service_fn(move |request: Request<Incoming>| {
                    let (r, m, a, s, fail) =
                        (r.clone(), m.clone(), a.clone(), s.clone(), fail.clone());
                    let t = t.clone();
                    async move {
                        t.lock().unwrap().push((Instant::now(), Mark::Start));
                        let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                        m.fetch_max(now, Ordering::SeqCst);
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        let envelope: serde_json::Value = serde_json::from_slice(&body).unwrap();
                        let id = envelope["delivery_id"].as_str().unwrap().to_owned();
                        // The application's own work: it keeps the request open a while.
                        tokio::time::sleep(hold).await;
                        let times = {
                            let mut seen = s.lock().unwrap();
                            let n = seen.entry(id.clone()).or_default();
                            *n += 1;
                            *n
                        };
                        let failed = {
                            let accepted = a.lock().unwrap();
                            fail(&id, times, &accepted)
                        };
                        if !failed {
                            a.lock().unwrap().push(id);
                        }
                        r.fetch_sub(1, Ordering::SeqCst);
                        let status = if failed { 500 } else { 200 };
                        t.lock().unwrap().push((Instant::now(), Mark::End(status)));
                        let mut response = Response::new(Full::new(Bytes::from_static(b"")));
                        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        Ok::<_, Infallible>(response)
                    }
                });
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        SlowApp {
            addr,
            most,
            accepted,
            seen,
            timeline,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn accepted(&self) -> Vec<String> {
        self.accepted.lock().unwrap().clone()
    }

    fn timeline(&self) -> Vec<(Instant, Mark)> {
        self.timeline.lock().unwrap().clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_never_has_more_requests_in_flight_than_its_concurrency() {
    let capped = SlowApp::start(Duration::from_millis(100), |_, _, _| false).await;
    let free = TestServer::start(|_, _| (200, "ok")).await;
    let dir = tempfile::tempdir().unwrap();
    let serve = serve(
        dir.path(),
        &[
            destination("capped", &capped.url(), "concurrency = 2"),
            destination("free", &free.url("/"), ""),
        ],
        &["--workers", "8"],
    );
    for n in 0..12 {
        assert_eq!(post(serve.addr, &format!("msg_cap_{n}"), "{}").await, 200);
    }
    eventually(PATIENCE, "all twelve delivered to both", || async {
        (capped.accepted().len() == 12 && free.seen().len() == 12).then_some(())
    })
    .await;
    let most = capped.most.load(Ordering::SeqCst);
    assert!((1..=2).contains(&most), "at most 2 at once, saw {most}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_lane_keeps_its_order_while_its_head_fails_and_other_keys_go_on() {
    let dir = tempfile::tempdir().unwrap();
    ordered_lane(dir.path(), &On::inbox(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_lane_on_a_postgres_store_keeps_its_order_while_its_head_fails() {
    let Some(postgres) = hookgate_testkit::Postgres::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    ordered_lane(dir.path(), &On::store(&postgres.url())).await;
}

async fn ordered_lane(dir: &Path, on: &On) {
    // c1's first event fails (at least twice) until every c2 and c3 event was accepted:
    // if the failing head blocked other keys, this would never end.
    let app = SlowApp::start(Duration::from_millis(5), |id, times, accepted| {
        let others_done = ["msg_c2_1", "msg_c2_2", "msg_c3_1"]
            .iter()
            .all(|other| accepted.iter().any(|a| a == other));
        id == "msg_c1_1" && (times <= 2 || !others_done)
    })
    .await;
    let serve = serve(
        dir,
        &[destination(
            "ordered",
            &app.url(),
            r#"order_key = "/customer", retry = { max_attempts = 50, base = "10ms", cap = "50ms" }"#,
        )],
        &on.serve_args(&["--workers", "4"]),
    );
    let events = [
        ("msg_c1_1", "c1"),
        ("msg_c2_1", "c2"),
        ("msg_c1_2", "c1"),
        ("msg_c3_1", "c3"),
        ("msg_c2_2", "c2"),
        ("msg_c1_3", "c1"),
    ];
    for (id, customer) in events {
        let body = format!(r#"{{"customer":"{customer}"}}"#);
        assert_eq!(post(serve.addr, id, &body).await, 200);
    }
    eventually(PATIENCE, "all six accepted", || async {
        (app.accepted().len() == 6).then_some(())
    })
    .await;
    let accepted = app.accepted();
    let of = |customer: &str| -> Vec<String> {
        accepted
            .iter()
            .filter(|id| id.starts_with(&format!("msg_{customer}_")))
            .cloned()
            .collect()
    };
    assert_eq!(of("c1"), ["msg_c1_1", "msg_c1_2", "msg_c1_3"]);
    assert_eq!(of("c2"), ["msg_c2_1", "msg_c2_2"]);
    assert!(
        app.seen.lock().unwrap()["msg_c1_1"] >= 3,
        "the head failed twice first"
    );
    // c1's later events were never sent before their head was accepted.
    assert_eq!(app.seen.lock().unwrap()["msg_c1_2"], 1);
    assert_eq!(app.seen.lock().unwrap()["msg_c1_3"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_over_the_cli_while_events_keep_arriving() {
    let dir = tempfile::tempdir().unwrap();
    pause_and_resume(dir.path(), &On::inbox(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_and_resume_of_a_postgres_store_over_the_cli() {
    let Some(postgres) = hookgate_testkit::Postgres::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    pause_and_resume(dir.path(), &On::store(&postgres.url())).await;
}

async fn pause_and_resume(dir: &Path, on: &On) {
    let held = TestServer::start(|_, _| (200, "ok")).await;
    let open = TestServer::start(|_, _| (200, "ok")).await;
    let serve = serve(
        dir,
        &[
            destination("held", &held.url("/"), ""),
            destination("open", &open.url("/"), ""),
        ],
        &on.serve_args(&[]),
    );
    let pause = on.run("destination", &["pause", "held"]).await;
    assert_eq!(pause.code, 0, "{pause:?}");
    assert!(
        pause.stdout.contains("paused destination held"),
        "{pause:?}"
    );
    // Wait until serve's worker has read the pause.
    eventually(PATIENCE, "serve to hold the destination", || async {
        let (_, metrics) = get(serve.addr, "/metrics").await;
        metrics
            .contains(r#"hookgate_destination_paused{endpoint="default",destination="held"} 1"#)
            .then_some(())
    })
    .await;
    for n in 0..4 {
        assert_eq!(post(serve.addr, &format!("msg_pause_{n}"), "{}").await, 200);
    }
    eventually(PATIENCE, "open to get all four", || async {
        (open.seen().len() == 4).then_some(())
    })
    .await;
    // While paused: the held deliveries wait, stored and acknowledged.
    let counts = on.counts().await;
    assert_eq!(
        counts["held"]["processed"],
        serde_json::Value::Null,
        "{counts}"
    );
    assert!(held.seen().is_empty());
    let listed = on.run("destination", &["paused"]).await;
    assert_eq!(listed.stdout, "held\n");

    let resume = on.run("destination", &["resume", "held"]).await;
    assert_eq!(resume.code, 0, "{resume:?}");
    for n in 4..6 {
        assert_eq!(post(serve.addr, &format!("msg_pause_{n}"), "{}").await, 200);
    }
    eventually(PATIENCE, "held to get all six after the resume", || async {
        (held.seen().len() == 6 && open.seen().len() == 6).then_some(())
    })
    .await;
    let mut got = ids(&held);
    got.sort();
    assert_eq!(
        got,
        (0..6).map(|n| format!("msg_pause_{n}")).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sigkill_during_fan_out_each_destination_gets_each_event() {
    let a = SlowApp::start(Duration::from_millis(20), |_, _, _| false).await;
    let b = SlowApp::start(Duration::from_millis(20), |_, _, _| false).await;
    let dir = tempfile::tempdir().unwrap();
    let destinations = [
        destination("a", &a.url(), "concurrency = 1"),
        destination("b", &b.url(), "concurrency = 1"),
    ];
    // The deliveries the killed process held are taken over once their lease (30 s) ends.
    let mut serve = serve(dir.path(), &destinations, &[]);
    let sent: Vec<String> = (0..20).map(|n| format!("msg_kill_{n:02}")).collect();
    for id in &sent {
        assert_eq!(post(serve.addr, id, "{}").await, 200);
    }
    eventually(PATIENCE, "fan-out under way", || async {
        (a.accepted().len() >= 2).then_some(())
    })
    .await;
    // SIGKILL: no graceful shutdown, leases left held.
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &serve.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(serve.wait_exit(PATIENCE).is_some());
    drop(serve);
    let _restarted = Serve::start(
        dir.path(),
        &[
            "--secret",
            SECRET,
            "--destination",
            &destinations[0],
            "--destination",
            &destinations[1],
        ],
    );
    eventually(PATIENCE, "every event at each destination", || async {
        let has_all = |app: &SlowApp| {
            let accepted = app.accepted();
            sent.iter().all(|id| accepted.contains(id))
        };
        (has_all(&a) && has_all(&b)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_circuit_opens_after_its_failures_then_one_probe_closes_it() {
    // The first three requests fail, whatever they carry; every later one succeeds.
    let calls = Arc::new(AtomicUsize::new(0));
    let flaky = {
        let calls = Arc::clone(&calls);
        SlowApp::start(Duration::from_millis(20), move |_, _, _| {
            calls.fetch_add(1, Ordering::SeqCst) < 3
        })
        .await
    };
    let steady = TestServer::start(|_, _| (200, "ok")).await;
    let dir = tempfile::tempdir().unwrap();
    let open_for = Duration::from_secs(1);
    let serve = serve(
        dir.path(),
        &[
            destination(
                "flaky",
                &flaky.url(),
                r#"concurrency = 4, circuit = { failures = 3, open_for = "1s" }, retry = { max_attempts = 20, base = "10ms", cap = "20ms" }"#,
            ),
            destination("steady", &steady.url("/"), ""),
        ],
        &["--workers", "8"],
    );
    // One event first, so that its first three attempts are the three failures in a row.
    assert_eq!(post(serve.addr, "msg_circuit_0", "{}").await, 200);
    eventually(PATIENCE, "three failed calls", || async {
        let ends = flaky
            .timeline()
            .iter()
            .filter(|(_, m)| *m == Mark::End(500))
            .count();
        (ends == 3).then_some(())
    })
    .await;
    // The receiver keeps answering 2xx while the circuit is open; nothing is dropped.
    let later: Vec<String> = (1..=4).map(|n| format!("msg_circuit_{n}")).collect();
    for id in &later {
        assert_eq!(post(serve.addr, id, "{}").await, 200);
    }
    eventually(PATIENCE, "all five delivered to both", || async {
        (flaky.accepted().len() == 5 && steady.seen().len() == 5).then_some(())
    })
    .await;
    let timeline = flaky.timeline();
    let starts: Vec<usize> = (0..timeline.len())
        .filter(|&i| timeline[i].1 == Mark::Start)
        .collect();
    assert_eq!(
        starts.len(),
        8,
        "three failures and five deliveries: {timeline:?}"
    );
    let third_failure_end = timeline
        .iter()
        .filter(|(_, m)| *m == Mark::End(500))
        .nth(2)
        .unwrap()
        .0;
    // The probe, the fourth call, waited the whole open time after the third failure...
    let probe = starts[3];
    assert!(
        timeline[probe].0.duration_since(third_failure_end) >= open_for,
        "the circuit held calls for open_for: {timeline:?}"
    );
    // ...and went alone: the next thing the application saw was its answer.
    assert_eq!(timeline[probe + 1].1, Mark::End(200), "{timeline:?}");
    let mut got = ids(&steady);
    got.sort();
    let mut sent = later.clone();
    sent.insert(0, "msg_circuit_0".to_owned());
    assert_eq!(got, sent, "steady got every event once, circuit or not");
    eventually(PATIENCE, "the circuit gauge closed again", || async {
        let (_, metrics) = get(serve.addr, "/metrics").await;
        metrics
            .contains(
                r#"hookgate_destination_circuit_state{endpoint="default",destination="flaky"} 0"#,
            )
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lane_backlog_gauge_counts_every_waiting_keyed_delivery_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    lane_backlog(dir.path(), &On::inbox(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lane_backlog_gauge_of_a_postgres_store() {
    let Some(postgres) = hookgate_testkit::Postgres::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    lane_backlog(dir.path(), &On::store(&postgres.url())).await;
}

async fn lane_backlog(dir: &Path, on: &On) {
    let app = TestServer::start(|_, _| (200, "ok")).await;
    let serve = serve(
        dir,
        &[destination(
            "ordered",
            &app.url("/"),
            r#"order_key = "/customer""#,
        )],
        &on.serve_args(&[]),
    );
    let pause = on.run("destination", &["pause", "ordered"]).await;
    assert_eq!(pause.code, 0, "{pause:?}");
    eventually(PATIENCE, "serve to hold the destination", || async {
        let (_, metrics) = get(serve.addr, "/metrics").await;
        metrics
            .contains(r#"hookgate_destination_paused{endpoint="default",destination="ordered"} 1"#)
            .then_some(())
    })
    .await;
    // Three keyed deliveries (two lanes) and one without a key, which is in no lane.
    for (id, body) in [
        ("msg_backlog_1", r#"{"customer":"c1"}"#),
        ("msg_backlog_2", r#"{"customer":"c1"}"#),
        ("msg_backlog_3", r#"{"customer":"c2"}"#),
        ("msg_backlog_4", "{}"),
    ] {
        assert_eq!(post(serve.addr, id, body).await, 200);
    }
    let gauge = |n: u32| {
        format!(
            r#"hookgate_destination_lane_backlog{{endpoint="default",destination="ordered"}} {n}"#
        )
    };
    eventually(PATIENCE, "a backlog of three keyed deliveries", || async {
        let (_, metrics) = get(serve.addr, "/metrics").await;
        metrics.contains(&gauge(3)).then_some(())
    })
    .await;
    assert!(app.seen().is_empty(), "nothing delivered while paused");
    let resume = on.run("destination", &["resume", "ordered"]).await;
    assert_eq!(resume.code, 0, "{resume:?}");
    eventually(
        PATIENCE,
        "all four delivered and the backlog empty",
        || async {
            let (_, metrics) = get(serve.addr, "/metrics").await;
            (app.seen().len() == 4 && metrics.contains(&gauge(0))).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_postgres_store_deliver_each_once_and_keep_each_lane_in_order() {
    let Some(postgres) = hookgate_testkit::Postgres::start() else {
        return;
    };
    let url = postgres.url();
    let ordered = SlowApp::start(Duration::from_millis(20), |_, _, _| false).await;
    let plain = SlowApp::start(Duration::from_millis(5), |_, _, _| false).await;
    let destinations = [
        destination("ordered", &ordered.url(), r#"order_key = "/customer""#),
        destination("plain", &plain.url(), ""),
    ];
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let on = On::store(&url);
    let a = serve(
        dir_a.path(),
        &destinations,
        &on.serve_args(&["--workers", "4"]),
    );
    let b = serve(
        dir_b.path(),
        &destinations,
        &on.serve_args(&["--workers", "4"]),
    );
    // Each event after the previous one's 2xx, to one replica or the other: the order
    // received is the order of the ids.
    let mut sent: Vec<(String, String)> = Vec::new();
    for n in 0..24 {
        let customer = format!("c{}", n % 3);
        let id = format!("msg_rep_{n:02}");
        let replica = if n % 2 == 0 { a.addr } else { b.addr };
        let body = format!(r#"{{"customer":"{customer}"}}"#);
        assert_eq!(post(replica, &id, &body).await, 200);
        sent.push((id, customer));
    }
    eventually(PATIENCE, "all 24 at both destinations", || async {
        (ordered.accepted().len() == 24 && plain.accepted().len() == 24).then_some(())
    })
    .await;
    for app in [&ordered, &plain] {
        let seen = app.seen.lock().unwrap();
        assert_eq!(seen.len(), 24);
        assert!(
            seen.values().all(|n| *n == 1),
            "each delivered once: {seen:?}"
        );
    }
    let accepted = ordered.accepted();
    for customer in ["c0", "c1", "c2"] {
        let expected: Vec<&String> = sent
            .iter()
            .filter(|(_, c)| c == customer)
            .map(|(id, _)| id)
            .collect();
        let got: Vec<&String> = accepted.iter().filter(|id| expected.contains(id)).collect();
        assert_eq!(got, expected, "lane {customer} in the order received");
    }
    let counts = on.counts().await;
    assert_eq!(counts["ordered"]["processed"], 24, "{counts}");
    assert_eq!(counts["plain"]["processed"], 24, "{counts}");
}
