//! What the integration tests share: signed deliveries, gates with controllable parts, a
//! handler that echoes what it was given, and bodies without a known length.

#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hookgate::dedup::{Claim, DedupError, KeyState};
use hookgate::sink::ChannelReceiver;
use hookgate::sink::SinkError;
use hookgate::{
    BoxFuture, ChannelSink, DedupStore, FixedClock, Gate, MemoryDedupStore, SchemeId, SignRequest,
    Signer, Sink, VerifiedEvent, Verifier,
};
use hookgate_tower::RawBody;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const NOW: i64 = 1_700_000_000;
/// A small limit, so that bodies around it fit in one socket read.
pub const LIMIT: usize = 1024;

pub fn verifier() -> Verifier {
    Verifier::builder(SchemeId::StandardWebhooksV1)
        .secret(SECRET)
        .clock(FixedClock::from_unix(NOW.unsigned_abs()))
        .build()
        .unwrap()
}

/// A delivery signed at `timestamp`.
pub struct Delivery {
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub id: String,
}

impl Delivery {
    pub fn new(id: &str, body: impl Into<Bytes>) -> Self {
        Delivery::at(id, body, NOW)
    }

    pub fn at(id: &str, body: impl Into<Bytes>, timestamp: i64) -> Self {
        let signed = Signer::new(SchemeId::StandardWebhooksV1, SECRET)
            .unwrap()
            .sign(&SignRequest::new(body).id(id).timestamp(timestamp))
            .unwrap();
        Delivery {
            headers: signed.headers,
            body: signed.body,
            id: id.to_owned(),
        }
    }

    /// A body of exactly `len` bytes (valid JSON) signed as delivery `id`.
    pub fn sized(id: &str, len: usize) -> Self {
        let filler = len.checked_sub(10).unwrap();
        let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(filler));
        assert_eq!(body.len(), len);
        Delivery::new(id, body)
    }

    pub fn dedup_key(&self) -> String {
        format!("standard-webhooks-v1:id:{}", self.id)
    }

    pub fn header(&self, name: &str) -> &str {
        &self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .unwrap()
            .1
    }

    pub fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds another value of a header.
    pub fn adding(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub fn request(&self) -> Request<Full<Bytes>> {
        self.request_with(Full::new(self.body.clone()))
    }

    pub fn request_with<B>(&self, body: B) -> Request<B> {
        let mut builder = Request::post("/webhooks");
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        builder.body(body).unwrap()
    }
}

/// A gate with a channel sink and a dedup store the test can reach.
pub struct Fixture {
    pub gate: Gate,
    pub events: ChannelReceiver,
    pub dedup: Arc<MemoryDedupStore>,
}

impl Fixture {
    pub fn new() -> Self {
        Fixture::with_capacity(64)
    }

    pub fn with_capacity(capacity: usize) -> Self {
        let (sink, events) = ChannelSink::bounded(capacity);
        let dedup = Arc::new(MemoryDedupStore::new());
        let gate = Gate::builder(verifier())
            .sink(sink)
            .shared_dedup(dedup.clone())
            .max_body_bytes(LIMIT)
            .build()
            .unwrap();
        Fixture {
            gate,
            events,
            dedup,
        }
    }

    /// Marks a delivery as already handed off.
    pub async fn commit(&self, key: &str) {
        let Claim::New(token) = self.dedup.claim(key).await.unwrap() else {
            panic!("key already known")
        };
        self.dedup.commit(key, token).await.unwrap();
    }

    /// Marks a delivery as being handed off right now.
    pub async fn claim(&self, key: &str) {
        assert!(matches!(
            self.dedup.claim(key).await.unwrap(),
            Claim::New(_)
        ));
    }

    pub fn drain(&mut self) -> Vec<VerifiedEvent> {
        let mut events = Vec::new();
        while let Some(event) = self.events.try_recv() {
            events.push(event);
        }
        events
    }
}

