//! One test suite on every Redis topology: a standalone server, a cluster, a Sentinel group.
//! `Topology` gives cachegate's variables for each and raw access to what Redis holds.

use super::cluster::RedisCluster;
use super::sentinel::SentinelGroup;
use super::RedisServer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopologyKind {
    Standalone,
    Cluster,
    Sentinel,
}

impl TopologyKind {
    pub const ALL: [TopologyKind; 3] = [Self::Standalone, Self::Cluster, Self::Sentinel];

    pub fn start(self) -> Topology {
        match self {
            Self::Standalone => Topology::Standalone(RedisServer::start()),
            Self::Cluster => Topology::Cluster(RedisCluster::start()),
            Self::Sentinel => Topology::Sentinel(SentinelGroup::start()),
        }
    }
}

pub enum Topology {
    Standalone(RedisServer),
    Cluster(RedisCluster),
    Sentinel(SentinelGroup),
}

impl Topology {
    pub fn kind(&self) -> TopologyKind {
        match self {
            Self::Standalone(_) => TopologyKind::Standalone,
            Self::Cluster(_) => TopologyKind::Cluster,
            Self::Sentinel(_) => TopologyKind::Sentinel,
        }
    }

    /// The environment that points cachegate at this topology (see API.md "Redis topologies").
    pub fn cachegate_vars(&self) -> Vec<(String, String)> {
        let var = |name: &str, value: String| (name.to_string(), value);
        match self {
            Self::Standalone(server) => vec![var("REDIS_URL", server.authed_url())],
            Self::Cluster(cluster) => vec![
                var("REDIS_MODE", "cluster".into()),
                var("REDIS_CLUSTER_NODES", cluster.seeds()),
            ],
            Self::Sentinel(group) => {
                let mut vars = vec![
                    var("REDIS_MODE", "sentinel".into()),
                    var("REDIS_SENTINELS", group.sentinels()),
                    var("REDIS_SENTINEL_MASTER", group.master_name().into()),
                ];
                if let Some(password) = group.data_password() {
                    vars.push(var("REDIS_PASSWORD", password.into()));
                }
                if let Some(password) = group.sentinel_password() {
                    vars.push(var("REDIS_SENTINEL_PASSWORD", password.into()));
                }
                vars
            }
        }
    }

    /// The node that holds `key`: the server, the key's primary in the cluster, the primary
    /// the Sentinels name.
    pub fn node_of_key(&self, key: &str) -> &RedisServer {
        match self {
            Self::Standalone(server) => server,
            Self::Cluster(cluster) => cluster.node_of_key(key),
            Self::Sentinel(group) => group.primary(),
        }
    }

    /// Runs `cmd` (which touches `key`, or only keys in its slot) on the node holding `key`.
    pub fn cmd<T: redis::FromRedisValue>(&self, key: &str, cmd: &redis::Cmd) -> T {
        self.node_of_key(key)
            .query(cmd)
            .unwrap_or_else(|e| panic!("{cmd:?} on the node of {key:?} failed: {e}"))
    }

    /// A connection that reaches any key (a cluster connection in cluster mode), e.g. for
    /// multi-key commands across slots.
    pub fn connection(&self) -> Box<dyn redis::ConnectionLike> {
        match self {
            Self::Standalone(server) => Box::new(server.connection()),
            Self::Cluster(cluster) => Box::new(cluster.connection()),
            Self::Sentinel(group) => Box::new(group.connection_to_primary()),
        }
    }

    /// Runs `cmd` through `connection()` (any keys, routed per slot in a cluster).
    pub fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> T {
        cmd.query(&mut *self.connection())
            .unwrap_or_else(|e| panic!("{cmd:?} failed: {e}"))
    }

    pub fn raw_get(&self, key: &str) -> Option<String> {
        self.cmd(key, redis::cmd("GET").arg(key))
    }

    pub fn raw_set(&self, key: &str, value: &str) {
        let () = self.cmd(key, redis::cmd("SET").arg(key).arg(value));
    }

    /// `TTL` in seconds: -1 without expiry, -2 when absent.
    pub fn ttl_of(&self, key: &str) -> i64 {
        self.cmd(key, redis::cmd("TTL").arg(key))
    }

    pub fn exists(&self, key: &str) -> bool {
        self.cmd(key, redis::cmd("EXISTS").arg(key))
    }
}
