//! The verified-token cache: SHA-256(token) → the verification, bounded by bytes (and by
//! entries), expiring with the token or the TTL, and good only while the verifying key is
//! published and the session lives. It keeps the byte account that `verify.cache_max_bytes`
//! bounds and the metrics report.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use sha2::{Digest, Sha256};

use super::Verified;
use super::identity::IdentityHeaders;
use crate::jwks::{KeySet, VerifyKey};

/// What is remembered for a verified token.
pub(super) struct CacheEntry {
    pub(super) verified: Arc<Verified>,
    /// Unix seconds after which the entry is not used (min of exp and insert + TTL).
    pub(super) valid_until: i64,
    /// The key that verified it; a hit counts only while that key is still published.
    pub(super) key: Arc<VerifyKey>,
}

/// The map's own cost per entry, estimated: the `(hash, entry)` slot and its control byte, over
/// the table's typical load (between 7/16 just after it doubles and 7/8 just before: about 2/3).
pub(super) const SLOT_BYTES: usize = (std::mem::size_of::<([u8; 32], CacheEntry)>() + 1) * 3 / 2;

impl CacheEntry {
    /// Bytes accounted for this entry: its slot and the verification's heap bytes.
    pub(super) fn bytes(&self) -> usize {
        SLOT_BYTES + self.verified.heap_bytes()
    }
}

/// Bounded map from SHA-256(token) to its verification result.
pub struct TokenCache {
    pub(super) map: DashMap<[u8; 32], CacheEntry>,
    max_entries: usize,
    max_bytes: usize,
    /// The sum of [`CacheEntry::bytes`] over the map: reserved before an insert, released by
    /// every removal, so it never passes `max_bytes`.
    bytes: AtomicUsize,
    pub(super) ttl: i64,
    /// When a full cache was last swept (unix seconds): at most one sweep per second, or a
    /// cache full of live entries would make every miss pay for a scan.
    last_full_sweep: AtomicI64,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.map.len())
            .field("bytes", &self.bytes())
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl TokenCache {
    /// A cache of at most `max_entries` entries and `max_bytes` bytes; either 0 disables it.
    pub fn new(max_entries: usize, max_bytes: usize, ttl: Duration) -> Self {
        Self {
            map: DashMap::new(),
            max_entries,
            max_bytes,
            bytes: AtomicUsize::new(0),
            ttl: i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX),
            last_full_sweep: AtomicI64::new(i64::MIN),
        }
    }

    /// Whether anything is ever remembered: a cache of 0 entries or 0 bytes is off, and a
    /// verification then does not hash its token for it (issue #14).
    pub(super) fn is_enabled(&self) -> bool {
        self.max_entries > 0 && self.max_bytes > 0
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
        self.remove(hash);
        None
    }

    /// Reserves `cost` bytes if they and one more entry fit.
    fn reserve(&self, cost: usize) -> bool {
        if self.map.len() >= self.max_entries {
            return false;
        }
        self.bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                b.checked_add(cost).filter(|n| *n <= self.max_bytes)
            })
            .is_ok()
    }

    pub(super) fn insert(&self, hash: [u8; 32], entry: CacheEntry, now: i64) {
        if !self.is_enabled() {
            return;
        }
        let cost = entry.bytes();
        if !self.reserve(cost) {
            let last = self.last_full_sweep.load(Ordering::Relaxed);
            if now > last
                && self
                    .last_full_sweep
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                self.sweep(now);
            }
            if !self.reserve(cost) {
                return; // full of live entries: verify without remembering
            }
        }
        if let Some(old) = self.map.insert(hash, entry) {
            self.release(&old);
        }
    }

    /// Keeps forward auth's identity headers beside `verified` if it is still the entry of
    /// `hash` and the byte budget has room for them (else they are made per request). Under the
    /// entry's lock, so the account always equals the sum of the entries' bytes: a removal
    /// reads an entry's bytes under the same lock or after it has left the map.
    pub(super) fn attach(
        &self,
        hash: &[u8; 32],
        verified: &Arc<Verified>,
        id: Arc<IdentityHeaders>,
    ) {
        let Some(entry) = self.map.get_mut(hash) else {
            return;
        };
        if !Arc::ptr_eq(&entry.verified, verified) {
            return;
        }
        let old = verified
            .identity
            .load()
            .as_ref()
            .map_or(0, |i| i.heap_bytes());
        let new = id.heap_bytes();
        // Never `reserve` here: it counts the map's entries, which locks every shard.
        let fits = new <= old
            || self
                .bytes
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                    b.checked_add(new - old).filter(|n| *n <= self.max_bytes)
                })
                .is_ok();
        if fits {
            if new < old {
                self.bytes.fetch_sub(old - new, Ordering::AcqRel);
            }
            verified.identity.store(Some(id));
        } else if old > 0 {
            // Made for another configuration, and no room for the new ones: let them go.
            verified.identity.store(None);
            self.bytes.fetch_sub(old, Ordering::AcqRel);
        }
        drop(entry);
    }

    fn release(&self, entry: &CacheEntry) {
        self.bytes.fetch_sub(entry.bytes(), Ordering::AcqRel);
    }

    pub(super) fn remove(&self, hash: &[u8; 32]) {
        if let Some((_, old)) = self.map.remove(hash) {
            self.release(&old);
        }
    }

    /// Keeps the entries `keep` selects, releasing the others' bytes.
    fn retain(&self, keep: impl Fn(&CacheEntry) -> bool) {
        self.map.retain(|_, e| {
            let kept = keep(e);
            if !kept {
                self.release(e);
            }
            kept
        });
    }

    /// Forgets every verification that `pred` selects.
    pub fn forget(&self, pred: impl Fn(&Verified) -> bool) {
        self.retain(|e| !pred(&e.verified));
    }

    /// Removes expired entries.
    pub fn sweep(&self, now: i64) {
        self.retain(|e| e.valid_until > now);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes accounted for the entries (never more than `verify.cache_max_bytes`).
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    /// The entries' own byte counts summed: what [`TokenCache::bytes`] must always equal.
    #[cfg(test)]
    pub(super) fn entries_bytes(&self) -> usize {
        self.map.iter().map(|e| e.bytes()).sum()
    }
}

