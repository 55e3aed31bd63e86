//! Shared by the end-to-end tests: running the binary, a `hookgate serve` process that is
//! killed on drop, bounded polling, and small in-test HTTP servers.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::convert::Infallible;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

pub const BIN: &str = env!("CARGO_BIN_EXE_hookgate");

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `hookgate` to completion (without blocking the async runtime's other tasks).
pub async fn hookgate<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let output = tokio::process::Command::new(BIN)
        .args(args)
        .env_remove("HOOKGATE_SECRET")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run hookgate");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A running `hookgate serve`, killed when dropped. Its stdout and stderr are drained into
/// memory so the process never blocks on a full pipe.
pub struct Serve {
    child: Child,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Serve {
    /// Starts `hookgate serve --listen 127.0.0.1:0 --data-dir DIR ARGS…` and waits for its
    /// `listening on ADDR` line.
    pub fn start(data_dir: &Path, args: &[&str]) -> Serve {
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env_remove("HOOKGATE_SECRET")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hookgate serve");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        drain(child.stdout.take().unwrap(), Arc::clone(&stdout));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let stderr_buf = Arc::clone(&stderr);
            let pipe = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(pipe);
                let mut line = String::new();
                while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                    if let Some(addr) = line.trim().strip_prefix("listening on ") {
                        let _ = tx.send(addr.to_owned());
                    }
                    stderr_buf.lock().unwrap().push_str(&line);
                    line.clear();
                }
            });
        }
        let addr = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(addr) => addr.parse().expect("a socket address"),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "hookgate serve did not print `listening on`: {}",
                    stderr.lock().unwrap()
                );
            }
        };
        Serve {
            child,
            addr,
            data_dir: data_dir.to_owned(),
            stdout,
            stderr,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The secret a first run generated.
    pub fn generated_secret(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("secret"))
            .expect("a generated secret")
            .trim()
            .to_owned()
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the process to exit by itself, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `hookgate work`, killed (SIGKILL) when dropped.
pub struct Work {
    child: Child,
    stderr: Arc<Mutex<String>>,
}

impl Work {
    /// Starts `hookgate work ARGS…` and waits for its `working on` line.
    pub fn start(args: &[&str]) -> Work {
        let mut child = Command::new(BIN)
            .arg("work")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hookgate work");
        let stdout = Arc::new(Mutex::new(String::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        drain(child.stdout.take().unwrap(), stdout);
        drain(child.stderr.take().unwrap(), Arc::clone(&stderr));
        let deadline = Instant::now() + Duration::from_secs(120);
        while !stderr.lock().unwrap().contains("working on") {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "hookgate work exited ({status}): {}",
                    stderr.lock().unwrap()
                );
            }
            assert!(
                Instant::now() < deadline,
                "hookgate work did not start: {}",
                stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Work { child, stderr }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown, the events in progress are abandoned.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit by itself, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        self.kill();
    }
}

fn drain(mut pipe: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => into
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    });
}

/// Polls `check` until it returns `Some`, at most `limit`; panics with `what` otherwise.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The events of `hookgate inbox list --json --all` (extra arguments before it).
pub async fn inbox_list(data_dir: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec![
        "inbox".to_owned(),
        "--data-dir".to_owned(),
        data_dir.display().to_string(),
        "list".to_owned(),
        "--json".to_owned(),
        "--all".to_owned(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let run = hookgate(&args).await;
    assert_eq!(run.code, 0, "{run:?}");
    run.stdout
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

/// A request as an in-test server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// A tiny HTTP server in the test: `answer` decides each response from the request number
/// (from 0) and the request; every request is recorded.
pub struct TestServer {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start<F>(answer: F) -> TestServer
    where
        F: Fn(usize, &Seen) -> (u16, &'static str) + Send + Sync + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let count = Arc::new(AtomicUsize::new(0));
        let answer = Arc::new(answer);
        let task = {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let seen = Arc::clone(&seen);
                    let count = Arc::clone(&count);
                    let answer = Arc::clone(&answer);
                    let service = service_fn(move |request: Request<Incoming>| {
                        let seen = Arc::clone(&seen);
                        let count = Arc::clone(&count);
                        let answer = Arc::clone(&answer);
                        async move {
                            let path = request.uri().path().to_owned();
                            let (parts, body) = request.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let request = Seen {
                                path,
                                headers: parts.headers,
                                body,
                            };
                            let n = count.fetch_add(1, Ordering::SeqCst);
                            let (status, text) = answer(n, &request);
                            seen.lock().unwrap().push(request);
                            let mut response =
                                Response::new(Full::new(Bytes::from_static(text.as_bytes())));
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
            })
        };
        TestServer { addr, seen, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A plain HTTP/1.1 GET over a fresh connection: (status, body).
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}
