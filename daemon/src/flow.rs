//! The login flow mounted behind the app's proxy: /auth/login (authorization request with
//! state, nonce, PKCE S256), /auth/callback (code exchange via the internal URL, ID token
//! check, one-time exchange code, redirect carrying only that code), /auth/exchange (code →
//! HttpOnly cookies), /auth/refresh (coalesced: one upstream refresh per refresh token),
//! /auth/logout (revocation, cookies cleared, end-session URL) and back-channel logout.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreJsonWebKeySet};
use openidconnect::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, Scope,
    TokenResponse, TokenUrl,
};
use reqwest::Url;
use tokend_shared::{Claims, Reason, Secret};

use crate::codes::{CodeError, Codes, NewCode, random_handle};
use crate::config::{Config, CookiesConfig, FlowConfig, SameSite};
use crate::error::ApiError;
use crate::jwks::Jwks;
use crate::metrics::Metrics;
use crate::provider::{ProviderError, ProviderMetadata, Upstream};
use crate::sessions::{EndReason, NewSession};
use crate::store::{Kind, LoginState, Record, Store, StoreError, TakeError, key_of};
use crate::verify::{Verifier, VerifyError, now_unix};

#[derive(Debug, Clone, thiserror::Error)]
pub enum FlowError {
    #[error("the login flow is not configured (no [flow] section)")]
    NotConfigured,
    #[error("the provider's discovery document has not been read yet, or lacks {0}")]
    NoEndpoint(&'static str),
    #[error("provider request failed: {0}")]
    Upstream(String),
    #[error("the provider refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Token(#[from] VerifyError),
    #[error("no refresh token (cookie missing or session ended)")]
    NoRefreshToken,
    #[error("{0}")]
    Capacity(String),
}

impl From<FlowError> for ApiError {
    fn from(e: FlowError) -> Self {
        let reason = match &e {
            FlowError::NotConfigured => Reason::FlowNotConfigured,
            FlowError::NoEndpoint(_) | FlowError::Upstream(_) => Reason::ProviderUnavailable,
            FlowError::Refused(_) => Reason::RefreshFailed,
            FlowError::Token(v) => v.reason(),
            FlowError::NoRefreshToken => Reason::NoSession,
            FlowError::Capacity(_) => Reason::CapacityExceeded,
        };
        ApiError::new(reason, e.to_string())
    }
}

impl From<CodeError> for ApiError {
    fn from(e: CodeError) -> Self {
        let reason = match &e {
            CodeError::Unknown => Reason::UnknownCode,
            CodeError::Expired => Reason::CodeExpired,
            CodeError::AlreadyRedeemed => Reason::CodeAlreadyRedeemed,
            CodeError::Store(StoreError::Full(..)) => Reason::CapacityExceeded,
            CodeError::Store(StoreError::Duplicate) | CodeError::Random(_) => Reason::Internal,
        };
        ApiError::new(reason, e.to_string())
    }
}

/// Tokens a login or refresh produced, with the verified access-token claims.
#[derive(Debug)]
pub struct Tokens {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub id_token: Option<Secret>,
    pub claims: Claims,
}

/// A refresh in progress or just done: callers with the same refresh token share it.
struct RefreshSlot {
    created: Instant,
    result: tokio::sync::OnceCell<Result<Arc<Tokens>, FlowError>>,
}

/// Cookie settings plus the flow configuration. Shared as `Arc<Flow>`.
pub struct Flow {
    cfg: Option<FlowConfig>,
    cookies: CookiesConfig,
    client_id: String,
    client_secret: Option<Secret>,
    issuer: String,
    store: Arc<dyn Store>,
    codes: Arc<Codes>,
    verifier: Arc<Verifier>,
    jwks: Arc<Jwks>,
    refreshes: DashMap<crate::store::Key, Arc<RefreshSlot>>,
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow")
            .field("configured", &self.cfg.is_some())
            .field("refreshes", &self.refreshes.len())
            .finish_non_exhaustive()
    }
}

/// The openidconnect client with authorization and token endpoints set.
type OidcClient = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
>;

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

