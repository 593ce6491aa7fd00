//! The Cookie and Authorization headers: `extract::cookie_value` and
//! `extract::token_from_headers`. Input: header values, one per line; a line starting with
//! `A` is an Authorization header (the rest of the line), every other line a Cookie header.
//! Property: a value found is not empty, and appears in one of the headers.
#![no_main]

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use tokend::extract::{cookie_value, token_from_headers};

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let (name, value) = match line.split_first() {
            Some((b'A', rest)) => (AUTHORIZATION, rest),
            _ => (COOKIE, line),
        };
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.append(name, v);
        }
    }
    let h = tokend_fuzz::harness();
    let cookies = &h.config.cookies;
    for name in [
        cookies.access_name.as_str(),
        cookies.refresh_name.as_str(),
        "__Host-tokend_login_0123456789abcdef",
    ] {
        if let Some(v) = cookie_value(&headers, name) {
            assert!(!v.expose().is_empty());
            let found = headers.get_all(COOKIE).iter().any(|h| {
                h.as_bytes()
                    .windows(v.expose().len())
                    .any(|w| w == v.expose().as_bytes())
            });
            assert!(found, "cookie value not in any Cookie header");
        }
        let _ = token_from_headers(&headers, name);
    }
});
