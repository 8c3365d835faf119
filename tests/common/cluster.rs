//! A real Redis Cluster per test: 3 primaries and 3 replicas from Debian's `redis-server`, on
//! free 127.0.0.1 ports, each node in its own temporary directory, every process killed on drop.

use std::time::{Duration, Instant};

use super::{free_port, RedisServer};

const NODES: usize = 6;
const SLOTS: u16 = 16384;
/// Forming takes about 2 s here; generous for a loaded 2-core machine.
const READY_WITHIN: Duration = Duration::from_secs(40);
/// A failover takes about 1.5-2 s with a 1000 ms node timeout.
const FAILOVER_WITHIN: Duration = Duration::from_secs(30);
const POLL_EVERY: Duration = Duration::from_millis(50);

/// The flags that make a failover fast and reliable (see STACK-NOTES "Redis Cluster"); the
/// node timeout (`--cluster-node-timeout`) comes after them.
const NODE_ARGS: [&str; 8] = [
    "--cluster-enabled",
    "yes",
    "--cluster-config-file",
    "nodes.conf",
    "--cluster-replica-validity-factor",
    "0",
    "--repl-diskless-sync-delay",
    "0",
];

/// How long a node may not answer before the cluster starts failing it over.
const NODE_TIMEOUT_MS: u32 = 1000;

/// One line of `CLUSTER NODES`, as a node sees another (or itself).
#[derive(Debug, Clone)]
pub struct NodeView {
    pub id: String,
    pub port: u16,
    pub flags: Vec<String>,
    pub slots: Vec<(u16, u16)>,
}

impl NodeView {
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }
}

/// Parses `CLUSTER NODES`; slot ranges being migrated (`[...]`) are skipped.
pub fn parse_cluster_nodes(text: &str) -> Vec<NodeView> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let address = fields.get(1)?;
            let port = address.split(['@', ',']).next()?.rsplit(':').next()?;
            Some(NodeView {
                id: fields.first()?.to_string(),
                port: port.parse().ok()?,
                flags: fields.get(2)?.split(',').map(str::to_string).collect(),
                slots: fields
                    .iter()
                    .skip(8)
                    .filter(|s| !s.starts_with('['))
                    .filter_map(|s| parse_slot_range(s))
                    .collect(),
            })
        })
        .collect()
}

fn parse_slot_range(text: &str) -> Option<(u16, u16)> {
    match text.split_once('-') {
        Some((start, end)) => Some((start.parse().ok()?, end.parse().ok()?)),
        None => text.parse().ok().map(|slot| (slot, slot)),
    }
}

/// A slot map: `(first slot, last slot, port of the primary serving them)`, sorted.
pub type SlotMap = Vec<(u16, u16, u16)>;

pub fn slot_map_of(view: &[NodeView]) -> SlotMap {
    let mut map: SlotMap = view
        .iter()
        .filter(|node| node.has_flag("master"))
        .flat_map(|node| node.slots.iter().map(|&(a, b)| (a, b, node.port)))
        .collect();
    map.sort_unstable();
    map
}

/// A Redis Cluster owned by one test: 3 primaries, one replica each.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    killed_at: Option<Instant>,
}

impl RedisCluster {
    /// Starts and forms the cluster; ready when every node says `cluster_state:ok`, every
    /// replica's link is up and all nodes agree on the slot map. A start that fails (e.g. a
    /// port taken by another test in between) is retried once on new ports.
    pub fn start() -> Self {
        Self::start_with_node_timeout(NODE_TIMEOUT_MS)
    }

    /// A cluster whose nodes wait `node_timeout_ms` for a silent node before failing it over.
    pub fn start_with_node_timeout(node_timeout_ms: u32) -> Self {
        Self::try_start(node_timeout_ms).unwrap_or_else(|first| {
            eprintln!("the test cluster did not start, retrying once: {first}");
            Self::try_start(node_timeout_ms).unwrap_or_else(|second| {
                panic!("the test cluster did not start twice.\nFirst: {first}\nThen: {second}")
            })
        })
    }

    fn try_start(node_timeout_ms: u32) -> Result<Self, String> {
        let mut nodes = Vec::with_capacity(NODES);
        let node_timeout = node_timeout_ms.to_string();
        for _ in 0..NODES {
            // An explicit bus port: the default (port + 10000) may be taken or above 65535.
            let bus_port = free_port().to_string();
            let mut args = NODE_ARGS.to_vec();
            args.extend(["--cluster-node-timeout", &node_timeout]);
            args.extend(["--cluster-port", &bus_port]);
            nodes.push(RedisServer::try_start_with(&args)?);
        }
        let cluster = Self {
            nodes,
            killed_at: None,
        };
        cluster.create()?;
        cluster.wait_until_formed()?;
        Ok(cluster)
    }

