//! Configuration: the section structs. Loading ([`Config::load`]/[`Config::from_toml`]) and
//! the derived accessors are in `load`. Environment overrides are in `env`, secret files in `secret`, validation in
//! `validate`, the keys' default values in `defaults`.
//!
//! Loading is `parse → apply environment → resolve secrets → validate`; the result is an
//! immutable [`Config`] that the rest of the daemon reads through `Arc`s. Every key is
//! documented in `config/tokend.toml`.

mod admin;
mod defaults;
mod duration;
mod env;
mod events;
mod forward;
mod load;
mod secret;
mod size;
mod validate;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokend_shared::Secret;

use crate::alg::Alg;
// The serde `default = "…"` attributes below name these functions.
pub use admin::{NOBODY, PeerCheck};
use defaults::*;
pub use events::EventsConfig;
pub use forward::{ForwardAuthConfig, HeaderSet};
pub use secret::decode_store_key;

/// File name of the admin socket beside `listen.socket` when `admin.socket` is not set.
pub const ADMIN_SOCKET_NAME: &str = "tokend-admin.sock";

/// File name of the sessions snapshot in the state directory when `sessions.snapshot_file` is
/// not set.
pub const SNAPSHOT_NAME: &str = "snapshot.json";

/// Where `tokend` looks when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/tokend/tokend.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "{path} does not exist: copy the annotated example config/tokend.toml there (set \
         provider.issuer and provider.client_id) or pass --config FILE; to try tokend without a \
         provider, run `tokend dev`"
    )]
    Missing { path: PathBuf },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// TOML syntax or schema error; the message names the key, line and column.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("{key}: cannot read {path}: {source}")]
    File {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{key}: cannot read secret file {path}: {source}")]
    SecretFile {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub listen: ListenConfig,
    pub provider: ProviderConfig,
    #[serde(default)]
    pub jwks: JwksConfig,
    #[serde(default)]
    pub verify: VerifyConfig,
    #[serde(default)]
    pub claims: ClaimsConfig,
    #[serde(default)]
    pub cookies: CookiesConfig,
    #[serde(default)]
    pub codes: CodesConfig,
    /// The login flow; without this section the /auth/login… endpoints answer 404.
    pub flow: Option<FlowConfig>,
    #[serde(default)]
    pub sessions: SessionsConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub log: LogConfig,
    /// The operators' admin API on its own Unix socket.
    #[serde(default)]
    pub admin: AdminConfig,
    /// The Authentik events poller; off without this section.
    pub events: Option<EventsConfig>,
    /// The identity headers of forward auth (`GET /v1/auth`) for reverse proxies.
    #[serde(default)]
    pub forward_auth: ForwardAuthConfig,
    /// The file this was loaded from (for reloads); not a config key.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// Unix socket path; absent = no socket listener.
    pub socket: Option<PathBuf>,
    /// Permission bits of the socket file, octal string.
    #[serde(default = "default_socket_mode", with = "octal_mode")]
    pub socket_mode: u32,
    /// Group (name or numeric gid) that owns the socket file, so apps in that group may connect.
    pub socket_group: Option<GroupSpec>,
    /// TCP address of the HTTP listener; absent = no TCP listener.
    pub http: Option<SocketAddr>,
    /// Only with this set may `http` be an address other than loopback.
    #[serde(default)]
    pub allow_non_loopback: bool,
    /// Connections served at once across both listeners; more wait in the kernel backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Largest request body accepted (413 beyond).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// Time a client has to send its request headers.
    #[serde(default = "default_header_read_timeout", with = "duration")]
    pub header_read_timeout: Duration,
    /// Time a request may take from headers to response.
    #[serde(default = "default_request_timeout", with = "duration")]
    pub request_timeout: Duration,
    /// On SIGTERM, how long in-flight requests may take before they are cut.
    #[serde(default = "default_shutdown_grace", with = "duration")]
    pub shutdown_grace: Duration,
}

/// A group given by name or by numeric id.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum GroupSpec {
    Id(u32),
    Name(String),
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The public issuer, exactly as in the provider's tokens (Authentik's ends with a slash).
    pub issuer: String,
    /// Where tokend itself reaches the provider (server-to-server); the public Host is still sent.
    pub internal_url: Option<String>,
    pub client_id: String,
    #[serde(default, serialize_with = "Secret::serialize_redacted_opt")]
    pub client_secret: Option<Secret>,
    /// File holding the client secret (trailing newline ignored); relative to the config file.
    pub client_secret_file: Option<PathBuf>,
    /// Expected `aud`; defaults to `client_id`.
    pub audience: Option<String>,
    /// Accepted signature algorithms. HS256/384/512 (Authentik without a signing key) only alone.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<AlgName>,
    /// Timeout of each request to the provider.
    #[serde(default = "default_http_timeout", with = "duration")]
    pub http_timeout: Duration,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JwksConfig {
    /// How often the keys are refetched in the background.
    #[serde(default = "default_refresh_interval", with = "duration")]
    pub refresh_interval: Duration,
    /// Least time between two fetches caused by unknown `kid`s.
    #[serde(default = "default_min_refetch_interval", with = "duration")]
    pub min_refetch_interval: Duration,
    /// How long the last good keys stay in use while the provider cannot be reached.
    #[serde(default = "default_max_stale", with = "duration")]
    pub max_stale: Duration,
    /// Last good discovery document and JWKS, for starting while the provider is down.
    pub cache_file: Option<PathBuf>,
    /// The one signature family an RSA JWK without `alg` verifies: "RS" (PKCS#1 v1.5, as
    /// Authentik signs) or "PS" (PSS). Never both: a key is used with one algorithm family.
    #[serde(default)]
    pub rsa_without_alg: RsaFamily,
}

