//! Access-token verification: JWS shape and header, key selection (with unknown-kid refetch),
//! signature (jsonwebtoken), claim checks, the claim mapping to [`Claims`], and the bounded
//! cache of verified tokens that makes a repeated token cost no signature check.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use dashmap::DashMap;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokend_shared::{Claims, Reason};

use crate::alg::Alg;
use crate::config::{ClaimsConfig, Config, OrganizationFallback, RoleRule};
use crate::jwks::{Jwks, KeySet, Refetch, Signature, VerifyKey};
use crate::metrics::Metrics;
use crate::sessions::{EndReason, NewSession, Session, Sessions};

/// Why a token was refused. Messages never contain the token or its signature.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum VerifyError {
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    UnsupportedAlg(String),
    /// A JWS header parameter asking for processing tokend does not do (`crit`, `cty`, `zip`).
    #[error("the `{0}` header parameter is not supported: tokend does not process it")]
    UnsupportedHeader(&'static str),
    #[error("{0}")]
    UnknownKid(String),
    #[error("signature does not match")]
    BadSignature,
    #[error("token expired {0}s ago")]
    Expired(i64),
    #[error("{0}")]
    NotYetValid(String),
    #[error("issuer {0:?} is not the configured issuer")]
    WrongIssuer(String),
    #[error("audience does not include {0:?}")]
    WrongAudience(String),
    #[error("this is an ID token (no azp, uid or scope claim); present the access token instead")]
    IdTokenNotAccepted,
    #[error("{0}")]
    WrongTokenType(String),
    #[error("claim `{0}` is missing or not of the expected type")]
    MissingClaim(&'static str),
    #[error("no verification keys are loaded (provider unreachable and no cache)")]
    KeysUnavailable,
    #[error("the session of this token has ended (logout)")]
    Revoked,
    #[error("the ID token's nonce does not match the login")]
    NonceMismatch,
}

impl VerifyError {
    pub fn reason(&self) -> Reason {
        match self {
            VerifyError::Malformed(_) => Reason::Malformed,
            VerifyError::UnsupportedAlg(_) => Reason::UnsupportedAlg,
            VerifyError::UnsupportedHeader(_) => Reason::UnsupportedHeader,
            VerifyError::UnknownKid(_) => Reason::UnknownKid,
            VerifyError::BadSignature => Reason::BadSignature,
            VerifyError::Expired(_) => Reason::Expired,
            VerifyError::NotYetValid(_) => Reason::NotYetValid,
            VerifyError::WrongIssuer(_) => Reason::WrongIssuer,
            VerifyError::WrongAudience(_) => Reason::WrongAudience,
            VerifyError::IdTokenNotAccepted => Reason::IdTokenNotAccepted,
            VerifyError::WrongTokenType(_) => Reason::WrongTokenType,
            VerifyError::MissingClaim(_) => Reason::MissingClaim,
            VerifyError::KeysUnavailable => Reason::KeysUnavailable,
            VerifyError::Revoked => Reason::TokenRevoked,
            VerifyError::NonceMismatch => Reason::NonceMismatch,
        }
    }
}

/// A verified token.
#[derive(Debug)]
pub struct Verified {
    pub claims: Claims,
    /// The `200` body of `/v1/verify`, rendered once so cache hits serialize nothing.
    pub body: Bytes,
    /// Issued-at, to compare with revocations.
    pub iat: i64,
    /// The session registered for the token's `sid` when it was verified, if any: hits update
    /// its last-seen time and see its end without any map lookup.
    pub session: Option<Arc<Session>>,
}

/// A token whose signature checked out: its header and claims, and the key that verified it.
struct Signed {
    typ: Option<String>,
    claims: Map<String, Value>,
    key: Arc<VerifyKey>,
}

/// The claims of a verified back-channel logout token.
#[derive(Debug, Clone, PartialEq)]
pub struct LogoutClaims {
    pub sid: Option<String>,
    pub sub: Option<String>,
    pub jti: String,
    /// Until when the jti must be remembered.
    pub valid_until: i64,
}

/// The session an access token belongs to, as logout needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogoutSubject {
    pub sid: Option<String>,
    pub sub: String,
}

/// Turns verified token claims into the API's [`Claims`].
#[derive(Debug, Clone)]
pub struct ClaimMapper {
    organization_claim: String,
    organization_fallback: OrganizationFallback,
    groups_claim: String,
    roles: Vec<RoleRule>,
    default_role: String,
}

impl ClaimMapper {
    pub fn new(cfg: &ClaimsConfig) -> Self {
        Self {
            organization_claim: cfg.organization_claim.clone(),
            organization_fallback: cfg.organization_fallback,
            groups_claim: cfg.groups_claim.clone(),
            roles: cfg.roles.clone(),
            default_role: cfg.default_role.clone(),
        }
    }

