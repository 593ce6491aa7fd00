//! The flow's use of sessions shared by several instances (`[store] kind = "redis"`, issue
//! #12): a refresh token goes upstream once across all of them — the instance that takes the
//! store's short refresh lock sends the grant, writes the rotated session back and shares the
//! outcome for `flow.refresh_grace`; callers on other instances poll for that outcome until
//! the lock's deadline (twice `provider.http_timeout` plus 5 s: a holder that dies lets its
//! lock expire, and the next caller takes over). Ending a session also removes its shared record and refuses its current refresh
//! token everywhere. Without a shared store (memory) none of this runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokend_shared::Secret;

use super::{Flow, FlowError, Tokens};
use crate::sessions::Session;
use crate::store::{Key, RefreshOutcome, SessionRecord, SharedSessions, key_of};
use crate::verify::now_unix;

/// How often a caller on another instance looks for the outcome.
const POLL: Duration = Duration::from_millis(25);

/// How long a failure to reach the provider is shared: the callers of that moment get the
/// same answer, later ones try again.
const FAILURE_KEEP: Duration = Duration::from_secs(1);

impl Flow {
    /// The store's shared sessions, when the store shares them (Redis).
    pub(super) fn shared(&self) -> Option<Arc<dyn SharedSessions>> {
        self.store.shared_sessions()
    }

