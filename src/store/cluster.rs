//! Cluster mode: links to a Redis Cluster, and the operations that must reach every primary
//! or respect hash slots.
//!
//! redis-rs routes single-key commands by slot, follows MOVED/ASK, retries TRYAGAIN and
//! CLUSTERDOWN within `REDIS_COMMAND_TIMEOUT_MS` (its overall response timeout), splits
//! MGET/UNLINK per slot, and refuses a multi-slot pipeline before sending it. What it leaves
//! to us: keyless commands (SCAN, INFO, PING) go to one random node, so they are routed to
//! each primary here, from the slot map that `CLUSTER SLOTS` reports.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{AsyncConnectionConfig, Cmd, FromRedisValue, RedisError, RedisResult, Value};

use super::errors::needs_new_connection;
use super::lanes::{push_sender_to, Connect, LossSignal, PushSink};
use super::link::Link;
use crate::config::{node_url_with, NodeAddress, RedisConfig, Secret};

/// Hash slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// The hash slot of a key as Redis computes it: CRC16 of the key, or of its hash tag (the
/// first `{...}` with something inside).
pub fn hash_slot(key: &[u8]) -> u16 {
    let tag = key.iter().position(|b| *b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        let close = rest.iter().position(|b| *b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16::State::<crc16::XMODEM>::calculate(tag.unwrap_or(key)) % SLOTS
}

pub struct ClusterConnector {
    client: ClusterClient,
    /// The seed URLs and connect timeout again, for the subscription link's own client (a
    /// push sender is fixed when a cluster client is built).
    urls: Vec<String>,
    connect_timeout: std::time::Duration,
    seeds: String,
}

impl ClusterConnector {
    pub fn new(config: &RedisConfig, seeds: &[NodeAddress]) -> Result<Self, String> {
        let urls: Vec<String> = seeds
            .iter()
            .map(|node| {
                node_url_with(
                    &node.host,
                    node.port,
                    config.username.as_deref(),
                    config.password.as_ref(),
                    0,
                    config.tls,
                )
            })
            .collect();
        // Every request, redirects and retries included, must end within the command
        // timeout: the overall timeout bounds redis-rs's retry loop, the lanes bound the rest.
        let client = ClusterClient::builder(urls.clone())
            .connection_timeout(config.connect_timeout)
            .response_timeout(config.command_timeout)
            .overall_response_timeout(Some(config.command_timeout))
            .min_retry_wait(10)
            .max_retry_wait(200)
            .build()
            .map_err(|e| format!("REDIS_CLUSTER_NODES is invalid: {}", e.category()))?;
        Ok(Self {
            client,
            urls,
            connect_timeout: config.connect_timeout,
            seeds: seeds
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
        })
    }
}

impl Connect for ClusterConnector {
    fn connect(
        &self,
        _loss: LossSignal,
    ) -> Pin<Box<dyn Future<Output = Result<Link, RedisError>> + Send + '_>> {
        // A cluster link reconnects to failed nodes by itself: it is never reported lost.
        Box::pin(async move { Ok(Link::Cluster(self.client.get_async_connection().await?)) })
    }

    fn connect_subscriber(
        &self,
        pushes: PushSink,
    ) -> Pin<Box<dyn Future<Output = Result<Link, RedisError>> + Send + '_>> {
        Box::pin(async move {
            // RESP3 for pushes; redis-rs resubscribes sharded channels after a topology change.
            let client = ClusterClient::builder(self.urls.clone())
                .connection_timeout(self.connect_timeout)
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(push_sender_to(pushes))
                .build()?;
            Ok(Link::Cluster(client.get_async_connection().await?))
        })
    }

    fn describe(&self) -> String {
        format!("cluster of seed nodes {}", self.seeds)
    }
}

/// A primary and the slots it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Primary {
    pub address: NodeAddress,
    /// Inclusive ranges, sorted.
    pub slots: Vec<(u16, u16)>,
}

impl Primary {
    pub fn id(&self) -> String {
        self.address.to_string()
    }

    pub fn first_slot(&self) -> u16 {
        self.slots.first().map_or(u16::MAX, |r| r.0)
    }
}

fn cluster_connection(link: Link) -> Result<ClusterConnection, RedisError> {
    match link {
        Link::Cluster(connection) => Ok(connection),
        Link::Single(_) => Err(RedisError::from((
            redis::ErrorKind::Client,
            "a cluster operation on a standalone link",
        ))),
    }
}

/// The primaries and their slots, from `CLUSTER SLOTS` on any node, sorted by first slot.
pub async fn primaries(link: Link) -> Result<Vec<Primary>, RedisError> {
    let mut connection = cluster_connection(link)?;
    let reply = connection
        .route_command(
            redis::cmd("CLUSTER").arg("SLOTS").clone(),
            RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random),
        )
        .await?;
    Ok(parse_cluster_slots(&reply))
}