    /// `sub` and `exp` have been checked by the caller.
    pub fn map(&self, mut all: Map<String, Value>, sub: String, exp: i64) -> Claims {
        let mut take_string = |name: &str| match all.remove(name) {
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                // Not a string: leave it visible among the other claims.
                all.insert(name.to_string(), other);
                None
            }
            None => None,
        };
        let email = take_string("email");
        let name = take_string("name");
        let preferred_username = take_string("preferred_username");
        let organization_id = match all.remove(&self.organization_claim) {
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => match self.organization_fallback {
                OrganizationFallback::Sub => Some(sub.clone()),
                OrganizationFallback::Absent => None,
            },
        };
        let groups: Vec<String> = match all.remove(&self.groups_claim) {
            Some(Value::Array(items)) => items
                .into_iter()
                .filter_map(|g| match g {
                    Value::String(s) => Some(s),
                    _ => None,
                })
                .collect(),
            Some(Value::String(s)) => vec![s],
            _ => Vec::new(),
        };
        let scope = match all.remove("scope") {
            Some(Value::String(s)) => Some(s),
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            _ => None,
        };
        all.remove("sub");
        all.remove("exp");
        let role = self
            .roles
            .iter()
            .find(|r| groups.contains(&r.group))
            .map_or_else(|| self.default_role.clone(), |r| r.role.clone());
        Claims {
            sub,
            email,
            name,
            preferred_username,
            organization_id,
            groups,
            role,
            scope,
            exp,
            extra: all,
        }
    }
}

/// What is remembered for a verified token.
struct CacheEntry {
    verified: Arc<Verified>,
    /// Unix seconds after which the entry is not used (min of exp and insert + TTL).
    valid_until: i64,
    /// The key that verified it; a hit counts only while that key is still published.
    key: Arc<VerifyKey>,
}

/// Bounded map from SHA-256(token) to its verification result.
pub struct TokenCache {
    map: DashMap<[u8; 32], CacheEntry>,
    max_entries: usize,
    ttl: i64,
    /// When a full cache was last swept (unix seconds): at most one sweep per second, or a
    /// cache full of live entries would make every miss pay for a scan.
    last_full_sweep: std::sync::atomic::AtomicI64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.map.len())
            .field("max_entries", &self.max_entries)
            .finish()
    }
}

impl TokenCache {
    pub fn new(max_entries: usize, ttl: Duration) -> Self {
        Self {
            map: DashMap::new(),
            max_entries,
            ttl: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
            last_full_sweep: std::sync::atomic::AtomicI64::new(i64::MIN),
        }
    }

    fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    fn get(&self, hash: &[u8; 32], now: i64, keys: &KeySet) -> Option<Arc<Verified>> {
        let entry = self.map.get(hash)?;
        let ended = entry
            .verified
            .session
            .as_ref()
            .is_some_and(|s| s.is_ended());
        if now < entry.valid_until && keys.contains(&entry.key) && !ended {
            if let Some(s) = &entry.verified.session {
                s.touch(now);
            }
            return Some(entry.verified.clone());
        }
        drop(entry);
        self.map.remove(hash);
        None
    }

    fn insert(&self, hash: [u8; 32], entry: CacheEntry, now: i64) {
        if self.max_entries == 0 {
            return;
        }
        if self.map.len() >= self.max_entries {
            let last = self
                .last_full_sweep
                .load(std::sync::atomic::Ordering::Relaxed);
            if now > last
                && self
                    .last_full_sweep
                    .compare_exchange(
                        last,
                        now,
                        std::sync::atomic::Ordering::Relaxed,
                        std::sync::atomic::Ordering::Relaxed,
                    )
                    .is_ok()
            {
                self.sweep(now);
            }
            if self.map.len() >= self.max_entries {
                return; // full of live entries: verify without remembering
            }
        }
        self.map.insert(hash, entry);
    }

    /// Forgets every verification that `pred` selects.
    pub fn forget(&self, pred: impl Fn(&Verified) -> bool) {
        self.map.retain(|_, e| !pred(&e.verified));
    }

    /// Removes expired entries.
    pub fn sweep(&self, now: i64) {
        self.map.retain(|_, e| e.valid_until > now);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    /// Critical extensions: tokend understands none, so a token naming any is refused. Present
    /// in any form (even `null`, `[]` or `""`) is `Some`.
    #[serde(default, deserialize_with = "present")]
    crit: Option<Value>,
    /// Content type: set for nested JWTs, which tokend does not unwrap.
    #[serde(default, deserialize_with = "present")]
    cty: Option<Value>,
    /// Compression (a JWE parameter): a payload tokend would have to inflate is refused.
    #[serde(default, deserialize_with = "present")]
    zip: Option<Value>,
}

/// A header member that is present at all, whatever its value (`null` included), is `Some`;
/// only an absent member is `None` (through `#[serde(default)]`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// The verifier. Shared as `Arc<Verifier>`.
#[derive(Debug)]
pub struct Verifier {
    issuer: String,
    audience: String,
    algorithms: Vec<Alg>,
    leeway: i64,
    max_token_bytes: usize,
    mapper: ClaimMapper,
    jwks: Arc<Jwks>,
    cache: TokenCache,
    sessions: Arc<Sessions>,
    /// The client id, expected in ID and logout token audiences.
    client_id: String,
    metrics: Arc<Metrics>,
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Verifier {
    pub fn new(
        config: &Config,
        jwks: Arc<Jwks>,
        sessions: Arc<Sessions>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            issuer: config.provider.issuer.clone(),
            audience: config.audience().to_string(),
            algorithms: config.provider.algorithms.iter().map(|a| a.0).collect(),
            leeway: i64::try_from(config.verify.leeway.as_secs()).unwrap_or(i64::MAX),
            max_token_bytes: config.verify.max_token_bytes,
            mapper: ClaimMapper::new(&config.claims),
            jwks,
            cache: TokenCache::new(config.verify.cache_max_entries, config.verify.cache_ttl),
            sessions,
            client_id: config.provider.client_id.clone(),
            metrics,
        }
    }

    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    /// Ends sessions (by `sid`, else by `sub`), puts them on the revocation list, and forgets
    /// their cached verifications. Returns how many registered sessions ended.
    pub fn end_sessions(
        &self,
        sid: Option<&str>,
        sub: Option<&str>,
        reason: EndReason,
        now: i64,
    ) -> usize {
        let ended = match (sid, sub) {
            (Some(sid), _) => self.sessions.end_sid(sid, reason, now),
            (None, Some(sub)) => self.sessions.end_sub(sub, reason, now),
            (None, None) => return 0,
        };
        self.cache.forget(|v| match sid {
            Some(sid) => v.claims.sid() == Some(sid),
            None => Some(v.claims.sub.as_str()) == sub,
        });
        ended.len()
    }