/// An RSA signature family (issue #7): which algorithms an RSA key without `alg` verifies.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum RsaFamily {
    /// RS256, RS384, RS512 (RSASSA-PKCS1-v1_5).
    #[default]
    #[serde(rename = "RS")]
    Rs,
    /// PS256, PS384, PS512 (RSASSA-PSS).
    #[serde(rename = "PS")]
    Ps,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// Clock skew allowed on exp, iat and nbf.
    #[serde(default = "default_leeway", with = "duration")]
    pub leeway: Duration,
    /// How long a verified token is remembered (never past its exp).
    #[serde(default = "default_cache_ttl", with = "duration")]
    pub cache_ttl: Duration,
    /// Most tokens remembered; 0 disables the cache. A second bound beside `cache_max_bytes`
    /// (kept so existing configs, and `0` to turn the cache off, mean what they meant).
    #[serde(default = "default_cache_max_entries")]
    pub cache_max_entries: usize,
    /// Most bytes the cache holds, by its own account (each entry's rendered answer, its
    /// bookkeeping and its map slot); 0 disables the cache. Bounds the daemon's memory, which
    /// an entry count alone does not (issue #14).
    #[serde(default = "default_cache_max_bytes", with = "size")]
    pub cache_max_bytes: u64,
    /// Longer tokens are refused as malformed before any parsing.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimsConfig {
    /// Claim holding the organization id.
    #[serde(default = "default_organization_claim")]
    pub organization_claim: String,
    /// What `organizationId` is when the token lacks the organization claim: "sub" (the
    /// reference design's fallback) or "none" (left out).
    #[serde(default)]
    pub organization_fallback: OrganizationFallback,
    /// Claim holding the list of group names.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Ordered group→role rules; the first whose group the user is in wins.
    #[serde(default = "default_roles")]
    pub roles: Vec<RoleRule>,
    /// Role of a user matching no rule.
    #[serde(default = "default_role")]
    pub default_role: String,
}

