//! `hookgate dead-letters`: list the dead letters of a fleet's queue, and replay them once
//! the cause is fixed: the queue's counterpart of `hookgate inbox list --status dead` and
//! `hookgate inbox replay --dead`.

use std::time::{Duration, SystemTime};

use hookgate_queue::{Envelope, EnvelopeError};
use serde::Serialize;

use crate::duration::rfc3339;
use crate::error::CliError;
use crate::work::QueueKind;
use crate::{Output, Status};

/// Arguments of `hookgate dead-letters`.
#[derive(Debug, clap::Args)]
pub(crate) struct DeadLettersArgs {
    /// The queue `hookgate work` consumes: redis://HOST:6379/?stream=NAME (dead letters in
    /// `<stream>:dead`, or `<stream>:<destination>:dead`), nats://HOST:4222/?stream=NAME&
    /// subject=SUBJ (in `<stream>_DEAD`) or
    /// postgres://USER@HOST/DB[?schema=S] (the events whose status is dead).
    #[arg(long, value_name = "URL")]
    queue: String,

    /// Put the dead letters back on the queue as new events (attempts start from 1),
    /// oldest first, instead of listing them.
    #[arg(long)]
    replay: bool,

    /// At most this many, oldest first.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    count: usize,

    /// One JSON object per line instead of a table.
    #[arg(long, conflicts_with = "replay")]
    json: bool,

    /// The dead letters of this destination only, for an endpoint with destinations
    /// (`serve --queue URL --destination …`): each destination has its own, and a replay
    /// puts them back for that destination alone, never re-delivering to the others.
    #[arg(long, value_name = "NAME")]
    destination: Option<String>,
}

/// One dead letter, as listed.
#[derive(Debug, Serialize)]
struct Listed {
    /// Its id in the dead-letter stream.
    id: String,
    dedup_key: Option<String>,
    delivery_id: Option<String>,
    event_type: Option<String>,
    attempts: u32,
    error: String,
    failed_at: String,
}

impl Listed {
    fn new(
        id: String,
        envelope: Result<Envelope, EnvelopeError>,
        attempts: u32,
        error: String,
        failed_at_ms: i64,
    ) -> Listed {
        let (dedup_key, delivery_id, event_type) = match envelope {
            Ok(envelope) => (
                Some(envelope.dedup_key),
                envelope.delivery_id,
                envelope.event_type,
            ),
            Err(_) => (None, None, None),
        };
        let failed_at = u64::try_from(failed_at_ms)
            .ok()
            .and_then(|ms| SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(ms)))
            .map(rfc3339)
            .unwrap_or_default();
        Listed {
            id,
            dedup_key,
            delivery_id,
            event_type,
            attempts,
            error,
            failed_at,
        }
    }
}

/// Lists or replays the dead letters.
///
/// # Errors
/// A URL that names no queue, a queue that cannot be reached.
pub(crate) async fn run(args: DeadLettersArgs) -> Result<Output, CliError> {
    let shown = crate::serve::redact(&args.queue);
    let failed = |e: String| CliError::new(format!("--queue {shown}: {e}"));
    let kind = QueueKind::of(&args.queue)?;
    if kind == QueueKind::Postgres {
        if args.destination.is_some() {
            return Err(CliError::new(
                "--destination works with redis:// and nats:// queues, not a PostgreSQL store \
                 (yet)",
            ));
        }
        return postgres(&args).await.map_err(failed);
    }
    let redis = kind == QueueKind::Redis;
    if args.replay {
        let moved = if redis {
            let dead = redis_dead_letters(&args).await.map_err(failed)?;
            dead.replay(args.count).await.map_err(|e| e.to_string())
        } else {
            let dead = nats_dead_letters(&args).await.map_err(failed)?;
            dead.replay(args.count).await.map_err(|e| e.to_string())
        };
        let moved = moved.map_err(failed)?;
        return Ok(Output::new(
            format!("{moved} dead letter(s) put back on the queue\n"),
            Status::Success,
        ));
    }
    let listed: Vec<Listed> = if redis {
        let dead = redis_dead_letters(&args).await.map_err(failed)?;
        dead.list(args.count)
            .await
            .map_err(|e| failed(e.to_string()))?
            .into_iter()
            .map(|l| Listed::new(l.id, l.envelope, l.attempts, l.error, l.failed_at_ms))
            .collect()
    } else {
        let dead = nats_dead_letters(&args).await.map_err(failed)?;
        dead.list(args.count)
            .await
            .map_err(|e| failed(e.to_string()))?
            .into_iter()
            .map(|l| {
                Listed::new(
                    l.sequence.to_string(),
                    l.envelope,
                    l.attempts,
                    l.error,
                    l.failed_at_ms,
                )
            })
            .collect()
    };
    Ok(Output::new(render(&listed, args.json), Status::Success))
}

