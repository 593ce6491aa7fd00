//! Issue #8: tests that kill cargo-mutants' mutants of the verified-token cache
//! (`verify/cache.rs`) that the other tests let live: when a hit stops being one (its
//! `valid_until`, its key, its session), the inclusive byte budget, and the once-a-second
//! sweep of a full cache.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::sessions::NewSession;
use crate::verify::Verifier;
use crate::verify::claims::tests::{claims, mapper};
use crate::verify::tests::verifier_with;

/// An entry for `sub` that verified with `key`, linked to `session`.
fn entry_with(
    sub: &str,
    valid_until: i64,
    key: &Arc<VerifyKey>,
    session: Option<Arc<crate::sessions::Session>>,
) -> CacheEntry {
    let c = mapper().map(claims(json!({"sid": "s", "iss": "i"})), sub.into(), 1);
    CacheEntry {
        verified: Arc::new(Verified::new(&c, 0, session)),
        valid_until,
        key: key.clone(),
    }
}

/// An entry whose key no key set publishes (enough where only the accounting matters).
fn entry(sub: &str, valid_until: i64) -> CacheEntry {
    entry_with(sub, valid_until, &Arc::new(crate::jwks::test_key()), None)
}

/// An HS256 verifier and its one key, as published.
fn verifier_and_key() -> (Verifier, Arc<VerifyKey>) {
    let v = verifier_with("");
    let key = v
        .jwks()
        .keys()
        .iter()
        .next()
        .cloned()
        .expect("the client secret is the key");
    (v, key)
}

/// A hit holds strictly before `valid_until`: at it the entry is gone, bytes and all.
#[test]
fn issue_8_a_cached_verification_ends_at_its_valid_until() {
    let (v, key) = verifier_and_key();
    let keys = v.jwks().keys();
    let cache = TokenCache::new(10, usize::MAX, Duration::from_secs(60));
    cache.insert([1; 32], entry_with("a", 100, &key, None), 0);
    let hit = cache
        .get(&[1; 32], 99, &keys)
        .expect("a hit before valid_until");
    assert_eq!(hit.sub(), "a");
    assert_eq!(
        cache.get(&[1; 32], 100, &keys).map(|h| h.sub().to_owned()),
        None
    );
    assert_eq!(
        (cache.len(), cache.bytes()),
        (0, 0),
        "the expired entry is removed"
    );
    assert!(cache.is_empty());
    assert_eq!(
        cache.get(&[2; 32], 0, &keys).map(|_| ()),
        None,
        "never cached"
    );
}

/// A hit needs the key that verified it still published: an entry from a key the set does not
/// hold is a miss, and is removed.
#[test]
fn issue_8_a_cached_verification_needs_its_key_still_published() {
    let (v, _) = verifier_and_key();
    let keys = v.jwks().keys();
    let cache = TokenCache::new(10, usize::MAX, Duration::from_secs(60));
    cache.insert([1; 32], entry("a", 100), 0);
    assert!(!cache.is_empty());
    assert_eq!(cache.get(&[1; 32], 5, &keys).map(|_| ()), None);
    assert_eq!((cache.len(), cache.bytes()), (0, 0));
}

/// A hit needs its session alive, and marks it seen; once the session ended the entry is a
/// miss and is removed.
#[test]
fn issue_8_a_cached_verification_needs_its_session_alive_and_touches_it() {
    let (v, key) = verifier_and_key();
    let keys = v.jwks().keys();
    let c = mapper().map(claims(json!({"sid": "s", "iss": "i"})), "a".into(), 1);
    let session = v.create_session(NewSession {
        claims: &c,
        sid: Some("s".into()),
        id_token: None,
        refresh_token: None,
        refresh_expires: 1000,
        now: 10,
    });
    let cache = TokenCache::new(10, usize::MAX, Duration::from_secs(60));
    cache.insert(
        [1; 32],
        entry_with("a", 100, &key, Some(session.clone())),
        10,
    );
    assert!(cache.get(&[1; 32], 42, &keys).is_some());
    assert_eq!(
        session.last_seen.load(std::sync::atomic::Ordering::Relaxed),
        42
    );
    session
        .ended
        .store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(cache.get(&[1; 32], 43, &keys).map(|_| ()), None);
    assert_eq!((cache.len(), cache.bytes()), (0, 0));
}

/// The byte budget is inclusive: entries that fill it exactly are all kept.
#[test]
fn issue_8_entries_that_fill_the_byte_budget_exactly_are_kept() {
    let cost = entry("u0", 100).bytes();
    let cache = TokenCache::new(usize::MAX, 2 * cost, Duration::from_secs(60));
    cache.insert([0; 32], entry("u0", 100), 0);
    cache.insert([1; 32], entry("u1", 100), 0);
    assert_eq!((cache.len(), cache.bytes()), (2, 2 * cost));
    cache.insert([2; 32], entry("u2", 100), 0);
    assert_eq!(
        (cache.len(), cache.bytes()),
        (2, 2 * cost),
        "one byte over is refused"
    );
}

