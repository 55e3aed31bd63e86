//! The event log's model, one for every store that keeps one: what arrived, when, from which
//! scheme, with what status, how long it took and what went wrong.
//!
//! The SQLite inbox (`hookgate-inbox`) and the PostgreSQL store (`hookgate-postgres`) answer
//! the same [`LogQuery`] with the same [`LogEntry`] rows, count the same [`StatusCounts`],
//! replay dead letters with the same [`Replay`], and both implement [`EventLog`], so a tool
//! (`hookgate inbox`, the web console) is written once for both.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use hookgate_queue::event_log::{LogQuery, Status, TestDeliveries};
//!
//! let query = LogQuery::new()
//!     .status(Status::Dead)
//!     .event_type("invoice.paid")
//!     .received_after(SystemTime::now() - Duration::from_secs(3600))
//!     .limit(50);
//! // What a store reads to build its statement:
//! let filter = query.filter()?;
//! assert_eq!(filter.statuses, [Status::Dead]);
//! assert_eq!((filter.limit, filter.tests), (50, TestDeliveries::Excluded));
//! # Ok::<(), hookgate_queue::event_log::LogError>(())
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hookgate::BoxFuture;

/// Default most rows of one [`LogQuery`]: 100.
pub const DEFAULT_LOG_LIMIT: usize = 100;
/// Most rows one [`LogQuery`] may ask for: 10 000.
pub const MAX_LOG_LIMIT: usize = 10_000;
/// The longest range [`EventLog::activity_per_minute`] answers: 7 days of minutes.
pub const MAX_ACTIVITY_RANGE: Duration = Duration::from_secs(7 * 24 * 3600);

const MINUTE_MS: i64 = 60_000;

/// A store's id for an event: increasing in arrival order, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId(i64);

impl EventId {
    /// The id with the given value (as shown by the event log).
    pub const fn new(value: i64) -> Self {
        EventId(value)
    }

    /// The id's value.
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where an event is in its life.
///
/// ```text
///  received ──lease──▶ processing ──success──▶ processed ──(retention)──▶ pruned
///  queued   ──lease──▶     │  ▲
///  failed   ──due───▶      │  └──(lease expired: crash)── processing
///     ▲                    ├── retry ──▶ failed
///     │                    ├── permanent failure / attempts exhausted ──▶ dead
///     │                    └── given back at shutdown ──▶ queued
///  dead ──(replay)──▶ queued
/// ```
///
/// An event of an endpoint with destinations (issue 21) has one delivery per matching
/// destination, each with its own status from this list; the event's own status sums
/// them up (processing while one is, failed while one waits for a retry, dead once all
/// ended and one is dead, processed once all are), and is [`Filtered`](Status::Filtered)
/// when no destination took it.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Durably stored, waiting for its first attempt.
    Received,
    /// Waiting to be taken again without having failed: its lease was given back at
    /// shutdown, or it was replayed from the dead letters.
    Queued,
    /// Leased by a worker whose handler is running (or whose process died: the lease then
    /// expires and another worker takes it).
    Processing,
    /// The handler succeeded. Kept for the retention period, then pruned.
    Processed,
    /// The last attempt failed; another is scheduled.
    Failed,
    /// Dead letter: a permanent failure, or the attempts ran out. Waits for a replay.
    Dead,
    /// Stored and acknowledged, but no destination's filter took it: delivered nowhere.
    /// Pruned after the retention like a processed event.
    Filtered,
}

impl Status {
    /// Every status, in lifecycle order.
    pub const ALL: [Status; 7] = [
        Status::Received,
        Status::Queued,
        Status::Processing,
        Status::Processed,
        Status::Failed,
        Status::Dead,
        Status::Filtered,
    ];

    /// The name stored in the database and shown by the event log.
    pub const fn as_str(self) -> &'static str {
        match self {
            Status::Received => "received",
            Status::Queued => "queued",
            Status::Processing => "processing",
            Status::Processed => "processed",
            Status::Failed => "failed",
            Status::Dead => "dead",
            Status::Filtered => "filtered",
        }
    }

    /// Whether the event waits for an attempt (received, queued or failed).
    pub const fn waits(self) -> bool {
        matches!(self, Status::Received | Status::Queued | Status::Failed)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// A status name that is none of [`Status::ALL`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}")]
pub struct UnknownStatus(pub String);

/// Which test deliveries a [`LogQuery`] returns.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TestDeliveries {
    /// None (the default).
    #[default]
    Excluded,
    /// Test deliveries and the others.
    Included,
    /// Only test deliveries.
    Only,
}

