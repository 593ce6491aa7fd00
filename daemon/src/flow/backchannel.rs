//! `POST /auth/backchannel-logout`: OpenID Connect Back-Channel Logout 1.0. A verified logout
//! token (seen once: its `jti` is remembered) ends the sessions it names, by `sid` or `sub`,
//! and their refresh tokens are revoked at the provider (RFC 7009): Authentik keeps refresh
//! tokens alive when a session ends, and what a refresh with them mints carries no `sid`, so
//! tokend could not link it to the ended session (issue #8).

use super::Flow;
use crate::sessions::EndReason;
use crate::verify::{VerifyError, now_unix};

impl Flow {
    /// Handles one logout token; returns how many registered sessions ended.
    pub async fn backchannel_logout(&self, logout_token: &str) -> Result<usize, VerifyError> {
        let result = self.try_backchannel(logout_token).await;
        let label = if result.is_ok() { "success" } else { "failure" };
        self.metrics
            .backchannel_logouts
            .with_label_values(&[label])
            .inc();
        result
    }

    async fn try_backchannel(&self, logout_token: &str) -> Result<usize, VerifyError> {
        let claims = self.verifier.verify_logout_token(logout_token).await?;
        if !self
            .verifier
            .sessions()
            .first_use_of_jti(&claims.jti, claims.valid_until)
        {
            return Err(VerifyError::WrongTokenType(
                "this logout token was already used (jti replayed)".into(),
            ));
        }
        let sessions = self
            .verifier
            .sessions()
            .matching(claims.sid.as_deref(), claims.sub.as_deref());
        let ended = self.verifier.end_sessions(
            claims.sid.as_deref(),
            claims.sub.as_deref(),
            EndReason::BackchannelLogout,
            now_unix(),
        );
        // Ended first, revoked then: the refresh tokens are refused locally from now on, even if
        // the provider cannot be reached. Each is read after the end, so a refresh that finished
        // in between is covered (and one still in flight revokes the token it gets).
        let mut revoked = 0;
        for rt in sessions.iter().filter_map(|s| s.refresh_token()) {
            if self
                .provider
                .revoke_refresh_token(&rt, &self.client_id, self.client_secret.as_ref())
                .await
            {
                revoked += 1;
            }
        }
        tracing::info!(
            sid = claims.sid.as_deref().unwrap_or("-"),
            sub = claims.sub.as_deref().unwrap_or("-"),
            ended,
            revoked,
            "back-channel logout"
        );
        Ok(ended)
    }
}
