//! The schema: versioned migrations, and every statement the crate runs, written for one
//! schema name.

use crate::Error;
use crate::pool::Conn;

/// The newest migration this build has.
pub(crate) const SCHEMA_VERSION: i32 = 6;

/// Longest schema name: PostgreSQL's identifiers stop at 63 bytes and the notification
/// channel adds `_events`.
const MAX_SCHEMA_LEN: usize = 48;

/// Migrations in order: `(version, SQL)`, `{s}` standing for the quoted schema and `{channel}`
/// for the notification channel. A released migration is never edited; a change is a new
/// one.
///
/// There is deliberately no trigger that notifies on insert: PostgreSQL serialises the
/// commits of notifying transactions (a lock held until after the WAL flush, to queue
/// notifications in commit order), which would give every delivery a flush of its own.
/// The store notifies after the commit instead, from outside the transaction.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        r#"
CREATE SEQUENCE {s}.events_id_seq;
CREATE TABLE {s}.events (
    id           bigint      PRIMARY KEY DEFAULT nextval('{s}.events_id_seq'),
    dedup_key    text        NOT NULL,
    scheme       text        NOT NULL,
    delivery_id  text,
    event_type   text,
    signed_at    timestamptz,
    received_at  timestamptz NOT NULL,
    key_id       text        NOT NULL,
    headers      jsonb       NOT NULL,
    body         bytea       NOT NULL,
    is_test      boolean     NOT NULL DEFAULT false,
    status       text        NOT NULL CHECK (status IN
                     ('received', 'queued', 'processing', 'processed', 'failed', 'dead')),
    attempts     integer     NOT NULL DEFAULT 0,
    due_at       timestamptz,
    lease_token  bigint,
    started_at   timestamptz,
    finished_at  timestamptz,
    duration_ms  bigint,
    last_error   text,
    dead_at      timestamptz,
    stored_at    timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
ALTER SEQUENCE {s}.events_id_seq OWNED BY {s}.events.id;
CREATE INDEX events_due ON {s}.events (due_at, id) WHERE due_at IS NOT NULL;
CREATE INDEX events_finished ON {s}.events (status, finished_at);
CREATE INDEX events_received ON {s}.events (received_at);
CREATE INDEX events_delivery ON {s}.events (delivery_id);
CREATE INDEX events_type ON {s}.events (event_type);

CREATE TABLE {s}.dedup (
    key          text        PRIMARY KEY,
    claim        bigint,
    event_id     bigint,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX dedup_expiry ON {s}.dedup (expires_at);

CREATE TABLE {s}.attempts (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     bigint      NOT NULL,
    attempt      integer     NOT NULL,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL,
    outcome      text        NOT NULL,
    error        text
);
CREATE INDEX attempts_event ON {s}.attempts (event_id);

"#,
    ),
    // The event log over a large store: pages by arrival read the index `(received_at,
    // id)` from a cursor instead of sorting a window (it replaces `(received_at)`, which
    // it covers), dead letters are walked by a partial index holding only them, and the
    // provider handshakes the gate answered are recorded beside the events.
    (
        2,
        r#"
CREATE INDEX events_arrival ON {s}.events (received_at, id);
DROP INDEX {s}.events_received;
CREATE INDEX events_dead ON {s}.events (id) WHERE status = 'dead';

CREATE TABLE {s}.handshakes (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at  timestamptz NOT NULL,
    scheme       text        NOT NULL,
    kind         text        NOT NULL,
    key_id       text
);
CREATE INDEX handshakes_received ON {s}.handshakes (received_at, id);
"#,
    ),
    // One index insertion less per enqueue: `(status, finished_at)` serves the status
    // filters of the log, the activity counts per minute of processed and failed events,
    // and pruning, none of which looks for a `received` event through it (a received event
    // is one not yet leased: the newest, found at once by the primary key read backwards).
    // Leaving `received` out of the index keeps every enqueue from inserting into it; the
    // lease (a status change, hence never a HOT update) inserts the event's entry as
    // before. The queries name their statuses as literals, so the planner proves they lie
    // inside the index.
    (
        3,
        r#"
CREATE INDEX events_status ON {s}.events (status, finished_at) WHERE status <> 'received';
DROP INDEX {s}.events_finished;
"#,
    ),
    // Destinations (issue 21; see `deliveries.rs`): one delivery per event and matching
    // destination, each with its own status, attempts, due time or lease end, lease token
    // and last error; `seq` orders a lane (the event id, moved past the end by a replay).
    // An event no destination took is `filtered`, which the events' status check gains
    // (the only change to an existing table: the check is widened, nothing rewritten).
    // The paused destinations are rows of their own, shared by every replica.
    // Indexes: `deliveries_due` for the lease (due first), `deliveries_lane` for the
    // head-of-lane test (the unfinished deliveries of one destination and lane key, by
    // `seq`), `deliveries_dead` for a destination's dead letters, `deliveries_done` for
    // pruning.
    (
        4,
        r#"
ALTER TABLE {s}.events DROP CONSTRAINT IF EXISTS events_status_check;
ALTER TABLE {s}.events ADD CONSTRAINT events_status_check CHECK (status IN
    ('received', 'queued', 'processing', 'processed', 'failed', 'dead', 'filtered'));

CREATE TABLE {s}.deliveries (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id     bigint      NOT NULL,
    destination  text        NOT NULL,
    lane         text,
    seq          bigint      NOT NULL,
    status       text        NOT NULL CHECK (status IN
                     ('received', 'queued', 'processing', 'processed', 'failed', 'dead')),
    attempts     integer     NOT NULL DEFAULT 0,
    due_at       timestamptz,
    lease_token  bigint,
    started_at   timestamptz,
    finished_at  timestamptz,
    duration_ms  bigint,
    last_error   text,
    dead_at      timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (event_id, destination)
);
CREATE INDEX deliveries_due ON {s}.deliveries (due_at, id) WHERE due_at IS NOT NULL;
CREATE INDEX deliveries_lane ON {s}.deliveries (destination, lane, seq)
    WHERE lane IS NOT NULL AND status NOT IN ('processed', 'dead');
CREATE INDEX deliveries_dead ON {s}.deliveries (destination, id) WHERE status = 'dead';
CREATE INDEX deliveries_done ON {s}.deliveries (finished_at) WHERE status = 'processed';

CREATE TABLE {s}.destination_pauses (
    destination  text        PRIMARY KEY,
    paused_at    timestamptz NOT NULL DEFAULT now()
);
"#,
    ),
    // Two index insertions less per enqueue (issue 19): the indexes behind the log's
    // filters on an event type and on a delivery id leave `received` events out, as
    // `events_status` does (migration 3); the lease, a status change, inserts the event's
    // entries, as it does into every index. The events not yet leased are found through
    // `events_waiting`, which holds only them (insertions at its right-hand end, like the
    // primary key's: the cheapest kind), and which also serves the log's `received`
    // filter in a store with destinations, whose routed events wait without a due time of
    // their own (their deliveries have it). Queries that filter on the two columns say
    // so with [`outside_received`].
    (
        5,
        r#"
CREATE INDEX events_waiting ON {s}.events (id) WHERE status = 'received';
DROP INDEX {s}.events_type;
CREATE INDEX events_type ON {s}.events (event_type) WHERE status <> 'received';
DROP INDEX {s}.events_delivery;
CREATE INDEX events_delivery ON {s}.events (delivery_id) WHERE status <> 'received';
"#,
    ),
    // The type and delivery id indexes out of reach of queries that test only the status.
    // `status <> 'received'` alone is implied by any status test (`status = 'processed'`),
    // so the planner could read either index for the log's status pages and for pruning;
    // with statistics taken while the events still waited they look empty, and it read
    // one of them from end to end (then sorted). A filter on a type or a delivery id
    // implies `IS NOT NULL` (its `=` is strict), so those filters still read them. Events
    // without a type or delivery id are left out too: nothing looks for them there.
    (
        6,
        r#"
DROP INDEX {s}.events_type;
CREATE INDEX events_type ON {s}.events (event_type)
    WHERE event_type IS NOT NULL AND status <> 'received';
DROP INDEX {s}.events_delivery;
CREATE INDEX events_delivery ON {s}.events (delivery_id)
    WHERE delivery_id IS NOT NULL AND status <> 'received';
"#,
    ),
];

