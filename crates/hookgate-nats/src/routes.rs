//! Destinations on JetStream (issue 21): the subject layout, the checks, and the pauses.

use std::fmt;

use async_nats::jetstream::Context;
use async_nats::jetstream::stream::{Config as StreamConfig, StorageType, Stream};
use futures_util::StreamExt as _;
use hookgate_queue::Destination;

use crate::Error;
use crate::url::{DEFAULT_ACK_TIMEOUT, DEFAULT_STREAM, NatsUrl, connect, context};

/// The subject of destination `name`'s deliveries.
pub(crate) fn destination_subject(subject: &str, name: &str) -> String {
    format!("{subject}.{name}")
}

/// The token of the subject that keeps events no destination took (`<subject>.~filtered`):
/// `~` is in no destination name ([`check_name`]), so it is no destination's subject, and
/// no consumer reads it; the stream keeps those events by its limits.
pub(crate) const FILTERED_TOKEN: &str = "~filtered";

/// The wildcard the stream captures for all destinations: one token after the subject.
pub(crate) fn destinations_wildcard(subject: &str) -> String {
    format!("{subject}.*")
}

/// The durable consumer of destination `name`.
pub(crate) fn destination_consumer(consumer: &str, name: &str) -> String {
    format!("{consumer}_{name}")
}

/// The `Nats-Msg-Id` of the copy of the event with `dedup_key` for destination `name`: a
/// republish of the same event's copy within the duplicate window is dropped by
/// JetStream, while the copies for different destinations are all kept.
pub(crate) fn copy_message_id(dedup_key: &str, name: &str) -> String {
    format!("{dedup_key}@{name}")
}

/// The stream of an endpoint's pauses.
pub(crate) fn pauses_stream(stream: &str) -> String {
    format!("{stream}_PAUSED")
}

/// Refuses a destination name JetStream cannot carry as one subject token and consumer
/// name.
pub(crate) fn check_name(name: &str) -> Result<(), Error> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_');
    if name.is_empty() || !name.chars().all(ok) {
        return Err(Error::Config(format!(
            "destination {name:?}: on JetStream a destination name is letters, digits, - or _ \
             (it is a subject token and part of a consumer name: no .)"
        )));
    }
    Ok(())
}

/// Refuses what the JetStream backend cannot carry: names with `.`.
pub(crate) fn check_destinations<'a>(
    destinations: impl IntoIterator<Item = &'a Destination>,
) -> Result<(), Error> {
    for destination in destinations {
        check_name(destination.name())?;
    }
    Ok(())
}

/// The lane partitions, shared by every backend (`hookgate-queue`).
pub use hookgate_queue::{LANE_PARTITIONS, lane_partition};

/// The subject token (and consumer suffix) of lane partition `partition` of destination
/// `name`: `~` cannot be in a destination name here, so it never meets another's.
pub(crate) fn partition_token(name: &str, partition: u16) -> String {
    format!("{name}~p{partition}")
}

/// The pauses of an endpoint's destinations on JetStream, shared by every process: what
/// `hookgate destination pause|resume|paused --queue nats://…` changes and every
/// [`JetStreamQueue`](crate::JetStreamQueue) with destinations polls
/// ([`Queue::paused`](hookgate_queue::Queue::paused)). One message per paused destination
/// on `hookgate.paused.<stream>.<destination>` in the small stream `<stream>_PAUSED` (at
/// most one message per subject; created on first use); resuming purges the subject.
/// A plain stream rather than a key-value bucket, which needs nats-server 2.10 with this
/// client.
#[derive(Clone)]
pub struct JetStreamPauses {
    context: Context,
    stream: Stream,
    prefix: String,
}

