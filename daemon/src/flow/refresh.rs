//! `POST /auth/refresh`: new tokens for the refresh cookie. Authentik rotates refresh tokens
//! and treats the reuse of a rotated one as theft, so each refresh token goes upstream at most
//! once: the first caller starts the upstream request as a task of its own that fills a shared
//! slot — callers only wait for it, and one going away cancels nothing — and callers within
//! `flow.refresh_grace` afterwards get the same tokens. Refresh tokens tokend did not hand
//! out, or whose session ended, are refused without asking the provider; the slots are
//! bounded (`flow.max_pending_refreshes`) and grants sent upstream rate-limited
//! (`flow.refresh_rate_limit`). With a shared store (Redis) the task coordinates with the
//! other instances (`shared`): one grant per refresh token across all of them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::mapref::entry::Entry;
use openidconnect::{OAuth2TokenResponse, RefreshToken, TokenResponse};
use tokend_shared::Secret;
use tokio::sync::watch;

use super::{Flow, FlowError, Tokens, describe_token_error};
use crate::sessions::Session;
use crate::store::key_of;
use crate::verify::now_unix;

/// A refresh that never finishes is dropped after this long (it cannot happen: the upstream
/// request has a timeout; this only bounds the damage of a bug).
const ABANDONED: Duration = Duration::from_secs(60);

type Outcome = Option<Result<Arc<Tokens>, FlowError>>;

/// One refresh token's refresh: in flight, or done and kept for the grace window.
pub struct RefreshSlot {
    created: Instant,
    /// How long a finished result is shared.
    grace: Duration,
    /// `None` until the upstream task sends the result.
    done: watch::Receiver<Outcome>,
}

impl RefreshSlot {
    fn finished(&self) -> bool {
        self.done.borrow().is_some()
    }

    /// Whether the slot is past use: finished longer than the grace window ago (or stuck).
    pub(super) fn expired(&self) -> bool {
        let age = self.created.elapsed();
        if self.finished() {
            age > self.grace
        } else {
            age > ABANDONED
        }
    }

    async fn wait(&self) -> Result<Arc<Tokens>, FlowError> {
        let mut rx = self.done.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().unwrap_or_else(|| {
                Err(FlowError::Upstream(
                    "the refresh ended without an answer".into(),
                ))
            }),
            Err(_) => Err(FlowError::Upstream(
                "the refresh task ended without an answer".into(),
            )),
        }
    }
}

/// What a caller does after looking at the slots.
enum Next {
    /// Share a refresh in flight or just done.
    Join(Arc<RefreshSlot>),
    /// This caller started the refresh.
    Started(Arc<RefreshSlot>),
}

impl Flow {
    pub async fn refresh(
        self: &Arc<Self>,
        refresh_token: &Secret,
    ) -> Result<Arc<Tokens>, FlowError> {
        let result = self.try_refresh(refresh_token).await;
        self.metrics.flow_step("refresh", result.is_ok());
        if let Ok(tokens) = &result {
            self.metrics.audit.user(
                tokend_shared::AuditKind::Refresh,
                &tokens.claims.sub,
                tokens.claims.sid(),
            );
        }
        result
    }

    async fn try_refresh(
        self: &Arc<Self>,
        refresh_token: &Secret,
    ) -> Result<Arc<Tokens>, FlowError> {
        let cfg = self.cfg()?;
        let key = key_of(refresh_token.expose());
        let live = self
            .refreshes
            .get(&key)
            .filter(|slot| !slot.expired())
            .map(|slot| slot.clone());
        let next = match live {
            Some(slot) => Next::Join(slot),
            None => {
                let sessions = self.verifier.sessions();
                // Only refresh tokens tokend handed out, of sessions still alive, go upstream:
                // in memory mode known here; with a shared store, looked up there by the task.
                let session = match self.shared() {
                    Some(_) if !sessions.refresh_token_ended(refresh_token.expose()) => None,
                    Some(_) => {
                        self.metrics.refreshes.with_label_values(&["failed"]).inc();
                        return Err(FlowError::NoRefreshToken);
                    }
                    None => {
                        let session = sessions
                            .by_refresh_token(refresh_token.expose())
                            .filter(|s| !s.is_ended());
                        let Some(session) = session else {
                            self.metrics.refreshes.with_label_values(&["failed"]).inc();
                            return Err(FlowError::NoRefreshToken);
                        };
                        Some(session)
                    }
                };
                self.start(
                    key,
                    refresh_token,
                    session,
                    cfg.refresh_grace,
                    cfg.max_pending_refreshes,
                )?
            }
        };
        match next {
            Next::Join(slot) => {
                self.metrics
                    .refreshes
                    .with_label_values(&["coalesced"])
                    .inc();
                slot.wait().await
            }
            Next::Started(slot) => slot.wait().await,
        }
    }

