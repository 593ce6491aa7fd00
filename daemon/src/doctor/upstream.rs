//! Doctor's checks of the provider as the daemon reaches it, through the daemon's own code
//! paths (`provider::Upstream`: internal URL and public Host, discovery, `check_issuer`, RFC 7009
//! revocation; `build_jwks` for the keys): discovery, issuer, public issuer, JWKS, client
//! secret, clock skew.

use std::time::{Duration, SystemTime};

use reqwest::Url;
use tokend_shared::Secret;

use super::{Check, DoctorError};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::provider::{ProviderMetadata, Upstream, check_issuer};

/// The provider checks, in order; those that need discovery are left out when it failed.
pub(super) async fn checks(config: &Config, out: &mut Vec<Check>) {
    let upstream = match Upstream::new(&config.provider) {
        Ok(u) => u,
        Err(e) => {
            out.push(Check::fail(
                "discovery",
                DoctorError::from(e).to_string(),
                "check provider.issuer and provider.internal_url",
            ));
            return;
        }
    };
    let Some(meta) = discovery(config, &upstream, out).await else {
        return;
    };
    out.push(issuer(config, &meta));
    out.push(public_issuer(config, &meta));
    out.push(jwks(config, &upstream, &meta).await);
    out.push(client_secret(config, &upstream, &meta).await);
    out.push(clock(config, &upstream).await);
}

/// Where a request for `url` really goes, for the messages.
fn route(upstream: &Upstream, url: &str) -> String {
    match upstream.effective_url(url) {
        Ok((target, true)) => format!("{target} (internal_url, with the public Host)"),
        Ok((target, false)) => target.to_string(),
        Err(_) => url.to_string(),
    }
}

async fn discovery(
    config: &Config,
    upstream: &Upstream,
    out: &mut Vec<Check>,
) -> Option<ProviderMetadata> {
    let url = upstream.discovery_url();
    let target = route(upstream, &url);
    match upstream.get_json::<ProviderMetadata>(&url).await {
        Ok(meta) => {
            out.push(Check::pass("discovery", format!("GET {target} answered")));
            Some(meta)
        }
        Err(e) => {
            let via = if config.provider.internal_url.is_some() {
                "provider.internal_url"
            } else {
                "provider.issuer (or set provider.internal_url to an address this host reaches)"
            };
            out.push(Check::fail(
                "discovery",
                format!("GET {target}: {}", DoctorError::from(e)),
                format!(
                    "make the provider reachable from this host through {via}; under systemd \
                     the unit's IPAddressAllow= allows only localhost by default \
                     (systemd/tokend.service): add Authentik's address in a drop-in \
                     (`systemctl edit tokend`: [Service] IPAddressAllow=<address>)"
                ),
            ));
            None
        }
    }
}

fn issuer(config: &Config, meta: &ProviderMetadata) -> Check {
    let configured = &config.provider.issuer;
    match check_issuer(configured, meta) {
        Ok(()) => Check::pass("issuer", format!("{configured:?} matches exactly")),
        Err(_) => {
            let actual = &meta.issuer;
            let detail = format!(
                "issuer mismatch: configured {configured:?}, provider says {actual:?}{}",
                if differs_by_trailing_slash(configured, actual) {
                    " (trailing slash?)"
                } else {
                    ""
                }
            );
            let fix = if differs_by_trailing_slash(configured, actual) {
                format!(
                    "set provider.issuer = {actual:?} exactly (tokens carry it as `iss`; \
                     Authentik's issuer ends with a slash)"
                )
            } else if !same_origin(configured, actual) {
                "the provider computed another origin: see the public_issuer check".to_string()
            } else {
                format!(
                    "set provider.issuer = {actual:?} (the application's slug: \
                     …/application/o/<slug>/)"
                )
            };
            Check::fail("issuer", detail, fix)
        }
    }
}

/// Whether two issuers differ only in a trailing slash.
pub(crate) fn differs_by_trailing_slash(a: &str, b: &str) -> bool {
    a != b && a.trim_end_matches('/') == b.trim_end_matches('/')
}

