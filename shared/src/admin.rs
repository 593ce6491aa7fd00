//! Wire types of the admin API (`/v1/admin/*`, served only on the admin socket): overview,
//! sessions, outstanding codes, audit events and the live stream, and the actions' answers.
//! No tokens and no codes anywhere in here: codes appear only as a short prefix of their hash.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::api::SessionInfo;

/// `GET /v1/admin/overview`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Overview {
    /// tokend's version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// Unix seconds when the daemon started.
    pub started: i64,
    pub uptime_seconds: u64,
    /// The configuration file in force, when loaded from one.
    #[serde(default)]
    pub config_path: Option<String>,
    /// The last reload (file change, SIGHUP or admin action); `None` before the first.
    #[serde(default)]
    pub last_reload: Option<ReloadStatus>,
    /// The configured (public) issuer.
    pub issuer: String,
    pub keys: KeysOverview,
    pub store: StoreOverview,
    /// Sessions registered by the login flow.
    pub sessions_active: usize,
    /// Verifications since start: `"valid"` and every failure reason, e.g. `"expired"`.
    pub verifications: BTreeMap<String, u64>,
    /// Verifications per second over the last minute, by outcome as in `verifications`
    /// (outcomes with none in the window are absent).
    #[serde(default)]
    pub verification_rates: BTreeMap<String, f64>,
    /// `/v1/verify` latency over the last minute; `None` when there was no verification.
    #[serde(default)]
    pub latency: Option<LatencyOverview>,
    /// The Authentik events poller; `None` when `[events]` is not configured.
    #[serde(default)]
    pub authentik_events: Option<PollerStatus>,
}

/// Latency of `/v1/verify` over a recent window (the daemon's own handling time).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct LatencyOverview {
    /// The window, seconds (60).
    pub window_seconds: u64,
    /// Verifications in the window.
    pub count: u64,
    /// Milliseconds.
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The outcome of one reload.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct ReloadStatus {
    pub ok: bool,
    /// Unix seconds.
    pub at: i64,
    /// What caused it: `file`, `SIGHUP`, `admin`.
    pub trigger: String,
    /// Sections applied (on success).
    #[serde(default)]
    pub changed: Vec<String>,
    /// Sections that changed in the file but need a restart.
    #[serde(default)]
    pub restart_required: Vec<String>,
    /// Why it failed; the previous configuration stays in force.
    #[serde(default)]
    pub error: Option<String>,
}

/// The verification keys.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct KeysOverview {
    /// Where the keys in use came from: `provider`, `disk_cache`, `client_secret`, `none`.
    pub source: String,
    /// Seconds since the provider served them.
    #[serde(default)]
    pub age_seconds: Option<u64>,
    /// Whether the last fetch succeeded (`None` before the first), and its error.
    #[serde(default)]
    pub last_fetch_ok: Option<bool>,
    #[serde(default)]
    pub last_fetch_error: Option<String>,
    pub keys: Vec<KeyInfo>,
}

/// One verification key (public metadata only).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct KeyInfo {
    #[serde(default)]
    pub kid: Option<String>,
    /// The algorithm the key is pinned to, when the JWK names one.
    #[serde(default)]
    pub alg: Option<String>,
    /// `RSA`, `EC P-256`, …, `HMAC`.
    pub kind: String,
}

/// The record store.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct StoreOverview {
    /// `memory` or `redis`.
    pub kind: String,
    /// Whether the store answered its last call or health check (always true for `memory`).
    #[serde(default = "yes")]
    pub healthy: bool,
    /// Why it is unhealthy.
    #[serde(default)]
    pub error: Option<String>,
    pub codes_outstanding: usize,
    pub logins_in_progress: usize,
}

fn yes() -> bool {
    true
}

/// Sort key of the session list.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SessionSort {
    /// Newest first by default.
    #[default]
    Created,
    LastSeen,
    User,
    Expires,
}

/// Sort order.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    Asc,
    #[default]
    Desc,
}

/// Query of `GET /v1/admin/sessions` (all optional): `user` matches `sub` or e-mail exactly,
/// `org` the organization, `role` the role; `offset`/`limit` page (limit default 100, at most
/// 1000).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SessionQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<SessionSort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Order>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// `GET /v1/admin/sessions`: one page of the matching sessions.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct SessionPage {
    /// Sessions matching the filter, on all pages.
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub sessions: Vec<SessionInfo>,
}

/// One outstanding exchange code. Never the code: a prefix of the SHA-256 of its storage key.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct CodeInfo {
    /// First 12 hex digits of the code's storage hash.
    pub hash_prefix: String,
    /// `flow` (minted by the callback) or `api` (`POST /v1/codes`).
    pub kind: String,
    /// Unix seconds.
    pub created: i64,
    pub expires: i64,
    /// Seconds left (0 when expired but not yet swept).
    pub ttl_left: i64,
    pub sub: String,
}

/// `GET /v1/admin/codes`, soonest to expire first.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct CodeList {
    pub codes: Vec<CodeInfo>,
}