    /// Registers a login (the flow calls this, not `sessions().create`): a session with the
    /// same `sid` is replaced, and the cached verifications of that sid are forgotten so they
    /// link to the new session when verified again.
    pub fn create_session(&self, new: NewSession) -> Arc<Session> {
        let (session, replaced) = self.sessions.create_replacing(new);
        if let Some(old) = replaced {
            self.cache.forget(|v| {
                v.session.as_ref().is_some_and(|s| Arc::ptr_eq(s, &old))
                    || (old.sid.is_some() && v.claims.sid() == old.sid.as_deref())
            });
        }
        session
    }

    pub fn cache(&self) -> &TokenCache {
        &self.cache
    }

    pub fn jwks(&self) -> &Arc<Jwks> {
        &self.jwks
    }

    /// Verifies an access token. Cache hit: no parsing, no signature check.
    pub async fn verify(&self, token: &str) -> Result<Arc<Verified>, VerifyError> {
        let started = std::time::Instant::now();
        let result = self.verify_counted(token).await;
        self.metrics.verified(
            result.as_ref().map(|_| ()).map_err(VerifyError::reason),
            started.elapsed(),
        );
        result
    }

    async fn verify_counted(&self, token: &str) -> Result<Arc<Verified>, VerifyError> {
        self.check_length(token)?;
        let now = now_unix();
        // Hashed once: the lookup and, on a miss, the insert.
        let hash = TokenCache::key(token);
        let keys = self.jwks.keys();
        if let Some(hit) = self.cache.get(&hash, now, &keys) {
            self.metrics.cache_hits.inc();
            return Ok(hit);
        }
        drop(keys);
        self.metrics.cache_misses.inc();
        // Read before the revocation check inside: see `remember`.
        let generation = self.sessions.revocation_generation();
        let (verified, key) = self.verify_access(token, now).await?;
        Ok(self.remember(hash, verified, key, now, generation))
    }

    /// Caches a verification unless a session ended (or was replaced) since `generation` was
    /// read before it: its revocation check may predate the end, and a cached success would
    /// outlive it (issue #7). Checked again after the insert, because the end's cache clearing
    /// may have run between the check and the insert.
    fn remember(
        &self,
        hash: [u8; 32],
        verified: Verified,
        key: Arc<VerifyKey>,
        now: i64,
        generation: u64,
    ) -> Arc<Verified> {
        let verified = Arc::new(verified);
        if self.sessions.revocation_generation() != generation {
            tracing::debug!("a session ended during this verification; result not cached");
            return verified;
        }
        let valid_until = verified.claims.exp.min(now.saturating_add(self.cache.ttl));
        self.cache.insert(
            hash,
            CacheEntry {
                verified: verified.clone(),
                valid_until,
                key,
            },
            now,
        );
        if self.sessions.revocation_generation() != generation {
            self.cache.map.remove(&hash);
        }
        verified
    }

    /// Verifies an access token without consulting or filling the cache (the login flow uses
    /// it before the session exists, so later verifications link to the session).
    pub async fn verify_uncached(&self, token: &str) -> Result<Verified, VerifyError> {
        self.verify_access(token, now_unix()).await.map(|(v, _)| v)
    }

    /// Who an access token names, for logout: its signature, issuer and audience must be
    /// good, but its `exp` may have passed by up to `max_expired` seconds — by the time a user
    /// logs out, the browser's access cookie has usually expired (issue #7).
    pub async fn logout_subject(
        &self,
        token: &str,
        max_expired: i64,
    ) -> Result<LogoutSubject, VerifyError> {
        let signed = self.signed(token).await?;
        let c = &signed.claims;
        let now = now_unix();
        let exp = numeric(c, "exp")?.ok_or(VerifyError::MissingClaim("exp"))?;
        if now > exp.saturating_add(self.leeway).saturating_add(max_expired) {
            return Err(VerifyError::Expired(now - exp));
        }
        self.check_iss_aud(c, &self.audience)?;
        if c.contains_key("events") {
            return Err(VerifyError::WrongTokenType(
                "this is a logout token (it has an `events` claim)".into(),
            ));
        }
        let sub = match c.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(VerifyError::MissingClaim("sub")),
        };
        Ok(LogoutSubject {
            sid: c.get("sid").and_then(Value::as_str).map(str::to_owned),
            sub,
        })
    }

