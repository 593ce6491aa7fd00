//! Forward auth for reverse proxies (nginx `auth_request`, Traefik `forwardAuth`, Caddy
//! `forward_auth`): `/v1/auth` reads the token as `GET /v1/verify` does, verifies it through
//! the same verifier, and answers 200 with identity headers (`headers`) or 401.

mod headers;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use tokend_shared::Reason;

use crate::extract::token_from_headers;
use crate::verify::{IdentityHeaders, VerifyError};
use crate::{AppState, Runtime};

pub use headers::{Identity, TRUNCATION_MARKER, identity, sanitize, wire_len};

/// The header of a refusal that carries its stable reason (`missing_token`, `expired`, …):
/// proxies usually drop the body of a 401, and can pass this on or log it
/// (`auth_request_set $reason $upstream_http_x_auth_request_reason`).
pub const REASON_HEADER: &str = "x-auth-request-reason";

/// Why `/v1/auth` refuses a request; `error` maps it to 401 (or 503 when no keys).
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No access cookie and no `Authorization: Bearer` (the message says which).
    #[error("{0}")]
    NoToken(String),
    /// A token was given and refused.
    #[error(transparent)]
    Refused(#[from] VerifyError),
    /// The verified answer's claims did not parse back (a bug, never the client's doing).
    #[error("the claims of the verified token could not be read: {0}")]
    Claims(#[from] serde_json::Error),
}

/// `/v1/auth` (any method: nginx's `auth_request` keeps the original request's method):
/// 200 with the identity headers and no body, or the refusal (`error`).
pub async fn auth(
    State(state): State<Arc<AppState>>,
    Extension(rt): Extension<Arc<Runtime>>,
    headers: HeaderMap,
) -> Result<Response, ForwardError> {
    answer(&state, &rt, &headers).await.inspect_err(|e| {
        tracing::debug!(message = %e, "forward auth refused");
    })
}

/// The answer to one forward-auth request with these headers (public for the benches).
pub async fn answer(
    state: &AppState,
    rt: &Runtime,
    headers: &HeaderMap,
) -> Result<Response, ForwardError> {
    let started = Instant::now();
    let token = match token_from_headers(headers, &rt.config.cookies.access_name) {
        Ok(token) => token,
        Err(e) => {
            // Counted like a verification that found no token.
            state
                .metrics
                .refused_before_verify(Reason::MissingToken, started);
            return Err(ForwardError::NoToken(e.message));
        }
    };
    let cfg = &rt.config.forward_auth;
    let (set, budget) = (cfg.headers, cfg.max_header_bytes);
    // Made once per cached token and configuration (issue #14): on the first hit, from the
    // claims parsed back from the cached answer.
    let id = rt
        .verifier
        .verify_identity(token.expose(), set, budget, |verified| {
            let id = identity(&verified.claims()?, set, budget);
            Ok::<_, ForwardError>(IdentityHeaders::new(set, budget, id.truncated, &id.headers))
        })
        .await?;
    if id.truncated {
        state.metrics.forward_auth_truncated.inc();
    }
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    id.insert_into(h);
    Ok(resp)
}
