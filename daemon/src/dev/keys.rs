//! The dev issuer's ephemeral signing key: an RSA key made at start (RS256, as Authentik signs
//! with its default self-signed key), its JWK for the JWKS, and signing with `jsonwebtoken`.
//! The key lives only in this process's memory.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use sha2::{Digest, Sha512};

use super::DevError;

/// The signing key and what the JWKS publishes of it.
pub struct SigningKey {
    encoding: EncodingKey,
    /// `base64url(SHA-512(PEM))`, 86 characters: Authentik's kid format since 2026.2.
    kid: String,
    /// The public JWK, as Authentik's JWKS lists it (without the certificate members).
    jwk: serde_json::Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh RSA-2048 key from aws-lc-rs.
    pub fn generate() -> Result<Self, DevError> {
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| DevError::Key)?;
        let der = pair.as_der().map_err(|_| DevError::Key)?;
        let pem = zeroize::Zeroizing::new(pem("PRIVATE KEY", der.as_ref()));
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| DevError::Key)?;
        let kid = URL_SAFE_NO_PAD.encode(Sha512::digest(pem.as_bytes()));
        let public = pair.public_key();
        let jwk = serde_json::json!({
            "alg": "RS256",
            "kid": kid,
            "kty": "RSA",
            "use": "sig",
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        });
        Ok(Self { encoding, kid, jwk })
    }

    /// The JWKS document: `{"keys": [<this key>]}`.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [self.jwk] })
    }

    /// A compact JWS of `claims`: header `{"alg":"RS256","typ":<typ>,"kid":…}`.
    pub fn sign(&self, typ: &str, claims: &impl Serialize) -> Result<String, DevError> {
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some(typ.to_string());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|_| DevError::Sign)
    }
}

impl SigningKey {
    /// The claims of a token this key signed (`exp` not checked: an expired ID token is still
    /// a good `id_token_hint`); `None` for anything else.
    pub fn claims_of(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
    ) -> Option<serde_json::Value> {
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(self.jwk.clone()).ok()?;
        let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).ok()?;
        let mut v = jsonwebtoken::Validation::new(Algorithm::RS256);
        v.validate_exp = false;
        v.required_spec_claims.clear();
        v.set_audience(&[audience]);
        v.set_issuer(&[issuer]);
        jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
            .ok()
            .map(|d| d.claims)
    }
}

/// PEM armour of `der` with label `label`.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_tokens_its_jwk_verifies() {
        let key = SigningKey::generate().expect("key");
        let token = key
            .sign(
                "JWT",
                &serde_json::json!({"sub": "x", "exp": 4_000_000_000u64}),
            )
            .expect("sign");
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.jwk.clone()).expect("jwk");
        let dk = jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("decoding key");
        let mut v = jsonwebtoken::Validation::new(Algorithm::RS256);
        v.validate_aud = false;
        v.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<serde_json::Value>(&token, &dk, &v).expect("verifies");
        assert_eq!(data.header.kid.as_deref(), Some(key.kid.as_str()));
        assert_eq!(key.kid.len(), 86);
    }
}
