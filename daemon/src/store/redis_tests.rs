//! The Redis engine's own behaviour (issue #8, from mutation testing), beyond the suite every
//! engine passes (`conformance`): login admission and TTLs, the code listing and count, the
//! sealed records' binding to their keys, key prefixes, and the engine's health — each against
//! a throwaway `redis-server` (or cluster) from `test_redis`.

use std::time::{Duration, Instant};

use super::conformance::{code, login, now};
use super::test_redis::{RedisCluster, RedisServer, cli, redis_config};
use super::*;

/// A throwaway Redis and a store on it without the monitor (the tests count exactly; see
/// `RedisStore::open_unmonitored`), or `None` after a loud skip without `redis-server`.
fn single(test: &str, max_codes: usize, max_logins: usize) -> Option<(RedisServer, RedisStore)> {
    let server = RedisServer::start(test)?;
    let config = redis_config(server.port);
    let store = RedisStore::open_unmonitored(&config, max_codes, max_logins).expect("open");
    Some((server, store))
}

/// A plain connection to `server`, to look at or change what the store wrote.
async fn raw(server: &RedisServer) -> ::redis::aio::MultiplexedConnection {
    ::redis::Client::open(format!("redis://127.0.0.1:{}/", server.port))
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

/// Issue #8 (mutation testing): a new login state is counted in at its creation time, so the
/// states already expired by then leave the count first and are not reported as evictions
/// (the memory engine drops them in its sweep instead); and a record's Redis TTL is its own
/// lifetime plus [`EXPIRED_MEMORY`], not a lifetime counted from the epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_expired_login_states_leave_without_an_eviction_and_ttls_are_lifetimes() {
    let test = "issue_8_expired_login_states_leave_without_an_eviction_and_ttls_are_lifetimes";
    let Some((server, store)) = single(test, 10, 2) else {
        return;
    };
    let t = now();
    for (i, name) in ["old-1", "old-2"].iter().enumerate() {
        let stored = store
            .put(
                Kind::LoginState,
                key_of(name),
                login(t - 20, t - 10 + i as i64),
            )
            .await
            .expect("stored");
        assert_eq!(stored.evicted, 0, "{name}");
    }
    for name in ["new-1", "new-2"] {
        let stored = store
            .put(Kind::LoginState, key_of(name), login(t, t + 100))
            .await
            .expect("stored");
        assert_eq!(stored.evicted, 0, "{name}: the expired states made room");
    }
    let stored = store
        .put(Kind::LoginState, key_of("new-3"), login(t, t + 101))
        .await
        .expect("stored");
    assert_eq!(stored.evicted, 1, "two live states: the oldest makes room");

    store
        .put(Kind::ExchangeCode, key_of("code"), code(t, t + 60))
        .await
        .expect("stored");
    let mut conn = raw(&server).await;
    let names: Vec<String> = ::redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    let mut checked = 0;
    for name in names.iter().filter(|n| !n.contains("logins")) {
        let ttl: i64 = ::redis::cmd("PTTL")
            .arg(name)
            .query_async(&mut conn)
            .await
            .expect("PTTL");
        let most = (160 + EXPIRED_MEMORY) * 1000;
        assert!(
            ttl > 0 && ttl <= most,
            "{name}: PTTL {ttl} ms, at most {most}"
        );
        checked += 1;
    }
    assert!(checked >= 4, "records checked: {names:?}");
}

/// Issue #8 (mutation testing): the admin API's code listing in Redis mode names each
/// outstanding code by its key (read back from the Redis key name), kind, `sub` and times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_outstanding_codes_are_listed_by_their_keys() {
    let test = "issue_8_outstanding_codes_are_listed_by_their_keys";
    let Some((_server, store)) = single(test, 10, 10) else {
        return;
    };
    let t = now();
    for name in ["code-a", "code-b"] {
        store
            .put(Kind::ExchangeCode, key_of(name), code(t, t + 60))
            .await
            .expect("stored");
    }
    store.refresh().await;
    let mut listed: Vec<(Key, CodeKind, String, i64, i64)> = store
        .list_codes()
        .into_iter()
        .map(|c| (c.key, c.kind, c.sub, c.created, c.expires))
        .collect();
    listed.sort_by_key(|l| l.0);
    let mut expected: Vec<_> = ["code-a", "code-b"]
        .iter()
        .map(|n| (key_of(n), CodeKind::Api, "alice".to_owned(), t, t + 60))
        .collect();
    expected.sort_by_key(|l| l.0);
    assert_eq!(listed, expected);
}