/// A filter over the event log; every condition given must hold. Newest events first.
///
/// Test deliveries are left out unless [`include_test`](Self::include_test) is set.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use hookgate_queue::event_log::{LogQuery, Status};
///
/// let query = LogQuery::new()
///     .status(Status::Dead)
///     .event_type("invoice.paid")
///     .received_after(SystemTime::now() - Duration::from_secs(3600))
///     .limit(50);
/// # let _ = query;
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct LogQuery {
    statuses: Vec<Status>,
    received_after: Option<SystemTime>,
    received_before: Option<SystemTime>,
    event_type: Option<String>,
    delivery_id: Option<String>,
    scheme: Option<String>,
    destination: Option<String>,
    include_test: bool,
    only_test: bool,
    before_id: Option<EventId>,
    limit: Option<usize>,
}

impl LogQuery {
    /// Every non-test event, newest first, [`DEFAULT_LOG_LIMIT`] at most.
    pub fn new() -> Self {
        LogQuery::default()
    }

    /// Only events in `status` (call again to accept several).
    pub fn status(mut self, status: Status) -> Self {
        if !self.statuses.contains(&status) {
            self.statuses.push(status);
        }
        self
    }

    /// Only events received at or after `at`.
    pub fn received_after(mut self, at: SystemTime) -> Self {
        self.received_after = Some(at);
        self
    }

    /// Only events received before `at`.
    pub fn received_before(mut self, at: SystemTime) -> Self {
        self.received_before = Some(at);
        self
    }

    /// Only events of this type.
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }

    /// Only events with this provider delivery id.
    ///
    /// The SQLite inbox does not index delivery ids (a random key would cost its writer a
    /// page per event), so there this looks through the log from the newest event back:
    /// bound it with [`received_after`](Self::received_after) on a large inbox.
    pub fn delivery_id(mut self, delivery_id: impl Into<String>) -> Self {
        self.delivery_id = Some(delivery_id.into());
        self
    }

    /// Only events verified by this scheme (`stripe`, `github`, …).
    pub fn scheme(mut self, scheme: impl Into<String>) -> Self {
        self.scheme = Some(scheme.into());
        self
    }

    /// Only events routed to this destination (an endpoint with destinations, issue 21):
    /// those with a delivery to it, whatever its state.
    pub fn destination(mut self, destination: impl Into<String>) -> Self {
        self.destination = Some(destination.into());
        self
    }

    /// Includes test deliveries (left out by default).
    pub fn include_test(mut self, include: bool) -> Self {
        self.include_test = include;
        self
    }

    /// Only test deliveries.
    pub fn only_test(mut self) -> Self {
        self.only_test = true;
        self
    }

    /// Only events older than `id`: pass the last id of a page to get the next one.
    pub fn before_id(mut self, id: EventId) -> Self {
        self.before_id = Some(id);
        self
    }

    /// At most `limit` rows (default [`DEFAULT_LOG_LIMIT`], at most [`MAX_LOG_LIMIT`]).
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = Some(limit);
        self
    }

    /// The dead letters, newest first, optionally of one event type, test deliveries
    /// included: what [`EventLog::dead_letters`] asks every store.
    pub fn dead_letters(event_type: Option<&str>, limit: usize) -> Self {
        let query = LogQuery::new()
            .status(Status::Dead)
            .include_test(true)
            .limit(limit);
        match event_type {
            Some(event_type) => query.event_type(event_type),
            None => query,
        }
    }

    /// The conditions, as a store reads them to build its statement.
    ///
    /// # Errors
    /// [`LogError::Invalid`] for a limit outside 1 to [`MAX_LOG_LIMIT`].
    pub fn filter(&self) -> Result<LogFilter<'_>, LogError> {
        let limit = self.limit.unwrap_or(DEFAULT_LOG_LIMIT);
        if !(1..=MAX_LOG_LIMIT).contains(&limit) {
            return Err(LogError::Invalid(format!(
                "a log query's limit must be between 1 and {MAX_LOG_LIMIT}, got {limit}"
            )));
        }
        let tests = if self.only_test {
            TestDeliveries::Only
        } else if self.include_test {
            TestDeliveries::Included
        } else {
            TestDeliveries::Excluded
        };
        Ok(LogFilter {
            statuses: &self.statuses,
            received_after: self.received_after,
            received_before: self.received_before,
            event_type: self.event_type.as_deref(),
            delivery_id: self.delivery_id.as_deref(),
            scheme: self.scheme.as_deref(),
            destination: self.destination.as_deref(),
            tests,
            before_id: self.before_id,
            limit,
        })
    }
}

