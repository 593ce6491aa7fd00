//! The open-redirect check: the `redirect` of `/auth/login` must stay on the frontend's
//! origin, however it is encoded.

use reqwest::Url;

/// How many rounds of percent-decoding the check follows; a target still changing after them
/// is refused.
pub const MAX_DECODE_ROUNDS: usize = 4;

/// A same-site relative redirect target, or `None`. Refuses anything a browser could take to
/// another origin: `//host`, `/\host`, schemes, control characters, and their percent-encoded
/// and mixed variants. Every decoding round is checked until decoding changes nothing; a target
/// still encoded after [`MAX_DECODE_ROUNDS`] rounds is refused.
pub fn safe_redirect(candidate: &str) -> Option<String> {
    if candidate.is_empty() || candidate.len() > 2048 {
        return None;
    }
    let mut form = candidate.to_string();
    let mut stable = false;
    for _ in 0..=MAX_DECODE_ROUNDS {
        if !plain_path_is_safe(&form) {
            return None;
        }
        let decoded = percent_decode(&form)?;
        if decoded == form {
            stable = true;
            break;
        }
        form = decoded;
    }
    if !stable {
        return None;
    }
    // Finally let a WHATWG URL parser (what browsers use) resolve it: the origin must stay.
    let base = Url::parse("https://frontend.invalid/").ok()?;
    let joined = base.join(candidate).ok()?;
    (joined.origin() == base.origin()).then(|| candidate.to_string())
}

fn plain_path_is_safe(p: &str) -> bool {
    let path = p.split(['?', '#']).next().unwrap_or("");
    p.starts_with('/')
        && !p.contains('\\')
        && !p.chars().any(|c| c.is_control())
        && !path.contains("//")
        && !path.split('/').any(|seg| seg == "." || seg == "..")
}

/// Percent-decodes; `None` when the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod mutation_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_redirect_attempts_are_refused() {
        let attacks = [
            "//evil.com",
            "///evil.com",
            "////evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "\\/evil.com",
            "https://evil.com",
            "http:evil.com",
            "javascript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "evil.com",
            "%2F%2Fevil.com",
            "/%2Fevil.com",
            "/%2f%2fevil.com",
            "/%5Cevil.com",
            "/%5cevil.com",
            "%252F%252Fevil.com",
            "/%252F%252Fevil.com",
            "/%25252F%25252Fevil.com",
            // Issue #7: deeper than the decoding bound is refused, not passed on.
            "/%2525252525252F%2525252525252Fevil.com",
            "/a%252525252525252e",
            "/\t/evil.com",
            "/%09/evil.com",
            "/\r\n/evil.com",
            "/%0d%0a/evil.com",
            "/./evil.com/../..//evil.com",
            "/../evil.com",
            "/%2e%2e/evil.com",
            " //evil.com",
            "/%00/evil.com",
            "",
        ];
        for a in attacks {
            assert_eq!(safe_redirect(a), None, "{a:?} accepted");
        }
    }

    #[test]
    fn ordinary_paths_are_kept() {
        for ok in [
            "/",
            "/dashboard",
            "/orders/42?tab=items#top",
            "/search?q=a%20b",
            "/a/b/c/",
            "/callback?next=https://x",
            "/search?q=100%25",
        ] {
            assert_eq!(safe_redirect(ok).as_deref(), Some(ok), "{ok:?} refused");
        }
    }

    /// Pieces open redirects are made of, percent-encoded ones included.
    fn piece() -> impl proptest::strategy::Strategy<Value = &'static str> {
        proptest::sample::select(vec![
            "/", "/", "a", "evil.com", "\\", "%2F", "%2f", "%5C", "%25", "%2e", ".", "..", "?",
            "#", "@", ":", "%09", "\t", "%00", "%3F", "%23", "%", "2", "F", "https:", "\u{3002}",
            " ", "%20", "=",
        ])
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 4096, ..Default::default() })]

        /// Issue #9: whatever the check accepts is returned unchanged and, joined to a
        /// frontend origin — as given and after each round of percent-decoding — stays on it.
        #[test]
        fn issue_9_accepted_redirects_stay_on_the_frontend_origin(
            pieces in proptest::collection::vec(piece(), 1..12),
        ) {
            let candidate: String = pieces.concat();
            if let Some(accepted) = safe_redirect(&candidate) {
                proptest::prop_assert_eq!(&accepted, &candidate);
                for base in ["https://frontend.invalid/", "https://app.example.com:8443/a/b?x#y"] {
                    let base = Url::parse(base).expect("base");
                    let mut form = accepted.clone();
                    for _ in 0..8 {
                        if let Ok(joined) = base.join(&form) {
                            proptest::prop_assert_eq!(
                                joined.origin(), base.origin(), "{:?} as {:?}", candidate, form
                            );
                        }
                        match percent_decode(&form) {
                            Some(next) if next != form => form = next,
                            _ => break,
                        }
                    }
                }
            }
        }
    }
}
