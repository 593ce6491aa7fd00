//! The verification keys: the provider's JWKS, cached in memory (lock-free reads), refreshed in
//! the background, refetched once (single flight, rate-limited) for unknown `kid`s, kept through
//! outages up to `max_stale`, and mirrored to a disk cache so tokend starts while the provider
//! is down. In HS256 mode the only key is the client secret.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use aws_lc_rs::signature::{self as lc, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::{Deserialize, Serialize};
use tokend_shared::{Readiness, Secret};

use crate::alg::Alg;
use crate::config::{JwksConfig, RsaFamily};
use crate::metrics::Metrics;
use crate::provider::{Provider, ProviderError, ProviderMetadata, check_issuer};

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("JWKS from {url} is not a JSON object with a `keys` array: {message}")]
    Parse { url: String, message: String },
    #[error("disk cache {path}: {message}")]
    DiskCache { path: PathBuf, message: String },
}

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
    raw: String,
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

    fn hmac(secret: &Secret) -> Self {
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
    fn from_jwk_value(
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
        let jwk: Jwk = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
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
    by_kid: HashMap<String, Arc<VerifyKey>>,
    without_kid: Vec<Arc<VerifyKey>>,
    /// When the provider served these keys; staleness is measured from here.
    pub fetched_at: Option<SystemTime>,
    /// Bumped on every install, so waiters can tell that a refetch happened.
    pub generation: u64,
    pub source: KeySource,
}

impl KeySet {
    fn empty(generation: u64) -> Self {
        Self {
            by_kid: HashMap::new(),
            without_kid: Vec::new(),
            fetched_at: None,
            generation,
            source: KeySource::None,
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

    fn age(&self) -> Option<Duration> {
        self.fetched_at
            .map(|t| SystemTime::now().duration_since(t).unwrap_or_default())
    }
}

/// How an unknown-kid refetch went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refetch {
    /// This caller fetched; look again.
    Fetched,
    /// Another caller fetched meanwhile; look again.
    Newer,
    /// Within `min_refetch_interval` of the last refetch: not fetched.
    HeldBack,
    /// The fetch failed; the old keys stay.
    Failed,
}

/// The disk cache file: enough to start verifying without the provider.
#[derive(Debug, Serialize, Deserialize)]
struct DiskCache {
    version: u32,
    issuer: String,
    /// Seconds since the epoch when the provider served this JWKS.
    fetched_at: u64,
    discovery: ProviderMetadata,
    jwks: serde_json::Value,
}

#[derive(Deserialize)]
struct RawJwks {
    /// Authentik without a signing key serves `{}`: no `keys` member is an empty set.
    #[serde(default)]
    keys: Vec<serde_json::Value>,
}

/// The key cache. Shared as `Arc<Jwks>`.
#[derive(Debug)]
pub struct Jwks {
    keys: ArcSwap<KeySet>,
    /// Discovery (for `jwks_uri`) and the upstream client.
    provider: Arc<Provider>,
    cfg: JwksConfig,
    /// HS256 mode: keys are the client secret, the JWKS is not used.
    hmac: bool,
    /// Serializes unknown-kid refetches; holds the time of the last one.
    refetch_gate: tokio::sync::Mutex<Option<Instant>>,
    /// The last failure, shown by /readyz while there are no keys.
    last_error: Mutex<Option<String>>,
    metrics: Arc<Metrics>,
}

impl Jwks {
    /// A cache with no keys yet (or, in HS mode, the client secret as the only key).
    pub fn new(
        provider: Arc<Provider>,
        cfg: JwksConfig,
        hmac_secret: Option<&Secret>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let keys = match hmac_secret {
            Some(secret) => {
                let key = Arc::new(VerifyKey::hmac(secret));
                KeySet {
                    by_kid: HashMap::new(),
                    without_kid: vec![key],
                    fetched_at: Some(SystemTime::now()),
                    generation: 1,
                    source: KeySource::ClientSecret,
                }
            }
            None => KeySet::empty(0),
        };
        Self {
            keys: ArcSwap::from_pointee(keys),
            provider,
            cfg,
            hmac: hmac_secret.is_some(),
            refetch_gate: tokio::sync::Mutex::new(None),
            last_error: Mutex::new(None),
            metrics,
        }
    }

    /// The current keys; cheap, lock-free.
    pub fn keys(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.keys.load()
    }

    pub fn provider(&self) -> &Arc<Provider> {
        &self.provider
    }

    /// Loads the disk cache, if configured, present, for this issuer and not too stale.
    pub fn load_disk_cache(&self) -> Result<bool, JwksError> {
        let Some(path) = &self.cfg.cache_file else {
            return Ok(false);
        };
        let err = |message: String| JwksError::DiskCache {
            path: path.clone(),
            message,
        };
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(err(e.to_string())),
        };
        let cache: DiskCache = serde_json::from_slice(&text).map_err(|e| err(e.to_string()))?;
        if cache.issuer != self.provider.issuer() {
            return Err(err(format!(
                "written for issuer {:?}, not {:?}; ignored",
                cache.issuer,
                self.provider.issuer()
            )));
        }
        check_issuer(self.provider.issuer(), &cache.discovery).map_err(|e| err(e.to_string()))?;
        let fetched_at = UNIX_EPOCH + Duration::from_secs(cache.fetched_at);
        let age = SystemTime::now()
            .duration_since(fetched_at)
            .unwrap_or_default();
        if age > self.cfg.max_stale {
            return Err(err(format!(
                "{}s old, beyond jwks.max_stale; ignored",
                age.as_secs()
            )));
        }
        self.provider.set_cached_metadata(cache.discovery);
        if !self.hmac {
            let raw: RawJwks =
                serde_json::from_value(cache.jwks).map_err(|e| err(e.to_string()))?;
            self.install(&raw.keys, fetched_at, KeySource::DiskCache);
        }
        Ok(true)
    }

    /// The configuration this cache was built with.
    pub fn config(&self) -> &JwksConfig {
        &self.cfg
    }

    /// Discovery (when not yet done) and a JWKS fetch; installs the keys on success.
    pub async fn refresh(&self) -> Result<(), JwksError> {
        let result = self.try_refresh().await;
        match &result {
            Ok(()) => {
                self.metrics
                    .jwks_fetches
                    .with_label_values(&["success"])
                    .inc();
                *lock(&self.last_error) = None;
            }
            Err(e) => {
                self.metrics
                    .jwks_fetches
                    .with_label_values(&["failure"])
                    .inc();
                *lock(&self.last_error) = Some(e.to_string());
            }
        }
        result
    }

    async fn try_refresh(&self) -> Result<(), JwksError> {
        let meta = self.provider.live_metadata().await?;
        if self.hmac {
            self.write_disk_cache(&meta, serde_json::json!({}), SystemTime::now())
                .await;
            return Ok(());
        }
        let started = Instant::now();
        let body = self.provider.upstream().get_bytes(&meta.jwks_uri).await;
        self.metrics.upstream("jwks", started.elapsed());
        let body = body?;
        let parse_err = |message: String| JwksError::Parse {
            url: meta.jwks_uri.clone(),
            message,
        };
        let value: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| parse_err(e.to_string()))?;
        let raw: RawJwks =
            serde_json::from_value(value.clone()).map_err(|e| parse_err(e.to_string()))?;
        let now = SystemTime::now();
        self.install(&raw.keys, now, KeySource::Provider);
        self.write_disk_cache(&meta, value, now).await;
        Ok(())
    }

    /// Replaces the key set, keeping the `Arc` of every key whose JWK is unchanged.
    fn install(&self, entries: &[serde_json::Value], fetched_at: SystemTime, source: KeySource) {
        let old = self.keys.load_full();
        let mut by_kid = HashMap::new();
        let mut without_kid = Vec::new();
        for entry in entries {
            let key = match VerifyKey::from_jwk_value(entry, self.cfg.rsa_without_alg) {
                Ok(Some(k)) => k,
                Ok(None) => continue,
                Err(message) => {
                    let kid = entry.get("kid").and_then(|k| k.as_str()).unwrap_or("-");
                    tracing::warn!(kid, %message, "JWKS entry skipped");
                    continue;
                }
            };
            let existing = key
                .kid
                .as_deref()
                .and_then(|kid| old.by_kid.get(kid))
                .or_else(|| old.without_kid.iter().find(|k| k.raw == key.raw))
                .filter(|k| k.raw == key.raw)
                .cloned();
            let key = existing.unwrap_or_else(|| Arc::new(key));
            match key.kid.clone() {
                Some(kid) => {
                    by_kid.insert(kid, key);
                }
                None => without_kid.push(key),
            }
        }
        let set = KeySet {
            by_kid,
            without_kid,
            fetched_at: Some(fetched_at),
            generation: old.generation + 1,
            source,
        };
        let kids: Vec<&str> = set.by_kid.keys().map(String::as_str).collect();
        let before: Vec<&str> = old.by_kid.keys().map(String::as_str).collect();
        if kids.len() != before.len() || kids.iter().any(|k| !old.by_kid.contains_key(*k)) {
            tracing::info!(
                keys = set.len(),
                ?kids,
                ?source,
                "verification keys changed"
            );
        }
        self.metrics
            .jwks_keys
            .set(i64::try_from(set.len()).unwrap_or(i64::MAX));
        self.metrics.jwks_last_success.set(
            fetched_at
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        self.keys.store(Arc::new(set));
    }

    async fn write_disk_cache(
        &self,
        meta: &ProviderMetadata,
        jwks: serde_json::Value,
        fetched_at: SystemTime,
    ) {
        let Some(path) = self.cfg.cache_file.clone() else {
            return;
        };
        let cache = DiskCache {
            version: 1,
            issuer: self.provider.issuer().to_string(),
            fetched_at: fetched_at
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
            discovery: meta.clone(),
            jwks,
        };
        let result = tokio::task::spawn_blocking(move || write_atomically(&path, &cache)).await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot write the JWKS disk cache"),
            Err(e) => tracing::warn!(error = %e, "JWKS disk cache writer failed"),
        }
    }

    /// Called for a token whose `kid` is unknown. At most one fetch runs at a time, and
    /// fetches are at least `min_refetch_interval` apart, so bogus kids cannot hammer the
    /// provider. `seen_generation` is the key-set generation the caller looked in.
    pub async fn refetch_unknown_kid(&self, seen_generation: u64) -> Refetch {
        if self.hmac {
            return Refetch::HeldBack;
        }
        let mut last = self.refetch_gate.lock().await;
        if self.keys.load().generation != seen_generation {
            return Refetch::Newer;
        }
        if last.is_some_and(|t| t.elapsed() < self.cfg.min_refetch_interval) {
            self.metrics.unknown_kid_held_back.inc();
            return Refetch::HeldBack;
        }
        *last = Some(Instant::now());
        self.metrics.unknown_kid_refetches.inc();
        match self.refresh().await {
            Ok(()) => Refetch::Fetched,
            Err(e) => {
                tracing::warn!(error = %e, "JWKS refetch for an unknown kid failed");
                Refetch::Failed
            }
        }
    }

    /// Background refresh until `shutdown` resolves: every `refresh_interval`, sooner (with
    /// backoff) after a failure; drops keys older than `max_stale`.
    /// `replaced` fires when a reload retires this key cache, `shutdown` when tokend stops.
    pub async fn run_refresher(
        self: Arc<Self>,
        mut replaced: tokio::sync::watch::Receiver<bool>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
        fetch_first: bool,
    ) {
        let mut backoff = Duration::from_secs(1);
        if !fetch_first {
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.refresh_interval) => {}
                _ = shutdown.changed() => return,
                _ = replaced.changed() => return,
            }
        }
        loop {
            let wait = match self.refresh().await {
                Ok(()) => {
                    backoff = Duration::from_secs(1);
                    self.cfg.refresh_interval
                }
                Err(e) => {
                    tracing::warn!(error = %e, "JWKS refresh failed; keeping the last good keys");
                    self.drop_if_stale();
                    let wait = backoff.min(self.cfg.refresh_interval);
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
                _ = replaced.changed() => return,
            }
        }
    }

    fn drop_if_stale(&self) {
        let keys = self.keys.load();
        if keys.source == KeySource::ClientSecret || keys.is_empty() {
            return;
        }
        if keys.age().is_some_and(|age| age > self.cfg.max_stale) {
            tracing::error!(
                max_stale = ?self.cfg.max_stale,
                "verification keys are older than jwks.max_stale and the provider is unreachable; \
                 dropping them"
            );
            self.keys
                .store(Arc::new(KeySet::empty(keys.generation + 1)));
            self.metrics.jwks_keys.set(0);
        }
    }

    /// Whether tokens can be verified, and if not, why.
    pub fn readiness(&self) -> Readiness {
        let keys = self.keys.load();
        let keys_age_seconds = keys.age().map(|a| a.as_secs());
        let reason = if !keys.is_empty() {
            None
        } else if keys.fetched_at.is_some() {
            Some(
                "the provider's JWKS has no signing keys (Authentik without a signing key serves \
                 `{}` and signs HS256 with the client secret: set provider.algorithms = \
                 [\"HS256\"])"
                    .to_string(),
            )
        } else {
            Some(match lock(&self.last_error).as_deref() {
                Some(e) => format!("no verification keys loaded: {e}"),
                None => {
                    "no verification keys loaded yet: waiting for the first JWKS fetch".to_string()
                }
            })
        };
        Readiness {
            ready: reason.is_none(),
            reason,
            keys: keys.len(),
            keys_age_seconds,
        }
    }
}

