//! The way to the identity provider: one HTTP client that sends server-to-server requests to
//! `internal_url` (with the public Host, so Authentik computes the public issuer), OIDC
//! discovery with its exact issuer check, and the discovery metadata last read. The key cache
//! (`jwks`) and the login flow (`flow`) both reach the provider through [`Provider`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use reqwest::Url;
use reqwest::header::{self, HeaderValue};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use tokend_shared::Secret;

use crate::config::ProviderConfig;
use crate::metrics::Metrics;

/// Largest discovery document or JWKS read from the provider.
const MAX_UPSTREAM_BODY: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("invalid URL {url}: {message}")]
    Url { url: String, message: String },
    #[error("request to {url} failed: {message}")]
    Request { url: String, message: String },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url} sent more than {MAX_UPSTREAM_BODY} bytes")]
    TooLarge { url: String },
    #[error("{url} sent invalid JSON: {message}")]
    Json { url: String, message: String },
    #[error(
        "issuer mismatch: configured {expected:?}, provider says {actual:?}{}",
        issuer_hint(expected, actual)
    )]
    IssuerMismatch { expected: String, actual: String },
}

/// The parts of the discovery document tokend uses. Endpoint paths are never hard-coded.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint: Option<String>,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub id_token_signing_alg_values_supported: Vec<String>,
}

/// HTTP client for the provider. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// Connection pool, no redirects followed (a redirect from the provider is an error).
    client: reqwest::Client,
    /// The configured public issuer, checked against discovery.
    issuer: String,
    /// Public origin of the issuer: URLs on it are rewritten to `internal` when that is set.
    public: Url,
    /// Where server-to-server requests really go.
    internal: Option<Url>,
    /// `Host` sent to the internal address: the public host[:port].
    public_host: Option<HeaderValue>,
    /// `X-Forwarded-Proto` sent to the internal address: the public scheme.
    public_proto: HeaderValue,
}

