//! The operators' admin API, served only on its own Unix socket (`[admin]`): the router, the
//! per-connection check of the peer's credentials, and [`AdminError`]. Reads are in `read`,
//! Authentik's events in `authentik`, actions in `actions`, the live stream in `stream`, who
//! may connect in `auth`, where it listens (passed by systemd or bound) in `socket`.

mod actions;
pub mod auth;
mod authentik;
mod read;
pub mod socket;
mod stream;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::limit::RequestBodyLimitLayer;

use crate::AppState;
use crate::error::{ApiError, normalize};
use crate::listen::Peer;

/// Largest request body the admin API reads.
const MAX_BODY: usize = 16 * 1024;

/// What goes wrong in the admin API; mapped to a status and reason in `error`.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(
        "uid {uid} may not use the admin API: only root, tokend's own uid, admin.allowed_uids \
         and members of admin.allowed_groups may"
    )]
    Forbidden { uid: u32 },
    #[error(
        "uid 65534 (nobody) may not use the admin API: it is how tokend sees every user outside \
         its user namespace (systemd's PrivateUsers=), so it names no one. Under the shipped \
         unit, connect through tokend-admin.socket served with [admin] peer_check = \
         \"socket_permissions\" (README \"Admin API\")"
    )]
    ForbiddenNobody,
    #[error("the connection has no peer credentials; the admin API answers only on its socket")]
    NoPeer,
    #[error("give exactly one of `sid` or `sub`")]
    RevokeTarget,
    #[error("bad query string: {0}")]
    Query(String),
    #[error(
        "the Authentik events poller is off: add an [events] section with an API token (see \
         the README)"
    )]
    EventsOff,
    /// A request body that is not the expected JSON (`extract`'s message, which never quotes
    /// the input).
    #[error("{}", .0.message)]
    Body(ApiError),
}

impl From<ApiError> for AdminError {
    fn from(e: ApiError) -> Self {
        AdminError::Body(e)
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}

/// The operator behind a request: the uid the kernel reported for the connection.
#[derive(Debug, Clone, Copy)]
pub struct Operator {
    pub uid: u32,
}

/// The admin router. Every request first passes [`authorize`]; unknown paths answer 404.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/admin/overview", get(read::overview))
        .route("/v1/admin/sessions", get(read::sessions))
        .route("/v1/admin/codes", get(read::codes))
        .route("/v1/admin/events", get(read::events))
        .route("/v1/admin/events/stream", get(stream::stream))
        .route("/v1/admin/authentik/events", get(authentik::events))
        .route("/v1/admin/sessions/revoke", post(actions::revoke))
        .route("/v1/admin/jwks/refresh", post(actions::jwks_refresh))
        .route("/v1/admin/reload", post(actions::reload))
        .fallback(crate::api::not_found)
        .method_not_allowed_fallback(crate::api::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authorize,
        ))
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(axum::middleware::map_response(normalize))
        .layer(axum::middleware::from_fn(crate::api::log_request))
        .with_state(state)
}

/// Lets the request through only if the connection's peer may administer tokend (see
/// [`auth::Policy`]); the allow lists are read from the configuration in force, so a reload
/// changes them for the next request. A refusal is logged with the uid.
async fn authorize(
    State(state): State<Arc<AppState>>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(peer) = req.extensions().get::<Peer>().copied() else {
        return AdminError::NoPeer.into_response();
    };
    let config = state.config();
    let refusal = match auth::Policy::from_config(&config.admin).decide(peer) {
        auth::Decision::Allow => None,
        auth::Decision::Refuse => Some(AdminError::Forbidden { uid: peer.uid }),
        auth::Decision::RefuseNobody => Some(AdminError::ForbiddenNobody),
    };
    if let Some(refusal) = refusal {
        tracing::warn!(
            uid = peer.uid,
            gid = peer.gid,
            pid = peer.pid.unwrap_or(0),
            "admin API refused: uid {} is not allowed",
            peer.uid
        );
        return refusal.into_response();
    }
    req.extensions_mut().insert(Operator { uid: peer.uid });
    next.run(req).await
}

/// A JSON 200 answer.
fn ok_json(value: &impl serde::Serialize) -> Response {
    crate::respond::json(axum::http::StatusCode::OK, value)
}
