//! The login flow mounted behind the app's proxy, one file per step: [`login`] (authorization
//! request, browser-binding cookie), [`callback`] (state and browser check, code exchange, ID
//! token, one-time exchange code), [`exchange`] (code → HttpOnly cookies), [`refresh`]
//! (one upstream refresh per refresh token, rate-limited), [`logout`] (revocation, session
//! end, end-session URL), [`backchannel`] (logout tokens), [`redirect`] (the open-redirect
//! check), [`cookies`] (every Set-Cookie the flow writes) and `shared` (sessions and the
//! refresh single-flight shared with other instances through the Redis store). Errors are typed here and turned
//! into HTTP answers in `error`.

pub mod backchannel;
pub mod callback;
pub mod cookies;
pub mod exchange;
pub mod login;
pub mod logout;
#[cfg(test)]
mod mutation_tests;
pub mod redirect;
pub mod refresh;
mod shared;
#[cfg(test)]
mod test_flow;

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use openidconnect::core::{CoreClient, CoreJsonWebKeySet};
use openidconnect::{AuthUrl, ClientId, ClientSecret, IssuerUrl, RedirectUrl, TokenUrl};
use reqwest::Url;
use tokend_shared::{Claims, Secret};

use crate::codes::{CodeError, Codes};
use crate::config::{Config, CookiesConfig, FlowConfig};
use crate::metrics::Metrics;
use crate::provider::{Provider, ProviderMetadata};
use crate::sessions::EndReason;
use crate::store::{Key, Store};
use crate::verify::{Verifier, VerifyError, now_unix};

pub use redirect::safe_redirect;

/// Why a browser login (`/auth/login`, `/auth/callback`) failed. The browser is sent to
/// `{frontend_url}{frontend_login_path}?error=<name>`; the names are stable and documented in
/// the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("the login flow is not configured (no [flow] section)")]
    NotConfigured,
    #[error("the redirect target is not a same-site path")]
    InvalidRedirect,
    #[error("the provider's endpoints are not known yet (discovery has not succeeded)")]
    ProviderUnavailable,
    #[error("no login is in progress for this state")]
    InvalidState,
    #[error("the login took longer than flow.state_ttl")]
    StateExpired,
    #[error("this login was already completed")]
    StateReplayed,
    #[error("the callback did not come from the browser that started the login")]
    BrowserMismatch,
    #[error("the provider reported `{0}`")]
    Provider(&'static str),
    #[error("the provider reported an error tokend does not pass on")]
    ProviderError,
    #[error("the callback carries no authorization code")]
    MissingCode,
    #[error("the provider did not exchange the authorization code")]
    ExchangeFailed,
    #[error("the ID token was refused")]
    InvalidIdToken,
    #[error("the access token was refused")]
    InvalidAccessToken,
    #[error("too many exchange codes outstanding")]
    CapacityExceeded,
    #[error("the record store (Redis) is unavailable; try again shortly")]
    StoreUnavailable,
    #[error("internal error")]
    Internal,
}

impl LoginError {
    /// The stable name sent to the frontend as `?error=`.
    pub fn name(self) -> &'static str {
        match self {
            LoginError::NotConfigured => "flow_not_configured",
            LoginError::InvalidRedirect => "invalid_redirect",
            LoginError::ProviderUnavailable => "provider_unavailable",
            LoginError::InvalidState => "invalid_state",
            LoginError::StateExpired => "state_expired",
            LoginError::StateReplayed => "state_replayed",
            LoginError::BrowserMismatch => "browser_mismatch",
            LoginError::Provider(name) => name,
            LoginError::ProviderError => "provider_error",
            LoginError::MissingCode => "missing_code",
            LoginError::ExchangeFailed => "exchange_failed",
            LoginError::InvalidIdToken => "invalid_id_token",
            LoginError::InvalidAccessToken => "invalid_access_token",
            LoginError::CapacityExceeded => "capacity_exceeded",
            LoginError::StoreUnavailable => "store_unavailable",
            LoginError::Internal => "internal",
        }
    }
}