/// The conditions of a [`LogQuery`], checked ([`LogQuery::filter`]).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogFilter<'a> {
    /// Any of these statuses; empty for any status.
    pub statuses: &'a [Status],
    /// Received at or after this instant.
    pub received_after: Option<SystemTime>,
    /// Received before this instant.
    pub received_before: Option<SystemTime>,
    /// Of this event type.
    pub event_type: Option<&'a str>,
    /// With this delivery id.
    pub delivery_id: Option<&'a str>,
    /// Verified by this scheme.
    pub scheme: Option<&'a str>,
    /// With a delivery to this destination.
    pub destination: Option<&'a str>,
    /// Which test deliveries.
    pub tests: TestDeliveries,
    /// Older than this id.
    pub before_id: Option<EventId>,
    /// At most this many rows (1 to [`MAX_LOG_LIMIT`]).
    pub limit: usize,
}

impl LogFilter<'_> {
    /// Whether the query asks for dead letters only (a store may walk a dead-letter index).
    pub fn dead_only(&self) -> bool {
        self.statuses == [Status::Dead]
    }
}

/// One row of the event log. The body is not included: see [`EventLog::content`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The store's id.
    pub id: EventId,
    /// The authenticated dedup key.
    pub dedup_key: String,
    /// The scheme that verified it.
    pub scheme: String,
    /// The provider's delivery id, where the scheme carries one.
    pub delivery_id: Option<String>,
    /// The event type, where the scheme carries one.
    pub event_type: Option<String>,
    /// The signed timestamp, where the scheme has one.
    pub signed_at: Option<SystemTime>,
    /// When the gate accepted it.
    pub received_at: SystemTime,
    /// Where it is in its life.
    pub status: Status,
    /// Attempts started so far (an attempt cut short by a crash counts).
    pub attempts: u32,
    /// For `received`, `queued` and `failed`: when it may next be attempted.
    pub next_attempt_at: Option<SystemTime>,
    /// For `processing`: when the lease ends unless renewed.
    pub lease_until: Option<SystemTime>,
    /// When the last attempt started.
    pub started_at: Option<SystemTime>,
    /// When the last attempt ended.
    pub finished_at: Option<SystemTime>,
    /// How long the last attempt took.
    pub processing_duration: Option<Duration>,
    /// The last attempt's error, if it failed.
    pub last_error: Option<String>,
    /// For dead letters: when it died.
    pub dead_at: Option<SystemTime>,
    /// Whether it is flagged as a test delivery.
    pub is_test: bool,
    /// The body's size in bytes.
    pub body_len: u64,
}

impl LogEntry {
    /// An entry for a store to fill: `received` now, no attempt yet. Stores read their
    /// rows into it; tests of code that shows entries build them with it.
    ///
    /// ```
    /// use hookgate_queue::event_log::{EventId, LogEntry, Status};
    ///
    /// let mut entry = LogEntry::new(EventId::new(7), "stripe", "stripe:id:evt_1");
    /// entry.status = Status::Dead;
    /// assert_eq!(entry.attempts, 0);
    /// ```
    pub fn new(id: EventId, scheme: impl Into<String>, dedup_key: impl Into<String>) -> Self {
        LogEntry {
            id,
            dedup_key: dedup_key.into(),
            scheme: scheme.into(),
            delivery_id: None,
            event_type: None,
            signed_at: None,
            received_at: SystemTime::now(),
            status: Status::Received,
            attempts: 0,
            next_attempt_at: None,
            lease_until: None,
            started_at: None,
            finished_at: None,
            processing_duration: None,
            last_error: None,
            dead_at: None,
            is_test: false,
            body_len: 0,
        }
    }

    /// Sets `next_attempt_at` or `lease_until` from the store's one due time, which is the
    /// lease's end while the event is `processing` and the next attempt's time otherwise.
    pub fn set_due_at(&mut self, due_at: Option<SystemTime>) {
        if self.status == Status::Processing {
            (self.next_attempt_at, self.lease_until) = (None, due_at);
        } else {
            (self.next_attempt_at, self.lease_until) = (due_at, None);
        }
    }
}

/// How many events are in each status.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// Stored, not attempted yet.
    pub received: u64,
    /// Back in the queue after a release or a replay.
    pub queued: u64,
    /// Leased by a worker.
    pub processing: u64,
    /// Done (until pruned).
    pub processed: u64,
    /// Waiting for a retry.
    pub failed: u64,
    /// Dead letters.
    pub dead: u64,
    /// Taken by no destination.
    pub filtered: u64,
}

