//! The database file: connection settings, the schema, and the migration from older files.
//!
//! ## Layout (schema version 2)
//!
//! The layout follows what one event costs the writer (see `docs/BENCHMARKS.md`):
//! - `events` holds what arrived — the body, the headers and the fields the log shows — in
//!   a row written once, appended in id order and never updated. A lease or a completion
//!   does not rewrite the 1 KiB body.
//! - `state` holds the small mutable part (status, attempts, due time, lease, last
//!   error): one short row per event, the only row the worker updates.
//! - `dedup` maps a 16-byte digest of the dedup key (SHA-256, truncated) to the event:
//!   about a third of the bytes of the TEXT key, so the table and its cache are that much
//!   smaller. Each new key still dirties one random leaf page: the one random-keyed
//!   structure left on the hot path, and about half of the pages an enqueue writes.
//! - The indexes written per event: the due queue (`state_due`) and statuses
//!   (`state_status`, whose changes land on a few pages at the tail of each status) for
//!   the worker and the log; received times and event types for the log (both appended in
//!   arrival order, about 0.3 WAL pages per event together). The index on delivery ids,
//!   random TEXT keys that cost a random page per event, is not kept: a lookup by delivery
//!   id scans `events` from the newest row back instead (see `LogQuery::delivery_id`).
//! - Checkpoints run on their own thread and connection, not in the writer's commits.
//!
//! Version 3 adds `log_applied`, the checkpoint of the segment log in front of these tables
//! (see `journal.rs` and `applier.rs`): events are appended to the log first and applied
//! here in batches.
//!
//! Version 4 adds destinations (issue 21): `deliveries`, one row per event and destination
//! its routing picked on receive, with the same small mutable state as `state` (status,
//! attempts, due time, lease, last error) plus the destination, the lane key and the lane
//! order (`seq`); `destination_pauses`, the destinations paused by `hookgate destination
//! pause` (any process); and `attempts.destination`. An inbox without destinations
//! writes none of it, and a file of version 2 or 3 gains the empty tables.
//!
//! Version 5 moves the dedup key of a stored event out of the `dedup` table and into its
//! `state` row (`dedup_digest`, `dedup_expires_at`, no index): the random-keyed `dedup`
//! insert was the one write per event that landed on a random page (one 4 KiB WAL page
//! per event, written again by the checkpoint), and taking it off the applier raised
//! gate-inbox by a fifth to a third (docs/BENCHMARKS.md). The inbox that holds the log
//! keeps every live key in memory and rebuilds it at open from both places. `dedup` keeps
//! the keys that have no `state` row: keys committed for another sink, keys of files
//! written before version 5, and the live keys of events pruned before their key expired
//! (moved there by the pruner).
//!
//! Version 1 (everything in one `events` row, TEXT dedup keys, the delivery-id index) is
//! migrated in one transaction when a file is opened: see [`migrate`].

use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, params};

use crate::InboxError;
use crate::digest::key_digest;

/// The schema version this build writes (`PRAGMA user_version`).
pub(crate) const SCHEMA_VERSION: i64 = 5;

/// How long a connection waits for another process's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Page size of new files. Existing files keep theirs (changing it needs a `VACUUM`).
const PAGE_SIZE: i64 = 4096;

/// WAL frames after which the writer checkpoints by itself, right after a commit: the
/// point where the log restarts from its beginning, which the checkpoint thread's own
/// checkpoints cannot bring about under steady writes (see `checkpoint.rs`). Most frames
/// are copied by then, so this checkpoint is short. At 20 000 frames (80 MB) it came once
/// a second and stalled the writer for up to 90 ms while the checkpoint thread waited
/// (request p99.9 at 64 connections up to 28–52 ms); at 2 000, 6.6–11 ms, for the same
/// CPU per event and throughput (docs/BENCHMARKS.md).
pub(crate) const WRITER_AUTOCHECKPOINT: i64 = 2_000;

const SCHEMA_V2: &str = "
CREATE TABLE IF NOT EXISTS events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup_key     TEXT    NOT NULL,
    scheme        TEXT    NOT NULL,
    delivery_id   TEXT,
    event_type    TEXT,
    signed_at     INTEGER,
    received_at   INTEGER NOT NULL,
    headers       TEXT    NOT NULL,
    body          BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS events_received ON events(received_at);
CREATE INDEX IF NOT EXISTS events_type ON events(event_type);

