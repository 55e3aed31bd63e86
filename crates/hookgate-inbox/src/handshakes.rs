//! Provider URL handshakes in the event log: a table of their own, so that an operator can
//! see that a provider checked the URL, and so that a handshake never becomes an event.
//!
//! The table is created on first use (`CREATE TABLE IF NOT EXISTS`): it is independent of
//! the event tables and of the schema version, and an older build ignores it.

use hookgate::Handshake;
pub use hookgate_queue::event_log::HandshakeRecord;
use rusqlite::{Connection, params};

use crate::time::{from_millis, to_millis};
use crate::{Inbox, InboxError};

const CREATE: &str = "CREATE TABLE IF NOT EXISTS handshakes (
    id INTEGER PRIMARY KEY,
    received_at INTEGER NOT NULL,
    scheme TEXT NOT NULL,
    kind TEXT NOT NULL,
    key_id TEXT
)";

impl Inbox {
    /// Records a handshake the gate answered (what [`Sink::record_handshake`] does for the
    /// inbox). Not an event: nothing is queued.
    ///
    /// [`Sink::record_handshake`]: hookgate::Sink::record_handshake
    ///
    /// # Errors
    /// [`InboxError::Closed`] or [`InboxError::Database`].
    pub async fn record_handshake(&self, handshake: &Handshake) -> Result<(), InboxError> {
        let at = to_millis(handshake.received_at());
        let scheme = handshake.scheme().to_owned();
        let kind = handshake.kind().as_str();
        let key_id = handshake.key_id().map(str::to_owned);
        self.write(false, move |conn, _now| {
            conn.execute(CREATE, [])?;
            conn.execute(
                "INSERT INTO handshakes (received_at, scheme, kind, key_id) VALUES (?1, ?2, ?3, ?4)",
                params![at, scheme, kind, key_id],
            )?;
            Ok(())
        })
        .await
    }

    /// The most recent handshakes, newest first, at most `limit`.
    ///
    /// # Errors
    /// [`InboxError::Database`] or [`InboxError::Task`].
    pub async fn handshakes(&self, limit: usize) -> Result<Vec<HandshakeRecord>, InboxError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn, _now| {
            if !exists(conn)? {
                return Ok(Vec::new());
            }
            let mut statement = conn.prepare(
                "SELECT received_at, scheme, kind, key_id FROM handshakes
                 ORDER BY received_at DESC, id DESC LIMIT ?1",
            )?;
            let rows = statement.query_map([limit], |row| {
                Ok(HandshakeRecord::new(
                    from_millis(row.get(0)?),
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get(3)?,
                ))
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }
}

fn exists(conn: &Connection) -> Result<bool, InboxError> {
    let count: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'handshakes'",
        [],
        |row| row.get(0),
    )?;
    Ok(count > 0)
}
