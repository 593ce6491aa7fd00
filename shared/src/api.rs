//! Request and response bodies of the HTTP API (`/v1/verify`, `/readyz`, errors).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::secret::Secret;

/// `POST /v1/verify` body.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The access token (a compact JWS), without any `Bearer ` prefix.
    #[serde(serialize_with = "Secret::serialize_exposed")]
    pub token: Secret,
}

/// The answer of `/v1/verify`: `200 {"active": true, "claims": {…}}` or
/// `401 {"active": false, "reason": "…", "message": "…"}`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct VerifyResponse {
    pub active: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<Claims>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Who the token says the user is, after verification.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Claims {
    pub sub: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub preferred_username: Option<String>,
    /// The configured organization claim, falling back to `sub` (the reference design's rule)
    /// unless `claims.organization_fallback = "none"`: then absent (left out of the JSON) when
    /// the token has no organization claim.
    #[serde(
        rename = "organizationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub organization_id: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    /// The first role rule whose group the user is in, else the default role.
    pub role: String,
    /// Space-separated granted scopes, as the provider sent them.
    #[serde(default)]
    pub scope: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// Every other claim of the token (iss, aud, iat, sid, jti, azp, …), unchanged.
    #[serde(default)]
    pub extra: Map<String, Value>,
}

/// `POST /v1/codes`: park tokens under a one-time code. The access token is verified first.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IssueCodeRequest {
    #[serde(serialize_with = "Secret::serialize_exposed")]
    pub access_token: Secret,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_opt_exposed"
    )]
    pub refresh_token: Option<Secret>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_opt_exposed"
    )]
    pub id_token: Option<Secret>,
}

/// `201` answer of `POST /v1/codes`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct IssueCodeResponse {
    #[serde(serialize_with = "Secret::serialize_exposed")]
    pub code: Secret,
    /// Seconds until the code expires.
    pub expires_in: u64,
}

/// `POST /v1/codes/redeem` and `POST /auth/exchange` body.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedeemRequest {
    #[serde(serialize_with = "Secret::serialize_exposed")]
    pub code: Secret,
}

/// `200` answer of `POST /v1/codes/redeem`: the parked tokens and the access token's claims.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct RedeemResponse {
    #[serde(serialize_with = "Secret::serialize_exposed")]
    pub access_token: Secret,
    #[serde(default, serialize_with = "serialize_opt_exposed")]
    pub refresh_token: Option<Secret>,
    #[serde(default, serialize_with = "serialize_opt_exposed")]
    pub id_token: Option<Secret>,
    pub claims: Claims,
}

/// `POST /auth/logout` answer: where to send the browser to end the provider session.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct LogoutResponse {
    pub logout_url: String,
}

fn serialize_opt_exposed<S: serde::Serializer>(
    v: &Option<Secret>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(secret) => s.serialize_str(secret.expose()),
        None => s.serialize_none(),
    }
}

impl Claims {
    /// The provider's session id (`sid`), which ties access, ID and logout tokens together.
    pub fn sid(&self) -> Option<&str> {
        self.extra.get("sid").and_then(Value::as_str)
    }
}

/// A session registered by tokend's login flow, as the admin API and the console show it.
/// No tokens.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct SessionInfo {
    pub sid: Option<String>,
    pub sub: String,
    pub email: Option<String>,
    /// The session's organization, as in its claims (absent when they had none).
    #[serde(
        rename = "organizationId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub organization_id: Option<String>,
    pub role: String,
    /// Unix seconds.
    pub created: i64,
    pub access_expires: i64,
    pub refresh_expires: i64,
    /// Last time one of the session's tokens was verified.
    pub last_seen: i64,
}

/// `POST /v1/admin/sessions/revoke`: by `sid`, or every session of `sub`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    #[serde(default)]
    pub sid: Option<String>,
    #[serde(default)]
    pub sub: Option<String>,
}

/// Body of every error answer that is not a `/v1/verify` result.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct ErrorBody {
    pub reason: Reason,
    pub message: String,
}

/// `GET /readyz` body.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Readiness {
    pub ready: bool,
    /// Why not, when not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Verification keys currently loaded.
    pub keys: usize,
    /// Seconds since the keys were last fetched from the provider (or written to the disk cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys_age_seconds: Option<u64>,
    /// What works but needs an operator, ready or not: e.g. the provider refused the client's
    /// credentials (`invalid_client`), so logins and refreshes fail while verification works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// The record store (exchange codes, login states): its engine and whether it answered
    /// its last check. An unavailable store does not make tokend unready — verification
    /// works without it — but code and login endpoints answer 503 `store_unavailable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreReadiness>,
}

