//! Hot reload of the configuration: the file's directory is watched with notify (editors and
//! config managers replace files by rename; Kubernetes swaps a `..data` symlink), debounced
//! and compared by content; SIGHUP reloads too and re-reads secret files. A reload parses and
//! validates the file, prepares the new provider's keys when the provider changed, then swaps
//! the runtime atomically; on any error the running configuration stays in force.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokend_shared::ReloadStatus;
use tokio::sync::watch;

use crate::config::ConfigError;
use crate::jwks::JwksError;
use crate::{AppState, Reuse, build_jwks, build_runtime};

/// Quiet time after the last file event before the file is read.
const DEBOUNCE: Duration = Duration::from_millis(250);
/// Longest wait between the first file event and reading the file.
const MAX_DEBOUNCE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the configuration was not loaded from a file; nothing to reload")]
    NoFile,
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the new provider is not usable, keeping the old configuration: {0}")]
    Provider(#[from] JwksError),
    #[error("cannot build the new configuration: {0}")]
    Build(#[from] crate::Error),
    #[error("cannot start the new events poller, keeping the old configuration: {0}")]
    Events(#[from] crate::events::EventsError),
}

/// What a successful reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Sections applied.
    pub changed: Vec<&'static str>,
    /// Sections that differ in the file but need a restart; their running values are kept.
    pub restart_required: Vec<&'static str>,
}

fn same<T: Serialize>(a: &T, b: &T) -> bool {
    serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
}

/// Reloads the configuration file now. `trigger` names the cause in the log. systemd hears
/// `RELOADING=1` before and `READY=1` after, whatever the outcome.
pub async fn reload(state: &AppState, trigger: &str) -> Result<Outcome, ReloadError> {
    state.notifier.reloading();
    let result = try_reload(state).await;
    state.notifier.reloaded();
    let m = &state.metrics;
    m.last_reload_timestamp.set(crate::metrics::unix_now());
    state.set_last_reload(ReloadStatus {
        ok: result.is_ok(),
        at: crate::verify::now_unix(),
        trigger: trigger.to_string(),
        changed: result
            .as_ref()
            .map(|o| o.changed.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default(),
        restart_required: result
            .as_ref()
            .map(|o| o.restart_required.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default(),
        error: result.as_ref().err().map(|e| e.to_string()),
    });
    match &result {
        Ok(outcome) => {
            m.reloads.with_label_values(&["success"]).inc();
            m.last_reload_success.set(1);
            m.restart_required
                .set(i64::from(!outcome.restart_required.is_empty()));
            tracing::info!(trigger, changed = ?outcome.changed, "configuration reloaded");
            if !outcome.restart_required.is_empty() {
                tracing::warn!(
                    sections = ?outcome.restart_required,
                    "these settings changed in the file but apply only after a restart; the \
                     running values are kept"
                );
            }
        }
        Err(e) => {
            m.reloads.with_label_values(&["failure"]).inc();
            m.last_reload_success.set(0);
            tracing::error!(
                trigger,
                error = %e,
                "configuration reload failed; the previous configuration stays in force"
            );
        }
    }
    result
}

async fn try_reload(state: &AppState) -> Result<Outcome, ReloadError> {
    let _one_at_a_time = state.reload_lock.lock().await;
    let old = state.config();
    let path = old.source.clone().ok_or(ReloadError::NoFile)?;
    let mut new = (state.loader)(&path)?;

    let mut restart_required = Vec::new();
    if !same(&old.listen, &new.listen) {
        restart_required.push("listen");
        new.listen = old.listen.clone();
    }
    if !same(&old.store, &new.store) {
        restart_required.push("store");
        new.store = old.store.clone();
    }
    if !same(&old.log, &new.log) {
        restart_required.push("log");
        new.log = old.log.clone();
    }
    // The sessions snapshot is loaded once, at start, from the file its writer keeps writing.
    let snapshot = |c: &crate::Config| {
        (
            c.sessions.snapshot_file.clone(),
            c.sessions.snapshot_interval,
        )
    };
    if snapshot(&old) != snapshot(&new) {
        restart_required.push("sessions.snapshot");
        new.sessions.snapshot = old.sessions.snapshot;
        new.sessions.snapshot_file = old.sessions.snapshot_file.clone();
        new.sessions.snapshot_interval = old.sessions.snapshot_interval;
    }
    // The admin socket itself is bound (or adopted) at start, and who decides on it with it
    // (peer_check: the start checked the socket against it); its allow lists apply at once.
    let admin_socket = |c: &crate::Config| {
        (
            c.admin_socket(),
            c.admin.socket_mode,
            c.admin.socket_group.clone(),
            c.admin.peer_check,
        )
    };
    if admin_socket(&old) != admin_socket(&new) {
        restart_required.push("admin");
        new.admin.enabled = old.admin.enabled;
        new.admin.socket = old.admin_socket();
        new.admin.socket_mode = old.admin.socket_mode;
        new.admin.socket_group = old.admin.socket_group.clone();
        new.admin.peer_check = old.admin.peer_check;
    }
    let secret_changed = old.provider.client_secret.as_ref().map(|s| s.expose())
        != new.provider.client_secret.as_ref().map(|s| s.expose());
    let provider_changed = !same(&old.provider, &new.provider) || secret_changed;
    let jwks_changed = !same(&old.jwks, &new.jwks);
    // The poller restarts when its section, its token or the provider it reads changed.
    let events_changed = match (&old.events, &new.events) {
        (None, None) => false,
        (Some(a), Some(b)) => a.differs(b) || (provider_changed && b.enabled),
        _ => true,
    };
    let mut changed = Vec::new();
    for (name, differs) in [
        ("provider", provider_changed),
        ("jwks", jwks_changed),
        ("verify", !same(&old.verify, &new.verify)),
        ("claims", !same(&old.claims, &new.claims)),
        ("cookies", !same(&old.cookies, &new.cookies)),
        ("codes", !same(&old.codes, &new.codes)),
        ("flow", !same(&old.flow, &new.flow)),
        ("sessions", !same(&old.sessions, &new.sessions)),
        ("admin", !same(&old.admin, &new.admin)),
        ("events", events_changed),
        ("forward_auth", !same(&old.forward_auth, &new.forward_auth)),
    ] {
        if differs {
            changed.push(name);
        }
    }

    let current = state.runtime();
    // What did not change is kept: the verified-token cache, refreshes in progress.
    let keep_verifier = !provider_changed
        && !jwks_changed
        && same(&old.verify, &new.verify)
        && same(&old.claims, &new.claims);
    let keep_flow = keep_verifier
        && same(&old.flow, &new.flow)
        && same(&old.cookies, &new.cookies)
        && same(&old.codes, &new.codes);
    // The same key cache keeps its refresher, so frequent reloads do not restart its timer.
    let keep_jwks = !provider_changed && !jwks_changed;
    let reuse = Reuse {
        refresher: keep_jwks.then(|| current.refresher.clone()),
        verifier: keep_verifier.then(|| current.verifier.clone()),
        flow: keep_flow.then(|| (current.flow.clone(), current.codes.clone())),
    };
    let jwks = if !keep_jwks {
        // Keys of the new provider first: there is never a moment without keys.
        let jwks = build_jwks(&new, &state.metrics)?;
        jwks.refresh().await?;
        jwks
    } else {
        current.jwks.clone()
    };
    let poller = if events_changed {
        Some(crate::events::Poller::start(
            &new,
            &state.metrics,
            state.stop.clone(),
        )?)
    } else {
        None
    };
    state.apply_shared(&new);
    if let Some(poller) = poller {
        state.events.store(poller);
    }
    let runtime = build_runtime(
        Arc::new(new),
        jwks,
        &state.store,
        &state.sessions,
        &state.metrics,
        &state.stop,
        false,
        reuse,
    );
    state.current.store(Arc::new(runtime));
    Ok(Outcome {
        changed,
        restart_required,
    })
}

/// Watches the config file and SIGHUP until `stop` turns true. The watch, the SIGHUP handler
/// and the file's digest are set up here, before the caller spawns the returned task (and
/// before tokend says it is ready): a change made, or a SIGHUP sent, right after start is
/// seen — and a SIGHUP before the handler existed would have ended the process.
pub fn watch(
    state: Arc<AppState>,
    mut stop: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'static {
    let path = state.config().source.clone();
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel::<()>();
    let watcher = path.as_deref().and_then(|path| {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res
                && !matches!(ev.kind, EventKind::Access(_))
            {
                let _ = tx.send(());
            }
        })
        .and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|()| w));
        match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the config directory; reload with SIGHUP");
                None
            }
        }
    });
    let mut hup = path.as_ref().and_then(|_| {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP");
                None
            }
        }
    });
    let mut last = path.as_deref().and_then(digest);
    async move {
        let Some(path) = path else {
            return;
        };
        // Held for as long as the loop runs: dropping it ends the watch.
        let _watcher = watcher;
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                Some(()) = events.recv() => {
                    // Debounce: wait until the directory has been quiet for a moment, but no
                    // longer than MAX_DEBOUNCE — a directory that never stays quiet (a busy
                    // neighbour file) must not postpone the reload, or SIGHUP, for ever.
                    let deadline = tokio::time::Instant::now() + MAX_DEBOUNCE;
                    loop {
                        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                        tokio::select! {
                            _ = tokio::time::sleep(DEBOUNCE.min(left)) => break,
                            more = events.recv() => if more.is_none() { break },
                        }
                    }
                    let now = digest(&path);
                    if now.is_some() && now != last {
                        last = now;
                        let _ = reload(&state, "file changed").await;
                    }
                }
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    last = digest(&path);
                    let _ = reload(&state, "SIGHUP").await;
                }
            }
        }
    }
}

/// SHA-256 of the file's content (through symlinks), `None` while it cannot be read.
fn digest(path: &Path) -> Option<[u8; 32]> {
    std::fs::read(path).ok().map(|b| Sha256::digest(&b).into())
}
