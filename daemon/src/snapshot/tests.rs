//! Unit tests of the sessions snapshot: round trip, expiry at load, foreign and future files,
//! bad input never a panic, atomic writes, and the refused file moved aside.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use tokend_shared::{Claims, Secret};

use super::*;
use crate::sessions::{EndReason, NewSession};

const NOW: i64 = 1_000_000;

fn owner() -> Owner {
    Owner {
        issuer: "https://auth.example.com/application/o/shop/".into(),
        client_id: "shop".into(),
    }
}

fn claims(sub: &str) -> Claims {
    Claims {
        sub: sub.into(),
        email: Some(format!("{sub}@example.com")),
        name: None,
        preferred_username: None,
        organization_id: None,
        groups: vec![],
        role: "user".into(),
        scope: None,
        exp: NOW + 300,
        extra: Default::default(),
    }
}

fn sessions() -> Arc<Sessions> {
    Arc::new(Sessions::new(Duration::from_secs(3600), Metrics::new()))
}

fn login(s: &Sessions, sub: &str, sid: &str, refresh: &str) {
    let c = claims(sub);
    s.create(NewSession {
        claims: &c,
        sid: Some(sid.into()),
        id_token: Some(Secret::new(format!("id-token-of-{sid}"))),
        refresh_token: Some(Secret::new(refresh)),
        refresh_expires: NOW + 7200,
        now: NOW,
    });
}

/// A registry with one of everything: a live session, a logged-out one (sid), an
/// administrator's revocation of a user (sub), a seen `jti`.
fn populated() -> Arc<Sessions> {
    let s = sessions();
    login(&s, "alice", "sid-live", "refresh-token-live-0123456789");
    login(&s, "alice", "sid-out", "refresh-token-out-0123456789");
    s.end_sid("sid-out", EndReason::Logout, NOW);
    s.end_sub("mallory", EndReason::AdminRevocation, NOW);
    assert!(s.first_use_of_jti("jti-1", NOW + 120));
    s
}

fn snapshot_in(dir: &Path, s: &Arc<Sessions>) -> Snapshot {
    Snapshot::new(dir.join("snapshot.json"), s.clone(), Metrics::new())
}

#[test]
fn issue_12_round_trip_keeps_every_revocation_and_no_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = populated();
    let snap = snapshot_in(dir.path(), &s);
    snap.write(&owner(), NOW).expect("written");

    let path = dir.path().join("snapshot.json");
    let mode = std::fs::metadata(&path).expect("file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    let text = std::fs::read_to_string(&path).expect("text");
    for secret in ["refresh-token-", "id-token-of-"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(
        text.contains(FORMAT) && text.contains("\"version\":1"),
        "{text}"
    );

    let restored = sessions();
    let n = load(&path, &owner(), &restored, NOW + 1)
        .expect("loads")
        .expect("present");
    assert_eq!(
        (
            n.revoked_sids,
            n.revoked_subs,
            n.seen_jtis,
            n.ended_refresh,
            n.sessions
        ),
        (1, 1, 1, 1, 1),
        "{n:?}"
    );
    assert_eq!(
        restored.revoked_by(Some("sid-out"), "alice", NOW, NOW + 1),
        Some(EndReason::Logout)
    );
    assert_eq!(
        restored.revoked_by(None, "mallory", NOW, NOW + 1),
        Some(EndReason::AdminRevocation)
    );
    assert_eq!(
        restored.revoked_by(Some("sid-live"), "alice", NOW, NOW + 1),
        None
    );
    assert!(
        !restored.first_use_of_jti("jti-1", NOW + 120),
        "a replay still"
    );
    assert!(restored.refresh_token_ended("refresh-token-out-0123456789"));
    let live = restored
        .by_refresh_token("refresh-token-live-0123456789")
        .expect("the live session, found by its refresh token");
    assert_eq!(
        (live.sub.as_str(), live.sid.as_deref()),
        ("alice", Some("sid-live"))
    );
    assert!(
        live.refresh_token().is_none() && live.id_token().is_none(),
        "no secrets kept"
    );
    // Ending the restored session still refuses its refresh token.
    restored.end_sid("sid-live", EndReason::AdminRevocation, NOW + 2);
    assert!(restored.refresh_token_ended("refresh-token-live-0123456789"));
    assert!(
        restored
            .by_refresh_token("refresh-token-live-0123456789")
            .is_none()
    );
}

#[test]
fn issue_12_entries_expired_at_load_are_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = populated();
    snapshot_in(dir.path(), &s)
        .write(&owner(), NOW)
        .expect("written");
    let path = dir.path().join("snapshot.json");
    // jti until NOW+120; revocations until NOW+3600; ended refresh token and sessions until
    // NOW+7200.
    let restored = sessions();
    let n = load(&path, &owner(), &restored, NOW + 120)
        .expect("ok")
        .expect("some");
    assert_eq!((n.seen_jtis, n.revoked_sids, n.expired), (0, 1, 1), "{n:?}");
    assert!(
        restored.first_use_of_jti("jti-1", NOW + 500),
        "forgotten after its lifetime"
    );
    let restored = sessions();
    let n = load(&path, &owner(), &restored, NOW + 3600)
        .expect("ok")
        .expect("some");
    assert_eq!(
        (n.revoked_sids, n.revoked_subs, n.ended_refresh),
        (0, 0, 1),
        "{n:?}"
    );
    assert_eq!(n.expired, 3);
    let restored = sessions();
    let n = load(&path, &owner(), &restored, NOW + 7200)
        .expect("ok")
        .expect("some");
    assert_eq!((n.total(), n.expired), (0, 5), "{n:?}");
    assert_eq!(restored.active(), 0);
}

