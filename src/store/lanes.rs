//! Lanes: how every Redis round trip gets a connection, in every topology.
//!
//! A lane belongs to a thread (each HTTP worker keeps to one), so a worker's requests and its
//! connections' driver tasks run on the same thread. A lane holds two multiplexed links, one
//! for reads and one for writes: Redis answers a connection's commands in order, so while it
//! pauses writes (`CLIENT PAUSE ... WRITE`, as its own failover does) a waiting write would
//! hold every read queued behind it on a shared connection.
//!
//! Links are made in the background: at start (each worker warms its lane up), after a loss,
//! and whenever a request finds none. A request waits for a link only as long as its own
//! deadline allows. A link that redis-rs reports disconnected (a push notification, so before
//! any request fails on it) is replaced, so a Redis restart costs no request once Redis
//! answers again. A command that dies with its connection is repeated only when repeating it
//! cannot change the answer (`Op::idempotent`); otherwise the answer is "outcome unknown".

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::RedisError;
use tokio::sync::Notify;

use super::errors::{classify, is_readonly, needs_new_connection, StoreError};
use super::health::Health;
use super::link::Link;

/// How many requests may wait on Redis at once per lane before new ones are refused with 503
/// instead of queueing without bound behind a stalled Redis. Redis answers a pipelined
/// command in microseconds, so a healthy lane never gets near it; a frozen one holds at most
/// this many requests until the command timeout (tests/resilience.rs).
const IN_FLIGHT_PER_LANE: usize = 256;

const PHASE_CHECKOUT: u8 = 0;
const PHASE_COMMAND: u8 = 1;

/// Whether a command only reads (it may pass a paused write) or changes data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// One kind of Redis round trip: its metric name, whether it reads or writes, and whether
/// running it twice gives the same answer as running it once.
#[derive(Debug, Clone, Copy)]
pub struct Op {
    pub name: &'static str,
    pub access: Access,
    pub idempotent: bool,
}

impl Op {
    pub const fn read(name: &'static str) -> Self {
        Self {
            name,
            access: Access::Read,
            idempotent: true,
        }
    }

    /// A write whose repeat leaves the same state and answer (SET, EXPIRE, GETEX).
    pub const fn idempotent_write(name: &'static str) -> Self {
        Self {
            name,
            access: Access::Write,
            idempotent: true,
        }
    }

    /// A write whose answer depends on the state before it (conditional writes, deletes
    /// that report what they removed): never repeated blindly.
    pub const fn write(name: &'static str) -> Self {
        Self {
            name,
            access: Access::Write,
            idempotent: false,
        }
    }
}

/// Makes links: to one Redis, to the primary that Sentinel names, or to a cluster.
pub trait Connect: Send + Sync + 'static {
    /// Opens a link, which calls `loss.lost()` when redis-rs reports it disconnected.
    fn connect(
        &self,
        loss: LossSignal,
    ) -> Pin<Box<dyn Future<Output = Result<Link, RedisError>> + Send + '_>>;

    /// Opens the link that carries lease notifications (RESP3 pub/sub): every push message
    /// it receives, its disconnection included, goes to `pushes`.
    fn connect_subscriber(
        &self,
        pushes: PushSink,
    ) -> Pin<Box<dyn Future<Output = Result<Link, RedisError>> + Send + '_>>;

    /// Where it connects, for log lines and messages (never a password).
    fn describe(&self) -> String;
}

/// Where a subscription link delivers its push messages.
pub type PushSink = Arc<dyn Fn(redis::PushInfo) + Send + Sync>;

/// A redis-rs push sender that hands every push to `sink`.
pub fn push_sender_to(sink: PushSink) -> impl redis::aio::AsyncPushSender {
    move |info: redis::PushInfo| {
        sink(info);
        Ok::<(), redis::aio::SendError>(())
    }
}

/// Marks a link dead the moment redis-rs reports it disconnected, before any request fails on
/// it, and tells the operator once.
#[derive(Clone)]
pub struct LossSignal {
    alive: Arc<AtomicBool>,
    health: Arc<Health>,
    address: Arc<str>,
}

