//! The Lua scripts that make each multi-step queue change atomic in Redis.
//!
//! Every script that finishes an entry first checks, with `XPENDING`, that the entry is
//! still pending **for this consumer**: if another consumer took it over (this one stalled
//! past its lease), the result is dropped rather than applied twice.

use redis::Script;

/// Finishes one pending entry.
///
/// KEYS: stream, delayed set, dead-letter stream.
/// ARGV: group, entry id, consumer, action (`ack`, `retry`, `dead`, `release`),
/// delete (`1` to `XDEL` the entry), then per action:
/// - `retry`: due time (ms), delayed-set member;
/// - `dead`: envelope, attempts, error, failed-at (ms);
/// - `release`: envelope, attempts.
///
/// Returns 1 when applied, 0 when the entry is no longer this consumer's.
const FINISH: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then
  return 0
end
local action = ARGV[4]
if action == 'retry' then
  redis.call('ZADD', KEYS[2], ARGV[6], ARGV[7])
elseif action == 'dead' then
  redis.call('XADD', KEYS[3], '*', 'envelope', ARGV[6], 'attempts', ARGV[7], 'error', ARGV[8], 'failed_at_ms', ARGV[9])
elseif action == 'release' then
  redis.call('XADD', KEYS[1], '*', 'envelope', ARGV[6], 'attempts', ARGV[7])
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if ARGV[5] == '1' or action ~= 'ack' then
  redis.call('XDEL', KEYS[1], ARGV[2])
end
return 1
";

/// Resets the idle time of entries still pending for this consumer (the lease renewal),
/// without counting a delivery.
///
/// KEYS: stream. ARGV: group, consumer, entry ids… Returns how many were renewed.
const RENEW: &str = r"
local renewed = 0
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p > 0 and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    renewed = renewed + 1
  end
end
return renewed
";

/// Moves retries that came due from the delayed set back to the stream.
///
/// KEYS: delayed set, stream. ARGV: now (ms), most to move.
/// Members are `<attempts>|<old entry id>|<envelope>`. Returns how many moved.
const PROMOTE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, m in ipairs(due) do
  local attempts, envelope = string.match(m, '^(%d+)|[^|]*|(.*)$')
  if not attempts then
    attempts, envelope = '0', m
  end
  redis.call('XADD', KEYS[2], '*', 'envelope', envelope, 'attempts', attempts)
  redis.call('ZREM', KEYS[1], m)
end
return #due
";

/// Moves dead letters back to the stream as new events (attempts reset); a dead letter
/// of an ordered destination's lane partition goes back to its partition (its `source`
/// field), at the lane's tail.
///
/// KEYS: dead-letter stream, stream. ARGV: most to move. Returns how many moved.
const REPLAY: &str = r"
local dead = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', tonumber(ARGV[1]))
for _, entry in ipairs(dead) do
  local fields = entry[2]
  local envelope = nil
  local target = KEYS[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'envelope' then envelope = fields[i + 1] end
    if fields[i] == 'source' then target = fields[i + 1] end
  end
  if envelope then
    redis.call('XADD', target, '*', 'envelope', envelope)
  end
  redis.call('XDEL', KEYS[1], entry[1])
end
return #dead
";

/// Writes one event routed to an endpoint's destinations (issue 21), all or nothing: the
/// event's enqueue marker, then one entry per matching destination, or one line in the
/// filtered stream when none matched.
///
/// KEYS: enqueue marker (`<stream>:seen:<dedup key>`), filtered stream, then one
/// destination stream per copy.
/// ARGV: marker TTL (ms), max len (`0`: none), filtered stream max len, dedup key, event
/// type (empty: none), received at (ms), then one envelope per destination stream.
///
/// Returns the number of copies written, `0` for a filtered event, `-1` when the marker
/// was there already: the same event was written before (a sender's retry after a lost
/// answer) and nothing is written again.
const ENQUEUE_ROUTED: &str = r"
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then
  return -1
end
local copies = #KEYS - 2
if copies == 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'dedup_key', ARGV[4], 'event_type', ARGV[5], 'received_at_ms', ARGV[6])
  return 0
