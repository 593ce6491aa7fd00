//! The session registry (logins made through tokend's flow), the revocation list of ended
//! sessions (by `sid`, or by `sub` for sub-only logout tokens — bounded by token lifetime), and
//! the replay cache of back-channel logout token `jti`s. Their export and import for the
//! memory mode's snapshot are in `sessions/export.rs`; the sharing of revocations with other
//! instances (the Redis store) in `sessions/remote.rs`, of sessions in `sessions/shared.rs`.

mod export;
#[cfg(test)]
mod mutation_tests;
mod remote;
mod shared;
#[cfg(test)]
mod sharing_tests;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use tokend_shared::{Claims, Secret, SessionInfo};

use crate::metrics::Metrics;
use crate::store::{Key, key_of};

pub use export::{Exported, Imported};
pub use remote::{Change, Outbox};
pub use shared::{LAST_SEEN_EVERY, write_behind};

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Logout,
    BackchannelLogout,
    AdminRevocation,
    Expired,
}

/// Secrets a session keeps to log out properly (revoke the refresh token, hint the ID token).
#[derive(Debug, Default)]
struct SessionSecrets {
    refresh_token: Option<Secret>,
    /// Hash of the current refresh token: indexes `by_refresh`, goes to `ended_refresh` when
    /// the session ends, and is all a session restored from the snapshot knows of its refresh
    /// token (the snapshot holds no tokens).
    refresh_key: Option<Key>,
    id_token: Option<Secret>,
}

/// One login.
#[derive(Debug)]
pub struct Session {
    /// Registry key: the provider's `sid`, or a random id when the provider sent none.
    pub key: String,
    pub sid: Option<String>,
    pub sub: String,
    pub email: Option<String>,
    /// The organization of the login's claims (`None` when they had none).
    pub organization_id: Option<String>,
    pub role: String,
    /// Unix seconds.
    pub created: i64,
    pub access_expires: AtomicI64,
    pub refresh_expires: AtomicI64,
    /// Updated by every verification of the session's tokens (an atomic store, no lock).
    pub last_seen: AtomicI64,
    /// The `last_seen` last handed to the Redis store's write-behind, so each session is
    /// written only when it was seen again since.
    flushed: AtomicI64,
    /// Set when the session ends, so cached verifications see it at once.
    pub ended: AtomicBool,
    secrets: Mutex<SessionSecrets>,
}

impl Session {
    pub fn touch(&self, now: i64) {
        self.last_seen.store(now, Ordering::Relaxed);
    }

    pub fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Relaxed)
    }

    pub fn refresh_token(&self) -> Option<Secret> {
        lock(&self.secrets).refresh_token.clone()
    }

    pub fn id_token(&self) -> Option<Secret> {
        lock(&self.secrets).id_token.clone()
    }

    /// A description without secrets (for the admin API and the console).
    pub fn info(&self) -> SessionInfo {
        SessionInfo {
            sid: self.sid.clone(),
            sub: self.sub.clone(),
            email: self.email.clone(),
            organization_id: self.organization_id.clone(),
            role: self.role.clone(),
            created: self.created,
            access_expires: self.access_expires.load(Ordering::Relaxed),
            refresh_expires: self.refresh_expires.load(Ordering::Relaxed),
            last_seen: self.last_seen.load(Ordering::Relaxed),
        }
    }
}

/// Tokens issued at or before `at` are refused until `until`, because of `why`.
#[derive(Debug, Clone, Copy)]
struct Revocation {
    at: i64,
    until: i64,
    why: EndReason,
}

/// What a new session is made of.
#[derive(Debug)]
pub struct NewSession<'a> {
    pub claims: &'a Claims,
    pub sid: Option<String>,
    pub id_token: Option<Secret>,
    pub refresh_token: Option<Secret>,
    pub refresh_expires: i64,
    pub now: i64,
}

