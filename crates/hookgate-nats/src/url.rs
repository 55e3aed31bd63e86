//! `nats://` URLs with hookgate's query parameters, connections, and stream set-up.

use std::time::Duration;

use async_nats::jetstream::{self, Context};
use async_nats::{Client, ConnectOptions};

use crate::Error;

/// Default stream: `HOOKGATE`.
pub const DEFAULT_STREAM: &str = "HOOKGATE";
/// Default subject the events are published on: `hookgate.events`.
pub const DEFAULT_SUBJECT: &str = "hookgate.events";
/// Default time to wait for JetStream's answer (a publish ack, an API call): 2 seconds.
/// A JetStream that does not answer in time counts as down (the gate answers 503).
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// A URL split into the server address and hookgate's parameters.
#[derive(Debug)]
pub(crate) struct NatsUrl {
    pub(crate) server: String,
    params: Vec<(String, String)>,
}

impl NatsUrl {
    /// Splits `url` (`nats://host:port/?stream=…`); every query parameter must be one of
    /// `ours`.
    pub(crate) fn parse(url: &str, ours: &[&str]) -> Result<Self, Error> {
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut params = Vec::new();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let (name, value) = (name.into_owned(), value.into_owned());
            if !ours.contains(&name.as_str()) {
                return Err(Error::Config(format!(
                    "unknown URL parameter {name:?} (known here: {})",
                    ours.join(", ")
                )));
            }
            params.push((name, value));
        }
        let server = base.trim_end_matches('/').to_owned();
        if server.is_empty() {
            return Err(Error::Config("the NATS URL has no server".to_owned()));
        }
        Ok(NatsUrl { server, params })
    }

    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn millis(&self, name: &str) -> Result<Option<Duration>, Error> {
        self.param(name)
            .map(|v| {
                v.parse::<u64>().map(Duration::from_millis).map_err(|_| {
                    Error::Config(format!("URL parameter {name}={v:?} is not a whole number"))
                })
            })
            .transpose()
    }
}

/// A client that reconnects by itself (async-nats retries forever), named for the
/// server's monitoring.
pub(crate) async fn connect(server: &str, name: &str) -> Result<Client, Error> {
    ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(2))
        .connect(server)
        .await
        .map_err(Error::nats)
}

pub(crate) fn context(client: Client, timeout: Duration) -> Context {
    jetstream::ContextBuilder::new()
        .timeout(timeout)
        .build(client)
}

/// Whether NATS subject `pattern` (with `*` and `>` wildcards) matches `subject`.
pub(crate) fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for token in pattern.split('.') {
        match (token, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (literal, Some(actual)) if literal == actual => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_subjects() {
        let url = NatsUrl::parse(
            "nats://127.0.0.1:4222/?stream=ORDERS&subject=orders.in%2Ehooks",
            &["stream", "subject"],
        )
        .unwrap();
        assert_eq!(url.server, "nats://127.0.0.1:4222");
        assert_eq!(url.param("stream"), Some("ORDERS"));
        assert_eq!(url.param("subject"), Some("orders.in.hooks"));
        assert!(NatsUrl::parse("nats://h:4222/?bogus=1", &["stream"]).is_err());
        assert!(NatsUrl::parse("?stream=x", &["stream"]).is_err());
        let timed = NatsUrl::parse("nats://h/?t=25", &["t"]).unwrap();
        assert_eq!(timed.millis("t").unwrap(), Some(Duration::from_millis(25)));
        assert!(
            NatsUrl::parse("nats://h/?t=x", &["t"])
                .unwrap()
                .millis("t")
                .is_err()
        );

        assert!(subject_matches("hookgate.events", "hookgate.events"));
        assert!(subject_matches("hookgate.*", "hookgate.events"));
        assert!(subject_matches("hookgate.>", "hookgate.events.dead"));
        assert!(!subject_matches("hookgate.*", "hookgate.events.dead"));
        assert!(!subject_matches("hookgate.events", "hookgate.events.dead"));
        assert!(!subject_matches("hookgate.events.dead", "hookgate.events"));
    }
}
