//! The discovery document (`/.well-known/openid-configuration`): parsing into
//! `ProviderMetadata`, the exact issuer check, the rewriting of its endpoint URLs to the
//! internal URL, and openidconnect's URL types the flow builds from them. Property: the
//! metadata survives a serialize/parse round trip (the JWKS disk cache stores it that way).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tokend::config::ProviderConfig;
use tokend::provider::{ProviderMetadata, Upstream, check_issuer};

fn upstream() -> &'static Upstream {
    static U: OnceLock<Upstream> = OnceLock::new();
    U.get_or_init(|| {
        let cfg: ProviderConfig = serde_json::from_value(serde_json::json!({
            "issuer": "https://auth.example.com/application/o/shop/",
            "internal_url": "http://authentik-server:9000/prefix/",
            "client_id": "shop",
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        Upstream::new(&cfg).unwrap_or_else(|e| panic!("{e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(meta) = serde_json::from_slice::<ProviderMetadata>(data) else {
        return;
    };
    let _ = check_issuer("https://auth.example.com/application/o/shop/", &meta);
    let up = upstream();
    for url in [
        Some(&meta.jwks_uri),
        meta.authorization_endpoint.as_ref(),
        meta.token_endpoint.as_ref(),
        meta.end_session_endpoint.as_ref(),
        meta.revocation_endpoint.as_ref(),
        meta.userinfo_endpoint.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        if let Ok((target, internal)) = up.effective_url(url) {
            if internal {
                assert_eq!(target.host_str(), Some("authentik-server"));
            }
        }
    }
    if let Some(a) = &meta.authorization_endpoint {
        let _ = openidconnect::AuthUrl::new(a.clone());
    }
    if let Some(t) = &meta.token_endpoint {
        let _ = openidconnect::TokenUrl::new(t.clone());
    }
    let _ = openidconnect::IssuerUrl::new(meta.issuer.clone());
    let json = serde_json::to_vec(&meta).unwrap_or_else(|e| panic!("serialize: {e}"));
    let again: ProviderMetadata =
        serde_json::from_slice(&json).unwrap_or_else(|e| panic!("round trip: {e}"));
    assert_eq!(meta, again, "discovery metadata changed in a round trip");
});
