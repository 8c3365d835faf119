//! Tag indexes (issue 14): which keys were written with a tag, so that one call deletes them.
//!
//! Design: one sorted set per tag and keyspace (`names::for_keyspace("tag", prefix, tag)`),
//! member = the key's Redis name, score = the key's expiry time in Redis's clock (unix ms).
//! Every tagged write adds its member, trims the members whose score is past
//! (`ZREMRANGEBYSCORE -inf (now`) and raises the index's own TTL to at least the new member's,
//! so an entry never outlives its key by more than the next tagged write of that tag, and an
//! index whose keys have all expired expires itself: the index never grows without bound
//! (10,000 keys with ttl=1, one more write 2 s later: one entry). A set per tag rather than a
//! set of tags per key: invalidation needs "keys of a tag", and a per-key record would cost a
//! key per write and a SCAN to invalidate.
//!
//! - Standalone and Sentinel: a tagged PUT is ONE script (SET + per tag ZADD, trim, PEXPIRE):
//!   one round trip, and value and entries change together.
//! - Cluster: the key and its indexes lie in different slots, so the value is written first,
//!   then the entries (one script per index, concurrently), before the answer: one round
//!   trip more, and a failure between the two answers 5xx with the value written but untracked.
//! - Batch set, and compare-and-set PUTs: values first (as without tags), then the entries.
//!
//! Invalidation pages through an index from its lowest scores. Standalone: read a page of
//! members (ZRANGE), then one script removes exactly those members from the index and
//! UNLINKs their keys, atomically. Cluster: ZPOPMIN a page (removing exactly what it
//! returns), then UNLINK (redis-rs splits it per slot); if the UNLINK fails the entries are put
//! back. Either way an entry leaves the index only together with, or just before, its key's
//! deletion, and the walk goes on until the index is empty: a key tagged before the
//! invalidation began is deleted even when a concurrent write moved its entry (a rewrite
//! during the walk may be deleted too: a miss, never stale data). Writes that keep adding to
//! the index could keep the walk going: it stops after twice the pages the index held at the
//! start (plus a margin) with 503.
//!
//! An untagged write touches none of this: it costs exactly what it did before.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::LazyLock;

use futures_util::future::join_all;
use redis::Script;

use super::lanes::Op;
use super::scripts::LuaScript;
use super::{names, Store, StoreError, WriteCondition};
use crate::config::NodeAddress;
use crate::keys::{CacheKey, Keyspace, Ttl};
use crate::tags::Tag;

/// Members removed per invalidation step: one UNLINK of at most this many keys.
const INVALIDATE_PAGE: usize = 1000;
/// Keys asked of Redis per SCAN step of the index census.
const CENSUS_SCAN_COUNT: usize = 1000;

/// The Redis name of a tag's index in a keyspace (a token's namespace included).
pub fn index_name(ks: &Keyspace, tag: &Tag) -> Vec<u8> {
    names::for_keyspace("tag", ks.prefix(), tag.as_str())
}

/// `now` in Lua: Redis's clock in milliseconds (scripts may call TIME before writing since
/// Redis 5: effects are replicated, not the script).
const LUA_NOW: &str = "local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function ms(x) return string.format('%.0f', x) end
";

/// Standalone/Sentinel tagged write: KEYS[1] the key, KEYS[2] its lease record (cancelled, and
/// its waiters told, as by any write), KEYS[3..] its tag indexes; ARGV[1] the value, ARGV[2]
/// the TTL in seconds, ARGV[3] `-`, `NX` or `XX`, ARGV[4] the publish command. 1 written, 0
/// condition failed.
static TAGGED_SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "local ok
if ARGV[3] == '-' then
  ok = redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else
  ok = redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2], ARGV[3])
end
if not ok then return 0 end
if redis.call('DEL', KEYS[2]) == 1 then redis.call(ARGV[4], KEYS[2], 'cancelled') end
{LUA_NOW}local ttl = tonumber(ARGV[2]) * 1000
for i = 3, #KEYS do
  redis.call('ZADD', KEYS[i], ms(now + ttl), KEYS[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. ms(now))
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return 1
"
    ))
});

/// Adds entries to one index: KEYS[1] the index, ARGV pairs of (member, TTL in ms); trims
/// the expired members and keeps the index's TTL at least the longest new member's.
static INDEX_ADD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{LUA_NOW}local longest = 0
for i = 1, #ARGV, 2 do
  local ttl = tonumber(ARGV[i + 1])
  redis.call('ZADD', KEYS[1], ms(now + ttl), ARGV[i])
  if ttl > longest then longest = ttl end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ms(now))
if redis.call('PTTL', KEYS[1]) < longest then redis.call('PEXPIRE', KEYS[1], longest) end
return 1
"
    ))
});

