//! The shared sessions against a real `redis-server` (skipped loudly without one, as the
//! conformance suite is): records round-trip sealed, keys and values show no secret, every key
//! expires, the refresh lock is single-holder and expires, last-seen never creates a key.

use super::*;
use crate::store::conformance::{RedisServer, redis_config};
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

async fn engine(test: &str) -> Option<(RedisServer, Arc<dyn SharedSessions>)> {
    let server = RedisServer::start(test)?;
    let store = crate::store::RedisStore::open(&redis_config(server.port), 10, 10).expect("open");
    let shared = store.shared_sessions().expect("redis shares sessions");
    Some((server, shared))
}

use std::sync::Arc;

async fn dump(port: u16) -> Vec<(String, i64, Vec<u8>)> {
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
    let Some((server, s)) = engine("issue_12_shared_sessions_round_trip").await else {
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
    let all = dump(server.port).await;
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
    let Some((server, s)) = engine("issue_12_shared_sessions_answer_unavailable").await else {
        return;
    };
    drop(server);
    let started = std::time::Instant::now();
    assert!(s.by_refresh(key_of(RT)).await.is_err());
    assert!(
        s.lock_refresh(key_of(RT), Duration::from_secs(1))
            .await
            .is_err()
    );
    assert!(started.elapsed() < Duration::from_secs(5), "bounded");
}
