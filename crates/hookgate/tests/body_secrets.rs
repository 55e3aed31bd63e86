//! A shared secret that travels in the body (Figma's `passcode`) never reaches a sink: the
//! verified event's body has its value replaced by `"[redacted]"`, and only that body is
//! handed on, deduplicated and stored.

#![allow(
    missing_docs,
    clippy::arithmetic_side_effects,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use bytes::Bytes;
use hookgate::{ChannelSink, Gate, SchemeId, SignRequest, Signer, Verifier};

const PASSCODE: &str = "f1gm4-p4ssc0de-0123456789abcdef";
/// figma-001 of `tests/vectors/figma.json`.
const BODY: &str = r#"{"event_type":"FILE_UPDATE","file_key":"zH8mdb3SdmfPLgp0wAMjNi","file_name":"Design system","passcode":"f1gm4-p4ssc0de-0123456789abcdef","protocol_version":"2","retries":0,"timestamp":"2023-11-14T22:13:20Z","webhook_id":"22"}"#;
const STORED: &str = r#"{"event_type":"FILE_UPDATE","file_key":"zH8mdb3SdmfPLgp0wAMjNi","file_name":"Design system","passcode":"[redacted]","protocol_version":"2","retries":0,"timestamp":"2023-11-14T22:13:20Z","webhook_id":"22"}"#;

