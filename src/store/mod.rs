//! The Redis store: every Redis command cachegate sends is built here, and every key goes
//! through a `Keyspace`, so prefixing and glob confinement happen in one place.

mod connection;
mod cursor;
pub mod info;

use std::time::{Duration, Instant};

use deadpool_redis::redis::{self, Cmd, FromRedisValue};

pub use connection::{PoolStatus, StoreError};
pub use cursor::ListCursor;

use crate::config::RedisConfig;
use crate::keys::{CacheKey, Keyspace, Pattern, Ttl};
use connection::Connections;

/// Keys asked of Redis per `SCAN` step: large enough to cross a big keyspace in few round
/// trips, small enough that one step never blocks Redis for long.
const SCAN_COUNT: usize = 1000;
/// `SCAN` steps one listing page may take before it returns what it has, so a pattern that
/// matches little in a huge keyspace cannot hold a request for long.
const SCAN_STEPS_PER_PAGE: usize = 32;

/// A write's condition: `If-None-Match: *` (NX) or `If-Match: *` (XX).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteCondition {
    Always,
    IfAbsent,
    IfPresent,
}

/// A key's remaining life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlState {
    Missing,
    NoExpiry,
    Seconds(u64),
}

/// One entry of an all-or-nothing batch write.
pub struct BatchEntry<'a> {
    pub key: CacheKey,
    pub value: &'a [u8],
    pub ttl: Ttl,
}

/// A page of a listing.
pub struct KeyPage {
    pub keys: Vec<String>,
    pub next: Option<ListCursor>,
}

pub struct Store {
    connections: Connections,
}

impl Store {
    pub fn new(config: &RedisConfig, slow_threshold: Duration) -> Result<Self, String> {
        Ok(Self {
            connections: Connections::new(config, slow_threshold)?,
        })
    }

    pub fn pool_status(&self) -> PoolStatus {
        self.connections.status()
    }

    async fn query<T: FromRedisValue>(
        &self,
        operation: &'static str,
        cmd: &Cmd,
    ) -> Result<T, StoreError> {
        self.connections
            .run(operation, |mut connection| async move {
                cmd.query_async(&mut connection).await
            })
            .await
    }

    /// GET, or GETEX with a new TTL (sliding expiry) in the same atomic step.
    pub async fn get(
        &self,
        ks: &Keyspace,
        key: &CacheKey,
        ttl: Option<Ttl>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let redis_key = ks.redis_key(key.as_str());
        match ttl {
            None => self.query("get", redis::cmd("GET").arg(redis_key)).await,
            Some(ttl) => {
                let mut cmd = redis::cmd("GETEX");
                cmd.arg(redis_key).arg("EX").arg(ttl.seconds());
                self.query("getex", &cmd).await
            }
        }
    }