CREATE TABLE IF NOT EXISTS state (
    id            INTEGER PRIMARY KEY,
    status        TEXT    NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    due_at        INTEGER,
    lease_token   INTEGER,
    started_at    INTEGER,
    finished_at   INTEGER,
    duration_ms   INTEGER,
    last_error    TEXT,
    is_test       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS state_due ON state(due_at) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS state_status ON state(status, finished_at);

CREATE TABLE IF NOT EXISTS dedup (
    digest        BLOB    PRIMARY KEY,
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

/// Version 3 adds the segment log's checkpoint: the highest event id applied from the log
/// (and when a synced commit last made the applied records durable). Events written
/// before version 3 are all in `events`, so the checkpoint starts at the id sequence.
const SCHEMA_V3: &str = "
CREATE TABLE IF NOT EXISTS log_applied (
    one           INTEGER PRIMARY KEY CHECK (one = 1),
    event_id      INTEGER NOT NULL,
    synced_at     INTEGER
);
INSERT OR IGNORE INTO log_applied (one, event_id)
VALUES (1, max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0),
              coalesce((SELECT max(id) FROM events), 0)));
";

/// Version 4: deliveries per destination (see the module documentation).
const SCHEMA_V4: &str = "
CREATE TABLE IF NOT EXISTS deliveries (
    id            INTEGER PRIMARY KEY,
    event_id      INTEGER NOT NULL,
    destination   TEXT    NOT NULL,
    lane          TEXT,
    seq           INTEGER NOT NULL,
    status        TEXT    NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    due_at        INTEGER,
    lease_token   INTEGER,
    started_at    INTEGER,
    finished_at   INTEGER,
    duration_ms   INTEGER,
    last_error    TEXT,
    UNIQUE (event_id, destination)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(due_at) WHERE due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_lane ON deliveries(destination, lane, seq)
    WHERE lane IS NOT NULL AND status NOT IN ('processed', 'dead');
CREATE INDEX IF NOT EXISTS deliveries_status ON deliveries(destination, status);

CREATE TABLE IF NOT EXISTS destination_pauses (
    destination   TEXT    PRIMARY KEY,
    paused_at     INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Runs `alter` (which adds columns to `table`, `column` among them) unless `table`
/// has `column` already: the column additions of versions 4 and 5.
fn add_columns(
    conn: &Connection,
    table: &str,
    column: &str,
    alter: &str,
) -> Result<(), InboxError> {
    let has: bool = conn.query_row(
        "SELECT count(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
        params![table, column],
        |row| row.get(0),
    )?;
    if !has {
        conn.execute_batch(alter)?;
    }
    Ok(())
}

/// Opens the writer connection: WAL, `synchronous=FULL`, and the schema created or migrated.
pub(crate) fn open_writer(path: &Path) -> Result<Connection, InboxError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Only takes effect on a file without tables yet, before WAL is switched on.
    conn.pragma_update(None, "page_size", PAGE_SIZE)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(InboxError::Config(format!(
            "the database at {} cannot use WAL mode (got {mode})",
            path.display()
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.pragma_update(None, "wal_autocheckpoint", WRITER_AUTOCHECKPOINT)?;
    // Each job of a group commit runs in a savepoint, whose undo copies of the pages it
    // touches go to the statement journal: in memory, not spilled to a temporary file
    // (which a profile showed costing the writer a sixth of its time).
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    fixed_plans(&conn)?;
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
    fixed_plans(&conn)?;
    Ok(conn)
}

/// Keeps each cached statement's plan whatever values are bound. Without it SQLite
/// prepares a statement again when a bound value it looked at while planning changes —
/// the lease's `LIMIT ?` did, on every lease: a profile showed the re-prepare costing
/// half of each lease. The inbox's statements have one good plan each.
fn fixed_plans(conn: &Connection) -> Result<(), InboxError> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

/// Opens the checkpoint thread's connection (it writes only pages already in the WAL).
pub(crate) fn open_checkpointer(path: &Path) -> Result<Connection, InboxError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    Ok(conn)
}

/// Creates the schema in a new file, or brings an older file to [`SCHEMA_VERSION`], in one
/// transaction: a crash during the migration leaves the file as it was.
fn migrate(conn: &Connection) -> Result<(), InboxError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = migrate_in_transaction(conn);
    match result {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(_) => {
            let _ = conn.execute_batch("ROLLBACK");
        }
    }
    result
}

fn migrate_in_transaction(conn: &Connection) -> Result<(), InboxError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(InboxError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    let has_events: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'events'",
        [],
        |row| row.get(0),
    )?;
    if has_events && found < 2 {
        migrate_from_v1(conn)?;
    } else {
        conn.execute_batch(SCHEMA_V2)?;
    }
    conn.execute_batch(SCHEMA_V3)?;
    conn.execute_batch(SCHEMA_V4)?;
    // Version 4: the destination of an attempt.
    add_columns(
        conn,
        "attempts",
        "destination",
        "ALTER TABLE attempts ADD COLUMN destination TEXT",
    )?;
    // Version 5: a stored event's dedup key in its state row.
    add_columns(
        conn,
        "state",
        "dedup_digest",
        "ALTER TABLE state ADD COLUMN dedup_digest BLOB;
         ALTER TABLE state ADD COLUMN dedup_expires_at INTEGER;",
    )?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}

/// Version 1 → 2: splits each `events` row into its written-once part and its state,
/// re-keys the dedup table by digest, keeps the id sequence (ids are never reused), the
/// attempts, dead letters and ordering versions as they are.
fn migrate_from_v1(conn: &Connection) -> Result<(), InboxError> {
    conn.execute_batch(
        "ALTER TABLE events RENAME TO events_v1;
         ALTER TABLE dedup RENAME TO dedup_v1;
         DROP INDEX IF EXISTS events_due;
         DROP INDEX IF EXISTS events_status;
         DROP INDEX IF EXISTS events_received;
         DROP INDEX IF EXISTS events_delivery;
         DROP INDEX IF EXISTS events_type;
         DROP INDEX IF EXISTS events_dedup;
         DROP INDEX IF EXISTS dedup_expiry;",
    )?;
    conn.execute_batch(SCHEMA_V2)?;
    conn.execute_batch(
        "INSERT INTO events (id, dedup_key, scheme, delivery_id, event_type, signed_at,
             received_at, headers, body)
         SELECT id, dedup_key, scheme, delivery_id, event_type, signed_at, received_at,
             headers, body
         FROM events_v1 ORDER BY id;
         INSERT INTO state (id, status, attempts, due_at, lease_token, started_at,
             finished_at, duration_ms, last_error, is_test)
         SELECT id, status, attempts, due_at, lease_token, started_at, finished_at,
             duration_ms, last_error, is_test
         FROM events_v1 ORDER BY id;
         UPDATE sqlite_sequence
            SET seq = max(seq, (SELECT seq FROM sqlite_sequence WHERE name = 'events_v1'))
          WHERE name = 'events';
         INSERT INTO sqlite_sequence (name, seq)
         SELECT 'events', seq FROM sqlite_sequence
          WHERE name = 'events_v1'
            AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'events');",
    )?;
    {
        let mut read = conn.prepare("SELECT key, event_id, expires_at FROM dedup_v1")?;
        let mut write = conn.prepare(
            "INSERT INTO dedup (digest, event_id, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(digest) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)",
        )?;
        let mut rows = read.query([])?;
        while let Some(row) = rows.next()? {
            let key: String = row.get(0)?;
            let event_id: Option<i64> = row.get(1)?;
            let expires_at: i64 = row.get(2)?;
            write.execute(params![&key_digest(&key)[..], event_id, expires_at])?;
        }
    }
    conn.execute_batch("DROP TABLE events_v1; DROP TABLE dedup_v1;")?;
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
            Err(InboxError::SchemaTooNew { found: 6, .. })
        ));
    }

    #[test]
    fn a_version_3_file_gains_the_delivery_tables_and_the_state_key_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbox.db");
        // A version 3 file as the previous release wrote it, with one event and an attempt.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(SCHEMA_V2).unwrap();
        conn.execute_batch(SCHEMA_V3).unwrap();
        conn.execute_batch(
            "INSERT INTO events (id, dedup_key, scheme, received_at, headers, body)
                 VALUES (1, 'k', 's', 0, '[]', x'7b7d');
             INSERT INTO state (id, status) VALUES (1, 'processed');
             INSERT INTO attempts (event_id, attempt, started_at, finished_at, outcome)
                 VALUES (1, 1, 0, 1, 'processed');
             PRAGMA user_version = 3;",
        )
        .unwrap();
        drop(conn);
        let conn = open_writer(&path).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let (status, destination): (String, Option<String>) = conn
            .query_row(
                "SELECT s.status, a.destination FROM state s JOIN attempts a ON a.event_id = s.id",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!((status.as_str(), destination), ("processed", None));
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('deliveries', 'destination_pauses')",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(tables, 2);
        // Version 5: the state rows gain the dedup key columns, empty in the old rows.
        let keys: (i64, i64) = conn
            .query_row(
                "SELECT count(*), count(dedup_digest) FROM state",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .unwrap();
        assert_eq!(keys, (1, 0));
        drop(conn);
        // Opening again changes nothing.
        open_writer(&path).unwrap();
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

    #[test]
    fn keeps_no_random_keyed_index_on_the_hot_path() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_writer(&dir.path().join("inbox.db")).unwrap();
        let indexes: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            indexes,
            [
                "attempts_event",
                "dedup_expiry",
                "deliveries_due",
                "deliveries_lane",
                "deliveries_status",
                "events_received",
                "events_type",
                "state_due",
                "state_status"
            ]
        );
    }
}