impl LossSignal {
    pub fn lost(&self) {
        if self.alive.swap(false, Ordering::Relaxed) {
            self.health.lost(&self.address);
        }
    }

    /// A push sender for redis-rs (RESP3 connections) that calls `lost` on a disconnection.
    pub fn push_sender(self) -> impl redis::aio::AsyncPushSender {
        move |info: redis::PushInfo| {
            if info.kind == redis::PushKind::Disconnection {
                self.lost();
            }
            Ok::<(), redis::aio::SendError>(())
        }
    }
}

struct Live {
    generation: u64,
    link: Link,
    alive: Arc<AtomicBool>,
}

#[derive(Default)]
struct SlotState {
    live: Option<Live>,
    connecting: bool,
    /// Why the last attempt failed, for the requests that waited on it.
    last_error: Option<StoreError>,
}

/// One link of a lane, made in the background.
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    settled: Notify,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live link, on the hot path: one lock, one atomic load, one clone.
    fn live(&self) -> Option<(u64, Link)> {
        let state = self.lock();
        let live = state.live.as_ref()?;
        live.alive
            .load(Ordering::Relaxed)
            .then(|| (live.generation, live.link.clone()))
    }

    /// Drops the link if it is still the one that failed.
    fn discard(&self, generation: u64) {
        let mut state = self.lock();
        if state
            .live
            .as_ref()
            .is_some_and(|l| l.generation == generation)
        {
            state.live = None;
        }
    }
}

#[derive(Default)]
struct Lane {
    read: Arc<Slot>,
    write: Arc<Slot>,
}

impl Lane {
    fn slot(&self, access: Access) -> &Arc<Slot> {
        match access {
            Access::Read => &self.read,
            Access::Write => &self.write,
        }
    }
}

/// The connection figures of `/v1/stats` and `/metrics`.
#[derive(Debug, Clone, Copy)]
pub struct PoolStatus {
    pub max_size: usize,
    pub size: usize,
    pub available: usize,
    pub waiting: usize,
}

pub struct Lanes {
    connector: Arc<dyn Connect>,
    lanes: Box<[Lane]>,
    in_flight: InFlight,
    generation: Arc<AtomicU64>,
    waiting: AtomicUsize,
    health: Arc<Health>,
    command_timeout: Duration,
    connect_timeout: Duration,
    slow_threshold: Duration,
}

/// Timeouts and sizes of the lanes.
pub struct LaneSettings {
    pub lanes: usize,
    pub command_timeout: Duration,
    pub connect_timeout: Duration,
    pub slow_threshold: Duration,
}

impl Lanes {
    pub fn new(connector: Arc<dyn Connect>, health: Arc<Health>, settings: LaneSettings) -> Self {
        let lanes = settings.lanes.max(1);
        Self {
            connector,
            lanes: (0..lanes).map(|_| Lane::default()).collect(),
            in_flight: InFlight::new(lanes * IN_FLIGHT_PER_LANE),
            generation: Arc::new(AtomicU64::new(0)),
            waiting: AtomicUsize::new(0),
            health,
            command_timeout: settings.command_timeout,
            connect_timeout: settings.connect_timeout,
            slow_threshold: settings.slow_threshold,
        }
    }

    pub fn describe(&self) -> String {
        self.connector.describe()
    }

    /// Starts connecting this thread's lane, so its first request finds links ready.
    pub fn warm_up(&self) {
        let lane = self.own_lane();
        for slot in [&lane.read, &lane.write] {
            if slot.live().is_none() {
                self.start_connecting(slot);
            }
        }
    }