impl Flow {
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        codes: Arc<Codes>,
        verifier: Arc<Verifier>,
        jwks: Arc<Jwks>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            cfg: config.flow.clone(),
            cookies: config.cookies.clone(),
            client_id: config.provider.client_id.clone(),
            client_secret: config.provider.client_secret.clone(),
            issuer: config.provider.issuer.clone(),
            store,
            codes,
            verifier,
            jwks,
            refreshes: DashMap::new(),
            metrics,
        }
    }

    fn cfg(&self) -> Result<&FlowConfig, FlowError> {
        self.cfg.as_ref().ok_or(FlowError::NotConfigured)
    }

    fn metadata(&self) -> Result<Arc<ProviderMetadata>, FlowError> {
        self.jwks
            .metadata()
            .ok_or(FlowError::NoEndpoint("endpoints"))
    }

    fn upstream(&self) -> &Upstream {
        self.jwks.upstream()
    }

    /// `{frontend_url}{frontend_login_path}?error=<name>`.
    pub fn login_error_url(&self, name: &str) -> String {
        match &self.cfg {
            Some(cfg) => match frontend_url(cfg, &cfg.frontend_login_path) {
                Some(mut url) => {
                    url.query_pairs_mut().append_pair("error", name);
                    url.to_string()
                }
                None => "/".into(),
            },
            None => "/".into(),
        }
    }

    fn client(&self, meta: &ProviderMetadata) -> Result<OidcClient, FlowError> {
        let cfg = self.cfg()?;
        let bad = |what: &'static str| move |_| FlowError::NoEndpoint(what);
        let auth = meta
            .authorization_endpoint
            .clone()
            .ok_or(FlowError::NoEndpoint("authorization_endpoint"))?;
        let token = meta
            .token_endpoint
            .clone()
            .ok_or(FlowError::NoEndpoint("token_endpoint"))?;
        let mut client = CoreClient::new(
            ClientId::new(self.client_id.clone()),
            IssuerUrl::new(self.issuer.clone()).map_err(bad("issuer"))?,
            CoreJsonWebKeySet::new(vec![]),
        )
        .set_auth_uri(AuthUrl::new(auth).map_err(bad("authorization_endpoint"))?)
        .set_token_uri(TokenUrl::new(token).map_err(bad("token_endpoint"))?)
        .set_redirect_uri(RedirectUrl::new(cfg.redirect_uri.clone()).map_err(bad("redirect_uri"))?);
        if let Some(secret) = &self.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.expose().to_string()));
        }
        Ok(client)
    }

    /// The OIDC client for a browser flow step; its error is the frontend's error name.
    fn browser_flow_client(&self) -> Result<OidcClient, String> {
        self.metadata()
            .and_then(|meta| self.client(&meta))
            .map_err(|_| "provider_unavailable".to_string())
    }

    /// GET /auth/login: the authorization request. Returns the URL to redirect to.
    pub async fn login(&self, redirect: Option<&str>) -> Result<String, String> {
        let result = self.try_login(redirect).await;
        self.metrics.flow_step("login", result.is_ok());
        result
    }

    async fn try_login(&self, redirect: Option<&str>) -> Result<String, String> {
        let cfg = self.cfg().map_err(|_| "flow_not_configured".to_string())?;
        let redirect = match redirect {
            None | Some("") => "/".to_string(),
            Some(r) => safe_redirect(r).ok_or_else(|| "invalid_redirect".to_string())?,
        };
        let client = self.browser_flow_client()?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = random_handle().map_err(|_| "internal".to_string())?;
        let nonce = random_handle().map_err(|_| "internal".to_string())?;
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
            created: now,
            expires: now.saturating_add(ttl),
        });
        self.store
            .put(Kind::LoginState, key_of(state.expose()), record)
            .await
            .map_err(|e| match e {
                StoreError::Full(..) => "capacity_exceeded".to_string(),
                StoreError::Duplicate => "internal".to_string(),
            })?;
        Ok(url.to_string())
    }

    /// GET /auth/callback: always answers with a redirect, to the frontend's callback with an
    /// exchange code, or to its login page with `?error=<stable name>`.
    pub async fn callback(&self, params: &HashMap<String, String>) -> String {
        match self.try_callback(params).await {
            Ok(url) => {
                self.metrics.flow_step("callback", true);
                url
            }
            Err(name) => {
                self.metrics.flow_step("callback", false);
                tracing::info!(error = %name, "login callback refused");
                self.login_error_url(&name)
            }
        }
    }

    async fn try_callback(&self, params: &HashMap<String, String>) -> Result<String, String> {
        let cfg = self.cfg().map_err(|_| "flow_not_configured".to_string())?;
        let now = now_unix();
        // The state is consumed whatever else happens: it is single-use.
        let login = match params.get("state").filter(|s| !s.is_empty()) {
            None => Err(TakeError::Unknown),
            Some(state) => match self.store.take(Kind::LoginState, key_of(state), now).await {
                Ok(Record::Login(l)) => Ok(l),
                Ok(Record::Code(_)) => Err(TakeError::Unknown),
                Err(e) => Err(e),
            },
        };
        if let Some(error) = params.get("error") {
            let name = if PROVIDER_ERRORS.contains(&error.as_str()) {
                error.clone()
            } else {
                "provider_error".to_string()
            };
            return Err(name);
        }
        let login = login.map_err(|e| {
            match e {
                TakeError::Unknown => "invalid_state",
                TakeError::Expired => "state_expired",
                TakeError::AlreadyUsed => "state_replayed",
            }
            .to_string()
        })?;
        let code = params
            .get("code")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| "missing_code".to_string())?;

        let client = self.browser_flow_client()?;
        let http = http_client(self.upstream());
        let started = Instant::now();
        let response = client
            .exchange_code(AuthorizationCode::new(code.clone()))
            .set_pkce_verifier(PkceCodeVerifier::new(
                login.pkce_verifier.expose().to_string(),
            ))
            .request_async(&http)
            .await;
        self.metrics.upstream("token", started.elapsed());
        let response = response.map_err(|e| {
            tracing::warn!(error = %describe_token_error(&e), "code exchange failed");
            "exchange_failed".to_string()
        })?;
        let access_token = Secret::new(response.access_token().secret().clone());
        let refresh_token = response
            .refresh_token()
            .map(|r| Secret::new(r.secret().clone()));
        let id_token = response
            .id_token()
            .map(|t| Secret::new(t.to_string()))
            .ok_or_else(|| "invalid_id_token".to_string())?;
        let id_claims = self
            .verifier
            .verify_id_token(id_token.expose(), login.nonce.expose())
            .await
            .map_err(|e| {
                tracing::warn!(reason = %e.reason(), error = %e, "ID token refused");
                "invalid_id_token".to_string()
            })?;
        let verified = self
            .verifier
            .verify_uncached(access_token.expose())
            .await
            .map_err(|e| {
                tracing::warn!(reason = %e.reason(), error = %e, "access token refused");
                "invalid_access_token".to_string()
            })?;
        let sid = id_claims
            .get("sid")
            .and_then(|s| s.as_str())
            .map(str::to_owned);
        let refresh_expires = now.saturating_add(
            i64::try_from(self.cookies.refresh_max_age.as_secs()).unwrap_or(i64::MAX),
        );
        let session = self.verifier.create_session(NewSession {
            claims: &verified.claims,
            sid: sid.clone(),
            id_token: Some(id_token.clone()),
            refresh_token: refresh_token.clone(),
            refresh_expires,
            now,
        });
        let exchange = self
            .codes
            .issue(
                NewCode {
                    access_token,
                    refresh_token,
                    id_token: Some(id_token),
                    sub: verified.claims.sub.clone(),
                    sid,
                    client: "flow",
                },
                now,
            )
            .await
            .map_err(|e| match e {
                CodeError::Store(StoreError::Full(..)) => "capacity_exceeded".to_string(),
                _ => "internal".to_string(),
            })?;
        tracing::info!(sub = %session.sub, "login completed");
        let mut url =
            frontend_url(cfg, &cfg.frontend_callback_path).ok_or_else(|| "internal".to_string())?;
        url.query_pairs_mut()
            .append_pair("exchange", exchange.expose())
            .append_pair("redirect", &login.redirect);
        Ok(url.to_string())
    }

    /// Set-Cookie values for a fresh access (and refresh) token.
    pub fn set_cookies(&self, access: &Secret, refresh: Option<&Secret>) -> Vec<String> {
        let c = &self.cookies;
        let mut out = vec![
            self.cookie(
                &c.access_name,
                access.expose(),
                &c.access_path,
                c.access_max_age,
            )
            .to_string(),
        ];
        if let Some(r) = refresh {
            out.push(
                self.cookie(
                    &c.refresh_name,
                    r.expose(),
                    &c.refresh_path,
                    c.refresh_max_age,
                )
                .to_string(),
            );
        }
        out
    }

    /// Set-Cookie values that delete both cookies (same attributes as when set).
    pub fn clear_cookies(&self) -> Vec<String> {
        let c = &self.cookies;
        [
            (&c.access_name, &c.access_path),
            (&c.refresh_name, &c.refresh_path),
        ]
        .into_iter()
        .map(|(name, path)| {
            let mut cookie = self.cookie(name, "", path, Duration::ZERO);
            cookie.make_removal();
            cookie.to_string()
        })
        .collect()
    }

    fn cookie<'a>(
        &self,
        name: &'a str,
        value: &'a str,
        path: &'a str,
        max_age: Duration,
    ) -> cookie::Cookie<'a> {
        let c = &self.cookies;
        let mut builder = cookie::Cookie::build((name, value))
            .http_only(true)
            .secure(c.secure)
            .same_site(match c.same_site {
                SameSite::Lax => cookie::SameSite::Lax,
                SameSite::Strict => cookie::SameSite::Strict,
            })
            .path(path)
            .max_age(cookie::time::Duration::seconds(
                i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
            ));
        if let Some(d) = &c.domain {
            builder = builder.domain(d.clone());
        }
        builder.build()
    }

    /// POST /auth/refresh: one upstream refresh per refresh token, shared by concurrent
    /// callers and by those arriving within the grace window after it.
    pub async fn refresh(
        self: &Arc<Self>,
        refresh_token: &Secret,
    ) -> Result<Arc<Tokens>, FlowError> {
        let grace = self.cfg()?.refresh_grace;
        let key = key_of(refresh_token.expose());
        let slot = {
            let mut entry = self.refreshes.entry(key).or_insert_with(|| {
                Arc::new(RefreshSlot {
                    created: Instant::now(),
                    result: tokio::sync::OnceCell::new(),
                })
            });
            if entry.result.initialized() && entry.created.elapsed() > grace {
                *entry = Arc::new(RefreshSlot {
                    created: Instant::now(),
                    result: tokio::sync::OnceCell::new(),
                });
            }
            entry.clone()
        };
        let mut ran = false;
        let result = slot
            .result
            .get_or_init(|| {
                ran = true;
                // Run detached: a caller that disconnects must not cancel the one upstream
                // request everybody else waits for.
                let me = self.clone();
                let rt = refresh_token.clone();
                async move {
                    tokio::spawn(async move { me.refresh_upstream(&rt).await })
                        .await
                        .unwrap_or_else(|e| Err(FlowError::Upstream(e.to_string())))
                }
            })
            .await
            .clone();
        if !ran {
            self.metrics
                .refreshes
                .with_label_values(&["coalesced"])
                .inc();
        }
        result
    }

    async fn refresh_upstream(&self, refresh_token: &Secret) -> Result<Arc<Tokens>, FlowError> {
        let result = self.try_refresh_upstream(refresh_token).await;
        let outcome = if result.is_ok() { "upstream" } else { "failed" };
        self.metrics.refreshes.with_label_values(&[outcome]).inc();
        result
    }

    async fn try_refresh_upstream(&self, refresh_token: &Secret) -> Result<Arc<Tokens>, FlowError> {
        let sessions = self.verifier.sessions();
        let session = sessions.by_refresh_token(refresh_token.expose());
        if session.as_ref().is_some_and(|s| s.is_ended())
            || sessions.refresh_token_ended(refresh_token.expose())
        {
            return Err(FlowError::NoRefreshToken);
        }
        let meta = self.metadata()?;
        let client = self.client(&meta)?;
        let http = http_client(self.upstream());
        let rt = RefreshToken::new(refresh_token.expose().to_string());
        let started = Instant::now();
        let response = client
            .exchange_refresh_token(&rt)
            .request_async(&http)
            .await;
        self.metrics.upstream("token", started.elapsed());
        let response = response.map_err(|e| match e {
            openidconnect::RequestTokenError::ServerResponse(r) => {
                FlowError::Refused(r.error().to_string())
            }
            other => FlowError::Upstream(describe_token_error(&other)),
        })?;
        let access_token = Secret::new(response.access_token().secret().clone());
        let new_refresh = response
            .refresh_token()
            .map(|r| Secret::new(r.secret().clone()));
        let id_token = response.id_token().map(|t| Secret::new(t.to_string()));
        let verified = self.verifier.verify_uncached(access_token.expose()).await?;
        let now = now_unix();
        match &session {
            Some(s) => sessions.refreshed(
                s,
                refresh_token.expose(),
                new_refresh.clone(),
                id_token.clone(),
                verified.claims.exp,
                now,
            ),
            None => {
                // A refresh token from before a restart: register the session anew.
                let sid = verified.claims.sid().map(str::to_owned);
                self.verifier.create_session(NewSession {
                    claims: &verified.claims,
                    sid,
                    id_token: id_token.clone(),
                    refresh_token: new_refresh.clone().or_else(|| Some(refresh_token.clone())),
                    refresh_expires: now.saturating_add(
                        i64::try_from(self.cookies.refresh_max_age.as_secs()).unwrap_or(i64::MAX),
                    ),
                    now,
                });
            }
        }
        Ok(Arc::new(Tokens {
            access_token,
            refresh_token: new_refresh,
            id_token,
            claims: verified.claims,
        }))
    }

    /// POST /auth/logout: ends the session, revokes its refresh token at the provider and
    /// returns the end-session URL.
    pub async fn logout(&self, access: Option<&Secret>, refresh: Option<&Secret>) -> String {
        let sessions = self.verifier.sessions();
        let mut session = None;
        let mut sid = None;
        if let Some(a) = access
            && let Ok(v) = self.verifier.verify_uncached(a.expose()).await
        {
            sid = v.claims.sid().map(str::to_owned);
            session = sid.as_deref().and_then(|s| sessions.by_sid(s));
        }
        if session.is_none()
            && let Some(r) = refresh
        {
            session = sessions.by_refresh_token(r.expose());
        }
        let refresh_token = refresh
            .cloned()
            .or_else(|| session.as_ref().and_then(|s| s.refresh_token()));
        let id_token = session.as_ref().and_then(|s| s.id_token());
        tracing::debug!(
            session = session.is_some(),
            refresh_token = refresh_token.is_some(),
            "logout"
        );
        if let Some(rt) = refresh_token {
            self.revoke(&rt).await;
        }
        let now = now_unix();
        match (&sid, &session) {
            (Some(sid), _) => {
                self.verifier
                    .end_sessions(Some(sid), None, EndReason::Logout, now);
            }
            (None, Some(s)) => {
                sessions.end_sid(&s.key, EndReason::Logout, now);
            }
            (None, None) => {}
        }
        self.metrics.logouts.inc();
        self.logout_url(id_token.as_ref())
    }

    /// RFC 7009 revocation of a refresh token (client_secret_basic). Best effort: a failure
    /// is logged, the logout goes on. (openidconnect refuses non-HTTPS revocation URLs, which
    /// an internal or development provider may well have, so this is a plain form POST.)
    async fn revoke(&self, refresh_token: &Secret) {
        let Some(url) = self
            .metadata()
            .ok()
            .and_then(|m| m.revocation_endpoint.clone())
        else {
            tracing::debug!("provider has no revocation endpoint; refresh token not revoked");
            return;
        };
        let form = [
            ("token", refresh_token.expose()),
            ("token_type_hint", "refresh_token"),
        ];
        let body = match serde_urlencoded::to_string(form) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "refresh token not revoked");
                return;
            }
        };
        let request = match self.upstream().request(reqwest::Method::POST, &url) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "refresh token not revoked");
                return;
            }
        };
        // RFC 6749 §2.3.1: client id and secret are form-encoded before Basic encoding.
        let enc = |s: &str| {
            serde_urlencoded::to_string([("", s)])
                .map(|x| x.trim_start_matches('=').to_string())
                .unwrap_or_default()
        };
        let secret = self.client_secret.as_ref().map(|s| enc(s.expose()));
        let request = request
            .basic_auth(enc(&self.client_id), secret)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        let started = Instant::now();
        let sent = request.send().await;
        self.metrics.upstream("revocation", started.elapsed());
        match sent {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!(
                status = r.status().as_u16(),
                "refresh token revocation refused"
            ),
            Err(e) => tracing::warn!(error = %e, "refresh token revocation failed"),
        }
    }

    fn logout_url(&self, id_token: Option<&Secret>) -> String {
        let Some(cfg) = &self.cfg else {
            return "/".into();
        };
        let post_logout = cfg
            .post_logout_redirect_uri
            .clone()
            .or_else(|| frontend_url(cfg, "/").map(|u| u.to_string()))
            .unwrap_or_else(|| "/".into());
        let end_session = self
            .jwks
            .metadata()
            .and_then(|m| m.end_session_endpoint.clone())
            .and_then(|u| Url::parse(&u).ok());
        match end_session {
            Some(mut url) => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(t) = id_token {
                        q.append_pair("id_token_hint", t.expose());
                    }
                    q.append_pair("post_logout_redirect_uri", &post_logout)
                        .append_pair("client_id", &self.client_id);
                }
                url.to_string()
            }
            None => post_logout,
        }
    }

    /// POST /auth/backchannel-logout with the form field `logout_token`.
    pub async fn backchannel_logout(&self, logout_token: &str) -> Result<usize, VerifyError> {
        let result = self.try_backchannel(logout_token).await;
        let label = if result.is_ok() { "success" } else { "failure" };
        self.metrics
            .backchannel_logouts
            .with_label_values(&[label])
            .inc();
        result
    }

    async fn try_backchannel(&self, logout_token: &str) -> Result<usize, VerifyError> {
        let claims = self.verifier.verify_logout_token(logout_token).await?;
        if !self
            .verifier
            .sessions()
            .first_use_of_jti(&claims.jti, claims.valid_until)
        {
            return Err(VerifyError::WrongTokenType(
                "this logout token was already used (jti replayed)".into(),
            ));
        }
        let ended = self.verifier.end_sessions(
            claims.sid.as_deref(),
            claims.sub.as_deref(),
            EndReason::BackchannelLogout,
            now_unix(),
        );
        tracing::info!(
            sid = claims.sid.as_deref().unwrap_or("-"),
            sub = claims.sub.as_deref().unwrap_or("-"),
            ended,
            "back-channel logout"
        );
        Ok(ended)
    }

    /// Drops refresh results older than the grace window, and slots whose refresh never
    /// finished (every caller went away) after a minute.
    pub fn sweep(&self) {
        let grace = self
            .cfg
            .as_ref()
            .map_or(Duration::ZERO, |c| c.refresh_grace);
        let abandoned = grace.max(Duration::from_secs(60));
        self.refreshes.retain(|_, slot| {
            let age = slot.created.elapsed();
            if slot.result.initialized() {
                age <= grace
            } else {
                age <= abandoned
            }
        });
    }
}

