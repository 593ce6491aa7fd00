//! In-process verification benchmarks (no network, no HTTP):
//!
//! * `cache_hit/*` — the same valid token again and again: SHA-256 of the token, a `DashMap`
//!   lookup, the "is the key still published" and "has the session ended" checks, the metrics.
//! * `uncached/*` — a different valid token every iteration through a verifier whose cache is
//!   disabled (`verify.cache_max_entries = 0`): header parse, key lookup, signature, claim checks,
//!   claim mapping and rendering of the response body. The full miss path.
//! * `uncached_cache_full/rs256` — misses while the cache is full of live entries (each miss
//!   then tries a sweep of the whole cache before giving up on remembering the token).
//! * `raw/*` — only `jsonwebtoken::crypto::verify`, on one token (and, `_cycling`, on the
//!   same pool as `uncached/rs256`): the floor for `uncached/*`. `raw/*_aws_lc_parsed_key`: the
//!   same check with a key parsed once by aws-lc-rs (jsonwebtoken builds the key on every call).
//! * `forward_hit/rs256` — `/v1/auth` on a cache hit without HTTP (`forward::answer`): the
//!   cookie read, the hit, the identity headers; compare with `cache_hit/rs256`.
//! * `pieces/*` — the non-signature work of a miss, reproduced with the same crates, so the
//!   difference between `uncached` and `raw` can be attributed; and `pieces/claims_from_answer`,
//!   what forward auth adds to a token's first cache hit (parsing the claims back from the cached
//!   answer; later hits use the identity headers kept beside it).
//!
//! Before the criterion groups (whatever the filter), a paired measurement prints the
//! uncached/raw RS256 ratio on the same tokens (see [`paired_ratio`]); unlike the ratio of two
//! criterion results taken a minute apart, it holds up under load from other processes.
//!
//! The verifier is built exactly as the daemon builds it ([`AppState::new`], then its current
//! `Runtime`), from a config whose `jwks.cache_file` holds the bench public keys, so no provider
//! is contacted. The keys in `benches/fixtures/` are benchmark-only keys (see the README there).
//!
//! `Verifier::verify` is `async` but only awaits on an unknown `kid` (JWKS refetch). The bench
//! polls it once with a no-op waker and panics if it does not finish, so no runtime overhead is
//! measured and a refetch attempt cannot go unnoticed. `cache_hit/rs256_tokio_block_on` shows
//! what a current-thread `block_on` would add.

use std::future::Future;
use std::hint::black_box;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents,
};
use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tokend::config::Config;
use tokend::verify::{ClaimMapper, Verified, Verifier, VerifyError};
use tokend::{AppState, Runtime};
use tokend_shared::VerifyResponse;
use tokio::sync::watch;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/fixtures");
const ISSUER: &str = "http://127.0.0.1:1/application/o/bench/";
const CLIENT_ID: &str = "bench";
const RSA_KID: &str = "bench-rsa-2048";
const EC_KID: &str = "bench-ec-p256";

/// Distinct tokens of each algorithm signed at start (RSA signing dominates the setup time:
/// ~15 s for 20 000). `TOKEND_BENCH_TOKENS=n` changes it, e.g. to profile with a short setup.
/// The `uncached_cache_full` verifier's cache holds the first half of the RS256 tokens.
const DEFAULT_TOKENS: usize = 20_000;

fn pool_size() -> usize {
    match std::env::var("TOKEND_BENCH_TOKENS") {
        Ok(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 2)
            .expect("TOKEND_BENCH_TOKENS must be a number >= 2"),
        Err(_) => DEFAULT_TOKENS,
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(FIXTURES).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn jwk(name: &str) -> Value {
    serde_json::from_slice(&fixture(name))
        .unwrap_or_else(|e| panic!("{name} is not a JSON object: {e}"))
}

fn now_unix() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    i64::try_from(secs).expect("seconds fit in i64")
}

/// Runs `verify` to completion without a runtime; panics if it would suspend (a JWKS refetch).
fn verify_now(verifier: &Verifier, token: &str) -> Result<Arc<Verified>, VerifyError> {
    let mut fut = pin!(verifier.verify(token));
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => panic!(
            "Verifier::verify suspended: it wanted to refetch the JWKS, so the bench key set \
             does not contain the token's key"
        ),
    }
}