    pub fn status(&self) -> PoolStatus {
        let size = self
            .lanes
            .iter()
            .flat_map(|lane| [&lane.read, &lane.write])
            .filter(|slot| slot.live().is_some())
            .count();
        PoolStatus {
            max_size: self.lanes.len() * 2,
            size,
            available: size,
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }

    /// Every link of every lane, connecting the missing ones: what readiness pings. Bounded
    /// by the command timeout like any request.
    pub async fn all_links(&self) -> Result<Vec<Link>, StoreError> {
        let mut links = Vec::with_capacity(self.lanes.len() * 2);
        for lane in self.lanes.iter() {
            for slot in [&lane.read, &lane.write] {
                let link = tokio::time::timeout(self.command_timeout, self.checkout(slot))
                    .await
                    .map_err(|_| self.no_link_in_time())??;
                links.push(link.1);
            }
        }
        Ok(links)
    }

    fn own_lane(&self) -> &Lane {
        &self.lanes[thread_ordinal() % self.lanes.len()]
    }

    /// Runs one Redis round trip, bounded by `REDIS_COMMAND_TIMEOUT_MS` from start to answer:
    /// waiting for a link counts against the same bound.
    pub async fn run<T, F, Fut>(&self, op: Op, step: F) -> Result<T, StoreError>
    where
        F: Fn(Link) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let _entered = self.in_flight.enter().ok_or_else(|| {
            StoreError::Unavailable("too many requests are waiting on Redis".into())
        })?;
        let started = Instant::now();
        // The deadline from the same clock reading as the latency (REDIS_COMMAND_TIMEOUT_MS is
        // at most 600 s: no overflow).
        let deadline = tokio::time::Instant::from_std(started + self.command_timeout);
        let phase = AtomicU8::new(PHASE_CHECKOUT);
        let outcome = tokio::time::timeout_at(deadline, self.run_on_lane(op, &step, &phase)).await;
        let result = outcome.unwrap_or_else(|_| {
            Err(if phase.load(Ordering::Relaxed) == PHASE_CHECKOUT {
                self.no_link_in_time()
            } else {
                StoreError::Timeout
            })
        });
        self.health
            .observe(op.name, started.elapsed(), &result, self.slow_threshold);
        result
    }

