//! The one test suite every engine passes (issue #12): single use under concurrency, expiry
//! checked before removal, replay told from unknown, capacity, TTLs, records coming back
//! whole. Run against the memory engine always, and against Redis when `redis-server` is
//! installed: a throwaway server on a free loopback port, and a throwaway Redis Cluster of
//! three masters (`store.cluster = true`, with `redis-cli` to join them), both from
//! `test_redis`; without them the Redis halves say SKIP loudly, and fail under CI.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokend_shared::Secret;

use super::test_redis::{RedisCluster, RedisServer, cli, free_port, redis_config};
use super::*;

/// A store under test, and what keeps its engine alive.
struct Engine {
    store: Arc<dyn Store>,
    _server: Option<RedisServer>,
    /// The cluster behind a cluster engine: alive as long as the store, asked where keys went.
    cluster: Option<RedisCluster>,
}

impl Engine {
    fn memory(max_codes: usize) -> Self {
        Self {
            store: Arc::new(MemoryStore::new(max_codes, 100)),
            _server: None,
            cluster: None,
        }
    }

    async fn redis(test: &str, max_codes: usize) -> Option<Self> {
        let server = RedisServer::start(test)?;
        let store = RedisStore::open(&redis_config(server.port), max_codes, 100).expect("open");
        store.refresh().await;
        Some(Self {
            store: Arc::new(store),
            _server: Some(server),
            cluster: None,
        })
    }

    async fn cluster(test: &str, max_codes: usize) -> Option<Self> {
        let cluster = RedisCluster::start(test)?;
        let store = RedisStore::open(&cluster.config(), max_codes, 100).expect("open");
        store.refresh().await;
        Some(Self {
            store: Arc::new(store),
            _server: None,
            cluster: Some(cluster),
        })
    }
}

fn now() -> i64 {
    crate::verify::now_unix()
}

fn code(created: i64, expires: i64) -> Record {
    Record::Code(CodePayload {
        access_token: Secret::new("at-1"),
        refresh_token: Some(Secret::new("rt-1")),
        id_token: Some(Secret::new("id-1")),
        sub: "alice".into(),
        sid: Some("sid-1".into()),
        created,
        expires,
        kind: CodeKind::Api,
    })
}

fn login(created: i64, expires: i64) -> Record {
    Record::Login(LoginState {
        nonce: Secret::new("nonce"),
        pkce_verifier: Secret::new("verifier"),
        redirect: "/after".into(),
        browser: [9; 32],
        created,
        expires,
    })
}

async fn issue_12_exactly_one_of_many_concurrent_takes_wins(e: &Engine) {
    let t = now();
    let k = key_of("contested");
    e.store
        .put(Kind::ExchangeCode, k, code(t, t + 100))
        .await
        .expect("stored");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let s = e.store.clone();
        tasks.spawn(async move { s.take(Kind::ExchangeCode, k, t + 1).await });
    }
    let (mut wins, mut used) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        match r.expect("joined") {
            Ok(_) => wins += 1,
            Err(TakeError::AlreadyUsed) => used += 1,
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!((wins, used), (1, 63));
}

async fn issue_12_records_come_back_whole(e: &Engine) {
    let t = now();
    e.store
        .put(Kind::ExchangeCode, key_of("c"), code(t, t + 100))
        .await
        .expect("stored");
    e.store
        .put(Kind::LoginState, key_of("l"), login(t, t + 100))
        .await
        .expect("stored");
    match e.store.take(Kind::ExchangeCode, key_of("c"), t).await {
        Ok(Record::Code(c)) => {
            assert_eq!(c.access_token.expose(), "at-1");
            assert_eq!(c.refresh_token.as_ref().map(Secret::expose), Some("rt-1"));
            assert_eq!(c.id_token.as_ref().map(Secret::expose), Some("id-1"));
            assert_eq!((c.sub.as_str(), c.sid.as_deref()), ("alice", Some("sid-1")));
            assert_eq!((c.created, c.expires, c.kind), (t, t + 100, CodeKind::Api));
        }
        other => panic!("{other:?}"),
    }
    match e.store.take(Kind::LoginState, key_of("l"), t).await {
        Ok(Record::Login(l)) => {
            assert_eq!(l.nonce.expose(), "nonce");
            assert_eq!(l.pkce_verifier.expose(), "verifier");
            assert_eq!((l.redirect.as_str(), l.browser), ("/after", [9; 32]));
        }
        other => panic!("{other:?}"),
    }
}

