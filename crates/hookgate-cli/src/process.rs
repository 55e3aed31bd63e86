//! Processing a stored event: forward it to the application, pipe it to a command, or
//! print it. Each event travels as a JSON envelope with the original body inside, the same
//! whether it comes from `serve`'s inbox or from a queue that `hookgate work` consumes.

use std::fmt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use bytes::Bytes;
use hookgate::BoxFuture;
use hookgate_inbox::{HandlerResult, InboxEvent};
use hookgate_queue::{Handler, QueuedEvent};
use http::Uri;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::io::AsyncWriteExt as _;

use crate::client::{HttpClient, snippet};
use crate::duration::rfc3339;

/// The header carrying the event's authenticated dedup key to the application: the same
/// for every copy and every attempt, so the application can make processing idempotent.
pub(crate) const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Where the event is stored, as its id says.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(untagged)]
pub(crate) enum EventRef<'a> {
    /// The inbox's id (`hookgate inbox show ID`): a number.
    Inbox(i64),
    /// The queue's id of the entry (a Redis stream entry id, a JetStream sequence).
    Queue(&'a str),
}

impl fmt::Display for EventRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventRef::Inbox(id) => id.fmt(f),
            EventRef::Queue(id) => f.write_str(id),
        }
    }
}

/// What the application is told about a stored event, from the inbox or a queue.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EventView<'a> {
    id: EventRef<'a>,
    scheme: &'a str,
    dedup_key: &'a str,
    delivery_id: Option<&'a str>,
    event_type: Option<&'a str>,
    timestamp: Option<SystemTime>,
    received_at: SystemTime,
    attempt: u32,
    headers: &'a [(String, String)],
    body: &'a [u8],
    destination: Option<&'a str>,
}

impl<'a> From<&'a InboxEvent> for EventView<'a> {
    fn from(event: &'a InboxEvent) -> Self {
        EventView {
            id: EventRef::Inbox(event.id().get()),
            scheme: event.scheme(),
            dedup_key: event.dedup_key(),
            delivery_id: event.delivery_id(),
            event_type: event.event_type(),
            timestamp: event.timestamp(),
            received_at: event.received_at(),
            attempt: event.attempt(),
            headers: event.headers(),
            body: event.body(),
            destination: event.destination(),
        }
    }
}

impl<'a> From<&'a QueuedEvent> for EventView<'a> {
    fn from(event: &'a QueuedEvent) -> Self {
        EventView {
            id: EventRef::Queue(event.id()),
            scheme: event.scheme(),
            dedup_key: event.dedup_key(),
            delivery_id: event.delivery_id(),
            event_type: event.event_type(),
            timestamp: event.timestamp(),
            received_at: event.received_at(),
            attempt: event.attempt(),
            headers: event.headers(),
            body: event.body(),
            destination: event.destination(),
        }
    }
}

/// What the application receives for each event.
#[derive(Debug, Serialize)]
struct Envelope<'a> {
    /// The store's id: a number for the inbox (`hookgate inbox show ID`), a string for a
    /// queue's entry.
    id: EventRef<'a>,
    endpoint: &'a str,
    /// The destination this delivery goes to, for an endpoint with destinations.
    #[serde(skip_serializing_if = "Option::is_none")]
    destination: Option<&'a str>,
    scheme: &'a str,
    /// The authenticated dedup key: the same for every copy of the delivery.
    dedup_key: &'a str,
    delivery_id: Option<&'a str>,
    event_type: Option<&'a str>,
    /// The signed timestamp, where the scheme has one (RFC 3339).
    signed_at: Option<String>,
    received_at: String,
    /// Which attempt this is, from 1: above 1 the application may have seen it already.
    attempt: u32,
    headers: &'a [(String, String)],
    /// The body itself when it is JSON, byte for byte.
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a RawValue>,
    /// The body as text when it is UTF-8 but not JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    body_text: Option<&'a str>,
    /// The body in base64 otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
}

