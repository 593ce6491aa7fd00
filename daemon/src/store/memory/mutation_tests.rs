//! Issue #8: tests that kill cargo-mutants' mutants of the memory engine (`store/memory.rs`)
//! that the conformance suite and the engine's own tests let live: what the admin API's code
//! listing shows, the engine's name, and when a record the sweeper first meets after its
//! "expired" memory has lapsed is forgotten.

use super::*;
use crate::store::{CodeKind, CodePayload, LoginState, code_key, key_of};
use tokend_shared::Secret;

fn code(kind: CodeKind, sub: &str, created: i64, expires: i64) -> CodePayload {
    CodePayload {
        access_token: Secret::new("at"),
        refresh_token: Some(Secret::new("rt")),
        id_token: None,
        sub: sub.into(),
        sid: Some("sid".into()),
        created,
        expires,
        kind,
    }
}

/// The admin API's listing: every live exchange code, packed or (too large to pack) kept
/// whole, with its key, kind, `sub` and times — and no used, expired or login record.
#[test]
fn issue_8_list_codes_shows_every_live_code_and_nothing_else() {
    let s = MemoryStore::new(10, 10);
    let api = code_key(CodeKind::Api, "a");
    let flow = code_key(CodeKind::Flow, "f");
    s.put_now(
        Kind::ExchangeCode,
        api,
        Record::Code(code(CodeKind::Api, "alice", 1, 100)),
    )
    .expect("api");
    s.put_now(
        Kind::ExchangeCode,
        flow,
        Record::Code(code(CodeKind::Flow, "bob", 2, 200)),
    )
    .expect("flow");
    // A payload `PackedCode::pack` refuses (past 4 GiB) is kept as a whole record: the same
    // slot, built directly rather than with 4 GiB of text.
    let whole = key_of("whole");
    s.codes.map.insert(
        whole,
        Slot::Live(Box::new(Record::Code(code(CodeKind::Api, "carol", 3, 300)))),
    );
    // Not listed: a used code, an expired one, a login state.
    let used = key_of("used");
    s.put_now(
        Kind::ExchangeCode,
        used,
        Record::Code(code(CodeKind::Api, "dave", 4, 400)),
    )
    .expect("used");
    assert!(s.take_now(Kind::ExchangeCode, used, 5).is_ok());
    let expired = key_of("expired");
    s.put_now(
        Kind::ExchangeCode,
        expired,
        Record::Code(code(CodeKind::Api, "erin", 0, 6)),
    )
    .expect("expired");
    assert_eq!(s.sweep(6), 1);
    s.put_now(
        Kind::LoginState,
        key_of("login"),
        Record::Login(LoginState {
            nonce: Secret::new("n"),
            pkce_verifier: Secret::new("v"),
            redirect: "/".into(),
            browser: [0; 32],
            created: 7,
            expires: 700,
        }),
    )
    .expect("login");

    let mut listed = s.list_codes();
    listed.sort_by_key(|c| c.created);
    let listing = |key, kind, sub: &str, created, expires| CodeListing {
        key,
        kind,
        sub: sub.into(),
        created,
        expires,
    };
    assert_eq!(
        listed,
        [
            listing(api, CodeKind::Api, "alice", 1, 100),
            listing(flow, CodeKind::Flow, "bob", 2, 200),
            listing(whole, CodeKind::Api, "carol", 3, 300),
        ]
    );
}

/// The engine's name is what the admin overview shows and the store metrics are labelled with.
#[test]
fn issue_8_the_memory_engine_is_named_memory() {
    assert_eq!(MemoryStore::new(1, 1).kind_name(), "memory");
}

/// A code the sweeper first meets once its "expired" memory has lapsed too is counted as
/// expired and forgotten in the same sweep; one second earlier it is still remembered.
#[test]
fn issue_8_a_record_first_swept_after_its_memory_lapsed_is_forgotten_at_once() {
    for (swept_at, answer) in [
        (10 + EXPIRED_MEMORY - 1, TakeError::ExpiredSwept),
        (10 + EXPIRED_MEMORY, TakeError::Unknown),
    ] {
        let s = MemoryStore::new(10, 10);
        let k = key_of("late");
        s.put_now(
            Kind::ExchangeCode,
            k,
            Record::Code(code(CodeKind::Api, "s", 0, 10)),
        )
        .expect("stored");
        assert_eq!(s.sweep(swept_at), 1, "counted as expired once");
        assert_eq!(s.outstanding(Kind::ExchangeCode), 0);
        assert_eq!(
            s.take_now(Kind::ExchangeCode, k, swept_at).err(),
            Some(answer),
            "first swept at {swept_at}"
        );
    }
}
