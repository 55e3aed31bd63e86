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

/// Moves dead letters back to the stream as new events (attempts reset).
///
/// KEYS: dead-letter stream, stream. ARGV: most to move. Returns how many moved.
const REPLAY: &str = r"
local dead = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', tonumber(ARGV[1]))
for _, entry in ipairs(dead) do
  local fields = entry[2]
  local envelope = nil
  for i = 1, #fields, 2 do
    if fields[i] == 'envelope' then envelope = fields[i + 1] end
  end
  if envelope then
    redis.call('XADD', KEYS[2], '*', 'envelope', envelope)
  end
  redis.call('XDEL', KEYS[1], entry[1])
end
return #dead
";

/// The scripts, hashed once.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) finish: Script,
    pub(crate) renew: Script,
    pub(crate) promote: Script,
    pub(crate) replay: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            finish: Script::new(FINISH),
            renew: Script::new(RENEW),
            promote: Script::new(PROMOTE),
            replay: Script::new(REPLAY),
        }
    }
}
