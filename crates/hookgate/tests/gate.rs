//! The Gate contract (see `hookgate::gate`), end to end with real signed deliveries: every
//! event here is signed with `Signer` and verified by a `Verifier` on a fixed clock.
//!
//! No test asserts how long anything took. Where time must pass, Tokio's clock is paused
//! (deadlines), or a very short claim TTL is polled with a generous bound (the memory store's
//! lifetimes run on the real clock).

#![allow(
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::future::{Future, pending};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hookgate::dedup::{Claim, ClaimToken, DedupError, KeyState};
use hookgate::sink::ChannelReceiver;
use hookgate::{
    BoxFuture, ChannelSink, DedupStore, FixedClock, Gate, GateConfigError, Handoff,
    MemoryDedupStore, OutcomeKind, SchemeId, SignRequest, SignedDelivery, Signer, Sink, SinkError,
    VerifiedEvent, Verifier,
};
use tokio::sync::{Semaphore, mpsc};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const NOW: i64 = 1_700_000_000;
const BODY: &str = r#"{"type":"invoice.paid","data":{"id":"in_1"}}"#;

/// A rejection case: name, headers, body, expected status and code.
type Case = (
    &'static str,
    Vec<(String, String)>,
    Bytes,
    u16,
    &'static str,
);

fn verifier() -> Verifier {
    Verifier::builder(SchemeId::StandardWebhooksV1)
        .secret(SECRET)
        .clock(FixedClock::from_unix(NOW as u64))
        .build()
        .unwrap()
}

fn sign_with(secret: &str, id: &str, timestamp: i64, body: &str) -> SignedDelivery {
    Signer::new(SchemeId::StandardWebhooksV1, secret)
        .unwrap()
        .sign(
            &SignRequest::new(body.to_owned())
                .id(id)
                .timestamp(timestamp),
        )
        .unwrap()
}

fn signed(id: &str) -> SignedDelivery {
    sign_with(SECRET, id, NOW, BODY)
}

fn dedup_key(delivery: &SignedDelivery) -> String {
    verifier()
        .verify(&delivery.headers, delivery.body.clone())
        .unwrap()
        .dedup_key()
        .to_owned()
}

fn long_lived_store() -> MemoryDedupStore {
    MemoryDedupStore::builder()
        .claim_ttl(Duration::from_secs(3600))
        .build()
        .unwrap()
}

fn drain(events: &mut ChannelReceiver) -> Vec<VerifiedEvent> {
    std::iter::from_fn(|| events.try_recv()).collect()
}

/// A dedup store that counts commits, around a real one.
#[derive(Debug, Clone)]
struct CountingStore {
    inner: MemoryDedupStore,
    commits: Arc<AtomicUsize>,
}

impl DedupStore for CountingStore {
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Claim, DedupError>> {
        self.inner.claim(key)
    }
    fn commit<'a>(
        &'a self,
        key: &'a str,
        token: ClaimToken,
    ) -> BoxFuture<'a, Result<(), DedupError>> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        self.inner.commit(key, token)
    }
    fn release<'a>(
        &'a self,
        key: &'a str,
        token: ClaimToken,
    ) -> BoxFuture<'a, Result<(), DedupError>> {
        self.inner.release(key, token)
    }
    fn lookup<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyState, DedupError>> {
        self.inner.lookup(key)
    }
}

/// A sink that holds every enqueue until the test opens it, then forwards to a channel.
#[derive(Debug)]
struct HeldSink {
    entered: AtomicUsize,
    entered_tx: mpsc::UnboundedSender<()>,
    open: Semaphore,
    inner: ChannelSink,
}

