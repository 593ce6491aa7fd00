//! The keys themselves: [`VerifyKey`] (one JWK, parsed once for aws-lc), [`KeySet`] (an
//! immutable set, replaced as a whole), [`KeyKind`], [`KeySource`], [`Signature`], and the
//! parsing of JWKS entries. A symmetric key in a JWKS is never trusted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lc_rs::signature::{self as lc, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use tokend_shared::Secret;

use crate::alg::Alg;
use crate::config::RsaFamily;

/// What a key can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    EcP521,
    Ed25519,
    /// The client secret (Authentik without a signing key). Never built from a JWKS entry.
    Hmac,
}

/// One verification key.
pub struct VerifyKey {
    pub kid: Option<String>,
    pub kind: KeyKind,
    /// The JWK's own `alg`, which then is the only algorithm it verifies.
    pub alg: Option<Alg>,
    /// Every algorithm this key may verify: its `alg`, else those of its type (one family
    /// for RSA, `jwks.rsa_without_alg`), so one key never serves both RS* and PS*.
    algs: Vec<Alg>,
    pub decoding: DecodingKey,
    /// The key parsed once by aws-lc for each asymmetric algorithm it fits (jsonwebtoken would
    /// rebuild it on every verification); HMAC keys have none.
    parsed: Vec<(Alg, ParsedPublicKey)>,
    /// Canonical JSON of the JWK, to keep the same `Arc` across refreshes of an unchanged key.
    pub(super) raw: String,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("kind", &self.kind)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyKey {
    /// Whether a token signed with `alg` may be checked with this key.
    pub fn fits(&self, alg: Alg) -> bool {
        self.algs.contains(&alg)
    }

    /// The algorithms a key of `kind` may verify: its pinned `alg` when it fits the kind, else
    /// every algorithm of the kind — for RSA only the `rsa_family`.
    fn algs_for(kind: KeyKind, alg: Option<Alg>, rsa_family: RsaFamily) -> Vec<Alg> {
        use Algorithm::*;
        let candidates: Vec<Alg> = match kind {
            KeyKind::Rsa => match (alg, rsa_family) {
                // A pinned alg chooses its own family.
                (Some(_), _) => vec![RS256, RS384, RS512, PS256, PS384, PS512],
                (None, RsaFamily::Rs) => vec![RS256, RS384, RS512],
                (None, RsaFamily::Ps) => vec![PS256, PS384, PS512],
            }
            .into_iter()
            .map(Alg::Jws)
            .collect(),
            KeyKind::EcP256 => vec![Alg::Jws(ES256)],
            KeyKind::EcP384 => vec![Alg::Jws(ES384)],
            KeyKind::EcP521 => vec![Alg::Es512],
            KeyKind::Ed25519 => vec![Alg::Jws(EdDSA)],
            KeyKind::Hmac => [HS256, HS384, HS512].into_iter().map(Alg::Jws).collect(),
        };
        candidates
            .into_iter()
            .filter(|a| alg.is_none_or(|pinned| pinned == *a))
            .collect()
    }

    /// Checks `signature` (base64url) over `message` with this key for `alg`.
    pub fn verify_signature(&self, alg: Alg, message: &[u8], signature: &str) -> Signature {
        if let Some((_, key)) = self.parsed.iter().find(|(a, _)| *a == alg) {
            let Ok(sig) = URL_SAFE_NO_PAD.decode(signature) else {
                return Signature::NotBase64;
            };
            return if key.verify_sig(message, &sig).is_ok() {
                Signature::Valid
            } else {
                Signature::Invalid
            };
        }
        match alg {
            Alg::Jws(a) => {
                match jsonwebtoken::crypto::verify(signature, message, &self.decoding, a) {
                    Ok(true) => Signature::Valid,
                    Ok(false) => Signature::Invalid,
                    Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::Base64(_)) => {
                        Signature::NotBase64
                    }
                    Err(_) => Signature::Invalid,
                }
            }
            // ES512 keys are always parsed; one that is not cannot verify anything.
            Alg::Es512 => Signature::Invalid,
        }
    }