/// The dead letters of a Redis stream, or of one destination's stream.
async fn redis_dead_letters(
    args: &DeadLettersArgs,
) -> Result<hookgate_redis::StreamDeadLetters, String> {
    let dead = hookgate_redis::StreamDeadLetters::connect(&args.queue)
        .await
        .map_err(|e| e.to_string())?;
    match &args.destination {
        Some(name) => dead.destination(name).map_err(|e| e.to_string()),
        None => Ok(dead),
    }
}

/// The dead letters of a JetStream stream, or of one destination's subject.
async fn nats_dead_letters(
    args: &DeadLettersArgs,
) -> Result<hookgate_nats::JetStreamDeadLetters, String> {
    let dead = hookgate_nats::JetStreamDeadLetters::connect(&args.queue)
        .await
        .map_err(|e| e.to_string())?;
    match &args.destination {
        Some(name) => dead.destination(name).map_err(|e| e.to_string()),
        None => Ok(dead),
    }
}

/// The dead letters of a PostgreSQL store: its events whose status is `dead`.
async fn postgres(args: &DeadLettersArgs) -> Result<Output, String> {
    let store = hookgate_postgres::PgStore::connect(&args.queue)
        .await
        .map_err(|e| e.to_string())?;
    if args.replay {
        // The store replays all of them at once, in one statement.
        let moved = store
            .replay_dead_letters(hookgate_postgres::Replay::All)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(Output::new(
            format!("{moved} dead letter(s) put back on the queue\n"),
            Status::Success,
        ));
    }
    let limit = args.count.clamp(1, hookgate_postgres::MAX_LOG_LIMIT);
    let entries = store
        .dead_letters(None, limit)
        .await
        .map_err(|e| e.to_string())?;
    let listed: Vec<Listed> = entries
        .into_iter()
        .map(|entry| Listed {
            id: entry.id.get().to_string(),
            dedup_key: Some(entry.dedup_key),
            delivery_id: entry.delivery_id,
            event_type: entry.event_type,
            attempts: entry.attempts,
            error: entry.last_error.unwrap_or_default(),
            failed_at: entry.dead_at.map(rfc3339).unwrap_or_default(),
        })
        .collect();
    Ok(Output::new(render(&listed, args.json), Status::Success))
}

/// The listing: a line each, or a JSON object each.
fn render(listed: &[Listed], json: bool) -> String {
    let mut out = String::new();
    for letter in listed {
        if json {
            out.push_str(&serde_json::to_string(letter).unwrap_or_else(|_| "{}".to_owned()));
        } else {
            out.push_str(&format!(
                "{}  {}  {}  attempts {}  {}  {}",
                letter.id,
                letter.dedup_key.as_deref().unwrap_or("(unreadable)"),
                letter.event_type.as_deref().unwrap_or("-"),
                letter.attempts,
                letter.failed_at,
                letter.error
            ));
        }
        out.push('\n');
    }
    if !json && listed.is_empty() {
        out.push_str("no dead letters\n");
    }
    out
}
