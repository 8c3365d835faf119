//! Parsing Redis `INFO` into the typed numbers of `/v1/stats`.

use redis::InfoDict;
use serde::Serialize;
use utoipa::ToSchema;

/// What `/v1/stats` reports about Redis.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RedisStats {
    #[schema(example = "7.0.15")]
    pub version: String,
    /// `standalone`, `cluster` or `sentinel`.
    #[schema(example = "standalone")]
    pub mode: String,
    pub uptime_seconds: u64,
    pub connected_clients: u64,
    pub used_memory_bytes: u64,
    #[schema(example = "1.00M")]
    pub used_memory_human: String,
    /// 0 when Redis has no memory limit.
    pub maxmemory_bytes: u64,
    #[schema(example = "allkeys-lru")]
    pub maxmemory_policy: String,
    /// used / max memory; null when Redis has no memory limit.
    pub memory_usage_ratio: Option<f64>,
    /// Keys in the configured database.
    pub keys: u64,
    /// Keys with an expiry in the configured database.
    pub expires: u64,
    pub evicted_keys: u64,
    pub expired_keys: u64,
    pub keyspace_hits: u64,
    pub keyspace_misses: u64,
    /// hits / (hits + misses); null while Redis has counted no lookup.
    pub hit_rate: Option<f64>,
    /// Cluster mode: every node the cluster reports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<NodeStats>>,
}

/// One node of a Redis Cluster, in `/v1/stats`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct NodeStats {
    #[schema(example = "10.0.0.5:6379")]
    pub address: String,
    /// `primary` or `replica`.
    #[schema(example = "primary")]
    pub role: &'static str,
    pub connected: bool,
    pub keys: u64,
    pub used_memory_bytes: u64,
}

/// A node of `CLUSTER NODES`: its address and whether it is a primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    pub address: String,
    pub primary: bool,
}

/// Parses `CLUSTER NODES`: `<id> <ip:port@cport[,hostname]> <flags> ...` per line; nodes
/// flagged `noaddr` or `handshake` are skipped.
pub fn parse_cluster_nodes(text: &str) -> Vec<ClusterNode> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _id = fields.next()?;
            let address = fields.next()?.split(['@', ',']).next()?.to_string();
            let flags = fields.next()?;
            let flag = |f: &str| flags.split(',').any(|x| x == f);
            if flag("noaddr") || flag("handshake") || address.starts_with(':') {
                return None;
            }
            Some(ClusterNode {
                address,
                primary: flag("master"),
            })
        })
        .collect()
}

/// Totals over the primaries (figures are summed; version, policy and uptime come from the
/// first primary that answered), and every node as it answered (`None`: it did not).
pub fn cluster_stats(nodes: &[(ClusterNode, Option<String>)]) -> RedisStats {
    let mut parsed: Vec<(&ClusterNode, Option<RedisStats>)> = nodes
        .iter()
        .map(|(node, text)| (node, text.as_deref().map(|t| parse_info(t, 0))))
        .collect();
    parsed.sort_by(|a, b| {
        b.0.primary
            .cmp(&a.0.primary)
            .then(a.0.address.cmp(&b.0.address))
    });
    let primaries: Vec<&RedisStats> = parsed
        .iter()
        .filter(|(node, _)| node.primary)
        .filter_map(|(_, stats)| stats.as_ref())
        .collect();
    let sum = |f: fn(&RedisStats) -> u64| primaries.iter().map(|s| f(s)).sum::<u64>();
    let first = primaries.first();
    let used = sum(|s| s.used_memory_bytes);
    let max = sum(|s| s.maxmemory_bytes);
    let hits = sum(|s| s.keyspace_hits);
    let misses = sum(|s| s.keyspace_misses);
    RedisStats {
        version: first.map(|s| s.version.clone()).unwrap_or_default(),
        mode: "cluster".into(),
        uptime_seconds: primaries
            .iter()
            .map(|s| s.uptime_seconds)
            .min()
            .unwrap_or(0),
        connected_clients: sum(|s| s.connected_clients),
        used_memory_bytes: used,
        used_memory_human: human_bytes(used),
        maxmemory_bytes: max,
        maxmemory_policy: first
            .map(|s| s.maxmemory_policy.clone())
            .unwrap_or_default(),
        memory_usage_ratio: (max > 0).then(|| used as f64 / max as f64),
        keys: sum(|s| s.keys),
        expires: sum(|s| s.expires),
        evicted_keys: sum(|s| s.evicted_keys),
        expired_keys: sum(|s| s.expired_keys),
        keyspace_hits: hits,
        keyspace_misses: misses,
        hit_rate: hit_rate(hits, misses),
        nodes: Some(
            parsed
                .iter()
                .map(|(node, stats)| NodeStats {
                    address: node.address.clone(),
                    role: if node.primary { "primary" } else { "replica" },
                    connected: stats.is_some(),
                    keys: stats.as_ref().map_or(0, |s| s.keys),
                    used_memory_bytes: stats.as_ref().map_or(0, |s| s.used_memory_bytes),
                })
                .collect(),
        ),
    }
}

/// Bytes as Redis's `used_memory_human` writes them.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.2}{}", UNITS[unit])
    }
}

/// hits / (hits + misses), or None before the first lookup.
pub fn hit_rate(hits: u64, misses: u64) -> Option<f64> {
    let total = hits.saturating_add(misses);
    (total > 0).then(|| hits as f64 / total as f64)
}

