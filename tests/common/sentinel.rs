//! A real Sentinel setup per test: one primary, 2 replicas and 3 Sentinels watching it, from
//! Debian's `redis-server` alone (`redis-server sentinel.conf --sentinel`), on free 127.0.0.1
//! ports, each process in its own temporary directory, every process killed on drop.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::RedisServer;

const MASTER_NAME: &str = "cachegate";
const REPLICAS: usize = 2;
const SENTINELS: usize = 3;
/// Sentinels find each other through hello messages every 2 s; generous for a loaded machine.
const READY_WITHIN: Duration = Duration::from_secs(40);
/// Sentinel announces a new primary about 2.3 s after a kill with these settings.
const FAILOVER_WITHIN: Duration = Duration::from_secs(30);
const POLL_EVERY: Duration = Duration::from_millis(50);

/// A primary, its replicas and the Sentinels watching it, owned by one test.
pub struct SentinelGroup {
    data: Vec<RedisServer>,
    sentinels: Vec<RedisServer>,
    data_password: Option<String>,
    sentinel_password: Option<String>,
    killed_at: Option<Instant>,
}

impl SentinelGroup {
    pub fn start() -> Self {
        Self::start_with_auth(None, None)
    }

    /// `data_password`: `requirepass` + `masterauth` on the Redis nodes and `sentinel auth-pass`
    /// on the Sentinels (cachegate's `REDIS_PASSWORD`); `sentinel_password`: `requirepass` on
    /// the Sentinels themselves (`REDIS_SENTINEL_PASSWORD`). A start that fails (e.g. a port
    /// taken in between) is retried once on new ports.
    pub fn start_with_auth(data_password: Option<&str>, sentinel_password: Option<&str>) -> Self {
        let attempt = || Self::try_start(data_password, sentinel_password);
        attempt().unwrap_or_else(|first| {
            eprintln!("the Sentinel group did not start, retrying once: {first}");
            attempt().unwrap_or_else(|second| {
                panic!("the Sentinel group did not start twice.\nFirst: {first}\nThen: {second}")
            })
        })
    }

    fn try_start(
        data_password: Option<&str>,
        sentinel_password: Option<&str>,
    ) -> Result<Self, String> {
        let mut auth: Vec<&str> = Vec::new();
        if let Some(password) = data_password {
            auth.extend(["--requirepass", password, "--masterauth", password]);
        }
        let mut primary_args = vec!["--repl-diskless-sync-delay", "0"];
        primary_args.extend(&auth);
        let primary = RedisServer::try_start_with(&primary_args)?;
        let primary_port = primary.port.to_string();
        let mut data = vec![primary];
        for _ in 0..REPLICAS {
            let mut args = vec!["--replicaof", "127.0.0.1", &primary_port];
            args.extend(&primary_args);
            data.push(RedisServer::try_start_with(&args)?);
        }
        let mut group = Self {
            data,
            sentinels: Vec::new(),
            data_password: data_password.map(str::to_string),
            sentinel_password: sentinel_password.map(str::to_string),
            killed_at: None,
        };
        // Sentinels learn the replicas from the primary's INFO when they connect: start them
        // once the replicas are attached, or they would only see them 10 s later.
        group.wait_until(READY_WITHIN, "replicated", Self::replication_problem)?;
        let conf = group.sentinel_conf(&primary_port);
        let sentinel_args: Vec<&str> = match sentinel_password {
            Some(password) => vec!["--requirepass", password],
            None => Vec::new(),
        };
        for _ in 0..SENTINELS {
            group
                .sentinels
                .push(RedisServer::try_start_sentinel(&conf, &sentinel_args)?);
        }
        group.wait_until(READY_WITHIN, "ready", Self::sentinel_problem)?;
        Ok(group)
    }