/// `{alias}{column} = {value}` for `event_type` or `delivery_id`, whose indexes leave
/// `received` events out (migration 5), written as two halves the planner can each prove
/// inside a partial index: the column's own for the other statuses, `events_waiting` for
/// the received events (few: those not yet leased). Written plainly, the condition could
/// use neither index and would read the whole log.
pub(crate) fn outside_received(alias: &str, column: &str, value: &str) -> String {
    format!(
        "(({alias}status <> 'received' AND {alias}{column} = {value}) \
         OR ({alias}status = 'received' AND {alias}{column} = {value}))"
    )
}

/// Checks a schema name: lower-case letters, digits and `_`, not starting with a digit,
/// at most 48 bytes, and not one of PostgreSQL's own.
pub(crate) fn check_schema_name(name: &str) -> Result<(), Error> {
    let valid = !name.is_empty()
        && name.len() <= MAX_SCHEMA_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && !name.starts_with("pg_")
        && name != "information_schema";
    if valid {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "the schema name must be 1 to {MAX_SCHEMA_LEN} lower-case letters, digits or _, \
             not start with a digit or pg_, got {name:?}"
        )))
    }
}

/// The notification channel of a schema: `<schema>_events`.
pub(crate) fn channel(schema: &str) -> String {
    format!("{schema}_events")
}

