//! Unit tests of the session registry and its revocations.

use super::*;
use std::time::Duration;

fn claims(sub: &str) -> Claims {
    Claims {
        sub: sub.into(),
        email: None,
        name: None,
        preferred_username: None,
        organization_id: Some(sub.into()),
        groups: vec![],
        role: "user".into(),
        scope: None,
        exp: 1000,
        extra: Default::default(),
    }
}

#[test]
fn end_by_sid_revokes_every_token_of_the_session() {
    let s = Sessions::new(Duration::from_secs(3600), Metrics::new());
    let c = claims("alice");
    let session = s.create(NewSession {
        claims: &c,
        sid: Some("sid-1".into()),
        id_token: None,
        refresh_token: Some(Secret::new("rt-1")),
        refresh_expires: 5000,
        now: 100,
    });
    assert!(s.by_refresh_token("rt-1").is_some());
    assert_eq!(
        s.end_sid("sid-1", EndReason::BackchannelLogout, 200).len(),
        1
    );
    assert!(session.is_ended());
    assert_eq!(s.active(), 0);
    assert!(s.by_refresh_token("rt-1").is_none());
    assert!(s.is_revoked(Some("sid-1"), "alice", 150, 300));
    assert!(
        s.is_revoked(Some("sid-1"), "alice", 201, 300),
        "a refreshed token of the ended session"
    );
    assert!(s.refresh_token_ended("rt-1"));
    assert!(!s.refresh_token_ended("rt-2"));
    assert!(
        !s.is_revoked(Some("sid-2"), "alice", 150, 300),
        "other session"
    );
    assert!(
        !s.is_revoked(Some("sid-1"), "alice", 150, 3801),
        "revocation expired"
    );
}

/// Issue #8: the back-channel logout revokes upstream the refresh tokens of exactly the
/// sessions it ends: by sid the one session, by sub every session of the user.
#[test]
fn matching_names_the_sessions_a_logout_ends() {
    let s = Sessions::new(Duration::from_secs(60), Metrics::new());
    for (sub, sid) in [("alice", "a1"), ("alice", "a2"), ("bob", "b1")] {
        let c = claims(sub);
        s.create(NewSession {
            claims: &c,
            sid: Some(sid.into()),
            id_token: None,
            refresh_token: Some(Secret::new(format!("rt-{sid}"))),
            refresh_expires: 5000,
            now: 100,
        });
    }
    let keys = |v: Vec<Arc<Session>>| {
        let mut k: Vec<String> = v.iter().map(|s| s.key.clone()).collect();
        k.sort();
        k
    };
    assert_eq!(keys(s.matching(Some("a2"), Some("alice"))), ["a2"]);
    assert_eq!(keys(s.matching(None, Some("alice"))), ["a1", "a2"]);
    assert!(s.matching(Some("zz"), Some("alice")).is_empty(), "sid wins");
    assert!(s.matching(None, None).is_empty());
    let rts: Vec<String> = s
        .matching(Some("b1"), None)
        .iter()
        .filter_map(|x| x.refresh_token().map(|r| r.expose().to_string()))
        .collect();
    assert_eq!(rts, ["rt-b1"]);
}

#[test]
fn end_by_sub_and_jti_replay() {
    let s = Sessions::new(Duration::from_secs(60), Metrics::new());
    let c = claims("bob");
    for sid in ["a", "b"] {
        s.create(NewSession {
            claims: &c,
            sid: Some(sid.into()),
            id_token: None,
            refresh_token: None,
            refresh_expires: 0,
            now: 1,
        });
    }
    assert_eq!(s.end_sub("bob", EndReason::BackchannelLogout, 10).len(), 2);
    assert!(s.is_revoked(None, "bob", 5, 20));
    assert!(
        !s.is_revoked(None, "bob", 11, 20),
        "a later login of the user"
    );
    assert!(s.first_use_of_jti("j1", 100));
    assert!(!s.first_use_of_jti("j1", 100));
    s.sweep(100);
    assert!(
        s.first_use_of_jti("j1", 200),
        "forgotten after its lifetime"
    );
}

