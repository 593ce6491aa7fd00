//! The Redis engine's [`SharedSessions`]: sessions every instance sees, and the refresh
//! single-flight across instances.
//!
//! Layout (`P` = `store.key_prefix`; `S` = hex SHA-256 of `sess\0<registry key>`, `R` = hex
//! SHA-256 of a refresh token — never the token, `sid` or user in clear):
//! - `P sess:{S}`: a hash, `v` the sealed record (tokens, user, expiries; the key's name as
//!   associated data), `l` the last-seen time (unix seconds, written behind). Expires
//!   [`KEEP_AFTER`] after the session's refresh expiry. Listed by SCAN of every node (each
//!   master in a Redis Cluster; no index set to keep, see `redis_conn`).
//! - `P sessrt:{R}`: the `S` of the session the refresh token was handed out for; expires
//!   with that session's record as it was then, so a rotated token is told from an unknown one.
//! - `P rflock:{R}`: the refresh lock (SET NX PX), held while one instance sends the grant.
//! - `P rfres:{R}`: the refresh's sealed outcome, kept `flow.refresh_grace` for the waiters.
//!
//! Each key carries its own `{…}` hash tag and every call touches one key (batches are
//! concurrent single-key calls, or a pipeline bound to the node a SCAN ran on), so Redis
//! Cluster works.

use std::time::Duration;

use futures_util::future::try_join_all;
use redis::Script;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokend_shared::{Secret, SessionInfo};
use zeroize::Zeroizing;

use super::redis::{hex, within};
use super::redis_conn::{Conn, NodeConn};
use super::seal::SealKey;
use super::shared::{RefreshOutcome, SessionRecord, SharedSessions};
use super::{BoxFuture, Key, Unavailable};

/// How long a session record outlives its refresh expiry (a late logout still finds it).
pub const KEEP_AFTER: i64 = 60;

/// Most session records one listing reads.
const MAX_LISTED: usize = 10_000;

/// Writes the record and its TTL at once (last-seen only forward: another instance may have
/// written a later one). KEYS: record. ARGV: sealed value, last seen, TTL ms.
const SAVE: &str = r"
local l = tonumber(redis.call('HGET', KEYS[1], 'l') or '0')
redis.call('HSET', KEYS[1], 'v', ARGV[1])
if tonumber(ARGV[2]) > l then redis.call('HSET', KEYS[1], 'l', ARGV[2]) end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
";

/// Moves last-seen forward on a record that still exists (never creates one without a TTL).
/// KEYS: record. ARGV: last seen.
const SEEN: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local l = tonumber(redis.call('HGET', KEYS[1], 'l') or '0')
if tonumber(ARGV[1]) > l then redis.call('HSET', KEYS[1], 'l', ARGV[1]) end
return 1
";

/// The Redis engine's shared sessions.
pub struct RedisSessions {
    /// A clone of the store's connection (one server or a cluster).
    manager: Conn,
    /// The store's sealing key.
    seal: SealKey,
    /// `store.key_prefix`.
    prefix: String,
    /// `store.timeout`, bounding every call.
    timeout: Duration,
    save: Script,
}

impl std::fmt::Debug for RedisSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSessions")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The record as sealed (its tokens wiped when dropped).
#[derive(Serialize, Deserialize)]
struct Wire {
    key: String,
    sid: Option<String>,
    sub: String,
    email: Option<String>,
    org: Option<String>,
    role: String,
    created: i64,
    ae: i64,
    re: i64,
    ls: i64,
    rt: Option<Zeroizing<String>>,
    it: Option<Zeroizing<String>>,
}

/// An outcome as sealed (tokens wiped when dropped).
#[derive(Serialize, Deserialize)]
enum OutcomeWire {
    Tokens {
        a: Zeroizing<String>,
        r: Option<Zeroizing<String>>,
        i: Option<Zeroizing<String>>,
    },
    Refused(String),
    NoSession,
    Upstream(String),
}

fn secret(s: Option<&Zeroizing<String>>) -> Option<Secret> {
    s.map(|s| Secret::new(s.as_str()))
}

