//! `POST /auth/backchannel-logout`: OpenID Connect Back-Channel Logout 1.0. A verified logout
//! token (seen once: its `jti` is remembered — with the Redis store, by every instance) ends the sessions it names, by `sid` or `sub`,
//! and their refresh tokens are revoked at the provider (RFC 7009): Authentik keeps refresh
//! tokens alive when a session ends, and what a refresh with them mints carries no `sid`, so
//! tokend could not link it to the ended session (issue #8).

use super::Flow;
use crate::sessions::EndReason;
use crate::verify::VerifyError;

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
            .claim_jti(&claims.jti, claims.valid_until)
            .await
        {
            return Err(VerifyError::WrongTokenType(
                "this logout token was already used (jti replayed)".into(),
            ));
        }
        let done = self
            .end_sessions(
                claims.sid.as_deref(),
                claims.sub.as_deref(),
                EndReason::BackchannelLogout,
            )
            .await;
        let (ended, revoked) = (done.sessions.len(), done.revoked);
        tracing::info!(
            sid = claims.sid.as_deref().unwrap_or("-"),
            sub = claims.sub.as_deref().unwrap_or("-"),
            ended,
            revoked,
            "back-channel logout"
        );
        self.metrics.audit.record(
            tokend_shared::AuditKind::BackchannelLogout,
            crate::audit::Entry {
                sub: claims.sub.clone(),
                sid: claims.sid.clone(),
                count: Some(ended as u64),
                ..Default::default()
            },
        );
        Ok(ended)
    }
}