/// A full cache sweeps at most once a second: an entry that expired after this second's sweep
/// keeps its place until the next second's.
#[test]
fn issue_8_a_full_cache_sweeps_at_most_once_a_second() {
    let cache = TokenCache::new(2, usize::MAX, Duration::from_secs(60));
    cache.insert([1; 32], entry("a", 100), 5);
    cache.insert([2; 32], entry("b", 100), 5);
    cache.insert([3; 32], entry("c", 100), 5); // full: this second's sweep, nothing to free
    assert_eq!(cache.len(), 2);
    cache.remove(&[2; 32]);
    cache.insert([4; 32], entry("expired", 3), 5);
    cache.insert([5; 32], entry("d", 100), 5);
    assert!(
        cache.map.contains_key(&[4; 32]) && !cache.map.contains_key(&[5; 32]),
        "no second sweep within the second"
    );
    cache.insert([5; 32], entry("d", 100), 6);
    assert!(
        !cache.map.contains_key(&[4; 32]) && cache.map.contains_key(&[5; 32]),
        "the next second's sweep frees the expired entry's place"
    );
}

/// The map's cost per entry is the documented estimate: the `(hash, entry)` slot plus its
/// control byte, over a load of 2/3 (so ×1.5, rounded down). Accounting fewer bytes lets the
/// cache outgrow `cache_max_bytes` in memory; more makes it hold fewer tokens than it may.
#[test]
fn issue_8_each_entry_is_accounted_its_slot_and_control_byte_at_a_two_thirds_load() {
    let slot = std::mem::size_of::<([u8; 32], CacheEntry)>();
    assert!(slot >= 32 + 3 * 8, "hash, Arc, i64, Arc: {slot}");
    let expected = ((slot + 1) as f64 * 1.5).floor() as usize;
    assert_eq!(SLOT_BYTES, expected, "slot of {slot} bytes");
    let e = entry("u", 100);
    assert_eq!(e.bytes(), expected + e.verified.heap_bytes());
}

/// `cache_max_entries = 0` or `cache_max_bytes = 0` turns the cache off: nothing is hashed
/// for it nor kept (either bound alone is enough).
#[test]
fn issue_8_a_zero_byte_or_zero_entry_bound_turns_the_cache_off() {
    let ttl = Duration::from_secs(60);
    for (entries, bytes, on) in [(1, 1, true), (0, 1 << 20, false), (100, 0, false)] {
        let cache = TokenCache::new(entries, bytes, ttl);
        assert_eq!(cache.is_enabled(), on, "entries {entries}, bytes {bytes}");
    }
    let off = verifier_with("[verify]\ncache_max_bytes = 0\n");
    assert!(!off.cache().is_enabled());
}

/// Identity headers of `len` value bytes, made for the default header set.
fn identity(len: usize) -> Arc<super::IdentityHeaders> {
    static NAME: axum::http::HeaderName = axum::http::HeaderName::from_static("x-user");
    let value = axum::http::HeaderValue::from_str(&"v".repeat(len)).expect("value");
    Arc::new(super::IdentityHeaders::new(
        crate::config::HeaderSet::default(),
        4096,
        false,
        &[(&NAME, value)],
    ))
}

/// Forward auth's identity headers kept beside an entry are in its byte account: smaller ones
/// in place of larger give the difference back; larger ones that no longer fit the budget are
/// let go, their bytes with them, and the entry stays.
#[test]
fn issue_8_identity_headers_kept_beside_an_entry_are_accounted_and_let_go_when_too_large() {
    let e = entry("u", 100);
    let verified = e.verified.clone();
    let base = e.bytes();
    let (large, small, huge) = (identity(1000), identity(10), identity(3000));
    let cache = TokenCache::new(10, base + large.heap_bytes(), Duration::from_secs(60));
    cache.insert([1; 32], e, 0);

    for (id, what) in [
        (large, "the budget, exactly"),
        (small, "smaller ones: the difference given back"),
    ] {
        cache.attach(&[1; 32], &verified, id.clone());
        assert_eq!(cache.bytes(), base + id.heap_bytes(), "{what}");
        assert_eq!(cache.bytes(), cache.entries_bytes());
    }

    cache.attach(&[1; 32], &verified, huge);
    assert!(
        verified.identity.load().is_none(),
        "too large for the budget: not kept, and the smaller ones let go"
    );
    assert_eq!((cache.len(), cache.bytes()), (1, base));
    assert_eq!(cache.bytes(), cache.entries_bytes());
}
