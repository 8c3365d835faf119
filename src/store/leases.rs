//! Leases (stampede protection): the Redis side.
//!
//! A lease is a string under an internal name in the key's own hash slot
//! (`names::for_key("lease", key)`), holding the token of the caller that may fill the key, with
//! a PX expiry: it ends by itself. Every decision (take a lease on a miss or on an early
//! refresh, fill while holding it, cancel it on any other write) is one Lua script over the key
//! and its lease record, so it holds across cachegate processes and on a cluster.
//!
//! Waiters are woken by a notification on the key's lease channel (named like the record):
//! PUBLISH/SUBSCRIBE on one Redis, SPUBLISH/SSUBSCRIBE (sharded, routed by the channel's slot)
//! on a cluster. The scripts that fill or cancel a lease publish it. Each process keeps ONE
//! subscription link, shared by all its waiters through a map channel -> waiters (`Hub`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use redis::{FromRedisValue, RedisError, Value};
use tokio::sync::Notify;

use super::lanes::{Connect, Op, PushSink};
use super::link::Link;
use super::scripts::LuaScript;
use super::{names, Store, StoreError, WriteCondition};
use crate::keys::{CacheKey, Keyspace, Ttl};

/// Read a key, and take its lease when it is missing (or, with a refresh threshold, when its
/// TTL left is below it). KEYS: key, lease record. ARGV: token, lease ms, refresh_before
/// seconds (`0`: none), new TTL seconds (`0`: keep), `1` to take the lease on a miss. Answers `{value}`, `{value, token}`,
/// `{nil, token}` (lease taken) or `{nil, nil, pttl}` (someone else holds it).
static READ_OR_LEASE: LuaScript = LuaScript::writes(
    r"
local left = -1
if ARGV[3] ~= '0' then left = redis.call('TTL', KEYS[1]) end
local value
if ARGV[4] ~= '0' then
  value = redis.call('GETEX', KEYS[1], 'EX', ARGV[4])
else
  value = redis.call('GET', KEYS[1])
end
if value then
  if left >= 0 and left < tonumber(ARGV[3])
     and redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2], 'NX') then
    return {value, ARGV[1]}
  end
  return {value}
end
if ARGV[5] ~= '1' then return {false, false, 0} end
if redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2], 'NX') then
  return {false, ARGV[1]}
end
return {false, false, redis.call('PTTL', KEYS[2])}
",
);

/// Fill: write the value only while the lease holds ARGV[1], end the lease, wake the waiters.
/// KEYS: key, lease record. ARGV: token, value, ttl, publish command. 1 written, 0 not.
static FILL: LuaScript = LuaScript::writes(
    r"
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('DEL', KEYS[2])
redis.call(ARGV[4], KEYS[2], 'filled')
return 1
",
);

/// A plain write (SET, with NX or XX when ARGV[3] says so) that cancels an outstanding lease
/// of the key, and wakes its waiters if there was one. KEYS: key, lease record. ARGV: value,
/// ttl, condition (`-`, `NX`, `XX`), publish command. 1 written, 0 not (condition failed).
static SET_AND_CANCEL: LuaScript = LuaScript::writes(
    r"
local done
if ARGV[3] == '-' then
  done = redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else
  done = redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2], ARGV[3])
end
if not done then return 0 end
if redis.call('DEL', KEYS[2]) == 1 then redis.call(ARGV[4], KEYS[2], 'cancelled') end
return 1
",
);

/// A delete that cancels the key's lease, even when the key is absent. KEYS: key, lease
/// record. ARGV: publish command. UNLINK's answer.
static DELETE_AND_CANCEL: LuaScript = LuaScript::writes(
    r"
if redis.call('DEL', KEYS[2]) == 1 then redis.call(ARGV[1], KEYS[2], 'cancelled') end
return redis.call('UNLINK', KEYS[1])
",
);

