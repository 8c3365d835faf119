//! The Lua scripts cachegate runs in Redis, each where one step must see and change the same
//! data atomically. Every script touches the keys it is given only (one hash slot in a
//! cluster). redis-rs sends EVALSHA and loads a script on NOSCRIPT.

use std::sync::LazyLock;

use redis::Script;

/// A batch read that refuses to read more than ARGV[1] bytes: the lengths of the strings
/// under KEYS are summed first (keys of other types count 0, as MGET answers them nil), and
/// nil comes back instead of the values when they exceed the limit, so a huge batch is never
/// read into Redis's reply buffer or cachegate's memory.
pub static BOUNDED_MGET: LazyLock<Script> = LazyLock::new(|| {
    // Declared read-only (Redis 7): it runs while Redis pauses writes, and on replicas.
    Script::new(
        r"#!lua flags=no-writes
local limit = tonumber(ARGV[1])
local total = 0
for _, key in ipairs(KEYS) do
  local ok, length = pcall(redis.call, 'STRLEN', key)
  if ok then total = total + length end
  if total > limit then return false end
end
return redis.call('MGET', unpack(KEYS))
",
    )
});

/// EXPIRE only for a string: -2 when the key is absent, -3 when it holds another type (data
/// cachegate did not write and must not make expire), else EXPIRE's answer.
pub static EXPIRE_STRING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'none' then return -2 end
if kind ~= 'string' then return -3 end
return redis.call('EXPIRE', KEYS[1], ARGV[1])
",
    )
});