impl Sink for HeldSink {
    fn enqueue(&self, event: VerifiedEvent) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(async move {
            self.entered.fetch_add(1, Ordering::SeqCst);
            let _ = self.entered_tx.send(());
            let _permit = self.open.acquire().await;
            self.inner.enqueue(event).await
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_copies_reach_the_sink_once_and_none_is_acknowledged_before_the_commit() {
    let (channel, mut events) = ChannelSink::bounded(1024);
    let (entered_tx, mut entered_rx) = mpsc::unbounded_channel();
    let sink = Arc::new(HeldSink {
        entered: AtomicUsize::new(0),
        entered_tx,
        open: Semaphore::new(0),
        inner: channel,
    });
    let store = CountingStore {
        inner: long_lived_store(),
        commits: Arc::new(AtomicUsize::new(0)),
    };
    let gate = Gate::builder(verifier())
        .dedup(store.clone())
        .shared_sink(sink.clone())
        .deadline(Duration::from_secs(3600))
        .build()
        .unwrap();
    let delivery = signed("msg_concurrent");

    let (results_tx, mut results) = mpsc::unbounded_channel();
    for _ in 0..100 {
        let gate = gate.clone();
        let delivery = delivery.clone();
        let results_tx = results_tx.clone();
        tokio::spawn(async move {
            let outcome = gate.receive(&delivery.headers, delivery.body, None).await;
            let _ = results_tx.send(outcome);
        });
    }

    // One copy is inside the sink, held there; the 99 others are answered meanwhile.
    entered_rx.recv().await.unwrap();
    for _ in 0..99 {
        let outcome = results.recv().await.unwrap();
        assert_eq!(store.commits.load(Ordering::SeqCst), 0);
        assert!(!outcome.is_success(), "2xx before the commit: {outcome:?}");
        assert_eq!((outcome.status(), outcome.code()), (503, "in_flight"));
        assert_eq!(outcome.retry_after(), Some(Duration::from_secs(10)));
        assert_eq!(outcome.headers().get("retry-after").unwrap(), "10");
    }
    assert_eq!(sink.entered.load(Ordering::SeqCst), 1);

    // Let it through: the held copy is committed, then acknowledged.
    sink.open.add_permits(1000);
    let outcome = results.recv().await.unwrap();
    assert_eq!((outcome.status(), outcome.code()), (200, "accepted"));
    assert_eq!(store.commits.load(Ordering::SeqCst), 1);

    // From now on every copy is a duplicate: 200, nothing enqueued.
    for _ in 0..20 {
        let outcome = gate
            .receive(&delivery.headers, delivery.body.clone(), None)
            .await;
        assert_eq!((outcome.status(), outcome.code()), (200, "duplicate"));
        assert!(outcome.headers().is_empty());
    }
    assert_eq!(sink.entered.load(Ordering::SeqCst), 1);
    let received = drain(&mut events);
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].dedup_key(),
        "standard-webhooks-v1:id:msg_concurrent"
    );
}

/// A sink that refuses the first deliveries (full, then unavailable), then accepts.
#[derive(Debug)]
struct FlakySink {
    calls: AtomicUsize,
    inner: ChannelSink,
}

impl Sink for FlakySink {
    fn enqueue(&self, event: VerifiedEvent) -> BoxFuture<'_, Result<(), SinkError>> {
        match self.calls.fetch_add(1, Ordering::SeqCst) {
            0 => Box::pin(async { Err(SinkError::full()) }),
            1 => Box::pin(async { Err(SinkError::unavailable("broker restarting")) }),
            _ => self.inner.enqueue(event),
        }
    }
}

#[tokio::test]
async fn a_failing_sink_gets_503_with_retry_after_and_a_released_claim_and_the_retry_succeeds() {
    let (channel, mut events) = ChannelSink::bounded(16);
    let store = long_lived_store();
    let gate = Gate::builder(verifier())
        .dedup(store.clone())
        .sink(FlakySink {
            calls: AtomicUsize::new(0),
            inner: channel,
        })
        .retry_after(Duration::from_secs(30))
        .build()
        .unwrap();
    let delivery = signed("msg_flaky");
    let key = dedup_key(&delivery);

    for (code, detail) in [
        ("sink_full", "sink full"),
        ("sink_unavailable", "broker restarting"),
    ] {
        let outcome = gate
            .receive(&delivery.headers, delivery.body.clone(), None)
            .await;
        assert_eq!((outcome.status(), outcome.code()), (503, code));
        assert_eq!(outcome.body(), code);
        assert_eq!(outcome.headers().get("retry-after").unwrap(), "30");
        assert!(outcome.detail().unwrap().contains(detail));
        assert_eq!(store.lookup(&key).await.unwrap(), KeyState::Absent);
        assert!(events.try_recv().is_none());
    }

    let outcome = gate
        .receive(&delivery.headers, delivery.body.clone(), None)
        .await;
    assert_eq!((outcome.status(), outcome.code()), (200, "accepted"));
    assert_eq!(store.lookup(&key).await.unwrap(), KeyState::Committed);
    assert_eq!(drain(&mut events).len(), 1);
}

/// A sink that deduplicates itself, like the SQLite inbox: it remembers what it stored.
#[derive(Debug, Default)]
struct SelfDedupSink {
    stored: Mutex<Vec<String>>,
}

impl Sink for SelfDedupSink {
    fn enqueue(&self, event: VerifiedEvent) -> BoxFuture<'_, Result<(), SinkError>> {
        let stored = self.hand_off(event);
        Box::pin(async move { stored.await.map(drop) })
    }

    fn hand_off(&self, event: VerifiedEvent) -> BoxFuture<'_, Result<Handoff, SinkError>> {
        let mut stored = self.stored.lock().unwrap();
        let key = event.dedup_key().to_owned();
        let handoff = if stored.contains(&key) {
            Handoff::AlreadyStored
        } else {
            stored.push(key);
            Handoff::Enqueued
        };
        Box::pin(async move { Ok(handoff) })
    }
}

#[tokio::test]
async fn a_sink_that_holds_an_earlier_copy_makes_the_answer_duplicate_and_stores_nothing() {
    let sink = Arc::new(SelfDedupSink::default());
    // A fresh dedup store on each side stands for a restarted process: only the sink
    // remembers the first copy.
    let first = Gate::builder(verifier())
        .dedup(long_lived_store())
        .shared_sink(sink.clone())
        .build()
        .unwrap();
    let after_restart = Gate::builder(verifier())
        .dedup(long_lived_store())
        .shared_sink(sink.clone())
        .build()
        .unwrap();
    let delivery = signed("msg_stored_before");

    let outcome = first
        .receive(&delivery.headers, delivery.body.clone(), None)
        .await;
    assert_eq!((outcome.status(), outcome.code()), (200, "accepted"));
    let store = after_restart.dedup_store().unwrap().clone();
    let key = dedup_key(&delivery);
    let outcome = after_restart
        .receive(&delivery.headers, delivery.body.clone(), None)
        .await;
    assert_eq!((outcome.status(), outcome.code()), (200, "duplicate"));
    // The key is committed, so the next copy does not even reach the sink.
    assert_eq!(store.lookup(&key).await.unwrap(), KeyState::Committed);
    assert_eq!(sink.stored.lock().unwrap().len(), 1);
}

