//! The key cache: [`Jwks`] holds the provider's JWKS in memory (lock-free reads), refreshes it
//! in the background, refetches once (single flight, rate-limited) for unknown `kid`s, keeps it
//! through outages up to `max_stale`, and answers readiness. In HS256 mode the only key is the
//! client secret. The keys themselves are in `key`, the disk cache in `disk`.

mod disk;
mod key;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokend_shared::{Readiness, Secret};

use crate::config::JwksConfig;
use crate::metrics::Metrics;
use crate::provider::{Provider, ProviderError};
use key::RawJwks;

#[cfg(test)]
pub(crate) use key::test_key;
pub use key::{KeyKind, KeySet, KeySource, Signature, VerifyKey};

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("JWKS from {url} is not a JSON object with a `keys` array: {message}")]
    Parse { url: String, message: String },
    #[error("disk cache {path}: {message}")]
    DiskCache { path: PathBuf, message: String },
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
                    skipped: None,
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

    /// The error of the last fetch, if it failed (`None` after a success or before any).
    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_error).clone()
    }

    pub fn provider(&self) -> &Arc<Provider> {
        &self.provider
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
        let now = SystemTime::now();
        let value = self.install_body(&meta.jwks_uri, &body, now)?;
        self.write_disk_cache(&meta, value, now).await;
        Ok(())
    }

    /// Parses a JWKS document served from `url` and installs its keys; returns the document
    /// (for the disk cache). The fuzz targets reach it through `crate::fuzzing`.
    pub(crate) fn install_body(
        &self,
        url: &str,
        body: &[u8],
        fetched_at: SystemTime,
    ) -> Result<serde_json::Value, JwksError> {
        let parse_err = |e: serde_json::Error| JwksError::Parse {
            url: url.to_string(),
            message: e.to_string(),
        };
        let value: serde_json::Value = serde_json::from_slice(body).map_err(parse_err)?;
        let raw: RawJwks = serde_json::from_value(value.clone()).map_err(parse_err)?;
        self.install(&raw.keys, fetched_at, KeySource::Provider);
        Ok(value)
    }

    /// Replaces the key set, keeping the `Arc` of every key whose JWK is unchanged.
    fn install(&self, entries: &[serde_json::Value], fetched_at: SystemTime, source: KeySource) {
        let old = self.keys.load_full();
        let mut by_kid = HashMap::new();
        let mut without_kid = Vec::new();
        let mut skipped: Option<(usize, String)> = None;
        for entry in entries {
            let key = match VerifyKey::from_jwk_value(entry, self.cfg.rsa_without_alg) {
                Ok(Some(k)) => k,
                Ok(None) => continue,
                Err(message) => {
                    let kid = entry.get("kid").and_then(|k| k.as_str()).unwrap_or("-");
                    tracing::warn!(kid, %message, "JWKS entry skipped");
                    match &mut skipped {
                        Some((n, _)) => *n += 1,
                        None => skipped = Some((1, format!("kid {kid:?}: {message}"))),
                    }
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
            skipped,
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
                    if self.keys.load().is_empty() {
                        tracing::warn!(error = %e, "JWKS refresh failed; no verification keys loaded");
                    } else {
                        tracing::warn!(error = %e, "JWKS refresh failed; keeping the last good keys");
                    }
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

    /// Why no keys were ever loaded: the last fetch's error (an unreachable provider, an
    /// issuer mismatch, …), or that the first fetch has not finished.
    pub fn why_no_keys(&self) -> String {
        lock(&self.last_error)
            .clone()
            .unwrap_or_else(|| "waiting for the first JWKS fetch (and no disk cache)".to_string())
    }

    /// Whether tokens can be verified, and if not, why.
    pub fn readiness(&self) -> Readiness {
        let keys = self.keys.load();
        let keys_age_seconds = keys.age().map(|a| a.as_secs());
        let reason = if !keys.is_empty() {
            None
        } else if let Some((n, first)) = &keys.skipped {
            Some(format!(
                "the provider's JWKS has {n} signing key(s), none usable by tokend (first: {first})"
            ))
        } else if keys.fetched_at.is_some() {
            Some(
                "the provider's JWKS has no signing keys (Authentik without a signing key serves \
                 `{}` and signs HS256 with the client secret: set provider.algorithms = \
                 [\"HS256\"])"
                    .to_string(),
            )
        } else {
            Some(format!(
                "no verification keys loaded: {}",
                self.why_no_keys()
            ))
        };
        Readiness {
            ready: reason.is_none(),
            reason,
            keys: keys.len(),
            keys_age_seconds,
            warning: self.provider.client_warning(),
            store: None,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

    // A real 2048-bit RSA public key (test fixture, not a secret).
    pub(in crate::jwks) const N: &str = "u1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0_IzW7yWR7QkrmBL7jTKEn5u-qKhbwKfBstIs-bMY2Zkp18gnTxKLxoS2tFczGkPLPgizskuemMghRniWaoLcyehkd3qqGElvW_VDL5AaWTg0nLVkjRo9z-40RQzuVaE8AkAFmxZzow3x-VJYKdjykkJ0iT9wCS0DRTXu269V264Vf_3jvredZiKRkgwlL9xNAwxXFg0x_XFw005UWVRIkdgcKWTjpBP2dPwVZ4WWC-9aGVd-Gyn1o0CLelf4rEjGoXbAAEgAqeGUxrcIlbjXfbcmw";

    pub(in crate::jwks) fn rsa(kid: &str) -> serde_json::Value {
        json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": N, "e": "AQAB"})
    }

    pub(in crate::jwks) fn jwks() -> Jwks {
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
    fn certificate_members_do_not_cost_the_key_and_unusable_sets_say_so() {
        // Issue #8: a malformed `x5c` dropped the key, and readiness then blamed HS256 mode.
        let j = jwks();
        let mut with_cert = rsa("k1");
        with_cert["x5c"] = json!("not-an-array");
        with_cert["x5t"] = json!(42);
        j.install(&[with_cert], SystemTime::now(), KeySource::Provider);
        assert!(j.keys().by_kid("k1").is_some());
        let mut bad = rsa("k2");
        bad["n"] = json!("!!!");
        j.install(&[bad], SystemTime::now(), KeySource::Provider);
        let r = j.readiness();
        assert!(!r.ready);
        let reason = r.reason.unwrap_or_default();
        assert!(
            reason.contains("none usable") && reason.contains("k2"),
            "{reason}"
        );
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

    /// Issue #8: mutants of the staleness check survived the suite.
    #[test]
    fn issue_8_max_stale_drops_provider_keys_only_when_older() {
        let j = jwks();
        let max_stale = j.cfg.max_stale;
        let margin = Duration::from_secs(60);
        j.install(
            &[rsa("k1")],
            SystemTime::now() - (max_stale - margin),
            KeySource::Provider,
        );
        j.drop_if_stale();
        assert!(
            j.keys().by_kid("k1").is_some(),
            "younger than max_stale: kept"
        );
        j.install(
            &[rsa("k1")],
            SystemTime::now() - (max_stale + margin),
            KeySource::Provider,
        );
        let generation = j.keys().generation;
        j.drop_if_stale();
        let keys = j.keys();
        assert!(keys.is_empty(), "older than max_stale: dropped");
        assert_eq!(keys.generation, generation + 1);
        assert!(!j.readiness().ready);
    }

    fn hs_jwks(max_stale: Duration) -> Jwks {
        let cfg: crate::config::ProviderConfig =
            toml::from_str("issuer = \"http://127.0.0.1:1/application/o/x/\"\nclient_id = \"c\"\n")
                .expect("valid");
        let provider = Arc::new(Provider::new(&cfg, Metrics::new()).expect("client"));
        // Discovery done; the JWKS URI refuses connections.
        provider.set_live_metadata(crate::provider::ProviderMetadata {
            issuer: "http://127.0.0.1:1/application/o/x/".into(),
            jwks_uri: "http://127.0.0.1:1/application/o/x/jwks/".into(),
            ..Default::default()
        });
        let cfg = JwksConfig {
            max_stale,
            ..JwksConfig::default()
        };
        Jwks::new(provider, cfg, Some(&Secret::new("s")), Metrics::new())
    }

    /// Issue #8: in HS256 mode the client secret is the only key: a forced refresh, an
    /// unknown kid and `max_stale` leave it alone (the JWKS is never fetched).
    #[tokio::test]
    async fn issue_8_hs_mode_never_fetches_nor_drops_the_client_secret() {
        let j = hs_jwks(Duration::ZERO);
        let generation = j.keys().generation;
        assert!(j.refresh().await.is_ok(), "{:?}", j.last_error());
        assert_eq!(j.refetch_unknown_kid(generation).await, Refetch::HeldBack);
        tokio::time::sleep(Duration::from_millis(5)).await;
        j.drop_if_stale();
        let keys = j.keys();
        assert_eq!(keys.source, KeySource::ClientSecret);
        assert_eq!((keys.len(), keys.generation), (1, generation));
        assert!(j.readiness().ready);
    }
}

#[cfg(test)]
mod mutation_tests;
