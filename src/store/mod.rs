//! The Redis store: every Redis command cachegate sends is built here, and every key goes
//! through a `Keyspace`, so prefixing and glob confinement happen in one place. Routes see one
//! `Store` whatever the topology:
//!
//! - `standalone.rs`: one Redis; `sentinel.rs`: the primary that Sentinel names;
//!   `cluster.rs`: a Redis Cluster (slot map, per-primary routing, hash slots).
//! - `lanes.rs`: how a round trip gets a connection (per-thread read and write links, made in
//!   the background, bounded by the command timeout), the same in every topology.
//! - `link.rs`: the connection itself; `errors.rs`: what a failure means for HTTP;
//!   `health.rs`: connection log lines and Redis metrics; `scripts.rs`: the Lua scripts;
//!   `cursor.rs`: listing cursors; `info.rs`: `INFO` parsing.
//!
//! Fan-out (SCAN on every primary, INFO from every node) and slot grouping happen here, only
//! in cluster mode.

mod cluster;
mod cursor;
mod errors;
mod health;
pub mod info;
mod lanes;
mod leases;
mod link;
pub mod names;
mod scripts;
mod sentinel;
mod standalone;
pub mod tags;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use redis::{Cmd, FromRedisValue};

pub use cluster::hash_slot;
pub use cursor::ListCursor;
pub use errors::StoreError;
pub use lanes::PoolStatus;
pub use leases::{Hub, LeaseAsk, LeaseRead, Ticket, Wake};

use crate::config::{NodeAddress, RedisConfig, Topology};
use crate::keys::{CacheKey, Keyspace, Pattern, Ttl};
use cluster::Primary;
use cursor::ClusterProgress;
use info::{ClusterNode, RedisStats};
use lanes::{Connect, LaneSettings, Lanes, Op};

/// Keys asked of Redis per `SCAN` step: large enough to cross a big keyspace in few round
/// trips, small enough that one step never blocks Redis for long.
const SCAN_COUNT: usize = 1000;
/// `SCAN` steps one listing page may take before it returns what it has, so a pattern that
/// matches little in a huge keyspace cannot hold a request for long.
const SCAN_STEPS_PER_PAGE: usize = 32;

/// The bound on what one batch get reads: `total` bytes (`CACHE_MAX_BATCH_BYTES`), of values
/// that cachegate writes at most `per_value` bytes long (`CACHE_MAX_VALUE_BYTES`).
#[derive(Debug, Clone, Copy)]
pub struct BatchReadLimit {
    pub total: usize,
    pub per_value: usize,
}

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

/// One entry of a batch write.
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

/// What readiness reports.
pub struct Readiness {
    pub latency: Duration,
}

/// A batch write that was not all written: which keys were not, and why.
pub struct PartialWrite {
    pub not_written: Vec<String>,
    pub error: StoreError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Standalone,
    Sentinel,
    Cluster,
}

/// Callers one process lets wait on leases at once; past it a waiter is refused (503).
const MAX_LEASE_WAITERS: usize = 10_000;

pub struct Store {
    lanes: Lanes,
    hub: Hub,
    mode: Mode,
    /// Cluster mode: each node's own connection, for commands that must reach one node.
    nodes: Option<cluster::NodeLinks>,
    db: i64,
}

impl Store {
    pub fn new(config: &RedisConfig, slow_threshold: Duration) -> Result<Self, String> {
        let (connector, mode): (Arc<dyn Connect>, Mode) = match &config.topology {
            Topology::Standalone => (
                Arc::new(standalone::StandaloneConnector::new(config)?),
                Mode::Standalone,
            ),
            Topology::Sentinel {
                sentinels,
                master,
                password,
            } => (
                Arc::new(sentinel::SentinelConnector::new(
                    config,
                    sentinels,
                    master,
                    password.as_ref(),
                )?),
                Mode::Sentinel,
            ),
            Topology::Cluster { seeds } => (
                Arc::new(cluster::ClusterConnector::new(config, seeds)?),
                Mode::Cluster,
            ),
        };
        let health = Arc::new(health::Health::new(config.topology.name()));
        let hub = Hub::new(
            Arc::clone(&connector),
            MAX_LEASE_WAITERS,
            config.command_timeout,
        );
        let lanes = Lanes::new(
            connector,
            health,
            LaneSettings {
                lanes: config.pool_size,
                command_timeout: config.command_timeout,
                connect_timeout: config.connect_timeout,
                slow_threshold,
            },
        );
        Ok(Self {
            lanes,
            hub,
            mode,
            nodes: (mode == Mode::Cluster).then(|| cluster::NodeLinks::new(config)),
            db: config.db,
        })
    }