/// What a read with a lease request found.
#[derive(Debug, PartialEq, Eq)]
pub enum LeaseRead {
    /// The value; with a lease when an early refresh was granted.
    Hit {
        value: Vec<u8>,
        lease: Option<String>,
    },
    /// A miss, and this caller now holds the lease.
    Granted(String),
    /// A miss; another caller holds the lease for about this long.
    Held(Duration),
}

/// What a lease read asks for.
#[derive(Debug, Clone, Copy)]
pub struct LeaseAsk {
    /// How long a lease taken now lasts.
    pub lease: Duration,
    /// Take the lease on a miss (`lease=` was sent).
    pub on_miss: bool,
    /// Take a lease on a hit whose TTL left is below this many seconds.
    pub refresh_before: Option<u64>,
    /// Also reset the key's TTL (sliding expiry).
    pub ttl: Option<Ttl>,
}

/// The name of a key's lease record, which is also the name of its notification channel.
pub fn lease_name(redis_key: &[u8]) -> Vec<u8> {
    names::for_key("lease", redis_key)
}

/// `lease_name` as a command argument, written straight into the command.
fn lease_arg(redis_key: &[u8]) -> names::ForKey<'_> {
    names::ForKey {
        kind: "lease",
        redis_key,
    }
}

/// A new lease token: 128 random bits, hex.
fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Store {
    pub(super) fn publish_command(&self) -> &'static [u8] {
        if self.is_cluster() {
            b"SPUBLISH"
        } else {
            b"PUBLISH"
        }
    }

    /// Reads the key; takes its lease on a miss, or on a hit about to expire when asked.
    pub async fn read_or_lease(
        &self,
        ks: &Keyspace,
        key: &CacheKey,
        ask: LeaseAsk,
    ) -> Result<LeaseRead, StoreError> {
        let redis_key = ks.redis_key(key.as_str());
        let lease = lease_name(&redis_key);
        let token = new_token();
        let millis = ask.lease.as_millis().to_string();
        let refresh = ask.refresh_before.unwrap_or(0).to_string();
        let ttl = ask.ttl.map_or(0, |t| t.seconds()).to_string();
        let keys: [&[u8]; 2] = [&redis_key, &lease];
        let on_miss: &[u8] = if ask.on_miss { b"1" } else { b"0" };
        let args: [&[u8]; 5] = [
            token.as_bytes(),
            millis.as_bytes(),
            refresh.as_bytes(),
            ttl.as_bytes(),
            on_miss,
        ];
        let (keys, args) = (&keys, &args);
        // Not repeated blindly: a lost answer may have granted a lease nobody knows of (it
        // then expires unfilled, as an abandoned one does).
        let reply: Vec<Value> = self
            .lanes
            .run(Op::write("read_or_lease"), |mut link| async move {
                READ_OR_LEASE.invoke(&mut link, keys, args).await
            })
            .await?;
        parse_lease_read(reply)
    }

    /// Writes `value` only while `token` holds the key's lease, ends the lease and wakes the
    /// waiters; false when the lease expired, was cancelled or is another's.
    pub async fn fill_lease(
        &self,
        ks: &Keyspace,
        key: &CacheKey,
        token: &str,
        value: &[u8],
        ttl: Ttl,
    ) -> Result<bool, StoreError> {
        let redis_key = ks.redis_key(key.as_str());
        let lease = lease_name(&redis_key);
        let seconds = ttl.seconds().to_string();
        let keys: [&[u8]; 2] = [&redis_key, &lease];
        let args: [&[u8]; 4] = [
            token.as_bytes(),
            value,
            seconds.as_bytes(),
            self.publish_command(),
        ];
        let (keys, args) = (&keys, &args);
        let written: i64 = self
            .lanes
            .run(Op::write("fill_lease"), |mut link| async move {
                FILL.invoke(&mut link, keys, args).await
            })
            .await?;
        Ok(written == 1)
    }

    /// SET with EX (and NX/XX) that cancels the key's outstanding lease in the same step.
    pub(super) async fn set_cancelling_lease(
        &self,
        redis_key: &[u8],
        value: &[u8],
        ttl: Ttl,
        condition: WriteCondition,
    ) -> Result<bool, StoreError> {
        let (flag, op): (&[u8], Op) = match condition {
            WriteCondition::Always => (b"-", Op::idempotent_write("set")),
            WriteCondition::IfAbsent => (b"NX", Op::write("set_nx")),
            WriteCondition::IfPresent => (b"XX", Op::write("set_xx")),
        };
        // Room for the key twice (it is in the lease's name), the value, and short arguments.
        let bytes = 2 * redis_key.len() + value.len() + 64;
        let mut call = SET_AND_CANCEL.call(2, 6, bytes);
        call.arg(redis_key)
            .arg(lease_arg(redis_key))
            .arg(value)
            .arg(ttl.seconds())
            .arg(flag)
            .arg(self.publish_command());
        let call = &call;
        let written: i64 = self
            .lanes
            .run(op, |mut link| async move { call.invoke(&mut link).await })
            .await?;
        Ok(written == 1)
    }

    /// UNLINK that cancels the key's lease (even when the key is absent); false when the key
    /// was absent.
    pub(super) async fn delete_cancelling_lease(
        &self,
        redis_key: &[u8],
    ) -> Result<bool, StoreError> {
        let lease = lease_name(redis_key);
        let keys: [&[u8]; 2] = [redis_key, &lease];
        let args: [&[u8]; 1] = [self.publish_command()];
        let (keys, args) = (&keys, &args);
        let removed: i64 = self
            .lanes
            .run(Op::write("unlink"), |mut link| async move {
                DELETE_AND_CANCEL.invoke(&mut link, keys, args).await
            })
            .await?;
        Ok(removed > 0)
    }

    /// Cancels the leases of many keys (batch and pattern deletions, before their keys go, so
    /// a fill cannot land after the deletion). Waiters notice within their fallback check.
    pub(super) async fn cancel_leases(&self, redis_keys: &[Vec<u8>]) -> Result<(), StoreError> {
        if redis_keys.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("UNLINK");
        for key in redis_keys {
            cmd.arg(lease_name(key));
        }
        self.query::<u64>(Op::idempotent_write("cancel_leases"), &cmd)
            .await
            .map(drop)
    }

    /// The process's lease waiters.
    pub fn lease_waiters(&self) -> &Hub {
        &self.hub
    }

    /// Joins the waiters of a key's lease: subscribes to its channel when this process does
    /// not yet. None when the process already holds its maximum of waiters.
    pub async fn wait_for_lease(&self, ks: &Keyspace, key: &CacheKey) -> Option<Ticket> {
        let channel = lease_name(&ks.redis_key(key.as_str()));
        self.hub.join(channel).await
    }
}

