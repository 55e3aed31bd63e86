//! Reading and replaying the dead letters of a Redis stream.

use std::fmt;
use std::sync::Arc;

use hookgate_queue::{Envelope, EnvelopeError};
use redis::aio::ConnectionManager;
use redis::streams::StreamRangeReply;

use crate::Error;
use crate::scripts::Scripts;
use crate::sink::{ATTEMPTS_FIELD, DEFAULT_STREAM, ENVELOPE_FIELD};
use crate::url::{DEFAULT_RESPONSE_TIMEOUT, RedisUrl, connection};

/// The dead letters of a stream handled by a [`StreamWorker`](crate::StreamWorker): list
/// them, and put them back on the stream once the cause is fixed.
///
/// For an endpoint with destinations, each destination has its own dead letters: pick
/// them with [`destination`](Self::destination).
#[derive(Clone)]
pub struct StreamDeadLetters {
    conn: ConnectionManager,
    /// The URL's stream name.
    base: Arc<str>,
    stream: Arc<str>,
    dead: Arc<str>,
    scripts: Arc<Scripts>,
}

/// One dead letter.
#[non_exhaustive]
#[derive(Debug)]
pub struct DeadLetter {
    /// The entry id in the dead-letter stream.
    pub id: String,
    /// The event (an error if the entry was unreadable in the first place).
    pub envelope: Result<Envelope, EnvelopeError>,
    /// Attempts made.
    pub attempts: u32,
    /// Why it was given up.
    pub error: String,
    /// When, in Unix milliseconds.
    pub failed_at_ms: i64,
}

impl StreamDeadLetters {
    /// Connects to the dead letters of the stream named by the URL's `stream` parameter
    /// ([`DEFAULT_STREAM`]); `dead_stream` overrides the default `<stream>:dead`.
    ///
    /// # Errors
    /// [`Error::Config`] for a bad URL, [`Error::Redis`] if Redis cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let url = RedisUrl::parse(url, &["stream", "dead_stream"])?;
        let stream = url.param("stream").unwrap_or(DEFAULT_STREAM).to_owned();
        let dead = url
            .param("dead_stream")
            .map_or_else(|| format!("{stream}:dead"), str::to_owned);
        let conn = connection(url.client, DEFAULT_RESPONSE_TIMEOUT).await?;
        Ok(StreamDeadLetters {
            conn,
            base: Arc::from(stream.as_str()),
            stream: Arc::from(stream),
            dead: Arc::from(dead),
            scripts: Arc::new(Scripts::new()),
        })
    }

    /// The dead letters of destination `name` instead (issue 21): `<stream>:<name>:dead`,
    /// replayed to `<stream>:<name>` only, so a replay never re-delivers to the
    /// endpoint's other destinations. A `dead_stream` given in the URL is ignored.
    ///
    /// # Errors
    /// [`Error::Config`] for a name that cannot be a destination on Redis streams.
    pub fn destination(mut self, name: &str) -> Result<Self, Error> {
        crate::routes::check_name(name)?;
        let stream = crate::routes::destination_stream(&self.base, name);
        self.dead = Arc::from(format!("{stream}:dead"));
        self.stream = Arc::from(stream);
        Ok(self)
    }

    /// How many dead letters there are.
    ///
    /// # Errors
    /// [`Error::Redis`] if Redis cannot answer.
    pub async fn len(&self) -> Result<u64, Error> {
        Ok(redis::cmd("XLEN")
            .arg(&*self.dead)
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// Whether there are none.
    ///
    /// # Errors
    /// [`Error::Redis`] if Redis cannot answer.
    pub async fn is_empty(&self) -> Result<bool, Error> {
        Ok(self.len().await? == 0)
    }

    /// The oldest `count` dead letters.
    ///
    /// # Errors
    /// [`Error::Redis`] if Redis cannot answer.
    pub async fn list(&self, count: usize) -> Result<Vec<DeadLetter>, Error> {
        let reply: StreamRangeReply = redis::cmd("XRANGE")
            .arg(&*self.dead)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(reply
            .ids
            .into_iter()
            .map(|entry| DeadLetter {
                envelope: Envelope::from_json(
                    entry
                        .get::<String>(ENVELOPE_FIELD)
                        .unwrap_or_default()
                        .as_bytes(),
                ),
                attempts: entry.get(ATTEMPTS_FIELD).unwrap_or(0),
                error: entry.get("error").unwrap_or_default(),
                failed_at_ms: entry.get("failed_at_ms").unwrap_or(0),
                id: entry.id,
            })
            .collect())
    }

    /// Moves the oldest `count` dead letters back to the stream as new events (attempts
    /// start again from 1), atomically; returns how many moved.
    ///
    /// # Errors
    /// [`Error::Redis`] if Redis cannot answer.
    pub async fn replay(&self, count: usize) -> Result<usize, Error> {
        let moved: i64 = self
            .scripts
            .replay
            .key(&*self.dead)
            .key(&*self.stream)
            .arg(count)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(usize::try_from(moved).unwrap_or(0))
    }
}

impl fmt::Debug for StreamDeadLetters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamDeadLetters")
            .field("stream", &self.stream)
            .field("dead", &self.dead)
            .finish_non_exhaustive()
    }
}
