//! tokend: a token-verification sidecar for apps that log users in through Authentik.
//!
//! [`run`] is the whole daemon; `main.rs` only parses arguments, sets up logging and calls it.
//! Module map: `config` (file, env, validation), `listen` (Unix socket + TCP, hyper),
//! `api` (routes), `error` (errors → HTTP), `provider` (upstream client, discovery),
//! `jwks` (key cache), `verify` (token checks, claim mapping, verified-token cache).

pub mod api;
pub mod config;
pub mod error;
pub mod jwks;
pub mod listen;
pub mod provider;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

pub use config::Config;
use tokio::sync::watch;

use crate::jwks::Jwks;
use crate::provider::Upstream;
use crate::verify::Verifier;

/// How often expired entries are swept from the verified-token cache.
const CACHE_SWEEP_INTERVAL: Duration = Duration::from_secs(30);

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
        let jwks = Arc::new(Jwks::new(upstream, config.jwks.clone(), hmac_secret));
        match jwks.load_disk_cache() {
            Ok(true) => tracing::info!(
                keys = jwks.keys().len(),
                "loaded verification keys from the disk cache"
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "JWKS disk cache not used"),
        }
        let verifier = Arc::new(Verifier::new(&config, jwks.clone()));
        Ok(Arc::new(Self {
            config: Arc::new(config),
            jwks,
            verifier,
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
    background.spawn(sweep_cache(state.verifier.clone(), stop_rx.clone()));
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

async fn sweep_cache(verifier: Arc<Verifier>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CACHE_SWEEP_INTERVAL) => verifier.cache().sweep(verify::now_unix()),
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
