//! Reading and replaying the dead letters of a JetStream stream.

use std::fmt;

use async_nats::HeaderMap;
use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::Stream;
use async_nats::jetstream::{Context, ErrorCode};
use hookgate_queue::{Envelope, EnvelopeError};

use crate::Error;
use crate::url::{DEFAULT_ACK_TIMEOUT, DEFAULT_STREAM, DEFAULT_SUBJECT, NatsUrl, connect, context};
use crate::worker::{ATTEMPTS_HEADER, ERROR_HEADER, SOURCE_HEADER};

/// The dead letters of a stream handled by a [`JetStreamWorker`](crate::JetStreamWorker):
/// list them, and put them back on the stream once the cause is fixed.
///
/// For an endpoint with destinations, each destination has its own dead letters: pick
/// them with [`destination`](Self::destination).
#[derive(Clone)]
pub struct JetStreamDeadLetters {
    context: Context,
    subject: String,
    dead: String,
    /// With a destination: the subject of its dead letters (others are skipped).
    dead_subject: Option<String>,
}

/// One dead letter.
#[non_exhaustive]
#[derive(Debug)]
pub struct DeadLetter {
    /// The message's sequence in the dead-letter stream.
    pub sequence: u64,
    /// The event (an error if the message was unreadable in the first place).
    pub envelope: Result<Envelope, EnvelopeError>,
    /// Attempts made.
    pub attempts: u32,
    /// Why it was given up.
    pub error: String,
    /// When, in Unix milliseconds.
    pub failed_at_ms: i64,
}

