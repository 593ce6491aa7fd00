//! Issue #8: tests that kill cargo-mutants' mutants of the session registry (`sessions.rs`)
//! and its snapshot export (`sessions/export.rs`) that the other tests let live: a
//! revocation ends exactly at its `until`, the revocation lifetime follows a reload, the ID
//! token kept for the logout hint, the admin listing, and what an import keeps and counts.

use std::time::Duration;

use super::export::{Revoked, SavedSession, SeenJti};
use super::*;

fn claims(sub: &str, exp: i64) -> Claims {
    Claims {
        sub: sub.into(),
        email: Some(format!("{sub}@example.com")),
        name: None,
        preferred_username: None,
        organization_id: Some(format!("org-{sub}")),
        groups: vec![],
        role: "admin".into(),
        scope: None,
        exp,
        extra: Default::default(),
    }
}

fn registry(ttl_secs: u64) -> Sessions {
    Sessions::new(Duration::from_secs(ttl_secs), Metrics::new())
}

/// A revocation refuses tokens until its `until`, and no longer at `until` itself — the
/// instant the sweep forgets it — by `sid` and by `sub` alike.
#[test]
fn issue_8_a_revocation_ends_exactly_at_its_until() {
    let s = registry(100);
    s.end_sid("sid-1", EndReason::Logout, 1000);
    s.end_sub("bob", EndReason::BackchannelLogout, 1000);
    assert_eq!(
        s.revoked_by(Some("sid-1"), "alice", 900, 1099),
        Some(EndReason::Logout)
    );
    assert_eq!(s.revoked_by(Some("sid-1"), "alice", 900, 1100), None);
    assert_eq!(
        s.revoked_by(None, "bob", 900, 1099),
        Some(EndReason::BackchannelLogout)
    );
    assert_eq!(s.revoked_by(None, "bob", 900, 1100), None);
}

/// `refused_until` (the admin revoke's answer) is now plus the revocation lifetime, and a
/// reload's new lifetime applies to revocations made after it.
#[test]
fn issue_8_the_revocation_lifetime_follows_a_reload() {
    let s = registry(3600);
    assert_eq!(s.refused_until(100), 3700);
    s.set_revocation_ttl(Duration::from_secs(60));
    assert_eq!(s.refused_until(100), 160);
    s.end_sid("sid-1", EndReason::AdminRevocation, 100);
    assert!(s.is_revoked(Some("sid-1"), "alice", 50, 159));
    assert!(!s.is_revoked(Some("sid-1"), "alice", 50, 160));
}

/// The ID token kept for the logout's `id_token_hint`: the login's, replaced by a refresh
/// that brings a new one, kept by a refresh that brings none.
#[test]
fn issue_8_the_id_token_for_the_logout_hint_follows_refreshes() {
    let s = registry(60);
    let c = claims("alice", 1000);
    let session = s.create(NewSession {
        claims: &c,
        sid: Some("sid-1".into()),
        id_token: Some(Secret::new("id-1")),
        refresh_token: Some(Secret::new("rt-1")),
        refresh_expires: 5000,
        now: 1,
    });
    let id = |s: &Session| s.id_token().map(|t| t.expose().to_string());
    assert_eq!(id(&session).as_deref(), Some("id-1"));
    assert!(s.refreshed(&session, "rt-1", None, Some(Secret::new("id-2")), 1500, 2));
    assert_eq!(id(&session).as_deref(), Some("id-2"));
    assert!(s.refreshed(&session, "rt-1", None, None, 2000, 3));
    assert_eq!(id(&session).as_deref(), Some("id-2"), "kept");
}

