#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
//! Runs the example binary as a user would, with the checks every receiver example shares
//! (`examples/test-support/receiver_checks.rs`), and actix's own.

#[path = "../../test-support/receiver_checks.rs"]
mod checks;
#[path = "../../test-support/example_process.rs"]
mod example_process;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_actix-receiver");

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

#[test]
fn only_post_reaches_the_gate_and_a_bad_public_origin_stops_the_start() {
    let receiver = example_process::Receiver::start(BIN, &[("HOOKGATE_SINK", "memory")]);
    let mut stream = TcpStream::connect(&receiver.addr).unwrap();
    write!(
        stream,
        "GET /webhooks HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        receiver.addr
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 405"), "{response}");

    let output = Command::new(BIN)
        .env("HOOKGATE_SINK", "memory")
        .env("HOOKGATE_LISTEN", "127.0.0.1:0")
        .env("HOOKGATE_PUBLIC_ORIGIN", "hooks.example.com")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("HOOKGATE_PUBLIC_ORIGIN"), "{stderr}");
}