/// Creates the schema if needed and applies the migrations it lacks, in one transaction
/// under an advisory lock, so replicas starting together migrate once.
pub(crate) async fn migrate(conn: &mut Conn, schema: &str) -> Result<i32, Error> {
    let s = format!("\"{schema}\"");
    let channel = channel(schema);
    conn.begin().await?;
    let client = conn.client()?;
    // One lock for every hookgate schema of the database: migrations are rare and short.
    client
        .batch_execute(&format!(
            "SELECT pg_advisory_xact_lock(7236784950371920196);
             CREATE SCHEMA IF NOT EXISTS {s};
             CREATE TABLE IF NOT EXISTS {s}.schema_migrations (
                 version    integer     PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );"
        ))
        .await?;
    let found: i32 = client
        .query_one(
            &format!("SELECT coalesce(max(version), 0) FROM {s}.schema_migrations"),
            &[],
        )
        .await?
        .try_get(0)?;
    if found > SCHEMA_VERSION {
        conn.rollback().await?;
        return Err(Error::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
        let sql = sql.replace("{s}", &s).replace("{channel}", &channel);
        client.batch_execute(&sql).await?;
        client
            .execute(
                &format!("INSERT INTO {s}.schema_migrations (version) VALUES ($1)"),
                &[version],
            )
            .await?;
    }
    conn.commit().await?;
    Ok(SCHEMA_VERSION)
}

/// Every statement the store and the worker run, for one schema.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) enqueue: String,
    pub(crate) claim: String,
    pub(crate) commit: String,
    pub(crate) release: String,
    pub(crate) lookup: String,
    pub(crate) lease: String,
    /// A worker's results (`results.rs`).
    pub(crate) finish_batch: String,
    /// As `finish_batch`, in a [`TxHandler`](crate::TxHandler)'s transaction: committed
    /// with the handler's writes, synchronously.
    pub(crate) finish_in_transaction: String,
    pub(crate) renew: String,
    pub(crate) give_back: String,
    pub(crate) next_due: String,
    pub(crate) replay_dead: String,
    pub(crate) replay_dead_id: String,
    pub(crate) replay_dead_ids: String,
    pub(crate) replay_dead_type: String,
    pub(crate) replay_one: String,
    pub(crate) notify: String,
    pub(crate) prune_events: String,
    pub(crate) prune_dedup: String,
    pub(crate) status_counts: String,
    pub(crate) attempts: String,
    pub(crate) event: String,
    pub(crate) set_test: String,
    pub(crate) received_per_minute: String,
    pub(crate) processed_per_minute: String,
    pub(crate) failed_per_minute: String,
    pub(crate) record_handshake: String,
    pub(crate) handshakes: String,
    pub(crate) prune_handshakes: String,
    /// `"schema"`, for the log queries built at run time.
    pub(crate) schema: String,
}