#[cfg(test)]
mod mutation_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::verify::claims::tests::{claims, mapper};

    fn entry(sub: &str, valid_until: i64) -> CacheEntry {
        let c = mapper().map(claims(json!({"sid": "s", "iss": "i"})), sub.into(), 1);
        CacheEntry {
            verified: Arc::new(Verified::new(&c, 0, None)),
            valid_until,
            key: Arc::new(crate::jwks::test_key()),
        }
    }

    #[test]
    fn token_cache_is_bounded_and_expires() {
        let cache = TokenCache::new(2, usize::MAX, Duration::from_secs(60));
        cache.insert([1; 32], entry("a", 100), 0);
        cache.insert([2; 32], entry("b", 5), 0);
        cache.insert([3; 32], entry("c", 100), 0);
        assert_eq!(cache.len(), 2, "full of live entries: third not stored");
        cache.insert([3; 32], entry("c", 100), 10);
        assert_eq!(cache.len(), 2, "expired entry swept to make room");
        assert!(cache.map.contains_key(&[3; 32]));
        assert!(!cache.map.contains_key(&[2; 32]));
    }

    /// Issue #14: the byte budget bounds the cache (entries of the same size here: room for
    /// three), expired entries are swept to make room, and every removal path gives its bytes
    /// back, so the account always equals the sum of the entries' bytes.
    #[test]
    fn issue_14_cache_is_bounded_by_bytes_and_the_account_stays_exact() {
        let cost = entry("u00", 0).bytes();
        assert!(cost > SLOT_BYTES + 100, "body and slot are counted: {cost}");
        let cache = TokenCache::new(usize::MAX, 3 * cost + cost / 2, Duration::from_secs(60));
        let sum = TokenCache::entries_bytes;
        for i in 0..3u8 {
            cache.insert([i; 32], entry(&format!("u0{i}"), 100 + i64::from(i)), 0);
        }
        assert_eq!((cache.len(), cache.bytes()), (3, 3 * cost));
        cache.insert([9; 32], entry("u09", 100), 0);
        assert_eq!(cache.len(), 3, "no room for a fourth");
        assert!(cache.bytes() <= 3 * cost + cost / 2);
        // Replacing an entry (the same token verified twice at once) does not count it twice.
        cache.insert([1; 32], entry("u01", 101), 0);
        assert_eq!((cache.len(), cache.bytes()), (3, sum(&cache)));
        // At 101 the first two have expired: the sweep makes room.
        cache.insert([9; 32], entry("u09", 200), 101);
        assert_eq!((cache.len(), cache.bytes()), (2, sum(&cache)));
        cache.remove(&[2; 32]);
        assert_eq!((cache.len(), cache.bytes()), (1, sum(&cache)));
        cache.forget(|_| true);
        assert_eq!((cache.len(), cache.bytes()), (0, 0));
    }

    /// Issue #14: through the verifier, distinct tokens fill the cache up to its byte budget
    /// and no further; what is cached is still answered from the cache.
    #[tokio::test]
    async fn issue_14_distinct_tokens_stay_within_cache_max_bytes() {
        use crate::verify::tests::{access_claims, hs_token, verifier_with};
        let v = verifier_with("[verify]\ncache_max_bytes = \"16KiB\"\n");
        let tokens: Vec<String> = (0..100)
            .map(|i| {
                hs_token(
                    json!({}),
                    &access_claims(&format!("user-{i}"), &format!("s{i}")),
                )
            })
            .collect();
        for t in &tokens {
            v.verify(t).await.expect("valid");
            assert!(v.cache().bytes() <= 16 * 1024, "{}", v.cache().bytes());
        }
        let cached = v.cache().len();
        assert!(
            cached > 5 && cached < 100,
            "bounded by bytes: {cached} cached"
        );
        let sum = v.cache().entries_bytes();
        assert_eq!(v.cache().bytes(), sum);
        let hits = v.metrics().cache_hits.get();
        v.verify(&tokens[0]).await.expect("valid");
        assert_eq!(
            v.metrics().cache_hits.get(),
            hits + 1,
            "the first token is a hit"
        );
    }

    /// Issue #14: with the cache off (`cache_max_entries = 0`) every verification is a miss
    /// that checks the token in full and leaves nothing behind, and answers as the cache would.
    #[tokio::test]
    async fn issue_14_cache_off_verifies_every_time_and_remembers_nothing() {
        use crate::verify::tests::{access_claims, hs_token, verifier, verifier_with};
        let off = verifier_with("[verify]\ncache_max_entries = 0\n");
        assert!(!off.cache().is_enabled());
        let token = hs_token(json!({}), &access_claims("alice", "s1"));
        let first = off.verify(&token).await.expect("valid");
        let second = off.verify(&token).await.expect("valid");
        assert_eq!(first.body, second.body);
        assert_eq!(off.metrics().cache_hits.get(), 0);
        assert_eq!(off.metrics().cache_misses.get(), 2);
        assert_eq!((off.cache().len(), off.cache().bytes()), (0, 0));
        let on = verifier();
        assert!(on.cache().is_enabled());
        assert_eq!(on.verify(&token).await.expect("valid").body, first.body);
        on.verify(&token).await.expect("valid");
        assert_eq!(on.metrics().cache_hits.get(), 1);
    }
}
