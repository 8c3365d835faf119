//! Connections to Redis: a deadpool pool of multiplexed connections, shared through lanes.
//!
//! deadpool creates connections (with its timeouts) and health-checks them with a PING when
//! they are checked out. Checking one out per request would cost that PING round trip on
//! every request, so each lane keeps one pooled connection checked out and hands clones of it
//! to requests: redis-rs pipelines the concurrent commands of all of them on one socket. Each
//! thread keeps to one lane, so an HTTP worker's requests and its connection's driver task run
//! on the same thread. A connection that fails at the connection level is detached from the
//! pool and its lane refills from the pool on the next request, which retries once; a Redis
//! restart therefore costs no failed request once Redis answers again.

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{AsyncConnectionConfig, ErrorKind, RedisError};
use deadpool_redis::{Connection, Manager, Pool, PoolError, Runtime};
use tokio::sync::Semaphore;

use crate::config::RedisConfig;

/// Why a Redis step failed, as the HTTP layer needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// Redis is unreachable, refused the login, or no connection came in time: 503.
    Unavailable(String),
    /// Redis did not answer in time: 504.
    Timeout,
    /// The key holds a Redis type other than a string: 409.
    WrongType,
    /// Anything else; logged, never shown to clients: 500.
    Other(String),
}

impl StoreError {
    /// The label of the `cachegate_redis_errors_total` metric; None for a wrong type.
    pub fn metric_kind(&self) -> Option<&'static str> {
        match self {
            StoreError::Unavailable(_) => Some("unavailable"),
            StoreError::Timeout => Some("timeout"),
            StoreError::WrongType => None,
            StoreError::Other(_) => Some("other"),
        }
    }
}

/// How many requests may wait on Redis at once per lane before new ones are refused with 503
/// instead of queueing without bound behind a stalled Redis. Redis answers a pipelined
/// command in microseconds, so a healthy lane never gets near it; a frozen one holds at most
/// this many requests until the command timeout (tests/resilience.rs: with one lane, 512
/// simultaneous requests left exactly 256 waiting and refused the rest within 0.2 s).
const IN_FLIGHT_PER_LANE: usize = 256;

const PHASE_CHECKOUT: u8 = 0;
const PHASE_COMMAND: u8 = 1;

struct LaneConnection {
    generation: u64,
    pooled: Connection,
}

#[derive(Default)]
struct Lane {
    current: Mutex<Option<LaneConnection>>,
    /// Serialises refills so a burst of requests after a restart opens one connection, not many.
    refill: tokio::sync::Mutex<()>,
}

impl Lane {
    fn current(&self) -> Option<(u64, MultiplexedConnection)> {
        let guard = self.current.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .as_ref()
            .map(|c| (c.generation, MultiplexedConnection::clone(&c.pooled)))
    }

    /// Detaches the lane's connection from the pool if it is still the one that failed.
    fn discard(&self, generation: u64) {
        let mut guard = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if guard.as_ref().is_some_and(|c| c.generation == generation) {
            if let Some(broken) = guard.take() {
                drop(Connection::take(broken.pooled));
            }
        }
    }
}

/// The pool, its lanes, and the bound on in-flight operations.
pub struct Connections {
    pool: Pool,
    lanes: Box<[Lane]>,
    generation: AtomicU64,
    in_flight: Semaphore,
    command_timeout: Duration,
    slow_threshold: Duration,
}

/// The pool's state for `/v1/stats` and `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct PoolStatus {
    pub max_size: usize,
    pub size: usize,
    pub available: usize,
    pub waiting: usize,
}