    /// aws-lc keys for every asymmetric algorithm in `algs` (those the key fits).
    fn parse_for_aws_lc(
        algs: &[Alg],
        jwk: &Jwk,
        decoding: &DecodingKey,
    ) -> Result<Vec<(Alg, ParsedPublicKey)>, String> {
        use Algorithm::*;
        let mut parsed = Vec::new();
        for &a in algs.iter().filter(|a| !a.is_hmac()) {
            let key = match (&jwk.algorithm, a) {
                (AlgorithmParameters::RSA(p), Alg::Jws(j)) => {
                    let params: &'static lc::RsaParameters = match j {
                        RS256 => &lc::RSA_PKCS1_2048_8192_SHA256,
                        RS384 => &lc::RSA_PKCS1_2048_8192_SHA384,
                        RS512 => &lc::RSA_PKCS1_2048_8192_SHA512,
                        PS256 => &lc::RSA_PSS_2048_8192_SHA256,
                        PS384 => &lc::RSA_PSS_2048_8192_SHA384,
                        _ => &lc::RSA_PSS_2048_8192_SHA512,
                    };
                    let n = URL_SAFE_NO_PAD
                        .decode(&p.n)
                        .map_err(|e| format!("n: {e}"))?;
                    let e = URL_SAFE_NO_PAD
                        .decode(&p.e)
                        .map_err(|e| format!("e: {e}"))?;
                    RsaPublicKeyComponents { n: &n, e: &e }
                        .to_parsed_public_key(params)
                        .map_err(|e| format!("RSA key rejected: {e}"))?
                }
                (_, a) => {
                    let algorithm: &'static dyn lc::VerificationAlgorithm = match a {
                        Alg::Jws(ES256) => &lc::ECDSA_P256_SHA256_FIXED,
                        Alg::Jws(ES384) => &lc::ECDSA_P384_SHA384_FIXED,
                        Alg::Es512 => &lc::ECDSA_P521_SHA512_FIXED,
                        _ => &lc::ED25519,
                    };
                    let bytes = decoding.try_get_as_bytes().map_err(|e| e.to_string())?;
                    ParsedPublicKey::new(algorithm, bytes)
                        .map_err(|e| format!("key rejected: {e}"))?
                }
            };
            parsed.push((a, key));
        }
        Ok(parsed)
    }

    pub(super) fn hmac(secret: &Secret) -> Self {
        Self {
            kid: None,
            kind: KeyKind::Hmac,
            alg: None,
            algs: Self::algs_for(KeyKind::Hmac, None, RsaFamily::default()),
            decoding: DecodingKey::from_secret(secret.expose().as_bytes()),
            parsed: Vec::new(),
            raw: String::new(),
        }
    }

    /// Builds a key from one JWKS entry; `Ok(None)` for entries that are not signature keys.
    /// An RSA key without `alg` verifies `rsa_family` only.
    pub(super) fn from_jwk_value(
        value: &serde_json::Value,
        rsa_family: RsaFamily,
    ) -> Result<Option<Self>, String> {
        if value.get("use").and_then(|u| u.as_str()) == Some("enc") {
            return Ok(None);
        }
        let kid = value.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
        let alg = match value.get("alg").and_then(|a| a.as_str()) {
            None => None,
            Some(a) => Some(
                Alg::parse(a).ok_or_else(|| format!("alg {a:?} cannot be verified by tokend"))?,
            ),
        };
        // Certificate members are not used for verification; a malformed one must not cost the
        // key (issue #8: an `x5c` of the wrong shape dropped the whole entry).
        let mut bare = value.clone();
        if let Some(members) = bare.as_object_mut() {
            for unused in ["x5c", "x5t", "x5t#S256", "x5u"] {
                members.remove(unused);
            }
        }
        let jwk: Jwk = serde_json::from_value(bare).map_err(|e| e.to_string())?;
        let kind = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => KeyKind::Rsa,
            AlgorithmParameters::EllipticCurve(p) => match &p.curve {
                EllipticCurve::P256 => KeyKind::EcP256,
                EllipticCurve::P384 => KeyKind::EcP384,
                EllipticCurve::P521 => KeyKind::EcP521,
                other => return Err(format!("curve {other:?} is not supported")),
            },
            AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
                KeyKind::Ed25519
            }
            AlgorithmParameters::OctetKeyPair(p) => {
                return Err(format!("curve {:?} is not supported", p.curve));
            }
            // A symmetric key in a JWKS is never trusted: that is how HS/RS confusion starts.
            AlgorithmParameters::OctetKey(_) => return Ok(None),
            _ => return Err("unknown key type".into()),
        };
        let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
        let algs = Self::algs_for(kind, alg, rsa_family);
        let parsed = Self::parse_for_aws_lc(&algs, &jwk, &decoding)?;
        Ok(Some(Self {
            kid,
            kind,
            alg,
            algs,
            decoding,
            parsed,
            raw: value.to_string(),
        }))
    }
}

