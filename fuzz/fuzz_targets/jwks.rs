//! JWKS parsing: a document as the provider would serve it is parsed and installed (every
//! entry through the JWK checks: key types, curves, `alg`, `use`, certificate members, RSA
//! sizes), then fixed tokens signed by the benchmark keys are verified against whatever was
//! installed. Property: a token accepted verifies with the benchmark keys.
#![no_main]

use std::sync::OnceLock;

use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use tokend_fuzz::{assert_signed, harness, run, sign_with};

const RSA_PEM: &[u8] = include_bytes!("../../daemon/benches/fixtures/bench-rsa-2048.pem");
const EC_PEM: &[u8] = include_bytes!("../../daemon/benches/fixtures/bench-ec-p256.pem");

/// Valid tokens (exp in 2100) of the RSA and EC benchmark keys, with and without `kid`.
fn fixed_tokens() -> &'static [String] {
    static T: OnceLock<Vec<String>> = OnceLock::new();
    T.get_or_init(|| {
        let payload = format!(
            r#"{{"iss":"{}","sub":"u1","aud":"{}","exp":4102444800,"iat":1700000000,"azp":"{}","uid":"u1","sid":"s1"}}"#,
            tokend_fuzz::ISSUER,
            tokend_fuzz::CLIENT_ID,
            tokend_fuzz::CLIENT_ID
        );
        let rsa = EncodingKey::from_rsa_pem(RSA_PEM).unwrap_or_else(|e| panic!("{e}"));
        let ec = EncodingKey::from_ec_pem(EC_PEM).unwrap_or_else(|e| panic!("{e}"));
        vec![
            sign_with(&rsa, Algorithm::RS256, br#"{"alg":"RS256","kid":"bench-rsa-2048","typ":"JWT"}"#, payload.as_bytes()),
            sign_with(&rsa, Algorithm::PS256, br#"{"alg":"PS256","kid":"bench-rsa-2048"}"#, payload.as_bytes()),
            sign_with(&ec, Algorithm::ES256, br#"{"alg":"ES256","kid":"bench-ec-p256","typ":"JWT"}"#, payload.as_bytes()),
            sign_with(&ec, Algorithm::ES256, br#"{"alg":"ES256"}"#, payload.as_bytes()),
            sign_with(&rsa, Algorithm::RS256, br#"{"alg":"RS256"}"#, payload.as_bytes()),
        ]
    })
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    let tokens = fixed_tokens();
    if tokend::fuzzing::install_jwks(&h.jwks, data).is_err() {
        return;
    }
    let keys = h.jwks.keys();
    let _ = keys.len();
    drop(keys);
    for token in tokens {
        if run(h.jwks_verifier.verify(token)).is_ok() {
            assert_signed(token);
        }
    }
});
