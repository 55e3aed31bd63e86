//! `hookgate serve` against slow and abusive clients, over raw sockets: slow headers, a
//! trickled body, too many connections or requests, oversized bodies with and without
//! Content-Length. Each test asserts the status the client reads and that nothing was
//! stored. No timed assertions: every wait is bounded, and the limits under test are set
//! small so the waits are short.

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
use std::path::Path;
use std::time::Duration;

use common::{Serve, inbox_list};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// The most any one wait in these tests may take.
const BOUND: Duration = Duration::from_secs(60);

/// Reads what the server sends until it closes the connection (or `BOUND` passes).
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(BOUND, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server did not close the connection");
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status line's code of a raw HTTP answer.
fn status_of(answer: &str) -> Option<u16> {
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
}

fn head(content_length: Option<usize>) -> String {
    let length = match content_length {
        Some(n) => format!("content-length: {n}\r\n"),
        None => "transfer-encoding: chunked\r\n".to_owned(),
    };
    format!(
        "POST /webhooks HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         webhook-id: msg_1\r\nwebhook-timestamp: 1700000000\r\nwebhook-signature: v1,AAAA\r\n{length}\r\n"
    )
}

async fn nothing_stored(dir: &Path) {
    let events = inbox_list(dir, &[]).await;
    assert!(events.is_empty(), "nothing is stored: {events:?}");
}

fn serve(dir: &Path, extra: &[&str]) -> Serve {
    let mut args = vec!["--secret", SECRET];
    args.extend_from_slice(extra);
    Serve::start(dir, &args)
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sending_its_headers_slowly_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve(dir.path(), &["--header-timeout", "1s"]);
    let mut stream = connect(serve.addr).await;
    let (mut reader, mut writer) = stream.split();
    let trickle = async {
        writer.write_all(b"POST /webhooks HTTP/1.1\r\n").await?;
        for i in 0..120 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            writer
                .write_all(format!("x-slow-{i}: 1\r\n").as_bytes())
                .await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let mut answer = Vec::new();
    let closed = async {
        let _ = reader.read_to_end(&mut answer).await;
    };
    tokio::select! {
        () = closed => {}
        result = trickle => panic!("the server let 60 s of header lines in: {result:?}"),
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || status_of(&answer) == Some(408),
        "closed without an answer, or with 408: {answer}"
    );
    nothing_stored(dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_body_gets_408_and_the_connection_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve(dir.path(), &["--body-timeout", "1s"]);
    let mut stream = connect(serve.addr).await;
    let (mut reader, mut writer) = stream.split();
    let trickle = async {
        writer.write_all(head(Some(100_000)).as_bytes()).await?;
        for _ in 0..600 {
            writer.write_all(b"x").await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok::<_, std::io::Error>(())
    };
    let mut answer = Vec::new();
    let closed = async {
        let _ = reader.read_to_end(&mut answer).await;
    };
    tokio::select! {
        () = closed => {}
        // Writing fails once the server closed; what it answered is read below.
        _ = trickle => {}
    }
    let _ = tokio::time::timeout(BOUND, reader.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status_of(&answer), Some(408), "{answer}");
    assert!(answer.contains("body_timeout"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    nothing_stored(dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_get_503_with_retry_after_and_a_slot_frees_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve(dir.path(), &["--max-connections", "2"]);
    // Two idle connections hold both slots.
    let first = connect(serve.addr).await;
    let second = connect(serve.addr).await;

    let mut third = connect(serve.addr).await;
    third.write_all(head(Some(2)).as_bytes()).await.ok();
    third.write_all(b"{}").await.ok();
    let answer = read_until_closed(&mut third).await;
    assert_eq!(status_of(&answer), Some(503), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(answer.contains("over_capacity"), "{answer}");

    // Closing one frees its slot: a request is then answered by the gate (401: the
    // signature is forged), once the server has seen the close.
    drop(first);
    let mut status = None;
    for _ in 0..200 {
        let mut next = connect(serve.addr).await;
        next.write_all(head(Some(2)).as_bytes()).await.ok();
        next.write_all(b"{}").await.ok();
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(BOUND, next.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        status = status_of(&String::from_utf8_lossy(&buf[..n]));
        if status != Some(503) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, Some(401));
    drop(second);
    nothing_stored(dir.path()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_the_in_flight_cap_get_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve(
        dir.path(),
        &["--max-in-flight", "1", "--body-timeout", "30s"],
    );
    // A request whose body never completes holds the only in-flight permit. Until it is
    // being answered, another request may still pass; and if another request reaches the
    // cap first, the holder itself is refused (it is then answered), and a new holder
    // takes its place. Once the holder is in flight, the next request gets 503.
    let mut holder = start_request(serve.addr, 10, b"{").await;
    let mut refused = None;
    for _ in 0..200 {
        if was_answered(&holder) {
            holder = start_request(serve.addr, 10, b"{").await;
        }
        let mut other = start_request(serve.addr, 2, b"{}").await;
        let answer = read_first_answer(&mut other).await;
        if status_of(&answer) == Some(503) {
            refused = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = refused.expect("a request over the in-flight cap is refused");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    assert!(answer.contains("over_capacity"), "{answer}");
    drop(holder);
    nothing_stored(dir.path()).await;
}

/// A connection whose request declares `declared` bytes of body and sends `sent`.
async fn start_request(addr: SocketAddr, declared: usize, sent: &[u8]) -> TcpStream {
    let mut stream = connect(addr).await;
    stream
        .write_all(head(Some(declared)).as_bytes())
        .await
        .unwrap();
    stream.write_all(sent).await.unwrap();
    stream
}

/// Whether the server has answered (or closed) `stream`, without waiting.
fn was_answered(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 1];
    !matches!(stream.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Reads one answer's head and body start (up to what arrives in one read).
async fn read_first_answer(stream: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(BOUND, stream.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A client that writes its whole (declared, oversized) body before reading, as most HTTP
/// clients do, still reads the 413: the server lingers instead of resetting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_declared_body_gets_413_that_a_writing_client_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve(dir.path(), &["--max-body", "1024"]);
    // More than the kernel buffers on both sides hold, so the server must read it.
    let size = 16 * 1024 * 1024;
    let mut stream = connect(serve.addr).await;
    stream.write_all(head(Some(size)).as_bytes()).await.unwrap();
    let body = vec![b'x'; size];
    let written = stream.write_all(&body).await;
    assert!(written.is_ok(), "the body could be written: {written:?}");
    let answer = read_until_closed(&mut stream).await;
    assert_eq!(status_of(&answer), Some(413), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
    nothing_stored(dir.path()).await;
}

/// The same with a chunked body: 413 once the limit is passed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_chunked_body_gets_413_that_a_writing_client_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let serve = serve(dir.path(), &["--max-body", "1024"]);
    let mut stream = connect(serve.addr).await;
    stream.write_all(head(None).as_bytes()).await.unwrap();
    let chunk = format!("400\r\n{}\r\n", "x".repeat(0x400));
    let mut written = Ok(());
    for _ in 0..16 * 1024 {
        written = stream.write_all(chunk.as_bytes()).await;
        if written.is_err() {
            break;
        }
    }
    if written.is_ok() {
        written = stream.write_all(b"0\r\n\r\n").await;
    }
    assert!(written.is_ok(), "the body could be written: {written:?}");
    let answer = read_until_closed(&mut stream).await;
    assert_eq!(status_of(&answer), Some(413), "{answer}");
    assert!(answer.contains("body_too_large"), "{answer}");
    nothing_stored(dir.path()).await;
}

/// Limits of zero would refuse everything: they are rejected at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_limits_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        ["--max-connections", "0"],
        ["--max-in-flight", "0"],
        ["--body-timeout", "0s"],
    ] {
        let run = common::hookgate(
            [
                "serve",
                "--data-dir",
                dir.path().to_str().unwrap(),
                "--secret",
                SECRET,
            ]
            .into_iter()
            .chain(args),
        )
        .await;
        assert_ne!(run.code, 0, "{args:?}: {run:?}");
        assert!(
            run.stderr.contains("must"),
            "{args:?} names the problem: {run:?}"
        );
    }
}
