//! Issue #8: tests that kill cargo-mutants' mutants of the registry's sharing with other
//! instances (`sessions/remote.rs`, `sessions/shared.rs`) that the unit tests let live: which
//! revocation entries are in force, how a remote revocation merges (the later `at` and `until`
//! win, a repeat changes nothing), which records count as ended, what adopting a record keeps,
//! and which last-seen times the write-behind is handed.

use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::store::{BoxFuture, SessionRecord, Unavailable};

fn claims(sub: &str, exp: i64) -> Claims {
    Claims {
        sub: sub.into(),
        email: None,
        name: None,
        preferred_username: None,
        organization_id: None,
        groups: vec![],
        role: "user".into(),
        scope: None,
        exp,
        extra: Default::default(),
    }
}

fn registry() -> Sessions {
    Sessions::new(Duration::from_secs(100), Metrics::new())
}

fn login(s: &Sessions, sub: &str, sid: &str, now: i64) -> Arc<Session> {
    s.create(NewSession {
        claims: &claims(sub, now + 300),
        sid: Some(sid.into()),
        id_token: None,
        refresh_token: Some(Secret::new(format!("rt-{sid}"))),
        refresh_expires: now + 3600,
        now,
    })
}

fn sub_change(sub: &str, at: i64, until: i64, why: EndReason) -> Change {
    Change::Sub {
        sub: sub.into(),
        at,
        until,
        why,
    }
}

fn sid_change(sid: &str, at: i64, until: i64) -> Change {
    Change::Sid {
        sid: sid.into(),
        at,
        until,
        why: EndReason::Logout,
    }
}

/// The entries the resync pushes: each kind listed until its `until`, none at `until` itself.
#[test]
fn issue_8_revocation_entries_are_those_in_force() {
    let s = registry();
    let key = key_of("rt-gone");
    s.apply_remote(sid_change("s1", 100, 200), 100);
    s.apply_remote(sub_change("bob", 100, 200, EndReason::AdminRevocation), 100);
    s.apply_remote(Change::EndedRefresh { key, until: 200 }, 100);
    let mut entries = s.revocation_entries(199);
    entries.sort_by_key(|c| format!("{c:?}"));
    assert_eq!(
        entries,
        [
            Change::EndedRefresh { key, until: 200 },
            sid_change("s1", 100, 200),
            sub_change("bob", 100, 200, EndReason::AdminRevocation),
        ]
    );
    assert_eq!(s.revocation_entries(200), []);
}

/// A remote revocation that has already lapsed (`until` reached) is not applied: the session
/// it names lives on here.
#[test]
fn issue_8_a_lapsed_remote_revocation_ends_nothing() {
    let s = registry();
    login(&s, "alice", "s1", 100);
    assert!(s.apply_remote(sid_change("s1", 150, 200), 200).is_empty());
    assert!(s.by_sid("s1").is_some());
    assert_eq!(s.revocation_entries(100), []);
    assert!(
        s.apply_remote(
            Change::EndedRefresh {
                key: key_of("rt-s1"),
                until: 200
            },
            200
        )
        .is_empty()
    );
    assert!(!s.refresh_token_ended("rt-s1"));
}

/// A remote revocation of a user ends that user's sessions made until its `at`: not another
/// user's, not a later login.
#[test]
fn issue_8_a_remote_revocation_by_sub_ends_only_that_users_earlier_sessions() {
    let s = registry();
    login(&s, "alice", "a1", 100);
    login(&s, "bob", "b1", 100);
    login(&s, "bob", "b2", 130);
    let ended = s.apply_remote(sub_change("bob", 120, 500, EndReason::Logout), 140);
    assert_eq!(
        ended.iter().map(|x| x.key.as_str()).collect::<Vec<_>>(),
        ["b1"]
    );
    assert!(s.by_sid("a1").is_some());
    assert!(s.by_sid("b2").is_some());
}

/// The revocations by `sub` in force at `now`.
fn by_sub(s: &Sessions, now: i64) -> Vec<Change> {
    let mut entries = s.revocation_entries(now);
    entries.retain(|c| matches!(c, Change::Sub { .. }));
    entries
}