fn exposed(s: Option<&Secret>) -> Option<Zeroizing<String>> {
    s.map(|s| Zeroizing::new(s.expose().to_string()))
}

/// `S`: the hex hash of a registry key.
fn session_hash(key: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"sess\0");
    h.update(key.as_bytes());
    hex(&h.finalize().into())
}

impl RedisSessions {
    pub fn new(manager: Conn, seal: SealKey, prefix: String, timeout: Duration) -> Self {
        Self {
            manager,
            seal,
            prefix,
            timeout,
            save: Script::new(SAVE),
        }
    }

    fn record_name(&self, hash: &str) -> String {
        format!("{}sess:{{{hash}}}", self.prefix)
    }

    fn index_name(&self, refresh: &Key) -> String {
        format!("{}sessrt:{{{}}}", self.prefix, hex(refresh))
    }

    fn lock_name(&self, refresh: &Key) -> String {
        format!("{}rflock:{{{}}}", self.prefix, hex(refresh))
    }

    fn outcome_name(&self, refresh: &Key) -> String {
        format!("{}rfres:{{{}}}", self.prefix, hex(refresh))
    }

    fn seal_record(&self, name: &str, r: &SessionRecord) -> Result<Vec<u8>, Unavailable> {
        let wire = Wire {
            key: r.key.clone(),
            sid: r.sid.clone(),
            sub: r.sub.clone(),
            email: r.email.clone(),
            org: r.organization_id.clone(),
            role: r.role.clone(),
            created: r.created,
            ae: r.access_expires,
            re: r.refresh_expires,
            ls: r.last_seen,
            rt: exposed(r.refresh_token.as_ref()),
            it: exposed(r.id_token.as_ref()),
        };
        let plain = Zeroizing::new(serde_json::to_vec(&wire).map_err(|e| sealing(&e))?);
        self.seal
            .seal_bytes(name.as_bytes(), &plain)
            .map_err(|e| sealing(&e))
    }