/// The admin listing: every session, newest first, described without secrets.
#[test]
fn issue_8_the_listing_describes_every_session_newest_first() {
    let s = registry(60);
    for (sub, sid, now) in [("alice", "a", 10), ("bob", "b", 30), ("carol", "c", 20)] {
        let c = claims(sub, 1000 + now);
        s.create(NewSession {
            claims: &c,
            sid: Some(sid.into()),
            id_token: Some(Secret::new("id")),
            refresh_token: Some(Secret::new(format!("rt-{sid}"))),
            refresh_expires: 5000 + now,
            now,
        });
    }
    let info = |sub: &str, sid: &str, now: i64| SessionInfo {
        sid: Some(sid.into()),
        sub: sub.into(),
        email: Some(format!("{sub}@example.com")),
        organization_id: Some(format!("org-{sub}")),
        role: "admin".into(),
        created: now,
        access_expires: 1000 + now,
        refresh_expires: 5000 + now,
        last_seen: now,
    };
    assert_eq!(
        s.list(),
        [
            info("bob", "b", 30),
            info("carol", "c", 20),
            info("alice", "a", 10)
        ]
    );
}

fn revoked(id: &str, until: i64) -> Revoked {
    Revoked {
        id: id.into(),
        at: 0,
        until,
        why: EndReason::Logout,
    }
}

fn saved(key: &str, sid: Option<&str>, access_expires: i64, refresh_expires: i64) -> SavedSession {
    SavedSession {
        key: key.into(),
        sid: sid.map(str::to_string),
        sub: "alice".into(),
        email: None,
        organization_id: None,
        role: "user".into(),
        created: 0,
        access_expires,
        refresh_expires,
        last_seen: 0,
        refresh_key: None,
    }
}

/// An import counts what it kept by kind — the total is their sum, expired entries apart.
#[test]
fn issue_8_an_import_counts_what_it_kept() {
    let now = 100;
    let s = registry(60);
    let state = Exported {
        revoked_sids: vec![revoked("s1", 200)],
        revoked_subs: vec![revoked("u1", 200), revoked("u2", 200)],
        seen_jtis: (0..3)
            .map(|i| SeenJti {
                jti: format!("j{i}"),
                until: 200,
            })
            .collect(),
        ended_refresh: (0..4u8)
            .map(|i| super::export::EndedRefresh {
                key: super::export::Hash([i; 32]),
                until: 200,
            })
            .chain([super::export::EndedRefresh {
                key: super::export::Hash([9; 32]),
                until: now,
            }])
            .collect(),
        sessions: (0..5)
            .map(|i| saved(&format!("k{i}"), None, 200, 300))
            .collect(),
    };
    let n = s.import(state, now);
    assert_eq!(
        n,
        Imported {
            revoked_sids: 1,
            revoked_subs: 2,
            seen_jtis: 3,
            ended_refresh: 4,
            sessions: 5,
            expired: 1,
        }
    );
    assert_eq!(n.total(), 15);
}

/// A saved session whose `sid` is revoked is not restored (a restart must not revive what an
/// end removed); once that revocation has lapsed — at its `until` exactly — it is.
#[test]
fn issue_8_an_import_drops_sessions_whose_sid_is_revoked() {
    // Revoked in the file itself.
    let s = registry(60);
    let n = s.import(
        Exported {
            revoked_sids: vec![revoked("sid-gone", 200)],
            sessions: vec![saved("sid-gone", Some("sid-gone"), 500, 500)],
            ..Exported::default()
        },
        100,
    );
    assert_eq!((n.revoked_sids, n.sessions, n.expired), (1, 0, 1));
    assert!(s.by_sid("sid-gone").is_none());

    // Revoked in the registry, the revocation ending at the import's `now`.
    let s = registry(100);
    s.end_sid("sid-lapsed", EndReason::Logout, 0); // until 100
    s.end_sid("sid-live", EndReason::Logout, 50); // until 150
    let n = s.import(
        Exported {
            sessions: vec![
                saved("sid-lapsed", Some("sid-lapsed"), 500, 500),
                saved("sid-live", Some("sid-live"), 500, 500),
            ],
            ..Exported::default()
        },
        100,
    );
    assert_eq!((n.sessions, n.expired), (1, 1));
    assert!(s.by_sid("sid-lapsed").is_some());
    assert!(s.by_sid("sid-live").is_none());
}