/// The envelope of `event` as JSON; `one_line` re-encodes a multi-line JSON body compactly
/// (for printing), otherwise the body's bytes are kept as they are.
pub(crate) fn envelope(event: EventView<'_>, endpoint: &str, one_line: bool) -> String {
    let raw_body = std::str::from_utf8(event.body).ok();
    let compact: Option<Box<RawValue>> = raw_body
        .filter(|text| one_line && text.contains(['\n', '\r']))
        .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .and_then(|value| serde_json::value::to_raw_value(&value).ok());
    let json: Option<&RawValue> = match &compact {
        Some(raw) => Some(raw),
        None => raw_body.and_then(|text| serde_json::from_str::<&RawValue>(text).ok()),
    };
    let text = if json.is_none() { raw_body } else { None };
    let base64 = (json.is_none() && text.is_none())
        .then(|| base64::engine::general_purpose::STANDARD.encode(event.body));
    let envelope = Envelope {
        id: event.id,
        endpoint,
        destination: event.destination,
        scheme: event.scheme,
        dedup_key: event.dedup_key,
        delivery_id: event.delivery_id,
        event_type: event.event_type,
        signed_at: event.timestamp.map(rfc3339),
        received_at: rfc3339(event.received_at),
        attempt: event.attempt,
        headers: event.headers,
        body: json,
        body_text: text,
        body_base64: base64,
    };
    serde_json::to_string(&envelope).unwrap_or_else(|_| "{}".to_owned())
}

/// Runs an endpoint's action as the handler of the one worker loop, whichever queue feeds
/// it: `serve`'s local worker (inbox or PostgreSQL) or `hookgate work`.
#[derive(Debug, Clone)]
pub(crate) struct Processor {
    pub(crate) endpoint: Arc<str>,
    pub(crate) action: Target,
    pub(crate) timeout: Duration,
    /// The endpoint's destinations by name: a delivery to one runs its target instead of
    /// `action`.
    pub(crate) destinations: Arc<[(String, Target)]>,
}

/// An action ready to run.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Forward { uri: Uri, client: Box<HttpClient> },
    Exec(String),
    Print,
}

impl Target {
    /// POST to `url` (the value of `--forward`) with `client`.
    ///
    /// # Errors
    /// A URL that is not http(s).
    pub(crate) fn forward(
        url: &str,
        client: &HttpClient,
    ) -> Result<Target, crate::error::CliError> {
        Ok(Target::Forward {
            uri: crate::client::parse_url(url, "--forward")?,
            client: Box::new(client.clone()),
        })
    }
}

/// The inbox's events (`serve`'s local worker on the SQLite inbox).
impl Handler<InboxEvent> for Processor {
    fn handle(&self, event: InboxEvent) -> BoxFuture<'_, HandlerResult> {
        Box::pin(async move {
            let view = EventView::from(&event);
            let Some(name) = event.destination() else {
                return self.process(view, &self.action).await;
            };
            match self.destinations.iter().find(|(n, _)| n == name) {
                Some((_, target)) => self.process(view, target).await,
                None => HandlerResult::fail(format!("destination {name} is not configured")),
            }
        })
    }
}

/// A queue's events (`hookgate work`, and `serve`'s local worker on PostgreSQL).
impl Handler<QueuedEvent> for Processor {
    fn handle(&self, event: QueuedEvent) -> BoxFuture<'_, HandlerResult> {
        Box::pin(async move {
            let view = EventView::from(&event);
            let Some(name) = event.destination() else {
                return self.process(view, &self.action).await;
            };
            match self.destinations.iter().find(|(n, _)| n == name) {
                Some((_, target)) => self.process(view, target).await,
                None => HandlerResult::fail(format!("destination {name} is not configured")),
            }
        })
    }
}

impl Processor {
    async fn process(&self, event: EventView<'_>, target: &Target) -> HandlerResult {
        match target {
            Target::Print => {
                crate::say(&envelope(event, &self.endpoint, true));
                HandlerResult::Ok
            }
            Target::Forward { uri, client } => self.forward(event, uri, client).await,
            Target::Exec(command) => self.exec(event, command).await,
        }
    }

    /// POSTs the envelope; a 2xx is done, anything else is retried (after the
    /// application's `Retry-After` in seconds, if it sent one).
    async fn forward(&self, event: EventView<'_>, uri: &Uri, client: &HttpClient) -> HandlerResult {
        let body = Bytes::from(envelope(event, &self.endpoint, false));
        let mut headers = vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            (IDEMPOTENCY_HEADER.to_owned(), event.dedup_key.to_owned()),
            ("Hookgate-Event-Id".to_owned(), event.id.to_string()),
            ("Hookgate-Attempt".to_owned(), event.attempt.to_string()),
            (
                "User-Agent".to_owned(),
                concat!("hookgate/", env!("CARGO_PKG_VERSION")).to_owned(),
            ),
        ];
        if let Some(destination) = event.destination {
            headers.push(("Hookgate-Destination".to_owned(), destination.to_owned()));
        }
        if let Some(event_type) = event.event_type {
            if http::HeaderValue::from_str(event_type).is_ok() {
                headers.push(("Hookgate-Event-Type".to_owned(), event_type.to_owned()));
            }
        }
        match client.post(uri, &headers, body).await {
            Ok(reply) if (200..300).contains(&reply.status) => HandlerResult::Ok,
            Ok(reply) => {
                let error = format!("forward: {} {}", reply.status, reply.body_snippet(200));
                let after = reply
                    .headers
                    .get(http::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                match after {
                    Some(after) => HandlerResult::Retry {
                        after: Some(after),
                        error: Some(error),
                    },
                    None => HandlerResult::retry_because(error),
                }
            }
            Err(no_reply) => HandlerResult::retry_because(format!("forward: {}", no_reply.error)),
        }
    }

