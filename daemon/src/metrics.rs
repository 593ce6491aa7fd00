//! Prometheus metrics: one registry of cheap counter, gauge and histogram handles, shared by
//! every component and outliving config reloads; rendered at `GET /metrics`. Labels are fixed
//! vocabularies (results, reasons, steps) — never tokens, codes, users or URLs.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use tokend_shared::Reason;

/// `step` labels of `tokend_login_flow_steps_total` (the flow's steps, `flow/`).
pub const FLOW_STEPS: [&str; 5] = ["login", "callback", "exchange", "refresh", "logout"];
/// `outcome` labels of `tokend_refreshes_total` (`flow::refresh`).
pub const REFRESH_OUTCOMES: [&str; 4] = ["upstream", "coalesced", "failed", "rate_limited"];
/// `reason` labels of `tokend_sessions_ended_total`: one per `sessions::EndReason`.
pub const SESSION_END_REASONS: [&str; 4] = [
    "logout",
    "backchannel_logout",
    "admin_revocation",
    "expired",
];
/// `result` labels of `tokend_authentik_event_polls_total` (`events::fetch::FetchError::label`
/// and `success`).
pub const EVENT_POLL_RESULTS: [&str; 6] = [
    "success",
    "unauthorized",
    "forbidden",
    "http_error",
    "unreachable",
    "invalid",
];
/// `endpoint` labels of `tokend_upstream_request_duration_seconds`.
pub const UPSTREAM_ENDPOINTS: [&str; 4] = ["discovery", "jwks", "token", "revocation"];
/// `direction` labels of `tokend_revocation_sync_messages_total` (`revsync`).
pub const SYNC_DIRECTIONS: &[&str] = &["published", "received"];
/// `op` labels of `tokend_revocation_sync_errors_total` (`revsync`).
pub const SYNC_OPS: &[&str] = &["publish", "subscribe", "read", "resync", "jti"];
/// `outcome` labels of `tokend_store_operations_total{op="put"}` (`store::Instrumented`).
pub const STORE_PUT_OUTCOMES: &[&str] = &["stored", "full", "duplicate", "unavailable"];
/// `outcome` labels of `tokend_store_operations_total{op="take"}` (`store::Instrumented`).
pub const STORE_TAKE_OUTCOMES: &[&str] = &["taken", "unknown", "expired", "used", "unavailable"];
/// The Redis store's shared-session operations (outcome `ok` or `unavailable`).
pub const STORE_SESSION_OPS: &[&str] = &[
    "session_save",
    "session_read",
    "session_remove",
    "session_list",
    "session_seen",
    "refresh_lock",
    "refresh_outcome",
];