/// A `WITH` item that makes the statement's transaction commit without waiting for the
/// WAL flush (`synchronous_commit = off` for this transaction alone), for the worker's
/// bookkeeping: a lease, a result, a renewal or a give-back. Such a commit is lost only
/// if the server crashes (or loses power) within about three `wal_writer_delay`s after
/// it, and then the event is leased again or handled again: the at-least-once processing
/// covers it, as the SQLite inbox's deferred commits (`hookgate-inbox`). A statement
/// names it in its `FROM` so that it is evaluated; the enqueue, replays, pruning and a
/// [`TxHandler`](crate::TxHandler)'s transaction keep the synchronous commit.
pub(crate) const DEFERRED_COMMIT: &str =
    "deferred AS (SELECT set_config('synchronous_commit', 'off', true))";

/// A round of a worker's results (`results.rs`) as rows `r(id, token, status, delay_ms,
/// error, outcome)`, from the statement's six arrays: a `WITH` item of the events'
/// `finish_batch` and the deliveries' `finish`.
pub(crate) const RESULTS: &str = "r AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::text[],
                         $6::text[])
        AS r(id, token, status, delay_ms, error, outcome))";

/// What a result from [`RESULTS`] sets on the row it ends, an event's or a delivery's
/// (`alias`): the new status, the retry's due time, the lease let go, the attempt's end
/// and duration, the error, the time of death.
pub(crate) fn result_assignments(alias: &str) -> String {
    format!(
        "status = r.status,
         due_at = CASE WHEN r.status = 'failed'
                       THEN now() + r.delay_ms * interval '1 millisecond' END,
         lease_token = NULL, finished_at = now(),
         duration_ms = (extract(epoch FROM now() - {alias}.started_at) * 1000)::bigint,
         last_error = r.error,
         dead_at = CASE WHEN r.status = 'dead' THEN now() END,
         updated_at = now()"
    )
}

/// The columns of a leased or shown event, in the order [`crate::store`] reads them.
pub(crate) const EVENT_COLUMNS: &str = "e.id, e.dedup_key, e.scheme, e.delivery_id, e.event_type, \
     e.signed_at, e.received_at, e.key_id, e.headers::text, e.body, e.attempts";

