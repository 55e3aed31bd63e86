//! The database file: connection settings and the schema.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::InboxError;

/// The schema version this build writes (`PRAGMA user_version`).
pub(crate) const SCHEMA_VERSION: i64 = 1;

/// How long a connection waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup_key     TEXT    NOT NULL,
    scheme        TEXT    NOT NULL,
    delivery_id   TEXT,
    event_type    TEXT,
    signed_at     INTEGER,
    received_at   INTEGER NOT NULL,
    body          BLOB    NOT NULL,
    headers       TEXT    NOT NULL,
    is_test       INTEGER NOT NULL DEFAULT 0,
    status        TEXT    NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    due_at        INTEGER,
    lease_token   INTEGER,
    started_at    INTEGER,
    finished_at   INTEGER,
    duration_ms   INTEGER,
    last_error    TEXT,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_due ON events(due_at) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_status ON events(status, finished_at);
CREATE INDEX IF NOT EXISTS events_received ON events(received_at);
CREATE INDEX IF NOT EXISTS events_delivery ON events(delivery_id);
CREATE INDEX IF NOT EXISTS events_type ON events(event_type);
-- Nothing looks events up by dedup key (the dedup table maps keys to events), and a
-- random-keyed index costs a page written per event at every group commit: files made by
-- earlier builds lose it. Compatible both ways, so the schema version stays.
DROP INDEX IF EXISTS events_dedup;

CREATE TABLE IF NOT EXISTS dedup (
    key           TEXT    PRIMARY KEY,
    event_id      INTEGER,
    expires_at    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedup_expiry ON dedup(expires_at);

CREATE TABLE IF NOT EXISTS attempts (
    id            INTEGER PRIMARY KEY,
    event_id      INTEGER NOT NULL,
    attempt       INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER NOT NULL,
    outcome       TEXT    NOT NULL,
    error         TEXT
);
CREATE INDEX IF NOT EXISTS attempts_event ON attempts(event_id);

CREATE TABLE IF NOT EXISTS dead_letters (
    event_id      INTEGER PRIMARY KEY,
    dead_at       INTEGER NOT NULL,
    reason        TEXT    NOT NULL
);

CREATE TABLE IF NOT EXISTS aggregate_versions (
    aggregate     TEXT    PRIMARY KEY,
    version       INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Opens the writer connection: WAL, `synchronous=FULL`, and the schema created or checked.
pub(crate) fn open_writer(path: &Path) -> Result<Connection, InboxError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(InboxError::Config(format!(
            "the database at {} cannot use WAL mode (got {mode})",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    migrate(&conn)?;
    Ok(conn)
}

/// Opens a connection for queries. It never writes.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, InboxError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

fn migrate(conn: &Connection) -> Result<(), InboxError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(InboxError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    conn.execute_batch(&format!(
        "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.db");
        let conn = open_writer(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        assert!(matches!(
            open_writer(&path),
            Err(InboxError::SchemaTooNew { found: 2, .. })
        ));
    }

    #[test]
    fn drops_the_unused_dedup_key_index_of_earlier_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.db");
        let conn = open_writer(&path).unwrap();
        conn.execute_batch("CREATE INDEX events_dedup ON events(dedup_key)")
            .unwrap();
        drop(conn);
        let conn = open_writer(&path).unwrap();
        let indexes: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = 'events_dedup'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 0);
    }

    #[test]
    fn uses_wal_and_full_sync() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_writer(&dir.path().join("inbox.db")).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        assert_eq!(sync, 2, "FULL");
    }
}
