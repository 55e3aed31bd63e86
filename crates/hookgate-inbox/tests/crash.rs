//! Crash safety, proven: a receiver process (the Gate in front of the inbox, and a worker)
//! is killed with SIGKILL several times at random moments while concurrent senders deliver
//! a few thousand signed webhooks; every delivery without a 2xx is sent again, as a real
//! sender would. At the end every delivery that got a 2xx is in the inbox exactly once and
//! every event was handed to the handler at least once.
//!
//! The receiver is this same test binary, started again with `HOOKGATE_INBOX_CRASH_CHILD`
//! set: then [`crash_receiver_child_process`] turns into the server instead of returning.
//! That keeps the server's HTTP dependencies in dev-dependencies.
//!
//! Set `HOOKGATE_CRASH_SEED` to replay a run's kill schedule.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::SECRET;
use hookgate::{SchemeId, SignRequest, Signer, Verifier};
use hookgate_inbox::{Inbox, InboxEvent, LogQuery, Status, Worker};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CHILD_ENV: &str = "HOOKGATE_INBOX_CRASH_CHILD";
const CHILD_TEST: &str = "crash_receiver_child_process";
const DELIVERIES: usize = 2400;
const SENDERS: usize = 16;
const KILLS: usize = 5;
/// Hang guard for the whole run; not a performance target.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// Not a test by itself: the entry point of the receiver process that the crash test
/// starts (and kills). Without `HOOKGATE_INBOX_CRASH_CHILD` it returns at once.
#[test]
fn crash_receiver_child_process() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(receiver::serve(PathBuf::from(dir)));
}

mod receiver {
    use std::convert::Infallible;
    use std::fs::OpenOptions;

    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    use super::*;

    /// Serves until killed: POST any path = a delivery through the gate; GET /stats = the
    /// inbox's status counts.
    pub(super) async fn serve(dir: PathBuf) {
        let inbox = Inbox::builder(dir.join("inbox.db")).open().unwrap();
        let verifier = Verifier::builder(SchemeId::StandardWebhooksV1)
            .secret(SECRET)
            .build()
            .unwrap();
        let gate = inbox.gate(verifier).build().unwrap();

        // The handler appends the delivery id to a log (one write(2) per call, so a line
        // is never torn by SIGKILL) and takes a moment, so kills land mid-processing.
        let log = Arc::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("handled.log"))
                .unwrap(),
        );
        let handler = move |event: InboxEvent| {
            let log = log.clone();
            async move {
                let line = format!("{}\n", event.delivery_id().unwrap_or("?"));
                (&*log).write_all(line.as_bytes())?;
                tokio::time::sleep(Duration::from_millis(fastrand::u64(0..4))).await;
                Ok::<(), std::io::Error>(())
            }
        };
        let _worker = Worker::builder(inbox.clone(), handler)
            .concurrency(8)
            .lease(Duration::from_millis(500))
            .poll_interval(Duration::from_millis(25))
            .start()
            .unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let announced = dir.join(format!("port.{}", std::process::id()));
        std::fs::write(&announced, port.to_string()).unwrap();
        std::fs::rename(&announced, dir.join("port")).unwrap();

        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (gate, inbox) = (gate.clone(), inbox.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let (gate, inbox) = (gate.clone(), inbox.clone());
                    async move {
                        let (parts, body) = request.into_parts();
                        if parts.uri.path() == "/stats" {
                            let counts = inbox.status_counts().await.unwrap();
                            let text = format!("{} {}", counts.processed, counts.total());
                            return Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
                                text,
                            ))));
                        }
                        let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
                            let mut response = Response::new(Full::new(Bytes::new()));
                            *response.status_mut() = StatusCode::BAD_REQUEST;
                            return Ok(response);
                        };
                        let outcome = gate.receive(&parts.headers, body, None).await;
                        let mut response = Response::new(Full::new(outcome.body_bytes()));
                        *response.status_mut() = outcome.status_code();
                        Ok(response)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
}