#[derive(Debug)]
pub struct Sessions {
    by_key: DashMap<String, Arc<Session>>,
    /// Hash of the current refresh token → session key.
    by_refresh: DashMap<Key, String>,
    revoked_sids: DashMap<String, Revocation>,
    revoked_subs: DashMap<String, Revocation>,
    /// Back-channel logout token ids seen, until they can no longer be valid.
    seen_jtis: DashMap<String, i64>,
    /// Hashes of the refresh tokens of ended sessions, until those tokens expire: Authentik
    /// keeps refresh tokens alive when a session ends, and a refresh must not revive it.
    ended_refresh: DashMap<Key, i64>,
    /// How long an ended session's tokens stay refused (at least the refresh token lifetime).
    revocation_ttl: AtomicI64,
    /// Bumped after every revocation (end_sid, end_sub) and session replacement is recorded,
    /// so a verification that started before it does not cache its success (issue #7).
    revocation_generation: AtomicU64,
    /// Bumped by every change the snapshot keeps (a login, refresh, end, `jti`), so the
    /// periodic snapshot writes only when something changed. Never on the verification path.
    changes: AtomicU64,
    metrics: Arc<Metrics>,
    /// Where revocations made here are shared with other instances (the Redis store's
    /// `revsync`); unset in memory mode.
    outbox: OnceLock<Arc<dyn Outbox>>,
}

impl Sessions {
    pub fn new(revocation_ttl: std::time::Duration, metrics: Arc<Metrics>) -> Self {
        Self {
            by_key: DashMap::new(),
            by_refresh: DashMap::new(),
            revoked_sids: DashMap::new(),
            revoked_subs: DashMap::new(),
            seen_jtis: DashMap::new(),
            ended_refresh: DashMap::new(),
            revocation_ttl: AtomicI64::new(secs(revocation_ttl)),
            revocation_generation: AtomicU64::new(0),
            changes: AtomicU64::new(0),
            metrics,
            outbox: OnceLock::new(),
        }
    }

    pub fn set_revocation_ttl(&self, ttl: std::time::Duration) {
        self.revocation_ttl.store(secs(ttl), Ordering::Relaxed);
    }

    fn revocation(&self, now: i64, why: EndReason) -> Revocation {
        Revocation {
            at: now,
            until: now.saturating_add(self.revocation_ttl.load(Ordering::Relaxed)),
            why,
        }
    }

    /// Until when tokens revoked now stay refused (Unix seconds).
    pub fn refused_until(&self, now: i64) -> i64 {
        self.revocation(now, EndReason::Expired).until
    }

    pub fn active(&self) -> usize {
        self.by_key.len()
    }

    /// Changes whenever a session ends or is replaced. Read it before a verification; if it
    /// differs afterwards, the result may predate a revocation and must not be cached.
    pub fn revocation_generation(&self) -> u64 {
        self.revocation_generation.load(Ordering::SeqCst)
    }

    /// Counts a change the snapshot keeps.
    fn changed(&self) {
        self.changes.fetch_add(1, Ordering::Relaxed);
    }