#[test]
fn issue_12_foreign_and_future_files_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    snapshot_in(dir.path(), &populated())
        .write(&owner(), NOW)
        .expect("written");
    let path = dir.path().join("snapshot.json");
    for other in [
        Owner {
            issuer: "https://auth.example.com/application/o/other/".into(),
            ..owner()
        },
        Owner {
            client_id: "other".into(),
            ..owner()
        },
    ] {
        let err = load(&path, &other, &sessions(), NOW).expect_err("foreign");
        assert!(matches!(err, SnapshotError::Foreign { .. }), "{err}");
        assert!(err.to_string().contains("written for issuer"), "{err}");
    }
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    doc["version"] = 2.into();
    doc["state"]["something_new"] = 1.into();
    let err = parse(&path, doc.to_string().as_bytes(), &owner()).expect_err("future");
    assert!(
        matches!(err, SnapshotError::FutureVersion { found: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("newer tokend"), "{err}");
    assert!(
        err.to_string().contains(&*path.to_string_lossy()),
        "names the file: {err}"
    );
}

/// Bad input of every kind is an error naming the file, never a panic.
#[test]
fn issue_12_corrupt_truncated_and_garbage_files_are_errors_not_panics() {
    let path = Path::new("/var/lib/tokend/snapshot.json");
    let s = populated();
    let (state, _) = s.export();
    let good = serde_json::to_string(&Document {
        format: FORMAT.into(),
        version: VERSION,
        issuer: owner().issuer,
        client_id: owner().client_id,
        written_at: NOW,
        state,
    })
    .expect("json");
    assert!(parse(path, good.as_bytes(), &owner()).is_ok());
    let mut bad: Vec<Vec<u8>> = (0..good.len())
        .step_by(7)
        .map(|n| good.as_bytes()[..n].to_vec())
        .collect();
    bad.extend(
        [
            "",
            "null",
            "[]",
            "\u{0}\u{1}garbage",
            "{\"format\":\"tokend-sessions-snapshot\"}",
            "{\"format\":\"jwks\",\"version\":1}",
            "{\"format\":\"tokend-sessions-snapshot\",\"version\":0}",
            "{\"format\":\"tokend-sessions-snapshot\",\"version\":-1}",
            "{\"format\":\"tokend-sessions-snapshot\",\"version\":1.5}",
        ]
        .map(|s| s.as_bytes().to_vec()),
    );
    for (field, value) in [
        // Digits put before the value's own: numbers beyond i64 and f64.
        ("\"at\":", "\"at\":99999999999999999999999999"),
        ("\"until\":", "\"until\":1e999"),
        ("\"until\":", "\"until\":--"),
        ("\"key\":\"", "\"key\":\"!!"),
        ("\"key\":\"", "\"key\":\"AAAA"),
        ("\"version\":1", "\"version\":18446744073709551616"),
        ("\"why\":\"logout\"", "\"why\":\"bored\""),
    ] {
        bad.push(good.replacen(field, value, 1).into_bytes());
    }
    bad.push(
        good.replacen("\"written_at\"", "\"extra\":1,\"written_at\"", 1)
            .into_bytes(),
    );
    for bytes in &bad {
        let err = parse(path, bytes, &owner()).expect_err("refused");
        assert!(
            err.to_string().contains("/var/lib/tokend/snapshot.json"),
            "names the file: {err}"
        );
    }
}

#[test]
fn issue_12_a_file_beyond_the_size_bound_is_refused_unread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("snapshot.json");
    // Sparse: costs no disk.
    let f = std::fs::File::create(&path).expect("create");
    f.set_len(MAX_BYTES + 1).expect("set_len");
    let err = load(&path, &owner(), &sessions(), NOW).expect_err("too large");
    assert!(matches!(err, SnapshotError::TooLarge { .. }), "{err}");
    assert_eq!(
        load(&dir.path().join("none.json"), &owner(), &sessions(), NOW).ok(),
        Some(None)
    );
}

