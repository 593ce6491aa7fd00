//! Token verification: [`Verifier`] and its checks of access and ID tokens (`exp`, `nbf`,
//! `iat`, `iss`, `aud`, token type, revocation), [`VerifyError`], [`Verified`], and the glue
//! between the verified-token cache and the session registry. The JWS layer (shape, header,
//! key, signature) is in `jws`, the claim mapping in `claims`, the cache in `cache`, what a
//! verification yields (and the cache keeps) in `verified`, logout tokens in `logout`.

mod cache;
mod claims;
mod identity;
mod jws;
mod logout;
#[cfg(test)]
mod properties;
mod verified;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};
use tokend_shared::{Claims, Reason};

use crate::alg::Alg;
use crate::config::Config;
use crate::jwks::{Jwks, VerifyKey};
use crate::metrics::Metrics;
use crate::sessions::{EndReason, NewSession, Session, Sessions};
use cache::CacheEntry;
use jws::{numeric, short};

pub use cache::TokenCache;
pub use claims::ClaimMapper;
pub use identity::IdentityHeaders;
pub use jws::constant_time_eq;
pub use logout::{LogoutClaims, LogoutSubject};
pub use verified::Verified;

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
    /// With why there are none (the last fetch's error, e.g. an issuer mismatch).
    #[error("no verification keys are loaded: {0}")]
    KeysUnavailable(String),
    /// Why: logout, back-channel logout, an operator's revocation (`revoked_by_admin`).
    #[error("{}", revoked_message(*.0))]
    Revoked(EndReason),
    #[error("the ID token's nonce does not match the login")]
    NonceMismatch,
}

