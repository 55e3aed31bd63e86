//! Ordered lanes: deliveries with the same key run one at a time, in the order received.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::hash::Hash;
use std::str::FromStr;
use std::sync::Arc;

use serde_json::Value;

use super::filter::{EventView, Prepared, check_header_name, check_pointer};

/// Where an event's lane key comes from: `order_key = "/data/object/customer"` (a JSON
/// Pointer into the body) or `order_key = "header:X-Shop-Id"` (a header kept with the event).
///
/// An event whose body has no value at the pointer (or a JSON `null`, or is not JSON), or
/// that lacks the header, has **no lane key and runs unordered**, as without `order_key`.
/// Putting all such events in one default lane would serialise unrelated events behind
/// each other and behind any failing one of them, while they carry nothing to order by.
///
/// ```
/// use hookgate_queue::{EventView, OrderKey};
///
/// let key: OrderKey = "/data/object/customer".parse().unwrap();
/// let event = EventView::new(None, &[], br#"{"data":{"object":{"customer":"cus_1"}}}"#);
/// assert_eq!(key.lane_of(event).unwrap().as_str(), "cus_1");
/// assert!(key.lane_of(EventView::new(None, &[], b"{}")).is_none());
///
/// let by_header: OrderKey = "header:X-Shop-Id".parse().unwrap();
/// let headers = vec![("x-shop-id".to_owned(), "42".to_owned())];
/// assert_eq!(by_header.lane_of(EventView::new(None, &headers, b"")).unwrap().as_str(), "42");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderKey {
    source: KeySource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum KeySource {
    Pointer(String),
    Header(String),
}

impl FromStr for OrderKey {
    type Err = String;

    /// `/a/b` (a JSON Pointer) or `header:NAME`.
    fn from_str(text: &str) -> Result<Self, String> {
        if let Some(name) = text.strip_prefix("header:") {
            let name = name.trim();
            check_header_name(name)?;
            return Ok(OrderKey {
                source: KeySource::Header(name.to_ascii_lowercase()),
            });
        }
        check_pointer(text)
            .map_err(|problem| format!("{problem}; or write header:NAME to order by a header"))?;
        Ok(OrderKey {
            source: KeySource::Pointer(text.to_owned()),
        })
    }
}

impl OrderKey {
    /// The lane key of one event, or `None` when it has none (it then runs unordered).
    pub fn lane_of(&self, event: EventView<'_>) -> Option<LaneKey> {
        self.lane_of_prepared(&Prepared::new(event))
    }

    /// Whether the key is read from the body (which then has to be parsed).
    pub(crate) fn reads_body(&self) -> bool {
        matches!(self.source, KeySource::Pointer(_))
    }

    pub(crate) fn lane_of_prepared(&self, event: &Prepared<'_>) -> Option<LaneKey> {
        match &self.source {
            KeySource::Header(name) => event.view.header(name).next().map(LaneKey::new),
            KeySource::Pointer(pointer) => match event.json()?.pointer(pointer)? {
                Value::Null => None,
                Value::String(text) => Some(LaneKey::new(text)),
                // Numbers, booleans, arrays and objects by their JSON text (serde_json sorts
                // object keys, so equal objects give equal keys).
                other => Some(LaneKey::new(&other.to_string())),
            },
        }
    }
}

/// The value that names a lane, such as a customer id. Strings are taken as they are, other
/// JSON values by their JSON text (so `"42"` and `42` share a lane, which at worst orders
/// two things that did not need it). It is event data: log it, but never use it as a metric
/// label.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LaneKey(Arc<str>);

impl LaneKey {
    /// A lane key from its text.
    pub fn new(text: &str) -> Self {
        LaneKey(Arc::from(text))
    }

    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LaneKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for LaneKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a delivery handed out by [`LaneScheduler::next_ready`] ended, as far as its lane
/// is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LaneOutcome {
    /// Delivered: the next delivery of the lane may run.
    Delivered,
    /// Failed and will be retried: it stays at the head and keeps its lane blocked until
    /// [`LaneScheduler::retry_due`] says it is due again.
    Retrying,
    /// Gave up (dead letter): the lane is released to the next delivery.
    DeadLettered,
    /// Not attempted after all (a later check such as the rate limit said wait, or the
    /// worker is shutting down): it goes back to being ready, at its place.
    NotAttempted,
}