    async fn verify_access(
        &self,
        token: &str,
        now: i64,
    ) -> Result<(Verified, Arc<VerifyKey>), VerifyError> {
        let signed = self.signed(token).await?;
        if let Some(typ) = &signed.typ {
            let t = typ.to_ascii_lowercase();
            if t.contains("id_token") {
                return Err(VerifyError::IdTokenNotAccepted);
            }
            if !matches!(
                t.as_str(),
                "jwt" | "at+jwt" | "application/at+jwt" | "application/jwt"
            ) {
                return Err(VerifyError::WrongTokenType(format!(
                    "typ {:?} is not an access token type",
                    short(typ)
                )));
            }
        }
        let c = &signed.claims;
        let (exp, iat) = self.check_common(c, &self.audience, now)?;
        if c.contains_key("events") {
            return Err(VerifyError::WrongTokenType(
                "this is a logout token (it has an `events` claim)".into(),
            ));
        }
        // Authentik's access token carries azp and uid (and scope since 2025.10); its ID token
        // carries none of them.
        if !["azp", "uid", "scope"].iter().any(|k| c.contains_key(*k)) {
            return Err(VerifyError::IdTokenNotAccepted);
        }
        let sub = match c.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(VerifyError::MissingClaim("sub")),
        };
        let sid = c.get("sid").and_then(Value::as_str);
        if self.sessions.is_revoked(sid, &sub, iat, now) {
            return Err(VerifyError::Revoked);
        }
        let session = sid.and_then(|sid| self.sessions.by_sid(sid));
        if let Some(s) = &session {
            s.touch(now);
        }
        let claims = self.mapper.map(signed.claims, sub, exp);
        let body = render_active(&claims);
        Ok((
            Verified {
                claims,
                body,
                iat,
                session,
            },
            signed.key,
        ))
    }

    /// Verifies an ID token from the token endpoint: signature, iss, aud (the client id),
    /// exp/iat, and the login's nonce. Returns its claims.
    pub async fn verify_id_token(
        &self,
        token: &str,
        nonce: &str,
    ) -> Result<Map<String, Value>, VerifyError> {
        let signed = self.signed(token).await?;
        let c = signed.claims;
        self.check_common(&c, &self.client_id, now_unix())?;
        if let Some(azp) = c.get("azp").and_then(Value::as_str)
            && azp != self.client_id
        {
            return Err(VerifyError::WrongAudience(self.client_id.clone()));
        }
        match c.get("nonce").and_then(Value::as_str) {
            Some(n) if constant_time_eq(n.as_bytes(), nonce.as_bytes()) => Ok(c),
            _ => Err(VerifyError::NonceMismatch),
        }
    }

    /// Verifies a back-channel logout token (OpenID Connect Back-Channel Logout 1.0 §2.6).
    pub async fn verify_logout_token(&self, token: &str) -> Result<LogoutClaims, VerifyError> {
        let signed = self.signed(token).await?;
        if let Some(typ) = &signed.typ
            && !typ.eq_ignore_ascii_case("logout+jwt")
            && !typ.eq_ignore_ascii_case("application/logout+jwt")
            && !typ.eq_ignore_ascii_case("jwt")
        {
            return Err(VerifyError::WrongTokenType(format!(
                "typ {:?} is not logout+jwt",
                short(typ)
            )));
        }
        let c = &signed.claims;
        let now = now_unix();
        let iat = numeric(c, "iat")?.ok_or(VerifyError::MissingClaim("iat"))?;
        if iat > now.saturating_add(self.leeway) {
            return Err(VerifyError::NotYetValid("iat lies in the future".into()));
        }
        // Back-Channel Logout 1.0 §2.4 requires `exp`; a token without it is refused.
        let exp = numeric(c, "exp")?.ok_or(VerifyError::MissingClaim("exp"))?;
        if now > exp.saturating_add(self.leeway) {
            return Err(VerifyError::Expired(now - exp));
        }
        self.check_iss_aud(c, &self.client_id)?;
        let event_ok = c
            .get("events")
            .and_then(Value::as_object)
            .and_then(|e| e.get("http://schemas.openid.net/event/backchannel-logout"))
            .is_some_and(Value::is_object);
        if !event_ok {
            return Err(VerifyError::WrongTokenType(
                "no back-channel logout event in `events`".into(),
            ));
        }
        if c.contains_key("nonce") {
            return Err(VerifyError::WrongTokenType(
                "a logout token must not carry a nonce".into(),
            ));
        }
        let sid = c.get("sid").and_then(Value::as_str).map(str::to_owned);
        let sub = c.get("sub").and_then(Value::as_str).map(str::to_owned);
        if sid.is_none() && sub.is_none() {
            return Err(VerifyError::MissingClaim("sid"));
        }
        let jti = match c.get("jti") {
            Some(Value::String(j)) if !j.is_empty() => j.clone(),
            _ => return Err(VerifyError::MissingClaim("jti")),
        };
        Ok(LogoutClaims {
            sid,
            sub,
            jti,
            valid_until: exp
                .max(iat.saturating_add(self.leeway * 10))
                .saturating_add(self.leeway),
        })
    }

    /// Shape, header, key (with unknown-kid refetch) and signature; then the payload.
    /// Over-long tokens are refused before any hashing or parsing.
    fn check_length(&self, token: &str) -> Result<(), VerifyError> {
        if token.len() > self.max_token_bytes {
            return Err(VerifyError::Malformed(format!(
                "token is longer than {} bytes",
                self.max_token_bytes
            )));
        }
        Ok(())
    }

    async fn signed(&self, token: &str) -> Result<Signed, VerifyError> {
        self.check_length(token)?;
        let parts = split(token)?;
        let header = parse_header(parts.header)?;
        let alg = self.check_alg(&header)?;
        let keys = self.jwks.keys();
        let key = match self.select_key(&keys, &header, alg)? {
            Some(k) => k,
            None => {
                let generation = keys.generation;
                drop(keys);
                self.after_refetch(generation, &header, alg).await?
            }
        };
        match key.verify_signature(alg, parts.message.as_bytes(), parts.signature) {
            Signature::Valid => {}
            Signature::Invalid => return Err(VerifyError::BadSignature),
            Signature::NotBase64 => {
                return Err(VerifyError::Malformed("signature is not base64url".into()));
            }
        }
        let payload = URL_SAFE_NO_PAD
            .decode(parts.payload)
            .map_err(|_| VerifyError::Malformed("payload is not base64url".into()))?;
        let claims: Map<String, Value> = serde_json::from_slice(&payload)
            .map_err(|_| VerifyError::Malformed("payload is not a JSON object".into()))?;
        Ok(Signed {
            typ: header.typ,
            claims,
            key,
        })
    }

    fn check_alg(&self, header: &Header) -> Result<Alg, VerifyError> {
        if header.alg.eq_ignore_ascii_case("none") {
            return Err(VerifyError::UnsupportedAlg(
                "alg `none` (unsigned token) is never accepted".into(),
            ));
        }
        let alg = Alg::parse(&header.alg).ok_or_else(|| {
            VerifyError::UnsupportedAlg(format!("alg {:?} is not supported", short(&header.alg)))
        })?;
        if !self.algorithms.contains(&alg) {
            return Err(VerifyError::UnsupportedAlg(format!(
                "alg {alg} is not allowed by provider.algorithms"
            )));
        }
        for (name, member) in [
            ("crit", &header.crit),
            ("cty", &header.cty),
            ("zip", &header.zip),
        ] {
            if member.is_some() {
                return Err(VerifyError::UnsupportedHeader(name));
            }
        }
        Ok(alg)
    }

    /// The key for this token in `keys`; `Ok(None)` when its kid is unknown (refetch may help).
    fn select_key(
        &self,
        keys: &KeySet,
        header: &Header,
        alg: Alg,
    ) -> Result<Option<Arc<VerifyKey>>, VerifyError> {
        if keys.is_empty() {
            return if keys.fetched_at.is_some() {
                Ok(None) // an empty JWKS: a refetch may bring a key
            } else {
                Err(VerifyError::KeysUnavailable)
            };
        }
        let is_hmac = alg.is_hmac();
        let key = match (&header.kid, is_hmac) {
            // HS mode: the client secret is the key whatever the kid says.
            (_, true) => keys.sole_fit(alg),
            (Some(kid), false) => keys.by_kid(kid),
            (None, false) => keys.sole_fit(alg),
        };
        match key {
            Some(k) if k.fits(alg) => Ok(Some(k.clone())),
            Some(k) => Err(VerifyError::UnsupportedAlg(format!(
                "alg {alg} does not fit key {:?} ({:?}{})",
                k.kid.as_deref().unwrap_or("-"),
                k.kind,
                k.alg.map(|a| format!(", alg {a}")).unwrap_or_default()
            ))),
            None if is_hmac => Err(VerifyError::UnsupportedAlg(format!("alg {alg} has no key"))),
            None => Ok(None),
        }
    }

    async fn after_refetch(
        &self,
        generation: u64,
        header: &Header,
        alg: Alg,
    ) -> Result<Arc<VerifyKey>, VerifyError> {
        let outcome = self.jwks.refetch_unknown_kid(generation).await;
        let keys = self.jwks.keys();
        if let Some(key) = self.select_key(&keys, header, alg)? {
            return Ok(key);
        }
        let kid = header
            .kid
            .as_deref()
            .map_or_else(|| "(none)".to_string(), |k| format!("{:?}", short(k)));
        Err(VerifyError::UnknownKid(match outcome {
            Refetch::HeldBack => format!(
                "no key with kid {kid}; keys were refetched moments ago (jwks.min_refetch_interval)"
            ),
            Refetch::Failed => format!("no key with kid {kid}; refetching the JWKS failed"),
            Refetch::Fetched | Refetch::Newer => {
                format!("no key with kid {kid}, even after refetching the JWKS")
            }
        }))
    }

    /// exp, nbf, iat (with leeway), iss and aud. Returns (exp, iat).
    fn check_common(
        &self,
        c: &Map<String, Value>,
        audience: &str,
        now: i64,
    ) -> Result<(i64, i64), VerifyError> {
        let exp = numeric(c, "exp")?.ok_or(VerifyError::MissingClaim("exp"))?;
        if now > exp.saturating_add(self.leeway) {
            return Err(VerifyError::Expired(now - exp));
        }
        if let Some(nbf) = numeric(c, "nbf")?
            && nbf > now.saturating_add(self.leeway)
        {
            return Err(VerifyError::NotYetValid(format!(
                "not valid before {nbf} (nbf), {}s from now",
                nbf - now
            )));
        }
        let iat = numeric(c, "iat")?.ok_or(VerifyError::MissingClaim("iat"))?;
        if iat > now.saturating_add(self.leeway) {
            return Err(VerifyError::NotYetValid(format!(
                "issued {}s in the future (iat); check the clocks",
                iat - now
            )));
        }
        self.check_iss_aud(c, audience)?;
        Ok((exp, iat))
    }

    fn check_iss_aud(&self, c: &Map<String, Value>, audience: &str) -> Result<(), VerifyError> {
        match c.get("iss") {
            Some(Value::String(iss)) if *iss == self.issuer => {}
            Some(Value::String(iss)) => return Err(VerifyError::WrongIssuer(short(iss))),
            _ => return Err(VerifyError::MissingClaim("iss")),
        }
        let aud_ok = match c.get("aud") {
            Some(Value::String(a)) => a == audience,
            Some(Value::Array(items)) => items.iter().any(|a| a.as_str() == Some(audience)),
            _ => return Err(VerifyError::MissingClaim("aud")),
        };
        if !aud_ok {
            return Err(VerifyError::WrongAudience(audience.to_string()));
        }
        Ok(())
    }
}