    /// The record sealed under `name` (with `hash`), or `None` when it does not open or was
    /// copied from another key.
    fn open_record(&self, name: &str, hash: &str, sealed: &[u8], l: i64) -> Option<SessionRecord> {
        let plain = match self.seal.open_bytes(name.as_bytes(), sealed) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "a session record in Redis did not open");
                return None;
            }
        };
        let w: Wire = serde_json::from_slice(&plain).ok()?;
        if session_hash(&w.key) != hash {
            return None;
        }
        Some(SessionRecord {
            key: w.key,
            sid: w.sid,
            sub: w.sub,
            email: w.email,
            organization_id: w.org,
            role: w.role,
            created: w.created,
            access_expires: w.ae,
            refresh_expires: w.re,
            last_seen: w.ls.max(l),
            refresh_token: secret(w.rt.as_ref()),
            id_token: secret(w.it.as_ref()),
        })
    }

    async fn read(&self, hash: &str) -> Result<Option<SessionRecord>, Unavailable> {
        let name = self.record_name(hash);
        let mut conn = self.manager.clone();
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(&name).arg("v").arg("l");
        let (v, l): (Option<Vec<u8>>, Option<i64>) =
            within(self.timeout, cmd.query_async(&mut conn)).await?;
        let Some(v) = v.map(Zeroizing::new) else {
            return Ok(None);
        };
        Ok(self.open_record(&name, hash, &v, l.unwrap_or(0)))
    }

    async fn save_record(&self, r: &SessionRecord) -> Result<(), Unavailable> {
        let hash = session_hash(&r.key);
        let name = self.record_name(&hash);
        let sealed = Zeroizing::new(self.seal_record(&name, r)?);
        let ttl = r
            .refresh_expires
            .max(r.access_expires)
            .saturating_sub(now_unix())
            .saturating_add(KEEP_AFTER)
            .max(1);
        let mut conn = self.manager.clone();
        let mut invocation = self.save.key(&name);
        invocation
            .arg(sealed.as_slice())
            .arg(r.last_seen)
            .arg(ttl.saturating_mul(1000));
        within(self.timeout, invocation.invoke_async::<i64>(&mut conn)).await?;
        if let Some(rt) = &r.refresh_token {
            let index = self.index_name(&super::key_of(rt.expose()));
            let mut cmd = redis::cmd("SET");
            cmd.arg(&index).arg(&hash).arg("EX").arg(ttl);
            within(self.timeout, cmd.query_async::<()>(&mut conn)).await?;
        }
        Ok(())
    }

    /// Every session on every node (each master of a cluster), up to [`MAX_LISTED`].
    async fn list_all(&self) -> Result<Vec<SessionInfo>, Unavailable> {
        let mut out = Vec::new();
        for node in within(self.timeout, self.manager.nodes()).await? {
            if out.len() >= MAX_LISTED {
                break;
            }
            self.list_node(node, &mut out).await?;
        }
        Ok(out)
    }

    /// [`Self::list_all`] on one node.
    async fn list_node(
        &self,
        mut conn: NodeConn,
        out: &mut Vec<SessionInfo>,
    ) -> Result<(), Unavailable> {
        let pattern = format!("{}sess:{{*", self.prefix);
        let mut cursor: u64 = 0;
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, keys): (u64, Vec<String>) =
                within(self.timeout, cmd.query_async(&mut conn)).await?;
            if !keys.is_empty() {
                let mut pipe = redis::pipe();
                for k in &keys {
                    pipe.cmd("HMGET").arg(k).arg("v").arg("l");
                }
                let values: Vec<(Option<Vec<u8>>, Option<i64>)> =
                    within(self.timeout, pipe.query_async(&mut conn)).await?;
                for (name, (v, l)) in keys.iter().zip(values) {
                    let Some(v) = v.map(Zeroizing::new) else {
                        continue;
                    };
                    let Some((_, hash)) = name.rsplit_once('{') else {
                        continue;
                    };
                    let hash = hash.trim_end_matches('}');
                    if let Some(r) = self.open_record(name, hash, &v, l.unwrap_or(0)) {
                        out.push(r.info());
                    }
                }
            }
            cursor = next;
            if cursor == 0 || out.len() >= MAX_LISTED {
                return Ok(());
            }
        }
    }

    async fn write_seen(&self, batch: Vec<(String, i64)>) -> Result<(), Unavailable> {
        if batch.is_empty() {
            return Ok(());
        }
        // One call per session (each its own slot in a cluster), all under way at once on
        // the multiplexed connection.
        let calls = batch.iter().map(|(key, at)| {
            let mut conn = self.manager.clone();
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(SEEN)
                .arg(1)
                .arg(self.record_name(&session_hash(key)))
                .arg(*at);
            async move { cmd.query_async::<()>(&mut conn).await }
        });
        within(self.timeout, try_join_all(calls)).await.map(drop)
    }

    fn seal_outcome(&self, name: &str, o: &RefreshOutcome) -> Result<Vec<u8>, Unavailable> {
        let wire = match o {
            RefreshOutcome::Tokens {
                access_token,
                refresh_token,
                id_token,
            } => OutcomeWire::Tokens {
                a: Zeroizing::new(access_token.expose().to_string()),
                r: exposed(refresh_token.as_ref()),
                i: exposed(id_token.as_ref()),
            },
            RefreshOutcome::Refused(e) => OutcomeWire::Refused(e.clone()),
            RefreshOutcome::NoSession => OutcomeWire::NoSession,
            RefreshOutcome::Upstream(e) => OutcomeWire::Upstream(e.clone()),
        };
        let plain = Zeroizing::new(serde_json::to_vec(&wire).map_err(|e| sealing(&e))?);
        self.seal
            .seal_bytes(name.as_bytes(), &plain)
            .map_err(|e| sealing(&e))
    }

    fn open_outcome(&self, name: &str, sealed: &[u8]) -> Option<RefreshOutcome> {
        let plain = self.seal.open_bytes(name.as_bytes(), sealed).ok()?;
        let wire: OutcomeWire = serde_json::from_slice(&plain).ok()?;
        Some(match wire {
            OutcomeWire::Tokens { a, r, i } => RefreshOutcome::Tokens {
                access_token: Secret::new(a.as_str()),
                refresh_token: secret(r.as_ref()),
                id_token: secret(i.as_ref()),
            },
            OutcomeWire::Refused(e) => RefreshOutcome::Refused(e),
            OutcomeWire::NoSession => RefreshOutcome::NoSession,
            OutcomeWire::Upstream(e) => RefreshOutcome::Upstream(e),
        })
    }
}