fn parse_lease_read(reply: Vec<Value>) -> Result<LeaseRead, StoreError> {
    let malformed = || StoreError::Other("an unexpected answer of the lease script".into());
    let mut items = reply.into_iter();
    let value: Option<Vec<u8>> = items
        .next()
        .map(Option::<Vec<u8>>::from_redis_value)
        .transpose()
        .map_err(|_| malformed())?
        .flatten();
    let token: Option<String> = items
        .next()
        .map(Option::<String>::from_redis_value)
        .transpose()
        .map_err(|_| malformed())?
        .flatten();
    match (value, token) {
        (Some(value), lease) => Ok(LeaseRead::Hit { value, lease }),
        (None, Some(token)) => Ok(LeaseRead::Granted(token)),
        (None, None) => {
            let pttl = items
                .next()
                .map(i64::from_redis_value)
                .transpose()
                .map_err(|_| malformed())?
                .unwrap_or(0);
            // -2: the lease ended between the SET NX and the PTTL; try again at once.
            Ok(LeaseRead::Held(Duration::from_millis(pttl.max(0) as u64)))
        }
    }
}

/// The waiters of one lease channel in this process.
struct Channel {
    waiters: AtomicUsize,
    /// Bumped on every notification; a waiter compares it with what it saw before checking.
    generation: AtomicU64,
    woken: Notify,
}