async fn issue_12_expiry_is_checked_before_removal(e: &Engine) {
    let t = now();
    let k = key_of("late");
    e.store
        .put(Kind::ExchangeCode, k, code(t, t + 10))
        .await
        .expect("stored");
    assert_eq!(
        e.store.take(Kind::ExchangeCode, k, t + 10).await.err(),
        Some(TakeError::Expired)
    );
    assert_eq!(
        e.store.take(Kind::ExchangeCode, k, t + 11).await.err(),
        Some(TakeError::Unknown),
        "an expired record is gone, and said so once"
    );
}

async fn issue_12_a_replay_is_told_from_an_unknown_key(e: &Engine) {
    let t = now();
    let k = key_of("once");
    e.store
        .put(Kind::ExchangeCode, k, code(t, t + 100))
        .await
        .expect("stored");
    assert_eq!(e.store.outstanding(Kind::ExchangeCode), 1);
    assert!(e.store.take(Kind::ExchangeCode, k, t).await.is_ok());
    assert_eq!(e.store.outstanding(Kind::ExchangeCode), 0);
    assert_eq!(
        e.store.take(Kind::ExchangeCode, k, t + 1).await.err(),
        Some(TakeError::AlreadyUsed)
    );
    assert_eq!(
        e.store
            .take(Kind::ExchangeCode, key_of("never"), t)
            .await
            .err(),
        Some(TakeError::Unknown)
    );
    assert_eq!(
        e.store.take(Kind::LoginState, k, t).await.err(),
        Some(TakeError::Unknown),
        "kinds are separate"
    );
    assert_eq!(
        e.store
            .put(Kind::ExchangeCode, k, code(t, t + 100))
            .await
            .err(),
        Some(StoreError::Duplicate),
        "a used key is not reissued while remembered"
    );
}

async fn issue_12_codes_beyond_capacity_are_refused(e: &Engine) {
    let t = now();
    for name in ["a", "b"] {
        e.store
            .put(Kind::ExchangeCode, key_of(name), code(t, t + 100))
            .await
            .expect("room");
    }
    assert_eq!(
        e.store
            .put(Kind::ExchangeCode, key_of("c"), code(t, t + 100))
            .await
            .err(),
        Some(StoreError::Full(Kind::ExchangeCode, 2))
    );
    assert!(
        e.store
            .take(Kind::ExchangeCode, key_of("a"), t)
            .await
            .is_ok()
    );
    e.store
        .put(Kind::ExchangeCode, key_of("c"), code(t, t + 100))
        .await
        .expect("room again after a redemption");
    e.store.set_capacity(Kind::ExchangeCode, 3);
    e.store
        .put(Kind::ExchangeCode, key_of("d"), code(t, t + 100))
        .await
        .expect("room after raising the capacity");
}

async fn issue_12_tombstones_last_until_the_record_would_have_expired(e: &Engine) {
    let t = now();
    let k = key_of("short");
    e.store
        .put(Kind::ExchangeCode, k, code(t, t + 1))
        .await
        .expect("stored");
    assert!(e.store.take(Kind::ExchangeCode, k, t).await.is_ok());
    assert_eq!(
        e.store.take(Kind::ExchangeCode, k, t).await.err(),
        Some(TakeError::AlreadyUsed)
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    e.store.sweep(now());
    assert_eq!(
        e.store.take(Kind::ExchangeCode, k, now()).await.err(),
        Some(TakeError::Unknown),
        "the tombstone is forgotten once the code would have expired"
    );
}

async fn issue_12_login_states_beyond_capacity_evict_the_oldest(e: &Engine) {
    let t = now();
    e.store.set_capacity(Kind::LoginState, 2);
    for (i, name) in ["l1", "l2", "l3"].iter().enumerate() {
        let stored = e
            .store
            .put(Kind::LoginState, key_of(name), login(t, t + 100 + i as i64))
            .await
            .expect("stored");
        assert_eq!(stored.evicted, usize::from(i == 2), "{name}");
    }
    assert_eq!(
        e.store.take(Kind::LoginState, key_of("l1"), t).await.err(),
        Some(TakeError::Unknown),
        "the oldest made room"
    );
    for name in ["l2", "l3"] {
        assert!(
            e.store
                .take(Kind::LoginState, key_of(name), t)
                .await
                .is_ok()
        );
    }
    // Taken states free their places.
    for name in ["l4", "l5"] {
        let stored = e
            .store
            .put(Kind::LoginState, key_of(name), login(t, t + 100))
            .await
            .expect("stored");
        assert_eq!(stored.evicted, 0, "{name}");
    }
}

macro_rules! for_every_engine {
    ($($name:ident),* $(,)?) => {
        mod memory_engine {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(&super::Engine::memory(2)).await;
                }
            )*
        }
        mod redis_engine {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(e) = super::Engine::redis(stringify!($name), 2).await {
                        super::$name(&e).await;
                    }
                }
            )*
        }
        mod cluster_engine {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(e) = super::Engine::cluster(stringify!($name), 2).await {
                        super::$name(&e).await;
                    }
                }
            )*
        }
    };
}

