//! The dev issuer's own HTTP server on loopback, laid out like Authentik
//! (`/application/o/…` under the dev-only prefix): discovery, JWKS, the token endpoint
//! (authorization_code with PKCE, refresh_token with rotation; client_secret_basic or _post),
//! RFC 7009 revocation and end-session. The authorize endpoint and its login page are in
//! `login`. tokend reaches all of it through its ordinary provider client.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokend_shared::Secret;

use super::issuer::{ACCESS_TTL, CLIENT_ID, DEV_PREFIX, DevIssuer, Grant, Refresh};
use super::login;

/// The issuer's router.
pub fn router(issuer: Arc<DevIssuer>) -> Router {
    let app = format!("{DEV_PREFIX}/application/o");
    Router::new()
        .route(
            &format!("{app}/{CLIENT_ID}/.well-known/openid-configuration"),
            get(discovery),
        )
        .route(&format!("{app}/{CLIENT_ID}/jwks/"), get(jwks))
        .route(
            &format!("{app}/authorize/"),
            get(login::authorize).post(login::login),
        )
        .route(&format!("{app}/token/"), post(token))
        .route(&format!("{app}/revoke/"), post(revoke))
        .route(&format!("{app}/{CLIENT_ID}/end-session/"), get(end_session))
        .with_state(issuer)
}

async fn discovery(State(issuer): State<Arc<DevIssuer>>) -> Response {
    axum::Json(issuer.discovery()).into_response()
}

async fn jwks(State(issuer): State<Arc<DevIssuer>>) -> Response {
    axum::Json(issuer.jwks()).into_response()
}

/// An OAuth error answer, `{"error", "error_description"}`.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Client authentication: `client_secret_basic` (percent-decoded, as Authentik does) or
/// `client_secret_post`.
fn client_ok(issuer: &DevIssuer, headers: &HeaderMap, form: &TokenForm) -> bool {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            let (id, secret) = s.split_once(':')?;
            Some((decode(id)?, Secret::new(decode(secret)?)))
        });
    let (id, secret) = match basic {
        Some(pair) => pair,
        None => match (&form.client_id, &form.client_secret) {
            (Some(id), Some(secret)) => (id.clone(), Secret::new(secret.clone())),
            _ => return false,
        },
    };
    let expected = issuer.client_secret.expose().as_bytes();
    id == CLIENT_ID
        && aws_lc_rs::constant_time::verify_slices_are_equal(secret.expose().as_bytes(), expected)
            .is_ok()
}

/// Form decoding of one credential (`+` and `%XX`).
fn decode(s: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={s}")).ok()?;
    pairs.into_iter().next().map(|(_, v)| v)
}

async fn token(
    State(issuer): State<Arc<DevIssuer>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<TokenForm>,
) -> Response {
    if !client_ok(&issuer, &headers, &form) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    let grant = match form.grant_type.as_deref() {
        Some("authorization_code") => match code_grant(&issuer, &form) {
            Ok(g) => g,
            Err(resp) => return *resp,
        },
        Some("refresh_token") => {
            let Some(rt) = &form.refresh_token else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "no refresh_token",
                );
            };
            match issuer.rotate_refresh(rt) {
                Refresh::Granted(g) => *g,
                Refresh::Unknown => {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "unknown token");
                }
                Refresh::Reused => {
                    tracing::warn!(
                        "dev issuer: a used (rotated) refresh token was presented again"
                    );
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "token revoked");
                }
            }
        }
        _ => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "authorization_code and refresh_token only",
            );
        }
    };
    let minted = match issuer.mint_grant(&grant) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "dev issuer: cannot mint tokens");
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "minting failed",
            );
        }
    };
    let mut body = json!({
        "access_token": minted.access_token.expose(),
        "token_type": "Bearer",
        "scope": minted.scope,
        "expires_in": ACCESS_TTL,
        "id_token": minted.id_token.expose(),
    });
    if let Some(rt) = &minted.refresh_token {
        body["refresh_token"] = json!(rt.expose());
    }
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        axum::Json(body),
    )
        .into_response()
}

/// The grant of an authorization code: single use, same redirect URI, PKCE checked.
fn code_grant(issuer: &DevIssuer, form: &TokenForm) -> Result<Grant, Box<Response>> {
    let bad = |d: &str| Box::new(oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", d));
    let code = form.code.as_deref().ok_or_else(|| bad("no code"))?;
    let grant = issuer
        .take_code(code)
        .ok_or_else(|| bad("unknown or expired code"))?;
    if form.redirect_uri.as_deref() != Some(grant.redirect_uri.as_str()) {
        return Err(bad("redirect_uri does not match"));
    }
    match (&grant.code_challenge, &form.code_verifier) {
        (None, None) => {}
        (None, Some(_)) => return Err(bad("code_verifier without a code_challenge")),
        (Some(_), None) => return Err(bad("code_verifier required")),
        (Some((challenge, method)), Some(verifier)) => {
            let computed = if method == "S256" {
                URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
            } else {
                verifier.clone()
            };
            if &computed != challenge {
                return Err(bad("PKCE verification failed"));
            }
        }
    }
    Ok(grant)
}

async fn revoke(
    State(issuer): State<Arc<DevIssuer>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<std::collections::HashMap<String, String>>,
) -> Response {
    let auth = TokenForm {
        grant_type: None,
        code: None,
        redirect_uri: None,
        code_verifier: None,
        refresh_token: None,
        client_id: form.get("client_id").cloned(),
        client_secret: form.get("client_secret").cloned(),
    };
    if !client_ok(&issuer, &headers, &auth) {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    if let Some(t) = form.get("token") {
        issuer.revoke(t);
    }
    StatusCode::OK.into_response()
}

#[derive(Deserialize)]
struct EndSession {
    id_token_hint: Option<String>,
    post_logout_redirect_uri: Option<String>,
}

/// RP-initiated logout: ends the session named by the ID token hint (its `sid`), sends tokend
/// the back-channel logout token as Authentik does, then returns the browser.
async fn end_session(
    State(issuer): State<Arc<DevIssuer>>,
    Query(q): Query<EndSession>,
) -> Response {
    let sid = q.id_token_hint.as_deref().and_then(|h| issuer.hint_sid(h));
    if let Some(sid) = sid
        && issuer.session_sub(&sid).is_some()
        && let Err(e) = issuer.backchannel_logout(Some(&sid), None).await
    {
        tracing::warn!(error = %e, "dev issuer: back-channel logout not delivered");
    }
    match q.post_logout_redirect_uri {
        Some(target) if target.starts_with("http://") || target.starts_with("https://") => {
            crate::respond::found(&target)
        }
        _ => Html(login::page(
            "Logged out",
            &format!(
                "<p>The dev session ended. <a href=\"{}/dev/app/\">Back to the dev app</a></p>",
                login::escape(&issuer.tokend_url)
            ),
        ))
        .into_response(),
    }
}
