//! An example binary run as a user would run it, for the examples' tests: environment in,
//! `listening on ADDR` and JSON lines out, signed deliveries over a real socket. Each
//! example's `tests/binary.rs` includes this file with `#[path]`.

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