/// `{frontend_url}` joined with `path` (the frontend URL may carry a base path). Config
/// validation made sure both parse.
fn frontend_url(cfg: &FlowConfig, path: &str) -> Option<Url> {
    let base = cfg.frontend_url.trim_end_matches('/');
    Url::parse(&format!("{base}{path}")).ok()
}

/// The openidconnect HTTP client: requests go through [`Upstream`] (internal URL, public Host).
fn http_client(
    up: &Upstream,
) -> impl Fn(
    openidconnect::HttpRequest,
) -> std::pin::Pin<
    Box<dyn Future<Output = Result<openidconnect::HttpResponse, ProviderError>> + Send>,
> + '_ {
    move |req: openidconnect::HttpRequest| {
        let up = up.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let url = parts.uri.to_string();
            let mut builder = up.request(parts.method, &url)?;
            for (name, value) in &parts.headers {
                if name != http::header::HOST {
                    builder = builder.header(name, value);
                }
            }
            let resp = builder
                .body(body)
                .send()
                .await
                .map_err(|e| ProviderError::Request {
                    url: url.clone(),
                    message: e.to_string(),
                })?;
            let mut out = http::Response::builder().status(resp.status());
            for (name, value) in resp.headers() {
                out = out.header(name, value);
            }
            let bytes = resp.bytes().await.map_err(|e| ProviderError::Request {
                url: url.clone(),
                message: e.to_string(),
            })?;
            out.body(bytes.to_vec())
                .map_err(|e| ProviderError::Request {
                    url,
                    message: e.to_string(),
                })
        })
    }
}

