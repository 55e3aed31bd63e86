//! A fresh gate for one run of one case, with the parts the case asked for and a way to
//! count the events that got through.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hookgate::dedup::{Claim, ClaimToken, DedupError, KeyState};
use hookgate::sink::{ChannelReceiver, SinkError};
use hookgate::{
    BoxFuture, ChannelSink, DedupStore, FixedClock, Gate, Handshake, Key, MemoryDedupStore, Sink,
    VerifiedEvent, Verifier,
};
use tokio::sync::Semaphore;

use super::{Case, Mode, SinkKind, StoreKind};

/// The gate of one run, and what it handed on.
pub struct Built {
    pub gate: Gate,
    events: Option<ChannelReceiver>,
    /// Events seen by the handler (verify-only mode).
    pub handled: Arc<AtomicUsize>,
    /// Handshakes the sink was told about.
    pub handshakes: Arc<AtomicUsize>,
    pub held: Option<Arc<HeldSink>>,
}

impl Built {
    /// Events that reached the sink (gate mode) or the handler (verify-only mode).
    pub fn events(&mut self) -> usize {
        let mut count = self.handled.load(Ordering::SeqCst);
        if let Some(events) = &mut self.events {
            while events.try_recv().is_some() {
                count += 1;
            }
        }
        count
    }
}

pub async fn build(case: &Case) -> Built {
    let setup = &case.setup;
    let mut verifier = Verifier::builder(setup.scheme).clock(FixedClock::from_unix(setup.now));
    for key in &setup.keys {
        let mut spec = Key::new(key.secret.as_str());
        if let Some(not_after) = key.not_after {
            spec = spec.not_after(UNIX_EPOCH + Duration::from_secs(not_after));
        }
        verifier = verifier.key(spec);
    }
    if let Some(tolerance) = setup.tolerance {
        verifier = verifier.tolerance(Duration::from_secs(tolerance));
    }
    if let Some(token) = &setup.verify_token {
        verifier = verifier.verify_token(token.as_str());
    }
    let verifier = if setup.url_per_request {
        verifier.build_with_url_per_request()
    } else {
        verifier.build()
    }
    .unwrap_or_else(|e| panic!("{}: {e}", case.name));

    let mut builder = Gate::builder(verifier)
        .max_body_bytes(setup.limit)
        .success_status(setup.success_status);
    match &setup.store {
        StoreKind::Memory => builder = builder.dedup(MemoryDedupStore::new()),
        StoreKind::Absent => {}
        StoreKind::Down => builder = builder.dedup(DownStore),
        StoreKind::Claimed(key) => {
            let store = MemoryDedupStore::new();
            let Claim::New(_) = store.claim(key).await.unwrap() else {
                panic!("{}: a fresh store already knows {key}", case.name);
            };
            builder = builder.dedup(store);
        }
        StoreKind::Committed(key) => {
            let store = MemoryDedupStore::new();
            let Claim::New(token) = store.claim(key).await.unwrap() else {
                panic!("{}: a fresh store already knows {key}", case.name);
            };
            store.commit(key, token).await.unwrap();
            builder = builder.dedup(store);
        }
    }

    let mut events = None;
    let mut held = None;
    let handshakes = Arc::new(AtomicUsize::new(0));
    match &setup.sink {
        SinkKind::Channel(capacity) => {
            let (sink, receiver) = ChannelSink::bounded(*capacity);
            builder = builder.sink(CountingSink {
                inner: sink,
                handshakes: handshakes.clone(),
            });
            events = Some(receiver);
        }
        SinkKind::Closed => {
            let (sink, receiver) = ChannelSink::bounded(16);
            drop(receiver);
            builder = builder.sink(sink);
        }
        SinkKind::Held => {
            let (sink, receiver) = ChannelSink::bounded(1024);
            let sink = Arc::new(HeldSink {
                entered: Semaphore::new(0),
                open: Semaphore::new(0),
                inner: sink,
            });
            builder = builder.shared_sink(sink.clone());
            held = Some(sink);
            events = Some(receiver);
        }
        SinkKind::Hanging => {
            builder = builder
                .sink(HangingSink)
                .deadline(Duration::from_millis(100));
        }
    }
    let gate = match case.mode {
        Mode::Receive => builder.build(),
        Mode::VerifyOnly => builder.build_verify_only(),
    }
    .unwrap_or_else(|e| panic!("{}: {e}", case.name));
    Built {
        gate,
        events,
        handled: Arc::new(AtomicUsize::new(0)),
        handshakes,
        held,
    }
}

/// A channel sink that counts the handshakes it is told about.
#[derive(Debug)]
pub struct CountingSink {
    inner: ChannelSink,
    handshakes: Arc<AtomicUsize>,
}

impl Sink for CountingSink {
    fn enqueue(&self, event: VerifiedEvent) -> BoxFuture<'_, Result<(), SinkError>> {
        self.inner.enqueue(event)
    }

    fn record_handshake(&self, handshake: Handshake) -> BoxFuture<'_, Result<(), SinkError>> {
        assert!(!handshake.scheme().is_empty());
        self.handshakes.fetch_add(1, Ordering::SeqCst);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// A sink that holds every enqueue until opened, and says when one is waiting.
#[derive(Debug)]
pub struct HeldSink {
    entered: Semaphore,
    open: Semaphore,
    inner: ChannelSink,
}

impl HeldSink {
    /// Waits until an enqueue is held inside the sink.
    pub async fn entered(&self) {
        self.entered.acquire().await.unwrap().forget();
    }

    /// Lets every enqueue through.
    pub fn open(&self) {
        self.open.add_permits(1_000_000);
    }
}

impl Sink for HeldSink {
    fn enqueue(&self, event: VerifiedEvent) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            self.entered.add_permits(1);
            let _permit = self.open.acquire().await;
            self.inner.enqueue(event).await
        })
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

/// A dedup store that is down.
#[derive(Debug)]
pub struct DownStore;

fn refused<T: Send + 'static>() -> BoxFuture<'static, Result<T, DedupError>> {
    Box::pin(async { Err(DedupError::new("connection refused")) })
}

impl DedupStore for DownStore {
    fn claim<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<Claim, DedupError>> {
        refused()
    }
    fn commit<'a>(&'a self, _: &'a str, _: ClaimToken) -> BoxFuture<'a, Result<(), DedupError>> {
        refused()
    }
    fn release<'a>(&'a self, _: &'a str, _: ClaimToken) -> BoxFuture<'a, Result<(), DedupError>> {
        refused()
    }
    fn lookup<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<KeyState, DedupError>> {
        refused()
    }
}

/// Seconds since the epoch of `time` (for not-after times relative to a case's clock).
pub fn unix(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_secs()
}