    /// Starts connecting the calling thread's lane (each HTTP worker calls it as it starts).
    pub fn warm_up(&self) {
        self.lanes.warm_up();
    }

    /// Where the store connects, for log lines (never a password).
    pub fn describe(&self) -> String {
        self.lanes.describe()
    }

    pub fn pool_status(&self) -> PoolStatus {
        self.lanes.status()
    }

    fn is_cluster(&self) -> bool {
        self.mode == Mode::Cluster
    }

    async fn query<T: FromRedisValue>(&self, op: Op, cmd: &Cmd) -> Result<T, StoreError> {
        self.lanes
            .run(op, |mut link| async move { link.query(cmd).await })
            .await
    }

    /// GET, or GETEX with a new TTL (sliding expiry) in the same atomic step.
    pub async fn get(
        &self,
        ks: &Keyspace,
        key: &CacheKey,
        ttl: Option<Ttl>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let key = KeyArg::new(ks, key);
        match ttl {
            None => {
                let mut cmd = command("GET", 1, key.len());
                cmd.arg(key);
                self.query(Op::read("get"), &cmd).await
            }
            Some(ttl) => {
                let mut cmd = command("GETEX", 3, key.len() + 24);
                cmd.arg(key).arg("EX").arg(ttl.seconds());
                self.query(Op::idempotent_write("getex"), &cmd).await
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
        // Any write cancels the key's outstanding lease, in the same round trip.
        self.set_cancelling_lease(&ks.redis_key(key.as_str()), value, ttl, condition)
            .await
    }

    /// Writes `value` only if the key still holds `expected` (None: only if it is absent),
    /// atomically; false when it changed since it was read.
    pub async fn set_if_unchanged(
        &self,
        ks: &Keyspace,
        key: &CacheKey,
        expected: Option<&[u8]>,
        value: &[u8],
        ttl: Ttl,
    ) -> Result<bool, StoreError> {
        let redis_key = ks.redis_key(key.as_str());
        let lease = leases::lease_name(&redis_key);
        let mut invocation = scripts::SET_IF_UNCHANGED.key(redis_key);
        invocation.key(lease);
        match expected {
            Some(bytes) => invocation.arg("1").arg(bytes),
            None => invocation.arg("0").arg(""),
        };
        invocation.arg(value).arg(ttl.seconds());
        invocation.arg(self.publish_command());
        let invocation = &invocation;
        let written: i64 = self
            .lanes
            .run(Op::write("set_if_unchanged"), |mut link| async move {
                invocation.invoke_async(&mut link).await
            })
            .await?;
        Ok(written == 1)
    }

    /// Deletes the key only if it still holds `expected`, atomically; false otherwise.
    pub async fn delete_if_unchanged(
        &self,
        ks: &Keyspace,
        key: &CacheKey,
        expected: &[u8],
    ) -> Result<bool, StoreError> {
        let redis_key = ks.redis_key(key.as_str());
        let lease = leases::lease_name(&redis_key);
        let mut invocation = scripts::DELETE_IF_UNCHANGED.key(redis_key);
        invocation.key(lease);
        invocation.arg(expected).arg(self.publish_command());
        let invocation = &invocation;
        let deleted: i64 = self
            .lanes
            .run(Op::write("delete_if_unchanged"), |mut link| async move {
                invocation.invoke_async(&mut link).await
            })
            .await?;
        Ok(deleted == 1)
    }

    /// UNLINK one key, cancelling its lease (even when it is absent); false when it was
    /// absent.
    pub async fn delete(&self, ks: &Keyspace, key: &CacheKey) -> Result<bool, StoreError> {
        self.delete_cancelling_lease(&ks.redis_key(key.as_str()))
            .await
    }

    /// The key's TTL; `WrongType` for a key of another type, whose TTL is not cachegate's.
    pub async fn ttl(&self, ks: &Keyspace, key: &CacheKey) -> Result<TtlState, StoreError> {
        let redis_key = ks.redis_key(key.as_str());
        let mut pipe = redis::pipe();
        pipe.cmd("TYPE").arg(&redis_key).cmd("TTL").arg(&redis_key);
        let pipe = &pipe;
        let (kind, seconds): (String, i64) = self
            .lanes
            .run(Op::read("ttl"), |mut link| async move {
                pipe.query_async(&mut link).await
            })
            .await?;
        match (kind.as_str(), seconds) {
            ("none", _) | (_, -2) => Ok(TtlState::Missing),
            ("string", -1) => Ok(TtlState::NoExpiry),
            ("string", s) => Ok(TtlState::Seconds(s.max(0) as u64)),
            _ => Err(StoreError::WrongType),
        }
    }

    /// EXPIRE a string; false when the key was absent, `WrongType` for another type.
    pub async fn expire(
        &self,
        ks: &Keyspace,
        key: &CacheKey,
        ttl: Ttl,
    ) -> Result<bool, StoreError> {
        let mut invocation = scripts::EXPIRE_STRING.key(ks.redis_key(key.as_str()));
        invocation.arg(ttl.seconds());
        let invocation = &invocation;
        let answer: i64 = self
            .lanes
            .run(Op::idempotent_write("expire"), |mut link| async move {
                invocation.invoke_async(&mut link).await
            })
            .await?;
        match answer {
            -3 => Err(StoreError::WrongType),
            1 => Ok(true),
            _ => Ok(false),
        }
    }

    /// The values of `keys` (None for a miss or another type), or None when their lengths
    /// together exceed `limit.total`.
    ///
    /// A batch that values written through cachegate (at most `limit.per_value` bytes each)
    /// cannot take past the total is read with one MGET, its total checked after: asking
    /// Redis for the lengths first costs a second round trip, or a script that carries every
    /// value through Lua (half of MGET's throughput for 10 values of 1 KiB). Only a batch
    /// that could exceed the total has its lengths summed in Redis before anything is read.
    pub async fn get_many(
        &self,
        ks: &Keyspace,
        keys: &[&CacheKey],
        limit: BatchReadLimit,
    ) -> Result<Option<Vec<Option<Vec<u8>>>>, StoreError> {
        let redis_keys: Vec<Vec<u8>> = keys.iter().map(|k| ks.redis_key(k.as_str())).collect();
        if keys.len().saturating_mul(limit.per_value) <= limit.total {
            let values: Vec<Option<Vec<u8>>> = self
                .query(Op::read("mget"), redis::cmd("MGET").arg(&redis_keys))
                .await?;
            let total = values
                .iter()
                .flatten()
                .fold(0usize, |sum, value| sum.saturating_add(value.len()));
            return Ok((total <= limit.total).then_some(values));
        }
        if self.is_cluster() {
            return self.get_many_in_slots(&redis_keys, limit.total).await;
        }
        let max_bytes = limit.total.to_string();
        let (keys, args) = (&redis_keys, [max_bytes.as_bytes()]);
        let args = &args;
        self.lanes
            .run(Op::read("mget"), |mut link| async move {
                scripts::BOUNDED_MGET.invoke(&mut link, keys, args).await
            })
            .await
    }

    /// Cluster: the lengths first, per hash slot in parallel, then MGET (which redis-rs splits
    /// per slot). Not atomic: a value that grows in between is read at its new size.
    async fn get_many_in_slots(
        &self,
        redis_keys: &[Vec<u8>],
        max_bytes: usize,
    ) -> Result<Option<Vec<Option<Vec<u8>>>>, StoreError> {
        let pipes: Vec<redis::Pipeline> = by_slot(redis_keys.iter())
            .into_values()
            .map(|group| {
                let mut pipe = redis::pipe();
                // STRLEN of a key of another type is an error: count it 0, as MGET answers nil.
                pipe.ignore_errors();
                for key in group {
                    pipe.cmd("STRLEN").arg(key);
                }
                pipe
            })
            .collect();
        let pipes = &pipes;
        // One round trip's worth of the in-flight bound for the whole batch, however many
        // slots it spans.
        let lengths: Vec<usize> = self
            .lanes
            .run(Op::read("strlen"), |link| async move {
                let replies = join_all(pipes.iter().map(|pipe| {
                    let mut link = link.clone();
                    async move { pipe.query_async::<Vec<redis::Value>>(&mut link).await }
                }))
                .await;
                replies
                    .into_iter()
                    .map(|reply| {
                        Ok(reply?
                            .iter()
                            .map(|r| usize::from_redis_value(r.clone()).unwrap_or(0))
                            .sum::<usize>())
                    })
                    .collect()
            })
            .await?;
        let total = lengths.iter().fold(0usize, |sum, n| sum.saturating_add(*n));
        if total > max_bytes {
            return Ok(None);
        }
        let mut cmd = redis::cmd("MGET");
        for key in redis_keys {
            cmd.arg(key);
        }
        self.query(Op::read("mget"), &cmd).await.map(Some)
    }

    /// Whether the entries' keys lie in more than one hash slot (only ever in cluster mode).
    pub fn spans_slots(&self, ks: &Keyspace, keys: &[&CacheKey]) -> bool {
        self.is_cluster() && by_slot(keys.iter().map(|k| ks.redis_key(k.as_str()))).len() > 1
    }

    /// SET ... EX for every entry inside MULTI/EXEC: all are written or none (one hash slot in
    /// a cluster: check `spans_slots` first).
    pub async fn set_many(
        &self,
        ks: &Keyspace,
        entries: &[BatchEntry<'_>],
    ) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for entry in entries {
            let redis_key = ks.redis_key(entry.key.as_str());
            // The write cancels the key's lease (same slot); its waiters see the value at
            // their next check.
            pipe.cmd("DEL").arg(leases::lease_name(&redis_key)).ignore();
            pipe.cmd("SET")
                .arg(redis_key)
                .arg(entry.value)
                .arg("EX")
                .arg(entry.ttl.seconds())
                .ignore();
        }
        let pipe = &pipe;
        self.lanes
            .run(Op::idempotent_write("multi_set"), |mut link| async move {
                pipe.query_async::<()>(&mut link).await
            })
            .await
    }

    /// Writes the entries in groups, one per hash slot (one group outside a cluster), each
    /// all or nothing, in parallel; the keys of the groups that failed are reported.
    pub async fn set_per_slot(
        &self,
        ks: &Keyspace,
        entries: &[BatchEntry<'_>],
    ) -> Result<(), PartialWrite> {
        let mut groups: BTreeMap<u16, Vec<&BatchEntry<'_>>> = BTreeMap::new();
        for entry in entries {
            let slot = if self.is_cluster() {
                hash_slot(&ks.redis_key(entry.key.as_str()))
            } else {
                0
            };
            groups.entry(slot).or_default().push(entry);
        }
        let outcomes = join_all(groups.into_values().map(|group| async move {
            let owned: Vec<BatchEntry<'_>> = group
                .iter()
                .map(|e| BatchEntry {
                    key: e.key.clone(),
                    value: e.value,
                    ttl: e.ttl,
                })
                .collect();
            (group, self.set_many(ks, &owned).await)
        }))
        .await;
        let mut failure: Option<PartialWrite> = None;
        for (group, outcome) in outcomes {
            if let Err(error) = outcome {
                let failed = failure.get_or_insert_with(|| PartialWrite {
                    not_written: Vec::new(),
                    error,
                });
                failed
                    .not_written
                    .extend(group.iter().map(|e| e.key.as_str().to_string()));
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// UNLINK many keys in one round trip (redis-rs splits it per slot in a cluster); the
    /// number that existed.
    pub async fn delete_many(&self, ks: &Keyspace, keys: &[CacheKey]) -> Result<u64, StoreError> {
        let redis_keys: Vec<Vec<u8>> = keys.iter().map(|k| ks.redis_key(k.as_str())).collect();
        // Leases first: a fill after this fails, one before it is deleted below.
        self.cancel_leases(&redis_keys).await?;
        let mut cmd = redis::cmd("UNLINK");
        cmd.arg(&redis_keys);
        self.query(Op::write("unlink_many"), &cmd).await
    }

    /// One SCAN step over string keys, on the one Redis or on one cluster primary.
    async fn scan_step(
        &self,
        node: Option<&NodeAddress>,
        cursor: u64,
        redis_pattern: &str,
    ) -> Result<(u64, Vec<Vec<u8>>), StoreError> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(redis_pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            // Other programs' lists, hashes and streams are never listed or deleted.
            .arg("TYPE")
            .arg("string");
        match node {
            None => self.query(Op::read("scan"), &cmd).await,
            Some(node) => self.on_node(Op::read("scan"), node, &cmd).await,
        }
    }

    async fn primaries(&self) -> Result<Vec<Primary>, StoreError> {
        let primaries = self
            .lanes
            .run(Op::read("cluster_slots"), cluster::primaries)
            .await?;
        if primaries.is_empty() {
            return Err(StoreError::Unavailable(
                "the Redis Cluster reports no primary serving slots".into(),
            ));
        }
        Ok(primaries)
    }

    /// One page of keys matching `pattern`, at most `limit`, resuming at `from`.
    ///
    /// A page ends between SCAN steps, or inside one: then the step's keys are sorted and
    /// the cursor remembers the last key returned, so the next page repeats that SCAN step
    /// and returns only the keys after it. No key present throughout is skipped. In a cluster
    /// the primaries are walked one after the other (see `cursor.rs`).
    pub async fn list(
        &self,
        ks: &Keyspace,
        pattern: &Pattern,
        from: ListCursor,
        limit: usize,
    ) -> Result<KeyPage, StoreError> {
        let redis_pattern = ks.redis_pattern(pattern);
        let primaries = if self.is_cluster() {
            self.primaries().await?
        } else {
            Vec::new()
        };
        let mut keys = Vec::new();
        let mut position = from;
        if self.is_cluster() && position.cluster.is_none() {
            position.cluster = Some(ClusterProgress::default());
        }
        for _ in 0..SCAN_STEPS_PER_PAGE {
            let node = match &mut position.cluster {
                None => None,
                Some(progress) => match current_primary(progress, &primaries) {
                    Some((primary, restarted)) => {
                        if restarted {
                            position.scan = 0;
                            position.after = None;
                        }
                        Some(primary)
                    }
                    None => return Ok(KeyPage { keys, next: None }),
                },
            };
            let (next_scan, raw) = self
                .scan_step(node.map(|p| &p.address), position.scan, &redis_pattern)
                .await?;
            let mut step_keys: Vec<String> = raw
                .iter()
                .filter(|k| !names::is_internal(k))
                .filter_map(|k| ks.client_key(k))
                .collect();
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
                position.after = last.or(position.after);
                return Ok(KeyPage {
                    keys,
                    next: Some(position),
                });
            }
            keys.extend(step_keys);
            position.after = None;
            if next_scan == 0 {
                match (&mut position.cluster, node) {
                    (Some(progress), Some(primary)) => {
                        progress.finish(&primary.slots);
                        progress.node = None;
                        position.scan = 0;
                    }
                    _ => return Ok(KeyPage { keys, next: None }),
                }
            } else {
                position.scan = next_scan;
            }
            if keys.len() == limit {
                break;
            }
        }
        Ok(KeyPage {
            keys,
            next: Some(position),
        })
    }

    /// Deletes every string key matching `pattern` with SCAN and UNLINK, a batch at a time;
    /// on every primary in parallel in a cluster.
    pub async fn delete_matching(
        &self,
        ks: &Keyspace,
        pattern: &Pattern,
    ) -> Result<u64, StoreError> {
        let redis_pattern = ks.redis_pattern(pattern);
        if !self.is_cluster() {
            return self.delete_matching_on(None, &redis_pattern).await;
        }
        let primaries = self.primaries().await?;
        let counts = join_all(
            primaries
                .iter()
                .map(|p| self.delete_matching_on(Some(&p.address), &redis_pattern)),
        )
        .await;
        counts.into_iter().sum()
    }

    async fn delete_matching_on(
        &self,
        node: Option<&NodeAddress>,
        redis_pattern: &str,
    ) -> Result<u64, StoreError> {
        let mut cursor = 0;
        let mut deleted = 0;
        loop {
            let (next, mut batch) = self.scan_step(node, cursor, redis_pattern).await?;
            batch.retain(|k| !names::is_internal(k));
            if !batch.is_empty() {
                self.cancel_leases(&batch).await?;
                let removed: u64 = self
                    .query(Op::write("unlink_many"), redis::cmd("UNLINK").arg(&batch))
                    .await?;
                deleted += removed;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }

    /// Readiness: every link answers PING; in a cluster also every primary that serves slots,
    /// and the cluster reports `cluster_state:ok`. Sets the `cachegate_redis_nodes` gauges.
    pub async fn ready(&self) -> Result<Readiness, StoreError> {
        let started = Instant::now();
        let outcome = self.ping_links().await;
        let latency = started.elapsed();
        let outcome = match outcome {
            Ok(()) if self.is_cluster() => self.cluster_ready().await,
            Ok(()) => {
                record_nodes(1, 0);
                Ok(())
            }
            Err(err) => {
                if !self.is_cluster() {
                    record_nodes(0, 1);
                }
                Err(err)
            }
        };
        outcome.map(|()| Readiness { latency })
    }

    async fn ping_links(&self) -> Result<(), StoreError> {
        let links = self.lanes.all_links().await?;
        let pings = join_all(links.into_iter().map(|mut link| async move {
            redis::cmd("PING").query_async::<String>(&mut link).await
        }))
        .await;
        for ping in pings {
            ping.map_err(|e| errors::classify(&e))?;
        }
        Ok(())
    }

    async fn cluster_ready(&self) -> Result<(), StoreError> {
        let primaries = self.primaries().await?;
        let states = join_all(primaries.iter().map(|primary| async move {
            let cmd = redis::cmd("CLUSTER").arg("INFO").clone();
            let text: Result<String, StoreError> = self
                .on_node(Op::read("cluster_info"), &primary.address, &cmd)
                .await;
            (primary.address.to_string(), text)
        }))
        .await;
        let reachable = states.iter().filter(|(_, text)| text.is_ok()).count();
        record_nodes(reachable, states.len() - reachable);
        for (address, state) in states {
            let text = state?;
            if !text.lines().any(|l| l.trim() == "cluster_state:ok") {
                return Err(StoreError::Unavailable(format!(
                    "the Redis Cluster is not ok: {address} reports cluster_state other than ok"
                )));
            }
        }
        Ok(())
    }

    /// `INFO`: of the one Redis, or of every cluster node (totals over the primaries).
    pub async fn stats(&self) -> Result<RedisStats, StoreError> {
        if !self.is_cluster() {
            let text: String = self.query(Op::read("info"), &redis::cmd("INFO")).await?;
            return Ok(info::parse_info(&text, self.db));
        }
        let cmd = redis::cmd("CLUSTER").arg("NODES").clone();
        let cmd = &cmd;
        let text: String = self
            .lanes
            .run(Op::read("cluster_nodes"), |mut link| async move {
                cmd.query_async(&mut link).await
            })
            .await?;
        let nodes = info::parse_cluster_nodes(&text);
        let answers = join_all(nodes.into_iter().map(|node| async move {
            let text = self.info_of(&node).await.ok();
            (node, text)
        }))
        .await;
        Ok(info::cluster_stats(&answers))
    }

    async fn info_of(&self, node: &ClusterNode) -> Result<String, StoreError> {
        let (host, port) = node
            .address
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_string(), p.parse().ok()?)))
            .ok_or_else(|| StoreError::Other("a cluster node without a port".into()))?;
        let address = NodeAddress { host, port };
        self.on_node(Op::read("info"), &address, &redis::cmd("INFO"))
            .await
    }

    /// A keyless command for one cluster node, over that node's own connection (see
    /// `cluster::NodeLinks` for why not through the cluster link).
    pub(super) async fn on_node<T: FromRedisValue>(
        &self,
        op: Op,
        node: &NodeAddress,
        cmd: &Cmd,
    ) -> Result<T, StoreError> {
        let Some(nodes) = &self.nodes else {
            return Err(StoreError::Other(
                "a command for one node outside cluster mode".into(),
            ));
        };
        self.lanes.run_beside(op, nodes.query(node, cmd)).await
    }
}

/// A command whose buffers are sized once for `args` more arguments of `bytes` bytes in all
/// (a command grown argument by argument reallocates on the way).
fn command(name: &str, args: usize, bytes: usize) -> Cmd {
    let mut cmd = Cmd::with_capacity(1 + args, name.len() + bytes);
    cmd.arg(name);
    cmd
}

/// A client key as a command argument: its Redis key (`Keyspace::redis_key`) written straight
/// into the command, without a buffer of its own.
struct KeyArg<'a> {
    prefix: &'a str,
    key: &'a str,
}

impl<'a> KeyArg<'a> {
    fn new(ks: &'a Keyspace, key: &'a CacheKey) -> Self {
        Self {
            prefix: ks.prefix(),
            key: key.as_str(),
        }
    }

    fn len(&self) -> usize {
        self.prefix.len() + self.key.len()
    }
}

impl redis::ToRedisArgs for KeyArg<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write;
        let mut arg = out.writer_for_next_arg();
        // A command's buffer is a Vec: writing to it cannot fail.
        let _ = arg.write_all(self.prefix.as_bytes());
        let _ = arg.write_all(self.key.as_bytes());
    }
}

/// `cachegate_redis_nodes{state}`: primaries (one Redis outside a cluster) that answered the
/// last readiness check, and those that did not.
fn record_nodes(reachable: usize, unreachable: usize) {
    metrics::gauge!("cachegate_redis_nodes", "state" => "reachable").set(reachable as f64);
    metrics::gauge!("cachegate_redis_nodes", "state" => "unreachable").set(unreachable as f64);
}

/// The primary a cluster listing continues on: the one it was walking if that primary still
/// serves the same slots, else the first primary with slots not done (walked from its start:
/// `true`). None when every slot is done.
fn current_primary<'a>(
    progress: &mut ClusterProgress,
    primaries: &'a [Primary],
) -> Option<(&'a Primary, bool)> {
    if let Some((id, fingerprint)) = &progress.node {
        if let Some(primary) = primaries
            .iter()
            .find(|p| &p.id() == id && slots_fingerprint(&p.slots) == *fingerprint)
        {
            return Some((primary, false));
        }
    }
    let next = primaries.iter().find(|p| {
        p.slots
            .iter()
            .any(|(a, b)| (*a..=*b).any(|slot| !progress.is_done(slot)))
    })?;
    progress.node = Some((next.id(), slots_fingerprint(&next.slots)));
    Some((next, true))
}