impl Connections {
    pub fn new(config: &RedisConfig, slow_threshold: Duration) -> Result<Self, String> {
        // No response timeout of redis-rs's own: `run` bounds every command with the same
        // limit, and a second timer per command would cost every request for nothing.
        let connection_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(config.connect_timeout))
            .set_response_timeout(None);
        let manager = Manager::new_with_config(config.url.expose(), connection_config)
            .map_err(|e| format!("REDIS_URL is invalid: {}", e.category()))?;
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.command_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.command_timeout))
            .build()
            .map_err(|e| format!("cannot build the Redis pool: {e}"))?;
        let lanes = (0..config.pool_size).map(|_| Lane::default()).collect();
        Ok(Self {
            pool,
            lanes,
            generation: AtomicU64::new(0),
            in_flight: Semaphore::new(config.pool_size * IN_FLIGHT_PER_LANE),
            command_timeout: config.command_timeout,
            slow_threshold,
        })
    }

    pub fn status(&self) -> PoolStatus {
        let status = self.pool.status();
        PoolStatus {
            max_size: status.max_size,
            size: status.size,
            available: status.available,
            waiting: status.waiting,
        }
    }

    /// Runs one Redis round trip, bounded by `REDIS_COMMAND_TIMEOUT_MS` from start to answer:
    /// taking a connection (and creating it when needed) counts against the same bound.
    pub async fn run<T, F, Fut>(&self, operation: &'static str, step: F) -> Result<T, StoreError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let _permit = self.in_flight.try_acquire().map_err(|_| {
            StoreError::Unavailable("too many requests are waiting on Redis".into())
        })?;
        let started = Instant::now();
        let phase = AtomicU8::new(PHASE_CHECKOUT);
        let outcome =
            tokio::time::timeout(self.command_timeout, self.run_on_lane(&step, &phase)).await;
        let result = outcome.unwrap_or_else(|_| {
            Err(if phase.load(Ordering::Relaxed) == PHASE_CHECKOUT {
                StoreError::Unavailable(format!(
                    "no Redis connection could be made within {} ms",
                    self.command_timeout.as_millis()
                ))
            } else {
                StoreError::Timeout
            })
        });
        self.observe(operation, started.elapsed(), &result);
        result
    }

    async fn run_on_lane<T, F, Fut>(&self, step: &F, phase: &AtomicU8) -> Result<T, StoreError>
    where
        F: Fn(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let lane = &self.lanes[thread_ordinal() % self.lanes.len()];
        let mut retried = false;
        loop {
            phase.store(PHASE_CHECKOUT, Ordering::Relaxed);
            let (generation, connection) = self.checkout(lane).await?;
            phase.store(PHASE_COMMAND, Ordering::Relaxed);
            match step(connection).await {
                Ok(value) => return Ok(value),
                Err(err) if needs_new_connection(&err) => {
                    lane.discard(generation);
                    if retried {
                        return Err(classify(&err));
                    }
                    // The connection died, typically because Redis restarted while the lane
                    // sat idle: the command never reached a live Redis, and one retry on a
                    // fresh connection hides the restart. (If the link broke mid-command
                    // instead, the repeat leaves the same final state, since every command
                    // cachegate sends sets, reads or removes one; a conditional write or a
                    // delete may then report the first attempt's effect as 412 or 404.)
                    retried = true;
                }
                Err(err) => return Err(classify(&err)),
            }
        }
    }

    async fn checkout(&self, lane: &Lane) -> Result<(u64, MultiplexedConnection), StoreError> {
        if let Some(current) = lane.current() {
            return Ok(current);
        }
        // Boxed: taking a connection from the pool (and connecting) is a future of several
        // KiB, which would otherwise be part of every request's future, allocated and moved
        // on the hot path although a lane refills only after a failure.
        Box::pin(self.refill(lane)).await
    }

    async fn refill(&self, lane: &Lane) -> Result<(u64, MultiplexedConnection), StoreError> {
        let _refilling = lane.refill.lock().await;
        if let Some(current) = lane.current() {
            return Ok(current);
        }
        let pooled = self.pool.get().await.map_err(classify_pool_error)?;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let connection = MultiplexedConnection::clone(&pooled);
        *lane.current.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(LaneConnection { generation, pooled });
        Ok((generation, connection))
    }

    fn observe<T>(
        &self,
        operation: &'static str,
        elapsed: Duration,
        result: &Result<T, StoreError>,
    ) {
        if elapsed > self.slow_threshold {
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
        if let Err(StoreError::Other(detail) | StoreError::Unavailable(detail)) = result {
            tracing::warn!(operation, error = %detail, "Redis call failed");
        }
    }
}

/// This thread's ordinal. A thread always uses the same lane, so the lane's connection is
/// made on it and redis-rs runs the connection's driver task on its runtime (each actix
/// worker runs its own): a request then reaches Redis without waking another thread.
fn thread_ordinal() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static ORDINAL: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    ORDINAL.with(|ordinal| *ordinal)
}

/// Errors after which the connection must be replaced; a timeout is not one of them, since a
/// slow or paused Redis keeps its connections valid.
fn needs_new_connection(err: &RedisError) -> bool {
    !err.is_timeout() && (err.is_unrecoverable_error() || err.is_connection_dropped())
}

fn is_auth_failure(err: &RedisError) -> bool {
    err.kind() == ErrorKind::AuthenticationFailed
        || matches!(err.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM"))
}

/// Maps a redis-rs error; messages hold the error's category and server code, never the URL.
fn classify(err: &RedisError) -> StoreError {
    if err.is_timeout() {
        StoreError::Timeout
    } else if err.code() == Some("WRONGTYPE") {
        StoreError::WrongType
    } else if is_auth_failure(err) {
        StoreError::Unavailable(
            "Redis authentication failed; check REDIS_USERNAME and REDIS_PASSWORD (or REDIS_URL)"
                .into(),
        )
    } else if err.code() == Some("OOM") {
        StoreError::Unavailable("Redis is out of memory and refused the write".into())
    } else if err.code() == Some("LOADING") || err.code() == Some("BUSY") {
        StoreError::Unavailable("Redis is busy loading or running a script".into())
    } else if err.is_io_error() || err.is_connection_refusal() || err.is_connection_dropped() {
        StoreError::Unavailable(format!("Redis is unreachable ({})", io_summary(err)))
    } else {
        StoreError::Other(format!(
            "{}{}",
            err.category(),
            err.code().map(|c| format!(" {c}")).unwrap_or_default()
        ))
    }
}

fn io_summary(err: &RedisError) -> String {
    if err.is_connection_refusal() {
        "connection refused".into()
    } else {
        err.category().to_string()
    }
}

fn classify_pool_error(err: PoolError) -> StoreError {
    match err {
        PoolError::Backend(err) => classify(&err),
        PoolError::Timeout(_) => {
            StoreError::Unavailable("no Redis connection became available in time".into())
        }
        other => StoreError::Unavailable(format!("the Redis pool failed: {other}")),
    }
}