/// Every metric tokend exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// tokend's audit trail (ring, live stream, verification counts by reason), kept beside
    /// the counters so every component that counts can also record; not exported to
    /// Prometheus.
    pub audit: Arc<crate::audit::Audit>,
    /// The last minute of verifications (rates by outcome, latency percentiles) for the
    /// admin overview; atomics only, not exported to Prometheus.
    pub window: crate::window::Window,
    /// Access-token verifications by result (`valid`/`invalid`) and reason.
    pub verifications: IntCounterVec,
    /// Time of one verification (cache hits included).
    pub verify_duration: Histogram,
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    /// JWKS fetches by result (`success`/`failure`).
    pub jwks_fetches: IntCounterVec,
    pub jwks_keys: IntGauge,
    /// Unix time of the last successful JWKS fetch (0: never); `tokend_jwks_age_seconds` is
    /// derived from it at scrape time.
    pub jwks_last_success: Gauge,
    jwks_age: Gauge,
    pub unknown_kid_refetches: IntCounter,
    pub unknown_kid_held_back: IntCounter,
    pub codes_issued: IntCounter,
    pub codes_redeemed: IntCounter,
    pub codes_expired: IntCounter,
    pub codes_unknown: IntCounter,
    pub codes_replayed: IntCounter,
    pub codes_refused: IntCounter,
    pub codes_outstanding: IntGauge,
    /// Login flow steps (login, callback, exchange, refresh, logout) by result.
    pub flow_steps: IntCounterVec,
    /// Refreshes by outcome: `upstream` (one request to the provider), `coalesced` (shared
    /// another caller's), `failed` (refused upstream, or locally for a refresh token tokend
    /// did not hand out), `rate_limited` (beyond `flow.refresh_rate_limit`).
    pub refreshes: IntCounterVec,
    /// Logins in progress evicted (oldest first) to make room for newer ones.
    pub logins_evicted: IntCounter,
    pub logouts: IntCounter,
    pub backchannel_logouts: IntCounterVec,
    pub sessions_active: IntGauge,
    /// Verified tokens cached, and the bytes the cache accounts for them (bounded by
    /// `verify.cache_max_bytes`): set at scrape time.
    pub verify_cache_entries: IntGauge,
    pub verify_cache_bytes: IntGauge,
    pub sessions_ended: IntCounterVec,
    pub reloads: IntCounterVec,
    pub last_reload_success: IntGauge,
    pub last_reload_timestamp: Gauge,
    /// Settings changed in the file that only a restart applies (1) or none (0).
    pub restart_required: IntGauge,
    /// Requests to the provider by endpoint (discovery, jwks, token, revocation).
    pub upstream_duration: HistogramVec,
    /// Polls of Authentik's Events API by result (`success`, `unauthorized`, `forbidden`,
    /// `http_error`, `unreachable`, `invalid`).
    pub events_polls: IntCounterVec,
    /// Authentik events new to the poller's ring.
    pub events_fetched: IntCounter,
    /// Record-store operations (put, take) by engine, operation and outcome (`stored`,
    /// `taken`, `full`, `duplicate`, `unknown`, `expired`, `used`, `unavailable`).
    pub store_operations: IntCounterVec,
    /// Record-store operations that failed because the engine was unavailable (timeout,
    /// refused connection), by engine and operation.
    pub store_errors: IntCounterVec,
    /// Time of one record-store operation, by engine and operation.
    pub store_duration: HistogramVec,
    /// Whether the record store answered its last call or health check (1) or not (0).
    pub store_up: IntGauge,
    /// Revocation sync (Redis store): messages by direction (`published`, `received`).
    pub sync_messages: IntCounterVec,
    /// Revocation sync: full resyncs by result (`ok`, `error`).
    pub sync_resyncs: IntCounterVec,
    /// Revocation sync: failed Redis calls by operation (`publish`, `subscribe`, `read`,
    /// `resync`, `jti`).
    pub sync_errors: IntCounterVec,
    /// Revocation sync: 1 while subscribed to the revocation channel.
    pub sync_connected: IntGauge,
    /// Sessions-snapshot writes by result (`ok`, `error`).
    pub snapshot_writes: IntCounterVec,
    /// Sessions-snapshot loads at start by result (`loaded`, `absent`, `refused`: moved
    /// aside, `unreadable`).
    pub snapshot_loads: IntCounterVec,
    /// Entries the start restored from the snapshot, by kind.
    pub snapshot_loaded: IntGaugeVec,
    /// `/v1/auth` answers whose identity headers the budget cut (groups) or left out.
    pub forward_auth_truncated: IntCounter,
    /// Pre-resolved children of `verifications`, so the hot path does no label lookup.
    valid: IntCounter,
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(c.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    c
}

fn int_gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(g.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    g
}

fn int_gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(g.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    g
}

fn gauge(r: &Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::new(name, help).unwrap_or_else(|e| panic!("metric {name}: {e}"));
    r.register(Box::new(g.clone()))
        .unwrap_or_else(|e| panic!("metric {name}: {e}"));
    g
}

