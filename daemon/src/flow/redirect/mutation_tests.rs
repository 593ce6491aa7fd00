//! Issue #8: tests that kill cargo-mutants' mutants of the open-redirect check
//! (`flow/redirect.rs`) that the attack table let live: the 2048-byte bound.

use super::*;

/// The bound is 2048 bytes, inclusive: a target of exactly 2048 bytes is kept, one byte more
/// (and far more) is refused even though it is an ordinary path.
#[test]
fn issue_8_redirect_targets_are_bounded_at_2048_bytes() {
    let at = format!("/{}", "a".repeat(2047));
    assert_eq!(at.len(), 2048);
    assert_eq!(safe_redirect(&at).as_deref(), Some(at.as_str()));
    for len in [2049, 4096, 10_000] {
        let over = format!("/{}", "a".repeat(len - 1));
        assert_eq!(safe_redirect(&over), None, "{len} bytes accepted");
    }
}