/// `CLUSTER SLOTS`: `[[start, end, [host, port, id, ...], replicas...], ...]`.
fn parse_cluster_slots(reply: &Value) -> Vec<Primary> {
    let mut primaries: Vec<Primary> = Vec::new();
    let Value::Array(ranges) = reply else {
        return primaries;
    };
    for range in ranges {
        let Value::Array(fields) = range else {
            continue;
        };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(node))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            continue;
        };
        let host = match node.first() {
            Some(Value::BulkString(bytes)) => String::from_utf8_lossy(bytes).into_owned(),
            Some(Value::SimpleString(text)) => text.clone(),
            _ => continue,
        };
        let Some(Value::Int(port)) = node.get(1) else {
            continue;
        };
        let (Ok(start), Ok(end), Ok(port)) = (
            u16::try_from(*start),
            u16::try_from(*end),
            u16::try_from(*port),
        ) else {
            continue;
        };
        let address = NodeAddress { host, port };
        match primaries.iter_mut().find(|p| p.address == address) {
            Some(primary) => primary.slots.push((start, end)),
            None => primaries.push(Primary {
                address,
                slots: vec![(start, end)],
            }),
        }
    }
    for primary in &mut primaries {
        primary.slots.sort_unstable();
    }
    primaries.sort_by_key(Primary::first_slot);
    primaries
}

/// Connections of their own to single nodes of the cluster, for the commands that must reach
/// one given node (a primary's SCAN, a node's INFO or CLUSTER INFO).
///
/// Routed by address through redis-rs's cluster client instead, such a command made that
/// client reconnect to every seed node whenever it held no open connection to the address,
/// and hold all of the link's requests meanwhile: with a hung seed node (a frozen primary)
/// for as long as it hung, so reads of keys on live primaries timed out too.
pub struct NodeLinks {
    username: Option<String>,
    password: Option<Secret>,
    tls: bool,
    connect_timeout: Duration,
    links: Mutex<HashMap<String, MultiplexedConnection>>,
}

impl NodeLinks {
    pub fn new(config: &RedisConfig) -> Self {
        Self {
            username: config.username.clone(),
            password: config.password.clone(),
            tls: config.tls,
            connect_timeout: config.connect_timeout,
            links: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `cmd` (a read: safe to repeat) on `node`, over the connection kept for it, made
    /// on first use. A kept connection that fails (the node restarted) is replaced and the
    /// command sent once more; a new one that fails is dropped.
    pub async fn query<T: FromRedisValue>(&self, node: &NodeAddress, cmd: &Cmd) -> RedisResult<T> {
        let name = node.to_string();
        let cached = self.lock().get(&name).cloned();
        if let Some(mut link) = cached {
            let result = cmd.query_async(&mut link).await;
            if !result.as_ref().is_err_and(needs_new_connection) {
                return result;
            }
            self.lock().remove(&name);
        }
        let mut link = self.connect(node).await?;
        let result = cmd.query_async(&mut link).await;
        if !result.as_ref().is_err_and(needs_new_connection) {
            self.lock().insert(name, link);
        }
        result
    }

    async fn connect(&self, node: &NodeAddress) -> RedisResult<MultiplexedConnection> {
        let url = node_url_with(
            &node.host,
            node.port,
            self.username.as_deref(),
            self.password.as_ref(),
            0,
            self.tls,
        );
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connect_timeout))
            .set_response_timeout(None);
        redis::Client::open(url)?
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, MultiplexedConnection>> {
        // A panic while holding the map leaves it consistent: every entry is a whole link.
        self.links.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_redis() {
        // Values from CLUSTER KEYSLOT on Redis 7.
        assert_eq!(hash_slot(b"foo"), 12182);
        assert_eq!(hash_slot(b"bar"), 5061);
        assert_eq!(hash_slot(b"{user:1}:profile"), hash_slot(b"user:1"));
        assert_eq!(hash_slot(b"{user:1}:prefs"), hash_slot(b"{user:1}:profile"));
        // An empty tag does not count: the whole key is hashed.
        assert_ne!(hash_slot(b"{}foo"), hash_slot(b"foo"));
        assert_eq!(hash_slot(b"a{foo}b{bar}"), 12182);
    }

    #[test]
    fn cluster_slots_replies_are_parsed() {
        let node = |host: &str, port: i64| {
            Value::Array(vec![
                Value::BulkString(host.as_bytes().to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(10923),
                Value::Int(16383),
                node("127.0.0.1", 7002),
            ]),
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("127.0.0.1", 7000),
                node("127.0.0.1", 7003),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(10922),
                node("127.0.0.1", 7001),
            ]),
            Value::Array(vec![Value::Int(16383), Value::Int(99999), node("x", 1)]),
        ]);
        let primaries = parse_cluster_slots(&reply);
        assert_eq!(primaries.len(), 3);
        assert_eq!(primaries[0].address.port, 7000);
        assert_eq!(primaries[0].slots, vec![(0, 5460)]);
        assert_eq!(primaries[2].id(), "127.0.0.1:7002");
    }
}
