//! The shared sessions against a real `redis-server` and a real three-master Redis Cluster
//! (skipped loudly without them, as the conformance suite is): records round-trip sealed, keys
//! and values show no secret, every key expires, the refresh lock is single-holder and
//! expires, last-seen never creates a key.

use super::*;
use crate::store::test_redis::{RedisCluster, RedisServer, redis_config};
use crate::store::{Store, key_of};
use crate::verify::now_unix;

const RT: &str = "refresh-token-CLEAR-0123456789";
const RT2: &str = "refresh-token-ROTATED-987654321";

fn record(now: i64, rt: &str) -> SessionRecord {
    SessionRecord {
        key: "sid-CLEAR-42".into(),
        sid: Some("sid-CLEAR-42".into()),
        sub: "alice-CLEAR".into(),
        email: Some("alice@example.com".into()),
        organization_id: Some("org-1".into()),
        role: "admin".into(),
        created: now,
        access_expires: now + 300,
        refresh_expires: now + 3600,
        last_seen: now,
        refresh_token: Some(Secret::new(rt)),
        id_token: Some(Secret::new("id-token-CLEAR")),
    }
}

/// The Redis behind a test (killed when dropped) and the ports of its nodes.
struct Backing {
    _alive: Box<dyn std::any::Any + Send>,
    ports: Vec<u16>,
}

/// Shared sessions on a server of their own, or (`cluster`) on a cluster of their own.
async fn engine(test: &str, cluster: bool) -> Option<(Backing, Arc<dyn SharedSessions>)> {
    engine_with(test, cluster, None).await
}

/// [`engine`], its calls bounded by `timeout` rather than the default `store.timeout`.
async fn engine_with(
    test: &str,
    cluster: bool,
    timeout: Option<Duration>,
) -> Option<(Backing, Arc<dyn SharedSessions>)> {
    let (mut config, backing) = if cluster {
        let c = RedisCluster::start(test)?;
        let ports = c.ports();
        (
            c.config(),
            Backing {
                _alive: Box::new(c),
                ports,
            },
        )
    } else {
        let s = RedisServer::start(test)?;
        let ports = vec![s.port];
        (
            redis_config(s.port),
            Backing {
                _alive: Box::new(s),
                ports,
            },
        )
    };
    if let Some(timeout) = timeout {
        config.timeout = timeout;
    }
    let store = crate::store::RedisStore::open(&config, 10, 10).expect("open");
    let shared = store.shared_sessions().expect("redis shares sessions");
    Some((backing, shared))
}

use std::sync::Arc;

/// Every key of every node, with its TTL (ms) and value bytes.
async fn dump(ports: &[u16]) -> Vec<(String, i64, Vec<u8>)> {
    let mut out = Vec::new();
    for port in ports {
        out.extend(dump_node(*port).await);
    }
    out
}

async fn dump_node(port: u16) -> Vec<(String, i64, Vec<u8>)> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("redis");
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut c)
        .await
        .expect("redis");
    let mut out = Vec::new();
    for k in keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&k)
            .query_async(&mut c)
            .await
            .expect("redis");
        let kind: String = redis::cmd("TYPE")
            .arg(&k)
            .query_async(&mut c)
            .await
            .expect("redis");
        let bytes: Vec<u8> = if kind == "hash" {
            let v: Vec<Vec<u8>> = redis::cmd("HGETALL")
                .arg(&k)
                .query_async(&mut c)
                .await
                .expect("redis");
            v.concat()
        } else {
            redis::cmd("GET")
                .arg(&k)
                .query_async(&mut c)
                .await
                .expect("redis")
        };
        out.push((k, ttl, bytes));
    }
    out
}

