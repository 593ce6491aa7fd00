//! `GET /auth/login`: the authorization request (state, nonce, PKCE S256), and the
//! browser-binding cookie whose hash the login state keeps, so that only the browser that
//! started a login can complete it (RFC 9700 §4.7).

use openidconnect::core::CoreAuthenticationFlow;
use openidconnect::{CsrfToken, Nonce, PkceCodeChallenge, Scope};
use tokend_shared::Secret;

use super::{Flow, LoginError, safe_redirect};
use crate::codes::random_handle;
use crate::store::{Kind, LoginState, Record, StoreError, key_of};
use crate::verify::now_unix;

/// A login begun: where to send the browser, and the binding cookie to set on the way.
#[derive(Debug)]
pub struct LoginStart {
    /// The provider's authorization URL.
    pub location: String,
    /// Set-Cookie of the browser-binding cookie.
    pub cookie: String,
}

impl Flow {
    /// `GET /auth/login?redirect=/path`.
    pub async fn login(&self, redirect: Option<&str>) -> Result<LoginStart, LoginError> {
        let result = self.try_login(redirect).await;
        self.metrics.flow_step("login", result.is_ok());
        result
    }

    async fn try_login(&self, redirect: Option<&str>) -> Result<LoginStart, LoginError> {
        let cfg = self.cfg.as_ref().ok_or(LoginError::NotConfigured)?;
        let redirect = match redirect {
            None | Some("") => "/".to_string(),
            Some(r) => safe_redirect(r).ok_or(LoginError::InvalidRedirect)?,
        };
        let client = self.browser_client()?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let random = || random_handle().map_err(|_| LoginError::Internal);
        let (state, nonce, binding) = (random()?, random()?, random()?);
        let state_for_url = state.clone();
        let nonce_for_url = nonce.clone();
        // openidconnect adds `openid` itself.
        let mut scopes: Vec<String> = cfg
            .scopes
            .iter()
            .filter(|s| *s != "openid")
            .cloned()
            .collect();
        if let Some(org) = &cfg.organization_scope
            && !scopes.contains(org)
        {
            scopes.push(org.clone());
        }
        let (url, _, _) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state_for_url.expose().to_string()),
                move || Nonce::new(nonce_for_url.expose().to_string()),
            )
            .add_scopes(scopes.into_iter().map(Scope::new))
            .set_pkce_challenge(challenge)
            .url();
        let now = now_unix();
        let ttl = i64::try_from(cfg.state_ttl.as_secs()).unwrap_or(i64::MAX);
        let record = Record::Login(LoginState {
            nonce,
            pkce_verifier: Secret::new(verifier.secret().clone()),
            redirect,
            browser: key_of(binding.expose()),
            created: now,
            expires: now.saturating_add(ttl),
        });
        let stored = self
            .store
            .put(Kind::LoginState, key_of(state.expose()), record)
            .await
            .map_err(|e| match e {
                StoreError::Full(..) | StoreError::Duplicate => LoginError::Internal,
                StoreError::Unavailable(_) => LoginError::StoreUnavailable,
            })?;
        if stored.evicted > 0 {
            self.metrics.logins_evicted.inc_by(stored.evicted as u64);
        }
        let name = self.login_cookie_name(state.expose());
        Ok(LoginStart {
            location: url.to_string(),
            cookie: self.login_cookie(&name, binding.expose(), cfg.state_ttl),
        })
    }
}