/// What [`LaneScheduler::finish`] did, for the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LaneRelease {
    /// The delivery was not one the scheduler had handed out; nothing changed.
    Unknown,
    /// The delivery keeps its place (retrying, or not attempted).
    Held,
    /// The delivery left the scheduler; its lane (if it had one) moves on.
    Left {
        /// The delivery's lane, `None` for an unordered delivery.
        lane: Option<LaneKey>,
        /// Whether it left as a dead letter: the log should say that the lane was
        /// released by a dead letter and later deliveries of the key went on without it.
        released_by_dead_letter: bool,
    },
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting behind the head of its lane.
    Queued,
    /// Can be handed out.
    Ready,
    /// Handed out, not finished.
    InFlight,
    /// Failed, waiting for its retry; blocks its lane.
    Retrying,
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    lane: Option<LaneKey>,
    state: State,
}

/// Hands out one destination's deliveries so that at most one per lane key is in flight,
/// in the order received, while different keys (and deliveries without a key) run in
/// parallel.
///
/// Deliveries are identified by the caller's id `D` (a delivery row id, a stream entry id)
/// and must be [`push`](Self::push)ed in the order the events were received. A delivery
/// handed out by [`next_ready`](Self::next_ready) is finished with a [`LaneOutcome`]: a
/// retrying head keeps its lane blocked (it is handed out again once
/// [`retry_due`](Self::retry_due) says so); a dead letter releases the lane, and the returned
/// [`LaneRelease`] says so for the log. [`backlog`](Self::backlog) is the gauge of
/// deliveries the scheduler holds. It keeps no time: when a retry is due is the queue's
/// business.
///
/// ```
/// use hookgate_queue::{LaneKey, LaneOutcome, LaneScheduler};
///
/// let mut lanes = LaneScheduler::new();
/// let cus_1 = Some(LaneKey::new("cus_1"));
/// lanes.push(1, cus_1.clone());
/// lanes.push(2, Some(LaneKey::new("cus_2")));
/// lanes.push(3, cus_1);
///
/// // 1 and 2 run in parallel; 3 waits behind 1.
/// assert_eq!(lanes.next_ready(), Some(1));
/// assert_eq!(lanes.next_ready(), Some(2));
/// assert_eq!(lanes.next_ready(), None);
///
/// // 1 fails: it is retried before 3 may run.
/// lanes.finish(&1, LaneOutcome::Retrying);
/// assert_eq!(lanes.next_ready(), None);
/// lanes.retry_due(&1);
/// assert_eq!(lanes.next_ready(), Some(1));
/// lanes.finish(&1, LaneOutcome::Delivered);
/// assert_eq!(lanes.next_ready(), Some(3));
/// assert_eq!(lanes.backlog(), 2);
/// ```
#[derive(Debug)]
pub struct LaneScheduler<D> {
    entries: HashMap<D, Entry>,
    /// Per lane key, its deliveries in received order; the front is the head.
    lanes: HashMap<LaneKey, VecDeque<D>>,
    /// Deliveries that may be handed out, oldest first.
    ready: BTreeMap<u64, D>,
    next_seq: u64,
}

impl<D: Clone + Eq + Hash> Default for LaneScheduler<D> {
    fn default() -> Self {
        LaneScheduler::new()
    }
}

impl<D: Clone + Eq + Hash> LaneScheduler<D> {
    /// An empty scheduler.
    pub fn new() -> Self {
        LaneScheduler {
            entries: HashMap::new(),
            lanes: HashMap::new(),
            ready: BTreeMap::new(),
            next_seq: 0,
        }
    }

