//! Single-use records with a TTL — exchange codes and login states — behind the [`Store`]
//! trait, with two engines: `memory` (the embedded default, lost on restart) and `redis`
//! (shared by several tokend instances, values sealed with AEAD). Keys are SHA-256 hashes of
//! the secret handles, so a listing, a memory dump or a Redis dump never shows a usable code or
//! state. `instrumented` wraps either engine with its metrics; `conformance` is the one test
//! suite every engine passes. With Redis the engine also shares sessions and the refresh
//! single-flight (`shared`, `redis_sessions`); one server or a Redis Cluster (`redis_conn`).

mod instrumented;
mod memory;
mod packed;
pub(crate) mod redis;
pub(crate) mod redis_conn;
mod redis_sessions;
mod seal;
mod shared;

#[cfg(test)]
mod conformance;
#[cfg(test)]
mod redis_tests;
#[cfg(test)]
mod test_redis;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokend_shared::Secret;

use crate::config::{StoreConfig, StoreKind};
use crate::metrics::Metrics;

pub use instrumented::Instrumented;
pub use memory::MemoryStore;
pub use redis::RedisStore;
pub use seal::{SealError, SealKey};
pub use shared::{RefreshOutcome, SessionRecord, SharedSessions};

/// A boxed future, so that stores are usable as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The hash under which a record is stored.
pub type Key = [u8; 32];

/// Hashes a code or state string into its storage key.
pub fn key_of(handle: &str) -> Key {
    Sha256::digest(handle.as_bytes()).into()
}

/// Which endpoint may redeem an exchange code. The kind is hashed into the code's storage key
/// (see [`code_key`]), so a code presented at the other endpoint is unknown there and stays
/// redeemable where it belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CodeKind {
    /// Minted by the login callback; redeemed only at `/auth/exchange` (sets cookies).
    Flow,
    /// Minted by `POST /v1/codes`; redeemed only at `/v1/codes/redeem` (returns tokens).
    Api,
}

impl CodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeKind::Flow => "flow",
            CodeKind::Api => "api",
        }
    }
}

/// The storage key of an exchange code of `kind`.
pub fn code_key(kind: CodeKind, code: &str) -> Key {
    let mut h = Sha256::new();
    h.update(kind.as_str().as_bytes());
    h.update([0u8]);
    h.update(code.as_bytes());
    h.finalize().into()
}

/// The two kinds of record, each with its own capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    ExchangeCode,
    LoginState,
}

impl Kind {
    /// A short fixed name (Redis key segment, metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ExchangeCode => "code",
            Kind::LoginState => "login",
        }
    }
}

/// What a one-time exchange code stands for. Tokens are zeroized when dropped.
#[derive(Debug, Clone)]
pub struct CodePayload {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub id_token: Option<Secret>,
    pub sub: String,
    pub sid: Option<String>,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds; after this the code is expired.
    pub expires: i64,
    /// Who minted it, and so where it may be redeemed.
    pub kind: CodeKind,
}

/// A login in progress, between /auth/login and /auth/callback.
#[derive(Debug, Clone)]
pub struct LoginState {
    pub nonce: Secret,
    pub pkce_verifier: Secret,
    /// Same-site path to return to after login.
    pub redirect: String,
    /// SHA-256 of the browser-binding cookie set by `/auth/login`: the callback must come
    /// from the browser that started the login (RFC 9700 §4.7).
    pub browser: Key,
    pub created: i64,
    pub expires: i64,
}

#[derive(Debug, Clone)]
pub enum Record {
    Code(CodePayload),
    Login(LoginState),
}

impl Record {
    /// Unix seconds after which the record is expired.
    pub fn expires(&self) -> i64 {
        match self {
            Record::Code(c) => c.expires,
            Record::Login(l) => l.expires,
        }
    }

    /// Unix seconds when it was made.
    pub fn created(&self) -> i64 {
        match self {
            Record::Code(c) => c.created,
            Record::Login(l) => l.created,
        }
    }
}

/// The engine cannot be reached or did not answer in time. The message describes the engine's
/// failure (connection refused, timeout); it never holds a key, code or token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the record store is unavailable: {0}")]
pub struct Unavailable(pub String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("too many outstanding {0:?} records (limit {1}); try again shortly")]
    Full(Kind, usize),
    #[error("the key is already in use")]
    Duplicate,
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

/// A successful [`Store::put`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stored {
    /// Older records evicted to make room (login states only; codes are refused instead).
    pub evicted: usize,
}