    /// Starts the upstream refresh in a task of its own, unless another caller just did.
    /// `session` is `None` with a shared store: the task finds it there, under the lock.
    fn start(
        self: &Arc<Self>,
        key: crate::store::Key,
        refresh_token: &Secret,
        session: Option<Arc<Session>>,
        grace: Duration,
        max_pending: usize,
    ) -> Result<Next, FlowError> {
        if self.refreshes.len() >= max_pending {
            // Results past their grace window wait for the sweeper: drop them now.
            self.sweep();
            if self.refreshes.len() >= max_pending {
                return Err(FlowError::Capacity(max_pending));
            }
        }
        let vacant = match self.refreshes.entry(key) {
            Entry::Occupied(e) if !e.get().expired() => return Ok(Next::Join(e.get().clone())),
            other => other,
        };
        if let Some(limiter) = &self.refresh_limiter
            && let Err(not_until) = limiter.check()
        {
            use governor::clock::Clock;
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            self.metrics
                .refreshes
                .with_label_values(&["rate_limited"])
                .inc();
            return Err(FlowError::RateLimited(wait));
        }
        let (tx, rx) = watch::channel(None);
        let slot = Arc::new(RefreshSlot {
            created: Instant::now(),
            grace,
            done: rx,
        });
        vacant.insert(slot.clone());
        let me = self.clone();
        let rt = refresh_token.clone();
        tokio::spawn(async move {
            let result = match (session, me.shared()) {
                (Some(session), _) => me.refresh_upstream(&rt, &session).await,
                (None, Some(shared)) => me.refresh_shared(&*shared, &rt, key, grace).await,
                (None, None) => Err(FlowError::NoRefreshToken),
            };
            let _ = tx.send(Some(result));
        });
        Ok(Next::Started(slot))
    }

    pub(super) async fn refresh_upstream(
        &self,
        refresh_token: &Secret,
        session: &Session,
    ) -> Result<Arc<Tokens>, FlowError> {
        let result = self.refresh_grant(refresh_token, session).await;
        let outcome = if result.is_ok() { "upstream" } else { "failed" };
        self.metrics.refreshes.with_label_values(&[outcome]).inc();
        if let Err(e) = &result {
            tracing::info!(error = %e, "refresh failed");
        }
        result
    }

    async fn refresh_grant(
        &self,
        refresh_token: &Secret,
        session: &Session,
    ) -> Result<Arc<Tokens>, FlowError> {
        let meta = self.metadata()?;
        let client = self.client(&meta)?;
        let http = self.provider.oidc_http_client();
        let rt = RefreshToken::new(refresh_token.expose().to_string());
        let started = Instant::now();
        let response = client
            .exchange_refresh_token(&rt)
            .request_async(&http)
            .await;
        self.metrics.upstream("token", started.elapsed());
        self.note_token_answer(&response);
        let response = response.map_err(|e| match e {
            openidconnect::RequestTokenError::ServerResponse(r) => {
                FlowError::Refused(r.error().to_string())
            }
            other => FlowError::Upstream(describe_token_error(&other)),
        })?;
        let access_token = Secret::new(response.access_token().secret().clone());
        let new_refresh = response
            .refresh_token()
            .map(|r| Secret::new(r.secret().clone()));
        let id_token = response.id_token().map(|t| Secret::new(t.to_string()));
        let claims = self.verifier.verify_uncached(access_token.expose()).await?;
        let installed = self.verifier.sessions().refreshed(
            session,
            refresh_token.expose(),
            new_refresh.clone(),
            id_token.clone(),
            claims.exp,
            now_unix(),
        );
        if !installed {
            // Logged out while the refresh was in flight: the rotated refresh token must not
            // outlive the session.
            if let Some(rt) = new_refresh {
                self.revoke_refresh_tokens(vec![rt]).await;
            }
            return Err(FlowError::NoRefreshToken);
        }
        Ok(Arc::new(Tokens {
            access_token,
            refresh_token: new_refresh,
            id_token,
            claims,
        }))
    }
}

#[cfg(test)]
mod mutation_tests;
