//! Issue #8: tests that kill cargo-mutants' mutants of `verify/mod.rs` that the other unit
//! tests let live: which cached verifications an ended session, a revocation from another
//! instance and a replaced login forget — and which they keep —, an empty `sub`, the refusal's
//! message and the clock.

use std::sync::Arc;

use serde_json::json;

use super::tests::{access_claims, hs_token, verifier};
use super::*;
use crate::sessions::{Change, NewSession, Session};
use crate::verify::claims::tests::{claims, mapper};

/// Whether each token's verification is in the cache.
fn cached(v: &Verifier, tokens: &[&str]) -> Vec<bool> {
    tokens
        .iter()
        .map(|t| v.cache().map.contains_key(&TokenCache::key(t)))
        .collect()
}

/// A token of `sub` in session `sid`, told apart from the same user's others by `n`.
fn token(sub: &str, sid: &str, n: u32) -> String {
    let mut c = access_claims(sub, sid);
    c["n"] = json!(n);
    hs_token(json!({}), &c)
}

fn login(v: &Verifier, sub: &str, sid: &str) -> Arc<Session> {
    let c = mapper().map(claims(json!({"sid": sid})), sub.into(), now_unix() + 300);
    v.create_session(NewSession {
        claims: &c,
        sid: Some(sid.into()),
        id_token: None,
        refresh_token: None,
        refresh_expires: now_unix() + 3600,
        now: now_unix(),
    })
}

/// Three tokens, verified and so cached: alice's in session s1, alice's in s2, bob's in s3.
async fn three_verified(v: &Verifier) -> [String; 3] {
    let tokens = [
        token("alice", "s1", 1),
        token("alice", "s2", 2),
        token("bob", "s3", 3),
    ];
    for t in &tokens {
        v.verify(t).await.expect("valid");
    }
    tokens
}

/// Ending a session forgets its cached verifications only, ending a user's sessions forgets
/// that user's only, and naming neither forgets nothing.
#[tokio::test]
async fn issue_8_ending_a_session_or_a_user_forgets_only_their_cached_verifications() {
    let v = verifier();
    let tokens = three_verified(&v).await;
    let all = tokens.each_ref().map(String::as_str);
    assert_eq!(cached(&v, &all), [true, true, true]);
    let now = now_unix();
    assert!(
        v.end_sessions(None, None, EndReason::Logout, now)
            .is_empty()
    );
    assert_eq!(cached(&v, &all), [true, true, true], "nothing named");
    v.end_sessions(Some("s1"), None, EndReason::Logout, now);
    assert_eq!(cached(&v, &all), [false, true, true], "session s1's only");
    v.end_sessions(None, Some("bob"), EndReason::AdminRevocation, now);
    assert_eq!(cached(&v, &all), [false, true, false], "bob's only");
}

/// A revocation made on another instance forgets the cached verifications it refuses — a
/// session's, or a user's — and no others, and returns the local sessions it ended.
#[tokio::test]
async fn issue_8_a_remote_revocation_forgets_what_it_refuses_and_returns_the_ended_sessions() {
    let v = verifier();
    let session = login(&v, "alice", "s1");
    let tokens = three_verified(&v).await;
    let all = tokens.each_ref().map(String::as_str);
    let now = now_unix();
    let ended = v.apply_remote(
        Change::Sid {
            sid: "s1".into(),
            at: now,
            until: now + 300,
            why: EndReason::Logout,
        },
        now,
    );
    assert_eq!(ended.len(), 1, "the local session of s1");
    assert!(Arc::ptr_eq(&ended[0], &session));
    assert_eq!(cached(&v, &all), [false, true, true]);
    let ended = v.apply_remote(
        Change::Sub {
            sub: "bob".into(),
            at: now,
            until: now + 300,
            why: EndReason::AdminRevocation,
        },
        now,
    );
    assert!(ended.is_empty(), "bob has no local session");
    assert_eq!(cached(&v, &all), [false, true, false]);
}

/// A login that replaces a session with the same `sid` forgets that sid's cached
/// verifications — those linked to the old session and those verified before any session
/// existed — and keeps every other sid's.
#[tokio::test]
async fn issue_8_a_replaced_login_forgets_its_sids_verifications_and_keeps_the_others() {
    let v = verifier();
    let before = token("alice", "s1", 1); // verified before the session: linked to none
    v.verify(&before).await.expect("valid");
    let first = login(&v, "alice", "s1");
    assert_eq!(
        cached(&v, &[&before]),
        [true],
        "a first login replaces nothing"
    );
    let linked = token("alice", "s1", 2);
    let other = token("alice", "s2", 3);
    let hit = v.verify(&linked).await.expect("valid");
    v.verify(&other).await.expect("valid");
    let entry = v
        .cache()
        .map
        .get(&TokenCache::key(&linked))
        .expect("cached");
    assert!(
        entry
            .verified
            .session
            .as_ref()
            .is_some_and(|s| Arc::ptr_eq(s, &first))
    );
    drop(entry);
    drop(hit);
    let second = login(&v, "alice", "s1");
    assert!(!Arc::ptr_eq(&first, &second));
    assert_eq!(
        cached(&v, &[&before, &linked, &other]),
        [false, false, true]
    );
}

