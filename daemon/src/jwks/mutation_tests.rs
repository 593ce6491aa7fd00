//! Issue #8: tests that kill cargo-mutants' mutants of the key cache (`jwks/mod.rs`): fetch
//! outcomes against a JWKS served over real HTTP on loopback, the unknown-kid refetch gate,
//! the refresher's schedule, and how an install counts skipped entries and keeps keys.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::tests::rsa;
use super::*;
use crate::provider::ProviderMetadata;

const ISSUER: &str = "http://127.0.0.1:1/application/o/x/";
/// A loopback port nothing listens on: every fetch from it fails at once.
const REFUSING: &str = "http://127.0.0.1:1/application/o/x/jwks/";

/// A JWKS endpoint on loopback: serves the current document (503 while there is none) and
/// counts the requests.
struct JwksServer {
    url: String,
    document: Arc<Mutex<Option<String>>>,
    hits: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(document: Option<Value>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let document = Arc::new(Mutex::new(document.map(|d| d.to_string())));
        let hits = Arc::new(AtomicUsize::new(0));
        let handler = {
            let (document, hits) = (document.clone(), hits.clone());
            move || {
                hits.fetch_add(1, Ordering::SeqCst);
                let body = lock(&document).clone();
                async move {
                    match body {
                        Some(b) => (StatusCode::OK, b),
                        None => (StatusCode::SERVICE_UNAVAILABLE, String::new()),
                    }
                }
            }
        };
        let app = axum::Router::new().route("/jwks/", axum::routing::get(handler));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{addr}/jwks/"),
            document,
            hits,
        }
    }

    fn serve(&self, document: Value) {
        *lock(&self.document) = Some(document.to_string());
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A key cache whose discovery is done (`jwks_uri` given) and its metrics.
fn cache(jwks_uri: &str, cfg: JwksConfig) -> (Jwks, Arc<Metrics>) {
    let provider_cfg: crate::config::ProviderConfig =
        toml::from_str(&format!("issuer = \"{ISSUER}\"\nclient_id = \"c\"\n")).expect("valid");
    let metrics = Metrics::new();
    let provider = Arc::new(Provider::new(&provider_cfg, metrics.clone()).expect("client"));
    provider.set_live_metadata(ProviderMetadata {
        issuer: ISSUER.into(),
        jwks_uri: jwks_uri.into(),
        ..Default::default()
    });
    (Jwks::new(provider, cfg, None, metrics.clone()), metrics)
}

fn fetches(metrics: &Metrics, result: &str) -> u64 {
    metrics.jwks_fetches.with_label_values(&[result]).get()
}

/// A failed fetch is an error, counted, kept as `last_error` and shown by readiness; a
/// success installs the keys, is counted and clears the error. Before any fetch readiness
/// says it is waiting for the first one.
#[tokio::test]
async fn issue_8_refresh_reports_a_failure_and_a_success_clears_it() {
    let server = JwksServer::start(None).await;
    let (j, metrics) = cache(&server.url, JwksConfig::default());
    let reason = j.readiness().reason.unwrap_or_default();
    assert!(
        reason.contains("waiting for the first JWKS fetch"),
        "{reason}"
    );
    assert_eq!(j.last_error(), None);

    assert!(j.refresh().await.is_err(), "the provider answered 503");
    let error = j.last_error().expect("the failure is kept");
    assert!(error.contains("503"), "{error}");
    let reason = j.readiness().reason.unwrap_or_default();
    assert!(
        reason.starts_with("no verification keys loaded: ") && reason.ends_with(&error),
        "{reason}"
    );
    assert_eq!(
        (fetches(&metrics, "failure"), fetches(&metrics, "success")),
        (1, 0)
    );

    server.serve(json!({"keys": [rsa("k1")]}));
    j.refresh().await.expect("served");
    assert_eq!(j.last_error(), None, "a success clears the error");
    assert!(j.keys().by_kid("k1").is_some());
    assert!(j.readiness().ready);
    assert_eq!(
        (fetches(&metrics, "failure"), fetches(&metrics, "success")),
        (1, 1)
    );
    assert_eq!(server.hits(), 2);
}

/// The document a fetch installs is the one written to the disk cache: a cache built from a
/// fetch gives a fresh start the same keys.
#[tokio::test]
async fn issue_8_fetched_document_is_what_the_disk_cache_keeps() {
    let server = JwksServer::start(Some(json!({"keys": [rsa("k1"), rsa("k2")]}))).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = JwksConfig {
        cache_file: Some(dir.path().join("jwks.json")),
        ..JwksConfig::default()
    };
    let (j, _) = cache(&server.url, cfg.clone());
    j.refresh().await.expect("served");
    let (restarted, _) = cache(REFUSING, cfg);
    assert!(restarted.load_disk_cache().expect("readable"));
    let keys = restarted.keys();
    assert_eq!(keys.source, KeySource::DiskCache);
    assert!(keys.by_kid("k1").is_some() && keys.by_kid("k2").is_some());
    assert_eq!(keys.len(), 2);
}

/// Unknown-kid refetches: the first fetches; a caller that looked at an older key set is told
/// to look again without a fetch; another within `min_refetch_interval` is held back; a
/// fetch that fails says so.
#[tokio::test]
async fn issue_8_unknown_kid_refetch_is_gated_and_single() {
    let server = JwksServer::start(Some(json!({"keys": [rsa("k1")]}))).await;
    let cfg = JwksConfig {
        min_refetch_interval: Duration::from_secs(60),
        ..JwksConfig::default()
    };
    let (j, metrics) = cache(&server.url, cfg.clone());
    let seen = j.keys().generation;
    assert_eq!(j.refetch_unknown_kid(seen).await, Refetch::Fetched);
    assert_eq!(server.hits(), 1);
    assert!(j.keys().by_kid("k1").is_some());
    assert_eq!(j.refetch_unknown_kid(seen).await, Refetch::Newer);
    assert_eq!(
        j.refetch_unknown_kid(j.keys().generation).await,
        Refetch::HeldBack
    );
    assert_eq!(server.hits(), 1, "neither looked upstream");
    assert_eq!(metrics.unknown_kid_refetches.get(), 1);
    assert_eq!(metrics.unknown_kid_held_back.get(), 1);

    let (down, _) = cache(REFUSING, cfg);
    assert_eq!(
        down.refetch_unknown_kid(down.keys().generation).await,
        Refetch::Failed
    );
}

/// The refresher fetches at once only when told to; after failures it retries after 1 s,
/// then 2 s (doubling), not sooner.
#[tokio::test]
async fn issue_8_refresher_fetches_first_only_when_told_and_backs_off() {
    let (failing, metrics) = cache(REFUSING, JwksConfig::default());
    let (waiting, waiting_metrics) = cache(REFUSING, JwksConfig::default());
    let (_replace, replaced) = tokio::sync::watch::channel(false);
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let tasks = [
        tokio::spawn(Arc::new(failing).run_refresher(replaced.clone(), shutdown.clone(), true)),
        tokio::spawn(Arc::new(waiting).run_refresher(replaced, shutdown, false)),
    ];
    // Attempts at about 0 s, 1 s and 3 s; the next one would be at 7 s.
    let window = Duration::from_millis(4_500);
    while started.elapsed() < window && fetches(&metrics, "failure") < 3 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let early = started.elapsed();
    tokio::time::sleep(window.saturating_sub(early)).await;
    let _ = stop.send(true);
    for t in tasks {
        t.await.expect("refresher stops");
    }
    assert!(
        early >= Duration::from_millis(2_900),
        "third attempt after {early:?}: the backoff must double from 1 s"
    );
    assert_eq!(fetches(&metrics, "failure"), 3, "attempts at 0, 1 and 3 s");
    assert_eq!(
        fetches(&waiting_metrics, "failure"),
        0,
        "without fetch_first the first fetch waits refresh_interval"
    );
}

/// Readiness counts every unusable entry and names the first; a key without `kid` keeps its
/// identity across an install while unchanged, and a changed one is new.
#[test]
fn issue_8_install_counts_skipped_entries_and_keeps_unchanged_keys_without_kid() {
    let j = super::tests::jwks();
    let bad = |kid: &str| {
        let mut k = rsa(kid);
        k["n"] = json!("!!!");
        k
    };
    j.install(
        &[bad("b1"), bad("b2"), bad("b3")],
        SystemTime::now(),
        KeySource::Provider,
    );
    let reason = j.readiness().reason.unwrap_or_default();
    assert!(
        reason.contains("has 3 signing key(s)") && reason.contains("b1"),
        "{reason}"
    );

    let mut loose = rsa("x");
    loose.as_object_mut().map(|o| o.remove("kid"));
    j.install(
        std::slice::from_ref(&loose),
        SystemTime::now(),
        KeySource::Provider,
    );
    let first = j.keys().iter().next().cloned().expect("one key");
    j.install(
        std::slice::from_ref(&loose),
        SystemTime::now(),
        KeySource::Provider,
    );
    assert!(j.keys().contains(&first), "unchanged: the same Arc");
    loose["alg"] = json!("RS384");
    j.install(&[loose], SystemTime::now(), KeySource::Provider);
    let keys = j.keys();
    assert_eq!(keys.len(), 1);
    assert!(!keys.contains(&first), "changed: a new key");
}

/// Log lines written while `f` runs (this thread only).
fn logs_of(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    String::from_utf8_lossy(&lock(&buf.0)).into_owned()
}

/// "verification keys changed" is logged when the set of kids changes — a kid added, one
/// withdrawn, one replaced by another — and not when the same kids come again.
#[test]
fn issue_8_a_change_of_kids_is_logged_and_the_same_kids_are_not() {
    const CHANGED: &str = "verification keys changed";
    let j = super::tests::jwks();
    let now = SystemTime::now();
    let install = |kids: &[&str]| {
        let entries: Vec<Value> = kids.iter().map(|k| rsa(k)).collect();
        logs_of(|| j.install(&entries, now, KeySource::Provider))
    };
    assert!(install(&["k1"]).contains(CHANGED), "a first key");
    assert!(!install(&["k1"]).contains(CHANGED), "the same kid again");
    assert!(install(&["k1", "k2"]).contains(CHANGED), "a kid added");
    assert!(
        install(&["k2", "k3"]).contains(CHANGED),
        "k1 replaced by k3"
    );
    assert!(!install(&["k3", "k2"]).contains(CHANGED), "the same kids");
    assert!(install(&["k3"]).contains(CHANGED), "a kid withdrawn");
}