/// The outcome of a signature check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    Valid,
    Invalid,
    NotBase64,
}

/// Where the current keys came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    None,
    Provider,
    DiskCache,
    ClientSecret,
}

/// An immutable set of keys; replaced as a whole.
#[derive(Debug)]
pub struct KeySet {
    pub(super) by_kid: HashMap<String, Arc<VerifyKey>>,
    pub(super) without_kid: Vec<Arc<VerifyKey>>,
    /// When the provider served these keys; staleness is measured from here.
    pub fetched_at: Option<SystemTime>,
    /// Bumped on every install, so waiters can tell that a refetch happened.
    pub generation: u64,
    pub source: KeySource,
    /// JWKS entries that could not be used, and why the first one could not: readiness tells
    /// "none usable" apart from "none published".
    pub(super) skipped: Option<(usize, String)>,
}

impl KeySet {
    pub(super) fn empty(generation: u64) -> Self {
        Self {
            by_kid: HashMap::new(),
            without_kid: Vec::new(),
            fetched_at: None,
            generation,
            source: KeySource::None,
            skipped: None,
        }
    }

    pub fn len(&self) -> usize {
        self.by_kid.len() + self.without_kid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn by_kid(&self, kid: &str) -> Option<&Arc<VerifyKey>> {
        self.by_kid.get(kid)
    }

    /// Every key, with a `kid` or without.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<VerifyKey>> {
        self.by_kid.values().chain(self.without_kid.iter())
    }

    /// For a token without `kid`: the single key that fits `alg`, if exactly one does.
    pub fn sole_fit(&self, alg: Alg) -> Option<&Arc<VerifyKey>> {
        let mut fits = self
            .by_kid
            .values()
            .chain(self.without_kid.iter())
            .filter(|k| k.fits(alg));
        match (fits.next(), fits.next()) {
            (Some(k), None) => Some(k),
            _ => None,
        }
    }

    /// Whether `key` is still one of these keys (same material, not merely the same kid).
    pub fn contains(&self, key: &Arc<VerifyKey>) -> bool {
        match &key.kid {
            Some(kid) => self.by_kid.get(kid).is_some_and(|k| Arc::ptr_eq(k, key)),
            None => self.without_kid.iter().any(|k| Arc::ptr_eq(k, key)),
        }
    }

    pub fn age(&self) -> Option<Duration> {
        self.fetched_at
            .map(|t| SystemTime::now().duration_since(t).unwrap_or_default())
    }
}

#[derive(Deserialize)]
pub(super) struct RawJwks {
    /// Authentik without a signing key serves `{}`: no `keys` member is an empty set.
    #[serde(default)]
    pub(super) keys: Vec<serde_json::Value>,
}