impl StatusCounts {
    /// The count for `status`.
    pub fn get(&self, status: Status) -> u64 {
        match status {
            Status::Received => self.received,
            Status::Queued => self.queued,
            Status::Processing => self.processing,
            Status::Processed => self.processed,
            Status::Failed => self.failed,
            Status::Dead => self.dead,
            Status::Filtered => self.filtered,
        }
    }

    /// Sets the count for `status`.
    pub fn set(&mut self, status: Status, count: u64) {
        let slot = match status {
            Status::Received => &mut self.received,
            Status::Queued => &mut self.queued,
            Status::Processing => &mut self.processing,
            Status::Processed => &mut self.processed,
            Status::Failed => &mut self.failed,
            Status::Dead => &mut self.dead,
            Status::Filtered => &mut self.filtered,
        };
        *slot = count;
    }

    /// Events not finished yet (received, queued, processing or failed): the queue depth.
    pub fn pending(&self) -> u64 {
        self.received
            .saturating_add(self.queued)
            .saturating_add(self.processing)
            .saturating_add(self.failed)
    }

    /// All events held.
    pub fn total(&self) -> u64 {
        self.pending()
            .saturating_add(self.processed)
            .saturating_add(self.dead)
            .saturating_add(self.filtered)
    }
}

/// One attempt at processing an event.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Its number, from 1 (restarting after a replay).
    pub attempt: u32,
    /// When the attempt started.
    pub started_at: SystemTime,
    /// When its result was recorded.
    pub finished_at: SystemTime,
    /// `processed`, `retry` or `dead`.
    pub outcome: String,
    /// The error, if it failed.
    pub error: Option<String>,
}

impl Attempt {
    /// An attempt as a store read it.
    pub fn new(
        attempt: u32,
        started_at: SystemTime,
        finished_at: SystemTime,
        outcome: impl Into<String>,
        error: Option<String>,
    ) -> Self {
        Attempt {
            attempt,
            started_at,
            finished_at,
            outcome: outcome.into(),
            error,
        }
    }
}

/// What arrived with an event besides its log entry: the informational headers the scheme
/// documents (as received; secrets are never among them) and the raw body.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventContent {
    /// `(name, value)` pairs, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body, byte for byte what was verified.
    pub body: Bytes,
}

impl EventContent {
    /// Headers and body.
    pub fn new(headers: Vec<(String, String)>, body: impl Into<Bytes>) -> Self {
        EventContent {
            headers,
            body: body.into(),
        }
    }
}

/// Where a page of [`EventLog::query_by_arrival`] ended: the next page starts after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArrivalCursor {
    /// The last entry's arrival.
    pub received_at: SystemTime,
    /// The last entry's id.
    pub id: EventId,
}

impl ArrivalCursor {
    /// The cursor after `entry` (the last of a page).
    pub fn after(entry: &LogEntry) -> Self {
        ArrivalCursor {
            received_at: entry.received_at,
            id: entry.id,
        }
    }

    /// The cursor as text for a link, `MILLIS.ID` (Unix milliseconds and the id), with a
    /// third part `.MICROS` (0–999) for an arrival with a sub-millisecond part;
    /// [`parse`](Self::parse) reads it back.
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use hookgate_queue::event_log::{ArrivalCursor, EventId};
    ///
    /// let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
    /// let cursor = ArrivalCursor { received_at: at, id: EventId::new(42) };
    /// assert_eq!(cursor.to_text(), "1700000000123.42.456");
    /// assert_eq!(ArrivalCursor::parse("1700000000123.42.456"), Some(cursor));
    /// ```
    pub fn to_text(&self) -> String {
        let micros = unix_micros(self.received_at);
        let (millis, sub) = (micros.div_euclid(1000), micros.rem_euclid(1000));
        if sub == 0 {
            format!("{millis}.{}", self.id.get())
        } else {
            format!("{millis}.{}.{sub}", self.id.get())
        }
    }

    /// Reads [`to_text`](Self::to_text)'s form.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('.');
        let millis: i64 = parts.next()?.parse().ok()?;
        let id: i64 = parts.next()?.parse().ok()?;
        let sub: i64 = match parts.next() {
            Some(sub) => sub.parse().ok().filter(|s| (0..1000).contains(s))?,
            None => 0,
        };
        if parts.next().is_some() {
            return None;
        }
        let micros = millis.checked_mul(1000)?.checked_add(sub)?;
        Some(ArrivalCursor {
            received_at: from_unix_micros(micros)?,
            id: EventId::new(id),
        })
    }
}

/// The counts of one minute.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinuteActivity {
    /// The start of the minute.
    pub minute: SystemTime,
    /// Events the gate stored in this minute (test deliveries included).
    pub received: u64,
    /// Events now `processed` whose last attempt finished in this minute.
    pub processed: u64,
    /// Events now `failed` (waiting for a retry) or `dead` whose last attempt failed in
    /// this minute.
    pub failed: u64,
}

