//! Every URL handshake vector (`tests/vectors/handshakes.json`) of a scheme whose handshake
//! this build implements, through the Gate: the provider's answer (status, content type, body), forged or stale
//! handshakes refused like deliveries, and nothing handed to the sink unless the vector says
//! the message is an event.

#![allow(
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::sync::{Arc, Mutex};

use hookgate::sink::SinkError;
use hookgate::{
    BoxFuture, ChannelSink, FixedClock, Gate, Handshake, OutcomeKind, RequestContext, SchemeId,
    Sink, VerifiedEvent, Verifier,
};
use support::HandshakeVector;

/// A channel sink that also keeps the handshakes it is told about.
#[derive(Debug)]
struct Recording {
    events: ChannelSink,
    handshakes: Arc<Mutex<Vec<Handshake>>>,
}

impl Sink for Recording {
    fn enqueue(&self, event: VerifiedEvent) -> BoxFuture<'_, Result<(), SinkError>> {
        self.events.enqueue(event)
    }

    fn record_handshake(&self, handshake: Handshake) -> BoxFuture<'_, Result<(), SinkError>> {
        self.handshakes.lock().unwrap().push(handshake);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The media type alone: `text/plain; charset=utf-8` → `text/plain`.
fn media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

async fn check(vector: &HandshakeVector, scheme: SchemeId) -> Vec<String> {
    let mut problems = Vec::new();
    let mut builder = Verifier::builder(scheme)
        .secret(
            vector
                .secret
                .as_deref()
                .unwrap_or("a-key-the-get-handshake-does-not-use"),
        )
        .clock(FixedClock::from_unix(vector.now));
    if let Some(token) = &vector.verify_token {
        builder = builder.verify_token(token.as_str());
    }
    let verifier = builder.build().unwrap();
    let (events, mut receiver) = ChannelSink::bounded(8);
    let handshakes = Arc::new(Mutex::new(Vec::new()));
    let gate = Gate::builder(verifier)
        .sink(Recording {
            events,
            handshakes: handshakes.clone(),
        })
        .build()
        .unwrap();
    let outcome = match vector.method.as_str() {
        "GET" => {
            gate.receive_get_with_headers(&vector.header_pairs(), vector.query.as_deref())
                .await
        }
        // Azure Event Grid's CloudEvents validation.
        "OPTIONS" => {
            gate.receive_options(&vector.header_pairs(), vector.query.as_deref())
                .await
        }
        // The query travels with a POST too (Microsoft Graph's validationToken).
        _ => {
            let request = RequestContext::new().with_query_opt(vector.query.as_deref());
            gate.receive(&vector.header_pairs(), vector.body.clone(), request)
                .await
        }
    };
    let mut problem =
        |what: String| problems.push(format!("{} [{}]: {what}", vector.id, vector.case));
    if outcome.status() != vector.expect_status {
        problem(format!("status {} ({})", outcome.status(), outcome.code()));
    }
    if let Some(expected) = &vector.expect_content_type {
        if media_type(outcome.content_type()) != media_type(expected) {
            problem(format!("content type {}", outcome.content_type()));
        }
    }
    match &vector.expect_body {
        Some(serde_json::Value::String(text)) if outcome.body() != text => {
            problem(format!("body {:?}", outcome.body()));
        }
        Some(object @ serde_json::Value::Object(_)) => {
            let got: serde_json::Value =
                serde_json::from_str(outcome.body()).unwrap_or(serde_json::Value::Null);
            if &got != object {
                problem(format!("body {:?}", outcome.body()));
            }
        }
        _ => {}
    }
    for (name, value) in &vector.expect_headers {
        let got = outcome.headers();
        let got = got.get(name.as_str()).and_then(|v| v.to_str().ok());
        if got != value.as_str() {
            problem(format!("header {name}: {got:?}"));
        }
    }
    let stored = receiver.try_recv().is_some();
    if stored != vector.stored {
        problem(format!("stored: {stored}"));
    }
    let recorded = handshakes.lock().unwrap().len();
    let answered = matches!(outcome.kind(), OutcomeKind::Handshake(_));
    if recorded != usize::from(answered) {
        problem(format!(
            "{recorded} handshake(s) recorded, answered: {answered}"
        ));
    }
    if answered && (vector.stored || vector.expect_status != 200) {
        problem("answered as a handshake".to_owned());
    }
    problems
}

#[tokio::test]
async fn every_handshake_vector_of_a_known_scheme_is_answered_as_the_provider_expects() {
    let vectors = support::handshakes();
    let mut problems = Vec::new();
    let mut checked = Vec::new();
    let mut unknown = Vec::new();
    for vector in &vectors {
        match vector.scheme.parse::<SchemeId>() {
            Ok(scheme) if scheme.handshake().is_some() => {
                problems.extend(check(vector, scheme).await);
                checked.push(vector.id.as_str());
            }
            // Not answered by this build: a scheme it does not know, or whose handshake it
            // does not implement yet.
            _ => unknown.push(vector.id.as_str()),
        }
    }
    println!("checked: {checked:?}\nhandshakes not in this build: {unknown:?}");
    for scheme in SchemeId::ALL
        .into_iter()
        .filter(|s| s.handshake().is_some())
    {
        assert!(
            vectors
                .iter()
                .any(|v| v.scheme == scheme.as_str() && v.expect_status == 200 && !v.stored),
            "no answered handshake vector for {scheme}"
        );
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}
