//! A real [`Flow`] for unit tests: HS256 mode (no provider to reach), the memory store.

use std::path::Path;
use std::sync::Arc;

use crate::codes::Codes;
use crate::config::Config;
use crate::flow::Flow;
use crate::metrics::Metrics;
use crate::sessions::Sessions;
use crate::store::{MemoryStore, Store};
use crate::verify::Verifier;

/// A flow whose config is the test's base (listener, HS256 provider) followed by `sections`
/// (e.g. a `[cookies]` section).
pub(crate) fn flow(sections: &str) -> Flow {
    let text = format!(
        "[listen]\nhttp = \"127.0.0.1:9180\"\n[provider]\n\
         issuer = \"https://auth.example.com/application/o/shop/\"\nclient_id = \"shop\"\n\
         client_secret = \"unit-test-secret\"\nalgorithms = [\"HS256\"]\n{sections}"
    );
    let config = Config::from_toml(
        &text,
        Path::new("unit.toml"),
        Path::new("."),
        std::iter::empty(),
    )
    .expect("valid config");
    let metrics = Metrics::new();
    let jwks = crate::build_jwks(&config, &metrics).expect("jwks");
    let sessions = Arc::new(Sessions::new(config.revocation_ttl(), metrics.clone()));
    let verifier = Arc::new(Verifier::new(
        &config,
        jwks.clone(),
        sessions,
        metrics.clone(),
    ));
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new(16, 16));
    let codes = Arc::new(Codes::new(store.clone(), config.codes.ttl, metrics.clone()));
    Flow::new(
        &config,
        store,
        codes,
        verifier,
        jwks.provider().clone(),
        metrics,
    )
}
