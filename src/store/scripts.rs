//! The Lua scripts cachegate runs in Redis, each where one step must see and change the same
//! data atomically. Every script touches the keys it is given only (one hash slot in a
//! cluster). redis-rs sends EVALSHA and loads a script on NOSCRIPT.

use std::sync::{LazyLock, OnceLock};

use redis::{
    Arg, Cmd, ErrorKind, FromRedisValue, RedisError, Script, ServerErrorKind, ToRedisArgs,
};

use super::link::Link;

/// A script run by its hash (EVALSHA), sent whole (EVAL) only when Redis does not know it
/// yet. The hash is computed once, so a call builds one command and no `Script` invocation.
/// A read-only script runs with `EVALSHA_RO` (Redis 7): unlike EVALSHA it is served while
/// Redis pauses writes (`CLIENT PAUSE ... WRITE`) and on replicas.
pub struct LuaScript {
    source: &'static str,
    hash: OnceLock<String>,
    read_only: bool,
}

impl LuaScript {
    pub const fn writes(source: &'static str) -> Self {
        Self {
            source,
            hash: OnceLock::new(),
            read_only: false,
        }
    }

    pub const fn reads(source: &'static str) -> Self {
        Self {
            source,
            hash: OnceLock::new(),
            read_only: true,
        }
    }

    fn hash(&self) -> &str {
        self.hash
            .get_or_init(|| Script::new(self.source).get_hash().to_string())
    }

    /// A call of the script with `key_count` keys, to which the keys and then the arguments
    /// are added; `args` and `bytes` (how many of them, and their total length) size the
    /// command's buffers once, so that adding a value does not grow them step by step.
    pub fn call(&self, key_count: usize, args: usize, bytes: usize) -> ScriptCall<'_> {
        let by_hash = if self.read_only {
            "EVALSHA_RO"
        } else {
            "EVALSHA"
        };
        let hash = self.hash();
        // The command, the hash and the key count ahead of the arguments.
        let mut cmd = Cmd::with_capacity(3 + args, by_hash.len() + hash.len() + 8 + bytes);
        cmd.arg(by_hash).arg(hash).arg(key_count);
        ScriptCall { script: self, cmd }
    }

    pub async fn invoke<T: FromRedisValue, K: ToRedisArgs>(
        &self,
        link: &mut Link,
        keys: &[K],
        args: &[&[u8]],
    ) -> Result<T, RedisError> {
        let mut call = self.call(keys.len(), keys.len() + args.len(), 0);
        call.arg(keys).arg(args);
        call.invoke(link).await
    }
}

/// One call of a script, built once: `EVALSHA hash numkeys key... arg...`.
pub struct ScriptCall<'a> {
    script: &'a LuaScript,
    cmd: Cmd,
}

impl ScriptCall<'_> {
    /// Adds a key (the first `key_count` added) or an argument.
    pub fn arg(&mut self, arg: impl ToRedisArgs) -> &mut Self {
        self.cmd.arg(arg);
        self
    }

    pub async fn invoke<T: FromRedisValue>(&self, link: &mut Link) -> Result<T, RedisError> {
        match link.query(&self.cmd).await {
            Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                link.query(&self.with_source()).await
            }
            other => other,
        }
    }

    /// The same call with the whole script (EVAL) instead of its hash, for a Redis that does
    /// not know the script yet.
    fn with_source(&self) -> Cmd {
        let whole = if self.script.read_only {
            "EVAL_RO"
        } else {
            "EVAL"
        };
        let mut cmd = redis::cmd(whole);
        cmd.arg(self.script.source);
        // Everything after the command and the hash: the key count, the keys, the arguments.
        for arg in self.cmd.args_iter().skip(2) {
            if let Arg::Simple(bytes) = arg {
                cmd.arg(bytes);
            }
        }
        cmd
    }
}

/// A batch read that refuses to read more than ARGV[1] bytes: the lengths of the strings
/// under KEYS are summed first (keys of other types count 0, as MGET answers them nil), and
/// nil comes back instead of the values when they exceed the limit, so a huge batch is never
/// read into Redis's reply buffer or cachegate's memory.
pub static BOUNDED_MGET: LuaScript = LuaScript::reads(
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
);

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

/// Compare-and-set: writes ARGV[3] with EX ARGV[4] only if the key still holds exactly what
/// the caller read: ARGV[2] when ARGV[1] is `1`, nothing when it is `0`. 1 written, 0 not.
/// A write cancels the key's lease (KEYS[2]) and wakes its waiters (ARGV[5]: the publish
/// command), as every write does (see `leases.rs`).
///
/// Why this design (issue 13): Redis 7.0 has neither `SET IFEQ` nor `DIGEST`, and WATCH/MULTI
/// cannot be used on shared multiplexed connections. So a conditional write reads the value
/// (the caller evaluates the ETags), then this script writes only if the bytes are unchanged:
/// one extra round trip, paid by conditional writes alone, with no extra key and the value
/// still plain JSON. Comparing the bytes rather than a digest needs no hash in Lua and leaves
/// no collision to argue about; the price is sending the old value back (at most
/// CACHE_MAX_VALUE_BYTES). The key is the script's only key: one hash slot in a cluster.
pub static SET_IF_UNCHANGED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = redis.call('GET', KEYS[1])
if ARGV[1] == '1' then
  if current ~= ARGV[2] then return 0 end
elseif current then
  return 0
end
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
if redis.call('DEL', KEYS[2]) == 1 then redis.call(ARGV[5], KEYS[2], 'cancelled') end
return 1
",
    )
});

/// Deletes the key only if it still holds exactly ARGV[1], cancelling its lease (KEYS[2];
/// ARGV[2]: the publish command). 1 deleted, 0 not.
pub static DELETE_IF_UNCHANGED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('DEL', KEYS[2]) == 1 then redis.call(ARGV[2], KEYS[2], 'cancelled') end
return redis.call('UNLINK', KEYS[1])
",
    )
});