/// The claims of an Authentik access token; `i` makes `sub`, `uid`, `sid` and `jti` distinct.
fn authentik_claims(i: usize, now: i64) -> Value {
    let n = u128::try_from(i).expect("usize fits in u128");
    let h = |salt: u128| {
        format!(
            "{:032x}",
            n.wrapping_add(salt)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
        )
    };
    json!({
        "iss": ISSUER,
        "sub": format!("{}{}", h(1), h(2)),
        "aud": CLIENT_ID,
        "exp": now + 3600,
        "iat": now,
        "auth_time": now - 60,
        "acr": "goauthentik.io/providers/oauth2/default",
        "amr": ["pwd"],
        "sid": format!("{}{}", h(3), h(4)),
        "jti": h(5),
        "azp": CLIENT_ID,
        "uid": h(6),
        "scope": "openid email profile",
        "email": format!("user{i}@example.com"),
        "email_verified": true,
        "name": format!("Bench User {i}"),
        "given_name": format!("Bench User {i}"),
        "preferred_username": format!("user{i}"),
        "nickname": format!("user{i}"),
        "groups": ["staff", "ecosire-support", "bench-users"],
        "organizationId": format!("org-{}", i % 97),
    })
}

fn sign(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_string());
    header.typ = Some("JWT".to_string());
    jsonwebtoken::encode(&header, claims, key).expect("signing a bench token")
}

/// The daemon's state built the daemon's way, keys from a disk cache in `dir`.
///
/// `AppState::new` spawns the JWKS refresher onto the current tokio runtime: it is given the
/// bench's `setup_rt`, which is never driven, so the refresher never runs (and never tries the
/// unreachable issuer) while measuring.
fn runtime(
    dir: &Path,
    cache_max_entries: usize,
    setup_rt: &tokio::runtime::Runtime,
    stop: &watch::Receiver<bool>,
) -> (Arc<AppState>, Arc<Runtime>) {
    let toml = format!(
        r#"
[listen]
http = "127.0.0.1:0"

[provider]
issuer = "{ISSUER}"
client_id = "{CLIENT_ID}"

[jwks]
cache_file = "jwks-cache.json"

[verify]
cache_max_entries = {cache_max_entries}
"#
    );
    let config = Config::from_toml(
        &toml,
        &dir.join("tokend.toml"),
        dir,
        std::iter::empty::<(String, String)>(),
    )
    .expect("bench config is valid");
    let _enter = setup_rt.enter();
    let state = AppState::new(config, stop.clone()).expect("AppState::new");
    let runtime = state.runtime();
    let keys = runtime.jwks.keys().len();
    assert_eq!(
        keys, 2,
        "the JWKS disk cache was not loaded (expected the RSA and the EC bench key, got {keys})"
    );
    (state, runtime)
}

struct Setup {
    /// Holds the disk cache file for the life of the bench.
    _dir: tempfile::TempDir,
    /// Holds the (never polled) JWKS refresher tasks.
    _setup_rt: tokio::runtime::Runtime,
    _stop: watch::Sender<bool>,
    /// The daemon's state around `cached` (forward auth counts in its metrics).
    cached_state: Arc<AppState>,
    /// Default cache (100 000 entries).
    cached: Arc<Runtime>,
    /// `cache_max_entries = 0`.
    uncached: Arc<Runtime>,
    /// Cache of `full_entries`, filled with the first tokens of `rsa_tokens`.
    full: Arc<Runtime>,
    full_entries: usize,
    rsa_tokens: Vec<String>,
    ec_tokens: Vec<String>,
    rsa_decoding: DecodingKey,
    ec_decoding: DecodingKey,
    /// The same public keys parsed once by aws-lc-rs (what a verifier could keep per key).
    rsa_parsed: ParsedPublicKey,
    ec_parsed: ParsedPublicKey,
}

