//! `hookgate work` consuming the queue that `hookgate serve --queue` replicas fill, on a
//! Redis and a NATS JetStream of the test's own (`hookgate-testkit`; skipped where the
//! binary is not installed, failed instead under `HOOKGATE_REQUIRE_SERVICES=1`). Every
//! wait is a bounded poll; nothing asserts how long anything took.

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
use std::time::Duration;

use common::{Serve, TestServer, Work, eventually, hookgate};
use hookgate_testkit::{Nats, Postgres, Redis};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const N: usize = 30;
const LIMIT: Duration = Duration::from_secs(120);

/// A queue of the test's own on a server of its own.
enum Queue {
    Redis {
        server: Redis,
        stream: String,
    },
    Nats {
        server: Nats,
        stream: String,
        subject: String,
    },
    Postgres {
        server: Postgres,
        schema: String,
    },
}

impl Queue {
    fn redis() -> Option<Queue> {
        let server = Redis::start()?;
        Some(Queue::Redis {
            server,
            stream: format!("hgwork:{:012x}", fastrand::u64(..) >> 16),
        })
    }

    fn nats() -> Option<Queue> {
        let server = Nats::start()?;
        let tag = format!("{:012x}", fastrand::u64(..) >> 16);
        Some(Queue::Nats {
            server,
            stream: format!("HGWORK_{}", tag.to_uppercase()),
            subject: format!("hgwork.{tag}"),
        })
    }

    fn postgres() -> Option<Queue> {
        let server = Postgres::start()?;
        Some(Queue::Postgres {
            server,
            schema: format!("hgwork_{:012x}", fastrand::u64(..) >> 16),
        })
    }

    /// What `hookgate serve` needs to fill this queue: `--queue URL`, or for PostgreSQL the
    /// store itself, with no local worker (receive only: `hookgate work` processes).
    fn serve_args(&self) -> Vec<String> {
        match self {
            Queue::Postgres { .. } => vec![
                "--store".to_owned(),
                self.url(),
                "--workers".to_owned(),
                "0".to_owned(),
            ],
            _ => vec!["--queue".to_owned(), self.url()],
        }
    }

    async fn store(&self) -> hookgate_postgres::PgStore {
        hookgate_postgres::PgStore::connect(&self.url())
            .await
            .unwrap()
    }

    fn url(&self) -> String {
        match self {
            Queue::Redis { server, stream } => format!("{}?stream={stream}", server.url()),
            Queue::Nats {
                server,
                stream,
                subject,
            } => format!("{}/?stream={stream}&subject={subject}", server.url()),
            Queue::Postgres { server, schema } => format!("{}?schema={schema}", server.url()),
        }
    }

    /// Entries still waiting in the queue (not yet handled).
    async fn waiting(&self) -> u64 {
        match self {
            Queue::Redis { server, stream } => {
                let client = redis::Client::open(server.url().as_str()).unwrap();
                let mut conn = client.get_multiplexed_async_connection().await.unwrap();
                redis::cmd("XLEN")
                    .arg(stream)
                    .query_async(&mut conn)
                    .await
                    .unwrap()
            }
            Queue::Nats { server, stream, .. } => {
                let client = async_nats::connect(server.address()).await.unwrap();
                let jetstream = async_nats::jetstream::new(client);
                let stream = jetstream.get_stream(stream).await.unwrap();
                let mut consumer: async_nats::jetstream::consumer::PullConsumer =
                    stream.get_consumer("hookgate").await.unwrap();
                let info = consumer.info().await.unwrap();
                info.num_pending + info.num_ack_pending as u64
            }
            Queue::Postgres { .. } => self.store().await.status_counts().await.unwrap().pending(),
        }
    }

    /// Dead letters stored for the queue.
    async fn dead(&self) -> u64 {
        match self {
            Queue::Redis { server, stream } => {
                let client = redis::Client::open(server.url().as_str()).unwrap();
                let mut conn = client.get_multiplexed_async_connection().await.unwrap();
                redis::cmd("XLEN")
                    .arg(format!("{stream}:dead"))
                    .query_async(&mut conn)
                    .await
                    .unwrap()
            }
            Queue::Nats { server, stream, .. } => {
                let client = async_nats::connect(server.address()).await.unwrap();
                let jetstream = async_nats::jetstream::new(client);
                match jetstream.get_stream(format!("{stream}_DEAD")).await {
                    Ok(mut dead) => dead.info().await.unwrap().state.messages,
                    Err(_) => 0,
                }
            }
            Queue::Postgres { .. } => self
                .store()
                .await
                .status_counts()
                .await
                .unwrap()
                .get(hookgate_postgres::Status::Dead),
        }
    }
}