/// Issue #8 (mutation testing): the count of outstanding codes (the admin overview's, and
/// what capacity is checked against) drops when a code is redeemed, not when an unknown key is
/// asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_an_unknown_key_leaves_the_code_count_alone() {
    let test = "issue_8_an_unknown_key_leaves_the_code_count_alone";
    let Some((_server, store)) = single(test, 10, 10) else {
        return;
    };
    let t = now();
    let k = key_of("code");
    store
        .put(Kind::ExchangeCode, k, code(t, t + 60))
        .await
        .expect("stored");
    store.refresh().await;
    assert_eq!(store.outstanding(Kind::ExchangeCode), 1);
    assert_eq!(
        store
            .take(Kind::ExchangeCode, key_of("never-minted"), t)
            .await
            .err(),
        Some(TakeError::Unknown)
    );
    assert_eq!(
        store.outstanding(Kind::ExchangeCode),
        1,
        "nothing was taken"
    );
    assert!(store.take(Kind::ExchangeCode, k, t).await.is_ok());
    assert_eq!(store.outstanding(Kind::ExchangeCode), 0);
}

/// Issue #8 (mutation testing): a sealed record opens only under the Redis key and the expiry
/// it was sealed with — copied to another code's key, or with its clear expiry moved later in
/// place, it does not open (the take finds nothing usable), while an untouched one does. And
/// the sweeper counts nothing in Redis, which expires records itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_a_record_copied_to_another_key_or_expiry_does_not_open() {
    let test = "issue_8_a_record_copied_to_another_key_or_expiry_does_not_open";
    let Some((server, store)) = single(test, 10, 10) else {
        return;
    };
    let t = now();
    let (altered, moved, untouched) = (key_of("altered"), key_of("moved"), key_of("untouched"));
    for key in [altered, untouched] {
        store
            .put(Kind::ExchangeCode, key, code(t, t + 60))
            .await
            .expect("stored");
    }
    let name = |k: &Key| format!("tokend:code:{{{}}}", redis::hex(k));
    let mut conn = raw(&server).await;
    let copied: bool = ::redis::cmd("COPY")
        .arg(name(&altered))
        .arg(name(&moved))
        .query_async(&mut conn)
        .await
        .expect("COPY");
    assert!(copied);
    let _: () = ::redis::cmd("HSET")
        .arg(name(&altered))
        .arg("e")
        .arg(t + 3600)
        .query_async(&mut conn)
        .await
        .expect("HSET");
    for (key, what) in [
        (moved, "copied to another key"),
        (altered, "given a later expiry"),
    ] {
        assert_eq!(
            store.take(Kind::ExchangeCode, key, t).await.err(),
            Some(TakeError::Unknown),
            "a record {what} does not open"
        );
    }
    assert!(store.take(Kind::ExchangeCode, untouched, t).await.is_ok());
    assert_eq!(store.sweep(t + 3600), 0, "Redis expires its records itself");
}

/// Issue #8 (mutation testing): the count of outstanding records walks every `SCAN` batch
/// (1,000 keys a call), not only the first; the code listing stops at its cap, also within a
/// batch — 7,500 other keys beside the codes make each batch hold about 250 codes, so the
/// cap falls inside one (with codes alone the first batch held exactly 1,000, and a listing
/// one longer went unseen).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_the_count_walks_every_scan_batch() {
    let test = "issue_8_the_count_walks_every_scan_batch";
    let Some(server) = RedisServer::start(test) else {
        return;
    };
    // 2,500 puts, 100 at a time, with room for a loaded machine (the default timeout is
    // 500 ms).
    let config = StoreConfig {
        timeout: Duration::from_secs(30),
        ..redis_config(server.port)
    };
    let store = RedisStore::open_unmonitored(&config, 5_000, 10).expect("open");
    let mut conn = raw(&server).await;
    for chunk in 0..75 {
        let mut pipe = ::redis::pipe();
        for i in 0..100 {
            pipe.cmd("SET")
                .arg(format!("other:{chunk}-{i}"))
                .arg(1)
                .ignore();
        }
        pipe.query_async::<()>(&mut conn).await.expect("filler");
    }
    let t = now();
    for batch in 0..25 {
        let puts = (0..100).map(|i| {
            let key = key_of(&format!("code-{batch}-{i}"));
            store.put(Kind::ExchangeCode, key, code(t, t + 60))
        });
        for stored in futures_util::future::join_all(puts).await {
            stored.expect("stored");
        }
    }
    store.refresh().await;
    assert_eq!(store.outstanding(Kind::ExchangeCode), 2_500);
    assert_eq!(store.list_codes().len(), 1_000, "the admin listing's cap");
}