fn setup() -> Setup {
    let rsa_jwk = jwk("bench-rsa-2048.jwk.json");
    let ec_jwk = jwk("bench-ec-p256.jwk.json");
    let dir = tempfile::tempdir().expect("temp dir");
    let now = now_unix();
    let disk_cache = json!({
        "version": 1,
        "issuer": ISSUER,
        "fetched_at": now,
        "discovery": { "issuer": ISSUER, "jwks_uri": format!("{ISSUER}jwks/") },
        "jwks": { "keys": [rsa_jwk, ec_jwk] },
    });
    std::fs::write(
        dir.path().join("jwks-cache.json"),
        serde_json::to_vec(&disk_cache).expect("JSON"),
    )
    .expect("write disk cache");

    let setup_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (stop_tx, stop) = watch::channel(false);
    let (cached_state, cached) = runtime(dir.path(), 100_000, &setup_rt, &stop);
    let (_, uncached) = runtime(dir.path(), 0, &setup_rt, &stop);
    let tokens = pool_size();
    let full_entries = tokens / 2;
    let (_, full) = runtime(dir.path(), full_entries, &setup_rt, &stop);

    let rsa_key = EncodingKey::from_rsa_pem(&fixture("bench-rsa-2048.pem")).expect("RSA PEM");
    let ec_key = EncodingKey::from_ec_pem(&fixture("bench-ec-p256.pem")).expect("EC PEM");
    let started = Instant::now();
    let rsa_tokens: Vec<String> = (0..tokens)
        .map(|i| {
            sign(
                Algorithm::RS256,
                RSA_KID,
                &rsa_key,
                &authentik_claims(i, now),
            )
        })
        .collect();
    let ec_tokens: Vec<String> = (0..tokens)
        .map(|i| {
            let i = tokens + i;
            sign(Algorithm::ES256, EC_KID, &ec_key, &authentik_claims(i, now))
        })
        .collect();
    eprintln!(
        "setup: signed {tokens} RS256 + {tokens} ES256 tokens in {:.1?}; RS256 token is \
         {} bytes",
        started.elapsed(),
        rsa_tokens[0].len()
    );

    // The bench must measure successes: check a sample through every verifier.
    for (what, token) in [("RS256", &rsa_tokens[0]), ("ES256", &ec_tokens[0])] {
        for (name, state) in [("uncached", &uncached), ("cached", &cached)] {
            let verified = verify_now(&state.verifier, token).unwrap_or_else(|e| {
                panic!("a freshly signed {what} bench token does not verify ({name}): {e:?}")
            });
            let claims = verified.claims().expect("the answer parses back");
            assert_eq!(claims.role, "support", "claim mapping ran");
            assert!(!verified.body.is_empty(), "response body rendered");
        }
    }
    assert_eq!(
        uncached.verifier.cache().len(),
        0,
        "cache_max_entries = 0 must disable the cache"
    );
    for token in &rsa_tokens[..full_entries] {
        verify_now(&full.verifier, token).expect("filling the cache");
    }
    assert_eq!(full.verifier.cache().len(), full_entries);

    let b64 = |jwk: &Value, member: &str| {
        URL_SAFE_NO_PAD
            .decode(jwk[member].as_str().expect("JWK member"))
            .expect("JWK member is base64url")
    };
    let rsa_parsed = RsaPublicKeyComponents {
        n: b64(&rsa_jwk, "n"),
        e: b64(&rsa_jwk, "e"),
    }
    .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
    .expect("parsed RSA key");
    let mut point = vec![4u8];
    point.extend(b64(&ec_jwk, "x"));
    point.extend(b64(&ec_jwk, "y"));
    let ec_parsed =
        ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).expect("parsed P-256 key");

    Setup {
        _dir: dir,
        _setup_rt: setup_rt,
        _stop: stop_tx,
        cached_state,
        cached,
        uncached,
        full,
        full_entries,
        rsa_tokens,
        ec_tokens,
        rsa_parsed,
        ec_parsed,
        rsa_decoding: DecodingKey::from_jwk(
            &serde_json::from_value::<Jwk>(rsa_jwk).expect("RSA JWK"),
        )
        .expect("RSA decoding key"),
        ec_decoding: DecodingKey::from_jwk(&serde_json::from_value::<Jwk>(ec_jwk).expect("EC JWK"))
            .expect("EC decoding key"),
    }
}

/// Cycles through `tokens`; every call yields the next one.
fn cycle<'a>(tokens: &'a [String]) -> impl FnMut() -> &'a str {
    let mut i = 0;
    move || {
        let t = &tokens[i];
        i = if i + 1 == tokens.len() { 0 } else { i + 1 };
        t.as_str()
    }
}

fn raw_verify(token: &str, key: &DecodingKey, alg: Algorithm) -> bool {
    let (message, signature) = token.rsplit_once('.').expect("compact JWS");
    jsonwebtoken::crypto::verify(signature, message.as_bytes(), key, alg).expect("raw verify")
}

/// Base64url-decodes the signature and checks it with a pre-parsed aws-lc-rs key.
fn parsed_verify(token: &str, key: &ParsedPublicKey) -> bool {
    let (message, signature) = token.rsplit_once('.').expect("compact JWS");
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .expect("signature base64url");
    key.verify_sig(message.as_bytes(), &signature).is_ok()
}