/// Why a JSON flow endpoint (`/auth/exchange`, `/auth/refresh`) failed; `error` maps each to
/// its HTTP status and reason.
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
    #[error("no refresh token tokend knows (cookie missing, never issued here, or session ended)")]
    NoRefreshToken,
    #[error("{0}")]
    Code(Arc<CodeError>),
    #[error("too many refreshes in progress (limit {0}); try again shortly")]
    Capacity(usize),
    #[error("refreshes are rate-limited (flow.refresh_rate_limit); retry in {}s", .0.as_secs().max(1))]
    RateLimited(Duration),
    #[error(transparent)]
    Store(#[from] crate::store::Unavailable),
}

impl From<CodeError> for FlowError {
    fn from(e: CodeError) -> Self {
        FlowError::Code(Arc::new(e))
    }
}

impl FlowError {
    /// Whether the refresh token is dead for good, so the browser's cookies should go.
    pub fn ends_session(&self) -> bool {
        matches!(
            self,
            FlowError::Refused(_)
                | FlowError::NoRefreshToken
                | FlowError::Token(VerifyError::Revoked(_))
        )
    }
}

/// What [`Flow::end_sessions`] ended: the registered sessions, and of their refresh tokens how
/// many were sent to the provider for revocation and how many it confirmed.
#[derive(Debug)]
pub struct Ended {
    pub sessions: Vec<Arc<crate::sessions::Session>>,
    pub attempted: usize,
    pub revoked: usize,
}

/// Tokens a login or refresh produced, with the verified access-token claims.
#[derive(Debug)]
pub struct Tokens {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub id_token: Option<Secret>,
    pub claims: Claims,
}

/// The login flow of one configuration. Shared as `Arc<Flow>`; kept across reloads that leave
/// its settings alone (refreshes in flight survive them).
pub struct Flow {
    /// `None` without a `[flow]` section: every step answers `flow_not_configured`.
    cfg: Option<FlowConfig>,
    /// Names, paths and attributes of the cookies the flow sets.
    cookies: CookiesConfig,
    client_id: String,
    /// Client authentication at the token and revocation endpoints.
    client_secret: Option<Secret>,
    issuer: String,
    /// Login states (and, through `codes`, exchange codes); survives reloads.
    store: Arc<dyn Store>,
    codes: Arc<Codes>,
    /// Checks ID and access tokens; owns the session registry and revocations.
    verifier: Arc<Verifier>,
    /// The upstream client and the discovery metadata (endpoints).
    provider: Arc<Provider>,
    /// Refreshes in flight or just done, by hash of the refresh token they used.
    refreshes: DashMap<Key, Arc<refresh::RefreshSlot>>,
    /// Refresh grants sent to the provider per second (`flow.refresh_rate_limit`).
    refresh_limiter: Option<governor::DefaultDirectRateLimiter>,
    /// How long a refresh lock in the shared store is held at most (and waited for): longer
    /// than a grant can take (the token request and a key refetch, each bounded by
    /// `provider.http_timeout`).
    refresh_lock: Duration,
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

impl Flow {
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        codes: Arc<Codes>,
        verifier: Arc<Verifier>,
        provider: Arc<Provider>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let refresh_limiter = config
            .flow
            .as_ref()
            .and_then(|f| std::num::NonZeroU32::new(f.refresh_rate_limit))
            .map(|per_second| {
                governor::RateLimiter::direct(governor::Quota::per_second(per_second))
            });
        Self {
            cfg: config.flow.clone(),
            cookies: config.cookies.clone(),
            client_id: config.provider.client_id.clone(),
            client_secret: config.provider.client_secret.clone(),
            issuer: config.provider.issuer.clone(),
            store,
            codes,
            verifier,
            provider,
            refreshes: DashMap::new(),
            refresh_limiter,
            refresh_lock: config
                .provider
                .http_timeout
                .saturating_mul(2)
                .saturating_add(Duration::from_secs(5)),
            metrics,
        }
    }

    fn cfg(&self) -> Result<&FlowConfig, FlowError> {
        self.cfg.as_ref().ok_or(FlowError::NotConfigured)
    }

    fn metadata(&self) -> Result<Arc<ProviderMetadata>, FlowError> {
        self.provider
            .metadata()
            .ok_or(FlowError::NoEndpoint("endpoints"))
    }

    /// `cookies.refresh_max_age` in seconds: how long a refresh token (and so a session) can
    /// live, which bounds how expired an access token may be and still identify its session.
    fn refresh_lifetime(&self) -> i64 {
        i64::try_from(self.cookies.refresh_max_age.as_secs()).unwrap_or(i64::MAX)
    }