    /// SET with EX and NX/XX; false when the condition did not hold.
    pub async fn set(
        &self,
        ks: &Keyspace,
        key: &CacheKey,
        value: &[u8],
        ttl: Ttl,
        condition: WriteCondition,
    ) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(ks.redis_key(key.as_str()))
            .arg(value)
            .arg("EX")
            .arg(ttl.seconds());
        match condition {
            WriteCondition::Always => {}
            WriteCondition::IfAbsent => {
                cmd.arg("NX");
            }
            WriteCondition::IfPresent => {
                cmd.arg("XX");
            }
        }
        let reply: Option<String> = self.query("set", &cmd).await?;
        Ok(reply.is_some())
    }

    /// UNLINK one key; false when it was absent.
    pub async fn delete(&self, ks: &Keyspace, key: &CacheKey) -> Result<bool, StoreError> {
        let removed: u64 = self
            .query(
                "unlink",
                redis::cmd("UNLINK").arg(ks.redis_key(key.as_str())),
            )
            .await?;
        Ok(removed > 0)
    }

    pub async fn ttl(&self, ks: &Keyspace, key: &CacheKey) -> Result<TtlState, StoreError> {
        let seconds: i64 = self
            .query("ttl", redis::cmd("TTL").arg(ks.redis_key(key.as_str())))
            .await?;
        Ok(match seconds {
            -2 => TtlState::Missing,
            -1 => TtlState::NoExpiry,
            s => TtlState::Seconds(s.max(0) as u64),
        })
    }

    /// EXPIRE; false when the key was absent.
    pub async fn expire(
        &self,
        ks: &Keyspace,
        key: &CacheKey,
        ttl: Ttl,
    ) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("EXPIRE");
        cmd.arg(ks.redis_key(key.as_str())).arg(ttl.seconds());
        let updated: u64 = self.query("expire", &cmd).await?;
        Ok(updated == 1)
    }

    /// MGET in one round trip; keys of other types come back as None.
    pub async fn get_many(
        &self,
        ks: &Keyspace,
        keys: &[&CacheKey],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut cmd = redis::cmd("MGET");
        for key in keys {
            cmd.arg(ks.redis_key(key.as_str()));
        }
        self.query("mget", &cmd).await
    }

    /// SET ... EX for every entry inside MULTI/EXEC: all are written or none.
    pub async fn set_many(
        &self,
        ks: &Keyspace,
        entries: &[BatchEntry<'_>],
    ) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for entry in entries {
            pipe.cmd("SET")
                .arg(ks.redis_key(entry.key.as_str()))
                .arg(entry.value)
                .arg("EX")
                .arg(entry.ttl.seconds())
                .ignore();
        }
        let pipe = &pipe;
        self.connections
            .run("multi_set", |mut connection| async move {
                pipe.query_async::<()>(&mut connection).await
            })
            .await
    }

    /// UNLINK many keys in one round trip; the number that existed.
    pub async fn delete_many(&self, ks: &Keyspace, keys: &[CacheKey]) -> Result<u64, StoreError> {
        let mut cmd = redis::cmd("UNLINK");
        for key in keys {
            cmd.arg(ks.redis_key(key.as_str()));
        }
        self.query("unlink", &cmd).await
    }

    async fn scan_step(
        &self,
        cursor: u64,
        redis_pattern: &str,
    ) -> Result<(u64, Vec<Vec<u8>>), StoreError> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(redis_pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT);
        self.query("scan", &cmd).await
    }

    /// One page of keys matching `pattern`, at most `limit`, resuming at `from`.
    ///
    /// A page ends between SCAN steps, or inside one: then the step's keys are sorted and
    /// the cursor remembers the last key returned, so the next page repeats that SCAN step
    /// and returns only the keys after it. No key present throughout is skipped.
    pub async fn list(
        &self,
        ks: &Keyspace,
        pattern: &Pattern,
        from: ListCursor,
        limit: usize,
    ) -> Result<KeyPage, StoreError> {
        let redis_pattern = ks.redis_pattern(pattern);
        let mut keys = Vec::new();
        let mut position = from;
        for _ in 0..SCAN_STEPS_PER_PAGE {
            let (next_scan, raw) = self.scan_step(position.scan, &redis_pattern).await?;
            let mut step_keys: Vec<String> = raw.iter().filter_map(|k| ks.client_key(k)).collect();
            step_keys.sort_unstable();
            step_keys.dedup();
            if let Some(after) = &position.after {
                step_keys.retain(|k| k > after);
            }
            let room = limit - keys.len();
            if step_keys.len() > room {
                step_keys.truncate(room);
                let last = step_keys.last().cloned();
                keys.extend(step_keys);
                let next = ListCursor {
                    scan: position.scan,
                    after: last.or(position.after),
                };
                return Ok(KeyPage {
                    keys,
                    next: Some(next),
                });
            }
            keys.extend(step_keys);
            if next_scan == 0 {
                return Ok(KeyPage { keys, next: None });
            }
            position = ListCursor {
                scan: next_scan,
                after: None,
            };
            if keys.len() == limit {
                break;
            }
        }
        Ok(KeyPage {
            keys,
            next: Some(position),
        })
    }

    /// Deletes every key matching `pattern` with SCAN and UNLINK, a batch at a time.
    pub async fn delete_matching(
        &self,
        ks: &Keyspace,
        pattern: &Pattern,
    ) -> Result<u64, StoreError> {
        let redis_pattern = ks.redis_pattern(pattern);
        let mut cursor = 0;
        let mut deleted = 0;
        loop {
            let (next, batch) = self.scan_step(cursor, &redis_pattern).await?;
            if !batch.is_empty() {
                let removed: u64 = self
                    .query("unlink", redis::cmd("UNLINK").arg(&batch))
                    .await?;
                deleted += removed;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// PING; the round trip's duration.
    pub async fn ping(&self) -> Result<Duration, StoreError> {
        let started = Instant::now();
        let _: String = self.query("ping", &redis::cmd("PING")).await?;
        Ok(started.elapsed())
    }

    /// The raw text of `INFO`.
    pub async fn info(&self) -> Result<String, StoreError> {
        self.query("info", &redis::cmd("INFO")).await
    }
}