    /// One refresh with a shared store: the outcome another instance shared, or this
    /// instance's grant under the lock.
    pub(super) async fn refresh_shared(
        &self,
        shared: &dyn SharedSessions,
        refresh_token: &Secret,
        key: Key,
        grace: Duration,
    ) -> Result<Arc<Tokens>, FlowError> {
        let deadline = Instant::now() + self.refresh_lock;
        loop {
            if let Some(outcome) = shared.outcome(key).await? {
                self.metrics
                    .refreshes
                    .with_label_values(&["coalesced"])
                    .inc();
                return self.answer_of(outcome).await;
            }
            if shared.lock_refresh(key, self.refresh_lock).await? {
                let result = self
                    .refresh_holding(shared, refresh_token, key, grace)
                    .await;
                if let Err(e) = shared.unlock_refresh(key).await {
                    tracing::info!(error = %e, "refresh lock not released; it expires by itself");
                }
                return result;
            }
            if Instant::now() >= deadline {
                return Err(FlowError::Upstream(
                    "another instance's refresh of this token did not finish in time".into(),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Under the lock: the grant, the rotated session written back, the outcome shared.
    async fn refresh_holding(
        &self,
        shared: &dyn SharedSessions,
        refresh_token: &Secret,
        key: Key,
        grace: Duration,
    ) -> Result<Arc<Tokens>, FlowError> {
        // The previous holder may have shared its outcome and let go in between.
        if let Some(outcome) = shared.outcome(key).await? {
            self.metrics
                .refreshes
                .with_label_values(&["coalesced"])
                .inc();
            return self.answer_of(outcome).await;
        }
        let Some(session) = self.shared_session(shared, refresh_token, key).await? else {
            self.metrics.refreshes.with_label_values(&["failed"]).inc();
            self.share(shared, key, &RefreshOutcome::NoSession, grace)
                .await;
            return Err(FlowError::NoRefreshToken);
        };
        let result = self.refresh_upstream(refresh_token, &session).await;
        let (outcome, keep) = match &result {
            Ok(tokens) => {
                if let Err(e) = shared.save(&session.record()).await {
                    tracing::warn!(error = %e, "the refreshed session was not written to the store; other instances refuse its new refresh token until it is");
                }
                let outcome = RefreshOutcome::Tokens {
                    access_token: tokens.access_token.clone(),
                    refresh_token: tokens.refresh_token.clone(),
                    id_token: tokens.id_token.clone(),
                };
                (outcome, grace)
            }
            Err(FlowError::Refused(e)) => (RefreshOutcome::Refused(e.clone()), grace),
            Err(FlowError::NoRefreshToken) => (RefreshOutcome::NoSession, grace),
            Err(e) => (RefreshOutcome::Upstream(e.to_string()), FAILURE_KEEP),
        };
        self.share(shared, key, &outcome, keep).await;
        result
    }

    async fn share(
        &self,
        shared: &dyn SharedSessions,
        key: Key,
        outcome: &RefreshOutcome,
        keep: Duration,
    ) {
        if let Err(e) = shared.publish_outcome(key, outcome, keep).await {
            tracing::info!(error = %e, "refresh outcome not shared");
        }
    }

    /// The live session whose current refresh token this is: from the store (adopted here),
    /// else — a session the store does not hold, as after a Redis restart — the registry's.
    /// `None` for a rotated, ended or unknown token.
    async fn shared_session(
        &self,
        shared: &dyn SharedSessions,
        refresh_token: &Secret,
        key: Key,
    ) -> Result<Option<Arc<Session>>, FlowError> {
        let sessions = self.verifier.sessions();
        match shared.by_refresh(key).await? {
            Some(record) => {
                let current = record.refresh_token.as_ref().map(|t| key_of(t.expose()));
                if current != Some(key) {
                    // Rotated by a refresh whose shared outcome has lapsed.
                    return Ok(None);
                }
                Ok(sessions.adopt(&record, now_unix()))
            }
            None => Ok(sessions
                .by_refresh_token(refresh_token.expose())
                .filter(|s| !s.is_ended())),
        }
    }

    /// What another instance's refresh answers this caller (the access token verified here).
    async fn answer_of(&self, outcome: RefreshOutcome) -> Result<Arc<Tokens>, FlowError> {
        match outcome {
            RefreshOutcome::Tokens {
                access_token,
                refresh_token,
                id_token,
            } => {
                let claims = self.verifier.verify_uncached(access_token.expose()).await?;
                Ok(Arc::new(Tokens {
                    access_token,
                    refresh_token,
                    id_token,
                    claims,
                }))
            }
            RefreshOutcome::Refused(e) => Err(FlowError::Refused(e)),
            RefreshOutcome::NoSession => Err(FlowError::NoRefreshToken),
            RefreshOutcome::Upstream(e) => Err(FlowError::Upstream(e)),
        }
    }

    /// The shared record of a session, found by its registry key (`sid`) or else by a refresh
    /// token it was handed; `None` without a shared store, or when the store cannot answer
    /// (logged: the logout goes on with what this instance knows).
    pub(super) async fn shared_record(
        &self,
        key: Option<&str>,
        refresh: Option<&Secret>,
    ) -> Option<SessionRecord> {
        let shared = self.shared()?;
        let found = match (key, refresh) {
            (Some(key), _) => shared.by_key(key).await,
            (None, Some(rt)) => shared.by_refresh(key_of(rt.expose())).await,
            (None, None) => Ok(None),
        };
        found.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the session store did not answer; ending the session with what this instance knows");
            None
        })
    }

    /// The shared records of the sessions a revocation by `sid` (else `sub`) ends (a listing
    /// for `sub`: the sessions with a `sid`); none without a shared store or when it cannot
    /// answer (logged: the revocation list still ends them on every instance).
    pub(super) async fn shared_records(
        &self,
        sid: Option<&str>,
        sub: Option<&str>,
    ) -> Vec<SessionRecord> {
        let Some(shared) = self.shared() else {
            return Vec::new();
        };
        let keys: Vec<String> = match (sid, sub) {
            (Some(sid), _) => vec![sid.to_string()],
            (None, Some(sub)) => match shared.list().await {
                Ok(all) => all
                    .into_iter()
                    .filter(|s| s.sub == sub)
                    .filter_map(|s| s.sid)
                    .collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "the session store did not answer; other instances' sessions end through the revocation list");
                    return Vec::new();
                }
            },
            (None, None) => Vec::new(),
        };
        let mut records = Vec::new();
        for key in keys {
            if let Some(r) = self.shared_record(Some(&key), None).await {
                records.push(r);
            }
        }
        records
    }

    /// Removes the shared records of ended sessions (what is left expires by itself).
    pub(super) async fn forget_shared(&self, keys: impl Iterator<Item = String>) {
        let Some(shared) = self.shared() else { return };
        for key in keys {
            if let Err(e) = shared.remove(&key).await {
                tracing::info!(error = %e, "ended sessions' records stay in the store until they expire (their tokens are refused)");
                return;
            }
        }
    }

    /// After a session ended: its shared record removed, and its current refresh token (which
    /// another instance may have rotated to) refused everywhere. Returns that token, for
    /// revocation at the provider.
    pub(super) async fn end_shared(&self, record: &SessionRecord) -> Option<Secret> {
        let shared = self.shared()?;
        if let Err(e) = shared.remove(&record.key).await {
            tracing::warn!(error = %e, "an ended session's record stays in the store until it expires (its tokens are refused)");
        }
        let rt = record.refresh_token.clone()?;
        self.verifier
            .sessions()
            .end_refresh_token(key_of(rt.expose()), record.refresh_expires);
        Some(rt)
    }
}