impl Sql {
    pub(crate) fn new(schema: &str) -> Self {
        let s = format!("\"{schema}\"");
        let ms = "* interval '1 millisecond'";
        let arrival_minute = "floor(extract(epoch FROM received_at) / 60)::bigint";
        let end_minute = "floor(extract(epoch FROM finished_at) / 60)::bigint";
        // A status test about given events, written as a `CASE`, which the planner does
        // not look into: as a condition, it would let the planner read a partial index of
        // the events outside `received` instead of the primary key (see `finish` below).
        let is_dead = "CASE WHEN status = 'dead' THEN true ELSE false END";
        let replay = format!(
            "UPDATE {s}.events
             SET status = 'queued', attempts = 0, due_at = now(), dead_at = NULL, updated_at = now()"
        );
        // Results: each event's new state and its attempt, for `finish_batch` (a worker's
        // concurrent results, see `results.rs`) and `finish_in_transaction` (one result, in
        // a `TxHandler`'s transaction). Returns the id and token of each that applied.
        //
        // The worker's statements name a leased event by its id and lease token alone: only
        // a lease sets a token (with `processing`), and every way out of `processing`
        // clears it, so the token is the status test. Written out, `status = 'processing'`
        // lets the planner read the partial status index (or, before schema version 6, the
        // type or delivery id index) instead of the primary key, and with statistics taken
        // while the events still waited such an index looks empty: each result then read
        // all of it (the log's test
        // `under_statistics_taken_while_events_waited_every_statement_reads_the_right_index`).
        // The ids are named with `= ANY` too, which reads the primary key in id order, as
        // renewals and give-backs do, so that statements on the same events lock them in
        // the same order.
        let set = result_assignments("e");
        let finish = |deferred: &str, from_deferred: &str| {
            format!(
                "WITH {deferred} {RESULTS}, u AS (
                    UPDATE {s}.events e SET {set}
                    FROM r{from_deferred}
                    WHERE e.id = ANY($1::bigint[]) AND e.id = r.id AND e.lease_token = r.token
                    RETURNING e.id, r.token, e.attempts, e.started_at, r.error, r.outcome
                 ), history AS (
                    INSERT INTO {s}.attempts (event_id, attempt, started_at, finished_at, outcome, error)
                    SELECT id, attempts, started_at, now(), outcome, error FROM u
                 )
                 SELECT id, token FROM u"
            )
        };
        Sql {
            // A batch of enqueues (see `batch.rs`): the dedup rows and the events of every
            // event in the arrays, in one statement, hence one transaction. Each event gets
            // its id in the arrays' (arrival) order. The primary key on `dedup.key` makes
            // replicas racing on a key wait for each other: the first inserts, the others
            // find its committed row and store nothing; the keys are inserted in byte
            // order so that two batches sharing keys cannot deadlock. A live claim (from
            // this store used as the dedup store) or an expired row is taken over. The
            // arrays hold each key once. Returns the id and key of each stored event.
            enqueue: format!(
                "WITH input AS (
                    SELECT t.*, nextval('{s}.events_id_seq') AS id
                    FROM unnest($1::text[], $3::text[], $4::text[], $5::text[],
                                $6::timestamptz[], $7::timestamptz[], $8::text[], $9::text[],
                                $10::bytea[], $11::boolean[])
                        AS t(key, scheme, delivery_id, event_type, signed_at, received_at,
                             key_id, headers, body, is_test)
                 ), d AS (
                    INSERT INTO {s}.dedup AS d (key, claim, event_id, expires_at)
                    SELECT key, NULL, id, now() + $2::bigint {ms} FROM input
                    ORDER BY key COLLATE \"C\"
                    ON CONFLICT (key) DO UPDATE
                        SET claim = NULL, event_id = excluded.event_id, expires_at = excluded.expires_at
                        WHERE d.claim IS NOT NULL OR d.expires_at <= now()
                    RETURNING event_id
                 )
                 INSERT INTO {s}.events (id, dedup_key, scheme, delivery_id, event_type, signed_at,
                     received_at, key_id, headers, body, is_test, status, due_at)
                 SELECT i.id, i.key, i.scheme, i.delivery_id, i.event_type, i.signed_at,
                     i.received_at, i.key_id, i.headers::jsonb, i.body, i.is_test, 'received', now()
                 FROM input i JOIN d ON d.event_id = i.id
                 ORDER BY i.id
                 RETURNING id, dedup_key"
            ),
            claim: format!(
                "WITH ins AS (
                    INSERT INTO {s}.dedup AS d (key, claim, event_id, expires_at)
                    VALUES ($1, $2, NULL, now() + $3::bigint {ms})
                    ON CONFLICT (key) DO UPDATE
                        SET claim = excluded.claim, event_id = NULL, expires_at = excluded.expires_at
                        WHERE d.expires_at <= now()
                    RETURNING 1
                 )
                 SELECT (SELECT count(*) FROM ins),
                        (SELECT claim IS NULL FROM {s}.dedup WHERE key = $1 AND expires_at > now())"
            ),
            commit: format!(
                "INSERT INTO {s}.dedup AS d (key, claim, event_id, expires_at)
                 VALUES ($1, NULL, NULL, now() + $2::bigint {ms})
                 ON CONFLICT (key) DO UPDATE
                     SET claim = NULL, expires_at = greatest(d.expires_at, excluded.expires_at)"
            ),
            release: format!("DELETE FROM {s}.dedup WHERE key = $1 AND claim = $2"),
            lookup: format!(
                "SELECT claim IS NULL FROM {s}.dedup WHERE key = $1 AND expires_at > now()"
            ),
            lease: format!(
                "WITH {DEFERRED_COMMIT}
                 UPDATE {s}.events e
                 SET status = 'processing', attempts = e.attempts + 1, lease_token = $1,
                     due_at = now() + $2::bigint {ms}, started_at = now(), updated_at = now()
                 FROM (SELECT id FROM {s}.events WHERE due_at <= now()
                       ORDER BY due_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) c, deferred
                 WHERE e.id = c.id
                 RETURNING {EVENT_COLUMNS}"
            ),
            finish_batch: finish(&format!("{DEFERRED_COMMIT},"), ", deferred"),
            finish_in_transaction: finish("", ""),
            renew: format!(
                "WITH {DEFERRED_COMMIT}
                 UPDATE {s}.events SET due_at = now() + $3::bigint {ms}
                 FROM deferred
                 WHERE id = ANY($1::bigint[])
                   AND (id, lease_token) IN (SELECT * FROM unnest($1::bigint[], $2::bigint[]))"
            ),
            give_back: format!(
                "WITH {DEFERRED_COMMIT}
                 UPDATE {s}.events
                 SET status = 'queued', attempts = greatest(attempts - 1, 0), due_at = now(),
                     lease_token = NULL, updated_at = now()
                 FROM deferred
                 WHERE id = ANY($1::bigint[])
                   AND (id, lease_token) IN (SELECT * FROM unnest($1::bigint[], $2::bigint[]))"
            ),
            next_due: format!(
                "SELECT (extract(epoch FROM min(due_at) - now()) * 1000)::bigint
                 FROM {s}.events WHERE due_at IS NOT NULL"
            ),
            replay_dead: format!("{replay} WHERE status = 'dead'"),
            // Given events: their status test out of the planner's reach, as in `replay_one`.
            replay_dead_id: format!("{replay} WHERE id = $1 AND {is_dead}"),
            replay_dead_ids: format!("{replay} WHERE id = ANY($1::bigint[]) AND {is_dead}"),
            replay_dead_type: format!("{replay} WHERE status = 'dead' AND event_type = $1"),
            replay_one: format!(
                "{replay} WHERE id = $1
                   AND CASE WHEN status IN ('dead', 'processed') THEN true ELSE false END"
            ),
            notify: format!("SELECT pg_notify('{}', '')", channel(schema)),
            prune_events: format!(
                "WITH gone AS (
                    DELETE FROM {s}.events WHERE id IN (
                        SELECT id FROM {s}.events
                        WHERE status = 'processed' AND finished_at < now() - $1::bigint {ms}
                        LIMIT $2)
                    RETURNING id
                 ), history AS (
                    DELETE FROM {s}.attempts WHERE event_id IN (SELECT id FROM gone)
                 )
                 SELECT count(*) FROM gone"
            ),
            prune_dedup: format!(
                "DELETE FROM {s}.dedup WHERE key IN (
                    SELECT key FROM {s}.dedup WHERE expires_at <= now() LIMIT $1)"
            ),
            status_counts: format!("SELECT status, count(*) FROM {s}.events GROUP BY status"),
            attempts: format!(
                "SELECT attempt, started_at, finished_at, outcome, error FROM {s}.attempts
                 WHERE event_id = $1 ORDER BY id"
            ),
            event: format!("SELECT {EVENT_COLUMNS} FROM {s}.events e WHERE e.id = $1"),
            set_test: format!(
                "UPDATE {s}.events SET is_test = $2, updated_at = now() WHERE id = $1"
            ),
            // Minutes since the Unix epoch, counted over one range of an index each.
            received_per_minute: format!(
                "SELECT {arrival_minute}, count(*) FROM {s}.events
                 WHERE received_at >= $1 AND received_at < $2 GROUP BY 1"
            ),
            processed_per_minute: format!(
                "SELECT {end_minute}, count(*) FROM {s}.events
                 WHERE status = 'processed' AND finished_at >= $1 AND finished_at < $2 GROUP BY 1"
            ),
            failed_per_minute: format!(
                "SELECT {end_minute}, count(*) FROM {s}.events
                 WHERE status IN ('failed', 'dead') AND finished_at >= $1 AND finished_at < $2
                 GROUP BY 1"
            ),
            record_handshake: format!(
                "INSERT INTO {s}.handshakes (received_at, scheme, kind, key_id)
                 VALUES ($1, $2, $3, $4)"
            ),
            handshakes: format!(
                "SELECT received_at, scheme, kind, key_id FROM {s}.handshakes
                 ORDER BY received_at DESC, id DESC LIMIT $1"
            ),
            prune_handshakes: format!(
                "DELETE FROM {s}.handshakes WHERE received_at < now() - $1::bigint {ms}"
            ),
            schema: s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_checked() {
        for good in ["hookgate", "shop_webhooks", "_x", "a1"] {
            assert!(check_schema_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Hookgate",
            "1abc",
            "pg_catalog",
            "information_schema",
            "a\"; DROP TABLE x; --",
            "with space",
            &"x".repeat(49),
        ] {
            assert!(check_schema_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_statement_names_the_schema() {
        let sql = Sql::new("shop");
        assert!(sql.enqueue.contains("\"shop\".dedup"));
        assert!(sql.lease.contains("SKIP LOCKED"));
        assert_eq!(sql.notify, "SELECT pg_notify('shop_events', '')");
        assert!(MIGRATIONS.iter().all(|(v, _)| *v <= SCHEMA_VERSION));
    }
}
