//! The Redis engine: records shared by every tokend instance on one Redis, so a code minted on
//! one instance is redeemed on another, exactly once.
//!
//! Layout (`P` = `store.key_prefix`, `H` = hex of the record's SHA-256 storage key — never the
//! code or state itself): the record is the hash `P<kind>:{H}` with fields `e` (expiry, unix
//! seconds, in clear) and `v` (the sealed record, see `seal`), expiring in Redis
//! [`EXPIRED_MEMORY`] after `e` so a late redemption is told "expired"; its tombstone
//! `P<kind>:{H}:used` lives until `e` once the record is taken, so a replay is told "already
//! used". The `{H}` hash tag puts both in one Redis Cluster slot, as the Lua scripts (atomic,
//! run by Redis itself) need. Every call is bounded by `store.timeout`; a failure is
//! [`Unavailable`], and the connection (one server or a Redis Cluster, see `redis_conn`)
//! reconnects by itself.
//!
//! Capacity: exchange codes are refused when the last count (a bounded SCAN of every node —
//! each master in a Redis Cluster, see `redis_conn` — every [`MONITOR_INTERVAL`], plus this
//! instance's puts and takes since) reaches `codes.max_outstanding` — approximate across
//! instances. Login states are capped exactly across instances
//! (`flow.max_pending_logins`): the sorted set `P logins:{z}` holds their `H`s scored by expiry,
//! trimmed of the expired, counted and added to atomically by [`ADMIT`]; when full, the states
//! expiring soonest (the oldest) are evicted, as the memory engine does, and their records
//! deleted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::Script;
use zeroize::Zeroizing;

use super::redis_conn::Conn;
use super::seal::SealKey;
use super::{
    BoxFuture, CodeListing, EXPIRED_MEMORY, Key, Kind, OpenError, Record, Store, StoreError,
    StoreHealth, Stored, TakeError, Unavailable,
};
use crate::config::{StoreConfig, decode_store_key};

/// How often the health check, the count and the code listing run.
pub const MONITOR_INTERVAL: Duration = Duration::from_secs(2);

/// Most keys one count looks at (per kind); beyond it the count stops there.
const MAX_SCANNED: usize = 100_000;

/// Most codes the admin listing shows.
const MAX_LISTED: usize = 1_000;

/// Stores the record unless the key or its tombstone exists. KEYS: record, tombstone. ARGV:
/// expiry (unix s), sealed value, Redis TTL (ms). Returns 1 stored, 0 duplicate.
const PUT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'e', ARGV[1], 'v', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
";

/// Takes the record out, once. KEYS: record, tombstone. ARGV: now (unix s). Returns
/// {0,'',0} unknown, {1,'',0} expired (removed), {2,'',0} already used, {3, sealed, expiry}
/// taken (the tombstone lives until the record would have expired).
const TAKE: &str = r"
local e = redis.call('HGET', KEYS[1], 'e')
if not e then
  if redis.call('EXISTS', KEYS[2]) == 1 then return {2, '', 0} end
  return {0, '', 0}
end
local now = tonumber(ARGV[1])
local expires = tonumber(e)
if now >= expires then
  redis.call('DEL', KEYS[1])
  return {1, '', 0}
end
local v = redis.call('HGET', KEYS[1], 'v')
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], '1', 'EX', expires - now)
return {3, v, expires}
";

/// Admits one login state to the set of live ones, evicting the oldest when full. KEYS: the
/// set. ARGV: now (unix s), capacity, member (`H`), its expiry (unix s), the set's TTL (ms).
/// Returns the evicted members.
const ADMIT: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local evicted = {}
local n = redis.call('ZCARD', KEYS[1])
local max = tonumber(ARGV[2])
if n >= max then
  local popped = redis.call('ZPOPMIN', KEYS[1], n - max + 1)
  for i = 1, #popped, 2 do evicted[#evicted + 1] = popped[i] end
end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[5]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
return evicted
";

/// The Redis engine. Cheap to clone the handle inside; the monitor task holds only a weak one
/// and ends when the store is dropped.
pub struct RedisStore {
    inner: Arc<Inner>,
    /// Sessions and the refresh single-flight, on the same connection and sealing key.
    sessions: Arc<super::redis_sessions::RedisSessions>,
}