/// A dedup store that fails on the chosen operations.
#[derive(Debug, Default)]
struct BrokenStore {
    inner: MemoryDedupStore,
    fail_claim: bool,
    fail_commit: bool,
    fail_release: bool,
}

fn down<T: Send + 'static>() -> BoxFuture<'static, Result<T, DedupError>> {
    Box::pin(async { Err(DedupError::new("connection refused")) })
}

impl DedupStore for BrokenStore {
    fn claim<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Claim, DedupError>> {
        if self.fail_claim {
            down()
        } else {
            self.inner.claim(key)
        }
    }
    fn commit<'a>(
        &'a self,
        key: &'a str,
        token: ClaimToken,
    ) -> BoxFuture<'a, Result<(), DedupError>> {
        if self.fail_commit {
            down()
        } else {
            self.inner.commit(key, token)
        }
    }
    fn release<'a>(
        &'a self,
        key: &'a str,
        token: ClaimToken,
    ) -> BoxFuture<'a, Result<(), DedupError>> {
        if self.fail_release {
            down()
        } else {
            self.inner.release(key, token)
        }
    }
    fn lookup<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyState, DedupError>> {
        if self.fail_claim {
            down()
        } else {
            self.inner.lookup(key)
        }
    }
}

#[tokio::test]
async fn a_failing_dedup_store_fails_closed_with_503_and_enqueues_nothing() {
    let (channel, mut events) = ChannelSink::bounded(16);
    let gate = Gate::builder(verifier())
        .dedup(BrokenStore {
            fail_claim: true,
            ..BrokenStore::default()
        })
        .sink(channel)
        .build()
        .unwrap();
    let delivery = signed("msg_store_down");
    for _ in 0..3 {
        let outcome = gate
            .receive(&delivery.headers, delivery.body.clone(), None)
            .await;
        assert_eq!(
            (outcome.status(), outcome.code()),
            (503, "dedup_unavailable")
        );
        assert_eq!(outcome.headers().get("retry-after").unwrap(), "10");
        assert!(outcome.detail().unwrap().contains("connection refused"));
    }
    assert!(events.try_recv().is_none());

    // Verify-only mode fails closed too.
    let outcome = gate
        .verify_only(&delivery.headers, delivery.body.clone(), None)
        .await;
    assert_eq!(
        (outcome.status(), outcome.code()),
        (503, "dedup_unavailable")
    );
    assert!(outcome.event().is_none());
}

#[tokio::test]
async fn a_commit_that_fails_after_the_sink_took_the_event_still_acknowledges_it() {
    let (channel, mut events) = ChannelSink::bounded(16);
    let gate = Gate::builder(verifier())
        .dedup(BrokenStore {
            fail_commit: true,
            ..BrokenStore::default()
        })
        .sink(channel)
        .build()
        .unwrap();
    let delivery = signed("msg_commit_fails");
    let outcome = gate
        .receive(&delivery.headers, delivery.body.clone(), None)
        .await;
    assert_eq!((outcome.status(), outcome.code()), (200, "accepted"));
    assert!(outcome.detail().unwrap().contains("connection refused"));
    assert_eq!(drain(&mut events).len(), 1);
}

#[tokio::test]
async fn a_release_that_fails_still_answers_503_and_leaves_the_claim_to_expire() {
    let inner = long_lived_store();
    let (channel, _events) = ChannelSink::bounded(1);
    let gate = Gate::builder(verifier())
        .dedup(BrokenStore {
            inner: inner.clone(),
            fail_release: true,
            ..BrokenStore::default()
        })
        .sink(channel)
        .build()
        .unwrap();
    // Fill the channel so that the next enqueue is refused.
    let first = signed("msg_fill");
    let outcome = gate.receive(&first.headers, first.body.clone(), None).await;
    assert_eq!(outcome.code(), "accepted");
    let delivery = signed("msg_release_fails");
    let outcome = gate
        .receive(&delivery.headers, delivery.body.clone(), None)
        .await;
    assert_eq!((outcome.status(), outcome.code()), (503, "sink_full"));
    assert!(outcome.retry_after().is_some());
    // The claim could not be given back: it stays until its TTL ends.
    assert_eq!(
        inner.lookup(&dedup_key(&delivery)).await.unwrap(),
        KeyState::InFlight
    );
}

#[tokio::test]
async fn an_uncommitted_claim_expires_by_itself_and_the_retry_is_accepted() {
    let store = MemoryDedupStore::builder()
        .claim_ttl(Duration::from_millis(50))
        .build()
        .unwrap();
    let (channel, mut events) = ChannelSink::bounded(16);
    let gate = Gate::builder(verifier())
        .dedup(store.clone())
        .sink(channel)
        .build()
        .unwrap();
    let delivery = signed("msg_crashed");

    // A process claimed the key and died before enqueueing or committing.
    let Claim::New(_) = store.claim(&dedup_key(&delivery)).await.unwrap() else {
        panic!("the first claim is new");
    };
    let outcome = gate
        .receive(&delivery.headers, delivery.body.clone(), None)
        .await;
    assert_eq!((outcome.status(), outcome.code()), (503, "in_flight"));
    assert!(events.try_recv().is_none());

    // The sender retries until the claim has expired; then the delivery is accepted.
    let mut accepted = None;
    for _ in 0..3000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let outcome = gate
            .receive(&delivery.headers, delivery.body.clone(), None)
            .await;
        match outcome.code() {
            "in_flight" => continue,
            _ => {
                accepted = Some(outcome);
                break;
            }
        }
    }
    let outcome = accepted.expect("the claim never expired");
    assert_eq!((outcome.status(), outcome.code()), (200, "accepted"));
    assert_eq!(drain(&mut events).len(), 1);
}

