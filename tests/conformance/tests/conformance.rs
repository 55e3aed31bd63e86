#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
//! The conformance table through the core gate, the tower layer and the actix-web
//! middleware: same case, same status, same code, same `Retry-After`, same number of events.
//! See `harness/cases.rs` for the table and `harness/runners.rs` for the adapters.

mod harness;

use harness::{Adapter, Case, cases, check_all};

async fn conform(group: &str, cases: Vec<Case>) {
    assert!(!cases.is_empty(), "{group}: no cases");
    let problems = check_all(&cases).await;
    let runs: Vec<String> = Adapter::ALL
        .iter()
        .map(|adapter| {
            let count = cases.iter().filter(|case| adapter.runs(case)).count();
            format!("{} {count}", adapter.name())
        })
        .collect();
    println!("{group}: {} cases; runs: {}", cases.len(), runs.join(", "));
    assert!(
        problems.is_empty(),
        "{group}: {} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_gate_contract_row_answers_alike() {
    conform("contract", cases::contract()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_at_and_over_the_limit_answer_alike() {
    conform("limits", cases::limits()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_and_duplicate_deliveries_answer_alike() {
    conform("concurrency", cases::concurrency()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_answers_alike() {
    conform("rotation", cases::rotation()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_only_mode_answers_alike() {
    conform("verify-only", cases::verify_only()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_vector_answers_alike() {
    let cases = cases::provider_vectors();
    let valid_schemes: std::collections::BTreeSet<String> = cases
        .iter()
        // An event accepted, or a provider handshake answered (Discord's vectors are PINGs).
        .filter(|c| c.events == 1 || c.handshakes > 0)
        .map(|c| c.setup.scheme.as_str().to_owned())
        .collect();
    for scheme in hookgate::SchemeId::ALL {
        assert!(
            valid_schemes.contains(scheme.as_str()),
            "no valid vector for {scheme}"
        );
    }
    conform("provider vectors", cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_reports_every_adapter_that_answers_otherwise() {
    for mut case in [cases::contract().remove(0), cases::verify_only().remove(0)] {
        case.expect = vec![(418, "teapot".to_owned())];
        case.events = 7;
        let problems = harness::check(&case).await;
        let adapters: Vec<Adapter> = Adapter::ALL.into_iter().filter(|a| a.runs(&case)).collect();
        assert!(adapters.len() >= 3, "{}: only {adapters:?}", case.name);
        for adapter in adapters {
            let tag = format!("[{}]", adapter.name());
            assert_eq!(
                problems.iter().filter(|p| p.starts_with(&tag)).count(),
                2,
                "{tag} in {problems:#?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_handshakes_answer_alike_and_store_nothing() {
    let cases = cases::handshakes();
    conform("handshakes", cases.clone()).await;
    // The answers' content types on the wire: JSON where the provider expects JSON.
    for case in cases.iter().filter(|c| c.handshakes == 1) {
        let run = harness::runners::run(Adapter::Tower, case).await;
        let content_type = run.answers[0].content_type.clone().unwrap();
        let json = case.name.starts_with("zoom")
            || case.name.starts_with("discord")
            || case.name.starts_with("okta")
            || case
                .name
                .starts_with("azure event grid SubscriptionValidationEvent");
        let expected = if json {
            "application/json"
        } else {
            "text/plain; charset=utf-8"
        };
        assert_eq!(content_type, expected, "{}", case.name);
    }
}