/// The `200` body of `/v1/verify`: `{"active":true,"claims":{…}}` — the shape of
/// [`tokend_shared::VerifyResponse`], rendered from borrowed claims.
fn render_active(claims: &Claims) -> Bytes {
    #[derive(serde::Serialize)]
    struct Active<'a> {
        active: bool,
        claims: &'a Claims,
    }
    serde_json::to_vec(&Active {
        active: true,
        claims,
    })
    .map(Bytes::from)
    .unwrap_or_default()
}

/// Compares secrets without an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The three parts of a compact JWS.
struct Parts<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    /// `header.payload`, the signed bytes.
    message: &'a str,
}

fn split(token: &str) -> Result<Parts<'_>, VerifyError> {
    let dots = memchr::memchr_iter(b'.', token.as_bytes()).count();
    if dots == 4 {
        return Err(VerifyError::Malformed(
            "encrypted tokens (JWE) are not supported; the provider must not encrypt access \
             tokens for this client"
                .into(),
        ));
    }
    if dots != 2 {
        return Err(VerifyError::Malformed(
            "not a JWT: expected three dot-separated parts".into(),
        ));
    }
    let (message, signature) = token
        .rsplit_once('.')
        .ok_or_else(|| VerifyError::Malformed("not a JWT".into()))?;
    let (header, payload) = message
        .split_once('.')
        .ok_or_else(|| VerifyError::Malformed("not a JWT".into()))?;
    if header.is_empty() || payload.is_empty() {
        return Err(VerifyError::Malformed("empty header or payload".into()));
    }
    Ok(Parts {
        header,
        payload,
        signature,
        message,
    })
}