    fn sentinel_conf(&self, primary_port: &str) -> String {
        let mut conf = format!(
            "sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
             sentinel failover-timeout {MASTER_NAME} 5000\n\
             sentinel parallel-syncs {MASTER_NAME} {REPLICAS}\n"
        );
        if let Some(password) = &self.data_password {
            conf.push_str(&format!("sentinel auth-pass {MASTER_NAME} {password}\n"));
        }
        if let Some(password) = &self.sentinel_password {
            // The Sentinels talk to each other too, with the same password.
            conf.push_str(&format!("sentinel sentinel-pass {password}\n"));
        }
        conf
    }

    fn replication_problem(&self) -> Option<String> {
        let primary = &self.data[0];
        let connected = primary.info("replication").get("connected_slaves").cloned();
        if connected != Some(REPLICAS.to_string()) {
            return Some(format!("the primary has {connected:?} replicas"));
        }
        self.data[1..]
            .iter()
            .find(|r| {
                r.info("replication")
                    .get("master_link_status")
                    .map(String::as_str)
                    != Some("up")
            })
            .map(|r| format!("replica {}: link to the primary is not up", r.port))
    }

    /// `None` once every Sentinel sees the primary as up, its 2 replicas as linked, and the
    /// 2 other Sentinels.
    fn sentinel_problem(&self) -> Option<String> {
        for sentinel in &self.sentinels {
            let port = sentinel.port;
            let master = match sentinel_fields(sentinel, "MASTER") {
                Ok(master) => master,
                Err(e) => return Some(format!("Sentinel {port}: {e}")),
            };
            let field = |name: &str| master.get(name).map(String::as_str).unwrap_or("?");
            if field("flags") != "master"
                || field("num-slaves") != REPLICAS.to_string()
                || field("num-other-sentinels") != (SENTINELS - 1).to_string()
            {
                return Some(format!(
                    "Sentinel {port} sees the primary as {}, {} replicas, {} other Sentinels",
                    field("flags"),
                    field("num-slaves"),
                    field("num-other-sentinels")
                ));
            }
            let replicas: Vec<Vec<String>> =
                match sentinel.query(redis::cmd("SENTINEL").arg("REPLICAS").arg(MASTER_NAME)) {
                    Ok(replicas) => replicas,
                    Err(e) => return Some(format!("Sentinel {port}: {e}")),
                };
            for replica in replicas.iter().map(|r| pairs(r)) {
                if replica.get("flags").map(String::as_str) != Some("slave")
                    || replica.get("master-link-status").map(String::as_str) != Some("ok")
                {
                    return Some(format!("Sentinel {port} sees a replica as {replica:?}"));
                }
            }
        }
        None
    }

    fn wait_until(
        &self,
        within: Duration,
        what: &str,
        problem: fn(&Self) -> Option<String>,
    ) -> Result<(), String> {
        let started = Instant::now();
        loop {
            let Some(problem) = problem(self) else {
                return Ok(());
            };
            if started.elapsed() > within {
                return Err(format!(
                    "the Sentinel group was not {what} within {within:?}: {problem}\n{}",
                    self.logs()
                ));
            }
            std::thread::sleep(POLL_EVERY);
        }
    }

    /// Every process's log, for a failure message.
    pub fn logs(&self) -> String {
        self.data
            .iter()
            .map(|n| ("redis", n))
            .chain(self.sentinels.iter().map(|n| ("sentinel", n)))
            .map(|(kind, node)| {
                let log = node.log();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                format!("--- {kind} {} ---\n{tail}\n", node.port)
            })
            .collect()
    }