/// `uncached/rs256` and `raw/..._cycling` run a minute apart, and on a shared machine their ratio
/// moves with the neighbours' load. This measures the ratio directly: chunks of the same tokens
/// through the uncached verifier and through the bare signature check, alternating (and
/// alternating which goes first), for about three seconds; prints the median chunk ratio.
fn paired_ratio(s: &Setup) {
    const CHUNK: usize = 64;
    let tokens = &s.rsa_tokens;
    let run_full = |chunk: &[String]| {
        let t0 = Instant::now();
        for t in chunk {
            black_box(verify_now(&s.uncached.verifier, black_box(t)).expect("uncached RS256"));
        }
        t0.elapsed().as_secs_f64()
    };
    let run_raw = |chunk: &[String]| {
        let t0 = Instant::now();
        for t in chunk {
            assert!(raw_verify(black_box(t), &s.rsa_decoding, Algorithm::RS256));
        }
        t0.elapsed().as_secs_f64()
    };
    let mut ratios = Vec::new();
    let mut start = 0;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        let end = (start + CHUNK).min(tokens.len());
        let chunk = &tokens[start..end];
        start = if end == tokens.len() { 0 } else { end };
        let (full, raw) = if ratios.len() % 2 == 0 {
            let f = run_full(chunk);
            (f, run_raw(chunk))
        } else {
            let r = run_raw(chunk);
            (run_full(chunk), r)
        };
        ratios.push(full / raw);
    }
    ratios.sort_by(f64::total_cmp);
    let q = |p: usize| ratios[(ratios.len() - 1) * p / 100];
    eprintln!(
        "paired: uncached/rs256 ÷ raw RS256 verify, same tokens = {:.2}× (median of {} chunk \
         pairs of {CHUNK} tokens; p10 {:.2}×, p90 {:.2}×)",
        q(50),
        ratios.len(),
        q(10),
        q(90)
    );
}