/// The receiver process; killed with SIGKILL when dropped.
struct Receiver {
    child: Child,
    port: u16,
}

impl Receiver {
    async fn start(dir: &Path) -> Receiver {
        let port_file = dir.join("port");
        let _ = std::fs::remove_file(&port_file);
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut receiver = Receiver { child, port: 0 };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                receiver.port = text.trim().parse().unwrap();
                return receiver;
            }
            if let Some(status) = receiver.child.try_wait().unwrap() {
                panic!("the receiver exited on start: {status}");
            }
            assert!(Instant::now() < deadline, "the receiver did not start");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// SIGKILL: no destructor, no flush, no graceful shutdown.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One HTTP/1.1 exchange on a fresh connection: the status and the body.
async fn exchange(port: u16, request: &[u8]) -> std::io::Result<(u16, String)> {
    let io = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(request).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(20), io)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {text:?}")))?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    Ok((status, body))
}

fn http_request(method: &str, path: &str, headers: &[(String, String)], body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    request
}

/// What the senders share.
struct Traffic {
    requests: Vec<Vec<u8>>,
    pending: Mutex<VecDeque<usize>>,
    acked: Vec<AtomicBool>,
    ack_count: AtomicUsize,
    port: AtomicU16,
    sends: AtomicU64,
    refused: AtomicU64,
    broken: AtomicU64,
    duplicate_answers: AtomicU64,
}