/// A gate over arbitrary parts.
pub fn gate_with(sink: impl Sink + 'static, dedup: impl DedupStore + 'static) -> Gate {
    Gate::builder(verifier())
        .sink(sink)
        .dedup(dedup)
        .max_body_bytes(LIMIT)
        .deadline(Duration::from_millis(200))
        .build()
        .unwrap()
}

/// A dedup store that is down.
#[derive(Debug)]
pub struct DownStore;

impl DedupStore for DownStore {
    fn claim<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<Claim, DedupError>> {
        Box::pin(async { Err(DedupError::new("connection refused")) })
    }
    fn commit<'a>(
        &'a self,
        _key: &'a str,
        _token: hookgate::dedup::ClaimToken,
    ) -> BoxFuture<'a, Result<(), DedupError>> {
        Box::pin(async { Err(DedupError::new("connection refused")) })
    }
    fn release<'a>(
        &'a self,
        _key: &'a str,
        _token: hookgate::dedup::ClaimToken,
    ) -> BoxFuture<'a, Result<(), DedupError>> {
        Box::pin(async { Err(DedupError::new("connection refused")) })
    }
    fn lookup<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<KeyState, DedupError>> {
        Box::pin(async { Err(DedupError::new("connection refused")) })
    }
}

/// A sink that never answers.
#[derive(Debug)]
pub struct HangingSink;

impl Sink for HangingSink {
    fn enqueue(&self, _event: VerifiedEvent) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(std::future::pending())
    }
}

/// A sink that holds every enqueue until the test opens it, then passes events on.
#[derive(Debug, Clone)]
pub struct HeldSink {
    open: Arc<tokio::sync::Semaphore>,
    pub waiting: Arc<AtomicUsize>,
    inner: ChannelSink,
}

impl HeldSink {
    pub fn new(inner: ChannelSink) -> Self {
        HeldSink {
            open: Arc::new(tokio::sync::Semaphore::new(0)),
            waiting: Arc::new(AtomicUsize::new(0)),
            inner,
        }
    }

    pub fn open(&self) {
        self.open.add_permits(1_000);
    }
}

impl Sink for HeldSink {
    fn enqueue(&self, event: VerifiedEvent) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            let _permit = self.open.acquire().await.unwrap();
            self.inner.enqueue(event).await
        })
    }
}

/// The verify-only handler: echoes the raw body it got, with what it found in the
/// extensions in headers.
pub async fn echo(request: Request<RawBody>) -> Result<Response<Full<Bytes>>, Infallible> {
    let key = request
        .extensions()
        .get::<VerifiedEvent>()
        .map(|e| e.dedup_key().to_owned())
        .unwrap_or_else(|| "none".to_owned());
    let same = request
        .extensions()
        .get::<VerifiedEvent>()
        .is_some_and(|e| e.body().as_ref() == request.body().as_bytes());
    let body = request.into_body().into_bytes();
    Ok(Response::builder()
        .status(299)
        .header("x-dedup-key", key)
        .header("x-event-body-matches", same.to_string())
        .body(Full::new(body))
        .unwrap())
}

/// A body sent in the given chunks, without a known length, each one arriving only on the
/// poll after the one that found it pending (as from a network).
pub struct Chunks {
    chunks: VecDeque<Bytes>,
    ready: bool,
}

impl Chunks {
    pub fn new(body: &Bytes, chunk: usize) -> Self {
        let chunks = body.chunks(chunk).map(Bytes::copy_from_slice).collect();
        Chunks {
            chunks,
            ready: false,
        }
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if !self.ready {
            self.ready = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.ready = false;
        Poll::Ready(self.chunks.pop_front().map(|c| Ok(Frame::data(c))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// A body that fails after its first chunk.
pub struct Broken {
    sent: bool,
}

impl Broken {
    pub fn new() -> Self {
        Broken { sent: false }
    }
}

impl Body for Broken {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.sent {
            Poll::Ready(Some(Err(std::io::Error::other("connection reset"))))
        } else {
            self.sent = true;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"{\"a\":")))))
        }
    }
}