/// A write replaces the file whole, and a write that fails leaves neither a partial file
/// nor its temporary file behind.
#[test]
fn issue_12_atomic_write_leaves_no_partial_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = populated();
    let snap = snapshot_in(dir.path(), &s);
    snap.write(&owner(), NOW).expect("first");
    login(&s, "bob", "sid-bob", "refresh-token-bob-0123456789");
    snap.write(&owner(), NOW + 1).expect("second");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["snapshot.json"], "no temporary file left");
    let n = load(&snap.path, &owner(), &sessions(), NOW + 2)
        .expect("ok")
        .expect("some");
    assert_eq!(n.sessions, 2);

    // The target is a directory: the rename fails; nothing else is left in the directory.
    let blocked = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(blocked.path().join("snapshot.json")).expect("dir");
    let err = snapshot_in(blocked.path(), &s)
        .write(&owner(), NOW)
        .expect_err("cannot replace a directory");
    assert!(matches!(err, SnapshotError::Write { .. }), "{err}");
    assert_eq!(std::fs::read_dir(blocked.path()).expect("dir").count(), 1);
}

#[test]
fn issue_12_restore_moves_a_refused_file_aside_and_counts_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("snapshot.json");
    std::fs::write(&path, "{\"format\":\"tokend-sessions-snapshot\",\"vers").expect("write");
    let s = sessions();
    let metrics = Metrics::new();
    let snap = Snapshot::new(path.clone(), s.clone(), metrics.clone());
    assert_eq!(snap.restore(&owner(), NOW), "refused");
    assert_eq!(
        metrics.snapshot_loads.with_label_values(&["refused"]).get(),
        1
    );
    assert!(!path.exists(), "moved aside");
    let aside: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        aside.len() == 1 && aside[0].starts_with("snapshot.json.corrupt-"),
        "{aside:?}"
    );
    assert!(!snap.dirty(), "nothing to write until something changes");
    assert!(s.first_use_of_jti("j", NOW + 60));
    assert!(snap.dirty());
    snap.write(&owner(), NOW).expect("a fresh snapshot");
    assert!(!snap.dirty());
    assert_eq!(snap.restore(&owner(), NOW), "loaded");
}

/// The fuzz corpus's seed written as the daemon writes it stays a file this tokend reads.
#[test]
fn issue_12_the_fuzz_seed_is_a_valid_snapshot() {
    let seed = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fuzz/corpus/snapshot_file/daemon-written"
    );
    let bytes = std::fs::read(seed).expect("seed");
    let owner = Owner {
        issuer: "http://127.0.0.1:1/application/o/fuzz/".into(),
        client_id: "fuzz".into(),
    };
    let state = parse(Path::new(seed), &bytes, &owner).expect("accepted");
    assert_eq!((state.revoked_sids.len(), state.sessions.len()), (2, 1));
}