/// A sink that never answers.
#[derive(Debug)]
struct HangingSink;

impl Sink for HangingSink {
    fn enqueue(&self, _event: VerifiedEvent) -> BoxFuture<'_, Result<(), SinkError>> {
        Box::pin(pending())
    }
}

/// A dedup store that never answers a claim.
#[derive(Debug)]
struct HangingStore;

impl DedupStore for HangingStore {
    fn claim<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<Claim, DedupError>> {
        Box::pin(pending())
    }
    fn commit<'a>(&'a self, _: &'a str, _: ClaimToken) -> BoxFuture<'a, Result<(), DedupError>> {
        Box::pin(pending())
    }
    fn release<'a>(&'a self, _: &'a str, _: ClaimToken) -> BoxFuture<'a, Result<(), DedupError>> {
        Box::pin(pending())
    }
    fn lookup<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<KeyState, DedupError>> {
        Box::pin(pending())
    }
}

#[tokio::test(start_paused = true)]
async fn a_hanging_sink_gets_503_timeout_with_a_released_claim_never_a_hung_sender() {
    let store = long_lived_store();
    let gate = Gate::builder(verifier())
        .dedup(store.clone())
        .sink(HangingSink)
        .build()
        .unwrap();
    let delivery = signed("msg_slow_sink");
    let key = dedup_key(&delivery);

    let outcome = gate
        .receive(&delivery.headers, delivery.body.clone(), None)
        .await;
    assert_eq!((outcome.status(), outcome.code()), (503, "timeout"));
    assert_eq!(outcome.headers().get("retry-after").unwrap(), "10");
    assert_eq!(store.lookup(&key).await.unwrap(), KeyState::Absent);

    // The retry, once the sink is back, is accepted at once.
    let (channel, mut events) = ChannelSink::bounded(16);
    let gate = Gate::builder(verifier())
        .dedup(store.clone())
        .sink(channel)
        .build()
        .unwrap();
    let outcome = gate
        .receive(&delivery.headers, delivery.body.clone(), None)
        .await;
    assert_eq!((outcome.status(), outcome.code()), (200, "accepted"));
    assert_eq!(drain(&mut events).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_hanging_dedup_store_gets_503_timeout_and_nothing_is_enqueued() {
    let (channel, mut events) = ChannelSink::bounded(16);
    let gate = Gate::builder(verifier())
        .dedup(HangingStore)
        .sink(channel)
        .deadline(Duration::from_secs(5))
        .build()
        .unwrap();
    let delivery = signed("msg_slow_store");
    let outcome = gate
        .receive(&delivery.headers, delivery.body.clone(), None)
        .await;
    assert_eq!((outcome.status(), outcome.code()), (503, "timeout"));
    assert!(outcome.retry_after().is_some());
    assert!(events.try_recv().is_none());

    let outcome = gate
        .verify_only(&delivery.headers, delivery.body.clone(), None)
        .await;
    assert_eq!((outcome.status(), outcome.code()), (503, "timeout"));
}

fn replace_header(delivery: &SignedDelivery, name: &str, value: &str) -> Vec<(String, String)> {
    delivery
        .headers
        .iter()
        .map(|(k, v)| {
            if k.eq_ignore_ascii_case(name) {
                (k.clone(), value.to_owned())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect()
}

fn with_header(delivery: &SignedDelivery, name: &str, value: &str) -> Vec<(String, String)> {
    let mut headers = delivery.headers.clone();
    headers.push((name.to_owned(), value.to_owned()));
    headers
}

fn without_header(delivery: &SignedDelivery, name: &str) -> Vec<(String, String)> {
    delivery
        .headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case(name))
        .cloned()
        .collect()
}

#[tokio::test]
async fn every_rejection_row_answers_its_status_and_code_and_stores_nothing() {
    let store = long_lived_store();
    let (channel, mut events) = ChannelSink::bounded(16);
    let gate = Gate::builder(verifier())
        .dedup(store.clone())
        .sink(channel)
        .max_body_bytes(1024)
        .build()
        .unwrap();
    let good = signed("msg_rows");
    let key = dedup_key(&good);
    let body = good.body.clone();

    let other_key = "whsec_dGhpcyBpcyBhbm90aGVyIGtleSBlbnRpcmVseQ==";
    let cases: Vec<Case> = vec![
        (
            "no signature header",
            without_header(&good, "webhook-signature"),
            body.clone(),
            400,
            "missing_header",
        ),
        (
            "no id header",
            without_header(&good, "webhook-id"),
            body.clone(),
            400,
            "missing_header",
        ),
        (
            "id header repeated with another value",
            with_header(&good, "webhook-id", "msg_other"),
            body.clone(),
            400,
            "malformed_header",
        ),
        (
            "timestamp not a number",
            replace_header(&good, "webhook-timestamp", "yesterday"),
            body.clone(),
            400,
            "invalid_timestamp",
        ),
        (
            "body changed",
            good.headers.clone(),
            Bytes::from_static(b"{\"type\":\"invoice.refunded\"}"),
            401,
            "signature_mismatch",
        ),
        (
            "signed with a key we do not hold",
            sign_with(other_key, "msg_rows", NOW, BODY).headers,
            body.clone(),
            401,
            "signature_mismatch",
        ),
        (
            "stale timestamp",
            sign_with(SECRET, "msg_rows", NOW - 3600, BODY).headers,
            body.clone(),
            401,
            "timestamp_too_old",
        ),
        (
            "timestamp in the future",
            sign_with(SECRET, "msg_rows", NOW + 3600, BODY).headers,
            body.clone(),
            401,
            "timestamp_too_new",
        ),
        (
            "body over the limit",
            good.headers.clone(),
            Bytes::from(vec![b' '; 1025]),
            413,
            "body_too_large",
        ),
    ];

    for (case, headers, body, status, code) in cases {
        let outcome = gate.receive(&headers, body.clone(), None).await;
        assert_eq!((outcome.status(), outcome.code()), (status, code), "{case}");
        assert_eq!(outcome.body(), code, "{case}");
        assert!(outcome.retry_after().is_none(), "{case}");
        assert!(outcome.headers().is_empty(), "{case}");
        assert!(outcome.event().is_none(), "{case}");
        if status != 413 {
            assert_eq!(outcome.rejection().map(|r| r.code()), Some(code), "{case}");
        }
        let verify_only = gate.verify_only(&headers, body, None).await;
        assert_eq!(verify_only.code(), code, "{case} (verify only)");
    }
    assert!(events.try_recv().is_none());
    assert_eq!(store.lookup(&key).await.unwrap(), KeyState::Absent);
    store.run_pending_tasks();
    assert_eq!(store.key_count(), 0);

    // Stripe: only a test-mode `v0` signature is a possible downgrade.
    let stripe = Verifier::builder(SchemeId::Stripe)
        .secret("whsec_stripe_test")
        .clock(FixedClock::from_unix(NOW as u64))
        .build()
        .unwrap();
    let (channel, mut stripe_events) = ChannelSink::bounded(16);
    let stripe_gate = Gate::builder(stripe).sink(channel).build().unwrap();
    let v0_only = [(
        "Stripe-Signature",
        format!("t={NOW},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"),
    )];
    let outcome = stripe_gate.receive(&v0_only, BODY, None).await;
    assert_eq!(
        (outcome.status(), outcome.code()),
        (401, "no_supported_signature")
    );
    assert!(stripe_events.try_recv().is_none());

    // The genuine delivery still goes through.
    let outcome = gate.receive(&good.headers, good.body.clone(), None).await;
    assert_eq!(outcome.code(), "accepted");
}

#[tokio::test]
async fn adapters_that_enforce_the_limit_while_streaming_answer_the_same_413() {
    let (channel, _events) = ChannelSink::bounded(1);
    let gate = Gate::builder(verifier()).sink(channel).build().unwrap();
    let outcome = gate.body_too_large();
    assert_eq!((outcome.status(), outcome.code()), (413, "body_too_large"));
    assert_eq!(outcome.kind(), OutcomeKind::BodyTooLarge);
    assert_eq!(gate.max_body_bytes(), 2 * 1024 * 1024);
}

#[tokio::test]
async fn dedup_keys_are_authenticated_so_changed_unsigned_headers_are_still_duplicates() {
    // GitHub signs only the body: a captured delivery replayed with a new
    // X-GitHub-Delivery is the same delivery.
    let secret = "It's a Secret to Everybody";
    let github = Verifier::builder(SchemeId::Github)
        .secret(secret)
        .build()
        .unwrap();
    let (channel, mut events) = ChannelSink::bounded(16);
    let gate = Gate::builder(github).sink(channel).build().unwrap();
    let delivery = Signer::new(SchemeId::Github, secret)
        .unwrap()
        .sign(
            &SignRequest::new(r#"{"action":"opened","number":1}"#)
                .id("72d3162e-cc78-11e3-81ab-4c9367dc0958")
                .event_type("pull_request"),
        )
        .unwrap();
    let outcome = gate
        .receive(&delivery.headers, delivery.body.clone(), None)
        .await;
    assert_eq!(outcome.code(), "accepted");
    let replayed = replace_header(
        &delivery,
        "X-GitHub-Delivery",
        "00000000-0000-0000-0000-000000000000",
    );
    let outcome = gate.receive(&replayed, delivery.body.clone(), None).await;
    assert_eq!((outcome.status(), outcome.code()), (200, "duplicate"));
    assert_eq!(drain(&mut events).len(), 1);

    // Standard Webhooks: a retry carries the same webhook-id with a new timestamp and a new
    // signature; it is the same delivery.
    let (channel, mut events) = ChannelSink::bounded(16);
    let gate = Gate::builder(verifier()).sink(channel).build().unwrap();
    let first = sign_with(SECRET, "msg_retried", NOW - 60, BODY);
    let retry = sign_with(SECRET, "msg_retried", NOW, BODY);
    assert_ne!(first.headers, retry.headers);
    let outcome = gate.receive(&first.headers, first.body.clone(), None).await;
    assert_eq!(outcome.code(), "accepted");
    let outcome = gate.receive(&retry.headers, retry.body.clone(), None).await;
    assert_eq!((outcome.status(), outcome.code()), (200, "duplicate"));
    // A different delivery is not.
    let other = signed("msg_other");
    let outcome = gate.receive(&other.headers, other.body.clone(), None).await;
    assert_eq!(outcome.code(), "accepted");
    assert_eq!(drain(&mut events).len(), 2);
}

/// One HubSpot v3 batch of one `contact.creation` event.
fn hubspot_batch(event_id: u64, attempt_number: u32) -> String {
    format!(
        r#"[{{"eventId":{event_id},"subscriptionId":234567,"portalId":12345678,"appId":987654,"occurredAt":1699999990000,"subscriptionType":"contact.creation","attemptNumber":{attempt_number},"objectId":65059681032,"changeFlag":"CREATED","changeSource":"CRM_UI","sourceId":"userId:45678"}}]"#
    )
}

#[tokio::test]
async fn a_hubspot_retry_that_counts_up_attempt_number_is_a_duplicate_and_another_event_is_not() {
    // HubSpot re-sends a batch with each event's `attemptNumber` counted up and a new
    // timestamp and signature: the signed body differs, yet it is the same delivery.
    let secret = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";
    let url = "https://hooks.example.com/hubspot";
    let hubspot = Verifier::builder(SchemeId::HubspotV3)
        .secret(secret)
        .clock(FixedClock::from_unix(NOW as u64))
        .build_with_url_per_request()
        .unwrap();
    let (channel, mut events) = ChannelSink::bounded(16);
    let gate = Gate::builder(hubspot).sink(channel).build().unwrap();
    let signer = Signer::new(SchemeId::HubspotV3, secret).unwrap();
    let sign = |body: String, at: i64| {
        signer
            .sign(&SignRequest::new(body).url(url).timestamp(at))
            .unwrap()
    };
    let first = sign(hubspot_batch(100, 0), NOW - 120);
    let retry = sign(hubspot_batch(100, 1), NOW);
    assert_ne!(first.body, retry.body);
    let outcome = gate.receive(&first.headers, first.body.clone(), url).await;
    assert_eq!(outcome.code(), "accepted");
    let outcome = gate.receive(&retry.headers, retry.body.clone(), url).await;
    assert_eq!((outcome.status(), outcome.code()), (200, "duplicate"));
    // Another event (another eventId), or the same batch with any other field changed, is new.
    let other = sign(hubspot_batch(101, 0), NOW);
    let outcome = gate.receive(&other.headers, other.body.clone(), url).await;
    assert_eq!(outcome.code(), "accepted");
    let changed = sign(hubspot_batch(100, 0).replace("CRM_UI", "IMPORT"), NOW);
    let outcome = gate
        .receive(&changed.headers, changed.body.clone(), url)
        .await;
    assert_eq!(outcome.code(), "accepted");
    let stored = drain(&mut events);
    assert_eq!(stored.len(), 3);
    // What is stored is the body as signed, counter included.
    assert_eq!(stored[0].body(), &first.body);
}

#[tokio::test]
async fn verify_only_hands_back_the_event_and_reports_what_the_store_knows() {
    let store = long_lived_store();
    let checker = Gate::builder(verifier())
        .dedup(store.clone())
        .build_verify_only()
        .unwrap();
    let delivery = signed("msg_verify_only");

    let outcome = checker
        .verify_only(&delivery.headers, delivery.body.clone(), None)
        .await;
    assert_eq!((outcome.status(), outcome.code()), (200, "verified"));
    assert_eq!(
        outcome.event().unwrap().dedup_key(),
        "standard-webhooks-v1:id:msg_verify_only"
    );
    assert_eq!(outcome.into_event().unwrap().body(), BODY.as_bytes());

    // Once a receiving gate sharing the store has handed it off, it is a duplicate.
    let (channel, _events) = ChannelSink::bounded(16);
    let receiver = Gate::builder(verifier())
        .dedup(store.clone())
        .sink(channel)
        .build()
        .unwrap();
    let outcome = receiver
        .receive(&delivery.headers, delivery.body.clone(), None)
        .await;
    assert_eq!(outcome.code(), "accepted");
    let outcome = checker
        .verify_only(&delivery.headers, delivery.body.clone(), None)
        .await;
    assert_eq!((outcome.status(), outcome.code()), (200, "duplicate"));
    assert!(outcome.event().is_none());

    // A key claimed elsewhere and not yet committed is in flight.
    let in_flight = signed("msg_in_flight");
    let Claim::New(_) = store.claim(&dedup_key(&in_flight)).await.unwrap() else {
        panic!("new claim");
    };
    let outcome = checker
        .verify_only(&in_flight.headers, in_flight.body.clone(), None)
        .await;
    assert_eq!((outcome.status(), outcome.code()), (503, "in_flight"));

    // A verify-only gate has no sink: receiving through it fails closed and loudly.
    let outcome = checker
        .receive(&in_flight.headers, in_flight.body.clone(), None)
        .await;
    assert_eq!(
        (outcome.status(), outcome.code()),
        (503, "sink_unavailable")
    );
}

#[tokio::test]
async fn options_are_applied_and_bad_ones_are_build_errors() {
    let (channel, _events) = ChannelSink::bounded(16);
    let gate = Gate::builder(verifier())
        .sink(channel.clone())
        .success_status(202)
        .retry_after(Duration::from_millis(2500))
        .build()
        .unwrap();
    let delivery = signed("msg_options");
    let outcome = gate
        .receive(&delivery.headers, delivery.body.clone(), None)
        .await;
    assert_eq!((outcome.status(), outcome.code()), (202, "accepted"));
    let outcome = gate
        .receive(&delivery.headers, delivery.body.clone(), None)
        .await;
    assert_eq!((outcome.status(), outcome.code()), (202, "duplicate"));
    assert_eq!(gate.retry_after(), Duration::from_millis(2500));
    assert_eq!(gate.success_status(), 202);
    assert_eq!(gate.deadline(), Duration::from_secs(10));

    let err = |b: hookgate::GateBuilder| b.build().unwrap_err();
    assert_eq!(err(Gate::builder(verifier())), GateConfigError::MissingSink);
    let with_sink = || Gate::builder(verifier()).sink(channel.clone());
    assert_eq!(
        err(with_sink().success_status(302)),
        GateConfigError::InvalidSuccessStatus(302)
    );
    assert_eq!(
        err(with_sink().deadline(Duration::ZERO)),
        GateConfigError::ZeroDeadline
    );
    assert_eq!(
        err(with_sink().max_body_bytes(0)),
        GateConfigError::ZeroBodyLimit
    );
    assert_eq!(
        err(with_sink().retry_after(Duration::ZERO)),
        GateConfigError::ZeroRetryAfter
    );
    assert!(format!("{gate:?}").contains("success_status: 202"));
    assert!(!format!("{gate:?}").contains("MfKQ9r8G"));
}

#[test]
fn the_gate_future_is_send_and_static_and_rejections_are_ready_at_once() {
    fn assert_send_static<F: Future + Send + 'static>(_: &F) {}
    let (channel, _events) = ChannelSink::bounded(1);
    let gate = Gate::builder(verifier()).sink(channel).build().unwrap();
    let delivery = signed("msg_send");
    let future = gate.receive(&delivery.headers, delivery.body.clone(), None);
    assert_send_static(&future);
    assert!(!future.is_ready());
    let rejected = gate.receive(&delivery.headers, "tampered", None);
    assert!(rejected.is_ready());
}

// --- Metrics: counters and histograms, and no event id as a label ---

/// One counter increment: name, labels, amount.
type Increment = (String, Vec<(String, String)>, u64);

#[derive(Debug, Default)]
struct Recorded {
    counters: Mutex<Vec<Increment>>,
    histograms: Mutex<BTreeSet<String>>,
}

#[derive(Debug)]
struct TestRecorder(Arc<Recorded>);

struct CounterHandle {
    recorded: Arc<Recorded>,
    name: String,
    labels: Vec<(String, String)>,
}

impl metrics::CounterFn for CounterHandle {
    fn increment(&self, value: u64) {
        self.recorded.counters.lock().unwrap().push((
            self.name.clone(),
            self.labels.clone(),
            value,
        ));
    }
    fn absolute(&self, _value: u64) {}
}

struct Ignored;
impl metrics::HistogramFn for Ignored {
    fn record(&self, _value: f64) {}
}

fn labels(key: &metrics::Key) -> Vec<(String, String)> {
    key.labels()
        .map(|l| (l.key().to_owned(), l.value().to_owned()))
        .collect()
}

impl metrics::Recorder for TestRecorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(Arc::new(CounterHandle {
            recorded: self.0.clone(),
            name: key.name().to_owned(),
            labels: labels(key),
        }))
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        let mut names = self.0.histograms.lock().unwrap();
        names.insert(key.name().to_owned());
        for (label, value) in labels(key) {
            names.insert(format!("{}:{label}={value}", key.name()));
        }
        metrics::Histogram::from_arc(Arc::new(Ignored))
    }
}

#[test]
fn metrics_count_each_decision_by_scheme_and_code_never_by_event_id() {
    let recorded = Arc::new(Recorded::default());
    let recorder = TestRecorder(recorded.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let (channel, _events) = ChannelSink::bounded(1);
            let gate = Gate::builder(verifier()).sink(channel).build().unwrap();
            let delivery = signed("msg_metrics_id");
            let full = signed("msg_metrics_full");
            gate.receive(&delivery.headers, delivery.body.clone(), None)
                .await;
            gate.receive(&delivery.headers, delivery.body.clone(), None)
                .await;
            gate.receive(&delivery.headers, "forged", None).await;
            gate.receive(&full.headers, full.body.clone(), None).await;
            gate.body_too_large();
        });
    });

    let counters = recorded.counters.lock().unwrap().clone();
    let count = |name: &str, label: Option<(&str, &str)>| {
        counters
            .iter()
            .filter(|(n, labels, _)| {
                n == name
                    && label.is_none_or(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| v)
            .sum::<u64>()
    };
    assert_eq!(
        count(
            "hookgate_received_total",
            Some(("scheme", "standard-webhooks-v1"))
        ),
        5
    );
    assert_eq!(count("hookgate_enqueued_total", None), 1);
    assert_eq!(count("hookgate_duplicates_total", None), 1);
    assert_eq!(
        count(
            "hookgate_rejected_total",
            Some(("reason", "signature_mismatch"))
        ),
        1
    );
    assert_eq!(
        count(
            "hookgate_rejected_total",
            Some(("reason", "body_too_large"))
        ),
        1
    );
    assert_eq!(
        count("hookgate_failures_total", Some(("reason", "sink_full"))),
        1
    );

    let histograms = recorded.histograms.lock().unwrap().clone();
    assert!(histograms.contains("hookgate_verify_duration_seconds"));
    assert!(histograms.contains("hookgate_decision_duration_seconds:outcome=accepted"));

    let every_label = counters
        .iter()
        .flat_map(|(_, labels, _)| labels.iter().map(|(_, v)| v.clone()))
        .chain(histograms.iter().cloned())
        .collect::<Vec<_>>();
    for value in every_label {
        assert!(
            !value.contains("msg_metrics"),
            "an event id as a label: {value}"
        );
    }
}

// --- Tracing: one `webhook.receive` span, never the body or the secret ---

#[derive(Debug, Default)]
struct SpanLog {
    names: Mutex<Vec<String>>,
    fields: Mutex<Vec<(String, String)>>,
}

struct FieldVisitor<'a>(&'a SpanLog);

impl tracing::field::Visit for FieldVisitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .fields
            .lock()
            .unwrap()
            .push((field.name().to_owned(), format!("{value:?}")));
    }
}

