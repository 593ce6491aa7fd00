//! The Authentik events poller (`[events]`, off unless configured): a background task that
//! reads Authentik's Events API newest first, page after page until it reaches an event it
//! already holds (or the ring is full, or `max_pages`), into a bounded ring; backs off
//! exponentially on errors (reset by a success) and explains 401/403 in its status and in one
//! log line per change of state. The [`Poller`] handle is kept by `AppState`; dropping it (a
//! reload that changed `[events]` or `[provider]`) or the daemon's stop signal ends the task.
//! Page requests are in `fetch`, the ring in `ring`, the admin query and the links to live
//! sessions in `correlate`. The API token is a [`tokend_shared::Secret`]: never logged, never
//! answered.

mod correlate;
mod fetch;
mod ring;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokend_shared::{AuthentikEventList, AuthentikEventQuery, PollerStatus, SessionInfo};
use tokio::sync::watch;

use crate::Config;
use crate::metrics::Metrics;
use crate::provider::{ProviderError, Upstream};
use fetch::EventsClient;
pub use fetch::{FetchError, parse_page};
use ring::Ring;

/// What keeps the poller from starting.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("events: {0}")]
    Provider(#[from] ProviderError),
    #[error("events: {0}")]
    Fetch(#[from] FetchError),
    #[error("events: no API token was read (api_token_file or api_token_credential)")]
    NoToken,
}

/// The poller's settings, taken from `[events]` when it starts.
#[derive(Debug, Clone, Copy)]
struct Settings {
    interval: Duration,
    max_backoff: Duration,
    max_pages: u32,
    capacity: usize,
}

/// State shared by the task and the handle.
#[derive(Debug)]
struct Shared {
    ring: Mutex<Ring>,
    status: Mutex<Status>,
    /// Where the requests go, for the status (no query, no token).
    url: String,
}

/// What the status answer is made of.
#[derive(Debug, Default)]
struct Status {
    last_poll: Option<i64>,
    last_ok: Option<bool>,
    last_error: Option<String>,
    last_status: Option<u16>,
    /// When the next poll starts (`None`: now, or polling).
    next_poll: Option<Instant>,
    fetched_total: u64,
}

/// A running poller. Dropping the last handle stops its task.
#[derive(Debug)]
pub struct Poller {
    shared: Arc<Shared>,
    /// Never sent on: the task ends when this sender is dropped.
    _stop: watch::Sender<bool>,
}

impl Poller {
    /// Starts the poller of `config`'s `[events]`; `None` when it is absent or disabled.
    /// Must be called within a tokio runtime.
    pub fn start(
        config: &Config,
        metrics: &Arc<Metrics>,
        daemon_stop: watch::Receiver<bool>,
    ) -> Result<Option<Arc<Poller>>, EventsError> {
        let Some(cfg) = config.events.as_ref().filter(|e| e.enabled) else {
            return Ok(None);
        };
        let token = cfg.api_token.clone().ok_or(EventsError::NoToken)?;
        let client = EventsClient::new(Upstream::new(&config.provider)?, token, cfg.page_size)?;
        let settings = Settings {
            interval: cfg.interval,
            max_backoff: cfg.max_backoff,
            max_pages: cfg.max_pages,
            capacity: cfg.capacity,
        };
        let shared = Arc::new(Shared {
            ring: Mutex::new(Ring::new(cfg.capacity)),
            status: Mutex::new(Status::default()),
            url: client.effective_url(),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        tracing::info!(
            url = %shared.url,
            interval_seconds = cfg.interval.as_secs(),
            capacity = cfg.capacity,
            "Authentik events poller started"
        );
        tokio::spawn(run(
            shared.clone(),
            client,
            settings,
            metrics.clone(),
            stop_rx,
            daemon_stop,
        ));
        Ok(Some(Arc::new(Poller {
            shared,
            _stop: stop_tx,
        })))
    }

    /// The poller's state for the overview and the events answer.
    pub fn status(&self) -> PollerStatus {
        let (held, capacity) = {
            let ring = lock(&self.shared.ring);
            (ring.held(), ring.capacity())
        };
        let s = lock(&self.shared.status);
        PollerStatus {
            url: self.shared.url.clone(),
            last_poll: s.last_poll,
            last_ok: s.last_ok,
            last_error: s.last_error.clone(),
            last_status: s.last_status,
            next_poll_seconds: s
                .next_poll
                .map_or(0, |t| t.saturating_duration_since(Instant::now()).as_secs()),
            held,
            capacity,
            fetched_total: s.fetched_total,
        }
    }

    /// The events matching `q`, newest first, each with its links to `sessions`.
    pub fn list(&self, q: &AuthentikEventQuery, sessions: &[SessionInfo]) -> AuthentikEventList {
        let events = {
            let ring = lock(&self.shared.ring);
            let limit = q
                .limit
                .unwrap_or(correlate::DEFAULT_LIMIT)
                .clamp(1, ring.capacity());
            ring.iter()
                .filter(|e| correlate::matches(e, q))
                .take(limit)
                .cloned()
                .collect::<Vec<_>>()
        };
        let events = events
            .into_iter()
            .map(|mut e| {
                e.sessions = correlate::links(&e, sessions);
                e
            })
            .collect();
        AuthentikEventList {
            events,
            poller: self.status(),
        }
    }
}

/// Polls until either stop signal.
async fn run(
    shared: Arc<Shared>,
    client: EventsClient,
    settings: Settings,
    metrics: Arc<Metrics>,
    mut own_stop: watch::Receiver<bool>,
    mut daemon_stop: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    // The failure last logged (label and status), so a lasting failure is logged once.
    let mut logged: Option<(&'static str, Option<u16>)> = None;
    let mut first = true;
    loop {
        if *daemon_stop.borrow() {
            return;
        }
        lock(&shared.status).next_poll = None;
        let result = tokio::select! {
            r = poll_once(&shared, &client, settings) => r,
            _ = own_stop.changed() => return,
            _ = daemon_stop.changed() => return,
        };
        let wait = match result {
            Ok(n) => {
                failures = 0;
                metrics.events_polls.with_label_values(&["success"]).inc();
                metrics.events_fetched.inc_by(n as u64);
                if logged.take().is_some() {
                    tracing::info!(url = %shared.url, new = n, "Authentik events poll works again");
                } else if first {
                    tracing::info!(url = %shared.url, new = n, "Authentik events: first poll done");
                }
                let mut s = lock(&shared.status);
                s.last_ok = Some(true);
                s.last_error = None;
                s.last_status = None;
                s.fetched_total += n as u64;
                settings.interval
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                metrics.events_polls.with_label_values(&[e.label()]).inc();
                let wait = backoff(settings.interval, settings.max_backoff, failures);
                let state = (e.label(), e.status());
                if logged != Some(state) {
                    tracing::warn!(
                        url = %shared.url,
                        error = %e,
                        retry_in_seconds = wait.as_secs(),
                        "Authentik events poll failed; the events held are kept and the poller \
                         backs off"
                    );
                    logged = Some(state);
                }
                let mut s = lock(&shared.status);
                s.last_ok = Some(false);
                s.last_error = Some(e.to_string());
                s.last_status = e.status();
                wait
            }
        };
        first = false;
        {
            let mut s = lock(&shared.status);
            s.last_poll = Some(crate::verify::now_unix());
            s.next_poll = Some(Instant::now() + wait);
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = own_stop.changed() => return,
            _ = daemon_stop.changed() => return,
        }
    }
}

/// Reads pages, newest first, until an event the ring holds, the last page, a full ring or
/// `max_pages`; then puts what was new in front of the ring. Returns how many were new.
async fn poll_once(
    shared: &Shared,
    client: &EventsClient,
    settings: Settings,
) -> Result<usize, FetchError> {
    let mut fresh = Vec::new();
    let mut seen = HashSet::new();
    let mut page = 1;
    for _ in 0..settings.max_pages {
        let p = client.page(page).await?;
        let mut reached = false;
        {
            let ring = lock(&shared.ring);
            for e in p.events {
                if ring.contains(&e.pk) {
                    reached = true;
                    break;
                }
                // Events move down a page when newer ones arrive between two requests.
                if seen.insert(e.pk.clone()) {
                    fresh.push(e);
                }
            }
        }
        if reached || fresh.len() >= settings.capacity {
            break;
        }
        match p.next {
            Some(next) if next > page => page = next,
            _ => break,
        }
    }
    // Beyond the capacity only the newest are kept.
    fresh.truncate(settings.capacity);
    let n = fresh.len();
    lock(&shared.ring).push_newer(fresh);
    Ok(n)
}

/// The wait after `failures` failures in a row: the interval doubled per failure, at most
/// `max`.
fn backoff(interval: Duration, max: Duration, failures: u32) -> Duration {
    let factor = 1u32 << failures.min(16);
    interval.saturating_mul(factor).min(max)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_11_backoff_doubles_to_the_cap() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(30), s(300), 1), s(60));
        assert_eq!(backoff(s(30), s(300), 2), s(120));
        assert_eq!(backoff(s(30), s(300), 3), s(240));
        assert_eq!(backoff(s(30), s(300), 4), s(300));
        assert_eq!(backoff(s(30), s(300), 400), s(300));
    }
}