impl JetStreamPauses {
    /// Connects to the pauses of the endpoint whose stream the URL's `stream` names
    /// ([`DEFAULT_STREAM`]).
    ///
    /// # Errors
    /// [`Error::Config`] for a bad URL, [`Error::Nats`] if JetStream cannot be reached or
    /// refuses the stream.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let url = NatsUrl::parse(
            url,
            &[
                "stream",
                "subject",
                "consumer",
                "dead_subject",
                "dead_stream",
            ],
        )?;
        let stream = url.param("stream").unwrap_or(DEFAULT_STREAM).to_owned();
        let client = connect(&url.server, "hookgate-pauses").await?;
        JetStreamPauses::open(&context(client, DEFAULT_ACK_TIMEOUT), &stream).await
    }

    /// The pauses of `stream`, their stream created if missing.
    pub(crate) async fn open(context: &Context, stream: &str) -> Result<Self, Error> {
        let name = pauses_stream(stream);
        let prefix = format!("hookgate.paused.{stream}");
        let config = StreamConfig {
            name: name.clone(),
            subjects: vec![format!("{prefix}.*")],
            max_messages_per_subject: 1,
            storage: StorageType::File,
            ..StreamConfig::default()
        };
        let handle = match context.get_stream(&name).await {
            Ok(handle) => handle,
            Err(_) => match context.create_stream(config).await {
                Ok(handle) => handle,
                // Another process may create it at the same moment: then read theirs.
                Err(create_err) => context
                    .get_stream(&name)
                    .await
                    .map_err(|_| Error::nats(format!("stream {name}: {create_err}")))?,
            },
        };
        Ok(JetStreamPauses {
            context: context.clone(),
            stream: handle,
            prefix,
        })
    }

    /// Pauses destination `name`; `false` if it was paused already.
    ///
    /// # Errors
    /// [`Error::Config`] for a name that cannot be a destination here, [`Error::Nats`] if
    /// JetStream cannot answer.
    pub async fn pause(&self, name: &str) -> Result<bool, Error> {
        check_name(name)?;
        if self.paused().await?.iter().any(|n| n == name) {
            return Ok(false);
        }
        self.context
            .publish(format!("{}.{name}", self.prefix), "paused".into())
            .await
            .map_err(Error::nats)?
            .await
            .map_err(Error::nats)?;
        Ok(true)
    }

    /// Resumes destination `name`; `false` if it was not paused.
    ///
    /// # Errors
    /// [`Error::Nats`] if JetStream cannot answer.
    pub async fn resume(&self, name: &str) -> Result<bool, Error> {
        if check_name(name).is_err() || !self.paused().await?.iter().any(|n| n == name) {
            return Ok(false);
        }
        self.stream
            .purge()
            .filter(format!("{}.{name}", self.prefix))
            .await
            .map_err(Error::nats)?;
        Ok(true)
    }

    /// The paused destinations, sorted by name.
    ///
    /// # Errors
    /// [`Error::Nats`] if JetStream cannot answer.
    pub async fn paused(&self) -> Result<Vec<String>, Error> {
        let mut info = self
            .stream
            .info_with_subjects(format!("{}.*", self.prefix))
            .await
            .map_err(Error::nats)?;
        let mut names = Vec::new();
        while let Some(entry) = info.next().await {
            let (subject, count) = entry.map_err(Error::nats)?;
            let name = subject
                .strip_prefix(self.prefix.as_str())
                .and_then(|rest| rest.strip_prefix('.'));
            if let (Some(name), true) = (name, count > 0) {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }
}

impl fmt::Debug for JetStreamPauses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamPauses")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_names() {
        assert_eq!(
            destination_subject("hooks.in", "billing"),
            "hooks.in.billing"
        );
        assert_eq!(destinations_wildcard("hooks.in"), "hooks.in.*");
        assert_eq!(
            destination_consumer("hookgate", "billing"),
            "hookgate_billing"
        );
        assert_eq!(copy_message_id("k:1", "billing"), "k:1@billing");
        assert!(check_name("billing-2_x").is_ok());
        assert_eq!(partition_token("billing", 3), "billing~p3");
        for bad in ["a.b", "", "a b", "a*"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