/// Parses `INFO` output; missing fields read as zero or empty rather than failing stats.
pub fn parse_info(text: &str, db: i64) -> RedisStats {
    let info = InfoDict::new(text);
    let number = |name: &str| info.get::<u64>(name).unwrap_or(0);
    let text_field = |name: &str| info.get::<String>(name).unwrap_or_default();
    let (keys, expires) = info
        .get::<String>(&format!("db{db}"))
        .map(|line| parse_keyspace_line(&line))
        .unwrap_or((0, 0));
    let used = number("used_memory");
    let max = number("maxmemory");
    let hits = number("keyspace_hits");
    let misses = number("keyspace_misses");
    RedisStats {
        version: text_field("redis_version"),
        mode: text_field("redis_mode"),
        uptime_seconds: number("uptime_in_seconds"),
        connected_clients: number("connected_clients"),
        used_memory_bytes: used,
        used_memory_human: text_field("used_memory_human"),
        maxmemory_bytes: max,
        maxmemory_policy: text_field("maxmemory_policy"),
        memory_usage_ratio: (max > 0).then(|| used as f64 / max as f64),
        keys,
        expires,
        evicted_keys: number("evicted_keys"),
        expired_keys: number("expired_keys"),
        keyspace_hits: hits,
        keyspace_misses: misses,
        hit_rate: hit_rate(hits, misses),
        nodes: None,
    }
}

/// Parses the value of a `dbN:keys=..,expires=..,avg_ttl=..` line into (keys, expires).
pub fn parse_keyspace_line(line: &str) -> (u64, u64) {
    let mut keys = 0;
    let mut expires = 0;
    for pair in line.split(',') {
        match pair.trim().split_once('=') {
            Some(("keys", n)) => keys = n.trim().parse().unwrap_or(0),
            Some(("expires", n)) => expires = n.trim().parse().unwrap_or(0),
            _ => {}
        }
    }
    (keys, expires)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\nuptime_in_seconds:3600\r\n\r\n# Clients\r\nconnected_clients:4\r\n\r\n# Memory\r\nused_memory:1048576\r\nused_memory_human:1.00M\r\nmaxmemory:268435456\r\nmaxmemory_policy:allkeys-lru\r\n\r\n# Stats\r\nexpired_keys:12\r\nevicted_keys:0\r\nkeyspace_hits:900\r\nkeyspace_misses:100\r\n\r\n# Keyspace\r\ndb0:keys=150,expires=150,avg_ttl=0\r\ndb2:keys=7,expires=1,avg_ttl=10\r\n";

    #[test]
    fn parses_the_fields_of_stats() {
        let stats = parse_info(SAMPLE, 0);
        assert_eq!(stats.version, "7.0.15");
        assert_eq!(stats.mode, "standalone");
        assert_eq!(stats.uptime_seconds, 3600);
        assert_eq!(stats.connected_clients, 4);
        assert_eq!(stats.used_memory_bytes, 1_048_576);
        assert_eq!(stats.maxmemory_policy, "allkeys-lru");
        assert_eq!(stats.memory_usage_ratio, Some(1_048_576.0 / 268_435_456.0));
        assert_eq!((stats.keys, stats.expires), (150, 150));
        assert_eq!(stats.hit_rate, Some(0.9));
        assert_eq!(stats.expired_keys, 12);
    }

    #[test]
    fn reads_the_configured_database_only() {
        let stats = parse_info(SAMPLE, 2);
        assert_eq!((stats.keys, stats.expires), (7, 1));
        assert_eq!(parse_info(SAMPLE, 5).keys, 0);
    }

    #[test]
    fn no_limit_and_no_lookups_give_nulls() {
        let stats = parse_info(
            "maxmemory:0\r\nused_memory:10\r\nkeyspace_hits:0\r\nkeyspace_misses:0\r\n",
            0,
        );
        assert_eq!(stats.memory_usage_ratio, None);
        assert_eq!(stats.hit_rate, None);
    }

    #[test]
    fn garbage_does_not_panic() {
        let stats = parse_info("::::\r\ndb0:keys=x,expires\r\n\u{0}\r\nused_memory:-5", 0);
        assert_eq!(stats.keys, 0);
        assert_eq!(parse_keyspace_line("keys=3,,expires=2"), (3, 2));
        assert!(hit_rate(u64::MAX, 1).is_some());
    }

    #[test]
    fn cluster_nodes_and_totals() {
        let nodes = parse_cluster_nodes(
            "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
             b2 127.0.0.1:7003@17003,host slave a1 0 0 1 connected\n\
             c3 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-16383\n\
             d4 :0@0 master,noaddr - 0 0 0 disconnected\n",
        );
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[1].address, "127.0.0.1:7003");
        assert!(nodes[0].primary && !nodes[1].primary);
        let info = |keys: u64| Some(format!("used_memory:100\r\ndb0:keys={keys},expires=1\r\n"));
        let stats = cluster_stats(&[
            (nodes[0].clone(), info(5)),
            (nodes[1].clone(), info(5)),
            (nodes[2].clone(), None),
        ]);
        assert_eq!((stats.keys, stats.used_memory_bytes), (5, 100));
        let listed = stats.nodes.unwrap();
        assert_eq!(listed.len(), 3);
        assert!(listed
            .iter()
            .any(|n| n.address == "127.0.0.1:7001" && !n.connected));
        assert_eq!(listed.iter().filter(|n| n.role == "replica").count(), 1);
    }
}