/// The record store in `GET /readyz`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct StoreReadiness {
    /// `memory` or `redis`.
    pub kind: String,
    pub healthy: bool,
    /// Why not, when not healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Stable, machine-readable failure reasons. New reasons may be added; clients should treat
/// an unknown one like a generic failure (it deserializes as [`Reason::Other`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, strum::EnumIter)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// No token in the request (no cookie, no `Authorization: Bearer`).
    MissingToken,
    /// Not a compact JWS: wrong shape, bad base64 or JSON, too long, or encrypted (JWE).
    Malformed,
    /// `alg` is `none`, not allowed by the configuration, or does not fit the key.
    UnsupportedAlg,
    /// The JWS header asks for processing tokend does not do: `crit` (in any form), `cty`
    /// (a nested JWT) or `zip` (a compressed payload).
    UnsupportedHeader,
    /// No published key has the token's `kid` (even after a refetch).
    UnknownKid,
    BadSignature,
    Expired,
    /// `nbf` or `iat` lies in the future (beyond the leeway).
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    /// An ID token was presented where an access token is expected.
    IdTokenNotAccepted,
    /// Another kind of JWT (for example a logout token) was presented as an access token.
    WrongTokenType,
    /// A claim the check needs (`exp`, `iat`, `sub`, …) is absent or of the wrong type.
    MissingClaim,
    /// tokend holds no verification keys (provider unreachable and no cache).
    KeysUnavailable,
    /// The token's session has ended (logout, back-channel logout, or the session's
    /// tokens expired).
    TokenRevoked,
    /// An operator revoked the token's session (or every session of its user) through the
    /// admin API.
    RevokedByAdmin,
    /// An ID token's nonce does not match the login it completes.
    NonceMismatch,
    /// No such exchange code (never issued, or expired long ago).
    UnknownCode,
    CodeExpired,
    CodeAlreadyRedeemed,
    /// Too many outstanding codes or refreshes; retry shortly.
    CapacityExceeded,
    /// Refresh grants to the provider are rate-limited; retry after the `Retry-After` header.
    RateLimited,
    /// The record store (`[store] kind = "redis"`) cannot be reached or did not answer in
    /// time: exchange codes and logins cannot be issued or redeemed; retry after the
    /// `Retry-After` header. Verification is not affected.
    StoreUnavailable,
    /// The login flow endpoints need a `[flow]` section in the configuration.
    FlowNotConfigured,
    /// No (valid) session cookie.
    NoSession,
    /// The provider refused the refresh token.
    RefreshFailed,
    /// The provider could not be reached or answered an error.
    ProviderUnavailable,
    /// The admin socket refused the connecting uid (not root, not tokend's own, not in
    /// `admin.allowed_uids` / `admin.allowed_groups`).
    Forbidden,
    /// The request itself is malformed (bad JSON, wrong fields).
    BadRequest,
    PayloadTooLarge,
    NotFound,
    MethodNotAllowed,
    Timeout,
    Internal,
    /// A reason this client does not know yet.
    #[serde(other)]
    Other,
}

impl Reason {
    /// Every reason, in declaration order ([`Reason::Other`] last).
    pub fn all() -> impl Iterator<Item = Reason> {
        <Reason as strum::IntoEnumIterator>::iter()
    }

    /// Whether a token verification (`/v1/verify`, and the verifications inside other
    /// endpoints) can answer with this reason — the vocabulary of
    /// `tokend_verifications_total{result="invalid"}`. No wildcard: a new reason must be
    /// placed here.
    pub fn is_verification(self) -> bool {
        match self {
            Reason::MissingToken
            | Reason::Malformed
            | Reason::UnsupportedAlg
            | Reason::UnsupportedHeader
            | Reason::UnknownKid
            | Reason::BadSignature
            | Reason::Expired
            | Reason::NotYetValid
            | Reason::WrongIssuer
            | Reason::WrongAudience
            | Reason::IdTokenNotAccepted
            | Reason::WrongTokenType
            | Reason::MissingClaim
            | Reason::KeysUnavailable
            | Reason::TokenRevoked
            | Reason::RevokedByAdmin
            | Reason::NonceMismatch => true,
            Reason::UnknownCode
            | Reason::CodeExpired
            | Reason::CodeAlreadyRedeemed
            | Reason::CapacityExceeded
            | Reason::RateLimited
            | Reason::StoreUnavailable
            | Reason::FlowNotConfigured
            | Reason::NoSession
            | Reason::RefreshFailed
            | Reason::ProviderUnavailable
            | Reason::Forbidden
            | Reason::BadRequest
            | Reason::PayloadTooLarge
            | Reason::NotFound
            | Reason::MethodNotAllowed
            | Reason::Timeout
            | Reason::Internal
            | Reason::Other => false,
        }
    }