/// The process's lease waiters: one subscription link, a map channel -> waiters, a bound,
/// and the shutdown signal that answers them all.
pub struct Hub {
    connector: Arc<dyn Connect>,
    inner: Arc<HubShared>,
    /// The subscription link; its lock also orders (un)subscribe commands.
    link: SharedLink,
    max_waiters: usize,
    command_timeout: Duration,
}

type SharedLink = Arc<tokio::sync::Mutex<Option<Link>>>;

struct HubShared {
    channels: Mutex<HashMap<Vec<u8>, Arc<Channel>>>,
    waiting: AtomicUsize,
    closing: AtomicBool,
    closed: Notify,
    /// Set when the subscription link reports itself lost: the next waiter reconnects.
    link_lost: AtomicBool,
}

impl HubShared {
    fn lock(&self) -> MutexGuard<'_, HashMap<Vec<u8>, Arc<Channel>>> {
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A push from the subscription link: wake the waiters of a published channel.
    fn on_push(&self, push: redis::PushInfo) {
        match push.kind {
            redis::PushKind::Message | redis::PushKind::SMessage => {
                let Some(Value::BulkString(name)) = push.data.first() else {
                    return;
                };
                let channel = self.lock().get(name.as_slice()).cloned();
                if let Some(channel) = channel {
                    wake(&channel);
                }
            }
            redis::PushKind::Disconnection => {
                self.link_lost.store(true, Ordering::Relaxed);
                // Notifications may have been lost: every waiter checks again.
                let channels: Vec<Arc<Channel>> = self.lock().values().cloned().collect();
                channels.iter().for_each(|c| wake(c));
            }
            _ => {}
        }
    }
}

fn wake(channel: &Channel) {
    channel.generation.fetch_add(1, Ordering::AcqRel);
    channel.woken.notify_waiters();
}

/// Why a waiter stopped waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A notification came (or may have been lost): check again.
    Notified,
    /// The time given passed.
    Elapsed,
    /// cachegate is shutting down: answer now.
    Closing,
}

impl Hub {
    pub(super) fn new(
        connector: Arc<dyn Connect>,
        max_waiters: usize,
        command_timeout: Duration,
    ) -> Self {
        Self {
            connector,
            inner: Arc::new(HubShared {
                channels: Mutex::new(HashMap::new()),
                waiting: AtomicUsize::new(0),
                closing: AtomicBool::new(false),
                closed: Notify::new(),
                link_lost: AtomicBool::new(false),
            }),
            link: Arc::new(tokio::sync::Mutex::new(None)),
            max_waiters,
            command_timeout,
        }
    }