struct SpanSubscriber(Arc<SpanLog>, AtomicUsize);

impl tracing::Subscriber for SpanSubscriber {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        self.0
            .names
            .lock()
            .unwrap()
            .push(span.metadata().name().to_owned());
        span.record(&mut FieldVisitor(&self.0));
        tracing::span::Id::from_u64(self.1.fetch_add(1, Ordering::SeqCst) as u64 + 1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        values.record(&mut FieldVisitor(&self.0));
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        event.record(&mut FieldVisitor(&self.0));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn the_receive_span_carries_scheme_ids_and_outcome_but_never_the_body_or_secret() {
    let log = Arc::new(SpanLog::default());
    let subscriber = SpanSubscriber(log.clone(), AtomicUsize::new(0));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let (channel, _events) = ChannelSink::bounded(4);
            let gate = Gate::builder(verifier()).sink(channel).build().unwrap();
            let delivery = signed("msg_traced");
            let outcome = gate
                .receive(&delivery.headers, delivery.body.clone(), None)
                .await;
            assert_eq!(outcome.code(), "accepted");
            gate.receive(&delivery.headers, "forged body", None).await;
        });
    });
    let names = log.names.lock().unwrap().clone();
    assert_eq!(names, ["webhook.receive", "webhook.receive"]);
    let fields = log.fields.lock().unwrap().clone();
    let has = |name: &str, value: &str| {
        fields
            .iter()
            .any(|(n, v)| n == name && v.trim_matches('"') == value)
    };
    assert!(has("scheme", "standard-webhooks-v1"), "{fields:?}");
    assert!(has("delivery_id", "msg_traced"), "{fields:?}");
    assert!(has("outcome", "accepted"), "{fields:?}");
    assert!(has("outcome", "signature_mismatch"), "{fields:?}");
    assert!(has("status", "401"), "{fields:?}");
    assert!(fields.iter().any(|(n, _)| n == "duration_ms"));
    for (name, value) in &fields {
        assert!(!value.contains("\"data\""), "body in {name}: {value}");
        assert!(!value.contains("forged body"), "body in {name}: {value}");
        assert!(!value.contains("MfKQ9r8G"), "secret in {name}: {value}");
        assert!(!value.contains("v1,"), "signature in {name}: {value}");
    }
}

