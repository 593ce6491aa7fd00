//! `GET /auth/callback`: the end of a login. The state is taken (single use), the browser must
//! present the login's binding cookie, the authorization code is exchanged (through the
//! internal URL), the ID token (nonce) and access token are verified, the session registered,
//! and the browser sent to the frontend with a one-time exchange code — never a token.

use std::collections::HashMap;
use std::time::Instant;

use openidconnect::{AuthorizationCode, OAuth2TokenResponse, PkceCodeVerifier, TokenResponse};
use tokend_shared::Secret;

use super::{Flow, LoginError, describe_token_error, frontend_url};
use crate::codes::{CodeError, CodeKind, NewCode};
use crate::sessions::NewSession;
use crate::store::{Kind, LoginState, Record, StoreError, TakeError, key_of};
use crate::verify::{constant_time_eq, now_unix};

/// Provider error codes passed through to the frontend as `?error=`; others become
/// `provider_error`.
const PROVIDER_ERRORS: &[&str] = &[
    "access_denied",
    "login_required",
    "consent_required",
    "interaction_required",
    "account_selection_required",
    "invalid_request",
    "invalid_scope",
    "unauthorized_client",
    "unsupported_response_type",
    "server_error",
    "temporarily_unavailable",
];

/// Where the callback sends the browser, and the binding cookie it clears on the way.
#[derive(Debug)]
pub struct CallbackOutcome {
    /// The frontend's callback with an exchange code, or its login page with `?error=`.
    pub location: String,
    /// Set-Cookie deleting the login's binding cookie, once the state is used up.
    pub clear_cookie: Option<String>,
}

impl Flow {
    /// Always answers with a redirect. `binding` is the value of the cookie named
    /// [`Flow::login_cookie_name`] of the callback's `state`, if the browser sent it.
    pub async fn callback(
        &self,
        params: &HashMap<String, String>,
        binding: Option<&Secret>,
    ) -> CallbackOutcome {
        // The binding cookie is useless once the state is consumed, whatever the outcome.
        let clear_cookie = params
            .get("state")
            .filter(|s| !s.is_empty())
            .map(|state| self.clear_login_cookie(&self.login_cookie_name(state)));
        let location = match self.try_callback(params, binding).await {
            Ok(url) => {
                self.metrics.flow_step("callback", true);
                url
            }
            Err(e) => {
                self.metrics.flow_step("callback", false);
                tracing::info!(error = e.name(), message = %e, "login callback refused");
                self.login_error_url(e)
            }
        };
        CallbackOutcome {
            location,
            clear_cookie,
        }
    }

