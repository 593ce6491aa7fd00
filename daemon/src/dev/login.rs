//! The dev issuer's authorize endpoint and its login page: `GET authorize/` checks the request
//! (client, the one registered redirect URI, `response_type=code`, PKCE method) and shows a
//! minimal DEV ONLY page — pick a built-in user or type a sub/email — whose form posts back to
//! `authorize/`, which starts a session, mints a code and redirects to the callback.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::issuer::{AuthRequest, CLIENT_ID, DevIssuer, DevUser};
use crate::respond::found;
use crate::verify::now_unix;

#[derive(Deserialize)]
pub struct AuthorizeQuery {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

/// `GET authorize/`: the login page, or an error.
pub async fn authorize(
    State(issuer): State<Arc<DevIssuer>>,
    Query(q): Query<AuthorizeQuery>,
) -> Response {
    if q.client_id.as_deref() != Some(CLIENT_ID) {
        return error_page("unknown client_id (the dev client is \"tokend-dev\")");
    }
    let Some(redirect_uri) = q.redirect_uri.filter(|r| *r == issuer.redirect_uri) else {
        return error_page("redirect_uri is not the one registered for the dev client");
    };
    let back_with = |error: &str| {
        let mut url = reqwest::Url::parse(&redirect_uri).ok();
        if let Some(u) = url.as_mut() {
            u.query_pairs_mut()
                .append_pair("error", error)
                .append_pair("state", q.state.as_deref().unwrap_or(""));
        }
        found(url.as_ref().map_or("", |u| u.as_str()))
    };
    if q.response_type.as_deref() != Some("code") {
        return back_with("unsupported_response_type");
    }
    let code_challenge = match (q.code_challenge, q.code_challenge_method.as_deref()) {
        (None, _) => None,
        (Some(c), None | Some("plain")) => Some((c, "plain".to_string())),
        (Some(c), Some("S256")) => Some((c, "S256".to_string())),
        (Some(_), Some(_)) => return back_with("invalid_request"),
    };
    let scope = q
        .scope
        .unwrap_or_else(|| "openid email profile offline_access organization".into());
    let req = AuthRequest {
        redirect_uri,
        state: q.state,
        nonce: q.nonce,
        scope,
        code_challenge,
        created: now_unix(),
    };
    match issuer.park_authorization(req) {
        Ok(handle) => Html(login_page(&issuer, &handle)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "dev issuer: cannot start a login");
            (StatusCode::INTERNAL_SERVER_ERROR, "dev issuer failed").into_response()
        }
    }
}

#[derive(Deserialize)]
pub struct LoginForm {
    request: String,
    /// A built-in username, or `custom`, or `cancel`.
    user: String,
    #[serde(default)]
    sub: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    groups: String,
    #[serde(default)]
    organization_id: String,
}

/// `POST authorize/`: the login page's form. Redirects to the callback with a code.
pub async fn login(
    State(issuer): State<Arc<DevIssuer>>,
    axum::Form(form): axum::Form<LoginForm>,
) -> Response {
    let Some(req) = issuer.take_authorization(&form.request) else {
        return error_page("this login expired or was already used; start again");
    };
    let mut url = match reqwest::Url::parse(&req.redirect_uri) {
        Ok(u) => u,
        Err(_) => return error_page("bad redirect_uri"),
    };
    let state = req.state.clone().unwrap_or_default();
    let user = match form.user.as_str() {
        "cancel" => {
            url.query_pairs_mut()
                .append_pair("error", "access_denied")
                .append_pair("state", &state);
            return found(url.as_str());
        }
        "custom" => match custom_user(&form) {
            Some(u) => u,
            None => return error_page("type a sub or an email"),
        },
        name => match issuer.users.iter().find(|u| u.username == name) {
            Some(u) => u.clone(),
            None => return error_page("no such built-in user"),
        },
    };
    match issuer.issue_code(req, user) {
        Ok(code) => {
            url.query_pairs_mut()
                .append_pair("code", code.expose())
                .append_pair("state", &state);
            found(url.as_str())
        }
        Err(e) => {
            tracing::error!(error = %e, "dev issuer: cannot issue a code");
            error_page("the dev issuer failed")
        }
    }
}

/// A user typed into the form: `sub` and/or `email` (the other derived from it).
fn custom_user(form: &LoginForm) -> Option<DevUser> {
    let (sub, email) = (form.sub.trim(), form.email.trim());
    if sub.is_empty() && email.is_empty() {
        return None;
    }
    let username = if email.is_empty() {
        sub
    } else {
        email.split('@').next().unwrap_or(email)
    };
    let mut user = DevUser::new(username, username, &[], None);
    if !sub.is_empty() {
        user.sub = sub.to_string();
    }
    if !email.is_empty() {
        user.email = email.to_string();
    }
    if !form.name.trim().is_empty() {
        user.name = form.name.trim().to_string();
    }
    user.groups = form
        .groups
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect();
    let org = form.organization_id.trim();
    user.organization_id = (!org.is_empty()).then(|| org.to_string());
    Some(user)
}

fn error_page(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Html(page(
            "Dev login: error",
            &format!("<p>{}</p>", escape(message)),
        )),
    )
        .into_response()
}

fn login_page(issuer: &DevIssuer, handle: &str) -> String {
    let mut users = String::new();
    for u in &issuer.users {
        users += &format!(
            "<li><button name=\"user\" value=\"{}\">{} &lt;{}&gt;</button> groups: {} · organizationId: {}</li>\n",
            escape(&u.username),
            escape(&u.name),
            escape(&u.email),
            escape(&u.groups.join(", ")),
            escape(u.organization_id.as_deref().unwrap_or("-")),
        );
    }
    let body = format!(
        r#"<form method="post">
<input type="hidden" name="request" value="{handle}">
<p>Log in as:</p>
<ul>
{users}</ul>
<fieldset><legend>or as anyone</legend>
<label>sub <input name="sub"></label>
<label>email <input name="email"></label>
<label>name <input name="name"></label>
<label>groups (comma-separated) <input name="groups"></label>
<label>organizationId <input name="organization_id"></label>
<button name="user" value="custom">Log in</button>
</fieldset>
<p><button name="user" value="cancel">Cancel (access_denied)</button></p>
</form>"#,
        handle = escape(handle),
    );
    page("Dev login", &body)
}

/// A whole HTML page with the DEV ONLY banner.
pub fn page(title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>{title} — tokend dev (NOT FOR PRODUCTION)</title>
<style>body{{font-family:sans-serif;max-width:48em;margin:2em auto}} .dev{{background:#b00;color:#fff;padding:.5em 1em;font-weight:bold}} label{{display:block;margin:.3em 0}}</style>
</head><body>
<p class="dev">DEV ONLY — tokend's built-in development issuer. Not for production: anyone can log in as anyone.</p>
<h1>{title}</h1>
{body}
</body></html>
"#,
        title = escape(title),
    )
}

/// HTML escaping of text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
