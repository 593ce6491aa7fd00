//! Issue #8: tests that kill cargo-mutants' mutants of `flow/mod.rs` the end-to-end tests let
//! live.

use super::test_flow::flow;

/// How long a session can live is `cookies.refresh_max_age` in seconds: it bounds how
/// expired an access cookie may be and still name its session at logout, and how long a
/// session is kept.
#[test]
fn issue_8_the_refresh_lifetime_is_the_refresh_cookies_max_age() {
    for (max_age, seconds) in [("2h", 7200), ("30d", 30 * 86_400), ("90s", 90)] {
        let f = flow(&format!("[cookies]\nrefresh_max_age = \"{max_age}\"\n"));
        assert_eq!(f.refresh_lifetime(), seconds, "{max_age}");
    }
}
