//! What every request handler shares: the store, the limits, and the service's counters
//! (access control is shared beside it, as `web::Data<auth::Access>`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::config::Config;
use crate::keys::Ttl;
use crate::store::tags::TagCensus;
use crate::store::Store;

/// Size and TTL limits from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    pub max_batch_bytes: usize,
    pub max_ttl: u64,
    pub default_ttl: Ttl,
}

/// The service's own counters, reported by `/v1/stats`, with the handles of the matching
/// Prometheus counters (registered once: a lookup by name and labels on every request costs
/// a hash and an allocation).
pub struct Counters {
    pub requests: AtomicU64,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub errors: AtomicU64,
    hit_metric: metrics::Counter,
    miss_metric: metrics::Counter,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            requests: AtomicU64::default(),
            hits: AtomicU64::default(),
            misses: AtomicU64::default(),
            errors: AtomicU64::default(),
            hit_metric: metrics::counter!("cachegate_cache_lookups_total", "result" => "hit"),
            miss_metric: metrics::counter!("cachegate_cache_lookups_total", "result" => "miss"),
        }
    }
}

impl Counters {
    /// Counts one key lookup (GET, HEAD, each key of a batch get).
    pub fn lookup(&self, hit: bool) {
        if hit {
            self.lookups(1, 0);
        } else {
            self.lookups(0, 1);
        }
    }

    pub fn lookups(&self, hits: u64, misses: u64) {
        if hits > 0 {
            self.hits.fetch_add(hits, Ordering::Relaxed);
            self.hit_metric.increment(hits);
        }
        if misses > 0 {
            self.misses.fetch_add(misses, Ordering::Relaxed);
            self.miss_metric.increment(misses);
        }
    }
}

pub struct AppState {
    pub store: Store,
    pub limits: Limits,
    pub counters: Counters,
    pub config: Config,
    pub started: Instant,
    /// How many tag indexes exist, counted in the background (`/v1/stats`).
    pub tag_census: TagCensus,
}

impl AppState {
    pub fn new(config: Config) -> Result<Self, String> {
        let store = Store::new(&config.redis, config.slow_threshold)?;
        Ok(Self {
            store,
            limits: Limits {
                max_key_bytes: config.max_key_bytes,
                max_value_bytes: config.max_value_bytes,
                max_batch_bytes: config.max_batch_bytes,
                max_ttl: config.max_ttl,
                default_ttl: Ttl::from_config(config.redis.default_ttl),
            },
            counters: Counters::default(),
            config,
            started: Instant::now(),
            tag_census: TagCensus::default(),
        })
    }
}
