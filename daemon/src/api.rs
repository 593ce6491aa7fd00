//! The apps' HTTP API served on both listeners (never the admin API, which has its own
//! socket and router in `admin`): the router, its layers (limits, timeouts, request
//! log) and the handlers, which parse requests (`extract`) and shape answers (`respond`); the
//! logic they call lives in `verify`, `codes` and `flow`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Query, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use tokend_shared::{
    IssueCodeRequest, IssueCodeResponse, LogoutResponse, Reason, RedeemRequest, RedeemResponse,
    VerifyRequest,
};
use tower_http::limit::RequestBodyLimitLayer;

use crate::codes::{CodeKind, NewCode};
use crate::error::ApiError;
use crate::extract::{cookie_value, parse_json, strip_bearer, token_in_headers};
use crate::flow::LoginError;
use crate::respond::{self, found, json_headers, no_store, success, with_cookies};
use crate::verify::now_unix;
use crate::{AppState, Runtime};

mod front;

/// The router; `listen` settings (body limit, timeouts) are fixed at start.
pub fn router(state: Arc<AppState>, listen: &crate::config::ListenConfig) -> Router {
    router_with(state, listen, Router::new())
}

/// [`router`] with `extra` routes (`tokend dev`'s `/dev/*`), served behind the same layers.
pub fn router_with(
    state: Arc<AppState>,
    listen: &crate::config::ListenConfig,
    extra: Router<Arc<AppState>>,
) -> Router {
    Router::new()
        .merge(extra)
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/verify", get(verify_get).post(verify_post))
        .route("/v1/auth", any(crate::forward::auth))
        .route("/v1/codes", post(codes_issue))
        .route("/v1/codes/redeem", post(codes_redeem))
        .route("/auth/login", get(auth_login))
        .route("/auth/callback", get(auth_callback))
        .route("/auth/exchange", post(auth_exchange))
        .route("/auth/refresh", post(auth_refresh))
        .route("/auth/logout", post(auth_logout))
        .route("/auth/session", get(auth_session))
        .route("/auth/backchannel-logout", post(auth_backchannel_logout))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Chunked bodies (no Content-Length) are cut here; `front` answers a declared-oversized
        // one and turns this layer's bare 413 into the JSON one.
        .layer(RequestBodyLimitLayer::new(listen.max_body_bytes))
        .layer(front::FrontLayer {
            state: state.clone(),
            timeout: listen.request_timeout,
            max_body: listen.max_body_bytes,
        })
        .with_state(state)
}

/// The runtime pinned to the request by `front`.
type Pinned = Extension<Arc<Runtime>>;

/// One log line per request (the admin router's layer; the apps' router logs in `front`): id,
/// method, path (never the query: it may hold codes), status, reason, latency. Flow requests
/// and errors at INFO (5xx at WARN), the rest at DEBUG.
pub(crate) async fn log_request(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let line = front::LogLine::of(&req);
    let mut resp = next.run(req).await;
    line.finish(&mut resp);
    resp
}

async fn livez() -> Response {
    (json_headers(), r#"{"status":"ok"}"#).into_response()
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let mut readiness = state.runtime().jwks.readiness();
    let health = state.store.health();
    readiness.store = Some(tokend_shared::StoreReadiness {
        kind: state.store.kind_name().into(),
        healthy: health.healthy,
        error: health.error,
    });
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::to_vec(&readiness).unwrap_or_default();
    (status, json_headers(), body).into_response()
}

/// `GET /metrics`: Prometheus text exposition.
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let rt = state.runtime();
    let cache = rt.verifier.cache();
    state.metrics.verify_cache(cache.len(), cache.bytes());
    let text = state
        .metrics
        .render(rt.codes.outstanding(), state.sessions.active());
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        text,
    )
        .into_response()
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(Reason::NotFound, "no such endpoint")
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        Reason::MethodNotAllowed,
        "method not allowed on this endpoint",
    )
}

/// `POST /v1/verify {"token": "…"}`.
async fn verify_post(Extension(rt): Pinned, body: Bytes) -> Result<Response, ApiError> {
    let started = Instant::now();
    let req: VerifyRequest = parse_json(&body)?;
    let token = strip_bearer(req.token.expose());
    if token.is_empty() {
        let refused = ApiError::inactive(Reason::MissingToken, "`token` is empty");
        return Err(counted(&rt, refused, started));
    }
    verify(&rt, token).await
}

