//! tokend: a token-verification sidecar for apps that log users in through Authentik.
//!
//! [`run`] is the whole daemon; `main.rs` only parses arguments, sets up logging and calls it.
//! The module map, the path of a request and the invariants are in `docs/architecture.md`.

pub mod admin;
pub mod alg;
pub mod api;
pub mod audit;
pub mod codes;
pub mod config;
pub mod dev;
pub mod doctor;
pub mod error;
pub mod events;
pub mod extract;
pub mod flow;
pub mod forward;
/// Entry points for the fuzz targets (`fuzz/`), with the `fuzzing` feature only.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod jwks;
pub mod listen;
pub mod metrics;
pub mod provider;
pub mod reload;
pub mod respond;
pub mod revsync;
pub mod sessions;
pub mod snapshot;
pub mod store;
pub mod systemd;
pub mod verify;
pub mod window;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
pub use config::Config;
use tokio::sync::watch;

use crate::codes::Codes;
use crate::flow::Flow;
use crate::jwks::Jwks;
use crate::metrics::Metrics;
use crate::provider::Provider;
use crate::sessions::Sessions;
use crate::store::{Kind, Store};
use crate::verify::Verifier;

/// How often expired entries are swept from the caches, the store and the registry.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Listen(#[from] listen::ListenError),
    #[error(transparent)]
    AdminSocket(#[from] admin::socket::AdminSocketError),
    #[error(transparent)]
    Provider(#[from] provider::ProviderError),
    #[error(transparent)]
    Events(#[from] events::EventsError),
    #[error(transparent)]
    Store(#[from] store::OpenError),
}

/// Everything built from one configuration; replaced as a whole by a reload. A request holds
/// the `Arc<Runtime>` it started with, so it finishes with that configuration.
#[derive(Debug)]
pub struct Runtime {
    /// The configuration in force.
    pub config: Arc<Config>,
    /// The identity provider: upstream client and discovery metadata.
    pub provider: Arc<Provider>,
    /// Verification keys.
    pub jwks: Arc<Jwks>,
    /// Token checks and the verified-token cache.
    pub verifier: Arc<Verifier>,
    /// Exchange codes (TTL from this config; the store itself is shared).
    pub codes: Arc<Codes>,
    /// The login flow (answers `flow_not_configured` without a `[flow]` section).
    pub flow: Arc<Flow>,
    /// Stops the JWKS refresher of `jwks` when the last runtime holding it is dropped. Shared
    /// by the runtimes a reload builds on the same `jwks` (issue #7), so a reload that keeps
    /// the key cache keeps its refresher and its timer instead of restarting the wait.
    refresher: Arc<RefresherStop>,
}

/// Dropping it stops one JWKS refresher (its receiver sees the sender go).
#[derive(Debug)]
pub(crate) struct RefresherStop {
    /// Never sent on: the refresher ends when this sender is dropped.
    _stop: watch::Sender<bool>,
}

/// Everything the request handlers share: cheap handles only.
pub struct AppState {
    /// The runtime in force; swapped atomically by a reload.
    current: ArcSwap<Runtime>,
    /// Exchange codes and login states (memory or Redis, `[store]`); survives reloads.
    pub store: Arc<dyn Store>,
    /// Logins made through the flow, and ended sessions' revocations; survives reloads.
    pub sessions: Arc<Sessions>,
    /// Prometheus metrics, shared by every component.
    pub metrics: Arc<Metrics>,
    /// The Authentik events poller (`[events]`); `None` when off. Replaced by a reload that
    /// changes `[events]` or `[provider]` (dropping the old handle stops its task).
    pub events: arc_swap::ArcSwapOption<events::Poller>,
    /// Tells systemd about readiness, reloads (`reloading()`/`reloaded()`), status and
    /// shutdown; a no-op outside systemd.
    pub notifier: systemd::Notifier,
    /// Turns true when the daemon shuts down; background tasks watch it.
    stop: watch::Receiver<bool>,
    /// Serializes reloads.
    reload_lock: tokio::sync::Mutex<()>,
    /// When the daemon started (uptime), and the wall-clock time of it.
    pub started: std::time::Instant,
    started_at: std::time::SystemTime,
    /// The outcome of the last reload, for the admin overview.
    last_reload: std::sync::Mutex<Option<tokend_shared::ReloadStatus>>,
    /// Reads the configuration file again for a reload.
    loader: ConfigLoader,
}

/// How a reload reads the configuration file: [`Config::load`] with the process environment,
/// unless the daemon was started another way (`tokend dev` puts its issuer in place of the
/// file's `[provider]`).
pub type ConfigLoader =
    Arc<dyn Fn(&std::path::Path) -> Result<Config, config::ConfigError> + Send + Sync>;

fn default_loader() -> ConfigLoader {
    Arc::new(|path| Config::load(path, Config::process_env()))
}

/// What a caller of [`run_with`] adds to the daemon (`tokend dev` does).
pub struct Hooks {
    /// Routes served beside the API's, on both listeners and behind the same layers.
    pub routes: axum::Router<Arc<AppState>>,
    /// How reloads read the file.
    pub loader: ConfigLoader,
    /// Listeners bound already (adopted as socket-activated ones are).
    pub activated: listen::Activated,
    /// Called once every listener is bound, before the first request is served.
    pub on_listening: Option<Box<dyn FnOnce() + Send>>,
}

impl Default for Hooks {
    fn default() -> Self {
        Self {
            routes: axum::Router::new(),
            loader: default_loader(),
            activated: listen::Activated::default(),
            on_listening: None,
        }
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("current", &self.current)
            .field("sessions", &self.sessions)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Builds the state; loads the JWKS disk cache when there is one. No network I/O here,
    /// but it spawns the JWKS refresher, so it must be called within a tokio runtime.
    pub fn new(config: Config, stop: watch::Receiver<bool>) -> Result<Arc<Self>, Error> {
        Self::with_loader(config, stop, default_loader())
    }

    /// [`AppState::new`] with the way reloads read the file.
    pub fn with_loader(
        config: Config,
        stop: watch::Receiver<bool>,
        loader: ConfigLoader,
    ) -> Result<Arc<Self>, Error> {
        let metrics = Metrics::new();
        let sessions = Arc::new(Sessions::new(config.revocation_ttl(), metrics.clone()));
        let store = store::open(
            &config.store,
            config.codes.max_outstanding,
            max_logins(&config),
            &metrics,
        )?;
        metrics.precreate_store(store.kind_name());
        let jwks = build_jwks(&config, &metrics)?;
        match jwks.load_disk_cache() {
            Ok(true) => tracing::info!(
                keys = jwks.keys().len(),
                "loaded verification keys from the disk cache"
            ),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "JWKS disk cache not used"),
        }
        let poller = events::Poller::start(&config, &metrics, stop.clone())?;
        let notifier = systemd::Notifier::from_env();
        let active = sessions.clone();
        notifier.add_status_field("sessions", move || active.active().to_string());
        let state = Arc::new(Self {
            current: ArcSwap::from_pointee(build_runtime(
                Arc::new(config),
                jwks,
                &store,
                &sessions,
                &metrics,
                &stop,
                true,
                Reuse::default(),
            )),
            store,
            sessions,
            metrics,
            events: arc_swap::ArcSwapOption::new(poller),
            notifier,
            stop,
            reload_lock: tokio::sync::Mutex::new(()),
            started: std::time::Instant::now(),
            started_at: std::time::SystemTime::now(),
            last_reload: std::sync::Mutex::new(None),
            loader,
        });
        if state.config().store.kind == config::StoreKind::Redis {
            revsync::start(
                &state.config().store,
                &state.sessions,
                remote_revocations(&state),
                &state.metrics,
                state.stop.clone(),
            )?;
        }
        if let Some(shared) = state.store.shared_sessions() {
            tokio::spawn(sessions::write_behind(
                state.sessions.clone(),
                shared,
                state.stop.clone(),
            ));
        }
        Ok(state)
    }

    /// The runtime in force. Hold the returned `Arc` for the whole request.
    pub fn runtime(&self) -> Arc<Runtime> {
        self.current.load_full()
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        self.current.load().config.clone()
    }

    /// Turns true when the daemon shuts down.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop.clone()
    }

    /// Unix seconds of the start.
    pub fn started_unix(&self) -> i64 {
        self.started_at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    }

    /// The outcome of the last reload, if there was one.
    pub fn last_reload(&self) -> Option<tokend_shared::ReloadStatus> {
        self.last_reload
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_last_reload(&self, status: tokend_shared::ReloadStatus) {
        *self
            .last_reload
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(status);
    }
}

/// How a revocation another instance made applies here (`revsync`): through the verifier in
/// force (sessions ended, cached verifications forgotten), and the refresh tokens of the local
/// sessions it ended revoked at the provider, as a local logout would.
fn remote_revocations(state: &Arc<AppState>) -> revsync::Apply {
    let weak = Arc::downgrade(state);
    Arc::new(move |change| {
        let Some(state) = weak.upgrade() else { return };
        let rt = state.runtime();
        let ended = rt.verifier.apply_remote(change, verify::now_unix());
        let tokens: Vec<_> = ended.iter().filter_map(|s| s.refresh_token()).collect();
        if !tokens.is_empty() {
            let flow = rt.flow.clone();
            tokio::spawn(async move {
                flow.revoke_refresh_tokens(tokens).await;
            });
        }
    })
}

fn max_logins(config: &Config) -> usize {
    config.flow.as_ref().map_or(1, |f| f.max_pending_logins)
}

/// A key cache for `config`'s provider (HS mode: the client secret is the key). Public for
/// the fuzz harness, which builds its verifiers the way the daemon does.
pub fn build_jwks(config: &Config, metrics: &Arc<Metrics>) -> Result<Arc<Jwks>, Error> {
    let provider = Arc::new(Provider::new(&config.provider, metrics.clone())?);
    let hmac_secret = config
        .provider
        .algorithms
        .iter()
        .any(|a| a.is_hmac())
        .then_some(config.provider.client_secret.as_ref())
        .flatten();
    Ok(Arc::new(Jwks::new(
        provider,
        config.jwks.clone(),
        hmac_secret,
        metrics.clone(),
    )))
}

/// Parts of the running runtime a reload keeps because their settings did not change: the
/// verifier keeps its verified-token cache, the flow its refreshes in progress.
#[derive(Default)]
pub(crate) struct Reuse {
    /// The running JWKS refresher; only together with the same `jwks` it refreshes.
    pub refresher: Option<Arc<RefresherStop>>,
    pub verifier: Option<Arc<Verifier>>,
    /// Only together with the verifier (the flow holds it).
    pub flow: Option<(Arc<Flow>, Arc<Codes>)>,
}

/// Everything else built on `jwks`; starts the JWKS refresher for it (fetching at once when
/// `fetch_first`, else after one refresh interval — the keys are fresh) unless `reuse` hands
/// over the one already running for this `jwks`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn build_runtime(
    config: Arc<Config>,
    jwks: Arc<Jwks>,
    store: &Arc<dyn Store>,
    sessions: &Arc<Sessions>,
    metrics: &Arc<Metrics>,
    stop: &watch::Receiver<bool>,
    fetch_first: bool,
    reuse: Reuse,
) -> Runtime {
    let verifier = reuse.verifier.unwrap_or_else(|| {
        Arc::new(Verifier::new(
            &config,
            jwks.clone(),
            sessions.clone(),
            metrics.clone(),
        ))
    });
    let (flow, codes) = reuse.flow.unwrap_or_else(|| {
        let codes = Arc::new(Codes::new(store.clone(), config.codes.ttl, metrics.clone()));
        let flow = Arc::new(Flow::new(
            &config,
            store.clone(),
            codes.clone(),
            verifier.clone(),
            jwks.provider().clone(),
            metrics.clone(),
        ));
        (flow, codes)
    });
    let refresher = reuse.refresher.unwrap_or_else(|| {
        let (refresher_stop, refresher_rx) = watch::channel(false);
        tokio::spawn(
            jwks.clone()
                .run_refresher(refresher_rx, stop.clone(), fetch_first),
        );
        Arc::new(RefresherStop {
            _stop: refresher_stop,
        })
    });
    Runtime {
        config,
        provider: jwks.provider().clone(),
        jwks,
        verifier,
        codes,
        flow,
        refresher,
    }
}

/// Runs the daemon until `shutdown` resolves, then drains in-flight requests and returns.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
    let activated = listen::Activated::from_env()?;
    run_with(
        config,
        shutdown,
        Hooks {
            activated,
            ..Hooks::default()
        },
    )
    .await
}

/// [`run`] with `hooks`: extra routes, another file loader for reloads, listeners bound
/// already, a call once listening.
pub async fn run_with(
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
    hooks: Hooks,
) -> Result<(), Error> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let listen_cfg = config.listen.clone();
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
    let state = AppState::with_loader(config, stop_rx.clone(), hooks.loader)?;
    let snapshot = restore_snapshot(&state);
    let mut activated = hooks.activated;
    let passed_admin = std::mem::take(&mut activated.admin);
    let bound = listen::bind_with(&listen_cfg, activated)?;
    let admin_bound = admin::socket::open(&state.config(), passed_admin)
        .inspect_err(|_| listen::release(&bound))?;
    if let Some(f) = hooks.on_listening {
        f();
    }

    let mut background = tokio::task::JoinSet::new();
    background.spawn(sweep(state.clone(), stop_rx.clone()));
    let readiness = {
        let state = state.clone();
        move || state.runtime().jwks.readiness()
    };
    background.spawn(systemd::supervise(
        state.notifier.clone(),
        readiness,
        stop_rx.clone(),
    ));
    background.spawn(systemd::watchdog(state.notifier.clone(), stop_rx.clone()));
    background.spawn(reload::watch(state.clone(), stop_rx.clone()));
    if let Some(snapshot) = &snapshot {
        let owner = {
            let state = state.clone();
            move || snapshot_owner(&state.config())
        };
        let interval = state.config().sessions.snapshot_interval;
        background.spawn(snapshot::run_writer(
            snapshot.clone(),
            owner,
            interval,
            stop_rx.clone(),
        ));
    }

    let server = tokio::spawn(listen::serve(
        bound,
        api::router_with(state.clone(), &listen_cfg, hooks.routes),
        listen::ServeOptions::from(&listen_cfg),
        stop_rx.clone(),
    ));
    let admin_server = admin_bound.map(|admin_bound| {
        tokio::spawn(listen::serve(
            admin_bound,
            admin::router(state.clone()),
            listen::ServeOptions::from(&listen_cfg),
            stop_rx,
        ))
    });
    shutdown.await;
    tracing::info!("shutting down: no new connections; finishing requests in flight");
    state.notifier.stopping();
    let _ = stop_tx.send(true);
    if let Err(e) = server.await {
        tracing::error!(error = %e, "server task failed");
    }
    if let Some(admin_server) = admin_server
        && let Err(e) = admin_server.await
    {
        tracing::error!(error = %e, "admin server task failed");
    }
    background.shutdown().await;
    if let Some(snapshot) = snapshot {
        // After the drain: nothing changes the registry any more.
        snapshot::write_logged(snapshot.clone(), snapshot_owner(&state.config())).await;
        tracing::info!(file = %snapshot.path().display(), "sessions snapshot written");
    }
    tracing::info!("stopped");
    Ok(())
}