    /// `{frontend_url}{frontend_login_path}?error=<name>`.
    pub fn login_error_url(&self, error: LoginError) -> String {
        match &self.cfg {
            Some(cfg) => match frontend_url(cfg, &cfg.frontend_login_path) {
                Some(mut url) => {
                    url.query_pairs_mut().append_pair("error", error.name());
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

    /// The OIDC client for a browser step.
    fn browser_client(&self) -> Result<OidcClient, LoginError> {
        self.metadata()
            .and_then(|meta| self.client(&meta))
            .map_err(|_| LoginError::ProviderUnavailable)
    }

    /// Ends the sessions named by `sid` (else every session of `sub`) and revokes their refresh
    /// tokens at the provider: Authentik keeps refresh tokens alive when a session ends, and
    /// what a refresh with them mints carries no `sid`. Ended first, revoked then: the refresh
    /// tokens are refused locally at once, even if the provider cannot be reached; each is read
    /// after the end, so a refresh that finished in between is covered (one still in flight
    /// revokes the token it gets). Returns what ended and what the provider confirmed.
    pub async fn end_sessions(
        &self,
        sid: Option<&str>,
        sub: Option<&str>,
        reason: EndReason,
    ) -> Ended {
        // With a shared store, the sessions other instances made (or refreshed since) are
        // taken in first, so they end here as local ones do: counted, their current refresh
        // tokens refused everywhere and revoked below.
        let records = self.shared_records(sid, sub).await;
        let now = now_unix();
        for r in &records {
            self.verifier.sessions().adopt(r, now);
        }
        let sessions = self.verifier.end_sessions(sid, sub, reason, now);
        let tokens: Vec<Secret> = sessions.iter().filter_map(|s| s.refresh_token()).collect();
        let keys = records.iter().map(|r| r.key.clone());
        self.forget_shared(keys.chain(sessions.iter().map(|s| s.key.clone())))
            .await;
        let attempted = tokens.len();
        let revoked = self.revoke_refresh_tokens(tokens).await;
        Ended {
            sessions,
            revoked,
            attempted,
        }
    }

    /// Revokes refresh tokens at the provider (RFC 7009), all at once; returns how many the
    /// provider confirmed. Used when sessions end: by logout, back-channel logout, an
    /// administrator, or while their refresh was in flight.
    pub async fn revoke_refresh_tokens(&self, tokens: Vec<Secret>) -> usize {
        let mut revocations = tokio::task::JoinSet::new();
        for rt in tokens {
            let provider = self.provider.clone();
            let client_id = self.client_id.clone();
            let secret = self.client_secret.clone();
            revocations.spawn(async move {
                provider
                    .revoke_refresh_token(&rt, &client_id, secret.as_ref())
                    .await
            });
        }
        let mut confirmed = 0;
        while let Some(done) = revocations.join_next().await {
            confirmed += usize::from(matches!(done, Ok(true)));
        }
        confirmed
    }

    /// Drops refresh results older than the grace window (refreshes always finish: the
    /// upstream request has a timeout).
    pub fn sweep(&self) {
        self.refreshes.retain(|_, slot| !slot.expired());
    }
}

impl Flow {
    /// Tells the provider how the token endpoint took the client's credentials: a refusal
    /// with `invalid_client` (a wrong client secret) is logged once and shown by `/readyz`
    /// (issue #10); any other answer from the provider means they were accepted.
    fn note_token_answer<T, RE: std::error::Error + 'static, E: openidconnect::ErrorResponse>(
        &self,
        answer: &Result<T, openidconnect::RequestTokenError<RE, E>>,
    ) {
        match answer {
            Ok(_) => self.provider.note_client_accepted(),
            Err(openidconnect::RequestTokenError::ServerResponse(r))
                if r.to_string().split(':').next() == Some("invalid_client") =>
            {
                self.provider.note_client_refused("token")
            }
            Err(openidconnect::RequestTokenError::ServerResponse(_)) => {
                self.provider.note_client_accepted()
            }
            Err(_) => {}
        }
    }
}

/// `{frontend_url}` joined with `path` (the frontend URL may carry a base path). Config
/// validation made sure both parse.
fn frontend_url(cfg: &FlowConfig, path: &str) -> Option<Url> {
    let base = cfg.frontend_url.trim_end_matches('/');
    Url::parse(&format!("{base}{path}")).ok()
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