fn bench_verify(c: &mut Criterion) {
    let s = setup();
    paired_ratio(&s);

    let mut g = c.benchmark_group("cache_hit");
    g.throughput(Throughput::Elements(1));
    let token = s.rsa_tokens[0].as_str();
    verify_now(&s.cached.verifier, token).expect("warm the cache");
    assert!(!s.cached.verifier.cache().is_empty(), "token is cached");
    g.bench_function("rs256", |b| {
        b.iter(|| verify_now(&s.cached.verifier, black_box(token)).expect("cache hit"))
    });
    // A runtime of its own: the setup runtime holds the refresher tasks, which must not run.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime");
    g.bench_function("rs256_tokio_block_on", |b| {
        b.iter(|| {
            rt.block_on(s.cached.verifier.verify(black_box(token)))
                .expect("cache hit")
        })
    });
    g.finish();

    // Forward auth (`/v1/auth`) on a cache hit, headers to response, without HTTP: the cookie
    // read, the verification (a hit), the identity headers of the oauth2-proxy set.
    let mut g = c.benchmark_group("forward_hit");
    g.throughput(Throughput::Elements(1));
    let mut request = HeaderMap::new();
    request.insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("{}={token}", s.cached.config.cookies.access_name))
            .expect("cookie header"),
    );
    let forward_now = || {
        let mut fut = pin!(tokend::forward::answer(
            &s.cached_state,
            &s.cached,
            black_box(&request)
        ));
        match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(r) => r.expect("forward auth answers 200"),
            Poll::Pending => panic!("a forward-auth cache hit never waits"),
        }
    };
    let first = forward_now();
    assert_eq!(first.status(), 200);
    assert!(
        first.headers().contains_key("x-auth-request-groups"),
        "identity headers: {:?}",
        first.headers()
    );
    g.bench_function("rs256", |b| b.iter(forward_now));
    g.finish();

    let mut g = c.benchmark_group("uncached");
    g.throughput(Throughput::Elements(1));
    g.bench_function("rs256", |b| {
        let mut next = cycle(&s.rsa_tokens);
        b.iter(|| verify_now(&s.uncached.verifier, black_box(next())).expect("uncached RS256"))
    });
    g.bench_function("es256", |b| {
        let mut next = cycle(&s.ec_tokens);
        b.iter(|| verify_now(&s.uncached.verifier, black_box(next())).expect("uncached ES256"))
    });
    g.finish();

    let mut g = c.benchmark_group("uncached_cache_full");
    g.throughput(Throughput::Elements(1));
    g.bench_function("rs256", |b| {
        // Tokens past the ones in the cache: each misses, and is not remembered (full).
        let mut next = cycle(&s.rsa_tokens[s.full_entries..]);
        b.iter(|| verify_now(&s.full.verifier, black_box(next())).expect("miss, full cache"))
    });
    assert_eq!(s.full.verifier.cache().len(), s.full_entries);
    g.finish();

    let mut g = c.benchmark_group("raw");
    g.throughput(Throughput::Elements(1));
    assert!(
        raw_verify(token, &s.rsa_decoding, Algorithm::RS256),
        "raw RS256 verifies"
    );
    g.bench_function("rs256_jsonwebtoken_crypto_verify", |b| {
        b.iter(|| raw_verify(black_box(token), &s.rsa_decoding, Algorithm::RS256))
    });
    // The same, cycling through the pool like `uncached/rs256` (cold token bytes each time), so
    // the difference to `uncached/rs256` is tokend's own work only.
    g.bench_function("rs256_jsonwebtoken_crypto_verify_cycling", |b| {
        let mut next = cycle(&s.rsa_tokens);
        b.iter(|| raw_verify(black_box(next()), &s.rsa_decoding, Algorithm::RS256))
    });
    // The signature check with a key parsed once (no per-call key construction), as in
    // `openssl speed`: what `raw/rs256_jsonwebtoken_crypto_verify` would cost with a cached key.
    assert!(
        parsed_verify(token, &s.rsa_parsed),
        "parsed-key RS256 verifies"
    );
    g.bench_function("rs256_aws_lc_parsed_key", |b| {
        b.iter(|| parsed_verify(black_box(token), &s.rsa_parsed))
    });
    let ec_token = s.ec_tokens[0].as_str();
    assert!(
        raw_verify(ec_token, &s.ec_decoding, Algorithm::ES256),
        "raw ES256 verifies"
    );
    assert!(
        parsed_verify(ec_token, &s.ec_parsed),
        "parsed-key ES256 verifies"
    );
    g.bench_function("es256_aws_lc_parsed_key", |b| {
        b.iter(|| parsed_verify(black_box(ec_token), &s.ec_parsed))
    });
    g.bench_function("es256_jsonwebtoken_crypto_verify", |b| {
        b.iter(|| raw_verify(black_box(ec_token), &s.ec_decoding, Algorithm::ES256))
    });
    g.finish();

    // The rest of a miss, piece by piece (same crates and calls as daemon/src/verify/).
    let mut g = c.benchmark_group("pieces");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sha256_token", |b| {
        b.iter(|| <[u8; 32]>::from(Sha256::digest(black_box(token).as_bytes())))
    });
    let mut parts = token.split('.');
    let header = parts.next().expect("header");
    let payload = parts.next().expect("payload");
    g.bench_function("header_b64_json", |b| {
        b.iter(|| {
            let bytes = URL_SAFE_NO_PAD.decode(black_box(header)).expect("b64");
            serde_json::from_slice::<Map<String, Value>>(&bytes).expect("header JSON")
        })
    });
    g.bench_function("payload_b64_json", |b| {
        b.iter(|| {
            let bytes = URL_SAFE_NO_PAD.decode(black_box(payload)).expect("b64");
            serde_json::from_slice::<Map<String, Value>>(&bytes).expect("payload JSON")
        })
    });
    let claims: Map<String, Value> =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64"))
            .expect("payload JSON");
    let mapper = ClaimMapper::new(&s.cached.config.claims);
    let sub = claims["sub"].as_str().expect("sub").to_string();
    g.bench_function("map_claims", |b| {
        b.iter_batched(
            || claims.clone(),
            |all| mapper.map(all, sub.clone(), 1),
            BatchSize::SmallInput,
        )
    });
    let verified = verify_now(&s.cached.verifier, token).expect("verified");
    // What forward auth pays on a cache hit: the cache keeps the rendered answer only.
    g.bench_function("claims_from_answer", |b| {
        b.iter(|| black_box(&verified).claims().expect("parses back"))
    });
    let claims = verified.claims().expect("parses back");
    g.bench_function("render_response", |b| {
        b.iter(|| {
            serde_json::to_vec(&VerifyResponse {
                active: true,
                claims: Some(black_box(&claims).clone()),
                reason: None,
                message: None,
            })
            .expect("render")
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
    targets = bench_verify
}
criterion_main!(benches);