/// Merging: a later `until` (same `at`) extends the refusal without ending anything more or
/// moving the generation; a later `at` refuses more (newer sessions end, the reason follows);
/// an older entry changes nothing.
#[test]
fn issue_8_remote_revocations_merge_the_later_at_and_until() {
    let s = registry();
    s.apply_remote(sub_change("bob", 120, 300, EndReason::Logout), 120);
    let generation = s.revocation_generation();

    s.apply_remote(sub_change("bob", 120, 400, EndReason::AdminRevocation), 121);
    assert_eq!(
        by_sub(&s, 121),
        [sub_change("bob", 120, 400, EndReason::Logout)],
        "until extended, reason kept"
    );
    assert_eq!(s.revocation_generation(), generation);

    login(&s, "bob", "b2", 130);
    let ended = s.apply_remote(sub_change("bob", 140, 250, EndReason::AdminRevocation), 141);
    assert_eq!(
        ended.len(),
        1,
        "the later `at` ends the session made at 130"
    );
    assert_ne!(s.revocation_generation(), generation);
    assert_eq!(
        by_sub(&s, 141),
        [sub_change("bob", 140, 400, EndReason::AdminRevocation)]
    );
    assert!(s.is_revoked(None, "bob", 135, 399));

    let generation = s.revocation_generation();
    assert!(
        s.apply_remote(sub_change("bob", 110, 350, EndReason::Logout), 142)
            .is_empty()
    );
    assert_eq!(
        by_sub(&s, 142),
        [sub_change("bob", 140, 400, EndReason::AdminRevocation)]
    );
    assert_eq!(s.revocation_generation(), generation);
}

/// An ended refresh token learnt from another instance: a later `until` extends it, a repeat
/// or an earlier one is not a change the snapshot must write.
#[test]
fn issue_8_a_remote_ended_refresh_token_keeps_the_later_until() {
    let s = registry();
    let key = key_of("rt-x");
    s.apply_remote(Change::EndedRefresh { key, until: 200 }, 100);
    assert!(s.refresh_token_ended("rt-x"));
    let changes = s.changes();
    s.apply_remote(Change::EndedRefresh { key, until: 200 }, 100);
    s.apply_remote(Change::EndedRefresh { key, until: 150 }, 100);
    assert_eq!(s.changes(), changes, "nothing new");
    s.apply_remote(Change::EndedRefresh { key, until: 300 }, 100);
    assert_eq!(s.changes(), changes + 1);
    assert_eq!(
        s.revocation_entries(250),
        [Change::EndedRefresh { key, until: 300 }]
    );
}

fn record(key: &str, sub: &str, created: i64, rt: &str) -> SessionRecord {
    SessionRecord {
        key: key.into(),
        sid: Some(key.into()),
        sub: sub.into(),
        email: Some(format!("{sub}@example.com")),
        organization_id: Some("org".into()),
        role: "admin".into(),
        created,
        access_expires: created + 300,
        refresh_expires: created + 3600,
        last_seen: created + 5,
        refresh_token: Some(Secret::new(rt)),
        id_token: Some(Secret::new(format!("id-{key}"))),
    }
}

/// A record of a session ended by `sid` is refused until the revocation lapses.
#[test]
fn issue_8_a_record_whose_sid_was_revoked_is_not_adopted() {
    let s = registry();
    s.end_sid("s1", EndReason::Logout, 100); // refused until 200
    assert!(s.adopt(&record("s1", "alice", 90, "rt-1"), 199).is_none());
    assert!(s.by_sid("s1").is_none());
    assert!(s.adopt(&record("s1", "alice", 90, "rt-1"), 200).is_some());
}

/// A record of a user revoked at 100 is refused when made at or before 100, until the
/// revocation lapses; a later login's record is adopted.
#[test]
fn issue_8_a_record_of_a_revoked_user_is_adopted_only_when_made_later() {
    let s = registry();
    s.end_sub("bob", EndReason::AdminRevocation, 100); // refused until 200
    assert!(s.adopt(&record("b0", "bob", 90, "rt-0"), 150).is_none());
    assert!(s.adopt(&record("b1", "bob", 100, "rt-1"), 150).is_none());
    assert!(s.adopt(&record("b2", "bob", 110, "rt-2"), 150).is_some());
    assert!(s.adopt(&record("b0", "bob", 90, "rt-0"), 200).is_some());
    assert!(s.adopt(&record("a1", "alice", 90, "rt-a"), 150).is_some());
}

/// A record whose refresh token ended (its session ended elsewhere) is refused.
#[test]
fn issue_8_a_record_whose_refresh_token_ended_is_not_adopted() {
    let s = registry();
    s.end_refresh_token(key_of("rt-1"), 500);
    assert!(s.adopt(&record("s1", "alice", 90, "rt-1"), 100).is_none());
    assert!(s.by_refresh_token("rt-1").is_none());
}