    /// Pipes the envelope to `sh -c COMMAND`; exit 0 is done, anything else is retried.
    async fn exec(&self, event: EventView<'_>, command: &str) -> HandlerResult {
        let envelope = envelope(event, &self.endpoint, false);
        let mut child = match shell(command)
            .env("HOOKGATE_EVENT_ID", event.id.to_string())
            .env("HOOKGATE_DEDUP_KEY", event.dedup_key)
            .env("HOOKGATE_EVENT_TYPE", event.event_type.unwrap_or(""))
            .env("HOOKGATE_SCHEME", event.scheme)
            .env("HOOKGATE_ATTEMPT", event.attempt.to_string())
            .env("HOOKGATE_ENDPOINT", &*self.endpoint)
            .env("HOOKGATE_DESTINATION", event.destination.unwrap_or(""))
            .stdin(Stdio::piped())
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(child) => child,
            Err(e) => return HandlerResult::retry_because(format!("exec: cannot start: {e}")),
        };
        if let Some(mut stdin) = child.stdin.take() {
            // A command that does not read its input is not an error.
            let _ = stdin.write_all(envelope.as_bytes()).await;
            let _ = stdin.write_all(b"\n").await;
        }
        match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Err(_) => HandlerResult::retry_because(format!(
                "exec: no exit after {}",
                crate::duration::human(self.timeout)
            )),
            Ok(Err(e)) => HandlerResult::retry_because(format!("exec: {e}")),
            Ok(Ok(output)) if output.status.success() => HandlerResult::Ok,
            Ok(Ok(output)) => HandlerResult::retry_because(format!(
                "exec: {}: {}",
                output.status,
                snippet(&output.stderr, 300)
            )),
        }
    }
}

/// `sh -c COMMAND` (`cmd /C` on Windows).
fn shell(command: &str) -> tokio::process::Command {
    #[cfg(windows)]
    {
        let mut cmd = tokio::process::Command::new("cmd");
        cmd.arg("/C").arg(command);
        cmd
    }
    #[cfg(not(windows))]
    {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.arg("-c").arg(command);
        cmd
    }
}

#[cfg(test)]
mod tests {
    use hookgate_inbox::EventId;

    use super::*;

    #[test]
    fn json_bodies_travel_byte_for_byte_others_as_text_or_base64() {
        let event = InboxEvent::new(EventId::new(7), "github", "github:body:ab", "{\"a\": 1}")
            .with_event_type("push");
        let value: serde_json::Value =
            serde_json::from_str(&envelope((&event).into(), "default", false)).unwrap();
        assert_eq!(value["body"]["a"], 1);
        assert_eq!(value["id"], 7);
        assert_eq!(value["dedup_key"], "github:body:ab");
        assert!(envelope((&event).into(), "default", false).contains("{\"a\": 1}"));

        let pretty = InboxEvent::new(EventId::new(1), "s", "k", "{\n\"a\": 1\n}");
        assert!(!envelope((&pretty).into(), "e", true).contains('\n'));
        assert!(envelope((&pretty).into(), "e", false).contains("{\n\"a\": 1\n}"));

        let text = InboxEvent::new(EventId::new(1), "s", "k", "a=1&b=2");
        let value: serde_json::Value =
            serde_json::from_str(&envelope((&text).into(), "e", true)).unwrap();
        assert_eq!(value["body_text"], "a=1&b=2");
        let binary = InboxEvent::new(EventId::new(1), "s", "k", vec![0xff, 0x00]);
        let value: serde_json::Value =
            serde_json::from_str(&envelope((&binary).into(), "e", true)).unwrap();
        assert_eq!(value["body_base64"], "/wA=");
    }
}
