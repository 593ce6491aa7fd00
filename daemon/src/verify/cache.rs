//! The verified-token cache: SHA-256(token) → the verification, bounded, expiring with the
//! token or the TTL, and good only while the verifying key is published and the session lives.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use sha2::{Digest, Sha256};

use super::Verified;
use crate::jwks::{KeySet, VerifyKey};

/// What is remembered for a verified token.
pub(super) struct CacheEntry {
    pub(super) verified: Arc<Verified>,
    /// Unix seconds after which the entry is not used (min of exp and insert + TTL).
    pub(super) valid_until: i64,
    /// The key that verified it; a hit counts only while that key is still published.
    pub(super) key: Arc<VerifyKey>,
}

/// Bounded map from SHA-256(token) to its verification result.
pub struct TokenCache {
    pub(super) map: DashMap<[u8; 32], CacheEntry>,
    max_entries: usize,
    pub(super) ttl: i64,
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

    pub(super) fn key(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    pub(super) fn get(&self, hash: &[u8; 32], now: i64, keys: &KeySet) -> Option<Arc<Verified>> {
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

    pub(super) fn insert(&self, hash: [u8; 32], entry: CacheEntry, now: i64) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::Map;

    use crate::verify::claims::tests::mapper;

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
