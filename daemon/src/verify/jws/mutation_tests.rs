//! Issue #8: tests that kill cargo-mutants' mutants of the JWS layer (`verify/jws.rs`): the
//! length limit's boundary, `short`, `constant_time_eq`, and key selection with RSA keys
//! (a kid naming a key of another algorithm, an unknown kid, a token without kid).

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as lc, KeyPair as _, RsaEncoding, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokend_shared::Reason;

use super::{constant_time_eq, short};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::sessions::Sessions;
use crate::verify::Verifier;
use crate::verify::tests::verifier;

/// An issuer nothing listens on: discovery (for an unknown-kid refetch) fails at once.
const ISSUER: &str = "http://127.0.0.1:1/application/o/shop/";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A verifier for RS256 and RS384 tokens whose key cache holds `jwks`.
fn rsa_verifier(jwks: &Value) -> Verifier {
    let text = format!(
        "[listen]\nhttp = \"127.0.0.1:9180\"\n[provider]\nissuer = \"{ISSUER}\"\n\
         client_id = \"shop\"\nalgorithms = [\"RS256\", \"RS384\"]\n"
    );
    let config = Config::from_toml(
        &text,
        Path::new("unit.toml"),
        Path::new("."),
        std::iter::empty(),
    )
    .expect("valid config");
    let metrics = Metrics::new();
    let keys = crate::build_jwks(&config, &metrics).expect("jwks");
    keys.install_body(
        "http://127.0.0.1:1/jwks/",
        jwks.to_string().as_bytes(),
        SystemTime::now(),
    )
    .expect("a JWKS");
    let sessions = Arc::new(Sessions::new(config.revocation_ttl(), metrics.clone()));
    Verifier::new(&config, keys, sessions, metrics)
}

/// A compact JWS of a valid access token's claims, signed with `pair`.
fn rs_token(pair: &RsaKeyPair, alg: &str, kid: Option<&str>) -> String {
    let encoding: &'static dyn RsaEncoding = match alg {
        "RS256" => &lc::RSA_PKCS1_SHA256,
        _ => &lc::RSA_PKCS1_SHA384,
    };
    let mut header = json!({"alg": alg, "typ": "JWT"});
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    let now = crate::verify::now_unix();
    let claims = json!({
        "iss": ISSUER, "aud": "shop", "sub": "alice", "sid": "s1", "azp": "shop",
        "iat": now, "exp": now + 300,
    });
    let message = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut sig = vec![0; pair.public_modulus_len()];
    pair.sign(encoding, &SystemRandom::new(), message.as_bytes(), &mut sig)
        .expect("sign");
    format!("{message}.{}", b64(&sig))
}

fn rsa_jwk(pair: &RsaKeyPair, kid: &str, alg: &str) -> Value {
    let public = pair.public_key();
    json!({
        "kty": "RSA", "kid": kid, "alg": alg, "use": "sig",
        "n": b64(public.modulus().big_endian_without_leading_zero()),
        "e": b64(public.exponent().big_endian_without_leading_zero()),
    })
}

async fn reason(v: &Verifier, token: &str) -> Option<Reason> {
    v.verify(token).await.err().map(|e| e.reason())
}

/// A token of exactly `verify.max_token_bytes` is not refused for its length; one byte more
/// is, before any parsing.
#[test]
fn issue_8_length_limit_is_inclusive() {
    let v = verifier();
    let max = v.max_token_bytes;
    assert!(v.check_length(&"a".repeat(max)).is_ok());
    assert!(v.check_length("a.b.c").is_ok());
    let err = v
        .check_length(&"a".repeat(max + 1))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains(&format!("longer than {max} bytes")), "{err}");
}

/// Attacker-controlled strings are cut to 64 bytes at a character boundary, shorter ones
/// are kept whole.
#[test]
fn issue_8_short_cuts_at_64_bytes_on_a_character_boundary() {
    assert_eq!(short("kid-1"), "kid-1");
    let exactly = "k".repeat(64);
    assert_eq!(short(&exactly), exactly);
    assert_eq!(short(&"k".repeat(65)), format!("{exactly}…"));
    // "a" then two-byte characters: byte 64 falls inside one, so the cut is at 63.
    let odd = format!("a{}", "é".repeat(40));
    assert_eq!(short(&odd), format!("a{}…", "é".repeat(31)));
}

/// Equal inputs only: a different byte anywhere, differences that would cancel out under
/// XOR-accumulation, and a prefix are all unequal.
#[test]
fn issue_8_constant_time_eq_is_equality() {
    assert!(constant_time_eq(b"nonce-123", b"nonce-123"));
    assert!(constant_time_eq(b"", b""));
    assert!(!constant_time_eq(b"nonce-123", b"nonce-124"));
    assert!(!constant_time_eq(&[1, 1], &[0, 0]));
    assert!(!constant_time_eq(&[0xff], &[0x0f]));
    assert!(!constant_time_eq(b"nonce", b"nonce-123"));
    assert!(!constant_time_eq(b"nonce-123", b"nonce"));
}

/// With RSA keys: a token names its key by kid and must use that key's algorithm (an RS384
/// signature by an RS256-pinned key is refused even though it is cryptographically valid);
/// an unknown kid is `unknown_kid` after a refetch; a token without kid uses the only key.
#[tokio::test]
async fn issue_8_rsa_key_selection_by_kid_and_algorithm() {
    let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa key");
    let v = rsa_verifier(&json!({"keys": [rsa_jwk(&pair, "k1", "RS256")]}));

    let good = v.verify(&rs_token(&pair, "RS256", Some("k1"))).await;
    assert!(good.is_ok(), "{good:?}");
    assert_eq!(
        reason(&v, &rs_token(&pair, "RS384", Some("k1"))).await,
        Some(Reason::UnsupportedAlg),
        "the key is pinned to RS256"
    );
    assert_eq!(
        reason(&v, &rs_token(&pair, "RS256", Some("k2"))).await,
        Some(Reason::UnknownKid)
    );
    let no_kid = v.verify(&rs_token(&pair, "RS256", None)).await;
    assert!(no_kid.is_ok(), "the only RS256 key: {no_kid:?}");
}