/// Unix seconds now (the store does not import `verify`, which imports it).
fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn sealing(e: &dyn std::fmt::Display) -> Unavailable {
    tracing::error!(error = %e, "cannot seal a session value");
    Unavailable(format!("cannot seal a session value: {e}"))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl SharedSessions for RedisSessions {
    fn save(&self, record: &SessionRecord) -> BoxFuture<'_, Result<(), Unavailable>> {
        let record = record.clone();
        Box::pin(async move { self.save_record(&record).await })
    }

    fn by_refresh(
        &self,
        refresh: Key,
    ) -> BoxFuture<'_, Result<Option<SessionRecord>, Unavailable>> {
        Box::pin(async move {
            let mut conn = self.manager.clone();
            let mut cmd = redis::cmd("GET");
            cmd.arg(self.index_name(&refresh));
            let hash: Option<String> = within(self.timeout, cmd.query_async(&mut conn)).await?;
            match hash {
                Some(hash) => self.read(&hash).await,
                None => Ok(None),
            }
        })
    }

    fn by_key<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, Unavailable>> {
        Box::pin(async move { self.read(&session_hash(key)).await })
    }

    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), Unavailable>> {
        Box::pin(async move {
            let mut conn = self.manager.clone();
            let mut cmd = redis::cmd("DEL");
            cmd.arg(self.record_name(&session_hash(key)));
            within(self.timeout, cmd.query_async::<()>(&mut conn)).await
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<SessionInfo>, Unavailable>> {
        Box::pin(self.list_all())
    }

    fn seen(&self, batch: Vec<(String, i64)>) -> BoxFuture<'_, Result<(), Unavailable>> {
        Box::pin(self.write_seen(batch))
    }

    fn lock_refresh(
        &self,
        refresh: Key,
        hold: Duration,
    ) -> BoxFuture<'_, Result<bool, Unavailable>> {
        Box::pin(async move {
            let mut conn = self.manager.clone();
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.lock_name(&refresh))
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(millis(hold));
            let set: Option<String> = within(self.timeout, cmd.query_async(&mut conn)).await?;
            Ok(set.is_some())
        })
    }

    fn unlock_refresh(&self, refresh: Key) -> BoxFuture<'_, Result<(), Unavailable>> {
        Box::pin(async move {
            let mut conn = self.manager.clone();
            let mut cmd = redis::cmd("DEL");
            cmd.arg(self.lock_name(&refresh));
            within(self.timeout, cmd.query_async::<()>(&mut conn)).await
        })
    }

    fn publish_outcome<'a>(
        &'a self,
        refresh: Key,
        outcome: &'a RefreshOutcome,
        keep: Duration,
    ) -> BoxFuture<'a, Result<(), Unavailable>> {
        Box::pin(async move {
            let name = self.outcome_name(&refresh);
            let sealed = Zeroizing::new(self.seal_outcome(&name, outcome)?);
            let mut conn = self.manager.clone();
            let mut cmd = redis::cmd("SET");
            cmd.arg(&name)
                .arg(sealed.as_slice())
                .arg("PX")
                .arg(millis(keep));
            within(self.timeout, cmd.query_async::<()>(&mut conn)).await
        })
    }

    fn outcome(&self, refresh: Key) -> BoxFuture<'_, Result<Option<RefreshOutcome>, Unavailable>> {
        Box::pin(async move {
            let name = self.outcome_name(&refresh);
            let mut conn = self.manager.clone();
            let mut cmd = redis::cmd("GET");
            cmd.arg(&name);
            let value: Option<Vec<u8>> = within(self.timeout, cmd.query_async(&mut conn)).await?;
            Ok(value
                .map(Zeroizing::new)
                .and_then(|v| self.open_outcome(&name, &v)))
        })
    }
}

#[cfg(test)]
#[path = "redis_sessions_tests.rs"]
mod tests;