    /// Changes whenever something the snapshot keeps changes (not `last_seen`).
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// Called after a revocation is fully recorded (revocation list, `ended` flags).
    fn bump_generation(&self) {
        self.revocation_generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Registers a login. A session with the same `sid` is replaced: it ends, and its refresh
    /// token stays refusable (see [`Sessions::create_replacing`]).
    pub fn create(&self, new: NewSession<'_>) -> Arc<Session> {
        self.create_replacing(new).0
    }

    /// Like [`Sessions::create`], also returning the session it replaced, if any. The replaced
    /// session's refresh token goes to the ended-refresh list (until it expires), so it cannot
    /// refresh, nor be taken for the new session's.
    pub fn create_replacing(&self, new: NewSession<'_>) -> (Arc<Session>, Option<Arc<Session>>) {
        let key = match &new.sid {
            Some(sid) => sid.clone(),
            None => crate::codes::random_handle()
                .map(|h| format!("local-{}", h.expose()))
                .unwrap_or_else(|_| format!("local-{}-{}", new.claims.sub, new.now)),
        };
        let refresh_key = new.refresh_token.as_ref().map(|rt| key_of(rt.expose()));
        if let Some(rk) = refresh_key {
            self.by_refresh.insert(rk, key.clone());
        }
        let session = Arc::new(Session {
            key: key.clone(),
            sid: new.sid,
            sub: new.claims.sub.clone(),
            email: new.claims.email.clone(),
            organization_id: new.claims.organization_id.clone(),
            role: new.claims.role.clone(),
            created: new.now,
            access_expires: AtomicI64::new(new.claims.exp),
            refresh_expires: AtomicI64::new(new.refresh_expires),
            last_seen: AtomicI64::new(new.now),
            flushed: AtomicI64::new(new.now),
            ended: AtomicBool::new(false),
            secrets: Mutex::new(SessionSecrets {
                refresh_token: new.refresh_token,
                refresh_key,
                id_token: new.id_token,
            }),
        });
        // A new login with the same sid replaces the old record.
        let replaced = self.by_key.insert(key, session.clone());
        if let Some(old) = &replaced {
            old.ended.store(true, Ordering::Relaxed);
            let old_rt = lock(&old.secrets).refresh_key;
            if let Some(old_rt) = old_rt
                && Some(old_rt) != refresh_key
            {
                self.by_refresh.remove(&old_rt);
                let until = old.refresh_expires.load(Ordering::Relaxed);
                self.ended_refresh.insert(old_rt, until);
                self.emit(Change::EndedRefresh { key: old_rt, until });
            }
            self.bump_generation();
        }
        self.changed();
        (session, replaced)
    }

    pub fn by_sid(&self, sid: &str) -> Option<Arc<Session>> {
        self.by_key.get(sid).map(|s| s.clone())
    }

    /// The registered sessions a logout naming `sid` (else `sub`) ends: the one with that
    /// `sid`, or every session of `sub`.
    pub fn matching(&self, sid: Option<&str>, sub: Option<&str>) -> Vec<Arc<Session>> {
        match (sid, sub) {
            (Some(sid), _) => self.by_sid(sid).into_iter().collect(),
            (None, Some(sub)) => self
                .by_key
                .iter()
                .filter(|s| s.sub == sub)
                .map(|s| s.clone())
                .collect(),
            (None, None) => Vec::new(),
        }
    }

    /// The session whose current refresh token is `refresh_token`.
    pub fn by_refresh_token(&self, refresh_token: &str) -> Option<Arc<Session>> {
        let key = self.by_refresh.get(&key_of(refresh_token))?.clone();
        self.by_key.get(&key).map(|s| s.clone())
    }

    /// After a refresh: the new refresh token (Authentik rotates it) and access expiry.
    /// Returns false, changing nothing, when the session ended meanwhile: checked under the
    /// lock that an ending reads the refresh token under, so either the ending sees the new
    /// token (and refuses it) or this call sees the end (and the caller revokes the token).
    pub fn refreshed(
        &self,
        session: &Session,
        old_refresh: &str,
        new_refresh: Option<Secret>,
        new_id_token: Option<Secret>,
        access_expires: i64,
        now: i64,
    ) -> bool {
        let mut secrets = lock(&session.secrets);
        if session.is_ended() {
            return false;
        }
        if let Some(rt) = &new_refresh {
            let rk = key_of(rt.expose());
            self.by_refresh.remove(&key_of(old_refresh));
            self.by_refresh.insert(rk, session.key.clone());
            secrets.refresh_key = Some(rk);
            secrets.refresh_token = new_refresh;
        }
        if new_id_token.is_some() {
            secrets.id_token = new_id_token;
        }
        session
            .access_expires
            .store(access_expires, Ordering::Relaxed);
        session.touch(now);
        drop(secrets);
        self.changed();
        true
    }

    /// Ends the sessions with this `sid` and refuses tokens of it issued until now.
    pub fn end_sid(&self, sid: &str, reason: EndReason, now: i64) -> Vec<Arc<Session>> {
        let r = self.revocation(now, reason);
        self.revoked_sids.insert(sid.to_string(), r);
        let ended: Vec<_> = self
            .by_key
            .remove(sid)
            .map(|(_, s)| s)
            .into_iter()
            .collect();
        self.finish(&ended, reason);
        self.bump_generation();
        self.changed();
        self.emit(Change::Sid {
            sid: sid.to_string(),
            at: r.at,
            until: r.until,
            why: r.why,
        });
        ended
    }

    /// Ends every session of `sub` and refuses the user's tokens issued until now.
    pub fn end_sub(&self, sub: &str, reason: EndReason, now: i64) -> Vec<Arc<Session>> {
        let r = self.revocation(now, reason);
        self.revoked_subs.insert(sub.to_string(), r);
        let keys: Vec<String> = self
            .by_key
            .iter()
            .filter(|s| s.sub == sub)
            .map(|s| s.key.clone())
            .collect();
        let ended: Vec<_> = keys
            .iter()
            .filter_map(|k| self.by_key.remove(k).map(|(_, s)| s))
            .collect();
        self.finish(&ended, reason);
        self.bump_generation();
        self.changed();
        self.emit(Change::Sub {
            sub: sub.to_string(),
            at: r.at,
            until: r.until,
            why: r.why,
        });
        ended
    }

    fn finish(&self, ended: &[Arc<Session>], reason: EndReason) {
        for s in ended {
            s.ended.store(true, Ordering::Relaxed);
            if let Some(key) = lock(&s.secrets).refresh_key {
                self.by_refresh.remove(&key);
                if reason != EndReason::Expired {
                    let until = s.refresh_expires.load(Ordering::Relaxed);
                    self.ended_refresh.insert(key, until);
                    self.emit(Change::EndedRefresh { key, until });
                }
            }
        }
        let label = match reason {
            EndReason::Logout => "logout",
            EndReason::BackchannelLogout => "backchannel_logout",
            EndReason::AdminRevocation => "admin_revocation",
            EndReason::Expired => "expired",
        };
        if !ended.is_empty() {
            self.metrics
                .sessions_ended
                .with_label_values(&[label])
                .inc_by(ended.len() as u64);
        }
    }

    /// Whether a token of (`sid`, `sub`) issued at `iat` belongs to an ended session. An ended
    /// `sid` refuses every token of it (a new login has a new sid, while a refresh of the old
    /// session would carry the old one); an ended `sub` refuses the tokens issued until then.
    pub fn is_revoked(&self, sid: Option<&str>, sub: &str, iat: i64, now: i64) -> bool {
        self.revoked_by(sid, sub, iat, now).is_some()
    }

    /// Like [`Sessions::is_revoked`], telling why the session ended (an operator's revocation
    /// wins when both apply, so the refusal names it).
    pub fn revoked_by(
        &self,
        sid: Option<&str>,
        sub: &str,
        iat: i64,
        now: i64,
    ) -> Option<EndReason> {
        if self.revoked_sids.is_empty() && self.revoked_subs.is_empty() {
            return None;
        }
        let by_sid = sid
            .and_then(|s| self.revoked_sids.get(s).map(|r| *r))
            .filter(|r| now < r.until)
            .map(|r| r.why);
        let by_sub = self
            .revoked_subs
            .get(sub)
            .map(|r| *r)
            .filter(|r| now < r.until && iat <= r.at)
            .map(|r| r.why);
        match (by_sid, by_sub) {
            (Some(EndReason::AdminRevocation), _) | (_, Some(EndReason::AdminRevocation)) => {
                Some(EndReason::AdminRevocation)
            }
            (a, b) => a.or(b),
        }
    }

    /// Whether `refresh_token` belonged to a session that has ended.
    pub fn refresh_token_ended(&self, refresh_token: &str) -> bool {
        !self.ended_refresh.is_empty() && self.ended_refresh.contains_key(&key_of(refresh_token))
    }

    /// Records a logout token's `jti`; false if it was seen before (a replay).
    pub fn first_use_of_jti(&self, jti: &str, until: i64) -> bool {
        match self.seen_jtis.entry(jti.to_string()) {
            dashmap::mapref::entry::Entry::Occupied(_) => false,
            dashmap::mapref::entry::Entry::Vacant(v) => {
                v.insert(until);
                self.changed();
                true
            }
        }
    }

    /// Drops expired revocations and jtis, and sessions whose tokens have all expired.
    pub fn sweep(&self, now: i64) {
        self.revoked_sids.retain(|_, r| now < r.until);
        self.revoked_subs.retain(|_, r| now < r.until);
        self.seen_jtis.retain(|_, until| now < *until);
        self.ended_refresh.retain(|_, until| now < *until);
        let expired: Vec<String> = self
            .by_key
            .iter()
            .filter(|s| {
                now >= s.access_expires.load(Ordering::Relaxed)
                    && now >= s.refresh_expires.load(Ordering::Relaxed)
            })
            .map(|s| s.key.clone())
            .collect();
        let ended: Vec<_> = expired
            .iter()
            .filter_map(|k| self.by_key.remove(k).map(|(_, s)| s))
            .collect();
        self.finish(&ended, EndReason::Expired);
    }

    /// All sessions, newest first.
    pub fn list(&self) -> Vec<SessionInfo> {
        let mut all: Vec<SessionInfo> = self.by_key.iter().map(|s| s.info()).collect();
        all.sort_by_key(|s| std::cmp::Reverse(s.created));
        all
    }
}

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