/// Issue #8 (mutation testing): a login state put again under a key already used (its
/// tombstone still there) is refused and not counted: it takes no place from the next login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_a_refused_login_state_takes_no_place() {
    let test = "issue_8_a_refused_login_state_takes_no_place";
    let Some((_server, store)) = single(test, 10, 1) else {
        return;
    };
    let t = now();
    let used = key_of("used");
    store
        .put(Kind::LoginState, used, login(t, t + 100))
        .await
        .expect("stored");
    assert!(store.take(Kind::LoginState, used, t).await.is_ok());
    assert_eq!(
        store
            .put(Kind::LoginState, used, login(t, t + 100))
            .await
            .err(),
        Some(StoreError::Duplicate)
    );
    let stored = store
        .put(Kind::LoginState, key_of("next"), login(t, t + 100))
        .await
        .expect("stored");
    assert_eq!(stored.evicted, 0, "the one place is free");
}

/// Issue #8 (mutation testing): deployments with different `key_prefix`es share one Redis
/// and nothing else — not even the count of login states in progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_deployments_with_different_prefixes_share_nothing() {
    let test = "issue_8_deployments_with_different_prefixes_share_nothing";
    let Some(server) = RedisServer::start(test) else {
        return;
    };
    let open = |prefix: &str| {
        let config = StoreConfig {
            key_prefix: prefix.into(),
            ..redis_config(server.port)
        };
        RedisStore::open(&config, 10, 1).expect("open")
    };
    let (a, b) = (open("app-a:"), open("app-b:"));
    let t = now();
    for (store, name) in [(&a, "state-a"), (&b, "state-b")] {
        let stored = store
            .put(Kind::LoginState, key_of(name), login(t, t + 100))
            .await
            .expect("stored");
        assert_eq!(
            stored.evicted, 0,
            "{name}: each deployment has its one place"
        );
    }
    assert!(a.take(Kind::LoginState, key_of("state-a"), t).await.is_ok());
    assert_eq!(
        a.take(Kind::LoginState, key_of("state-b"), t).await.err(),
        Some(TakeError::Unknown),
        "another deployment's state is not this one's"
    );
    assert!(b.take(Kind::LoginState, key_of("state-b"), t).await.is_ok());
}