/// What an audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    LoginCompleted,
    CodeIssued,
    CodeRedeemed,
    CodeExpired,
    CodeReplayed,
    Refresh,
    Logout,
    BackchannelLogout,
    /// An operator revoked sessions (`sid` or `sub`, `operator_uid`).
    AdminRevoke,
    AdminJwksRefresh,
    AdminReload,
    /// Verification failures since the previous such event, `counts` by reason.
    VerifyFailures,
    /// Stream only: this reader was too slow; `count` events were skipped. The stream ends.
    Dropped,
    /// A kind this client does not know yet.
    #[serde(other)]
    Other,
}

/// One of tokend's own audit events. No tokens or codes.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct AuditEvent {
    /// Increasing from 1; the stream and the ring use the same numbers.
    pub seq: u64,
    /// Unix milliseconds.
    pub at_ms: i64,
    pub kind: AuditKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The operator's uid, for admin actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_uid: Option<u32>,
    /// A short, secret-free description (an action's result, a code's kind, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// How many: sessions ended, events skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// `verify_failures`: failures by reason.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, u64>,
}

/// `GET /v1/admin/events?after=SEQ&limit=N`: the ring's events after `after`, oldest first.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct AuditList {
    pub events: Vec<AuditEvent>,
    /// The ring's capacity: older events are gone.
    pub capacity: usize,
}

/// `POST /v1/admin/sessions/revoke` answer.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct RevokeOutcome {
    /// Registered sessions ended by this request.
    pub ended: usize,
    /// Their `sid`s (when the provider gave them one).
    #[serde(default)]
    pub sids: Vec<String>,
    /// Refresh tokens of those sessions the provider confirmed revoked.
    pub refresh_tokens_revoked: usize,
    /// Refresh tokens the provider could not be made to revoke (still refused by tokend).
    pub refresh_tokens_failed: usize,
    /// Tokens of this `sid` (or of this `sub`, issued until now) are refused until then, Unix
    /// seconds — including tokens of sessions tokend never registered.
    pub tokens_refused_until: i64,
}

/// `POST /v1/admin/jwks/refresh` answer.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct JwksRefreshOutcome {
    pub ok: bool,
    /// Keys in use after the fetch.
    pub keys: usize,
    #[serde(default)]
    pub error: Option<String>,
}

/// State of the Authentik events poller (`[events]`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct PollerStatus {
    /// `{internal_url}/api/v3/events/events/`, without query.
    pub url: String,
    /// Unix seconds of the last poll attempt (`None` before the first).
    #[serde(default)]
    pub last_poll: Option<i64>,
    /// Whether the last poll succeeded (`None` before the first).
    #[serde(default)]
    pub last_ok: Option<bool>,
    /// Why the last poll failed, with the fix where known (401: token invalid or expired;
    /// 403: the token's user lacks `authentik_events.view_event`). Never the API token.
    #[serde(default)]
    pub last_error: Option<String>,
    /// HTTP status of the last failed poll, when the provider answered.
    #[serde(default)]
    pub last_status: Option<u16>,
    /// Seconds until the next poll (grows with backoff after failures).
    pub next_poll_seconds: u64,
    /// Events held in the ring, and its capacity.
    pub held: usize,
    pub capacity: usize,
    /// Events fetched since start.
    pub fetched_total: u64,
}

/// One event from Authentik's Events API (OpenAPI `Event`), as the poller keeps it.
/// `action` stays a string: `custom_*` and actions newer than this build exist.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct AuthentikEvent {
    /// The event's UUID (`pk`).
    pub pk: String,
    pub action: String,
    /// The Python module that created it, e.g. `authentik.events.signals`.
    #[serde(default)]
    pub app: String,
    /// As Authentik sent it (RFC 3339).
    pub created: String,
    /// `created` as Unix milliseconds (0 if it did not parse).
    pub created_ms: i64,
    #[serde(default)]
    pub client_ip: Option<String>,
    /// `user.username`, else `context.username` (a failed login's attempted name).
    #[serde(default)]
    pub username: Option<String>,
    /// `user.email`.
    #[serde(default)]
    pub email: Option<String>,
    /// Free-form, as sent (`{}` when absent).
    #[serde(default)]
    pub user: serde_json::Value,
    #[serde(default)]
    pub context: serde_json::Value,
    #[serde(default)]
    pub brand: serde_json::Value,
    /// Live tokend sessions of the same user (matched by e-mail, or by `sub` equal to the
    /// username, e-mail or user pk under those `sub_mode`s).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<SessionLink>,
}

/// A live session an Authentik event was linked to.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct SessionLink {
    #[serde(default)]
    pub sid: Option<String>,
    pub sub: String,
    /// `email` or `sub`.
    pub matched_by: String,
}

/// Query of `GET /v1/admin/authentik/events` (all optional): `action` exact, `user` matches
/// username or e-mail exactly, `limit` newest first (default 100, at most the ring).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthentikEventQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// `GET /v1/admin/authentik/events`: newest first. 404 `not_found` when `[events]` is off.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct AuthentikEventList {
    pub events: Vec<AuthentikEvent>,
    pub poller: PollerStatus,
}