/// Whose revocations the snapshot holds: the configuration's issuer and client.
fn snapshot_owner(config: &Config) -> snapshot::Owner {
    snapshot::Owner {
        issuer: config.provider.issuer.clone(),
        client_id: config.provider.client_id.clone(),
    }
}

/// Loads the sessions snapshot, if there is a file for it, before anything is served.
fn restore_snapshot(state: &Arc<AppState>) -> Option<Arc<snapshot::Snapshot>> {
    let config = state.config();
    let Some(path) = config.sessions.snapshot_file.clone() else {
        tracing::info!(
            "sessions snapshot off ({}): a restart forgets revocations, sessions and seen \
             logout tokens",
            if config.sessions.snapshot {
                "no state directory: set sessions.snapshot_file or jwks.cache_file, or run \
                 under systemd with StateDirectory="
            } else {
                "sessions.snapshot = false"
            }
        );
        return None;
    };
    let snapshot = Arc::new(snapshot::Snapshot::new(
        path,
        state.sessions.clone(),
        state.metrics.clone(),
    ));
    snapshot.restore(&snapshot_owner(&config), verify::now_unix());
    Some(snapshot)
}

/// Removes expired verified tokens, codes, login states, sessions and refresh results.
async fn sweep(state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_INTERVAL) => {
                let now = verify::now_unix();
                let rt = state.runtime();
                rt.verifier.cache().sweep(now);
                let expired = state.store.sweep(now);
                state.metrics.codes_expired.inc_by(expired as u64);
                if expired > 0 {
                    state.metrics.audit.record(
                        tokend_shared::AuditKind::CodeExpired,
                        audit::Entry {
                            count: Some(expired as u64),
                            detail: Some("swept unredeemed".into()),
                            ..audit::Entry::default()
                        },
                    );
                }
                state.metrics.audit.flush_failures();
                state.sessions.sweep(now);
                rt.flow.sweep();
            }
            _ = stop.changed() => return,
        }
    }
}

impl AppState {
    /// Applies capacity and TTL settings of a new config to the long-lived parts.
    fn apply_shared(&self, config: &Config) {
        self.store
            .set_capacity(Kind::ExchangeCode, config.codes.max_outstanding);
        self.store
            .set_capacity(Kind::LoginState, max_logins(config));
        self.sessions.set_revocation_ttl(config.revocation_ttl());
    }
}