/// Standalone invalidation step: KEYS[1] the index, KEYS[2..] members read from it. Removes
/// exactly those members and UNLINKs their keys, atomically; the number of keys that existed.
static DROP_MEMBERS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        "local members = {}
for i = 2, #KEYS do members[#members + 1] = KEYS[i] end
redis.call('ZREM', KEYS[1], unpack(members))
return redis.call('UNLINK', unpack(members))
",
    )
});

/// Cluster invalidation step: pops the ARGV[1] lowest members of KEYS[1]; a flat list of
/// member, score, member, score...
static POP_MEMBERS: LazyLock<Script> =
    LazyLock::new(|| Script::new("return redis.call('ZPOPMIN', KEYS[1], ARGV[1])"));

/// A listing page: the members of KEYS[1] whose key has not expired, from score ARGV[1]
/// (skipping the first ARGV[2] of that score) on, at most ARGV[3]; member, score, ...
static TAG_PAGE: LuaScript = LuaScript::reads(
    "#!lua flags=no-writes
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local min, offset = ARGV[1], ARGV[2]
if tonumber(ARGV[1]) <= now then
  min, offset = '(' .. string.format('%.0f', now), 0
end
return redis.call('ZRANGE', KEYS[1], min, '+inf', 'BYSCORE', 'LIMIT', offset, ARGV[3], 'WITHSCORES')
",
);

/// Where a listing by tag resumes: the score (expiry, ms) of the last key returned and how
/// many keys of that score were returned. Opaque to clients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TagCursor {
    score: u64,
    offset: u64,
}

impl TagCursor {
    pub fn encode(self) -> String {
        format!("t{}.{}", self.score, self.offset)
    }

    /// None for anything `encode` did not produce.
    pub fn decode(text: &str) -> Option<Self> {
        let (score, offset) = text.strip_prefix('t')?.split_once('.')?;
        let number = |s: &str| {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        Some(Self {
            score: number(score)?,
            offset: number(offset)?,
        })
    }
}

/// A page of a listing by tag.
pub struct TagPage {
    pub keys: Vec<String>,
    pub next: Option<TagCursor>,
}

/// One write's tag entries: its key, TTL and tags.
pub struct Tagged<'a> {
    pub key: &'a CacheKey,
    pub ttl: Ttl,
    pub tags: &'a [Tag],
}

/// How many tag indexes exist (counted by a background walk) and the eviction count last
/// seen, for the WARN when Redis evicts while tags are in use.
#[derive(Debug)]
pub struct TagCensus {
    /// -1 before the first count.
    indexes: AtomicI64,
    evicted: AtomicU64,
}

impl Default for TagCensus {
    fn default() -> Self {
        Self {
            indexes: AtomicI64::new(-1),
            evicted: AtomicU64::new(u64::MAX),
        }
    }
}

impl TagCensus {
    /// None before the first count.
    pub fn indexes(&self) -> Option<u64> {
        u64::try_from(self.indexes.load(Ordering::Relaxed)).ok()
    }
}

impl Store {
    /// A PUT with tags: SET (with NX/XX) and its index entries; false when the condition
    /// did not hold (then nothing is indexed).
    pub async fn set_tagged(
        &self,
        ks: &Keyspace,
        key: &CacheKey,
        value: &[u8],
        ttl: Ttl,
        condition: WriteCondition,
        tags: &[Tag],
    ) -> Result<bool, StoreError> {
        if self.is_cluster() {
            if !self.set(ks, key, value, ttl, condition).await? {
                return Ok(false);
            }
            self.add_to_indexes(ks, &[Tagged { key, ttl, tags }])
                .await?;
            return Ok(true);
        }
        let redis_key = ks.redis_key(key.as_str());
        // KEYS[2]: the key's lease record, cancelled by the write like any plain write's.
        let mut invocation = TAGGED_SET.key(&redis_key);
        invocation.key(super::leases::lease_name(&redis_key));
        for tag in tags {
            invocation.key(index_name(ks, tag));
        }
        let (flag, op) = match condition {
            WriteCondition::Always => ("-", Op::idempotent_write("tagged_set")),
            WriteCondition::IfAbsent => ("NX", Op::write("tagged_set_nx")),
            WriteCondition::IfPresent => ("XX", Op::write("tagged_set_xx")),
        };
        invocation
            .arg(value)
            .arg(ttl.seconds())
            .arg(flag)
            .arg(self.publish_command());
        let invocation = &invocation;
        let written: i64 = self
            .lanes
            .run(op, |mut link| async move {
                invocation.invoke_async(&mut link).await
            })
            .await?;
        Ok(written == 1)
    }