end
for i = 1, copies do
  if ARGV[2] ~= '0' then
    redis.call('XADD', KEYS[i + 2], 'MAXLEN', '~', ARGV[2], '*', 'envelope', ARGV[i + 6])
  else
    redis.call('XADD', KEYS[i + 2], '*', 'envelope', ARGV[i + 6])
  end
end
return copies
";

/// The scripts, hashed once.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) finish: Script,
    pub(crate) renew: Script,
    pub(crate) promote: Script,
    pub(crate) replay: Script,
    pub(crate) lease_partition: Script,
    pub(crate) finish_partition: Script,
    pub(crate) renew_lock: Script,
}

/// Leases the head of one lane partition of an ordered destination, if the partition is
/// free: not held by another consumer (its lock, `SET NX PX` for the lease), not waiting
/// for its head's retry time. The head is the partition's pending entry if it has one (a
/// retrying head, or one whose consumer died: taken over, its delivery counted), else
/// the next new entry. At most one entry of a partition is ever pending, so the lane runs
/// one delivery at a time, in order, across every consumer.
///
/// KEYS: partition stream, lock, retry-at. ARGV: group, consumer, lease (ms), now (ms).
/// Returns `{id, fields, deliveries}` or nil (the lock is then not held).
const LEASE_PARTITION: &str = r"
local due = redis.call('GET', KEYS[3])
if due and tonumber(due) > tonumber(ARGV[4]) then
  return false
end
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then
  return false
end
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1)
if #p > 0 then
  local id = p[1][1]
  local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id)
  if #claimed > 0 and claimed[1] then
    return {claimed[1][1], claimed[1][2], p[1][4] + 1}
  end
  -- The entry was deleted under its pending record: drop the record.
  redis.call('XACK', KEYS[1], ARGV[1], id)
end
local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', 1, 'STREAMS', KEYS[1], '>')
if r and r[1] and #r[1][2] > 0 then
  local e = r[1][2][1]
  return {e[1], e[2], 1}
end
redis.call('DEL', KEYS[2])
return false
";

/// Finishes the head of a lane partition (see [`LEASE_PARTITION`]) if it is still this
/// consumer's: `ack` deletes it, `dead` moves it to the dead letters (with its `source`
/// partition, for the replay), `retry` keeps it pending (still the lane's head) and sets
/// the partition's retry-at time, `release` keeps it pending with its delivery count
/// taken back (its attempt not counted). Every action frees the partition's lock.
///
/// KEYS: partition stream, lock, retry-at, dead-letter stream.
/// ARGV: group, entry id, consumer, action, then for `retry`: due (ms), retry-at TTL (ms);
/// for `dead`: envelope, attempts, error, failed-at (ms). Returns 1 when applied.
const FINISH_PARTITION: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)
if #p == 0 or p[1][2] ~= ARGV[3] then
  return 0
end
local action = ARGV[4]
if action == 'retry' then
  redis.call('SET', KEYS[3], ARGV[5], 'PX', ARGV[6])
elseif action == 'dead' then
  redis.call('XADD', KEYS[4], '*', 'envelope', ARGV[5], 'attempts', ARGV[6], 'error', ARGV[7], 'failed_at_ms', ARGV[8], 'source', KEYS[1])
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[1], ARGV[2])
elseif action == 'ack' then
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  redis.call('XDEL', KEYS[1], ARGV[2])
elseif action == 'release' then
  -- Given back uncounted: the next lease's take-over counts this delivery again.
  local before = math.max(tonumber(p[1][4]) - 1, 0)
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'RETRYCOUNT', before, 'JUSTID')
end
if redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('DEL', KEYS[2])
end
return 1
";

/// Extends a lane partition's lock if this consumer holds it.
///
/// KEYS: lock. ARGV: consumer, lease (ms). Returns 1 when extended.
const RENEW_LOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// The source of the routed enqueue, sent with `EVAL` so that it can share a pipeline
/// with `WAIT` (a few hundred bytes per event).
pub(crate) fn enqueue_routed_code() -> &'static str {
    ENQUEUE_ROUTED
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            finish: Script::new(FINISH),
            renew: Script::new(RENEW),
            promote: Script::new(PROMOTE),
            replay: Script::new(REPLAY),
            lease_partition: Script::new(LEASE_PARTITION),
            finish_partition: Script::new(FINISH_PARTITION),
            renew_lock: Script::new(RENEW_LOCK),
        }
    }
}