    async fn try_callback(
        &self,
        params: &HashMap<String, String>,
        binding: Option<&Secret>,
    ) -> Result<String, LoginError> {
        let cfg = self.cfg.as_ref().ok_or(LoginError::NotConfigured)?;
        let now = now_unix();
        // The state is consumed whatever else happens: it is single-use.
        let state = params.get("state").filter(|s| !s.is_empty());
        let login = match state {
            None => Err(TakeError::Unknown),
            Some(state) => match self.store.take(Kind::LoginState, key_of(state), now).await {
                Ok(Record::Login(l)) => Ok(l),
                Ok(Record::Code(_)) => Err(TakeError::Unknown),
                Err(e) => Err(e),
            },
        };
        if let Some(error) = params.get("error") {
            return Err(PROVIDER_ERRORS
                .iter()
                .find(|known| **known == error.as_str())
                .map_or(LoginError::ProviderError, |known| {
                    LoginError::Provider(known)
                }));
        }
        let login = login.map_err(|e| match e {
            TakeError::Unknown => LoginError::InvalidState,
            TakeError::Expired | TakeError::ExpiredSwept => LoginError::StateExpired,
            TakeError::AlreadyUsed => LoginError::StateReplayed,
            TakeError::Unavailable(_) => LoginError::StoreUnavailable,
        })?;
        check_browser(&login, binding)?;
        let code = params
            .get("code")
            .filter(|c| !c.is_empty())
            .ok_or(LoginError::MissingCode)?;

        let client = self.browser_client()?;
        let http = self.provider.oidc_http_client();
        let started = Instant::now();
        let response = client
            .exchange_code(AuthorizationCode::new(code.clone()))
            .set_pkce_verifier(PkceCodeVerifier::new(
                login.pkce_verifier.expose().to_string(),
            ))
            .request_async(&http)
            .await;
        self.metrics.upstream("token", started.elapsed());
        self.note_token_answer(&response);
        let response = response.map_err(|e| {
            tracing::warn!(error = %describe_token_error(&e), "code exchange failed");
            LoginError::ExchangeFailed
        })?;
        let access_token = Secret::new(response.access_token().secret().clone());
        let refresh_token = response
            .refresh_token()
            .map(|r| Secret::new(r.secret().clone()));
        let id_token = response
            .id_token()
            .map(|t| Secret::new(t.to_string()))
            .ok_or(LoginError::InvalidIdToken)?;
        let id_claims = self
            .verifier
            .verify_id_token(id_token.expose(), login.nonce.expose())
            .await
            .map_err(|e| {
                tracing::warn!(reason = %e.reason(), error = %e, "ID token refused");
                LoginError::InvalidIdToken
            })?;
        let claims = self
            .verifier
            .verify_uncached(access_token.expose())
            .await
            .map_err(|e| {
                tracing::warn!(reason = %e.reason(), error = %e, "access token refused");
                LoginError::InvalidAccessToken
            })?;
        let sid = id_claims
            .get("sid")
            .and_then(|s| s.as_str())
            .map(str::to_owned);
        let session = self.verifier.create_session(NewSession {
            claims: &claims,
            sid: sid.clone(),
            id_token: Some(id_token.clone()),
            refresh_token: refresh_token.clone(),
            refresh_expires: now.saturating_add(self.refresh_lifetime()),
            now,
        });
        // Shared with the other instances before the browser can use it anywhere.
        if let Some(shared) = self.shared() {
            shared.save(&session.record()).await.map_err(|e| {
                tracing::warn!(error = %e, "the session could not be shared");
                LoginError::StoreUnavailable
            })?;
        }
        let exchange = self
            .codes
            .issue(
                NewCode {
                    access_token,
                    refresh_token,
                    id_token: Some(id_token),
                    sub: claims.sub.clone(),
                    sid,
                    kind: CodeKind::Flow,
                },
                now,
            )
            .await
            .map_err(issue_error)?;
        tracing::info!(sub = %session.sub, "login completed");
        self.metrics.audit.user(
            tokend_shared::AuditKind::LoginCompleted,
            &session.sub,
            session.sid.as_deref(),
        );
        let mut url = frontend_url(cfg, &cfg.frontend_callback_path).ok_or(LoginError::Internal)?;
        url.query_pairs_mut()
            .append_pair("exchange", exchange.expose())
            .append_pair("redirect", &login.redirect);
        Ok(url.to_string())
    }
}

/// What the browser is told when no exchange code could be minted. (With the Redis store the
/// session is saved there first, so an outage shows up before this — unless it begins in
/// between.)
fn issue_error(e: CodeError) -> LoginError {
    match e {
        CodeError::Store(StoreError::Full(..)) => LoginError::CapacityExceeded,
        CodeError::Store(StoreError::Unavailable(_)) => LoginError::StoreUnavailable,
        _ => LoginError::Internal,
    }
}

/// The request must carry the binding cookie of this login (compared in constant time).
fn check_browser(login: &LoginState, binding: Option<&Secret>) -> Result<(), LoginError> {
    match binding {
        Some(value) if constant_time_eq(&key_of(value.expose()), &login.browser) => Ok(()),
        _ => Err(LoginError::BrowserMismatch),
    }
}

#[cfg(test)]
mod mutation_tests;
