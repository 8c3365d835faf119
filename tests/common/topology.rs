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

impl Topology {
    /// How many keys the data nodes hold: `DBSIZE` of the server, summed over the cluster's
    /// primaries, of the Sentinels' primary.
    pub fn key_count(&self) -> i64 {
        match self {
            Self::Cluster(cluster) => cluster
                .primary_ports()
                .into_iter()
                .map(|port| {
                    cluster
                        .node(port)
                        .query::<i64>(&redis::cmd("DBSIZE"))
                        .unwrap_or_else(|e| panic!("DBSIZE on {port} failed: {e}"))
                })
                .sum(),
            _ => self.query(&redis::cmd("DBSIZE")),
        }
    }

    /// Writes `{prefix}0` .. `{prefix}{count - 1}` = `1` (600 s TTL) in pipelines of 1000
    /// (a cluster pipeline routes each command to its key's primary).
    pub fn preload(&self, prefix: &str, count: usize) {
        for start in (0..count).step_by(1000) {
            let keys = (start..count.min(start + 1000)).map(|i| format!("{prefix}{i}"));
            match self {
                Self::Cluster(cluster) => {
                    let mut pipe = redis::cluster::cluster_pipe();
                    for key in keys {
                        pipe.cmd("SET")
                            .arg(key)
                            .arg("1")
                            .arg("EX")
                            .arg(600)
                            .ignore();
                    }
                    pipe.query::<()>(&mut cluster.connection())
                        .unwrap_or_else(|e| panic!("preloading {prefix}* failed: {e}"));
                }
                _ => {
                    let mut pipe = redis::pipe();
                    for key in keys {
                        pipe.cmd("SET")
                            .arg(key)
                            .arg("1")
                            .arg("EX")
                            .arg(600)
                            .ignore();
                    }
                    pipe.query::<()>(&mut *self.connection())
                        .unwrap_or_else(|e| panic!("preloading {prefix}* failed: {e}"));
                }
            }
        }
    }
}

/// Starts a topology of `kind` (blocking, outside the runtime's reactor duties) and runs `test`
/// on it; the topology is dropped, its processes killed, when the test ends.
pub async fn run_on<F, Fut>(kind: TopologyKind, test: F)
where
    F: FnOnce(Topology) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let topology = tokio::task::block_in_place(|| kind.start());
    test(topology).await;
}

/// For each `async fn name(topology: Topology)` named, a module `name` holding one test per
/// topology, `name::standalone`, `name::cluster` and `name::sentinel`, each on its own topology
/// (run one with `cargo test name::cluster`). Write it just above the function:
/// `on_every_topology!(name);` (a module and a function may share a name).
#[macro_export]
macro_rules! on_every_topology {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            use $crate::common::topology::{run_on, TopologyKind};

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn standalone() {
                run_on(TopologyKind::Standalone, super::$name).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn cluster() {
                run_on(TopologyKind::Cluster, super::$name).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sentinel() {
                run_on(TopologyKind::Sentinel, super::$name).await;
            }
        }
    )+};
}
