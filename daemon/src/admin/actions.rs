//! The admin API's actions: revoke a session or every session of a user, force a JWKS
//! refresh, reload the configuration. Each is an audit event naming the operator's uid, and
//! each answer says what actually happened.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::response::Response;
use tokend_shared::{AuditKind, JwksRefreshOutcome, RevokeOutcome, RevokeRequest};

use super::{AdminError, Operator, ok_json};
use crate::AppState;
use crate::audit::Entry;
use crate::extract::parse_json;
use crate::sessions::EndReason;
use crate::verify::now_unix;

/// `POST /v1/admin/sessions/revoke {"sid"}` or `{"sub"}`: ends the session (or every session
/// of the user), refuses their tokens from now on with `revoked_by_admin`, and revokes their
/// refresh tokens at the provider.
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    Extension(op): Extension<Operator>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let req: RevokeRequest = parse_json(&body)?;
    let (sid, sub) = revoke_target(&req)?;
    let now = now_unix();
    let done = state
        .runtime()
        .flow
        .end_sessions(sid, sub, EndReason::AdminRevocation)
        .await;
    let outcome = RevokeOutcome {
        ended: done.sessions.len(),
        sids: done.sessions.iter().filter_map(|s| s.sid.clone()).collect(),
        refresh_tokens_revoked: done.revoked,
        refresh_tokens_failed: done.attempted.saturating_sub(done.revoked),
        tokens_refused_until: state.sessions.refused_until(now),
    };
    tracing::info!(
        operator_uid = op.uid,
        sid = sid.unwrap_or("-"),
        sub = sub.unwrap_or("-"),
        ended = outcome.ended,
        refresh_tokens_revoked = outcome.refresh_tokens_revoked,
        refresh_tokens_failed = outcome.refresh_tokens_failed,
        "sessions revoked by an administrator"
    );
    // For a sid, the user is the ended session's (the request names none).
    let user = sub
        .map(str::to_string)
        .or_else(|| done.sessions.first().map(|s| s.sub.clone()));
    state.metrics.audit.record(
        AuditKind::AdminRevoke,
        Entry {
            sub: user,
            sid: sid.map(str::to_string),
            operator_uid: Some(op.uid),
            count: Some(outcome.ended as u64),
            detail: Some(format!(
                "{} session(s) ended, {} refresh token(s) revoked at the provider, {} not",
                outcome.ended, outcome.refresh_tokens_revoked, outcome.refresh_tokens_failed
            )),
            ..Entry::default()
        },
    );
    Ok(ok_json(&outcome))
}

/// The one target of a revoke: a non-empty `sid` or a non-empty `sub`, never both.
fn revoke_target(req: &RevokeRequest) -> Result<(Option<&str>, Option<&str>), AdminError> {
    match (req.sid.as_deref(), req.sub.as_deref()) {
        (Some(s), None) if !s.is_empty() => Ok((Some(s), None)),
        (None, Some(s)) if !s.is_empty() => Ok((None, Some(s))),
        _ => Err(AdminError::RevokeTarget),
    }
}

/// `POST /v1/admin/jwks/refresh`: fetches the provider's keys now.
pub async fn jwks_refresh(
    State(state): State<Arc<AppState>>,
    Extension(op): Extension<Operator>,
) -> Response {
    let jwks = state.runtime().jwks.clone();
    let result = jwks.refresh().await;
    let outcome = JwksRefreshOutcome {
        ok: result.is_ok(),
        keys: jwks.keys().len(),
        error: result.err().map(|e| e.to_string()),
    };
    tracing::info!(
        operator_uid = op.uid,
        ok = outcome.ok,
        keys = outcome.keys,
        "JWKS refresh by an administrator"
    );
    state.metrics.audit.record(
        AuditKind::AdminJwksRefresh,
        Entry {
            operator_uid: Some(op.uid),
            count: Some(outcome.keys as u64),
            detail: Some(match &outcome.error {
                None => format!("ok: {} key(s)", outcome.keys),
                Some(e) => format!("failed: {e}"),
            }),
            ..Entry::default()
        },
    );
    ok_json(&outcome)
}

/// `POST /v1/admin/reload`: reloads the configuration file as SIGHUP does; answers the
/// outcome (`ok: false` with the error when the old configuration stays in force).
pub async fn reload(
    State(state): State<Arc<AppState>>,
    Extension(op): Extension<Operator>,
) -> Response {
    let _ = crate::reload::reload(&state, "admin").await;
    let status = state.last_reload();
    let detail = status.as_ref().map(|s| match &s.error {
        None => format!("ok: changed {:?}", s.changed),
        Some(e) => format!("failed: {e}"),
    });
    state.metrics.audit.record(
        AuditKind::AdminReload,
        Entry {
            operator_uid: Some(op.uid),
            detail,
            ..Entry::default()
        },
    );
    ok_json(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(sid: Option<&str>, sub: Option<&str>) -> RevokeRequest {
        RevokeRequest {
            sid: sid.map(str::to_string),
            sub: sub.map(str::to_string),
        }
    }

    /// Issue #8 (mutation testing): each guard on the revoke target is needed.
    #[test]
    fn issue_8_revoke_needs_exactly_one_non_empty_target() {
        let r = req(Some("s1"), None);
        assert_eq!(revoke_target(&r).ok(), Some((Some("s1"), None)));
        let r = req(None, Some("alice"));
        assert_eq!(revoke_target(&r).ok(), Some((None, Some("alice"))));
        for (sid, sub) in [
            (Some(""), None),
            (None, Some("")),
            (Some("s1"), Some("alice")),
            (None, None),
        ] {
            let r = req(sid, sub);
            assert!(
                matches!(revoke_target(&r), Err(AdminError::RevokeTarget)),
                "{sid:?} {sub:?}"
            );
        }
    }
}
