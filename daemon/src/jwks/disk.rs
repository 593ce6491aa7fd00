//! The disk cache: the last good discovery document and JWKS, written atomically after each
//! fetch and loaded at start, so tokend verifies while the provider is down.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::key::{KeySource, RawJwks};
use super::{Jwks, JwksError};
use crate::provider::{ProviderMetadata, check_issuer};

/// How far in the future a disk cache may be dated (clock skew) before it is refused.
const FUTURE_SKEW: Duration = Duration::from_secs(300);

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

impl Jwks {
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
        // A corrupted file must not panic the start (`UNIX_EPOCH + huge` overflows), nor stay
        // fresh for ever by being dated in the future.
        let fetched_at = UNIX_EPOCH
            .checked_add(Duration::from_secs(cache.fetched_at))
            .ok_or_else(|| err("fetched_at is out of range; ignored".into()))?;
        let now = SystemTime::now();
        if fetched_at > now + FUTURE_SKEW {
            return Err(err(
                "fetched_at lies in the future (clock moved back, or a corrupted file); ignored"
                    .into(),
            ));
        }
        let age = now.duration_since(fetched_at).unwrap_or_default();
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

    pub(super) async fn write_disk_cache(
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

    use crate::jwks::tests::{jwks, rsa};

    /// Now, in the disk cache's unit.
    fn now_secs() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after epoch")
            .as_secs()
    }

    /// A key cache whose disk cache file (in `dir`) says it was fetched at `fetched_at`.
    fn jwks_with_disk_cache(dir: &Path, fetched_at: u64) -> Jwks {
        let path = dir.join("jwks.json");
        let meta = ProviderMetadata {
            issuer: "http://127.0.0.1:1/application/o/x/".into(),
            jwks_uri: "http://127.0.0.1:1/application/o/x/jwks/".into(),
            ..Default::default()
        };
        let cache = DiskCache {
            version: 1,
            issuer: meta.issuer.clone(),
            fetched_at,
            discovery: meta,
            jwks: json!({"keys": [rsa("k1")]}),
        };
        write_atomically(&path, &cache).expect("written");
        let mut j = jwks();
        j.cfg.cache_file = Some(path);
        j
    }

    #[test]
    fn a_corrupted_or_future_fetched_at_is_refused_not_a_panic() {
        // Issue #9 (read in review of the fuzz targets): `UNIX_EPOCH + from_secs(u64::MAX)`
        // panicked, and a cache dated in the future never went stale.
        let dir = tempfile::tempdir().expect("tempdir");
        for fetched_at in [u64::MAX, now_secs() + 3600] {
            let j = jwks_with_disk_cache(dir.path(), fetched_at);
            assert!(j.load_disk_cache().is_err(), "fetched_at {fetched_at}");
            assert!(j.keys().is_empty());
        }
    }

    #[test]
    fn disk_cache_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = jwks_with_disk_cache(dir.path(), now_secs());
        assert!(j.load_disk_cache().expect("loads"));
        assert_eq!(j.keys().source, KeySource::DiskCache);
        assert!(j.keys().by_kid("k1").is_some());
        assert!(j.provider().metadata().is_some());
    }

    /// Issue #8 (mutation testing): a missing file is no cache, an unreadable one an error,
    /// one older than `max_stale` is refused, and what `write_disk_cache` writes loads.
    #[tokio::test]
    async fn issue_8_disk_cache_missing_unreadable_stale_and_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut j = jwks();
        j.cfg.cache_file = Some(dir.path().join("absent.json"));
        assert!(!j.load_disk_cache().expect("a missing file is no cache"));
        j.cfg.cache_file = Some(dir.path().to_path_buf());
        assert!(
            j.load_disk_cache().is_err(),
            "a directory is not readable as a file"
        );

        let stale = now_secs() - j.cfg.max_stale.as_secs() - 60;
        let j = jwks_with_disk_cache(dir.path(), stale);
        assert!(j.load_disk_cache().is_err(), "older than max_stale");
        assert!(j.keys().is_empty());

        let path = dir.path().join("written.json");
        let mut writer = jwks();
        writer.cfg.cache_file = Some(path.clone());
        let meta = ProviderMetadata {
            issuer: "http://127.0.0.1:1/application/o/x/".into(),
            jwks_uri: "http://127.0.0.1:1/application/o/x/jwks/".into(),
            ..Default::default()
        };
        writer
            .write_disk_cache(&meta, json!({"keys": [rsa("k1")]}), SystemTime::now())
            .await;
        let mut reader = jwks();
        reader.cfg.cache_file = Some(path);
        assert!(reader.load_disk_cache().expect("loads what was written"));
        assert!(reader.keys().by_kid("k1").is_some());
    }
}
