//! [`IdentityHeaders`]: forward auth's identity headers of one verified token, made once per
//! token and header configuration and kept beside its cached answer (issue #14), so that a
//! `/v1/auth` cache hit neither parses the claims back nor encodes them again.
//! [`Verifier::verify_identity`] hands them out; `forward` makes them (the sanitising and the
//! budget are there), this module only keeps them. A verify-only user pays 8 bytes per cached
//! token (the empty slot in [`Verified`]).

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;

use super::{Verified, Verifier, VerifyError};
use crate::config::HeaderSet;

/// The identity headers of one token under one `[forward_auth]` configuration.
#[derive(Debug)]
pub struct IdentityHeaders {
    /// The header set they were made for: a reload that changes `[forward_auth]` keeps the
    /// verified-token cache, so headers made under another configuration are made again.
    set: HeaderSet,
    /// The budget they were made for (`forward_auth.max_header_bytes`), likewise.
    budget: usize,
    /// Whether the budget cut the group list or left a value out (counted per answer).
    pub truncated: bool,
    /// The values one after the other: an answer takes slices of it (a reference count, no
    /// copy).
    values: Bytes,
    /// Each header's name and where its value ends in `values` (it starts where the previous
    /// one ends).
    names: Box<[(&'static HeaderName, u32)]>,
}

impl IdentityHeaders {
    /// Keeps `headers` (already sanitised and within `budget`) as made for `set` and `budget`.
    pub fn new(
        set: HeaderSet,
        budget: usize,
        truncated: bool,
        headers: &[(&'static HeaderName, HeaderValue)],
    ) -> Self {
        let mut values = Vec::with_capacity(headers.iter().map(|(_, v)| v.len()).sum());
        let mut names = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            values.extend_from_slice(value.as_bytes());
            // At most `budget` bytes in all (64 KiB by the configuration's bound).
            names.push((*name, u32::try_from(values.len()).unwrap_or(u32::MAX)));
        }
        Self {
            set,
            budget,
            truncated,
            values: Bytes::from(values),
            names: names.into_boxed_slice(),
        }
    }

    /// Whether these were made under this configuration.
    pub fn made_for(&self, set: HeaderSet, budget: usize) -> bool {
        self.set == set && self.budget == budget
    }

    /// Adds the headers to `map`.
    pub fn insert_into(&self, map: &mut HeaderMap) {
        let mut start = 0;
        for &(name, end) in &self.names {
            let end = end as usize;
            // Made from valid values, so valid again; `get` and `from_maybe_shared` only fail
            // on a bug, and then the header is left out, never sent broken.
            if let Some(value) = self
                .values
                .get(start..end)
                .map(|_| self.values.slice(start..end))
                .and_then(|v| HeaderValue::from_maybe_shared(v).ok())
            {
                map.insert(name.clone(), value);
            }
            start = end;
        }
    }

    /// Heap bytes kept for them: the `Arc` around them, the names, the values and the shared
    /// header `Bytes` adds once sliced.
    pub fn heap_bytes(&self) -> usize {
        2 * size_of::<usize>()
            + size_of::<Self>()
            + size_of_val(&*self.names)
            + self.values.len()
            + 4 * size_of::<usize>()
    }
}

impl Verifier {
    /// Verifies `token` as [`Verifier::verify`] does (and counts it the same), and returns its
    /// identity headers under `set` and `budget`: those kept beside the cached verification
    /// when they were made under the same configuration, else `make`'s — which are then kept
    /// beside the verification if it is cached and the cache's byte budget has room for them.
    pub async fn verify_identity<E: From<VerifyError>>(
        &self,
        token: &str,
        set: HeaderSet,
        budget: usize,
        make: impl FnOnce(&Verified) -> Result<IdentityHeaders, E>,
    ) -> Result<Arc<IdentityHeaders>, E> {
        let (verified, hash) = self.verify_keyed(token).await?;
        if let Some(kept) = verified.identity.load_full()
            && kept.made_for(set, budget)
        {
            return Ok(kept);
        }
        let made = Arc::new(make(&verified)?);
        if let Some(hash) = hash {
            self.cache.attach(&hash, &verified, made.clone());
        }
        Ok(made)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::verify::tests::{access_claims, hs_token, verifier_with};

    static A: HeaderName = HeaderName::from_static("x-a");
    static B: HeaderName = HeaderName::from_static("x-b");

    fn made(set: HeaderSet, budget: usize, v: &str) -> IdentityHeaders {
        IdentityHeaders::new(
            set,
            budget,
            false,
            &[
                (&A, HeaderValue::from_static("one")),
                (&B, HeaderValue::from_str(v).expect("value")),
            ],
        )
    }

    #[test]
    fn issue_14_kept_headers_come_back_as_made() {
        let id = made(HeaderSet::Authentik, 300, "two%20x");
        let mut map = HeaderMap::new();
        id.insert_into(&mut map);
        assert_eq!(map.len(), 2);
        assert_eq!(map["x-a"], "one");
        assert_eq!(map["x-b"], "two%20x");
        assert!(id.made_for(HeaderSet::Authentik, 300));
        assert!(!id.made_for(HeaderSet::Oauth2Proxy, 300));
        assert!(!id.made_for(HeaderSet::Authentik, 301));
    }

    /// Issue #8: the bytes a kept set of headers is accounted for, term by term — the `Arc`'s
    /// two counters, the struct, one (name, end) pair per header, the values, and the four
    /// words of the shared allocation `Bytes` makes once sliced (64-bit).
    #[test]
    fn issue_8_kept_headers_are_accounted_arc_struct_names_values_and_shared_bytes() {
        let id = made(HeaderSet::Authentik, 300, "four");
        let words = size_of::<usize>();
        assert_eq!(words, 8, "the figures below are for 64-bit");
        let pair = size_of::<(&'static HeaderName, u32)>();
        assert_eq!(pair, 16);
        assert_eq!(
            id.heap_bytes(),
            16 + size_of::<IdentityHeaders>() + 2 * 16 + "one".len() + "four".len() + 32
        );
        let one = IdentityHeaders::new(
            HeaderSet::Authentik,
            300,
            false,
            &[(&A, HeaderValue::from_static("x"))],
        );
        assert_eq!(
            id.heap_bytes() - one.heap_bytes(),
            16 + 6,
            "a pair and 6 more value bytes"
        );
    }

    /// Issue #14: the first forward hit makes the headers, later ones reuse them; another
    /// configuration (a reload of `[forward_auth]` keeps the cache) makes them again and
    /// replaces them; the cache's byte account follows (equal to the sum over its entries).
    #[tokio::test]
    async fn issue_14_headers_are_made_once_per_token_and_configuration() {
        let v = verifier_with("");
        let token = hs_token(json!({}), &access_claims("user-1", "s1"));
        let calls = std::cell::Cell::new(0);
        let get = |set, budget, value: &'static str| {
            let calls = &calls;
            let v = &v;
            let token = &token;
            async move {
                v.verify_identity(token, set, budget, |_| {
                    calls.set(calls.get() + 1);
                    Ok::<_, VerifyError>(made(set, budget, value))
                })
                .await
                .expect("valid")
            }
        };
        let sum = |v: &Verifier| v.cache().entries_bytes();
        let before = {
            v.verify(&token).await.expect("valid");
            v.cache().bytes()
        };
        let first = get(HeaderSet::Oauth2Proxy, 4096, "a").await;
        assert_eq!(calls.get(), 1);
        assert_eq!(v.cache().bytes(), before + first.heap_bytes());
        assert_eq!(v.cache().bytes(), sum(&v));
        let again = get(HeaderSet::Oauth2Proxy, 4096, "b").await;
        assert_eq!(calls.get(), 1, "kept: not made again");
        assert!(Arc::ptr_eq(&first, &again));
        let other = get(HeaderSet::Authentik, 4096, "cc").await;
        assert_eq!(calls.get(), 2, "another header set: made again");
        let mut map = HeaderMap::new();
        other.insert_into(&mut map);
        assert_eq!(map["x-b"], "cc");
        let other_again = get(HeaderSet::Authentik, 4096, "dd").await;
        assert_eq!(calls.get(), 2, "and kept in place of the first");
        assert!(Arc::ptr_eq(&other, &other_again));
        get(HeaderSet::Authentik, 1024, "e").await;
        assert_eq!(calls.get(), 3, "another budget: made again");
        assert_eq!(v.cache().bytes(), sum(&v));
        v.cache().forget(|_| true);
        assert_eq!(v.cache().bytes(), 0, "every byte given back");
    }

    /// Issue #14: with the cache off (or no room in its budget) the headers are made for the
    /// request and not kept.
    #[tokio::test]
    async fn issue_14_without_room_headers_are_made_per_request() {
        let v = verifier_with("[verify]\ncache_max_entries = 0\n");
        let token = hs_token(json!({}), &access_claims("user-1", "s1"));
        let mut calls = 0;
        for _ in 0..2 {
            v.verify_identity(&token, HeaderSet::Oauth2Proxy, 4096, |_| {
                calls += 1;
                Ok::<_, VerifyError>(made(HeaderSet::Oauth2Proxy, 4096, "a"))
            })
            .await
            .expect("valid");
        }
        assert_eq!(calls, 2);
        assert_eq!(v.cache().bytes(), 0);
    }
}
