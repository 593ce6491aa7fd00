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
    let (config, backing) = if cluster {
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