struct Inner {
    /// One server or a cluster; reconnects by itself; built lazily (no connection until the
    /// first call).
    manager: Conn,
    /// Seals and opens record values.
    seal: SealKey,
    /// `store.key_prefix`.
    prefix: String,
    /// `store.timeout`, applied to every call.
    timeout: Duration,
    /// `store.cluster`: a call that succeeds says nothing of the other masters, so only the
    /// monitor's `PING` of every master says the engine is healthy again (and why not).
    cluster: bool,
    /// In a cluster, a plain client per seed (`url`, `cluster_urls`): once the crate has no
    /// node connected it says only that ("No connections found"); the monitor then connects
    /// to each seed itself so `/readyz` says why (a refused certificate, password, address).
    seeds: Vec<redis::Client>,
    /// Capacity per kind (index: [`slot`]).
    max: [AtomicUsize; 2],
    /// Live records per kind as last counted, adjusted by this instance's puts and takes.
    counted: [AtomicUsize; 2],
    /// The codes as last listed (no tokens).
    listing: Mutex<Vec<CodeListing>>,
    /// The last call's or health check's outcome.
    health: Mutex<StoreHealth>,
    put: Script,
    take: Script,
    admit: Script,
}

fn slot(kind: Kind) -> usize {
    match kind {
        Kind::ExchangeCode => 0,
        Kind::LoginState => 1,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("codes", &self.outstanding(Kind::ExchangeCode))
            .field("logins", &self.outstanding(Kind::LoginState))
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// Builds the engine from a validated `[store]` (no connection yet) and starts its monitor.
    /// Must be called within a tokio runtime.
    pub fn open(
        config: &StoreConfig,
        max_codes: usize,
        max_logins: usize,
    ) -> Result<Self, OpenError> {
        let store = Self::build(config, max_codes, max_logins)?;
        tokio::spawn(monitor(Arc::downgrade(&store.inner)));
        Ok(store)
    }

    /// [`Self::open`] without the monitor: the counts and the health change only by this
    /// store's own calls and [`Self::refresh`]. For tests that assert exact counts, which a
    /// monitor's `SCAN` running beside their puts would race (the count is approximate by
    /// design: README, "Capacity").
    #[cfg(test)]
    pub(crate) fn open_unmonitored(
        config: &StoreConfig,
        max_codes: usize,
        max_logins: usize,
    ) -> Result<Self, OpenError> {
        Self::build(config, max_codes, max_logins)
    }

    fn build(config: &StoreConfig, max_codes: usize, max_logins: usize) -> Result<Self, OpenError> {
        let url = config.url.as_deref().unwrap_or_default();
        let manager = Conn::open(config)?;
        let seeds = if config.cluster {
            (super::redis_conn::urls(config).into_iter())
                .map(|url| super::redis_conn::client_for(config, url))
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        let seal = seal_key(config)?;
        let sessions = Arc::new(super::redis_sessions::RedisSessions::new(
            manager.clone(),
            seal_key(config)?,
            config.key_prefix.clone(),
            config.timeout,
        ));
        let inner = Arc::new(Inner {
            manager,
            seal,
            prefix: config.key_prefix.clone(),
            timeout: config.timeout,
            cluster: config.cluster,
            seeds,
            max: [AtomicUsize::new(max_codes), AtomicUsize::new(max_logins)],
            counted: [AtomicUsize::new(0), AtomicUsize::new(0)],
            listing: Mutex::new(Vec::new()),
            health: Mutex::new(StoreHealth {
                healthy: false,
                error: Some("not checked yet".into()),
            }),
            put: Script::new(PUT),
            take: Script::new(TAKE),
            admit: Script::new(ADMIT),
        });
        // The URL carries no credentials (refused at load).
        tracing::info!(
            url = %url,
            cluster = config.cluster,
            seeds = super::redis_conn::urls(config).len(),
            prefix = %config.key_prefix,
            user = config.username.as_deref().unwrap_or("default"),
            "record store: Redis (exchange codes, login states and sessions shared by every instance)"
        );
        Ok(Self { inner, sessions })
    }

    /// Checks, counts and lists now (the monitor does this every [`MONITOR_INTERVAL`]).
    pub async fn refresh(&self) {
        self.inner.refresh().await;
    }
}

/// The AEAD key of `store.encryption_key`.
pub fn seal_key(config: &StoreConfig) -> Result<SealKey, OpenError> {
    let key_text = config
        .encryption_key
        .as_ref()
        .map(|k| k.expose())
        .unwrap_or_default();
    let key = decode_store_key(key_text)
        .ok_or_else(|| OpenError::Key("not 32 bytes written in hex or base64".into()))?;
    SealKey::new(&key).map_err(|e| OpenError::Key(e.to_string()))
}

/// Runs one Redis call within `timeout` (`store.timeout`): a Redis error or no answer in time
/// is an outage, told in words fit for `/readyz` and the logs (the record store and the
/// revocation sync both call Redis this way).
pub async fn within<T>(
    timeout: std::time::Duration,
    call: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, Unavailable> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Unavailable(describe(&e))),
        Err(_) => Err(Unavailable(format!(
            "Redis did not answer within {} ms (store.timeout)",
            timeout.as_millis()
        ))),
    }
}