/// `GET /v1/verify`: the token from the access cookie, else `Authorization: Bearer`; never
/// from the query string.
async fn verify_get(Extension(rt): Pinned, req: Request) -> Result<Response, ApiError> {
    let started = Instant::now();
    // The request itself, not a `HeaderMap` extractor (that would copy the headers), and the
    // token borrowed from it.
    let token = token_in_headers(req.headers(), &rt.config.cookies.access_name)
        .map_err(|e| counted(&rt, e, started))?;
    verify(&rt, token).await
}

/// A verification refused before the verifier saw a token (`missing_token`), counted like the
/// verifier's own refusals (metrics, the admin overview's counts and last minute).
fn counted(rt: &Runtime, refused: ApiError, started: Instant) -> ApiError {
    rt.verifier
        .metrics()
        .refused_before_verify(refused.reason, started);
    refused
}

async fn verify(rt: &Runtime, token: &str) -> Result<Response, ApiError> {
    let verified = rt.verifier.verify(token).await.map_err(|e| {
        tracing::debug!(reason = %e.reason(), message = %e, "token refused");
        ApiError::from(e)
    })?;
    Ok((json_headers(), verified.body.clone()).into_response())
}

/// `POST /v1/codes`: parks verified tokens under a one-time code (for apps that run their own
/// callback).
async fn codes_issue(Extension(rt): Pinned, body: Bytes) -> Result<Response, ApiError> {
    let req: IssueCodeRequest = parse_json(&body)?;
    let verified = rt
        .verifier
        .verify(req.access_token.expose())
        .await
        .map_err(|e| ApiError::new(e.reason(), format!("access_token refused: {e}")))?;
    let sid = verified.sid().map(str::to_owned);
    let code = rt
        .codes
        .issue(
            NewCode {
                access_token: req.access_token,
                refresh_token: req.refresh_token,
                id_token: req.id_token,
                sub: verified.sub().to_owned(),
                sid,
                kind: CodeKind::Api,
            },
            now_unix(),
        )
        .await?;
    let body = IssueCodeResponse {
        code,
        expires_in: rt.codes.ttl().as_secs(),
    };
    Ok(respond::json(StatusCode::CREATED, &body))
}

/// `POST /v1/codes/redeem`: the parked tokens, once.
async fn codes_redeem(Extension(rt): Pinned, body: Bytes) -> Result<Response, ApiError> {
    let req: RedeemRequest = parse_json(&body)?;
    let payload = rt
        .codes
        .redeem(CodeKind::Api, req.code.expose(), now_unix())
        .await?;
    let verified = rt
        .verifier
        .verify(payload.access_token.expose())
        .await
        .map_err(|e| ApiError::new(e.reason(), format!("the parked access token: {e}")))?;
    let body = RedeemResponse {
        access_token: payload.access_token.clone(),
        refresh_token: payload.refresh_token.clone(),
        id_token: payload.id_token.clone(),
        claims: verified.claims().map_err(|e| {
            ApiError::new(
                Reason::Internal,
                format!("the cached answer did not parse: {e}"),
            )
        })?,
    };
    Ok(respond::json(StatusCode::OK, &body))
}

#[derive(serde::Deserialize)]
struct LoginQuery {
    redirect: Option<String>,
}

/// The `redirect` of `/auth/login`'s query string, unchecked (the flow checks it). Parsed by
/// hand so that a malformed query is a flow error, not a bare 400.
pub(crate) fn login_redirect(query: &str) -> Option<String> {
    serde_urlencoded::from_str::<LoginQuery>(query)
        .ok()
        .and_then(|l| l.redirect)
}

/// The `logout_token` form field of a back-channel logout request, if present and not empty.
pub(crate) fn logout_token_field(body: &[u8]) -> Option<String> {
    let mut form: HashMap<String, String> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    form.remove("logout_token").filter(|t| !t.is_empty())
}