/// Adopting a new record makes the session here as recorded; a newer state of it updates the
/// same session in place: the rotated refresh token indexed instead of the old one, the ID
/// token kept when the record has none, the expiries followed, last-seen never moved back.
#[test]
fn issue_8_adopting_a_record_makes_or_updates_the_session() {
    let s = registry();
    let r = record("s1", "alice", 100, "rt-1");
    let session = s.adopt(&r, 110).expect("adopted");
    let info = session.info();
    assert_eq!(info, r.info());
    assert_eq!(session.key, "s1");
    assert_eq!(
        session
            .id_token()
            .map(|t| t.expose().to_string())
            .as_deref(),
        Some("id-s1")
    );
    assert!(Arc::ptr_eq(
        &s.by_refresh_token("rt-1").expect("indexed"),
        &session
    ));

    let mut newer = record("s1", "alice", 100, "rt-2");
    newer.id_token = None;
    newer.access_expires = 700;
    newer.refresh_expires = 9000;
    newer.last_seen = 50;
    let updated = s.adopt(&newer, 120).expect("adopted");
    assert!(Arc::ptr_eq(&updated, &session), "updated in place");
    assert!(
        s.by_refresh_token("rt-1").is_none(),
        "the rotated token is unindexed"
    );
    assert!(Arc::ptr_eq(
        &s.by_refresh_token("rt-2").expect("indexed"),
        &session
    ));
    assert_eq!(
        session
            .refresh_token()
            .map(|t| t.expose().to_string())
            .as_deref(),
        Some("rt-2")
    );
    assert_eq!(
        session
            .id_token()
            .map(|t| t.expose().to_string())
            .as_deref(),
        Some("id-s1")
    );
    let info = session.info();
    assert_eq!(
        (info.access_expires, info.refresh_expires, info.last_seen),
        (700, 9000, 105)
    );
}

/// An ended session held here is replaced by the record's, not revived.
#[test]
fn issue_8_adopting_replaces_an_ended_session() {
    let s = registry();
    let old = s
        .adopt(&record("s1", "alice", 100, "rt-1"), 110)
        .expect("adopted");
    old.ended.store(true, Ordering::Relaxed);
    let new = s
        .adopt(&record("s1", "alice", 100, "rt-1"), 111)
        .expect("adopted");
    assert!(!Arc::ptr_eq(&old, &new));
    assert!(!new.is_ended());
}

#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<Change>>);

impl Outbox for Recorder {
    fn publish(&self, change: Change) {
        self.0.lock().expect("lock").push(change);
    }
    fn claim_jti(&self, _: &str, _: i64) -> BoxFuture<'_, Result<bool, Unavailable>> {
        Box::pin(async { Ok(true) })
    }
}

/// Ending a refresh token learnt from a record: unindexed, refused here, told to the others.
#[test]
fn issue_8_an_ended_refresh_token_is_refused_and_shared() {
    let s = registry();
    let out = Arc::new(Recorder::default());
    s.set_outbox(out.clone());
    s.adopt(&record("s1", "alice", 100, "rt-1"), 110)
        .expect("adopted");
    s.end_refresh_token(key_of("rt-1"), 900);
    assert!(s.by_refresh_token("rt-1").is_none());
    assert!(s.refresh_token_ended("rt-1"));
    assert_eq!(
        *out.0.lock().expect("lock"),
        [Change::EndedRefresh {
            key: key_of("rt-1"),
            until: 900
        }]
    );
}

/// The write-behind is handed each session seen since it was last handed out, once.
#[test]
fn issue_8_last_seen_times_are_handed_out_once_per_sighting() {
    let s = registry();
    let a = login(&s, "alice", "a1", 100);
    login(&s, "bob", "b1", 100);
    assert_eq!(s.unflushed_last_seen(), [], "a login is not a sighting");
    a.touch(120);
    assert_eq!(s.unflushed_last_seen(), [("a1".to_string(), 120)]);
    assert_eq!(s.unflushed_last_seen(), []);
    a.touch(120);
    assert_eq!(s.unflushed_last_seen(), [], "the same second again");
    a.touch(125);
    assert_eq!(s.unflushed_last_seen(), [("a1".to_string(), 125)]);
}
