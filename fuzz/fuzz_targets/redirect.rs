//! The open-redirect check of `/auth/login?redirect=` (`flow::safe_redirect`), reached both
//! directly and through the query-string parsing of the handler. Property: whatever it accepts
//! is returned unchanged and, joined to the frontend origin — as given, and after every round
//! of percent-decoding — stays on that origin.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokend::flow::safe_redirect;
use url::Url;

const BASES: [&str; 3] = [
    "https://frontend.invalid/",
    "https://app.example.com:8443/some/deep/page?x=1#frag",
    "http://127.0.0.1:3000",
];

fn decode_once(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn check(candidate: &str) {
    let Some(accepted) = safe_redirect(candidate) else {
        return;
    };
    assert_eq!(accepted, candidate, "the check rewrote the target");
    assert!(
        accepted.starts_with('/'),
        "accepted a target not starting with /"
    );
    for base in BASES {
        let base = Url::parse(base).unwrap_or_else(|e| panic!("{e}"));
        let mut form = accepted.clone();
        for _ in 0..8 {
            if let Ok(joined) = base.join(&form) {
                assert_eq!(
                    joined.origin(),
                    base.origin(),
                    "{candidate:?} (as {form:?}) leaves {base}"
                );
            }
            let next = decode_once(&form);
            if next == form {
                break;
            }
            form = next;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    check(s);
    // As the login handler reads it from the query string.
    if let Some(r) = tokend::fuzzing::login_redirect(s) {
        check(&r);
    }
});