    /// Callers waiting on a lease in this process.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::Relaxed)
    }

    /// Channels this process listens to.
    pub fn channels(&self) -> usize {
        self.inner.lock().len()
    }

    /// Shutdown: every waiter is answered now, and no new one waits.
    pub fn close(&self) {
        self.inner.closing.store(true, Ordering::Release);
        self.inner.closed.notify_waiters();
    }

    pub fn is_closing(&self) -> bool {
        self.inner.closing.load(Ordering::Acquire)
    }

    async fn join(&self, name: Vec<u8>) -> Option<Ticket> {
        if self.is_closing() {
            return None;
        }
        // Count first, so concurrent joins cannot pass the bound together.
        if self.inner.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiters {
            self.inner.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let (channel, first) = {
            let mut channels = self.inner.lock();
            match channels.get(&name) {
                Some(channel) => (Arc::clone(channel), false),
                None => {
                    let channel = Arc::new(Channel {
                        waiters: AtomicUsize::new(0),
                        generation: AtomicU64::new(0),
                        woken: Notify::new(),
                    });
                    channels.insert(name.clone(), Arc::clone(&channel));
                    (channel, true)
                }
            }
        };
        channel.waiters.fetch_add(1, Ordering::AcqRel);
        // The ticket exists before the subscription: a caller hanging up during it drops it.
        let ticket = Ticket {
            hub: Arc::clone(&self.inner),
            link: Arc::clone(&self.link),
            name,
            channel,
            seen: 0,
        };
        if first || self.inner.link_lost.load(Ordering::Relaxed) {
            // Failure is not fatal: the waiter's slow fallback check covers it.
            if let Err(err) = self.subscribe(&ticket.name).await {
                tracing::warn!(error = ?err, "lease notifications unavailable; waiters fall back to periodic checks");
            }
        }
        Some(ticket)
    }

    /// Subscribes to `name` on the shared link, connecting it (and resubscribing every
    /// channel) when there is none or it was lost. Bounded by the command timeout.
    async fn subscribe(&self, name: &[u8]) -> Result<(), StoreError> {
        let step = async {
            let mut link = self.link.lock().await;
            if link.is_none() || self.inner.link_lost.swap(false, Ordering::AcqRel) {
                let shared = Arc::clone(&self.inner);
                let sink: PushSink = Arc::new(move |push| shared.on_push(push));
                let mut fresh = self.connector.connect_subscriber(sink).await?;
                let all: Vec<Vec<u8>> = self.inner.lock().keys().cloned().collect();
                if !all.is_empty() {
                    subscribe_on(&mut fresh, &all, true).await?;
                }
                *link = Some(fresh);
                return Ok(());
            }
            match link.as_mut() {
                Some(live) => subscribe_on(live, &[name.to_vec()], true).await,
                None => Ok(()),
            }
        };
        match tokio::time::timeout(self.command_timeout, step).await {
            Ok(result) => result.map_err(|e| super::errors::classify(&e)),
            Err(_) => Err(StoreError::Timeout),
        }
    }
}

/// SUBSCRIBE (one Redis) or SSUBSCRIBE (a cluster, where the channel's slot picks the node),
/// or their opposites.
async fn subscribe_on(
    link: &mut Link,
    names: &[Vec<u8>],
    subscribe: bool,
) -> Result<(), RedisError> {
    match (link, subscribe) {
        (Link::Cluster(c), true) => c.ssubscribe(names).await,
        (Link::Cluster(c), false) => c.sunsubscribe(names).await,
        (Link::Single(c), true) => c.subscribe(names).await,
        (Link::Single(c), false) => c.unsubscribe(names).await,
    }
}

/// One caller waiting on a lease. Dropping it (an answer, or the client hanging up, which
/// drops the handler's future) leaves the map at once; the last waiter of a channel
/// unsubscribes.
pub struct Ticket {
    hub: Arc<HubShared>,
    link: SharedLink,
    name: Vec<u8>,
    channel: Arc<Channel>,
    seen: u64,
}

impl Ticket {
    /// Call before each check of the lease: a notification after it is not missed.
    pub fn arm(&mut self) {
        self.seen = self.channel.generation.load(Ordering::Acquire);
    }

