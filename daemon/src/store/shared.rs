//! Sessions shared by every tokend instance on one engine (issue #12): the [`SharedSessions`]
//! trait the flow and the admin API use when `[store] kind = "redis"` — a login's session
//! record (with its refresh and ID tokens, sealed by the engine), found by the hash of its
//! refresh token or by its registry key, listed, its last-seen written behind in batches — and
//! the refresh single-flight across instances (a short lock per refresh token and the shared
//! outcome kept briefly). The memory engine has none: its sessions live in `sessions` alone.

use std::time::Duration;

use tokend_shared::{Secret, SessionInfo};

use super::{BoxFuture, Key, Unavailable};

/// One session as the instances share it. Secrets travel as [`Secret`]; the engine seals the
/// whole record.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// The registry key (the provider's `sid`, or tokend's own `local-…` id).
    pub key: String,
    pub sid: Option<String>,
    pub sub: String,
    pub email: Option<String>,
    pub organization_id: Option<String>,
    pub role: String,
    /// Unix seconds, as the rest.
    pub created: i64,
    pub access_expires: i64,
    /// Until when the record is kept (its Redis TTL follows it).
    pub refresh_expires: i64,
    pub last_seen: i64,
    /// The session's current refresh token: the one `/auth/refresh` may send upstream.
    pub refresh_token: Option<Secret>,
    /// Kept for the logout's `id_token_hint`.
    pub id_token: Option<Secret>,
}

impl SessionRecord {
    /// What the admin API shows of it (no tokens).
    pub fn info(&self) -> SessionInfo {
        SessionInfo {
            sid: self.sid.clone(),
            sub: self.sub.clone(),
            email: self.email.clone(),
            organization_id: self.organization_id.clone(),
            role: self.role.clone(),
            created: self.created,
            access_expires: self.access_expires,
            refresh_expires: self.refresh_expires,
            last_seen: self.last_seen,
        }
    }
}

/// How one refresh ended, as the instance that made the upstream grant shares it with the
/// callers waiting on other instances.
#[derive(Debug, Clone)]
pub enum RefreshOutcome {
    /// The grant's tokens (the waiters verify the access token themselves).
    Tokens {
        access_token: Secret,
        refresh_token: Option<Secret>,
        id_token: Option<Secret>,
    },
    /// The provider refused the grant (its OAuth error code).
    Refused(String),
    /// The refresh token is not one tokend may send upstream (unknown, rotated or ended).
    NoSession,
    /// The provider could not be asked (its description, no token).
    Upstream(String),
}

/// The shared sessions and refresh single-flight of an engine. Every call is bounded (the
/// engine's timeout) and fails with [`Unavailable`] when the engine cannot answer; none is
/// ever made on the verification path.
pub trait SharedSessions: Send + Sync + std::fmt::Debug {
    /// Writes (or overwrites) `record` and indexes it by the hash of its refresh token; both
    /// expire with the record. Indexes of earlier refresh tokens stay until they expire, so a
    /// rotated token is told from an unknown one.
    fn save(&self, record: &SessionRecord) -> BoxFuture<'_, Result<(), Unavailable>>;
    /// The session a refresh token (by its hash) was handed out for — whatever its current
    /// refresh token is now (the caller compares).
    fn by_refresh(&self, refresh: Key)
    -> BoxFuture<'_, Result<Option<SessionRecord>, Unavailable>>;
    /// The session with this registry key (`sid`).
    fn by_key<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, Unavailable>>;
    /// Removes the session (it ended).
    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), Unavailable>>;
    /// Every live session (a SCAN of the records), without tokens.
    fn list(&self) -> BoxFuture<'_, Result<Vec<SessionInfo>, Unavailable>>;
    /// Writes last-seen times (registry key, unix seconds) of sessions still recorded.
    fn seen(&self, batch: Vec<(String, i64)>) -> BoxFuture<'_, Result<(), Unavailable>>;
    /// Takes the refresh lock of a refresh token (by hash) for `hold`, unless another
    /// instance holds it; true when taken. It expires by itself if its holder dies.
    fn lock_refresh(
        &self,
        refresh: Key,
        hold: Duration,
    ) -> BoxFuture<'_, Result<bool, Unavailable>>;
    /// Releases a refresh lock this instance took.
    fn unlock_refresh(&self, refresh: Key) -> BoxFuture<'_, Result<(), Unavailable>>;
    /// Shares a refresh's outcome for `keep`.
    fn publish_outcome<'a>(
        &'a self,
        refresh: Key,
        outcome: &'a RefreshOutcome,
        keep: Duration,
    ) -> BoxFuture<'a, Result<(), Unavailable>>;
    /// The outcome shared for a refresh token (by hash), if still kept.
    fn outcome(&self, refresh: Key) -> BoxFuture<'_, Result<Option<RefreshOutcome>, Unavailable>>;
}
