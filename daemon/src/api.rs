//! The HTTP API served on both listeners: health, readiness and token verification.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokend_shared::{Reason, Secret, VerifyRequest};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::AppState;
use crate::error::{ApiError, json_headers, normalize};

pub fn router(state: Arc<AppState>) -> Router {
    let listen = &state.config.listen;
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/v1/verify", get(verify_get).post(verify_post))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
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
        .with_state(state)
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
    let readiness = state.jwks.readiness();
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::to_vec(&readiness).unwrap_or_default();
    (status, json_headers(), body).into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(Reason::NotFound, "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        Reason::MethodNotAllowed,
        "method not allowed on this endpoint",
    )
}

/// `POST /v1/verify {"token": "…"}`.
async fn verify_post(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: VerifyRequest = parse_json(&body)?;
    let token = strip_bearer(req.token.expose());
    if token.is_empty() {
        return Err(ApiError::inactive(Reason::MissingToken, "`token` is empty"));
    }
    verify(&state, token).await
}

/// `GET /v1/verify`: the token from the access cookie, else `Authorization: Bearer`; never
/// from the query string.
async fn verify_get(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let token = token_from_headers(&headers, &state.config.cookies.access_name)?;
    verify(&state, token.expose()).await
}

async fn verify(state: &AppState, token: &str) -> Result<Response, ApiError> {
    let verified = state.verifier.verify(token).await.map_err(|e| {
        tracing::debug!(reason = %e.reason(), message = %e, "token refused");
        ApiError::from(e)
    })?;
    Ok((json_headers(), verified.body.clone()).into_response())
}

/// The reference design's order: cookie first, then the Bearer header.
pub fn token_from_headers(headers: &HeaderMap, cookie_name: &str) -> Result<Secret, ApiError> {
    for value in headers.get_all(header::COOKIE) {
        let Ok(value) = value.to_str() else { continue };
        for cookie in cookie::Cookie::split_parse(value).flatten() {
            if cookie.name() == cookie_name && !cookie.value().is_empty() {
                return Ok(Secret::new(cookie.value()));
            }
        }
    }
    match headers.get(header::AUTHORIZATION).map(|v| v.to_str()) {
        Some(Ok(v)) if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") => {
            Ok(Secret::new(v[7..].trim()))
        }
        Some(_) => Err(ApiError::inactive(
            Reason::MissingToken,
            "the Authorization header is not a Bearer token",
        )),
        None => Err(ApiError::inactive(
            Reason::MissingToken,
            format!("no `{cookie_name}` cookie and no Authorization: Bearer header"),
        )),
    }
}

fn strip_bearer(token: &str) -> &str {
    let token = token.trim();
    if token.len() > 7 && token[..7].eq_ignore_ascii_case("bearer ") {
        token[7..].trim_start()
    } else {
        token
    }
}

/// Parses a JSON body. Error messages give the position and kind, never input text.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Io | serde_json::error::Category::Eof => "incomplete JSON",
            serde_json::error::Category::Syntax => "invalid JSON",
            serde_json::error::Category::Data => "JSON of the wrong shape",
        };
        let hint = if e.classify() == serde_json::error::Category::Data {
            // serde's message for missing/unknown fields names only field names; other data
            // errors may quote the input, so they are left out.
            let msg = e.to_string();
            if msg.starts_with("missing field") || msg.starts_with("unknown field") {
                format!(" ({})", msg.split(" at line").next().unwrap_or(""))
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        ApiError::new(
            Reason::BadRequest,
            format!(
                "request body is {what}{hint} at line {} column {}",
                e.line(),
                e.column()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cookie_wins_over_bearer() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer from-header"),
        );
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=b; ecosire_auth=from-cookie"),
        );
        let t = token_from_headers(&h, "ecosire_auth").expect("found");
        assert_eq!(t.expose(), "from-cookie");
        h.remove(header::COOKIE);
        let t = token_from_headers(&h, "ecosire_auth").expect("found");
        assert_eq!(t.expose(), "from-header");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcjpwYXNz"),
        );
        assert!(token_from_headers(&h, "ecosire_auth").is_err());
    }

    #[test]
    fn json_errors_never_quote_the_input() {
        let err = parse_json::<VerifyRequest>(br#"{"token": 12345678}"#).expect_err("bad type");
        assert!(!err.message.contains("12345678"), "{}", err.message);
        let err = parse_json::<VerifyRequest>(br#"{"tokn": "eyJsecret"}"#).expect_err("unknown");
        assert!(
            err.message.contains("unknown field `tokn`"),
            "{}",
            err.message
        );
        assert!(!err.message.contains("eyJsecret"), "{}", err.message);
        let err = parse_json::<VerifyRequest>(b"{").expect_err("eof");
        assert_eq!(err.reason, Reason::BadRequest);
    }
}
