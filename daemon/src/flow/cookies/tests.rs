//! Issue #8: the Set-Cookie values the flow writes, attribute by attribute (no unit test read
//! them before: cargo-mutants' mutants of `cookies.rs` survived the unit tests).

use std::time::Duration;

use cookie::{Cookie, SameSite};
use sha2::{Digest, Sha256};
use tokend_shared::Secret;

use crate::flow::Flow;

/// A flow with `cookies` as its `[cookies]` section.
fn flow(cookies: &str) -> Flow {
    crate::flow::test_flow::flow(&format!("[cookies]\n{cookies}"))
}

const SHARED: &str = "domain = \"example.com\"\nsame_site = \"strict\"\n\
                      access_name = \"at\"\nrefresh_name = \"rt\"\naccess_path = \"/app\"\n\
                      refresh_path = \"/auth/refresh\"\naccess_max_age = \"5m\"\n\
                      refresh_max_age = \"2h\"\n";

fn parse(set_cookie: &str) -> Cookie<'static> {
    Cookie::parse(set_cookie.to_string()).expect("a Set-Cookie value")
}

fn max_age(c: &Cookie<'_>) -> Option<i64> {
    c.max_age().map(|d| d.whole_seconds())
}

/// Access and refresh cookies carry the tokens with every configured attribute: name, path,
/// max age, Domain, SameSite=Strict when asked, Secure, HttpOnly.
#[test]
fn issue_8_token_cookies_carry_the_configured_attributes() {
    let f = flow(SHARED);
    let set = f.set_cookies(
        &Secret::new("access-value"),
        Some(&Secret::new("refresh-value")),
    );
    assert_eq!(set.len(), 2, "{set:?}");
    let (access, refresh) = (parse(&set[0]), parse(&set[1]));
    for (c, name, value, path, age) in [
        (&access, "at", "access-value", "/app", 300),
        (&refresh, "rt", "refresh-value", "/auth/refresh", 7200),
    ] {
        assert_eq!((c.name(), c.value()), (name, value));
        assert_eq!(c.path(), Some(path));
        assert_eq!(max_age(c), Some(age));
        assert_eq!(c.domain(), Some("example.com"));
        assert_eq!(c.same_site(), Some(SameSite::Strict));
        assert_eq!((c.secure(), c.http_only()), (Some(true), Some(true)));
    }
    let only_access = f.set_cookies(&Secret::new("a"), None);
    assert_eq!(only_access.len(), 1);
    assert_eq!(parse(&only_access[0]).name(), "at");

    // Defaults: SameSite=Lax, host-only, and Secure can be turned off.
    let plain = flow("secure = false\n");
    let c = parse(&plain.set_cookies(&Secret::new("a"), None)[0]);
    assert_eq!(c.same_site(), Some(SameSite::Lax));
    assert_eq!(c.domain(), None);
    assert_eq!(c.secure(), None);
}

/// Clearing deletes both token cookies where they were set: same names, paths and Domain,
/// empty values, expired.
#[test]
fn issue_8_clearing_deletes_both_token_cookies_where_they_were_set() {
    let cleared = flow(SHARED).clear_cookies();
    assert_eq!(cleared.len(), 2, "{cleared:?}");
    for (set_cookie, name, path) in cleared
        .iter()
        .zip([("at", "/app"), ("rt", "/auth/refresh")])
        .map(|(s, (n, p))| (s, n, p))
    {
        let c = parse(set_cookie);
        assert_eq!((c.name(), c.value()), (name, ""));
        assert_eq!(c.path(), Some(path));
        assert_eq!(c.domain(), Some("example.com"));
        assert_eq!(max_age(&c), Some(0));
        assert!(
            c.expires_datetime()
                .is_some_and(|t| t < cookie::time::OffsetDateTime::now_utc()),
            "{set_cookie}"
        );
    }
}

/// The browser-binding cookie: named after the state's SHA-256 (with `__Host-` when
/// Secure), host-only, Path=/, SameSite=Lax even when the token cookies are Strict (it must
/// come back on the provider's redirect), living as long as the login state.
#[test]
fn issue_8_login_binding_cookie_is_host_only_lax_and_named_after_the_state() {
    let f = flow(SHARED);
    let id: String = Sha256::digest(b"some-state")[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let name = f.login_cookie_name("some-state");
    assert_eq!(name, format!("__Host-tokend_login_{id}"));
    assert_ne!(name, f.login_cookie_name("another-state"));
    assert_eq!(
        flow("secure = false\n").login_cookie_name("some-state"),
        format!("tokend_login_{id}")
    );

    let c = parse(&f.login_cookie(&name, "binding", Duration::from_secs(600)));
    assert_eq!((c.name(), c.value()), (name.as_str(), "binding"));
    assert_eq!(c.path(), Some("/"));
    assert_eq!(c.domain(), None, "host-only");
    assert_eq!(c.same_site(), Some(SameSite::Lax));
    assert_eq!(max_age(&c), Some(600));
    assert_eq!((c.secure(), c.http_only()), (Some(true), Some(true)));

    let c = parse(&f.clear_login_cookie(&name));
    assert_eq!((c.name(), c.value()), (name.as_str(), ""));
    assert_eq!((c.path(), c.domain()), (Some("/"), None));
    assert_eq!(max_age(&c), Some(0));
}
