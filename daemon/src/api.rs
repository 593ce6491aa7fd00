//! The apps' HTTP API served on both listeners (never the admin API, which has its own
//! socket and router in `admin`): the router, its layers (limits, timeouts, request
//! log) and the handlers, which parse requests (`extract`) and shape answers (`respond`); the
//! logic they call lives in `verify`, `codes` and `flow`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use tokend_shared::{
    IssueCodeRequest, IssueCodeResponse, LogoutResponse, Reason, RedeemRequest, RedeemResponse,
    VerifyRequest,
};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::codes::{CodeKind, NewCode};
use crate::error::{ApiError, normalize};
use crate::extract::{cookie_value, parse_json, strip_bearer, token_from_headers};
use crate::flow::LoginError;
use crate::respond::{self, found, json_headers, no_store, success, with_cookies};
use crate::verify::now_unix;
use crate::{AppState, Runtime};

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
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            pin_runtime,
        ))
        // Outermost last: `normalize` sees the bare 408/413 answers of the inner layers.
        .layer(RequestBodyLimitLayer::new(listen.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            listen.max_body_bytes,
            drain_oversized,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            listen.request_timeout,
        ))
        .layer(axum::middleware::map_response(normalize))
        .layer(axum::middleware::from_fn(log_request))
        .with_state(state)
}

/// Pins the runtime in force when the request arrives (once its headers are read): handlers
/// take it from the request's extensions, so a request finishes under the configuration it
/// started with even when a reload swaps it while the body is still arriving.
async fn pin_runtime(
    State(state): State<Arc<AppState>>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    req.extensions_mut().insert(state.runtime());
    next.run(req).await
}

/// The runtime pinned by [`pin_runtime`].
type Pinned = Extension<Arc<Runtime>>;

/// Per-process prefix of generated request ids, so ids from restarts do not collide.
static REQUEST_PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
static REQUEST_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The caller's `X-Request-Id` when it is short and plain, else a generated one.
fn request_id(headers: &HeaderMap) -> String {
    if let Some(id) = headers.get("x-request-id").and_then(|v| v.to_str().ok())
        && !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return id.to_string();
    }
    let prefix = REQUEST_PREFIX.get_or_init(|| {
        let mut b = [0u8; 4];
        let _ = getrandom::fill(&mut b);
        b.iter().map(|x| format!("{x:02x}")).collect()
    });
    let n = REQUEST_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{n:x}")
}

/// One log line per request: id, method, path (never the query: it may hold codes), status,
/// reason, latency. Flow requests and errors at INFO (5xx at WARN), the rest at DEBUG.
pub(crate) async fn log_request(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let id = request_id(req.headers());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut resp = next.run(req).await;
    let status = resp.status().as_u16();
    let reason = resp.extensions().get::<Reason>().map_or("", |r| r.as_str());
    let latency_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    macro_rules! line {
        ($level:ident) => {
            tracing::$level!(request_id = %id, %method, path = %path, status, reason, latency_us, "request")
        };
    }
    if status >= 500 {
        line!(warn);
    } else if path.starts_with("/auth/") || (status >= 400 && status != 401) {
        line!(info);
    } else {
        line!(debug);
    }
    resp
}

/// Most of an oversized body tokend reads (and drops) before answering 413.
const DRAIN_CAP: u64 = 1024 * 1024;

/// Answers 413 to a declared-oversized body after reading it (up to [`DRAIN_CAP`]): closing
/// a connection with unread data makes the kernel reset it, and the client may then never see
/// the 413. Bodies without a Content-Length are cut by `RequestBodyLimitLayer`.
async fn drain_oversized(
    State(max): State<usize>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(len) if len > max as u64 => {
            if len <= DRAIN_CAP {
                let body = http_body_util::Limited::new(req.into_body(), DRAIN_CAP as usize);
                let _ = http_body_util::BodyExt::collect(body).await;
            }
            ApiError::new(
                Reason::PayloadTooLarge,
                format!("request body is larger than {max} bytes"),
            )
            .into_response()
        }
        _ => next.run(req).await,
    }
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
async fn verify_get(Extension(rt): Pinned, headers: HeaderMap) -> Result<Response, ApiError> {
    let started = Instant::now();
    let token = token_from_headers(&headers, &rt.config.cookies.access_name)
        .map_err(|e| counted(&rt, e, started))?;
    verify(&rt, token.expose()).await
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
