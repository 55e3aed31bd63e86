//! `hookgate inbox`: the receiver's event log and dead letters, read from the SQLite inbox
//! in the data directory (while `hookgate serve` runs, too), or from the PostgreSQL store of
//! `serve --store` (`--store postgres://…`). Both stores answer the same queries through
//! [`EventLog`]: every command is written once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hookgate_inbox::{
    Attempt, EventId, EventLog, Inbox, LogEntry, LogQuery, MAX_LOG_LIMIT, Replay, Status,
    StatusCounts, event_log::Delivery, event_log::HandshakeRecord, event_log::LogError,
};
use hookgate_postgres::PgStore;
use serde::Serialize;

use crate::client::snippet;
use crate::duration::{human, parse_instant, rfc3339};
use crate::error::CliError;
use crate::log_view::Counts;
use crate::{Output, Status as ExitStatus};

/// The data directory used when none is given.
pub(crate) const DEFAULT_DATA_DIR: &str = "./hookgate-data";
/// The name of the endpoint configured by flags (and of a config's endpoint without one).
pub(crate) const DEFAULT_ENDPOINT: &str = "default";

/// Arguments of `hookgate inbox`.
#[derive(Debug, clap::Args)]
pub(crate) struct InboxArgs {
    /// The data directory of `hookgate serve`.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DATA_DIR, global = true)]
    data_dir: PathBuf,

    /// Which endpoint's inbox, by its name in the config file (each endpoint has its own
    /// database). Default: the only one, or `default`.
    #[arg(long, value_name = "NAME", global = true)]
    endpoint: Option<String>,

    /// Read the PostgreSQL store of `serve --store` instead of a data directory:
    /// postgres://USER@HOST/DB[?schema=S].
    #[arg(long, value_name = "URL", global = true, conflicts_with = "endpoint")]
    store: Option<String>,

    #[command(subcommand)]
    command: InboxCommand,
}