/// A key for unit tests elsewhere in the crate.
#[cfg(test)]
pub(crate) fn test_key() -> VerifyKey {
    VerifyKey::hmac(&Secret::new("test"))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Writes `value` as JSON to a temporary file beside `path`, then renames it over `path`.
fn write_atomically(path: &Path, value: &impl Serialize) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer(&mut tmp, value)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    // A real 2048-bit RSA public key (test fixture, not a secret).
    const N: &str = "u1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0_IzW7yWR7QkrmBL7jTKEn5u-qKhbwKfBstIs-bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW_VDL5AaWTg0nLVkjRo9z-40RQzuVaE8AkAFmxZzow3x-VJYKdjykkJ0iT9wCS0DRTXu269V264Vf_3jvredZiKRkgwlL9xNAwxXFg0x_XFw005UWVRIkdgcKWTjpBP2dPwVZ4WWC-9aGVd-Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbcmw";

    fn rsa(kid: &str) -> serde_json::Value {
        json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": N, "e": "AQAB"})
    }

    fn jwks() -> Jwks {
        let cfg: crate::config::ProviderConfig =
            toml::from_str("issuer = \"http://127.0.0.1:1/application/o/x/\"\nclient_id = \"c\"\n")
                .expect("valid");
        Jwks::new(
            Arc::new(Provider::new(&cfg, Metrics::new()).expect("client")),
            JwksConfig::default(),
            None,
            Metrics::new(),
        )
    }

    #[test]
    fn empty_object_is_a_valid_empty_jwks() {
        let raw: RawJwks = serde_json::from_str("{}").expect("valid");
        assert!(raw.keys.is_empty());
        let j = jwks();
        j.install(&raw.keys, SystemTime::now(), KeySource::Provider);
        let r = j.readiness();
        assert!(!r.ready);
        assert!(r.reason.as_deref().unwrap_or("").contains("HS256"), "{r:?}");
    }

    #[test]
    fn unchanged_keys_keep_their_identity_and_withdrawn_keys_vanish() {
        let j = jwks();
        j.install(
            &[rsa("k1"), rsa("k2")],
            SystemTime::now(),
            KeySource::Provider,
        );
        let k1 = j.keys().by_kid("k1").cloned().expect("k1 loaded");
        j.install(&[rsa("k1")], SystemTime::now(), KeySource::Provider);
        let keys = j.keys();
        assert!(keys.contains(&k1), "same JWK keeps the same Arc");
        assert!(keys.by_kid("k2").is_none());
        assert_eq!(keys.generation, 2);
        assert!(j.readiness().ready);
    }

    #[test]
    fn encryption_symmetric_and_unknown_entries_are_skipped() {
        let j = jwks();
        j.install(
            &[
                json!({"kty": "RSA", "kid": "enc", "use": "enc", "alg": "RSA-OAEP-256", "n": N, "e": "AQAB"}),
                json!({"kty": "oct", "kid": "sym", "k": "c2VjcmV0"}),
                json!({"kty": "EC", "kid": "k256", "crv": "secp256k1", "x": "AA", "y": "AA"}),
                json!({"kty": "what", "kid": "odd"}),
                rsa("good"),
            ],
            SystemTime::now(),
            KeySource::Provider,
        );
        let keys = j.keys();
        assert_eq!(keys.len(), 1);
        assert!(keys.by_kid("good").is_some());
    }

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

    #[test]
    fn disk_cache_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jwks.json");
        let meta = ProviderMetadata {
            issuer: "http://127.0.0.1:1/application/o/x/".into(),
            jwks_uri: "http://127.0.0.1:1/application/o/x/jwks/".into(),
            ..Default::default()
        };
        let cache = DiskCache {
            version: 1,
            issuer: meta.issuer.clone(),
            fetched_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("after epoch")
                .as_secs(),
            discovery: meta,
            jwks: json!({"keys": [rsa("k1")]}),
        };
        write_atomically(&path, &cache).expect("written");
        let mut j = jwks();
        j.cfg.cache_file = Some(path);
        assert!(j.load_disk_cache().expect("loads"));
        assert_eq!(j.keys().source, KeySource::DiskCache);
        assert!(j.keys().by_kid("k1").is_some());
        assert!(j.provider().metadata().is_some());
    }
}