impl Metrics {
    /// Registers every metric. Names and labels are static, so registration cannot fail at
    /// run time; a clash is a programming error caught by the tests.
    pub fn new() -> Arc<Self> {
        let r = Registry::new();
        let verifications = counter_vec(
            &r,
            "tokend_verifications_total",
            "Access-token verifications by result and reason.",
            &["result", "reason"],
        );
        let verify_duration = Histogram::with_opts(
            HistogramOpts::new(
                "tokend_verify_duration_seconds",
                "Time to verify one access token, cache hits included.",
            )
            .buckets(vec![
                1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2, 0.1, 1.0,
            ]),
        )
        .unwrap_or_else(|e| panic!("histogram: {e}"));
        r.register(Box::new(verify_duration.clone()))
            .unwrap_or_else(|e| panic!("histogram: {e}"));
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "tokend_upstream_request_duration_seconds",
                "Requests to the identity provider by endpoint.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["endpoint"],
        )
        .unwrap_or_else(|e| panic!("histogram: {e}"));
        r.register(Box::new(upstream_duration.clone()))
            .unwrap_or_else(|e| panic!("histogram: {e}"));
        let store_duration = HistogramVec::new(
            HistogramOpts::new(
                "tokend_store_operation_duration_seconds",
                "Record-store operations (put, take) by engine and operation.",
            )
            .buckets(vec![
                1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1.0,
            ]),
            &["engine", "op"],
        )
        .unwrap_or_else(|e| panic!("histogram: {e}"));
        r.register(Box::new(store_duration.clone()))
            .unwrap_or_else(|e| panic!("histogram: {e}"));
        let build_info = IntGaugeVec::new(
            Opts::new("tokend_build_info", "Build information; always 1."),
            &["version"],
        )
        .unwrap_or_else(|e| panic!("build_info: {e}"));
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        r.register(Box::new(build_info))
            .unwrap_or_else(|e| panic!("build_info: {e}"));

