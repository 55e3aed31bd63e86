//! The checks both receiver examples (`axum-receiver`, `actix-receiver`) must pass, run on
//! their binaries as a user would: environment in, `listening on ADDR` and JSON lines out,
//! signed deliveries over a real socket. Each example's `tests/binary.rs` includes this file
//! and calls every check with its own binary, so the twins cannot drift apart.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, ChildStdout, Command, Stdio};

use hookgate::{SchemeId, SignRequest, Signer};

pub(crate) const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

pub(crate) struct Receiver {
    child: Child,
    stdout: BufReader<ChildStdout>,
    pub(crate) addr: String,
}

impl Receiver {
    /// Starts the example binary at `bin` with `envs` and waits for `listening on ADDR`.
    pub(crate) fn start(bin: &str, envs: &[(&str, &str)]) -> Receiver {
        let mut command = Command::new(bin);
        command
            .env_remove("HOOKGATE_SECRET")
            .env_remove("HOOKGATE_SCHEME")
            .env("HOOKGATE_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, value) in envs {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let addr = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        Receiver {
            child,
            stdout,
            addr,
        }
    }

    pub(crate) fn next_event(&mut self) -> serde_json::Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    /// Posts a body signed with `secret`, and returns the status and the body.
    pub(crate) fn post(&self, id: &str, body: &str, secret: &str, tamper: bool) -> (u16, String) {
        let signed = Signer::new(SchemeId::StandardWebhooksV1, secret)
            .unwrap()
            .sign(&SignRequest::new(body.to_owned()).id(id))
            .unwrap();
        let mut sent = signed.body.to_vec();
        if tamper {
            sent.push(b' ');
        }
        let mut request = format!(
            "POST /webhooks HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            sent.len()
        )
        .into_bytes();
        for (name, value) in &signed.headers {
            request.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(&sent);
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        stream.write_all(&request).unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response.split_once("\r\n\r\n").unwrap().1.to_owned();
        (status, body)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
