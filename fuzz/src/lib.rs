//! Shared harness of the fuzz targets: verifiers with a fixed key set, token signing, and the
//! independent checks behind the property "a token accepted implies that its signature, issuer,
//! audience and times were checked".
//!
//! Two verifiers are built the way the daemon builds them (`Verifier::new` on a `Jwks`), with no
//! provider to reach:
//!
//! * `asym`: the benchmark's RSA-2048 and P-256 public keys (`daemon/benches/fixtures`),
//!   installed through the JWKS parser as if the provider had served them;
//! * `hs`: HS256 mode, the client secret is the key.
//!
//! Their issuer is `http://127.0.0.1:1/...`, so the one unknown-kid refetch made while building
//! them fails at once; later ones are held back by `jwks.min_refetch_interval` (set to years), so
//! no fuzz input ever waits on the network.

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{Map, Value};
use tokend::config::Config;
use tokend::jwks::Jwks;
use tokend::metrics::Metrics;
use tokend::sessions::Sessions;
use tokend::verify::Verifier;

pub const ISSUER: &str = "http://127.0.0.1:1/application/o/fuzz/";
pub const CLIENT_ID: &str = "fuzz";
pub const CLIENT_SECRET: &str = "fuzz-client-secret-not-a-real-one";
/// The nonce `verify_id_token` is called with.
pub const NONCE: &str = "fuzz-nonce";
/// Leeway of both verifiers (the default), and slack for the seconds a run takes.
pub const LEEWAY: i64 = 60;
const SLACK: i64 = 5;

const RSA_JWK: &str = include_str!("../../daemon/benches/fixtures/bench-rsa-2048.jwk.json");
const EC_JWK: &str = include_str!("../../daemon/benches/fixtures/bench-ec-p256.jwk.json");
const EC_PEM: &[u8] = include_bytes!("../../daemon/benches/fixtures/bench-ec-p256.pem");

pub struct Harness {
    pub rt: tokio::runtime::Runtime,
    pub asym: Verifier,
    pub hs: Verifier,
    /// The JWKS the `jwks` target installs into; `jwks_verifier` verifies with it.
    pub jwks: Arc<Jwks>,
    pub jwks_verifier: Verifier,
    pub config: Config,
    ec_key: EncodingKey,
    hs_key: EncodingKey,
    /// Every key that may legitimately have signed an accepted token, with its algorithms.
    decoding: Vec<(DecodingKey, Vec<Algorithm>)>,
}

fn config(extra: &str) -> Config {
    let text = format!(
        "[listen]\nhttp = \"127.0.0.1:9\"\n\
         [provider]\nissuer = \"{ISSUER}\"\nclient_id = \"{CLIENT_ID}\"\nhttp_timeout = \"1s\"\n{extra}\n\
         [jwks]\nmin_refetch_interval = \"100years\"\n\
         [verify]\ncache_max_entries = 64\n"
    );
    match Config::from_toml(
        &text,
        std::path::Path::new("fuzz.toml"),
        std::path::Path::new("."),
        std::iter::empty::<(String, String)>(),
    ) {
        Ok(c) => c,
        Err(e) => panic!("harness config: {e}"),
    }
}

fn verifier(config: &Config, jwks_body: Option<&[u8]>) -> (Verifier, Arc<Jwks>) {
    let metrics = Metrics::new();
    let jwks = match tokend::build_jwks(config, &metrics) {
        Ok(j) => j,
        Err(e) => panic!("key cache: {e}"),
    };
    if let Some(body) = jwks_body {
        if let Err(e) = tokend::fuzzing::install_jwks(&jwks, body) {
            panic!("fixed JWKS: {e}");
        }
    }
    let sessions = Arc::new(Sessions::new(config.revocation_ttl(), metrics.clone()));
    (Verifier::new(config, jwks.clone(), sessions, metrics), jwks)
}

/// The fixed JWKS: the benchmark's RSA and EC public keys.
pub fn fixed_jwks() -> String {
    format!("{{\"keys\": [{RSA_JWK}, {EC_JWK}]}}")
}

pub fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("runtime: {e}"),
        };
        let _enter = rt.enter();
        let asym_config = config(
            "algorithms = [\"RS256\", \"RS384\", \"RS512\", \"PS256\", \"ES256\", \"ES384\", \"ES512\", \"EdDSA\"]",
        );
        let jwks_body = fixed_jwks();
        let (asym, _) = verifier(&asym_config, Some(jwks_body.as_bytes()));
        let (jwks_verifier, jwks) = verifier(&asym_config, Some(jwks_body.as_bytes()));
        let hs_config = config(&format!(
            "client_secret = \"{CLIENT_SECRET}\"\nalgorithms = [\"HS256\", \"HS384\", \"HS512\"]"
        ));
        let (hs, _) = verifier(&hs_config, None);
        // Spend the one unknown-kid refetch now (it fails: nothing listens on port 1).
        let unknown = sign_with(
            &EncodingKey::from_secret(b"x"),
            Algorithm::HS256,
            br#"{"alg":"RS256","kid":"warm-up"}"#,
            b"{}",
        );
        for v in [&asym, &jwks_verifier] {
            let _ = rt.block_on(v.verify(&unknown));
        }
        let ec_key = match EncodingKey::from_ec_pem(EC_PEM) {
            Ok(k) => k,
            Err(e) => panic!("EC key: {e}"),
        };
        let mut decoding = Vec::new();
        for jwk in [RSA_JWK, EC_JWK] {
            let jwk: jsonwebtoken::jwk::Jwk = match serde_json::from_str(jwk) {
                Ok(j) => j,
                Err(e) => panic!("JWK: {e}"),
            };
            match DecodingKey::from_jwk(&jwk) {
                Ok(k) => decoding.push((
                    k,
                    vec![
                        Algorithm::RS256,
                        Algorithm::RS384,
                        Algorithm::RS512,
                        Algorithm::PS256,
                        Algorithm::PS384,
                        Algorithm::PS512,
                        Algorithm::ES256,
                    ],
                )),
                Err(e) => panic!("decoding key: {e}"),
            }
        }
        decoding.push((
            DecodingKey::from_secret(CLIENT_SECRET.as_bytes()),
            vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512],
        ));
        Harness {
            rt,
            asym,
            hs,
            jwks,
            jwks_verifier,
            config: asym_config,
            ec_key,
            hs_key: EncodingKey::from_secret(CLIENT_SECRET.as_bytes()),
            decoding,
        }
    })
}