/// Which count of a [`MinuteActivity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivitySeries {
    /// [`MinuteActivity::received`].
    Received,
    /// [`MinuteActivity::processed`].
    Processed,
    /// [`MinuteActivity::failed`].
    Failed,
}

/// The minutes of an activity range, every count zero, for a store to fill from its
/// per-minute counts: one slot per minute from the minute holding `since` up to the one
/// holding `until`.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use hookgate_queue::event_log::{ActivityFrame, ActivitySeries};
///
/// let since = SystemTime::UNIX_EPOCH + Duration::from_secs(600);
/// let mut frame = ActivityFrame::new(since, since + Duration::from_secs(150))?;
/// assert_eq!(frame.first_minute(), 10);
/// frame.add(11, ActivitySeries::Received, 3);
/// frame.add(99, ActivitySeries::Received, 1); // outside: ignored
/// let minutes = frame.into_minutes();
/// assert_eq!(minutes.iter().map(|m| m.received).collect::<Vec<_>>(), [0, 3, 0]);
/// # Ok::<(), hookgate_queue::event_log::LogError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ActivityFrame {
    first: i64,
    end_ms: i64,
    minutes: Vec<MinuteActivity>,
}

impl ActivityFrame {
    /// The frame of `since..until`.
    ///
    /// # Errors
    /// [`LogError::Invalid`] when `until` is before `since` or the range is longer than
    /// [`MAX_ACTIVITY_RANGE`].
    pub fn new(since: SystemTime, until: SystemTime) -> Result<Self, LogError> {
        let range = until
            .duration_since(since)
            .map_err(|_| LogError::Invalid("an activity range must end after it starts".into()))?;
        if range > MAX_ACTIVITY_RANGE {
            return Err(LogError::Invalid(format!(
                "an activity range may span at most {} days",
                MAX_ACTIVITY_RANGE.as_secs() / 86_400
            )));
        }
        let first = unix_millis(since).div_euclid(MINUTE_MS);
        let end_ms = unix_millis(until);
        let last = end_ms.div_euclid(MINUTE_MS);
        let minutes = (first..=last)
            .map(|minute| MinuteActivity {
                minute: from_unix_micros(minute.saturating_mul(MINUTE_MS).saturating_mul(1000))
                    .unwrap_or(UNIX_EPOCH),
                received: 0,
                processed: 0,
                failed: 0,
            })
            .collect();
        Ok(ActivityFrame {
            first,
            end_ms,
            minutes,
        })
    }

    /// The first minute, in minutes since the Unix epoch.
    pub fn first_minute(&self) -> i64 {
        self.first
    }

    /// The start of the first minute: the lower bound to count from.
    pub fn start(&self) -> SystemTime {
        from_unix_micros(self.start_millis().saturating_mul(1000)).unwrap_or(UNIX_EPOCH)
    }

    /// The start of the first minute, in Unix milliseconds: the lower bound to count from.
    pub fn start_millis(&self) -> i64 {
        self.first.saturating_mul(MINUTE_MS)
    }

    /// `until`, in Unix milliseconds: the upper bound (excluded) to count to.
    pub fn end_millis(&self) -> i64 {
        self.end_ms
    }

    /// Adds `count` to `series` of `minute` (minutes since the Unix epoch); a minute
    /// outside the frame is ignored.
    pub fn add(&mut self, minute: i64, series: ActivitySeries, count: u64) {
        let slot = usize::try_from(minute.saturating_sub(self.first))
            .ok()
            .and_then(|i| self.minutes.get_mut(i));
        if let Some(slot) = slot {
            let value = match series {
                ActivitySeries::Received => &mut slot.received,
                ActivitySeries::Processed => &mut slot.processed,
                ActivitySeries::Failed => &mut slot.failed,
            };
            *value = value.saturating_add(count);
        }
    }

    /// The minutes, oldest first.
    pub fn into_minutes(self) -> Vec<MinuteActivity> {
        self.minutes
    }
}

/// One recorded provider URL handshake: when, which scheme, which handshake, which key
/// verified it. A handshake is never an event; stores keep them apart.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeRecord {
    /// When the gate received it.
    pub received_at: SystemTime,
    /// The scheme that answered it (`slack`, `meta`, …).
    pub scheme: String,
    /// Which handshake ([`HandshakeKind::as_str`](hookgate::HandshakeKind::as_str)), e.g.
    /// `slack_url_verification`.
    pub kind: String,
    /// The id of the key that verified it; `None` for Meta's `GET`.
    pub key_id: Option<String>,
}