    /// Adds index entries for keys already written: one script per index, concurrently.
    pub async fn add_to_indexes(
        &self,
        ks: &Keyspace,
        writes: &[Tagged<'_>],
    ) -> Result<(), StoreError> {
        let mut indexes: BTreeMap<Vec<u8>, Vec<(Vec<u8>, u64)>> = BTreeMap::new();
        for write in writes {
            let member = ks.redis_key(write.key.as_str());
            for tag in write.tags {
                indexes
                    .entry(index_name(ks, tag))
                    .or_default()
                    .push((member.clone(), write.ttl.seconds() * 1000));
            }
        }
        let outcomes = join_all(indexes.into_iter().map(|(index, entries)| async move {
            let mut invocation = INDEX_ADD.key(index);
            for (member, ttl_ms) in entries {
                invocation.arg(member).arg(ttl_ms);
            }
            let invocation = &invocation;
            self.lanes
                .run(
                    Op::idempotent_write("tag_index_add"),
                    |mut link| async move { invocation.invoke_async::<i64>(&mut link).await },
                )
                .await
        }))
        .await;
        outcomes.into_iter().try_for_each(|o| o.map(drop))
    }

    /// Deletes every key of the keyspace written with any of `tags`; the number deleted.
    pub async fn invalidate_tags(&self, ks: &Keyspace, tags: &[Tag]) -> Result<u64, StoreError> {
        let counts = join_all(
            tags.iter()
                .map(|t| self.invalidate_index(index_name(ks, t))),
        )
        .await;
        counts.into_iter().sum()
    }

    async fn invalidate_index(&self, index: Vec<u8>) -> Result<u64, StoreError> {
        let size: u64 = self
            .query(Op::read("tag_size"), redis::cmd("ZCARD").arg(&index))
            .await?;
        if size == 0 {
            return Ok(0);
        }
        let max_steps = size.div_ceil(INVALIDATE_PAGE as u64) * 2 + 8;
        let mut deleted = 0;
        for _ in 0..max_steps {
            let (removed, done) = if self.is_cluster() {
                self.invalidate_step_in_slots(&index).await?
            } else {
                self.invalidate_step(&index).await?
            };
            deleted += removed;
            if done {
                return Ok(deleted);
            }
        }
        Err(StoreError::Unavailable(format!(
            "keys kept being written with the tag while it was invalidated ({deleted} deleted so far); try again"
        )))
    }

    /// One standalone step: a page of members, then one script that removes exactly those
    /// and UNLINKs their keys. (deleted, whether the index is now empty)
    async fn invalidate_step(&self, index: &[u8]) -> Result<(u64, bool), StoreError> {
        let mut page = redis::cmd("ZRANGE");
        page.arg(index).arg(0).arg(INVALIDATE_PAGE - 1);
        let members: Vec<Vec<u8>> = self.query(Op::read("tag_page"), &page).await?;
        if members.is_empty() {
            return Ok((0, true));
        }
        // Deleting a key cancels its lease, so a fill from older data cannot land after it.
        self.cancel_leases(&members).await?;
        let mut invocation = DROP_MEMBERS.key(index);
        for member in &members {
            invocation.key(member);
        }
        let invocation = &invocation;
        let deleted: u64 = self
            .lanes
            .run(Op::write("tag_drop"), |mut link| async move {
                invocation.invoke_async(&mut link).await
            })
            .await?;
        Ok((deleted, members.len() < INVALIDATE_PAGE))
    }

    /// One cluster step: pop a page of members, UNLINK their keys (redis-rs splits the
    /// command per slot); on failure the entries go back.
    async fn invalidate_step_in_slots(&self, index: &[u8]) -> Result<(u64, bool), StoreError> {
        let mut invocation = POP_MEMBERS.key(index);
        invocation.arg(INVALIDATE_PAGE);
        let invocation = &invocation;
        let popped: Vec<Vec<u8>> = self
            .lanes
            .run(Op::write("tag_pop"), |mut link| async move {
                invocation.invoke_async(&mut link).await
            })
            .await?;
        let members: Vec<&Vec<u8>> = popped.iter().step_by(2).collect();
        if members.is_empty() {
            return Ok((0, true));
        }
        let owned: Vec<Vec<u8>> = members.iter().map(|m| m.to_vec()).collect();
        if let Err(err) = self.cancel_leases(&owned).await {
            self.restore_entries(index, &popped).await;
            return Err(err);
        }
        let mut unlink = redis::cmd("UNLINK");
        for member in &members {
            unlink.arg(member.as_slice());
        }
        match self.query::<u64>(Op::write("tag_unlink"), &unlink).await {
            Ok(deleted) => Ok((deleted, members.len() < INVALIDATE_PAGE)),
            Err(err) => {
                self.restore_entries(index, &popped).await;
                Err(err)
            }
        }
    }

    /// Puts popped entries back (best effort) after their keys could not be deleted.
    async fn restore_entries(&self, index: &[u8], popped: &[Vec<u8>]) {
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(index);
        for pair in popped.chunks_exact(2) {
            zadd.arg(pair[1].as_slice()).arg(pair[0].as_slice());
        }
        if let Err(err) = self
            .query::<i64>(Op::idempotent_write("tag_restore"), &zadd)
            .await
        {
            tracing::error!(error = ?err, "an invalidation failed and could not restore the tag index entries it had removed");
        }
    }

    /// A page of the keys written with `tag` whose TTL has not passed, at most `limit`.
    pub async fn list_tag(
        &self,
        ks: &Keyspace,
        tag: &Tag,
        from: TagCursor,
        limit: usize,
    ) -> Result<TagPage, StoreError> {
        let keys = [index_name(ks, tag)];
        let (score, offset, count) = (
            from.score.to_string(),
            from.offset.to_string(),
            limit.to_string(),
        );
        let args = [score.as_bytes(), offset.as_bytes(), count.as_bytes()];
        let (keys, args) = (&keys, &args);
        let flat: Vec<Vec<u8>> = self
            .lanes
            .run(Op::read("tag_list"), |mut link| async move {
                TAG_PAGE.invoke(&mut link, keys, args).await
            })
            .await?;
        let entries: Vec<(&[u8], u64)> = flat
            .chunks_exact(2)
            .map(|pair| (pair[0].as_slice(), parse_score(&pair[1])))
            .collect();
        let next = (entries.len() >= limit)
            .then(|| entries.last().map(|(_, last)| *last))
            .flatten()
            .map(|last| {
                let same = entries.iter().filter(|(_, s)| *s == last).count() as u64;
                TagCursor {
                    score: last,
                    offset: if last == from.score {
                        from.offset + same
                    } else {
                        same
                    },
                }
            });
        Ok(TagPage {
            keys: entries
                .iter()
                .filter_map(|(member, _)| ks.client_key(member))
                .collect(),
            next,
        })
    }

    /// Counts the tag indexes (SCAN ... TYPE zset over the internal mark, on every primary in
    /// a cluster), stores the count, and warns when Redis evicted keys since the last count
    /// while indexes exist: an evicted index makes invalidations miss its keys.
    pub async fn take_tag_census(&self, census: &TagCensus) -> Result<(), StoreError> {
        let count = if self.is_cluster() {
            let primaries = self.primaries().await?;
            let counts = join_all(
                primaries
                    .iter()
                    .map(|p| self.count_indexes_on(Some(&p.address))),
            )
            .await;
            counts.into_iter().sum::<Result<u64, _>>()?
        } else {
            self.count_indexes_on(None).await?
        };
        census
            .indexes
            .store(i64::try_from(count).unwrap_or(i64::MAX), Ordering::Relaxed);
        let evicted = self.stats().await?.evicted_keys;
        let before = census.evicted.swap(evicted, Ordering::Relaxed);
        if before != u64::MAX && evicted > before && count > 0 {
            tracing::warn!(
                evicted = evicted - before,
                tag_indexes = count,
                "Redis evicted keys while tags are in use: an evicted tag index makes invalidations miss the keys it listed; give Redis more memory or use maxmemory-policy volatile-ttl (see README, Tags)"
            );
        }
        Ok(())
    }

    async fn count_indexes_on(&self, node: Option<&NodeAddress>) -> Result<u64, StoreError> {
        let mut pattern = names::for_keyspace("tag", "", "");
        pattern.truncate(pattern.len() - 1);
        pattern.push(b'*');
        let (mut cursor, mut count) = (0u64, 0u64);
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(CENSUS_SCAN_COUNT)
                .arg("TYPE")
                .arg("zset");
            let (next, names): (u64, Vec<Vec<u8>>) = match node {
                None => self.query(Op::read("tag_census"), &cmd).await?,
                Some(node) => self.on_node(Op::read("tag_census"), node, &cmd).await?,
            };
            count += names.len() as u64;
            if next == 0 {
                return Ok(count);
            }
            cursor = next;
        }
    }
}

/// A score as Redis prints it (`1733350000000`); 0 for anything else.
fn parse_score(text: &[u8]) -> u64 {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .map_or(0, |f| f.max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_others() {
        let cursor = TagCursor {
            score: 1_733_350_000_000,
            offset: 3,
        };
        assert_eq!(TagCursor::decode(&cursor.encode()), Some(cursor));
        for bad in [
            "", "t", "t1", "t1.", "t.1", "x1.2", "t-1.2", "t1.2.3", "t1.+2",
        ] {
            assert_eq!(TagCursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn scores_parse_as_redis_prints_them() {
        assert_eq!(parse_score(b"1733350000000"), 1_733_350_000_000);
        assert_eq!(parse_score(b"x"), 0);
    }
}