// --- Memory per key: the estimate must match what the process really spends ---

/// Resident memory of this process, in bytes.
#[cfg(target_os = "linux")]
fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Fills a store with 100 000 committed keys and prints the resident memory per key. Run
/// alone, in its own process, by the test below (other tests would blur the figure).
#[cfg(target_os = "linux")]
#[test]
#[ignore = "run in a child process by the_memory_store_reports_an_honest_estimate_of_bytes_per_key"]
fn memory_probe() {
    const KEYS: usize = 100_000;
    let keys: Vec<String> = (0..KEYS)
        .map(|i| format!("github:sha256:{i:064x}"))
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let store = MemoryDedupStore::new();
    let before = resident_bytes();
    runtime.block_on(async {
        for key in &keys {
            let Claim::New(token) = store.claim(key).await.unwrap() else {
                panic!("new key");
            };
            store.commit(key, token).await.unwrap();
        }
    });
    store.run_pending_tasks();
    let after = resident_bytes();
    assert_eq!(store.key_count(), KEYS as u64);
    println!("bytes_per_key={}", after.saturating_sub(before) / KEYS);
    drop(store);
}

#[cfg(target_os = "linux")]
#[test]
fn the_memory_store_reports_an_honest_estimate_of_bytes_per_key() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "memory_probe",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "probe failed: {stdout}");
    let measured: f64 = stdout
        .lines()
        .find_map(|line| Some(line.split_once("bytes_per_key=")?.1))
        .unwrap_or_else(|| panic!("no measurement in: {stdout}"))
        .trim()
        .parse()
        .unwrap();
    let estimate = MemoryDedupStore::approximate_bytes_per_key() as f64;
    println!("resident {measured} B/key, estimate {estimate} B/key");
    // The figure is documented as an upper estimate (the tables grow by doubling, so the
    // cost per key varies with the fill): never below what is spent, nor far above it.
    assert!(
        estimate >= measured && estimate <= measured * 2.0,
        "the estimate of {estimate} B/key is off: the process spent {measured} B/key"
    );
}