/// The message of a refusal of a token whose session ended, naming who ended it.
fn revoked_message(why: EndReason) -> &'static str {
    match why {
        EndReason::AdminRevocation => "an administrator revoked the session of this token",
        EndReason::Logout => "the session of this token has ended (logout)",
        EndReason::BackchannelLogout => {
            "the session of this token has ended (logout at the provider, back-channel)"
        }
        EndReason::Expired => "the session of this token has ended",
    }
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
            VerifyError::KeysUnavailable(_) => Reason::KeysUnavailable,
            VerifyError::Revoked(EndReason::AdminRevocation) => Reason::RevokedByAdmin,
            VerifyError::Revoked(_) => Reason::TokenRevoked,
            VerifyError::NonceMismatch => Reason::NonceMismatch,
        }
    }
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
            cache: TokenCache::new(
                config.verify.cache_max_entries,
                usize::try_from(config.verify.cache_max_bytes).unwrap_or(usize::MAX),
                config.verify.cache_ttl,
            ),
            sessions,
            client_id: config.provider.client_id.clone(),
            metrics,
        }
    }

    pub fn sessions(&self) -> &Arc<Sessions> {
        &self.sessions
    }

    /// Ends sessions (by `sid`, else by `sub`), puts them on the revocation list, and forgets
    /// their cached verifications. Returns the registered sessions that ended.
    pub fn end_sessions(
        &self,
        sid: Option<&str>,
        sub: Option<&str>,
        reason: EndReason,
        now: i64,
    ) -> Vec<Arc<Session>> {
        let ended = match (sid, sub) {
            (Some(sid), _) => self.sessions.end_sid(sid, reason, now),
            (None, Some(sub)) => self.sessions.end_sub(sub, reason, now),
            (None, None) => return Vec::new(),
        };
        self.cache.forget(|v| match sid {
            Some(sid) => v.sid() == Some(sid),
            None => Some(v.sub()) == sub,
        });
        ended
    }

    /// Applies a revocation another instance made (see `sessions::Sessions::apply_remote`)
    /// and forgets the cached verifications it refuses now. Returns the local sessions ended.
    pub fn apply_remote(&self, change: crate::sessions::Change, now: i64) -> Vec<Arc<Session>> {
        use crate::sessions::Change;
        let forget = match &change {
            Change::Sid { sid, .. } => Some((Some(sid.clone()), None)),
            Change::Sub { sub, .. } => Some((None, Some(sub.clone()))),
            Change::EndedRefresh { .. } => None,
        };
        let ended = self.sessions.apply_remote(change, now);
        match forget {
            Some((Some(sid), _)) => self.cache.forget(|v| v.sid() == Some(sid.as_str())),
            // All of the user's: verified again, the revocation's `at` decides.
            Some((None, Some(sub))) => self.cache.forget(|v| v.sub() == sub),
            _ => {}
        }
        ended
    }

    /// Registers a login (the flow calls this, not `sessions().create`): a session with the
    /// same `sid` is replaced, and the cached verifications of that sid are forgotten so they
    /// link to the new session when verified again.
    pub fn create_session(&self, new: NewSession) -> Arc<Session> {
        let (session, replaced) = self.sessions.create_replacing(new);
        if let Some(old) = replaced {
            self.cache.forget(|v| {
                v.session.as_ref().is_some_and(|s| Arc::ptr_eq(s, &old))
                    || (old.sid.is_some() && v.sid() == old.sid.as_deref())
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

    /// Where verifications are counted.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Verifies an access token. Cache hit: no parsing, no signature check.
    pub async fn verify(&self, token: &str) -> Result<Arc<Verified>, VerifyError> {
        self.verify_keyed(token).await.map(|(verified, _)| verified)
    }

    /// [`Verifier::verify`], with the token's cache key — `None` when the cache is off
    /// (forward auth keeps its identity headers beside the cached verification: `identity`).
    async fn verify_keyed(
        &self,
        token: &str,
    ) -> Result<(Arc<Verified>, Option<[u8; 32]>), VerifyError> {
        let started = std::time::Instant::now();
        let result = self.verify_counted(token).await;
        self.metrics.verified(
            result.as_ref().map(|_| ()).map_err(VerifyError::reason),
            started,
        );
        result
    }

    async fn verify_counted(
        &self,
        token: &str,
    ) -> Result<(Arc<Verified>, Option<[u8; 32]>), VerifyError> {
        self.check_length(token)?;
        let now = now_unix();
        // Hashed once: the lookup and, on a miss, the insert. Not at all when the cache is off:
        // the SHA-256 of the token would be thrown away (issue #14, distinct tokens).
        let hash = self.cache.is_enabled().then(|| TokenCache::key(token));
        if let Some(hash) = hash {
            let keys = self.jwks.keys();
            if let Some(hit) = self.cache.get(&hash, now, &keys) {
                self.metrics.cache_hits.inc();
                return Ok((hit, Some(hash)));
            }
        }
        self.metrics.cache_misses.inc();
        // Read before the revocation check inside: see `remember`.
        let generation = self.sessions.revocation_generation();
        let (claims, iat, session, key) = self.verify_access(token, now).await?;
        let verified = Verified::new(&claims, iat, session);
        let answer = match hash {
            Some(hash) => self.remember(hash, verified, key, now, generation),
            None => Arc::new(verified),
        };
        Ok((answer, hash))
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
        let valid_until = verified
            .exp
            .min(now.saturating_add(cached_for(self.cache.ttl, &hash)));
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
            self.cache.remove(&hash);
        }
        verified
    }

    /// Verifies an access token without consulting or filling the cache (the login flow uses
    /// it before the session exists, so later verifications link to the session). Returns its
    /// claims.
    pub async fn verify_uncached(&self, token: &str) -> Result<Claims, VerifyError> {
        self.verify_access(token, now_unix())
            .await
            .map(|(claims, ..)| claims)
    }

    /// The checks of an access token. Returns its claims, `iat`, the session of its `sid` (if
    /// registered) and the key that verified it.
    async fn verify_access(
        &self,
        token: &str,
        now: i64,
    ) -> Result<(Claims, i64, Option<Arc<Session>>, Arc<VerifyKey>), VerifyError> {
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
        if let Some(why) = self.sessions.revoked_by(sid, &sub, iat, now) {
            return Err(VerifyError::Revoked(why));
        }
        let session = sid.and_then(|sid| self.sessions.by_sid(sid));
        if let Some(s) = &session {
            s.touch(now);
        }
        let claims = self.mapper.map(signed.claims, sub, exp);
        Ok((claims, iat, session, signed.key))
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
        // OIDC Core §2: azp, when present, is a string naming this client. Anything else — a
        // string for another party, or not a string at all (issue #9, found by the
        // `verify_token` fuzz target) — is refused.
        match c.get("azp") {
            None => {}
            Some(Value::String(azp)) if *azp == self.client_id => {}
            Some(_) => return Err(VerifyError::WrongAudience(self.client_id.clone())),
        }
        match c.get("nonce").and_then(Value::as_str) {
            Some(n) if constant_time_eq(n.as_bytes(), nonce.as_bytes()) => Ok(c),
            _ => Err(VerifyError::NonceMismatch),
        }
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
            return Err(VerifyError::Expired(now.saturating_sub(exp)));
        }
        if let Some(nbf) = numeric(c, "nbf")?
            && nbf > now.saturating_add(self.leeway)
        {
            return Err(VerifyError::NotYetValid(format!(
                "not valid before {nbf} (nbf), {}s from now",
                nbf.saturating_sub(now)
            )));
        }
        let iat = numeric(c, "iat")?.ok_or(VerifyError::MissingClaim("iat"))?;
        if iat > now.saturating_add(self.leeway) {
            return Err(VerifyError::NotYetValid(format!(
                "issued {}s in the future (iat); check the clocks",
                iat.saturating_sub(now)
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

/// How long a verification made now stays cached: `ttl` less up to a tenth of it, the amount
/// taken from the token's hash. Tokens first seen together (a mass login, a restart behind
/// busy clients) then lapse over a tenth of `ttl` rather than in the same second, so their
/// re-verification (a signature check each) is spread over it too instead of coming as one
/// burst every `ttl` (the waves of bench/RESULTS.md "Soak, 30 minutes"). Deterministic: the
/// same token is always cached for the same time.
fn cached_for(ttl: i64, hash: &[u8; 32]) -> i64 {
    let spread = ttl / 10;
    if spread <= 0 {
        return ttl;
    }
    let draw = i64::from(u16::from_le_bytes([hash[0], hash[1]]));
    ttl - draw % (spread + 1)
}

#[cfg(test)]
mod mutation_tests;

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::json;

    pub(in crate::verify) const SECRET: &str = "unit-test-client-secret";
    pub(in crate::verify) const ISSUER: &str = "https://auth.example.com/application/o/shop/";

    /// A verifier in HS256 mode (the client secret is the key): no provider needed.
    pub(in crate::verify) fn verifier_with(extra: &str) -> Verifier {
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

    pub(in crate::verify) fn verifier() -> Verifier {
        verifier_with("")
    }

    /// Issue #14 (soak): verifications cached together lapse over the last tenth of
    /// `cache_ttl`, each token always after the same time, and a TTL under 10 s is not spread.
    #[test]
    fn issue_14_cached_verifications_lapse_spread_over_a_tenth_of_the_ttl() {
        let spread: Vec<i64> = (0u32..2000)
            .map(|i| cached_for(300, &TokenCache::key(&format!("token-{i}"))))
            .collect();
        assert!(spread.iter().all(|t| (270..=300).contains(t)), "{spread:?}");
        let (lo, hi) = (spread.iter().min(), spread.iter().max());
        assert_eq!(
            (lo, hi),
            (Some(&270), Some(&300)),
            "the whole tenth is used"
        );
        let distinct: std::collections::HashSet<_> = spread.iter().collect();
        assert_eq!(distinct.len(), 31, "every second of the tenth");
        let key = TokenCache::key("token-7");
        assert_eq!(
            cached_for(300, &key),
            cached_for(300, &key),
            "deterministic"
        );
        for i in 0u32..50 {
            let key = TokenCache::key(&format!("token-{i}"));
            assert_eq!(cached_for(9, &key), 9, "a TTL under 10 s is kept whole");
            assert_eq!(cached_for(0, &key), 0);
        }
    }

    /// Issue #14 (soak): the verifier caches a token for `cached_for`, not the whole TTL.
    #[tokio::test]
    async fn issue_14_the_verifier_caches_a_token_until_its_spread_ttl() {
        let v = verifier_with("[verify]\ncache_ttl = \"300s\"\n");
        let now = now_unix();
        // A token this test can tell from an unspread one: cached for at most 290 s.
        let token = (0u32..)
            .map(|i| {
                let mut claims = access_claims(&format!("user-{i}"), "sid-1");
                claims["exp"] = json!(now + 3600);
                hs_token(json!({}), &claims)
            })
            .find(|t| cached_for(300, &TokenCache::key(t)) <= 290)
            .expect("a token");
        let key = TokenCache::key(&token);
        let ttl = cached_for(300, &key);
        let before = now_unix();
        v.verify(&token).await.expect("valid");
        let after = now_unix();
        let keys = v.jwks.keys();
        assert!(
            v.cache.get(&key, before + ttl - 1, &keys).is_some(),
            "cached"
        );
        assert!(
            v.cache.get(&key, after + ttl, &keys).is_none(),
            "gone after {ttl} s, not 300"
        );
    }

    /// An HS256 token with `extra_header` merged into `{"alg":"HS256","typ":"JWT"}`.
    pub(in crate::verify) fn hs_token(extra_header: Value, payload: &Value) -> String {
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

    pub(in crate::verify) fn access_claims(sub: &str, sid: &str) -> Value {
        let now = now_unix();
        json!({
            "iss": ISSUER, "sub": sub, "aud": "shop", "exp": now + 300, "iat": now,
            "sid": sid, "azp": "shop", "uid": "u", "scope": "openid"
        })
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
        let (claims, iat, session, key) = v.verify_access(&token, now).await.expect("valid");
        // …then the session ends (admin revocation, logout, back-channel) before it caches.
        v.end_sessions(Some("sid-e"), None, EndReason::AdminRevocation, now);
        let verified = Verified::new(&claims, iat, session);
        let answered = v.remember(hash, verified, key, now, generation);
        assert_eq!(answered.sub(), "erin", "the in-flight answer stands");
        assert!(v.cache().is_empty(), "but it is not remembered");
        assert_eq!(
            v.verify(&token).await.err(),
            Some(VerifyError::Revoked(EndReason::AdminRevocation))
        );
        assert_eq!(
            v.verify(&token).await.err(),
            Some(VerifyError::Revoked(EndReason::AdminRevocation))
        );

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
        let claims = v.verify_uncached(&token).await.expect("valid");
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

    /// Issue #9 (found by the `verify_token` fuzz target): an ID token whose `azp` is not a
    /// string (an array here) was accepted; only a string naming this client is.
    #[tokio::test]
    async fn issue_9_id_token_azp_must_be_this_clients_string() {
        let v = verifier();
        let now = now_unix();
        let id_token = |azp: Option<Value>| {
            let mut c = json!({
                "iss": ISSUER, "sub": "alice", "aud": "shop", "exp": now + 300, "iat": now,
                "nonce": "n1", "sid": "s1"
            });
            if let Some(azp) = azp {
                c["azp"] = azp;
            }
            hs_token(json!({}), &c)
        };
        for ok in [None, Some(json!("shop"))] {
            let r = v.verify_id_token(&id_token(ok.clone()), "n1").await;
            assert!(r.is_ok(), "azp {ok:?}: {r:?}");
        }
        for bad in [
            json!("other"),
            json!(["shop"]),
            json!(["pwd", "mfa"]),
            json!(null),
            json!(1),
        ] {
            let r = v.verify_id_token(&id_token(Some(bad.clone())), "n1").await;
            assert!(
                matches!(r, Err(VerifyError::WrongAudience(_))),
                "azp {bad}: {r:?}"
            );
        }
    }
}
