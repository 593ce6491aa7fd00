//! `GET /v1/admin/authentik/events`: the Authentik events the poller holds (newest first,
//! filtered by action or user), each linked to the live sessions of its user, and the
//! poller's status. 404 `not_found` when `[events]` is off.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use tokend_shared::AuthentikEventQuery;

use super::{AdminError, ok_json};
use crate::AppState;

/// `GET /v1/admin/authentik/events?action&user&limit`.
pub async fn events(
    State(state): State<Arc<AppState>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, AdminError> {
    let q: AuthentikEventQuery = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| AdminError::Query(e.to_string()))?;
    let poller = state.events.load_full().ok_or(AdminError::EventsOff)?;
    Ok(ok_json(&poller.list(&q, &state.sessions.list())))
}
