//! tokend: a token-verification sidecar for apps that log users in through Authentik.
//!
//! [`run`] is the whole daemon; `main.rs` only parses arguments, sets up logging and calls it.
//! Module map: `config` (file, env, validation), `listen` (Unix socket + TCP, hyper),
//! `api` (routes), `error` (errors → HTTP), `provider` (upstream client, discovery),
//! `jwks` (key cache), `verify` (token checks, claim mapping, verified-token cache),
//! `store` (single-use records), `codes` (exchange codes), `sessions` (registry, revocations),
//! `flow` (login, callback, cookies, refresh, logout, back-channel logout).

pub mod api;
pub mod codes;
pub mod config;
pub mod error;
pub mod flow;
pub mod jwks;
pub mod listen;
pub mod metrics;
pub mod provider;
pub mod sessions;
pub mod store;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

pub use config::Config;
use tokio::sync::watch;

use crate::codes::Codes;
use crate::flow::Flow;
use crate::jwks::Jwks;
use crate::metrics::Metrics;
use crate::provider::Upstream;
use crate::sessions::Sessions;
use crate::store::{MemoryStore, Store};
use crate::verify::Verifier;

/// How often expired entries are swept from the caches, the store and the registry.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Listen(#[from] listen::ListenError),
    #[error(transparent)]
    Provider(#[from] provider::ProviderError),
}

/// Everything the request handlers share: cheap handles only.
#[derive(Debug)]
pub struct AppState {
    /// The configuration in force.
    pub config: Arc<Config>,
    /// Verification keys and provider metadata.
    pub jwks: Arc<Jwks>,
    /// Token checks and the verified-token cache.
    pub verifier: Arc<Verifier>,
    /// Exchange codes and login states.
    pub store: Arc<dyn Store>,
    pub codes: Arc<Codes>,
    /// Logins made through the flow, and ended sessions' revocations.
    pub sessions: Arc<Sessions>,
    /// The login flow (answers `flow_not_configured` without a `[flow]` section).
    pub flow: Arc<Flow>,
    /// Prometheus metrics, shared by every component.
    pub metrics: Arc<Metrics>,
}

impl AppState {
    /// Builds the state; loads the JWKS disk cache when there is one. No network I/O.
    pub fn new(config: Config) -> Result<Arc<Self>, Error> {
        let upstream = Upstream::new(&config.provider)?;
        let hmac_secret = config
            .provider
            .algorithms
            .iter()
            .any(|a| a.is_hmac())
            .then_some(config.provider.client_secret.as_ref())
            .flatten();
        let metrics = Metrics::new();
        let jwks = Arc::new(Jwks::new(
            upstream,
            config.jwks.clone(),
            hmac_secret,
            metrics.clone(),
        ));
        match jwks.load_disk_cache() {
            Ok(true) => tracing::info!(
                keys = jwks.keys().len(),
                "loaded verification keys from the disk cache"
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "JWKS disk cache not used"),
        }
        let sessions = Arc::new(Sessions::new(
            config.sessions.revocation_ttl,
            metrics.clone(),
        ));
        let verifier = Arc::new(Verifier::new(
            &config,
            jwks.clone(),
            sessions.clone(),
            metrics.clone(),
        ));
        let max_logins = config.flow.as_ref().map_or(1, |f| f.max_pending_logins);
        let store: Arc<dyn Store> =
            Arc::new(MemoryStore::new(config.codes.max_outstanding, max_logins));
        let codes = Arc::new(Codes::new(store.clone(), config.codes.ttl, metrics.clone()));
        let flow = Arc::new(Flow::new(
            &config,
            store.clone(),
            codes.clone(),
            verifier.clone(),
            jwks.clone(),
            metrics.clone(),
        ));
        Ok(Arc::new(Self {
            config: Arc::new(config),
            jwks,
            verifier,
            store,
            codes,
            sessions,
            flow,
            metrics,
        }))
    }
}

/// Runs the daemon until `shutdown` resolves, then drains in-flight requests and returns.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
    let state = AppState::new(config)?;
    let bound = listen::bind_all(&state.config.listen)?;
    let (stop_tx, stop_rx) = watch::channel(false);

    let mut background = tokio::task::JoinSet::new();
    background.spawn(state.jwks.clone().run_refresher(stop_rx.clone()));
    background.spawn(sweep(state.clone(), stop_rx.clone()));
    background.spawn(announce_ready(state.jwks.clone(), stop_rx.clone()));

    let server = tokio::spawn(listen::serve(
        bound,
        api::router(state.clone()),
        listen::ServeOptions::from(&state.config.listen),
        stop_rx,
    ));
    shutdown.await;
    tracing::info!("shutting down: no new connections; finishing requests in flight");
    let _ = stop_tx.send(true);
    if let Err(e) = server.await {
        tracing::error!(error = %e, "server task failed");
    }
    background.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// Removes expired verified tokens, codes, login states, sessions and refresh results.
async fn sweep(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_INTERVAL) => {
                let now = verify::now_unix();
                state.verifier.cache().sweep(now);
                let expired = state.store.sweep(now);
                state.metrics.codes_expired.inc_by(expired as u64);
                state.sessions.sweep(now);
                state.flow.sweep();
            }
            _ = stop.changed() => return,
        }
    }
}

/// Logs once when verification keys are first available.
async fn announce_ready(jwks: Arc<Jwks>, mut stop: watch::Receiver<bool>) {
    loop {
        let r = jwks.readiness();
        if r.ready {
            tracing::info!(keys = r.keys, "ready: verification keys loaded");
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.changed() => return,
        }
    }
}