for_every_engine!(
    issue_12_exactly_one_of_many_concurrent_takes_wins,
    issue_12_records_come_back_whole,
    issue_12_expiry_is_checked_before_removal,
    issue_12_a_replay_is_told_from_an_unknown_key,
    issue_12_codes_beyond_capacity_are_refused,
    issue_12_tombstones_last_until_the_record_would_have_expired,
    issue_12_login_states_beyond_capacity_evict_the_oldest,
);

/// The cluster runs prove something only if their keys are not all in one master's slots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_the_cluster_run_spreads_its_keys_over_several_masters() {
    let test = "issue_12_the_cluster_run_spreads_its_keys_over_several_masters";
    let Some(e) = Engine::cluster(test, 2).await else {
        return;
    };
    issue_12_codes_beyond_capacity_are_refused(&e).await;
    issue_12_login_states_beyond_capacity_evict_the_oldest(&e).await;
    let cluster = e.cluster.as_ref().expect("a cluster engine");
    let holding = cluster.masters_holding_keys();
    assert!(holding >= 2, "the keys are on {holding} master(s) of 3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_the_login_cap_holds_across_instances() {
    let Some(server) = RedisServer::start("issue_12_the_login_cap_holds_across_instances") else {
        return;
    };
    let a = RedisStore::open(&redis_config(server.port), 10, 3).expect("open");
    let b = RedisStore::open(&redis_config(server.port), 10, 3).expect("open");
    let t = now();
    let mut evicted = 0;
    for i in 0..8 {
        let store = if i % 2 == 0 { &a } else { &b };
        let key = key_of(&format!("state-{i}"));
        evicted += store
            .put(Kind::LoginState, key, login(t, t + 100 + i))
            .await
            .expect("stored")
            .evicted;
    }
    assert_eq!(evicted, 5, "8 states, room for 3 across both instances");
    let mut live = 0;
    for i in 0..8 {
        live += usize::from(
            a.take(Kind::LoginState, key_of(&format!("state-{i}")), t)
                .await
                .is_ok(),
        );
    }
    assert_eq!(live, 3);
}

/// Issue #8 (mutation testing): a new login state is counted in at its creation time, so the
/// states already expired by then leave the count first and are not reported as evictions
/// (the memory engine drops them in its sweep instead); and a record's Redis TTL is its own
/// lifetime plus [`EXPIRED_MEMORY`], not a lifetime counted from the epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_expired_login_states_leave_without_an_eviction_and_ttls_are_lifetimes() {
    let test = "issue_8_expired_login_states_leave_without_an_eviction_and_ttls_are_lifetimes";
    let Some(server) = RedisServer::start(test) else {
        return;
    };
    let store = RedisStore::open(&redis_config(server.port), 10, 2).expect("open");
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
    let client = ::redis::Client::open(format!("redis://127.0.0.1:{}/", server.port)).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
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
    let Some(server) = RedisServer::start(test) else {
        return;
    };
    let store = RedisStore::open(&redis_config(server.port), 10, 10).expect("open");
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
    let Some(server) = RedisServer::start(test) else {
        return;
    };
    let store = RedisStore::open(&redis_config(server.port), 10, 10).expect("open");
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
    let Some(server) = RedisServer::start(test) else {
        return;
    };
    let store = RedisStore::open(&redis_config(server.port), 10, 10).expect("open");
    let t = now();
    let (altered, moved, untouched) = (key_of("altered"), key_of("moved"), key_of("untouched"));
    for key in [altered, untouched] {
        store
            .put(Kind::ExchangeCode, key, code(t, t + 60))
            .await
            .expect("stored");
    }
    let name = |k: &Key| format!("tokend:code:{{{}}}", redis::hex(k));
    let client = ::redis::Client::open(format!("redis://127.0.0.1:{}/", server.port)).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
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
/// (1,000 keys a call), not only the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_the_count_walks_every_scan_batch() {
    let test = "issue_8_the_count_walks_every_scan_batch";
    let Some(server) = RedisServer::start(test) else {
        return;
    };
    let store = Arc::new(RedisStore::open(&redis_config(server.port), 5_000, 10).expect("open"));
    let t = now();
    let puts = (0..2_500).map(|i| {
        let store = store.clone();
        async move {
            store
                .put(
                    Kind::ExchangeCode,
                    key_of(&format!("code-{i}")),
                    code(t, t + 60),
                )
                .await
                .expect("stored");
        }
    });
    futures_util::future::join_all(puts).await;
    store.refresh().await;
    assert_eq!(store.outstanding(Kind::ExchangeCode), 2_500);
}