/// Why a record could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TakeError {
    #[error("unknown")]
    Unknown,
    #[error("expired")]
    Expired,
    /// Expired, and already counted as such by the sweeper (it keeps a marker for
    /// [`EXPIRED_MEMORY`] so the answer does not depend on when it ran).
    #[error("expired")]
    ExpiredSwept,
    #[error("already used")]
    AlreadyUsed,
    /// Nothing was taken; the record (if any) is still there.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

/// Whether the engine answered its last health check, for `/readyz` and the admin overview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreHealth {
    pub healthy: bool,
    /// Why not (the engine's error, no secrets).
    pub error: Option<String>,
}

impl StoreHealth {
    pub fn ok() -> Self {
        Self {
            healthy: true,
            error: None,
        }
    }

    /// Unavailable, and why (words for `/readyz` and the logs, no secret).
    pub fn down(why: String) -> Self {
        Self {
            healthy: false,
            error: Some(why),
        }
    }
}

/// Single-use record storage. Implementations must make [`Store::take`] atomic: of any
/// number of concurrent takes of one key — from any number of tokend instances sharing the
/// engine — exactly one succeeds. Every call returns in bounded time: an engine that cannot
/// answer returns [`Unavailable`].
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Stores `record` under `key` until `record`'s expiry. When the kind is full, exchange
    /// codes are refused and the oldest login states evicted (Redis: counted across every
    /// instance).
    fn put(
        &self,
        kind: Kind,
        key: Key,
        record: Record,
    ) -> BoxFuture<'_, Result<Stored, StoreError>>;
    /// Takes the record out: checks expiry before removal; a used key is remembered until it
    /// would have expired, so a replay is told apart from an unknown key.
    fn take(&self, kind: Kind, key: Key, now: i64) -> BoxFuture<'_, Result<Record, TakeError>>;
    /// Live (unexpired, unused) records of a kind (Redis: as last counted, approximate).
    fn outstanding(&self, kind: Kind) -> usize;
    /// Removes expired records and tombstones; returns how many exchange codes expired unused
    /// (Redis expires keys itself and returns 0).
    fn sweep(&self, now: i64) -> usize;
    /// Changes the most live records of a kind (config reload); existing ones stay.
    fn set_capacity(&self, kind: Kind, max: usize);
    /// The live exchange codes, for the admin API: their storage key (a hash; never the code)
    /// and what they say about themselves, without the tokens (Redis: as last listed).
    fn list_codes(&self) -> Vec<CodeListing>;
    /// What kind of store this is (`memory`, `redis`), for the admin overview and metrics.
    fn kind_name(&self) -> &'static str;
    /// Whether the engine answered its last check (memory: always).
    fn health(&self) -> StoreHealth {
        StoreHealth::ok()
    }
    /// The sessions and refresh single-flight shared with the other instances on this
    /// engine; `None` (memory) when sessions live in this process alone.
    fn shared_sessions(&self) -> Option<Arc<dyn SharedSessions>> {
        None
    }
}

/// One live exchange code as [`Store::list_codes`] shows it: no code, no tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeListing {
    pub key: Key,
    pub kind: CodeKind,
    pub sub: String,
    pub created: i64,
    pub expires: i64,
}

/// How long an engine remembers that an unused record expired, so that a late redemption is
/// told "expired" rather than "unknown" whenever the sweeper (or Redis's expiry) happened to
/// run.
pub const EXPIRED_MEMORY: i64 = 60;

/// Why the configured engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("store.url: {0}")]
    Url(String),
    #[error("store.encryption_key: {0}")]
    Key(String),
    #[error("store.tls_ca_file: {0}")]
    Ca(String),
}

/// The engine `[store]` names, with capacities from the config, wrapped with its metrics.
/// Builds no connection: Redis is reached on first use (and reported by `health` until then).
pub fn open(
    config: &StoreConfig,
    max_codes: usize,
    max_logins: usize,
    metrics: &Arc<Metrics>,
) -> Result<Arc<dyn Store>, OpenError> {
    let engine: Arc<dyn Store> = match config.kind {
        StoreKind::Memory => Arc::new(MemoryStore::new(max_codes, max_logins)),
        StoreKind::Redis => Arc::new(RedisStore::open(config, max_codes, max_logins)?),
    };
    Ok(Arc::new(Instrumented::new(engine, metrics.clone())))
}