impl Upstream {
    pub fn new(cfg: &ProviderConfig) -> Result<Self, ProviderError> {
        let parse = |url: &str| {
            Url::parse(url).map_err(|e| ProviderError::Url {
                url: url.to_string(),
                message: e.to_string(),
            })
        };
        let public = parse(&cfg.issuer)?;
        let internal = cfg.internal_url.as_deref().map(parse).transpose()?;
        let host = public.host_str().unwrap_or_default();
        let host = match public.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        let client = reqwest::Client::builder()
            .timeout(cfg.http_timeout)
            .connect_timeout(cfg.http_timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tokend/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ProviderError::Request {
                url: cfg.issuer.clone(),
                message: e.to_string(),
            })?;
        Ok(Self {
            client,
            issuer: cfg.issuer.clone(),
            public_proto: HeaderValue::from_str(public.scheme())
                .unwrap_or(HeaderValue::from_static("https")),
            public_host: HeaderValue::from_str(&host).ok(),
            public,
            internal,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The URL a request for `url` really goes to: on the public origin and with an internal
    /// URL configured, the internal origin (and path prefix) with the public path.
    pub fn effective_url(&self, url: &str) -> Result<(Url, bool), ProviderError> {
        let parsed = Url::parse(url).map_err(|e| ProviderError::Url {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        let Some(internal) = &self.internal else {
            return Ok((parsed, false));
        };
        if parsed.origin() != self.public.origin() {
            return Ok((parsed, false));
        }
        let mut target = internal.clone();
        let prefix = internal.path().trim_end_matches('/');
        target.set_path(&format!("{prefix}{}", parsed.path()));
        target.set_query(parsed.query());
        Ok((target, true))
    }

    /// A request builder for `url`, rewritten and with the public Host when internal.
    pub fn request(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> Result<reqwest::RequestBuilder, ProviderError> {
        let (target, internal) = self.effective_url(url)?;
        let mut req = self.client.request(method, target);
        if internal {
            if let Some(host) = &self.public_host {
                req = req
                    .header(header::HOST, host.clone())
                    .header("x-forwarded-host", host.clone());
            }
            req = req.header("x-forwarded-proto", self.public_proto.clone());
        }
        Ok(req)
    }

    /// GET `url` and return the body, bounded in size.
    pub async fn get_bytes(&self, url: &str) -> Result<Vec<u8>, ProviderError> {
        let req = self
            .request(reqwest::Method::GET, url)?
            .header(header::ACCEPT, "application/json");
        let request_err = |e: reqwest::Error| ProviderError::Request {
            url: url.to_string(),
            message: error_chain(&e),
        };
        let mut resp = req.send().await.map_err(request_err)?;
        if !resp.status().is_success() {
            return Err(ProviderError::Status {
                url: url.to_string(),
                status: resp.status().as_u16(),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(request_err)? {
            if body.len() + chunk.len() > MAX_UPSTREAM_BODY {
                return Err(ProviderError::TooLarge {
                    url: url.to_string(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }

    pub async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, ProviderError> {
        let body = self.get_bytes(url).await?;
        serde_json::from_slice(&body).map_err(|e| ProviderError::Json {
            url: url.to_string(),
            message: e.to_string(),
        })
    }

    /// The issuer's discovery document URL (public; [`Upstream::request`] rewrites it).
    pub fn discovery_url(&self) -> String {
        format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        )
    }

    /// Reads the issuer's discovery document and checks its `issuer` exactly.
    pub async fn discover(&self) -> Result<ProviderMetadata, ProviderError> {
        let meta: ProviderMetadata = self.get_json(&self.discovery_url()).await?;
        check_issuer(&self.issuer, &meta)?;
        Ok(meta)
    }

    /// RFC 7009 revocation of `token` at `url`, authenticated with client_secret_basic: the
    /// provider's status and, for a refusal, its `error` code. (openidconnect refuses
    /// non-HTTPS revocation URLs, which an internal or development provider may well have, so
    /// this is a plain form POST.)
    pub async fn revoke(
        &self,
        url: &str,
        token: &Secret,
        token_type_hint: &str,
        client_id: &str,
        client_secret: Option<&Secret>,
    ) -> Result<RevocationAnswer, ProviderError> {
        let form = [
            ("token", token.expose()),
            ("token_type_hint", token_type_hint),
        ];
        let body = serde_urlencoded::to_string(form).map_err(|e| ProviderError::Request {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        // RFC 6749 §2.3.1: client id and secret are form-encoded before Basic encoding.
        let enc = |s: &str| {
            serde_urlencoded::to_string([("", s)])
                .map(|x| x.trim_start_matches('=').to_string())
                .unwrap_or_default()
        };
        let resp = self
            .request(reqwest::Method::POST, url)?
            .basic_auth(enc(client_id), client_secret.map(|s| enc(s.expose())))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| ProviderError::Request {
                url: url.to_string(),
                message: error_chain(&e),
            })?;
        let status = resp.status().as_u16();
        let error = if resp.status().is_success() {
            None
        } else {
            // Only the error code is kept: a provider's description could quote the request.
            let body = resp.bytes().await.unwrap_or_default();
            serde_json::from_slice::<OAuthError>(&body)
                .ok()
                .map(|e| e.error)
        };
        Ok(RevocationAnswer { status, error })
    }
}

/// The provider's answer to a revocation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationAnswer {
    pub status: u16,
    /// The OAuth `error` code of a refusal (`invalid_client`: the client secret is wrong).
    pub error: Option<String>,
}

impl RevocationAnswer {
    /// Whether the provider refused the client's credentials.
    pub fn invalid_client(&self) -> bool {
        self.status == 401 || self.error.as_deref() == Some("invalid_client")
    }
}

/// An OAuth 2.0 error body (RFC 6749 §5.2); only the code is read.
#[derive(Deserialize)]
struct OAuthError {
    error: String,
}

/// The identity provider as tokend knows it: the upstream client and the discovery document
/// (read from the provider, or from the JWKS disk cache until the provider answers). Shared as
/// `Arc<Provider>` by the key cache and the login flow; replaced only when `[provider]` changes.
#[derive(Debug)]
pub struct Provider {
    /// Where server-to-server requests go, and how (internal URL, public Host).
    upstream: Upstream,
    /// The discovery document last read; `None` until discovery (or the disk cache) succeeds.
    metadata: ArcSwapOption<ProviderMetadata>,
    /// Whether `metadata` came from the provider itself (not from the disk cache).
    live: std::sync::atomic::AtomicBool,
    /// Discovery request durations.
    metrics: Arc<Metrics>,
    /// Set when the provider refused the client's credentials (`invalid_client`) at the token
    /// or revocation endpoint, cleared when it accepts them again (issue #10): said once in
    /// the log, and by `/readyz` while it lasts.
    client_refused: std::sync::atomic::AtomicBool,
}

impl Provider {
    pub fn new(cfg: &ProviderConfig, metrics: Arc<Metrics>) -> Result<Self, ProviderError> {
        Ok(Self {
            upstream: Upstream::new(cfg)?,
            metadata: ArcSwapOption::empty(),
            live: std::sync::atomic::AtomicBool::new(false),
            metrics,
            client_refused: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    pub fn issuer(&self) -> &str {
        self.upstream.issuer()
    }

    /// The discovery document, once read (from the provider or the disk cache).
    pub fn metadata(&self) -> Option<Arc<ProviderMetadata>> {
        self.metadata.load_full()
    }

    /// Records that the provider refused the client's credentials (`invalid_client`) at
    /// `endpoint`; logged the first time only, not per request.
    pub fn note_client_refused(&self, endpoint: &'static str) {
        if !self
            .client_refused
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            tracing::error!(
                endpoint,
                "the provider refused this client's credentials (invalid_client): \
                 provider.client_secret does not match the provider's (copied from another \
                 environment?); logins fail with exchange_failed until it is fixed \
                 (`tokend doctor` checks it)"
            );
        }
    }

    /// Records that the provider accepted the client's credentials.
    pub fn note_client_accepted(&self) {
        if self
            .client_refused
            .swap(false, std::sync::atomic::Ordering::AcqRel)
        {
            tracing::info!("the provider accepts this client's credentials again");
        }
    }

    /// `/readyz`'s warning while the provider refuses the client's credentials.
    pub fn client_warning(&self) -> Option<String> {
        self.client_refused
            .load(std::sync::atomic::Ordering::Acquire)
            .then(|| {
                "the provider refused this client's credentials (invalid_client): \
                 provider.client_secret does not match the provider's; logins fail with \
                 exchange_failed"
                    .to_string()
            })
    }

    /// Installs a discovery document read from the disk cache (replaced by a live one later).
    pub fn set_cached_metadata(&self, meta: ProviderMetadata) {
        self.metadata.store(Some(Arc::new(meta)));
    }

    /// Tests: a discovery document as if read from the provider just now.
    #[cfg(test)]
    pub(crate) fn set_live_metadata(&self, meta: ProviderMetadata) {
        self.set_cached_metadata(meta);
        self.live.store(true, std::sync::atomic::Ordering::Release);
    }

    /// The discovery document, reading it from the provider when it has not been read live
    /// yet (a document from the disk cache is replaced once the provider answers).
    pub async fn live_metadata(&self) -> Result<Arc<ProviderMetadata>, ProviderError> {
        if self.live.load(std::sync::atomic::Ordering::Acquire)
            && let Some(m) = self.metadata.load_full()
        {
            return Ok(m);
        }
        let started = Instant::now();
        let meta = self.upstream.discover().await;
        self.metrics.upstream("discovery", started.elapsed());
        let meta = Arc::new(meta?);
        self.metadata.store(Some(meta.clone()));
        self.live.store(true, std::sync::atomic::Ordering::Release);
        Ok(meta)
    }
}

impl Provider {
    /// RFC 7009 revocation of a refresh token (client_secret_basic). Returns whether the
    /// provider confirmed it; failures are logged without the token.
    pub async fn revoke_refresh_token(
        &self,
        refresh_token: &Secret,
        client_id: &str,
        client_secret: Option<&Secret>,
    ) -> bool {
        let Some(url) = self.metadata().and_then(|m| m.revocation_endpoint.clone()) else {
            tracing::warn!("the provider has no revocation endpoint; refresh token not revoked");
            return false;
        };
        let started = Instant::now();
        let answer = self
            .upstream
            .revoke(
                &url,
                refresh_token,
                "refresh_token",
                client_id,
                client_secret,
            )
            .await;
        self.metrics.upstream("revocation", started.elapsed());
        match answer {
            Ok(a) if (200..300).contains(&a.status) => {
                self.note_client_accepted();
                true
            }
            Ok(a) => {
                if a.invalid_client() {
                    self.note_client_refused("revocation");
                }
                tracing::warn!(
                    status = a.status,
                    error = a.error.as_deref().unwrap_or("-"),
                    "refresh token revocation refused"
                );
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "refresh token revocation failed");
                false
            }
        }
    }

    /// The HTTP client openidconnect's token requests go through: the upstream client, so they
    /// too reach `internal_url` with the public Host.
    pub fn oidc_http_client(
        &self,
    ) -> impl Fn(
        openidconnect::HttpRequest,
    ) -> std::pin::Pin<
        Box<dyn Future<Output = Result<openidconnect::HttpResponse, ProviderError>> + Send>,
    > + '_ {
        move |req: openidconnect::HttpRequest| {
            let up = self.upstream.clone();
            Box::pin(async move {
                let (parts, body) = req.into_parts();
                let url = parts.uri.to_string();
                let failed = |e: &(dyn std::error::Error + 'static)| ProviderError::Request {
                    url: url.clone(),
                    message: error_chain(e),
                };
                let mut builder = up.request(parts.method, &url)?;
                for (name, value) in &parts.headers {
                    if name != header::HOST {
                        builder = builder.header(name, value);
                    }
                }
                let resp = builder.body(body).send().await.map_err(|e| failed(&e))?;
                let mut out = http::Response::builder().status(resp.status());
                for (name, value) in resp.headers() {
                    out = out.header(name, value);
                }
                let mut bytes = Vec::new();
                let mut resp = resp;
                while let Some(chunk) = resp.chunk().await.map_err(|e| failed(&e))? {
                    if bytes.len() + chunk.len() > MAX_UPSTREAM_BODY {
                        return Err(ProviderError::TooLarge { url: url.clone() });
                    }
                    bytes.extend_from_slice(&chunk);
                }
                out.body(bytes).map_err(|e| failed(&e))
            })
        }
    }
}

/// Why the provider's issuer differs from the configured one, as far as can be told.
fn issuer_hint(expected: &str, actual: &str) -> &'static str {
    let origin = |u: &str| Url::parse(u).ok().map(|u| u.origin());
    if expected.trim_end_matches('/') == actual.trim_end_matches('/') {
        " (trailing slash?): set provider.issuer to the provider's value exactly"
    } else if origin(expected) != origin(actual) {
        " (Authentik derives its issuer's origin from the Host and X-Forwarded-Proto headers: \
         check provider.issuer and provider.internal_url)"
    } else {
        " (another application slug?): set provider.issuer to the provider's value"
    }
}

pub fn check_issuer(expected: &str, meta: &ProviderMetadata) -> Result<(), ProviderError> {
    if meta.issuer != expected {
        return Err(ProviderError::IssuerMismatch {
            expected: expected.to_string(),
            actual: meta.issuer.clone(),
        });
    }
    Ok(())
}

/// reqwest's Display hides the cause ("error sending request"); the chain says what happened.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(internal: Option<&str>) -> Upstream {
        let cfg: ProviderConfig = toml::from_str(&format!(
            "issuer = \"https://auth.example.com/application/o/shop/\"\nclient_id = \"c\"\n{}",
            internal.map_or(String::new(), |u| format!("internal_url = \"{u}\"\n"))
        ))
        .expect("valid provider section");
        Upstream::new(&cfg).expect("client")
    }

    #[test]
    fn internal_url_rewrites_only_the_public_origin() {
        let up = upstream(Some("http://authentik-server:9000/prefix/"));
        let (url, internal) = up
            .effective_url("https://auth.example.com/application/o/shop/jwks/?x=1")
            .expect("rewrites");
        assert!(internal);
        assert_eq!(
            url.as_str(),
            "http://authentik-server:9000/prefix/application/o/shop/jwks/?x=1"
        );
        let (url, internal) = up
            .effective_url("https://elsewhere.example.com/jwks")
            .expect("parses");
        assert!(!internal);
        assert_eq!(url.as_str(), "https://elsewhere.example.com/jwks");
        assert_eq!(
            up.public_host.as_ref().and_then(|h| h.to_str().ok()),
            Some("auth.example.com")
        );
    }

    #[test]
    fn without_internal_url_nothing_is_rewritten() {
        let up = upstream(None);
        let (url, internal) = up
            .effective_url("https://auth.example.com/application/o/token/")
            .expect("parses");
        assert!(!internal);
        assert_eq!(
            url.as_str(),
            "https://auth.example.com/application/o/token/"
        );
    }

    #[test]
    fn issuer_must_match_exactly() {
        let meta = |issuer: &str| ProviderMetadata {
            issuer: issuer.into(),
            ..Default::default()
        };
        let expected = "https://auth.example.com/application/o/shop/";
        assert!(check_issuer(expected, &meta(expected)).is_ok());
        assert!(
            check_issuer(
                expected,
                &meta("https://auth.example.com/application/o/shop")
            )
            .is_err()
        );
        assert!(
            check_issuer(expected, &meta("http://authentik:9000/application/o/shop/")).is_err()
        );
    }

    /// Issue #10: a missing trailing slash is named as such, not blamed on the Host header.
    #[test]
    fn issue_10_issuer_mismatch_names_the_trailing_slash() {
        let meta = ProviderMetadata {
            issuer: "https://auth.example.com/application/o/shop/".into(),
            ..Default::default()
        };
        let msg = check_issuer("https://auth.example.com/application/o/shop", &meta)
            .expect_err("mismatch")
            .to_string();
        assert_eq!(
            msg,
            "issuer mismatch: configured \"https://auth.example.com/application/o/shop\", \
             provider says \"https://auth.example.com/application/o/shop/\" (trailing slash?): \
             set provider.issuer to the provider's value exactly"
        );
        let msg = check_issuer("https://other.example.com/application/o/shop/", &meta)
            .expect_err("mismatch")
            .to_string();
        assert!(msg.contains("Host"), "{msg}");
        assert!(!msg.contains("trailing slash"), "{msg}");
    }
}