/// `b64(header).b64(payload).signature` with `key`.
pub fn sign_with(key: &EncodingKey, alg: Algorithm, header: &[u8], payload: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    match jsonwebtoken::crypto::sign(message.as_bytes(), key, alg) {
        Ok(sig) => format!("{message}.{sig}"),
        Err(e) => panic!("signing: {e}"),
    }
}

/// The tokens a fuzz input stands for, one per verifier `(asym, hs)`.
///
/// * `R<token>`: the rest is the token itself, given to both.
/// * `S<header JSON>\0<payload JSON>`: header and payload as given (any bytes), encoded and
///   signed with the fixed P-256 key (for `asym`) and with the client secret (for `hs`) —
///   whatever `alg` the header names — so the checks after the signature are reached.
pub fn tokens(data: &[u8]) -> Option<(String, String)> {
    let (&mode, rest) = data.split_first()?;
    if mode & 1 == 0 {
        let t = String::from_utf8_lossy(rest).into_owned();
        return Some((t.clone(), t));
    }
    let (header, payload) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b"{}"[..]),
    };
    let h = harness();
    Some((
        sign_with(&h.ec_key, Algorithm::ES256, header, payload),
        sign_with(&h.hs_key, Algorithm::HS256, header, payload),
    ))
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A token's header and claims, parsed independently of tokend.
pub struct Decoded {
    pub header: Map<String, Value>,
    pub claims: Map<String, Value>,
}

pub fn decode(token: &str) -> Decoded {
    let mut parts = token.split('.');
    let mut part = |what: &str| -> Map<String, Value> {
        let p = parts
            .next()
            .unwrap_or_else(|| panic!("accepted token has no {what}"));
        let bytes = URL_SAFE_NO_PAD
            .decode(p)
            .unwrap_or_else(|_| panic!("accepted token's {what} is not base64url"));
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("accepted token's {what} is not a JSON object"))
    };
    Decoded {
        header: part("header"),
        claims: part("payload"),
    }
}

/// Panics unless `token`'s signature verifies with one of the fixed keys under its `alg`.
pub fn assert_signed(token: &str) {
    let d = decode(token);
    let alg: Algorithm = d
        .header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("accepted token has no alg jsonwebtoken knows"));
    let (message, sig) = token
        .rsplit_once('.')
        .unwrap_or_else(|| panic!("accepted token has no signature"));
    let ok = harness().decoding.iter().any(|(key, algs)| {
        algs.contains(&alg)
            && jsonwebtoken::crypto::verify(sig, message.as_bytes(), key, alg).unwrap_or(false)
    });
    assert!(
        ok,
        "accepted token's signature does not verify with any fixed key"
    );
}

/// A NumericDate as RFC 7519 defines it (integer or float seconds).
pub fn numeric(c: &Map<String, Value>, name: &str) -> Option<f64> {
    c.get(name).and_then(Value::as_f64)
}

pub fn assert_iss_aud(c: &Map<String, Value>, audience: &str) {
    assert_eq!(
        c.get("iss").and_then(Value::as_str),
        Some(ISSUER),
        "accepted token from another issuer"
    );
    let aud_ok = match c.get("aud") {
        Some(Value::String(a)) => a == audience,
        Some(Value::Array(items)) => items.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    };
    assert!(aud_ok, "accepted token not for audience {audience:?}");
}

/// exp not passed (beyond the leeway), and when `check_iat`, iat and nbf not in the future.
pub fn assert_times(c: &Map<String, Value>, check_iat: bool) {
    let now = now() as f64;
    let leeway = (LEEWAY + SLACK) as f64;
    let exp = numeric(c, "exp").unwrap_or_else(|| panic!("accepted token without numeric exp"));
    assert!(exp + leeway >= now, "accepted token expired at {exp}");
    if check_iat {
        let iat = numeric(c, "iat").unwrap_or_else(|| panic!("accepted token without numeric iat"));
        assert!(
            iat <= now + leeway,
            "accepted token issued in the future: {iat}"
        );
        if let Some(nbf) = numeric(c, "nbf") {
            assert!(nbf <= now + leeway, "accepted token not valid before {nbf}");
        }
    }
}

/// Runs `f` to completion on the harness runtime.
pub fn run<F: std::future::Future>(f: F) -> F::Output {
    harness().rt.block_on(f)
}