/// Token endpoint errors without any token material.
fn describe_token_error<RE: std::error::Error + 'static, T: openidconnect::ErrorResponse>(
    e: &openidconnect::RequestTokenError<RE, T>,
) -> String {
    match e {
        openidconnect::RequestTokenError::ServerResponse(r) => {
            format!("provider answered an error: {r}")
        }
        openidconnect::RequestTokenError::Request(r) => format!("request failed: {r}"),
        // serde's message may quote the body, which holds tokens: only the path is told.
        openidconnect::RequestTokenError::Parse(err, _) => {
            format!("unparseable answer (at `{}`)", err.path())
        }
        openidconnect::RequestTokenError::Other(s) => s.clone(),
    }
}

/// A same-site relative redirect target, or `None`. Refuses anything a browser could take to
/// another origin: `//host`, `/\host`, schemes, control characters, and their percent-encoded
/// (up to three times) and mixed variants.
pub fn safe_redirect(candidate: &str) -> Option<String> {
    if candidate.is_empty() || candidate.len() > 2048 {
        return None;
    }
    let mut form = candidate.to_string();
    for _ in 0..4 {
        if !plain_path_is_safe(&form) {
            return None;
        }
        let decoded = percent_decode(&form)?;
        if decoded == form {
            break;
        }
        form = decoded;
    }
    // Finally let a WHATWG URL parser (what browsers use) resolve it: the origin must stay.
    let base = Url::parse("https://frontend.invalid/").ok()?;
    let joined = base.join(candidate).ok()?;
    (joined.origin() == base.origin()).then(|| candidate.to_string())
}

