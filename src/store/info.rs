//! Parsing Redis `INFO` into the typed numbers of `/v1/stats`.

use deadpool_redis::redis::InfoDict;
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
}