fn parse_header(encoded: &str) -> Result<Header, VerifyError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| VerifyError::Malformed("header is not base64url".into()))?;
    serde_json::from_slice(&bytes).map_err(|_| {
        VerifyError::Malformed("header is not a JSON object with a string `alg`".into())
    })
}

/// A NumericDate claim: an integer or a float (truncated), `None` if absent.
fn numeric(c: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, VerifyError> {
    match c.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
            .map(Some)
            .ok_or(VerifyError::MissingClaim(name)),
        Some(_) => Err(VerifyError::MissingClaim(name)),
    }
}

/// Attacker-controlled strings are cut before they go into messages and logs.
fn short(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn mapper() -> ClaimMapper {
        ClaimMapper::new(&ClaimsConfig::default())
    }

    fn claims(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn maps_authentik_claims_and_first_matching_role_wins() {
        let c = mapper().map(
            claims(json!({
                "sub": "u1", "exp": 10, "iss": "i", "email": "a@x", "name": "A",
                "preferred_username": "a", "organizationId": "org-1",
                "groups": ["staff", "ecosire-support", "ecosire-admins"],
                "scope": "openid email", "sid": "s1"
            })),
            "u1".into(),
            10,
        );
        assert_eq!(c.role, "admin", "rules are ordered: admins before support");
        assert_eq!(c.organization_id.as_deref(), Some("org-1"));
        assert_eq!(c.email.as_deref(), Some("a@x"));
        assert_eq!(c.scope.as_deref(), Some("openid email"));
        assert_eq!(c.groups.len(), 3);
        assert_eq!(c.extra.get("sid"), Some(&json!("s1")));
        assert_eq!(c.extra.get("iss"), Some(&json!("i")));
        assert!(!c.extra.contains_key("groups") && !c.extra.contains_key("sub"));
    }

    #[test]
    fn organization_falls_back_to_sub_and_role_to_default() {
        let c = mapper().map(
            claims(json!({"sub": "u2", "groups": ["other"]})),
            "u2".into(),
            1,
        );
        assert_eq!(c.organization_id.as_deref(), Some("u2"));
        assert_eq!(c.role, "user");
        let c = mapper().map(claims(json!({"sub": "u3"})), "u3".into(), 1);
        assert!(c.groups.is_empty());
        assert_eq!(c.role, "user");
    }

    /// Issue #7: with `organization_fallback = "none"` a token without the organization claim
    /// has no `organizationId` (left out of the JSON), instead of `sub`.
    #[test]
    fn issue_7_organization_fallback_none_leaves_it_absent() {
        let cfg: ClaimsConfig = toml::from_str("organization_fallback = \"none\"").expect("valid");
        assert_eq!(cfg.organization_fallback, OrganizationFallback::Absent);
        let none = ClaimMapper::new(&cfg);
        let c = none.map(claims(json!({"sub": "u"})), "u".into(), 1);
        assert_eq!(c.organization_id, None);
        let body: Value = serde_json::from_slice(&render_active(&c)).expect("json");
        assert!(
            body["claims"].get("organizationId").is_none(),
            "left out, not null: {body}"
        );
        let back: tokend_shared::VerifyResponse =
            serde_json::from_slice(&render_active(&c)).expect("a VerifyResponse");
        assert_eq!(back.claims.and_then(|c| c.organization_id), None);
        // The claim itself still counts, and the default still falls back to sub.
        let c = none.map(
            claims(json!({"sub": "u", "organizationId": "o"})),
            "u".into(),
            1,
        );
        assert_eq!(c.organization_id.as_deref(), Some("o"));
        let c = mapper().map(claims(json!({"sub": "u"})), "u".into(), 1);
        assert_eq!(c.organization_id.as_deref(), Some("u"));
        assert_eq!(
            ClaimsConfig::default().organization_fallback,
            OrganizationFallback::Sub
        );
    }

    #[test]
    fn configurable_claim_names_and_rules() {
        let cfg: ClaimsConfig = toml::from_str(
            r#"
organization_claim = "tenant"
groups_claim = "roles"
default_role = "guest"
roles = [{ group = "ops", role = "operator" }]
"#,
        )
        .expect("valid");
        let c = ClaimMapper::new(&cfg).map(
            claims(json!({"sub": "u", "tenant": 42, "roles": "ops", "email": 5})),
            "u".into(),
            1,
        );
        assert_eq!(c.organization_id.as_deref(), Some("42"));
        assert_eq!(c.groups, vec!["ops".to_string()]);
        assert_eq!(c.role, "operator");
        assert_eq!(c.email, None);
        assert_eq!(
            c.extra.get("email"),
            Some(&json!(5)),
            "non-string kept aside"
        );
    }

    #[test]
    fn rendered_body_is_a_verify_response() {
        let c = mapper().map(claims(json!({"sub": "u", "email": "e"})), "u".into(), 7);
        let back: tokend_shared::VerifyResponse =
            serde_json::from_slice(&render_active(&c)).expect("a VerifyResponse");
        assert!(back.active);
        assert_eq!(back.claims, Some(c));
        assert_eq!(back.reason, None);
    }

    #[test]
    fn split_rejects_wrong_shapes() {
        assert!(split("a.b.c").is_ok());
        for bad in ["", "a", "a.b", "a.b.c.d", "..", ".b.c", "a..c"] {
            assert!(split(bad).is_err(), "{bad:?}");
        }
        let jwe = split("a.b.c.d.e")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(jwe.contains("JWE"), "{jwe}");
    }

    #[test]
    fn numeric_dates_accept_floats() {
        let c = claims(json!({"exp": 1.5e9, "iat": 1, "nbf": "soon"}));
        assert_eq!(numeric(&c, "exp"), Ok(Some(1_500_000_000)));
        assert_eq!(numeric(&c, "iat"), Ok(Some(1)));
        assert_eq!(numeric(&c, "nbf"), Err(VerifyError::MissingClaim("nbf")));
        assert_eq!(numeric(&c, "x"), Ok(None));
    }

    const SECRET: &str = "unit-test-client-secret";
    const ISSUER: &str = "https://auth.example.com/application/o/shop/";

    /// A verifier in HS256 mode (the client secret is the key): no provider needed.
    fn verifier_with(extra: &str) -> Verifier {
        let text = format!(
            "[listen]\nhttp = \"127.0.0.1:9180\"\n[provider]\nissuer = \"{ISSUER}\"\n\
             client_id = \"shop\"\nclient_secret = \"{SECRET}\"\nalgorithms = [\"HS256\"]\n{extra}"
        );
        let config = Config::from_toml(
            &text,
            std::path::Path::new("unit.toml"),
            std::path::Path::new("."),
            std::iter::empty(),
        )
        .expect("valid config");
        let metrics = Metrics::new();
        let jwks = crate::build_jwks(&config, &metrics).expect("jwks");
        let sessions = Arc::new(Sessions::new(config.revocation_ttl(), metrics.clone()));
        Verifier::new(&config, jwks, sessions, metrics)
    }

    fn verifier() -> Verifier {
        verifier_with("")
    }

    /// An HS256 token with `extra_header` merged into `{"alg":"HS256","typ":"JWT"}`.
    fn hs_token(extra_header: Value, payload: &Value) -> String {
        let mut header = json!({"alg": "HS256", "typ": "JWT"});
        for (k, v) in extra_header.as_object().cloned().unwrap_or_default() {
            header[k] = v;
        }
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        let sig = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
            jsonwebtoken::Algorithm::HS256,
        )
        .expect("signed");
        format!("{message}.{sig}")
    }

    fn access_claims(sub: &str, sid: &str) -> Value {
        let now = now_unix();
        json!({
            "iss": ISSUER, "sub": sub, "aud": "shop", "exp": now + 300, "iat": now,
            "sid": sid, "azp": "shop", "uid": "u", "scope": "openid"
        })
    }

    /// Issue #7: `crit` in any form, `cty` and `zip` are refused with a stable reason.
    #[tokio::test]
    async fn issue_7_unprocessed_header_parameters_are_refused() {
        let v = verifier();
        let claims = access_claims("alice", "s1");
        let ok = v.verify(&hs_token(json!({}), &claims)).await;
        assert!(ok.is_ok(), "{ok:?}");
        for header in [
            json!({"crit": null}),
            json!({"crit": []}),
            json!({"crit": ""}),
            json!({"crit": ["exp"], "exp": 1}),
            json!({"cty": "JWT"}),
            json!({"cty": null}),
            json!({"zip": "DEF"}),
        ] {
            let err = v
                .verify(&hs_token(header.clone(), &claims))
                .await
                .err()
                .map(|e| e.reason());
            assert_eq!(err, Some(Reason::UnsupportedHeader), "{header}");
        }
        // Logout tokens go through the same header check.
        let err = v
            .verify_logout_token(&hs_token(json!({"crit": null}), &claims))
            .await
            .err()
            .map(|e| e.reason());
        assert_eq!(err, Some(Reason::UnsupportedHeader));
    }

    fn logout_claims(sid: &str) -> Value {
        let now = now_unix();
        json!({
            "iss": ISSUER, "aud": "shop", "iat": now, "exp": now + 120, "jti": format!("j-{sid}"),
            "sid": sid,
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}}
        })
    }

    /// Issue #7: Back-Channel Logout 1.0 requires `exp` in a logout token.
    #[tokio::test]
    async fn issue_7_logout_token_without_exp_is_refused() {
        let v = verifier();
        let header = json!({"typ": "logout+jwt"});
        let with_exp = logout_claims("s1");
        let ok = v
            .verify_logout_token(&hs_token(header.clone(), &with_exp))
            .await;
        assert!(ok.is_ok(), "{ok:?}");
        let mut without = logout_claims("s2");
        without.as_object_mut().map(|o| o.remove("exp"));
        let err = v
            .verify_logout_token(&hs_token(header, &without))
            .await
            .err();
        assert_eq!(err, Some(VerifyError::MissingClaim("exp")));
    }

    /// Issue #7: a verification that passed the revocation check just before its session
    /// ended does not put its success into the cache after the end.
    #[tokio::test]
    async fn issue_7_success_verified_before_an_end_is_not_cached_after_it() {
        let v = verifier();
        let token = hs_token(json!({}), &access_claims("erin", "sid-e"));
        let hash = TokenCache::key(&token);
        let now = now_unix();
        // The verification reads the generation and passes the revocation check…
        let generation = v.sessions().revocation_generation();
        let (verified, key) = v.verify_access(&token, now).await.expect("valid");
        // …then the session ends (admin revocation, logout, back-channel) before it caches.
        v.end_sessions(Some("sid-e"), None, EndReason::AdminRevocation, now);
        let answered = v.remember(hash, verified, key, now, generation);
        assert_eq!(answered.claims.sub, "erin", "the in-flight answer stands");
        assert!(v.cache().is_empty(), "but it is not remembered");
        assert_eq!(v.verify(&token).await.err(), Some(VerifyError::Revoked));
        assert_eq!(v.verify(&token).await.err(), Some(VerifyError::Revoked));

        // Without an end in between, the same path caches.
        let other = hs_token(json!({}), &access_claims("fred", "sid-f"));
        assert!(v.verify(&other).await.is_ok());
        assert_eq!(v.cache().len(), 1);
    }

    /// Issue #7: a new login with an existing sid replaces the session and forgets the cached
    /// verifications of the replaced one, which then link to the new session.
    #[tokio::test]
    async fn issue_7_create_session_forgets_the_replaced_sessions_cache_entries() {
        let v = verifier();
        let c = access_claims("gina", "sid-g");
        let token = hs_token(json!({}), &c);
        let claims = v.verify_uncached(&token).await.expect("valid").claims;
        let new = |rt: &str| NewSession {
            claims: &claims,
            sid: Some("sid-g".into()),
            id_token: None,
            refresh_token: Some(tokend_shared::Secret::new(rt)),
            refresh_expires: now_unix() + 3600,
            now: now_unix(),
        };
        let first = v.create_session(new("rt-1"));
        let hit = v.verify(&token).await.expect("valid");
        assert!(hit.session.as_ref().is_some_and(|s| Arc::ptr_eq(s, &first)));
        assert_eq!(v.cache().len(), 1);
        let second = v.create_session(new("rt-2"));
        assert!(first.is_ended());
        assert!(
            v.cache().is_empty(),
            "the replaced session's entries are forgotten"
        );
        let again = v
            .verify(&token)
            .await
            .expect("still valid: same sid, new login");
        assert!(
            again
                .session
                .as_ref()
                .is_some_and(|s| Arc::ptr_eq(s, &second))
        );
        assert!(v.sessions().refresh_token_ended("rt-1"));
    }

    #[test]
    fn token_cache_is_bounded_and_expires() {
        let cache = TokenCache::new(2, Duration::from_secs(60));
        let key = Arc::new(crate::jwks::test_key());
        let entry = |valid_until| CacheEntry {
            verified: Arc::new(Verified {
                claims: mapper().map(Map::new(), "s".into(), 1),
                body: Bytes::new(),
                iat: 0,
                session: None,
            }),
            valid_until,
            key: key.clone(),
        };
        cache.insert([1; 32], entry(100), 0);
        cache.insert([2; 32], entry(5), 0);
        cache.insert([3; 32], entry(100), 0);
        assert_eq!(cache.len(), 2, "full of live entries: third not stored");
        cache.insert([3; 32], entry(100), 10);
        assert_eq!(cache.len(), 2, "expired entry swept to make room");
        assert!(cache.map.contains_key(&[3; 32]));
        assert!(!cache.map.contains_key(&[2; 32]));
    }
}