fn same_origin(a: &str, b: &str) -> bool {
    match (Url::parse(a), Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

fn public_issuer(config: &Config, meta: &ProviderMetadata) -> Check {
    let configured = &config.provider.issuer;
    let internal = config.provider.internal_url.as_deref();
    let (Ok(want), Ok(got)) = (Url::parse(configured), Url::parse(&meta.issuer)) else {
        return Check::fail(
            "public_issuer",
            format!("the provider's issuer {:?} is not a URL", meta.issuer),
            "check that provider.issuer names an OpenID provider",
        );
    };
    if want.origin() == got.origin() {
        return Check::pass(
            "public_issuer",
            match internal {
                Some(i) => format!(
                    "through internal_url {i} the provider reports the public origin {}",
                    want.origin().ascii_serialization()
                ),
                None => format!(
                    "no internal_url: tokend asks {} directly",
                    want.origin().ascii_serialization()
                ),
            },
        );
    }
    let detail = format!(
        "the provider reports origin {}, the configured issuer has {}",
        got.origin().ascii_serialization(),
        want.origin().ascii_serialization()
    );
    let fix = match internal {
        Some(_) if want.scheme() != got.scheme() => format!(
            "the provider ignores X-Forwarded-Proto: {} (tokend sends `X-Forwarded-Proto: {}`); \
             let Authentik trust the forwarded headers from this host, or point internal_url \
             at the proxy that terminates TLS",
            got.scheme(),
            want.scheme()
        ),
        Some(_) => format!(
            "the provider ignores the Host header tokend sends ({}): point internal_url at \
             Authentik itself (not at a proxy that rewrites Host)",
            want.host_str().unwrap_or_default()
        ),
        None => "set provider.issuer to the provider's public issuer, or set \
                 provider.internal_url when this host reaches Authentik by another address"
            .to_string(),
    };
    Check::fail("public_issuer", detail, fix)
}

async fn jwks(config: &Config, upstream: &Upstream, meta: &ProviderMetadata) -> Check {
    let algs: Vec<String> = config
        .provider
        .algorithms
        .iter()
        .map(|a| a.0.to_string())
        .collect();
    if config.provider.algorithms.iter().any(|a| a.is_hmac()) {
        return Check::pass(
            "jwks",
            format!(
                "HS256 mode ({}): the client secret is the key, the JWKS is not used",
                algs.join(", ")
            ),
        );
    }
    let target = route(upstream, &meta.jwks_uri);
    let loaded = async {
        let body = upstream.get_bytes(&meta.jwks_uri).await?;
        let keys = crate::build_jwks(config, &Metrics::new())?;
        keys.install_body(&meta.jwks_uri, &body, SystemTime::now())?;
        Ok::<_, DoctorError>(keys)
    }
    .await;
    let keys = match loaded {
        Ok(k) => k,
        Err(e) => {
            return Check::fail(
                "jwks",
                format!("GET {target}: {e}"),
                "the JWKS must be reachable the way discovery was; check the provider's jwks_uri",
            );
        }
    };
    let set = keys.keys();
    let usable = set
        .iter()
        .filter(|k| config.provider.algorithms.iter().any(|a| k.fits(a.0)))
        .count();
    if usable > 0 {
        return Check::pass(
            "jwks",
            format!(
                "{} key(s), {usable} usable with provider.algorithms [{}]",
                set.len(),
                algs.join(", ")
            ),
        );
    }
    if set.is_empty() {
        if let Some(reason) = keys.readiness().reason
            && reason.contains("none usable")
        {
            return Check::fail(
                "jwks",
                reason,
                "give the Authentik provider an RSA, EC or Ed25519 signing key",
            );
        }
        return Check::fail(
            "jwks",
            "the JWKS has no signing keys (`{}`): the provider has no signing key, so Authentik \
             signs tokens HS256 with the client secret",
            "either set provider.algorithms = [\"HS256\"] with the client secret configured \
             (HS256 mode), or choose a signing key in the Authentik provider (RS256)",
        );
    }
    Check::fail(
        "jwks",
        format!(
            "{} key(s), none fits provider.algorithms [{}]",
            set.len(),
            algs.join(", ")
        ),
        "add the keys' algorithm (Authentik signs RS256 with an RSA key, ES256/384/512 with EC \
         keys) to provider.algorithms",
    )
}

async fn client_secret(config: &Config, upstream: &Upstream, meta: &ProviderMetadata) -> Check {
    let Some(secret) = config.provider.client_secret.as_ref() else {
        return Check::pass(
            "client_secret",
            "no client secret configured (not needed without [flow] and HS256 mode)",
        );
    };
    let Some(url) = meta.revocation_endpoint.as_deref() else {
        return Check::fail(
            "client_secret",
            DoctorError::NoEndpoint("revocation_endpoint").to_string(),
            "cannot test the secret without one; Authentik publishes …/application/o/revoke/",
        );
    };
    let target = route(upstream, url);
    // A token that cannot exist: the provider answers 200 for unknown tokens (RFC 7009 §2.2)
    // once the client has authenticated, 401 invalid_client when it has not.
    let dummy = Secret::new("tokend-doctor-not-a-token");
    let client_id = &config.provider.client_id;
    match upstream
        .revoke(url, &dummy, "refresh_token", client_id, Some(secret))
        .await
    {
        Ok(a) if (200..300).contains(&a.status) => Check::pass(
            "client_secret",
            format!(
                "the provider accepted client {client_id:?}'s credentials (revocation of a \
                 dummy token at {target}: HTTP {})",
                a.status
            ),
        ),
        Ok(a) if a.invalid_client() => Check::fail(
            "client_secret",
            format!(
                "the provider refused client {client_id:?}'s credentials (revocation at \
                 {target}: HTTP {} {})",
                a.status,
                a.error.as_deref().unwrap_or("")
            ),
            "the client secret does not match the provider's (copied from another \
             environment?): copy it from Authentik (Applications → Providers → the provider → \
             Client Secret) into provider.client_secret_file, and check provider.client_id",
        ),
        Ok(a) => Check::fail(
            "client_secret",
            format!(
                "revocation at {target} answered HTTP {} {}",
                a.status,
                a.error.as_deref().unwrap_or("")
            ),
            "check that the provider is a confidential OAuth2/OpenID client",
        ),
        Err(e) => Check::fail(
            "client_secret",
            DoctorError::from(e).to_string(),
            "the revocation endpoint must be reachable the way discovery was",
        ),
    }
}

async fn clock(config: &Config, upstream: &Upstream) -> Check {
    let leeway = config.verify.leeway;
    let tolerance = (leeway / 2).max(Duration::from_secs(2));
    match skew(upstream).await {
        Ok(skew) => {
            let (sign, abs) = if skew.is_negative() {
                ("behind", skew.unsigned_abs())
            } else {
                ("ahead of", skew.unsigned_abs())
            };
            let detail = if abs == 0 {
                format!(
                    "the provider's clock agrees with this host's (verify.leeway {}s)",
                    leeway.as_secs()
                )
            } else {
                format!(
                    "the provider's clock is {abs}s {sign} this host's (verify.leeway {}s)",
                    leeway.as_secs()
                )
            };
            if Duration::from_secs(abs) <= tolerance {
                Check::pass("clock", detail)
            } else {
                Check::fail(
                    "clock",
                    detail,
                    format!(
                        "synchronise both clocks (chrony, systemd-timesyncd); beyond \
                         verify.leeway tokens are refused as `expired` or `not_yet_valid` \
                         (tolerated here: {}s)",
                        tolerance.as_secs()
                    ),
                )
            }
        }
        Err(e) => Check::fail(
            "clock",
            e.to_string(),
            "cannot compare clocks; check that the provider (or its proxy) sends Date",
        ),
    }
}

/// The provider's clock minus this host's, in whole seconds, from the `Date` header of a
/// discovery request (against the middle of the request).
async fn skew(upstream: &Upstream) -> Result<i64, DoctorError> {
    let url = upstream.discovery_url();
    let before = SystemTime::now();
    let resp = upstream
        .request(reqwest::Method::GET, &url)?
        .send()
        .await
        .map_err(|e| DoctorError::Url {
            url: url.clone(),
            message: e.to_string(),
        })?;
    let after = SystemTime::now();
    let date = resp
        .headers()
        .get(reqwest::header::DATE)
        .ok_or_else(|| DoctorError::NoDate("missing".into()))?;
    let date = date
        .to_str()
        .ok()
        .and_then(|d| httpdate::parse_http_date(d).ok())
        .ok_or_else(|| DoctorError::NoDate("unparsable".into()))?;
    let mid = before + after.duration_since(before).unwrap_or_default() / 2;
    Ok(match date.duration_since(mid) {
        Ok(ahead) => i64::try_from(ahead.as_secs()).unwrap_or(i64::MAX),
        Err(behind) => -i64::try_from(behind.duration().as_secs()).unwrap_or(i64::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_slash_difference_is_recognised() {
        assert!(differs_by_trailing_slash(
            "https://a.example/application/o/x",
            "https://a.example/application/o/x/"
        ));
        assert!(!differs_by_trailing_slash("https://a/x/", "https://a/x/"));
        assert!(!differs_by_trailing_slash("https://a/x", "https://a/y/"));
    }
}
