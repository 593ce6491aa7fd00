//! Issue #8: tests that kill cargo-mutants' mutants of `jwks/key.rs` — every algorithm checked
//! against a real signature from a freshly generated key, and the `KeySet` lookups.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self as lc, EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair as _, RsaEncoding,
    RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm::{self, *};
use serde_json::{Value, json};
use tokend_shared::Secret;

use super::{KeySet, KeySource, Signature, VerifyKey};
use crate::alg::Alg;
use crate::config::RsaFamily;

const MESSAGE: &[u8] = b"eyJhbGciOiJ0ZXN0In0.eyJzdWIiOiJ4In0";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A fresh RSA-2048 key pair and its public JWK (no `alg`).
fn rsa_pair() -> (RsaKeyPair, Value) {
    let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa key");
    let public = pair.public_key();
    let jwk = json!({
        "kty": "RSA",
        "kid": "rsa",
        "n": b64(public.modulus().big_endian_without_leading_zero()),
        "e": b64(public.exponent().big_endian_without_leading_zero()),
    });
    (pair, jwk)
}

fn rsa_sign(pair: &RsaKeyPair, encoding: &'static dyn RsaEncoding) -> String {
    let mut sig = vec![0; pair.public_modulus_len()];
    pair.sign(encoding, &SystemRandom::new(), MESSAGE, &mut sig)
        .expect("sign");
    b64(&sig)
}

/// A fresh EC key pair of `alg`'s curve, its JWK and a signature over [`MESSAGE`].
fn ec_signed(alg: &'static EcdsaSigningAlgorithm, crv: &str) -> (Value, String) {
    let pair = EcdsaKeyPair::generate(alg).expect("ec key");
    let point = pair.public_key().as_ref();
    let half = (point.len() - 1) / 2;
    let jwk = json!({
        "kty": "EC",
        "kid": crv,
        "crv": crv,
        "x": b64(&point[1..=half]),
        "y": b64(&point[1 + half..]),
    });
    let sig = pair.sign(&SystemRandom::new(), MESSAGE).expect("sign");
    (jwk, b64(sig.as_ref()))
}

fn key(jwk: &Value, family: RsaFamily) -> VerifyKey {
    VerifyKey::from_jwk_value(jwk, family)
        .expect("valid JWK")
        .expect("a signature key")
}

fn with_alg(jwk: &Value, alg: &str) -> Value {
    let mut pinned = jwk.clone();
    pinned["alg"] = json!(alg);
    pinned
}

const RSA_ENCODINGS: [(Algorithm, &dyn RsaEncoding); 6] = [
    (RS256, &lc::RSA_PKCS1_SHA256),
    (RS384, &lc::RSA_PKCS1_SHA384),
    (RS512, &lc::RSA_PKCS1_SHA512),
    (PS256, &lc::RSA_PSS_SHA256),
    (PS384, &lc::RSA_PSS_SHA384),
    (PS512, &lc::RSA_PSS_SHA512),
];

/// Each RSA algorithm verifies its own signature and refuses the same key's signature made
/// with any other RSA algorithm — pinned by the JWK's `alg` and, without one, within the
/// configured family (where one key holds three aws-lc keys).
#[test]
fn issue_8_each_rsa_algorithm_verifies_its_own_signature_only() {
    let (pair, jwk) = rsa_pair();
    let sigs: Vec<(Algorithm, String)> = RSA_ENCODINGS
        .iter()
        .map(|&(a, enc)| (a, rsa_sign(&pair, enc)))
        .collect();
    let pinned_keys: Vec<(Algorithm, VerifyKey)> = RSA_ENCODINGS
        .iter()
        .map(|&(a, _)| (a, key(&with_alg(&jwk, &format!("{a:?}")), RsaFamily::Rs)))
        .collect();
    let family_keys = [
        ([RS256, RS384, RS512], key(&jwk, RsaFamily::Rs)),
        ([PS256, PS384, PS512], key(&jwk, RsaFamily::Ps)),
    ];
    for (alg, k) in &pinned_keys {
        for (signed_with, sig) in &sigs {
            let expected = if signed_with == alg {
                Signature::Valid
            } else {
                Signature::Invalid
            };
            assert_eq!(
                k.verify_signature(Alg::Jws(*alg), MESSAGE, sig),
                expected,
                "key pinned to {alg:?}, signature made with {signed_with:?}"
            );
        }
    }
    for (family, k) in &family_keys {
        for alg in family {
            for (signed_with, sig) in &sigs {
                let expected = if signed_with == alg {
                    Signature::Valid
                } else {
                    Signature::Invalid
                };
                assert_eq!(
                    k.verify_signature(Alg::Jws(*alg), MESSAGE, sig),
                    expected,
                    "key without alg checked as {alg:?}, signature made with {signed_with:?}"
                );
            }
            assert_eq!(
                k.verify_signature(Alg::Jws(*alg), b"another message", &sigs[0].1),
                Signature::Invalid
            );
        }
    }
    let (rs256, k) = &pinned_keys[0];
    assert_eq!(
        k.verify_signature(Alg::Jws(*rs256), MESSAGE, "not base64!"),
        Signature::NotBase64
    );
}