    /// The wire name, e.g. `bad_signature`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::MissingToken => "missing_token",
            Reason::Malformed => "malformed",
            Reason::UnsupportedAlg => "unsupported_alg",
            Reason::UnsupportedHeader => "unsupported_header",
            Reason::UnknownKid => "unknown_kid",
            Reason::BadSignature => "bad_signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::WrongIssuer => "wrong_issuer",
            Reason::WrongAudience => "wrong_audience",
            Reason::IdTokenNotAccepted => "id_token_not_accepted",
            Reason::WrongTokenType => "wrong_token_type",
            Reason::MissingClaim => "missing_claim",
            Reason::KeysUnavailable => "keys_unavailable",
            Reason::TokenRevoked => "token_revoked",
            Reason::RevokedByAdmin => "revoked_by_admin",
            Reason::NonceMismatch => "nonce_mismatch",
            Reason::UnknownCode => "unknown_code",
            Reason::CodeExpired => "code_expired",
            Reason::CodeAlreadyRedeemed => "code_already_redeemed",
            Reason::CapacityExceeded => "capacity_exceeded",
            Reason::RateLimited => "rate_limited",
            Reason::StoreUnavailable => "store_unavailable",
            Reason::FlowNotConfigured => "flow_not_configured",
            Reason::NoSession => "no_session",
            Reason::RefreshFailed => "refresh_failed",
            Reason::ProviderUnavailable => "provider_unavailable",
            Reason::Forbidden => "forbidden",
            Reason::BadRequest => "bad_request",
            Reason::PayloadTooLarge => "payload_too_large",
            Reason::NotFound => "not_found",
            Reason::MethodNotAllowed => "method_not_allowed",
            Reason::Timeout => "timeout",
            Reason::Internal => "internal",
            Reason::Other => "other",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_wire_names_round_trip() {
        for r in [
            Reason::MissingToken,
            Reason::Malformed,
            Reason::UnsupportedAlg,
            Reason::UnsupportedHeader,
            Reason::UnknownKid,
            Reason::BadSignature,
            Reason::Expired,
            Reason::NotYetValid,
            Reason::WrongIssuer,
            Reason::WrongAudience,
            Reason::IdTokenNotAccepted,
            Reason::WrongTokenType,
            Reason::MissingClaim,
            Reason::KeysUnavailable,
            Reason::TokenRevoked,
            Reason::RevokedByAdmin,
            Reason::NonceMismatch,
            Reason::UnknownCode,
            Reason::CodeExpired,
            Reason::CodeAlreadyRedeemed,
            Reason::CapacityExceeded,
            Reason::RateLimited,
            Reason::StoreUnavailable,
            Reason::FlowNotConfigured,
            Reason::NoSession,
            Reason::RefreshFailed,
            Reason::ProviderUnavailable,
            Reason::Forbidden,
            Reason::BadRequest,
            Reason::PayloadTooLarge,
            Reason::NotFound,
            Reason::MethodNotAllowed,
            Reason::Timeout,
            Reason::Internal,
        ] {
            let json = serde_json::to_string(&r).expect("serializes");
            assert_eq!(json, format!("\"{}\"", r.as_str()));
            let back: Reason = serde_json::from_str(&json).expect("deserializes");
            assert_eq!(back, r);
        }
    }

    #[test]
    fn unknown_reason_is_other() {
        let r: Reason = serde_json::from_str("\"from_the_future\"").expect("deserializes");
        assert_eq!(r, Reason::Other);
    }

    #[test]
    fn verify_request_debug_hides_the_token() {
        let req: VerifyRequest =
            serde_json::from_str(r#"{"token":"eyJhbGciOi.secret.sig"}"#).expect("valid");
        assert!(!format!("{req:?}").contains("eyJ"));
        // …but serializing a request (client side) sends it.
        assert!(
            serde_json::to_string(&req)
                .expect("ser")
                .contains("eyJhbGciOi")
        );
    }
}
