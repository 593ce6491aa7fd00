//! Metrics around any engine: every put and take is counted by outcome and timed, failures of
//! an unavailable engine counted apart, and `tokend_store_up` follows the engine's health.
//! Labels are the engine's name, the operation and the outcome — never a key or a value.

use std::sync::Arc;
use std::time::Instant;

use super::{
    BoxFuture, CodeListing, Key, Kind, Record, Store, StoreError, StoreHealth, Stored, TakeError,
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

    fn shared_sessions(&self) -> Option<Arc<dyn super::SharedSessions>> {
        self.inner.shared_sessions()
    }

    fn health(&self) -> StoreHealth {
        self.inner.health()
    }
}