/// Waits until the store's health is `healthy` with an error containing `why` (the monitor
/// checks every [`MONITOR_INTERVAL`]); returns the error.
async fn health_becomes(store: &RedisStore, healthy: bool, why: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = store.health();
        let error = health.error.unwrap_or_default();
        if health.healthy == healthy && error.contains(why) {
            return error;
        }
        assert!(
            Instant::now() < deadline,
            "health never became {healthy} with {why:?}: {error:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Issue #8 (mutation testing): on a single Redis the monitor checks unasked, a call that
/// succeeds marks the engine healthy at once (it need not wait for the monitor's next check)
/// and one that fails says why, even when the engine was already down for another reason.
/// Redis ACLs take `PING` (the monitor's check), then `EVALSHA` (a put) away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_a_single_redis_health_follows_the_monitor_and_every_call() {
    let test = "issue_8_a_single_redis_health_follows_the_monitor_and_every_call";
    let Some(server) = RedisServer::start(test) else {
        return;
    };
    let store = RedisStore::open(&redis_config(server.port), 10, 10).expect("open");
    health_becomes(&store, true, "").await;
    cli(server.port, &["ACL", "SETUSER", "default", "-ping"]);
    let checked = health_becomes(&store, false, "'ping'").await;
    let t = now();
    store
        .put(Kind::ExchangeCode, key_of("code-1"), code(t, t + 60))
        .await
        .expect("stored");
    let health = store.health();
    assert!(
        health.healthy,
        "after a successful put (the monitor said {checked:?}): {:?}",
        health.error
    );
    cli(
        server.port,
        &["ACL", "SETUSER", "default", "-evalsha", "-eval"],
    );
    health_becomes(&store, false, "'ping'").await;
    let failed = store
        .put(Kind::ExchangeCode, key_of("code-2"), code(t, t + 60))
        .await;
    assert!(
        matches!(failed, Err(StoreError::Unavailable(_))),
        "{failed:?}"
    );
    let error = store.health().error.unwrap_or_default();
    assert!(
        error.contains("'evalsha'") || error.contains("'eval'"),
        "the failed put's reason replaces the monitor's: {error}"
    );
}

/// Issue #8 (mutation testing): in a cluster the monitor's reason stands — a call that
/// succeeds does not mark the engine healthy while the monitor finds a node failing its check
/// (here one master whose ACL takes `PING` away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_a_cluster_stays_down_while_a_node_fails_the_monitor_s_check() {
    let test = "issue_8_a_cluster_stays_down_while_a_node_fails_the_monitor_s_check";
    let Some(cluster) = RedisCluster::start(test) else {
        return;
    };
    let store = RedisStore::open(&cluster.config(), 10, 10).expect("open");
    store.refresh().await;
    health_becomes(&store, true, "").await;
    cli(cluster.ports()[1], &["ACL", "SETUSER", "default", "-ping"]);
    store.refresh().await;
    let checked = health_becomes(&store, false, "'ping'").await;
    let t = now();
    for i in 0..6 {
        store
            .put(
                Kind::ExchangeCode,
                key_of(&format!("code-{i}")),
                code(t, t + 60),
            )
            .await
            .expect("stored on the masters that answer");
    }
    let health = store.health();
    assert!(
        !health.healthy && health.error.as_deref() == Some(checked.as_str()),
        "the monitor said {checked:?}; after the puts: {health:?}"
    );
}

/// Issue #8 (mutation testing): a `store.tls_ca_file` that holds no certificate is reported as
/// that file's fault, for a cluster's seeds as for one server — not as a bad `store.url` (a
/// cluster's was, before this test); a bad seed URL is still the URL's fault.
#[tokio::test]
async fn issue_8_an_unusable_ca_file_is_blamed_for_a_cluster_too() {
    for (cluster, seed, blamed) in [
        (false, "rediss://127.0.0.1:6391", "store.tls_ca_file: "),
        (true, "rediss://127.0.0.1:6391", "store.tls_ca_file: "),
        (true, "rediss://127.0.0.1:notaport", "store.url: "),
    ] {
        let config = StoreConfig {
            cluster,
            url: Some("rediss://127.0.0.1:6390".into()),
            cluster_urls: vec![seed.into()],
            tls_ca: Some(
                b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".to_vec(),
            ),
            ..redis_config(6390)
        };
        match RedisStore::open(&config, 10, 10) {
            Err(e) => assert!(
                e.to_string().starts_with(blamed),
                "cluster {cluster}, seed {seed}: {e}"
            ),
            Ok(_) => panic!("cluster {cluster}, seed {seed}: opened"),
        }
    }
}

/// Issue #8 (mutation testing): a connection reports the database `store.url` selects (the
/// `ConnectionLike` contract; the crate's own calls do not read it), and so does the single
/// server's one node. Connects nothing.
#[tokio::test]
async fn issue_8_a_connection_reports_the_database_of_its_url() {
    use ::redis::aio::ConnectionLike;
    let config = StoreConfig {
        url: Some("redis://127.0.0.1:6390/3".into()),
        ..redis_config(6390)
    };
    let conn = redis_conn::Conn::open(&config).expect("open");
    assert_eq!(conn.get_db(), 3);
    let nodes = conn.nodes().await.expect("a single server is its own node");
    assert_eq!(nodes.len(), 1);
    assert_eq!(nodes[0].get_db(), 3);
}