/// A fingerprint of a primary's slot ranges: a listing that finds it changed walks the
/// node again.
fn slots_fingerprint(slots: &[(u16, u16)]) -> u64 {
    slots.iter().fold(0xcbf2_9ce4_8422_2325, |hash, (a, b)| {
        let mixed = (hash ^ u64::from(*a)).wrapping_mul(0x100_0000_01b3);
        (mixed ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Groups Redis keys by hash slot.
fn by_slot<K: AsRef<[u8]>>(keys: impl Iterator<Item = K>) -> BTreeMap<u16, Vec<K>> {
    let mut groups: BTreeMap<u16, Vec<K>> = BTreeMap::new();
    for key in keys {
        groups.entry(hash_slot(key.as_ref())).or_default().push(key);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_argument_is_the_redis_key() {
        let ks = Keyspace::new("app:");
        let key = CacheKey::new("user:1".into(), 1024).unwrap();
        let mut cmd = command("GET", 1, KeyArg::new(&ks, &key).len());
        cmd.arg(KeyArg::new(&ks, &key));
        let args: Vec<Vec<u8>> = cmd
            .args_iter()
            .filter_map(|arg| match arg {
                redis::Arg::Simple(bytes) => Some(bytes.to_vec()),
                _ => None,
            })
            .collect();
        assert_eq!(args, [b"GET".to_vec(), ks.redis_key(key.as_str())]);
    }
}