async fn sender(traffic: Arc<Traffic>) {
    loop {
        let next = traffic.pending.lock().unwrap().pop_front();
        let Some(index) = next else {
            if traffic.ack_count.load(Ordering::SeqCst) == DELIVERIES {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        let port = traffic.port.load(Ordering::SeqCst);
        traffic.sends.fetch_add(1, Ordering::Relaxed);
        match exchange(port, &traffic.requests[index]).await {
            Ok((status, body)) if (200..300).contains(&status) => {
                assert!(
                    !traffic.acked[index].swap(true, Ordering::SeqCst),
                    "a delivery was acknowledged twice to the same sender"
                );
                traffic.ack_count.fetch_add(1, Ordering::SeqCst);
                if body == "duplicate" {
                    traffic.duplicate_answers.fetch_add(1, Ordering::Relaxed);
                }
            }
            outcome => {
                // No 2xx: the sender keeps the delivery and tries again later.
                match outcome {
                    Ok(_) => traffic.refused.fetch_add(1, Ordering::Relaxed),
                    Err(_) => traffic.broken.fetch_add(1, Ordering::Relaxed),
                };
                traffic.pending.lock().unwrap().push_back(index);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_delivery_survives_sigkill() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return;
    }
    let started = Instant::now();
    let seed = std::env::var("HOOKGATE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = tempfile::tempdir().unwrap();

    let signer = Signer::new(SchemeId::StandardWebhooksV1, SECRET).unwrap();
    let requests = (0..DELIVERIES)
        .map(|n| {
            let id = format!("msg_{n:05}");
            let body = format!(r#"{{"type":"load.test","data":{{"n":{n}}}}}"#);
            let delivery = signer
                .sign(&SignRequest::new(body).id(&id).event_type("load.test"))
                .unwrap();
            http_request("POST", "/webhook", &delivery.headers, &delivery.body)
        })
        .collect();
    let traffic = Arc::new(Traffic {
        requests,
        pending: Mutex::new((0..DELIVERIES).collect()),
        acked: (0..DELIVERIES).map(|_| AtomicBool::new(false)).collect(),
        ack_count: AtomicUsize::new(0),
        port: AtomicU16::new(0),
        sends: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        broken: AtomicU64::new(0),
        duplicate_answers: AtomicU64::new(0),
    });

    let mut receiver = Receiver::start(dir.path()).await;
    traffic.port.store(receiver.port, Ordering::SeqCst);
    let senders: Vec<_> = (0..SENDERS)
        .map(|_| tokio::spawn(sender(traffic.clone())))
        .collect();

    // Kill at random points of the run: after a random share of the deliveries was
    // acknowledged, plus a random delay, so kills hit requests and handlers mid-flight.
    let mut kill_points: Vec<usize> = (0..KILLS)
        .map(|_| rng.usize(DELIVERIES / 10..DELIVERIES * 9 / 10))
        .collect();
    kill_points.sort_unstable();
    let mut kills = 0;
    for point in &kill_points {
        while traffic.ack_count.load(Ordering::SeqCst) < *point {
            assert!(started.elapsed() < RUN_LIMIT, "the run hung");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(0..40))).await;
        receiver.kill();
        kills += 1;
        receiver = Receiver::start(dir.path()).await;
        traffic.port.store(receiver.port, Ordering::SeqCst);
    }
    for sender in senders {
        sender.await.unwrap();
    }
    assert_eq!(traffic.ack_count.load(Ordering::SeqCst), DELIVERIES);

    // Let the last receiver's worker finish every event (including those whose handler
    // was running when a process died: their leases expire and they are taken again).
    let stats = http_request("GET", "/stats", &[], b"");
    loop {
        assert!(started.elapsed() < RUN_LIMIT, "processing hung");
        if let Ok((200, body)) = exchange(receiver.port, &stats).await {
            let mut numbers = body.split(' ').map(|n| n.parse::<usize>().unwrap());
            let (processed, total) = (numbers.next().unwrap(), numbers.next().unwrap());
            if processed == DELIVERIES && total == DELIVERIES {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    receiver.kill();
    drop(receiver);

    // Every acknowledged delivery is in the inbox, exactly once, processed.
    let inbox = Inbox::builder(dir.path().join("inbox.db"))
        .no_scheduled_pruning()
        .open()
        .unwrap();
    let entries = inbox
        .query(LogQuery::new().include_test(true).limit(10_000))
        .await
        .unwrap();
    let mut stored: HashMap<String, usize> = HashMap::new();
    for entry in &entries {
        assert_eq!(entry.status, Status::Processed);
        *stored
            .entry(entry.delivery_id.clone().unwrap())
            .or_default() += 1;
    }
    for (n, acked) in traffic.acked.iter().enumerate() {
        let id = format!("msg_{n:05}");
        assert!(acked.load(Ordering::SeqCst));
        assert_eq!(
            stored.get(&id),
            Some(&1),
            "{id} must be stored exactly once"
        );
    }
    assert_eq!(entries.len(), DELIVERIES, "no event was enqueued twice");

    // Every event was handed to the handler at least once; count the repeats.
    let log = std::fs::read_to_string(dir.path().join("handled.log")).unwrap();
    let mut calls: HashMap<&str, usize> = HashMap::new();
    for line in log.lines().filter(|line| !line.is_empty()) {
        *calls.entry(line).or_default() += 1;
    }
    for id in stored.keys() {
        assert!(calls.contains_key(id.as_str()), "{id} was never handled");
    }
    assert_eq!(calls.len(), DELIVERIES);
    let handler_calls: usize = calls.values().sum();
    let repeats = handler_calls - DELIVERIES;
    let repeated_events = calls.values().filter(|n| **n > 1).count();
    let extra_attempts: u64 = entries.iter().map(|e| u64::from(e.attempts) - 1).sum();

    println!(
        "crash test (seed {seed}): {DELIVERIES} deliveries from {SENDERS} concurrent senders, \
         {kills} SIGKILLs at {kill_points:?} acknowledged; {} HTTP sends ({} refused with \
         non-2xx, {} broken connections), {} re-sends answered `duplicate` (stored before a \
         kill, answer lost); {handler_calls} handler calls, {repeats} repeats caused by the \
         crashes over {repeated_events} events ({extra_attempts} extra attempts counted); \
         {:.1} s",
        traffic.sends.load(Ordering::Relaxed),
        traffic.refused.load(Ordering::Relaxed),
        traffic.broken.load(Ordering::Relaxed),
        traffic.duplicate_answers.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64(),
    );
    assert_eq!(kills, KILLS);
}