/// `claims.organization_fallback` (issue #7).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum OrganizationFallback {
    /// `organizationId` is the user's `sub` (the reference design's rule).
    #[default]
    #[serde(rename = "sub")]
    Sub,
    /// `organizationId` is absent.
    #[serde(rename = "none")]
    Absent,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RoleRule {
    pub group: String,
    pub role: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CookiesConfig {
    /// Cookie carrying the access token (read by `GET /v1/verify` before `Authorization`).
    #[serde(default = "default_access_cookie")]
    pub access_name: String,
    /// Cookie carrying the refresh token, sent only to `refresh_path`.
    #[serde(default = "default_refresh_cookie")]
    pub refresh_name: String,
    /// `Secure` attribute; turn off only for plain-HTTP development.
    #[serde(default = "default_true")]
    pub secure: bool,
    #[serde(default)]
    pub same_site: SameSite,
    /// `Domain` attribute; absent = host-only cookies.
    pub domain: Option<String>,
    /// `Path` of the access cookie.
    #[serde(default = "default_access_path")]
    pub access_path: String,
    /// `Path` of the refresh cookie: where the browser posts to refresh, as the browser sees it.
    #[serde(default = "default_refresh_path")]
    pub refresh_path: String,
    #[serde(default = "default_access_max_age", with = "duration")]
    pub access_max_age: Duration,
    #[serde(default = "default_refresh_max_age", with = "duration")]
    pub refresh_max_age: Duration,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SameSite {
    #[default]
    Lax,
    Strict,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CodesConfig {
    /// Lifetime of a one-time exchange code.
    #[serde(default = "default_code_ttl", with = "duration")]
    pub ttl: Duration,
    /// Most codes outstanding at once; beyond it issuance answers 503 capacity_exceeded.
    #[serde(default = "default_max_outstanding")]
    pub max_outstanding: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FlowConfig {
    /// The callback URL registered at the provider, as the browser reaches tokend's
    /// /auth/callback through the app's proxy.
    pub redirect_uri: String,
    /// The frontend's origin (and optional base path); the browser lands on
    /// {frontend_url}/auth/callback?exchange=… and {frontend_url}/auth/login?error=….
    pub frontend_url: String,
    /// Requested scopes.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The reference design's custom scope carrying organizationId; added when set.
    pub organization_scope: Option<String>,
    /// Where the provider sends the browser after logout; default {frontend_url}/.
    pub post_logout_redirect_uri: Option<String>,
    /// Path on the frontend that trades the exchange code for cookies.
    #[serde(default = "default_frontend_callback_path")]
    pub frontend_callback_path: String,
    /// Path on the frontend that shows login errors.
    #[serde(default = "default_frontend_login_path")]
    pub frontend_login_path: String,
    /// Lifetime of a login in progress (state, nonce, PKCE verifier).
    #[serde(default = "default_state_ttl", with = "duration")]
    pub state_ttl: Duration,
    /// Most logins in progress at once; when full, the oldest is evicted (so a flood of
    /// anonymous /auth/login requests cannot lock real users out).
    #[serde(default = "default_max_outstanding")]
    pub max_pending_logins: usize,
    /// After a refresh, callers presenting the same (now rotated) refresh token within this
    /// window get the same new tokens instead of a second upstream refresh.
    #[serde(default = "default_refresh_grace", with = "duration")]
    pub refresh_grace: Duration,
    /// Most refresh grants sent to the provider per second; beyond it `/auth/refresh` answers
    /// 503 with Retry-After. 0 turns the limit off.
    #[serde(default = "default_refresh_rate_limit")]
    pub refresh_rate_limit: u32,
    /// Most refreshes in flight or within their grace window at once.
    #[serde(default = "default_max_pending_refreshes")]
    pub max_pending_refreshes: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsConfig {
    /// How long revocations (ended sessions' sids and subs) are remembered: as long as the
    /// longest-lived token they refuse — a refresh of an ended session mints new tokens with
    /// its sid for as long as its refresh token lives — so at least `cookies.refresh_max_age`,
    /// which is also the default (at least 1h). Resolved at load (issue #7).
    #[serde(default, with = "duration")]
    pub revocation_ttl: Option<Duration>,
    /// `false` turns the snapshot off: a restart then forgets every revocation.
    #[serde(default = "default_true")]
    pub snapshot: bool,
    /// The snapshot file (revocations, seen logout-token `jti`s, ended refresh tokens,
    /// sessions without tokens), so a restart forgets no revocation. Default:
    /// `snapshot.json` beside `jwks.cache_file`, else in systemd's `$STATE_DIRECTORY`; with
    /// neither, no snapshot. Resolved at load; relative to the config file.
    pub snapshot_file: Option<PathBuf>,
    /// How often the snapshot is written when something changed (and always on shutdown).
    #[serde(default = "default_snapshot_interval", with = "duration")]
    pub snapshot_interval: Duration,
}

/// `[store]`: where exchange codes and login states live. `memory` (the default) is in the
/// process and lost on restart; `redis` is shared by every tokend instance pointing at the
/// same Redis. Restart-only: a reload keeps the running store (and says so).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default)]
    pub kind: StoreKind,
    /// Redis: `redis://host:port[/db]` or `rediss://…` (TLS, server certificate checked
    /// against the system's roots, or `tls_ca_file`'s). No password in the URL:
    /// `password_file` or `password_credential`.
    pub url: Option<String>,
    /// Redis Cluster: `url` (and `cluster_urls`) are seed nodes; tokend learns the others from
    /// the cluster, routes each key to its master, and scans every master. Needs Redis
    /// Cluster on the other side (a standalone server answers that cluster support is off).
    #[serde(default)]
    pub cluster: bool,
    /// More seed nodes besides `url` (only with `cluster = true`), so tokend starts, and its
    /// revocation subscriber fails over, while some nodes are away. Same scheme as `url`; the
    /// same user, password and `tls_ca_file` apply to every node.
    #[serde(default)]
    pub cluster_urls: Vec<String>,
    /// PEM file of the CA certificates a `rediss://` server's certificate is checked against,
    /// instead of the system's roots: an internal Redis usually has a private CA. Relative to
    /// the config file; only with `rediss://`.
    pub tls_ca_file: Option<PathBuf>,
    /// Redis ACL user name (Redis 6+); absent = the default user.
    pub username: Option<String>,
    /// File holding the Redis password (trailing newline ignored); relative to the config file.
    pub password_file: Option<PathBuf>,
    /// Name of the systemd credential (in `$CREDENTIALS_DIRECTORY`) holding the Redis password.
    pub password_credential: Option<String>,
    /// Prefix of every key tokend writes, so several deployments can share one Redis.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// File holding the 32-byte key that seals the records (AES-256-GCM): 64 hex characters
    /// or base64 (`openssl rand -hex 32`). Every instance sharing the Redis needs the same key.
    pub encryption_key_file: Option<PathBuf>,
    /// Name of the systemd credential holding that key, instead of `encryption_key_file`.
    pub encryption_key_credential: Option<String>,
    /// Longest wait for one Redis call (connect included); beyond it the endpoint answers 503
    /// `store_unavailable`.
    #[serde(default = "default_store_timeout", with = "duration")]
    pub timeout: Duration,
    /// The password, read from `password_file` or the credential at load; never shown.
    #[serde(skip)]
    pub password: Option<Secret>,
    /// The sealing key's text, read from its file or credential at load; never shown.
    #[serde(skip)]
    pub encryption_key: Option<Secret>,
    /// `tls_ca_file`'s PEM text, read and checked (at least one certificate) at load.
    #[serde(skip)]
    pub tls_ca: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    #[default]
    Memory,
    Redis,
}

/// `[admin]`: the operators' API, served only on its own Unix socket (bound by tokend, or
/// passed by systemd as the socket named `admin`). Who may use it: `peer_check` (in `admin`,
/// with the checks of this section).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// `false` turns the admin socket off.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Socket path; default `tokend-admin.sock` beside `listen.socket` (with no
    /// `listen.socket`, the admin socket is off unless this is set).
    pub socket: Option<PathBuf>,
    /// Permission bits of the admin socket file, octal string.
    #[serde(default = "default_admin_socket_mode", with = "octal_mode")]
    pub socket_mode: u32,
    /// Group (name or gid) owning the admin socket file.
    pub socket_group: Option<GroupSpec>,
    /// Uids allowed besides root and tokend's own.
    #[serde(default)]
    pub allowed_uids: Vec<u32>,
    /// Groups (names or gids) whose members are allowed: the peer's primary group, or a
    /// group listing the peer's user name as a member.
    #[serde(default)]
    pub allowed_groups: Vec<GroupSpec>,
    /// Whether the peer credentials or the socket file's permissions decide: the second is the
    /// only way to let a group of operators in under systemd's `PrivateUsers=` (issue #13).
    #[serde(default)]
    pub peer_check: PeerCheck,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            socket: None,
            socket_mode: default_admin_socket_mode(),
            socket_group: None,
            allowed_uids: Vec::new(),
            allowed_groups: Vec::new(),
            peer_check: PeerCheck::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default)]
    pub format: LogFormat,
    /// tracing filter, e.g. "info" or "tokend=debug"; `TOKEND_LOG` wins over it.
    #[serde(default = "default_log_level")]
    pub level: String,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A JWS algorithm name as written in the config, checked while parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlgName(pub Alg);

impl AlgName {
    pub fn is_hmac(self) -> bool {
        self.0.is_hmac()
    }
}

impl<'de> Deserialize<'de> for AlgName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.eq_ignore_ascii_case("none") {
            return Err(serde::de::Error::custom(
                "algorithm `none` is never accepted",
            ));
        }
        Alg::parse(&s).map(AlgName).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unsupported algorithm `{s}`; expected one of RS256, RS384, RS512, PS256, PS384, \
                 PS512, ES256, ES384, ES512, EdDSA, HS256, HS384, HS512"
            ))
        })
    }
}

impl Serialize for AlgName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

mod octal_mode {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let s = String::deserialize(d)?;
        let mode = u32::from_str_radix(s.trim_start_matches("0o"), 8).map_err(|_| {
            serde::de::Error::custom(format!("`{s}` is not an octal mode like \"0660\""))
        })?;
        if mode > 0o777 {
            return Err(serde::de::Error::custom(format!(
                "`{s}` has bits beyond 0777"
            )));
        }
        Ok(mode)
    }

    pub fn serialize<S: Serializer>(mode: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{mode:04o}"))
    }
}

#[cfg(test)]
pub(super) mod tests;