/// A Redis error as the operator should read it (no keys or values: ours are hashes and
/// sealed anyway).
pub fn describe(e: &redis::RedisError) -> String {
    if e.is_connection_refusal() {
        "connection to Redis refused".into()
    } else if e.is_timeout() {
        "Redis timed out".into()
    } else {
        format!("Redis: {e}")
    }
}

/// Lower-case hex of a storage key (the `{H}` of Redis key names).
pub fn hex(key: &Key) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

/// The key a [`hex`] wrote, or `None`.
pub fn unhex(text: &str) -> Option<Key> {
    let mut key = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        key[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(key)
}

async fn monitor(inner: Weak<Inner>) {
    loop {
        match inner.upgrade() {
            Some(inner) => inner.refresh().await,
            None => return,
        }
        tokio::time::sleep(MONITOR_INTERVAL).await;
    }
}

impl Inner {
    fn record_key(&self, kind: Kind, key: &Key) -> String {
        format!("{}{}:{{{}}}", self.prefix, kind.as_str(), hex(key))
    }

    /// Runs `call` within the timeout; notes the outcome as the engine's health.
    async fn bounded<T>(
        &self,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Unavailable> {
        let result = within(self.timeout, call).await;
        match &result {
            Ok(_) if self.cluster => {}
            Ok(_) => *lock(&self.health) = StoreHealth::ok(),
            Err(e) => {
                let mut health = lock(&self.health);
                // In a cluster the monitor's reason (see `seeds`) is kept: a failing call
                // only says the engine is down when it was thought up.
                if !self.cluster || health.healthy {
                    *health = StoreHealth::down(e.0.clone());
                }
            }
        }
        result
    }

    /// Why the first seed that fails a plain connection and `PING` fails, if one does.
    async fn seed_problem(&self) -> Option<String> {
        for seed in &self.seeds {
            let ping = async {
                let mut c = seed.get_multiplexed_async_connection().await?;
                redis::cmd("PING").query_async::<String>(&mut c).await
            };
            if let Err(e) = within(self.timeout, ping).await {
                let addr = seed.get_connection_info().addr();
                return Some(format!("seed {addr}: {}", e.0));
            }
        }
        None
    }

    async fn put(&self, kind: Kind, key: Key, record: Record) -> Result<Stored, StoreError> {
        let i = slot(kind);
        let max = self.max[i].load(Ordering::Relaxed);
        if kind == Kind::ExchangeCode && self.counted[i].load(Ordering::Relaxed) >= max {
            return Err(StoreError::Full(kind, max));
        }
        let name = self.record_key(kind, &key);
        let expires = record.expires();
        let aad = aad(&name, expires);
        let sealed = Zeroizing::new(self.seal.seal(&aad, &record).map_err(|e| {
            tracing::error!(error = %e, "cannot seal a record");
            StoreError::Unavailable(Unavailable(e.to_string()))
        })?);
        let life = expires.saturating_sub(record.created()).max(0);
        let ttl_ms = life
            .saturating_add(EXPIRED_MEMORY)
            .saturating_mul(1000)
            .max(1);
        let mut conn = self.manager.clone();
        let mut invocation = self.put.key(&name);
        invocation
            .key(format!("{name}:used"))
            .arg(expires)
            .arg(sealed.as_slice())
            .arg(ttl_ms);
        let evicted = if kind == Kind::LoginState {
            self.admit(&key, record.created(), expires, max, ttl_ms)
                .await?
        } else {
            0
        };
        let stored: i64 = self.bounded(invocation.invoke_async(&mut conn)).await?;
        if stored == 1 {
            self.counted[i].fetch_add(1, Ordering::Relaxed);
            Ok(Stored { evicted })
        } else {
            if kind == Kind::LoginState {
                let _ = self.forget_login(&key).await;
            }
            Err(StoreError::Duplicate)
        }
    }

    fn logins_name(&self) -> String {
        format!("{}logins:{{z}}", self.prefix)
    }

    /// Counts a new login state in across every instance (see [`ADMIT`]); deletes the records
    /// of the states evicted for it. Returns how many were.
    async fn admit(
        &self,
        key: &Key,
        now: i64,
        expires: i64,
        max: usize,
        ttl_ms: i64,
    ) -> Result<usize, Unavailable> {
        let mut conn = self.manager.clone();
        let mut invocation = self.admit.key(self.logins_name());
        invocation
            .arg(now)
            .arg(max.max(1))
            .arg(hex(key))
            .arg(expires)
            .arg(ttl_ms);
        let evicted: Vec<String> = self.bounded(invocation.invoke_async(&mut conn)).await?;
        if !evicted.is_empty() {
            // One DEL of them all: in a cluster the crate splits it per shard.
            let mut del = redis::cmd("DEL");
            for h in &evicted {
                del.arg(format!(
                    "{}{}:{{{h}}}",
                    self.prefix,
                    Kind::LoginState.as_str()
                ));
            }
            self.bounded(del.query_async::<()>(&mut conn)).await?;
        }
        Ok(evicted.len())
    }

    /// Drops a login state from the set of live ones (taken, or never stored).
    async fn forget_login(&self, key: &Key) -> Result<(), Unavailable> {
        let mut conn = self.manager.clone();
        let mut cmd = redis::cmd("ZREM");
        cmd.arg(self.logins_name()).arg(hex(key));
        self.bounded(cmd.query_async::<()>(&mut conn)).await
    }

    async fn take(&self, kind: Kind, key: Key, now: i64) -> Result<Record, TakeError> {
        let name = self.record_key(kind, &key);
        let mut conn = self.manager.clone();
        let mut invocation = self.take.key(&name);
        invocation.key(format!("{name}:used")).arg(now);
        let (status, value, expires): (i64, Vec<u8>, i64) =
            self.bounded(invocation.invoke_async(&mut conn)).await?;
        let value = Zeroizing::new(value);
        if kind == Kind::LoginState && status != 0 {
            // Best effort: an entry left behind is trimmed when it expires.
            let _ = self.forget_login(&key).await;
        }
        match status {
            0 => Err(TakeError::Unknown),
            1 => {
                decrement(&self.counted[slot(kind)]);
                Err(TakeError::Expired)
            }
            2 => Err(TakeError::AlreadyUsed),
            _ => {
                decrement(&self.counted[slot(kind)]);
                // The script checked the expiry in clear; it is bound into the sealed value,
                // so an altered `e` does not open.
                self.seal.open(&aad(&name, expires), &value).map_err(|err| {
                    // Another key, or an altered value: nothing usable was taken.
                    tracing::warn!(error = %err, "a record in Redis did not open");
                    TakeError::Unknown
                })
            }
        }
    }

    async fn refresh(&self) {
        // Every node answers (in a cluster, each master by its address).
        let ping = async {
            let pings = self
                .manager
                .nodes()
                .await?
                .into_iter()
                .map(|mut node| async move {
                    redis::cmd("PING").query_async::<String>(&mut node).await
                });
            futures_util::future::try_join_all(pings).await
        };
        if let Err(e) = within(self.timeout, ping).await {
            let why = match self.seed_problem().await {
                Some(seed) => format!("{}; {seed}", e.0),
                None => e.0,
            };
            *lock(&self.health) = StoreHealth::down(why);
            return;
        }
        let mut conn = self.manager.clone();
        *lock(&self.health) = StoreHealth::ok();
        // Loaded ahead (again after a Redis restart), so a burst of first calls does not each
        // meet NOSCRIPT and load them.
        for script in [&self.put, &self.take, &self.admit] {
            let _ = self.bounded(script.load_async(&mut conn)).await;
        }
        for kind in [Kind::ExchangeCode, Kind::LoginState] {
            if let Ok((count, listing)) = self.scan(kind).await {
                self.counted[slot(kind)].store(count, Ordering::Relaxed);
                if kind == Kind::ExchangeCode {
                    *lock(&self.listing) = listing;
                }
            }
        }
    }

    /// Counts the live records of `kind` (tombstones excluded) on every node; lists codes.
    async fn scan(&self, kind: Kind) -> Result<(usize, Vec<CodeListing>), Unavailable> {
        let mut count = 0;
        let mut listing = Vec::new();
        for node in self.bounded(self.manager.nodes()).await? {
            if count >= MAX_SCANNED {
                break;
            }
            self.scan_node(kind, node, &mut count, &mut listing).await?;
        }
        Ok((count, listing))
    }

    /// [`Self::scan`] on one node, to its end or until [`MAX_SCANNED`].
    async fn scan_node(
        &self,
        kind: Kind,
        mut conn: super::redis_conn::NodeConn,
        count: &mut usize,
        listing: &mut Vec<CodeListing>,
    ) -> Result<(), Unavailable> {
        let pattern = format!("{}{}:{{*}}", self.prefix, kind.as_str());
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .bounded(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut conn),
                )
                .await?;
            *count += keys.len();
            if kind == Kind::ExchangeCode && listing.len() < MAX_LISTED && !keys.is_empty() {
                let mut pipe = redis::pipe();
                for k in &keys {
                    pipe.cmd("HMGET").arg(k).arg("e").arg("v");
                }
                let values: Vec<(Option<i64>, Option<Vec<u8>>)> =
                    self.bounded(pipe.query_async(&mut conn)).await?;
                for (name, (e, v)) in keys.iter().zip(values) {
                    let (Some(e), Some(v)) = (e, v) else { continue };
                    let v = Zeroizing::new(v);
                    let Some(key) = name
                        .rsplit_once('{')
                        .and_then(|(_, h)| unhex(h.trim_end_matches('}')))
                    else {
                        continue;
                    };
                    if let Ok(Record::Code(c)) = self.seal.open(&aad(name, e), &v)
                        && listing.len() < MAX_LISTED
                    {
                        listing.push(CodeListing {
                            key,
                            kind: c.kind,
                            sub: c.sub.clone(),
                            created: c.created,
                            expires: c.expires,
                        });
                    }
                }
            }
            cursor = next;
            if cursor == 0 || *count >= MAX_SCANNED {
                return Ok(());
            }
        }
    }
}

