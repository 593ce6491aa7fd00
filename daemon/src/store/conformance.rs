//! The one test suite every engine passes (issue #12): single use under concurrency, expiry
//! checked before removal, replay told from unknown, capacity, TTLs, records coming back
//! whole. Run against the memory engine always, and against Redis when `redis-server` is
//! installed: a throwaway server on a free loopback port, and a throwaway Redis Cluster of
//! three masters (`store.cluster = true`, with `redis-cli` to join them), both from
//! `test_redis`; without them the Redis halves say SKIP loudly, and fail under CI.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokend_shared::Secret;

use super::test_redis::{RedisCluster, RedisServer, free_port, redis_config};
use super::*;

/// A store under test, and what keeps its engine alive.
struct Engine {
    store: Arc<dyn Store>,
    _server: Option<RedisServer>,
    /// The cluster behind a cluster engine: alive as long as the store, asked where keys went.
    cluster: Option<RedisCluster>,
}

/// The Redis engines run without their monitor: the suite asserts exact counts, which the
/// monitor's `SCAN` running beside a test's puts would race (`RedisStore::open_unmonitored`).
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
        let store =
            RedisStore::open_unmonitored(&redis_config(server.port), max_codes, 100).expect("open");
        store.refresh().await;
        Some(Self {
            store: Arc::new(store),
            _server: Some(server),
            cluster: None,
        })
    }

    async fn cluster(test: &str, max_codes: usize) -> Option<Self> {
        let cluster = RedisCluster::start(test)?;
        let store = RedisStore::open_unmonitored(&cluster.config(), max_codes, 100).expect("open");
        store.refresh().await;
        Some(Self {
            store: Arc::new(store),
            _server: None,
            cluster: Some(cluster),
        })
    }
}

pub(super) fn now() -> i64 {
    crate::verify::now_unix()
}

pub(super) fn code(created: i64, expires: i64) -> Record {
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

pub(super) fn login(created: i64, expires: i64) -> Record {
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