#[tokio::test]
async fn issue_12_shared_sessions_round_trip_sealed_with_ttls() {
    round_trip("issue_12_shared_sessions_round_trip", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_shared_sessions_round_trip_sealed_with_ttls_on_a_cluster() {
    round_trip("issue_12_shared_sessions_round_trip_on_a_cluster", true).await;
}

async fn round_trip(test: &str, cluster: bool) {
    let Some((backing, s)) = engine(test, cluster).await else {
        return;
    };
    let now = now_unix();
    s.save(&record(now, RT)).await.expect("saved");
    let found = s
        .by_refresh(key_of(RT))
        .await
        .expect("read")
        .expect("found");
    assert_eq!(found.sub, "alice-CLEAR");
    assert_eq!(found.refresh_token.as_ref().map(|t| t.expose()), Some(RT));
    assert_eq!(
        found.id_token.as_ref().map(|t| t.expose()),
        Some("id-token-CLEAR")
    );
    assert!(
        s.by_refresh(key_of("unknown"))
            .await
            .expect("read")
            .is_none()
    );

    // Rotated: the old token still finds the session, whose current token is the new one.
    s.save(&record(now, RT2)).await.expect("saved");
    let old = s
        .by_refresh(key_of(RT))
        .await
        .expect("read")
        .expect("found");
    assert_eq!(old.refresh_token.as_ref().map(|t| t.expose()), Some(RT2));

    // Last-seen moves forward, never back, and never creates a record.
    s.seen(vec![("sid-CLEAR-42".into(), now + 7), ("gone".into(), now)])
        .await
        .expect("seen");
    s.seen(vec![("sid-CLEAR-42".into(), now + 3)])
        .await
        .expect("seen");
    let listed = s.list().await.expect("listed");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_seen, now + 7);

    // The refresh lock: one holder; the outcome shared.
    assert!(
        s.lock_refresh(key_of(RT2), Duration::from_secs(5))
            .await
            .expect("lock")
    );
    assert!(
        !s.lock_refresh(key_of(RT2), Duration::from_secs(5))
            .await
            .expect("lock")
    );
    let outcome = RefreshOutcome::Tokens {
        access_token: Secret::new("access-CLEAR"),
        refresh_token: Some(Secret::new("refresh-NEXT-CLEAR")),
        id_token: None,
    };
    s.publish_outcome(key_of(RT2), &outcome, Duration::from_secs(5))
        .await
        .expect("published");
    match s.outcome(key_of(RT2)).await.expect("read") {
        Some(RefreshOutcome::Tokens { access_token, .. }) => {
            assert_eq!(access_token.expose(), "access-CLEAR")
        }
        other => panic!("outcome {other:?}"),
    }

    let secrets = [
        RT,
        RT2,
        "sid-CLEAR",
        "alice",
        "id-token-CLEAR",
        "access-CLEAR",
        "refresh-NEXT-CLEAR",
    ];
    let all = dump(&backing.ports).await;
    assert!(all.len() >= 5, "{all:?}");
    for (key, ttl, value) in &all {
        assert!(*ttl > 0, "{key} has no TTL ({ttl})");
        let text = String::from_utf8_lossy(value);
        for secret in secrets {
            assert!(
                !key.contains(secret) && !text.contains(secret),
                "{key} shows {secret}"
            );
        }
    }

    s.unlock_refresh(key_of(RT2)).await.expect("unlock");
    assert!(
        s.lock_refresh(key_of(RT2), Duration::from_millis(50))
            .await
            .expect("lock")
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(
        s.lock_refresh(key_of(RT2), Duration::from_secs(1))
            .await
            .expect("lock"),
        "a dead holder's lock expires"
    );

    s.remove("sid-CLEAR-42").await.expect("removed");
    assert!(s.by_key("sid-CLEAR-42").await.expect("read").is_none());
    assert!(s.by_refresh(key_of(RT2)).await.expect("read").is_none());
}

#[tokio::test]
async fn issue_12_shared_sessions_answer_unavailable_without_redis() {
    unavailable("issue_12_shared_sessions_answer_unavailable", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_shared_sessions_answer_unavailable_without_the_cluster() {
    unavailable("issue_12_shared_sessions_answer_unavailable_cluster", true).await;
}

async fn unavailable(test: &str, cluster: bool) {
    let Some((backing, s)) = engine(test, cluster).await else {
        return;
    };
    drop(backing);
    let started = std::time::Instant::now();
    assert!(s.by_refresh(key_of(RT)).await.is_err());
    assert!(
        s.lock_refresh(key_of(RT), Duration::from_secs(1))
            .await
            .is_err()
    );
    assert!(started.elapsed() < Duration::from_secs(5), "bounded");
}

/// `record` under another registry key, user and refresh token.
fn other_record(now: i64, key: &str, rt: &str) -> SessionRecord {
    SessionRecord {
        key: key.into(),
        sid: Some(key.into()),
        sub: format!("user-of-{key}"),
        refresh_token: Some(Secret::new(rt)),
        ..record(now, rt)
    }
}

/// Issue #8 (mutation testing): the round trip above holds one session, so it passed with
/// every session stored under one record; here two live side by side, each found by its own
/// key and refresh token, and one removed leaves the other; and two refresh tokens have a
/// lock and an outcome each.
#[tokio::test]
async fn issue_8_two_sessions_keep_their_own_records() {
    let Some((_backing, s)) = engine("issue_8_two_sessions_keep_their_own_records", false).await
    else {
        return;
    };
    let now = now_unix();
    s.save(&other_record(now, "sid-A", "rt-A"))
        .await
        .expect("saved");
    s.save(&other_record(now, "sid-B", "rt-B"))
        .await
        .expect("saved");
    for key in ["sid-A", "sid-B"] {
        let found = s.by_key(key).await.expect("read").expect("found");
        assert_eq!(found.sub, format!("user-of-{key}"));
    }
    let b = s
        .by_refresh(key_of("rt-B"))
        .await
        .expect("read")
        .expect("found");
    assert_eq!(b.key, "sid-B");
    let mut listed: Vec<String> = s
        .list()
        .await
        .expect("listed")
        .into_iter()
        .map(|i| i.sub)
        .collect();
    listed.sort();
    assert_eq!(listed, ["user-of-sid-A", "user-of-sid-B"]);
    s.remove("sid-A").await.expect("removed");
    assert!(s.by_key("sid-A").await.expect("read").is_none());
    assert!(s.by_key("sid-B").await.expect("read").is_some());

    // Each refresh token has its own lock and its own published outcome.
    let hold = Duration::from_secs(5);
    assert!(s.lock_refresh(key_of("rt-A"), hold).await.expect("lock"));
    assert!(
        s.lock_refresh(key_of("rt-B"), hold).await.expect("lock"),
        "another token's lock is free"
    );
    s.publish_outcome(key_of("rt-A"), &RefreshOutcome::NoSession, hold)
        .await
        .expect("published");
    assert!(s.outcome(key_of("rt-B")).await.expect("read").is_none());
}

/// Issue #8 (mutation testing): each key's lifetime, not just "some TTL" — a session's record
/// and its refresh token's index live until the later of its two expiries plus
/// [`KEEP_AFTER`], the refresh lock for its hold, a published outcome for its keep.
#[tokio::test]
async fn issue_8_each_key_lives_as_long_as_it_should() {
    let Some((backing, s)) = engine("issue_8_each_key_lives_as_long_as_it_should", false).await
    else {
        return;
    };
    let now = now_unix();
    // The access token outliving the refresh token (a short refresh lifetime).
    let long_access = SessionRecord {
        access_expires: now + 7200,
        refresh_expires: now + 3600,
        ..other_record(now, "sid-A", "rt-A")
    };
    s.save(&long_access).await.expect("saved");
    s.save(&other_record(now, "sid-B", "rt-B"))
        .await
        .expect("saved");
    assert!(
        s.lock_refresh(key_of("rt-B"), Duration::from_secs(5))
            .await
            .expect("lock")
    );
    s.publish_outcome(
        key_of("rt-B"),
        &RefreshOutcome::NoSession,
        Duration::from_secs(9),
    )
    .await
    .expect("published");

    let all = dump(&backing.ports).await;
    let ttl_of = |suffix: String| {
        all.iter()
            .find(|(k, _, _)| k.ends_with(&suffix))
            .unwrap_or_else(|| panic!("no key ends with {suffix}: {all:?}"))
            .1
    };
    let within = |ttl: i64, secs: i64| {
        // Whole seconds, read a moment after the save.
        assert!(
            (secs - 3) * 1000 < ttl && ttl <= secs * 1000,
            "TTL {ttl} ms, expected about {secs} s"
        );
    };
    within(
        ttl_of(format!("sess:{{{}}}", session_hash("sid-A"))),
        7200 + KEEP_AFTER,
    );
    within(
        ttl_of(format!("sessrt:{{{}}}", hex(&key_of("rt-A")))),
        7200 + KEEP_AFTER,
    );
    within(
        ttl_of(format!("sess:{{{}}}", session_hash("sid-B"))),
        3600 + KEEP_AFTER,
    );
    within(
        ttl_of(format!("sessrt:{{{}}}", hex(&key_of("rt-B")))),
        3600 + KEEP_AFTER,
    );
    within(ttl_of(format!("rflock:{{{}}}", hex(&key_of("rt-B")))), 5);
    within(ttl_of(format!("rfres:{{{}}}", hex(&key_of("rt-B")))), 9);
}

/// Issue #8 (mutation testing): the listing walks every `SCAN` batch of the node (2,500
/// sessions; one batch is about 1,000 keys).
#[tokio::test]
async fn issue_8_the_session_listing_walks_every_scan_batch() {
    // Puts 100 at a time, each bounded by 30 s: a loaded machine is not a failure here.
    let test = "issue_8_the_session_listing_walks_every_scan_batch";
    let Some((_backing, s)) = engine_with(test, false, Some(Duration::from_secs(30))).await else {
        return;
    };
    let now = now_unix();
    let records: Vec<SessionRecord> = (0..2500)
        .map(|i| other_record(now, &format!("sid-{i}"), &format!("rt-{i}")))
        .collect();
    for batch in records.chunks(100) {
        try_join_all(batch.iter().map(|r| s.save(r)))
            .await
            .expect("saved");
    }
    let listed = s.list().await.expect("listed");
    let distinct: std::collections::HashSet<String> = listed.into_iter().map(|i| i.sub).collect();
    assert_eq!(distinct.len(), 2500);
}
