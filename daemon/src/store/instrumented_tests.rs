//! Issue #8 (mutation testing): the metrics wrapper counts each operation once under its own
//! outcome, times it, counts only `unavailable` as an error, keeps `tokend_store_up` in step
//! with the engine, and hands every other call through unchanged — on the memory engine, and
//! on a real `redis-server` stopped halfway (skipped loudly without one, a failure under CI).

use std::sync::Arc;
use std::time::Duration;

use tokend_shared::Secret;

use super::*;
use crate::metrics::Metrics;
use crate::store::conformance::{code, login, now};
use crate::store::test_redis::{RedisServer, redis_config};
use crate::store::{MemoryStore, RedisStore, key_of};

/// The value of one series in the metrics' text (0 when the series is not there).
fn sample(m: &Metrics, series: &str) -> f64 {
    let text = m.render(0, 0);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().expect("a number"))
}

fn ops(m: &Metrics, engine: &str, op: &str, outcome: &str) -> f64 {
    sample(
        m,
        &format!(
            "tokend_store_operations_total{{engine=\"{engine}\",op=\"{op}\",outcome=\"{outcome}\"}}"
        ),
    )
}

fn errors(m: &Metrics, engine: &str, op: &str) -> f64 {
    sample(
        m,
        &format!("tokend_store_errors_total{{engine=\"{engine}\",op=\"{op}\"}}"),
    )
}

fn timed(m: &Metrics, engine: &str, op: &str) -> f64 {
    sample(
        m,
        &format!(
            "tokend_store_operation_duration_seconds_count{{engine=\"{engine}\",op=\"{op}\"}}"
        ),
    )
}

#[tokio::test]
async fn issue_8_every_put_and_take_is_counted_once_under_its_outcome() {
    let metrics = Metrics::new();
    let inner: Arc<dyn Store> = Arc::new(MemoryStore::new(2, 10));
    let s = Instrumented::new(inner.clone(), metrics.clone());
    let t = now();
    let code_kind = Kind::ExchangeCode;

    // put: stored twice, full once, duplicate once.
    for name in ["a", "b"] {
        s.put(code_kind, key_of(name), code(t, t + 100))
            .await
            .expect("stored");
    }
    assert!(matches!(
        s.put(code_kind, key_of("c"), code(t, t + 100)).await,
        Err(StoreError::Full(..))
    ));
    s.put(Kind::LoginState, key_of("l"), login(t, t + 100))
        .await
        .expect("stored");
    assert_eq!(
        s.put(Kind::LoginState, key_of("l"), login(t, t + 100))
            .await
            .err(),
        Some(StoreError::Duplicate)
    );
    // take: taken, used, unknown, expired (checked at its expiry, and after a sweep).
    s.take(code_kind, key_of("a"), t).await.expect("taken");
    assert_eq!(
        s.take(code_kind, key_of("a"), t).await.err(),
        Some(TakeError::AlreadyUsed)
    );
    assert_eq!(
        s.take(code_kind, key_of("never"), t).await.err(),
        Some(TakeError::Unknown)
    );
    assert_eq!(
        s.take(code_kind, key_of("b"), t + 100).await.err(),
        Some(TakeError::Expired)
    );
    s.put(code_kind, key_of("d"), code(t, t + 1))
        .await
        .expect("stored");
    assert_eq!(s.sweep(t + 1), 1, "the sweep's count comes through");
    assert_eq!(
        s.take(code_kind, key_of("d"), t + 1).await.err(),
        Some(TakeError::ExpiredSwept)
    );

    let m = &metrics;
    for (op, outcome, n) in [
        ("put", "stored", 4.0),
        ("put", "full", 1.0),
        ("put", "duplicate", 1.0),
        ("put", "unavailable", 0.0),
        ("take", "taken", 1.0),
        ("take", "used", 1.0),
        ("take", "unknown", 1.0),
        ("take", "expired", 2.0),
        ("take", "unavailable", 0.0),
    ] {
        assert_eq!(ops(m, "memory", op, outcome), n, "{op} {outcome}");
    }
    assert_eq!(timed(m, "memory", "put"), 6.0);
    assert_eq!(timed(m, "memory", "take"), 5.0);
    // Only an unavailable engine is an error, or takes the store down.
    assert_eq!(errors(m, "memory", "put"), 0.0);
    assert_eq!(errors(m, "memory", "take"), 0.0);
    assert_eq!(sample(m, "tokend_store_up"), 1.0);

    // What is not counted is the engine's own answer.
    assert_eq!(s.kind_name(), "memory");
    assert_eq!(s.outstanding(code_kind), inner.outstanding(code_kind));
    assert_eq!(s.outstanding(Kind::LoginState), 1);
    s.put(code_kind, key_of("e"), code(t, t + 100))
        .await
        .expect("stored");
    assert_eq!(s.outstanding(code_kind), 1);
    assert_eq!(s.list_codes().len(), 1);
    s.set_capacity(code_kind, 1);
    assert!(matches!(
        s.put(code_kind, key_of("f"), code(t, t + 100)).await,
        Err(StoreError::Full(Kind::ExchangeCode, 1))
    ));
    assert!(s.health().healthy);
    assert!(s.shared_sessions().is_none(), "memory shares no sessions");

    // The sweeper brings tokend_store_up back in line with the engine's health.
    metrics.store_up.set(0);
    s.sweep(t);
    assert_eq!(sample(m, "tokend_store_up"), 1.0);
}

