//! The console as processes: `hookgate serve --console` on the receiver's listener or its
//! own, and `hookgate console` over a data directory, each behind the token.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{BIN, Serve, eventually, hookgate};

const TOKEN: &str = "process-test-console-token";

/// A GET with optional Bearer token: (status, body).
async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n")
                .as_bytes(),
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

async fn send_some(serve: &Serve, count: &str) {
    let run = hookgate([
        "send",
        &serve.url("/webhooks"),
        "--secret",
        &serve.generated_secret(),
        "--count",
        count,
        "-q",
    ])
    .await;
    assert_eq!(run.code, 0, "{run:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_console_is_off_by_default_and_behind_the_generated_token() {
    let dir = tempfile::tempdir().unwrap();
    let plain = Serve::start(&dir.path().join("plain"), &[]);
    let (status, _) = get(plain.addr, "/_hookgate/events", None).await;
    assert_eq!(status, 404, "no console without --console");
    drop(plain);

    let serve = Serve::start(&dir.path().join("data"), &["--console"]);
    let token = std::fs::read_to_string(serve.data_dir.join("console-token")).unwrap();
    let token = token.trim();
    assert!(
        serve.stderr().contains(token),
        "the generated token is printed"
    );
    send_some(&serve, "3").await;
    let (status, body) = get(serve.addr, "/_hookgate/api/events", None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = get(serve.addr, "/_hookgate/api/events", Some(token)).await;
    assert_eq!(status, 200, "{body}");
    let value: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(value["events"].as_array().unwrap().len(), 3);
    // The receiver still answers as before.
    let (status, _) = get(serve.addr, "/healthz", None).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_console_listen_puts_it_on_its_own_address() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(
        &dir.path().join("data"),
        &[
            "--console",
            "--console-listen",
            "127.0.0.1:0",
            "--console-token",
            TOKEN,
        ],
    );
    let console: SocketAddr = serve
        .stderr()
        .lines()
        .find_map(|l| l.strip_prefix("console listening on "))
        .expect("the console's address")
        .parse()
        .unwrap();
    assert!(
        !serve.data_dir.join("console-token").exists(),
        "the flag's token is used"
    );
    let (status, _) = get(serve.addr, "/_hookgate/api/stats", Some(TOKEN)).await;
    assert_eq!(status, 404, "not on the receiver's listener");
    let (status, body) = get(console, "/_hookgate/api/stats", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = get(console, "/webhooks", None).await;
    assert_eq!(status, 404, "the console listener serves only the console");
    // A short token is a configuration error.
    let run = hookgate([
        "serve",
        "--console",
        "--console-token",
        "short",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().join("other").to_str().unwrap(),
    ])
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("at least 16"), "{}", run.stderr);
    // An endpoint cannot sit where the console lives.
    let run = hookgate([
        "serve",
        "--console",
        "--path",
        "/_hookgate/hooks",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().join("third").to_str().unwrap(),
    ])
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stderr.contains("where --console lives"),
        "{}",
        run.stderr
    );
}

/// The address a `hookgate console` prints on its `listening on` line.
fn listening_on(stderr: std::process::ChildStderr) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.strip_prefix("listening on ") {
                let _ = tx.send(addr.to_owned());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("hookgate console prints `listening on`")
        .parse()
        .unwrap()
}

/// `hookgate console`, killed on drop.
struct ConsoleProcess(Child);

impl Drop for ConsoleProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hookgate_console_shows_a_data_directory_without_a_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    {
        let serve = Serve::start(&data, &[]);
        send_some(&serve, "2").await;
        eventually(Duration::from_secs(60), "two events stored", || async {
            (common::inbox_list(&data, &[]).await.len() == 2).then_some(())
        })
        .await;
    }
    let mut child = Command::new(BIN)
        .args(["console", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .args(["--console-token", TOKEN])
        .env_remove("HOOKGATE_CONSOLE_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let process = ConsoleProcess(child);
    let addr = listening_on(stderr);
    let (status, _) = get(addr, "/_hookgate/events", None).await;
    assert_eq!(status, 401);
    let (status, page) = get(addr, "/_hookgate/events?refresh=0", Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert_eq!(page.matches("<tr data-id=").count(), 2, "{page}");
    let (_, page) = get(addr, "/_hookgate/rejections", Some(TOKEN)).await;
    assert!(page.contains("hookgate serve --console"), "{page}");
    drop(process);

    // --store names one inbox file instead.
    let mut child = Command::new(BIN)
        .args(["console", "--listen", "127.0.0.1:0", "--store"])
        .arg(format!("sqlite://{}", data.join("inbox.db").display()))
        .args(["--console-token", TOKEN])
        .env_remove("HOOKGATE_CONSOLE_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let process = ConsoleProcess(child);
    let addr = listening_on(stderr);
    let (status, body) = get(addr, "/_hookgate/api/stats", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["total"],
        2
    );
    drop(process);

    let run = hookgate([
        "console",
        "--data-dir",
        dir.path().join("empty").to_str().unwrap(),
        "--console-token",
        TOKEN,
    ])
    .await;
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("no inbox"), "{}", run.stderr);
}

/// `hookgate console --store postgres://…` shows the store a fleet of `serve --store`
/// replicas writes to, without a receiver of its own; its generated token is kept in
/// --data-dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hookgate_console_shows_a_postgres_store_without_a_receiver() {
    let Some(postgres) = hookgate_testkit::Postgres::start() else {
        return;
    };
    let url = postgres.url();
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&dir.path().join("data"), &["--store", &url]);
    send_some(&serve, "3").await;
    let token_dir = dir.path().join("console");
    let mut child = Command::new(BIN)
        .args(["console", "--listen", "127.0.0.1:0", "--store", &url])
        .arg("--data-dir")
        .arg(&token_dir)
        .env_remove("HOOKGATE_CONSOLE_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let process = ConsoleProcess(child);
    let addr = listening_on(stderr);
    let token = std::fs::read_to_string(token_dir.join("console-token")).unwrap();
    let token = token.trim();
    let (status, _) = get(addr, "/_hookgate/events", None).await;
    assert_eq!(status, 401);
    let (status, body) = get(addr, "/_hookgate/api/stats", Some(token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["total"],
        3
    );
    let (status, page) = get(addr, "/_hookgate/events?refresh=0", Some(token)).await;
    assert_eq!(status, 200);
    assert_eq!(page.matches("<tr data-id=").count(), 3, "{page}");
    // The endpoint is named after the store's schema.
    assert!(page.contains("<code>hookgate</code>"), "{page}");
    // The receiver's console shows the same store.
    drop(process);
    drop(serve);
    let serve = Serve::start(
        &dir.path().join("data"),
        &["--store", &url, "--console", "--console-token", TOKEN],
    );
    let (status, body) = get(serve.addr, "/_hookgate/api/events", Some(TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    let events = serde_json::from_str::<serde_json::Value>(&body).unwrap();
    assert_eq!(events["events"].as_array().unwrap().len(), 3, "{events}");
}