/// A key for unit tests elsewhere in the crate.
#[cfg(test)]
pub(crate) fn test_key() -> VerifyKey {
    VerifyKey::hmac(&Secret::new("test"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JwksConfig;
    use crate::jwks::tests::{jwks, rsa};

    #[test]
    fn alg_must_fit_the_key() {
        let key = VerifyKey::from_jwk_value(&rsa("k"), RsaFamily::Rs)
            .expect("valid")
            .expect("sig key");
        assert!(key.fits(Alg::Jws(Algorithm::RS256)));
        assert!(
            !key.fits(Alg::Jws(Algorithm::PS256)),
            "the JWK's alg pins it"
        );
        assert!(!key.fits(Alg::Jws(Algorithm::HS256)));
        assert!(!key.fits(Alg::Es512));
        let mut no_alg = rsa("k");
        no_alg.as_object_mut().map(|o| o.remove("alg"));
        let key = VerifyKey::from_jwk_value(&no_alg, RsaFamily::Ps)
            .expect("valid")
            .expect("sig key");
        assert!(key.fits(Alg::Jws(Algorithm::PS512)));
        assert!(!key.fits(Alg::Jws(Algorithm::ES256)));
        assert!(!key.fits(Alg::Jws(Algorithm::HS256)));
    }

    /// Issue #7: an RSA JWK without `alg` verifies one family only — RS* by default (as
    /// Authentik signs), PS* with `jwks.rsa_without_alg = "PS"` — and aws-lc parses it for
    /// that family only.
    #[test]
    fn issue_7_rsa_key_without_alg_verifies_one_family() {
        use Algorithm::*;
        let mut no_alg = rsa("k");
        no_alg.as_object_mut().map(|o| o.remove("alg"));
        let rs = VerifyKey::from_jwk_value(&no_alg, RsaFamily::default())
            .expect("valid")
            .expect("sig key");
        for a in [RS256, RS384, RS512] {
            assert!(rs.fits(Alg::Jws(a)), "{a:?}");
        }
        for a in [PS256, PS384, PS512] {
            assert!(!rs.fits(Alg::Jws(a)), "default is RS only: {a:?}");
        }
        let parsed: Vec<Alg> = rs.parsed.iter().map(|(a, _)| *a).collect();
        assert_eq!(parsed, [RS256, RS384, RS512].map(Alg::Jws).to_vec());

        let ps = VerifyKey::from_jwk_value(&no_alg, RsaFamily::Ps)
            .expect("valid")
            .expect("sig key");
        for a in [PS256, PS384, PS512] {
            assert!(ps.fits(Alg::Jws(a)), "{a:?}");
        }
        for a in [RS256, RS384, RS512] {
            assert!(!ps.fits(Alg::Jws(a)), "PS only: {a:?}");
        }
        let parsed: Vec<Alg> = ps.parsed.iter().map(|(a, _)| *a).collect();
        assert_eq!(parsed, [PS256, PS384, PS512].map(Alg::Jws).to_vec());

        // A JWK with `alg` is pinned to it whatever the setting says.
        let pinned = VerifyKey::from_jwk_value(&rsa("k"), RsaFamily::Ps)
            .expect("valid")
            .expect("sig key");
        assert!(pinned.fits(Alg::Jws(RS256)));
        assert!(!pinned.fits(Alg::Jws(PS256)));
        assert_eq!(pinned.parsed.len(), 1);

        // Through the config: the setting reaches the key cache.
        let cfg: JwksConfig = toml::from_str("rsa_without_alg = \"PS\"").expect("valid");
        assert_eq!(cfg.rsa_without_alg, RsaFamily::Ps);
        assert_eq!(JwksConfig::default().rsa_without_alg, RsaFamily::Rs);
        let mut j = jwks();
        j.cfg = cfg;
        j.install(&[no_alg], SystemTime::now(), KeySource::Provider);
        let keys = j.keys();
        let k = keys.by_kid("k").expect("installed");
        assert!(k.fits(Alg::Jws(PS256)) && !k.fits(Alg::Jws(RS256)));
    }
}

#[cfg(test)]
mod mutation_tests;