    fn create(&self) -> Result<(), String> {
        let addresses: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let log_path = self.nodes[0].dir().join("cluster-create.log");
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let log_for_stderr = log.try_clone().map_err(|e| e.to_string())?;
        let mut child = std::process::Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(log)
            .stderr(log_for_stderr)
            .spawn()
            .map_err(|e| format!("cannot run redis-cli (Debian package redis-tools): {e}"))?;
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                break status;
            }
            if started.elapsed() > READY_WITHIN {
                let _ = child.kill();
                let _ = child.wait();
                break std::process::ExitStatus::default();
            }
            std::thread::sleep(POLL_EVERY);
        };
        let output = std::fs::read_to_string(&log_path).unwrap_or_default();
        if status.success() && output.contains("[OK] All 16384 slots covered") {
            Ok(())
        } else {
            Err(format!(
                "redis-cli --cluster create failed ({status}):\n{output}\n{}",
                self.logs()
            ))
        }
    }

    /// Every node's log, for a failure message.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|node| {
                let log = node.log();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("--- node {} ---\n{}\n", node.port, tail.join("\n"))
            })
            .collect()
    }

    fn live_nodes(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes
            .iter()
            .filter(|n| n.is_running() && !n.is_frozen())
    }

    fn is_live(&self, port: u16) -> bool {
        self.live_nodes().any(|n| n.port == port)
    }

    /// What is still wrong, or `None` when every live node says `cluster_state:ok`, every live
    /// replica's link is up, all live nodes see the same slot map, every slot is served by a
    /// live primary, and no live node is seen failing or half-known.
    fn problem(&self) -> Option<String> {
        let mut agreed: Option<SlotMap> = None;
        for node in self.live_nodes() {
            let port = node.port;
            let info: String = match node.query(redis::cmd("CLUSTER").arg("INFO")) {
                Ok(info) => info,
                Err(e) => return Some(format!("node {port}: {e}")),
            };
            let state = super::parse_fields(&info, ':');
            if state.get("cluster_state").map(String::as_str) != Some("ok") {
                return Some(format!("node {port}: cluster_state is not ok"));
            }
            let text: String = match node.query(redis::cmd("CLUSTER").arg("NODES")) {
                Ok(text) => text,
                Err(e) => return Some(format!("node {port}: {e}")),
            };
            let view = parse_cluster_nodes(&text);
            if view.len() != self.nodes.len() {
                return Some(format!("node {port} knows {} nodes", view.len()));
            }
            if let Some(bad) = view.iter().find(|n| {
                ["handshake", "noaddr"].iter().any(|f| n.has_flag(f))
                    || (self.is_live(n.port) && (n.has_flag("fail") || n.has_flag("fail?")))
            }) {
                return Some(format!("node {port} sees {} as {:?}", bad.port, bad.flags));
            }
            let is_replica = view
                .iter()
                .any(|n| n.has_flag("myself") && n.has_flag("slave"));
            if is_replica
                && node
                    .info("replication")
                    .get("master_link_status")
                    .map(String::as_str)
                    != Some("up")
            {
                return Some(format!("replica {port}: link to its primary is not up"));
            }
            let map = slot_map_of(&view);
            if let Some(problem) = self.coverage_problem(&map) {
                return Some(format!("node {port}: {problem}"));
            }
            match &agreed {
                Some(first) if *first != map => {
                    return Some(format!("node {port} disagrees on the slot map: {map:?}"))
                }
                _ => agreed = Some(map),
            }
        }
        None
    }

    fn coverage_problem(&self, map: &SlotMap) -> Option<String> {
        let mut next = 0u32;
        for &(start, end, port) in map {
            if u32::from(start) != next {
                return Some(format!("slot {next} is not served"));
            }
            if !self.is_live(port) {
                return Some(format!(
                    "slots {start}-{end} are served by dead node {port}"
                ));
            }
            next = u32::from(end) + 1;
        }
        (next != u32::from(SLOTS)).then(|| format!("slot {next} is not served"))
    }

    fn wait_until_healthy(&self, within: Duration, what: &str) -> Result<Duration, String> {
        let started = Instant::now();
        loop {
            let Some(problem) = self.problem() else {
                return Ok(started.elapsed());
            };
            if started.elapsed() > within {
                return Err(format!(
                    "the test cluster {what} not within {within:?}: {problem}\n{}",
                    self.logs()
                ));
            }
            std::thread::sleep(POLL_EVERY);
        }
    }

    fn wait_until_formed(&self) -> Result<Duration, String> {
        self.wait_until_healthy(READY_WITHIN, "formed")
    }

    /// `127.0.0.1:p1,127.0.0.1:p2,...` of every node, for `REDIS_CLUSTER_NODES`.
    pub fn seeds(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The node on `port` (panics on a port that is not one of this cluster's).
    pub fn node(&self, port: u16) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("port {port} is not a node of this cluster"))
    }

    fn node_mut(&mut self, port: u16) -> &mut RedisServer {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("port {port} is not a node of this cluster"))
    }

    /// The slot map as the first live node that answers sees it.
    pub fn slot_map(&self) -> SlotMap {
        self.live_nodes()
            .find_map(|node| {
                node.query::<String>(redis::cmd("CLUSTER").arg("NODES"))
                    .ok()
            })
            .map(|text| slot_map_of(&parse_cluster_nodes(&text)))
            .expect("no node of the test cluster answers")
    }

    /// The ports of the primaries that serve slots, sorted.
    pub fn primary_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self.slot_map().iter().map(|&(_, _, p)| p).collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// The ports of the live nodes that say they are replicas, sorted.
    pub fn replica_ports(&self) -> Vec<u16> {
        self.live_nodes()
            .filter(|n| n.info("replication").get("role").map(String::as_str) == Some("slave"))
            .map(|n| n.port)
            .collect()
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`).
    pub fn slot_of(&self, key: &str) -> u16 {
        self.live_nodes()
            .find_map(|n| n.query(redis::cmd("CLUSTER").arg("KEYSLOT").arg(key)).ok())
            .expect("no node of the test cluster answers CLUSTER KEYSLOT")
    }

    /// The port of the primary serving `key`'s slot.
    pub fn primary_of_key(&self, key: &str) -> u16 {
        let slot = self.slot_of(key);
        self.slot_map()
            .iter()
            .find(|&&(start, end, _)| (start..=end).contains(&slot))
            .map(|&(_, _, port)| port)
            .unwrap_or_else(|| panic!("no primary serves slot {slot}"))
    }

    /// Kills a primary (SIGKILL, like a crash) and returns once it has exited; the failover
    /// clock of `wait_until_failed_over` starts here.
    pub fn kill_primary(&mut self, port: u16) {
        assert!(
            self.primary_ports().contains(&port),
            "{port} is not a primary serving slots"
        );
        self.kill_node(port);
    }

    /// Kills any node (SIGKILL) and returns once it has exited.
    pub fn kill_node(&mut self, port: u16) {
        self.node_mut(port).stop();
        self.killed_at = Some(Instant::now());
    }

    /// Starts a killed node again on its port, with its `nodes.conf`: it rejoins the cluster
    /// (a former primary comes back as a replica). Returns once it answers.
    pub fn restart_node(&mut self, port: u16) {
        let node = self.node_mut(port);
        node.stop();
        node.spawn();
    }

    /// Waits until the cluster serves every slot again from live primaries, as every live node
    /// sees it (`cluster_state:ok` everywhere, one agreed slot map). Returns the time since the
    /// last kill (or since the call when nothing was killed); panics with the logs after 30 s.
    pub fn wait_until_failed_over(&self) -> Duration {
        let since = self.killed_at.unwrap_or_else(Instant::now);
        self.wait_until_healthy(FAILOVER_WITHIN, "failed over")
            .unwrap_or_else(|e| panic!("{e}"));
        since.elapsed()
    }

    /// Stops every node (SIGKILL) and starts them all again on the same ports, each with the
    /// `nodes.conf` kept in its temporary directory: the same cluster re-forms (same node ids
    /// and slots), EMPTY (nothing is persisted). Returns once it is healthy again.
    pub fn restart_all(&mut self) -> Duration {
        let started = Instant::now();
        for node in &mut self.nodes {
            node.stop();
        }
        for node in &mut self.nodes {
            node.spawn();
        }
        self.wait_until_formed().unwrap_or_else(|e| panic!("{e}"));
        started.elapsed()
    }

    /// Freezes a node (SIGSTOP): its connections stay open, nothing answers.
    pub fn freeze(&self, port: u16) {
        self.node(port).freeze();
    }

    pub fn thaw(&self, port: u16) {
        self.node(port).thaw();
    }

    /// Runs `redis-cli` against one node (no redirects followed).
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        self.node(port).cli(args)
    }

    /// A cluster client, bounded, seeded with every node.
    pub fn client(&self) -> redis::cluster::ClusterClient {
        redis::cluster::ClusterClient::builder(self.nodes.iter().map(|n| n.url()))
            .connection_timeout(Duration::from_secs(1))
            .response_timeout(Duration::from_secs(5))
            .build()
            .expect("cannot build a cluster client")
    }

    /// A connection that reaches any key (redis-rs follows MOVED/ASK and splits multi-key
    /// commands per slot), for test assertions.
    pub fn connection(&self) -> redis::cluster::ClusterConnection {
        self.client()
            .get_connection()
            .expect("cannot connect to the test cluster")
    }

    /// The node holding `key` (its primary).
    pub fn node_of_key(&self, key: &str) -> &RedisServer {
        self.node(self.primary_of_key(key))
    }
}
