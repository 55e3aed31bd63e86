//! The load generator: keep-alive HTTP/1.1 connections, each sending freshly signed
//! deliveries back to back for a fixed time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookgate::{SchemeId, SignRequest, Signer};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{BODY_BYTES, SECRET};

/// How one run drives a server.
#[derive(Debug, Clone, Copy)]
pub struct LoadConfig {
    /// Concurrent keep-alive connections.
    pub connections: usize,
    /// Requests sent before measuring (not recorded).
    pub warm_up: Duration,
    /// How long requests are recorded.
    pub measure: Duration,
}

/// What all connections of one run recorded.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Latencies of successful requests, in microseconds.
    pub latencies_us: Vec<u64>,
    /// Failed requests (transport errors or a status other than 200).
    pub errors: u64,
}

/// Drives `addr` with `config.connections` connections; every request is a new delivery
/// (unique `webhook-id`, signed now) of a 1 KiB body.
///
/// # Errors
/// When the signer cannot be built.
pub async fn drive(
    addr: SocketAddr,
    config: LoadConfig,
) -> Result<Recorded, Box<dyn std::error::Error + Send + Sync>> {
    let signer = Arc::new(Signer::new(SchemeId::StandardWebhooksV1, SECRET)?);
    let body = Bytes::from(crate::payload(BODY_BYTES));
    let start = Instant::now();
    let record_from = start.checked_add(config.warm_up).unwrap_or(start);
    let stop_at = record_from
        .checked_add(config.measure)
        .unwrap_or(record_from);
    let mut tasks = Vec::with_capacity(config.connections);
    for connection in 0..config.connections {
        let signer = Arc::clone(&signer);
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            connection_loop(addr, connection, &signer, body, record_from, stop_at).await
        }));
    }
    let mut recorded = Recorded::default();
    for task in tasks {
        let one = task.await.unwrap_or_default();
        recorded.latencies_us.extend(one.latencies_us);
        recorded.errors = recorded.errors.saturating_add(one.errors);
    }
    recorded.latencies_us.sort_unstable();
    Ok(recorded)
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Option<Sender> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Some(sender)
}

async fn connection_loop(
    addr: SocketAddr,
    connection: usize,
    signer: &Signer,
    body: Bytes,
    record_from: Instant,
    stop_at: Instant,
) -> Recorded {
    let mut recorded = Recorded::default();
    let mut sender: Option<Sender> = None;
    let mut sequence: u64 = 0;
    while Instant::now() < stop_at {
        sequence = sequence.wrapping_add(1);
        let Some(request) = delivery(signer, &body, connection, sequence) else {
            recorded.errors = recorded.errors.saturating_add(1);
            continue;
        };
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            sender = connect(addr).await;
        }
        let Some(active) = sender.as_mut() else {
            recorded.errors = recorded.errors.saturating_add(1);
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let sent = Instant::now();
        let ok = match active.ready().await {
            Ok(()) => match active.send_request(request).await {
                Ok(response) => {
                    let status = response.status();
                    let drained = response.into_body().collect().await.is_ok();
                    drained && status == http::StatusCode::OK
                }
                Err(_) => false,
            },
            Err(_) => false,
        };
        if !ok {
            sender = None;
        }
        if sent >= record_from {
            if ok {
                let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                recorded.latencies_us.push(micros);
            } else {
                recorded.errors = recorded.errors.saturating_add(1);
            }
        }
    }
    recorded
}

fn delivery(
    signer: &Signer,
    body: &Bytes,
    connection: usize,
    sequence: u64,
) -> Option<http::Request<Full<Bytes>>> {
    let signed = signer
        .sign(&SignRequest::new(body.clone()).id(format!(
            "msg_load_{}_{connection}_{sequence}",
            std::process::id()
        )))
        .ok()?;
    let mut builder = http::Request::post("/webhooks")
        .header(http::header::HOST, "127.0.0.1")
        .header(http::header::CONTENT_TYPE, "application/json");
    for (name, value) in &signed.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    builder.body(Full::new(signed.body)).ok()
}