/// Issue #8 (mutation testing): the sweep ends a session only when both its access and
/// its refresh token have lapsed, counts it as `expired`, keeps its refresh token out of
/// the ended list (it lapsed, it was not ended), and forgets revocations, `jti`s and
/// ended refresh tokens exactly at their end — not a second before.
#[test]
fn issue_8_the_sweep_ends_what_lapsed_and_forgets_at_the_boundary() {
    let metrics = Metrics::new();
    let s = Sessions::new(Duration::from_secs(100), metrics.clone());
    let c = claims("carol"); // access_expires = exp = 1000
    let lapsing = |sid: &str, rt: &str, refresh_expires: i64| NewSession {
        claims: &c,
        sid: Some(sid.into()),
        id_token: None,
        refresh_token: Some(Secret::new(rt)),
        refresh_expires,
        now: 1,
    };
    s.create(lapsing("short", "rt-short", 500)); // refresh lapses first
    s.create(lapsing("long", "rt-long", 3000)); // access lapses first
    let expired = || metrics.sessions_ended.with_label_values(&["expired"]).get();

    s.sweep(999); // neither access token has lapsed
    assert_eq!((s.active(), expired()), (2, 0));
    s.sweep(1000); // "short": both lapsed; "long": its refresh token lives on
    assert_eq!((s.active(), expired()), (1, 1));
    assert!(s.by_sid("short").is_none() && s.by_sid("long").is_some());
    assert!(s.by_refresh_token("rt-short").is_none());
    assert!(!s.refresh_token_ended("rt-short"), "lapsed, not ended");
    s.sweep(2999);
    assert_eq!(s.active(), 1);
    s.sweep(3000);
    assert_eq!((s.active(), expired()), (0, 2));

    // Revocations (until = now + 100), a jti and an ended refresh token.
    s.create(lapsing("gone", "rt-gone", 5000));
    s.end_sid("gone", EndReason::Logout, 4000);
    s.create(lapsing("other", "rt-other", 5000));
    s.end_sub("carol", EndReason::Logout, 4000);
    assert!(s.first_use_of_jti("j", 4100));
    s.sweep(4099);
    assert!(s.is_revoked(Some("gone"), "nobody", 0, 4099));
    assert!(s.is_revoked(None, "carol", 0, 4099));
    assert!(!s.first_use_of_jti("j", 4100), "still remembered");
    assert!(s.refresh_token_ended("rt-gone"));
    s.sweep(4100);
    assert!(s.revoked_sids.is_empty() && s.revoked_subs.is_empty());
    assert!(s.seen_jtis.is_empty());
    assert!(
        s.refresh_token_ended("rt-gone"),
        "kept until its own expiry"
    );
    s.sweep(5000);
    assert!(!s.refresh_token_ended("rt-gone"));
}

/// Issue #7: a new login with an existing sid replaces the session; the replaced
/// session's refresh token stays refusable instead of becoming unknown-but-usable (or,
/// worse, an index into the new session), and the revocation generation moves.
#[test]
fn issue_7_replaced_session_keeps_its_refresh_token_refusable() {
    let s = Sessions::new(Duration::from_secs(3600), Metrics::new());
    let c = claims("dave");
    let first = s.create(NewSession {
        claims: &c,
        sid: Some("sid-1".into()),
        id_token: None,
        refresh_token: Some(Secret::new("rt-old")),
        refresh_expires: 5000,
        now: 1,
    });
    let g0 = s.revocation_generation();
    let (second, replaced) = s.create_replacing(NewSession {
        claims: &c,
        sid: Some("sid-1".into()),
        id_token: None,
        refresh_token: Some(Secret::new("rt-new")),
        refresh_expires: 6000,
        now: 2,
    });
    assert!(replaced.is_some_and(|r| Arc::ptr_eq(&r, &first)));
    assert!(first.is_ended());
    assert!(!second.is_ended());
    assert_eq!(s.active(), 1);
    assert!(s.refresh_token_ended("rt-old"), "old refresh token refused");
    assert!(s.by_refresh_token("rt-old").is_none(), "and not an index");
    assert!(!s.refresh_token_ended("rt-new"));
    assert!(
        s.by_refresh_token("rt-new")
            .is_some_and(|x| Arc::ptr_eq(&x, &second))
    );
    assert!(s.revocation_generation() > g0);
    // Remembered until the old refresh token expires.
    s.sweep(4999);
    assert!(s.refresh_token_ended("rt-old"));
    s.sweep(5000);
    assert!(!s.refresh_token_ended("rt-old"));

    // Re-registering with the same refresh token does not refuse it.
    s.create(NewSession {
        claims: &c,
        sid: Some("sid-1".into()),
        id_token: None,
        refresh_token: Some(Secret::new("rt-new")),
        refresh_expires: 6000,
        now: 3,
    });
    assert!(!s.refresh_token_ended("rt-new"));
    assert!(s.by_refresh_token("rt-new").is_some());
}

#[test]
fn issue_7_every_end_moves_the_revocation_generation() {
    let s = Sessions::new(Duration::from_secs(3600), Metrics::new());
    let g0 = s.revocation_generation();
    s.end_sid("nobody", EndReason::AdminRevocation, 1);
    let g1 = s.revocation_generation();
    assert!(
        g1 > g0,
        "even with no registered session: the sid is revoked"
    );
    s.end_sub("nobody", EndReason::BackchannelLogout, 1);
    assert!(s.revocation_generation() > g1);
}

#[test]
fn refresh_rotation_moves_the_index() {
    let s = Sessions::new(Duration::from_secs(60), Metrics::new());
    let c = claims("carol");
    let session = s.create(NewSession {
        claims: &c,
        sid: Some("x".into()),
        id_token: None,
        refresh_token: Some(Secret::new("old")),
        refresh_expires: 100,
        now: 1,
    });
    s.refreshed(&session, "old", Some(Secret::new("new")), None, 500, 2);
    assert!(s.by_refresh_token("old").is_none());
    assert!(s.by_refresh_token("new").is_some());
    assert_eq!(
        session.refresh_token().map(|t| t.expose().to_string()),
        Some("new".into())
    );
    assert!(!format!("{session:?}").contains("new\""));
}