    /// Adds a delivery behind everything pushed before it (call in received order; after a
    /// restart, push the pending deliveries in received order). `lane` is `None` for an
    /// event without a lane key, which runs unordered. Returns `false`, changing nothing,
    /// when `id` is already held.
    pub fn push(&mut self, id: D, lane: Option<LaneKey>) -> bool {
        if self.entries.contains_key(&id) {
            return false;
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        let state = match &lane {
            None => State::Ready,
            Some(key) => {
                let queue = self.lanes.entry(key.clone()).or_default();
                queue.push_back(id.clone());
                if queue.len() == 1 {
                    State::Ready
                } else {
                    State::Queued
                }
            }
        };
        if state == State::Ready {
            self.ready.insert(seq, id.clone());
        }
        self.entries.insert(id, Entry { seq, lane, state });
        true
    }

    /// Whether [`next_ready`](Self::next_ready) would hand something out (it changes
    /// nothing, so a worker can check before taking a concurrency permit or a rate token).
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// The oldest delivery that may run now, marked in flight.
    pub fn next_ready(&mut self) -> Option<D> {
        let (_, id) = self.ready.pop_first()?;
        if let Some(entry) = self.entries.get_mut(&id) {
            entry.state = State::InFlight;
        }
        Some(id)
    }

    /// Ends a handed-out delivery's turn; see [`LaneOutcome`].
    pub fn finish(&mut self, id: &D, outcome: LaneOutcome) -> LaneRelease {
        let Some(entry) = self.entries.get_mut(id) else {
            return LaneRelease::Unknown;
        };
        if entry.state != State::InFlight {
            return LaneRelease::Unknown;
        }
        match outcome {
            LaneOutcome::Retrying => {
                entry.state = State::Retrying;
                LaneRelease::Held
            }
            LaneOutcome::NotAttempted => {
                entry.state = State::Ready;
                self.ready.insert(entry.seq, id.clone());
                LaneRelease::Held
            }
            LaneOutcome::Delivered | LaneOutcome::DeadLettered => {
                let lane = self.remove(id);
                LaneRelease::Left {
                    lane,
                    released_by_dead_letter: outcome == LaneOutcome::DeadLettered,
                }
            }
        }
    }

    /// A retrying delivery is due again: it becomes ready, still ahead of the rest of its
    /// lane. Returns `false` when `id` was not retrying.
    pub fn retry_due(&mut self, id: &D) -> bool {
        match self.entries.get_mut(id) {
            Some(entry) if entry.state == State::Retrying => {
                entry.state = State::Ready;
                self.ready.insert(entry.seq, id.clone());
                true
            }
            _ => false,
        }
    }

    /// Deliveries held: ready, waiting behind a head, in flight or retrying (the lane
    /// backlog gauge).
    pub fn backlog(&self) -> usize {
        self.entries.len()
    }

    /// Lane keys with at least one delivery held.
    pub fn lanes(&self) -> usize {
        self.lanes.len()
    }

    /// Drops a finished delivery and promotes the next of its lane.
    fn remove(&mut self, id: &D) -> Option<LaneKey> {
        let entry = self.entries.remove(id)?;
        let key = entry.lane?;
        let mut next = None;
        if let Some(queue) = self.lanes.get_mut(&key) {
            // A finished delivery is always its lane's head: only the head is ever handed
            // out. Remove by position all the same, to stay right if that ever changes.
            if let Some(at) = queue.iter().position(|d| d == id) {
                queue.remove(at);
            }
            next = queue.front().cloned();
            if queue.is_empty() {
                self.lanes.remove(&key);
            }
        }
        if let Some(next) = next {
            if let Some(entry) = self.entries.get_mut(&next) {
                if entry.state == State::Queued {
                    entry.state = State::Ready;
                    self.ready.insert(entry.seq, next);
                }
            }
        }
        Some(key)
    }
}

/// How many lane partitions an ordered destination has on a queue that keeps lanes by
/// partition (Redis streams, JetStream): its lane keys are spread over this many streams or
/// subjects by [`lane_partition`], each running one delivery at a time.
pub const LANE_PARTITIONS: u16 = 16;

/// The lane partition of lane key `key`: FNV-1a (64-bit) of its bytes, modulo
/// [`LANE_PARTITIONS`]. One definition for every backend, so a key has the same partition
/// whichever queue carries it. Fixed: changing it would move keys between partitions while
/// deliveries wait in them.
pub fn lane_partition(key: &str) -> u16 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let partition = hash.checked_rem(u64::from(LANE_PARTITIONS)).unwrap_or(0);
    u16::try_from(partition).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Option<LaneKey> {
        Some(LaneKey::new(text))
    }

    fn drain(lanes: &mut LaneScheduler<u32>) -> Vec<u32> {
        std::iter::from_fn(|| lanes.next_ready()).collect()
    }

