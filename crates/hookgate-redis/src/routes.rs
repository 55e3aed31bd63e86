//! Destinations on Redis streams (issue 21): the key layout, the checks, and the pauses.
//!
//! An endpoint with destinations keeps one stream per destination next to the endpoint's
//! stream name (the URL's `stream`, `hookgate:events` by default):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<stream>:<destination>` | stream: `envelope`, `attempts` | the destination's deliveries, read by the consumer group (one group per destination stream) |
//! | `<stream>:<destination>:delayed` | sorted set | its retries by due time |
//! | `<stream>:<destination>:dead` | stream | its dead letters |
//! | `<stream>:seen:<dedup key>` | string, TTL (72 h) | "this event was written": a retry of the same event writes nothing again |
//! | `<stream>:filtered` | stream, trimmed to about 10 000 | events that matched no destination: `dedup_key`, `event_type`, `received_at_ms` |
//! | `<stream>:paused` | set | the paused destinations (`hookgate destination pause --queue URL`) |
//!
//! A destination name is letters, digits, `-`, `_` and `.` (no `:`), so a destination's
//! keys never run into another's; `paused`, `filtered` and `seen` name endpoint-wide
//! keys and are refused as destination names here.

use std::fmt;
use std::sync::Arc;

use hookgate_queue::{Destination, Router};
use redis::aio::ConnectionManager;

use crate::Error;
use crate::sink::DEFAULT_STREAM;
use crate::url::{DEFAULT_RESPONSE_TIMEOUT, RedisUrl, connection};

/// Destination names that would collide with an endpoint-wide key.
const RESERVED: [&str; 3] = ["paused", "filtered", "seen"];

/// About how many filtered events `<stream>:filtered` keeps (`MAXLEN ~`).
pub const FILTERED_MAX_LEN: u64 = 10_000;

/// The stream of destination `name`'s deliveries.
pub(crate) fn destination_stream(stream: &str, name: &str) -> String {
    format!("{stream}:{name}")
}

/// The lane partitions, shared by every backend (`hookgate-queue`).
pub use hookgate_queue::{LANE_PARTITIONS, lane_partition};

/// The stream of lane partition `partition` of destination stream `stream`.
pub(crate) fn partition_stream(destination_stream: &str, partition: u16) -> String {
    format!("{destination_stream}:p{partition}")
}

/// The set of paused destination names.
pub(crate) fn paused_key(stream: &str) -> String {
    format!("{stream}:paused")
}

/// The stream of filtered events.
pub(crate) fn filtered_key(stream: &str) -> String {
    format!("{stream}:filtered")
}

/// The enqueue marker of the event with `dedup_key`.
pub(crate) fn seen_key(stream: &str, dedup_key: &str) -> String {
    format!("{stream}:seen:{dedup_key}")
}

/// Refuses a destination name Redis streams cannot carry.
pub(crate) fn check_name(name: &str) -> Result<(), Error> {
    if RESERVED.contains(&name) {
        return Err(Error::Config(format!(
            "destination {name}: the name {name:?} is reserved on Redis streams (it names an \
             endpoint-wide key); choose another"
        )));
    }
    if name.is_empty() || name.contains(':') {
        return Err(Error::Config(format!(
            "destination {name:?}: a name is letters, digits, -, _ or ."
        )));
    }
    Ok(())
}

/// Refuses what the Redis backend cannot carry: reserved names.
pub(crate) fn check_destinations<'a>(
    destinations: impl IntoIterator<Item = &'a Destination>,
) -> Result<(), Error> {
    for destination in destinations {
        check_name(destination.name())?;
    }
    Ok(())
}

/// Checks a router for the Redis sink.
pub(crate) fn check_router(router: &Router) -> Result<(), Error> {
    check_destinations(router.destinations())
}

/// The pauses of an endpoint's destinations on Redis, shared by every process: what
/// `hookgate destination pause|resume|paused --queue redis://…` changes and every
/// [`StreamQueue`](crate::StreamQueue) with destinations polls
/// ([`Queue::paused`](hookgate_queue::Queue::paused)). One set, `<stream>:paused`.
#[derive(Clone)]
pub struct StreamPauses {
    conn: ConnectionManager,
    key: Arc<str>,
}

impl StreamPauses {
    /// Connects to the pauses of the endpoint whose stream the URL's `stream` names
    /// ([`DEFAULT_STREAM`]).
    ///
    /// # Errors
    /// [`Error::Config`] for a bad URL, [`Error::Redis`] if Redis cannot be reached.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let url = RedisUrl::parse(url, &["stream", "group", "consumer", "dead_stream"])?;
        let stream = url.param("stream").unwrap_or(DEFAULT_STREAM).to_owned();
        let conn = connection(url.client, DEFAULT_RESPONSE_TIMEOUT).await?;
        Ok(StreamPauses::new(conn, &stream))
    }

    pub(crate) fn new(conn: ConnectionManager, stream: &str) -> Self {
        StreamPauses {
            conn,
            key: Arc::from(paused_key(stream)),
        }
    }

    /// Pauses destination `name`; `false` if it was paused already.
    ///
    /// # Errors
    /// [`Error::Config`] for a name that cannot be a destination, [`Error::Redis`] if
    /// Redis cannot answer.
    pub async fn pause(&self, name: &str) -> Result<bool, Error> {
        check_name(name)?;
        let added: i64 = redis::cmd("SADD")
            .arg(&*self.key)
            .arg(name)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(added == 1)
    }

    /// Resumes destination `name`; `false` if it was not paused.
    ///
    /// # Errors
    /// [`Error::Redis`] if Redis cannot answer.
    pub async fn resume(&self, name: &str) -> Result<bool, Error> {
        let removed: i64 = redis::cmd("SREM")
            .arg(&*self.key)
            .arg(name)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(removed == 1)
    }

    /// The paused destinations, sorted by name.
    ///
    /// # Errors
    /// [`Error::Redis`] if Redis cannot answer.
    pub async fn paused(&self) -> Result<Vec<String>, Error> {
        let mut names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&*self.key)
            .query_async(&mut self.conn.clone())
            .await?;
        names.sort();
        Ok(names)
    }
}

impl fmt::Debug for StreamPauses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamPauses")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_names() {
        assert_eq!(destination_stream("s", "billing"), "s:billing");
        assert_eq!(paused_key("s"), "s:paused");
        assert_eq!(seen_key("s", "k:1"), "s:seen:k:1");
        assert!(check_name("billing").is_ok());
        for bad in ["paused", "filtered", "seen", "a:b", ""] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
