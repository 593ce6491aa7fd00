//! The way to the identity provider: one HTTP client that sends server-to-server requests to
//! `internal_url` (with the public Host, so Authentik computes the public issuer), and OIDC
//! discovery with its exact issuer check.

use std::time::Duration;

use reqwest::Url;
use reqwest::header::{self, HeaderValue};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::config::ProviderConfig;

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
        "discovery issuer mismatch: configured {expected:?}, provider says {actual:?} (Authentik \
         derives its issuer from the Host header; check provider.issuer and internal_url)"
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

    /// Reads the issuer's discovery document and checks its `issuer` exactly.
    pub async fn discover(&self) -> Result<ProviderMetadata, ProviderError> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let meta: ProviderMetadata = self.get_json(&url).await?;
        check_issuer(&self.issuer, &meta)?;
        Ok(meta)
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
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
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
}