    #[test]
    fn order_keys_parse_pointers_and_headers() {
        assert!("/data/object/customer".parse::<OrderKey>().is_ok());
        assert!("header:X-Shop-Id".parse::<OrderKey>().is_ok());
        let err = "data/customer".parse::<OrderKey>().unwrap_err();
        assert!(
            err.contains("JSON Pointer") && err.contains("header:NAME"),
            "{err}"
        );
        assert!("header:".parse::<OrderKey>().is_err());
        assert!("header:X Shop".parse::<OrderKey>().is_err());
        assert!("".parse::<OrderKey>().is_err());
    }

    #[test]
    fn lane_keys_come_from_any_json_value_but_null() {
        let key: OrderKey = "/k".parse().unwrap();
        let lane = |body: &str| key.lane_of(EventView::new(None, &[], body.as_bytes()));
        assert_eq!(lane(r#"{"k":"cus_1"}"#), key_str("cus_1"));
        assert_eq!(lane(r#"{"k":42}"#), key_str("42"));
        assert_eq!(lane(r#"{"k":true}"#), key_str("true"));
        assert_eq!(
            lane(r#"{"k":{"b":1,"a":2}}"#),
            lane(r#"{"k":{"a":2,"b":1}}"#)
        );
        assert_eq!(lane(r#"{"k":null}"#), None);
        assert_eq!(lane(r#"{}"#), None);
        assert_eq!(lane("not json"), None);
        let by_header: OrderKey = "header:X-Id".parse().unwrap();
        let hs = vec![
            ("X-ID".to_owned(), "a".to_owned()),
            ("x-id".to_owned(), "b".to_owned()),
        ];
        assert_eq!(
            by_header.lane_of(EventView::new(None, &hs, b"")),
            key_str("a")
        );
        assert_eq!(by_header.lane_of(EventView::new(None, &[], b"")), None);
    }

    fn key_str(text: &str) -> Option<LaneKey> {
        key(text)
    }

    #[test]
    fn one_in_flight_per_key_in_received_order_and_keys_in_parallel() {
        let mut lanes = LaneScheduler::new();
        for (id, k) in [(1, "a"), (2, "b"), (3, "a"), (4, "b"), (5, "a"), (6, "c")] {
            assert!(lanes.push(id, key(k)));
        }
        assert_eq!(drain(&mut lanes), [1, 2, 6]);
        assert_eq!(lanes.backlog(), 6);
        assert_eq!(lanes.lanes(), 3);
        lanes.finish(&2, LaneOutcome::Delivered);
        assert_eq!(drain(&mut lanes), [4]);
        lanes.finish(&1, LaneOutcome::Delivered);
        lanes.finish(&4, LaneOutcome::Delivered);
        assert_eq!(drain(&mut lanes), [3]);
        lanes.finish(&3, LaneOutcome::Delivered);
        assert_eq!(drain(&mut lanes), [5]);
        lanes.finish(&5, LaneOutcome::Delivered);
        lanes.finish(&6, LaneOutcome::Delivered);
        assert_eq!(lanes.backlog(), 0);
        assert_eq!(lanes.lanes(), 0);
    }

    #[test]
    fn a_retrying_head_blocks_only_its_own_lane() {
        let mut lanes = LaneScheduler::new();
        lanes.push(1, key("a"));
        lanes.push(2, key("a"));
        lanes.push(3, key("b"));
        lanes.push(4, None);
        assert_eq!(drain(&mut lanes), [1, 3, 4]);
        assert_eq!(lanes.finish(&1, LaneOutcome::Retrying), LaneRelease::Held);
        lanes.finish(&3, LaneOutcome::Delivered);
        lanes.finish(&4, LaneOutcome::Delivered);
        lanes.push(5, key("b"));
        assert_eq!(drain(&mut lanes), [5]);
        // Twice failing, then delivered: 2 only runs after it.
        assert!(lanes.retry_due(&1));
        assert!(!lanes.retry_due(&1));
        assert_eq!(drain(&mut lanes), [1]);
        lanes.finish(&1, LaneOutcome::Retrying);
        lanes.retry_due(&1);
        assert_eq!(drain(&mut lanes), [1]);
        lanes.finish(&1, LaneOutcome::Delivered);
        assert_eq!(drain(&mut lanes), [2]);
    }

    #[test]
    fn a_dead_letter_releases_its_lane_and_says_so() {
        let mut lanes = LaneScheduler::new();
        lanes.push("e1", key("a"));
        lanes.push("e2", key("a"));
        assert_eq!(lanes.next_ready(), Some("e1"));
        assert_eq!(
            lanes.finish(&"e1", LaneOutcome::DeadLettered),
            LaneRelease::Left {
                lane: key("a"),
                released_by_dead_letter: true
            }
        );
        assert_eq!(lanes.next_ready(), Some("e2"));
        assert_eq!(
            lanes.finish(&"e2", LaneOutcome::Delivered),
            LaneRelease::Left {
                lane: key("a"),
                released_by_dead_letter: false
            }
        );
    }

    #[test]
    fn not_attempted_goes_back_to_its_place() {
        let mut lanes = LaneScheduler::new();
        lanes.push(1, None);
        lanes.push(2, None);
        lanes.push(3, key("a"));
        assert_eq!(lanes.next_ready(), Some(1));
        lanes.finish(&1, LaneOutcome::NotAttempted);
        assert_eq!(drain(&mut lanes), [1, 2, 3]);
    }

    #[test]
    fn unknown_and_repeated_calls_change_nothing() {
        let mut lanes = LaneScheduler::new();
        assert!(lanes.push(1, key("a")));
        assert!(!lanes.push(1, key("b")));
        assert_eq!(
            lanes.finish(&1, LaneOutcome::Delivered),
            LaneRelease::Unknown
        );
        assert_eq!(
            lanes.finish(&9, LaneOutcome::Delivered),
            LaneRelease::Unknown
        );
        assert!(lanes.has_ready());
        assert_eq!(lanes.next_ready(), Some(1));
        assert!(!lanes.has_ready());
        assert!(matches!(
            lanes.finish(&1, LaneOutcome::Delivered),
            LaneRelease::Left { .. }
        ));
        assert_eq!(
            lanes.finish(&1, LaneOutcome::Delivered),
            LaneRelease::Unknown
        );
        assert_eq!(lanes.backlog(), 0);
    }

    #[test]
    fn per_key_order_holds_under_a_random_schedule() {
        // A deterministic pseudo-random schedule of pushes and outcomes; whatever happens,
        // each key's deliveries leave in push order and never two of a key at once.
        let mut rng = fastrand::Rng::with_seed(7);
        let mut lanes = LaneScheduler::new();
        let mut pushed: HashMap<u32, Vec<u32>> = HashMap::new();
        let mut left: HashMap<u32, Vec<u32>> = HashMap::new();
        let mut in_flight: Vec<u32> = Vec::new();
        let mut retrying: Vec<u32> = Vec::new();
        let key_of = |id: u32| id % 5;
        for id in 0..400_u32 {
            lanes.push(id, key(&key_of(id).to_string()));
            pushed.entry(key_of(id)).or_default().push(id);
            while let Some(next) = lanes.next_ready() {
                assert!(
                    !in_flight.iter().any(|&d| key_of(d) == key_of(next)),
                    "two deliveries of one key in flight"
                );
                in_flight.push(next);
            }
            if rng.bool() && !retrying.is_empty() {
                let d = retrying.swap_remove(rng.usize(..retrying.len()));
                lanes.retry_due(&d);
            }
            if !in_flight.is_empty() {
                let d = in_flight.swap_remove(rng.usize(..in_flight.len()));
                match rng.u8(..4) {
                    0 => {
                        lanes.finish(&d, LaneOutcome::Retrying);
                        retrying.push(d);
                    }
                    1 => {
                        lanes.finish(&d, LaneOutcome::NotAttempted);
                    }
                    _ => {
                        lanes.finish(&d, LaneOutcome::Delivered);
                        left.entry(key_of(d)).or_default().push(d);
                    }
                }
            }
        }
        for d in in_flight.drain(..) {
            lanes.finish(&d, LaneOutcome::Delivered);
            left.entry(key_of(d)).or_default().push(d);
        }
        loop {
            for d in retrying.drain(..) {
                lanes.retry_due(&d);
            }
            let Some(d) = lanes.next_ready() else { break };
            lanes.finish(&d, LaneOutcome::Delivered);
            left.entry(key_of(d)).or_default().push(d);
        }
        assert_eq!(lanes.backlog(), 0);
        assert_eq!(left, pushed);
    }

    #[test]
    fn lane_partitions_are_pinned() {
        // Pinned: a change would move waiting deliveries between partitions.
        assert_eq!(super::lane_partition(""), 5);
        assert!((0..100).all(|n| super::lane_partition(&format!("c{n}")) < super::LANE_PARTITIONS));
    }
}