#[derive(Debug, clap::Subcommand)]
enum InboxCommand {
    /// What arrived, newest first: id, status, type, attempts, received, duration, error.
    List(ListArgs),
    /// One event: its log entry, attempt history and body.
    Show {
        /// The event's id (first column of `list`).
        id: i64,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// How many events are in each status.
    Stats {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The provider URL handshakes the receiver answered (Slack, Zoom, Meta, …), newest
    /// first: when, which scheme and handshake, which key. They are never events.
    Handshakes {
        /// At most this many.
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put events back in the queue: dead letters by id, or every dead letter. A running
    /// `hookgate serve` picks them up within its poll interval.
    Replay {
        /// The ids of the dead letters to replay.
        #[arg(
            value_name = "ID",
            required_unless_present = "dead",
            conflicts_with = "dead"
        )]
        ids: Vec<i64>,
        /// Replay every dead letter.
        #[arg(long)]
        dead: bool,
        /// Replay only this destination's dead deliveries (an endpoint with
        /// destinations): the events' deliveries to other destinations are left alone.
        #[arg(long, value_name = "NAME")]
        destination: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Only events in this status (repeatable): received, queued, processing, processed,
    /// failed, dead, filtered (taken by no destination).
    #[arg(long, value_name = "S", value_parser = parse_status)]
    status: Vec<Status>,
    /// Only events of this type.
    #[arg(long = "type", value_name = "T")]
    event_type: Option<String>,
    /// Only events received since: RFC 3339, Unix seconds, or a duration ago (10m, 2h, 3d).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// At most this many events.
    #[arg(long, value_name = "N", default_value_t = 100, conflicts_with = "all")]
    limit: usize,
    /// Every matching event.
    #[arg(long)]
    all: bool,
    /// Include test deliveries.
    #[arg(long)]
    include_test: bool,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
}

/// One event in `list --json` and `show --json` (and the console's JSON API).
#[derive(Debug, Serialize)]
pub(crate) struct EntryJson<'a> {
    id: i64,
    status: &'a str,
    scheme: &'a str,
    dedup_key: &'a str,
    delivery_id: Option<&'a str>,
    event_type: Option<&'a str>,
    signed_at: Option<String>,
    received_at: String,
    attempts: u32,
    next_attempt_at: Option<String>,
    started_at: Option<String>,
    finished_at: Option<String>,
    duration_ms: Option<u128>,
    last_error: Option<&'a str>,
    dead_at: Option<String>,
    is_test: bool,
    body_len: u64,
}

impl<'a> EntryJson<'a> {
    pub(crate) fn new(entry: &'a LogEntry) -> Self {
        EntryJson {
            id: entry.id.get(),
            status: entry.status.as_str(),
            scheme: &entry.scheme,
            dedup_key: &entry.dedup_key,
            delivery_id: entry.delivery_id.as_deref(),
            event_type: entry.event_type.as_deref(),
            signed_at: entry.signed_at.map(rfc3339),
            received_at: rfc3339(entry.received_at),
            attempts: entry.attempts,
            next_attempt_at: entry.next_attempt_at.map(rfc3339),
            started_at: entry.started_at.map(rfc3339),
            finished_at: entry.finished_at.map(rfc3339),
            duration_ms: entry.processing_duration.map(|d| d.as_millis()),
            last_error: entry.last_error.as_deref(),
            dead_at: entry.dead_at.map(rfc3339),
            is_test: entry.is_test,
            body_len: entry.body_len,
        }
    }
}

/// Runs `hookgate inbox`.
///
/// # Errors
/// No inbox in the data directory, an unknown event, or a database error.
pub(crate) async fn run(args: InboxArgs) -> Result<Output, CliError> {
    let (log, label) = open_log(
        args.store.as_deref(),
        &args.data_dir,
        args.endpoint.as_deref(),
    )
    .await?;
    let fail = |e: LogError| CliError::new(format!("{label}: {e}"));
    match args.command {
        InboxCommand::List(list_args) => list(log.as_ref(), list_args).await.map_err(fail),
        InboxCommand::Show { id, json } => {
            let id = EventId::new(id);
            let Some(entry) = log.entry(id).await.map_err(fail)? else {
                let place = if args.store.is_some() {
                    "store"
                } else {
                    "inbox"
                };
                return Err(CliError::new(format!("no event {id} in this {place}")));
            };
            let attempts = log.attempts(id).await.map_err(fail)?;
            let content = log.content(id).await.map_err(fail)?;
            let stored = content
                .as_ref()
                .map(|c| (c.body.as_ref(), c.headers.as_slice()));
            let deliveries = log.deliveries(id).await.map_err(fail)?;
            if deliveries.is_empty() {
                return Ok(shown(&entry, &attempts, stored, json));
            }
            if json {
                let mut value = show_json(&entry, &attempts, stored);
                if let Some(object) = value.as_object_mut() {
                    object.insert("deliveries".to_owned(), deliveries_json(&deliveries));
                }
                return Ok(Output::new(format!("{value}\n"), ExitStatus::Success));
            }
            let text = shown(&entry, &attempts, stored, false).into_text();
            let block = deliveries_text(&deliveries);
            let text = match text.find("body (") {
                Some(at) => format!("{}{block}{}", &text[..at], &text[at..]),
                None => format!("{text}{block}"),
            };
            Ok(Output::new(text, ExitStatus::Success))
        }
        InboxCommand::Stats { json } => {
            let counts = log.status_counts().await.map_err(fail)?;
            let per_destination = log.delivery_counts().await.map_err(fail)?;
            if per_destination.is_empty() {
                return Ok(counted(&Counts::from(&counts), json));
            }
            Ok(counted_per_destination(
                &Counts::from(&counts),
                &per_destination,
                json,
            ))
        }
        InboxCommand::Handshakes { limit, json } => {
            let handshakes = log.handshakes(limit.max(1)).await.map_err(fail)?;
            Ok(handshakes_listed(&handshakes, json))
        }
        InboxCommand::Replay {
            ids,
            dead,
            destination,
        } => {
            let which = if dead {
                Replay::All
            } else {
                Replay::Ids(ids.iter().copied().map(EventId::new).collect())
            };
            let replayed = match &destination {
                Some(name) => log.replay_destination(name, which).await.map_err(fail)?,
                None => log.replay_dead_letters(which).await.map_err(fail)?,
            };
            let mut out = match &destination {
                Some(name) => {
                    format!("replayed {replayed} dead deliver(ies) of destination {name}\n")
                }
                None => format!("replayed {replayed} dead letter(s)\n"),
            };
            if !dead && usize::try_from(replayed).ok() != Some(ids.len()) {
                out.push_str(
                    "note: only dead letters are replayed; the other ids were left alone\n",
                );
            }
            Ok(Output::new(out, ExitStatus::Success))
        }
    }
}

/// The event log `hookgate inbox` and `hookgate destination` work on: the PostgreSQL
/// store at `store`, or the endpoint's inbox in `data_dir`; and its label for messages.
///
/// # Errors
/// The store cannot be reached, or there is no such inbox.
pub(crate) async fn open_log(
    store: Option<&str>,
    data_dir: &Path,
    endpoint: Option<&str>,
) -> Result<(Arc<dyn EventLog>, String), CliError> {
    match store {
        Some(url) => {
            let label = format!("store {}", crate::serve::redact(url));
            let store = PgStore::connect(url)
                .await
                .map_err(|e| CliError::new(format!("{label}: {e}")))?;
            Ok((Arc::new(store), label))
        }
        None => {
            let path = existing_inbox(data_dir, endpoint)?;
            let label = format!("inbox {}", path.display());
            let inbox = Inbox::builder(&path)
                .no_scheduled_pruning()
                .open()
                .map_err(|e| CliError::new(format!("{label}: {e}")))?;
            Ok((Arc::new(inbox), label))
        }
    }
}

/// The database file of `endpoint` in `data_dir`: `inbox.db` for the default endpoint,
/// `inbox-NAME.db` for a named one.
pub(crate) fn inbox_path(data_dir: &Path, endpoint: &str) -> PathBuf {
    if endpoint == DEFAULT_ENDPOINT {
        data_dir.join("inbox.db")
    } else {
        data_dir.join(format!("inbox-{endpoint}.db"))
    }
}

/// Finds the inbox to read, without creating one.
pub(crate) fn existing_inbox(data_dir: &Path, endpoint: Option<&str>) -> Result<PathBuf, CliError> {
    if let Some(name) = endpoint {
        let path = inbox_path(data_dir, name);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(CliError::new(format!(
                "no inbox for endpoint {name:?} in {} ({} does not exist)",
                data_dir.display(),
                path.display()
            )))
        };
    }
    let default = inbox_path(data_dir, DEFAULT_ENDPOINT);
    if default.is_file() {
        return Ok(default);
    }
    let named: Vec<String> = std::fs::read_dir(data_dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|n| {
                    n.strip_prefix("inbox-")
                        .and_then(|n| n.strip_suffix(".db"))
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    match named.as_slice() {
        [only] => Ok(inbox_path(data_dir, only)),
        [] => Err(CliError::new(format!(
            "no inbox in {}: run `hookgate serve` first, or pass the --data-dir it uses",
            data_dir.display()
        ))),
        several => Err(CliError::new(format!(
            "{} holds several endpoints' inboxes; choose one with --endpoint: {}",
            data_dir.display(),
            several.join(", ")
        ))),
    }
}

fn parse_status(text: &str) -> Result<Status, String> {
    text.parse().map_err(|_| {
        format!(
            "unknown status; one of {}",
            Status::ALL.map(Status::as_str).join(", ")
        )
    })
}

async fn list(log: &dyn EventLog, args: ListArgs) -> Result<Output, LogError> {
    let mut query = LogQuery::new().include_test(args.include_test);
    for status in &args.status {
        query = query.status(*status);
    }
    if let Some(event_type) = &args.event_type {
        query = query.event_type(event_type.clone());
    }
    if let Some(since) = &args.since {
        let at = parse_instant(since, SystemTime::now())
            .map_err(|e| LogError::Invalid(format!("--since: {e}")))?;
        query = query.received_after(at);
    }
    let wanted = wanted(&args);
    let mut entries: Vec<LogEntry> = Vec::new();
    // Pages of at most MAX_LOG_LIMIT rows, newest first.
    while entries.len() < wanted {
        let page_size = wanted.saturating_sub(entries.len()).min(MAX_LOG_LIMIT);
        let mut page_query = query.clone().limit(page_size);
        if let Some(last) = entries.last() {
            page_query = page_query.before_id(last.id);
        }
        let page = log.query(page_query).await?;
        let done = page.len() < page_size;
        entries.extend(page);
        if done {
            break;
        }
    }
    Ok(listing(&entries, &args, wanted))
}

/// How many rows `list` wants: `--limit`, or all.
fn wanted(args: &ListArgs) -> usize {
    if args.all {
        usize::MAX
    } else {
        args.limit.max(1)
    }
}

/// The `list` output: JSON lines or the table.
fn listing(entries: &[LogEntry], args: &ListArgs, wanted: usize) -> Output {
    let mut out = String::new();
    if args.json {
        for entry in entries {
            out.push_str(&serde_json::to_string(&EntryJson::new(entry)).unwrap_or_default());
            out.push('\n');
        }
    } else {
        out.push_str(&table(entries));
        if !args.all && entries.len() == wanted {
            crate::note(&format!(
                "showing the newest {wanted}; --limit N or --all for more"
            ));
        }
    }
    Output::new(out, ExitStatus::Success)
}

/// The `list` table.
fn table(entries: &[LogEntry]) -> String {
    let mut out = format!(
        "{:>8}  {:<10}  {:<24}  {:>8}  {:<24}  {:>9}  {}\n",
        "ID", "STATUS", "TYPE", "ATTEMPTS", "RECEIVED", "DURATION", "LAST ERROR"
    );
    for entry in entries {
        out.push_str(&format!(
            "{:>8}  {:<10}  {:<24}  {:>8}  {:<24}  {:>9}  {}\n",
            entry.id,
            entry.status,
            snippet(entry.event_type.as_deref().unwrap_or("-").as_bytes(), 24),
            entry.attempts,
            rfc3339(entry.received_at),
            entry
                .processing_duration
                .map(human)
                .unwrap_or_else(|| "-".to_owned()),
            snippet(entry.last_error.as_deref().unwrap_or("").as_bytes(), 80),
        ));
    }
    out
}

/// The deliveries of an event, one line each, for `show`.
fn deliveries_text(deliveries: &[Delivery]) -> String {
    let mut out = String::from("deliveries:\n");
    for d in deliveries {
        out.push_str(&format!(
            "  {}: {}, {} attempt(s){}{}{}\n",
            d.destination,
            d.status,
            d.attempts,
            d.lane
                .as_deref()
                .map(|l| format!(", lane {}", snippet(l.as_bytes(), 100)))
                .unwrap_or_default(),
            d.due_at
                .filter(|_| d.status.waits())
                .map(|at| format!(", next attempt {}", rfc3339(at)))
                .unwrap_or_default(),
            d.last_error
                .as_deref()
                .map(|e| format!(", last error: {}", snippet(e.as_bytes(), 300)))
                .unwrap_or_default(),
        ));
    }
    out
}

/// The deliveries of an event for `show --json`.
pub(crate) fn deliveries_json(deliveries: &[Delivery]) -> serde_json::Value {
    deliveries
        .iter()
        .map(|d| {
            serde_json::json!({
                "destination": d.destination,
                "status": d.status.as_str(),
                "attempts": d.attempts,
                "lane": d.lane,
                "due_at": d.due_at.map(rfc3339),
                "finished_at": d.finished_at.map(rfc3339),
                "last_error": d.last_error,
            })
        })
        .collect()
}

/// `stats` of an endpoint with destinations: the events' counts, then each destination's
/// deliveries per status.
fn counted_per_destination(
    counts: &Counts,
    per_destination: &[(String, Status, u64)],
    json: bool,
) -> Output {
    if json {
        let mut value: serde_json::Value =
            serde_json::from_slice(&counted(counts, true).into_text().into_bytes())
                .unwrap_or_default();
        let mut destinations = serde_json::Map::new();
        for (name, status, count) in per_destination {
            let entry = destinations
                .entry(name.clone())
                .or_insert_with(|| serde_json::json!({}));
            if let Some(object) = entry.as_object_mut() {
                object.insert(status.as_str().to_owned(), serde_json::json!(count));
            }
        }
        if let Some(object) = value.as_object_mut() {
            object.insert(
                "destinations".to_owned(),
                serde_json::Value::Object(destinations),
            );
        }
        return Output::new(format!("{value}\n"), ExitStatus::Success);
    }
    let mut text = counted(counts, false).into_text();
    text.push_str("deliveries per destination:\n");
    for (name, status, count) in per_destination {
        text.push_str(&format!("  {name} {status}: {count}\n"));
    }
    Output::new(text, ExitStatus::Success)
}

/// A stored event's body and headers.
pub(crate) type Stored<'a> = (&'a [u8], &'a [(String, String)]);

/// The `show` output: one JSON object, or the entry, its attempts and its body as text.
fn shown(entry: &LogEntry, attempts: &[Attempt], stored: Option<Stored<'_>>, json: bool) -> Output {
    let mut out = String::new();
    if json {
        out.push_str(&show_json(entry, attempts, stored).to_string());
        out.push('\n');
        return Output::new(out, ExitStatus::Success);
    }
    let body = stored.map(|(body, _)| body).unwrap_or_default();
    let optional = |at: Option<SystemTime>| at.map(rfc3339).unwrap_or_else(|| "-".to_owned());
    out.push_str(&format!("id: {}\n", entry.id));
    out.push_str(&format!("status: {}\n", entry.status));
    out.push_str(&format!("scheme: {}\n", entry.scheme));
    out.push_str(&format!(
        "dedup key: {}\n",
        snippet(entry.dedup_key.as_bytes(), 200)
    ));
    if let Some(id) = &entry.delivery_id {
        out.push_str(&format!("delivery id: {}\n", snippet(id.as_bytes(), 200)));
    }
    if let Some(event_type) = &entry.event_type {
        out.push_str(&format!(
            "event type: {}\n",
            snippet(event_type.as_bytes(), 200)
        ));
    }
    out.push_str(&format!("signed at: {}\n", optional(entry.signed_at)));
    out.push_str(&format!("received at: {}\n", rfc3339(entry.received_at)));
    out.push_str(&format!("attempts: {}\n", entry.attempts));
    if let Some(next) = entry.next_attempt_at.filter(|_| entry.status.waits()) {
        out.push_str(&format!("next attempt: {}\n", rfc3339(next)));
    }
    if let Some(duration) = entry.processing_duration {
        out.push_str(&format!("last duration: {}\n", human(duration)));
    }
    if let Some(error) = &entry.last_error {
        out.push_str(&format!("last error: {}\n", snippet(error.as_bytes(), 500)));
    }
    if let Some(dead) = entry.dead_at {
        out.push_str(&format!("dead since: {}\n", rfc3339(dead)));
    }
    for attempt in attempts {
        let took = attempt
            .finished_at
            .duration_since(attempt.started_at)
            .unwrap_or(Duration::ZERO);
        out.push_str(&format!(
            "attempt {}: {} at {} ({}){}\n",
            attempt.attempt,
            attempt.outcome,
            rfc3339(attempt.started_at),
            human(took),
            attempt
                .error
                .as_deref()
                .map(|e| format!(": {}", snippet(e.as_bytes(), 300)))
                .unwrap_or_default()
        ));
    }
    out.push_str(&format!("body ({} bytes):\n", body.len()));
    out.push_str(&snippet(body, 4000));
    out.push('\n');
    Output::new(out, ExitStatus::Success)
}

/// One event as `show --json` prints it: the log entry, its attempt history, headers and
/// body (also the console's JSON API).
pub(crate) fn show_json(
    entry: &LogEntry,
    attempts: &[Attempt],
    stored: Option<Stored<'_>>,
) -> serde_json::Value {
    let attempts: Vec<serde_json::Value> = attempts
        .iter()
        .map(|a| {
            serde_json::json!({
                "attempt": a.attempt,
                "started_at": rfc3339(a.started_at),
                "finished_at": rfc3339(a.finished_at),
                "duration_ms": a.finished_at.duration_since(a.started_at).unwrap_or_default().as_millis(),
                "outcome": a.outcome,
                "error": a.error,
            })
        })
        .collect();
    let mut value = serde_json::to_value(EntryJson::new(entry)).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("attempt_history".to_owned(), attempts.into());
        let body = stored.map(|(body, _)| body).unwrap_or_default();
        object.insert(
            "body".to_owned(),
            String::from_utf8_lossy(body).into_owned().into(),
        );
        if let Some((_, headers)) = stored {
            let headers: Vec<serde_json::Value> = headers
                .iter()
                .map(|(n, v)| serde_json::json!([n, v]))
                .collect();
            object.insert("headers".to_owned(), headers.into());
        }
    }
    value
}

/// The counts of `stats --json` (also the console's JSON API).
pub(crate) fn stats_json(counts: &StatusCounts) -> serde_json::Value {
    counts_json(&Counts::from(counts))
}

fn counts_json(counts: &Counts) -> serde_json::Value {
    let mut object: serde_json::Map<String, serde_json::Value> = counts
        .each
        .iter()
        .map(|(name, count)| ((*name).to_owned(), (*count).into()))
        .collect();
    object.insert("pending".to_owned(), counts.pending.into());
    object.insert("total".to_owned(), counts.total.into());
    serde_json::Value::Object(object)
}

/// The `stats` output.
fn counted(counts: &Counts, json: bool) -> Output {
    let mut out = String::new();
    if json {
        out.push_str(&counts_json(counts).to_string());
        out.push('\n');
    } else {
        for (name, count) in &counts.each {
            out.push_str(&format!("{name:<11} {count}\n"));
        }
        out.push_str(&format!("{:<11} {}\n", "pending", counts.pending));
        out.push_str(&format!("{:<11} {}\n", "total", counts.total));
    }
    Output::new(out, ExitStatus::Success)
}

/// The `handshakes` output: JSON lines, or a table.
fn handshakes_listed(handshakes: &[HandshakeRecord], json: bool) -> Output {
    let mut out = String::new();
    if json {
        for handshake in handshakes {
            let value = serde_json::json!({
                "received_at": rfc3339(handshake.received_at),
                "scheme": handshake.scheme,
                "kind": handshake.kind,
                "key_id": handshake.key_id,
            });
            out.push_str(&value.to_string());
            out.push('\n');
        }
    } else if handshakes.is_empty() {
        crate::note("no handshakes recorded");
    } else {
        out.push_str(&format!(
            "{:<24}  {:<20}  {:<32}  {}\n",
            "RECEIVED", "SCHEME", "KIND", "KEY"
        ));
        for handshake in handshakes {
            out.push_str(&format!(
                "{:<24}  {:<20}  {:<32}  {}\n",
                rfc3339(handshake.received_at),
                snippet(handshake.scheme.as_bytes(), 20),
                snippet(handshake.kind.as_bytes(), 32),
                snippet(handshake.key_id.as_deref().unwrap_or("-").as_bytes(), 40),
            ));
        }
    }
    Output::new(out, ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_endpoint_has_its_own_database() {
        let dir = Path::new("/data");
        assert_eq!(inbox_path(dir, "default"), Path::new("/data/inbox.db"));
        assert_eq!(
            inbox_path(dir, "stripe"),
            Path::new("/data/inbox-stripe.db")
        );
    }

    #[test]
    fn a_missing_inbox_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let err = existing_inbox(dir.path(), None).unwrap_err();
        assert!(err.to_string().contains("hookgate serve"), "{err}");
        std::fs::write(dir.path().join("inbox-a.db"), b"").unwrap();
        assert_eq!(
            existing_inbox(dir.path(), None).unwrap(),
            dir.path().join("inbox-a.db")
        );
        std::fs::write(dir.path().join("inbox-b.db"), b"").unwrap();
        assert!(existing_inbox(dir.path(), None).is_err());
        assert!(existing_inbox(dir.path(), Some("b")).is_ok());
    }
}
