//! The `/dev/*` routes `tokend dev` adds to tokend's own router (both listeners; they exist in
//! no other mode): `POST /dev/token` mints an access token, `POST /dev/logout` has the dev
//! issuer send a back-channel logout, and `/dev/app/…` is a tiny frontend for the login flow
//! (its callback trades the exchange code for cookies, its home page shows the session).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Extension;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tokend_shared::Reason;

use super::DevError;
use super::issuer::{DevIssuer, DevUser};
use super::login::{escape, page};
use crate::error::ApiError;
use crate::extract::parse_json;
use crate::{AppState, Runtime};

/// Longest `ttl` of `/dev/token`, either way (seconds).
pub const MAX_TTL: i64 = 86_400;
/// `/dev/token`'s default `ttl` (seconds).
pub const DEFAULT_TTL: i64 = 300;
/// `/dev/token`'s default `scope`.
pub const DEFAULT_SCOPE: &str = "openid email profile organization";

/// The routes, for [`crate::Hooks::routes`].
pub fn routes(issuer: Arc<DevIssuer>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/dev/token", post(mint))
        .route("/dev/logout", post(logout))
        .route("/dev/app", get(app_home))
        .route("/dev/app/", get(app_home))
        .route("/dev/app/auth/callback", get(app_callback))
        .route("/dev/app/auth/login", get(app_login))
        .layer(Extension(issuer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MintRequest {
    sub: Option<String>,
    email: Option<String>,
    name: Option<String>,
    groups: Option<Vec<String>>,
    #[serde(rename = "organizationId")]
    organization_id: Option<String>,
    role: Option<String>,
    ttl: Option<i64>,
    scope: Option<String>,
}

fn dev_error(e: DevError) -> Response {
    let reason = match e {
        DevError::UnknownSession => Reason::NotFound,
        DevError::LogoutRefused(_) | DevError::Http(_) => Reason::ProviderUnavailable,
        _ => Reason::Internal,
    };
    ApiError::new(reason, e.to_string()).into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    ApiError::new(Reason::BadRequest, message).into_response()
}

/// `POST /dev/token`.
async fn mint(
    Extension(issuer): Extension<Arc<DevIssuer>>,
    Extension(rt): Extension<Arc<Runtime>>,
    body: Bytes,
) -> Response {
    let body = if body.is_empty() { &b"{}"[..] } else { &body };
    let req: MintRequest = match parse_json(body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let ttl = req.ttl.unwrap_or(DEFAULT_TTL);
    if !(-MAX_TTL..=MAX_TTL).contains(&ttl) {
        return bad_request(format!(
            "ttl must be between -{MAX_TTL} and {MAX_TTL} seconds"
        ));
    }
    let mut user = match &req.sub {
        Some(sub) if sub.is_empty() => return bad_request("sub must not be empty"),
        Some(sub) => issuer
            .users
            .iter()
            .find(|u| &u.sub == sub || &u.username == sub)
            .cloned()
            .unwrap_or_else(|| {
                let mut u = DevUser::new(sub, sub, &[], None);
                u.sub = sub.clone();
                u
            }),
        None => match issuer.users.first() {
            Some(u) => u.clone(),
            None => return dev_error(DevError::Key),
        },
    };
    if let Some(email) = req.email {
        user.email = email;
    }
    if let Some(name) = req.name {
        user.name = name;
    }
    if let Some(org) = req.organization_id {
        user.organization_id = Some(org);
    }
    match (req.groups, req.role) {
        (Some(groups), _) => user.groups = groups,
        (None, Some(role)) => match groups_for_role(&rt, &role) {
            Some(groups) => user.groups = groups,
            None => {
                let claims = &rt.config.claims;
                let known: Vec<&str> = claims.roles.iter().map(|r| r.role.as_str()).collect();
                return bad_request(format!(
                    "role is none of the configured roles ({}) nor the default role ({})",
                    known.join(", "),
                    claims.default_role
                ));
            }
        },
        (None, None) => {}
    }
    let scope = req.scope.unwrap_or_else(|| DEFAULT_SCOPE.to_string());
    match issuer.mint_access(&user, &scope, ttl) {
        Ok((token, sid)) => crate::respond::json(
            StatusCode::OK,
            &json!({
                "access_token": token.expose(),
                "token_type": "Bearer",
                "expires_in": ttl,
                "sid": sid,
                "sub": user.sub,
            }),
        ),
        Err(e) => dev_error(e),
    }
}

/// The groups that give `role` under the running `[claims]` rules.
fn groups_for_role(rt: &Runtime, role: &str) -> Option<Vec<String>> {
    let claims = &rt.config.claims;
    if let Some(rule) = claims.roles.iter().find(|r| r.role == role) {
        return Some(vec![rule.group.clone()]);
    }
    (claims.default_role == role).then(Vec::new)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogoutRequest {
    sid: Option<String>,
    sub: Option<String>,
}

/// `POST /dev/logout`.
async fn logout(Extension(issuer): Extension<Arc<DevIssuer>>, body: Bytes) -> Response {
    let req: LogoutRequest = match parse_json(&body) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    if req.sid.is_none() && req.sub.is_none() {
        return bad_request("give sid or sub");
    }
    match issuer
        .backchannel_logout(req.sid.as_deref(), req.sub.as_deref())
        .await
    {
        Ok(()) => crate::respond::json(StatusCode::OK, &json!({"sent": true})),
        Err(e) => dev_error(e),
    }
}

/// `GET /dev/app/`: the dev frontend's home: the session, refresh and logout.
async fn app_home() -> Response {
    let body = r#"<p><a href="/auth/login?redirect=/">Log in through the flow</a></p>
<pre id="session">…</pre>
<p><button id="refresh">POST /auth/refresh</button> <button id="logout">POST /auth/logout</button></p>
<script>
async function show() {
  const r = await fetch('/auth/session');
  document.getElementById('session').textContent = r.status + ' ' + JSON.stringify(await r.json(), null, 2);
}
document.getElementById('refresh').onclick = async () => { await fetch('/auth/refresh', {method: 'POST'}); show(); };
document.getElementById('logout').onclick = async () => {
  const r = await fetch('/auth/logout', {method: 'POST'});
  const j = await r.json();
  if (j.logout_url) { location = j.logout_url; } else { show(); }
};
show();
</script>"#;
    no_store_html(page("tokend dev app", body))
}

/// `GET /dev/app/auth/callback?exchange=CODE`: trades the code for cookies (in the browser,
/// so the code never reaches a server log), then goes home.
async fn app_callback() -> Response {
    let body = r#"<p id="status">Exchanging the code…</p>
<script>
const code = new URLSearchParams(location.search).get('exchange');
fetch('/auth/exchange', {method: 'POST', headers: {'content-type': 'application/json'},
                         body: JSON.stringify({code})})
  .then(async r => {
    if (r.ok) { location.replace('/dev/app/'); }
    else { document.getElementById('status').textContent = 'exchange failed: ' + JSON.stringify(await r.json()); }
  });
</script>"#;
    no_store_html(page("tokend dev app: callback", body))
}

#[derive(Deserialize)]
struct LoginErrorQuery {
    error: Option<String>,
}

/// `GET /dev/app/auth/login?error=NAME`: where the flow reports a failed login.
async fn app_login(axum::extract::Query(q): axum::extract::Query<LoginErrorQuery>) -> Response {
    let error = q.error.unwrap_or_default();
    no_store_html(page(
        "tokend dev app: login failed",
        &format!(
            "<p>Login error: <code>{}</code></p><p><a href=\"/auth/login?redirect=/\">Try again</a></p>",
            escape(&error)
        ),
    ))
}

fn no_store_html(html: String) -> Response {
    crate::respond::no_store(Html(html).into_response())
}