/// `hookgate send` of N deliveries with ids `ID-1`…`ID-N`, retrying like a provider.
async fn send(serve: &Serve, id: &str) -> common::Run {
    hookgate([
        "send",
        &serve.url("/webhooks"),
        "--secret",
        SECRET,
        "--id",
        id,
        "--count",
        &N.to_string(),
        "--concurrency",
        "8",
        "--retry-schedule",
        "exponential",
        "--time-scale",
        "0.05",
        "--quiet",
    ])
    .await
}

/// Idempotency-Key → how many times the application received it.
fn received(app: &TestServer) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for seen in app.seen() {
        let key = seen.headers["idempotency-key"].to_str().unwrap().to_owned();
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

fn terminate(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Two replicas receive every delivery at once (each gets each copy) and hand them to the
/// queue; two `hookgate work` processes forward them to the application: each event
/// reaches it once, and nothing is left in the queue.
async fn two_replicas_and_two_workers(queue: Queue, shared_dedup: Option<String>) {
    let app = TestServer::start(|_, _| (200, "ok")).await;
    let url = queue.url();
    let serve_args = queue.serve_args();
    let mut args = vec!["--secret", SECRET];
    args.extend(serve_args.iter().map(String::as_str));
    if let Some(dedup) = &shared_dedup {
        args.extend(["--dedup", dedup]);
    }
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (
        Serve::start(dir_a.path(), &args),
        Serve::start(dir_b.path(), &args),
    );
    let forward = app.url("/events");
    let worker_args = ["--queue", &url, "--forward", &forward, "--workers", "4"];
    let mut first = Work::start(&worker_args);
    let mut second = Work::start(&worker_args);

    let id = format!("work-{:08x}", fastrand::u32(..));
    let (sent_a, sent_b) = tokio::join!(send(&a, &id), send(&b, &id));
    assert_eq!(sent_a.code, 0, "{sent_a:?}\n{}", a.stderr());
    assert_eq!(sent_b.code, 0, "{sent_b:?}\n{}", b.stderr());

    eventually(LIMIT, "every event forwarded", || {
        let done = received(&app).len() >= N;
        async move { done.then_some(()) }
    })
    .await;
    // A graceful stop finishes what is in progress; then nothing may be waiting.
    terminate(first.pid());
    terminate(second.pid());
    assert_eq!(first.wait_exit(LIMIT), Some(0), "{}", first.stderr());
    assert_eq!(second.wait_exit(LIMIT), Some(0), "{}", second.stderr());
    let counts = received(&app);
    assert_eq!(counts.len(), N, "{counts:?}");
    assert!(
        counts.values().all(|&n| n == 1),
        "each event once: {counts:?}"
    );
    assert_eq!(queue.waiting().await, 0);
    let body: serde_json::Value = serde_json::from_slice(&app.seen()[0].body).unwrap();
    assert_eq!(body["scheme"], "standard-webhooks-v1");
    assert!(!body["id"].is_null(), "the queue's id of the entry: {body}");
    assert_eq!(body["attempt"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_two_replicas_and_two_workers_process_each_delivery_once() {
    let Some(queue) = Queue::redis() else { return };
    let dedup = match &queue {
        Queue::Redis { server, stream } => format!("{}?prefix={stream}:dedup:", server.url()),
        Queue::Nats { .. } | Queue::Postgres { .. } => unreachable!(),
    };
    two_replicas_and_two_workers(queue, Some(dedup)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_two_replicas_and_two_workers_process_each_delivery_once() {
    let Some(queue) = Queue::nats() else { return };
    // No shared dedup store: JetStream's Nats-Msg-Id (the dedup key) keeps one copy.
    two_replicas_and_two_workers(queue, None).await;
}

/// A worker killed (SIGKILL) while it processes events: the other takes them over once
/// their lease has expired, and the application gets every event.
async fn a_killed_worker_s_events_are_taken_over(queue: Queue) {
    let app = TestServer::start(|_, _| (200, "ok")).await;
    let url = queue.url();
    let dir = tempfile::tempdir().unwrap();
    let serve_args = queue.serve_args();
    let args: Vec<&str> = ["--secret", SECRET]
        .into_iter()
        .chain(serve_args.iter().map(String::as_str))
        .collect();
    let serve = Serve::start(dir.path(), &args);
    let started = tempfile::tempdir().unwrap();
    let stuck = format!(
        "touch '{}'/\"$HOOKGATE_EVENT_ID\"; sleep 10",
        started.path().display()
    );
    let short = ["--timeout", "2s", "--lease", "3s", "--retry-base", "10ms"];
    let mut doomed = Work::start(
        &[
            ["--queue", url.as_str(), "--exec", &stuck, "--workers", "4"].as_slice(),
            &short,
        ]
        .concat(),
    );
    let sent = send(&serve, &format!("kill-{:08x}", fastrand::u32(..))).await;
    assert_eq!(sent.code, 0, "{sent:?}");
    eventually(LIMIT, "the doomed worker started events", || {
        let any = std::fs::read_dir(started.path()).unwrap().next().is_some();
        async move { any.then_some(()) }
    })
    .await;
    doomed.kill();

    let forward = app.url("/events");
    let _rescuer = Work::start(
        &[
            [
                "--queue",
                url.as_str(),
                "--forward",
                &forward,
                "--workers",
                "4",
            ]
            .as_slice(),
            &short,
        ]
        .concat(),
    );
    eventually(LIMIT, "every event forwarded after the lease", || {
        let done = received(&app).len() >= N;
        async move { done.then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_a_killed_worker_s_events_are_taken_over_after_the_lease() {
    let Some(queue) = Queue::redis() else { return };
    a_killed_worker_s_events_are_taken_over(queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_a_killed_worker_s_events_are_taken_over_after_the_lease() {
    let Some(queue) = Queue::nats() else { return };
    a_killed_worker_s_events_are_taken_over(queue).await;
}

/// Events that keep failing become dead letters after --max-attempts; `hookgate
/// dead-letters` lists them and, once the cause is fixed, replays them, and they are
/// processed.
async fn failures_become_dead_letters_that_replay(queue: Queue) {
    let url = queue.url();
    let dir = tempfile::tempdir().unwrap();
    let serve_args = queue.serve_args();
    let args: Vec<&str> = ["--secret", SECRET]
        .into_iter()
        .chain(serve_args.iter().map(String::as_str))
        .collect();
    let serve = Serve::start(dir.path(), &args);
    let fixed = dir.path().join("fixed");
    let done = tempfile::tempdir().unwrap();
    // Fails until the `fixed` file exists; then records each event it processed.
    let command = format!(
        "test -f '{}' && touch '{}'/\"$HOOKGATE_DEDUP_KEY\"",
        fixed.display(),
        done.path().display()
    );
    let _worker = Work::start(&[
        "--queue",
        &url,
        "--exec",
        &command,
        "--max-attempts",
        "2",
        "--retry-base",
        "10ms",
        "--retry-cap",
        "50ms",
    ]);
    let sent = send(&serve, &format!("dead-{:08x}", fastrand::u32(..))).await;
    assert_eq!(sent.code, 0, "{sent:?}");
    let queue = &queue;
    let dead = eventually(LIMIT, "every event dead-lettered", || async move {
        let dead = queue.dead().await;
        (dead >= N as u64).then_some(dead)
    })
    .await;
    assert_eq!(dead, N as u64);

    let listed = hookgate(["dead-letters", "--queue", &url, "--json"]).await;
    assert_eq!(listed.code, 0, "{listed:?}");
    let letters: Vec<serde_json::Value> = listed
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(letters.len(), N, "{listed:?}");
    assert!(letters.iter().all(|l| l["attempts"] == 2), "{letters:?}");
    assert!(
        letters
            .iter()
            .all(|l| l["error"].as_str().unwrap().contains("exit")),
        "{letters:?}"
    );

    std::fs::write(&fixed, "").unwrap();
    let replayed = hookgate(["dead-letters", "--queue", &url, "--replay"]).await;
    assert_eq!(replayed.code, 0, "{replayed:?}");
    assert!(
        replayed.stdout.starts_with(&format!("{N} dead letter(s)")),
        "{replayed:?}"
    );
    eventually(LIMIT, "every replayed event processed", || {
        let processed = std::fs::read_dir(done.path()).unwrap().count();
        async move { (processed >= N).then_some(()) }
    })
    .await;
    assert_eq!(queue.dead().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_failures_become_dead_letters_that_replay() {
    let Some(queue) = Queue::redis() else { return };
    failures_become_dead_letters_that_replay(queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_failures_become_dead_letters_that_replay() {
    let Some(queue) = Queue::nats() else { return };
    failures_become_dead_letters_that_replay(queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_flags_are_usage_errors() {
    for (args, says) in [
        (vec!["--queue", "amqp://127.0.0.1/"], "redis://"),
        (
            vec![
                "--queue",
                "redis://127.0.0.1:9/",
                "--timeout",
                "30s",
                "--lease",
                "10s",
            ],
            "--lease must be longer",
        ),
        (
            vec!["--queue", "redis://127.0.0.1:9/", "--workers", "0"],
            "--workers",
        ),
    ] {
        let run = hookgate(["work"].into_iter().chain(args.iter().copied())).await;
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        assert!(run.stderr.contains(says), "{args:?}: {run:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_replicas_and_two_workers_process_each_delivery_once() {
    let Some(queue) = Queue::postgres() else {
        return;
    };
    // The store's primary key on the dedup key keeps one copy across replicas.
    two_replicas_and_two_workers(queue, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_killed_worker_s_events_are_taken_over_after_the_lease() {
    let Some(queue) = Queue::postgres() else {
        return;
    };
    a_killed_worker_s_events_are_taken_over(queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failures_become_dead_letters_that_replay() {
    let Some(queue) = Queue::postgres() else {
        return;
    };
    failures_become_dead_letters_that_replay(queue).await;
}

/// Replicas on one PostgreSQL store, each with its own worker (the default): every delivery
/// sent to both is stored once and forwarded once, with no Redis and no `hookgate work`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replicas_with_their_own_workers_forward_each_delivery_once() {
    let Some(queue) = Queue::postgres() else {
        return;
    };
    let app = TestServer::start(|_, _| (200, "ok")).await;
    let url = queue.url();
    let forward = app.url("/events");
    let args = ["--secret", SECRET, "--store", &url, "--forward", &forward];
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (
        Serve::start(dir_a.path(), &args),
        Serve::start(dir_b.path(), &args),
    );
    let id = format!("store-{:08x}", fastrand::u32(..));
    let (sent_a, sent_b) = tokio::join!(send(&a, &id), send(&b, &id));
    assert_eq!(sent_a.code, 0, "{sent_a:?}\n{}", a.stderr());
    assert_eq!(sent_b.code, 0, "{sent_b:?}\n{}", b.stderr());
    eventually(LIMIT, "every event forwarded", || {
        let done = received(&app).len() >= N;
        async move { done.then_some(()) }
    })
    .await;
    let store = queue.store().await;
    eventually(LIMIT, "every event marked processed", || {
        let store = store.clone();
        async move {
            let counts = store.status_counts().await.unwrap();
            (counts.get(hookgate_postgres::Status::Processed) == N as u64).then_some(())
        }
    })
    .await;
    let counts = received(&app);
    assert!(
        counts.values().all(|&n| n == 1),
        "each event once: {counts:?}"
    );
    assert_eq!(store.status_counts().await.unwrap().total(), N as u64);
    assert!(
        !dir_a.path().join("inbox.db").exists(),
        "nothing in a local inbox"
    );
}

/// `hookgate inbox --store postgres://…` reads and replays the store's event log as it does
/// a data directory's inbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_command_reads_and_replays_a_postgres_store() {
    let Some(queue) = Queue::postgres() else {
        return;
    };
    let url = queue.url();
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--secret",
        SECRET,
        "--store",
        &url,
        "--exec",
        "exit 1",
        "--max-attempts",
        "1",
    ];
    let serve = Serve::start(dir.path(), &args);
    let sent = send(&serve, &format!("log-{:08x}", fastrand::u32(..))).await;
    assert_eq!(sent.code, 0, "{sent:?}");
    let queue = &queue;
    let dead = eventually(LIMIT, "every event dead-lettered", || async move {
        let dead = queue.dead().await;
        (dead >= N as u64).then_some(dead)
    })
    .await;
    assert_eq!(dead, N as u64);

    let inbox = |extra: &[&str]| {
        let mut args = vec!["inbox", "--store", url.as_str()];
        args.extend_from_slice(extra);
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        async move { hookgate(&args).await }
    };
    let listed = inbox(&["list", "--json", "--all"]).await;
    assert_eq!(listed.code, 0, "{listed:?}");
    let events: Vec<serde_json::Value> = listed
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(events.len(), N);
    assert!(events.iter().all(|e| e["status"] == "dead"), "{events:?}");
    let first = events[0]["id"].as_i64().unwrap().to_string();

    let shown = inbox(&["show", &first, "--json"]).await;
    assert_eq!(shown.code, 0, "{shown:?}");
    let event: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    assert!(
        event["body"].as_str().unwrap().contains("hookgate.test"),
        "{event}"
    );
    assert_eq!(event["attempt_history"].as_array().unwrap().len(), 1);
    let text = inbox(&["show", &first]).await;
    assert!(text.stdout.contains("status: dead"), "{text:?}");

    let stats = inbox(&["stats", "--json"]).await;
    let stats: serde_json::Value = serde_json::from_str(&stats.stdout).unwrap();
    assert_eq!(stats["dead"], N as u64);
    assert_eq!(stats["total"], N as u64);

    let one = inbox(&["replay", &first]).await;
    assert!(
        one.stdout.starts_with("replayed 1 dead letter(s)"),
        "{one:?}"
    );
    // The replayed event is attempted again, fails again and is dead again.
    let store = queue.store().await;
    let id = hookgate_postgres::EventId::new(first.parse().unwrap());
    eventually(LIMIT, "the replayed event attempted again", || {
        let store = store.clone();
        async move {
            let entry = store.entry(id).await.unwrap().unwrap();
            let history = store.attempts(id).await.unwrap().len();
            (history == 2 && entry.status == hookgate_postgres::Status::Dead).then_some(())
        }
    })
    .await;
    let all = inbox(&["replay", "--dead"]).await;
    assert!(
        all.stdout
            .starts_with(&format!("replayed {N} dead letter(s)")),
        "{all:?}"
    );
    let missing = inbox(&["show", "999999"]).await;
    assert_eq!(missing.code, 2, "{missing:?}");
}

/// `--listen` serves /healthz and /metrics (with the workers' counters) next to the work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_are_served_with_listen() {
    let Some(queue) = Queue::redis() else { return };
    let url = queue.url();
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), &["--secret", SECRET, "--queue", &url]);
    let app = TestServer::start(|_, _| (200, "ok")).await;
    let forward = app.url("/events");
    let worker = Work::start(&[
        "--queue",
        &url,
        "--forward",
        &forward,
        "--listen",
        "127.0.0.1:0",
    ]);
    let addr: std::net::SocketAddr = eventually(LIMIT, "the health address", || {
        let stderr = worker.stderr();
        async move {
            stderr
                .lines()
                .find_map(|line| line.split("http://").nth(1))
                .and_then(|rest| rest.split('/').next())
                .and_then(|addr| addr.parse().ok())
        }
    })
    .await;
    let (status, body) = common::get(addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let sent = send(&serve, &format!("health-{:08x}", fastrand::u32(..))).await;
    assert_eq!(sent.code, 0, "{sent:?}");
    eventually(LIMIT, "every event forwarded", || {
        let done = received(&app).len() >= N;
        async move { done.then_some(()) }
    })
    .await;
    let (status, metrics) = common::get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("hookgate_process_attempts_total"),
        "{metrics}"
    );
    let (status, _) = common::get(addr, "/nothing").await;
    assert_eq!(status, 404);
}
