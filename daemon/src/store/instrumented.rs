//! Metrics around any engine: every put and take is counted by outcome and timed, failures of
//! an unavailable engine counted apart, and `tokend_store_up` follows the engine's health.
//! Labels are the engine's name, the operation and the outcome — never a key or a value. The
//! engine's shared sessions are counted the same way (`session_*`, `refresh_*` operations,
//! outcome `ok` or `unavailable`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokend_shared::SessionInfo;

use super::{
    BoxFuture, CodeListing, Key, Kind, Record, RefreshOutcome, SessionRecord, SharedSessions,
    Store, StoreError, StoreHealth, Stored, TakeError, Unavailable,
};
use crate::metrics::Metrics;

/// An engine with its metrics.
#[derive(Debug)]
pub struct Instrumented {
    /// The engine doing the work.
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl Instrumented {
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    fn count(&self, op: &str, outcome: &str, started: Instant) {
        let engine = self.inner.kind_name();
        let m = &self.metrics;
        m.store_operations
            .with_label_values(&[engine, op, outcome])
            .inc();
        m.store_duration
            .with_label_values(&[engine, op])
            .observe(started.elapsed().as_secs_f64());
        if outcome == "unavailable" {
            m.store_errors.with_label_values(&[engine, op]).inc();
            m.store_up.set(0);
        } else {
            m.store_up.set(1);
        }
    }
}

impl Store for Instrumented {
    fn put(
        &self,
        kind: Kind,
        key: Key,
        record: Record,
    ) -> BoxFuture<'_, Result<Stored, StoreError>> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.inner.put(kind, key, record).await;
            let outcome = match &result {
                Ok(_) => "stored",
                Err(StoreError::Full(..)) => "full",
                Err(StoreError::Duplicate) => "duplicate",
                Err(StoreError::Unavailable(_)) => "unavailable",
            };
            self.count("put", outcome, started);
            result
        })
    }

    fn take(&self, kind: Kind, key: Key, now: i64) -> BoxFuture<'_, Result<Record, TakeError>> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.inner.take(kind, key, now).await;
            let outcome = match &result {
                Ok(_) => "taken",
                Err(TakeError::Unknown) => "unknown",
                Err(TakeError::Expired | TakeError::ExpiredSwept) => "expired",
                Err(TakeError::AlreadyUsed) => "used",
                Err(TakeError::Unavailable(_)) => "unavailable",
            };
            self.count("take", outcome, started);
            result
        })
    }

    fn outstanding(&self, kind: Kind) -> usize {
        self.inner.outstanding(kind)
    }

    /// Also brings `tokend_store_up` in line with the engine's own checks (the sweeper calls
    /// this every few seconds).
    fn sweep(&self, now: i64) -> usize {
        self.metrics
            .store_up
            .set(i64::from(self.inner.health().healthy));
        self.inner.sweep(now)
    }

    fn set_capacity(&self, kind: Kind, max: usize) {
        self.inner.set_capacity(kind, max);
    }

    fn list_codes(&self) -> Vec<CodeListing> {
        self.inner.list_codes()
    }

    fn kind_name(&self) -> &'static str {
        self.inner.kind_name()
    }

    fn shared_sessions(&self) -> Option<Arc<dyn SharedSessions>> {
        let inner = self.inner.shared_sessions()?;
        Some(Arc::new(Sessions {
            inner,
            store: Instrumented::new(self.inner.clone(), self.metrics.clone()),
        }))
    }

    fn health(&self) -> StoreHealth {
        self.inner.health()
    }
}

/// An engine's shared sessions with their metrics.
#[derive(Debug)]
struct Sessions {
    inner: Arc<dyn SharedSessions>,
    /// Counts as the record store does (same engine label, same `tokend_store_up`).
    store: Instrumented,
}

impl Sessions {
    fn timed<'a, T: Send + 'a>(
        &'a self,
        op: &'static str,
        call: BoxFuture<'a, Result<T, Unavailable>>,
    ) -> BoxFuture<'a, Result<T, Unavailable>> {
        Box::pin(async move {
            let started = Instant::now();
            let result = call.await;
            let outcome = if result.is_ok() { "ok" } else { "unavailable" };
            self.store.count(op, outcome, started);
            result
        })
    }
}

impl SharedSessions for Sessions {
    fn save(&self, record: &SessionRecord) -> BoxFuture<'_, Result<(), Unavailable>> {
        self.timed("session_save", self.inner.save(record))
    }

    fn by_refresh(
        &self,
        refresh: Key,
    ) -> BoxFuture<'_, Result<Option<SessionRecord>, Unavailable>> {
        self.timed("session_read", self.inner.by_refresh(refresh))
    }

    fn by_key<'a>(
        &'a self,
        key: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionRecord>, Unavailable>> {
        self.timed("session_read", self.inner.by_key(key))
    }

    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), Unavailable>> {
        self.timed("session_remove", self.inner.remove(key))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<SessionInfo>, Unavailable>> {
        self.timed("session_list", self.inner.list())
    }

    fn seen(&self, batch: Vec<(String, i64)>) -> BoxFuture<'_, Result<(), Unavailable>> {
        self.timed("session_seen", self.inner.seen(batch))
    }

    fn lock_refresh(
        &self,
        refresh: Key,
        hold: Duration,
    ) -> BoxFuture<'_, Result<bool, Unavailable>> {
        self.timed("refresh_lock", self.inner.lock_refresh(refresh, hold))
    }

    fn unlock_refresh(&self, refresh: Key) -> BoxFuture<'_, Result<(), Unavailable>> {
        self.timed("refresh_lock", self.inner.unlock_refresh(refresh))
    }

    fn publish_outcome<'a>(
        &'a self,
        refresh: Key,
        outcome: &'a RefreshOutcome,
        keep: Duration,
    ) -> BoxFuture<'a, Result<(), Unavailable>> {
        self.timed(
            "refresh_outcome",
            self.inner.publish_outcome(refresh, outcome, keep),
        )
    }

    fn outcome(&self, refresh: Key) -> BoxFuture<'_, Result<Option<RefreshOutcome>, Unavailable>> {
        self.timed("refresh_outcome", self.inner.outcome(refresh))
    }
}

#[cfg(test)]
#[path = "instrumented_tests.rs"]
mod tests;
