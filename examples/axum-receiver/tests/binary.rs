#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
//! Runs the example binary as a user would, with the checks every receiver example shares
//! (`examples/test-support/receiver_checks.rs`).

#[path = "../../test-support/receiver_checks.rs"]
mod checks;
#[path = "../../test-support/example_process.rs"]
mod example_process;

const BIN: &str = env!("CARGO_BIN_EXE_axum-receiver");

#[test]
fn the_in_memory_receiver_prints_each_accepted_event_once() {
    checks::the_in_memory_receiver_prints_each_accepted_event_once(BIN);
}

#[test]
fn the_inbox_receiver_stores_then_prints_each_accepted_event_once() {
    checks::the_inbox_receiver_stores_then_prints_each_accepted_event_once(BIN);
}

#[test]
fn several_secrets_are_accepted_and_bad_settings_are_reported() {
    checks::several_secrets_are_accepted_and_bad_settings_are_reported(BIN);
}