/// `GET /auth/login?redirect=/path` → 302 to the provider's authorization endpoint, setting
/// the login's browser-binding cookie.
async fn auth_login(Extension(rt): Pinned, RawQuery(raw): RawQuery) -> Response {
    let redirect = raw.as_deref().and_then(login_redirect);
    let flow = rt.flow.clone();
    match flow.login(redirect.as_deref()).await {
        Ok(start) => with_cookies(found(&start.location), [start.cookie]),
        Err(LoginError::NotConfigured) => ApiError::new(
            Reason::FlowNotConfigured,
            LoginError::NotConfigured.to_string(),
        )
        .into_response(),
        Err(e) => found(&flow.login_error_url(e)),
    }
}

/// `GET /auth/callback?code&state` → 302 to the frontend with an exchange code (never tokens).
async fn auth_callback(
    Extension(rt): Pinned,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let binding = params
        .get("state")
        .and_then(|state| cookie_value(&headers, &rt.flow.login_cookie_name(state)));
    let outcome = rt.flow.callback(&params, binding.as_ref()).await;
    with_cookies(found(&outcome.location), outcome.clear_cookie)
}

/// `POST /auth/exchange {"code"}` → HttpOnly cookies; tokens never in the body.
async fn auth_exchange(Extension(rt): Pinned, body: Bytes) -> Result<Response, ApiError> {
    let req: RedeemRequest = parse_json(&body)?;
    let cookies = rt.flow.exchange(req.code.expose()).await?;
    Ok(with_cookies(success(), cookies))
}

/// `POST /auth/refresh` (refresh cookie) → new cookies.
async fn auth_refresh(
    Extension(runtime): Pinned,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let refresh_name = &runtime.config.cookies.refresh_name;
    let Some(rt) = cookie_value(&headers, refresh_name) else {
        return Err(ApiError::new(
            Reason::NoSession,
            format!("no session: no `{refresh_name}` cookie"),
        ));
    };
    match runtime.flow.refresh(&rt).await {
        Ok(tokens) => {
            let cookies = runtime
                .flow
                .set_cookies(&tokens.access_token, tokens.refresh_token.as_ref());
            Ok(with_cookies(success(), cookies))
        }
        Err(e) => {
            // A refresh token that is dead for good: clear the cookies.
            let clear = e.ends_session();
            let resp = ApiError::from(e).into_response();
            Ok(if clear {
                with_cookies(resp, runtime.flow.clear_cookies())
            } else {
                resp
            })
        }
    }
}

/// `POST /auth/logout` → session ended, refresh token revoked, cookies cleared,
/// `{"logout_url"}`.
async fn auth_logout(Extension(rt): Pinned, headers: HeaderMap) -> Response {
    let access = cookie_value(&headers, &rt.config.cookies.access_name);
    let refresh = cookie_value(&headers, &rt.config.cookies.refresh_name);
    let logout_url = rt.flow.logout(access.as_ref(), refresh.as_ref()).await;
    with_cookies(
        respond::json(StatusCode::OK, &LogoutResponse { logout_url }),
        rt.flow.clear_cookies(),
    )
}

/// `GET /auth/session` → the verified claims of the access cookie.
async fn auth_session(Extension(rt): Pinned, headers: HeaderMap) -> Result<Response, ApiError> {
    let name = &rt.config.cookies.access_name;
    let Some(token) = cookie_value(&headers, name) else {
        return Err(ApiError::inactive(
            Reason::NoSession,
            format!("no session: no `{name}` cookie (not logged in)"),
        ));
    };
    verify(&rt, token.expose()).await
}

/// `POST /auth/backchannel-logout` (form field `logout_token`), OpenID Connect Back-Channel
/// Logout 1.0: 200 on success, 400 `{"error": "invalid_request", …}` otherwise.
async fn auth_backchannel_logout(Extension(rt): Pinned, body: Bytes) -> Response {
    let description = match logout_token_field(&body) {
        None => "the form field `logout_token` is missing".to_string(),
        Some(token) => match rt.flow.backchannel_logout(&token).await {
            Ok(_) => return no_store(StatusCode::OK.into_response()),
            Err(e) => e.to_string(),
        },
    };
    tracing::info!(error = %description, "back-channel logout refused");
    let body = serde_json::json!({"error": "invalid_request", "error_description": description});
    (StatusCode::BAD_REQUEST, json_headers(), body.to_string()).into_response()
}
