//! The JWS layer: compact-serialization splitting, header parsing and the header checks
//! (`alg` allowed and fitting the key, no parameter tokend does not process), key selection
//! with the unknown-kid refetch, the signature check, NumericDate parsing, and the helpers
//! `short` and `constant_time_eq`.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Verifier, VerifyError};
use crate::alg::Alg;
use crate::jwks::{KeySet, Refetch, Signature, VerifyKey};

/// A token whose signature checked out: its header and claims, and the key that verified it.
pub(super) struct Signed {
    pub(super) typ: Option<String>,
    pub(super) claims: Map<String, Value>,
    pub(super) key: Arc<VerifyKey>,
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

impl Verifier {
    /// Shape, header, key (with unknown-kid refetch) and signature; then the payload.
    /// Over-long tokens are refused before any hashing or parsing.
    pub(super) fn check_length(&self, token: &str) -> Result<(), VerifyError> {
        if token.len() > self.max_token_bytes {
            return Err(VerifyError::Malformed(format!(
                "token is longer than {} bytes",
                self.max_token_bytes
            )));
        }
        Ok(())
    }

    pub(super) async fn signed(&self, token: &str) -> Result<Signed, VerifyError> {
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
                Err(VerifyError::KeysUnavailable(self.jwks.why_no_keys()))
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
    // RFC 7515 §5.2: the header must be UTF-8 throughout. serde_json checks only the members
    // it keeps, so a member tokend ignores could otherwise carry any bytes (issue #9).
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| VerifyError::Malformed("header is not UTF-8".into()))?;
    serde_json::from_str(text).map_err(|_| {
        VerifyError::Malformed("header is not a JSON object with a string `alg`".into())
    })
}

/// A NumericDate claim: an integer or a float (truncated), `None` if absent.
pub(super) fn numeric(
    c: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, VerifyError> {
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
pub(super) fn short(s: &str) -> String {
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
    use tokend_shared::Reason;

    use crate::verify::claims::tests::claims;
    use crate::verify::tests::{access_claims, hs_token, verifier};

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

    /// Issue #9 (found by the `verify_token` fuzz target): a header whose ignored member holds
    /// bytes that are not UTF-8 was accepted; RFC 7515 §5.2 wants UTF-8 JSON.
    #[tokio::test]
    async fn issue_9_header_that_is_not_utf8_is_malformed() {
        let v = verifier();
        let claims = access_claims("alice", "s1");
        let sign = |header: &[u8]| {
            let message = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let sig = jsonwebtoken::crypto::sign(
                message.as_bytes(),
                &jsonwebtoken::EncodingKey::from_secret(crate::verify::tests::SECRET.as_bytes()),
                jsonwebtoken::Algorithm::HS256,
            )
            .expect("signed");
            format!("{message}.{sig}")
        };
        let good = v.verify(&sign(br#"{"alg":"HS256","x":"ok"}"#)).await;
        assert!(good.is_ok(), "{good:?}");
        let bad = v
            .verify(&sign(b"{\"alg\":\"HS256\",\"x\":\"\xff\xfe\"}"))
            .await
            .err()
            .map(|e| e.reason());
        assert_eq!(bad, Some(Reason::Malformed));
    }
}

#[cfg(test)]
mod mutation_tests;
