//! The checks both receiver examples (`axum-receiver`, `actix-receiver`) must pass. Each
//! one's `tests/binary.rs` includes this file (after `example_process.rs`) and calls every
//! check with its own binary, so the twins cannot drift apart.

use std::process::Command;

use crate::example_process::{Receiver, SECRET};

/// Accepted, duplicate, forged, accepted: each accepted event printed once.
pub(crate) fn exercise(receiver: &mut Receiver) {
    let body = r#"{"type":"invoice.paid","id":"in_1"}"#;
    assert_eq!(
        receiver.post("msg_1", body, SECRET, false),
        (200, "accepted".to_owned())
    );
    let event = receiver.next_event();
    assert_eq!(event["dedup_key"], "standard-webhooks-v1:id:msg_1");
    assert_eq!(event["event_type"], "invoice.paid");
    assert_eq!(event["body"]["id"], "in_1");

    assert_eq!(
        receiver.post("msg_1", body, SECRET, false),
        (200, "duplicate".to_owned())
    );
    assert_eq!(
        receiver.post("msg_2", body, SECRET, true),
        (401, "signature_mismatch".to_owned())
    );
    // The next line printed is the next accepted event: nothing was printed for the
    // duplicate or the forgery.
    assert_eq!(
        receiver.post("msg_3", "{}", SECRET, false),
        (200, "accepted".to_owned())
    );
    assert_eq!(receiver.next_event()["delivery_id"], "msg_3");
}

pub(crate) fn the_in_memory_receiver_prints_each_accepted_event_once(bin: &str) {
    let mut receiver = Receiver::start(bin, &[("HOOKGATE_SINK", "memory")]);
    exercise(&mut receiver);
}

pub(crate) fn the_inbox_receiver_stores_then_prints_each_accepted_event_once(bin: &str) {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("data");
    let mut receiver = Receiver::start(bin, &[("HOOKGATE_DATA", dir.to_str().unwrap())]);
    exercise(&mut receiver);
    assert!(dir.join("inbox.db").exists());
}

pub(crate) fn several_secrets_are_accepted_and_bad_settings_are_reported(bin: &str) {
    let other = "whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXk=";
    let receiver = Receiver::start(
        bin,
        &[
            ("HOOKGATE_SINK", "memory"),
            ("HOOKGATE_SECRET", &format!("{other} {SECRET}")),
        ],
    );
    assert_eq!(receiver.post("k1", "{}", SECRET, false).0, 200);
    assert_eq!(receiver.post("k2", "{}", other, false).0, 200);

    let output = Command::new(bin)
        .env("HOOKGATE_SCHEME", "nope")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("HOOKGATE_SCHEME"));
}
