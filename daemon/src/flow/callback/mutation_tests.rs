//! Issue #8: tests that kill cargo-mutants' mutants of the callback that the end-to-end tests
//! cannot reach: what the browser is told when no exchange code could be minted.

use super::*;
use crate::store::{Kind, Unavailable};

/// A full code store is `capacity_exceeded` (the end-to-end flood test reaches this one), a
/// store that went away between the session's save and the code's is `store_unavailable`
/// (a race no end-to-end test can time), anything else `internal`.
#[test]
fn issue_8_a_code_that_cannot_be_minted_is_told_by_cause() {
    let cases = [
        (
            CodeError::Store(StoreError::Full(Kind::ExchangeCode, 10)),
            LoginError::CapacityExceeded,
        ),
        (
            CodeError::Store(StoreError::Unavailable(Unavailable("refused".into()))),
            LoginError::StoreUnavailable,
        ),
        (
            CodeError::Store(StoreError::Duplicate),
            LoginError::Internal,
        ),
        (CodeError::Random("no entropy".into()), LoginError::Internal),
    ];
    for (error, told) in cases {
        let shown = error.to_string();
        assert_eq!(issue_error(error), told, "{shown}");
    }
}
