#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
//! Runs the example binary: environment in, `listening on ADDR` and JSON lines out, signed
//! deliveries over a real socket.

#[path = "../../test-support/example_process.rs"]
mod example_process;

use example_process::{Receiver, SECRET};

#[test]
fn the_handler_runs_only_for_verified_json() {
    let mut server = Receiver::start(env!("CARGO_BIN_EXE_axum-extractor"), &[]);
    let (status, body) = server.post(
        "msg_1",
        r#"{"type":"invoice.paid","id":"in_1"}"#,
        SECRET,
        false,
    );
    assert_eq!((status, body.as_str()), (200, r#"{"status":"processed"}"#));
    let line = server.next_event();
    assert_eq!(line["dedup_key"], "standard-webhooks-v1:id:msg_1");
    assert_eq!(line["payload"]["id"], "in_1");

    assert_eq!(
        server.post("msg_2", r#"{"id":"in_2"}"#, SECRET, true),
        (401, "signature_mismatch".to_owned())
    );
    assert_eq!(
        server.post("msg_3", "not json", SECRET, false),
        (400, "invalid_json".to_owned())
    );
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    assert_eq!(
        server.post("msg_4", &deep, SECRET, false),
        (400, "json_too_deep".to_owned())
    );
    // Only the first delivery reached the handler.
    let (status, _) = server.post("msg_5", r#"{"id":"in_5"}"#, SECRET, false);
    assert_eq!(status, 200);
    assert_eq!(server.next_event()["delivery_id"], "msg_5");
}