impl HandshakeRecord {
    /// A record as a store read it.
    pub fn new(
        received_at: SystemTime,
        scheme: impl Into<String>,
        kind: impl Into<String>,
        key_id: Option<String>,
    ) -> Self {
        HandshakeRecord {
            received_at,
            scheme: scheme.into(),
            kind: kind.into(),
            key_id,
        }
    }
}

/// One delivery of an event to one of its endpoint's destinations (issue 21), as the
/// event log shows it ([`EventLog::deliveries`]).
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The event.
    pub event_id: EventId,
    /// The destination's name.
    pub destination: String,
    /// The lane key, for an ordered destination whose event has one.
    pub lane: Option<String>,
    /// Where the delivery is in its life (`received`, `queued`, `processing`, `failed`,
    /// `processed` or `dead`).
    pub status: Status,
    /// Attempts started so far.
    pub attempts: u32,
    /// For a waiting delivery, when it may next be attempted; for one in flight, when its
    /// lease ends.
    pub due_at: Option<SystemTime>,
    /// When the last attempt ended.
    pub finished_at: Option<SystemTime>,
    /// The last attempt's error (for a dead letter: why it died).
    pub last_error: Option<String>,
}

impl Delivery {
    /// A delivery for a store to fill: `received`, no attempt yet.
    pub fn new(event_id: EventId, destination: impl Into<String>) -> Self {
        Delivery {
            event_id,
            destination: destination.into(),
            lane: None,
            status: Status::Received,
            attempts: 0,
            due_at: None,
            finished_at: None,
            last_error: None,
        }
    }
}

/// Deliveries per destination and status: `(destination, status, count)`
/// ([`EventLog::delivery_counts`]).
pub type DeliveryCounts = Vec<(String, Status, u64)>;

/// Which dead letters [`EventLog::replay_dead_letters`] puts back in the queue.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// Every dead letter.
    All,
    /// One event, if it is dead.
    Id(EventId),
    /// These events, those that are dead.
    Ids(Vec<EventId>),
    /// Every dead letter of this event type.
    EventType(String),
}

/// Why the event log could not answer.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The question was out of range (a limit, a time range); the message says which.
    #[error("{0}")]
    Invalid(String),
    /// The store failed (unreachable, I/O, a corrupt row).
    #[error(transparent)]
    Store(Box<dyn std::error::Error + Send + Sync>),
}

impl LogError {
    /// A store's error.
    pub fn store(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        LogError::Store(Box::new(error))
    }
}

/// The event log of a store, whichever it is: what `hookgate inbox` and the web console
/// read. Implemented by `hookgate_inbox::Inbox` and `hookgate_postgres::PgStore`, whose
/// inherent methods of the same names return their own error types.
pub trait EventLog: Send + Sync {
    /// The events matching `query`, newest first (by id), paged with
    /// [`LogQuery::before_id`].
    fn query(&self, query: LogQuery) -> BoxFuture<'_, Result<Vec<LogEntry>, LogError>>;

    /// The events matching `query`, newest arrival first (ties by newest id), starting
    /// after `after`: for time windows, where the arrival index gives the order and a page
    /// reads only its own rows.
    fn query_by_arrival(
        &self,
        query: LogQuery,
        after: Option<ArrivalCursor>,
    ) -> BoxFuture<'_, Result<Vec<LogEntry>, LogError>>;

    /// The log entry of one event.
    fn entry(&self, id: EventId) -> BoxFuture<'_, Result<Option<LogEntry>, LogError>>;

    /// The attempt history of one event, oldest first.
    fn attempts(&self, id: EventId) -> BoxFuture<'_, Result<Vec<Attempt>, LogError>>;

    /// The headers and body of one event.
    fn content(&self, id: EventId) -> BoxFuture<'_, Result<Option<EventContent>, LogError>>;

    /// How many events are in each status (test deliveries included).
    fn status_counts(&self) -> BoxFuture<'_, Result<StatusCounts, LogError>>;

    /// Received, processed and failed per minute of `since..until` (see
    /// [`ActivityFrame`]), oldest first, minutes without events included. `processed` and
    /// `failed` count events by their current status and the end of their last attempt.
    fn activity_per_minute(
        &self,
        since: SystemTime,
        until: SystemTime,
    ) -> BoxFuture<'_, Result<Vec<MinuteActivity>, LogError>>;

    /// Puts dead letters back in the queue (attempts counted from zero again, the history
    /// kept); returns how many. Events that are not dead are left alone.
    fn replay_dead_letters(&self, which: Replay) -> BoxFuture<'_, Result<u64, LogError>>;

