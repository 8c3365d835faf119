//! What the operator sees of the connection to Redis: one INFO line when it is made (mode,
//! address, version, role), one WARN when Redis cannot be reached or is lost (not one per
//! failed request), one INFO when it is back; and the Redis metrics.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use super::errors::StoreError;
use super::link::Link;

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

pub struct Health {
    mode: &'static str,
    state: AtomicU8,
}

impl Health {
    pub fn new(mode: &'static str) -> Self {
        metrics::gauge!("cachegate_redis_up").set(0.0);
        Self {
            mode,
            state: AtomicU8::new(UNKNOWN),
        }
    }

    fn transition(&self, to: u8) -> Option<u8> {
        let from = self.state.swap(to, Ordering::Relaxed);
        (from != to).then_some(from)
    }

    /// A link was made. Logs the first one, and the first after a loss, with what Redis says
    /// of itself.
    pub fn connected(&self, link: &Link, address: &str) {
        let Some(from) = self.transition(UP) else {
            return;
        };
        metrics::gauge!("cachegate_redis_up").set(1.0);
        let mode = self.mode;
        let address = address.to_string();
        let mut link = link.clone();
        tokio::spawn(async move {
            let (version, role) = describe_server(&mut link).await;
            if from == DOWN {
                tracing::info!(mode, address, version, role, "Redis is reachable again");
            } else {
                tracing::info!(mode, address, version, role, "connected to Redis");
            }
        });
    }

    /// An attempt to connect failed.
    pub fn unreachable(&self, address: &str, err: &StoreError) {
        if self.transition(DOWN).is_some() {
            metrics::gauge!("cachegate_redis_up").set(0.0);
            let reason = match err {
                StoreError::Unavailable(why) | StoreError::Other(why) => why.clone(),
                other => format!("{other:?}"),
            };
            tracing::warn!(
                mode = self.mode,
                address,
                error = %reason,
                "cannot reach Redis; cachegate keeps trying and answers 503 meanwhile"
            );
        }
    }

    /// redis-rs reported a link disconnected.
    pub fn lost(&self, address: &str) {
        metrics::counter!("cachegate_redis_connection_losses_total").increment(1);
        if self.transition(DOWN).is_some() {
            metrics::gauge!("cachegate_redis_up").set(0.0);
            tracing::warn!(
                mode = self.mode,
                address,
                "lost the connection to Redis; reconnecting"
            );
        }
    }

    /// Records one round trip: its latency, its failure, a WARN when it was slow.
    pub fn observe<T>(
        &self,
        operation: &'static str,
        elapsed: Duration,
        result: &Result<T, StoreError>,
        slow_threshold: Duration,
    ) {
        record_latency(operation, elapsed);
        if elapsed > slow_threshold {
            tracing::warn!(
                operation,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                "slow Redis call"
            );
        }
        // A WRONGTYPE reply is the data's problem, not Redis failing: it is not counted.
        if let Some(kind) = result.as_ref().err().and_then(StoreError::metric_kind) {
            metrics::counter!("cachegate_redis_errors_total", "kind" => kind).increment(1);
        }
        if let Err(StoreError::Other(detail)) = result {
            tracing::warn!(operation, error = %detail, "Redis call failed");
        }
    }
}

/// Latency histograms per operation, their handles kept per thread: a registry lookup by
/// name and labels on every call would cost a hash and an allocation. Operations are a
/// handful of static names, found by address in a short list.
fn record_latency(operation: &'static str, elapsed: Duration) {
    thread_local! {
        static HISTOGRAMS: RefCell<Vec<(&'static str, metrics::Histogram)>> =
            const { RefCell::new(Vec::new()) };
    }
    HISTOGRAMS.with(|cell| {
        let mut histograms = cell.borrow_mut();
        let seconds = elapsed.as_secs_f64();
        if let Some((_, histogram)) = histograms
            .iter()
            .find(|(name, _)| std::ptr::eq(*name, operation))
        {
            histogram.record(seconds);
            return;
        }
        let histogram =
            metrics::histogram!("cachegate_redis_call_duration_seconds", "operation" => operation);
        histogram.record(seconds);
        histograms.push((operation, histogram));
    });
}

/// The version and role Redis reports of itself (`INFO server` and `INFO replication`).
async fn describe_server(link: &mut Link) -> (String, String) {
    let info: Result<String, _> = match link {
        Link::Single(connection) => {
            redis::cmd("INFO")
                .arg("server")
                .arg("replication")
                .query_async(connection)
                .await
        }
        Link::Cluster(connection) => {
            let routing = redis::cluster_routing::RoutingInfo::SingleNode(
                redis::cluster_routing::SingleNodeRoutingInfo::Random,
            );
            let mut cmd = redis::cmd("INFO");
            cmd.arg("server").arg("replication");
            connection
                .route_command(cmd, routing)
                .await
                .and_then(|v| redis::from_redis_value(v).map_err(redis::RedisError::from))
        }
    };
    let text = info.unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into())
    };
    (field("redis_version"), field("role"))
}