        let m = Self {
            valid: verifications.with_label_values(&["valid", ""]),
            verifications,
            verify_duration,
            cache_hits: counter(
                &r,
                "tokend_verify_cache_hits_total",
                "Verifications answered from the verified-token cache.",
            ),
            cache_misses: counter(
                &r,
                "tokend_verify_cache_misses_total",
                "Verifications that needed a signature check.",
            ),
            jwks_fetches: counter_vec(
                &r,
                "tokend_jwks_fetches_total",
                "JWKS (and discovery) fetches by result.",
                &["result"],
            ),
            jwks_keys: int_gauge(&r, "tokend_jwks_keys", "Verification keys loaded."),
            jwks_last_success: gauge(
                &r,
                "tokend_jwks_last_success_timestamp_seconds",
                "Unix time of the last successful JWKS fetch (0 if none).",
            ),
            jwks_age: gauge(
                &r,
                "tokend_jwks_age_seconds",
                "Seconds since the last successful JWKS fetch (-1 if none).",
            ),
            unknown_kid_refetches: counter(
                &r,
                "tokend_jwks_unknown_kid_refetches_total",
                "JWKS refetches caused by tokens with an unknown kid.",
            ),
            unknown_kid_held_back: counter(
                &r,
                "tokend_jwks_unknown_kid_refetches_rate_limited_total",
                "Unknown-kid refetches not made because of jwks.min_refetch_interval.",
            ),
            codes_issued: counter(&r, "tokend_codes_issued_total", "Exchange codes issued."),
            codes_redeemed: counter(
                &r,
                "tokend_codes_redeemed_total",
                "Exchange codes redeemed.",
            ),
            codes_expired: counter(
                &r,
                "tokend_codes_expired_total",
                "Exchange codes that expired unredeemed.",
            ),
            codes_unknown: counter(
                &r,
                "tokend_codes_unknown_total",
                "Redemptions of unknown codes.",
            ),
            codes_replayed: counter(
                &r,
                "tokend_codes_replayed_total",
                "Redemptions of already redeemed codes.",
            ),
            codes_refused: counter(
                &r,
                "tokend_codes_capacity_refusals_total",
                "Codes not issued because codes.max_outstanding was reached.",
            ),
            codes_outstanding: int_gauge(
                &r,
                "tokend_codes_outstanding",
                "Exchange codes issued and not yet redeemed or expired.",
            ),
            flow_steps: counter_vec(
                &r,
                "tokend_login_flow_steps_total",
                "Login flow steps by step and result.",
                &["step", "result"],
            ),
            refreshes: counter_vec(
                &r,
                "tokend_refreshes_total",
                "Token refreshes by outcome (upstream, coalesced, failed, rate_limited).",
                &["outcome"],
            ),
            logins_evicted: counter(
                &r,
                "tokend_login_states_evicted_total",
                "Logins in progress evicted, oldest first, to make room for newer ones.",
            ),
            logouts: counter(&r, "tokend_logouts_total", "Logouts through /auth/logout."),
            backchannel_logouts: counter_vec(
                &r,
                "tokend_backchannel_logouts_total",
                "Back-channel logout requests by result.",
                &["result"],
            ),
            sessions_active: int_gauge(&r, "tokend_sessions_active", "Registered sessions."),
            verify_cache_entries: int_gauge(
                &r,
                "tokend_verify_cache_entries",
                "Verified tokens in the verified-token cache.",
            ),
            verify_cache_bytes: int_gauge(
                &r,
                "tokend_verify_cache_bytes",
                "Bytes the verified-token cache accounts for its entries (at most \
                 verify.cache_max_bytes).",
            ),
            sessions_ended: counter_vec(
                &r,
                "tokend_sessions_ended_total",
                "Sessions ended, by reason.",
                &["reason"],
            ),
            reloads: counter_vec(
                &r,
                "tokend_config_reloads_total",
                "Configuration reloads by result.",
                &["result"],
            ),
            last_reload_success: int_gauge(
                &r,
                "tokend_config_last_reload_success",
                "Whether the last configuration reload succeeded (1) or not (0).",
            ),
            last_reload_timestamp: gauge(
                &r,
                "tokend_config_last_reload_timestamp_seconds",
                "Unix time of the last configuration reload attempt (or of the start).",
            ),
            restart_required: int_gauge(
                &r,
                "tokend_config_restart_required",
                "1 when the file changes settings that only a restart applies.",
            ),
            events_polls: counter_vec(
                &r,
                "tokend_authentik_event_polls_total",
                "Polls of Authentik's Events API by result (success, unauthorized, forbidden, \
                 http_error, unreachable, invalid).",
                &["result"],
            ),
            events_fetched: counter(
                &r,
                "tokend_authentik_events_fetched_total",
                "Authentik events fetched that the poller did not hold yet.",
            ),
            store_operations: counter_vec(
                &r,
                "tokend_store_operations_total",
                "Record-store operations by engine, operation and outcome.",
                &["engine", "op", "outcome"],
            ),
            store_errors: counter_vec(
                &r,
                "tokend_store_errors_total",
                "Record-store operations that failed because the engine was unavailable.",
                &["engine", "op"],
            ),
            store_duration,
            store_up: int_gauge(
                &r,
                "tokend_store_up",
                "Whether the record store answered its last call or health check (1) or not (0).",
            ),
            sync_messages: counter_vec(
                &r,
                "tokend_revocation_sync_messages_total",
                "Revocations shared through Redis by direction (published, received).",
                &["direction"],
            ),
            sync_resyncs: counter_vec(
                &r,
                "tokend_revocation_sync_resyncs_total",
                "Full reads of the shared revocation list by result (ok, error).",
                &["result"],
            ),
            sync_errors: counter_vec(
                &r,
                "tokend_revocation_sync_errors_total",
                "Failed Redis calls of the revocation sync by operation.",
                &["op"],
            ),
            sync_connected: int_gauge(
                &r,
                "tokend_revocation_sync_connected",
                "1 while subscribed to the shared revocation channel (Redis store).",
            ),
            snapshot_writes: counter_vec(
                &r,
                "tokend_snapshot_writes_total",
                "Sessions-snapshot writes by result.",
                &["result"],
            ),
            snapshot_loads: counter_vec(
                &r,
                "tokend_snapshot_loads_total",
                "Sessions-snapshot loads at start by result (refused: moved aside).",
                &["result"],
            ),
            snapshot_loaded: int_gauge_vec(
                &r,
                "tokend_snapshot_loaded_entries",
                "Entries restored from the sessions snapshot at start, by kind.",
                &["kind"],
            ),
            forward_auth_truncated: counter(
                &r,
                "tokend_forward_auth_truncated_total",
                "Forward-auth answers whose identity headers were cut to forward_auth.max_header_bytes.",
            ),
            upstream_duration,
            registry: r,
            audit: Arc::new(crate::audit::Audit::default()),
            window: crate::window::Window::default(),
        };
        m.last_reload_success.set(1);
        m.last_reload_timestamp.set(unix_now());
        m.jwks_age.set(-1.0);
        m.store_up.set(1);
        m.precreate();
        Arc::new(m)
    }

    /// Creates every known label combination at 0, so each series a dashboard panel or an
    /// alert (`docs/grafana`, `docs/prometheus`) reads exists from the start: `rate()` and
    /// `increase()` see nothing of a series until its second sample. The store's series wait
    /// for [`Metrics::precreate_store`], which knows the engine.
    fn precreate(&self) {
        for result in ["success", "failure"] {
            self.jwks_fetches.with_label_values(&[result]);
            self.reloads.with_label_values(&[result]);
            self.backchannel_logouts.with_label_values(&[result]);
        }
        for outcome in REFRESH_OUTCOMES {
            self.refreshes.with_label_values(&[outcome]);
        }
        for reason in Reason::all().filter(|r| r.is_verification()) {
            self.verifications
                .with_label_values(&["invalid", reason.as_str()]);
        }
        for step in FLOW_STEPS {
            for result in ["success", "failure"] {
                self.flow_steps.with_label_values(&[step, result]);
            }
        }
        for reason in SESSION_END_REASONS {
            self.sessions_ended.with_label_values(&[reason]);
        }
        for result in EVENT_POLL_RESULTS {
            self.events_polls.with_label_values(&[result]);
        }
        for endpoint in UPSTREAM_ENDPOINTS {
            self.upstream_duration.with_label_values(&[endpoint]);
        }
        for result in ["ok", "error"] {
            self.snapshot_writes.with_label_values(&[result]);
        }
    }

    /// Creates the record store's series for `engine` (`memory`, `redis`) at 0: every
    /// operation's outcomes, errors and duration.
    pub fn precreate_store(&self, engine: &str) {
        for (op, outcomes) in [("put", STORE_PUT_OUTCOMES), ("take", STORE_TAKE_OUTCOMES)] {
            for outcome in outcomes {
                self.store_operations
                    .with_label_values(&[engine, op, outcome]);
            }
            self.store_errors.with_label_values(&[engine, op]);
            self.store_duration.with_label_values(&[engine, op]);
        }
        if engine == "redis" {
            for op in STORE_SESSION_OPS {
                for outcome in ["ok", "unavailable"] {
                    self.store_operations
                        .with_label_values(&[engine, op, outcome]);
                }
                self.store_errors.with_label_values(&[engine, op]);
                self.store_duration.with_label_values(&[engine, op]);
            }
            for direction in SYNC_DIRECTIONS {
                self.sync_messages.with_label_values(&[direction]);
            }
            for result in ["ok", "error"] {
                self.sync_resyncs.with_label_values(&[result]);
            }
            for op in SYNC_OPS {
                self.sync_errors.with_label_values(&[op]);
            }
        }
    }

    /// Counts a verification refused before a token reached the verifier (`missing_token`:
    /// no cookie, no Bearer header, an empty `token`), like every other refusal: the
    /// Prometheus counter, the admin overview's counts and its last minute.
    pub fn refused_before_verify(&self, reason: Reason, started: Instant) {
        self.verified(Err(reason), started);
    }

    /// Counts one verification that began at `started` and ends now.
    pub fn verified(&self, result: Result<(), Reason>, started: Instant) {
        // One clock read serves the duration and the window's second.
        let ended = Instant::now();
        let took = ended.saturating_duration_since(started);
        self.audit.verified(result);
        self.window.record(result, took, ended);
        match result {
            Ok(()) => self.valid.inc(),
            Err(reason) => self
                .verifications
                .with_label_values(&["invalid", reason.as_str()])
                .inc(),
        }
        self.verify_duration.observe(took.as_secs_f64());
    }

    pub fn flow_step(&self, step: &str, ok: bool) {
        self.flow_steps
            .with_label_values(&[step, if ok { "success" } else { "failure" }])
            .inc();
    }

    pub fn upstream(&self, endpoint: &str, took: Duration) {
        self.upstream_duration
            .with_label_values(&[endpoint])
            .observe(took.as_secs_f64());
    }

    /// Sets the verified-token cache's gauges (before [`Metrics::render`]).
    pub fn verify_cache(&self, entries: usize, bytes: usize) {
        self.verify_cache_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.verify_cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// The text exposition, after refreshing the gauges derived at scrape time.
    pub fn render(&self, codes_outstanding: usize, sessions_active: usize) -> String {
        self.codes_outstanding
            .set(i64::try_from(codes_outstanding).unwrap_or(i64::MAX));
        self.sessions_active
            .set(i64::try_from(sessions_active).unwrap_or(i64::MAX));
        let last = self.jwks_last_success.get();
        self.jwks_age
            .set(if last > 0.0 { unix_now() - last } else { -1.0 });
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot render metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests;