fn session(t: i64) -> SessionRecord {
    SessionRecord {
        key: "sid-1".into(),
        sid: Some("sid-1".into()),
        sub: "alice".into(),
        email: None,
        organization_id: None,
        role: "user".into(),
        created: t,
        access_expires: t + 300,
        refresh_expires: t + 3600,
        last_seen: t,
        refresh_token: Some(Secret::new("rt-1")),
        id_token: None,
    }
}

#[tokio::test]
async fn issue_8_an_unavailable_engine_is_counted_as_an_error_and_takes_the_store_down() {
    let test = "issue_8_an_unavailable_engine_is_counted";
    let Some(server) = RedisServer::start(test) else {
        return;
    };
    let mut config = redis_config(server.port);
    config.timeout = Duration::from_secs(2);
    let metrics = Metrics::new();
    let engine = RedisStore::open(&config, 10, 10).expect("open");
    let s = Instrumented::new(Arc::new(engine), metrics.clone());
    let m = &metrics;
    let t = now();
    let rt = key_of("rt-1");

    s.put(Kind::ExchangeCode, key_of("a"), code(t, t + 100))
        .await
        .expect("stored");
    let shared = s.shared_sessions().expect("redis shares sessions");
    shared.save(&session(t)).await.expect("saved");
    assert!(shared.by_refresh(rt).await.expect("read").is_some());
    assert!(shared.by_key("sid-1").await.expect("read").is_some());
    shared
        .seen(vec![("sid-1".into(), t + 1)])
        .await
        .expect("seen");
    assert_eq!(shared.list().await.expect("listed").len(), 1);
    assert!(
        shared
            .lock_refresh(rt, Duration::from_secs(5))
            .await
            .expect("locked")
    );
    shared.unlock_refresh(rt).await.expect("unlocked");
    shared
        .publish_outcome(rt, &RefreshOutcome::NoSession, Duration::from_secs(5))
        .await
        .expect("published");
    assert!(matches!(
        shared.outcome(rt).await.expect("read"),
        Some(RefreshOutcome::NoSession)
    ));
    shared.remove("sid-1").await.expect("removed");
    for (op, n) in [
        ("session_save", 1.0),
        ("session_read", 2.0),
        ("session_seen", 1.0),
        ("session_list", 1.0),
        ("refresh_lock", 2.0),
        ("refresh_outcome", 2.0),
        ("session_remove", 1.0),
    ] {
        assert_eq!(ops(m, "redis", op, "ok"), n, "{op}");
        assert_eq!(timed(m, "redis", op), n, "{op}");
        assert_eq!(errors(m, "redis", op), 0.0, "{op}");
    }
    assert_eq!(sample(m, "tokend_store_up"), 1.0);

    drop(server);
    assert!(matches!(
        s.put(Kind::ExchangeCode, key_of("b"), code(t, t + 100))
            .await,
        Err(StoreError::Unavailable(_))
    ));
    assert_eq!(ops(m, "redis", "put", "unavailable"), 1.0);
    assert_eq!(errors(m, "redis", "put"), 1.0);
    assert_eq!(sample(m, "tokend_store_up"), 0.0);

    // Each failure takes it down again.
    metrics.store_up.set(1);
    assert!(matches!(
        s.take(Kind::ExchangeCode, key_of("a"), t).await,
        Err(TakeError::Unavailable(_))
    ));
    assert_eq!(ops(m, "redis", "take", "unavailable"), 1.0);
    assert_eq!(errors(m, "redis", "take"), 1.0);
    assert_eq!(sample(m, "tokend_store_up"), 0.0);

    metrics.store_up.set(1);
    assert!(shared.by_key("sid-1").await.is_err());
    assert_eq!(ops(m, "redis", "session_read", "unavailable"), 1.0);
    assert_eq!(errors(m, "redis", "session_read"), 1.0);
    assert_eq!(sample(m, "tokend_store_up"), 0.0);

    // The sweeper follows the engine's health, now down.
    metrics.store_up.set(1);
    assert!(!s.health().healthy);
    s.sweep(t);
    assert_eq!(sample(m, "tokend_store_up"), 0.0);
}