    /// The most recent provider URL handshakes, newest first, at most `limit`.
    fn handshakes(&self, limit: usize) -> BoxFuture<'_, Result<Vec<HandshakeRecord>, LogError>>;

    /// The deliveries of event `id`, one per destination its routing picked, in the order
    /// of the endpoint's destinations (none for a store without destinations, or a
    /// `filtered` event).
    fn deliveries(&self, id: EventId) -> BoxFuture<'_, Result<Vec<Delivery>, LogError>>;

    /// Deliveries per destination and status, by destination then status (empty for a
    /// store without destinations).
    fn delivery_counts(&self) -> BoxFuture<'_, Result<DeliveryCounts, LogError>>;

    /// Each ordered destination's lane backlog: `(destination, count)` of deliveries with
    /// a lane key that have not ended (waiting, retrying or running), over the whole
    /// store, for `/metrics`; destinations with none are absent. A worker sees only the
    /// lane heads it holds, so this is counted in the store.
    fn lane_backlog(&self) -> BoxFuture<'_, Result<Vec<(String, u64)>, LogError>>;

    /// Puts dead deliveries of `destination` back in the queue (due now, attempts from
    /// zero, at the tail of their lanes), selected by event as `which` says; the events'
    /// deliveries to other destinations are left alone. Returns how many.
    fn replay_destination<'a>(
        &'a self,
        destination: &'a str,
        which: Replay,
    ) -> BoxFuture<'a, Result<u64, LogError>>;

    /// Pauses deliveries to `destination` in the store: every worker on it, in any
    /// process, stops starting them within its poll interval, while the receiver keeps
    /// storing events. `false` if it was paused already.
    fn pause_destination<'a>(
        &'a self,
        destination: &'a str,
    ) -> BoxFuture<'a, Result<bool, LogError>>;

    /// Resumes deliveries to `destination`. `false` if it was not paused.
    fn resume_destination<'a>(
        &'a self,
        destination: &'a str,
    ) -> BoxFuture<'a, Result<bool, LogError>>;

    /// The paused destinations, by name.
    fn paused_destinations(&self) -> BoxFuture<'_, Result<Vec<String>, LogError>>;

    /// Dead letters, newest first, optionally of one event type (test deliveries
    /// included).
    fn dead_letters<'a>(
        &'a self,
        event_type: Option<&'a str>,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<LogEntry>, LogError>> {
        self.query(LogQuery::dead_letters(event_type, limit))
    }
}

impl<T: EventLog + ?Sized> EventLog for std::sync::Arc<T> {
    fn query(&self, query: LogQuery) -> BoxFuture<'_, Result<Vec<LogEntry>, LogError>> {
        (**self).query(query)
    }

    fn query_by_arrival(
        &self,
        query: LogQuery,
        after: Option<ArrivalCursor>,
    ) -> BoxFuture<'_, Result<Vec<LogEntry>, LogError>> {
        (**self).query_by_arrival(query, after)
    }

    fn entry(&self, id: EventId) -> BoxFuture<'_, Result<Option<LogEntry>, LogError>> {
        (**self).entry(id)
    }

    fn attempts(&self, id: EventId) -> BoxFuture<'_, Result<Vec<Attempt>, LogError>> {
        (**self).attempts(id)
    }

    fn content(&self, id: EventId) -> BoxFuture<'_, Result<Option<EventContent>, LogError>> {
        (**self).content(id)
    }

    fn status_counts(&self) -> BoxFuture<'_, Result<StatusCounts, LogError>> {
        (**self).status_counts()
    }

    fn activity_per_minute(
        &self,
        since: SystemTime,
        until: SystemTime,
    ) -> BoxFuture<'_, Result<Vec<MinuteActivity>, LogError>> {
        (**self).activity_per_minute(since, until)
    }

    fn replay_dead_letters(&self, which: Replay) -> BoxFuture<'_, Result<u64, LogError>> {
        (**self).replay_dead_letters(which)
    }

    fn handshakes(&self, limit: usize) -> BoxFuture<'_, Result<Vec<HandshakeRecord>, LogError>> {
        (**self).handshakes(limit)
    }

    fn deliveries(&self, id: EventId) -> BoxFuture<'_, Result<Vec<Delivery>, LogError>> {
        (**self).deliveries(id)
    }

    fn delivery_counts(&self) -> BoxFuture<'_, Result<DeliveryCounts, LogError>> {
        (**self).delivery_counts()
    }

    fn lane_backlog(&self) -> BoxFuture<'_, Result<Vec<(String, u64)>, LogError>> {
        (**self).lane_backlog()
    }

    fn replay_destination<'a>(
        &'a self,
        destination: &'a str,
        which: Replay,
    ) -> BoxFuture<'a, Result<u64, LogError>> {
        (**self).replay_destination(destination, which)
    }

    fn pause_destination<'a>(
        &'a self,
        destination: &'a str,
    ) -> BoxFuture<'a, Result<bool, LogError>> {
        (**self).pause_destination(destination)
    }

    fn resume_destination<'a>(
        &'a self,
        destination: &'a str,
    ) -> BoxFuture<'a, Result<bool, LogError>> {
        (**self).resume_destination(destination)
    }

    fn paused_destinations(&self) -> BoxFuture<'_, Result<Vec<String>, LogError>> {
        (**self).paused_destinations()
    }
}