/// Issue #8 (mutation testing): a login state put again under a key already used (its
/// tombstone still there) is refused and not counted: it takes no place from the next login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_a_refused_login_state_takes_no_place() {
    let test = "issue_8_a_refused_login_state_takes_no_place";
    let Some(server) = RedisServer::start(test) else {
        return;
    };
    let store = RedisStore::open(&redis_config(server.port), 10, 1).expect("open");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_an_unreachable_redis_is_unavailable_within_the_timeout() {
    // A port nobody listens on: every call fails fast, none hangs, none panics.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut config = redis_config(port);
    config.timeout = Duration::from_millis(300);
    let store = RedisStore::open(&config, 10, 10).expect("open needs no connection");
    let started = Instant::now();
    let t = now();
    let put = store
        .put(Kind::ExchangeCode, key_of("x"), code(t, t + 10))
        .await;
    assert!(matches!(put, Err(StoreError::Unavailable(_))), "{put:?}");
    let take = store.take(Kind::ExchangeCode, key_of("x"), t).await;
    assert!(matches!(take, Err(TakeError::Unavailable(_))), "{take:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    let health = store.health();
    assert!(!health.healthy);
    assert!(health.error.is_some_and(|e| !e.contains("11111111")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_a_password_protected_redis_needs_the_password() {
    let test = "issue_12_a_password_protected_redis_needs_the_password";
    let Some(server) = RedisServer::start_with(test, &["--requirepass", "s3cret-pw"]) else {
        return;
    };
    let t = now();
    let mut config = redis_config(server.port);
    let without = RedisStore::open(&config, 10, 10).expect("open");
    let refused = without
        .put(Kind::ExchangeCode, key_of("p"), code(t, t + 10))
        .await;
    match refused {
        Err(StoreError::Unavailable(u)) => assert!(!u.0.contains("s3cret"), "{u}"),
        other => panic!("{other:?}"),
    }
    config.password = Some(Secret::new("s3cret-pw"));
    let with = RedisStore::open(&config, 10, 10).expect("open");
    with.put(Kind::ExchangeCode, key_of("p"), code(t, t + 10))
        .await
        .expect("stored with the password");
    assert!(with.take(Kind::ExchangeCode, key_of("p"), t).await.is_ok());
    assert!(!format!("{with:?}").contains("s3cret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_a_record_sealed_under_another_key_does_not_open() {
    let test = "issue_12_a_record_sealed_under_another_key_does_not_open";
    let Some(server) = RedisServer::start(test) else {
        return;
    };
    let t = now();
    let config = redis_config(server.port);
    let ours = RedisStore::open(&config, 10, 10).expect("open");
    let mut other_key = config.clone();
    other_key.encryption_key = Some(Secret::new("22".repeat(32)));
    let theirs = RedisStore::open(&other_key, 10, 10).expect("open");
    ours.put(Kind::ExchangeCode, key_of("k"), code(t, t + 10))
        .await
        .expect("stored");
    assert_eq!(
        theirs.take(Kind::ExchangeCode, key_of("k"), t).await.err(),
        Some(TakeError::Unknown),
        "nothing usable under the wrong key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_a_silent_redis_is_unavailable_after_the_timeout_not_a_hang() {
    // Something listens (the kernel completes the handshake) but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let mut config = redis_config(port);
    config.timeout = Duration::from_millis(200);
    let store = RedisStore::open(&config, 10, 10).expect("open");
    let t = now();
    let started = Instant::now();
    let take = store.take(Kind::ExchangeCode, key_of("x"), t).await;
    let took = started.elapsed();
    assert!(matches!(take, Err(TakeError::Unavailable(_))), "{take:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_an_unreachable_cluster_says_why_its_seed_fails() {
    // The crate says only "No connections found" once no node is connected: the health check
    // adds what a plain connection to the seed met, and a failing call does not hide it.
    let port = free_port();
    let mut config = redis_config(port);
    config.cluster = true;
    config.timeout = Duration::from_millis(300);
    let store = RedisStore::open(&config, 10, 10).expect("open needs no connection");
    store.refresh().await;
    let seed = format!("seed 127.0.0.1:{port}: connection to Redis refused");
    let health = store.health();
    assert!(!health.healthy);
    assert!(health.error.is_some_and(|e| e.contains(&seed)), "{seed}");
    let t = now();
    let put = store
        .put(Kind::ExchangeCode, key_of("x"), code(t, t + 10))
        .await;
    assert!(matches!(put, Err(StoreError::Unavailable(_))), "{put:?}");
    let error = store.health().error.unwrap_or_default();
    assert!(error.contains(&seed), "{error}");
}