/// The associated data of a sealed value: its Redis key and its expiry.
fn aad(name: &str, expires: i64) -> Vec<u8> {
    let mut out = name.as_bytes().to_vec();
    out.push(0);
    out.extend_from_slice(&expires.to_be_bytes());
    out
}

fn decrement(n: &AtomicUsize) {
    let _ = n.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
}

impl Store for RedisStore {
    fn put(
        &self,
        kind: Kind,
        key: Key,
        record: Record,
    ) -> BoxFuture<'_, Result<Stored, StoreError>> {
        Box::pin(self.inner.put(kind, key, record))
    }

    fn take(&self, kind: Kind, key: Key, now: i64) -> BoxFuture<'_, Result<Record, TakeError>> {
        Box::pin(self.inner.take(kind, key, now))
    }

    fn outstanding(&self, kind: Kind) -> usize {
        self.inner.counted[slot(kind)].load(Ordering::Relaxed)
    }

    fn sweep(&self, _now: i64) -> usize {
        0
    }

    fn set_capacity(&self, kind: Kind, max: usize) {
        self.inner.max[slot(kind)].store(max, Ordering::Relaxed);
    }

    fn list_codes(&self) -> Vec<CodeListing> {
        lock(&self.inner.listing).clone()
    }

    fn kind_name(&self) -> &'static str {
        "redis"
    }

    fn health(&self) -> StoreHealth {
        lock(&self.inner.health).clone()
    }

    fn shared_sessions(&self) -> Option<Arc<dyn super::SharedSessions>> {
        Some(self.sessions.clone())
    }
}