/// A token whose `sub` is empty names no one: refused as missing its `sub`.
#[tokio::test]
async fn issue_8_an_empty_sub_is_a_missing_sub() {
    let v = verifier();
    let err = v
        .verify(&hs_token(json!({}), &access_claims("", "s1")))
        .await
        .expect_err("refused");
    assert!(matches!(err, VerifyError::MissingClaim("sub")), "{err:?}");
}

/// The refusal of a token whose session ended says who ended it.
#[test]
fn issue_8_a_revoked_tokens_message_names_who_ended_the_session() {
    for (why, says) in [
        (
            EndReason::AdminRevocation,
            "an administrator revoked the session of this token",
        ),
        (
            EndReason::Logout,
            "the session of this token has ended (logout)",
        ),
        (
            EndReason::BackchannelLogout,
            "the session of this token has ended (logout at the provider, back-channel)",
        ),
        (EndReason::Expired, "the session of this token has ended"),
    ] {
        assert_eq!(VerifyError::Revoked(why).to_string(), says);
    }
}

/// `now_unix` is the wall clock in unix seconds.
#[test]
fn issue_8_now_unix_is_the_wall_clock_in_seconds() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let got = now_unix();
    assert!(got >= 1_700_000_000, "{got}");
    assert!(
        (got - i64::try_from(now).expect("fits")).abs() <= 2,
        "{got} vs {now}"
    );
}

/// `exp`, `nbf` and `iat` are checked with the leeway inclusive: a token at exactly the
/// leeway's edge passes, one second beyond it does not.
#[test]
fn issue_8_the_leeway_is_inclusive_for_exp_nbf_and_iat() {
    let v = verifier();
    let (now, l) = (1_800_000_000_i64, v.leeway);
    assert!(l > 0, "a leeway to test: {l}");
    let check = |exp: i64, nbf: Option<i64>, iat: i64| {
        let mut c = json!({"iss": super::tests::ISSUER, "aud": "shop", "exp": exp, "iat": iat});
        if let Some(nbf) = nbf {
            c["nbf"] = json!(nbf);
        }
        let Value::Object(c) = c else { unreachable!() };
        v.check_common(&c, "shop", now)
    };
    assert!(
        check(now - l, None, now).is_ok(),
        "expired exactly a leeway ago"
    );
    assert!(matches!(
        check(now - l - 1, None, now),
        Err(VerifyError::Expired(_))
    ));
    assert!(
        check(now + 60, Some(now + l), now).is_ok(),
        "nbf a leeway ahead"
    );
    assert!(matches!(
        check(now + 60, Some(now + l + 1), now),
        Err(VerifyError::NotYetValid(_))
    ));
    assert!(
        check(now + 60, None, now + l).is_ok(),
        "issued a leeway ahead"
    );
    assert!(matches!(
        check(now + 60, None, now + l + 1),
        Err(VerifyError::NotYetValid(_))
    ));
}

/// An ID token is accepted only with the login's nonce: another nonce, or none, is refused.
#[tokio::test]
async fn issue_8_an_id_token_needs_the_logins_nonce() {
    let v = verifier();
    let now = now_unix();
    let id = |nonce: Option<&str>| {
        let mut c = json!({"iss": super::tests::ISSUER, "sub": "alice", "aud": "shop",
            "exp": now + 300, "iat": now});
        if let Some(n) = nonce {
            c["nonce"] = json!(n);
        }
        hs_token(json!({}), &c)
    };
    let ok = v
        .verify_id_token(&id(Some("n-1")), "n-1")
        .await
        .expect("the nonce");
    assert_eq!(ok["sub"], "alice");
    for token in [id(Some("n-2")), id(None)] {
        let err = v.verify_id_token(&token, "n-1").await.expect_err("refused");
        assert!(matches!(err, VerifyError::NonceMismatch), "{err:?}");
    }
}

/// Another issuer is told apart from none: `wrong_issuer` (naming it, shortened) against
/// `missing_claim`; a non-string `iss` is a missing one.
#[test]
fn issue_8_another_issuer_is_wrong_not_missing() {
    let v = verifier();
    let check = |iss: Value| {
        let Value::Object(c) = json!({"iss": iss, "aud": "shop"}) else {
            unreachable!()
        };
        v.check_iss_aud(&c, "shop")
    };
    assert!(check(json!(super::tests::ISSUER)).is_ok());
    let err = check(json!("https://evil.example/")).expect_err("refused");
    assert!(
        matches!(&err, VerifyError::WrongIssuer(i) if i.contains("evil.example")),
        "{err:?}"
    );
    for iss in [json!(5), Value::Null] {
        let err = check(iss).expect_err("refused");
        assert!(matches!(err, VerifyError::MissingClaim("iss")), "{err:?}");
    }
}