impl JetStreamDeadLetters {
    /// Connects to the dead letters of the stream and subject named by the URL's `stream`
    /// and `subject` parameters ([`DEFAULT_STREAM`], [`DEFAULT_SUBJECT`]); `dead_stream`
    /// overrides the default `<stream>_DEAD`. Replayed events are published on `subject`.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad URL, [`Error::Nats`] if NATS cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let url = NatsUrl::parse(url, &["stream", "subject", "dead_stream", "consumer"])?;
        let stream = url.param("stream").unwrap_or(DEFAULT_STREAM);
        let subject = url.param("subject").unwrap_or(DEFAULT_SUBJECT).to_owned();
        let dead = url
            .param("dead_stream")
            .map_or_else(|| format!("{stream}_DEAD"), str::to_owned);
        let client = connect(&url.server, "hookgate-dead-letters").await?;
        Ok(JetStreamDeadLetters {
            context: context(client, DEFAULT_ACK_TIMEOUT),
            subject,
            dead,
            dead_subject: None,
        })
    }

    /// The dead letters of destination `name` only (issue 21): those on
    /// `<subject>.dead.<name>`, replayed to `<subject>.<name>` only, so a replay never
    /// re-delivers to the endpoint's other destinations. Assumes the default dead-letter
    /// subject (`<subject>.dead`).
    ///
    /// # Errors
    /// [`Error::Config`] for a name that cannot be a destination on JetStream.
    pub fn destination(mut self, name: &str) -> Result<Self, Error> {
        crate::routes::check_name(name)?;
        let dead_base = format!("{}.dead", self.subject);
        self.dead_subject = Some(crate::routes::destination_subject(&dead_base, name));
        self.subject = crate::routes::destination_subject(&self.subject, name);
        Ok(self)
    }

    async fn stream(&self) -> Result<Option<Stream>, Error> {
        match self.context.get_stream(&self.dead).await {
            Ok(stream) => Ok(Some(stream)),
            Err(err)
                if matches!(
                    err.kind(),
                    GetStreamErrorKind::JetStream(inner)
                        if inner.error_code() == ErrorCode::STREAM_NOT_FOUND
                ) =>
            {
                // No worker ran yet, so no dead-letter stream: no dead letters.
                Ok(None)
            }
            Err(err) => Err(Error::nats(format!(
                "dead-letter stream {}: {err}",
                self.dead
            ))),
        }
    }

    /// How many dead letters there are.
    ///
    /// # Errors
    /// [`Error::Nats`] if JetStream cannot answer.
    pub async fn len(&self) -> Result<u64, Error> {
        if self.dead_subject.is_some() {
            // One destination's: counted by reading them (a CLI-sized list).
            let letters = self.list(usize::MAX).await?;
            return Ok(u64::try_from(letters.len()).unwrap_or(u64::MAX));
        }
        let Some(mut stream) = self.stream().await? else {
            return Ok(0);
        };
        let info = stream.info().await.map_err(Error::nats)?;
        Ok(info.state.messages)
    }

    /// Whether there are none.
    ///
    /// # Errors
    /// [`Error::Nats`] if JetStream cannot answer.
    pub async fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.len().await? == 0)
    }

    /// The oldest `count` dead letters.
    ///
    /// # Errors
    /// [`Error::Nats`] if JetStream cannot answer.
    pub async fn list(&self, count: usize) -> Result<Vec<DeadLetter>, Error> {
        let Some(mut stream) = self.stream().await? else {
            return Ok(Vec::new());
        };
        let state = stream.info().await.map_err(Error::nats)?.state.clone();
        let mut letters = Vec::new();
        let mut sequence = state.first_sequence;
        while letters.len() < count && sequence <= state.last_sequence && state.messages > 0 {
            // A sequence whose message was deleted (replayed) has nothing: skip it.
            if let Ok(message) = stream.get_raw_message(sequence).await {
                if self
                    .dead_subject
                    .as_deref()
                    .is_some_and(|only| message.subject.as_str() != only)
                {
                    sequence = sequence.saturating_add(1);
                    continue;
                }
                let header = |name: &str| {
                    message
                        .headers
                        .get(name)
                        .map(|value| value.as_str().to_owned())
                };
                letters.push(DeadLetter {
                    sequence,
                    envelope: Envelope::from_json(&message.payload),
                    attempts: header(ATTEMPTS_HEADER)
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0),
                    error: header(ERROR_HEADER).unwrap_or_default(),
                    failed_at_ms: i64::try_from(message.time.unix_timestamp_nanos() / 1_000_000)
                        .unwrap_or(0),
                });
            }
            sequence = sequence.saturating_add(1);
        }
        Ok(letters)
    }

    /// Publishes the oldest `count` dead letters back on the stream's subject as new events
    /// (attempts start again from 1), each removed from the dead letters once JetStream
    /// acknowledged its copy; returns how many moved.
    ///
    /// A crash between the two steps leaves the letter in place as well: replaying it again
    /// hands the event over twice, which at-least-once handlers absorb.
    ///
    /// # Errors
    /// [`Error::Nats`] if JetStream cannot answer; the letters moved before stay moved.
    pub async fn replay(&self, count: usize) -> Result<usize, Error> {
        let Some(stream) = self.stream().await? else {
            return Ok(0);
        };
        let mut moved = 0usize;
        for letter in self.list(count).await? {
            let message = stream
                .get_raw_message(letter.sequence)
                .await
                .map_err(Error::nats)?;
            let dedup = letter
                .envelope
                .as_ref()
                .map(|envelope| envelope.dedup_key.clone())
                .unwrap_or_default();
            // A fresh message id: the original one (the dedup key) would be dropped by the
            // stream's duplicate window.
            let publish = PublishMessage::build()
                .message_id(format!("{dedup}:replay:{}:{}", self.dead, letter.sequence).as_str())
                .headers(HeaderMap::new())
                .payload(message.payload.clone());
            // One destination's dead letter goes back where it came from (its lane
            // partition, for an ordered destination).
            let target = match (&self.dead_subject, message.headers.get(SOURCE_HEADER)) {
                (Some(_), Some(source)) if source.as_str().starts_with(&self.subject) => {
                    source.as_str().to_owned()
                }
                _ => self.subject.clone(),
            };
            self.context
                .send_publish(target, publish)
                .await
                .map_err(Error::nats)?
                .await
                .map_err(Error::nats)?;
            stream
                .delete_message(letter.sequence)
                .await
                .map_err(Error::nats)?;
            moved = moved.saturating_add(1);
        }
        Ok(moved)
    }
}

impl fmt::Debug for JetStreamDeadLetters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JetStreamDeadLetters")
            .field("subject", &self.subject)
            .field("dead", &self.dead)
            .finish_non_exhaustive()
    }
}