fn verifier() -> Verifier {
    Verifier::builder(SchemeId::Figma)
        .secret(PASSCODE)
        .build()
        .unwrap()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[test]
fn the_verified_body_is_the_received_one_with_the_passcode_value_replaced() {
    let event = verifier()
        .verify(&[("Content-Type", "application/json")], BODY)
        .unwrap();
    assert_eq!(event.body(), STORED.as_bytes());
    assert_eq!(event.event_type(), Some("FILE_UPDATE"));
    // Escaped, spaced or numeric forms: the whole JSON value goes, whatever its spelling.
    for (body, stored) in [
        (
            r#"{ "passcode" : "f1gm4-p4ssc0de-0123456789abcde\u0066" , "x": 1 }"#,
            r#"{ "passcode" : "[redacted]" , "x": 1 }"#,
        ),
        (
            r#"{"a":{"passcode":"not the secret"},"passcode":"f1gm4-p4ssc0de-0123456789abcdef"}"#,
            r#"{"a":{"passcode":"not the secret"},"passcode":"[redacted]"}"#,
        ),
    ] {
        let event = verifier().verify(&[] as &[(&str, &str)], body).unwrap();
        assert_eq!(event.body(), stored.as_bytes(), "{body}");
        assert!(!contains(event.body(), PASSCODE));
    }
    let numeric = Verifier::builder(SchemeId::Figma)
        .secret("123456")
        .build()
        .unwrap()
        .verify(
            &[] as &[(&str, &str)],
            r#"{"passcode":123456,"event_type":"PING"}"#,
        )
        .unwrap();
    assert_eq!(
        numeric.body(),
        r#"{"passcode":"[redacted]","event_type":"PING"}"#.as_bytes()
    );
}

#[test]
fn a_body_naming_the_passcode_twice_is_refused() {
    // Which copy counts would be ambiguous, and the other would escape redaction.
    let body = format!(r#"{{"passcode":"{PASSCODE}","passcode":"{PASSCODE}"}}"#);
    let rejection = verifier().verify(&[] as &[(&str, &str)], body).unwrap_err();
    assert_eq!(
        (rejection.code(), rejection.status()),
        ("malformed_header", 400)
    );
    assert!(!rejection.to_string().contains(PASSCODE));
}

#[tokio::test]
async fn the_sink_never_sees_the_passcode_and_retries_are_duplicates() {
    let (sink, mut events) = ChannelSink::bounded(16);
    let gate = Gate::builder(verifier()).sink(sink).build().unwrap();
    let signed = Signer::new(SchemeId::Figma, PASSCODE)
        .unwrap()
        .sign(&SignRequest::new(
            r#"{"event_type":"PING","webhook_id":"22"}"#,
        ))
        .unwrap();
    assert!(contains(&signed.body, PASSCODE), "the sender's body has it");

    for body in [Bytes::from_static(BODY.as_bytes()), signed.body.clone()] {
        let outcome = gate
            .receive(&[("Content-Type", "application/json")], body.clone(), None)
            .await;
        assert_eq!((outcome.status(), outcome.code()), (200, "accepted"));
        let event = events.try_recv().unwrap();
        assert!(!contains(event.body(), PASSCODE), "{:?}", event.body());
        assert!(contains(event.body(), r#""passcode":"[redacted]""#));
        assert_ne!(
            event.body(),
            &body,
            "the stored body differs from the raw bytes"
        );
        assert!(!contains(event.dedup_key().as_bytes(), PASSCODE));
        assert!(!format!("{event:?}").contains(PASSCODE));

        let again = gate
            .receive(&[("Content-Type", "application/json")], body, None)
            .await;
        assert_eq!((again.status(), again.code()), (200, "duplicate"));
        assert!(events.try_recv().is_none());
    }

    // A wrong passcode is a 401 and reaches nothing; the answer names no secret.
    let forged = BODY.replace(PASSCODE, "guessed-passcode");
    let outcome = gate.receive(&[] as &[(&str, &str)], forged, None).await;
    assert_eq!((outcome.status(), outcome.code()), (401, "token_mismatch"));
    assert!(!outcome.body().contains(PASSCODE));
    assert!(events.try_recv().is_none());
}

#[tokio::test]
async fn verify_only_hands_back_the_redacted_body() {
    let gate = Gate::builder(verifier()).build_verify_only().unwrap();
    let outcome = gate.verify_only(&[] as &[(&str, &str)], BODY, None).await;
    assert_eq!(outcome.code(), "verified");
    assert_eq!(outcome.event().unwrap().body(), STORED.as_bytes());
}

/// Microsoft Graph: every notification of the batch carries the subscription's clientState.
const CLIENT_STATE: &str = "SecretClientState-8f14e45f";

fn graph_verifier() -> Verifier {
    Verifier::builder(SchemeId::MicrosoftGraph)
        .secret(CLIENT_STATE)
        .build()
        .unwrap()
}

#[test]
fn every_graph_client_state_is_redacted_in_place() {
    let body = format!(
        r#"{{"value":[{{"id":"m0","clientState":"{CLIENT_STATE}","resourceData":{{"clientState":"nested"}}}}, {{"clientState" : "SecretClientState-8f14e45\u0066","id":"m1"}}]}}"#
    );
    let event = graph_verifier()
        .verify(&[("Content-Type", "application/json")], body)
        .unwrap();
    assert_eq!(
        std::str::from_utf8(event.body()).unwrap(),
        r#"{"value":[{"id":"m0","clientState":"[redacted]","resourceData":{"clientState":"nested"}}, {"clientState" : "[redacted]","id":"m1"}]}"#
    );
    assert!(!contains(event.body(), CLIENT_STATE));
    // One notification with another clientState rejects the whole batch; nothing names it.
    let mixed =
        format!(r#"{{"value":[{{"clientState":"{CLIENT_STATE}"}},{{"clientState":"guessed"}}]}}"#);
    let rejection = graph_verifier()
        .verify(&[] as &[(&str, &str)], mixed)
        .unwrap_err();
    assert_eq!(
        (rejection.code(), rejection.status()),
        ("token_mismatch", 401)
    );
    assert!(!rejection.to_string().contains(CLIENT_STATE));
}

#[tokio::test]
async fn graph_batches_reach_the_sink_redacted_and_retries_are_duplicates() {
    let (sink, mut events) = ChannelSink::bounded(16);
    let gate = Gate::builder(graph_verifier()).sink(sink).build().unwrap();
    // What `hookgate send --scheme microsoft-graph` posts: the sender sets every clientState.
    let signed = Signer::new(SchemeId::MicrosoftGraph, CLIENT_STATE)
        .unwrap()
        .sign(&SignRequest::new(
            r#"{"value":[{"changeType":"created","id":"a"},{"changeType":"deleted","id":"b"}]}"#,
        ))
        .unwrap();
    assert!(
        contains(&signed.body, CLIENT_STATE),
        "the sender's body has it"
    );
    let outcome = gate
        .receive(
            &[("Content-Type", "application/json")],
            signed.body.clone(),
            None,
        )
        .await;
    assert_eq!((outcome.status(), outcome.code()), (200, "accepted"));
    let event = events.try_recv().unwrap();
    assert!(!contains(event.body(), CLIENT_STATE), "{:?}", event.body());
    assert_eq!(
        std::str::from_utf8(event.body())
            .unwrap()
            .matches(r#""clientState":"[redacted]""#)
            .count(),
        2
    );
    assert!(!contains(event.dedup_key().as_bytes(), CLIENT_STATE));
    let again = gate
        .receive(&[("Content-Type", "application/json")], signed.body, None)
        .await;
    assert_eq!((again.status(), again.code()), (200, "duplicate"));
    assert!(events.try_recv().is_none());
}