    /// `127.0.0.1:p,...` of the Sentinels, for `REDIS_SENTINELS`.
    pub fn sentinels(&self) -> String {
        self.sentinel_ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.port).collect()
    }

    /// The ports of the Redis nodes (primary and replicas), dead ones included.
    pub fn data_ports(&self) -> Vec<u16> {
        self.data.iter().map(|n| n.port).collect()
    }

    /// The name the Sentinels monitor, for `REDIS_SENTINEL_MASTER`.
    pub fn master_name(&self) -> &str {
        MASTER_NAME
    }

    pub fn data_password(&self) -> Option<&str> {
        self.data_password.as_deref()
    }

    pub fn sentinel_password(&self) -> Option<&str> {
        self.sentinel_password.as_deref()
    }

    /// The primary's port according to each Sentinel that answers (`None`: no answer).
    pub fn primary_port_by_sentinel(&self) -> Vec<Option<u16>> {
        self.sentinels
            .iter()
            .map(|sentinel| {
                let address: Vec<String> = sentinel
                    .query(
                        redis::cmd("SENTINEL")
                            .arg("GET-MASTER-ADDR-BY-NAME")
                            .arg(MASTER_NAME),
                    )
                    .ok()?;
                address.get(1)?.parse().ok()
            })
            .collect()
    }

    /// The primary's port as the first Sentinel that answers reports it.
    pub fn primary_port(&self) -> u16 {
        self.primary_port_by_sentinel()
            .into_iter()
            .flatten()
            .next()
            .expect("no Sentinel answers")
    }

    /// A Redis node (primary or replica) by port.
    pub fn node(&self, port: u16) -> &RedisServer {
        self.data
            .iter()
            .chain(&self.sentinels)
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("port {port} is not part of this Sentinel group"))
    }

    fn data_node_mut(&mut self, port: u16) -> &mut RedisServer {
        self.data
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("port {port} is not a Redis node of this group"))
    }

    /// The node the Sentinels name as primary.
    pub fn primary(&self) -> &RedisServer {
        self.node(self.primary_port())
    }

    /// Kills the primary (SIGKILL, like a crash), returns its port once it has exited; the
    /// clock of `wait_for_new_primary` starts here.
    pub fn kill_primary(&mut self) -> u16 {
        let port = self.primary_port();
        self.data_node_mut(port).stop();
        self.killed_at = Some(Instant::now());
        port
    }

    /// Starts a killed Redis node again on its port (empty); the Sentinels make it a replica
    /// of the current primary.
    pub fn restart_node(&mut self, port: u16) {
        let node = self.data_node_mut(port);
        node.stop();
        node.spawn();
    }

    /// Waits until all Sentinels name the same primary other than `old_port`, and that node
    /// says it is a primary. Returns it and the time since the kill; panics after 30 s.
    pub fn wait_for_new_primary(&self, old_port: u16) -> (u16, Duration) {
        let since = self.killed_at.unwrap_or_else(Instant::now);
        let started = Instant::now();
        loop {
            let named = self.primary_port_by_sentinel();
            if let Some(Some(port)) = named.first() {
                if *port != old_port
                    && named.iter().all(|p| *p == Some(*port))
                    && self
                        .node(*port)
                        .info("replication")
                        .get("role")
                        .map(String::as_str)
                        == Some("master")
                {
                    return (*port, since.elapsed());
                }
            }
            if started.elapsed() > FAILOVER_WITHIN {
                panic!(
                    "the Sentinels did not agree on a new primary within {FAILOVER_WITHIN:?} \
                     (they name {named:?}, the old one was {old_port})\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(POLL_EVERY);
        }
    }

    /// A direct connection to the primary the Sentinels name (authenticated if need be).
    pub fn connection_to_primary(&self) -> redis::Connection {
        self.primary().connection()
    }

    /// Runs `redis-cli` against a Redis node or a Sentinel (with its password, if any).
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        self.node(port).cli(args)
    }

    pub fn freeze(&self, port: u16) {
        self.node(port).freeze();
    }

    pub fn thaw(&self, port: u16) {
        self.node(port).thaw();
    }
}

/// `SENTINEL <what> cachegate` as `field -> value`.
fn sentinel_fields(
    sentinel: &RedisServer,
    what: &str,
) -> redis::RedisResult<HashMap<String, String>> {
    let flat: Vec<String> = sentinel.query(redis::cmd("SENTINEL").arg(what).arg(MASTER_NAME))?;
    Ok(pairs(&flat))
}

fn pairs(flat: &[String]) -> HashMap<String, String> {
    flat.chunks(2)
        .filter_map(|pair| Some((pair.first()?.clone(), pair.get(1)?.clone())))
        .collect()
}