fn plain_path_is_safe(p: &str) -> bool {
    let path = p.split(['?', '#']).next().unwrap_or("");
    p.starts_with('/')
        && !p.contains('\\')
        && !p.chars().any(|c| c.is_control())
        && !path.contains("//")
        && !path.split('/').any(|seg| seg == "." || seg == "..")
}

/// Percent-decodes; `None` when the result is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_redirect_attempts_are_refused() {
        let attacks = [
            "//evil.com",
            "///evil.com",
            "////evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "\\/evil.com",
            "https://evil.com",
            "http:evil.com",
            "javascript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "evil.com",
            "%2F%2Fevil.com",
            "/%2Fevil.com",
            "/%2f%2fevil.com",
            "/%5Cevil.com",
            "/%5cevil.com",
            "%252F%252Fevil.com",
            "/%252F%252Fevil.com",
            "/%25252F%25252Fevil.com",
            "/\t/evil.com",
            "/%09/evil.com",
            "/\r\n/evil.com",
            "/%0d%0a/evil.com",
            "/./evil.com/../..//evil.com",
            "/../evil.com",
            "/%2e%2e/evil.com",
            " //evil.com",
            "/%00/evil.com",
            "",
        ];
        for a in attacks {
            assert_eq!(safe_redirect(a), None, "{a:?} accepted");
        }
    }

    #[test]
    fn ordinary_paths_are_kept() {
        for ok in [
            "/",
            "/dashboard",
            "/orders/42?tab=items#top",
            "/search?q=a%20b",
            "/a/b/c/",
            "/callback?next=https://x",
        ] {
            assert_eq!(safe_redirect(ok).as_deref(), Some(ok), "{ok:?} refused");
        }
    }
}
