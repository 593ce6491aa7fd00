//! The admin API for operators and the `tokentop` console: list sessions, revoke them. It
//! answers only on the Unix socket, where file permissions say who may connect.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::Extensions;
use axum::response::{IntoResponse, Response};
use tokend_shared::{Reason, RevokeRequest, RevokeResponse, SessionList};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::parse_json;
use crate::listen::Via;
use crate::respond::json_headers;
use crate::sessions::EndReason;

fn only_on_the_socket(ext: &Extensions) -> Result<(), ApiError> {
    match ext.get::<Via>() {
        Some(Via::Unix) => Ok(()),
        _ => Err(ApiError::new(
            Reason::Forbidden,
            "the admin API answers only on the Unix socket",
        )),
    }
}

/// `GET /v1/admin/sessions`: every registered session, newest first. No tokens.
pub async fn sessions(
    State(state): State<Arc<AppState>>,
    ext: Extensions,
) -> Result<Response, ApiError> {
    only_on_the_socket(&ext)?;
    let body = SessionList {
        sessions: state.sessions.list(),
    };
    Ok((
        json_headers(),
        serde_json::to_vec(&body).unwrap_or_default(),
    )
        .into_response())
}

/// `POST /v1/admin/sessions/revoke {"sid"}` or `{"sub"}`: ends the sessions; their tokens are
/// refused from now on (until `sessions.revocation_ttl`).
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    ext: Extensions,
    body: Bytes,
) -> Result<Response, ApiError> {
    only_on_the_socket(&ext)?;
    let req: RevokeRequest = parse_json(&body)?;
    let (sid, sub) = match (req.sid.as_deref(), req.sub.as_deref()) {
        (Some(s), None) if !s.is_empty() => (Some(s), None),
        (None, Some(s)) if !s.is_empty() => (None, Some(s)),
        _ => {
            return Err(ApiError::new(
                Reason::BadRequest,
                "give exactly one of `sid` or `sub`",
            ));
        }
    };
    let (ended, revoked) = state
        .runtime()
        .flow
        .end_sessions(sid, sub, EndReason::AdminRevocation)
        .await;
    tracing::info!(
        sid = sid.unwrap_or("-"),
        sub = sub.unwrap_or("-"),
        ended,
        revoked,
        "sessions revoked by an administrator"
    );
    let body = RevokeResponse { ended };
    Ok((
        json_headers(),
        serde_json::to_vec(&body).unwrap_or_default(),
    )
        .into_response())
}