/// ES256, ES384, ES512 and EdDSA keys parse (with and without `alg`) and verify their own
/// signatures, and only over the message signed.
#[test]
fn issue_8_ec_and_ed25519_keys_verify_their_own_signatures() {
    let cases = [
        (
            Alg::Jws(ES256),
            "ES256",
            ec_signed(&lc::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256"),
        ),
        (
            Alg::Jws(ES384),
            "ES384",
            ec_signed(&lc::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384"),
        ),
        (
            Alg::Es512,
            "ES512",
            ec_signed(&lc::ECDSA_P521_SHA512_FIXED_SIGNING, "P-521"),
        ),
        (Alg::Jws(EdDSA), "EdDSA", {
            let pair = Ed25519KeyPair::generate().expect("ed25519 key");
            let jwk = json!({
                "kty": "OKP",
                "kid": "ed",
                "crv": "Ed25519",
                "x": b64(pair.public_key().as_ref()),
            });
            (jwk, b64(pair.sign(MESSAGE).as_ref()))
        }),
    ];
    for (alg, name, (jwk, sig)) in &cases {
        for k in [
            key(jwk, RsaFamily::Rs),
            key(&with_alg(jwk, name), RsaFamily::Rs),
        ] {
            assert!(k.fits(*alg), "{name}");
            assert_eq!(
                k.verify_signature(*alg, MESSAGE, sig),
                Signature::Valid,
                "{name}"
            );
            assert_eq!(
                k.verify_signature(*alg, b"another message", sig),
                Signature::Invalid,
                "{name}"
            );
        }
    }
}

/// An HMAC key (HS256 mode) checks through jsonwebtoken: a signature that is not base64url
/// says so; any other failure, such as an algorithm the key cannot do, is a bad signature.
#[test]
fn issue_8_hmac_key_tells_bad_base64_from_a_bad_signature() {
    let k = VerifyKey::hmac(&Secret::new("s3cret"));
    let sig = jsonwebtoken::crypto::sign(
        MESSAGE,
        &jsonwebtoken::EncodingKey::from_secret(b"s3cret"),
        HS256,
    )
    .expect("sign");
    assert_eq!(
        k.verify_signature(Alg::Jws(HS256), MESSAGE, &sig),
        Signature::Valid
    );
    assert_eq!(
        k.verify_signature(Alg::Jws(HS256), b"another message", &sig),
        Signature::Invalid
    );
    assert_eq!(
        k.verify_signature(Alg::Jws(HS256), MESSAGE, "not base64!"),
        Signature::NotBase64
    );
    assert_eq!(
        k.verify_signature(Alg::Jws(RS256), MESSAGE, &sig),
        Signature::Invalid
    );
    assert_eq!(
        k.verify_signature(Alg::Es512, MESSAGE, &sig),
        Signature::Invalid
    );
}

/// A symmetric JWK is skipped (never trusted, never an error), and an OKP key on a curve
/// other than Ed25519 (here a NIST curve name, which jsonwebtoken parses) is refused.
#[test]
fn issue_8_symmetric_jwk_is_skipped_and_okp_on_another_curve_refused() {
    let oct = json!({"kty": "oct", "kid": "sym", "k": "c2VjcmV0"});
    assert!(matches!(
        VerifyKey::from_jwk_value(&oct, RsaFamily::Rs),
        Ok(None)
    ));
    let ed = Ed25519KeyPair::generate().expect("ed25519 key");
    let okp_p256 =
        json!({"kty": "OKP", "kid": "x", "crv": "P-256", "x": b64(ed.public_key().as_ref())});
    let err = VerifyKey::from_jwk_value(&okp_p256, RsaFamily::Rs)
        .expect_err("an OKP key on P-256 is refused");
    assert!(err.contains("not supported"), "{err}");
}

fn ed_key(kid: Option<&str>) -> Arc<VerifyKey> {
    let pair = Ed25519KeyPair::generate().expect("ed25519 key");
    let mut jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())});
    if let Some(kid) = kid {
        jwk["kid"] = json!(kid);
    }
    Arc::new(key(&jwk, RsaFamily::Rs))
}

fn set(with_kid: &[&Arc<VerifyKey>], without_kid: &[&Arc<VerifyKey>]) -> KeySet {
    KeySet {
        by_kid: with_kid
            .iter()
            .map(|k| (k.kid.clone().expect("kid"), Arc::clone(k)))
            .collect::<HashMap<_, _>>(),
        without_kid: without_kid.iter().map(|k| Arc::clone(k)).collect(),
        fetched_at: None,
        generation: 1,
        source: KeySource::Provider,
        skipped: None,
    }
}

/// `len` and `iter` count keys with and without `kid`; `sole_fit` answers only when exactly
/// one key fits; `contains` is by identity; `age` runs from `fetched_at`.
#[test]
fn issue_8_key_set_counts_finds_and_ages_its_keys() {
    let (a, b, loose) = (ed_key(Some("a")), ed_key(Some("b")), ed_key(None));
    let eddsa = Alg::Jws(EdDSA);
    let full = set(&[&a, &b], &[&loose]);
    assert_eq!(full.len(), 3);
    assert!(!full.is_empty());
    assert_eq!(full.iter().count(), 3);
    assert!(full.iter().any(|k| Arc::ptr_eq(k, &loose)));
    assert!(full.sole_fit(eddsa).is_none(), "three keys fit");
    assert!(full.contains(&a) && full.contains(&loose));
    assert!(
        !full.contains(&ed_key(Some("a"))),
        "same kid, other material"
    );
    assert!(!full.contains(&ed_key(None)));

    let one = set(&[], &[&loose]);
    assert_eq!(one.len(), 1);
    let fit = one.sole_fit(eddsa).expect("exactly one key fits");
    assert!(Arc::ptr_eq(fit, &loose));
    assert!(one.sole_fit(Alg::Jws(RS256)).is_none(), "none fits");
    assert!(set(&[&a], &[]).sole_fit(eddsa).is_some());

    let mut aged = set(&[&a], &[]);
    assert_eq!(aged.age(), None, "never fetched");
    aged.fetched_at = Some(SystemTime::now() - Duration::from_secs(120));
    let age = aged.age().expect("fetched");
    assert!(
        age >= Duration::from_secs(120) && age < Duration::from_secs(180),
        "{age:?}"
    );
}
