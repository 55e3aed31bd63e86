#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]
//! Runs the example binary: environment in, `listening on ADDR` and JSON lines out, signed
//! deliveries over a real socket.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, ChildStdout, Command, Stdio};

use hookgate::{SchemeId, SignRequest, Signer};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Server {
    child: Child,
    stdout: BufReader<ChildStdout>,
    addr: String,
}

impl Server {
    fn start() -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_axum-extractor"))
            .env_remove("HOOKGATE_SECRET")
            .env_remove("HOOKGATE_SCHEME")
            .env("HOOKGATE_LISTEN", "127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let addr = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        Server {
            child,
            stdout,
            addr,
        }
    }

    fn post(&self, id: &str, body: &str, tamper: bool) -> (u16, String) {
        let signed = Signer::new(SchemeId::StandardWebhooksV1, SECRET)
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

    fn next_line(&mut self) -> serde_json::Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_handler_runs_only_for_verified_json() {
    let mut server = Server::start();
    let (status, body) = server.post("msg_1", r#"{"type":"invoice.paid","id":"in_1"}"#, false);
    assert_eq!((status, body.as_str()), (200, r#"{"status":"processed"}"#));
    let line = server.next_line();
    assert_eq!(line["dedup_key"], "standard-webhooks-v1:id:msg_1");
    assert_eq!(line["payload"]["id"], "in_1");

    assert_eq!(
        server.post("msg_2", r#"{"id":"in_2"}"#, true),
        (401, "signature_mismatch".to_owned())
    );
    assert_eq!(
        server.post("msg_3", "not json", false),
        (400, "invalid_json".to_owned())
    );
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    assert_eq!(
        server.post("msg_4", &deep, false),
        (400, "json_too_deep".to_owned())
    );
    // Only the first delivery reached the handler.
    let (status, _) = server.post("msg_5", r#"{"id":"in_5"}"#, false);
    assert_eq!(status, 200);
    assert_eq!(server.next_line()["delivery_id"], "msg_5");
}