/// Microseconds since the Unix epoch; instants before it are negative (saturating).
fn unix_micros(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_micros())
            .map(i64::saturating_neg)
            .unwrap_or(i64::MIN),
    }
}

fn unix_millis(at: SystemTime) -> i64 {
    unix_micros(at).div_euclid(1000)
}

fn from_unix_micros(micros: i64) -> Option<SystemTime> {
    let magnitude = Duration::from_micros(micros.unsigned_abs());
    if micros >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::arithmetic_side_effects)]

    use super::*;

    #[test]
    fn statuses_round_trip() {
        for status in Status::ALL {
            assert_eq!(status.as_str().parse::<Status>(), Ok(status));
        }
        assert_eq!(
            "done".parse::<Status>(),
            Err(UnknownStatus("done".to_owned()))
        );
        assert!(Status::Failed.waits() && !Status::Dead.waits());
    }

    #[test]
    fn the_filter_checks_the_limit_and_reads_the_test_choice() {
        assert!(LogQuery::new().limit(0).filter().is_err());
        assert!(LogQuery::new().limit(MAX_LOG_LIMIT + 1).filter().is_err());
        let query = LogQuery::new().status(Status::Dead).status(Status::Dead);
        let filter = query.filter().unwrap();
        assert!(filter.dead_only());
        assert_eq!(filter.limit, DEFAULT_LOG_LIMIT);
        assert_eq!(filter.tests, TestDeliveries::Excluded);
        let query = LogQuery::new().include_test(true);
        assert_eq!(query.filter().unwrap().tests, TestDeliveries::Included);
        let query = LogQuery::new().include_test(true).only_test();
        assert_eq!(query.filter().unwrap().tests, TestDeliveries::Only);
    }

    #[test]
    fn cursors_round_trip_to_the_microsecond() {
        for micros in [0_i64, 1_700_000_000_000_000, 1_700_000_000_000_001, -1_500] {
            let cursor = ArrivalCursor {
                received_at: from_unix_micros(micros).unwrap(),
                id: EventId::new(9),
            };
            assert_eq!(ArrivalCursor::parse(&cursor.to_text()), Some(cursor));
        }
        // The form without microseconds, as earlier links have it.
        let cursor = ArrivalCursor::parse("1700000000123.5").unwrap();
        assert_eq!(unix_micros(cursor.received_at), 1_700_000_000_123_000);
        for bad in ["x.1", "1", "1.2.1000", "1.2.3.4", "1.2.-1", ""] {
            assert_eq!(ArrivalCursor::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn counts_and_entries() {
        let mut counts = StatusCounts::default();
        counts.set(Status::Dead, 2);
        counts.set(Status::Failed, 1);
        counts.set(Status::Processed, 4);
        assert_eq!((counts.get(Status::Dead), counts.pending()), (2, 1));
        assert_eq!(counts.total(), 7);
        let mut entry = LogEntry::new(EventId::new(1), "s", "k");
        let at = Some(UNIX_EPOCH);
        entry.set_due_at(at);
        assert_eq!((entry.next_attempt_at, entry.lease_until), (at, None));
        entry.status = Status::Processing;
        entry.set_due_at(at);
        assert_eq!((entry.next_attempt_at, entry.lease_until), (None, at));
    }

    #[test]
    fn activity_frames_check_their_range() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert!(ActivityFrame::new(now, now - Duration::from_secs(1)).is_err());
        assert!(
            ActivityFrame::new(now - MAX_ACTIVITY_RANGE - Duration::from_secs(60), now).is_err()
        );
        let frame = ActivityFrame::new(now - Duration::from_secs(3 * 3600), now).unwrap();
        let minutes = frame.into_minutes();
        assert!((180..=181).contains(&minutes.len()));
        assert!(minutes.windows(2).all(|w| {
            w[1].minute.duration_since(w[0].minute).unwrap() == Duration::from_secs(60)
        }));
    }
}