    /// Waits for a notification since `arm`, at most `limit`, or for shutdown.
    pub async fn wait(&self, limit: Duration) -> Wake {
        let woken = self.channel.woken.notified();
        let closed = self.hub.closed.notified();
        tokio::pin!(woken, closed);
        woken.as_mut().enable();
        closed.as_mut().enable();
        if self.hub.closing.load(Ordering::Acquire) {
            return Wake::Closing;
        }
        if self.channel.generation.load(Ordering::Acquire) != self.seen {
            return Wake::Notified;
        }
        tokio::select! {
            _ = woken => Wake::Notified,
            _ = closed => Wake::Closing,
            _ = tokio::time::sleep(limit) => Wake::Elapsed,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.hub.waiting.fetch_sub(1, Ordering::AcqRel);
        if self.channel.waiters.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        {
            let mut channels = self.hub.lock();
            let still_ours = channels
                .get(&self.name)
                .is_some_and(|c| Arc::ptr_eq(c, &self.channel));
            // A waiter may have joined between the count and the lock.
            if still_ours && self.channel.waiters.load(Ordering::Acquire) == 0 {
                channels.remove(&self.name);
            } else {
                return;
            }
        }
        // Unsubscribe in the background, under the link's lock (which orders it with
        // subscriptions), unless a new waiter of the channel came meanwhile.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (hub, link, name) = (
            Arc::clone(&self.hub),
            Arc::clone(&self.link),
            self.name.clone(),
        );
        runtime.spawn(async move {
            let step = async {
                let mut link = link.lock().await;
                if hub.lock().contains_key(&name) {
                    return;
                }
                if let Some(live) = link.as_mut() {
                    let _ = subscribe_on(live, &[name], false).await;
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), step).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::ErrorKind;
    use std::future::Future;
    use std::pin::Pin;

    /// A connector to nowhere: subscriptions fail, and waiters still work on their fallback.
    struct Nowhere;

    impl Connect for Nowhere {
        fn connect(
            &self,
            _: super::super::lanes::LossSignal,
        ) -> Pin<Box<dyn Future<Output = Result<Link, RedisError>> + Send + '_>> {
            Box::pin(async { Err(RedisError::from((ErrorKind::Io, "nowhere"))) })
        }

        fn connect_subscriber(
            &self,
            _: PushSink,
        ) -> Pin<Box<dyn Future<Output = Result<Link, RedisError>> + Send + '_>> {
            Box::pin(async { Err(RedisError::from((ErrorKind::Io, "nowhere"))) })
        }

        fn describe(&self) -> String {
            "nowhere".into()
        }
    }

    #[tokio::test]
    async fn waiters_are_bounded_counted_and_dropped_with_their_ticket() {
        let hub = Hub::new(Arc::new(Nowhere), 2, Duration::from_millis(50));
        let a = hub.join(b"k1".to_vec()).await.expect("room for the first");
        let b = hub.join(b"k1".to_vec()).await.expect("room for the second");
        assert!(hub.join(b"k2".to_vec()).await.is_none(), "past the bound");
        assert_eq!((hub.waiting(), hub.channels()), (2, 1));
        drop(a);
        assert_eq!((hub.waiting(), hub.channels()), (1, 1));
        drop(b);
        assert_eq!((hub.waiting(), hub.channels()), (0, 0));
        let c = hub.join(b"k2".to_vec()).await.expect("room again");
        hub.close();
        assert_eq!(c.wait(Duration::from_secs(5)).await, Wake::Closing);
        assert!(
            hub.join(b"k3".to_vec()).await.is_none(),
            "no new waiter while closing"
        );
    }

    #[tokio::test]
    async fn a_notification_during_the_check_is_not_missed() {
        let hub = Hub::new(Arc::new(Nowhere), 10, Duration::from_millis(50));
        let mut ticket = hub.join(b"k".to_vec()).await.expect("a ticket");
        ticket.arm();
        // Published while the waiter was checking Redis, before it started waiting.
        hub.inner.on_push(redis::PushInfo {
            kind: redis::PushKind::Message,
            data: vec![
                Value::BulkString(b"k".to_vec()),
                Value::BulkString(b"filled".to_vec()),
            ],
        });
        assert_eq!(ticket.wait(Duration::from_secs(5)).await, Wake::Notified);
        ticket.arm();
        assert_eq!(ticket.wait(Duration::from_millis(20)).await, Wake::Elapsed);
    }

    #[test]
    fn lease_reads_parse() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        assert_eq!(
            parse_lease_read(vec![bulk("1")]).unwrap(),
            LeaseRead::Hit {
                value: b"1".to_vec(),
                lease: None
            }
        );
        assert_eq!(
            parse_lease_read(vec![Value::Nil, bulk("t")]).unwrap(),
            LeaseRead::Granted("t".into())
        );
        assert_eq!(
            parse_lease_read(vec![Value::Nil, Value::Nil, Value::Int(1500)]).unwrap(),
            LeaseRead::Held(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_lease_read(vec![Value::Nil, Value::Nil, Value::Int(-2)]).unwrap(),
            LeaseRead::Held(Duration::ZERO)
        );
    }
}
