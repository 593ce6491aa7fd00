//! The default value of every config key that has one (`#[serde(default = …)]`), and
//! `Default` for the sections whose keys all have defaults.

use std::time::Duration;

use jsonwebtoken::Algorithm;

use super::{
    AlgName, ClaimsConfig, CodesConfig, CookiesConfig, JwksConfig, ListenConfig, LogConfig,
    RoleRule, SessionsConfig, StoreConfig, VerifyConfig,
};
use crate::alg::Alg;

pub(super) fn default_socket_mode() -> u32 {
    0o660
}
pub(super) fn default_admin_socket_mode() -> u32 {
    0o600
}
pub(super) fn default_max_connections() -> usize {
    1024
}
pub(super) fn default_max_body_bytes() -> usize {
    64 * 1024
}
pub(super) fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
pub(super) fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
pub(super) fn default_shutdown_grace() -> Duration {
    Duration::from_secs(10)
}
pub(super) fn default_algorithms() -> Vec<AlgName> {
    use Algorithm::*;
    [
        RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA,
    ]
    .into_iter()
    .map(|a| AlgName(Alg::Jws(a)))
    .chain([AlgName(Alg::Es512)])
    .collect()
}
pub(super) fn default_key_prefix() -> String {
    "tokend:".into()
}
pub(super) fn default_store_timeout() -> Duration {
    Duration::from_millis(500)
}
pub(super) fn default_http_timeout() -> Duration {
    Duration::from_secs(10)
}
pub(super) fn default_refresh_interval() -> Duration {
    Duration::from_secs(300)
}
pub(super) fn default_min_refetch_interval() -> Duration {
    Duration::from_secs(10)
}
pub(super) fn default_max_stale() -> Duration {
    Duration::from_secs(24 * 3600)
}
pub(super) fn default_leeway() -> Duration {
    Duration::from_secs(60)
}
pub(super) fn default_cache_ttl() -> Duration {
    Duration::from_secs(300)
}
pub(super) fn default_cache_max_entries() -> usize {
    100_000
}
pub(super) fn default_cache_max_bytes() -> u64 {
    32 << 20
}
pub(super) fn default_max_token_bytes() -> usize {
    16 * 1024
}
pub(super) fn default_organization_claim() -> String {
    "organizationId".into()
}
pub(super) fn default_groups_claim() -> String {
    "groups".into()
}
pub(super) fn default_roles() -> Vec<RoleRule> {
    vec![
        RoleRule {
            group: "ecosire-admins".into(),
            role: "admin".into(),
        },
        RoleRule {
            group: "ecosire-support".into(),
            role: "support".into(),
        },
    ]
}
pub(super) fn default_role() -> String {
    "user".into()
}
pub(super) fn default_access_cookie() -> String {
    "ecosire_auth".into()
}
pub(super) fn default_refresh_cookie() -> String {
    "ecosire_refresh".into()
}
pub(super) fn default_true() -> bool {
    true
}
pub(super) fn default_access_path() -> String {
    "/".into()
}
pub(super) fn default_refresh_path() -> String {
    "/auth/refresh".into()
}
pub(super) fn default_access_max_age() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
pub(super) fn default_refresh_max_age() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}
pub(super) fn default_code_ttl() -> Duration {
    Duration::from_secs(60)
}
pub(super) fn default_max_outstanding() -> usize {
    100_000
}
pub(super) fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile", "offline_access"]
        .map(String::from)
        .to_vec()
}
pub(super) fn default_frontend_callback_path() -> String {
    "/auth/callback".into()
}
pub(super) fn default_frontend_login_path() -> String {
    "/auth/login".into()
}
pub(super) fn default_state_ttl() -> Duration {
    Duration::from_secs(600)
}
pub(super) fn default_refresh_grace() -> Duration {
    Duration::from_secs(10)
}
pub(super) fn default_refresh_rate_limit() -> u32 {
    50
}
pub(super) fn default_max_pending_refreshes() -> usize {
    10_000
}
/// `sessions.revocation_ttl` when not set: the refresh token lifetime, at least 1h.
pub(super) fn default_revocation_ttl(cookies: &CookiesConfig) -> Duration {
    cookies.refresh_max_age.max(Duration::from_secs(3600))
}
pub(super) fn default_snapshot_interval() -> Duration {
    Duration::from_secs(30)
}
pub(super) fn default_log_level() -> String {
    "info".into()
}

macro_rules! default_from_serde {
    ($($ty:ty),*) => {$(
        impl Default for $ty {
            fn default() -> Self {
                // Every field of these sections has a serde default, so an empty table is valid.
                toml::from_str("").expect("all fields have defaults")
            }
        }
    )*};
}
default_from_serde!(
    ListenConfig,
    JwksConfig,
    VerifyConfig,
    ClaimsConfig,
    CookiesConfig,
    CodesConfig,
    SessionsConfig,
    StoreConfig,
    LogConfig
);