    /// Runs a round trip that does not use a lane's link (a cluster node's own connection,
    /// `cluster::NodeLinks`), under the same bound, in-flight limit and metrics as `run`.
    pub async fn run_beside<T>(
        &self,
        op: Op,
        step: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        let _entered = self.in_flight.enter().ok_or_else(|| {
            StoreError::Unavailable("too many requests are waiting on Redis".into())
        })?;
        let started = Instant::now();
        let result = match tokio::time::timeout(self.command_timeout, step).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(classify(&err)),
            Err(_) => Err(StoreError::Timeout),
        };
        self.health
            .observe(op.name, started.elapsed(), &result, self.slow_threshold);
        result
    }

    fn no_link_in_time(&self) -> StoreError {
        StoreError::Unavailable(format!(
            "no Redis connection to {} could be made within {} ms",
            self.connector.describe(),
            self.command_timeout.as_millis()
        ))
    }

    async fn run_on_lane<T, F, Fut>(
        &self,
        op: Op,
        step: &F,
        phase: &AtomicU8,
    ) -> Result<T, StoreError>
    where
        F: Fn(Link) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let slot = self.own_lane().slot(op.access);
        let mut retried = false;
        loop {
            phase.store(PHASE_CHECKOUT, Ordering::Relaxed);
            let (generation, link) = self.checkout(slot).await?;
            phase.store(PHASE_COMMAND, Ordering::Relaxed);
            let err = match step(link).await {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            // READONLY: the node we reached was demoted (a failover); the write was refused,
            // so it is safe to repeat on a new link to the new primary.
            let refused_by_replica = is_readonly(&err);
            if !(refused_by_replica || needs_new_connection(&err)) {
                return Err(classify(&err));
            }
            slot.discard(generation);
            if !refused_by_replica && !op.idempotent {
                return Err(StoreError::OutcomeUnknown);
            }
            if retried {
                return Err(classify(&err));
            }
            retried = true;
        }
    }

    async fn checkout(&self, slot: &Arc<Slot>) -> Result<(u64, Link), StoreError> {
        if let Some(live) = slot.live() {
            return Ok(live);
        }
        // Boxed: the slow path's future would otherwise enlarge every request's future.
        Box::pin(self.wait_for_link(slot)).await
    }

    async fn wait_for_link(&self, slot: &Arc<Slot>) -> Result<(u64, Link), StoreError> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = scopeguard(|| {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        });
        let settled = slot.settled.notified();
        tokio::pin!(settled);
        settled.as_mut().enable();
        if let Some(live) = slot.live() {
            return Ok(live);
        }
        self.start_connecting(slot);
        settled.await;
        let state = slot.lock();
        match &state.live {
            Some(live) => Ok((live.generation, live.link.clone())),
            None => Err(state
                .last_error
                .clone()
                .unwrap_or_else(|| self.no_link_in_time())),
        }
    }

    /// Spawns one connection attempt for the slot, unless one is under way.
    fn start_connecting(&self, slot: &Arc<Slot>) {
        {
            let mut state = slot.lock();
            if state.connecting {
                return;
            }
            if state
                .live
                .as_ref()
                .is_some_and(|l| !l.alive.load(Ordering::Relaxed))
            {
                state.live = None;
            }
            state.connecting = true;
        }
        let slot = Arc::clone(slot);
        let connector = Arc::clone(&self.connector);
        let health = Arc::clone(&self.health);
        let generation = Arc::clone(&self.generation);
        let connect_timeout = self.connect_timeout;
        tokio::spawn(async move {
            let alive = Arc::new(AtomicBool::new(true));
            let loss = LossSignal {
                alive: Arc::clone(&alive),
                health: Arc::clone(&health),
                address: connector.describe().into(),
            };
            let attempt = tokio::time::timeout(connect_timeout, connector.connect(loss)).await;
            let outcome = match attempt {
                Ok(Ok(link)) => Ok(link),
                Ok(Err(err)) => Err(match classify(&err) {
                    // Name where: the operator's first question about an unreachable Redis.
                    StoreError::Unavailable(why) => StoreError::Unavailable(format!(
                        "{why} (connecting to {})",
                        connector.describe()
                    )),
                    other => other,
                }),
                Err(_) => Err(StoreError::Unavailable(format!(
                    "connecting to Redis at {} took longer than REDIS_CONNECT_TIMEOUT_MS ({} ms)",
                    connector.describe(),
                    connect_timeout.as_millis()
                ))),
            };
            let mut state = slot.lock();
            state.connecting = false;
            match outcome {
                Ok(link) => {
                    health.connected(&link, &connector.describe());
                    state.live = Some(Live {
                        generation: generation.fetch_add(1, Ordering::Relaxed),
                        link,
                        alive,
                    });
                    state.last_error = None;
                }
                Err(err) => {
                    health.unreachable(&connector.describe(), &err);
                    state.last_error = Some(err);
                }
            }
            drop(state);
            slot.settled.notify_waiters();
        });
    }
}

/// The bound on requests waiting on Redis at once: a counter, taken and given back with one
/// atomic operation each (a semaphore's release takes a lock).
struct InFlight {
    count: AtomicUsize,
    limit: usize,
}

impl InFlight {
    fn new(limit: usize) -> Self {
        Self {
            count: AtomicUsize::new(0),
            limit,
        }
    }

    /// One more request in flight until the guard drops; None when the bound is reached.
    fn enter(&self) -> Option<impl Drop + '_> {
        if self.count.fetch_add(1, Ordering::Relaxed) >= self.limit {
            self.count.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(scopeguard(|| {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }))
    }
}

/// Runs `f` when dropped (also when the waiting request is cancelled by its deadline).
fn scopeguard<F: FnMut()>(f: F) -> impl Drop {
    struct Guard<F: FnMut()>(F);
    impl<F: FnMut()> Drop for Guard<F> {
        fn drop(&mut self) {
            (self.0)();
        }
    }
    Guard(f)
}

/// This thread's ordinal. A thread always uses the same lane, so the lane's links are made on
/// it and redis-rs runs their driver tasks on its runtime (each actix worker runs its own): a
/// request then reaches Redis without waking another thread.
fn thread_ordinal() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static ORDINAL: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    ORDINAL.with(|ordinal| *ordinal)
}
